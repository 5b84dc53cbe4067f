// Package serve is papo's trainer sidecar: a server that reads requests as Arrow IPC streams
// from unix sockets, TCP connections or standard input, runs them through the run pipeline
// (package run), and answers each with the per-token output and a status, as docs/PROTOCOL.md
// specifies for client authors.
//
// Each connection carries requests one after the other. A request's batches are read while the
// previous batch is computed (one batch of read-ahead, no more: a slow engine or a slow reader
// of the reply holds the client back through the socket). The reply is written as results come;
// up to Config.MaxReplyBuffer bytes of it are buffered, so that a client that writes its whole
// request before it reads still gets every answer.
//
// Runs that reweight keep their state in Config.StateDir, one file per papo.run_id, and a
// request's steps are committed there only after its reply's results have been written to the
// connection. Requests for one run are served one at a time; different runs and analyze
// requests run concurrently.
package serve

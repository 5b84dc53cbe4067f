// Package files opens and creates papo's files by their extension in every format papo has:
// papoio's own (Arrow IPC, CSV, JSONL) and Parquet (package io/parquet's codec). Its functions
// are papoio's (package io) with papoio.WithTables(parquet.Codec{}) added to the options, so
// they take the same arguments and return the same types. The papo commands use it; a program
// that reads or writes Arrow IPC through papoio alone does not pull in Parquet and the gRPC and
// Arrow Flight packages that come with it.
package files

package serve

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/entropy-polarity/papo/internal/testcert"
	"github.com/entropy-polarity/papo/polarity"
)

// records decodes an IPC stream.
func records(t *testing.T, data []byte) []arrow.Record {
	t.Helper()
	r, err := ipc.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	var out []arrow.Record
	for r.Next() {
		rec := r.RecordBatch()
		rec.Retain()
		out = append(out, rec)
	}
	return out
}

// exchange sends req over one DoExchange call with the Bearer token (none when ""); stopAfter >
// 0 cancels the call after that many batches.
func exchange(t *testing.T, c flight.Client, token string, req []byte, stopAfter int) ([]arrow.Record, metadata.MD, error) {
	t.Helper()
	header := ""
	if token != "" {
		header = "Bearer " + token
	}
	return exchangeAuth(t, c, header, req, stopAfter)
}

// exchangeAuth is exchange with the authorization header as given (none when "").
func exchangeAuth(t *testing.T, c flight.Client, header string, req []byte, stopAfter int) ([]arrow.Record, metadata.MD, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if header != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", header)
	}
	stream, err := c.DoExchange(ctx)
	if err != nil {
		return nil, nil, err
	}
	in := records(t, req)
	w := flight.NewRecordWriter(stream, ipc.WithSchema(in[0].Schema()))
	for i, rec := range in {
		if stopAfter > 0 && i == stopAfter {
			cancel()
			return nil, nil, context.Canceled
		}
		if err := w.Write(rec); err != nil {
			break
		}
	}
	w.Close()
	stream.CloseSend()
	rdr, err := flight.NewRecordReader(stream)
	if err != nil {
		return nil, nil, err
	}
	defer rdr.Release()
	var out []arrow.Record
	for rdr.Next() {
		rec := rdr.RecordBatch()
		rec.Retain()
		out = append(out, rec)
	}
	if err := rdr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return out, nil, err
	}
	return out, stream.Trailer(), nil
}

// startFlight serves srv's Flight on a loopback port until the test ends; it returns the address.
func startFlight(t *testing.T, srv *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := srv.NewFlight(l)
	go fs.Serve()
	t.Cleanup(fs.Shutdown)
	return l.Addr().String()
}

// TestFlight: DoExchange returns the numbers of the same request on a socket; a missing or
// wrong token is refused; a client that disconnects mid-stream leaves the server serving;
// batches over gRPC's default 4 MiB pass.
func TestFlight(t *testing.T) {
	srv, sock := startServer(t, Config{StateDir: t.TempDir(), Token: testToken})
	addr := startFlight(t, srv)
	c, err := flight.NewClientWithMiddleware(addr, nil, nil,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	req := input(t, 7, withMeta(KeyRequest, Reweight, KeyRunID, "fl"))
	got, trailer, err := exchange(t, c, testToken, req, 0)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]string
	if v := trailer.Get(FlightTrailer); len(v) != 1 || json.Unmarshal([]byte(v[0]), &st) != nil || st[KeyStatus] != "ok" ||
		st[KeyCommitted] != "true" {
		t.Fatalf("trailer %v", trailer)
	}
	// The same request on the socket, on another run with the same parameters.
	sockReq := input(t, 7, withMeta(KeyRequest, Reweight, KeyRunID, "sock", KeyToken, testToken))
	rep, err := dial(t, sock).do(sockReq)
	if err != nil {
		t.Fatal(err)
	}
	want := records(t, rep.data)
	if len(got) != len(want) {
		t.Fatalf("%d batches over Flight, %d on the socket", len(got), len(want))
	}
	for i := range want {
		for k := 0; k < int(want[i].NumCols()); k++ {
			if !array.Equal(got[i].Column(k), want[i].Column(k)) {
				t.Fatalf("batch %d column %s differs", i, want[i].ColumnName(k))
			}
		}
	}

	for _, token := range []string{"", "guess"} {
		_, _, err := exchange(t, c, token, input(t, 7, nil), 0)
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("token %q: %v; want Unauthenticated", token, err)
		}
	}
	if _, _, err := exchange(t, c, testToken, input(t, 7, withMeta(KeyRequest, "bogus")), 0); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a bad request: %v; want InvalidArgument", err)
	}
	exchange(t, c, testToken, req, 1) // gone after one batch
	if got2, _, err := exchange(t, c, testToken, input(t, 7, nil), 0); err != nil || len(got2) == 0 {
		t.Fatalf("after a client vanished: %v", err)
	}
	// A 6 MB batch: over gRPC's 4 MiB default.
	big, err := testinputStream(t, 1500, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got3, _, err := exchange(t, c, testToken, big, 0); err != nil || len(got3) == 0 {
		t.Fatalf("a 6 MB batch: %v", err)
	}
}

// TestFlightTLS: with Config.TLS, Flight serves over TLS (a client that trusts the self-signed
// certificate made here is answered; a plaintext client is not); the token must come as
// "Bearer TOKEN": the bare token is refused.
func TestFlightTLS(t *testing.T) {
	cert := testcert.New(t)
	srv, err := New(Config{Engine: polarity.NewCPU(2), Token: testToken,
		TLS: &tls.Config{Certificates: []tls.Certificate{cert.Pair}, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr := startFlight(t, srv)
	connect := func(creds credentials.TransportCredentials) flight.Client {
		c, err := flight.NewClientWithMiddleware(addr, nil, nil, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	secure := connect(credentials.NewTLS(&tls.Config{RootCAs: cert.Pool, ServerName: "127.0.0.1"}))
	req := input(t, 7, nil)
	got, _, err := exchange(t, secure, testToken, req, 0)
	if err != nil || len(got) == 0 {
		t.Fatalf("over TLS: %d batches, %v", len(got), err)
	}
	if _, _, err := exchangeAuth(t, secure, testToken, req, 0); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("the token without \"Bearer \": %v; want Unauthenticated", err)
	}
	if _, _, err := exchangeAuth(t, secure, "bearer "+testToken, req, 0); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("\"bearer \" in lower case: %v; want Unauthenticated", err)
	}
	plain := connect(insecure.NewCredentials())
	if _, _, err := exchange(t, plain, testToken, req, 0); status.Code(err) != codes.Unavailable {
		t.Fatalf("a plaintext client of the TLS server: %v; want Unavailable", err)
	}
}

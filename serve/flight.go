package serve

import (
	"bufio"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Arrow Flight: DoExchange carries the same requests as a socket connection, one per call. The
// request's FlightData are its IPC stream's messages; the reply's are the data stream's
// messages. The outcome is the call's status: OK with the status keys as JSON in the trailer
// "papo-status", or a gRPC error whose code follows the error kind (Unauthenticated for the
// token, InvalidArgument for input and request errors, ...). The token comes as
// "authorization: Bearer TOKEN" in the call's headers (pyarrow: FlightCallOptions(headers=...)).

// FlightTrailer is the trailer key of a successful DoExchange's status (JSON object).
const FlightTrailer = "papo-status"

// NewFlight returns a Flight server for s on l; Serve it, and Shutdown it with s.
//
// Everything a client controls is bounded as on the sockets: MaxConns concurrent calls per
// connection (MaxConcurrentStreams), messages up to --max-batch-bytes, the handshake and an
// idle connection by IdleTimeout, dead peers by keepalive pings, a call's waiting for its
// client by the same idle budget as a socket's. With Config.TLS the calls are served over TLS.
func (s *Server) NewFlight(l net.Listener) flight.Server {
	size := int(min(s.cfg.MaxBatchBytes+1<<20, math.MaxInt32)) // gRPC's default 4 MiB would refuse most batches
	opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(size), grpc.MaxSendMsgSize(size),
		grpc.MaxConcurrentStreams(uint32(s.cfg.MaxConns)), grpc.ConnectionTimeout(s.cfg.IdleTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: s.cfg.IdleTimeout,
			Time: s.cfg.IdleTimeout, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true})}
	if s.cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.cfg.TLS)))
	}
	fs := flight.NewServerWithMiddleware(nil, opts...)
	fs.InitListener(l)
	fs.RegisterFlightService(&flightService{s: s})
	return fs
}

type flightService struct {
	flight.BaseFlightServer
	s *Server
}

func (f *flightService) DoExchange(stream flight.FlightService_DoExchangeServer) error {
	s := f.s
	start := time.Now()
	log := s.log.With("client", "flight")
	if s.cfg.Token != "" {
		md, _ := metadata.FromIncomingContext(stream.Context())
		got, bearer := "", false
		if v := md.Get("authorization"); len(v) > 0 {
			got, bearer = strings.CutPrefix(v[0], "Bearer ") // the scheme is required, not optional
		}
		if !bearer || subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) != 1 {
			log.Warn("request refused", "error_kind", string(KindAuth), "err", "missing or wrong Bearer token")
			s.cfg.Metrics.request(Analyze, "error", KindAuth, true, 0, 0, 0, time.Since(start))
			return status.Error(codes.Unauthenticated, "papo: missing or wrong token (send authorization: Bearer TOKEN)")
		}
	}
	if !s.beginFlight() {
		return status.Error(codes.Unavailable, "papo: the server is shutting down")
	}
	defer s.wg.Done()

	// Request: FlightData → an IPC stream for the same reader as the sockets'.
	pr, pw := io.Pipe()
	var bytesIn int64
	go func() { pw.CloseWithError(flightToIPC(stream, pw, &bytesIn, s.cfg.IdleTimeout)) }()
	// Reply: the queue's IPC bytes → FlightData.
	rr, rw := io.Pipe()
	q := newReplyQueue(rw, s.cfg.MaxReplyBuffer)
	trailer := make(chan map[string]string, 1)
	sent := make(chan error, 1)
	go func() { sent <- ipcToFlight(rr, stream, trailer) }()

	o := s.handle(s.hard, bufio.NewReaderSize(pr, 1<<16), q, log, "")
	pr.CloseWithError(errors.New("request done"))
	if err := s.writeStatus(q, o); err != nil && o.err == nil {
		o.err = &requestError{kind: KindClientGone, err: err}
	}
	written, werr := q.close()
	rw.Close()
	if err := <-sent; err != nil && o.err == nil {
		o.err = &requestError{kind: KindClientGone, err: err}
	} else if werr != nil && o.err == nil {
		o.err = &requestError{kind: KindClientGone, err: werr}
	}
	o.bytesIn = bytesIn
	s.logRequest(log, o, written, time.Since(start))
	if o.err != nil {
		return status.Error(grpcCode(o.kind()), o.err.Error())
	}
	st := <-trailer
	js, _ := json.Marshal(st)
	stream.SetTrailer(metadata.Pairs(FlightTrailer, string(js)))
	return nil
}

// beginFlight counts a Flight call as a connection in progress (Shutdown waits for it).
func (s *Server) beginFlight() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.wg.Add(1)
	return true
}

func grpcCode(k ErrorKind) codes.Code {
	switch k {
	case KindAuth:
		return codes.Unauthenticated
	case KindInput, KindRequest:
		return codes.InvalidArgument
	case KindTooLarge:
		return codes.ResourceExhausted
	case KindState:
		return codes.FailedPrecondition
	case KindBusy:
		return codes.Aborted
	case KindShutdown:
		return codes.Unavailable
	case KindClientGone:
		return codes.Canceled
	}
	return codes.Internal
}

// flightToIPC writes the call's FlightData as an IPC stream: each message framed with the
// continuation marker and its padded metadata length, and the end-of-stream marker when the
// client has sent everything.
//
// The call waits for its client under an idle budget as a socket does: when it runs out in
// Recv, the request fails with the idle error (and the call ends, which ends the Recv).
func flightToIPC(stream flight.FlightService_DoExchangeServer, w io.Writer, n *int64, idle time.Duration) error {
	var pad [8]byte
	budget := idleBudget{idle: idle}
	for {
		left := budget.left()
		if left <= 0 {
			return &idleError{idle}
		}
		start := time.Now()
		timedOut := make(chan struct{})
		timer := time.AfterFunc(left, func() {
			close(timedOut)
			if pw, ok := w.(*io.PipeWriter); ok {
				pw.CloseWithError(&idleError{idle})
			}
		})
		fd, err := stream.Recv()
		timer.Stop()
		select {
		case <-timedOut:
			return &idleError{idle}
		default:
		}
		budget.note(len(fd.GetDataHeader())+len(fd.GetDataBody()), time.Since(start))
		if err == io.EOF {
			_, err := w.Write([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
			return err
		}
		if err != nil {
			return err
		}
		if len(fd.DataHeader) == 0 {
			continue // app_metadata only
		}
		meta := len(fd.DataHeader)
		padded := (meta + 7) &^ 7
		var prefix [8]byte
		binary.LittleEndian.PutUint32(prefix[:4], 0xffffffff)
		binary.LittleEndian.PutUint32(prefix[4:], uint32(padded))
		for _, b := range [][]byte{prefix[:], fd.DataHeader, pad[:padded-meta], fd.DataBody} {
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
		*n += int64(8 + padded + len(fd.DataBody))
	}
}

// ipcToFlight sends the reply's data stream as FlightData and reads the status stream's
// metadata into trailer.
func ipcToFlight(r io.Reader, stream flight.FlightService_DoExchangeServer, trailer chan<- map[string]string) error {
	br := bufio.NewReaderSize(r, 1<<16)
	var sendErr error
	for {
		msg, err := readMessageHead(br, math.MaxInt32, math.MaxInt64) // the server's own reply
		if err == io.EOF {
			break // the data stream's end
		}
		if err != nil {
			io.Copy(io.Discard, br)
			return err
		}
		body := make([]byte, msg.bodyLen)
		if _, err := io.ReadFull(br, body); err != nil {
			return err
		}
		if sendErr == nil {
			sendErr = stream.Send(&flight.FlightData{DataHeader: msg.meta, DataBody: body})
		}
	}
	st := map[string]string{}
	if sr, err := ipc.NewReader(br); err == nil {
		for sr.Next() {
		}
		md := sr.Schema().Metadata()
		for i, k := range md.Keys() {
			st[k] = md.Values()[i]
		}
		sr.Release()
	}
	io.Copy(io.Discard, br)
	trailer <- st
	return sendErr
}

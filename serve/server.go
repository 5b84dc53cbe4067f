package serve

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/papo"
	"github.com/entropy-polarity/papo/polarity"
	"github.com/entropy-polarity/papo/run"
)

// Config is a server's configuration.
type Config struct {
	// Engine computes every request (safe for concurrent use, as papo's engines are).
	Engine polarity.Engine
	// Reweight is the reweighting configuration that requests start from (a request's
	// papo.method and papo.config override it).
	Reweight papo.Config
	// StateDir holds one run state file per papo.run_id (<run_id>.json). Empty: reweight and
	// rollback requests are refused.
	StateDir string
	// History is how many steps a run state remembers (papo.WithHistory; 0: papo.DefaultHistory).
	History int
	// Token, when set, is required in every request's metadata (papo.token; on Flight, the
	// header authorization: Bearer TOKEN).
	Token string
	// TLS, when set, serves the Flight calls over TLS (ListenTLS does the same for sockets).
	TLS *tls.Config
	// MaxBatchBytes caps one record batch's body (0: 1 GiB).
	MaxBatchBytes int64
	// MaxReplyBuffer caps the reply bytes buffered for a client that does not read yet
	// (0: 64 MiB).
	MaxReplyBuffer int
	// WriteTimeout bounds one write to a client (0: 5 minutes): a client that stops reading
	// loses its connection, not the server's memory.
	WriteTimeout time.Duration
	// IdleTimeout bounds the time a connection waits for its client (0: 60 s): the waiting
	// before a request, and during one until the client has sent 64 KiB more. A client that
	// sends nothing, or a byte a second, is dropped; the server's own computing does not count.
	IdleTimeout time.Duration
	// MaxConns caps the open socket connections (0: 256); one more is answered with kind busy
	// and closed. Flight calls count against it as streams (MaxConcurrentStreams).
	MaxConns int
	// Logger receives the structured log (nil: discard).
	Logger *slog.Logger
	// Metrics, when set, counts requests, tokens, bytes, errors and latency.
	Metrics *Metrics
	// Mem allocates the Arrow buffers (nil: memory.DefaultAllocator).
	Mem memory.Allocator
}

// Server serves papo requests on any number of listeners.
type Server struct {
	cfg Config
	log *slog.Logger

	runMu sync.Mutex
	runs  map[string]*runLock

	// steps keeps the step buffers of finished requests for the next ones (run.Buffers).
	steps *run.Buffers
	// bodies keeps the message bodies of finished requests for the next ones (at most
	// keptBodyBytes: papoio.BufferPool).
	bodies *papoio.BufferPool

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	sockets   int // socket connections open (MaxConns)
	draining  bool
	hard      context.Context // cancelled by Close: requests in flight stop
	stop      context.CancelFunc
	wg        sync.WaitGroup // connections
}

// runLock serializes the requests of one run.
type runLock struct {
	mu   sync.Mutex
	refs int
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("serve: server closed")

// New checks cfg and returns a server.
func New(cfg Config) (*Server, error) {
	if cfg.Engine == nil {
		return nil, errors.New("serve: no engine")
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = 1 << 30
	}
	if cfg.MaxReplyBuffer <= 0 {
		cfg.MaxReplyBuffer = 64 << 20
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 5 * time.Minute
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 256
	}
	if cfg.History <= 0 {
		cfg.History = papo.DefaultHistory
	}
	if cfg.Mem == nil {
		cfg.Mem = memory.DefaultAllocator
	}
	if cfg.Reweight.Method == "" {
		cfg.Reweight = papo.DefaultConfig()
	}
	if err := cfg.Reweight.Validate(); err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	if cfg.StateDir != "" {
		if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("serve: state directory: %w", err)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hard, stop := context.WithCancel(context.Background())
	return &Server{cfg: cfg, log: log, runs: map[string]*runLock{}, listeners: map[net.Listener]struct{}{},
		conns: map[*conn]struct{}{}, hard: hard, stop: stop, steps: run.NewBuffers(keptStepBuffers),
		bodies: papoio.NewBufferPool(cfg.Mem, keptBodyBytes)}, nil
}

// keptStepBuffers is how many step buffers the server keeps between requests: one, the
// trainer's next request (up to 60 bytes a token of the largest step served, 58 measured on a
// 4M-token step; docs/PROTOCOL.md).
const keptStepBuffers = 1

// keptBodyBytes caps the requests' message bodies that the server keeps for the next request:
// at most twice the largest batch body seen, and never more than this (two bodies of the
// 131,072-row batches of papo bench --row-stats are 24 MB).
const keptBodyBytes = 64 << 20

// statePath is the state file of a run.
func (s *Server) statePath(runID string) string {
	return filepath.Join(s.cfg.StateDir, runID+".json")
}

// lockRun waits until no other request of the run is in progress; the returned func unlocks.
func (s *Server) lockRun(runID string) func() {
	s.runMu.Lock()
	l := s.runs[runID]
	if l == nil {
		l = &runLock{}
		s.runs[runID] = l
	}
	l.refs++
	s.runMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.runMu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.runs, runID)
		}
		s.runMu.Unlock()
	}
}

// Serve accepts connections on l until Shutdown or Close; it always returns an error
// (ErrServerClosed after those).
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.draining
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := &conn{rw: nc, nc: nc, remote: remoteName(nc)}
		c.in = &clientReader{nc: nc, budget: idleBudget{idle: s.cfg.IdleTimeout}}
		c.rw = struct {
			io.Reader
			io.Writer
		}{c.in, nc}
		switch s.track(c) {
		case trackClosed:
			nc.Close()
			return ErrServerClosed
		case trackFull:
			go s.refuseBusy(c)
			continue
		}
		go s.serveConn(c)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func remoteName(nc net.Conn) string {
	if a := nc.RemoteAddr(); a != nil && a.String() != "" && a.String() != "@" {
		return a.Network() + ":" + a.String()
	}
	if a := nc.LocalAddr(); a != nil {
		return a.Network() + ":" + a.String()
	}
	return "?"
}

// ServeStream serves the requests on one byte stream (standard input and output) until its
// input ends or the server shuts down.
func (s *Server) ServeStream(r io.Reader, w io.Writer, name string) error {
	c := &conn{rw: struct {
		io.Reader
		io.Writer
	}{r, w}, remote: name}
	if s.track(c) == trackClosed {
		return ErrServerClosed
	}
	s.serveConn(c)
	return nil
}

const (
	tracked = iota
	trackClosed
	trackFull
)

// track counts a new connection: trackClosed while draining, trackFull for a socket over
// MaxConns (the byte stream of ServeStream always counts).
func (s *Server) track(c *conn) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return trackClosed
	}
	if c.nc != nil {
		if s.sockets >= s.cfg.MaxConns {
			return trackFull
		}
		s.sockets++
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return tracked
}

// refuseBusy answers a connection over MaxConns with kind busy and closes it, within the
// write timeout's bound of a few seconds.
func (s *Server) refuseBusy(c *conn) {
	defer c.nc.Close()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	q := newReplyQueue(c.nc, 1<<20)
	o := &outcome{err: errorf(KindBusy, "the server has --max-conns %d connections open: retry later", s.cfg.MaxConns)}
	s.emptyData(q)
	s.writeStatus(q, o)
	written, _ := q.close()
	s.logRequest(s.log.With("client", c.remote), o, written, 0)
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// Shutdown stops accepting, lets every request in progress finish (its reply written, its run
// state committed), closes idle connections and returns when all are done, or when ctx ends:
// then it stops what is left as Close does and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.closeIfIdle()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close stops at once: requests in progress fail (their run states unchanged) and every
// connection closes.
func (s *Server) Close() {
	s.mu.Lock()
	s.draining = true
	for l := range s.listeners {
		l.Close()
	}
	s.stop()
	for c := range s.conns {
		c.close()
	}
	s.mu.Unlock()
	s.bodies.Release()
}

// conn is one client connection.
type conn struct {
	rw     io.ReadWriter
	nc     net.Conn      // nil for a byte stream
	in     *clientReader // nc's reading side under the idle budget; nil for a byte stream
	remote string

	mu     sync.Mutex
	busy   bool // a request is in progress
	closed bool
}

func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.nc != nil {
		c.nc.Close()
	} else if cl, ok := c.rw.(io.Closer); ok {
		cl.Close()
	}
}

// closeIfIdle closes a connection that waits for its next request.
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	idle := !c.busy
	c.mu.Unlock()
	if idle {
		c.close()
	}
}

// begin marks a request in progress; false when the server is draining.
func (s *Server) begin(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.draining || c.closed {
		return false
	}
	c.busy = true
	return true
}

func (s *Server) end(c *conn) {
	c.mu.Lock()
	c.busy = false
	c.mu.Unlock()
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if draining {
		c.close()
	}
}

// writer is the connection's writing side, with a deadline per write.
type deadlineWriter struct {
	c       *conn
	timeout time.Duration
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	if w.c.nc != nil {
		w.c.nc.SetWriteDeadline(time.Now().Add(w.timeout))
	}
	return w.c.rw.Write(p)
}

func (s *Server) serveConn(c *conn) {
	defer func() {
		c.close()
		s.mu.Lock()
		delete(s.conns, c)
		if c.nc != nil {
			s.sockets--
		}
		s.mu.Unlock()
		s.wg.Done()
	}()
	s.cfg.Metrics.connOpened()
	defer s.cfg.Metrics.connClosed()
	log := s.log.With("client", c.remote)
	log.Debug("connection opened")
	in := &countingReader{r: c.rw}
	br := bufio.NewReaderSize(in, 1<<16)
	for n := 0; ; n++ {
		// Wait for the next request's first byte (a fresh idle budget); the end of the input
		// ends the connection.
		if c.in != nil {
			c.in.budget.renew()
		}
		if _, err := br.Peek(1); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Debug("connection ended", "err", err)
			}
			return
		}
		if !s.begin(c) {
			return
		}
		keep := s.serveRequest(c, br, in, log.With("request", n))
		s.end(c)
		if !keep {
			return
		}
	}
}

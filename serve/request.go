package serve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/papo"
	"github.com/entropy-polarity/papo/polarity"
	"github.com/entropy-polarity/papo/run"
)

// outcome is what a request did, for its status, its log line and the metrics.
type outcome struct {
	req       *request
	tokens    int64
	bytesIn   int64
	steps     []papoio.StepSummary
	rollbacks []string
	committed bool
	lastStep  string
	err       error
	// consumed: the request stream was read to its end-of-stream marker, so the connection is
	// still at a request boundary and may carry the next one.
	consumed bool
}

func (o *outcome) kind() ErrorKind {
	var re *requestError
	if errors.As(o.err, &re) {
		return re.kind
	}
	return KindInternal
}

// serveRequest reads one request from br and writes its reply; it reports whether the
// connection may carry another request.
func (s *Server) serveRequest(c *conn, br *bufio.Reader, in *countingReader, log *slog.Logger) bool {
	start := time.Now()
	in0 := in.n
	q := newReplyQueue(deadlineWriter{c: c, timeout: s.cfg.WriteTimeout}, s.cfg.MaxReplyBuffer)
	o := s.handle(s.hard, br, q, log, s.cfg.Token)
	o.bytesIn = in.n - in0 // what the connection delivered meanwhile (read-ahead included)

	// The status stream ends every reply.
	if err := s.writeStatus(q, o); err != nil && o.err == nil {
		o.err = &requestError{kind: KindClientGone, err: err}
	}
	written, werr := q.close()
	if werr != nil && o.err == nil {
		o.err = &requestError{kind: KindClientGone, err: werr}
	}
	elapsed := time.Since(start)

	s.logRequest(log, o, written, elapsed)

	keep := o.err == nil || (o.consumed && werr == nil && o.kind() != KindAuth && o.kind() != KindShutdown)
	if !keep && werr == nil {
		lingerClose(c, br)
	}
	return keep
}

// logRequest logs a request and counts it in the metrics.
func (s *Server) logRequest(log *slog.Logger, o *outcome, written int64, elapsed time.Duration) {
	// The metrics' kind label takes known values only: an invented papo.request is "invalid"
	// (the log's error names the value), so a client cannot create new series.
	kindName := Analyze
	if o.req != nil {
		kindName = o.req.kind
	}
	switch kindName {
	case Analyze, Reweight, Rollback, Stats:
	default:
		kindName = "invalid"
	}
	attrs := []any{"kind", kindName, "tokens", o.tokens, "steps", len(o.steps), "bytes_in", o.bytesIn,
		"bytes_out", written, "seconds", elapsed.Seconds()}
	if o.req != nil && o.req.kind != Analyze {
		attrs = append(attrs, "run_id", o.req.runID, "committed", o.committed)
	}
	if o.tokens > 0 && elapsed > 0 {
		attrs = append(attrs, "tokens_per_s", float64(o.tokens)/elapsed.Seconds())
	}
	status := "ok"
	if o.err != nil {
		status = "error"
		attrs = append(attrs, "error_kind", string(o.kind()), "err", o.err.Error())
		if re := (*requestError)(nil); errors.As(o.err, &re) && re.stack != nil {
			attrs = append(attrs, "stack", string(re.stack))
		}
		if o.kind() == KindAuth {
			log.Warn("request refused", attrs...)
		} else {
			log.Info("request failed", attrs...)
		}
	} else {
		log.Info("request", attrs...)
	}
	s.cfg.Metrics.request(kindName, status, o.kind(), o.err != nil, o.tokens, o.bytesIn, written, elapsed)

}

// lingerClose ends a connection whose request was not read to its end: the reply has been
// written, so the write side is closed first and what the client is still sending is read and
// dropped for a short while, so that the client reads its error instead of a reset.
func lingerClose(c *conn, br *bufio.Reader) {
	type closeWriter interface{ CloseWrite() error }
	cw, ok := c.nc.(closeWriter)
	if !ok {
		return
	}
	cw.CloseWrite()
	c.in.stop = time.Now().Add(2 * time.Second)
	io.CopyN(io.Discard, br, 16<<20)
}

// handle reads and answers the request's data stream; the status follows in serveRequest.
//
// token is the papo.token a request must carry ("" when the transport checked it already).
func (s *Server) handle(ctx context.Context, br *bufio.Reader, q *replyQueue, log *slog.Logger, token string) (o *outcome) {
	o = &outcome{}
	// A panic while serving one request (a bug) is that request's internal error: the server
	// goes on serving. Where in the reply it came is unknown, so the connection ends after the
	// status. (Compute recovers the engine's panics itself, keeping the reply well-formed.)
	defer func() {
		if p := recover(); p != nil {
			o.err = internalPanic(p)
			o.consumed = false
		}
	}()
	if err := checkSchemaLength(br); err != nil {
		o.err = err
		s.emptyData(q)
		return o
	}
	// br is the connection's own buffer (papoio.NewReader uses a *bufio.Reader of 64 KiB as it
	// is): the reader stops at the end-of-stream marker, and the next request starts there.
	var schema *arrow.Schema // once the schema message has been read whole
	contract := func(s *arrow.Schema) bool { schema = s; return needsContract(s) }
	rd, err := papoio.NewReader(br, "request", s.cfg.Mem,
		papoio.WithStreamOnly(), papoio.WithMaxBufferBytes(s.cfg.MaxBatchBytes), papoio.WithContract(contract),
		papoio.WithBufferPool(s.bodies))
	if err != nil {
		o.err = s.inputError(err)
		s.emptyData(q)
		if schema != nil {
			// The schema breaks the contract (papo.temperature=-1, a missing column): with the
			// right token, the rest of the stream is read and dropped, and the connection goes on.
			if aerr := checkToken(schema.Metadata(), token); aerr != nil {
				o.err = aerr
			} else {
				o.consumed = skipStream(br, s.cfg.MaxBatchBytes) == nil
			}
		}
		return o
	}
	defer rd.Close()
	req, err := parseRequest(rd.Schema().Metadata(), s.cfg.Reweight, token)
	o.req = req
	if err != nil {
		o.err = err
		s.emptyData(q)
		if o.kind() != KindAuth { // a refused client's bytes are not read on
			o.consumed = drain(rd)
		}
		return o
	}
	if req.kind == Rollback {
		s.emptyData(q)
		o.consumed = drain(rd)
		if o.consumed {
			s.rollback(req, rd.Schema().Metadata(), o, log)
		} else {
			o.err = s.inputError(rd.Err())
		}
		return o
	}
	s.compute(ctx, rd, req, q, o, log)
	return o
}

// internalPanic is the internal error of a recovered panic, with its stack for the log.
func internalPanic(p any) error {
	return &requestError{kind: KindInternal, err: fmt.Errorf("internal error (a bug in papo serve; the server goes on): %v", p),
		stack: debug.Stack()}
}

// guard runs f, turning its panic into an internal error.
func guard(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = internalPanic(p)
		}
	}()
	return f()
}

// countingReader counts the request bytes.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// drain reads the rest of a request whose answer is already known; true when it ended cleanly.
func drain(rd *papoio.Reader) bool {
	for rd.Next() {
	}
	return rd.Err() == nil
}

func (s *Server) inputError(err error) error {
	var re *requestError
	if errors.As(err, &re) {
		return err
	}
	if errors.Is(err, papoio.ErrBufferLimit) {
		return &requestError{kind: KindTooLarge, err: fmt.Errorf("%w (the server's --max-batch-bytes is %d: send smaller record batches)",
			err, s.cfg.MaxBatchBytes)}
	}
	if errors.Is(err, errIdle) {
		return &requestError{kind: KindInput, err: err}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return &requestError{kind: KindInput, err: fmt.Errorf("the request stream was cut: %w", err)}
	}
	return &requestError{kind: KindInput, err: err}
}

// emptyData writes a data stream with no columns and no batches: the reply of a request that
// computes nothing.
func (s *Server) emptyData(q *replyQueue) {
	if w, err := papoio.NewWriter(q, "reply", papoio.FormatIPCStream, arrow.NewSchema(nil, nil), s.cfg.Mem); err == nil {
		w.Close()
	}
}

// openRun opens a run's state for a reweight or rollback request.
func (s *Server) openRun(req *request, opts ...papo.Option) (*papo.Reweighter, error) {
	if s.cfg.StateDir == "" {
		return nil, errorf(KindRequest, "this server keeps no run state (start it with --state-dir): a %s request cannot be served", req.kind)
	}
	opts = append(opts, papo.WithStateFile(s.statePath(req.runID)), papo.WithDeferredSave(),
		papo.WithReset(req.reset), papo.WithHistory(s.cfg.History))
	rw, err := papo.NewReweighter(req.config, opts...)
	if err != nil {
		return nil, &requestError{kind: KindState, err: fmt.Errorf("run %s: %w", req.runID, err)}
	}
	return rw, nil
}

func lastStep(rw *papo.Reweighter) string {
	if last, ok := rw.LastStep(); ok {
		return strconv.FormatInt(last, 10)
	}
	return ""
}

// rollback serves a rollback request.
func (s *Server) rollback(req *request, md arrow.Metadata, o *outcome, log *slog.Logger) {
	params, err := papoio.ParamsFromMetadata(md)
	if err != nil {
		o.err = errorf(KindRequest, "%v", err)
		return
	}
	params.NaturalGradient = req.natural
	unlock := s.lockRun(req.runID)
	defer unlock()
	if s.cfg.StateDir != "" && !papo.StateExists(s.statePath(req.runID)) {
		// A rollback of a run that has no state does not create one.
		o.err = errorf(KindState, "run %s has no state in the state directory: nothing to roll back", req.runID)
		return
	}
	rw, err := s.openRun(req, papo.WithSignal(params))
	if err != nil {
		o.err = err
		return
	}
	defer rw.Close()
	rb, err := rw.Rollback(req.rollbackTo)
	if err != nil {
		o.err = &requestError{kind: KindState, err: fmt.Errorf("run %s: %w", req.runID, err)}
		o.lastStep = lastStep(rw)
		return
	}
	if err := rw.Commit(); err != nil {
		o.err = &requestError{kind: KindInternal, err: fmt.Errorf("run %s: committing the state: %w", req.runID, err)}
		return
	}
	o.committed = true
	o.lastStep = lastStep(rw)
	if rb != nil {
		o.rollbacks = append(o.rollbacks, rb.String())
		log.Info("rollback", "run_id", req.runID, "to", req.rollbackTo, "forgotten", rb.Forgotten)
	}
}

// compute serves an analyze or reweight request: batches are read one ahead of the engine,
// results are written as each step completes, and the run state is committed after the
// results have been written.
func (s *Server) compute(ctx context.Context, rd *papoio.Reader, req *request, q *replyQueue, o *outcome, log *slog.Logger) {
	schema := replySchema(rd.Schema())
	stats := req.kind == Stats
	if stats {
		schema = papoio.PartialsSchema() // the reply is the rank's partials table
	}
	if req.columns != nil {
		sel, err := papoio.SelectColumns(schema, req.columns)
		if err != nil {
			o.err = errorf(KindRequest, "%s %q: %v", KeyColumns, strings.Join(req.columns, ","), err)
			s.emptyData(q)
			o.consumed = drain(rd)
			return
		}
		schema = sel
	}
	w, err := papoio.NewWriter(q, "reply", papoio.FormatIPCStream, schema, s.cfg.Mem)
	if err != nil {
		o.err = &requestError{kind: KindInternal, err: err}
		s.emptyData(q)
		return
	}
	defer w.Abort()
	fail := func(err error) {
		if o.err == nil {
			o.err = err
		}
	}
	params := rd.Meta().Params
	params.NaturalGradient = req.natural
	var rw *papo.Reweighter
	if req.kind == Reweight {
		unlock := s.lockRun(req.runID)
		defer unlock()
		rw, err = s.openRun(req, papo.WithSignal(params))
	} else {
		rw, err = papo.NewReweighter(req.config, papo.WithSignal(params))
	}
	if err != nil {
		fail(err)
	} else {
		defer rw.Close()
		o.lastStep = lastStep(rw)
	}

	var p *run.Pipeline
	var sink *run.Output
	if o.err == nil {
		rows := w
		if stats {
			rows = nil // no per-token output; the table is written at the end
		}
		sink = run.NewOutput(rows, schema, s.cfg.Mem, func(r *run.StepReport) error {
			o.steps = append(o.steps, r.Summary)
			if rb := r.Reweight.Rollback; rb != nil {
				o.rollbacks = append(o.rollbacks, rb.String())
				log.Info("rollback", "run_id", req.runID, "step", rb.Step, "forgotten", rb.Forgotten)
			}
			return nil
		})
		p, err = run.New(run.Config{Name: "request", Engine: s.cfg.Engine, Params: params, Reweighter: rw,
			RequireAdvantage: req.kind != Analyze, Mem: s.cfg.Mem, PartialsOnly: stats, Global: req.global,
			Buffers: s.steps}, sink)
		if err != nil {
			fail(&requestError{kind: KindRequest, err: err})
		} else {
			defer p.Abort()
		}
	}

	f := newFeed(rd)
	for b := f.next(); b != nil; b = f.next() {
		o.tokens += int64(b.Input.Rows())
		if o.err == nil {
			if err := guard(func() error { return p.Add(ctx, b) }); err != nil {
				fail(s.pipelineError(ctx, q, err))
			}
		}
		b.Record.Release()
		if ctx.Err() != nil {
			f.stop()
		}
	}
	if err := f.wait(); err != nil {
		fail(s.inputError(err))
	} else if !f.stopped {
		o.consumed = true
	}
	// The rest of the reply follows without waiting on anything: its small writes go out
	// together (replyQueue.hold), at the flush below and at the end of the status stream.
	q.hold()
	if o.err == nil {
		if err := guard(func() error { return p.Close(ctx) }); err != nil {
			fail(s.pipelineError(ctx, q, err))
		}
	}
	if stats && o.err == nil {
		rec := papoio.PartialsRecord(s.cfg.Mem, sink.Partials())
		err := w.Write(rec)
		rec.Release()
		if err != nil {
			fail(&requestError{kind: KindClientGone, err: err})
			return
		}
	}
	if err := w.Close(); err != nil { // the end-of-stream marker
		fail(&requestError{kind: KindClientGone, err: err})
		return
	}
	if err := q.flush(); err != nil {
		fail(&requestError{kind: KindClientGone, err: err})
		return
	}
	// The results of every answered step have reached the connection: commit them.
	if req.kind == Reweight && rw != nil && len(o.steps) > 0 && ctx.Err() == nil {
		if err := rw.Commit(); err != nil {
			fail(&requestError{kind: KindInternal, err: fmt.Errorf("run %s: committing the state: %w", req.runID, err)})
			return
		}
		o.committed = true
		o.lastStep = lastStep(rw)
	}
}

// pipelineError classifies an error of the run pipeline.
func (s *Server) pipelineError(ctx context.Context, q *replyQueue, err error) error {
	var he *papo.HistoryError
	var re *requestError
	switch {
	case errors.As(err, &re):
		return err // classified already (a recovered panic)
	case errors.Is(err, polarity.ErrInternal):
		return &requestError{kind: KindInternal, err: err}
	case ctx.Err() != nil:
		return &requestError{kind: KindShutdown, err: errors.New("the server is shutting down: the request was stopped and its run state is unchanged")}
	case q.failed():
		return &requestError{kind: KindClientGone, err: err}
	case errors.As(err, &he):
		return &requestError{kind: KindState, err: err}
	}
	return &requestError{kind: KindInput, err: err}
}

// statusSchema is the status stream's schema: the per-step summary table with the outcome in
// its metadata.
func (s *Server) statusSchema(o *outcome) *arrow.Schema {
	kv := map[string]string{KeyStatus: "ok", KeyEngine: s.cfg.Engine.Name(), KeyTokens: strconv.FormatInt(o.tokens, 10),
		KeySteps: strconv.Itoa(len(o.steps)), KeyCommitted: strconv.FormatBool(o.committed)}
	if o.req != nil && o.req.runID != "" && o.req.kind != Analyze {
		kv[KeyRunID] = o.req.runID
		kv[KeyLastStep] = o.lastStep
	}
	if o.err != nil {
		kv[KeyStatus] = "error"
		kv[KeyErrorKind] = string(o.kind())
		kv[KeyError] = o.err.Error()
	}
	if len(o.rollbacks) > 0 {
		kv[KeyRollback] = strings.Join(o.rollbacks, "; ")
	}
	md := arrow.MetadataFrom(kv)
	return arrow.NewSchema(papoio.SummarySchema().Fields(), &md)
}

func (s *Server) writeStatus(q *replyQueue, o *outcome) error {
	schema := s.statusSchema(o)
	w, err := papoio.NewWriter(q, "status", papoio.FormatIPCStream, schema, s.cfg.Mem)
	if err != nil {
		return err
	}
	defer w.Abort()
	if len(o.steps) > 0 {
		rec := papoio.SummaryRecord(s.cfg.Mem, o.steps)
		withMeta := array.NewRecord(schema, rec.Columns(), rec.NumRows())
		rec.Release()
		err := w.Write(withMeta)
		withMeta.Release()
		if err != nil {
			return err
		}
	}
	return w.Close()
}

package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/internal/testinput"
	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/papo"
	"github.com/entropy-polarity/papo/polarity"
)

const testToken = "s3cret-token"

// startServer serves cfg on a unix socket in a fresh directory and returns its path.
func startServer(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.Engine == nil {
		cfg.Engine = polarity.NewCPU(0)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "papo.sock")
	l, err := Listen(Address{Network: "unix", Addr: sock}, false)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, sock
}

// reply is what a client read back for one request.
type reply struct {
	data   []byte // the data stream's bytes, as sent
	rows   int64
	status map[string]string
}

// client is one connection.
type client struct {
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, sock string) *client {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{c: c, br: bufio.NewReader(c)}
}

// do writes req (concurrently with reading, as a client must) and reads the two reply streams.
func (c *client) do(req []byte) (*reply, error) { return c.doWith(req) }

func (c *client) doWith(req []byte) (*reply, error) {
	if req != nil {
		go c.c.Write(req)
	}
	var data bytes.Buffer
	r, err := ipc.NewReader(io.TeeReader(c.br, &data))
	if err != nil {
		return nil, fmt.Errorf("data stream: %w", err)
	}
	rep := &reply{}
	for r.Next() {
		rep.rows += r.RecordBatch().NumRows()
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("data stream: %w", err)
	}
	r.Release()
	rep.data = data.Bytes()
	s, err := ipc.NewReader(c.br)
	if err != nil {
		return nil, fmt.Errorf("status stream: %w", err)
	}
	for s.Next() {
	}
	rep.status = map[string]string{}
	md := s.Schema().Metadata()
	for i, k := range md.Keys() {
		rep.status[k] = md.Values()[i]
	}
	s.Release()
	return rep, nil
}

func withMeta(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// input is a request of 3 steps of 20 rows at V = 1000, in batches of 16 rows (batches span
// steps), with metadata md.
func input(t *testing.T, seed uint64, md map[string]string) []byte {
	t.Helper()
	b, err := testinput.Stream(testinput.Spec{V: 1000, Steps: testinput.StepRows(20, 0, 1, 2), Batches: []int{16, 16, 16, 12},
		Seed: seed, Meta: md})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantStatus(t *testing.T, rep *reply, status, kind string) {
	t.Helper()
	if rep.status[KeyStatus] != status || rep.status[KeyErrorKind] != kind {
		t.Fatalf("status %q kind %q (%s); want %q %q", rep.status[KeyStatus], rep.status[KeyErrorKind],
			rep.status[KeyError], status, kind)
	}
}

// TestRequests: analyze without any request metadata (the smallest client), reweight with a
// run id, several requests on one connection, a re-sent step rolling back to the same
// weights, an explicit rollback, and errors that keep the connection usable.
func TestRequests(t *testing.T) {
	stateDir := t.TempDir()
	_, sock := startServer(t, Config{StateDir: stateDir})
	c := dial(t, sock)
	plain, err := c.do(input(t, 1, nil))
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, plain, "ok", "")
	if plain.rows != 60 || plain.status[KeySteps] != "3" || plain.status[KeyEngine] != "cpu" {
		t.Fatalf("analyze: %d rows, status %v", plain.rows, plain.status)
	}
	rw := input(t, 1, withMeta(KeyRequest, Reweight, KeyRunID, "run-a"))
	first, err := c.do(rw)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, first, "ok", "")
	if first.status[KeyCommitted] != "true" || first.status[KeyLastStep] != "2" || first.status[KeyRollback] != "" {
		t.Fatalf("reweight: status %v", first.status)
	}
	again, err := c.do(rw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(again.status[KeyRollback], "step 0 comes again") || !bytes.Equal(again.data, first.data) {
		t.Fatalf("re-sent steps: rollback %q, same output %v", again.status[KeyRollback], bytes.Equal(again.data, first.data))
	}
	// An explicit rollback to step 1, then steps 1 and 2 again give the same weights as before.
	md := arrow.MetadataFrom(withMeta(KeyRequest, Rollback, KeyRunID, "run-a", KeyRollbackTo, "1"))
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(arrow.NewSchema(nil, &md)))
	w.Close()
	rb, err := c.do(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, rb, "ok", "")
	if rb.status[KeyLastStep] != "0" || !strings.Contains(rb.status[KeyRollback], "forgetting 2") {
		t.Fatalf("rollback: status %v", rb.status)
	}
	// A rollback of a run that has no state is refused and creates nothing; a refused reweight
	// leaves no lock file behind.
	rollbackOf := func(run string) []byte {
		md := arrow.MetadataFrom(withMeta(KeyRequest, Rollback, KeyRunID, run, KeyRollbackTo, "1"))
		var buf bytes.Buffer
		w := ipc.NewWriter(&buf, ipc.WithSchema(arrow.NewSchema(nil, &md)))
		w.Close()
		return buf.Bytes()
	}
	unknown, err := c.do(rollbackOf("never-ran"))
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, unknown, "error", string(KindState))
	nanFirst, err := testinput.Stream(testinput.Spec{V: 1000, Steps: testinput.StepRows(20, 0, 1), Batches: []int{40}, Seed: 1,
		Meta: withMeta(KeyRequest, Reweight, KeyRunID, "never-ran"),
		Edit: func(c *papoio.InputColumns) { c.Batch.Logits.F32[3*1000] = float32(math.NaN()) }})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := c.do(nanFirst); err != nil || rep.status[KeyErrorKind] != string(KindInput) {
		t.Fatalf("a reweight with a NaN in its first step: %v, %v", err, rep)
	}
	if matches, _ := filepath.Glob(filepath.Join(stateDir, "never-ran*")); len(matches) != 0 {
		t.Fatalf("a rollback of an unknown run and a refused reweight left %v", matches)
	}
	// Errors that leave the connection at a request boundary.
	for _, tc := range []struct {
		name string
		md   map[string]string
		kind string
	}{
		{"unknown request kind", withMeta(KeyRequest, "compute"), string(KindRequest)},
		{"reweight without run id", withMeta(KeyRequest, Reweight), string(KindRequest)},
		{"bad run id", withMeta(KeyRequest, Reweight, KeyRunID, "../etc"), string(KindRequest)},
		{"bad config", withMeta(KeyRequest, Reweight, KeyRunID, "run-b", KeyConfig, `{"lambda": 7}`), string(KindRequest)},
		{"unknown config key", withMeta(KeyRequest, Reweight, KeyRunID, "run-b", KeyConfig, `{"lamda": 0.1}`), string(KindRequest)},
		{"other parameters than the run's", withMeta(KeyRequest, Reweight, KeyRunID, "run-a", KeyConfig, `{"lambda": 0.3}`), string(KindState)},
		// The schema breaks the input contract: the stream is read to its end and dropped.
		{"papo.temperature=-1", withMeta("papo.temperature", "-1"), string(KindInput)},
		{"papo.clip_low=-0.2", withMeta("papo.clip_low", "-0.2"), string(KindInput)},
	} {
		rep, err := c.do(input(t, 1, tc.md))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		wantStatus(t, rep, "error", tc.kind)
	}
	// A NaN logit in step 2 (row 45, batch 2): step 0, complete when batch 1 was computed, is
	// answered and committed; the error names the row; the connection goes on.
	bad, err := testinput.Stream(testinput.Spec{V: 1000, Steps: testinput.StepRows(20, 0, 1, 2), Batches: []int{20, 20, 20}, Seed: 1,
		Meta: withMeta(KeyRequest, Reweight, KeyRunID, "run-c"),
		Edit: func(c *papoio.InputColumns) { c.Batch.Logits.F32[45*1000+3] = float32(math.NaN()) }})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := c.do(bad)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, rep, "error", string(KindInput))
	if !strings.Contains(rep.status[KeyError], "row 45 of the input") || rep.rows != 20 || rep.status[KeyLastStep] != "0" {
		t.Fatalf("NaN in row 45: %d rows answered, status %v", rep.rows, rep.status)
	}
	if rep, err := c.do(input(t, 1, nil)); err != nil || !bytes.Equal(rep.data, plain.data) {
		t.Fatalf("the connection after the errors: err %v", err)
	}
}

// TestBadClients: each bad client gets a clear error (or is dropped) while a good client
// streams on other connections; the good client's replies are byte-identical to its reply on an
// idle server, and the run states are intact.
func TestBadClients(t *testing.T) {
	stateDir := t.TempDir()
	_, sock := startServer(t, Config{StateDir: stateDir, Token: testToken, MaxBatchBytes: 1 << 20})
	good := input(t, 2, withMeta(KeyToken, testToken, KeyRequest, Reweight, KeyRunID, "good"))
	alone, err := dial(t, sock).do(good)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, alone, "ok", "")

	valid := input(t, 3, withMeta(KeyToken, testToken))
	wrongSchema := func() []byte {
		md := arrow.MetadataFrom(withMeta(KeyToken, testToken))
		schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int32}}, &md)
		b := array.NewInt32Builder(memory.DefaultAllocator)
		b.AppendValues([]int32{1, 2, 3}, nil)
		col := b.NewArray()
		rec := array.NewRecord(schema, []arrow.Array{col}, 3)
		var buf bytes.Buffer
		w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
		w.Write(rec)
		w.Close()
		return buf.Bytes()
	}()
	big, err := testinput.Stream(testinput.Spec{V: 20000, Steps: testinput.StepRows(16, 0), Batches: []int{16}, Seed: 4,
		Meta: withMeta(KeyToken, testToken)}) // one batch of 1.3 MB
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		req  []byte
		hang bool   // the client sends this and then disconnects
		kind string // the error kind of the reply
	}{
		{name: "garbage", req: []byte("GET / HTTP/1.1\r\nHost: papo\r\n\r\n"), kind: string(KindInput)},
		{name: "IPC file", req: []byte("ARROW1\x00\x00junk"), kind: string(KindInput)},
		{name: "truncated stream", req: valid[:len(valid)/2], hang: true},
		{name: "truncated, half-closed", req: valid[:len(valid)/3], kind: string(KindInput)},
		{name: "without its end-of-stream marker, half-closed", req: valid[:len(valid)-8], kind: string(KindInput)},
		{name: "wrong schema", req: wrongSchema, kind: string(KindInput)},
		{name: "batch over --max-batch-bytes", req: big, kind: string(KindTooLarge)},
		{name: "schema over MaxSchemaBytes", req: input(t, 3, withMeta(KeyToken, testToken, "x", strings.Repeat("x", MaxSchemaBytes))),
			kind: string(KindTooLarge)},
		{name: "missing token", req: input(t, 3, nil), kind: string(KindAuth)},
		{name: "missing token, schema breaking the contract", req: input(t, 3, withMeta("papo.temperature", "-1")), kind: string(KindAuth)},
		{name: "wrong token", req: input(t, 3, withMeta(KeyToken, "guess")), kind: string(KindAuth)},
		{name: "wrong token for a run", req: input(t, 3, withMeta(KeyToken, "guess", KeyRequest, Reweight, KeyRunID, "good")), kind: string(KindAuth)},
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	goodErr := make(chan error, 1)
	wg.Go(func() {
		c := dial(t, sock)
		for n := 0; ; n++ {
			select {
			case <-stop:
				goodErr <- nil
				return
			default:
			}
			rep, err := c.do(good)
			if err != nil {
				goodErr <- err
				return
			}
			if !bytes.Equal(rep.data, alone.data) || rep.status[KeyStatus] != "ok" {
				goodErr <- fmt.Errorf("good request %d: reply differs from the idle server's (status %v)", n, rep.status)
				return
			}
		}
	})
	for round := 0; round < 3; round++ {
		for _, b := range bad {
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			if b.hang {
				c.Write(b.req)
				c.Close()
				continue
			}
			cl := &client{c: c, br: bufio.NewReader(c)}
			go func() {
				c.Write(b.req)
				c.(*net.UnixConn).CloseWrite()
			}()
			rep, err := cl.readReply()
			c.Close()
			if err != nil {
				t.Fatalf("%s: %v", b.name, err)
			}
			if rep.status[KeyStatus] != "error" || rep.status[KeyErrorKind] != b.kind || rep.status[KeyError] == "" {
				t.Fatalf("%s: status %v; want error kind %s", b.name, rep.status, b.kind)
			}
			if strings.Contains(rep.status[KeyError], testToken) {
				t.Fatalf("%s: the error message shows the token", b.name)
			}
		}
	}
	close(stop)
	wg.Wait()
	if err := <-goodErr; err != nil {
		t.Fatal(err)
	}
	// The good run's state holds its steps; the bad clients left no state behind.
	entries, _ := os.ReadDir(stateDir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "good.json good.json.lock" {
		t.Fatalf("state directory holds %v; want only the good run's state", names)
	}
	r, err := papo.NewReweighter(papo.DefaultConfig(), papo.WithStateFile(filepath.Join(stateDir, "good.json")),
		papo.WithSignal(polarity.DefaultParams()))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if last, ok := r.LastStep(); !ok || last != 2 {
		t.Fatalf("good run's last step %d (%v); want 2", last, ok)
	}
}

// readReply reads one reply without sending anything.
func (c *client) readReply() (*reply, error) { return c.doWith(nil) }

// TestShutdownDrains: Shutdown lets a request in progress finish and commit, refuses new
// connections, and closes idle ones.
func TestShutdownDrains(t *testing.T) {
	stateDir := t.TempDir()
	srv, sock := startServer(t, Config{StateDir: stateDir})
	idle := dial(t, sock)
	req := input(t, 5, withMeta(KeyRequest, Reweight, KeyRunID, "drain"))
	busy := dial(t, sock)
	busy.c.Write(req[:len(req)/2]) // in progress: half the request is there
	time.Sleep(100 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	time.Sleep(100 * time.Millisecond)
	if _, err := net.Dial("unix", sock); err == nil {
		t.Fatal("a new connection was accepted while draining")
	}
	if _, err := idle.br.ReadByte(); err != io.EOF {
		t.Fatalf("the idle connection was not closed: %v", err)
	}
	rep, err := busy.do(req[len(req)/2:])
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, rep, "ok", "")
	if rep.status[KeyCommitted] != "true" {
		t.Fatalf("the drained request was not committed: %v", rep.status)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestStatsRequests: a stats request answers the rank's partials table; a reweight request
// with those as papo.global_stats (one rank: its own are the global ones) gives the weights of a
// plain reweight; a step missing from the table is an error.
func TestStatsRequests(t *testing.T) {
	_, sock := startServer(t, Config{StateDir: t.TempDir()})
	c := dial(t, sock)
	rep, err := c.do(input(t, 6, withMeta(KeyRequest, Stats)))
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, rep, "ok", "")
	r, err := ipc.NewReader(bytes.NewReader(rep.data))
	if err != nil {
		t.Fatal(err)
	}
	var rows []papoio.StepPartials
	for r.Next() {
		rec := r.RecordBatch()
		col := func(i int) arrow.Array { return rec.Column(i) }
		for k := 0; k < int(rec.NumRows()); k++ {
			rows = append(rows, papoio.StepPartials{Step: col(0).(*array.Int64).Value(k), EntropyTokens: col(1).(*array.Int64).Value(k),
				EntropySum: col(2).(*array.Float64).Value(k), WeightedTokens: col(3).(*array.Int64).Value(k),
				PolaritySum: col(4).(*array.Float64).Value(k), PolaritySum2: col(5).(*array.Float64).Value(k),
				AbsAdvantage: col(6).(*array.Float64).Value(k), AbsAdvantageSign: col(7).(*array.Float64).Value(k)})
		}
	}
	r.Release()
	if len(rows) != 3 || rows[2].Step != 2 || rows[0].EntropyTokens == 0 {
		t.Fatalf("stats reply: %+v", rows)
	}
	global, _ := json.Marshal(rows)
	conf := `{"phase":{"mode":"target","target_entropy":3}}`
	plain, err := c.do(input(t, 6, withMeta(KeyRequest, Reweight, KeyRunID, "plain", KeyConfig, conf)))
	if err != nil {
		t.Fatal(err)
	}
	withGlobal, err := c.do(input(t, 6, withMeta(KeyRequest, Reweight, KeyRunID, "global", KeyConfig, conf,
		KeyGlobalStats, string(global))))
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, withGlobal, "ok", "")
	// The data streams differ only in the run id of their metadata: compare the weights.
	weights := func(data []byte) []float32 {
		r, err := ipc.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Release()
		var w []float32
		for r.Next() {
			rec := r.RecordBatch()
			w = append(w, rec.Column(rec.Schema().FieldIndices(papoio.ColWeight)[0]).(*array.Float32).Float32Values()...)
		}
		return w
	}
	a, b := weights(plain.data), weights(withGlobal.data)
	if len(a) != 60 || !slices.Equal(a, b) || slices.Equal(a, make([]float32, 60)) {
		t.Fatalf("weights with the global table differ from a plain reweight (%d, %d)", len(a), len(b))
	}
	// Counts as integral floats (an all-reduce's float64, pandas) are those integers.
	asFloats := floatCounts(t, rows)
	floats, err := c.do(input(t, 6, withMeta(KeyRequest, Reweight, KeyRunID, "floats", KeyConfig, conf, KeyGlobalStats, asFloats)))
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, floats, "ok", "")
	if !slices.Equal(weights(floats.data), a) {
		t.Fatalf("counts written as 59.0: other weights")
	}
	for _, tc := range []struct{ name, global, want string }{
		{"a step twice", string(global[:len(global)-1]) + "," + string(global[1:]), "step 0 is listed twice (rows 0 and 3)"},
		{"a count that is not whole", strings.Replace(asFloats, ".0,", ".5,", 1), "step 0: entropy_tokens"},
	} {
		rep, err := c.do(input(t, 6, withMeta(KeyRequest, Reweight, KeyRunID, "bad-global", KeyGlobalStats, tc.global)))
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, rep, "error", string(KindRequest))
		if !strings.Contains(rep.status[KeyError], tc.want) {
			t.Fatalf("%s: error %q, want %q", tc.name, rep.status[KeyError], tc.want)
		}
	}
	first, _ := json.Marshal(rows[:1])
	bad, err := c.do(input(t, 6, withMeta(KeyRequest, Reweight, KeyRunID, "global2", KeyGlobalStats, string(first))))
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, bad, "error", string(KindInput))
	if !strings.Contains(bad.status[KeyError], "step 1 is not in the global statistics") {
		t.Fatalf("a step missing from the global table: %v", bad.status)
	}
}

// floatCounts writes a partials table as JSON with its step and counts as floats (3.0).
func floatCounts(t *testing.T, rows []papoio.StepPartials) string {
	t.Helper()
	var objs []map[string]any
	for _, r := range rows {
		objs = append(objs, map[string]any{"step": json.Number(fmt.Sprintf("%d.0", r.Step)),
			"entropy_tokens": json.Number(fmt.Sprintf("%d.0", r.EntropyTokens)), "entropy_sum": r.EntropySum,
			"weighted_tokens": json.Number(fmt.Sprintf("%d.0", r.WeightedTokens)), "polarity_sum": r.PolaritySum,
			"polarity_sum2": r.PolaritySum2, "abs_advantage_sum": r.AbsAdvantage, "abs_advantage_sign_sum": r.AbsAdvantageSign})
	}
	b, err := json.Marshal(objs)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// testinputStream is one batch of rows × v float32 logits.
func testinputStream(t *testing.T, rows, v int) ([]byte, error) {
	t.Helper()
	return testinput.Stream(testinput.Spec{V: v, Steps: testinput.StepRows(rows, 0), Batches: []int{rows}, Seed: 9})
}

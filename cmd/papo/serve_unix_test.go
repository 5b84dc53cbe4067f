//go:build unix

package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/internal/testcert"
	"github.com/entropy-polarity/papo/internal/testchild"
	"github.com/entropy-polarity/papo/internal/testinput"
	"github.com/entropy-polarity/papo/serve"
)

// testServeToken is the PAPO_TOKEN of the servers these tests start on TCP (which requires
// one unless --insecure-loopback), tokenEnv its environment entry for the server and the
// clients.
const (
	testServeToken = "tok-test"
	tokenEnv       = "PAPO_TOKEN=" + testServeToken
)

// serverProc is `papo serve` in a child process (this test binary in papo mode).
type serverProc struct {
	cmd     *exec.Cmd
	addrs   []string
	mu      sync.Mutex
	log     bytes.Buffer
	done    chan struct{} // closed when the process has exited, with exitErr set
	exitErr error
}

func (s *serverProc) stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// startServe starts papo serve with args and env, and waits for its start line.
func startServe(t *testing.T, env []string, args ...string) *serverProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--device", "cpu"}, args...)...)
	cmd.Env = testchild.Env(append([]string{cliChildEnv + "=1"}, env...)...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &serverProc{cmd: cmd, done: make(chan struct{})}
	ready := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if rest, ok := strings.CutPrefix(line, "papo serve: listening on "); ok {
				where, _, _ := strings.Cut(rest, ";")
				ready <- strings.Split(where, ", ")
			}
		}
		close(ready)
	}()
	go func() { s.exitErr = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-s.done
	})
	select {
	case addrs, ok := <-ready:
		if !ok {
			t.Fatalf("papo serve did not start:\n%s", s.stderr())
		}
		s.addrs = addrs
	case <-time.After(30 * time.Second):
		t.Fatalf("papo serve did not start in 30 s:\n%s", s.stderr())
	}
	return s
}

// stop sends SIGTERM and returns the exit code.
func (s *serverProc) stop(t *testing.T) int {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		if ee, ok := s.exitErr.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		return 0
	case <-time.After(30 * time.Second):
		t.Fatalf("papo serve did not stop after SIGTERM:\n%s", s.stderr())
	}
	return -1
}

// nodeClient is the path of examples/node/client.mjs, or a skip (a failure with
// PAPO_REQUIRE_INTEROP=1) where node or its apache-arrow package is missing.
func nodeClient(t *testing.T) string {
	t.Helper()
	dir, _ := filepath.Abs("../../examples/node")
	_, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "node_modules", "apache-arrow"))
	}
	if err != nil {
		msg := fmt.Sprintf("node or examples/node/node_modules (make interop-deps) missing: %v", err)
		if os.Getenv("PAPO_REQUIRE_INTEROP") == "1" {
			t.Fatal(msg + " (PAPO_REQUIRE_INTEROP=1)")
		}
		t.Skip(msg)
	}
	return filepath.Join(dir, "client.mjs")
}

// runNode runs the Node client; it returns the status line of each request and the exit code.
func runNode(t *testing.T, env []string, args ...string) ([]map[string]any, int) {
	t.Helper()
	cmd := exec.Command("node", append([]string{nodeClient(t)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code == 2 {
		t.Fatalf("node client %v: %s", args, errb.String())
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if l == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("node client printed %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines, code
}

// sameOutput checks that got holds want's columns with exactly the same values (batch
// boundaries may differ: a client may re-cut its batches).
func sameOutput(t *testing.T, got, want string) {
	t.Helper()
	gs, g := readStream(t, got)
	ws, w := readStream(t, want)
	column := func(recs []arrow.Record, i int) arrow.Array {
		parts := make([]arrow.Array, len(recs))
		for k, r := range recs {
			parts[k] = r.Column(i)
		}
		c, err := array.Concatenate(parts, memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for i, f := range ws.Fields() {
		idx := gs.FieldIndices(f.Name)
		if len(idx) != 1 {
			t.Fatalf("%s has no column %q", got, f.Name)
		}
		gc, wc := column(g, idx[0]), column(w, i)
		if !array.ApproxEqual(gc, wc, array.WithNaNsEqual(true), array.WithAbsTolerance(0)) {
			t.Fatalf("column %s: %s differs from %s (%d and %d rows)", f.Name, got, want, gc.Len(), wc.Len())
		}
	}
}

// TestServeMatchesAnalyze: the Node client over a real unix socket and a real loopback TCP
// port gets exactly what `papo analyze` and `papo reweight` write, for float32, float16 and
// bfloat16; two requests on one connection; a client that half-closes after its request.
func TestServeMatchesAnalyze(t *testing.T) {
	nodeClient(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "papo.sock")
	srv := startServe(t, []string{tokenEnv}, "--listen", "unix://"+sock, "--listen", "tcp://127.0.0.1:0", "--state-dir", filepath.Join(dir, "states"))
	if len(srv.addrs) != 2 || !strings.HasPrefix(srv.addrs[1], "tcp://127.0.0.1:") {
		t.Fatalf("start line addresses %v", srv.addrs)
	}
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: mode %v, err %v; want 0600", sock, st.Mode().Perm(), err)
	}
	for _, dtype := range []string{"float32", "float16", "bfloat16"} {
		in := filepath.Join(dir, dtype+".arrow")
		mustRun(t, "gen", "-o", in, "--vocab", "3000", "--tokens", "40", "--steps", "3", "--dtype", dtype, "--seed", "11")
		refA := filepath.Join(dir, dtype+"-analyze.arrows")
		mustRun(t, "analyze", in, "-o", refA, "--device", "cpu", "--quiet")
		refR := filepath.Join(dir, dtype+"-reweight.arrows")
		mustRun(t, "reweight", in, "-o", refR, "--state", filepath.Join(dir, dtype+"-state.json"), "--device", "cpu", "--quiet")
		for _, addr := range srv.addrs {
			tag := dtype + "-" + addr[:3]
			gotA, gotA2, gotR := filepath.Join(dir, tag+"-a.arrows"), filepath.Join(dir, tag+"-a2.arrows"), filepath.Join(dir, tag+"-r.arrows")
			lines, code := runNode(t, []string{tokenEnv}, "--connect", addr, "--in", in, "--out", gotA, "--in", in, "--out", gotA2, "--half-close")
			if code != 0 || len(lines) != 2 || lines[1]["papo.status"] != "ok" {
				t.Fatalf("%s analyze: exit %d, %v\n%s", tag, code, lines, srv.stderr())
			}
			sameOutput(t, gotA, refA)
			sameOutput(t, gotA2, refA)
			lines, code = runNode(t, []string{tokenEnv}, "--connect", addr, "--in", in, "--out", gotR, "--batch-rows", "7",
				"--meta", "papo.request=reweight", "--meta", "papo.run_id="+tag)
			if code != 0 || lines[0]["papo.committed"] != "true" {
				t.Fatalf("%s reweight: exit %d, %v", tag, code, lines)
			}
			sameOutput(t, gotR, refR)
		}
	}
	if code := srv.stop(t); code != 0 {
		t.Fatalf("papo serve exited %d after SIGTERM:\n%s", code, srv.stderr())
	}
	if _, err := os.Stat(sock); err == nil {
		t.Errorf("the socket %s is left after the server stopped", sock)
	}
}

// TestServeRuns: two runs interleaved on one server keep separate states; a re-sent step rolls
// back and gives the same weights as the first time.
func TestServeRuns(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, []string{tokenEnv}, "--listen", "tcp://127.0.0.1:0", "--state-dir", filepath.Join(dir, "states"))
	addr := srv.addrs[0]
	in := filepath.Join(dir, "in.arrow")
	mustRun(t, "gen", "-o", in, "--vocab", "2000", "--tokens", "30", "--steps", "4", "--seed", "5")
	refA, refB := filepath.Join(dir, "a.arrows"), filepath.Join(dir, "b.arrows")
	mustRun(t, "reweight", in, "-o", refA, "--state", filepath.Join(dir, "a.json"), "--device", "cpu", "--quiet")
	mustRun(t, "reweight", in, "-o", refB, "--state", filepath.Join(dir, "b.json"), "--device", "cpu", "--quiet",
		"--lambda", "0.3", "--phase-mode", "target", "--target-entropy", "1")
	confB := `papo.config={"lambda":0.3,"phase":{"mode":"target","target_entropy":1}}`
	var got []string
	for i, run := range []string{"A", "B", "A", "B"} {
		out := filepath.Join(dir, fmt.Sprintf("got-%d.arrows", i))
		args := []string{"--connect", addr, "--in", in, "--out", out, "--meta", "papo.request=reweight", "--meta", "papo.run_id=run-" + run}
		if run == "B" {
			args = append(args, "--meta", confB)
		}
		lines, code := runNode(t, []string{tokenEnv}, args...)
		if code != 0 {
			t.Fatalf("request %d (run %s): exit %d %v", i, run, code, lines)
		}
		rb, _ := lines[0]["papo.rollback"].(string)
		if (i >= 2) != strings.Contains(rb, "step 0 comes again") {
			t.Fatalf("request %d (run %s): rollback %q", i, run, rb)
		}
		got = append(got, out)
	}
	sameOutput(t, got[0], refA)
	sameOutput(t, got[2], refA)
	sameOutput(t, got[1], refB)
	sameOutput(t, got[3], refB)
	if !strings.Contains(srv.stderr(), "msg=rollback") {
		t.Errorf("the rollback is not logged:\n%s", srv.stderr())
	}
}

// TestServeToken: with --allow-remote (on loopback here) and PAPO_TOKEN, a request without the
// token or with a wrong one is refused and logged; the right one is served.
func TestServeToken(t *testing.T) {
	var out, errb bytes.Buffer
	t.Setenv("PAPO_TOKEN", "")
	cert := testcert.New(t)
	refused := []struct {
		name, token string
		args        []string
		code        int
		want        string
	}{
		{"loopback TCP without a token", "", []string{"--listen", "tcp://127.0.0.1:0"}, 2, "--insecure-loopback"},
		{"Flight without a token", "", []string{"--listen", "stdio", "--flight", "127.0.0.1:0"}, 2, "--insecure-loopback"},
		{"--allow-remote without a token", "", []string{"--listen", "tcp://127.0.0.1:0", "--allow-remote"}, 2, "PAPO_TOKEN"},
		{"--insecure-loopback with --allow-remote", "t", []string{"--listen", "tcp://127.0.0.1:0", "--insecure-loopback", "--allow-remote"}, 2, "exclude each other"},
		{"--allow-remote without TLS", "t", []string{"--listen", "tcp://127.0.0.1:0", "--allow-remote"}, 2, "--tls-cert"},
		{"--tls-cert alone", "t", []string{"--listen", "tcp://127.0.0.1:0", "--tls-cert", cert.CertFile}, 2, "go together"},
		{"a key that does not match", "t", []string{"--listen", "tcp://127.0.0.1:0", "--tls-cert", cert.CertFile, "--tls-key", cert.CertFile}, 2, "--tls-key"},
		{"a remote address without --allow-remote", "t", []string{"--listen", "tcp://0.0.0.0:0"}, 1, "not a loopback address"},
		{"Flight on a remote address without --allow-remote", "t", []string{"--listen", "stdio", "--flight", "0.0.0.0:0"}, 1, "not a loopback address"},
	}
	for _, tc := range refused {
		t.Setenv("PAPO_TOKEN", tc.token)
		errb.Reset()
		if code := execute(append([]string{"serve"}, tc.args...), nil, &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%s: exit %d, %q; want exit %d naming %q", tc.name, code, errb.String(), tc.code, tc.want)
		}
	}

	dir := t.TempDir()
	srv := startServe(t, []string{"PAPO_TOKEN=tok-123"}, "--listen", "tcp://127.0.0.1:0")
	req, err := testinput.Stream(testinput.Spec{V: 500, Steps: testinput.StepRows(8, 0), Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	withToken := func(token string) []byte {
		b, err := testinput.Stream(testinput.Spec{V: 500, Steps: testinput.StepRows(8, 0), Seed: 1,
			Meta: map[string]string{serve.KeyToken: token}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name   string
		req    []byte
		status string
	}{{"no token", req, "error"}, {"wrong token", withToken("tok-12"), "error"}, {"the token", withToken("tok-123"), "ok"}} {
		st, err := goRequest(srv.addrs[0], tc.req, 1, 0, nil)
		if err != nil || st[serve.KeyStatus] != tc.status || tc.status == "error" && st[serve.KeyErrorKind] != "auth" {
			t.Fatalf("%s: %v, %v", tc.name, st, err)
		}
	}
	if n := strings.Count(srv.stderr(), "request refused"); n != 2 {
		t.Fatalf("%d refusals logged, want 2:\n%s", n, srv.stderr())
	}
	in := filepath.Join(dir, "in.arrow")
	mustRun(t, "gen", "-o", in, "--vocab", "500", "--tokens", "8", "--steps", "1")
	if _, err := exec.LookPath("node"); err == nil {
		if _, err := os.Stat("../../examples/node/node_modules/apache-arrow"); err == nil {
			lines, _ := runNode(t, []string{"PAPO_TOKEN=tok-123"}, "--connect", srv.addrs[0], "--in", in)
			if len(lines) != 1 || lines[0]["papo.status"] != "ok" {
				t.Fatalf("the node client with the token: %v", lines)
			}
		}
	}

	// --insecure-loopback: loopback TCP without a token, as before.
	open := startServe(t, []string{"PAPO_TOKEN="}, "--listen", "tcp://127.0.0.1:0", "--insecure-loopback")
	if st, err := goRequest(open.addrs[0], req, 1, 0, nil); err != nil || st[serve.KeyStatus] != "ok" {
		t.Fatalf("--insecure-loopback without a token: %v, %v", st, err)
	}

	// --allow-remote with TLS (here on loopback): a client that trusts the certificate is
	// served; a plaintext client gets no reply.
	tlsSrv := startServe(t, []string{"PAPO_TOKEN=tok-123"}, "--listen", "tcp://127.0.0.1:0", "--allow-remote",
		"--tls-cert", cert.CertFile, "--tls-key", cert.KeyFile, "--flight", "127.0.0.1:0")
	if len(tlsSrv.addrs) != 2 || !strings.HasPrefix(tlsSrv.addrs[0], "tls://127.0.0.1:") || !strings.HasPrefix(tlsSrv.addrs[1], "flight grpcs://") {
		t.Fatalf("start line addresses %v", tlsSrv.addrs)
	}
	addr := strings.TrimPrefix(tlsSrv.addrs[0], "tls://")
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: cert.Pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := goRequestConn(tc, withToken("tok-123"), 1, 0, nil); err != nil || st[serve.KeyStatus] != "ok" {
		t.Fatalf("over TLS: %v, %v", st, err)
	}
	if st, err := goRequest("tcp://"+addr, withToken("tok-123"), 1, 0, nil); err == nil {
		t.Fatalf("a plaintext client of the TLS listener got a reply: %v", st)
	}
	if _, err := os.Stat("../../examples/node/node_modules/apache-arrow"); err == nil {
		lines, _ := runNode(t, []string{"PAPO_TOKEN=tok-123", "PAPO_TLS_CA=" + cert.CertFile}, "--connect", tlsSrv.addrs[0], "--in", in)
		if len(lines) != 1 || lines[0]["papo.status"] != "ok" {
			t.Fatalf("the node client over TLS: %v", lines)
		}
	}
	if code := tlsSrv.stop(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, tlsSrv.stderr())
	}
}

// goRequest writes req to a new connection to addr in pieces (pause between them) and returns
// the reply's status metadata.
func goRequest(addr string, req []byte, pieces int, pause time.Duration, mid func()) (map[string]string, error) {
	network, a := "unix", strings.TrimPrefix(addr, "unix://")
	if strings.HasPrefix(addr, "tcp://") {
		network, a = "tcp", strings.TrimPrefix(addr, "tcp://")
	}
	c, err := net.Dial(network, a)
	if err != nil {
		return nil, err
	}
	return goRequestConn(c, req, pieces, pause, mid)
}

// goRequestConn is goRequest on the connection c, which it closes.
func goRequestConn(c net.Conn, req []byte, pieces int, pause time.Duration, mid func()) (map[string]string, error) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second)) // a stuck test fails instead of hanging
	go func() {
		step := (len(req) + pieces - 1) / pieces
		for lo := 0; lo < len(req); lo += step {
			if _, err := c.Write(req[lo:min(lo+step, len(req))]); err != nil {
				return
			}
			if lo == 0 && mid != nil {
				mid()
			}
			time.Sleep(pause)
		}
	}()
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		r, err := ipc.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("reply stream %d: %w", i, err)
		}
		for r.Next() {
		}
		if err := r.Err(); err != nil {
			return nil, err
		}
		if i == 1 {
			md := r.Schema().Metadata()
			st := map[string]string{}
			for j, k := range md.Keys() {
				st[k] = md.Values()[j]
			}
			return st, nil
		}
		r.Release()
	}
	return nil, io.ErrUnexpectedEOF
}

// TestServeSIGTERM: SIGTERM during a request lets it finish and commit, then the server exits 0;
// a second SIGTERM stops at once, and the run state is as before the request.
func TestServeSIGTERM(t *testing.T) {
	dir := t.TempDir()
	states := filepath.Join(dir, "states")
	req, err := testinput.Stream(testinput.Spec{V: 4000, Steps: testinput.StepRows(32, 0, 1, 2, 3), Batches: []int{16, 16, 16, 16, 16, 16, 16, 16},
		Seed: 9, Meta: map[string]string{serve.KeyRequest: serve.Reweight, serve.KeyRunID: "sig", serve.KeyToken: testServeToken}})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("drain", func(t *testing.T) {
		srv := startServe(t, []string{tokenEnv}, "--listen", "tcp://127.0.0.1:0", "--state-dir", states)
		st, err := goRequest(srv.addrs[0], req, 8, 100*time.Millisecond, func() {
			time.Sleep(50 * time.Millisecond) // the server has begun the request
			srv.cmd.Process.Signal(syscall.SIGTERM)
		})
		if err != nil || st[serve.KeyStatus] != "ok" || st[serve.KeyCommitted] != "true" || st[serve.KeyLastStep] != "3" {
			t.Fatalf("request during SIGTERM: %v, %v\n%s", st, err, srv.stderr())
		}
		if code := srv.stop(t); code != 0 {
			t.Fatalf("exit %d after draining:\n%s", code, srv.stderr())
		}
	})
	before, err := os.ReadFile(filepath.Join(states, "sig.json"))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("second SIGTERM", func(t *testing.T) {
		srv := startServe(t, []string{tokenEnv}, "--listen", "tcp://127.0.0.1:0", "--state-dir", states)
		start := time.Now()
		// The signals come after 5 of the 8 batches, when steps 0 and 1 have been answered:
		// their results were sent, but the request did not finish, so nothing is committed.
		st, err := goRequest(srv.addrs[0], req, 8, 300*time.Millisecond, func() {
			go func() {
				time.Sleep(4*300*time.Millisecond + 100*time.Millisecond)
				srv.cmd.Process.Signal(syscall.SIGTERM)
				time.Sleep(50 * time.Millisecond)
				srv.cmd.Process.Signal(syscall.SIGTERM)
			}()
		})
		if err == nil && st[serve.KeyStatus] == "ok" {
			t.Fatalf("the request succeeded although the server was stopped at once: %v", st)
		}
		<-srv.done
		if d := time.Since(start); d > 4*time.Second {
			t.Fatalf("the server took %v to stop after the second SIGTERM", d)
		}
		after, _ := os.ReadFile(filepath.Join(states, "sig.json"))
		if !bytes.Equal(after, before) {
			t.Fatalf("the run state changed although its request was stopped")
		}
	})
}

// TestServeDrainStalled: SIGTERM drains within --drain-timeout even when a client stalls in
// the middle of its request: the server exits 0, says the drain timed out, and the stalled
// request's run state is not created.
func TestServeDrainStalled(t *testing.T) {
	states := filepath.Join(t.TempDir(), "states")
	req, err := testinput.Stream(testinput.Spec{V: 4000, Steps: testinput.StepRows(32, 0, 1), Batches: []int{16, 16, 16, 16},
		Seed: 9, Meta: map[string]string{serve.KeyRequest: serve.Reweight, serve.KeyRunID: "stalled", serve.KeyToken: testServeToken}})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, []string{tokenEnv}, "--listen", "tcp://127.0.0.1:0", "--state-dir", states, "--drain-timeout", "1s")
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.addrs[0], "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(req[:len(req)/2]); err != nil { // then nothing more, and the connection stays open
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the server has begun the request
	if code := srv.stop(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM with a stalled client:\n%s", code, srv.stderr())
	}
	if !strings.Contains(srv.stderr(), "the drain timed out") {
		t.Fatalf("the log does not say the drain timed out:\n%s", srv.stderr())
	}
	if _, err := os.Stat(filepath.Join(states, "stalled.json")); err == nil {
		t.Fatal("the stalled request's run state was written")
	}
}

// TestServeDeclaredBodies: 30 clients each send a request's schema and a record batch header
// that declares a body of almost 1 GiB (the server's --max-batch-bytes), then a few bytes, and
// stall. The server's memory grows with the bytes that arrive, not with what was declared: its
// peak RSS stays under 300 MB and its virtual size grows by less than 2 GiB (30 such clients
// reserved 30 GiB, and reached 1.9 GB RSS, when the body was reserved whole).
func TestServeDeclaredBodies(t *testing.T) {
	const clients, declared = 30, 1<<30 - 64
	req, err := testinput.Stream(testinput.Spec{V: 100, Steps: testinput.StepRows(8, 0), Batches: []int{8}, Seed: 1,
		Meta: map[string]string{serve.KeyToken: testServeToken}})
	if err != nil {
		t.Fatal(err)
	}
	head, body := declareBody(t, req, declared)
	srv := startServe(t, []string{tokenEnv}, "--listen", "unix://"+filepath.Join(t.TempDir(), "papo.sock"))
	before, vmBefore := peakRSS(t, srv.cmd.Process.Pid), procStatus(t, srv.cmd.Process.Pid, "VmPeak")
	var conns []net.Conn
	for range clients {
		c, err := net.Dial("unix", strings.TrimPrefix(srv.addrs[0], "unix://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(append(head, body[:64]...)); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	time.Sleep(time.Second) // every connection has read what it was sent
	hwm, vm := peakRSS(t, srv.cmd.Process.Pid), procStatus(t, srv.cmd.Process.Pid, "VmPeak")
	t.Logf("%d clients declaring %d MB each: server peak RSS %d MB (%d MB before them), peak virtual memory %d MB (%d MB before)",
		clients, declared>>20, hwm>>20, before>>20, vm>>20, vmBefore>>20)
	// Resident memory: under 300 MB. Reserved memory: where every body was allocated whole, the
	// 30 GiB showed in the virtual size (and became resident once the heap's pages were reused);
	// growing with the bytes, it grows by 1 MiB a client.
	if hwm > 300<<20 || vm-vmBefore > 2<<30 {
		t.Fatalf("server peak RSS %d MB, virtual memory +%d MB with %d clients declaring 1 GiB bodies; want under 300 MB and +2 GiB",
			hwm>>20, (vm-vmBefore)>>20, clients)
	}
	for _, c := range conns { // the server still answers: a stalled client holds only its own request
		c.Close()
	}
	if st, err := goRequest(srv.addrs[0], req, 1, 0, nil); err != nil || st[serve.KeyStatus] != "ok" {
		t.Fatalf("after the stalled clients: %v, %v", st, err)
	}
}

// declareBody splits an IPC stream of one record batch into its schema message and batch
// header (with the batch's declared body length changed to n) and the batch's real body.
func declareBody(t *testing.T, stream []byte, n int64) (head, body []byte) {
	t.Helper()
	msgLen := func(off int) int {
		return int(int32(uint32(stream[off+4]) | uint32(stream[off+5])<<8 | uint32(stream[off+6])<<16 | uint32(stream[off+7])<<24))
	}
	schemaEnd := 8 + msgLen(0)
	meta := stream[schemaEnd+8 : schemaEnd+8+msgLen(schemaEnd)]
	m := ipc.NewMessage(memory.NewBufferBytes(meta), memory.NewBufferBytes(nil))
	real := m.BodyLen()
	m.Release()
	var old [8]byte
	for i := range old {
		old[i] = byte(real >> (8 * i))
	}
	at := bytes.Index(meta, old[:])
	if at < 0 || bytes.Index(meta[at+1:], old[:]) >= 0 {
		t.Fatalf("the body length %d is not once in the batch's metadata", real)
	}
	head = bytes.Clone(stream[:schemaEnd+8+len(meta)])
	for i := range 8 {
		head[schemaEnd+8+at+i] = byte(n >> (8 * i))
	}
	return head, stream[schemaEnd+8+len(meta) : schemaEnd+8+len(meta)+int(real)]
}

// TestServeLoad: 4 clients each stream 256 float32 rows of V = 151,936 (155 MB, batches of 16
// rows) at once on the 2-core machine. The server never holds a whole request: its peak RSS
// stays under 4 clients × 2 batches of 9.7 MB in flight + 350 MB for the runtime, the reply
// buffers and the Go heap's slack.
func TestServeLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 620 MB")
	}
	const v, rows, clients = 151936, 256, 4
	req, err := testinput.Stream(testinput.Spec{V: v, Steps: testinput.StepRows(64, 0, 1, 2, 3), Batches: repeat(16, rows/16), Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, nil, "--listen", "unix://"+filepath.Join(t.TempDir(), "papo.sock"))
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	start := time.Now()
	for range clients {
		wg.Go(func() {
			st, err := goRequest(srv.addrs[0], req, 64, 0, nil)
			if err == nil && (st[serve.KeyStatus] != "ok" || st[serve.KeyTokens] != strconv.Itoa(rows)) {
				err = fmt.Errorf("status %v", st)
			}
			errs <- err
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	hwm := peakRSS(t, srv.cmd.Process.Pid)
	const bound = clients*2*16*v*4 + 350<<20
	t.Logf("%d clients × %d MB in %.1fs (%.0f tokens/s); server peak RSS %d MB (bound %d MB, one request is %d MB)",
		clients, len(req)>>20, elapsed.Seconds(), float64(clients*rows)/elapsed.Seconds(), hwm>>20, bound>>20, len(req)>>20)
	if hwm > bound && !raceDetector {
		t.Fatalf("server peak RSS %d MB over the bound of %d MB", hwm>>20, bound>>20)
	}
}

func repeat(n, times int) []int {
	out := make([]int, times)
	for i := range out {
		out[i] = n
	}
	return out
}

// peakRSS is a process's peak resident set (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 { t.Helper(); return procStatus(t, pid, "VmHWM") }

// procStatus is the field key of /proc/PID/status (a size in kB), in bytes.
func procStatus(t *testing.T, pid int, key string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, key+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/PID/status", key)
	return 0
}

// TestServeMetricsAndStdio: the Prometheus endpoint counts what was served; --listen stdio
// answers requests on standard input and exits when it ends.
func TestServeMetricsAndStdio(t *testing.T) {
	dir := t.TempDir()
	req, err := testinput.Stream(testinput.Spec{V: 700, Steps: testinput.StepRows(10, 0, 1), Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServe(t, nil, "--listen", "unix://"+filepath.Join(dir, "s.sock"), "--metrics", "127.0.0.1:0")
	if len(srv.addrs) != 2 || !strings.HasPrefix(srv.addrs[1], "metrics http://127.0.0.1:") {
		t.Fatalf("start line addresses %v", srv.addrs)
	}
	for range 2 {
		if st, err := goRequest(srv.addrs[0], req, 1, 0, nil); err != nil || st[serve.KeyStatus] != "ok" {
			t.Fatalf("request: %v %v", st, err)
		}
	}
	if st, err := goRequest(srv.addrs[0], []byte("not arrow at all"), 1, 0, nil); err != nil || st[serve.KeyErrorKind] != "input" {
		t.Fatalf("garbage: %v %v", st, err)
	}
	// A request is counted once its reply is out: poll until the last one shows.
	url := strings.TrimPrefix(srv.addrs[1], "metrics ")
	wants := []string{
		`papo_requests_total{kind="analyze",status="ok"} 2`,
		`papo_requests_total{kind="analyze",status="error"} 1`,
		`papo_request_errors_total{kind="input"} 1`,
		`papo_tokens_total 40`,
		`papo_engine_info{engine="cpu"} 1`,
		`papo_request_duration_seconds_count{kind="analyze"} 3`,
	}
	var missing []string
	var body []byte
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		missing = missing[:0]
		for _, want := range wants {
			if !strings.Contains(string(body), want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(missing) > 0 {
		t.Errorf("metrics lack %q:\n%s", missing, body)
	}

	cmd := exec.Command(os.Args[0], "serve", "--device", "cpu", "--listen", "stdio")
	cmd.Env = testchild.Env(cliChildEnv + "=1")
	cmd.Stdin = bytes.NewReader(append(append([]byte(nil), req...), req...))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("serve --listen stdio: %v\n%s", err, errb.String())
	}
	br := bufio.NewReader(&out)
	for i := 0; i < 4; i++ { // two replies of two streams each
		r, err := ipc.NewReader(br)
		if err != nil {
			t.Fatalf("stdio reply stream %d: %v\n%s", i, err, errb.String())
		}
		rows := int64(0)
		for r.Next() {
			rows += r.RecordBatch().NumRows()
		}
		if st, _ := r.Schema().Metadata().GetValue(serve.KeyStatus); (i%2 == 0 && rows != 20) || (i%2 == 1 && st != "ok") {
			t.Fatalf("stdio reply stream %d: %d rows, status %q", i, rows, st)
		}
		r.Release()
	}
}

//go:build !papofront

package main

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/entropy-polarity/papo/internal/atomicfile"
	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/serve"
)

// rowStatsBatchRows is the request's rows per record batch: about the 16 MiB batches the Python
// client sends (papo_client.protocol.BATCH_BYTES) at the 92 bytes a row-statistics row takes.
const rowStatsBatchRows = 1 << 17

// rowStatsSmall is the token count of the round-trip rows.
const rowStatsSmall = 256

// benchRowStats is `papo bench --row-stats`: row-statistics requests to a papo serve child
// process on a unix socket, end to end (the request written, the reply read to its status), on
// one connection as a trainer keeps it: the whole reply and the reweighted advantage alone
// (papo.columns), analyze and reweight, a 256-token round trip, the logits request of the same
// tokens for comparison, and the server's peak resident memory.
func benchRowStats(env *environment, device string, v, rows, reps int) error {
	dir, err := os.MkdirTemp("", "papo-bench-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logitRows := min(rows, 1<<18)
	stats, err := rowStatsFile(dir, v, rows)
	if err != nil {
		return err
	}
	srv, err := startServer(dir, device)
	if err != nil {
		return err
	}
	defer srv.stop()
	c, err := net.Dial("unix", srv.sock)
	if err != nil {
		return err
	}
	defer c.Close()
	conn := &benchConn{c: c, br: bufio.NewReaderSize(c, 1<<16)}

	fmt.Fprintf(env.stdout, "papo bench --row-stats, %s, %s, papo serve --device %s (engine %s), a child process on a unix socket, one connection\n\n",
		time.Now().UTC().Format("2006-01-02"), cpuModel(), device, srv.engine)
	fmt.Fprintln(env.stdout, "| request | tokens | reply columns | bytes sent | bytes received | seconds (best of "+strconv.Itoa(reps)+") | tokens/s | server peak RSS | server CPU and page faults a request |")
	fmt.Fprintln(env.stdout, "|---|---|---|---|---|---|---|---|---|")
	type variant struct {
		kind    string
		columns string // "" the whole reply
	}
	nSmall := min(rowStatsSmall, rows)
	small, err := requestBytes(stats, nSmall, serve.Analyze, serve.KeyColumns, "reweighted_advantage")
	if err != nil {
		return err
	}
	if _, _, err := conn.request(small); err != nil { // a first request: the server's start-up done
		return fmt.Errorf("warm-up request: %w", err)
	}
	idle, _ := srv.peakRSS()
	var columnsReq []byte
	for _, vt := range []variant{{serve.Analyze, ""}, {serve.Analyze, "reweighted_advantage"}, {serve.Reweight, "reweighted_advantage"}} {
		md := []string{serve.KeyRunID, "bench"}
		if vt.kind == serve.Reweight {
			md = append(md, serve.KeyResetState, "true") // the same step each time: a fresh run
		}
		if vt.columns != "" {
			md = append(md, serve.KeyColumns, vt.columns)
		}
		req, err := requestBytes(stats, rows, vt.kind, md...)
		if err != nil {
			return err
		}
		srv.resetPeak()
		if _, _, err := conn.request(req); err != nil { // the first of a size grows the server's buffers
			return fmt.Errorf("%s request: %w", vt.kind, err)
		}
		cpu0, f0, uerr := srv.usage()
		best, got, err := conn.best(req, reps)
		if err != nil {
			return fmt.Errorf("%s request: %w", vt.kind, err)
		}
		cpu1, f1, uerr1 := srv.usage()
		cols := vt.columns
		if cols == "" {
			cols = "all"
		} else {
			columnsReq = req
		}
		fmt.Fprintf(env.stdout, "| %s, row statistics | %d | %s | %d | %d | %.4f | %.0f | %s | %s |\n", vt.kind, rows, cols, len(req), got,
			best.Seconds(), float64(rows)/best.Seconds(), srv.peakText(), serverUsage(cpu0, cpu1, f0, f1, errors.Join(uerr, uerr1), reps))
	}

	// The round trip of a small request, the way a trainer sends its micro-batches.
	for _, kind := range []string{serve.Analyze, serve.Reweight} {
		md := []string{serve.KeyRunID, "bench-small", serve.KeyColumns, "reweighted_advantage"}
		if kind == serve.Reweight {
			md = append(md, serve.KeyResetState, "true")
		}
		req, err := requestBytes(stats, nSmall, kind, md...)
		if err != nil {
			return err
		}
		n := max(1000, 20*reps) // the median of many: 60 of them moved by 0.1 ms from run to run
		times := make([]time.Duration, n)
		for i := range times {
			if times[i], _, err = conn.request(req); err != nil {
				return fmt.Errorf("%d-token %s request: %w", nSmall, kind, err)
			}
		}
		slices.Sort(times)
		fmt.Fprintf(env.stdout, "| %s, row statistics, round trip | %d | reweighted_advantage | %d | | median %.3f ms, p90 %.3f ms (%d requests) | %.0f | | |\n",
			kind, nSmall, len(req), ms(times[n/2]), ms(times[n*9/10]), n, float64(nSmall)/times[n/2].Seconds())
	}

	// The logits of the same tokens, for comparison.
	logits, err := requestBytes(filepath.Join(dir, "logits.arrows"), logitRows, serve.Analyze)
	if err != nil {
		return err
	}
	srv.resetPeak()
	best, got, err := conn.best(logits, reps)
	if err != nil {
		return fmt.Errorf("logits request: %w", err)
	}
	fmt.Fprintf(env.stdout, "| analyze, logits (V = %d) | %d | all | %d | %d | %.4f | %.0f | %s | |\n", v, logitRows, len(logits), got,
		best.Seconds(), float64(logitRows)/best.Seconds(), srv.peakText())

	// The limit: the same bytes through a unix socket to a reader that drops them.
	alone, err := socketAlone(dir, columnsReq, reps)
	if err != nil {
		return fmt.Errorf("socket alone: %w", err)
	}
	fmt.Fprintf(env.stdout, "| socket alone, the row-statistics request's bytes | %d | none | %d | 0 | %.4f | %.0f | | |\n", rows, len(columnsReq),
		alone.Seconds(), float64(rows)/alone.Seconds())
	fmt.Fprintf(env.stdout, "\nserver peak resident memory after the first small request: %.0f MiB; the peak RSS column is each row's, over that\n",
		float64(idle)/(1<<20))
	return benchRowStatsCLI(env, dir, stats, rows, reps)
}

// benchRowStatsCLI times `papo analyze` (a child process, as a user runs it) on the same rows as
// an Arrow IPC file, to a new .arrow and a new .parquet file, next to the limit measured in the
// same run: the .arrow output's bytes written to a new file and synced, as the output is.
func benchRowStatsCLI(env *environment, dir, in string, rows, reps int) error {
	self, which, err := timedPapo()
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "\npapo analyze FILE -o OUT --device cpu on the same rows as an Arrow IPC file (%s), a child process each (%s)\n\n", benchBytes(in), which)
	fmt.Fprintln(env.stdout, "| output | tokens | bytes written | seconds (best of "+strconv.Itoa(reps)+") | tokens/s | peak RSS |")
	fmt.Fprintln(env.stdout, "|---|---|---|---|---|---|")
	var arrowBytes int64
	for _, ext := range []string{"arrow", "parquet"} {
		out := filepath.Join(dir, "out."+ext)
		var best time.Duration
		var rss int64
		peak := filepath.Join(dir, "peak")
		for range reps + 1 { // the first run is untimed: the page cache holds the input after it
			// A new output every time, as the limit's file below: replacing the last run's
			// output would add the release of its page cache to the rename.
			os.Remove(out)
			cmd := exec.Command(self, "analyze", in, "-o", out, "--device", "cpu", "--quiet")
			cmd.Env = append(os.Environ(), peakRSSEnv+"="+peak)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			start := time.Now()
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("papo analyze to .%s: %w: %s", ext, err, stderr.String())
			}
			d := time.Since(start)
			if best == 0 || d < best {
				best = d
				b, _ := os.ReadFile(peak)
				rss, _ = strconv.ParseInt(string(b), 10, 64)
			}
		}
		fi, err := os.Stat(out)
		if err != nil {
			return err
		}
		if ext == "arrow" {
			arrowBytes = fi.Size()
		}
		rssText := "not measured"
		if rss > 0 {
			rssText = fmt.Sprintf("%.0f MiB", float64(rss)/(1<<20))
		}
		fmt.Fprintf(env.stdout, "| .%s | %d | %d | %.4f | %.0f | %s |\n", ext, rows, fi.Size(), best.Seconds(),
			float64(rows)/best.Seconds(), rssText)
	}
	limit, err := writeAlone(filepath.Join(dir, "alone.bin"), arrowBytes, reps)
	if err != nil {
		return fmt.Errorf("writing alone: %w", err)
	}
	fmt.Fprintf(env.stdout, "| the .arrow output's bytes written to a new file and synced, alone | %d | %d | %.4f | %.0f | |\n", rows, arrowBytes,
		limit.Seconds(), float64(rows)/limit.Seconds())
	return nil
}

// writeAlone is the shortest of reps writes of n bytes (1 MiB at a time) to a new file at path,
// synced and put in place as papo's outputs are (atomicfile: a temporary file whose writeback
// starts as it is written, synced, renamed, the directory synced): what writing an output of n
// bytes costs this machine at the least.
func writeAlone(path string, n int64, reps int) (time.Duration, error) {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 131)
	}
	var best time.Duration
	for range reps {
		os.Remove(path)
		start := time.Now()
		f, err := atomicfile.Create(path)
		if err != nil {
			return 0, err
		}
		for left := n; left > 0 && err == nil; left -= int64(len(buf)) {
			_, err = f.Write(buf[:min(left, int64(len(buf)))])
		}
		if err == nil {
			err = f.Commit()
		}
		if err != nil {
			f.Abort()
			return 0, err
		}
		if d := time.Since(start); best == 0 || d < best {
			best = d
		}
	}
	os.Remove(path)
	return best, nil
}

// benchBytes is a file's size in MB, or why it is not known.
func benchBytes(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%.0f MB", float64(fi.Size())/1e6)
}

// socketAlone is the shortest of reps transfers of req through a unix socket (this process's
// goroutines: a write, and reads of 64 KiB that drop the bytes).
func socketAlone(dir string, req []byte, reps int) (time.Duration, error) {
	sock := filepath.Join(dir, "alone.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	var best time.Duration
	for range reps {
		done := make(chan error, 1)
		go func() {
			c, err := l.Accept()
			if err == nil {
				_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{c}, make([]byte, 1<<16))
				c.Close()
			}
			done <- err
		}()
		c, err := net.Dial("unix", sock)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		_, werr := c.Write(req)
		c.Close()
		if err := cmp.Or(werr, <-done); err != nil {
			return 0, err
		}
		if d := time.Since(start); best == 0 || d < best {
			best = d
		}
	}
	return best, nil
}

func ms(d time.Duration) float64 { return d.Seconds() * 1e3 }

// rowStatsFile writes rows tokens of logits (V = v, papo gen) and their row statistics (papo
// analyze --row-stats, an IPC file: the CLI rows' input too), in batches of rowStatsBatchRows
// rows; it returns the statistics' path.
func rowStatsFile(dir string, v, rows int) (string, error) {
	logits, stats := filepath.Join(dir, "logits.arrows"), filepath.Join(dir, "stats.arrow")
	var sink bytes.Buffer
	quiet := &environment{stdout: &sink, stderr: &sink}
	if err := runGen(quiet, []string{"-o", logits, "--vocab", strconv.Itoa(v), "--tokens", strconv.Itoa(rows), "--steps", "1",
		"--batch", strconv.Itoa(rowStatsBatchRows)}); err != nil {
		return "", fmt.Errorf("generating the tokens: %w", err)
	}
	if err := runAnalyze(quiet, []string{logits, "--row-stats", stats, "--device", "cpu", "--quiet"}, "analyze"); err != nil {
		return "", fmt.Errorf("row statistics: %w", err)
	}
	return stats, nil
}

// requestBytes is an IPC stream of the first rows rows of the Arrow file (IPC file or stream)
// path, with papo.request kind and the key-value pairs kv added to its schema metadata.
func requestBytes(path string, rows int, kind string, kv ...string) ([]byte, error) {
	r, err := papoio.Open(path, nil)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	md := r.Schema().Metadata()
	keys, values := append(md.Keys(), serve.KeyRequest), append(md.Values(), kind)
	for i := 0; i+1 < len(kv); i += 2 {
		keys, values = append(keys, kv[i]), append(values, kv[i+1])
	}
	withMD := arrow.NewMetadata(keys, values)
	schema := arrow.NewSchema(r.Schema().Fields(), &withMD)
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	for left := int64(rows); left > 0 && r.Next(); {
		rec := r.Batch().Record
		if rec.NumRows() > left {
			rec = rec.NewSlice(0, left)
			defer rec.Release()
		}
		left -= rec.NumRows()
		if err := w.Write(rec); err != nil {
			return nil, err
		}
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// benchConn is a connection to papo serve carrying one request after another.
type benchConn struct {
	c  net.Conn
	br *bufio.Reader
}

// best is the shortest of reps requests and the bytes of its reply.
func (b *benchConn) best(req []byte, reps int) (time.Duration, int64, error) {
	var best time.Duration
	var got int64
	for range reps {
		d, n, err := b.request(req)
		if err != nil {
			return 0, 0, err
		}
		if best == 0 || d < best {
			best, got = d, n
		}
	}
	return best, got, nil
}

// request sends one request and reads its reply (data and status streams) to the end: its
// time from the first byte written to the last read, and the reply's bytes.
func (b *benchConn) request(req []byte) (time.Duration, int64, error) {
	start := time.Now()
	werr := make(chan error, 1)
	go func() { _, err := b.c.Write(req); werr <- err }()
	counted := &countReader{r: b.br}
	var status arrow.Metadata
	for i := range 2 {
		r, err := ipc.NewReader(counted)
		if err != nil {
			return 0, 0, err
		}
		for r.Next() {
		}
		if err := r.Err(); err != nil {
			return 0, 0, err
		}
		status = r.Schema().Metadata()
		r.Release()
		_ = i
	}
	d := time.Since(start)
	if err := <-werr; err != nil {
		return 0, 0, err
	}
	if st, _ := status.GetValue(serve.KeyStatus); st != "ok" {
		msg, _ := status.GetValue(serve.KeyError)
		return 0, 0, fmt.Errorf("papo serve: %s", msg)
	}
	return d, counted.n, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// benchServer is a papo serve child process.
type benchServer struct {
	cmd    *exec.Cmd
	sock   string
	engine string
}

// startServer starts this program as papo serve on a unix socket in dir and waits for its
// "listening" line; the rest of its standard error goes to this program's.
func startServer(dir, device string) (*benchServer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	s := &benchServer{sock: filepath.Join(dir, "papo.sock")}
	s.cmd = exec.Command(self, "serve", "--listen", "unix://"+s.sock, "--device", device, "--state-dir", filepath.Join(dir, "state"),
		"--max-batch-bytes", strconv.Itoa(16<<30), "--log-level", "warn")
	if prof := os.Getenv("PAPO_SERVE_CPUPROFILE"); prof != "" { // the server's CPU profile, for go tool pprof
		s.cmd.Env = append(os.Environ(), "PAPO_CPUPROFILE="+prof)
	}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting papo serve: %w", err)
	}
	sc := bufio.NewScanner(stderr)
	var said []string
	for sc.Scan() {
		line := sc.Text()
		if _, rest, ok := strings.Cut(line, "papo serve: listening on "); ok {
			s.engine = "?"
			if _, e, ok := strings.Cut(rest, "; engine "); ok {
				s.engine, _, _ = strings.Cut(e, ";")
			}
			go io.Copy(os.Stderr, stderr)
			return s, nil
		}
		said = append(said, line)
	}
	s.stop()
	return nil, fmt.Errorf("papo serve did not start: %s", strings.Join(said, "; "))
}

// peakRSS is the server's peak resident set since the last resetPeak (VmHWM of
// /proc/PID/status, Linux).
func (s *benchServer) peakRSS() (int64, error) {
	return vmHWM(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
}

// usage is the server's CPU time (user + system) and minor page faults so far
// (/proc/PID/stat, Linux; clock ticks of 1/100 s).
func (s *benchServer) usage() (cpu time.Duration, faults int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	// The fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(f) < 13 {
		return 0, 0, errors.New("short /proc/PID/stat")
	}
	var v [3]int64
	for k, idx := range []int{7, 11, 12} { // minflt, utime, stime
		if v[k], err = strconv.ParseInt(f[idx], 10, 64); err != nil {
			return 0, 0, err
		}
	}
	return time.Duration(v[1]+v[2]) * 10 * time.Millisecond, v[0], nil
}

// serverUsage is the server's CPU time and page faults per request between two usage readings.
func serverUsage(cpu0, cpu1 time.Duration, f0, f1 int64, err error, requests int) string {
	if err != nil {
		return "not measured"
	}
	return fmt.Sprintf("%.3f s, %d faults", (cpu1-cpu0).Seconds()/float64(requests), (f1-f0)/int64(requests))
}

// resetPeak sets the peak resident set back to the present one (clear_refs 5, Linux).
func (s *benchServer) resetPeak() {
	os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.cmd.Process.Pid), []byte("5"), 0)
}

// peakText is peakRSS in MiB, or why it is not known.
func (s *benchServer) peakText() string {
	p, err := s.peakRSS()
	if err != nil {
		return "not measured"
	}
	return fmt.Sprintf("%.0f MiB", float64(p)/(1<<20))
}

func (s *benchServer) stop() {
	s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

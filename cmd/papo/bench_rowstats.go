package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/entropy-polarity/papo/polarity"
	"github.com/entropy-polarity/papo/serve"
)

// benchRowStats is `papo bench --row-stats`: the same tokens sent to a papo serve on a unix
// socket once as logits and once as row statistics, end to end (client write, server read and
// compute, reply read), best of reps.
func benchRowStats(env *environment, engine polarity.Engine, v, rows, reps int) error {
	dir, err := os.MkdirTemp("", "papo-bench-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logits, stats := filepath.Join(dir, "logits.arrows"), filepath.Join(dir, "stats.arrows")
	var sink bytes.Buffer
	quiet := &environment{stdout: &sink, stderr: &sink}
	if err := runGen(quiet, []string{"-o", logits, "--vocab", strconv.Itoa(v), "--tokens", strconv.Itoa(rows), "--steps", "1"}); err != nil {
		return fmt.Errorf("generating the tokens: %w", err)
	}
	if err := runAnalyze(quiet, []string{logits, "--row-stats", stats, "--device", "cpu", "--quiet"}, "analyze"); err != nil {
		return fmt.Errorf("row statistics: %w", err)
	}
	srv, err := serve.New(serve.Config{Engine: engine, MaxBatchBytes: 16 << 30})
	if err != nil {
		return err
	}
	sock := filepath.Join(dir, "papo.sock")
	l, err := serve.Listen(serve.Address{Network: "unix", Addr: sock}, false)
	if err != nil {
		return err
	}
	go srv.Serve(l)
	defer srv.Close()

	fmt.Fprintf(env.stdout, "papo bench --row-stats, %s, %s, engine %s, V = %d, %d tokens, over a unix socket\n\n",
		time.Now().UTC().Format("2006-01-02"), cpuModel(), engine.Name(), v, rows)
	fmt.Fprintln(env.stdout, "| request | bytes sent | seconds (best) | tokens/s |")
	fmt.Fprintln(env.stdout, "|---|---|---|---|")
	var times [2]time.Duration
	for k, path := range []string{logits, stats} {
		req, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		best := time.Duration(0)
		for range reps {
			d, err := timeRequest(sock, req)
			if err != nil {
				return fmt.Errorf("%s request: %w", filepath.Base(path), err)
			}
			if best == 0 || d < best {
				best = d
			}
		}
		times[k] = best
		fmt.Fprintf(env.stdout, "| %s | %d | %.4f | %.0f |\n", []string{"logits", "row statistics"}[k], len(req),
			best.Seconds(), float64(rows)/best.Seconds())
	}
	fmt.Fprintf(env.stdout, "\nrow statistics are %.0f× faster end to end than logits for the same %d tokens\n",
		times[0].Seconds()/times[1].Seconds(), rows)
	return nil
}

// timeRequest sends one request on a new connection and reads its reply to the end.
func timeRequest(sock string, req []byte) (time.Duration, error) {
	start := time.Now()
	c, err := net.Dial("unix", sock)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	go c.Write(req)
	br := bufio.NewReaderSize(c, 1<<16)
	for i := range 2 {
		r, err := ipc.NewReader(br)
		if err != nil {
			return 0, err
		}
		for r.Next() {
		}
		if err := r.Err(); err != nil {
			return 0, err
		}
		if i == 1 {
			if st, _ := r.Schema().Metadata().GetValue(serve.KeyStatus); st != "ok" {
				msg, _ := r.Schema().Metadata().GetValue(serve.KeyError)
				return 0, fmt.Errorf("papo serve: %s", msg)
			}
		}
		r.Release()
	}
	return time.Since(start), nil
}

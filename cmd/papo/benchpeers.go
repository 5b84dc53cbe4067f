//go:build !papofront

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/bench"
	"github.com/entropy-polarity/papo/polarity"
	"github.com/entropy-polarity/papo/synth"
)

// peersConfig is what `papo bench --peers` measures.
type peersConfig struct {
	vocabs    []int // the first is the roofline's, the end-to-end file's and the peers'
	rows      int   // tokens per engine, roofline and peer workload
	e2eTokens int   // tokens of the end-to-end file (one record batch)
	dtypes    []polarity.Dtype
	threads   int // all threads
	reps      int
	bwBytes   int
	python    string // "" finds one
	record    string // "" records nothing
	recordSet bool   // --record was given (a missing file is then an error)
}

// threadCounts is 1 and all threads.
func (c *peersConfig) threadCounts() []int { return bench.ThreadCounts(c.threads) }

// runBenchPeers implements `papo bench --peers`: the roofline, papo's CPU engine and papo
// analyze end to end, and the peers trainers run today, in one table.
func runBenchPeers(ctx context.Context, env *environment, c peersConfig) error {
	kernel, err := polarity.BestKernel()
	if err != nil {
		return err
	}
	r := &bench.Report{Date: time.Now().UTC().Format("2006-01-02"), CPU: cpuModel(), Threads: c.threads, V: c.vocabs[0]}
	logf := func(format string, args ...any) { fmt.Fprintf(env.stderr, "papo bench: "+format+"\n", args...) }

	for _, n := range c.threadCounts() {
		bw := bench.ReadBandwidth(n, c.bwBytes, 3)
		r.Entries = append(r.Entries, bench.Entry{Kind: bench.Memory, Name: "read (" + bench.ReadISA() + ")", Threads: n,
			BytesPerSec: bw, Note: fmt.Sprintf("%d MiB buffer", c.bwBytes>>20)})
	}

	// The C roofline runs before papo's rows and again after them, and the better of its two
	// figures is the reference: a figure the machine's noise lowered (another VM on the host,
	// a burst of work elsewhere) would make every percentage beside it too high.
	roofline := func() {
		logf("C roofline (V = %d, %d rows)", r.V, c.rows)
		rl, err := bench.RunRoofline(ctx, r.V, c.rows, c.reps, c.threads)
		if err != nil {
			logf("skipped the C roofline: %v", err)
			return
		}
		for _, isa := range rl.ISAs {
			if !isa.Supported {
				logf("C roofline %s: not supported by this CPU", isa.ISA)
				continue
			}
			for _, n := range c.threadCounts() {
				tps := isa.OneThread
				if n != 1 {
					tps = isa.AllThreads
				}
				e := bench.Entry{Kind: bench.CKernel, Name: "C " + isa.ISA, Dtype: "float32", V: r.V, Threads: n,
					TokensPerSec: tps, BytesPerSec: tps * float64(r.V) * 4,
					Note: fmt.Sprintf("gcc -O3; worst rel. error of H %.0e; the better of a run before papo's rows and one after", isa.WorstRelErrH)}
				r.KeepFaster(e)
			}
		}
	}
	roofline()

	var peerWork *bench.Workload
	var ours polarity.Result
	for _, v := range c.vocabs {
		for _, d := range c.dtypes {
			w := bench.NewWorkload(c.rows, v, d, 1)
			for _, n := range c.threadCounts() {
				e, err := polarity.NewCPUKernel(n, kernel)
				if err != nil {
					return err
				}
				tp, err := bench.Run(ctx, e, w, c.reps)
				if err == nil && v == r.V && d == polarity.Float32 && peerWork == nil {
					peerWork, ours = w, tp.Result
				}
				e.Close()
				if err != nil {
					return fmt.Errorf("engine %s V=%d %d threads: %w", d, v, n, err)
				}
				r.Entries = append(r.Entries, bench.Entry{Kind: bench.Engine, Name: engineLabel(e), Dtype: d.String(), V: v, Threads: n,
					TokensPerSec: tp.TokensPerSec, BytesPerSec: tp.BytesPerSec, Note: fmt.Sprintf("%d tokens in memory", tp.Rows)})
			}
		}
	}

	// papo analyze end to end is timed in two windows as well, one before the second C run and
	// one after it, and keeps the better: both sides of each percentage are the better of two
	// windows of the run, so that a slow moment of the machine falls on neither alone.
	dir, err := os.MkdirTemp("", "papo-bench-e2e-")
	if err != nil {
		return fmt.Errorf("end to end: %w", err)
	}
	defer os.RemoveAll(dir)
	files, err := writeEndToEnd(c, dir, r.V, logf)
	if err != nil {
		return err
	}
	endToEnd := func(window int) error {
		logf("end to end: timing papo analyze, window %d of 2", window)
		entries, err := timeEndToEnd(ctx, c, dir, files)
		for _, e := range entries {
			r.KeepFaster(e)
		}
		return err
	}
	if err := endToEnd(1); err != nil {
		return err
	}
	roofline()
	if err := endToEnd(2); err != nil {
		return err
	}

	var disagree []string
	if peerWork == nil {
		logf("skipped the peers: they run on float32 logits at V = %d (add float32 to --dtype)", r.V)
	} else if python, err := bench.FindPython(ctx, pythonCandidates(c.python)...); err != nil {
		logf("skipped the peers (PyTorch, NumPy): %v", err)
	} else {
		logf("peers with %s (%d tokens, V = %d)", python, c.rows, r.V)
		peers, err := bench.RunPeers(ctx, python, peerWork, &ours, c.threadCounts(), c.reps)
		if err != nil {
			return err
		}
		for _, p := range peers {
			if p.Skipped != "" {
				logf("skipped %s: %s", p.Name, p.Skipped)
				continue
			}
			e := bench.Entry{Kind: bench.PeerKind, Name: p.Name, Dtype: "float32", V: r.V, Threads: p.Threads,
				TokensPerSec: p.TokensPerSec, BytesPerSec: p.BytesPerSec, Note: p.Version}
			if !p.Checked { // torch.sum: a read of the logits, no outputs
				e.Kind, e.Dtype, e.V, e.TokensPerSec = bench.Memory, "", 0, 0
			} else {
				e.Note = fmt.Sprintf("%s; max |ΔH| %.0e, |Δ log p| %.0e vs papo", p.Version, p.MaxDiffH, p.MaxDiffLogprob)
				if !p.Agrees() {
					disagree = append(disagree, fmt.Sprintf("%s (%d threads): max |ΔH| %g, |Δ log p| %g", p.Name, p.Threads, p.MaxDiffH, p.MaxDiffLogprob))
				}
			}
			r.Entries = append(r.Entries, e)
		}
	}

	host, _ := os.Hostname()
	fmt.Fprintf(env.stdout, "papo bench --peers, %s, %s, %d threads, %s\n\n", r.Date, r.CPU, c.threads, host)
	if err := r.Markdown(env.stdout); err != nil {
		return err
	}
	if len(disagree) > 0 {
		return fmt.Errorf("peers differ from papo by more than %g (H) or %g (log p), so the race is not fair: %s",
			bench.PeerToleranceH, bench.PeerToleranceLogprob, strings.Join(disagree, "; "))
	}
	switch _, err := os.Stat(c.record); {
	case c.record == "":
	case err == nil:
		if err := r.AppendRecord(c.record); err != nil {
			return err
		}
		logf("appended %d rows to %s", len(r.RecordRows()), c.record)
	case errors.Is(err, os.ErrNotExist) && !c.recordSet:
		logf("not recorded: %s not found here (run from papo's source tree, or give --record FILE)", c.record)
	default:
		return fmt.Errorf("--record: %w", err)
	}
	return nil
}

// pythonCandidates are the interpreters tried for the peers: --python, $PAPO_PYTHON, python3 on
// PATH, then Debian's (which has python3-torch where pyenv or a venv shadows it).
func pythonCandidates(flag string) []string {
	if flag != "" {
		return []string{flag}
	}
	return []string{os.Getenv("PAPO_PYTHON"), "python3", "/usr/bin/python3"}
}

// e2eFile is one end-to-end input: c.e2eTokens tokens of dtype d in one record batch.
type e2eFile struct {
	d     polarity.Dtype
	v     int
	path  string
	bytes int64
}

// writeEndToEnd writes a c.e2eTokens-token IPC file in dir for each of c.dtypes at V = v, in one
// record batch (what pyarrow's write_table writes without max_chunksize).
func writeEndToEnd(c peersConfig, dir string, v int, logf func(string, ...any)) ([]e2eFile, error) {
	var files []e2eFile
	for _, d := range c.dtypes {
		cfg := synth.DefaultConfig()
		cfg.V, cfg.TokensPerStep, cfg.Steps, cfg.BatchRows, cfg.Dtype, cfg.Seed = v, c.e2eTokens, 1, c.e2eTokens, d, 3
		g, err := synth.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("end to end: %w", err)
		}
		f := e2eFile{d: d, v: v, path: filepath.Join(dir, "rollouts-"+d.String()+".arrow")}
		logf("end to end: writing %d tokens of %s logits (V = %d) in one record batch", c.e2eTokens, d, v)
		if _, err := synth.WriteFile(f.path, g, memory.DefaultAllocator); err != nil {
			return nil, fmt.Errorf("end to end: %w", err)
		}
		st, err := os.Stat(f.path)
		if err != nil {
			return nil, fmt.Errorf("end to end: %w", err)
		}
		f.bytes = st.Size()
		files = append(files, f)
	}
	return files, nil
}

// timeEndToEnd times this program's `papo analyze` on each file, as a new process, on 1 and all
// threads: process start to exit, the file in the page cache, the best of c.reps runs after a
// warm-up run.
func timeEndToEnd(ctx context.Context, c peersConfig, dir string, files []e2eFile) ([]bench.Entry, error) {
	self, which, err := timedPapo()
	if err != nil {
		return nil, fmt.Errorf("end to end: %w", err)
	}
	var out []bench.Entry
	for _, f := range files {
		for _, n := range c.threadCounts() {
			best := 0.0
			for range c.reps + 1 { // the first run is a warm-up
				cmd := exec.CommandContext(ctx, self, "analyze", f.path, "-o", filepath.Join(dir, "polarity.arrow"), "--device", "cpu", "--threads", fmt.Sprint(n))
				start := time.Now()
				if msg, err := cmd.CombinedOutput(); err != nil {
					return out, fmt.Errorf("end to end: papo analyze: %w\n%s", err, strings.TrimSpace(string(msg)))
				}
				if s := time.Since(start).Seconds(); best == 0 || s < best {
					best = s
				}
			}
			logits := float64(c.e2eTokens) * float64(f.v) * float64(f.d.Size())
			out = append(out, bench.Entry{Kind: bench.EndToEnd, Name: "analyze IPC file", Dtype: f.d.String(), V: f.v, Threads: n,
				TokensPerSec: float64(c.e2eTokens) / best, BytesPerSec: logits / best,
				Note: fmt.Sprintf("%d tokens, %d MB file, one record batch; the better of a run before the second C roofline and one after; %s", c.e2eTokens, f.bytes/1e6, which)})
		}
	}
	return out, nil
}

//go:build !papofront

package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/entropy-polarity/papo/bench"
	"github.com/entropy-polarity/papo/polarity"
)

// runBench implements `papo bench`: engine throughput next to the machine's read bandwidth.
func runBench(env *environment, args []string) error {
	fs := flagSet("bench", "[flags]")
	v := fs.Int("vocab", 151936, "vocabulary size V")
	rows := fs.Int("tokens", 256, "token rows per batch")
	dtypes := fs.String("dtype", "float32,bfloat16,float16", "comma-separated logits types")
	device := fs.String("device", "auto", "engine: auto, cpu or cuda")
	threads := fs.Int("threads", 0, "CPU engine threads (0: all cores)")
	reps := fs.Int("reps", 3, "timed passes per case (the best is kept)")
	bwMiB := fs.Int("bandwidth-mib", 1024, "buffer size for the read-bandwidth measurement")
	peers := fs.Bool("peers", false, "one table: the C roofline and a vector memory read, the CPU engine per dtype at --vocab and 128,256 on 1 and all threads, papo analyze end to end on an IPC file, and PyTorch (verl's and TRL's computation) and NumPy on the same logits, outputs checked against papo's; appends to --record")
	python := fs.String("python", "", "--peers: the Python with torch and numpy (default: $PAPO_PYTHON, python3, /usr/bin/python3)")
	record := fs.String("record", "bench/RESULTS.md", "--peers: the Markdown file to append the run's rows to (\"\": none)")
	e2eTokens := fs.Int("e2e-tokens", 1024, "--peers: tokens of the end-to-end IPC file, in one record batch (1024 at V = 151,936 is 622 MB)")
	rowStats := fs.Bool("row-stats", false, "row-statistics requests (--tokens, default 4,194,304) end to end to a papo serve child on a unix socket: the whole reply, papo.columns=reweighted_advantage, reweight, a 256-token round trip, the server's peak memory, and a logits request (--vocab, default 64) for comparison")
	positional, err := parseFlags(fs, args, env.stderr)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return usagef("unexpected argument %q", positional[0])
	}
	if *v < 1 || *rows < 1 || *reps < 1 || *bwMiB < 1 || *e2eTokens < 1 {
		return usagef("--vocab, --tokens, --reps, --bandwidth-mib and --e2e-tokens must be ≥ 1")
	}
	var kinds []polarity.Dtype
	for _, s := range strings.Split(*dtypes, ",") {
		d, err := polarity.ParseDtype(strings.TrimSpace(s))
		if err != nil {
			return usagef("--dtype: %v", err)
		}
		kinds = append(kinds, d)
	}
	n := *threads
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	if *peers {
		if *rowStats {
			return usagef("--peers and --row-stats are two benchmarks: give one")
		}
		if *device == "cuda" {
			return usagef("--peers times the CPU engine against CPU peers; --device cuda is bench/gpu.sh's")
		}
		recordSet := false
		fs.Visit(func(f *flag.Flag) { recordSet = recordSet || f.Name == "record" })
		vocabs := []int{*v}
		if *v != 128256 {
			vocabs = append(vocabs, 128256)
		}
		return runBenchPeers(context.Background(), env, peersConfig{vocabs: vocabs, rows: *rows, e2eTokens: *e2eTokens, dtypes: kinds,
			threads: n, reps: *reps, bwBytes: *bwMiB << 20, python: *python, record: *record, recordSet: recordSet})
	}
	if *rowStats {
		// A trainer's step, not an engine's batch: 4M tokens; V only shapes the logits request.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["tokens"] {
			*rows = 1 << 22
		}
		if !set["vocab"] {
			*v = 64
		}
		return benchRowStats(env, *device, *v, *rows, *reps)
	}
	engine, err := selectEngine(env, *device, *threads, append([]string{"bench"}, args...))
	if err != nil {
		return err
	}
	defer engine.Close()

	bw := bench.ReadBandwidth(n, *bwMiB<<20, 3)
	host, _ := os.Hostname()
	fmt.Fprintf(env.stdout, "papo bench, %s, %s, %d CPU threads, %s\n", time.Now().UTC().Format("2006-01-02"), cpuModel(), n, host)
	fmt.Fprintf(env.stdout, "measured read bandwidth (%d threads, %d MiB): %.2f GB/s\n\n", n, *bwMiB, bw/1e9)
	fmt.Fprintln(env.stdout, "| engine | dtype | V | tokens | tokens/s | GB/s | % of read bandwidth |")
	fmt.Fprintln(env.stdout, "|---|---|---|---|---|---|---|")
	for _, d := range kinds {
		w := bench.NewWorkload(*rows, *v, d, 1)
		tp, err := bench.Run(context.Background(), engine, w, *reps)
		if err != nil {
			return fmt.Errorf("%s %s: %w", engine.Name(), d, err)
		}
		fmt.Fprintf(env.stdout, "| %s | %s | %d | %d | %.0f | %.2f | %.0f %% |\n",
			tp.Engine, d, tp.V, tp.Rows, tp.TokensPerSec, tp.BytesPerSec/1e9, 100*tp.BytesPerSec/bw)
	}
	return nil
}

// cpuModel names the processor, from /proc/cpuinfo where there is one.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// timedPapo is the papo whose commands the benchmarks time as new processes, as a user runs
// them: the front end that handed this command over ($PAPO_FRONT, bin/papo of `make build`),
// else this program. what says which, for the table's notes.
func timedPapo() (path, what string, err error) {
	if front := os.Getenv(frontEnv); front != "" {
		// The same check as for a pinned papo-full or papo-cuda: an absolute executable.
		if _, err := siblingFor("", "papo front end", frontEnv, front, ""); err != nil {
			return "", "", err
		}
		return front, "the front end " + filepath.Base(front), nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", "", err
	}
	return self, filepath.Base(self) + " (no front end)", nil
}

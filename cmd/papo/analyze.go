package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/internal/atomicfile"
	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/papo"
	"github.com/entropy-polarity/papo/polarity"
	"github.com/entropy-polarity/papo/run"
)

// epsilonFlag is a PPO ε on the command line: a number ≥ 0, or "none" for no clipping.
type epsilonFlag struct{ v *float64 }

func (e epsilonFlag) String() string {
	if e.v == nil {
		return ""
	}
	return polarity.FormatEpsilon(*e.v)
}

func (e epsilonFlag) Set(s string) error {
	v, err := polarity.ParseEpsilon(s)
	if err != nil {
		return err
	}
	*e.v = v
	return nil
}

// runFlags are the flags of the commands that run the pipeline: analyze, reweight, stats and
// report. Their defaults are written down here once.
type runFlags struct {
	device, configPath *string
	threads            *int
	temperature, lr    *float64
	clipLow, clipHigh  float64
	npg, quiet         *bool
	maxBatch           *int64
	cfg                papo.Config
}

// addRunFlags defines the engine's and the per-token signals' flags on fs.
func addRunFlags(fs *flag.FlagSet) *runFlags {
	f := &runFlags{cfg: papo.DefaultConfig()}
	f.device = fs.String("device", "auto", "engine: auto (CUDA when papo-cuda finds a device, else CPU), cpu or cuda")
	f.threads = fs.Int("threads", 0, "CPU engine worker threads (0: all cores)")
	f.temperature = fs.Float64("temperature", 0, "sampling temperature τ (default: the file's papo.temperature, else 1)")
	f.lr = fs.Float64("lr", 0, "learning rate η for predicted ΔH (default: the file's papo.lr, else 1)")
	fs.Var(epsilonFlag{&f.clipLow}, "clip-low", "PPO ε_low: a number ≥ 0 (0: a zero-width range) or none (default: the file's papo.clip_low, else none)")
	fs.Var(epsilonFlag{&f.clipHigh}, "clip-high", "PPO ε_high: a number ≥ 0 (0: a zero-width range) or none (default: the file's papo.clip_high, else none)")
	f.npg = fs.Bool("natural-gradient", false, "use the natural-gradient polarity factor T_npg = −(log π_a + H)")
	f.quiet = fs.Bool("quiet", false, "print nothing on success: no progress bar, summary table or throughput line (errors, and --device auto falling back to the CPU, are still said)")
	f.maxBatch = fs.Int64("max-batch-bytes", defaultMaxBatchBytes, "largest record batch of an IPC stream (held in memory whole) and largest buffer of any input; IPC files are memory-mapped and their batches have no cap")
	return f
}

// addReweightFlags defines --config and every reweighting parameter's flag on fs.
func (f *runFlags) addReweightFlags(fs *flag.FlagSet) {
	f.configPath = fs.String("config", "", "reweighting parameters from a .toml or .json file (flags given on the command line win)")
	f.cfg.RegisterFlags(fs)
}

// loadConfig applies --config under the flags typed on the command line (a run that does not
// reweight uses method none) and validates the result.
func (f *runFlags) loadConfig(fs *flag.FlagSet, args []string, stderr io.Writer, reweight bool) error {
	switch {
	case !reweight:
		f.cfg.Method = papo.MethodNone
	case *f.configPath != "":
		// The file replaces the defaults; parsing the command line again on top of it makes
		// the flags the user typed win over the file.
		if err := papo.LoadConfig(*f.configPath, &f.cfg); err != nil {
			return usagef("--config: %v", err)
		}
		if _, err := parseFlags(fs, args, stderr); err != nil {
			return err
		}
	}
	if err := f.cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// params are the input's parameters (from its schema metadata) with the flags typed on the
// command line over them.
func (f *runFlags) params(fs *flag.FlagSet, params polarity.Params) (polarity.Params, error) {
	if flagWasSet(fs, "temperature") {
		params.Temperature = *f.temperature
	}
	if flagWasSet(fs, "lr") {
		params.LR = *f.lr
	}
	if flagWasSet(fs, "clip-low") {
		params.ClipLow = f.clipLow
	}
	if flagWasSet(fs, "clip-high") {
		params.ClipHigh = f.clipHigh
	}
	params.NaturalGradient = *f.npg
	if err := params.Validate(); err != nil {
		return params, usagef("--temperature, --lr, --clip-low, --clip-high (or the input's metadata): %v", err)
	}
	return params, nil
}

// defaultMaxBatchBytes caps a record batch of an input IPC stream (a pipe, a .arrows file),
// which must be held in memory whole: 4 GiB, about 7,000 float32 tokens at V = 151,936.
const defaultMaxBatchBytes = 4 << 30

// runAnalyze implements `papo analyze`, `papo reweight` and `papo stats` (mode): the run
// pipeline (package run) wired to files, with the reweighting method off (weights 1) for
// analyze, and the steps' data-parallel partials instead of weights for stats.
func runAnalyze(env *environment, args []string, mode string) error {
	reweight, partials := mode != "analyze", mode == "stats"
	name, synopsis := "analyze", "IN [-o OUT] [flags]"
	switch mode {
	case "reweight":
		name, synopsis = "reweight", "IN -o OUT [--state FILE] [--global-stats GLOBAL] [--method M] [flags]"
	case "stats":
		name, synopsis = "stats", "IN -o PART [flags of reweight]"
	}
	fs := flagSet(name, synopsis)
	out := fs.String("o", "", "per-token output: .arrow, .arrows, .parquet, .csv or .jsonl (\"-\": Arrow stream on stdout)")
	summaryPath := fs.String("summary", "", "per-step summary table output (same formats as -o)")
	rowStatsPath := fs.String("row-stats", "", "also write each token's row statistics (logit_max, sum_exp_rest, ...; same formats as -o): an input of its own, 48 bytes a token")
	rf := addRunFlags(fs)
	var statePath *string
	var resetState *bool
	var history *int
	var globalPath *string
	if mode == "reweight" {
		globalPath = fs.String("global-stats", "", "reweight with the steps' global figures: the sum over all data-parallel ranks of their `papo stats` tables")
		statePath = fs.String("state", "", "run state file (phase EMA and the last steps' history); loaded at start, committed with the outputs at the end")
		resetState = fs.Bool(papo.FlagResetState, false, "start afresh even if --state holds a state written with other parameters")
		history = fs.Int("state-history", papo.DefaultHistory, "steps the run state remembers, so that a step that comes again can roll the run back")
	}
	if reweight {
		rf.addReweightFlags(fs)
	}
	positional, err := parseFlags(fs, args, env.stderr)
	if err != nil {
		return err
	}
	if len(positional) != 1 {
		return usagef("want exactly one input file (or - for stdin), got %d arguments", len(positional))
	}
	if reweight && *out == "" {
		return usagef("-o OUT is required")
	}
	if err := rf.loadConfig(fs, args, env.stderr, reweight); err != nil {
		return err
	}
	cfg := rf.cfg

	in := positional[0]
	globalStats := ""
	if globalPath != nil {
		globalStats = *globalPath
	}
	if needsFull(in, *out, *summaryPath, *rowStatsPath, globalStats) {
		return handOver(env, mode, args)
	}
	mem := memory.DefaultAllocator
	engine, err := selectEngine(env, *rf.device, *rf.threads, append([]string{name}, args...))
	if err != nil {
		return err
	}
	defer engine.Close()

	if *rf.maxBatch < 1 {
		return usagef("--max-batch-bytes must be ≥ 1")
	}
	r, err := papoio.Open(in, mem, append(tableOptions(), papoio.WithMaxBufferBytes(*rf.maxBatch))...)
	if err != nil {
		return err
	}
	defer r.Close()
	meta := r.Meta()
	params, err := rf.params(fs, meta.Params)
	if err != nil {
		return err
	}

	// The run state changes only at the end, together with the outputs.
	opts := []papo.Option{papo.WithSignal(params), papo.WithDeferredSave()}
	state := ""
	if mode == "reweight" {
		state = *statePath
		opts = append(opts, papo.WithReset(*resetState), papo.WithHistory(*history))
	}
	var global map[int64]papo.StepPartials
	if globalPath != nil && *globalPath != "" {
		rows, err := papoio.ReadPartials(*globalPath, tableOptions()...)
		if err != nil {
			return err
		}
		global = run.GlobalPartials(rows)
	}
	if state != "" {
		opts = append(opts, papo.WithStateFile(state))
	}
	rw, err := papo.NewReweighter(cfg, opts...)
	if err != nil {
		return err
	}
	defer rw.Close()
	if rw.Recovered() {
		fmt.Fprintf(env.stderr, "papo %s: %s: finished the commit of a run that was interrupted while committing\n", name, state)
	}
	if state != "" {
		// The state's lock makes this run the only writer of its outputs: remove what a killed
		// run left half-written beside them.
		for _, p := range []string{*out, *summaryPath, *rowStatsPath} {
			if p != "" && p != "-" {
				if err := atomicfile.RemoveStale(p); err != nil {
					return err
				}
			}
		}
	}

	// The summary table goes to stdout unless stdout carries the data.
	table := env.stdout
	if *out == "-" {
		table = env.stderr
	}
	var w *papoio.Writer
	schema := papoio.OutputSchema(r.Schema())
	if *out != "" && !partials {
		if w, err = papoio.Create(*out, schema, mem, tableOptions()...); err != nil {
			return err
		}
		defer w.Abort() // no-op after Finish: a failed run leaves no partial output
	}
	var statsW *papoio.Writer
	statsSchema := papoio.RowStatsSchema(r.Schema(), params.Temperature)
	if *rowStatsPath != "" {
		if statsW, err = papoio.Create(*rowStatsPath, statsSchema, mem, tableOptions()...); err != nil {
			return err
		}
		defer statsW.Abort()
	}
	sink := run.NewOutput(w, schema, mem, func(s *run.StepReport) error {
		if rb := s.Reweight.Rollback; rb != nil {
			fmt.Fprintf(env.stderr, "papo %s: %s: %v\n", name, displayName(state), rb)
		}
		return nil
	})
	if statsW != nil {
		sink.WithRowStats(statsW, statsSchema)
	}
	rows, _ := r.Rows() // an IPC file's row count: the step buffer's reservation
	p, err := run.New(run.Config{Name: displayName(in), Engine: engine, Params: params, Reweighter: rw,
		RequireAdvantage: reweight, Mem: mem, RowStats: statsW != nil, PartialsOnly: partials, Global: global, Rows: rows}, sink)
	if err != nil {
		return err
	}
	defer p.Abort()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	prog := newProgress(env.stderr, in, *rf.quiet)
	start := time.Now()
	var bytesRead int64
	for r.Next() {
		b := r.Batch()
		if err := p.Add(ctx, b); err != nil {
			return interrupted(err, state)
		}
		bytesRead += int64(b.Input.Rows()) * int64(b.Input.Logits.V) * int64(b.Input.Logits.Dtype.Size())
		prog.update(p.Rows(), bytesRead)
		env.reached("batch")
	}
	if err := r.Err(); err != nil {
		return err
	}
	if err := p.Close(ctx); err != nil {
		return interrupted(err, state)
	}
	elapsed := time.Since(start)
	prog.done()
	env.reached("closed")

	// The outputs are finished (flushed, synced) but not yet in place; they are committed with
	// the run state in one transaction, or all discarded.
	var staged []*atomicfile.File
	stage := func(f *atomicfile.File, err error) error {
		if err != nil {
			for _, f := range staged {
				f.Abort()
			}
			return err
		}
		if f != nil {
			staged = append(staged, f)
		}
		return nil
	}
	if w != nil {
		if err := stage(w.Finish()); err != nil {
			return err
		}
	}
	if statsW != nil {
		if err := stage(statsW.Finish()); err != nil {
			return err
		}
	}
	if partials {
		if err := stage(papoio.FinishPartials(*out, sink.Partials(), mem, tableOptions()...)); err != nil {
			return err
		}
	}
	if *summaryPath != "" {
		if err := stage(papoio.FinishSummary(*summaryPath, sink.Summaries(), mem, tableOptions()...)); err != nil {
			return err
		}
	}
	env.reached("finished")
	if err := ctx.Err(); err != nil { // a Ctrl-C that came while the outputs were finished
		for _, f := range staged {
			f.Abort()
		}
		return interrupted(err, state)
	}
	if err := rw.Commit(staged...); err != nil {
		return err
	}
	env.reached("committed")
	if !*rf.quiet && !partials {
		printSummary(table, sink.Summaries(), reweight, cfg.Method)
	}
	if *rf.quiet {
		return nil
	}
	secs := elapsed.Seconds()
	if meta.RowStats {
		fmt.Fprintf(env.stderr, "papo: %d tokens from row statistics in %.2fs: %.0f tokens/s\n",
			p.Rows(), secs, float64(p.Rows())/secs)
		return nil
	}
	fmt.Fprintf(env.stderr, "papo: %d tokens × V=%d (%s) in %.2fs on engine %s: %.0f tokens/s, %.2f GB/s of logits\n",
		p.Rows(), meta.V, meta.Dtype, secs, engineLabel(engine), float64(p.Rows())/secs, float64(bytesRead)/secs/1e9)
	return nil
}

// interrupted says what a cancelled run left behind: nothing.
func interrupted(err error, state string) error {
	if !errors.Is(err, context.Canceled) {
		return err
	}
	msg := "interrupted: no output was written"
	if state != "" {
		msg += " and the run state " + state + " is unchanged"
	}
	return errors.New(msg)
}

func displayName(path string) string {
	if path == "-" {
		return "stdin"
	}
	return path
}

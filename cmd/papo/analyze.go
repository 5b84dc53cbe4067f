package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/papo"
)

// runAnalyze implements `papo analyze` and, with reweight, `papo reweight`: the same
// pipeline, with the reweighting method off (weights 1) for analyze.
func runAnalyze(env *environment, args []string, reweight bool) error {
	name, synopsis := "analyze", "IN [-o OUT] [flags]"
	if reweight {
		name, synopsis = "reweight", "IN -o OUT [--state FILE] [--method M] [flags]"
	}
	fs := flagSet(name, synopsis)
	out := fs.String("o", "", "per-token output: .arrow, .arrows, .parquet, .csv or .jsonl (\"-\": Arrow stream on stdout)")
	summaryPath := fs.String("summary", "", "per-step summary table output (same formats as -o)")
	device := fs.String("device", "auto", "engine: auto (CUDA when papo-cuda finds a device, else CPU), cpu or cuda")
	threads := fs.Int("threads", 0, "CPU engine worker threads (0: all cores)")
	temperature := fs.Float64("temperature", 0, "sampling temperature τ (default: the file's papo.temperature, else 1)")
	lr := fs.Float64("lr", 0, "learning rate η for predicted ΔH (default: the file's papo.lr, else 1)")
	clipLow := fs.Float64("clip-low", 0, "PPO ε_low (default: the file's papo.clip_low, else no clipping)")
	clipHigh := fs.Float64("clip-high", 0, "PPO ε_high (default: the file's papo.clip_high, else no clipping)")
	npg := fs.Bool("natural-gradient", false, "use the natural-gradient polarity factor T_npg = −(log π_a + H)")
	quiet := fs.Bool("quiet", false, "no progress bar and no summary table")
	cfg := papo.DefaultConfig()
	var statePath, configPath *string
	var resetState *bool
	if reweight {
		statePath = fs.String("state", "", "run state file (phase EMA and history); loaded at start, saved atomically after every step")
		resetState = fs.Bool("reset-state", false, "start afresh even if --state holds a state written with other parameters")
		configPath = fs.String("config", "", "reweighting parameters from a .toml or .json file (flags given on the command line win)")
		cfg.RegisterFlags(fs)
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
	if reweight {
		if *configPath != "" {
			// The file replaces the defaults; parsing the command line again on top of it makes
			// the flags the user typed win over the file.
			if err := papo.LoadConfig(*configPath, &cfg); err != nil {
				return usagef("--config: %v", err)
			}
			if _, err := parseFlags(fs, args, env.stderr); err != nil {
				return err
			}
		}
	} else {
		cfg.Method = "none"
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}

	in := positional[0]
	mem := memory.DefaultAllocator
	engine, err := selectEngine(env, *device, *threads, append([]string{name}, args...))
	if err != nil {
		return err
	}
	defer engine.Close()

	r, err := papoio.Open(in, mem)
	if err != nil {
		return err
	}
	defer r.Close()
	meta := r.Meta()
	params := meta.Params
	if flagWasSet(fs, "temperature") {
		params.Temperature = *temperature
	}
	if flagWasSet(fs, "lr") {
		params.LR = *lr
	}
	if flagWasSet(fs, "clip-low") {
		params.ClipLow = *clipLow
	}
	if flagWasSet(fs, "clip-high") {
		params.ClipHigh = *clipHigh
	}
	params.NaturalGradient = *npg
	if err := params.Validate(); err != nil {
		return usagef("%v", err)
	}

	state := ""
	reset := false
	if reweight {
		state, reset = *statePath, *resetState
	}
	rw, err := papo.NewReweighter(cfg, state, reset)
	if err != nil {
		return err
	}

	p := &pipeline{name: displayName(in), mem: mem, engine: engine, params: params, rw: rw}
	// The summary table goes to stdout unless stdout carries the data.
	table := env.stdout
	if *out == "-" {
		table = env.stderr
	}
	if *out != "" {
		p.schema = papoio.OutputSchema(r.Schema())
		p.out, err = papoio.Create(*out, p.schema, mem)
		if err != nil {
			return err
		}
		defer p.out.Abort() // no-op after Close: a failed run leaves no partial output
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	prog := newProgress(env.stderr, in, *quiet)
	start := time.Now()
	var bytesRead int64
	for r.Next() {
		b := r.Batch()
		if err := p.add(ctx, b); err != nil {
			p.close()
			return err
		}
		bytesRead += int64(b.Input.Rows()) * int64(b.Input.Logits.V) * int64(b.Input.Logits.Dtype.Size())
		prog.update(p.rows, bytesRead)
	}
	if err := r.Err(); err != nil {
		p.close()
		return err
	}
	if p.rows == 0 {
		return fmt.Errorf("%s: the input has no token rows", displayName(in))
	}
	if err := p.close(); err != nil {
		return err
	}
	elapsed := time.Since(start)
	prog.done()
	if p.out != nil {
		if err := p.out.Close(); err != nil {
			return err
		}
	}
	if *summaryPath != "" {
		if err := papoio.WriteSummary(*summaryPath, p.summaries, mem); err != nil {
			return err
		}
	}
	if !*quiet {
		printSummary(table, p.summaries, reweight, cfg.Method)
	}
	secs := elapsed.Seconds()
	fmt.Fprintf(env.stderr, "papo: %d tokens × V=%d (%s) in %.2fs on engine %s: %.0f tokens/s, %.2f GB/s of logits\n",
		p.rows, meta.V, meta.Dtype, secs, engine.Name(), float64(p.rows)/secs, float64(bytesRead)/secs/1e9)
	return nil
}

func displayName(path string) string {
	if path == "-" {
		return "stdin"
	}
	return path
}

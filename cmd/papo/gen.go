package main

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/polarity"
	"github.com/entropy-polarity/papo/synth"
)

// runGen implements `papo gen`: a synthetic rollout file in the input format of docs/SCHEMA.md.
func runGen(env *environment, args []string) error {
	d := synth.DefaultConfig()
	fs := flagSet("gen", "-o OUT [flags]")
	out := fs.String("o", "", "output file: .arrow (IPC file) or .arrows (IPC stream); \"-\": stream on stdout")
	fs.IntVar(&d.V, "vocab", d.V, "vocabulary size V")
	fs.IntVar(&d.TokensPerStep, "tokens", d.TokensPerStep, "response tokens per training step")
	fs.IntVar(&d.Steps, "steps", d.Steps, "training steps")
	fs.Int64Var(&d.FirstStep, "first-step", d.FirstStep, "number of the first step")
	dtype := fs.String("dtype", "float32", "logits type: float32, float16 or bfloat16")
	fs.Uint64Var(&d.Seed, "seed", d.Seed, "random seed (same seed, same data)")
	fs.IntVar(&d.GroupSize, "group-size", d.GroupSize, "responses per prompt (GRPO group)")
	fs.IntVar(&d.MeanLength, "length", d.MeanLength, "mean response length in tokens")
	fs.IntVar(&d.BatchRows, "batch", d.BatchRows, "rows per record batch")
	fs.Float64Var(&d.Temperature, "temperature", d.Temperature, "sampling temperature τ (written as papo.temperature)")
	fs.Float64Var(&d.MaskFraction, "mask-fraction", d.MaskFraction, "fraction of tokens with mask = false")
	fs.Float64Var(&d.OldLogprobDrift, "old-logprob-drift", d.OldLogprobDrift, "std of log π_old − log π (0: no old_logprob column)")
	fs.IntVar(&d.Threads, "threads", 0, "generator threads (0: all cores)")
	positional, err := parseFlags(fs, args, env.stderr)
	if err != nil {
		return err
	}
	if len(positional) != 0 {
		return usagef("unexpected argument %q (the output is given with -o)", positional[0])
	}
	if *out == "" {
		return usagef("-o OUT is required")
	}
	if d.Dtype, err = polarity.ParseDtype(*dtype); err != nil {
		return usagef("--dtype: %v", err)
	}
	g, err := synth.New(d)
	if err != nil {
		return usagef("%v", err)
	}
	cfg := g.Config()
	rows, err := synth.WriteFile(*out, g, memory.DefaultAllocator)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "papo gen: wrote %d tokens × V=%d (%s), %d steps, to %s\n", rows, cfg.V, cfg.Dtype, cfg.Steps, *out)
	return nil
}

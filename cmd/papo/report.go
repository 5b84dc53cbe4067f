//go:build !papofront

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/internal/atomicfile"
	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/io/files"
	"github.com/entropy-polarity/papo/papo"
	"github.com/entropy-polarity/papo/polarity"
	"github.com/entropy-polarity/papo/report"
	"github.com/entropy-polarity/papo/run"
	"github.com/entropy-polarity/papo/vocab"
)

// runReport implements `papo report IN... -o report.html`: every input becomes one series of
// the report (package report). An input of logits or row statistics runs through the pipeline
// with analyze's and reweight's flags (in memory: no run state is read or written); papo's
// per-token output is read back (run.Replay).
func runReport(env *environment, args []string) error {
	fs := flagSet("report", "IN... -o report.html [--png DIR] [--vocab tokenizer.json] [--top N] [flags of reweight]")
	out := fs.String("o", "", "the HTML report (one self-contained file)")
	pngDir := fs.String("png", "", "also write each figure as DIR/NAME.png (150 dpi)")
	vocabPath := fs.String("vocab", "", "token texts for the top tokens: a Hugging Face tokenizer.json, or a JSON object of id → text")
	top := fs.Int("top", report.DefaultTop, "how many tokens of largest |P| the report lists")
	title := fs.String("title", "papo report", "the report's title")
	rf := addRunFlags(fs)
	rf.addReweightFlags(fs)
	inputs, err := parseFlags(fs, args, env.stderr)
	if err != nil {
		return err
	}
	switch {
	case len(inputs) == 0:
		return usagef("want at least one input file")
	case *out == "" || *out == "-":
		return usagef("-o FILE is required (the HTML report)")
	case *top < 1:
		return usagef("--top must be ≥ 1")
	case *rf.maxBatch < 1:
		return usagef("--max-batch-bytes must be ≥ 1")
	}
	for _, in := range inputs {
		if in == "-" {
			return usagef("papo report reads files, not standard input")
		}
	}
	if err := rf.loadConfig(fs, args, env.stderr, true); err != nil {
		return err
	}
	rep := &report.Report{Title: *title, Version: versionString()}
	if *vocabPath != "" {
		if rep.Vocab, err = vocab.Load(*vocabPath); err != nil {
			return err
		}
	}

	// Which inputs need an engine: papo's outputs are read back.
	mem := memory.DefaultAllocator
	opts := []papoio.Option{papoio.WithMaxBufferBytes(*rf.maxBatch)}
	computed := make([]bool, len(inputs))
	for i, in := range inputs {
		o, err := files.OpenOutput(in, mem, opts...)
		if errors.Is(err, papoio.ErrNotOutput) {
			computed[i] = true
			continue
		}
		if err != nil {
			return err
		}
		o.Close()
	}
	var engine polarity.Engine
	rep.Device = *rf.device + ": no engine ran (every input is papo's per-token output)"
	for _, c := range computed {
		if c {
			if engine, err = selectEngine(env, *rf.device, *rf.threads, append([]string{"report"}, args...)); err != nil {
				return err
			}
			defer engine.Close()
			rep.Engine, rep.Device = engineLabel(engine), *rf.device+" → "+engine.Name()
			break
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	labels := map[string]int{}
	var firstParams *polarity.Params
	for i, in := range inputs {
		label := strings.TrimSuffix(filepath.Base(in), filepath.Ext(in))
		if computed[i] {
			label += " (" + rf.cfg.Method + ")"
		}
		if labels[label]++; labels[label] > 1 {
			label += " #" + strconv.Itoa(labels[label])
		}
		series := report.NewSeries(label, *top)
		var input report.Input
		var params polarity.Params
		if computed[i] {
			input, params, err = reportComputed(ctx, fs, rf, in, engine, series, opts)
		} else {
			input, params, err = reportReplayed(fs, rf, in, series, opts)
		}
		if err != nil {
			return err
		}
		input.Path, input.Series = in, label
		rep.Inputs = append(rep.Inputs, input)
		rep.Series = append(rep.Series, series)
		if firstParams == nil {
			firstParams = &params
		}
	}
	rep.Params = reportParams(*firstParams, rf.cfg)
	if rf.cfg.Phase.Mode == papo.PhaseTarget {
		target := rf.cfg.Phase.TargetEntropy
		rep.Target = &target
	}
	if len(rep.Series) > 1 {
		rep.Notes = append(rep.Notes, "The first input is the run this page describes; every input is a series of "+
			"\"Methods side by side\". τ, η and the clip range above are the first input's.")
	}
	for _, c := range computed {
		if !c {
			rep.Notes = append(rep.Notes, "Per-token outputs carry no EMA and no phase: for them, E and φ were "+
				"computed again from the steps' mean entropies with the phase parameters above.")
			break
		}
	}

	f, err := atomicfile.Create(*out)
	if err != nil {
		return err
	}
	defer f.Abort()
	if err := rep.WriteHTML(f); err != nil {
		return err
	}
	if err := f.Commit(); err != nil {
		return err
	}
	if *pngDir != "" {
		if err := os.MkdirAll(*pngDir, 0o755); err != nil {
			return err
		}
		paths, err := rep.WritePNG(*pngDir)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stderr, "papo report: %d figures as PNG in %s\n", len(paths), *pngDir)
	}
	steps := 0
	for _, in := range rep.Inputs {
		steps += in.Steps
	}
	fmt.Fprintf(env.stderr, "papo report: wrote %s (%d series, %d steps)\n", *out, len(rep.Series), steps)
	return nil
}

// reportComputed runs an input of logits or row statistics through the pipeline into series.
func reportComputed(ctx context.Context, fs *flag.FlagSet, rf *runFlags, in string, engine polarity.Engine,
	series *report.Series, opts []papoio.Option) (report.Input, polarity.Params, error) {
	r, err := files.Open(in, memory.DefaultAllocator, opts...)
	if err != nil {
		return report.Input{}, polarity.Params{}, err
	}
	defer r.Close()
	meta := r.Meta()
	params, err := rf.params(fs, meta.Params)
	if err != nil {
		return report.Input{}, params, err
	}
	rw, err := papo.NewReweighter(rf.cfg, papo.WithSignal(params))
	if err != nil {
		return report.Input{}, params, err
	}
	defer rw.Close()
	p, err := run.New(run.Config{Name: in, Engine: engine, Params: params, Reweighter: rw}, series)
	if err != nil {
		return report.Input{}, params, err
	}
	defer p.Abort()
	for r.Next() {
		if err := p.Add(ctx, r.Batch()); err != nil {
			return report.Input{}, params, interrupted(err, "")
		}
	}
	if err := r.Err(); err != nil {
		return report.Input{}, params, err
	}
	// An input without rows is a report that says so, not an error.
	if p.Rows() > 0 {
		if err := p.Close(ctx); err != nil {
			return report.Input{}, params, interrupted(err, "")
		}
	}
	kind := "row statistics"
	if !meta.RowStats {
		meta = r.Meta() // V of list<...> logits is known after the first row
		kind = fmt.Sprintf("logits (V = %d, %s)", meta.V, meta.Dtype)
	}
	return report.Input{Kind: kind, Rows: p.Rows(), Steps: p.Steps()}, params, nil
}

// reportReplayed reads papo's per-token output back into series.
func reportReplayed(fs *flag.FlagSet, rf *runFlags, in string, series *report.Series, opts []papoio.Option) (report.Input, polarity.Params, error) {
	r, err := files.OpenOutput(in, memory.DefaultAllocator, opts...)
	if err != nil {
		return report.Input{}, polarity.Params{}, err
	}
	defer r.Close()
	params, err := rf.params(fs, r.Meta().Params)
	if err != nil {
		return report.Input{}, params, err
	}
	rw, err := papo.NewReweighter(rf.cfg)
	if err != nil {
		return report.Input{}, params, err
	}
	defer rw.Close()
	p, err := run.NewReplay(in, rw, series)
	if err != nil {
		return report.Input{}, params, err
	}
	for r.Next() {
		if err := p.Add(r.Batch()); err != nil {
			return report.Input{}, params, err
		}
	}
	if err := r.Err(); err != nil {
		return report.Input{}, params, err
	}
	if err := p.Close(); err != nil {
		return report.Input{}, params, err
	}
	return report.Input{Kind: "per-token output", Rows: p.Rows(), Steps: p.Steps()}, params, nil
}

// reportParams are the parameters the report lists: the signals' and the method's.
func reportParams(p polarity.Params, c papo.Config) []report.Param {
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	out := []report.Param{
		{Name: "temperature τ", Value: f(p.Temperature)}, {Name: "learning rate η", Value: f(p.LR)},
		{Name: "clip ε_low, ε_high", Value: polarity.FormatEpsilon(p.ClipLow) + ", " + polarity.FormatEpsilon(p.ClipHigh)},
		{Name: "natural gradient", Value: strconv.FormatBool(p.NaturalGradient)},
		{Name: "method", Value: c.Method},
		{Name: "phase mode", Value: c.Phase.Mode}, {Name: "EMA β", Value: f(c.Phase.Beta)},
	}
	if c.Phase.Mode == papo.PhaseTarget {
		out = append(out, report.Param{Name: "target entropy H*", Value: f(c.Phase.TargetEntropy)},
			report.Param{Name: "target κ", Value: f(c.Phase.TargetKappa)},
			report.Param{Name: "target integral κ_I", Value: f(c.Phase.TargetIntegral)})
	} else {
		out = append(out, report.Param{Name: "window W", Value: strconv.Itoa(c.Phase.Window)},
			report.Param{Name: "slope κ", Value: f(c.Phase.SlopeKappa)})
	}
	if c.Method == papo.MethodPAPO {
		out = append(out, report.Param{Name: "λ", Value: f(c.Lambda)}, report.Param{Name: "g", Value: c.G},
			report.Param{Name: "renormalize", Value: strconv.FormatBool(c.Renormalize)})
	}
	return out
}

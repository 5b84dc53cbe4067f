package main

import (
	"bufio"
	"fmt"
	"io"
	"text/tabwriter"

	papoio "github.com/entropy-polarity/papo/io"
)

// printSummary writes the per-step table a person reads after a run, in one write where it
// fits 64 KiB (tabwriter alone writes every cell and pad with a system call of its own).
func printSummary(out io.Writer, rows []papoio.StepSummary, reweight bool, method string) {
	w := bufio.NewWriterSize(out, 64<<10)
	defer w.Flush()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "step\ttokens\tmean H\tEMA H\tphase φ\texpanding\tΣP>0\tΣP<0\tΣ pred ΔH\t"
	if reweight {
		head += "Σ w·ΔH\tw min\tw mean\tw max\t"
	}
	fmt.Fprintln(tw, head)
	for _, s := range rows {
		fmt.Fprintf(tw, "%d\t%d\t%.4f\t%.4f\t%+.3f\t%.1f%%\t%.4g\t%.4g\t%+.4g\t",
			s.Step, s.Tokens, s.MeanEntropy, s.EMAEntropy, s.Phase, 100*s.ExpandingFraction,
			s.SumPositivePolarity, s.SumNegativePolarity, s.PredictedDeltaH)
		if reweight {
			fmt.Fprintf(tw, "%+.4g\t%.3f\t%.3f\t%.3f\t", s.ReweightedPredictedDeltaH, s.WeightMin, s.WeightMean, s.WeightMax)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	if reweight {
		fmt.Fprintf(w, "method: %s\n", method)
	}
}

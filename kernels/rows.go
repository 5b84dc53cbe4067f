package kernels

import (
	"fmt"
	"math"

	"github.com/entropy-polarity/papo/polarity"
)

// PackRows writes the kernel inputs besides the logits of rows [lo, lo+len(dst)) of b into dst.
func PackRows(b *polarity.Batch, lo int, dst []RowIn) {
	if lo < 0 || lo+len(dst) > b.Rows() {
		panic(fmt.Sprintf("kernels: PackRows of rows [%d, %d) of a batch of %d", lo, lo+len(dst), b.Rows()))
	}
	for r := range dst {
		i := lo + r
		in := RowIn{Token: b.TokenID[i]}
		if b.HasAdvantage(i) {
			in.Flags |= HasAdvantage
			in.Advantage = b.Advantage[i]
		}
		if b.HasOldLogprob(i) {
			in.Flags |= HasOldLogprob
			in.OldLogprob = b.OldLogprob[i]
		}
		if b.Trained(i) {
			in.Flags |= Trained
		}
		dst[r] = in
	}
}

// Unpack stores rows [lo, lo+len(status)) of b from one launch's outputs: cols holds OutColumns
// columns of len(status) float32 each, status one value per row. out must already be sized to
// b.Rows(). It returns the data error of the lowest bad row, as the CPU engine reports it:
// polarity.LogitsError for a NaN, +Inf or no finite logit (the offending index found on the
// host copy of the row), and polarity.Finish's own error for a bad advantage or old
// log-probability. Rows without error are stored even after a bad row.
func Unpack(b *polarity.Batch, p polarity.Params, lo int, cols []float32, status []int32, out *polarity.Result) error {
	n := len(status)
	if len(cols) < OutColumns*n {
		panic(fmt.Sprintf("kernels: Unpack of %d rows from %d output values", n, len(cols)))
	}
	col := func(k int) []float32 { return cols[k*n : (k+1)*n] }
	entropy, logprob, sampled, corr := col(0), col(1), col(2), col(3)
	factor, polarityCol, deltaH := col(4), col(5), col(6)
	var first error
	for r, s := range status {
		i := lo + r
		if s == StatusOK {
			out.Entropy[i] = entropy[r]
			out.Logprob[i] = logprob[r]
			out.SampledTerm[i] = sampled[r]
			out.Correction[i] = corr[r]
			out.PolarityFactor[i] = factor[r]
			out.Polarity[i] = polarityCol[r]
			out.PolarityValid[i] = b.HasAdvantage(i)
			out.PredictedDeltaH[i] = deltaH[r]
			continue
		}
		if first == nil {
			first = rowError(b, p, i, s, entropy[r], logprob[r], sampled[r], corr[r])
		}
	}
	return first
}

// rowError turns row i's kernel status into the error the CPU engine returns for that row.
func rowError(b *polarity.Batch, p polarity.Params, i int, s int32, entropy, logprob, sampled, corr float32) error {
	V := b.Logits.V
	switch s {
	case StatusBadLogit:
		for j := range V {
			if x := b.Logits.At(i, j); x != x || x > math.MaxFloat32 {
				return polarity.LogitsError(i, j, x, V)
			}
		}
		return fmt.Errorf("kernels: row %d: the kernel found a NaN or +Inf logit that the host's copy of the row does not hold (corrupted transfer?)", i)
	case StatusNoFinite:
		return polarity.LogitsError(i, -1, 0, V)
	case StatusAdvantage, StatusOldLogprob:
		_, err := polarity.Finish(b, i, p, float64(entropy), float64(logprob), float64(sampled), float64(corr))
		if err != nil {
			return err
		}
		return fmt.Errorf("kernels: row %d: the kernel reported status %d but polarity.Finish accepts the row", i, s)
	}
	return fmt.Errorf("kernels: row %d: unknown kernel status %d", i, s)
}

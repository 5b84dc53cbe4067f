package report

import (
	"fmt"
	"math"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/run"
)

// realized is what a step's rows say about its realized entropy change: on the same tokens when
// the input has entropy_after (the entropy of the row after the trainer's first update), and the
// spread of the token entropies, which bounds the noise of a step's mean entropy.
type realized struct {
	// Over the trained tokens with an advantage and an entropy_after value:
	SameTokens    int64
	SumPredicted  float64 // Σ w·ΔĤ
	SumRealized   float64 // Σ (H_after − H)
	SumEntropy    float64 // Σ H over the step's trained tokens (for the noise bound)
	SumEntropySq  float64 // Σ H²
	EntropyTokens int64
}

// StandardError is the standard error of the step's mean entropy as a mean of independent
// tokens, sd(H)/√n (0 with fewer than two tokens). Tokens of one response are not independent,
// so the true sampling noise of H̄ is larger: this is a lower bound.
func (r realized) StandardError() float64 {
	n := float64(r.EntropyTokens)
	if n < 2 {
		return 0
	}
	mean := r.SumEntropy / n
	v := math.Max(0, (r.SumEntropySq/n-mean*mean)*n/(n-1))
	return math.Sqrt(v / n)
}

// entropyAfter reads the optional entropy_after column of rec: ok false where it is absent,
// valid false where a row is null. A column of another type is an error (io refuses it in an
// input; an output read back carries what was written).
func entropyAfter(rec arrow.Record) (get func(i int) (float64, bool), present bool, err error) {
	if rec == nil {
		return nil, false, nil
	}
	idx := rec.Schema().FieldIndices(papoio.ColEntropyAfter)
	if len(idx) != 1 {
		return nil, false, nil
	}
	switch col := rec.Column(idx[0]).(type) {
	case *array.Float64:
		return func(i int) (float64, bool) { return col.Value(i), col.IsValid(i) }, true, nil
	case *array.Float32:
		return func(i int) (float64, bool) { return float64(col.Value(i)), col.IsValid(i) }, true, nil
	}
	return nil, false, fmt.Errorf("column %s has type %s; want float32 or float64", papoio.ColEntropyAfter, rec.Column(idx[0]).DataType())
}

// addRealized folds one piece of a step into cur.
func (s *Series) addRealized(r *run.Rows) error {
	after, present, err := entropyAfter(r.Passthrough)
	if err != nil {
		return fmt.Errorf("report: %s: step %d: %w", s.Label, r.Step, err)
	}
	if present {
		s.sameTokenInput = true
	}
	b, res := r.Batch, r.Result
	for i := range b.Rows() {
		if !b.Trained(i) {
			continue
		}
		h := float64(res.Entropy[i])
		s.curRealized.SumEntropy += h
		s.curRealized.SumEntropySq += h * h
		s.curRealized.EntropyTokens++
		if !present || !res.PolarityValid[i] {
			continue
		}
		ha, ok := after(i)
		if !ok {
			continue
		}
		if math.IsNaN(ha) || math.IsInf(ha, 0) || ha < 0 {
			return fmt.Errorf("report: %s: step %d, row %d of the piece: %s is %v; want a finite entropy ≥ 0 (null where the row was not recomputed)",
				s.Label, r.Step, i, papoio.ColEntropyAfter, ha)
		}
		s.curRealized.SameTokens++
		s.curRealized.SumPredicted += float64(r.Weight[i]) * float64(res.PredictedDeltaH[i])
		s.curRealized.SumRealized += ha - h
	}
	return nil
}

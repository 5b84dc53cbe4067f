package polarity

import (
	"errors"
	"math"
)

// RowStats64 is the float64 reference for one row and sampled token (ReferenceRow).
type RowStats64 struct {
	RowStats            // C and SumPi2 from a second pass, once L and μ are known
	Logprob     float64 // log π_a
	SampledTerm float64 // S_a = π_a (u_a − μ)
	// CScale = Σ π_j² (M − u_j) + (M − μ)·Σ π_j² is the size of the two same-sign terms that
	// the one-pass formula C = (S3 − (s1/s0)·S2)/s0² subtracts: a one-pass engine's absolute
	// error in C is a few of its rounding units times CScale, not times |C|.
	CScale float64
}

// ReferenceRow computes the row statistics of the scaled logits u (u_j = z_j/τ) and the
// sampled token a in float64, straightforwardly: a first pass for the maximum, a second for
// s0 = 1 + Rest and s1 (docs/MATH.md §3's log1p form; compensated sums), a third for
// C = Σ π_j² (u_j − μ) (the second-pass form §3 allows). It is the oracle of the tests, not a
// fast path. u must hold no NaN or +Inf and at least one element above −Inf (it panics
// otherwise: the engines and Reference report those as data errors), and 0 ≤ a < len(u).
func ReferenceRow(u []float64, a int) RowStats64 {
	st, err := referenceRow(u, a)
	if err != nil {
		panic("polarity: ReferenceRow: " + err.Error())
	}
	return st
}

func referenceRow(u []float64, a int) (RowStats64, error) {
	mx, at := math.Inf(-1), -1
	for j, x := range u {
		if x != x {
			return RowStats64{}, errors.New(nanAt(j))
		}
		if math.IsInf(x, 1) {
			return RowStats64{}, errors.New(posInfAt(j))
		}
		if x > mx {
			mx, at = x, j
		}
	}
	if at < 0 {
		return RowStats64{}, errors.New(noFiniteLogit(len(u)))
	}
	var rest, s1 compensated
	for j, x := range u {
		if j == at || math.IsInf(x, -1) {
			continue
		}
		v := x - mx
		e := math.Exp(v)
		rest.add(e)
		s1.add(e * v)
	}
	s0 := 1 + rest.value()
	logS0 := math.Log1p(rest.value())
	shift := s1.value() / s0

	var c, sumPi2, below compensated
	for _, x := range u {
		if math.IsInf(x, -1) {
			continue
		}
		v := x - mx
		pi := math.Exp(v - logS0)
		pi2 := pi * pi
		c.add(pi2 * (v - shift))
		sumPi2.add(pi2)
		below.add(-pi2 * v)
	}
	st := RowStats64{
		RowStats: RowStats{
			M:         mx,
			LogS0:     logS0,
			MeanShift: shift,
			L:         mx + logS0,
			Mu:        mx + shift,
			H:         logS0 - shift,
			C:         c.value(),
			SumPi2:    sumPi2.value(),
		},
		CScale: below.value() - shift*sumPi2.value(),
	}
	st.Logprob, st.SampledTerm = st.Sampled(u[a])
	return st, nil
}

// compensated is Neumaier's compensated sum: the reference's sums of up to ~150k terms keep
// a relative error of a few 1e-16 instead of up to V·1e-16.
type compensated struct{ sum, carry float64 }

func (s *compensated) add(x float64) {
	t := s.sum + x
	if math.Abs(s.sum) >= math.Abs(x) {
		s.carry += (s.sum - t) + x
	} else {
		s.carry += (x - t) + s.sum
	}
	s.sum = t
}

func (s *compensated) value() float64 { return s.sum + s.carry }

// Reference64 computes every row of b in float64 with ReferenceRow and Finish: the oracle the
// engines' tests compare against, element by element. Data errors are the engines' (*RowError
// for NaN or +Inf logits, a row without a finite logit, a bad token id, advantage or old
// log-probability), reported for the first bad row.
func Reference64(b *Batch, p Params) ([]RowOutputs, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	n, V := b.Rows(), b.Logits.V
	outs := make([]RowOutputs, n)
	u := make([]float64, V)
	for i := range n {
		for j := range u {
			u[j] = float64(b.Logits.At(i, j)) / p.Temperature
		}
		st, err := referenceRow(u, int(b.TokenID[i]))
		if err != nil {
			return nil, &RowError{Row: i, Column: "logits", Msg: err.Error()}
		}
		o, err := Finish(b, i, p, st.H, st.Logprob, st.SampledTerm, st.C)
		if err != nil {
			return nil, err
		}
		outs[i] = o
	}
	return outs, nil
}

// Reference is Reference64 stored into out (resized to b.Rows()), rounded to float32.
func Reference(b *Batch, p Params, out *Result) error {
	outs, err := Reference64(b, p)
	if err != nil {
		return err
	}
	out.Resize(len(outs))
	for i, o := range outs {
		o.Store(out, i)
	}
	return nil
}

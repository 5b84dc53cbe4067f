package report

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/papo"
	"github.com/entropy-polarity/papo/polarity"
	"github.com/entropy-polarity/papo/run"
)

// synth describes synthetic steps fed to a Series the way a run.Pipeline feeds it.
type synth struct {
	steps, tokens int
	seed          uint64
	noAdvantage   bool
	maskedStep    int     // this step has every token masked (-1: none)
	lambda        float64 // weights 1 + λ·φ·sign(P)
}

// feed builds the steps' rows and reports and hands them to s.
func (c synth) feed(t testing.TB, s *Series) { c.feedAt(t, s, 10) }

// feedAt feeds c's steps numbered from first on, two apart.
func (c synth) feedAt(t testing.TB, s *Series, first int64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(c.seed, 3))
	ema := math.NaN()
	for k := range c.steps {
		n := c.tokens
		b := polarity.Batch{TokenID: make([]int32, n), Mask: make([]bool, n)}
		var res polarity.Result
		res.Resize(n)
		if !c.noAdvantage {
			b.Advantage = make([]float64, n)
		}
		weight := make([]float32, n)
		reweighted := make([]float64, n)
		phase := math.Tanh(float64(k-c.steps/2) / 5)
		for i := range n {
			b.TokenID[i] = int32(rng.IntN(1000))
			b.Mask[i] = k != c.maskedStep && i%7 != 3
			res.Entropy[i] = float32(0.3 + 0.2*math.Sin(float64(k)/4) + 0.1*rng.Float64())
			res.PolarityFactor[i] = float32(rng.NormFloat64() * math.Pow(10, -3*rng.Float64()))
			weight[i] = 1
			if c.noAdvantage {
				continue
			}
			a := float64(rng.IntN(3) - 1) // GRPO-like: −1, 0 or +1
			b.Advantage[i] = a
			res.PolarityValid[i] = true
			res.Polarity[i] = float32(a) * res.PolarityFactor[i]
			if b.Mask[i] {
				res.PredictedDeltaH[i] = res.Polarity[i]
				weight[i] = float32(1 + c.lambda*phase*math.Copysign(1, float64(res.Polarity[i])))
			}
			reweighted[i] = float64(weight[i]) * a
		}
		var st polarity.StepStats
		st.Add(&b, &res, 0, n)
		ws := papo.WeightStats{WeightMin: math.Inf(1), WeightMax: math.Inf(-1)}
		var sumW float64
		for i := range n {
			if b.Trained(i) && b.HasAdvantage(i) {
				w := float64(weight[i])
				ws.Weighted++
				sumW += w
				ws.WeightMin, ws.WeightMax = math.Min(ws.WeightMin, w), math.Max(ws.WeightMax, w)
				ws.SumWeightedPredictedDeltaH += w * float64(res.PredictedDeltaH[i])
				if reweighted[i] != b.Advantage[i] {
					ws.Changed++
				}
			}
		}
		if ws.Weighted == 0 {
			ws.WeightMin, ws.WeightMean, ws.WeightMax = 1, 1, 1
		} else {
			ws.WeightMean = sumW / float64(ws.Weighted)
		}
		step := first + int64(2*k)
		if err := s.Rows(&run.Rows{Step: step, Batch: &b, Result: &res, Weight: weight, Reweighted: reweighted}); err != nil {
			t.Fatal(err)
		}
		if math.IsNaN(ema) {
			ema = st.MeanEntropy()
		}
		ema = 0.9*ema + 0.1*st.MeanEntropy()
		sum := papoio.StepSummary{Step: step, Tokens: st.Tokens, MeanEntropy: st.MeanEntropy(), EMAEntropy: ema,
			Phase: phase, ExpandingFraction: st.ExpandingFraction(), SumPositivePolarity: st.SumPositiveP,
			SumNegativePolarity: st.SumNegativeP, PredictedDeltaH: st.SumDeltaH,
			ReweightedPredictedDeltaH: ws.SumWeightedPredictedDeltaH, WeightMin: ws.WeightMin, WeightMean: ws.WeightMean,
			WeightMax: ws.WeightMax}
		if err := s.Step(&run.StepReport{Summary: sum, Reweight: papo.StepResult{WeightStats: ws}}); err != nil {
			t.Fatal(err)
		}
	}
}

// series is a Series fed with c.
func (c synth) series(t testing.TB, label string) *Series {
	s := NewSeries(label, 0)
	c.feed(t, s)
	return s
}

// render writes r's page.
func render(t testing.TB, r *Report) string {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// drawnElements counts the drawing elements of an SVG.
func drawnElements(svg string) int {
	n := 0
	for _, tag := range []string{"<path", "<circle", "<rect", "<line", "<polyline", "<polygon", "<text", "<image"} {
		n += strings.Count(svg, tag)
	}
	return n
}

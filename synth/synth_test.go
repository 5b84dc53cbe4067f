package synth

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/entropy-polarity/papo/polarity"
)

func TestSampleFollowsSoftmax(t *testing.T) {
	z := []float64{2, 1, 0.1, -1}
	pi := []float64{0.638066351147938, 0.234731492690605, 0.095434703113622, 0.031767453047836}
	rng := rand.New(rand.NewPCG(3, 3))
	const n = 200000
	counts := make([]float64, len(z))
	buf := make([]float64, len(z))
	for range n {
		copy(buf, z)
		a, logp := sample(buf, 1, rng.Float64())
		counts[a]++
		// log π_a is exact up to float64 rounding of exp/log: 1e-12.
		if math.Abs(logp-math.Log(pi[a])) > 1e-12 {
			t.Fatalf("log π_%d = %v, want %v", a, logp, math.Log(pi[a]))
		}
	}
	// Chi-square with 3 degrees of freedom: 16.27 is the 0.999 quantile, so a correct sampler
	// fails this one time in a thousand with this fixed seed's luck; a biased one fails always.
	var chi2 float64
	for j := range z {
		e := n * pi[j]
		chi2 += (counts[j] - e) * (counts[j] - e) / e
	}
	if chi2 > 16.27 {
		t.Errorf("chi-square %v > 16.27: counts %v, expected %v·n", chi2, counts, pi)
	}
}

func generate(t *testing.T, cfg Config) (tokens []int32, adv []float64, groups []int64, logits []float32) {
	tokens, adv, groups, _, logits = generateSeq(t, cfg)
	return
}

func generateSeq(t *testing.T, cfg Config) (tokens []int32, adv []float64, groups, seqs []int64, logits []float32) {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for g.Next() {
		c := g.Columns()
		tokens = append(tokens, c.Batch.TokenID...)
		adv = append(adv, c.Batch.Advantage...)
		groups = append(groups, c.GroupID...)
		seqs = append(seqs, c.SequenceID...)
		logits = append(logits, c.Batch.Logits.F32...)
		for i, a := range c.Batch.TokenID {
			if a < 0 || int(a) >= cfg.V {
				t.Fatalf("token %d outside [0, %d)", a, cfg.V)
			}
			if cfg.Dtype == polarity.Float32 && math.IsNaN(float64(c.Batch.Logits.F32[i*cfg.V+int(a)])) {
				t.Fatal("NaN logit")
			}
		}
	}
	return tokens, adv, groups, seqs, logits
}

func TestGeneratorDeterministicAcrossThreads(t *testing.T) {
	cfg := Config{V: 5000, TokensPerStep: 100, Steps: 2, Seed: 42, BatchRows: 17, Threads: 1}
	t1, a1, _, l1 := generate(t, cfg)
	cfg.Threads = 4
	t4, a4, _, l4 := generate(t, cfg)
	if !slices.Equal(t1, t4) || !slices.Equal(a1, a4) || !slices.Equal(l1, l4) {
		t.Fatal("data depend on the number of worker threads")
	}
	if len(t1) != 200 {
		t.Fatalf("%d rows, want 2 steps × 100", len(t1))
	}
	cfg.Seed = 43
	t43, _, _, _ := generate(t, cfg)
	if slices.Equal(t1, t43) {
		t.Fatal("another seed gave the same tokens")
	}
}

func TestGeneratorAdvantagesAreGroupNormalized(t *testing.T) {
	cfg := Config{V: 100, TokensPerStep: 4000, Steps: 1, Seed: 5, GroupSize: 8, MeanLength: 10}
	_, adv, groups, seqs, _ := generateSeq(t, cfg)
	// One advantage per response; per complete group their mean is 0 (GRPO). The step's last
	// group may be cut short by the token budget, so it is left out.
	perSeq := map[int64]float64{}
	groupOf := map[int64]int64{}
	for i, s := range seqs {
		if a, ok := perSeq[s]; ok && a != adv[i] {
			t.Fatalf("sequence %d has two advantages %v and %v", s, a, adv[i])
		}
		perSeq[s], groupOf[s] = adv[i], groups[i]
	}
	sum, count := map[int64]float64{}, map[int64]int{}
	for s, a := range perSeq {
		sum[groupOf[s]] += a
		count[groupOf[s]]++
	}
	last := groups[len(groups)-1]
	for g, n := range count {
		// 1e-9: the mean of eight O(1) values, normalized with a 1e-6 epsilon.
		if g != last && n == cfg.GroupSize && math.Abs(sum[g]/float64(n)) > 1e-9 {
			t.Errorf("group %d: mean advantage %v, want 0", g, sum[g]/float64(n))
		}
	}
	nonzero := 0
	for _, a := range adv {
		if a != 0 {
			nonzero++
		}
	}
	if nonzero == 0 {
		t.Fatal("every advantage is zero")
	}
	for _, a := range adv {
		// |A| ≤ sqrt(G − 1) for group-normalized binary rewards.
		if math.Abs(a) > math.Sqrt(7)+1e-6 {
			t.Fatalf("advantage %v beyond the GRPO bound √(G−1)", a)
		}
	}
}

func TestGeneratorMixesPeakedAndFlatRows(t *testing.T) {
	cfg := Config{V: 20000, TokensPerStep: 300, Steps: 1, Seed: 11}
	_, _, _, logits := generate(t, cfg)
	rows := len(logits) / cfg.V
	var peaked, flat int
	for r := range rows {
		row := logits[r*cfg.V : (r+1)*cfg.V]
		u := make([]float64, len(row))
		for j, x := range row {
			u[j] = float64(x)
		}
		m := slices.Max(u)
		var s0, s1 float64
		for _, x := range u {
			e := math.Exp(x - m)
			s0 += e
			s1 += e * (x - m)
		}
		h := math.Log(s0) - s1/s0
		switch {
		case h < 0.5:
			peaked++
		case h > 1:
			flat++
		}
	}
	if peaked < rows/2 || flat < rows/20 {
		t.Fatalf("%d rows: %d peaked (H < 0.5), %d flat (H > 1): want a majority peaked and ≥ 5%% flat", rows, peaked, flat)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{V: -1}, {TokensPerStep: -1}, {Steps: -2}, {Temperature: -1}, {MaskFraction: 2}, {NoiseSigma: -1},
	}
	for _, c := range bad {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted an invalid configuration", c)
		}
	}
}

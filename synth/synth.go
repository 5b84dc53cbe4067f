package synth

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"

	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/polarity"
)

// Config describes a synthetic data set. Zero values take the defaults of DefaultConfig.
type Config struct {
	V             int            // vocabulary size
	TokensPerStep int            // response tokens in each training step
	Steps         int            // training steps
	FirstStep     int64          // number of the first step
	Dtype         polarity.Dtype // element type of the logits
	Seed          uint64         // same seed, same data
	GroupSize     int            // responses per prompt (GRPO group)
	MeanLength    int            // mean response length in tokens
	BatchRows     int            // rows per record batch
	Temperature   float64        // τ written to the schema metadata; tokens are sampled from softmax(z/τ)
	NoiseSigma    float64        // standard deviation of the logit noise floor
	MaskFraction  float64        // fraction of tokens with mask = false
	// OldLogprobDrift is the standard deviation of log π_old(a) − log π(a), the off-policy
	// drift of PPO's inner epochs; 0 writes no old_logprob column.
	OldLogprobDrift float64
	Threads         int // row generation workers; ≤ 0 uses every core
}

// DefaultConfig is a Qwen-sized vocabulary, 4 steps of 256 tokens, float32 logits.
func DefaultConfig() Config {
	return Config{
		V: 151936, TokensPerStep: 256, Steps: 4, Dtype: polarity.Float32, Seed: 1,
		GroupSize: 8, MeanLength: 16, BatchRows: 128, Temperature: 1, NoiseSigma: 2,
		MaskFraction: 0.02, OldLogprobDrift: 0.05,
	}
}

// Validate reports a configuration that cannot generate data.
func (c Config) Validate() error {
	switch {
	case c.V < 1:
		return fmt.Errorf("vocabulary size %d: want ≥ 1", c.V)
	case c.TokensPerStep < 1:
		return fmt.Errorf("tokens per step %d: want ≥ 1", c.TokensPerStep)
	case c.Steps < 1:
		return fmt.Errorf("steps %d: want ≥ 1", c.Steps)
	case c.GroupSize < 1:
		return fmt.Errorf("group size %d: want ≥ 1", c.GroupSize)
	case c.MeanLength < 1:
		return fmt.Errorf("mean response length %d: want ≥ 1", c.MeanLength)
	case c.BatchRows < 1:
		return fmt.Errorf("batch rows %d: want ≥ 1", c.BatchRows)
	case !(c.Temperature > 0) || math.IsInf(c.Temperature, 0):
		return fmt.Errorf("temperature %v: want a finite value > 0", c.Temperature)
	case !(c.NoiseSigma >= 0):
		return fmt.Errorf("noise sigma %v: want ≥ 0", c.NoiseSigma)
	case !(c.MaskFraction >= 0 && c.MaskFraction <= 1):
		return fmt.Errorf("mask fraction %v: want a value in [0, 1]", c.MaskFraction)
	case !(c.OldLogprobDrift >= 0):
		return fmt.Errorf("old-logprob drift %v: want ≥ 0", c.OldLogprobDrift)
	}
	return nil
}

// Metadata is the schema metadata a generated file carries.
func (c Config) Metadata() map[string]string {
	m := map[string]string{"papo.temperature": fmt.Sprint(c.Temperature), "papo.run_id": fmt.Sprintf("synth-%d", c.Seed)}
	if c.OldLogprobDrift > 0 {
		// DAPO's asymmetric clip range, so that clipping is exercised.
		m["papo.clip_low"], m["papo.clip_high"] = "0.2", "0.28"
	}
	return m
}

// Columns reports which optional input columns the generator fills.
func (c Config) Columns() papoio.InputColumns {
	cols := papoio.InputColumns{
		Batch:      polarity.Batch{Advantage: []float64{}, Mask: []bool{}},
		SequenceID: []int64{}, GroupID: []int64{}, Step: []int64{}, Position: []int32{},
	}
	if c.OldLogprobDrift > 0 {
		cols.Batch.OldLogprob = []float32{}
	}
	return cols
}

// token is one row's bookkeeping, decided before its logits are drawn.
type token struct {
	seq, group int64
	pos        int32
	advantage  float64
	mask       bool
}

// noisePoolSize standard normals are drawn once; each row reads the pool from a random
// offset, which makes a 151,936-wide row cost a copy instead of 151,936 normal draws.
const noisePoolSize = 1 << 20

// Generator yields the data set batch by batch; memory is bounded by one batch.
type Generator struct {
	cfg   Config
	noise []float32
	rng   *rand.Rand

	stepIndex int
	tokens    []token // the current step's rows
	next      int     // first row of the next batch within tokens
	seq       int64
	group     int64

	cols papoio.InputColumns
}

// New validates cfg (after filling zero fields from DefaultConfig) and prepares a generator.
func New(cfg Config) (*Generator, error) {
	d := DefaultConfig()
	fill := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	fill(&cfg.V, d.V)
	fill(&cfg.TokensPerStep, d.TokensPerStep)
	fill(&cfg.Steps, d.Steps)
	fill(&cfg.GroupSize, d.GroupSize)
	fill(&cfg.MeanLength, d.MeanLength)
	fill(&cfg.BatchRows, d.BatchRows)
	if cfg.Temperature == 0 {
		cfg.Temperature = d.Temperature
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	g := &Generator{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15))}
	g.noise = make([]float32, noisePoolSize)
	for i := range g.noise {
		g.noise[i] = float32(g.rng.NormFloat64())
	}
	g.stepIndex = -1
	return g, nil
}

// Config is the effective configuration.
func (g *Generator) Config() Config { return g.cfg }

// Next generates the next batch; it returns false after the last step.
func (g *Generator) Next() bool {
	if g.stepIndex < 0 || g.next == len(g.tokens) {
		g.stepIndex++
		if g.stepIndex >= g.cfg.Steps {
			return false
		}
		g.planStep()
	}
	hi := min(g.next+g.cfg.BatchRows, len(g.tokens))
	g.fill(g.tokens[g.next:hi])
	g.next = hi
	return true
}

// Columns is the current batch; it is overwritten by the next call to Next.
func (g *Generator) Columns() *papoio.InputColumns { return &g.cols }

// planStep draws the step's prompt groups, responses, rewards and GRPO advantages.
func (g *Generator) planStep() {
	g.tokens = g.tokens[:0]
	g.next = 0
	for len(g.tokens) < g.cfg.TokensPerStep {
		// A prompt's difficulty sets its success rate; rewards are Bernoulli.
		p := g.rng.Float64()
		rewards := make([]float64, g.cfg.GroupSize)
		var mean float64
		for i := range rewards {
			if g.rng.Float64() < p {
				rewards[i] = 1
			}
			mean += rewards[i]
		}
		mean /= float64(len(rewards))
		var variance float64
		for _, r := range rewards {
			variance += (r - mean) * (r - mean)
		}
		std := math.Sqrt(variance / float64(len(rewards)))
		for _, r := range rewards {
			adv := 0.0
			if std > 0 {
				adv = (r - mean) / (std + 1e-6) // GRPO: group-normalized reward
			}
			length := g.cfg.MeanLength/2 + g.rng.IntN(g.cfg.MeanLength+1)
			for pos := 0; pos < max(length, 1) && len(g.tokens) < g.cfg.TokensPerStep; pos++ {
				g.tokens = append(g.tokens, token{
					seq: g.seq, group: g.group, pos: int32(pos), advantage: adv,
					mask: g.rng.Float64() >= g.cfg.MaskFraction,
				})
			}
			g.seq++
		}
		g.group++
	}
}

// fill draws the logits of rows and samples each row's token from its own softmax.
func (g *Generator) fill(rows []token) {
	n, v := len(rows), g.cfg.V
	c := &g.cols
	c.Batch.Logits = polarity.Logits{Dtype: g.cfg.Dtype, V: v}
	if g.cfg.Dtype == polarity.Float32 {
		c.Batch.Logits.F32 = resize(c.Batch.Logits.F32, n*v)
	} else {
		c.Batch.Logits.Bits = resize(c.Batch.Logits.Bits, n*v)
	}
	c.Batch.TokenID = resize(c.Batch.TokenID, n)
	c.Batch.Advantage = resize(c.Batch.Advantage, n)
	c.Batch.Mask = resize(c.Batch.Mask, n)
	c.SequenceID = resize(c.SequenceID, n)
	c.GroupID = resize(c.GroupID, n)
	c.Step = resize(c.Step, n)
	c.Position = resize(c.Position, n)
	if g.cfg.OldLogprobDrift > 0 {
		c.Batch.OldLogprob = resize(c.Batch.OldLogprob, n)
	}
	step := g.cfg.FirstStep + int64(g.stepIndex)
	for i, t := range rows {
		c.Batch.Advantage[i] = t.advantage
		c.Batch.Mask[i] = t.mask
		c.SequenceID[i], c.GroupID[i], c.Step[i], c.Position[i] = t.seq, t.group, step, t.pos
	}

	threads := g.cfg.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	var wg sync.WaitGroup
	work := make(chan int)
	for range min(threads, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			row := make([]float64, v)
			for i := range work {
				g.row(i, step, row)
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
}

// row draws row i of the batch. Its random stream depends only on the seed, the step and
// the row's global position, so the data do not depend on the number of workers.
func (g *Generator) row(i int, step int64, z []float64) {
	c := &g.cols
	v := g.cfg.V
	global := uint64(g.next) + uint64(i)
	rng := rand.New(rand.NewPCG(g.cfg.Seed^uint64(step)*0x9e3779b97f4a7c15, global))

	// Noise floor, then the distribution's shape. With N(0, σ²) noise, the noise's log-sum-exp
	// is about log V + σ²/2; candidates are placed relative to it.
	sigma := g.cfg.NoiseSigma
	off := rng.IntN(noisePoolSize)
	for j := range z {
		z[j] = sigma * float64(g.noise[(off+j)&(noisePoolSize-1)])
	}
	floor := math.Log(float64(v)) + sigma*sigma/2
	k := float64(g.stepIndex)
	flatFraction := 0.3 * math.Pow(0.75, k) // entropy collapses across steps
	if rng.Float64() < flatFraction {
		// A genuine choice between a handful of plausible tokens.
		candidates := 2 + rng.IntN(10)
		for range candidates {
			z[rng.IntN(v)] = floor + 3*rng.Float64()
		}
	} else {
		// A near-deterministic token whose margin grows as the policy sharpens.
		z[rng.IntN(v)] = floor + 2 + 10*rng.Float64() + 1.5*k
	}

	// Store in the file's dtype, then sample from the stored values so the data set is
	// self-consistent: the token really is a draw from softmax(stored z / τ).
	base := i * v
	switch g.cfg.Dtype {
	case polarity.Float32:
		for j, x := range z {
			f := float32(x)
			c.Batch.Logits.F32[base+j] = f
			z[j] = float64(f)
		}
	case polarity.Float16:
		for j, x := range z {
			h := polarity.Float32ToFloat16(float32(x))
			c.Batch.Logits.Bits[base+j] = h
			z[j] = float64(polarity.Float16ToFloat32(h))
		}
	case polarity.BFloat16:
		for j, x := range z {
			h := polarity.Float32ToBFloat16(float32(x))
			c.Batch.Logits.Bits[base+j] = h
			z[j] = float64(polarity.BFloat16ToFloat32(h))
		}
	}
	a, logp := sample(z, 1/g.cfg.Temperature, rng.Float64())
	c.Batch.TokenID[i] = int32(a)
	if g.cfg.OldLogprobDrift > 0 {
		c.Batch.OldLogprob[i] = float32(logp + g.cfg.OldLogprobDrift*rng.NormFloat64())
	}
}

// sample draws a ∼ softmax(z·invTau) by inverting the cumulative distribution at u ∈ [0, 1)
// and returns a with log π_a. z is overwritten.
func sample(z []float64, invTau, u float64) (int, float64) {
	m := math.Inf(-1)
	for _, x := range z {
		m = max(m, x*invTau)
	}
	var total float64
	for j, x := range z {
		z[j] = math.Exp(x*invTau - m)
		total += z[j]
	}
	target := u * total
	var acc float64
	a := len(z) - 1
	for j, p := range z {
		acc += p
		if acc > target {
			a = j
			break
		}
	}
	for a > 0 && z[a] == 0 { // never return a zero-probability token from rounding at the end
		a--
	}
	return a, math.Log(z[a]) - math.Log(total)
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

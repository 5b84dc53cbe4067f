package polarity

import (
	"context"
	"fmt"
)

// At is the logit of row i, vocabulary entry j, as float32 (float16 and bfloat16 decoded).
func (l *Logits) At(i, j int) float32 {
	k := i*l.V + j
	switch l.Dtype {
	case Float16:
		return Float16ToFloat32(l.Bits[k])
	case BFloat16:
		return BFloat16ToFloat32(l.Bits[k])
	}
	return l.F32[k]
}

// Validate checks what an engine relies on before it touches a row: the lengths of the logits
// and of every present column agree with the number of token ids (an error naming the
// column), and every token id lies in [0, V) (a *RowError). Engines call it first.
func (b *Batch) Validate() error {
	n := len(b.TokenID)
	l := &b.Logits
	if n == 0 {
		return nil
	}
	if l.V <= 0 {
		return fmt.Errorf("polarity: batch of %d rows has logits with V = %d, want V ≥ 1", n, l.V)
	}
	var have int
	switch l.Dtype {
	case Float32:
		have = len(l.F32)
	case Float16, BFloat16:
		have = len(l.Bits)
	default:
		return fmt.Errorf("polarity: batch has logits of unknown %v", l.Dtype)
	}
	if have != n*l.V {
		return fmt.Errorf("polarity: batch of %d token rows has %d %v logits, want %d×%d = %d", n, have, l.Dtype, n, l.V, n*l.V)
	}
	for _, c := range []struct {
		name string
		len  int
		nil  bool
	}{
		{"advantage", len(b.Advantage), b.Advantage == nil},
		{"advantage validity", len(b.AdvantageValid), b.AdvantageValid == nil},
		{"old_logprob", len(b.OldLogprob), b.OldLogprob == nil},
		{"old_logprob validity", len(b.OldLogprobValid), b.OldLogprobValid == nil},
		{"mask", len(b.Mask), b.Mask == nil},
	} {
		if !c.nil && c.len != n {
			return fmt.Errorf("polarity: batch of %d token rows has %d %s values, want %d (or none)", n, c.len, c.name, n)
		}
	}
	for i, a := range b.TokenID {
		if a < 0 || int(a) >= l.V {
			return &RowError{Row: i, Column: "token_id", Msg: fmt.Sprintf("%d is outside [0, %d)", a, l.V)}
		}
	}
	return nil
}

// Begin is the prologue every Engine.Compute shares: it validates p and b, sizes out to the
// batch and reports a cancelled ctx. It returns the number of rows to compute.
func Begin(ctx context.Context, b *Batch, p Params, out *Result) (int, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	if err := b.Validate(); err != nil {
		return 0, err
	}
	n := b.Rows()
	out.Resize(n)
	return n, ctx.Err()
}

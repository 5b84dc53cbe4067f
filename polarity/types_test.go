package polarity

import (
	"math"
	"testing"
)

// TestClipRangeBoundary: PPO's clipped surrogate keeps the gradient of a token whose ratio sits
// exactly on the clip boundary (r = 1 + ε_high with A > 0, r = 1 − ε_low with A < 0) and drops
// it one float64 ulp past the boundary. ε = 0.25 and 0.5 make 1 ± ε exact, so the boundary is
// hit exactly; ε = 0 clips as soon as r moves past 1 in the advantage's direction.
func TestClipRangeBoundary(t *testing.T) {
	inf := math.Inf(1)
	up := func(x float64) float64 { return math.Nextafter(x, inf) }
	down := func(x float64) float64 { return math.Nextafter(x, -inf) }
	for _, tc := range []struct {
		name    string
		clip    ClipRange
		adv, r  float64
		clipped bool
	}{
		{"A>0, r = 1+0.25 exactly: kept", ClipRange{Low: 0.5, High: 0.25}, 1, 1.25, false},
		{"A>0, r one ulp above 1+0.25: clipped", ClipRange{Low: 0.5, High: 0.25}, 1, up(1.25), true},
		{"A>0, r one ulp below 1+0.25: kept", ClipRange{Low: 0.5, High: 0.25}, 1, down(1.25), false},
		{"A<0, r = 1−0.5 exactly: kept", ClipRange{Low: 0.5, High: 0.25}, -1, 0.5, false},
		{"A<0, r one ulp below 1−0.5: clipped", ClipRange{Low: 0.5, High: 0.25}, -1, down(0.5), true},
		{"A<0, r one ulp above 1−0.5: kept", ClipRange{Low: 0.5, High: 0.25}, -1, up(0.5), false},
		{"A>0, r far below 1−ε_low: kept (wrong side)", ClipRange{Low: 0.5, High: 0.25}, 1, 0.1, false},
		{"A<0, r far above 1+ε_high: kept (wrong side)", ClipRange{Low: 0.5, High: 0.25}, -1, 3, false},
		{"A = 0: never clipped", ClipRange{Low: 0.5, High: 0.25}, 0, 3, false},
		{"ε = 0, A>0, r = 1: kept", ClipRange{}, 1, 1, false},
		{"ε = 0, A>0, r one ulp above 1: clipped", ClipRange{}, 1, up(1), true},
		{"ε = 0, A<0, r = 1: kept", ClipRange{}, -1, 1, false},
		{"ε = 0, A<0, r one ulp below 1: clipped", ClipRange{}, -1, down(1), true},
		{"no clipping, A>0, r = 1e300", NoClip(), 1, 1e300, false},
		{"no clipping, A<0, r = 0", NoClip(), -1, 0, false},
	} {
		if got := tc.clip.Clipped(tc.adv, tc.r); got != tc.clipped {
			t.Errorf("%s: Clipped(%v, %v) with %+v = %v, want %v", tc.name, tc.adv, tc.r, tc.clip, got, tc.clipped)
		}
	}
}

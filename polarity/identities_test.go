package polarity

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// identityRows are the row kinds the docs/MATH.md §2 identities are checked on (huge ±1e4 rows are
// left out of the strict C > 0 check only: there π puts e^{-600} on the runners-up and C
// underflows to 0 in float64 although the row is not uniform).
func identityRows(rng *rand.Rand, V int) map[string][]float64 {
	rows := map[string][]float64{}
	for _, k := range rows64 {
		u := make([]float64, V)
		k.fill(rng, u)
		rows[k.name] = u
	}
	return rows
}

// uniformOverSupport reports whether every element above −Inf has the same value.
func uniformOverSupport(u []float64) bool {
	first := math.NaN()
	for _, x := range u {
		if math.IsInf(x, -1) {
			continue
		}
		if first != first {
			first = x
		} else if x != first {
			return false
		}
	}
	return true
}

// TestIdentities checks docs/MATH.md §2's facts on random rows, for every token a of each row, in
// float64. Tolerances: the reference computes each quantity to a few ulps of the size of its
// terms, so comparisons allow 1e-13 of that size (H, CScale) or of the row length's rounding.
func TestIdentities(t *testing.T) {
	rng := testSeed(t)
	for _, V := range []int{2, 3, 31, 257, 1000} {
		for name, u := range identityRows(rng, V) {
			what := fmt.Sprintf("%s, V=%d", name, V)
			ref := ReferenceRow(u, 0)
			H, C := ref.H, ref.C
			uniform := uniformOverSupport(u)

			// C ≥ 0, with equality only for a uniform distribution over the support.
			switch {
			case uniform && C != 0:
				t.Errorf("%s: uniform over its support but C = %g", what, C)
			case !uniform && name != "huge ±1e4" && !(C > 0):
				t.Errorf("%s: not uniform but C = %g, want > 0", what, C)
			case C < 0:
				t.Errorf("%s: C = %g < 0", what, C)
			}

			// E_{a∼π}[S_a − C] = 0, with C from the one-pass float64 Sums (a different formula,
			// (S3 − (s1/s0)·S2)/s0², from the reference's Σ_a π_a S_a).
			onePass := sumsOf(u).Finalize()
			// π_a = exp(log π_a) carries a relative error of |log π_a|·ε, so each term's share of
			// the bound grows with its |log π_a| (≈ 40 on a +40 spike row; seen failing without
			// it: PAPO_SEED=1795635654490378154, a relative difference of 2.4e-15).
			var expect compensated
			argmax := 0
			var termBound float64 // Σ_a |π_a S_a|·(1 + |log π_a|)
			for a := range u {
				st := ReferenceRow(u, a)
				term := math.Exp(st.Logprob) * st.SampledTerm
				expect.add(term)
				if term != 0 {
					termBound += math.Abs(term) * (1 + math.Abs(st.Logprob))
				}
				if u[a] > u[argmax] {
					argmax = a
				}
			}
			if d := math.Abs(expect.value() - onePass.C); d > float64Bound(V)*(ref.CScale+termBound)+1e-300 {
				t.Errorf("%s: E_π[S_a] = %.17g but one-pass C = %.17g (E[S_a − C] = %.3g)", what, expect.value(), onePass.C, d)
			}

			threshold := math.Exp(-H)
			upper := C + math.Exp(-(1 + H))
			for a := range u {
				st := ReferenceRow(u, a)
				if math.IsInf(st.Logprob, -1) {
					if st.SampledTerm != 0 {
						t.Errorf("%s, a=%d: π_a = 0 but S_a = %g", what, a, st.SampledTerm)
					}
					continue
				}
				pi := math.Exp(st.Logprob)
				// S_a > 0 ⇔ π_a > e^{−H}, compared as log π_a > −H (π_a and e^{−H} both round to 1
				// on a one-hot row), away from the boundary log π_a + H = 0 where rounding decides.
				if margin := st.Logprob + H; math.Abs(margin) > 1e-12*(math.Abs(st.Logprob)+H) {
					if (st.SampledTerm > 0) != (st.Logprob > -H) {
						t.Errorf("%s, a=%d: S_a = %g but log π_a = %g vs −H = %g", what, a, st.SampledTerm, st.Logprob, -H)
					}
				}
				// For A > 0 the change per unit ηA/τ² is T = C − S_a ∈ [C − H, C + e^{−(1+H)}].
				T := C - st.SampledTerm
				slack := 1e-13 * (H + C + 1)
				if T < C-H-slack || T > upper+slack {
					t.Errorf("%s, a=%d: T = C − S_a = %.17g outside [C − H, C + e^{−(1+H)}] = [%.17g, %.17g]", what, a, T, C-H, upper)
				}
				// Quadrants: sign(P) = sign(A)·sign(C − S_a); the dominant token contracts under
				// A > 0, a token below e^{−H} (so S_a < 0 ≤ C) expands; A < 0 reverses both.
				b := &Batch{TokenID: []int32{int32(a)}, Advantage: []float64{1}}
				for _, adv := range []float64{1, -1} {
					b.Advantage[0] = adv
					o, err := Finish(b, 0, DefaultParams(), H, st.Logprob, st.SampledTerm, C)
					if err != nil {
						t.Fatal(err)
					}
					if o.Polarity != adv*T || o.PredictedDeltaH != o.Polarity {
						t.Errorf("%s, a=%d, A=%g: P = %g, ΔH = %g, want A·T = %g", what, a, adv, o.Polarity, o.PredictedDeltaH, adv*T)
					}
					// (Where 1 − π_a < 1e-6 the product C − S_a ≈ −S_a·(1 − π_a) is decided by
					// rounding; docs/MATH.md's dominant-token claim is checked where it is numerically
					// meaningful.)
					if a == argmax && !uniform && u[a] > secondLargest(u) && 1-pi > 1e-6 && !(adv*o.Polarity < 0) {
						t.Errorf("%s: dominant token, A=%g: P = %g, want sign −A (A>0 contracts)", what, adv, o.Polarity)
					}
					if pi < threshold*(1-1e-9) && !(adv*o.Polarity > 0) && C+math.Abs(st.SampledTerm) > 0 {
						t.Errorf("%s, a=%d (π_a < e^{−H}), A=%g: P = %g, want sign A (A>0 expands)", what, a, adv, o.Polarity)
					}
				}
			}
		}
	}
}

func secondLargest(u []float64) float64 {
	first, second := math.Inf(-1), math.Inf(-1)
	for _, x := range u {
		if x > first {
			first, second = x, first
		} else if x > second {
			second = x
		}
	}
	return second
}

// entropyAt is H(softmax(z/τ)) by the reference (log1p form, accurate also on peaked rows).
func entropyAt(z []float64, tau float64) float64 {
	return ReferenceRow(scaled(z, tau), 0).H
}

// TestClosedFormMatchesFiniteDifferences perturbs the raw logits along one policy-gradient step,
// dz = (A/τ)(e_a − π) (η = 1 per unit), and compares the central finite difference of H, with
// Richardson extrapolation, (4·D(h) − D(2h))/3 at h = 1e-3, with dH = −(A/τ²)(S_a − C).
// Truncation error is O(h⁴) ≈ 1e-12 of the terms and rounding ≈ 2^-52·H/h ≈ 1e-13·H, so the two
// agree to 1e-8 of the size of the terms, |A|(|S_a| + C)/τ², plus a rounding floor of
// 1e-11·(1 + H); the golden row is held to 1e-10 absolute as docs/MATH.md §4 states. The largest
// relative error seen where |dH| > 1e-3 is logged (typically ~1e-10).
func TestClosedFormMatchesFiniteDifferences(t *testing.T) {
	rng := testSeed(t)
	worst := 0.0
	check := func(what string, z []float64, tau float64, a int, adv float64, tol float64) {
		t.Helper()
		st := ReferenceRow(scaled(z, tau), a)
		closed := -(adv / (tau * tau)) * (st.SampledTerm - st.C)
		dz := make([]float64, len(z))
		for j, x := range z {
			if !math.IsInf(x, -1) {
				dz[j] = -(adv / tau) * math.Exp(x/tau-st.L)
			}
		}
		dz[a] += adv / tau
		step := func(h float64) float64 {
			zp, zm := make([]float64, len(z)), make([]float64, len(z))
			for j := range z {
				zp[j], zm[j] = z[j]+h*dz[j], z[j]-h*dz[j]
			}
			return (entropyAt(zp, tau) - entropyAt(zm, tau)) / (2 * h)
		}
		const h = 1e-3
		fd := (4*step(h) - step(2*h)) / 3
		if tol < 0 {
			tol = 1e-8*math.Abs(adv)*(math.Abs(st.SampledTerm)+st.C)/(tau*tau) + 1e-11*(1+st.H)
		}
		if math.Abs(closed) > 1e-3 { // below, the rounding floor dominates the ratio
			worst = math.Max(worst, math.Abs(fd-closed)/math.Abs(closed))
		}
		if d := math.Abs(fd - closed); d > tol {
			t.Errorf("%s: closed form dH = %.15g, finite difference %.15g (|Δ| = %.3g > %.3g)", what, closed, fd, d, tol)
		}
	}
	for _, c := range goldenDelta {
		if !c.natural {
			check("golden "+c.name, goldenZ, c.tau, c.a, c.adv, 1e-10)
		}
	}
	for _, V := range []int{2, 31, 300} {
		for _, k := range rows64 {
			if k.name == "huge ±1e4" {
				continue // π is one-hot to e^{-600}: every term underflows, nothing to compare
			}
			for range 3 {
				z := make([]float64, V)
				k.fill(rng, z)
				tau := []float64{1, 0.7, 1.5}[rng.IntN(3)]
				a := rng.IntN(V)
				adv := []float64{1, -1, 0.3}[rng.IntN(3)]
				check(fmt.Sprintf("%s, V=%d, τ=%g, a=%d, A=%g", k.name, V, tau, a, adv), z, tau, a, adv, -1)
			}
		}
	}
	t.Logf("largest relative difference closed form vs finite differences (|dH| > 1e-3): %.2g", worst)
}

package polarity_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/entropy-polarity/papo/polarity"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// This file checks docs/MATH.md §2's entropy gradient ∂H/∂u_k = −π_k (u_k − μ) and the first-order
// change dH = −(ηA/τ²)(S_a − C) against an independent oracle: reverse-mode autodiff by
// gorgonia.org/gorgonia (v0.9.18, float64). docs/DESIGN.md warns that gorgonia's TapeMachine reuses
// buffers in place (−Σ softmax·log softmax came back as −19.72 on the golden row), so the graph
// avoids feeding one node's output to an op that could overwrite it while it is still needed
// (no SoftMax op and no Log of a softmax: G.SoftMax followed by G.Log reproduces the −19.72 here,
// and the self-check below rejects it), and the oracle itself is checked first: its H against
// docs/MATH.md §4 to 1e-12, its gradient against a central finite difference of its own H.
//
// Tolerances. Everything is float64. The closed form and the autodiff gradient differ only by
// rounding: each is a handful of operations per element plus sums of V terms, so their
// difference is a few ulps of the row's scale max|∂H/∂u| ≤ max_k π_k|u_k − μ| (≤ ~1), growing
// at most like V·ε for the naive (uncompensated) sums gorgonia uses. So the gradient, H and dH
// get oracleGradTol(V) = 1e-15·max(V, 100) (≈ 4.5ε per summed term: 1e-13 up to V = 100,
// 1e-12 at V = 1000), times max(1, scale); observed at most 6.4e-14 (V = 1000, peaked row),
// ≤ 3e-15 for V ≤ 50. The finite difference (step h = 1e-5) has truncation error
// ~h²·|H'''|/6 ≈ 1e-11 and rounding error ~ε·|H|/h ≈ 1e-11, so it gets 1e-9 (observed 1e-11 at
// τ = 1, 4e-11 at τ = 0.7). The golden values are printed to 15 decimals (ΔH to 12 or 11),
// hence 1e-12 (ΔH: 1e-11).

// docs/MATH.md §4 golden row and numbers (η = 1).
var (
	oracleZ     = []float64{2.0, 1.0, 0.1, -1.0}
	oracleH     = 0.960672790130348
	oracleH07   = 0.717773779666263
	oracleDelta = []struct {
		tau, adv float64
		a        int
		dH       float64
	}{
		{1, +1, 0, -0.160174666538},
		{1, -1, 0, +0.160174666538},
		{1, +1, 3, +0.245164568451},
		{1, -1, 3, -0.245164568451},
		{0.7, +1, 0, -0.244030795198},
		{0.7, +1, 3, +0.518871031578},
	}
)

const (
	oracleGoldenTol = 1e-12
	oracleDeltaTol  = 1e-11
	oracleFDTol     = 1e-9
	oracleFDStep    = 1e-5
)

// gorgoniaEntropy builds H(u) = L − Σ_j π_j u_j with L = m + log Σ_j e^{u_j − m},
// π = e^{u − m} / Σ e^{u − m} (m = max u, a constant: H and its gradient are shift-invariant),
// differentiates it with gorgonia's Grad and runs forward and backward passes with a
// TapeMachine. It returns H and ∂H/∂u as fresh Go values.
func gorgoniaEntropy(t testing.TB, u []float64) (float64, []float64) {
	t.Helper()
	m := math.Inf(-1)
	for _, x := range u {
		m = math.Max(m, x)
	}
	g := G.NewGraph()
	uN := G.NewVector(g, tensor.Float64, G.WithShape(len(u)), G.WithName("u"),
		G.WithValue(tensor.New(tensor.WithShape(len(u)), tensor.WithBacking(append([]float64(nil), u...)))))
	mN := G.NewConstant(m, G.WithName("m"))
	must := func(n *G.Node, err error) *G.Node {
		t.Helper()
		if err != nil {
			t.Fatalf("gorgonia graph: %v", err)
		}
		return n
	}
	e := must(G.Exp(must(G.Sub(uN, mN))))           // e_j = e^{u_j − m}
	s0 := must(G.Sum(e))                            // s0 = Σ e_j
	L := must(G.Add(must(G.Log(s0)), mN))           // L = m + log s0
	pi := must(G.Div(e, s0))                        // π = e / s0
	mu := must(G.Sum(must(G.HadamardProd(pi, uN)))) // μ = Σ π_j u_j
	H := must(G.Sub(L, mu))                         // H = L − μ
	grads, err := G.Grad(H, uN)
	if err != nil {
		t.Fatalf("gorgonia Grad: %v", err)
	}
	var hv, gv G.Value
	G.Read(H, &hv)
	G.Read(grads[0], &gv)
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatalf("gorgonia RunAll: %v", err)
	}
	hs, ok := hv.Data().(float64)
	if !ok {
		t.Fatalf("gorgonia H has type %T, want float64", hv.Data())
	}
	gs, ok := gv.Data().([]float64)
	if !ok || len(gs) != len(u) {
		t.Fatalf("gorgonia ∂H/∂u has type %T (len %d), want []float64 of len %d", gv.Data(), len(gs), len(u))
	}
	return hs, append([]float64(nil), gs...)
}

// closedFormGrad returns −π_k (u_k − μ) from the float64 reference's L and μ, and π.
func closedFormGrad(u []float64) (grad, pi []float64, st polarity.RowStats64) {
	st = polarity.ReferenceRow(u, 0)
	grad, pi = make([]float64, len(u)), make([]float64, len(u))
	for k, x := range u {
		pi[k] = math.Exp(x - st.L)
		grad[k] = -pi[k] * (x - st.Mu)
	}
	return grad, pi, st
}

// firstOrderDH is Σ_k ∂H/∂u_k · du_k with du = (ηA/τ²)(e_a − π) (η = 1).
func firstOrderDH(grad, pi []float64, a int, adv, tau float64) float64 {
	var s float64
	for k := range grad {
		d := -pi[k]
		if k == a {
			d += 1
		}
		s += grad[k] * d
	}
	return adv / (tau * tau) * s
}

// oracleGradTol is the rounding allowance between two float64 evaluations of H, ∂H/∂u or dH on
// a row of V logits (see the comment at the top of the file).
func oracleGradTol(V int) float64 { return 1e-15 * float64(max(V, 100)) }

func maxAbs(x []float64) float64 {
	var m float64
	for _, v := range x {
		m = math.Max(m, math.Abs(v))
	}
	return m
}

// TestAutodiffOracleSelfCheck checks gorgonia before its gradient is trusted: H on the golden
// row (τ = 1 and τ = 0.7) and ∂H/∂u against a central finite difference of its own H.
func TestAutodiffOracleSelfCheck(t *testing.T) {
	for _, c := range []struct{ tau, h float64 }{{1, oracleH}, {0.7, oracleH07}} {
		u := make([]float64, len(oracleZ))
		for j, z := range oracleZ {
			u[j] = z / c.tau
		}
		h, grad := gorgoniaEntropy(t, u)
		if math.Abs(h-c.h) > oracleGoldenTol {
			t.Fatalf("τ=%g: gorgonia H = %.15f, want %.15f (docs/MATH.md §4): the oracle is broken", c.tau, h, c.h)
		}
		var worst float64
		for k := range u {
			up := append([]float64(nil), u...)
			dn := append([]float64(nil), u...)
			up[k] += oracleFDStep
			dn[k] -= oracleFDStep
			hp, _ := gorgoniaEntropy(t, up)
			hm, _ := gorgoniaEntropy(t, dn)
			fd := (hp - hm) / (2 * oracleFDStep)
			d := math.Abs(grad[k] - fd)
			worst = math.Max(worst, d)
			if d > oracleFDTol {
				t.Errorf("τ=%g, k=%d: gorgonia ∂H/∂u = %.15g, central difference %.15g (|Δ| = %.3g > %g)",
					c.tau, k, grad[k], fd, d, oracleFDTol)
			}
		}
		t.Logf("τ=%g: |H − golden| = %.3g, max |grad − central difference| = %.3g", c.tau, math.Abs(h-c.h), worst)
	}
}

// TestAutodiffOracleGradient compares gorgonia's ∂H/∂u with −π_k (u_k − μ), and the first-order
// dH = Σ_k ∂H/∂u_k du_k with −(ηA/τ²)(S_a − C) from ReferenceRow and docs/MATH.md §4's table.
func TestAutodiffOracleGradient(t *testing.T) {
	type row struct {
		name string
		tau  float64
		u    []float64
	}
	var rows []row
	for _, tau := range []float64{1, 0.7} {
		u := make([]float64, len(oracleZ))
		for j, z := range oracleZ {
			u[j] = z / tau
		}
		rows = append(rows, row{fmt.Sprintf("golden τ=%g", tau), tau, u})
	}
	rng := rand.New(rand.NewPCG(20260, 2))
	for _, V := range []int{5, 50, 1000} {
		for _, sd := range []float64{1, 4} {
			u := make([]float64, V)
			for j := range u {
				u[j] = sd * rng.NormFloat64()
			}
			rows = append(rows, row{fmt.Sprintf("V=%d N(0,%g²)", V, sd), 1, u})
		}
		// one dominant logit: a peaked row where most π_k are tiny
		u := make([]float64, V)
		for j := range u {
			u[j] = rng.NormFloat64()
		}
		u[rng.IntN(V)] += 12
		rows = append(rows, row{fmt.Sprintf("V=%d peaked", V), 1, u})
	}

	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			h, ad := gorgoniaEntropy(t, r.u)
			cf, pi, st := closedFormGrad(r.u)
			if d := math.Abs(h - st.H); d > oracleGradTol(len(r.u))*math.Max(1, st.H) {
				t.Errorf("gorgonia H = %.17g, ReferenceRow H = %.17g (|Δ| = %.3g)", h, st.H, d)
			}
			tol := oracleGradTol(len(r.u)) * math.Max(1, maxAbs(cf))
			var worst float64
			for k := range ad {
				d := math.Abs(ad[k] - cf[k])
				worst = math.Max(worst, d)
				if d > tol {
					t.Errorf("k=%d: gorgonia ∂H/∂u = %.17g, closed form −π_k(u_k−μ) = %.17g (|Δ| = %.3g > %.3g)",
						k, ad[k], cf[k], d, tol)
				}
			}
			// dH for a few sampled tokens and both advantage signs.
			var worstDH float64
			for _, a := range []int{0, len(r.u) / 2, len(r.u) - 1} {
				ref := polarity.ReferenceRow(r.u, a)
				for _, adv := range []float64{+1, -1} {
					want := -adv / (r.tau * r.tau) * (ref.SampledTerm - ref.C)
					got := firstOrderDH(ad, pi, a, adv, r.tau)
					d := math.Abs(got - want)
					worstDH = math.Max(worstDH, d)
					if tolDH := oracleGradTol(len(r.u)) * math.Max(1, math.Abs(want)) / (r.tau * r.tau); d > tolDH {
						t.Errorf("a=%d, A=%+g: autodiff dH = %.17g, −(ηA/τ²)(S_a−C) = %.17g (|Δ| = %.3g > %.3g)",
							a, adv, got, want, d, tolDH)
					}
				}
			}
			t.Logf("|H−ref| = %.3g, max |∂H/∂u autodiff − closed form| = %.3g (max|∂H/∂u| = %.3g), max |dH autodiff − reference| = %.3g",
				math.Abs(h-st.H), worst, maxAbs(cf), worstDH)
		})
	}

	// docs/MATH.md §4's dH table, from the autodiff gradient.
	for _, c := range oracleDelta {
		u := make([]float64, len(oracleZ))
		for j, z := range oracleZ {
			u[j] = z / c.tau
		}
		_, ad := gorgoniaEntropy(t, u)
		_, pi, _ := closedFormGrad(u)
		if got := firstOrderDH(ad, pi, c.a, c.adv, c.tau); math.Abs(got-c.dH) > oracleDeltaTol {
			t.Errorf("golden τ=%g, a=%d, A=%+g: autodiff dH = %.12f, want %.12f (docs/MATH.md §4)", c.tau, c.a, c.adv, got, c.dH)
		}
	}
}

package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/entropy-polarity/papo/polarity"
)

// This file is a Go model of how polarity.cu walks a row: which elements each of the
// BlockThreads threads reads, in which groups and order (pp_strip), and in which order the
// per-thread states are merged (the warp's xor-shuffle tree, then warp 0 over the warps' lane-0
// states). The arithmetic is polarity.Sums (float64), so the test isolates the walk: every
// element must be folded exactly once, the vector loads must be aligned and coalesced, and the
// merged state must equal the single pass. The kernel arithmetic itself is tested in
// cuda/hostref against the float64 reference.

// group is one pp_update call of a thread: the element indices it folds (vector loads, or a
// single head/tail element), and for vector groups the vector indices it loads.
type group struct {
	elems   []int
	vectors []int // body vector indices; nil for a head or tail element
}

// stripGroups is pp_strip's walk for thread tid of nthreads over a row of V elements of es
// bytes whose first element lies misalign bytes past a 16-byte boundary.
func stripGroups(V, es, misalign, tid, nthreads int) (groups []group, head, nvec int) {
	per := VecBytes / es
	gv := GroupElems / per
	head = ((VecBytes - misalign) & (VecBytes - 1)) / es
	head = min(head, V)
	nvec = (V - head) / per
	tail := V - head - nvec*per
	T := nthreads
	vec := func(js ...int) group {
		g := group{vectors: js}
		for _, j := range js {
			for k := range per {
				g.elems = append(g.elems, head+j*per+k)
			}
		}
		return g
	}
	j := tid
	for ; j+(gv-1)*T < nvec; j += gv * T {
		js := make([]int, gv)
		for g := range gv {
			js[g] = j + g*T
		}
		groups = append(groups, vec(js...))
	}
	for ; j < nvec; j += T {
		groups = append(groups, vec(j))
	}
	for k := tid; k < head; k += T {
		groups = append(groups, group{elems: []int{k}})
	}
	for k := tid; k < tail; k += T {
		groups = append(groups, group{elems: []int{head + nvec*per + k}})
	}
	return groups, head, nvec
}

// blockReduce is the kernel's merge order: the xor-shuffle tree in each warp (every lane merges
// its own state with its partner's, own first), then warp 0 over the warps' lane-0 states
// (lanes ≥ number of warps empty). It returns lane 0's state.
func blockReduce(threads []polarity.Sums) polarity.Sums {
	xorTree := func(lanes []polarity.Sums, width int) polarity.Sums {
		for off := width / 2; off > 0; off /= 2 {
			next := make([]polarity.Sums, len(lanes))
			for l := range lanes {
				next[l] = lanes[l]
				next[l].Merge(lanes[l^off])
			}
			lanes = next
		}
		return lanes[0]
	}
	warps := BlockThreads / Warp
	lane0 := make([]polarity.Sums, Warp)
	for l := range lane0 {
		lane0[l] = polarity.EmptySums()
	}
	for w := range warps {
		lane0[w] = xorTree(append([]polarity.Sums(nil), threads[w*Warp:(w+1)*Warp]...), Warp)
	}
	return xorTree(lane0, warps)
}

func TestReductionTreeMatchesSinglePass(t *testing.T) {
	seed := uint64(1)
	if s := os.Getenv("PAPO_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("PAPO_SEED=%q: %v", s, err)
		}
		seed = v
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, es := range []int{4, 2} {
		for _, V := range []int{1, 2, 3, 7, 8, 9, 31, 32, 33, 255, 1000, 4099, 128256, 151936, 152064} {
			for misalign := 0; misalign < VecBytes; misalign += es {
				if V > 10000 && misalign%8 != 0 {
					continue // long rows: two alignments suffice, the walk is the same
				}
				name := fmt.Sprintf("element %d B, V=%d, row at 16k+%d", es, V, misalign)
				t.Run(name, func(t *testing.T) { checkWalk(t, rng, V, es, misalign) })
			}
		}
	}
}

func checkWalk(t *testing.T, rng *rand.Rand, V, es, misalign int) {
	u := make([]float64, V)
	for j := range u {
		u[j] = 3 * rng.NormFloat64()
		if rng.IntN(20) == 0 {
			u[j] = math.Inf(-1)
		}
	}
	u[rng.IntN(V)] = 30 // a peaked row: rest ≪ 1, where a lost or doubled element shows
	seen := make([]int, V)
	threads := make([]polarity.Sums, BlockThreads)
	var head, nvec int
	perWarpLoad := map[[2]int][]int{} // (warp, load number) → vector index per lane
	for tid := range BlockThreads {
		var groups []group
		groups, head, nvec = stripGroups(V, es, misalign, tid, BlockThreads)
		st := polarity.EmptySums()
		load := 0
		for _, g := range groups {
			if len(g.vectors) > 0 && len(g.elems) > GroupElems {
				t.Fatalf("thread %d: a group of %d elements (> %d)", tid, len(g.elems), GroupElems)
			}
			for _, j := range g.vectors {
				key := [2]int{tid / Warp, load}
				perWarpLoad[key] = append(perWarpLoad[key], j)
				load++
			}
			for _, j := range g.elems {
				seen[j]++
				st.Add(u[j])
			}
		}
		threads[tid] = st
	}
	for j, n := range seen {
		if n != 1 {
			t.Fatalf("element %d folded %d times (head %d, %d vectors)", j, n, head, nvec)
		}
	}
	if nvec > 0 && (misalign+head*es)%VecBytes != 0 {
		t.Fatalf("the body starts %d bytes past a 16-byte boundary", (misalign+head*es)%VecBytes)
	}
	// Coalescing: the lanes of a warp that take part in a load read consecutive vectors.
	for key, js := range perWarpLoad {
		for l := 1; l < len(js); l++ {
			if js[l] != js[0]+l {
				t.Fatalf("warp %d, load %d: lanes read vectors %v, not consecutive ones", key[0], key[1], js)
			}
		}
	}
	got := blockReduce(threads)
	want := polarity.EmptySums()
	for _, x := range u {
		want.Add(x)
	}
	if got.M != want.M {
		t.Fatalf("tree max %v, single pass %v", got.M, want.M)
	}
	for _, c := range []struct {
		name string
		g, w float64
	}{{"Rest", got.Rest, want.Rest}, {"S1", got.S1, want.S1}, {"S2", got.S2, want.S2}, {"S3", got.S3, want.S3}} {
		// float64 sums of same-sign terms, in two orders: they agree to ~V·1e-16.
		if d := math.Abs(c.g - c.w); d > 1e-12*math.Abs(c.w)+1e-300 {
			t.Errorf("%s: tree %.17g, single pass %.17g (relative difference %.2g)", c.name, c.g, c.w, d/math.Abs(c.w))
		}
	}
}

// The model's constants are the header's.
func TestHeaderConstants(t *testing.T) {
	src, err := os.ReadFile("polarity_row.cuh")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{
		"PP_BLOCK_THREADS": BlockThreads, "PP_WARP": Warp, "PP_VEC_BYTES": VecBytes, "PP_GROUP_ELEMS": GroupElems,
		"PP_OUT_COLUMNS": OutColumns,
	} {
		m := regexp.MustCompile(`(?m)^#define ` + name + ` +(\d+)`).FindSubmatch(src)
		if m == nil {
			t.Errorf("polarity_row.cuh does not #define %s", name)
			continue
		}
		if got, _ := strconv.Atoi(string(m[1])); got != want {
			t.Errorf("polarity_row.cuh: %s = %d, the Go side has %d", name, got, want)
		}
	}
}

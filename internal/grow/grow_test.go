package grow

import "testing"

func TestTo(t *testing.T) {
	for _, tc := range []struct {
		name         string
		len, cap, n  int
		nilSlice     bool
		wantCap      int
		wantSameBack bool
	}{
		{name: "room enough", len: 3, cap: 10, n: 10, wantCap: 10, wantSameBack: true},
		{name: "doubles", len: 10, cap: 10, n: 11, wantCap: 20},
		{name: "more than double", len: 10, cap: 10, n: 35, wantCap: 35},
		{name: "empty with capacity 0", len: 0, cap: 0, n: 4, wantCap: 4},
		{name: "nil stays nil", nilSlice: true, n: 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s []int
			if !tc.nilSlice {
				s = make([]int, tc.len, tc.cap)
				for i := range s {
					s[i] = i + 1
				}
			}
			got := To(s, tc.n)
			if tc.nilSlice {
				if got != nil {
					t.Fatalf("To(nil, %d) = %v; want nil", tc.n, got)
				}
				return
			}
			if len(got) != tc.len || cap(got) != tc.wantCap {
				t.Fatalf("len %d cap %d; want len %d cap %d", len(got), cap(got), tc.len, tc.wantCap)
			}
			for i := range got {
				if got[i] != i+1 {
					t.Fatalf("element %d = %d; want %d", i, got[i], i+1)
				}
			}
			if same := tc.cap > 0 && &got[:1][0] == &s[:1][0]; same != tc.wantSameBack {
				t.Fatalf("same array %v; want %v", same, tc.wantSameBack)
			}
		})
	}
}

func TestLen(t *testing.T) {
	s := make([]float64, 2, 8)
	if got := Len(s, 8); len(got) != 8 || &got[0] != &s[0] {
		t.Fatalf("Len(cap 8, 8): len %d, same array %v; want 8, true", len(got), &got[0] == &s[0])
	}
	if got := Len(s, 9); len(got) != 9 || cap(got) < 9 || &got[0] == &s[0] {
		t.Fatalf("Len(cap 8, 9): len %d cap %d, same array %v; want a new array of 9", len(got), cap(got), &got[0] == &s[0])
	}
	if got := Len[int](nil, 0); len(got) != 0 {
		t.Fatalf("Len(nil, 0) has length %d", len(got))
	}
	// Over hugeBytes the advice is asked for: on an array of any alignment, and on an empty one
	// (Cap's), it must neither fault nor panic, and the memory must hold what is written.
	big := Len[float64](nil, 3<<20)
	for i := range big {
		big[i] = float64(i)
	}
	if big[len(big)-1] != float64(len(big)-1) {
		t.Fatal("a large array lost a write")
	}
	if empty := Cap[float64](nil, 3<<20); len(empty) != 0 || cap(empty) != 3<<20 {
		t.Fatalf("Cap(nil, 3<<20): len %d cap %d", len(empty), cap(empty))
	}
}

func TestCap(t *testing.T) {
	if got := Cap[float32](nil, 5); got == nil || len(got) != 0 || cap(got) != 5 {
		t.Fatalf("Cap(nil, 5): nil %v, len %d, cap %d; want an empty slice of capacity 5", got == nil, len(got), cap(got))
	}
	s := []float32{1, 2}
	if got := Cap(s, 3); len(got) != 2 || cap(got) != 4 || got[1] != 2 {
		t.Fatalf("Cap(len 2 cap 2, 3): %v len %d cap %d; want [1 2], capacity 4", got, len(got), cap(got))
	}
}

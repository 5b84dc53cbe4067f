package polarity

import (
	"math"
	"testing"
)

// float16By64 decodes binary16 bits from the definition, in float64:
// (−1)^s · 2^(e−15) · (1 + m/1024) for 0 < e < 31, (−1)^s · 2^-14 · m/1024 for e = 0.
func float16By64(h uint16) float64 {
	s, e, m := h>>15, int(h>>10)&0x1f, float64(h&0x3ff)
	var v float64
	switch e {
	case 0:
		v = math.Ldexp(m/1024, -14)
	case 31:
		if m != 0 {
			return math.NaN()
		}
		v = math.Inf(1)
	default:
		v = math.Ldexp(1+m/1024, e-15)
	}
	if s == 1 {
		v = -v
	}
	return v
}

func TestFloat16Decode(t *testing.T) {
	for _, c := range []struct {
		name string
		bits uint16
		want float64
	}{
		{"+0", 0x0000, 0},
		{"−0", 0x8000, math.Copysign(0, -1)},
		{"1", 0x3c00, 1},
		{"−2", 0xc000, -2},
		{"largest", 0x7bff, 65504},
		{"smallest normal", 0x0400, 0x1p-14},
		{"smallest subnormal", 0x0001, 0x1p-24},
		{"largest subnormal", 0x03ff, 1023 * 0x1p-24},
		{"−subnormal", 0x8200, -512 * 0x1p-24},
		{"+Inf", 0x7c00, math.Inf(1)},
		{"−Inf", 0xfc00, math.Inf(-1)},
		{"1/3 rounded", 0x3555, 0.333251953125},
	} {
		got := Float16ToFloat32(c.bits)
		if float64(got) != c.want || math.Signbit(float64(got)) != math.Signbit(c.want) {
			t.Errorf("%s: Float16ToFloat32(%#04x) = %v, want %v", c.name, c.bits, got, c.want)
		}
	}
	// Every one of the 65536 values against the definition (NaN: any NaN, sign and payload kept).
	for h := range 1 << 16 {
		got, want := Float16ToFloat32(uint16(h)), float16By64(uint16(h))
		switch {
		case math.IsNaN(want):
			b := math.Float32bits(got)
			if got == got || b>>31 != uint32(h>>15) || (b>>13)&0x3ff != uint32(h&0x3ff) {
				t.Fatalf("%#04x: %v (%#08x), want NaN with the same sign and payload", h, got, b)
			}
		case float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want):
			t.Fatalf("%#04x: %v, want %v", h, got, want)
		}
	}
	// The bulk decoders of every kernel agree with the scalar one bit for bit, also on a length
	// that is not a multiple of 8; a NaN may come out quiet (F16C sets the quiet bit).
	src := make([]uint16, 1<<16)
	for h := range src {
		src[h] = uint16(h)
	}
	for _, k := range Kernels() {
		dst := make([]float32, len(src)-3)
		newBlockKernel(k, 1).decode16(dst, src, false)
		for h, got := range dst {
			want := Float16ToFloat32(uint16(h))
			if want != want {
				if b := math.Float32bits(got); got == got || b>>31 != uint32(h>>15) || (b>>13)&0x1ff != uint32(h&0x1ff) {
					t.Fatalf("%v %#04x: %v (%#08x), want NaN with the same sign and payload", k, h, got, b)
				}
				continue
			}
			if math.Float32bits(got) != math.Float32bits(want) {
				t.Fatalf("%v %#04x: %v, want %v", k, h, got, want)
			}
		}
	}
}

func TestBFloat16Decode(t *testing.T) {
	src := make([]uint16, 1<<16)
	for h := range src {
		src[h] = uint16(h)
	}
	for _, k := range Kernels() {
		name := k.String()
		dst := make([]float32, len(src)-5)
		newBlockKernel(k, 1).decode16(dst, src, true)
		for h, got := range dst {
			want := math.Float32frombits(uint32(h) << 16) // bfloat16 is binary32's upper half
			if math.Float32bits(got) != math.Float32bits(want) || math.Float32bits(BFloat16ToFloat32(uint16(h))) != math.Float32bits(want) {
				t.Fatalf("%s %#04x: %v, want %v", name, h, got, want)
			}
		}
	}
	if BFloat16ToFloat32(0x3f80) != 1 || BFloat16ToFloat32(0xff80) != float32(math.Inf(-1)) {
		t.Error("bfloat16 1 or −Inf decoded wrongly")
	}
}

// TestEncodersRoundToNearest: encoding a decoded value gives the same bits back (NaN stays NaN),
// and for values between neighbours the encoder picks the nearer (ties to even), overflowing to
// ±Inf beyond the largest finite value (half: 65520 and up) and to ±0 / subnormals at the bottom.
func TestEncodersRoundToNearest(t *testing.T) {
	for h := range 1 << 16 {
		x16, xb := Float16ToFloat32(uint16(h)), BFloat16ToFloat32(uint16(h))
		if x16 == x16 && Float32ToFloat16(x16) != uint16(h) {
			t.Fatalf("float16 %#04x → %v → %#04x", h, x16, Float32ToFloat16(x16))
		}
		if x16 != x16 && Float16ToFloat32(Float32ToFloat16(x16)) == Float16ToFloat32(Float32ToFloat16(x16)) {
			t.Fatalf("float16 NaN %#04x did not stay NaN", h)
		}
		if xb == xb && Float32ToBFloat16(xb) != uint16(h) {
			t.Fatalf("bfloat16 %#04x → %v → %#04x", h, xb, Float32ToBFloat16(xb))
		}
	}
	// Between consecutive positive finite halves a < b: points just below, at and just above the
	// midpoint go to a, to the even one, and to b.
	for h := uint16(0); h < 0x7bff; h++ {
		a, b := float64(Float16ToFloat32(h)), float64(Float16ToFloat32(h+1))
		mid := (a + b) / 2 // exact in float64, and representable in float32
		even := h
		if h&1 == 1 {
			even = h + 1
		}
		for _, c := range []struct {
			x    float32
			want uint16
		}{
			{math.Nextafter32(float32(mid), float32(a)), h},
			{float32(mid), even},
			{math.Nextafter32(float32(mid), float32(b)), h + 1},
		} {
			if got := Float32ToFloat16(c.x); got != c.want {
				t.Fatalf("Float32ToFloat16(%v) between %v and %v = %#04x, want %#04x", c.x, a, b, got, c.want)
			}
			if got := Float32ToFloat16(-c.x); got != c.want|0x8000 {
				t.Fatalf("Float32ToFloat16(%v) = %#04x, want %#04x", -c.x, got, c.want|0x8000)
			}
		}
	}
	for _, c := range []struct {
		x    float32
		want uint16
	}{
		{65519.99, 0x7bff}, {65520, 0x7c00}, {1e6, 0x7c00}, {-1e30, 0xfc00},
		{0x1p-25, 0}, {math.Nextafter32(0x1p-25, 1), 1}, {1e-30, 0}, {-1e-30, 0x8000},
		{float32(math.Inf(1)), 0x7c00}, {float32(math.Inf(-1)), 0xfc00},
	} {
		if got := Float32ToFloat16(c.x); got != c.want {
			t.Errorf("Float32ToFloat16(%v) = %#04x, want %#04x", c.x, got, c.want)
		}
	}
	for _, c := range []struct {
		x    float32
		want uint16
	}{
		{1 + 0x1p-8, 0x3f80}, {1 + 0x1p-8 + 0x1p-20, 0x3f81}, {1 + 3*0x1p-8, 0x3f82},
		{math.MaxFloat32, 0x7f80}, {float32(math.Inf(-1)), 0xff80},
	} {
		if got := Float32ToBFloat16(c.x); got != c.want {
			t.Errorf("Float32ToBFloat16(%v) = %#04x, want %#04x", c.x, got, c.want)
		}
	}
}

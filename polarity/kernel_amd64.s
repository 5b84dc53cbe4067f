//go:build amd64 && !noasm

#include "textflag.h"

// The AVX2+FMA hot loops of the CPU engine (kernel_amd64.go has their contract and error
// bounds). Go's operand order: the destination is last, the first operand is Intel's last
// source (the one that may be memory): VSUBPS a, b, c is c = b − a; VFMADD231PS a, b, c is
// c = b·a + c; VFMADD213PS a, b, c is c = b·c + a; VPCMPGTD a, b, c is c = (b > a).

// Offsets in avx2Params (each field is eight lanes, 32 bytes).
#define pM 0
#define pNegM 32
#define pLog2e 64
#define pT1 96
#define pT2 128
#define pClamp 160
#define pMagic 192
#define pNegLn2Hi 224
#define pNegLn2Lo 256
#define pC6 288
#define pC5 320
#define pC4 352
#define pC3 384
#define pC2 416
#define pOne 448
#define pTauHi 480
#define pTauLo 512
#define pNegLn2Short 544
#define pNegLn2Rest 576

// Registers: Y0–Y4 (and Y15 for τ ≠ 1) temporaries; Y5–Y8 the float32 lane sums of e, e·v,
// e², e²·v; Y9 the count of elements equal to the block maximum; Y10–Y13 the float64 sums
// (four lanes each, both halves of the float32 lanes added); Y14 the clamp of s; SI the
// logits, DI the parameters.

// TWOSUM: s = x − M rounded (Y1) and its exact error (Y2), x in Y0 (Knuth's TwoSum, six
// operations, no condition on the magnitudes); then s is clamped below at Y14, keeping a NaN
// (VMAXPS returns its second source, here s, when either is NaN).
#define TWOSUM \
	VSUBPS      pM(DI), Y0, Y1;    \
	VSUBPS      Y0, Y1, Y2;        \
	VSUBPS      Y2, Y1, Y3;        \
	VSUBPS      Y3, Y0, Y3;        \
	VMOVUPS     pNegM(DI), Y4;     \
	VSUBPS      Y2, Y4, Y2;        \
	VADDPS      Y2, Y3, Y2;        \
	VMAXPS      Y1, Y14, Y1

// NROUND: n = round(s·log2(e)/τ) as a float (Y3) and 2^n as bits (Y0), by the magic-number
// rounding: the low bits of s·c + (1.5·2^23 + 127) hold n + 127.
#define NROUND \
	VMOVUPS     pMagic(DI), Y0;    \
	VFMADD231PS pLog2e(DI), Y1, Y0; \
	VSUBPS      pMagic(DI), Y0, Y3; \
	VPSLLD      $23, Y0, Y0

// EXPACC: e^r (r in Y4) by 1 + r(1 + r(c2 + … r·c6)), times 2^n (Y0); zero where s is not
// above the cutoffs T1 (e) and T2 (e², so that e² is never subnormal) and where s = +0 (the
// block maximum, counted in Y9 instead); then the four sums, with v in VREG.
#define EXPACC(VREG) \
	VMOVUPS     pC6(DI), Y2;        \
	VFMADD213PS pC5(DI), Y4, Y2;    \
	VFMADD213PS pC4(DI), Y4, Y2;    \
	VFMADD213PS pC3(DI), Y4, Y2;    \
	VFMADD213PS pC2(DI), Y4, Y2;    \
	VFMADD213PS pOne(DI), Y4, Y2;   \
	VFMADD213PS pOne(DI), Y4, Y2;   \
	VMULPS      Y0, Y2, Y2;         \
	VPCMPGTD    pT1(DI), Y1, Y3;    \
	VANDNPS     Y2, Y3, Y2;         \
	VPCMPGTD    pT2(DI), Y1, Y3;    \
	VANDNPS     Y2, Y3, Y3;         \
	VMULPS      Y2, Y3, Y3;         \
	VPXOR       Y4, Y4, Y4;         \
	VPCMPEQD    Y4, Y1, Y4;         \
	VPSUBD      Y4, Y9, Y9;         \
	VADDPS      Y2, Y5, Y5;         \
	VFMADD231PS Y2, VREG, Y6;       \
	VADDPS      Y3, Y7, Y7;         \
	VFMADD231PS Y3, VREG, Y8

// STEP1: eight logits at off(SI), τ = 1: v = s, r = s − n·ln2 (ln2 as float32 Hi + Lo, each
// product exact inside its FMA) + the error of s.
#define STEP1(off) \
	VMOVUPS     off(SI), Y0;          \
	TWOSUM;                           \
	NROUND;                           \
	VMOVAPS     Y1, Y4;               \
	VFMADD231PS pNegLn2Hi(DI), Y3, Y4; \
	VFMADD231PS pNegLn2Lo(DI), Y3, Y4; \
	VADDPS      Y2, Y4, Y4;           \
	EXPACC(Y1)

// STEPT: eight logits at off(SI), any τ: r = s·(1/τ)_hi − n·ln2_short (one rounding, the
// product n·ln2_short exact since ln2_short has 16 bits), then the small terms s·(1/τ)_lo,
// err·(1/τ)_hi and −n·ln2_rest; v = s·(1/τ)_hi.
#define STEPT(off) \
	VMOVUPS     off(SI), Y0;             \
	TWOSUM;                              \
	NROUND;                              \
	VMULPS      pNegLn2Short(DI), Y3, Y4; \
	VFMADD231PS pTauHi(DI), Y1, Y4;      \
	VFMADD231PS pTauLo(DI), Y1, Y4;      \
	VFMADD231PS pTauHi(DI), Y2, Y4;      \
	VFMADD231PS pNegLn2Rest(DI), Y3, Y4; \
	VMULPS      pTauHi(DI), Y1, Y15;     \
	EXPACC(Y15)

// FLUSH1: the float32 lanes of S32 widened and added to the float64 sum S64, S32 zeroed.
#define FLUSH1(S32, X32, S64) \
	VEXTRACTF128 $1, S32, X0; \
	VCVTPS2PD    X32, Y4;     \
	VCVTPS2PD    X0, Y0;      \
	VADDPD       Y4, S64, S64; \
	VADDPD       Y0, S64, S64; \
	VXORPS       S32, S32, S32

#define FLUSH \
	FLUSH1(Y5, X5, Y10); \
	FLUSH1(Y6, X6, Y11); \
	FLUSH1(Y7, X7, Y12); \
	FLUSH1(Y8, X8, Y13)

// func sumsAVX2(x *float32, n int, p *avx2Params, out *avx2Sums, unitTau bool)
TEXT ·sumsAVX2(SB), NOSPLIT, $0-33
	MOVQ    x+0(FP), SI
	MOVQ    n+8(FP), CX
	MOVQ    p+16(FP), DI
	MOVQ    out+24(FP), DX
	MOVBLZX unitTau+32(FP), AX
	VMOVUPS pClamp(DI), Y14
	VXORPS  Y5, Y5, Y5
	VXORPS  Y6, Y6, Y6
	VXORPS  Y7, Y7, Y7
	VXORPS  Y8, Y8, Y8
	VPXOR   Y9, Y9, Y9
	VXORPD  Y10, Y10, Y10
	VXORPD  Y11, Y11, Y11
	VXORPD  Y12, Y12, Y12
	VXORPD  Y13, Y13, Y13
	TESTQ   AX, AX
	JZ      tau64

unit64:
	CMPQ CX, $64
	JLT  unit8
	STEP1(0)
	STEP1(32)
	STEP1(64)
	STEP1(96)
	STEP1(128)
	STEP1(160)
	STEP1(192)
	STEP1(224)
	FLUSH
	ADDQ $256, SI
	SUBQ $64, CX
	JMP  unit64

unit8:
	CMPQ CX, $8
	JLT  done
	STEP1(0)
	ADDQ $32, SI
	SUBQ $8, CX
	JMP  unit8

tau64:
	CMPQ CX, $64
	JLT  tau8
	STEPT(0)
	STEPT(32)
	STEPT(64)
	STEPT(96)
	STEPT(128)
	STEPT(160)
	STEPT(192)
	STEPT(224)
	FLUSH
	ADDQ $256, SI
	SUBQ $64, CX
	JMP  tau64

tau8:
	CMPQ CX, $8
	JLT  done
	STEPT(0)
	ADDQ $32, SI
	SUBQ $8, CX
	JMP  tau8

done:
	FLUSH
	VMOVUPD Y10, 0(DX)
	VMOVUPD Y11, 32(DX)
	VMOVUPD Y12, 64(DX)
	VMOVUPD Y13, 96(DX)
	VMOVDQU Y9, 128(DX)
	VZEROUPPER
	RET

// func maxAVX2(x *float32, n int, lanes *[8]float32)
// The lane maxima of x (n a multiple of 8) folded into lanes (which the caller fills with
// −Inf). A NaN is passed over: VMAXPS keeps its second source, the running maximum, when the
// first is NaN.
TEXT ·maxAVX2(SB), NOSPLIT, $0-24
	MOVQ    x+0(FP), SI
	MOVQ    n+8(FP), CX
	MOVQ    lanes+16(FP), DX
	VMOVUPS (DX), Y0
	VMOVAPS Y0, Y1
	VMOVAPS Y0, Y2
	VMOVAPS Y0, Y3

max32:
	CMPQ    CX, $32
	JLT     max8
	VMOVUPS 0(SI), Y4
	VMOVUPS 32(SI), Y5
	VMOVUPS 64(SI), Y6
	VMOVUPS 96(SI), Y7
	VMAXPS  Y0, Y4, Y0
	VMAXPS  Y1, Y5, Y1
	VMAXPS  Y2, Y6, Y2
	VMAXPS  Y3, Y7, Y3
	ADDQ    $128, SI
	SUBQ    $32, CX
	JMP     max32

max8:
	CMPQ    CX, $8
	JLT     maxdone
	VMOVUPS (SI), Y4
	VMAXPS  Y0, Y4, Y0
	ADDQ    $32, SI
	SUBQ    $8, CX
	JMP     max8

maxdone:
	VMAXPS  Y1, Y0, Y0
	VMAXPS  Y3, Y2, Y2
	VMAXPS  Y2, Y0, Y0
	VMOVUPS Y0, (DX)
	VZEROUPPER
	RET

// func decodeFloat16F16C(dst *float32, src *uint16, n int)
// n a multiple of 8: the F16C conversion (exact; a signalling NaN comes out quiet).
TEXT ·decodeFloat16F16C(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

f16loop:
	CMPQ      CX, $8
	JLT       f16done
	VCVTPH2PS (SI), Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	SUBQ      $8, CX
	JMP       f16loop

f16done:
	VZEROUPPER
	RET

// func decodeBFloat16AVX2(dst *float32, src *uint16, n int)
// n a multiple of 8: each bfloat16 widened to the upper half of a binary32.
TEXT ·decodeBFloat16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

bf16loop:
	CMPQ      CX, $8
	JLT       bf16done
	VPMOVZXWD (SI), Y0
	VPSLLD    $16, Y0, Y0
	VMOVDQU   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	SUBQ      $8, CX
	JMP       bf16loop

bf16done:
	VZEROUPPER
	RET

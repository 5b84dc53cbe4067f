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

// PF4, PF8: prefetch four or eight cache lines from R10 on (the caller's next block), R10
// advanced past them.
#define PF4 \
	PREFETCHT0 0(R10);   \
	PREFETCHT0 64(R10);  \
	PREFETCHT0 128(R10); \
	PREFETCHT0 192(R10); \
	ADDQ       $256, R10

#define PF8 \
	PF4; \
	PF4

// func sumsAVX2(x *float32, n int, p *avx2Params, out *asmSums, pf uintptr, unitTau bool)
// Writes lanes 0–3 of each out.S and Ties[0:8]. Every 64 logits it prefetches the next four
// cache lines from pf on: the block the caller reads next, which its maximum pass then finds in
// L1 instead of memory (a prefetch never faults, whatever pf is).
TEXT ·sumsAVX2(SB), NOSPLIT, $0-41
	MOVQ    x+0(FP), SI
	MOVQ    n+8(FP), CX
	MOVQ    p+16(FP), DI
	MOVQ    out+24(FP), DX
	MOVQ    pf+32(FP), R10
	MOVBLZX unitTau+40(FP), AX
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
	PF4
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
	PF4
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
	VMOVUPD Y11, 64(DX)
	VMOVUPD Y12, 128(DX)
	VMOVUPD Y13, 192(DX)
	VMOVDQU Y9, 256(DX)
	VZEROUPPER
	RET

// func maxAVX2(x *float32, n int, lanes *[16]float32)
// The lane maxima of x (n a multiple of 8) folded into lanes[0:8] (which the caller fills with
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

// The AVX-512F kernel: the AVX2 kernel's arithmetic, sixteen lanes at a time, with every
// constant held in a register (32 of them) and the cutoffs and ties as opmasks. Registers:
// Z0–Z4 temporaries; Z5–Z8 the float32 lane sums of e, e·v, e², e²·v; Z10–Z13 the float64
// sums (eight lanes each); Z9 and Z14–Z31 the constants of avx2Params, broadcast from its
// first lane; K1 and K2 the lanes kept for e and e² (s above the cutoffs, s ≠ +0), K3 the lanes
// equal to the block maximum, counted in R8; SI the logits, DI the parameters.

#define zNegLn2Rest Z9
#define zClamp Z14
#define zM Z15
#define zNegM Z16
#define zLog2e Z17
#define zT1 Z18
#define zT2 Z19
#define zMagic Z20
#define zNegLn2Hi Z21
#define zNegLn2Lo Z22
#define zC6 Z23
#define zC5 Z24
#define zC4 Z25
#define zC3 Z26
#define zC2 Z27
#define zOne Z28
#define zTauHi Z29
#define zTauLo Z30
#define zNegLn2Short Z31

// ZTWOSUM, ZNROUND: TWOSUM and NROUND in sixteen lanes (x in Z0; s in Z1, its error in Z2,
// n in Z3, 2^n as bits in Z0); then the masks of s: K1 = bits(s) ≤ T1 (e kept), K2 = bits(s)
// ≤ T2 (e² kept), both false at s = +0, which K3 marks and R8 counts.
#define ZTWOSUM \
	VSUBPS      zM, Z0, Z1;      \
	VSUBPS      Z0, Z1, Z2;      \
	VSUBPS      Z2, Z1, Z3;      \
	VSUBPS      Z3, Z0, Z3;      \
	VSUBPS      Z2, zNegM, Z2;   \
	VADDPS      Z2, Z3, Z2;      \
	VMAXPS      Z1, zClamp, Z1

#define ZNROUND \
	VMOVAPS     zMagic, Z0;         \
	VFMADD231PS zLog2e, Z1, Z0;     \
	VSUBPS      zMagic, Z0, Z3;     \
	VPSLLD      $23, Z0, Z0;        \
	VPCMPD      $2, zT1, Z1, K1;    \
	VPCMPD      $2, zT2, Z1, K2;    \
	VPTESTNMD   Z1, Z1, K3;         \
	KMOVW       K3, R9;             \
	POPCNTL     R9, R9;             \
	ADDQ        R9, R8

// ZEXPACC: e^r (r in Z4) times 2^n (Z0), zero outside K1; e² zero outside K2; the four sums,
// with v in Z1.
#define ZEXPACC \
	VMOVAPS     zC6, Z2;           \
	VFMADD213PS zC5, Z4, Z2;       \
	VFMADD213PS zC4, Z4, Z2;       \
	VFMADD213PS zC3, Z4, Z2;       \
	VFMADD213PS zC2, Z4, Z2;       \
	VFMADD213PS zOne, Z4, Z2;      \
	VFMADD213PS zOne, Z4, Z2;      \
	VMULPS.Z    Z0, Z2, K1, Z2;    \
	VMULPS.Z    Z2, Z2, K2, Z3;    \
	VADDPS      Z2, Z5, Z5;        \
	VFMADD231PS Z2, Z1, Z6;        \
	VADDPS      Z3, Z7, Z7;        \
	VFMADD231PS Z3, Z1, Z8

// ZSTEP1: sixteen logits at off(SI), τ = 1 (STEP1).
#define ZSTEP1(off) \
	VMOVUPS     off(SI), Z0;         \
	ZTWOSUM;                         \
	ZNROUND;                         \
	VMOVAPS     Z1, Z4;              \
	VFMADD231PS zNegLn2Hi, Z3, Z4;   \
	VFMADD231PS zNegLn2Lo, Z3, Z4;   \
	VADDPS      Z2, Z4, Z4;          \
	ZEXPACC

// ZSTEPT: sixteen logits at off(SI), any τ (STEPT); v = s·(1/τ)_hi replaces s in Z1 once the
// masks are taken.
#define ZSTEPT(off) \
	VMOVUPS     off(SI), Z0;           \
	ZTWOSUM;                           \
	ZNROUND;                           \
	VMULPS      zNegLn2Short, Z3, Z4;  \
	VFMADD231PS zTauHi, Z1, Z4;        \
	VFMADD231PS zTauLo, Z1, Z4;        \
	VFMADD231PS zTauHi, Z2, Z4;        \
	VFMADD231PS zNegLn2Rest, Z3, Z4;   \
	VMULPS      zTauHi, Z1, Z1;        \
	ZEXPACC

// ZFLUSH1: the sixteen float32 lanes of S32 widened and added to the float64 sum S64.
#define ZFLUSH1(S32, Y32, S64) \
	VEXTRACTF64X4 $1, S32, Y0; \
	VCVTPS2PD     Y32, Z4;     \
	VCVTPS2PD     Y0, Z0;      \
	VADDPD        Z4, S64, S64; \
	VADDPD        Z0, S64, S64; \
	VPXORD        S32, S32, S32

#define ZFLUSH \
	ZFLUSH1(Z5, Y5, Z10); \
	ZFLUSH1(Z6, Y6, Z11); \
	ZFLUSH1(Z7, Y7, Z12); \
	ZFLUSH1(Z8, Y8, Z13)

// func sumsAVX512(x *float32, n int, p *avx2Params, out *asmSums, pf uintptr, unitTau bool)
// n a multiple of 16; the flush every 128 logits keeps eight terms a float32 lane, as in the
// AVX2 kernel, and the prefetch of eight lines from pf keeps sumsAVX2's rate.
TEXT ·sumsAVX512(SB), NOSPLIT, $0-41
	MOVQ         x+0(FP), SI
	MOVQ         n+8(FP), CX
	MOVQ         p+16(FP), DI
	MOVQ         out+24(FP), DX
	MOVQ         pf+32(FP), R10
	MOVBLZX      unitTau+40(FP), AX
	VBROADCASTSS pNegLn2Rest(DI), zNegLn2Rest
	VBROADCASTSS pClamp(DI), zClamp
	VBROADCASTSS pM(DI), zM
	VBROADCASTSS pNegM(DI), zNegM
	VBROADCASTSS pLog2e(DI), zLog2e
	VBROADCASTSS pT1(DI), zT1
	VBROADCASTSS pT2(DI), zT2
	VBROADCASTSS pMagic(DI), zMagic
	VBROADCASTSS pNegLn2Hi(DI), zNegLn2Hi
	VBROADCASTSS pNegLn2Lo(DI), zNegLn2Lo
	VBROADCASTSS pC6(DI), zC6
	VBROADCASTSS pC5(DI), zC5
	VBROADCASTSS pC4(DI), zC4
	VBROADCASTSS pC3(DI), zC3
	VBROADCASTSS pC2(DI), zC2
	VBROADCASTSS pOne(DI), zOne
	VBROADCASTSS pTauHi(DI), zTauHi
	VBROADCASTSS pTauLo(DI), zTauLo
	VBROADCASTSS pNegLn2Short(DI), zNegLn2Short
	VPXORD       Z5, Z5, Z5
	VPXORD       Z6, Z6, Z6
	VPXORD       Z7, Z7, Z7
	VPXORD       Z8, Z8, Z8
	VPXORD       Z10, Z10, Z10
	VPXORD       Z11, Z11, Z11
	VPXORD       Z12, Z12, Z12
	VPXORD       Z13, Z13, Z13
	XORQ         R8, R8
	TESTQ        AX, AX
	JZ           ztau128

zunit128:
	CMPQ CX, $128
	JLT  zunit16
	PF8
	ZSTEP1(0)
	ZSTEP1(64)
	ZSTEP1(128)
	ZSTEP1(192)
	ZSTEP1(256)
	ZSTEP1(320)
	ZSTEP1(384)
	ZSTEP1(448)
	ZFLUSH
	ADDQ $512, SI
	SUBQ $128, CX
	JMP  zunit128

zunit16:
	CMPQ CX, $16
	JLT  zdone
	ZSTEP1(0)
	ADDQ $64, SI
	SUBQ $16, CX
	JMP  zunit16

ztau128:
	CMPQ CX, $128
	JLT  ztau16
	PF8
	ZSTEPT(0)
	ZSTEPT(64)
	ZSTEPT(128)
	ZSTEPT(192)
	ZSTEPT(256)
	ZSTEPT(320)
	ZSTEPT(384)
	ZSTEPT(448)
	ZFLUSH
	ADDQ $512, SI
	SUBQ $128, CX
	JMP  ztau128

ztau16:
	CMPQ CX, $16
	JLT  zdone
	ZSTEPT(0)
	ADDQ $64, SI
	SUBQ $16, CX
	JMP  ztau16

zdone:
	ZFLUSH
	VMOVUPD Z10, 0(DX)
	VMOVUPD Z11, 64(DX)
	VMOVUPD Z12, 128(DX)
	VMOVUPD Z13, 192(DX)
	MOVL    R8, 256(DX)
	VZEROUPPER
	RET

// ZLANES4 loads the sixteen lane maxima at (DX) into the four accumulators Z0–Z3 of
// maxAVX512 and decodeMax16AVX512; ZLANESDONE folds the four into Z0, stores it at (DX) and
// returns.
#define ZLANES4 \
	VMOVUPS (DX), Z0; \
	VMOVAPS Z0, Z1;   \
	VMOVAPS Z0, Z2;   \
	VMOVAPS Z0, Z3

#define ZLANESDONE \
	VMAXPS  Z1, Z0, Z0; \
	VMAXPS  Z3, Z2, Z2; \
	VMAXPS  Z2, Z0, Z0; \
	VMOVUPS Z0, (DX);   \
	VZEROUPPER;         \
	RET

// func maxAVX512(x *float32, n int, lanes *[16]float32)
// maxAVX2 in sixteen lanes (n a multiple of 16).
TEXT ·maxAVX512(SB), NOSPLIT, $0-24
	MOVQ    x+0(FP), SI
	MOVQ    n+8(FP), CX
	MOVQ    lanes+16(FP), DX
	ZLANES4

zmax64:
	CMPQ    CX, $64
	JLT     zmax16
	VMOVUPS 0(SI), Z4
	VMOVUPS 64(SI), Z5
	VMOVUPS 128(SI), Z6
	VMOVUPS 192(SI), Z7
	VMAXPS  Z0, Z4, Z0
	VMAXPS  Z1, Z5, Z1
	VMAXPS  Z2, Z6, Z2
	VMAXPS  Z3, Z7, Z3
	ADDQ    $256, SI
	SUBQ    $64, CX
	JMP     zmax64

zmax16:
	CMPQ    CX, $16
	JLT     zmaxdone
	VMOVUPS (SI), Z4
	VMAXPS  Z0, Z4, Z0
	ADDQ    $64, SI
	SUBQ    $16, CX
	JMP     zmax16

zmaxdone:
	ZLANESDONE

// func decodeFloat16AVX512(dst *float32, src *uint16, n int)
// n a multiple of 16: decodeFloat16F16C, sixteen at a time.
TEXT ·decodeFloat16AVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

zf16loop64: // four vectors an iteration: the loop's overhead was a third of its instructions
	CMPQ      CX, $64
	JLT       zf16loop
	VCVTPH2PS (SI), Z0
	VCVTPH2PS 32(SI), Z1
	VCVTPH2PS 64(SI), Z2
	VCVTPH2PS 96(SI), Z3
	VMOVUPS   Z0, (DI)
	VMOVUPS   Z1, 64(DI)
	VMOVUPS   Z2, 128(DI)
	VMOVUPS   Z3, 192(DI)
	ADDQ      $128, SI
	ADDQ      $256, DI
	SUBQ      $64, CX
	JMP       zf16loop64

zf16loop:
	CMPQ      CX, $16
	JLT       zf16done
	VCVTPH2PS (SI), Z0
	VMOVUPS   Z0, (DI)
	ADDQ      $32, SI
	ADDQ      $64, DI
	SUBQ      $16, CX
	JMP       zf16loop

zf16done:
	VZEROUPPER
	RET

// func decodeBFloat16AVX512(dst *float32, src *uint16, n int)
// n a multiple of 16: decodeBFloat16AVX2, sixteen at a time.
TEXT ·decodeBFloat16AVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

zbf16loop64: // four vectors an iteration, as decodeFloat16AVX512
	CMPQ      CX, $64
	JLT       zbf16loop
	VPMOVZXWD (SI), Z0
	VPMOVZXWD 32(SI), Z1
	VPMOVZXWD 64(SI), Z2
	VPMOVZXWD 96(SI), Z3
	VPSLLD    $16, Z0, Z0
	VPSLLD    $16, Z1, Z1
	VPSLLD    $16, Z2, Z2
	VPSLLD    $16, Z3, Z3
	VMOVDQU32 Z0, (DI)
	VMOVDQU32 Z1, 64(DI)
	VMOVDQU32 Z2, 128(DI)
	VMOVDQU32 Z3, 192(DI)
	ADDQ      $128, SI
	ADDQ      $256, DI
	SUBQ      $64, CX
	JMP       zbf16loop64

zbf16loop:
	CMPQ      CX, $16
	JLT       zbf16done
	VPMOVZXWD (SI), Z0
	VPSLLD    $16, Z0, Z0
	VMOVDQU32 Z0, (DI)
	ADDQ      $32, SI
	ADDQ      $64, DI
	SUBQ      $16, CX
	JMP       zbf16loop

zbf16done:
	VZEROUPPER
	RET

// func decodeMax16AVX512(dst *float32, src *uint16, n int, lanes *[16]float32, bf16 bool)
// decodeFloat16AVX512 (decodeBFloat16AVX512 when bf16) and maxAVX512 of the decoded values in
// one pass (n a multiple of 16): the same four accumulators over the same runs of 64 and 16 as
// maxAVX512, so the lanes are its lanes bit for bit, without reading the block back. The branch
// on bf16 goes the same way every iteration.
TEXT ·decodeMax16AVX512(SB), NOSPLIT, $0-33
	MOVQ    dst+0(FP), DI
	MOVQ    src+8(FP), SI
	MOVQ    n+16(FP), CX
	MOVQ    lanes+24(FP), DX
	MOVBLZX bf16+32(FP), AX
	ZLANES4

zdm64:
	CMPQ      CX, $64
	JLT       zdm16
	TESTQ     AX, AX
	JNZ       zdm64b
	VCVTPH2PS (SI), Z4
	VCVTPH2PS 32(SI), Z5
	VCVTPH2PS 64(SI), Z6
	VCVTPH2PS 96(SI), Z7
	JMP       zdm64max

zdm64b:
	VPMOVZXWD (SI), Z4
	VPMOVZXWD 32(SI), Z5
	VPMOVZXWD 64(SI), Z6
	VPMOVZXWD 96(SI), Z7
	VPSLLD    $16, Z4, Z4
	VPSLLD    $16, Z5, Z5
	VPSLLD    $16, Z6, Z6
	VPSLLD    $16, Z7, Z7

zdm64max: // store the 64 decoded values, take them into the lane maxima
	VMOVUPS Z4, (DI)
	VMOVUPS Z5, 64(DI)
	VMOVUPS Z6, 128(DI)
	VMOVUPS Z7, 192(DI)
	VMAXPS  Z0, Z4, Z0
	VMAXPS  Z1, Z5, Z1
	VMAXPS  Z2, Z6, Z2
	VMAXPS  Z3, Z7, Z3
	ADDQ    $128, SI
	ADDQ    $256, DI
	SUBQ    $64, CX
	JMP     zdm64

zdm16:
	CMPQ      CX, $16
	JLT       zdmdone
	TESTQ     AX, AX
	JNZ       zdm16b
	VCVTPH2PS (SI), Z4
	JMP       zdm16max

zdm16b:
	VPMOVZXWD (SI), Z4
	VPSLLD    $16, Z4, Z4

zdm16max:
	VMOVUPS Z4, (DI)
	VMAXPS  Z0, Z4, Z0
	ADDQ    $32, SI
	ADDQ    $64, DI
	SUBQ    $16, CX
	JMP     zdm16

zdmdone:
	ZLANESDONE

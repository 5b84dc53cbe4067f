//go:build amd64 && !noasm

#include "textflag.h"

// statsFinishAVX512 (finishstats_amd64.go): statsChunkRun's loop over eight rows at a time in
// the lanes of Z registers, float64, each operation of the Go loop in the same order (Go's
// operand order: VSUBPD a, b, c is c = b − a; VDIVPD a, b, c is c = b / a; VCMPPD $p, a, b, k is
// k = (b p a)), so the same numbers bit for bit. Every branch of the Go loop is a mask: K3
// valid (an advantage), K4 a polarity, K5 a ΔĤ to compute, K6 an old log-probability, K1 the
// lanes the Go loop would stop at; when K1 has a lane the group is not stored and its index is
// returned, for the Go loop to take it from there.

// finishArgs offsets.
#define aN 0
#define aMax 8
#define aRest 16
#define aS1 24
#define aS2 32
#define aS3 40
#define aUA 48
#define aLogS0 56
#define aLogPi 64
#define aPi 72
#define aRatio 80
#define aAdv 88
#define aAdvValid 96
#define aMask 104
#define aOldValid 112
#define aOld 120
#define aEntropy 128
#define aLogprob 136
#define aSampled 144
#define aCorr 152
#define aFactor 160
#define aPol 168
#define aDH 176
#define aPolValid 184
#define aNatural 192
#define aScale 200
#define aHi 208
#define aLo 216
#define aBytes 224
#define aOne 232
#define aEps 240
#define aAbs 248
#define aSign 256

// Comparison predicates (quiet).
#define NEQ_UQ $4
#define NEQ_OQ $12
#define LT_OQ $17
#define LE_OQ $18
#define GT_OQ $30

// NOTFINITE(z, t, k): k = lanes of z that are not finite (z − z ≠ 0, or NaN). t is scratch.
#define NOTFINITE(z, t, k) \
	VSUBPD z, z, t;        \
	VCMPPD NEQ_UQ, Z31, t, k

// OUTSIDE(z, p): K1 gains the lanes of z that are not finite or where z p 0 (K2, Z9 scratch).
#define OUTSIDE(z, p)        \
	NOTFINITE(z, Z9, K2);    \
	KORW   K2, K1, K1;       \
	VCMPPD p, Z31, z, K2;    \
	KORW   K2, K1, K1

// STORE(z, y, out): the eight lanes of z rounded to float32 (y is z's lower half) into the
// output column at offset out of the arguments, at the group's rows.
#define STORE(z, y, out) \
	VCVTPD2PS z, y;      \
	MOVQ      out(DI), R8; \
	VMOVUPS   y, (R8)(CX*4)

// func statsFinishAVX512(a *finishArgs) int
TEXT ·statsFinishAVX512(SB), NOSPLIT, $0-16
	MOVQ         a+0(FP), DI
	MOVQ         aN(DI), DX
	ANDQ         $-8, DX
	XORQ         CX, CX
	VPXORQ       Z31, Z31, Z31
	VBROADCASTSD aOne(DI), Z30
	VBROADCASTSD aEps(DI), Z29
	VBROADCASTSD aAbs(DI), Z28
	VBROADCASTSD aSign(DI), Z27
	VBROADCASTSD aScale(DI), Z26
	VBROADCASTSD aHi(DI), Z25
	VBROADCASTSD aLo(DI), Z24
	MOVQ         $0xff, AX
	KMOVW        AX, K7        // all eight lanes

loop:
	CMPQ CX, DX
	JGE  done

	MOVQ    aMax(DI), R8
	VMOVUPD (R8)(CX*8), Z0        // m
	MOVQ    aRest(DI), R8
	VMOVUPD (R8)(CX*8), Z1        // rest = s0 − 1
	MOVQ    aS1(DI), R8
	VMOVUPD (R8)(CX*8), Z2        // s1
	MOVQ    aS2(DI), R8
	VMOVUPD (R8)(CX*8), Z3        // s2
	MOVQ    aS3(DI), R8
	VMOVUPD (R8)(CX*8), Z4        // s3
	MOVQ    aUA(DI), R8
	VMOVUPD (R8)(CX*8), Z5        // u_a

	// The rows the Go loop stops at: statistics outside their domain.
	NOTFINITE(Z0, Z9, K1)
	OUTSIDE(Z1, LT_OQ)            // rest not finite or < 0
	OUTSIDE(Z2, GT_OQ)            // s1 not finite or > 0
	OUTSIDE(Z3, LE_OQ)            // s2 not finite or ≤ 0
	OUTSIDE(Z4, GT_OQ)            // s3 not finite or > 0
	NOTFINITE(Z5, Z9, K2)
	KORW   K2, K1, K1
	VPANDQ Z28, Z0, Z6            // |m|
	VMAXPD Z30, Z6, Z6            // am = max(|m|, 1)
	VMULPD Z29, Z6, Z6            // 1e-6·am
	VADDPD Z6, Z0, Z6             // m + 1e-6·am
	VCMPPD GT_OQ, Z6, Z5, K2      // u_a > m + 1e-6·am
	KORW   K2, K1, K1
	VSUBPD Z0, Z5, Z7             // va = u_a − m
	NOTFINITE(Z7, Z9, K2)
	KORW   K2, K1, K1

	// Sums.Finalize and RowStats.Sampled.
	VADDPD  Z30, Z1, Z10          // s0 = 1 + rest
	VDIVPD  Z10, Z2, Z11          // shift = s1 / s0
	MOVQ    aLogS0(DI), R8
	VMOVUPD (R8)(CX*8), Z12       // log1p(rest)
	VSUBPD  Z11, Z12, Z13         // h = logS0 − shift
	VMULPD  Z3, Z11, Z14          // shift·s2
	VSUBPD  Z14, Z4, Z14          // s3 − shift·s2
	VMULPD  Z10, Z10, Z15         // s0·s0
	VDIVPD  Z15, Z14, Z14         // c
	MOVQ    aLogPi(DI), R8
	VMOVUPD (R8)(CX*8), Z16       // log π_a
	MOVQ    aPi(DI), R8
	VMOVUPD (R8)(CX*8), Z17       // π_a
	VSUBPD  Z11, Z7, Z18          // va − shift
	VMULPD  Z18, Z17, Z18         // sampled = π_a·(va − shift)

	// Finish: the polarity factor t.
	CMPQ   aNatural(DI), $0
	JEQ    plain
	VADDPD Z13, Z16, Z19          // log π_a + h
	VPXORQ Z27, Z19, Z19          // t = −(log π_a + h)
	JMP    factor

plain:
	VSUBPD Z18, Z14, Z19          // t = c − sampled

factor:
	// The advantage: K3 valid, a not finite where valid stops the loop.
	MOVQ      aAdv(DI), R8
	VMOVUPD   (R8)(CX*8), Z8      // a
	KMOVW     K7, K3
	MOVQ      aAdvValid(DI), R9
	TESTQ     R9, R9
	JZ        advall
	VPMOVZXBQ (R9)(CX*1), Z9
	VPTESTMQ  Z9, Z9, K3

advall:
	NOTFINITE(Z8, Z9, K2)
	KANDW  K3, K2, K2
	KORW   K2, K1, K1

	// pol = a·t where valid and a ≠ 0, else +0.
	VCMPPD   NEQ_UQ, Z31, Z8, K4
	KANDW    K3, K4, K4
	VMULPD.Z Z19, Z8, K4, Z20

	// K5: the rows with a ΔĤ to compute (valid, trained, pol ≠ 0).
	VCMPPD NEQ_OQ, Z31, Z20, K5
	KANDW  K4, K5, K5
	MOVQ   aMask(DI), R9
	TESTQ  R9, R9
	JZ     maskall
	VPMOVZXBQ (R9)(CX*1), Z9
	VPTESTMQ  Z9, Z9, K2
	KANDW     K2, K5, K5

maskall:
	// K6: an old log-probability is there; where it is needed (K5) it must be finite.
	KXORW  K6, K6, K6
	VMOVAPD Z30, Z22              // ratio = 1
	MOVQ   aOld(DI), R8
	TESTQ  R8, R8
	JZ     noold
	KMOVW  K7, K6
	MOVQ   aOldValid(DI), R9
	TESTQ  R9, R9
	JZ     oldall
	VPMOVZXBQ (R9)(CX*1), Z9
	VPTESTMQ  Z9, Z9, K6

oldall:
	KANDW     K5, K6, K6          // needed and there
	VCVTPS2PD (R8)(CX*4), Z21     // o
	NOTFINITE(Z21, Z9, K2)
	KANDW     K6, K2, K2
	KORW      K2, K1, K1
	MOVQ      aRatio(DI), R8
	VMOVUPD   (R8)(CX*8), K6, Z22 // ratio = exp(log π_a − o) where there

noold:
	// clipped = (a > 0 and ratio > 1 + High) or (a < 0 and ratio < 1 − Low), where there.
	VCMPPD GT_OQ, Z31, Z8, K2
	VCMPPD GT_OQ, Z25, Z22, K2, K2 // and where a > 0
	VCMPPD LT_OQ, Z31, Z8, K4
	VCMPPD LT_OQ, Z24, Z22, K4, K4 // and where a < 0
	KORW   K4, K2, K2
	KANDW  K6, K2, K2
	KANDNW K5, K2, K5             // not clipped
	VMULPD   Z22, Z26, Z23        // scale·ratio
	VMULPD.Z Z20, Z23, K5, Z23    // ΔĤ = scale·ratio·pol where computed, else +0

	KORTESTW K1, K1
	JNZ      done

	STORE(Z13, Y13, aEntropy)
	STORE(Z16, Y16, aLogprob)
	STORE(Z18, Y18, aSampled)
	STORE(Z14, Y14, aCorr)
	STORE(Z19, Y19, aFactor)
	STORE(Z20, Y20, aPol)
	STORE(Z23, Y23, aDH)
	KMOVW     K3, AX
	ANDQ      $0xff, AX
	MOVQ      aBytes(DI), R9
	MOVQ      (R9)(AX*8), AX      // the eight bools of the valid lanes (bitbools.Table)
	MOVQ      aPolValid(DI), R8
	MOVQ      AX, (R8)(CX*1)

	ADDQ $8, CX
	JMP  loop

done:
	VZEROUPPER
	MOVQ CX, ret+8(FP)
	RET

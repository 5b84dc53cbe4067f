//go:build amd64 && !noasm

#include "textflag.h"

// vexp and vlog1p (vmath.go) in four AVX2+FMA or eight AVX-512F lanes of float64: the same
// operations in the same order, each select of the Go code a blend. Go's operand order (as in
// kernel_amd64.s): VSUBPD a, b, c is c = b − a; VFMADD231PD a, b, c is c = b·a + c;
// VFMADD213PD a, b, c is c = b·c + a; VFNMADD231PD a, b, c is c = −(b·a) + c; VFMSUB231PD
// a, b, c is c = b·a − c; VCMPPD $p, a, b, c is c = (b p a); VBLENDVPD m, a, b, c is c = m ? a : b.
// Every product is commutative and every constant of the Go code is a row of vmathTable
// (64 bytes a row).

// Rows of vexpTable.
#define eLog2e 0
#define eShift 64
#define eLn2Hi 128
#define eLn2Lo 192
#define eHi 256
#define eLo 320
#define eOne 384
#define eScaleLo 448
#define eP(i) (512+64*(i))

// Rows of vlog1pTable.
#define lOne 0
#define lOff 64
#define lMagic 128
#define lKBias 192
#define lTwo 256
#define lHalf 320
#define lLn2Lo 384
#define lLn2Hi 448
#define lAbs 512
#define lSmall 576
#define lMHalf 640
#define lNegOne 704
#define lNaN 768
#define lNegInf 832
#define lMax 896
#define lP(i) (960+64*(i))

// func expAVX2(dst, x *float64, n int, t *vmathTable), n a multiple of 4.
// Y0 x, Y1 x clamped, Y2 t, Y3 n, Y4 t1, Y5 r, Y6 rlo, Y7 q, Y8 r², Y15 1.
TEXT ·expAVX2(SB), NOSPLIT, $0-32
	MOVQ    dst+0(FP), DI
	MOVQ    x+8(FP), SI
	MOVQ    n+16(FP), CX
	MOVQ    t+24(FP), DX
	VMOVUPD eOne(DX), Y15

exp4:
	CMPQ         CX, $4
	JLT          exp4done
	VMOVUPD      (SI), Y0
	VMINPD       eHi(DX), Y0, Y1
	VMAXPD       eLo(DX), Y1, Y1
	VMOVUPD      eShift(DX), Y2
	VFMADD231PD  eLog2e(DX), Y1, Y2
	VSUBPD       eShift(DX), Y2, Y3
	VMOVAPD      Y1, Y4
	VFNMADD231PD eLn2Hi(DX), Y3, Y4
	VMOVAPD      Y4, Y5
	VFNMADD231PD eLn2Lo(DX), Y3, Y5
	VSUBPD       Y5, Y4, Y6
	VFNMADD231PD eLn2Lo(DX), Y3, Y6
	VMOVUPD      eP(0)(DX), Y7
	VFMADD213PD  eP(1)(DX), Y5, Y7
	VFMADD213PD  eP(2)(DX), Y5, Y7
	VFMADD213PD  eP(3)(DX), Y5, Y7
	VFMADD213PD  eP(4)(DX), Y5, Y7
	VFMADD213PD  eP(5)(DX), Y5, Y7
	VFMADD213PD  eP(6)(DX), Y5, Y7
	VFMADD213PD  eP(7)(DX), Y5, Y7
	VFMADD213PD  eP(8)(DX), Y5, Y7
	VFMADD213PD  eP(9)(DX), Y5, Y7
	VFMADD213PD  eP(10)(DX), Y5, Y7
	VFMADD213PD  eP(11)(DX), Y5, Y7
	VFMADD213PD  eP(12)(DX), Y5, Y7
	VMULPD       Y5, Y5, Y8
	VFMADD231PD  Y7, Y8, Y6           // s = r²·q + rlo
	VADDPD       Y15, Y5, Y7          // h = 1 + r
	VSUBPD       Y7, Y15, Y8
	VADDPD       Y5, Y8, Y8           // e1 = (1 − h) + r
	VADDPD       Y6, Y8, Y8
	VADDPD       Y8, Y7, Y8           // p = h + (e1 + s)
	VPSUBQ       eScaleLo(DX), Y2, Y2 // m = n + 2046
	VPSRLQ       $1, Y2, Y3           // a
	VPSUBQ       Y3, Y2, Y2           // b = m − a
	VPSLLQ       $52, Y3, Y3
	VPSLLQ       $52, Y2, Y2
	VMULPD       Y3, Y8, Y8
	VMULPD       Y2, Y8, Y8
	VCMPPD       $3, Y0, Y0, Y9       // NaN: x
	VBLENDVPD    Y9, Y0, Y8, Y8
	VMOVUPD      Y8, (DI)
	ADDQ         $32, SI
	ADDQ         $32, DI
	SUBQ         $4, CX
	JMP          exp4

exp4done:
	VZEROUPPER
	RET

// func expAVX512(dst, x *float64, n int, t *vmathTable), n a multiple of 8.
// expAVX2's registers as Z0–Z9; the constants in Z11–Z31; K1 the NaN lanes.
TEXT ·expAVX512(SB), NOSPLIT, $0-32
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	MOVQ         t+24(FP), DX
	VBROADCASTSD eLog2e(DX), Z11
	VBROADCASTSD eShift(DX), Z12
	VBROADCASTSD eLn2Hi(DX), Z13
	VBROADCASTSD eLn2Lo(DX), Z14
	VBROADCASTSD eHi(DX), Z15
	VBROADCASTSD eLo(DX), Z16
	VBROADCASTSD eOne(DX), Z17
	VBROADCASTSD eScaleLo(DX), Z18
	VBROADCASTSD eP(0)(DX), Z19
	VBROADCASTSD eP(1)(DX), Z20
	VBROADCASTSD eP(2)(DX), Z21
	VBROADCASTSD eP(3)(DX), Z22
	VBROADCASTSD eP(4)(DX), Z23
	VBROADCASTSD eP(5)(DX), Z24
	VBROADCASTSD eP(6)(DX), Z25
	VBROADCASTSD eP(7)(DX), Z26
	VBROADCASTSD eP(8)(DX), Z27
	VBROADCASTSD eP(9)(DX), Z28
	VBROADCASTSD eP(10)(DX), Z29
	VBROADCASTSD eP(11)(DX), Z30
	VBROADCASTSD eP(12)(DX), Z31

exp8:
	CMPQ         CX, $8
	JLT          exp8done
	VMOVUPD      (SI), Z0
	VMINPD       Z15, Z0, Z1
	VMAXPD       Z16, Z1, Z1
	VMOVAPD      Z12, Z2
	VFMADD231PD  Z11, Z1, Z2
	VSUBPD       Z12, Z2, Z3
	VMOVAPD      Z1, Z4
	VFNMADD231PD Z13, Z3, Z4
	VMOVAPD      Z4, Z5
	VFNMADD231PD Z14, Z3, Z5
	VSUBPD       Z5, Z4, Z6
	VFNMADD231PD Z14, Z3, Z6
	VMOVAPD      Z19, Z7
	VFMADD213PD  Z20, Z5, Z7
	VFMADD213PD  Z21, Z5, Z7
	VFMADD213PD  Z22, Z5, Z7
	VFMADD213PD  Z23, Z5, Z7
	VFMADD213PD  Z24, Z5, Z7
	VFMADD213PD  Z25, Z5, Z7
	VFMADD213PD  Z26, Z5, Z7
	VFMADD213PD  Z27, Z5, Z7
	VFMADD213PD  Z28, Z5, Z7
	VFMADD213PD  Z29, Z5, Z7
	VFMADD213PD  Z30, Z5, Z7
	VFMADD213PD  Z31, Z5, Z7
	VMULPD       Z5, Z5, Z8
	VFMADD231PD  Z7, Z8, Z6
	VADDPD       Z17, Z5, Z7
	VSUBPD       Z7, Z17, Z8
	VADDPD       Z5, Z8, Z8
	VADDPD       Z6, Z8, Z8
	VADDPD       Z8, Z7, Z8
	VPSUBQ       Z18, Z2, Z2
	VPSRLQ       $1, Z2, Z3
	VPSUBQ       Z3, Z2, Z2
	VPSLLQ       $52, Z3, Z3
	VPSLLQ       $52, Z2, Z2
	VMULPD       Z3, Z8, Z8
	VMULPD       Z2, Z8, Z8
	VCMPPD       $3, Z0, Z0, K1
	VMOVAPD      Z0, K1, Z8
	VMOVUPD      Z8, (DI)
	ADDQ         $64, SI
	ADDQ         $64, DI
	SUBQ         $8, CX
	JMP          exp8

exp8done:
	VZEROUPPER
	RET

// func log1pAVX2(dst, x *float64, n int, t *vmathTable), n a multiple of 4.
// Y0 x, Y1 u, Y3 c, Y4 k, Y5 fm, Y6 s, Y7 z, Y8 w, Y9 p1, Y10 p2 then R, Y11 hfsq then the
// result, Y12 c/u then a, Y12 and Y13 the selects; Y15 1.
TEXT ·log1pAVX2(SB), NOSPLIT, $0-32
	MOVQ    dst+0(FP), DI
	MOVQ    x+8(FP), SI
	MOVQ    n+16(FP), CX
	MOVQ    t+24(FP), DX
	VMOVUPD lOne(DX), Y15

log4:
	CMPQ        CX, $4
	JLT         log4done
	VMOVUPD     (SI), Y0
	VADDPD      Y15, Y0, Y1      // u = 1 + x
	VSUBPD      Y0, Y1, Y2       // bb = u − x
	VSUBPD      Y2, Y1, Y3
	VSUBPD      Y3, Y0, Y3       // x − (u − bb)
	VSUBPD      Y2, Y15, Y4      // 1 − bb
	VADDPD      Y3, Y4, Y3       // c
	VPADDQ      lOff(DX), Y1, Y4
	VPSRLQ      $52, Y4, Y4      // kb
	VPSLLQ      $52, Y4, Y5
	VPSUBQ      Y5, Y1, Y5
	VPADDQ      Y15, Y5, Y5      // f
	VPOR        lMagic(DX), Y4, Y4
	VSUBPD      lKBias(DX), Y4, Y4 // k
	VSUBPD      Y15, Y5, Y5      // fm = f − 1
	VADDPD      lTwo(DX), Y5, Y6
	VDIVPD      Y6, Y5, Y6       // s = fm / (2 + fm)
	VMULPD      Y6, Y6, Y7       // z
	VMULPD      Y7, Y7, Y8       // w
	VMOVUPD     lP(5)(DX), Y9
	VFMADD213PD lP(3)(DX), Y8, Y9
	VFMADD213PD lP(1)(DX), Y8, Y9  // p1
	VMOVUPD     lP(6)(DX), Y10
	VFMADD213PD lP(4)(DX), Y8, Y10
	VFMADD213PD lP(2)(DX), Y8, Y10
	VFMADD213PD lP(0)(DX), Y8, Y10 // p2
	VMULPD      Y10, Y7, Y10
	VFMADD231PD Y9, Y8, Y10        // R = w·p1 + z·p2
	VMULPD      lHalf(DX), Y5, Y11
	VMULPD      Y5, Y11, Y11       // hfsq
	VDIVPD      Y1, Y3, Y12        // c/u
	VFMADD231PD lLn2Lo(DX), Y4, Y12
	VADDPD      Y10, Y11, Y10
	VFMADD231PD Y10, Y6, Y12       // a
	VSUBPD      Y12, Y11, Y11
	VSUBPD      Y5, Y11, Y11
	VFMSUB231PD lLn2Hi(DX), Y4, Y11 // k·ln2Hi − ((hfsq − a) − fm)
	VANDPD      lAbs(DX), Y0, Y12
	VCMPPD      $1, lSmall(DX), Y12, Y12 // |x| < 2^-29
	VMULPD      lMHalf(DX), Y0, Y13
	VFMADD213PD Y0, Y0, Y13          // x·(−x/2) + x
	VBLENDVPD   Y12, Y13, Y11, Y11
	VCMPPD      $1, lNegOne(DX), Y0, Y12 // x < −1
	VBLENDVPD   Y12, lNaN(DX), Y11, Y11
	VCMPPD      $0, lNegOne(DX), Y0, Y12 // x = −1
	VBLENDVPD   Y12, lNegInf(DX), Y11, Y11
	VCMPPD      $0x1e, lMax(DX), Y0, Y12 // x > MaxFloat64, or NaN: x
	VCMPPD      $3, Y0, Y0, Y13
	VORPD       Y13, Y12, Y12
	VBLENDVPD   Y12, Y0, Y11, Y11
	VMOVUPD     Y11, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $4, CX
	JMP         log4

log4done:
	VZEROUPPER
	RET

// func log1pAVX512(dst, x *float64, n int, t *vmathTable), n a multiple of 8.
// log1pAVX2's registers as Z0–Z13; the constants in Z14–Z31 but for lMagic, lNaN, lNegInf and
// lMax, read from the table; K1 and K2 the selects.
TEXT ·log1pAVX512(SB), NOSPLIT, $0-32
	MOVQ         dst+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	MOVQ         t+24(FP), DX
	VBROADCASTSD lOne(DX), Z15
	VBROADCASTSD lOff(DX), Z16
	VBROADCASTSD lKBias(DX), Z17
	VBROADCASTSD lTwo(DX), Z18
	VBROADCASTSD lHalf(DX), Z19
	VBROADCASTSD lLn2Lo(DX), Z20
	VBROADCASTSD lLn2Hi(DX), Z21
	VBROADCASTSD lAbs(DX), Z22
	VBROADCASTSD lSmall(DX), Z23
	VBROADCASTSD lMHalf(DX), Z24
	VBROADCASTSD lNegOne(DX), Z14
	VBROADCASTSD lP(0)(DX), Z25
	VBROADCASTSD lP(1)(DX), Z26
	VBROADCASTSD lP(2)(DX), Z27
	VBROADCASTSD lP(3)(DX), Z28
	VBROADCASTSD lP(4)(DX), Z29
	VBROADCASTSD lP(5)(DX), Z30
	VBROADCASTSD lP(6)(DX), Z31

log8:
	CMPQ        CX, $8
	JLT         log8done
	VMOVUPD     (SI), Z0
	VADDPD      Z15, Z0, Z1
	VSUBPD      Z0, Z1, Z2
	VSUBPD      Z2, Z1, Z3
	VSUBPD      Z3, Z0, Z3
	VSUBPD      Z2, Z15, Z4
	VADDPD      Z3, Z4, Z3
	VPADDQ      Z16, Z1, Z4
	VPSRLQ      $52, Z4, Z4
	VPSLLQ      $52, Z4, Z5
	VPSUBQ      Z5, Z1, Z5
	VPADDQ      Z15, Z5, Z5
	VPORQ       lMagic(DX), Z4, Z4
	VSUBPD      Z17, Z4, Z4
	VSUBPD      Z15, Z5, Z5
	VADDPD      Z18, Z5, Z6
	VDIVPD      Z6, Z5, Z6
	VMULPD      Z6, Z6, Z7
	VMULPD      Z7, Z7, Z8
	VMOVAPD     Z30, Z9
	VFMADD213PD Z28, Z8, Z9
	VFMADD213PD Z26, Z8, Z9
	VMOVAPD     Z31, Z10
	VFMADD213PD Z29, Z8, Z10
	VFMADD213PD Z27, Z8, Z10
	VFMADD213PD Z25, Z8, Z10
	VMULPD      Z10, Z7, Z10
	VFMADD231PD Z9, Z8, Z10
	VMULPD      Z19, Z5, Z11
	VMULPD      Z5, Z11, Z11
	VDIVPD      Z1, Z3, Z12
	VFMADD231PD Z20, Z4, Z12
	VADDPD      Z10, Z11, Z10
	VFMADD231PD Z10, Z6, Z12
	VSUBPD      Z12, Z11, Z11
	VSUBPD      Z5, Z11, Z11
	VFMSUB231PD Z21, Z4, Z11
	VPANDQ      Z22, Z0, Z12
	VCMPPD      $1, Z23, Z12, K1
	VMULPD      Z24, Z0, Z13
	VFMADD213PD Z0, Z0, Z13
	VMOVAPD     Z13, K1, Z11
	VCMPPD      $1, Z14, Z0, K1
	VMOVUPD     lNaN(DX), K1, Z11
	VCMPPD      $0, Z14, Z0, K1
	VMOVUPD     lNegInf(DX), K1, Z11
	VCMPPD      $0x1e, lMax(DX), Z0, K1
	VCMPPD      $3, Z0, Z0, K2
	KORW        K2, K1, K1
	VMOVAPD     Z0, K1, Z11
	VMOVUPD     Z11, (DI)
	ADDQ        $64, SI
	ADDQ        $64, DI
	SUBQ        $8, CX
	JMP         log8

log8done:
	VZEROUPPER
	RET

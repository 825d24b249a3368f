#include "textflag.h"

// Each function is a single load or store of its width.

TEXT ·mmioRead8(SB),NOSPLIT,$0-9
	MOVQ p+0(FP), AX
	MOVB (AX), BX
	MOVB BX, ret+8(FP)
	RET

TEXT ·mmioRead16(SB),NOSPLIT,$0-10
	MOVQ p+0(FP), AX
	MOVW (AX), BX
	MOVW BX, ret+8(FP)
	RET

TEXT ·mmioRead32(SB),NOSPLIT,$0-12
	MOVQ p+0(FP), AX
	MOVL (AX), BX
	MOVL BX, ret+8(FP)
	RET

TEXT ·mmioWrite8(SB),NOSPLIT,$0-9
	MOVQ p+0(FP), AX
	MOVB v+8(FP), BX
	MOVB BX, (AX)
	RET

TEXT ·mmioWrite16(SB),NOSPLIT,$0-10
	MOVQ p+0(FP), AX
	MOVW v+8(FP), BX
	MOVW BX, (AX)
	RET

TEXT ·mmioWrite32(SB),NOSPLIT,$0-12
	MOVQ p+0(FP), AX
	MOVL v+8(FP), BX
	MOVL BX, (AX)
	RET

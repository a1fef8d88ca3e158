/* gemm_amx.c — the AMX kernel: a 32x32 block of C in four accumulator
 * tiles (tmm0-3), two tiles of A rows (tmm4-5) and two of B (tmm6-7), so
 * each A and B tile loaded feeds two _tile_dpbf16ps. Compiled for AMX with
 * target attributes; called only after gemm.c has checked the CPU. */
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "gemm_internal.h"

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

int gemm_amx_request(void) {
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

/* Palette 1, all eight tiles 16 rows x 64 bytes. Static data: GCC 12's
 * _tile_loadconfig declares an 8-byte operand, so stores into a local
 * config would be dropped as dead. */
static const struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((aligned(64))) tile_config = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

__attribute__((target("amx-tile"))) void gemm_amx_begin(void) { _tile_loadconfig(&tile_config); }

__attribute__((target("amx-tile"))) void gemm_amx_end(void) { _tile_release(); }

/* Tile numbers must be literals, hence the two near-identical bodies. */
__attribute__((target("amx-tile,amx-bf16")))
void gemm_amx_block(float *c, long ldc, const float *bias, int init, const uint16_t *a, long lda,
                    const uint16_t *b, long bstride, int ktiles, int mtiles) {
    const long cs = ldc * 4, as = lda * 2;
    const uint16_t *b1 = b + bstride;
    if (init == GEMM_INIT_LOAD) {
        _tile_loadd(0, c, cs);
        _tile_loadd(1, c + 16, cs);
    } else if (init == GEMM_INIT_BIAS) {
        _tile_loadd(0, bias, 0);
        _tile_loadd(1, bias + 16, 0);
    } else {
        _tile_zero(0);
        _tile_zero(1);
    }
    if (mtiles == 1) {
        for (int k = 0; k < ktiles; k++) {
            _tile_loadd(4, a + k * GEMM_TILE_K, as);
            _tile_loadd(6, b + k * GEMM_TILE_ELEMS, 64);
            _tile_loadd(7, b1 + k * GEMM_TILE_ELEMS, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
        }
        _tile_stored(0, c, cs);
        _tile_stored(1, c + 16, cs);
        return;
    }
    float *c2 = c + 16 * ldc;
    const uint16_t *a2 = a + 16 * lda;
    if (init == GEMM_INIT_LOAD) {
        _tile_loadd(2, c2, cs);
        _tile_loadd(3, c2 + 16, cs);
    } else if (init == GEMM_INIT_BIAS) {
        _tile_loadd(2, bias, 0);
        _tile_loadd(3, bias + 16, 0);
    } else {
        _tile_zero(2);
        _tile_zero(3);
    }
    for (int k = 0; k < ktiles; k++) {
        _tile_loadd(4, a + k * GEMM_TILE_K, as);
        _tile_loadd(6, b + k * GEMM_TILE_ELEMS, 64);
        _tile_loadd(7, b1 + k * GEMM_TILE_ELEMS, 64);
        _tile_loadd(5, a2 + k * GEMM_TILE_K, as);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, c, cs);
    _tile_stored(1, c + 16, cs);
    _tile_stored(2, c2, cs);
    _tile_stored(3, c2 + 16, cs);
}

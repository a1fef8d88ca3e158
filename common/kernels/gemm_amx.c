/* gemm_amx.c — the AMX kernel: a block of up to 32x32 of C in four
 * accumulator tiles (tmm0-3), two tiles of A rows (tmm4-5) and two of B
 * (tmm6-7), so each A and B tile loaded feeds two _tile_dpbf16ps.
 * Compiled for AMX with target attributes; called only after gemm.c has
 * checked the CPU and obtained the kernel's permission. */
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "gemm_internal.h"

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

int gemm_amx_request(void) {
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

/* The loaded tile configuration fits blocks of this many rows (0: none). */
static _Thread_local int configured_rows;

/* Palette 1; accumulator and A tiles cut to the block's rows so that a
 * block at the bottom edge (decoding: 1 to 8 rows) reads and writes only
 * its own rows: tmm0, 1, 4 take rows 0..15, tmm2, 3, 5 the rest; B tiles
 * tmm6, 7 are 16 rows. All 64 bytes wide. */
__attribute__((target("amx-tile"))) static void configure(int rows) {
    struct {
        uint8_t palette, start_row, reserved[14];
        uint16_t colsb[16];
        uint8_t rows[16];
    } cfg = {.palette = 1};
    const int top = rows < 16 ? rows : 16, bottom = rows > 16 ? rows - 16 : 16;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = t == 2 || t == 3 || t == 5 ? bottom : t < 6 ? top : 16;
    }
    /* GCC 12's _tile_loadconfig names only 8 bytes of its operand: without
     * this the other stores look dead and are dropped. */
    __asm__ volatile("" : : "m"(cfg));
    _tile_loadconfig(&cfg);
    configured_rows = rows;
}

void gemm_amx_begin(void) { configured_rows = 0; }

__attribute__((target("amx-tile"))) void gemm_amx_end(void) {
    if (configured_rows) _tile_release();
    configured_rows = 0;
}

/* Tile numbers must be literals, hence the two near-identical bodies. */
__attribute__((target("amx-tile,amx-bf16")))
void gemm_amx_block(float *c, long ldc, const float *bias, int init, const uint16_t *a, long lda,
                    const uint16_t *b, long bstride, int ktiles, int rows) {
    if (rows != configured_rows) configure(rows);
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
    if (rows <= 16) {
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

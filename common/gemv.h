/* gemv.h — matrix products with few rows (decoding), memory-bound: each
 * weight row is read from memory once for all input rows, the output rows
 * split across the threads of the pool (parallel.h). */
#ifndef TUNEPIPE_GEMV_H
#define TUNEPIPE_GEMV_H

/* Above this many input rows, cblas_sgemm is faster. */
#define GEMV_MAX_ROWS 16

/* out [N, OC] = inp [N, C] · w[OC, C]ᵀ + bias [OC] (bias may be NULL),
 * N <= GEMV_MAX_ROWS. */
void gemv_forward(float *out, const float *inp, const float *w, const float *bias,
                  int N, int C, int OC);

#endif

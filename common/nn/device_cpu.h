/* device_cpu.h — the CPU device's ops that live apart from its table
 * (device_cpu.c): the attention ops and the fused decoding step
 * (device_cpu_attention.c), and the element-wise ops these share. */
#ifndef TUNEPIPE_DEVICE_CPU_H
#define TUNEPIPE_DEVICE_CPU_H

#include "device.h"
#include "forward.h"
#include "kvcache.h"

void cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                           const float *b, int N, int C, float eps);
void cpu_residual_forward(float *out, const float *a, const float *b, size_t N);

void cpu_attention_forward(const neox_model *m, const device_pack *p, float *qkv, float *att, float *atty);
size_t cpu_attention_scratch(const neox_model *m, size_t max_sq);
void cpu_attention_backward(const neox_model *m, const device_pack *p, float *dqkv, float *scratch,
                            const float *datty, const float *qkv, const float *att);
void cpu_attention_decode(neox_decoder *d, int l, const decode_rows *rows, float *qkv, float *atty, int here);
void cpu_decoder_reserve(neox_decoder *d, int slot, int room);
int cpu_decode_layer(const neox_model *m, int l, const layer_bufs *b, int R, const layer_attention *att);

#endif

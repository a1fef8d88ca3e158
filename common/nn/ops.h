/* ops.h — the forward ops of GPT-NeoX, each on plain fp32 arrays (row-major,
 * shapes in the comment above each function). The backward passes live in
 * backward.h (trainer); they consume what these write. Linear layers are
 * in linear.h. */
#ifndef TUNEPIPE_OPS_H
#define TUNEPIPE_OPS_H

/* out, inp [N, C]; mean, rstd [N] (may be NULL); w, b [C].
 * out = (inp - mean) * rstd * w + b, rstd = 1/sqrt(var + eps), biased var. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *w, const float *b, int N, int C, float eps);

/* qkv [T, NH*3*hd] in HF's per-head layout (q|k|v per head), rotated in
 * place: the first rot dims of each q and k, token t at position pos0 + t.
 * cos, sin [max_positions, rot/2]. rotate_half: for i < rot/2,
 * x1 = x[i], x2 = x[i + rot/2]; x[i] = x1 cos - x2 sin, x[i+rot/2] = x2 cos + x1 sin. */
void rotary_forward(float *qkv, const float *cos, const float *sin, int pos0,
                    int T, int NH, int hd, int rot);

/* Causal self-attention of one sequence.
 * qkv [T, NH*3*hd] (rotated); out [T, NH*hd] heads merged;
 * att [NH, T, T] softmax probabilities, zero above the diagonal.
 * Scores are q·k / sqrt(hd). */
void attention_forward(float *out, float *att, const float *qkv, int T, int NH, int hd);

/* out, inp [N]: exact GELU, 0.5 x (1 + erf(x / sqrt 2)). out may be inp. */
void gelu_forward(float *out, const float *inp, int N);

/* out, a, b [N]: out = a + b. out may alias a or b. */
void residual_forward(float *out, const float *a, const float *b, int N);

/* Fills cos, sin [max_positions, rot/2] with the rotary angles
 * pos * base^(-2i/rot), computed in double. */
void rotary_tables(float *cos, float *sin, int max_positions, int rot, double base);

#endif

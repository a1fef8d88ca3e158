/* forward.h — the forward of GPT-NeoX: one layer over R rows
 * (layer_forward), used by the packed forward of training and eval
 * (model_forward_pack, which keeps every activation) and by cached
 * decoding (kvcache.h, which keeps none).
 *
 * Activations of model_forward_pack, everything a backward pass needs,
 * for a PACK: several sequences laid end to end (T tokens in all). The
 * per-token ops (layer norms, linear layers, GELU) run over all T tokens
 * at once, so the products are large; rotary positions and causal
 * attention restart at each sequence. A single sequence is a pack of one.
 * [L, T, C] arrays hold layer l at offset l*T*C (T of the last call).
 *
 *   resid    [L+1, T, C]  resid[0] = embed_in rows of ids; resid[l] is the
 *                         input of layer l, resid[L] the output of the last
 *   ln1      [L, T, C]    input_layernorm(resid[l]); ln1_mean, ln1_rstd [L, T]
 *   qkv      [L, T, 3C]   query_key_value output in HF's per-head layout:
 *                         token t, head h: q at t*3C + h*3hd, k at +hd,
 *                         v at +2hd; q and k ALREADY ROTATED (rotary on their
 *                         first rotary_ndims dims, rotate_half convention)
 *   att      [L, A]       softmax probabilities, A = NH * sum of T_s^2:
 *                         sequence s's [NH, T_s, T_s] block follows those of
 *                         the earlier ones; row t is zero beyond t
 *   atty     [L, T, C]    attention output, heads merged (head h at h*hd),
 *                         the input of attention.dense
 *   resid_mid [L, T, C]   only when !use_parallel_residual (else NULL):
 *                         resid[l] + dense(atty), the input of ln2
 *   ln2      [L, T, C]    post_attention_layernorm of resid[l] (parallel) or
 *                         of resid_mid[l]; ln2_mean, ln2_rstd [L, T]
 *   fch      [L, T, I]    dense_h_to_4h output, before GELU
 *   fch_gelu [L, T, I]    after exact (erf) GELU, the input of dense_4h_to_h
 *   lnf      [T, C]       final_layer_norm(resid[L]); lnf_mean, lnf_rstd [T]
 *   lnf_rows [R, C]       lnf at the pack's R loss rows (row_pos)
 *   logits   [R, V]       embed_out(lnf_rows)
 *
 * Layer l: resid[l+1] = resid[l] + attn + mlp where
 *   attn = dense(attention(rotary(qkv(ln1(resid[l])))))
 *   mlp  = dense_4h_to_h(gelu(dense_h_to_4h(ln2(resid[l] or resid_mid[l]))))
 * The rotary tables are model.rope_cos / rope_sin [max_positions, rot/2]
 * (ops.h, rotary_forward): angle(pos, i) = pos * base^(-2i/rot). */
#ifndef TUNEPIPE_FORWARD_H
#define TUNEPIPE_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "device.h"
#include "model.h"

/* A pack of sequences and the rows whose logits are wanted (the loss rows). */
typedef struct neox_pack {
    int T;                 /* tokens, all sequences */
    int nseq;
    const int *seq_start;  /* [nseq + 1]: sequence s is tokens seq_start[s] .. seq_start[s+1]-1 */
    const uint32_t *ids;   /* [T] */
    int nrows;             /* logit rows */
    const int *row_pos;    /* [nrows] the pack position whose logits predict ... */
    const uint32_t *row_target; /* [nrows] ... this token (for the loss; may be NULL) */
} neox_pack;

typedef struct {
    const device_ops *dev;          /* where the arrays are: the model's device */
    size_t cap_T, cap_att, cap_rows, cap_logits;
    int T, A, R;                    /* of the last forward */
    float *resid, *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *atty, *resid_mid;
    float *ln2, *ln2_mean, *ln2_rstd, *fch, *fch_gelu;
    float *lnf, *lnf_mean, *lnf_rstd, *lnf_rows, *logits;
    float *branch;                  /* [T, C]: the attention / mlp branch output */
} neox_acts;

/* On m's device, sized for one sequence of max_T tokens; the forward grows
 * the arrays as a pack needs (a zeroed neox_acts is an empty one too). */
void acts_alloc(neox_acts *a, const neox_model *m, int max_T);
void acts_free(neox_acts *a);

/* Where layer_forward reads and writes, for R rows ([R, C] unless said). */
typedef struct layer_bufs {
    const float *in;        /* the layer's input */
    float *out;             /* its output; may be in */
    float *ln1, *ln1_mean, *ln1_rstd;   /* mean, rstd [R]; may be NULL */
    float *qkv, *atty;      /* [R, 3C], [R, C] */
    float *resid_mid;       /* !use_parallel_residual: in + attn; NULL: out holds it */
    float *ln2, *ln2_mean, *ln2_rstd;   /* ln2 apart from ln1 */
    float *fch, *fch_gelu;  /* [R, I]; may be the same (GELU in place) */
    float *branch, *branch2; /* scratch; branch2 for the fused decoding step */
} layer_bufs;

/* The attention of a layer: fn(ctx, l, qkv, atty, here) rotates qkv's q
 * and k in place and writes atty. one_row_each: the rows are one new
 * token of each sequence (a decoding step), and fn can then run with
 * here set: on the calling thread alone, inside a job of the pool. */
typedef struct layer_attention {
    void (*fn)(void *ctx, int l, float *qkv, float *atty, int here);
    void *ctx;
    int one_row_each;
} layer_attention;

/* Layer l over R rows, its products in m's dtype, on the worker threads.
 * A decoding step in bf16 with a parallel residual, whose products all
 * stream the weights (LINEAR_GEMV_BF16, linear.h), takes them two at a
 * time in one pass of the pool each (qkv with the MLP's first, then the
 * two output products while the caller computes the attention): the same
 * arithmetic, two wake-ups and waits of the pool instead of four; fch is
 * then not written, only fch_gelu. */
void layer_forward(const neox_model *m, int l, const layer_bufs *b, int R, const layer_attention *att);

/* A pack's device copies (device.h's device_pack), grown on demand. */
typedef struct {
    device_pack p;
    const device_ops *dev;
    size_t cap_T, cap_rows;
    uint32_t *ids, *row_target;
    int *row_pos;
} device_pack_buf;
/* Uploads what the device ops read of pack (which must outlive the use of
 * the result); row_target only when the pack has them. */
const device_pack *device_pack_upload(device_pack_buf *b, const device_ops *dev, const neox_pack *pack);
void device_pack_free(device_pack_buf *b);

/* The forward over a pack (each sequence at most max_positions tokens,
 * ids < vocab_size, checked by the caller), in m's dtype, on m's device.
 * Fills every activation listed above. */
void model_forward_pack(const neox_model *m, neox_acts *a, const device_pack *pack);
/* The same but the logits: up to lnf_rows (for backward.h's
 * model_loss_backward, which projects them a chunk at a time). */
void model_forward_trunk(const neox_model *m, neox_acts *a, const device_pack *pack);
/* The forward of one sequence of T tokens, logits at every position:
 * a->logits [T, V]. */
void model_forward(const neox_model *m, neox_acts *a, const uint32_t *ids, int T);

#endif

/* model.h — the GPT-NeoX (Pythia) model: parameters, activations, forward.
 *
 * Parameters live in ONE contiguous fp32 block (model.params, num_params
 * floats) described by a table of tensors in Hugging Face's state_dict
 * order and names (gpt_neox.embed_in.weight, gpt_neox.layers.N.…,
 * gpt_neox.final_layer_norm.*, embed_out.weight). Linear weights keep
 * PyTorch's [out, in] layout. neox_params gives pointer views into any
 * block laid out like params (gradients, AdamW moments: model_param_views).
 * With tie_word_embeddings there is no embed_out tensor; lm_head == wte.
 *
 * Activations of the forward (model_forward_pack), everything a backward
 * pass needs, for a PACK: several sequences laid end to end (T tokens in
 * all). The per-token ops (layer norms, linear layers, GELU) run over all
 * T tokens at once, so the products are large; rotary positions and causal
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
#ifndef TUNEPIPE_MODEL_H
#define TUNEPIPE_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "kernels/gemm.h"

#define MODEL_MAX_TENSOR_NAME 80

typedef struct {
    char name[MODEL_MAX_TENSOR_NAME]; /* HF state_dict name */
    int ndim;                         /* 1 or 2 */
    int shape[2];                     /* [out, in] for linear weights */
    size_t offset;                    /* in floats, from the block start */
    size_t numel;
} neox_tensor;

typedef struct {
    float *ln1_w, *ln1_b;           /* [C]     input_layernorm */
    float *qkv_w;                   /* [3C, C] attention.query_key_value */
    float *qkv_b;                   /* [3C] */
    float *attn_proj_w;             /* [C, C]  attention.dense */
    float *attn_proj_b;             /* [C] */
    float *ln2_w, *ln2_b;           /* [C]     post_attention_layernorm */
    float *fc_w;                    /* [I, C]  mlp.dense_h_to_4h */
    float *fc_b;                    /* [I] */
    float *fc_proj_w;               /* [C, I]  mlp.dense_4h_to_h */
    float *fc_proj_b;               /* [C] */
} neox_layer_params;

typedef struct {
    float *wte;                     /* [V, C] gpt_neox.embed_in */
    neox_layer_params *layers;      /* [L] */
    float *lnf_w, *lnf_b;           /* [C]    gpt_neox.final_layer_norm */
    float *lm_head;                 /* [V, C] embed_out (wte when tied) */
} neox_params;

typedef struct {
    neox_config cfg;
    float *params;                  /* the one block, num_params floats */
    size_t num_params;
    neox_tensor *tensors;           /* num_tensors entries, HF order */
    int num_tensors;
    neox_params p;                  /* views into params */
    float *rope_cos, *rope_sin;     /* [max_positions, rotary_ndims/2] */
} neox_model;

/* A pack of sequences and the rows whose logits are wanted (the loss rows). */
typedef struct {
    int T;                 /* tokens, all sequences */
    int nseq;
    const int *seq_start;  /* [nseq + 1]: sequence s is tokens seq_start[s] .. seq_start[s+1]-1 */
    const uint32_t *ids;   /* [T] */
    int nrows;             /* logit rows */
    const int *row_pos;    /* [nrows] the pack position whose logits predict ... */
    const uint32_t *row_target; /* [nrows] ... this token (for the loss; may be NULL) */
} neox_pack;

typedef struct {
    size_t cap_T, cap_att, cap_rows;
    int T, A, R;                    /* of the last forward */
    float *resid, *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *atty, *resid_mid;
    float *ln2, *ln2_mean, *ln2_rstd, *fch, *fch_gelu;
    float *lnf, *lnf_mean, *lnf_rstd, *lnf_rows, *logits;
    float *branch;                  /* [T, C]: the attention / mlp branch output */
} neox_acts;

/* The bf16 copies of the linear layers' weights, for the products of
 * gemm.h (bf16 inputs, fp32 accumulation; fp32 master weights). Functions
 * that take a const model_gemm *g compute in fp32 when it is NULL. */
typedef struct {
    gemm_weight *qkv, *attn_proj, *fc, *fc_proj; /* [L] */
    gemm_weight lm_head;
} model_gemm;

/* Sizes the tensor table and the parameter block for cfg (uninitialized
 * parameters) and fills the views and the rotary tables. */
void model_build(neox_model *m, const neox_config *cfg);
/* HF's init: linear and embedding weights normal(0, initializer_range),
 * biases 0, LayerNorm weight 1 and bias 0. Deterministic for a seed. */
void model_init_random(neox_model *m, uint64_t seed);
/* Loads DIR/config.json and DIR/model.safetensors (or the shards named by
 * DIR/model.safetensors.index.json); F32, F16 and BF16 tensors are
 * converted to fp32. Every tensor's name, dtype and shape is checked
 * against config.json before the parameters are allocated, so a config
 * that does not fit the checkpoint is a mismatch, not "out of memory".
 * Returns 0 with a one-line reason in err on failure (the model is then
 * freed). */
int model_load(neox_model *m, const char *dir, char *err, int errlen);
/* model_load for inference with bf16 products (on a bf16 gemm path, gemm.h):
 * the linear layers' weights go from the checkpoint straight into g's
 * forward copies (model_gemm below), a slice at a time, and are never held
 * in fp32: their views in m->p (lm_head unless tied) are NULL and
 * m->params holds the other tensors only (num_params of them). Free g
 * with model_gemm_free, then m. */
int model_load_bf16(neox_model *m, model_gemm *g, const char *dir, char *err, int errlen);
void model_free(neox_model *m);

/* Views of a block of num_params floats laid out like m->params; out->layers
 * is malloc'd (free it with model_free_views). */
void model_param_views(const neox_model *m, float *block, neox_params *out);
void model_free_views(neox_params *views);
/* 1 for a linear layer's weight: every 2-D tensor but embed_in (embed_out
 * included; with tie_word_embeddings there is none). */
int model_is_linear_weight(const neox_tensor *t);
/* The tensor called name, or NULL. */
const neox_tensor *model_find_tensor(const neox_model *m, const char *name);

void model_gemm_init(model_gemm *g, const neox_model *m);
/* The same for some uses only (GEMM_FOR_* bits; model_gemm_init: both). */
void model_gemm_init_for(model_gemm *g, const neox_model *m, int uses);
/* Converts the current fp32 weights: after every change to them. */
void model_gemm_pack(model_gemm *g, const neox_model *m);
void model_gemm_free(model_gemm *g, const neox_model *m);

/* Sized for one sequence of max_T tokens; the forward grows the arrays as
 * a pack needs (a zeroed neox_acts is an empty one too). */
void acts_alloc(neox_acts *a, const neox_config *cfg, int max_T);
void acts_free(neox_acts *a);

/* The forward over a pack (each sequence at most max_positions tokens,
 * ids < vocab_size, checked by the caller), on the worker threads. Fills
 * every activation listed above. g: NULL for fp32 products, else its
 * bf16 weights. */
void model_forward_pack(const neox_model *m, const model_gemm *g, neox_acts *a, const neox_pack *pack);
/* The fp32 forward of one sequence of T tokens, logits at every position:
 * a->logits [T, V]. */
void model_forward(const neox_model *m, neox_acts *a, const uint32_t *ids, int T);

#endif

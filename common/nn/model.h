/* model.h — the GPT-NeoX (Pythia) model: its parameters, its linear
 * layers and the dtype of their products.
 *
 * Parameters live in ONE contiguous fp32 block (model.params, num_params
 * floats) described by a table of tensors in Hugging Face's state_dict
 * order and names (gpt_neox.embed_in.weight, gpt_neox.layers.N.…,
 * gpt_neox.final_layer_norm.*, embed_out.weight). Linear weights keep
 * PyTorch's [out, in] layout. neox_params gives pointer views into any
 * block laid out like params (gradients, AdamW moments: model_param_views).
 * With tie_word_embeddings there is no embed_out tensor; lm_head == wte.
 *
 * The linear layers (linear.h) are views of their weights and biases in
 * the block plus the bf16 copies their dtype needs; the model's dtype is
 * set once (model_set_dtype, or model_load_bf16 in model_io.h) and every
 * product follows it. The forward and its activations are in forward.h,
 * loading in model_io.h. */
#ifndef TUNEPIPE_MODEL_H
#define TUNEPIPE_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "device.h"
#include "linear.h"

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

/* A layer's linear layers. */
typedef struct {
    linear qkv, attn_proj, fc, fc_proj;
} neox_layer_linear;

typedef struct neox_model {
    neox_config cfg;
    const device_ops *dev;          /* where params, p, lin and the rotary tables live */
    float *params;                  /* the one block, num_params floats, on dev */
    float *host_params;             /* off the CPU: the block's host copy (model_host_params) */
    size_t num_params;
    neox_tensor *tensors;           /* num_tensors entries, HF order */
    int num_tensors;
    neox_params p;                  /* views into params */
    float *rope_cos, *rope_sin;     /* [max_positions, rotary_ndims/2] */
    float *host_rope_cos, *host_rope_sin; /* off the CPU: the tables' host copies */
    compute_dtype dtype;            /* of the linear layers' products */
    int dtype_uses;                 /* the GEMM_FOR_* copies it keeps in bf16 */
    neox_layer_linear *lin;         /* [L] on p's weights and biases */
    linear lm_head;                 /* on p.lm_head, no bias */
    linear **tensor_linear;         /* [num_tensors]: the layer whose weight tensor i is, or
                                     * NULL (embed_in is lm_head's when tied) */
} neox_model;

/* Sizes the tensor table and the parameter block for cfg (uninitialized
 * parameters) and fills the views, the linear layers (fp32) and the
 * rotary tables. */
void model_build(neox_model *m, const neox_config *cfg);
/* model_build in two steps, for a loader: the table alone (nothing
 * allocated; model_free frees it), then the block, its views, the linear
 * layers and the rotary tables; without_linear: the block without the
 * linear layers' weights, whose views and w become NULL. */
void model_build_table(neox_model *m, const neox_config *cfg);
void model_allocate(neox_model *m, int without_linear);
/* HF's init: linear and embedding weights normal(0, initializer_range),
 * biases 0, LayerNorm weight 1 and bias 0. Deterministic for a seed. */
void model_init_random(neox_model *m, uint64_t seed);
void model_free(neox_model *m);

/* Moves the model to dev (from the CPU, where it is built and loaded):
 * the block, its views, the linear layers (in their dtype) and the rotary
 * tables. Returns 0, or -1 when dev's memory is short. */
int model_to_device(neox_model *m, const device_ops *dev);
/* The parameters in host memory, brought up to date from the device (the
 * block itself on the CPU): what saving reads. */
const float *model_host_params(const neox_model *m);

/* Views of a block of num_params floats laid out like m->params; out->layers
 * is malloc'd (free it with model_free_views). */
void model_param_views(const neox_model *m, float *block, neox_params *out);
void model_free_views(neox_params *views);
/* 1 for a linear layer's weight: every 2-D tensor but embed_in (embed_out
 * included; with tie_word_embeddings there is none). */
int model_is_linear_weight(const neox_tensor *t);
/* The tensor called name, or NULL. */
const neox_tensor *model_find_tensor(const neox_model *m, const char *name);

/* The dtype of the linear layers' products, from now on: in bf16 their
 * copies for uses (GEMM_FOR_* bits: forward for inference, both for
 * training), made from the current weights; in fp32 the copies are freed.
 * Call it again after changing the weights other than by trainer_step
 * (which re-packs what it updates). The tools decide the dtype with
 * gemm_bf16_available (gemm.h). */
void model_set_dtype(neox_model *m, compute_dtype dtype, int uses);

#endif

/* model_io.h — loading a model from a Hugging Face checkpoint directory,
 * and saving what from_pretrained loads: model.safetensors, config.json. */
#ifndef TUNEPIPE_MODEL_IO_H
#define TUNEPIPE_MODEL_IO_H

#include "model.h"
#include "safetensors.h"

/* Loads DIR/config.json and DIR/model.safetensors (or the shards named by
 * DIR/model.safetensors.index.json); F32, F16 and BF16 tensors are
 * converted to fp32. Every tensor's name, dtype and shape is checked
 * against config.json before the parameters are allocated, so a config
 * that does not fit the checkpoint is a mismatch, not "out of memory".
 * Returns 0 with a one-line reason in err on failure (the model is then
 * freed). The model computes in fp32 (model_set_dtype). */
int model_load(neox_model *m, const char *dir, char *err, int errlen);
/* model_load for inference with bf16 products (on a bf16 gemm path,
 * gemm.h), m->dtype DTYPE_BF16: the linear layers' weights go from the
 * checkpoint straight into their forward copies, a slice at a time, and
 * are never held in fp32: their views in m->p (lm_head unless tied) and
 * the linear layers' w are NULL, m->params holds the other tensors only
 * (num_params of them), and the dtype cannot change (model_set_dtype). */
int model_load_bf16(neox_model *m, const char *dir, char *err, int errlen);

/* model.safetensors for from_pretrained: every tensor of m under its
 * Hugging Face name, stored as dtype; 0 with the reason in err on failure
 * (checkpoint.h: the previous file stays). */
int model_save(const char *path, const neox_model *m, st_dtype dtype, char *err, int errlen);

/* "f32", "f16", "bf16" -> dtype; returns 0 for anything else. */
int save_dtype_parse(const char *name, st_dtype *out);
/* The torch_dtype (or dtype) a config.json names, as ST_F32/F16/BF16;
 * ST_F32 when it names none or another. */
st_dtype config_torch_dtype(const char *config_json);
/* config_json with torch_dtype (and dtype, when present) set to dtype's
 * torch name; the result is malloc'd. NULL with the reason in err when
 * config_json is not a JSON object. */
char *config_with_dtype(const char *config_json, st_dtype dtype, char *err, int errlen);

#endif

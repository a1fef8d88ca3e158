/* model_io.h — loading a model from a Hugging Face checkpoint directory.
 * Saving one (model_save) is in checkpoint.h, with the trainer's state. */
#ifndef TUNEPIPE_MODEL_IO_H
#define TUNEPIPE_MODEL_IO_H

#include "model.h"

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

#endif

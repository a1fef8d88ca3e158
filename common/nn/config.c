/* config.c — see config.h. */
#include "config.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "base/io.h"


/* An integer key in [min, max]; def when absent (def < min: required). */
static int get_int(const cJSON *root, const char *key, long def, long min, long max, int *out,
                   char *err, int errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        if (def < min) return fail_message(err, errlen, "config has no %s", key);
        *out = (int)def;
        return 1;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)min ||
        v->valuedouble > (double)max)
        return fail_message(err, errlen, "config: %s must be an integer in [%ld, %ld]", key, min, max);
    *out = (int)v->valuedouble;
    return 1;
}

static int get_double(const cJSON *obj, const char *key, double def, double min, double max,
                      double *out, char *err, int errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 1;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= min && v->valuedouble <= max))
        return fail_message(err, errlen, "config: %s must be a number in [%g, %g]", key, min, max);
    *out = v->valuedouble;
    return 1;
}

static int get_bool(const cJSON *root, const char *key, int def, int *out, char *err, int errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 1;
    }
    if (!cJSON_IsBool(v)) return fail_message(err, errlen, "config: %s must be true or false", key);
    *out = cJSON_IsTrue(v);
    return 1;
}

/* A token id, or the first of a list of them; -1 when absent. */
static int get_token_id(const cJSON *root, const char *key, int vocab, int *out, char *err, int errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (cJSON_IsArray(v)) v = v->child;
    if (!v || cJSON_IsNull(v)) {
        *out = -1;
        return 1;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble >= vocab)
        return fail_message(err, errlen, "config: %s must be a token id below vocab_size", key);
    *out = (int)v->valuedouble;
    return 1;
}

static int parse_rope(const cJSON *root, neox_config *c, char *err, int errlen) {
    /* transformers 5.x: rope_parameters {rope_type, rope_theta,
     * partial_rotary_factor}; 4.x: rotary_pct, rotary_emb_base (some 4.4x
     * versions wrote rope_theta / partial_rotary_factor at the top level). */
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    const cJSON *scaling = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (scaling && !cJSON_IsNull(scaling)) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(scaling, "rope_type");
        if (!type) type = cJSON_GetObjectItemCaseSensitive(scaling, "type");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "default") != 0)
            return fail_message(err, errlen, "config: rope_scaling is not supported");
    }
    double pct = 0.25, base = 10000;
    if (!get_double(root, "rotary_pct", pct, 0, 1, &pct, err, errlen) ||
        !get_double(root, "partial_rotary_factor", pct, 0, 1, &pct, err, errlen) ||
        !get_double(root, "rotary_emb_base", base, 1, 1e12, &base, err, errlen) ||
        !get_double(root, "rope_theta", base, 1, 1e12, &base, err, errlen))
        return 0;
    if (rp && !cJSON_IsNull(rp)) {
        if (!cJSON_IsObject(rp)) return fail_message(err, errlen, "config: rope_parameters must be an object");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(rp, "rope_type");
        if (type && (!cJSON_IsString(type) || strcmp(type->valuestring, "default") != 0))
            return fail_message(err, errlen, "config: rope_type %s is not supported",
                        cJSON_IsString(type) ? type->valuestring : "(not a string)");
        if (!get_double(rp, "partial_rotary_factor", pct, 0, 1, &pct, err, errlen) ||
            !get_double(rp, "rope_theta", base, 1, 1e12, &base, err, errlen))
            return 0;
    }
    c->rotary_pct = pct;
    c->rotary_base = base;
    /* HF: rotary_ndims = int(head_size * rotary_pct), truncating. */
    c->rotary_ndims = (int)(c->head_dim * pct);
    if (c->rotary_ndims % 2)
        return fail_message(err, errlen, "config: rotary dims %d (head_dim x rotary_pct) must be even",
                    c->rotary_ndims);
    return 1;
}

int config_parse(const char *json, neox_config *c, char *err, int errlen) {
    memset(c, 0, sizeof *c);
    cJSON *root = cJSON_Parse(json);
    if (!root) return fail_message(err, errlen, "config is not valid JSON");
    int ok = cJSON_IsObject(root) || fail_message(err, errlen, "config is not a JSON object");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (ok && mt && (!cJSON_IsString(mt) || strcmp(mt->valuestring, "gpt_neox") != 0))
        ok = fail_message(err, errlen, "config: model_type is %s, not gpt_neox",
                  cJSON_IsString(mt) ? mt->valuestring : "not a string");
    ok = ok && get_int(root, "vocab_size", -1, 1, 1 << 24, &c->vocab_size, err, errlen) &&
         get_int(root, "hidden_size", -1, 1, 1 << 16, &c->hidden_size, err, errlen) &&
         get_int(root, "num_hidden_layers", -1, 1, 1024, &c->num_layers, err, errlen) &&
         get_int(root, "num_attention_heads", -1, 1, 1024, &c->num_heads, err, errlen) &&
         get_int(root, "intermediate_size", -1, 1, 1 << 20, &c->intermediate_size, err, errlen) &&
         get_int(root, "max_position_embeddings", 2048, 1, 1 << 20, &c->max_positions, err, errlen) &&
         get_double(root, "layer_norm_eps", 1e-5, 0, 1, &c->layer_norm_eps, err, errlen) &&
         get_double(root, "initializer_range", 0.02, 0, 10, &c->initializer_range, err, errlen) &&
         get_bool(root, "use_parallel_residual", 1, &c->use_parallel_residual, err, errlen) &&
         get_bool(root, "tie_word_embeddings", 0, &c->tie_word_embeddings, err, errlen) &&
         get_token_id(root, "eos_token_id", c->vocab_size, &c->eos_token_id, err, errlen) &&
         get_token_id(root, "bos_token_id", c->vocab_size, &c->bos_token_id, err, errlen);
    if (ok && c->hidden_size % c->num_heads != 0)
        ok = fail_message(err, errlen, "config: hidden_size %d is not a multiple of num_attention_heads %d",
                  c->hidden_size, c->num_heads);
    if (ok) c->head_dim = c->hidden_size / c->num_heads;
    if (ok) {
        const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
        if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "gelu") != 0))
            ok = fail_message(err, errlen, "config: hidden_act %s is not supported (only \"gelu\")",
                      cJSON_IsString(act) ? act->valuestring : "(not a string)");
    }
    int bias = 1;
    ok = ok && get_bool(root, "attention_bias", 1, &bias, err, errlen);
    if (ok && !bias)
        ok = fail_message(err, errlen, "config: attention_bias false is not supported");
    ok = ok && parse_rope(root, c, err, errlen);
    cJSON_Delete(root);
    return ok;
}

int config_load(const char *path, neox_config *cfg, char *err, int errlen) {
    char why[256];
    char *text = read_file(path, NULL);
    int ok = config_parse(text, cfg, why, sizeof why);
    free(text);
    return ok || fail_message(err, errlen, "%s: %s", path, why);
}

/* model.c — the GPT-NeoX forward against the tiny-neox reference (Hugging
 * Face float64 logits), dtype conversion, sharded and damaged checkpoints,
 * config variants, random init. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cli.h"
#include "nn/config.h"
#include "nn/model.h"
#include "nn/model_io.h"
#include "nn/forward.h"
#include "nn/safetensors.h"
#include "tap.h"

#define DATA "tests/data/tiny-neox"

static st_file ref;

static int64_t *ref_ids(const char *name, int *n) {
    const st_tensor *t = st_find(&ref, name);
    if (!t) { printf("Bail out! reference has no %s\n", name); exit(1); }
    int64_t *ids = xmalloc(t->numel * sizeof *ids);
    st_read_i64(&ref, t, ids);
    *n = (int)t->numel;
    return ids;
}

static float *ref_f32(const char *name, size_t *n) {
    const st_tensor *t = st_find(&ref, name);
    if (!t) { printf("Bail out! reference has no %s\n", name); exit(1); }
    float *x = xmalloc(t->numel * sizeof *x);
    char why[ERR_MAX];
    if (st_read_f32(&ref, t, x, why, sizeof why) != 1) { printf("Bail out! %s: %s\n", name, why); exit(1); }
    *n = t->numel;
    return x;
}

/* Max |model logits - reference| over sequence ids.<s>. */
static double logits_error(const neox_model *m, const char *s) {
    char name[32];
    int T;
    snprintf(name, sizeof name, "ids.%s", s);
    int64_t *ids64 = ref_ids(name, &T);
    snprintf(name, sizeof name, "logits.%s", s);
    size_t n;
    float *want = ref_f32(name, &n);
    uint32_t *ids = xmalloc((size_t)T * sizeof *ids);
    for (int t = 0; t < T; t++) ids[t] = (uint32_t)ids64[t];
    neox_acts a;
    acts_alloc(&a, m, T);
    model_forward(m, &a, ids, T);
    double err = 0;
    for (size_t i = 0; i < n; i++) err = fmax(err, fabs((double)a.logits[i] - want[i]));
    acts_free(&a);
    free(ids);
    free(ids64);
    free(want);
    return err;
}

static float round_bf16(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    b = (b + 0x7fff + ((b >> 16) & 1)) & 0xffff0000u;
    memcpy(&x, &b, 4);
    return x;
}

static float round_f16(float x) { return (float)(_Float16)x; }

/* ---- writing checkpoints for the damaged-file cases ---------------------- */

/* Writes m's tensors as F32 safetensors to path, leaving out `skip` and
 * giving `reshape` a wrong first dimension. The header gets `header_extra`
 * spliced in before its closing brace. */
static void write_safetensors(const neox_model *m, const char *path, const char *skip,
                              const char *reshape, int first, int last) {
    size_t hcap = 1 << 16, hl = 0, off = 0;
    char *h = xmalloc(hcap);
    hl += (size_t)snprintf(h + hl, hcap - hl, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = first; i < last; i++) {
        const neox_tensor *t = &m->tensors[i];
        if (skip && strcmp(t->name, skip) == 0) continue;
        int r0 = t->shape[0] + (reshape && strcmp(t->name, reshape) == 0);
        size_t bytes = (size_t)r0 * (t->ndim == 2 ? (size_t)t->shape[1] : 1) * 4;
        if (t->ndim == 2)
            hl += (size_t)snprintf(h + hl, hcap - hl, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}",
                                   t->name, r0, t->shape[1], off, off + bytes);
        else
            hl += (size_t)snprintf(h + hl, hcap - hl, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}",
                                   t->name, r0, off, off + bytes);
        off += bytes;
    }
    hl += (size_t)snprintf(h + hl, hcap - hl, "}");
    FILE *f = fopen(path, "wb");
    uint64_t len = hl;
    fwrite(&len, 8, 1, f);
    fwrite(h, 1, hl, f);
    for (int i = first; i < last; i++) {
        const neox_tensor *t = &m->tensors[i];
        if (skip && strcmp(t->name, skip) == 0) continue;
        fwrite(m->params + t->offset, 4, t->numel, f);
        if (reshape && strcmp(t->name, reshape) == 0)
            for (int k = 0; k < (t->ndim == 2 ? t->shape[1] : 1); k++) fwrite(m->params, 4, 1, f);
    }
    fclose(f);
    free(h);
}

static char tmpdir[256];

static void make_dir(const char *name, const neox_model *m, const char *skip, const char *reshape) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    mkdir(path, 0755);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp %s/tiny-f32/config.json %s/", DATA, path);
    if (system(cmd) != 0) printf("Bail out! cannot copy config.json\n");
    if (m) {
        snprintf(path, sizeof path, "%s/%s/model.safetensors", tmpdir, name);
        write_safetensors(m, path, skip, reshape, 0, m->num_tensors);
    }
}

static int load_fails_with(const char *name, const char *what) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    neox_model m;
    if (model_load(&m, path, err, sizeof err)) {
        model_free(&m);
        note("%s loaded", name);
        return 0;
    }
    if (!strstr(err, what)) diag("%s: %s", name, err);
    return strstr(err, what) != NULL;
}

/* Rewrites bytes [at, at+n) of DIR/model.safetensors. */
static void patch_file(const char *name, long at, const void *bytes, size_t n, long truncate_to) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/model.safetensors", tmpdir, name);
    FILE *f = fopen(path, "r+b");
    if (bytes) {
        fseek(f, at, SEEK_SET);
        fwrite(bytes, 1, n, f);
    }
    fclose(f);
    if (truncate_to >= 0 && truncate(path, truncate_to) != 0) printf("Bail out! truncate\n");
}

static void damaged_checkpoints(const neox_model *m) {
    snprintf(tmpdir, sizeof tmpdir, "%s/tunepipe-model.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) { printf("Bail out! mkdtemp\n"); exit(1); }

    make_dir("missing", m, "gpt_neox.layers.1.mlp.dense_h_to_4h.bias", NULL);
    ok(load_fails_with("missing", "no tensor gpt_neox.layers.1.mlp.dense_h_to_4h.bias"), "a missing tensor is named");
    make_dir("shape", m, NULL, "gpt_neox.layers.0.attention.dense.weight");
    ok(load_fails_with("shape", "has shape [65, 64], config.json implies [64, 64]"), "a wrong shape is named");
    make_dir("trunc", m, NULL, NULL);
    patch_file("trunc", 0, NULL, 0, 100000);
    ok(load_fails_with("trunc", "truncated"), "a truncated file is refused");
    make_dir("tiny", m, NULL, NULL);
    patch_file("tiny", 0, NULL, 0, 5);
    ok(load_fails_with("tiny", "too short"), "a 5-byte file is refused");
    make_dir("huge", m, NULL, NULL);
    uint64_t huge = 1ull << 40;
    patch_file("huge", 0, &huge, 8, -1);
    ok(load_fails_with("huge", "exceeds"), "an oversized header length is refused before allocating");
    make_dir("past", m, NULL, NULL);
    uint64_t past = 50u << 20;
    patch_file("past", 0, &past, 8, -1);
    ok(load_fails_with("past", "past the end"), "a header length past the end of the file is refused");
    make_dir("json", m, NULL, NULL);
    patch_file("json", 12, "\"\"\"", 3, -1);
    ok(load_fails_with("json", "not valid JSON"), "a malformed header is refused");
    make_dir("dtype", m, NULL, NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/dtype/model.safetensors", tmpdir);
    {   /* same length, F32 -> I32 for the first tensor listed */
        size_t len;
        FILE *f = fopen(path, "r+b");
        char head[4096];
        len = fread(head, 1, sizeof head, f);
        char *p = memmem(head, len, "\"F32\"", 5);
        fseek(f, p - head + 1, SEEK_SET);
        fwrite("I32", 1, 3, f);
        fclose(f);
    }
    ok(load_fails_with("dtype", "dtype I32"), "a tensor of an integer dtype is refused");
    make_dir("bin", NULL, NULL, NULL);
    snprintf(path, sizeof path, "%s/bin/pytorch_model.bin", tmpdir);
    fclose(fopen(path, "wb"));
    ok(load_fails_with("bin", "convert them to safetensors"),
       "a pytorch_model.bin-only directory is refused with advice");
    make_dir("empty", NULL, NULL, NULL);
    ok(load_fails_with("empty", "no model.safetensors"), "a directory without weights is refused");
    ok(load_fails_with("nonexistent", "no config.json"), "a missing directory is refused");

    /* Sharded: the first half of the tensors in one file, the rest in another. */
    make_dir("sharded", NULL, NULL, NULL);
    int half = m->num_tensors / 2;
    snprintf(path, sizeof path, "%s/sharded/model-00001-of-00002.safetensors", tmpdir);
    write_safetensors(m, path, NULL, NULL, 0, half);
    snprintf(path, sizeof path, "%s/sharded/model-00002-of-00002.safetensors", tmpdir);
    write_safetensors(m, path, NULL, NULL, half, m->num_tensors);
    snprintf(path, sizeof path, "%s/sharded/model.safetensors.index.json", tmpdir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"metadata\":{\"total_size\":%zu},\"weight_map\":{", m->num_params * 4);
    for (int i = 0; i < m->num_tensors; i++)
        fprintf(f, "%s\"%s\":\"model-0000%d-of-00002.safetensors\"", i ? "," : "", m->tensors[i].name,
                i < half ? 1 : 2);
    fprintf(f, "}}\n");
    fclose(f);
    neox_model s;
    char err[512];
    snprintf(path, sizeof path, "%s/sharded", tmpdir);
    int loaded = model_load(&s, path, err, sizeof err);
    ok(loaded && s.num_params == m->num_params &&
       memcmp(s.params, m->params, m->num_params * sizeof(float)) == 0,
       "a sharded checkpoint loads the same parameters%s%s", loaded ? "" : ": ", loaded ? "" : err);
    if (loaded) model_free(&s);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) diag("cannot remove %s", tmpdir);
}

/* ---- configs --------------------------------------------------------------- */

static void configs(void) {
    const char *v4 = "{\"vocab_size\":512,\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
                     "\"intermediate_size\":256,\"rotary_pct\":0.5,\"rotary_emb_base\":500,\"eos_token_id\":3}";
    const char *v5 = "{\"vocab_size\":512,\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
                     "\"intermediate_size\":256,\"rope_parameters\":{\"rope_type\":\"default\","
                     "\"partial_rotary_factor\":0.5,\"rope_theta\":500.0},\"eos_token_id\":3}";
    neox_config a, b;
    char err[256];
    ok(config_parse(v4, &a, err, sizeof err) && a.rotary_ndims == 8 && a.rotary_base == 500 &&
       a.eos_token_id == 3 && a.use_parallel_residual == 1 && a.tie_word_embeddings == 0 &&
       a.layer_norm_eps == 1e-5 && a.max_positions == 2048,
       "transformers 4.x config keys and defaults");
    ok(config_parse(v5, &b, err, sizeof err) && memcmp(&a, &b, sizeof a) == 0,
       "transformers 5.x rope_parameters give the same config");
    ok(!config_parse("{\"vocab_size\":512,\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
                     "\"intermediate_size\":256,\"hidden_act\":\"gelu_new\"}", &a, err, sizeof err) &&
       strstr(err, "gelu_new"), "hidden_act gelu_new is refused: %s", err);
    ok(!config_parse("{\"vocab_size\":512,\"hidden_size\":60,\"num_hidden_layers\":2,\"num_attention_heads\":8,"
                     "\"intermediate_size\":256}", &a, err, sizeof err) && strstr(err, "multiple"),
       "hidden_size not divisible by the heads is refused: %s", err);
    ok(!config_parse("{\"vocab_size\":512,\"num_hidden_layers\":2}", &a, err, sizeof err) &&
       strstr(err, "hidden_size"), "a missing key is named: %s", err);
    ok(!config_parse("[1,2", &a, err, sizeof err), "broken JSON is refused: %s", err);
}

/* tie_word_embeddings: no embed_out tensor, the logits use embed_in; a
 * checkpoint that still stores embed_out loads (HF ignores it too). */
static void tied_embeddings(const neox_model *m) {
    neox_config cfg = m->cfg;
    cfg.tie_word_embeddings = 1;
    neox_model t;
    model_build(&t, &cfg);
    ok(!model_find_tensor(&t, "embed_out.weight") && t.p.lm_head == t.p.wte &&
       t.num_params == m->num_params - (size_t)cfg.vocab_size * cfg.hidden_size,
       "tied: no embed_out tensor, lm_head is embed_in");
    memcpy(t.params, m->params, t.num_params * sizeof(float)); /* same layout up to embed_out */
    uint32_t ids[3] = {7, 300, 12};
    neox_acts a;
    acts_alloc(&a, &t, 3);
    model_forward(&t, &a, ids, 3);
    double want = 0; /* logit of token 5 at position 2 = lnf · embed_in row 5 */
    for (int i = 0; i < cfg.hidden_size; i++) want += (double)a.lnf[2 * cfg.hidden_size + i] * t.p.wte[5 * cfg.hidden_size + i];
    ok(fabs(a.logits[2 * cfg.vocab_size + 5] - want) < 1e-5, "tied: logits come from embed_in");
    acts_free(&a);
    tmpdir[0] = '\0';
    snprintf(tmpdir, sizeof tmpdir, "%s/tunepipe-tied.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir)) { printf("Bail out! mkdtemp\n"); exit(1); }
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/config.json", tmpdir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"vocab_size\":%d,\"hidden_size\":%d,\"num_hidden_layers\":%d,\"num_attention_heads\":%d,"
               "\"intermediate_size\":%d,\"rotary_pct\":0.25,\"tie_word_embeddings\":true}\n",
            cfg.vocab_size, cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size);
    fclose(f);
    snprintf(path, sizeof path, "%s/model.safetensors", tmpdir);
    write_safetensors(m, path, NULL, NULL, 0, m->num_tensors); /* with embed_out */
    neox_model l;
    int loaded = model_load(&l, tmpdir, err, sizeof err);
    ok(loaded && l.cfg.tie_word_embeddings && l.num_params == t.num_params &&
       memcmp(l.params, t.params, t.num_params * sizeof(float)) == 0,
       "tied: a checkpoint that also stores embed_out loads%s%s", loaded ? "" : ": ", loaded ? "" : err);
    if (loaded) model_free(&l);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) diag("cannot remove %s", tmpdir);
    model_free(&t);
}

int main(void) {
    char err[512];
    if (!st_open(&ref, DATA "/reference.safetensors", err, sizeof err)) {
        printf("Bail out! %s/reference.safetensors: %s\n", DATA, err);
        return 1;
    }
    neox_model m;
    if (!model_load(&m, DATA "/tiny-f32", err, sizeof err)) {
        printf("Bail out! tiny-f32: %s\n", err);
        return 1;
    }
    ok(m.num_params == 512 * 64 * 2 + 2 * (4 * 64 + 192 * 64 + 192 + 64 * 64 + 64 + 256 * 64 + 256 + 64 * 256 + 64) + 128,
       "tiny-f32 has %zu parameters", m.num_params);
    const char *seqs[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++) {
        double e = logits_error(&m, seqs[i]);
        ok(e <= 1e-4, "tiny-f32 logits.%s within 1e-4 (max abs error %.3g)", seqs[i], e);
    }

    const char *low[] = {"tiny-f16", "tiny-bf16"};
    for (int k = 0; k < 2; k++) {
        neox_model r;
        char dir[256];
        snprintf(dir, sizeof dir, DATA "/%s", low[k]);
        if (!model_load(&r, dir, err, sizeof err)) {
            ok(0, "%s loads: %s", low[k], err);
            continue;
        }
        size_t bad = 0;
        for (size_t i = 0; i < m.num_params; i++) {
            float want = k == 0 ? round_f16(m.params[i]) : round_bf16(m.params[i]);
            bad += r.params[i] != want;
        }
        ok(bad == 0, "%s loads as tiny-f32 rounded (%zu parameters differ)", low[k], bad);
        double e = logits_error(&r, "c");
        ok(e <= (k == 0 ? 5e-3 : 3e-2), "%s logits.c close to f32's (max abs error %.3g)", low[k], e);
        model_free(&r);
    }

    damaged_checkpoints(&m);
    configs();

    neox_model rnd;
    model_build(&rnd, &m.cfg);
    model_init_random(&rnd, 1234);
    const neox_tensor *w = model_find_tensor(&rnd, "gpt_neox.layers.0.mlp.dense_h_to_4h.weight");
    double s = 0, s2 = 0;
    for (size_t i = 0; i < w->numel; i++) {
        double x = rnd.params[w->offset + i];
        s += x;
        s2 += x * x;
    }
    double mean = s / w->numel, sd = sqrt(s2 / w->numel - mean * mean);
    ok(fabs(mean) < 1e-3 && fabs(sd - 0.02) < 1e-3, "random init: normal(0, 0.02) weights (mean %.2g sd %.4f)", mean, sd);
    ok(rnd.p.layers[1].ln2_w[5] == 1 && rnd.p.layers[1].ln2_b[5] == 0 && rnd.p.layers[0].qkv_b[7] == 0,
       "random init: LayerNorm 1 and 0, biases 0");
    neox_model rnd2;
    model_build(&rnd2, &m.cfg);
    model_init_random(&rnd2, 1234);
    ok(memcmp(rnd.params, rnd2.params, rnd.num_params * 4) == 0, "random init is deterministic for a seed");
    model_free(&rnd);
    model_free(&rnd2);

    tied_embeddings(&m);

    model_free(&m);
    st_close(&ref);
    return done_testing();
}

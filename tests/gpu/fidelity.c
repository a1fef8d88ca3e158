/* fidelity.t — the Hugging Face fidelity checks of model.t, train.t and
 * neox_gen.t on the GPU: tiny-neox in fp32 on the cuda device against
 * tests/data/tiny-neox/reference.safetensors (reference.json explains it).
 *   - the logits of every oracle sequence, by the packed forward and by
 *     the decoder in steps of 64 tokens: within 1e-4 (max abs) of HF's
 *     float64 forward;
 *   - per-example mean losses (--loss answer and all): within 1e-5 relative;
 *   - step-0 gradients, the 6-step AdamW trajectory (loss and pre-clip
 *     grad norm of each step) and the parameters after it: within 1e-4
 *     relative, per tensor for gradients and parameters, as train.t;
 *   - greedy, repetition-penalty 1.3, no-repeat-ngram 3 and EOS
 *     generations: HF's ids exactly, each alone and all in one batch.
 * TUNEPIPE_DEVICE=cpu runs the same checks on the CPU, which checks this
 * test where there is no GPU. Without a usable GPU it skips. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/tap.h"
#include "../unit/oracle.h"
#include "base/cli.h"
#include "nn/device.h"
#include "nn/forward.h"
#include "nn/generate.h"
#include "nn/kvcache.h"
#include "nn/model.h"
#include "nn/model_io.h"
#include "nn/optim.h"
#include "nn/trainer.h"

static void load_model(neox_model *m, const device_ops *dev) {
    char err[256];
    if (!model_load(m, DATA "/tiny-f32", err, sizeof err)) { printf("Bail out! tiny-f32: %s\n", err); exit(1); }
    if (model_to_device(m, dev)) { printf("Bail out! too little %s memory for tiny-f32\n", dev->name); exit(1); }
}

/* n floats of dev's memory, in a new host array. */
static float *to_host(const device_ops *dev, const float *x, size_t n) {
    float *h = xmalloc(n * sizeof *h);
    dev->download(h, x, n * sizeof *h);
    return h;
}

static double max_abs_diff(const float *got, const float *want, size_t n) {
    double e = 0;
    for (size_t i = 0; i < n; i++) e = worse(e, fabs((double)got[i] - want[i]));
    return e;
}

/* ---- logits ------------------------------------------------------------------ */

/* logits [T, V] of ids by the decoder, 64 tokens a step (several steps
 * for every sequence but a and b), every row. */
static float *decoder_logits(const neox_model *m, const uint32_t *ids, int T) {
    const int V = m->cfg.vocab_size;
    float *out = xmalloc((size_t)T * V * sizeof *out);
    neox_decoder d;
    decoder_init(&d, m, 1, 0, 64);
    int slot = 0;
    for (int done = 0; done < T;) {
        int n = T - done < 64 ? T - done : 64;
        decoder_step(&d, 1, &slot, &n, ids + done, out + (size_t)done * V, 1);
        done += n;
    }
    decoder_free(&d);
    return out;
}

static void test_logits(const neox_model *m) {
    const char *seqs[] = {"a", "b", "c", "d"};
    for (int k = 0; k < 4; k++) {
        char name[32];
        uint32_t T;
        size_t n;
        snprintf(name, sizeof name, "ids.%s", seqs[k]);
        uint32_t *ids = ref_ids(name, &T);
        snprintf(name, sizeof name, "logits.%s", seqs[k]);
        float *want = ref_tensor(name, &n, 0);
        if (n != (size_t)T * m->cfg.vocab_size) { printf("Bail out! %s has %zu elements\n", name, n); exit(1); }
        neox_acts a;
        acts_alloc(&a, m, (int)T);
        model_forward(m, &a, ids, (int)T);
        float *got = to_host(m->dev, a.logits, n);
        acts_free(&a);
        double e = max_abs_diff(got, want, n);
        ok(e <= 1e-4, "forward: logits.%s (%u tokens) max abs error %.3g (tolerance 1e-4)", seqs[k], T, e);
        free(got);
        got = decoder_logits(m, ids, (int)T);
        e = max_abs_diff(got, want, n);
        ok(e <= 1e-4, "decoder, 64 tokens a step: logits.%s max abs error %.3g (tolerance 1e-4)", seqs[k], e);
        free(got);
        free(want);
        free(ids);
    }
}

/* ---- losses and training ------------------------------------------------------- */

static void test_losses(neox_model *m) {
    for (int mode = 0; mode < 2; mode++) {
        dataset d;
        load_examples(&d, mode == 0 ? LOSS_ANSWER : LOSS_ALL);
        trainer t;
        trainer_init(&t, m, &ADAMW_DEFAULTS, 1.0);
        size_t order[NUM_EX], n;
        for (int i = 0; i < NUM_EX; i++) order[i] = (size_t)i;
        double got[NUM_EX];
        trainer_loss(&t, &d, order, NUM_EX, NULL, got);
        double *want = ref_tensor(mode == 0 ? "loss.answer_mean_per_example" : "loss.all_mean_per_example", &n, 1);
        double worst = 0;
        for (int i = 0; i < NUM_EX; i++) worst = worse(worst, fabs(got[i] - want[i]) / fabs(want[i]));
        ok(worst <= 1e-5, "--loss %s: per-example mean losses, worst relative error %.2e (tolerance 1e-5)",
           mode == 0 ? "answer" : "all", worst);
        free(want);
        trainer_free(&t);
        dataset_free(&d);
    }
}

/* reference.json's trajectory: 6 steps of 4 examples, AdamW lr 1e-3,
 * weight decay 0.1, clipping at 1. Changes m's weights. */
static void test_trajectory(neox_model *m) {
    adamw_hparams h = ADAMW_DEFAULTS;
    h.weight_decay = 0.1;
    dataset d;
    load_examples(&d, LOSS_ANSWER);
    trainer t;
    trainer_init(&t, m, &h, 1.0);
    size_t n, step0[4] = {0, 1, 2, 3};
    double *want_loss = ref_tensor("train.loss", &n, 1);
    step_result r = trainer_gradients(&t, &d, step0, 4);
    float *g = to_host(m->dev, t.grad, m->num_params);
    const char *worst = "";
    double e = worst_tensor_diff(m, g, "grad0", &worst, 0, NULL);
    ok(e <= 1e-4, "step-0 gradients: worst per-tensor relative error %.2e, %s (tolerance 1e-4)", e, worst);
    e = fabs(r.loss - want_loss[0]) / want_loss[0];
    ok(e <= 1e-5, "step-0 loss %.6f (HF %.6f): relative error %.2e (tolerance 1e-5)", r.loss, want_loss[0], e);
    free(g);
    free(want_loss);
    double worst_loss, worst_norm;
    run_trajectory(&t, &d, &worst_loss, &worst_norm);
    ok(worst_loss <= 1e-4, "6-step loss trajectory: worst relative error %.2e (tolerance 1e-4)", worst_loss);
    ok(worst_norm <= 1e-4, "6-step pre-clip grad-norm trajectory: worst relative error %.2e (tolerance 1e-4)",
       worst_norm);
    double drift = 0;
    e = worst_tensor_diff(m, model_host_params(m), "final", &worst, 1, &drift);
    ok(e <= 1e-4, "parameters after 6 steps: worst per-tensor relative error %.2e, %s (tolerance 1e-4)", e, worst);
    /* Noise-driven Adam moves them by about lr/100 a step, in either run (oracle.h). */
    ok(drift <= 6 * 1e-3 * 0.05, "softmax-invariant key biases: max abs drift %.2e (tolerance %.0e)", drift,
       6 * 1e-3 * 0.05);
    trainer_free(&t);
    dataset_free(&d);
}

/* ---- generation -------------------------------------------------------------------- */

typedef struct {
    const char *what, *oracle;
    double penalty;
    int ngram;
    long eos;
} gen_case;

/* Each stops after its first EOS, as HF does: the oracle up to there is
 * what is wanted. The config's EOS 0 never comes (reference.json); with
 * 457 HF emits gen.greedy up to its first 457. */
static const gen_case cases[] = {
    {"greedy, no EOS", "gen.greedy", 1.0, 0, -1},
    {"greedy, EOS 0", "gen.greedy_eos0", 1.0, 0, 0},
    {"repetition penalty 1.3", "gen.rep1.3", 1.3, 0, 0},
    {"no-repeat-ngram 3", "gen.norep3", 1.0, 3, 0},
    {"greedy, EOS 457", "gen.greedy", 1.0, 0, 457},
};
enum { NCASES = sizeof cases / sizeof *cases };

static gen_opts case_opts(const gen_case *c, int max_new) {
    return (gen_opts){.batch = 1, .max_new = max_new, .eos_id = c->eos,
                      .sampling = {.temperature = 1.0, .top_p = 1.0, .repetition_penalty = c->penalty,
                                   .no_repeat_ngram = c->ngram}};
}

/* Positions where s's generated ids and want [n] differ, a missing or
 * extra token counting as one. */
static int gen_mismatch(const gen_seq *s, const uint32_t *want, int n) {
    int got = s->n - s->prompt_len, bad = abs(got - n);
    for (int i = 0; i < got && i < n; i++) bad += s->ids[s->prompt_len + i] != want[i];
    return bad;
}

static void test_generation(const neox_model *m) {
    uint32_t np;
    uint32_t *prompt = ref_ids("gen.prompt", &np);
    uint32_t *want[NCASES], nwant[NCASES];
    for (int k = 0; k < NCASES; k++) {
        want[k] = ref_ids(cases[k].oracle, &nwant[k]);
        if (cases[k].eos < 0) continue;
        uint32_t upto = 0;
        while (upto < nwant[k] && want[k][upto] != (uint32_t)cases[k].eos) upto++;
        /* 457 must cut gen.greedy short, else that case tests nothing */
        if (cases[k].eos && upto == nwant[k]) {
            printf("Bail out! %s has no %ld\n", cases[k].oracle, cases[k].eos);
            exit(1);
        }
        nwant[k] = upto < nwant[k] ? upto + 1 : nwant[k];
    }
    const int max_new = (int)nwant[0]; /* gen.greedy: max_new_tokens, never cut short */
    gen_seq seqs[NCASES];
    for (int k = 0; k < NCASES; k++) {
        gen_opts o = case_opts(&cases[k], max_new);
        generator g;
        generator_init(&g, m, &o);
        generator_add(&g, &seqs[k], prompt, (int)np, 1);
        while (!seqs[k].done) generator_step(&g);
        generator_free(&g);
        int bad = gen_mismatch(&seqs[k], want[k], (int)nwant[k]);
        ok(bad == 0, "%s, alone: %d of %s's %u tokens differ, %d generated (tolerance 0)", cases[k].what, bad,
           cases[k].oracle, nwant[k], seqs[k].n - seqs[k].prompt_len);
        gen_seq_free(&seqs[k]);
    }
    /* All in one batch, each with its own options: the batched decoding
     * step gives each sequence what it gets alone. */
    gen_opts o = case_opts(&cases[0], max_new);
    o.batch = NCASES;
    generator g;
    generator_init(&g, m, &o);
    for (int k = 0; k < NCASES; k++) {
        gen_opts own = case_opts(&cases[k], max_new);
        generator_add_with(&g, &seqs[k], prompt, (int)np, (uint64_t)k + 1, &own);
    }
    while (g.num_active) generator_step(&g);
    generator_free(&g);
    for (int k = 0; k < NCASES; k++) {
        int bad = gen_mismatch(&seqs[k], want[k], (int)nwant[k]);
        ok(bad == 0, "%s, in a batch of %d: %d of %s's %u tokens differ, %d generated (tolerance 0)",
           cases[k].what, NCASES, bad, cases[k].oracle, nwant[k], seqs[k].n - seqs[k].prompt_len);
        gen_seq_free(&seqs[k]);
        free(want[k]);
    }
    free(prompt);
}

int main(void) {
    const char *name = getenv("TUNEPIPE_DEVICE");
    if (!name || !*name) name = "cuda";
    char err[600];
    const device_ops *dev = device_open(name, err, sizeof err);
    if (!dev && strcmp(name, "cuda") == 0) skip_all(err);
    if (!dev) { printf("Bail out! %s\n", err); return 1; }
    if (!st_open(&ref, DATA "/reference.safetensors", err, sizeof err)) {
        printf("Bail out! %s/reference.safetensors: %s\n", DATA, err);
        return 1;
    }
    note("device %s, fp32", dev->name);
    neox_model m;
    load_model(&m, dev);
    test_logits(&m);
    test_generation(&m);
    test_losses(&m);
    test_trajectory(&m); /* last: it trains m */
    model_free(&m);
    st_close(&ref);
    return done_testing();
}

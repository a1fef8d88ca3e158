/* train_state.c — see train_state.h. */
#include "train_state.h"

#include "nn/model_io.h"
#include "base/cli.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#define STATE_VERSION 1

char *train_state_json(const run_settings *s, const run_progress *p) {
    cJSON *j = cJSON_CreateObject();
    char hex[17];
    cJSON_AddNumberToObject(j, "version", STATE_VERSION);
    cJSON_AddNumberToObject(j, "step", (double)p->step);
    cJSON_AddNumberToObject(j, "elapsed", p->elapsed);
    cJSON_AddNumberToObject(j, "log_bytes", (double)p->log_bytes);
    cJSON_AddNumberToObject(j, "best_step", (double)p->best_step);
    cJSON_AddNumberToObject(j, "best_eval_loss", p->best_step >= 0 ? p->best_eval : 0);
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)p->data_fingerprint);
    cJSON_AddStringToObject(j, "data_fingerprint", hex);
    cJSON_AddNumberToObject(j, "data_examples", (double)p->data_examples);
    cJSON_AddNumberToObject(j, "steps", (double)s->steps);
    cJSON_AddNumberToObject(j, "epochs", s->epochs);
    cJSON_AddNumberToObject(j, "batch", (double)s->batch);
    cJSON_AddNumberToObject(j, "grad_accum", (double)s->grad_accum);
    cJSON_AddNumberToObject(j, "ranks", (double)s->ranks);
    cJSON_AddNumberToObject(j, "lr", s->lr);
    cJSON_AddStringToObject(j, "schedule", lr_schedule_name(s->schedule));
    cJSON_AddNumberToObject(j, "warmup", (double)s->warmup);
    cJSON_AddNumberToObject(j, "weight_decay", s->weight_decay);
    cJSON_AddNumberToObject(j, "clip", s->clip);
    cJSON_AddStringToObject(j, "loss", s->loss == LOSS_ANSWER ? "answer" : "all");
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)s->seed);
    cJSON_AddStringToObject(j, "seed", hex);
    cJSON_AddBoolToObject(j, "shuffle", s->shuffle);
    cJSON_AddBoolToObject(j, "keep_best", s->keep_best);
    cJSON_AddBoolToObject(j, "bf16", s->bf16);
    cJSON_AddStringToObject(j, "save_dtype", s->save_dtype == ST_F16 ? "f16" : s->save_dtype == ST_BF16 ? "bf16" : "f32");
    cJSON_AddNumberToObject(j, "eval_every", (double)s->eval_every);
    cJSON_AddNumberToObject(j, "save_every", (double)s->save_every);
    if (s->eval_path) cJSON_AddStringToObject(j, "eval", s->eval_path);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text) out_of_memory("out of memory");
    return text;
}

/* The state being parsed and its first problem: once one is found, the
 * getters return placeholders and train_state_parse fails at its end. */
typedef struct {
    const cJSON *j;
    const char *path;
    char *err;
    int errlen, failed;
} state_json;

static void state_fail(state_json *sj, const char *fmt, const char *what) {
    if (sj->failed) return;
    char msg[256];
    snprintf(msg, sizeof msg, fmt, what);
    fail_message(sj->err, sj->errlen, "%s: %s", sj->path, msg);
    sj->failed = 1;
}

static double json_number(state_json *sj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(sj->j, key);
    if (cJSON_IsNumber(v)) return v->valuedouble;
    state_fail(sj, "state has no number \"%s\"", key);
    return 0;
}

static const char *json_string(state_json *sj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(sj->j, key);
    if (cJSON_IsString(v)) return v->valuestring;
    state_fail(sj, "state has no string \"%s\"", key);
    return "";
}

int train_state_parse(const char *json, const char *path, run_settings *s, run_progress *p, char *err, int errlen) {
    cJSON *j = cJSON_Parse(json);
    state_json sj_ = {j, path, err, errlen, 0}, *sj = &sj_;
    if (!j || json_number(sj, "version") != STATE_VERSION) {
        cJSON_Delete(j);
        return sj->failed ? 0 : fail_message(err, errlen, "%s: unknown state version", path);
    }
    *s = (run_settings){0};
    s->steps = (long)json_number(sj, "steps");
    s->epochs = json_number(sj, "epochs");
    s->batch = (long)json_number(sj, "batch");
    s->grad_accum = (long)json_number(sj, "grad_accum");
    /* States from before data parallelism are of one process. */
    const cJSON *ranks = cJSON_GetObjectItemCaseSensitive(j, "ranks");
    s->ranks = cJSON_IsNumber(ranks) ? (int)ranks->valuedouble : 1;
    s->lr = json_number(sj, "lr");
    if (!lr_schedule_parse(json_string(sj, "schedule"), &s->schedule)) state_fail(sj, "%s", "bad schedule");
    s->warmup = (long)json_number(sj, "warmup");
    s->weight_decay = json_number(sj, "weight_decay");
    s->clip = json_number(sj, "clip");
    if (!loss_mode_parse(json_string(sj, "loss"), &s->loss)) state_fail(sj, "%s", "bad loss");
    s->seed = strtoull(json_string(sj, "seed"), NULL, 16);
    s->shuffle = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "shuffle"));
    s->keep_best = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "keep_best"));
    s->bf16 = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "bf16"));
    if (!save_dtype_parse(json_string(sj, "save_dtype"), &s->save_dtype)) state_fail(sj, "%s", "bad save_dtype");
    s->eval_every = (long)json_number(sj, "eval_every");
    s->save_every = (long)json_number(sj, "save_every");
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(j, "eval");
    s->eval_path = cJSON_IsString(ev) ? xstrdup(ev->valuestring) : NULL;
    p->step = (long)json_number(sj, "step");
    p->elapsed = json_number(sj, "elapsed");
    p->log_bytes = (off_t)json_number(sj, "log_bytes");
    p->best_step = (long)json_number(sj, "best_step");
    p->best_eval = json_number(sj, "best_eval_loss");
    p->data_fingerprint = strtoull(json_string(sj, "data_fingerprint"), NULL, 16);
    p->data_examples = (size_t)json_number(sj, "data_examples");
    cJSON_Delete(j);
    if (sj->failed) {
        free(s->eval_path);
        s->eval_path = NULL;
    }
    return !sj->failed;
}

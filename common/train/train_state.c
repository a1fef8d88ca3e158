/* train_state.c — see train_state.h. */
#include "train_state.h"

#include "nn/checkpoint.h"
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
    if (!text) die("out of memory");
    return text;
}

static double json_number(const cJSON *j, const char *key, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(v)) die("%s: state has no number \"%s\"", path, key);
    return v->valuedouble;
}

static const char *json_string(const cJSON *j, const char *key, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsString(v)) die("%s: state has no string \"%s\"", path, key);
    return v->valuestring;
}

void train_state_parse(const char *json, const char *path, run_settings *s, run_progress *p) {
    cJSON *j = cJSON_Parse(json);
    if (!j || json_number(j, "version", path) != STATE_VERSION) die("%s: unknown state version", path);
    *s = (run_settings){0};
    s->steps = (long)json_number(j, "steps", path);
    s->epochs = json_number(j, "epochs", path);
    s->batch = (long)json_number(j, "batch", path);
    s->grad_accum = (long)json_number(j, "grad_accum", path);
    /* States from before data parallelism are of one process. */
    const cJSON *ranks = cJSON_GetObjectItemCaseSensitive(j, "ranks");
    s->ranks = cJSON_IsNumber(ranks) ? (int)ranks->valuedouble : 1;
    s->lr = json_number(j, "lr", path);
    if (!lr_schedule_parse(json_string(j, "schedule", path), &s->schedule)) die("%s: bad schedule", path);
    s->warmup = (long)json_number(j, "warmup", path);
    s->weight_decay = json_number(j, "weight_decay", path);
    s->clip = json_number(j, "clip", path);
    if (!loss_mode_parse(json_string(j, "loss", path), &s->loss)) die("%s: bad loss", path);
    s->seed = strtoull(json_string(j, "seed", path), NULL, 16);
    s->shuffle = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "shuffle"));
    s->keep_best = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "keep_best"));
    s->bf16 = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "bf16"));
    if (!save_dtype_parse(json_string(j, "save_dtype", path), &s->save_dtype)) die("%s: bad save_dtype", path);
    s->eval_every = (long)json_number(j, "eval_every", path);
    s->save_every = (long)json_number(j, "save_every", path);
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(j, "eval");
    s->eval_path = cJSON_IsString(ev) ? xstrdup(ev->valuestring) : NULL;
    p->step = (long)json_number(j, "step", path);
    p->elapsed = json_number(j, "elapsed", path);
    p->log_bytes = (off_t)json_number(j, "log_bytes", path);
    p->best_step = (long)json_number(j, "best_step", path);
    p->best_eval = json_number(j, "best_eval_loss", path);
    p->data_fingerprint = strtoull(json_string(j, "data_fingerprint", path), NULL, 16);
    p->data_examples = (size_t)json_number(j, "data_examples", path);
    cJSON_Delete(j);
}

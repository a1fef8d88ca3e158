/* api.c — see api.h. Field names and defaults follow OpenAI's API; the
 * options it lacks take the names vLLM gives them (top_k,
 * repetition_penalty, ignore_eos) or Hugging Face's (no_repeat_ngram_size). */
#include "api.h"

#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/cli.h"

char *api_error(const char *message, const char *type, const char *param, const char *code) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", type);
    if (param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    if (code) cJSON_AddStringToObject(e, "code", code);
    else cJSON_AddNullToObject(e, "code");
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static int bad(char **err, int status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int bad(char **err, int status, const char *param, const char *code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    *err = api_error(msg, status == 404 ? "not_found_error" : "invalid_request_error", param, code);
    return status;
}

/* A number field within [lo, hi]; integer when whole. Absent: keeps *v. */
static int get_number(cJSON *root, const char *name, double lo, double hi, int whole, double *v, char **err) {
    cJSON *f = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!f || cJSON_IsNull(f)) return 0;
    if (!cJSON_IsNumber(f)) return bad(err, 400, name, NULL, "'%s' must be a number", name);
    double x = f->valuedouble;
    if (whole && x != floor(x)) return bad(err, 400, name, NULL, "'%s' must be an integer", name);
    if (!(x >= lo && x <= hi)) return bad(err, 400, name, NULL, "'%s' must be between %g and %g", name, lo, hi);
    *v = x;
    return 0;
}

static int get_bool(cJSON *root, const char *name, int *v, char **err) {
    cJSON *f = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!f || cJSON_IsNull(f)) return 0;
    if (!cJSON_IsBool(f)) return bad(err, 400, name, NULL, "'%s' must be a boolean", name);
    *v = cJSON_IsTrue(f);
    return 0;
}

/* A message's content: a string, or an array of {"type":"text","text":...}. */
static int append_content(cJSON *content, utf8_buf *out, char **err) {
    if (cJSON_IsString(content)) {
        utf8_buf_append(out, content->valuestring, strlen(content->valuestring));
        return 0;
    }
    if (!cJSON_IsArray(content)) return bad(err, 400, "messages", NULL, "a message's 'content' must be a string or an array of text parts");
    cJSON *part;
    cJSON_ArrayForEach(part, content) {
        cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type"), *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") || !cJSON_IsString(text))
            return bad(err, 400, "messages", NULL, "only text content parts are supported");
        utf8_buf_append(out, text->valuestring, strlen(text->valuestring));
    }
    return 0;
}

/* The conversation as the model was trained to read it: each user turn
 * wrapped in its template, each assistant turn after it, turns and a
 * leading system text separated by blank lines. One user message gives
 * exactly neox-gen -i's prompt. */
static int chat_prompt(cJSON *messages, const prompt_template *t, utf8_buf *out, char **err) {
    if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0)
        return bad(err, 400, "messages", NULL, "'messages' must be a non-empty array");
    cJSON *m;
    const char *last = NULL;
    cJSON_ArrayForEach(m, messages) {
        cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role"), *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role) || !content)
            return bad(err, 400, "messages", NULL, "each message needs a string 'role' and a 'content'");
        utf8_buf text = {0};
        if (append_content(content, &text, err)) {
            utf8_buf_free(&text);
            return 400;
        }
        last = role->valuestring;
        if (!strcmp(last, "system") || !strcmp(last, "developer") || !strcmp(last, "assistant")) {
            utf8_buf_append(out, text.data, text.len);
            utf8_buf_append(out, "\n\n", 2);
        } else if (!strcmp(last, "user")) {
            template_wrap(t, text.data, text.len, out);
        } else {
            utf8_buf_free(&text);
            return bad(err, 400, "messages", NULL, "unknown role '%.40s' (system, user or assistant)", role->valuestring);
        }
        utf8_buf_free(&text);
    }
    if (strcmp(last, "user")) return bad(err, 400, "messages", NULL, "the last message must be the user's");
    return 0;
}

static int parse_stop(cJSON *root, serve_request *r, char **err) {
    cJSON *f = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (!f || cJSON_IsNull(f)) return 0;
    if (cJSON_IsString(f)) {
        if (!*f->valuestring) return bad(err, 400, "stop", NULL, "'stop' strings must not be empty");
        r->stop[r->nstop++] = xstrdup(f->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(f) || cJSON_GetArraySize(f) > SERVE_MAX_STOPS)
        return bad(err, 400, "stop", NULL, "'stop' must be a string or an array of at most %d strings", SERVE_MAX_STOPS);
    cJSON *s;
    cJSON_ArrayForEach(s, f) {
        if (!cJSON_IsString(s) || !*s->valuestring || strlen(s->valuestring) > 256)
            return bad(err, 400, "stop", NULL, "'stop' strings must be non-empty, of at most 256 bytes");
        r->stop[r->nstop++] = xstrdup(s->valuestring);
    }
    return 0;
}

static int parse_fields(cJSON *root, int chat, serve_model *models, int nmodels, const api_limits *lim,
                        serve_request *r, api_call *c, char **err) {
    if (!cJSON_IsObject(root)) return bad(err, 400, NULL, NULL, "the body must be a JSON object");
    cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    r->model = 0;
    if (model && !cJSON_IsNull(model)) {
        if (!cJSON_IsString(model)) return bad(err, 400, "model", NULL, "'model' must be a string");
        r->model = -1;
        for (int i = 0; i < nmodels; i++)
            if (!strcmp(models[i].name, model->valuestring)) r->model = i;
        if (r->model < 0)
            return bad(err, 404, "model", "model_not_found", "the model '%.100s' does not exist", model->valuestring);
    }
    serve_model *sm = &models[r->model];
    c->model = sm->name;
    double max_tokens = lim->default_max_tokens, temperature = 1, top_p = 1, top_k = 0, rep = 1, ngram = 0,
           n = 1, presence = 0, frequency = 0, seed = -1;
    int stream = 0, ignore_eos = 0, status;
    if ((status = get_number(root, "max_tokens", 0, lim->max_tokens, 1, &max_tokens, err)) ||
        (status = get_number(root, "max_completion_tokens", 0, lim->max_tokens, 1, &max_tokens, err)) ||
        (status = get_number(root, "temperature", 0, 2, 0, &temperature, err)) ||
        (status = get_number(root, "top_p", 1e-9, 1, 0, &top_p, err)) ||
        (status = get_number(root, "top_k", -1, 1 << 30, 1, &top_k, err)) ||
        (status = get_number(root, "repetition_penalty", 1e-6, 1e6, 0, &rep, err)) ||
        (status = get_number(root, "no_repeat_ngram_size", 0, 1 << 20, 1, &ngram, err)) ||
        (status = get_number(root, "seed", 0, 9007199254740991.0, 1, &seed, err)) ||
        (status = get_number(root, "n", 1, 1, 1, &n, err)) ||
        (status = get_number(root, "presence_penalty", 0, 0, 0, &presence, err)) ||
        (status = get_number(root, "frequency_penalty", 0, 0, 0, &frequency, err)) ||
        (status = get_bool(root, "stream", &stream, err)) || (status = get_bool(root, "ignore_eos", &ignore_eos, err)) ||
        (status = parse_stop(root, r, err)))
        return status;
    cJSON *lp = cJSON_GetObjectItemCaseSensitive(root, "logprobs");
    if (lp && !cJSON_IsNull(lp) && !cJSON_IsFalse(lp))
        return bad(err, 400, "logprobs", NULL, "'logprobs' is not supported");
    c->stream = stream;
    /* The sampling of neox-gen: greedy at temperature 0, else top-k, top-p and a seeded draw. */
    r->opts.max_new = (int)max_tokens;
    r->opts.eos_id = ignore_eos ? -1 : sm->m.cfg.eos_token_id;
    r->opts.seed = seed >= 0 ? (uint64_t)seed : (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)r;
    r->opts.sampling = (sampler_opts){.sample = temperature > 0, .temperature = temperature,
                                      .top_k = top_k > 0 ? (int)top_k : 0, .top_p = top_p,
                                      .repetition_penalty = rep, .no_repeat_ngram = (int)ngram};
    r->deadline = now_seconds() + lim->timeout;

    utf8_buf text = {0};
    if (chat) {
        if ((status = chat_prompt(cJSON_GetObjectItemCaseSensitive(root, "messages"), &sm->tmpl, &text, err))) {
            utf8_buf_free(&text);
            return status;
        }
    } else {
        cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
        if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1) p = cJSON_GetArrayItem(p, 0);
        if (!cJSON_IsString(p)) return bad(err, 400, "prompt", NULL, "'prompt' must be a string (or an array of one)");
        utf8_buf_append(&text, p->valuestring, strlen(p->valuestring));
    }
    pthread_mutex_lock(&sm->tok_lock);
    int invalid = tokenizer_encode(sm->tok, text.data ? text.data : "", text.len, &r->prompt, NULL) != 0;
    pthread_mutex_unlock(&sm->tok_lock);
    utf8_buf_free(&text);
    const char *field = chat ? "messages" : "prompt";
    if (invalid) return bad(err, 400, field, NULL, "the %s is not valid UTF-8", field);
    if (r->prompt.n == 0) return bad(err, 400, field, NULL, "the %s is empty", field);
    size_t limit = (size_t)(lim->max_prompt < sm->m.cfg.max_positions ? lim->max_prompt : sm->m.cfg.max_positions);
    if (r->prompt.n > limit)
        return bad(err, 400, field, "context_length_exceeded", "the %s is %zu tokens, more than the %zu allowed",
                   field, r->prompt.n, limit);
    for (size_t i = 0; i < r->prompt.n; i++)
        if (r->prompt.ids[i] >= (uint32_t)sm->m.cfg.vocab_size)
            return bad(err, 400, field, NULL, "token id %u is outside the model's vocabulary (%d)",
                       r->prompt.ids[i], sm->m.cfg.vocab_size);
    return 0;
}

int api_parse(const char *body, size_t n, int chat, serve_model *models, int nmodels,
              const api_limits *lim, serve_request *r, api_call *c, char **err) {
    static unsigned long counter;
    memset(c, 0, sizeof *c);
    c->chat = chat;
    c->created = (long)time(NULL);
    snprintf(c->id, sizeof c->id, "%s-%lx%lx", chat ? "chatcmpl" : "cmpl", (unsigned long)c->created,
             __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
    cJSON *root = cJSON_ParseWithLength(body, n);
    if (!root) return bad(err, 400, NULL, NULL, "the body is not valid JSON");
    int status = parse_fields(root, chat, models, nmodels, lim, r, c, err);
    cJSON_Delete(root);
    return status;
}

static cJSON *envelope(const api_call *c, int chunk) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", c->id);
    cJSON_AddStringToObject(root, "object", c->chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion");
    cJSON_AddNumberToObject(root, "created", (double)c->created);
    cJSON_AddStringToObject(root, "model", c->model);
    return root;
}

static cJSON *choice(cJSON *root, const api_call *c, int chunk, const char *text, size_t n, int first,
                     const char *reason) {
    cJSON *choices = cJSON_AddArrayToObject(root, "choices"), *ch = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, ch);
    cJSON_AddNumberToObject(ch, "index", 0);
    char *t = xmalloc(n + 1);
    memcpy(t, text, n);
    t[n] = '\0';
    if (c->chat) {
        cJSON *msg = cJSON_AddObjectToObject(ch, chunk ? "delta" : "message");
        if (!chunk || first) cJSON_AddStringToObject(msg, "role", "assistant");
        if (!chunk || !reason) cJSON_AddStringToObject(msg, "content", t);
    } else {
        cJSON_AddStringToObject(ch, "text", reason && chunk ? "" : t);
        cJSON_AddNullToObject(ch, "logprobs");
    }
    free(t);
    if (reason) cJSON_AddStringToObject(ch, "finish_reason", reason);
    else cJSON_AddNullToObject(ch, "finish_reason");
    return ch;
}

char *api_response(const api_call *c, const serve_request *r) {
    cJSON *root = envelope(c, 0);
    choice(root, c, 0, r->text.data ? r->text.data : "", r->text.len, 1, r->finish_reason);
    cJSON *u = cJSON_AddObjectToObject(root, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)r->prompt.n);
    cJSON_AddNumberToObject(u, "completion_tokens", r->completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", (double)r->prompt.n + r->completion_tokens);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

char *api_chunk(const api_call *c, const char *text, size_t n, int first, const char *reason) {
    cJSON *root = envelope(c, 1);
    choice(root, c, 1, text ? text : "", n, first, reason);
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    char *s = xmalloc(strlen(json) + 9);
    sprintf(s, "data: %s\n\n", json);
    free(json);
    return s;
}

char *api_models(const serve_model *models, int nmodels) {
    cJSON *root = cJSON_CreateObject(), *data;
    cJSON_AddStringToObject(root, "object", "list");
    data = cJSON_AddArrayToObject(root, "data");
    for (int i = 0; i < nmodels; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", models[i].name);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", 0);
        cJSON_AddStringToObject(m, "owned_by", "tunepipe");
        cJSON_AddNumberToObject(m, "max_model_len", models[i].m.cfg.max_positions);
        cJSON_AddItemToArray(data, m);
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

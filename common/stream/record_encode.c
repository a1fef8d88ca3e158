/* record_encode.c — see record_encode.h. */
#include "record_encode.h"

#include "base/cli.h"
#include "tokenizer/utf8_json.h"

#include <assert.h>
#include <cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const segment_names[RECORD_SEGMENTS] = {SEG_QUESTION, SEG_ANSWER, SEG_GENERATED};

void record_encoder_init(record_encoder *e) {
    memset(e, 0, sizeof *e);
    e->eos = 1;
    char err[256];
    record_encoder_set_fields(e, "question,answer", err, sizeof err); /* well-formed: cannot fail */
}

/* A member named generated is optional (a model's output). Segments no
 * field names take the member of their own name when a record has one. */
int record_encoder_set_fields(record_encoder *e, const char *fields, char *err, size_t errlen) {
    free(e->fields_buf);
    char *names[2], *copy = e->fields_buf = xstrdup(fields), *comma = strchr(copy, ',');
    int n = 1;
    names[0] = copy;
    if (comma) {
        *comma = 0;
        names[n++] = comma + 1;
        if (strchr(comma + 1, ',')) {
            snprintf(err, errlen, "--fields: at most two members, not '%s'", fields);
            return -1;
        }
    }
    for (int seg = 0; seg < RECORD_SEGMENTS; seg++) e->sources[seg] = (record_source){segment_names[seg], 0};
    int taken[RECORD_SEGMENTS] = {0};
    for (int i = 0; i < n; i++) {
        if (!*names[i]) {
            snprintf(err, errlen, "--fields: empty member name in '%s'", fields);
            return -1;
        }
        int seg = i == 0 ? RECORD_QUESTION : RECORD_ANSWER;
        for (int k = 0; k < RECORD_SEGMENTS; k++)
            if (strcmp(names[i], segment_names[k]) == 0) seg = k;
        if (taken[seg]) {
            snprintf(err, errlen, "--fields: two members for the %s segment in '%s'", segment_names[seg], fields);
            return -1;
        }
        taken[seg] = 1;
        e->sources[seg] = (record_source){names[i], seg != RECORD_GENERATED};
    }
    return 0;
}

void record_encoder_free(record_encoder *e) {
    free(e->fields_buf);
    template_free(&e->tmpl);
    token_ids_free(&e->ids);
    utf8_buf_free(&e->value);
    utf8_buf_free(&e->text);
    e->fields_buf = NULL;
}

/* Encodes valid UTF-8 text into seg. */
static int encode_text(record_encoder *e, const char *text, size_t n, segment *seg, const char *what, char *err,
                       size_t errlen) {
    e->ids.n = 0;
    int invalid = tokenizer_encode(e->tok, text, n, &e->ids, NULL);
    assert(!invalid && "invalid UTF-8 got through the record's checks");
    (void)invalid;
    if (e->ids.n > UINT32_MAX - seg->n) {
        snprintf(err, errlen, "%s is too long", what);
        return -1;
    }
    if (e->ids.n) segment_append(seg, e->ids.ids, (uint32_t)e->ids.n);
    return 0;
}

/* Appends an array of token ids (pre-tokenized data) to seg. Any 32-bit id
 * passes: a model's vocabulary may be larger than the tokenizer's. */
static int append_id_array(const cJSON *arr, segment *seg, const char *what, char *err, size_t errlen) {
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) {
        double id = cJSON_IsNumber(v) ? v->valuedouble : -1;
        if (id < 0 || id > UINT32_MAX || id != floor(id)) {
            snprintf(err, errlen, "%s: not an array of token ids (integers from 0 to %u)", what, UINT32_MAX);
            return -1;
        }
        segment_push(seg, (uint32_t)id);
    }
    return 0;
}

/* The member of obj called name; of several, the last, as Python's json
 * takes it. cJSON cuts member names at a \u0000 escape, so when the line
 * has one (exact) its own names decide, and *at is where the value starts. */
static const cJSON *find_member(const cJSON *obj, const char *line, size_t len, int exact, const char *name,
                                size_t *at) {
    if (exact) {
        long i = json_last_member(line, len, name, at);
        return i < 0 || i > INT_MAX ? NULL : cJSON_GetArrayItem(obj, (int)i);
    }
    const cJSON *last = NULL;
    for (const cJSON *m = obj->child; m; m = m->next)
        if (strcmp(m->string, name) == 0) last = m;
    return last;
}

/* One member into its segment: text (wrapped in the template when it is the
 * question) or an array of ids. With exact, the text is decoded again from
 * the line at at, as cJSON's string stops at the first U+0000. */
static int encode_member(record_encoder *e, const char *line, size_t len, int exact, size_t at, const cJSON *v,
                         const char *name, int templated, segment *seg, char *err, size_t errlen) {
    char what[128];
    snprintf(what, sizeof what, "\"%s\"", name);
    const prompt_template *t = &e->tmpl;
    if (cJSON_IsArray(v)) {
        if (templated && encode_text(e, t->prefix, strlen(t->prefix), seg, "--template", err, errlen)) return -1;
        if (append_id_array(v, seg, what, err, errlen)) return -1;
        if (templated && encode_text(e, t->suffix, strlen(t->suffix), seg, "--template", err, errlen)) return -1;
        return 0;
    }
    if (!cJSON_IsString(v)) {
        snprintf(err, errlen, "%s is neither a string nor an array of token ids", what);
        return -1;
    }
    utf8_buf *value = &e->value, *text = &e->text;
    value->len = 0;
    if (exact) {
        if (json_string_at(line, len, at, value)) {
            snprintf(err, errlen, "%s: cannot decode the string", what);
            return -1;
        }
    } else {
        utf8_buf_append(value, v->valuestring, strlen(v->valuestring));
    }
    size_t valid = utf8_valid_prefix(value->data, value->len);
    if (valid != value->len) {
        snprintf(err, errlen, "%s is not valid UTF-8 (byte %zu)", what, valid + 1);
        return -1;
    }
    const char *str = utf8_buf_cstr(value);
    if (!templated) return encode_text(e, str, value->len, seg, what, err, errlen);
    text->len = 0;
    template_wrap(t, str, value->len, text);
    return encode_text(e, utf8_buf_cstr(text), text->len, seg, what, err, errlen);
}

int record_encode_json(record_encoder *e, const char *line, size_t len, uint64_t lineno, record *r, char *err,
                       size_t errlen) {
    cJSON *obj = cJSON_ParseWithLength(line, len);
    int rc = -1;
    if (!cJSON_IsObject(obj)) {
        snprintf(err, errlen, "not a JSON object");
        goto done;
    }
    record_clear(r);
    int exact = json_has_nul_escape(line, len);
    if (exact < 0) {
        snprintf(err, errlen, "a \\u escape without four hex digits");
        goto done;
    }
    size_t at = 0;
    const cJSON *id = find_member(obj, line, len, exact, "id", &at);
    int id_ok = cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble < 9007199254740992.0 &&
                id->valuedouble == floor(id->valuedouble);
    r->id = id_ok ? (uint64_t)id->valuedouble : lineno;
    for (int k = 0; k < RECORD_SEGMENTS; k++) {
        const record_source *src = &e->sources[k];
        const cJSON *v = find_member(obj, line, len, exact, src->member, &at);
        if (!v) {
            if (!src->required) continue;
            snprintf(err, errlen, "no \"%s\" member", src->member);
            goto done;
        }
        segment *seg = record_segment(r, segment_names[k]);
        int templated = k == RECORD_QUESTION && e->tmpl.prefix;
        if (encode_member(e, line, len, exact, at, v, src->member, templated, seg, err, errlen)) goto done;
        if (k == RECORD_ANSWER && e->eos) segment_push(seg, e->eos_id);
    }
    rc = 0;
done:
    cJSON_Delete(obj);
    return rc;
}

int record_encode_text(record_encoder *e, const char *line, size_t len, uint64_t lineno, record *r, char *err,
                       size_t errlen) {
    record_clear(r);
    r->id = lineno;
    size_t valid = utf8_valid_prefix(line, len);
    if (valid != len) {
        snprintf(err, errlen, "not valid UTF-8 (byte %zu)", valid + 1);
        return -1;
    }
    utf8_buf *text = &e->text;
    text->len = 0;
    template_wrap(&e->tmpl, line, len, text);
    return encode_text(e, utf8_buf_cstr(text), text->len, record_segment(r, SEG_QUESTION), "the line", err, errlen);
}

/* jsonl_split.c — see jsonl_split.h. */
#include "jsonl_split.h"

#include "base/cli.h"
#include "base/rng.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

int split_read(split_set *s, line_reader *lr, int skip_bad, char *err, int errlen) {
    char *line;
    size_t len;
    while ((line = line_reader_next(lr, &len))) {
        if (strspn(line, " \t\r") == len) continue;
        uint64_t lineno = line_reader_lineno(lr);
        cJSON *obj = cJSON_ParseWithLengthOpts(line, len + 1, NULL, 1) /* + the NUL cJSON checks for */;
        if (!cJSON_IsObject(obj)) {
            cJSON_Delete(obj);
            if (!skip_bad) return fail_message(err, errlen, "line %llu: not a JSON object", (unsigned long long)lineno);
            s->bad++;
            continue;
        }
        if (s->n == s->cap) s->recs = xrealloc(s->recs, (s->cap = s->cap ? s->cap * 2 : 1024) * sizeof *s->recs);
        s->recs[s->n] = (split_record){xstrdup(line), lineno, cJSON_GetObjectItemCaseSensitive(obj, "id") != NULL, 0};
        s->n++;
        cJSON_Delete(obj);
    }
    return 1;
}

void split_pick(split_set *s, size_t n_test, uint64_t seed) {
    size_t n = s->n;
    size_t *perm = xmalloc((n ? n : 1) * sizeof *perm);
    for (size_t i = 0; i < n; i++) perm[i] = i;
    rng_state rng;
    rng_seed(&rng, seed);
    for (size_t i = 0; i < n_test; i++) {
        size_t j = i + (size_t)rng_below(&rng, n - i);
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        s->recs[perm[i]].is_test = 1;
    }
    free(perm);
}

void split_write_record(FILE *f, const split_record *r) {
    if (r->has_id) {
        fprintf(f, "%s\n", r->text);
        return;
    }
    const char *brace = strchr(r->text, '{'); /* validated: an object */
    const char *after = brace + 1;
    /* Whitespace as cJSON accepted it: any byte up to ' ', control bytes too. */
    while (*after && (unsigned char)*after <= ' ') after++;
    fprintf(f, "%.*s{\"id\":%llu%s%s\n", (int)(brace - r->text), r->text,
            (unsigned long long)r->line, *after == '}' ? "" : ",", brace + 1);
}

void split_free(split_set *s) {
    for (size_t i = 0; i < s->n; i++) free(s->recs[i].text);
    free(s->recs);
    memset(s, 0, sizeof *s);
}

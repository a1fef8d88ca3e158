/* bpe-encode — JSONL or text lines to a token stream with the GPT-NeoX
 * tokenizer, and (-d) a token stream back to JSONL. */
#include "cli.h"
#include "io.h"
#include "stream.h"
#include "template.h"
#include "tokenizer.h"
#include "utf8.h"
#include "utf8_json.h"

#include <cJSON.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "Usage: bpe-encode [OPTION]... [FILE]\n"
    "   or: bpe-encode -d [--ids] [FILE]\n"
    "Encode JSONL records (one JSON object per line) into a token stream with the\n"
    "GPT-NeoX / Pythia tokenizer, byte-exact with Hugging Face tokenizers. Each line\n"
    "becomes a record with a \"question\" and an \"answer\" segment; an end-of-text\n"
    "token ends the answer. With -d, decode a token stream back into JSONL.\n"
    "Reads FILE or standard input, writes standard output.\n"
    "\n"
    "  -t, --tokenizer FILE  tokenizer.json to use (default: the model's with -m,\n"
    "                        else the installed one)\n"
    "  -m, --model DIR       use DIR/tokenizer.json\n"
    "      --fields Q[,A]    JSON members holding the question and the answer\n"
    "                        (default question,answer; a member called generated\n"
    "                        gives a generated segment); a member may hold a JSON\n"
    "                        array of token ids instead of text\n"
    "      --text            plain text: each line is a record with a question only\n"
    "      --template T      wrap each question in T, where {question} stands for it;\n"
    "                        \\n, \\t and \\\\ in T are a newline, a tab, a backslash\n"
    "      --no-eos          do not end the answer with <|endoftext|>\n"
    "      --special-as-text encode <|endoftext|> written in the text as plain text\n"
    "      --skip-bad        skip bad lines (their count goes to standard error)\n"
    "  -d, --decode          read a token stream, write one JSON object per record\n"
    "      --ids             with -d: token ids instead of text\n"
    "      --skip-special    with -d: leave special tokens out of the text\n"
    "  -f, --force           write the binary stream even to a terminal\n"
    "      --progress        show progress even when standard error is not a terminal\n"
    "  -q, --quiet           no progress, no warnings\n"
    "  -h, --help            show this help and exit\n"
    "      --version         show the version and exit\n"
    "\n"
    "A record's id is the line's \"id\" member when it is a non-negative integer,\n"
    "else its line number. Blank JSONL lines are skipped but counted. Of members\n"
    "with the same name the last counts, as in Python's json.\n";

/* Where each segment of a record comes from. */
enum { QUESTION, ANSWER, GENERATED, N_SEGMENTS };
static const char *const segment_names[N_SEGMENTS] = {SEG_QUESTION, SEG_ANSWER, SEG_GENERATED};

typedef struct {
    const char *member;     /* the JSON member */
    int required;           /* named by --fields: a record without it is bad */
} source;

typedef struct {
    tokenizer *tok;
    source sources[N_SEGMENTS];
    char *fields_buf;       /* what --fields' member names point into */
    prompt_template tmpl;   /* around the question; prefix NULL when none */
    int text_mode, fields_given, eos, skip_bad, quiet;
    uint32_t eos_id;
    token_ids ids;          /* scratch */
    utf8_buf text;
} encode_opts;

/* --fields Q[,A]: Q feeds the question, A the answer, except that a member
 * named after a segment (question, answer, generated) feeds that segment. A
 * member named generated is optional (a model's output). Segments no field
 * names take the member of their own name when a record has one. */
static void set_fields(encode_opts *o, const char *arg) {
    free(o->fields_buf);
    char *names[2], *copy = o->fields_buf = xstrdup(arg), *comma = strchr(copy, ',');
    int n = 1;
    names[0] = copy;
    if (comma) {
        *comma = 0;
        names[n++] = comma + 1;
        if (strchr(comma + 1, ',')) usage_error("--fields: at most two members, not '%s'", arg);
    }
    for (int seg = 0; seg < N_SEGMENTS; seg++) o->sources[seg] = (source){segment_names[seg], 0};
    int taken[N_SEGMENTS] = {0};
    for (int i = 0; i < n; i++) {
        if (!*names[i]) usage_error("--fields: empty member name in '%s'", arg);
        int seg = i == 0 ? QUESTION : ANSWER;
        for (int k = 0; k < N_SEGMENTS; k++)
            if (strcmp(names[i], segment_names[k]) == 0) seg = k;
        if (taken[seg]) usage_error("--fields: two members for the %s segment in '%s'", segment_names[seg], arg);
        taken[seg] = 1;
        o->sources[seg] = (source){names[i], seg != GENERATED};
    }
}

/* Encodes valid UTF-8 text into seg. */
static int encode_text(encode_opts *o, const char *text, size_t n, segment *seg, const char *what, char *err,
                       size_t errlen) {
    o->ids.n = 0;
    if (tokenizer_encode(o->tok, text, n, &o->ids, NULL)) die("bug: %s: invalid UTF-8 got through", what);
    if (o->ids.n > UINT32_MAX - seg->n) {
        snprintf(err, errlen, "%s is too long", what);
        return -1;
    }
    if (o->ids.n) segment_append(seg, o->ids.ids, (uint32_t)o->ids.n);
    return 0;
}

/* Appends an array of token ids (pre-tokenized data) to seg. Any 32-bit id
 * passes: a model's vocabulary may be larger than the tokenizer's. */
static int append_id_array(const cJSON *arr, segment *seg, const char *what, char *err, size_t errlen) {
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (v < 0 || v > UINT32_MAX || v != floor(v)) {
            snprintf(err, errlen, "%s: not an array of token ids (integers from 0 to %u)", what, UINT32_MAX);
            return -1;
        }
        segment_push(seg, (uint32_t)v);
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
    for (const cJSON *e = obj->child; e; e = e->next)
        if (strcmp(e->string, name) == 0) last = e;
    return last;
}

/* One member into its segment: text (wrapped in the template when it is the
 * question) or an array of ids. With exact, the text is decoded again from
 * the line at at, as cJSON's string stops at the first U+0000. */
static int encode_member(encode_opts *o, const char *line, size_t len, int exact, size_t at, const cJSON *v,
                         const char *name, int templated, segment *seg, char *err, size_t errlen) {
    char what[128];
    snprintf(what, sizeof what, "\"%s\"", name);
    if (cJSON_IsArray(v)) {
        if (templated && encode_text(o, o->tmpl.prefix, strlen(o->tmpl.prefix), seg, "--template", err, errlen)) return -1;
        if (append_id_array(v, seg, what, err, errlen)) return -1;
        if (templated && encode_text(o, o->tmpl.suffix, strlen(o->tmpl.suffix), seg, "--template", err, errlen)) return -1;
        return 0;
    }
    if (!cJSON_IsString(v)) {
        snprintf(err, errlen, "%s is neither a string nor an array of token ids", what);
        return -1;
    }
    utf8_buf *text = &o->text;
    text->len = 0;
    size_t start = 0;
    if (templated) utf8_buf_append(text, o->tmpl.prefix, start = strlen(o->tmpl.prefix));
    if (exact) {
        if (json_string_at(line, len, at, text)) {
            snprintf(err, errlen, "%s: cannot decode the string", what);
            return -1;
        }
    } else {
        utf8_buf_append(text, v->valuestring, strlen(v->valuestring));
    }
    size_t valid = utf8_valid_prefix(text->data + start, text->len - start);
    if (valid != text->len - start) {
        snprintf(err, errlen, "%s is not valid UTF-8 (byte %zu)", what, valid + 1);
        return -1;
    }
    if (templated) utf8_buf_append(text, o->tmpl.suffix, strlen(o->tmpl.suffix));
    return encode_text(o, utf8_buf_cstr(text), text->len, seg, what, err, errlen);
}

/* Builds the record of one JSONL line; 0, or -1 with the reason in err. */
static int encode_json_line(encode_opts *o, const char *line, size_t len, uint64_t lineno, record *r, char *err,
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
    for (int k = 0; k < N_SEGMENTS; k++) {
        const source *src = &o->sources[k];
        const cJSON *v = find_member(obj, line, len, exact, src->member, &at);
        if (!v) {
            if (!src->required) continue;
            snprintf(err, errlen, "no \"%s\" member", src->member);
            goto done;
        }
        segment *seg = record_segment(r, segment_names[k]);
        if (encode_member(o, line, len, exact, at, v, src->member, k == QUESTION && o->tmpl.prefix, seg, err, errlen))
            goto done;
        if (k == ANSWER && o->eos) segment_push(seg, o->eos_id);
    }
    rc = 0;
done:
    cJSON_Delete(obj);
    return rc;
}

static int encode_text_line(encode_opts *o, const char *line, size_t len, uint64_t lineno, record *r, char *err,
                            size_t errlen) {
    record_clear(r);
    r->id = lineno;
    size_t valid = utf8_valid_prefix(line, len);
    if (valid != len) {
        snprintf(err, errlen, "not valid UTF-8 (byte %zu)", valid + 1);
        return -1;
    }
    utf8_buf *text = &o->text;
    text->len = 0;
    if (o->tmpl.prefix) utf8_buf_append(text, o->tmpl.prefix, strlen(o->tmpl.prefix));
    utf8_buf_append(text, line, len);
    if (o->tmpl.suffix) utf8_buf_append(text, o->tmpl.suffix, strlen(o->tmpl.suffix));
    return encode_text(o, utf8_buf_cstr(text), text->len, record_segment(r, SEG_QUESTION), "the line", err, errlen);
}

static void encode_stream(encode_opts *o, const char *in_name, int force) {
    stream_writer *sw = stream_writer_open(STDOUT_FILENO, force);
    line_reader *lr = line_reader_open(open_input(in_name), in_name);
    record r = {0};
    uint64_t written = 0, bad = 0;
    double last_progress = now_seconds();
    char *line, err[256];
    size_t len;
    while ((line = line_reader_next(lr, &len))) {
        uint64_t lineno = line_reader_lineno(lr);
        int rc;
        if (o->text_mode) rc = encode_text_line(o, line, len, lineno, &r, err, sizeof err);
        else if (strspn(line, " \t\r") == len) continue;
        else rc = encode_json_line(o, line, len, lineno, &r, err, sizeof err);
        if (rc) {
            if (!o->skip_bad) die("line %llu: %s", (unsigned long long)lineno, err);
            bad++;
            continue;
        }
        stream_write(sw, &r);
        written++;
        if (progress_enabled && (written & 255) == 0 && now_seconds() - last_progress > 0.5) {
            progress("%llu records", (unsigned long long)written);
            last_progress = now_seconds();
        }
    }
    progress_done();
    stream_writer_close(sw);
    line_reader_close(lr);
    record_free(&r);
    if (bad && !o->quiet) warn("skipped %llu bad line%s", (unsigned long long)bad, bad == 1 ? "" : "s");
}

/* ---- decoding ------------------------------------------------------------------ */

static void put_json_string(utf8_buf *out, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    utf8_buf_append(out, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            utf8_buf_append(out, esc, 2);
        } else if (c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            const char *named = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : NULL;
            if (named) utf8_buf_append(out, named, 2);
            else utf8_buf_append(out, esc, 6);
        } else {
            utf8_buf_append(out, s + i, 1);
        }
    }
    utf8_buf_append(out, "\"", 1);
}

static void flush_stdout(void *unused) { checked_fflush(stdout); }

static void decode_stream(tokenizer *tok, const char *in_name, int as_ids, int skip_special, int quiet) {
    stream_reader *sr = stream_reader_open(open_input(in_name), in_name);
    long eos_id = tokenizer_token_id(tok, "<|endoftext|>");
    io_set_idle_hook(flush_stdout, NULL); /* answer each record as it comes */
    record r = {0};
    utf8_buf out = {0}, text = {0};
    uint64_t unknown = 0;
    while (stream_read(sr, &r)) {
        out.len = 0;
        char num[32];
        utf8_buf_append(&out, num, (size_t)snprintf(num, sizeof num, "{\"id\":%llu", (unsigned long long)r.id));
        const char *stop = NULL;
        for (int s = 0; s < r.nseg; s++) {
            uint32_t n;
            const uint32_t *ids = segment_content(&r.seg[s], &n);
            /* Whether the model stopped by itself shows as a final EOS
             * (neox-gen emits it; strip-prompt keeps it). */
            if (strcmp(r.seg[s].name, SEG_GENERATED) == 0)
                stop = n && eos_id >= 0 && ids[n - 1] == (uint32_t)eos_id ? "eos" : "length";
            utf8_buf_append(&out, ",\"", 2);
            utf8_buf_append(&out, r.seg[s].name, strlen(r.seg[s].name));
            utf8_buf_append(&out, "\":", 2);
            if (as_ids) {
                utf8_buf_append(&out, "[", 1);
                for (uint32_t i = 0; i < n; i++)
                    utf8_buf_append(&out, num, (size_t)snprintf(num, sizeof num, i ? ",%u" : "%u", ids[i]));
                utf8_buf_append(&out, "]", 1);
            } else {
                text.len = 0;
                unknown += tokenizer_decode(tok, ids, n, skip_special, &text);
                put_json_string(&out, text.data ? text.data : "", text.len);
            }
        }
        if (stop) {
            utf8_buf_append(&out, ",\"stop\":\"", 9);
            utf8_buf_append(&out, stop, strlen(stop));
            utf8_buf_append(&out, "\"", 1);
        }
        utf8_buf_append(&out, "}\n", 2);
        if (fwrite(out.data, 1, out.len, stdout) != out.len) checked_fflush(stdout);
    }
    checked_fflush(stdout);
    if (unknown && !quiet)
        warn("%llu token id%s beyond the tokenizer's vocabulary left out of the text", (unsigned long long)unknown,
             unknown == 1 ? "" : "s");
    stream_reader_close(sr);
    record_free(&r);
    utf8_buf_free(&out);
    utf8_buf_free(&text);
}

int main(int argc, char **argv) {
    cli_init("bpe-encode");
    encode_opts o = {.eos = 1};
    set_fields(&o, "question,answer");
    const char *tokenizer_path = NULL, *model_dir = NULL;
    int decode = 0, as_ids = 0, skip_special = 0, special_as_text = 0, force = 0, progress_forced = 0;
    int encode_option_given = 0; /* one that only encoding uses */
    enum {
        OPT_FIELDS = 256, OPT_TEXT, OPT_TEMPLATE, OPT_NO_EOS, OPT_SPECIAL_AS_TEXT, OPT_SKIP_BAD, OPT_IDS,
        OPT_SKIP_SPECIAL, OPT_PROGRESS, OPT_VERSION
    };
    static const struct option opts[] = {
        {"tokenizer", required_argument, 0, 't'},
        {"model", required_argument, 0, 'm'},
        {"fields", required_argument, 0, OPT_FIELDS},
        {"text", no_argument, 0, OPT_TEXT},
        {"template", required_argument, 0, OPT_TEMPLATE},
        {"no-eos", no_argument, 0, OPT_NO_EOS},
        {"special-as-text", no_argument, 0, OPT_SPECIAL_AS_TEXT},
        {"skip-bad", no_argument, 0, OPT_SKIP_BAD},
        {"decode", no_argument, 0, 'd'},
        {"ids", no_argument, 0, OPT_IDS},
        {"skip-special", no_argument, 0, OPT_SKIP_SPECIAL},
        {"force", no_argument, 0, 'f'},
        {"progress", no_argument, 0, OPT_PROGRESS},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, OPT_VERSION},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "t:m:dfqh", opts, NULL)) != -1) {
        switch (c) {
        case 't': tokenizer_path = optarg; break;
        case 'm': model_dir = optarg; break;
        case OPT_FIELDS: set_fields(&o, optarg); o.fields_given = encode_option_given = 1; break;
        case OPT_TEXT: o.text_mode = encode_option_given = 1; break;
        case OPT_TEMPLATE:
            template_free(&o.tmpl);
            template_parse(&o.tmpl, "--template", optarg);
            encode_option_given = 1;
            break;
        case OPT_NO_EOS: o.eos = 0; encode_option_given = 1; break;
        case OPT_SPECIAL_AS_TEXT: special_as_text = encode_option_given = 1; break;
        case OPT_SKIP_BAD: o.skip_bad = encode_option_given = 1; break;
        case 'd': decode = 1; break;
        case OPT_IDS: as_ids = 1; break;
        case OPT_SKIP_SPECIAL: skip_special = 1; break;
        case 'f': force = 1; break;
        case OPT_PROGRESS: progress_forced = 1; break;
        case 'q': o.quiet = 1; break;
        case 'h': print_help_and_exit(usage);
        case OPT_VERSION: print_version_and_exit();
        default: usage_error("unknown option");
        }
    }
    if (argc - optind > 1) usage_error("at most one input file");
    if ((as_ids || skip_special) && !decode) usage_error("--ids and --skip-special go with -d");
    if (decode && (encode_option_given || force)) usage_error("-d takes none of the encoding options");
    if (o.text_mode && o.fields_given) usage_error("--text and --fields do not go together");
    const char *in_name = optind < argc ? argv[optind] : "-";
    progress_setup(progress_forced, o.quiet);

    char *path;
    if (tokenizer_path) path = xstrdup(tokenizer_path);
    else if (model_dir) {
        size_t n = strlen(model_dir) + sizeof "/tokenizer.json";
        path = xmalloc(n);
        snprintf(path, n, "%s/tokenizer.json", model_dir);
    } else path = data_file("tokenizer.json");
    o.tok = tokenizer_load(path);
    tokenizer_set_special_as_text(o.tok, special_as_text);

    if (decode) {
        decode_stream(o.tok, in_name, as_ids, skip_special, o.quiet);
    } else {
        long eos = tokenizer_token_id(o.tok, "<|endoftext|>");
        if (o.eos && !o.text_mode && eos < 0) die("%s has no <|endoftext|> token (use --no-eos)", path);
        o.eos_id = (uint32_t)eos;
        encode_stream(&o, in_name, force);
    }
    tokenizer_free(o.tok);
    token_ids_free(&o.ids);
    utf8_buf_free(&o.text);
    free(o.fields_buf);
    template_free(&o.tmpl);
    free(path);
    return 0;
}

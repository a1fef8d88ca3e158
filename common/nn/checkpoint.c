/* checkpoint.c — atomic files, the safetensors writer and the trainer's
 * state; see checkpoint.h. */
#include "checkpoint.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cli.h"
#include "base/io.h"

/* ---- atomic files ------------------------------------------------------ */

#define STAGE_BYTES (1 << 20)

/* Closes and removes the temporary file, frees af. */
static void atomic_abandon(atomic_file *af) {
    if (af->fd >= 0) close(af->fd);
    unlink(af->tmp_path);
    free(af->path);
    free(af->tmp_path);
    free(af->stage);
    *af = (atomic_file){.fd = -1};
}

/* atomic_abandon, with "path: what: why" (errno's) in err; returns 0. */
static int atomic_fail(atomic_file *af, const char *what, char *err, int errlen) {
    int e = errno;
    fail_message(err, errlen, "%s: %s: %s%s", af->path, what, strerror(e),
                 e == ENOSPC || e == EDQUOT ? " (the previous file is kept)" : "");
    atomic_abandon(af);
    return 0;
}

static int open_tmp(atomic_file *af, const char *path, int flags) {
    *af = (atomic_file){.path = xstrdup(path)};
    size_t n = strlen(path) + 32;
    af->tmp_path = xmalloc(n);
    snprintf(af->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    return open(af->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | flags, 0644);
}

/* "tmp_path: cannot create: why" in err; returns 0. */
static int create_failed(atomic_file *af, char *err, int errlen) {
    fail_message(err, errlen, "%s: cannot create: %s", af->tmp_path, strerror(errno));
    free(af->path);
    free(af->tmp_path);
    *af = (atomic_file){.fd = -1};
    return 0;
}

int atomic_open(atomic_file *af, const char *path, char *err, int errlen) {
    af->fd = open_tmp(af, path, 0);
    return af->fd >= 0 || create_failed(af, err, errlen);
}

int atomic_open_direct(atomic_file *af, const char *path, char *err, int errlen) {
    af->fd = open_tmp(af, path, O_DIRECT);
    if (af->fd < 0 && errno == EINVAL) { /* a filesystem without O_DIRECT */
        free(af->path);
        free(af->tmp_path);
        return atomic_open(af, path, err, errlen);
    }
    if (af->fd < 0) return create_failed(af, err, errlen);
    af->direct = 1;
    af->stage = aligned_alloc(DIRECT_BLOCK, STAGE_BYTES);
    if (!af->stage) out_of_memory("out of memory");
    return 1;
}

/* The rest of the file goes through the page cache. */
static int stop_direct(atomic_file *af, char *err, int errlen) {
    int flags = fcntl(af->fd, F_GETFL);
    if (flags < 0 || fcntl(af->fd, F_SETFL, flags & ~O_DIRECT) != 0) return atomic_fail(af, "fcntl", err, errlen);
    af->direct = 0;
    return 1;
}

static int write_out(atomic_file *af, const char *p, size_t n, char *err, int errlen) {
    while (n > 0) {
        ssize_t w = write(af->fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            /* O_DIRECT refused after all (a block size above 4 KB, a
             * short write that left the offset unaligned): go buffered. */
            if (errno == EINVAL && af->direct) {
                if (!stop_direct(af, err, errlen)) return 0;
                continue;
            }
            return atomic_fail(af, "write error", err, errlen);
        }
        p += w;
        n -= (size_t)w;
    }
    return 1;
}

/* The whole blocks of the stage; a tail shorter than a block stays. */
static int flush_stage(atomic_file *af, char *err, int errlen) {
    size_t whole = af->staged / DIRECT_BLOCK * DIRECT_BLOCK;
    if (!write_out(af, af->stage, whole, err, errlen)) return 0;
    memmove(af->stage, af->stage + whole, af->staged - whole);
    af->staged -= whole;
    return 1;
}

int atomic_write(atomic_file *af, const void *buf, size_t n, char *err, int errlen) {
    const char *p = buf;
    while (n > 0 && af->direct) {
        /* The file offset is a multiple of the block and so is p: the
         * caller's memory goes to the disk as it is. */
        if (af->staged % DIRECT_BLOCK == 0 && (uintptr_t)p % DIRECT_BLOCK == 0 && n >= DIRECT_BLOCK) {
            if (!flush_stage(af, err, errlen)) return 0;
            size_t k = n / DIRECT_BLOCK * DIRECT_BLOCK;
            if (!write_out(af, p, k, err, errlen)) return 0;
            p += k;
            n -= k;
            continue;
        }
        /* Else through the stage; up to the next block boundary only when
         * p is aligned there (the rest may then go straight). */
        size_t k = STAGE_BYTES - af->staged, to_block = DIRECT_BLOCK - af->staged % DIRECT_BLOCK;
        if ((uintptr_t)(p + to_block) % DIRECT_BLOCK == 0 && to_block < k) k = to_block;
        if (n < k) k = n;
        memcpy(af->stage + af->staged, p, k);
        af->staged += k;
        p += k;
        n -= k;
        if (af->staged == STAGE_BYTES && !flush_stage(af, err, errlen)) return 0;
    }
    if (af->staged && !af->direct) { /* O_DIRECT stopped: the stage first */
        if (!write_out(af, af->stage, af->staged, err, errlen)) return 0;
        af->staged = 0;
    }
    return write_out(af, p, n, err, errlen);
}

static void fsync_parent_dir(const char *path) {
    char *copy = xstrdup(path);
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (dfd < 0) return; /* nothing more we can make durable */
    fsync(dfd);
    close(dfd);
}

int atomic_commit(atomic_file *af, char *err, int errlen) {
    if (af->staged) {
        if (!flush_stage(af, err, errlen)) return 0;
        if (af->staged) { /* the last partial block, through the page cache */
            if (af->direct && !stop_direct(af, err, errlen)) return 0;
            if (!write_out(af, af->stage, af->staged, err, errlen)) return 0;
        }
    }
    free(af->stage);
    af->stage = NULL;
    if (fsync(af->fd) != 0) return atomic_fail(af, "fsync", err, errlen);
    if (close(af->fd) != 0) {
        af->fd = -1;
        return atomic_fail(af, "close", err, errlen);
    }
    af->fd = -1;
    if (rename(af->tmp_path, af->path) != 0) return atomic_fail(af, "rename", err, errlen);
    fsync_parent_dir(af->path);
    free(af->path);
    free(af->tmp_path);
    af->path = af->tmp_path = NULL;
    return 1;
}

int atomic_write_file(const char *path, const void *buf, size_t n, char *err, int errlen) {
    atomic_file af;
    return atomic_open(&af, path, err, errlen) && atomic_write(&af, buf, n, err, errlen) &&
           atomic_commit(&af, err, errlen);
}

int atomic_copy_file(const char *src, const char *dst, char *err, int errlen) {
    int in = open_input(src);
    atomic_file af;
    if (!atomic_open(&af, dst, err, errlen)) {
        close(in);
        return 0;
    }
    char *buf = xmalloc(1 << 20);
    int ok = 1;
    for (;;) {
        ssize_t r = read(in, buf, 1 << 20);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            fail_message(err, errlen, "%s: read error: %s", src, strerror(errno));
            atomic_abandon(&af);
            ok = 0;
        }
        if (r <= 0) break;
        if (!(ok = atomic_write(&af, buf, (size_t)r, err, errlen))) break;
    }
    free(buf);
    close(in);
    return ok && atomic_commit(&af, err, errlen);
}

/* ---- trainer state ------------------------------------------------------ */

#define STATE_KEY "tunepipe_train_state"
static const char *const state_prefixes[3] = {"param.", "exp_avg.", "exp_avg_sq."};


int state_save(const char *path, const neox_model *m, const float *adam_m, const float *adam_v, const char *json,
               char *err, int errlen) {
    int n = m->num_tensors * 3;
    st_out_tensor *out = xmalloc((size_t)n * sizeof *out);
    char (*names)[MODEL_MAX_TENSOR_NAME + 16] = xmalloc((size_t)n * sizeof *names);
    /* off the CPU, the moments through host copies */
    const float *blocks[3] = {model_host_params(m), adam_m, adam_v};
    float *host[2] = {NULL, NULL};
    for (int k = 0; k < 2 && !m->dev->host_memory; k++) {
        host[k] = xmalloc(m->num_params * sizeof(float));
        m->dev->download(host[k], blocks[k + 1], m->num_params * sizeof(float));
        blocks[k + 1] = host[k];
    }
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < m->num_tensors; i++) {
            int j = k * m->num_tensors + i;
            snprintf(names[j], sizeof names[j], "%s%s", state_prefixes[k], m->tensors[i].name);
            out[j] = st_out_of(&m->tensors[i], blocks[k], names[j]);
        }
    const char *key = STATE_KEY;
    int ok = st_write(path, out, n, ST_F32, &key, &json, 1, err, errlen);
    free(host[0]);
    free(host[1]);
    free(names);
    free(out);
    return ok;
}

/* The value of key in the file's __metadata__ (the reader keeps only the
 * tensors), parsed from the header; malloc'd, or NULL. */
static char *st_metadata_value(const st_file *f, const char *key) {
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)f->map[i] << (8 * i);
    char *text = xmalloc(hlen + 1);
    memcpy(text, f->map + 8, hlen);
    text[hlen] = 0;
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, key);
    char *out = cJSON_IsString(v) ? xstrdup(v->valuestring) : NULL;
    cJSON_Delete(root);
    return out;
}

/* The tensors of f into m->params, adam_m and adam_v (host blocks, see
 * state_load); 1, or 0 with the reason in err. */
static int state_read(st_file *f, const char *path, neox_model *m, float *params, float *adam_m, float *adam_v,
                      char *err, int errlen) {
    float *blocks[3] = {params, adam_m, adam_v};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < m->num_tensors; i++) {
            const neox_tensor *t = &m->tensors[i];
            char name[MODEL_MAX_TENSOR_NAME + 16];
            snprintf(name, sizeof name, "%s%s", state_prefixes[k], t->name);
            const st_tensor *st = st_find(f, name);
            if (!st) return fail_message(err, errlen, "%s: no tensor %s", path, name);
            if (st->dtype != ST_F32 || st->numel != t->numel)
                return fail_message(err, errlen, "%s: tensor %s does not fit the model in config.json", path, name);
            int ok = st_read_f32(f, st, blocks[k] + t->offset, err, errlen) > 0;
            st_release(f, st);
            if (!ok) return 0;
        }
    return 1;
}

char *state_load(const char *path, neox_model *m, float *adam_m, float *adam_v, char *err, int errlen) {
    st_file f;
    char why[256];
    if (!st_open(&f, path, why, sizeof why)) {
        fail_message(err, errlen, "%s: %s", path, why);
        return NULL;
    }
    char *json = NULL;
    float *on_device[3] = {m->params, adam_m, adam_v}, *host[3] = {m->params, adam_m, adam_v};
    if (!m->dev->host_memory) { /* read on the host, then moved over */
        host[0] = m->host_params;
        host[1] = xmalloc(m->num_params * sizeof(float));
        host[2] = xmalloc(m->num_params * sizeof(float));
    }
    int ok = state_read(&f, path, m, host[0], host[1], host[2], err, errlen);
    for (int k = 0; k < 3 && !m->dev->host_memory; k++) {
        if (ok) m->dev->upload(on_device[k], host[k], m->num_params * sizeof(float));
        if (k) free(host[k]);
    }
    if (ok) {
        json = st_metadata_value(&f, STATE_KEY);
        if (!json) fail_message(err, errlen, "%s: not a neox-train state (no %s)", path, STATE_KEY);
    }
    st_close(&f);
    return json;
}

/* train_outdir.c — see train_outdir.h. */
#include "train_outdir.h"

#include "nn/checkpoint.h"
#include "base/cli.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int make_dirs(const char *dir, char *err, int errlen) {
    char *p = xstrdup(dir);
    int ok = 1;
    for (char *q = p + 1; ok && *q; q++) {
        if (*q != '/') continue;
        *q = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) ok = fail_message(err, errlen, "%s: cannot create: %s", p, strerror(errno));
        *q = '/';
    }
    if (ok && mkdir(p, 0755) != 0 && errno != EEXIST) ok = fail_message(err, errlen, "%s: cannot create: %s", p, strerror(errno));
    free(p);
    return ok;
}

void outdir_remove_stale_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    static const char *ours[] = {"config.json", "model.safetensors", TRAIN_STATE_FILE, TRAIN_BEST_FILE,
                                 "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"};
    while ((e = readdir(d))) {
        int stale = 0;
        for (size_t i = 0; i < sizeof ours / sizeof *ours; i++) {
            size_t n = strlen(ours[i]);
            stale |= strncmp(e->d_name, ours[i], n) == 0 && strncmp(e->d_name + n, ".tmp.", 5) == 0;
        }
        if (!stale) continue;
        char *p = path_join(dir, e->d_name);
        unlink(p);
        free(p);
    }
    closedir(d);
}

void outdir_forget_run(const char *dir) {
    const char *old_run[] = {TRAIN_STATE_FILE, TRAIN_BEST_FILE};
    for (size_t i = 0; i < sizeof old_run / sizeof *old_run; i++) {
        char *p = path_join(dir, old_run[i]);
        unlink(p);
        free(p);
    }
}

int outdir_copy_tokenizer(const char *out, const char *model_dir, const char *tokenizer, char *err, int errlen) {
    static const char *extras[] = {"tokenizer_config.json", "special_tokens_map.json"};
    char *src = tokenizer ? xstrdup(tokenizer) : NULL;
    if (!src && model_dir) {
        src = path_join(model_dir, "tokenizer.json");
        if (!file_exists(src)) {
            free(src);
            src = NULL;
        }
    }
    if (!src) src = data_file("tokenizer.json");
    char *dst = path_join(out, "tokenizer.json");
    int ok = atomic_copy_file(src, dst, err, errlen);
    free(dst);
    free(src);
    for (size_t i = 0; ok && model_dir && !tokenizer && i < sizeof extras / sizeof *extras; i++) {
        char *from = path_join(model_dir, extras[i]), *to = path_join(out, extras[i]);
        if (file_exists(from)) ok = atomic_copy_file(from, to, err, errlen);
        free(from);
        free(to);
    }
    return ok;
}

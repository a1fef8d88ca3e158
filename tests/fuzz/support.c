/* support.c — see fuzz.h. */
#include "fuzz.h"

#include "base/cli.h"

#include <cJSON.h>
#include <zstd.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

jmp_buf fuzz_die_jump;
int fuzz_die_exits;

static void jump_back(void) { longjmp(fuzz_die_jump, 1); }

void fuzz_catch_die(void) { cli_set_die_hook(fuzz_die_exits ? NULL : jump_back); }

void fuzz_reject(const char *reason) {
    if (fuzz_die_exits) die("%s", reason);
}

int fuzz_memfd(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz-input", MFD_CLOEXEC);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    if (size) write_all(fd, data, size);
    lseek(fd, 0, SEEK_SET);
    return fd;
}

const char *fuzz_fd_path(int fd, char buf[32]) {
    snprintf(buf, 32, "/proc/self/fd/%d", fd);
    return buf;
}

char *fuzz_fd_read(int fd, size_t *len) {
    lseek(fd, 0, SEEK_SET);
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap + 1);
    ssize_t r;
    while ((r = read(fd, buf + n, cap - n)) > 0)
        if ((n += (size_t)r) == cap) buf = xrealloc(buf, (cap *= 2) + 1);
    if (r < 0) {
        perror("read");
        abort();
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

char *fuzz_cstr(const uint8_t *data, size_t size) {
    char *s = xmalloc(size + 1);
    if (size) memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
    fprintf(stderr, "%s:%d: property failed: %s: ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

#ifdef FUZZ_TRACK_ALLOCS
/* Linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free:
 * the code under test calls these, which record live blocks in an
 * open-addressing set while tracking is on. zstd's contexts are allocated
 * inside libzstd, so their constructors are wrapped too (--wrap=ZSTD_...)
 * and recorded with their destructors. */
void *__real_malloc(size_t n);
void *__real_calloc(size_t count, size_t size);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);

#define MAX_TRACKED_FD 128
static int tracking;
static void **live;               /* the set: NULL is an empty slot */
static size_t live_cap, live_n;   /* cap is a power of two */
static unsigned char open_before[MAX_TRACKED_FD];

static size_t slot_of(const void *p) { return ((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15u & (live_cap - 1); }

static void live_add(void *p) {
    if (!p) return;
    if (2 * (live_n + 1) > live_cap) {
        void **old = live;
        size_t old_cap = live_cap;
        live_cap = live_cap ? 2 * live_cap : 1024;
        live = __real_calloc(live_cap, sizeof *live);
        if (!live) abort();
        live_n = 0;
        for (size_t i = 0; i < old_cap; i++)
            if (old[i]) live_add(old[i]);
        __real_free(old);
    }
    size_t i = slot_of(p);
    while (live[i]) i = (i + 1) & (live_cap - 1);
    live[i] = p;
    live_n++;
}

static void live_remove(void *p) {
    if (!p || !live_n) return;
    size_t i = slot_of(p);
    while (live[i] && live[i] != p) i = (i + 1) & (live_cap - 1);
    if (!live[i]) return;
    live[i] = NULL;
    live_n--;
    /* Backward-shift deletion keeps every probe chain unbroken. */
    for (size_t j = (i + 1) & (live_cap - 1); live[j]; j = (j + 1) & (live_cap - 1)) {
        void *q = live[j];
        live[j] = NULL;
        live_n--;
        live_add(q);
    }
}

void *__wrap_malloc(size_t n) {
    void *p = __real_malloc(n);
    if (tracking) live_add(p);
    return p;
}

void *__wrap_calloc(size_t count, size_t size) {
    void *p = __real_calloc(count, size);
    if (tracking) live_add(p);
    return p;
}

void *__wrap_realloc(void *p, size_t n) {
    void *q = __real_realloc(p, n);
    if (tracking && q) {
        live_remove(p);
        live_add(q);
    }
    return q;
}

void __wrap_free(void *p) {
    if (tracking) live_remove(p);
    __real_free(p);
}

#define MAX_CONTEXTS 16
static struct {
    void *ctx;
    int compress;
} contexts[MAX_CONTEXTS];

ZSTD_DCtx *__real_ZSTD_createDCtx(void);
size_t __real_ZSTD_freeDCtx(ZSTD_DCtx *d);
ZSTD_CCtx *__real_ZSTD_createCCtx(void);
size_t __real_ZSTD_freeCCtx(ZSTD_CCtx *c);

static void context_add(void *ctx, int compress) {
    if (!tracking || !ctx) return;
    for (int i = 0; i < MAX_CONTEXTS; i++)
        if (!contexts[i].ctx) {
            contexts[i].ctx = ctx;
            contexts[i].compress = compress;
            return;
        }
    abort(); /* more live contexts than any tool makes */
}

static void context_remove(void *ctx) {
    for (int i = 0; i < MAX_CONTEXTS; i++)
        if (contexts[i].ctx == ctx) contexts[i].ctx = NULL;
}

ZSTD_DCtx *__wrap_ZSTD_createDCtx(void) {
    ZSTD_DCtx *d = __real_ZSTD_createDCtx();
    context_add(d, 0);
    return d;
}

size_t __wrap_ZSTD_freeDCtx(ZSTD_DCtx *d) {
    context_remove(d);
    return __real_ZSTD_freeDCtx(d);
}

ZSTD_CCtx *__wrap_ZSTD_createCCtx(void) {
    ZSTD_CCtx *c = __real_ZSTD_createCCtx();
    context_add(c, 1);
    return c;
}

size_t __wrap_ZSTD_freeCCtx(ZSTD_CCtx *c) {
    context_remove(c);
    return __real_ZSTD_freeCCtx(c);
}

void fuzz_track_begin(void) {
    static int hooked;
    if (!hooked) { /* cJSON allocates through its hooks, outside the wrap */
        cJSON_InitHooks(&(cJSON_Hooks){__wrap_malloc, __wrap_free});
        hooked = 1;
    }
    for (int fd = 0; fd < MAX_TRACKED_FD; fd++) open_before[fd] = fcntl(fd, F_GETFD) != -1;
    tracking = 1;
}

void fuzz_track_end(int release) {
    tracking = 0;
    for (size_t i = 0; i < live_cap; i++) {
        if (live[i] && release) __real_free(live[i]);
        live[i] = NULL;
    }
    live_n = 0;
    for (int i = 0; i < MAX_CONTEXTS; i++) {
        if (contexts[i].ctx && release) {
            if (contexts[i].compress) __real_ZSTD_freeCCtx(contexts[i].ctx);
            else __real_ZSTD_freeDCtx(contexts[i].ctx);
        }
        contexts[i].ctx = NULL;
    }
    if (release)
        for (int fd = 0; fd < MAX_TRACKED_FD; fd++)
            if (!open_before[fd] && fcntl(fd, F_GETFD) != -1) close(fd);
}
#else
void fuzz_track_begin(void) {}
void fuzz_track_end(int release) {}
#endif

int fuzz_framed_memfd(const uint8_t *content, size_t size, size_t frame_len) {
    int fd = fuzz_memfd(NULL, 0);
    size_t cap = ZSTD_compressBound(frame_len);
    unsigned char *frame = xmalloc(cap);
    for (size_t off = 0; off < size; off += frame_len) {
        size_t n = size - off < frame_len ? size - off : frame_len;
        size_t z = ZSTD_compress(frame, cap, content + off, n, 1);
        if (ZSTD_isError(z)) abort();
        write_all(fd, frame, z);
    }
    free(frame);
    lseek(fd, 0, SEEK_SET);
    return fd;
}

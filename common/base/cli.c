/* cli.c — shared command-line plumbing; see cli.h. */
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

const char *prog_name = "tunepipe";
int progress_enabled;
static int progress_line_open;
static void (*die_hook)(void);

void cli_init(const char *name) {
    prog_name = name;
    /* A parent that ignores SIGPIPE (some shells, Python) would turn a closed
     * pipe into EPIPE on every write; default disposition ends us quietly. */
    signal(SIGPIPE, SIG_DFL);
}

/* Longest message printed; longer ones (a message quoting a huge token,
 * say) end in "...". */
#define MESSAGE_MAX 1024

static void vmessage(const char *fmt, va_list ap) {
    progress_done();
    char msg[MESSAGE_MAX];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    size_t len = strlen(msg);
    if (n >= (int)sizeof msg) /* cut: don't leave half a UTF-8 character */
        while (len > 0 && ((unsigned char)msg[len - 1] & 0xC0) == 0x80) len--;
    if (n >= (int)sizeof msg && len > 0 && (unsigned char)msg[len - 1] >= 0xC0) len--;
    /* One line, whatever the input held: control characters a message
     * quotes from a file (a newline in a JSON string, a terminal escape)
     * are written as \n, \r, \t or \xHH. */
    fprintf(stderr, "%s: ", prog_name);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)msg[i];
        if (c == '\n') fputs("\\n", stderr);
        else if (c == '\r') fputs("\\r", stderr);
        else if (c == '\t') fputs("\\t", stderr);
        else if (c < 0x20 || c == 0x7F) fprintf(stderr, "\\x%02x", c);
        else fputc(c, stderr);
    }
    if (n >= (int)sizeof msg) fputs("...", stderr);
    fputc('\n', stderr);
}

void cli_set_die_hook(void (*hook)(void)) { die_hook = hook; }

static void vdie(const char *fmt, va_list ap) __attribute__((noreturn));
static void vdie(const char *fmt, va_list ap) {
    vmessage(fmt, ap);
    if (die_hook) die_hook();
    exit(1);
}

void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdie(fmt, ap);
}

void out_of_memory(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdie(fmt, ap);
}

void usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help' for more information.\n", prog_name);
    exit(2);
}

void warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
}

int fail_message(char *err, int errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, (size_t)errlen, fmt, ap);
    va_end(ap);
    for (char *c = err; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    return 0;
}

void print_version_and_exit(void) {
    printf("%s (tunepipe) %s\n", prog_name, TUNEPIPE_VERSION);
    checked_fflush(stdout);
    exit(0);
}

void print_help_and_exit(const char *text) {
    fputs(text, stdout);
    checked_fflush(stdout);
    exit(0);
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) out_of_memory("out of memory (%zu bytes)", n);
    return p;
}

void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) out_of_memory("out of memory (%zu x %zu bytes)", count, size);
    return p;
}

#define HUGE_PAGE ((size_t)2 << 20)

void *malloc_aligned(size_t n) {
    void *p = NULL;
    int huge = n >= 16 * HUGE_PAGE;
    if (posix_memalign(&p, huge ? HUGE_PAGE : 64, n ? n : 1)) return NULL;
    if (huge) madvise(p, n, MADV_HUGEPAGE); /* a hint: without it, 4 KB pages */
    return p;
}

void *xmalloc_aligned(size_t n) {
    void *p = malloc_aligned(n);
    if (!p) out_of_memory("out of memory (%zu bytes)", n);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) out_of_memory("out of memory (%zu bytes)", n);
    return q;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

void write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EPIPE) exit(141); /* the reader went away: not our error */
            die("write error: %s", strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
}

void checked_fflush(FILE *f) {
    if (fflush(f) != 0 || ferror(f)) {
        if (errno == EPIPE) exit(141);
        die("write error: %s", strerror(errno));
    }
}

long parse_long(const char *opt, const char *arg, long min, long max) {
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (errno || end == arg || *end) usage_error("%s: not an integer: '%s'", opt, arg);
    if (v < min || v > max) usage_error("%s: %ld is out of range [%ld, %ld]", opt, v, min, max);
    return v;
}

double parse_double(const char *opt, const char *arg, double min, double max) {
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno || end == arg || *end || v != v) usage_error("%s: not a number: '%s'", opt, arg);
    if (v < min || v > max) usage_error("%s: %g is out of range [%g, %g]", opt, v, min, max);
    return v;
}

void progress_setup(int forced, int quiet) {
    progress_enabled = !quiet && (forced || isatty(STDERR_FILENO));
}

void progress(const char *fmt, ...) {
    if (!progress_enabled) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("\r\033[K", stderr);
    fprintf(stderr, "%s: ", prog_name);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
    progress_line_open = 1;
}

void progress_done(void) {
    if (!progress_line_open) return;
    fputc('\n', stderr);
    progress_line_open = 0;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

char *data_file(const char *name) {
    const char *dirs[] = {getenv("TUNEPIPE_DATA"), TUNEPIPE_DATADIR, TUNEPIPE_SRCDATA};
    char *path = NULL;
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        if (!dirs[i] || !*dirs[i]) continue;
        free(path);
        size_t n = strlen(dirs[i]) + strlen(name) + 2;
        path = xmalloc(n);
        snprintf(path, n, "%s/%s", dirs[i], name);
        if (access(path, R_OK) == 0 || i == 0) return path; /* an explicit $TUNEPIPE_DATA wins */
    }
    return path;
}

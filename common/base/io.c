/* io.c — input helpers; see io.h. */
#include "io.h"
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void (*idle_hook)(void *);
static void *idle_ctx;

void io_set_idle_hook(void (*fn)(void *), void *ctx) {
    idle_hook = fn;
    idle_ctx = ctx;
}

ssize_t io_read(int fd, void *buf, size_t n, const char *name) {
    if (idle_hook) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 0) == 0) idle_hook(idle_ctx);
    }
    for (;;) {
        ssize_t r = read(fd, buf, n);
        if (r >= 0) return r;
        if (errno != EINTR) die("%s: read error: %s", name, strerror(errno));
    }
}

int open_input(const char *path) {
    if (strcmp(path, "-") == 0) return STDIN_FILENO;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) die("%s: is a directory", path);
    return fd;
}

struct line_reader {
    int fd;
    const char *name;
    char *buf;
    size_t cap, start, end; /* unread bytes are buf[start..end) */
    int eof;
    uint64_t lineno;
};

line_reader *line_reader_open(int fd, const char *name) {
    line_reader *lr = xcalloc(1, sizeof *lr);
    lr->fd = fd;
    lr->name = name;
    lr->cap = 1 << 16;
    lr->buf = xmalloc(lr->cap + 1);
    return lr;
}

char *line_reader_next(line_reader *lr, size_t *len) {
    size_t scanned = 0;
    for (;;) {
        char *nl = memchr(lr->buf + lr->start + scanned, '\n', lr->end - lr->start - scanned);
        if (nl || (lr->eof && lr->end > lr->start)) {
            char *line = lr->buf + lr->start;
            size_t n = nl ? (size_t)(nl - line) : lr->end - lr->start;
            lr->start += nl ? n + 1 : n;
            line[n] = '\0'; /* buf has one spare byte past cap for this */
            lr->lineno++;
            if (memchr(line, '\0', n))
                die("%s: line %llu: contains a NUL byte (binary input?)", lr->name,
                    (unsigned long long)(lr->lineno));
            *len = n;
            return line;
        }
        if (lr->eof) return NULL;
        scanned = lr->end - lr->start;
        if (lr->start > 0) { /* compact */
            memmove(lr->buf, lr->buf + lr->start, scanned);
            lr->end = scanned;
            lr->start = 0;
        }
        if (lr->end == lr->cap) {
            lr->cap *= 2;
            lr->buf = xrealloc(lr->buf, lr->cap + 1);
        }
        ssize_t r = io_read(lr->fd, lr->buf + lr->end, lr->cap - lr->end, lr->name);
        if (r == 0) lr->eof = 1;
        lr->end += (size_t)r;
    }
}

uint64_t line_reader_lineno(const line_reader *lr) { return lr->lineno; }

void line_reader_close(line_reader *lr) {
    if (!lr) return;
    free(lr->buf);
    free(lr);
}

char *read_file(const char *path, size_t *len) {
    int fd = open_input(path);
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap + 1);
    for (;;) {
        if (n == cap) buf = xrealloc(buf, (cap *= 2) + 1);
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            die("%s: read error: %s", path, strerror(errno));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    if (fd != STDIN_FILENO) close(fd);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

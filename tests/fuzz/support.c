/* support.c — see fuzz.h. */
#include "fuzz.h"

#include "base/cli.h"

#include <zstd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int fuzz_replaying;

void fuzz_reject(const char *reason) {
    if (fuzz_replaying) die("%s", reason);
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

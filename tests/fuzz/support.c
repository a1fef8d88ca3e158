/* support.c — see fuzz.h. */
#include "fuzz.h"

#include "cli.h"

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

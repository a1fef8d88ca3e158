/* fuzz.h — what the fuzz harnesses (tests/fuzz/fuzz_*.c) share.
 *
 * Each harness defines LLVMFuzzerTestOneInput (and optionally
 * LLVMFuzzerInitialize). It is linked either with libFuzzer (make fuzz) or
 * with replay.c, a plain main() that runs the stored corpus and regression
 * inputs one per forked child (make test, through t70-fuzz-regress.sh). */
#ifndef TUNEPIPE_FUZZ_H
#define TUNEPIPE_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* The library refuses bad input by returning a one-line reason; the
 * harnesses call it directly, check the reason and free what it left, so
 * under libFuzzer a refused input is an ordinary outcome and a leak on
 * that path is a finding. fuzz_reject(reason), last: the replay driver
 * (fuzz_replaying set) dies with the reason, as a tool exits 1, so
 * reject-* regression inputs are checked; under libFuzzer it does
 * nothing. */
extern int fuzz_replaying;
void fuzz_reject(const char *reason);

/* An anonymous in-memory file holding the bytes, positioned at 0. */
int fuzz_memfd(const uint8_t *data, size_t size);
/* A memfd holding content compressed into zstd frames of frame_len bytes,
 * like a writer that flushed at those points; positioned at its start. */
int fuzz_framed_memfd(const uint8_t *content, size_t size, size_t frame_len);
/* "/proc/self/fd/N": a path for APIs that take one. */
const char *fuzz_fd_path(int fd, char buf[32]);
/* The whole content of fd (rewound first), NUL-terminated; *len its length. */
char *fuzz_fd_read(int fd, size_t *len);
/* NUL-terminated copy of the input. */
char *fuzz_cstr(const uint8_t *data, size_t size);

/* A failed property: prints the message and aborts, which both libFuzzer
 * and the replay driver report as a finding. */
#define FUZZ_CHECK(cond, ...) \
    do { \
        if (!(cond)) fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__); \
    } while (0)
void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), noreturn));

#endif

/* fuzz.h — what the fuzz harnesses (tests/fuzz/fuzz_*.c) share.
 *
 * Each harness defines LLVMFuzzerTestOneInput (and optionally
 * LLVMFuzzerInitialize). It is linked either with libFuzzer (make fuzz) or
 * with replay.c, a plain main() that runs the stored corpus and regression
 * inputs one per forked child (make test, through t70-fuzz-regress.sh). */
#ifndef TUNEPIPE_FUZZ_H
#define TUNEPIPE_FUZZ_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

/* The parsers reject bad input with die(), which exits. Under libFuzzer
 * every input runs in one process, so fuzz_catch_die() makes die() jump
 * back to fuzz_die_jump instead:
 *
 *     fuzz_catch_die();
 *     if (setjmp(fuzz_die_jump) == 0) { ...parse... }
 *     ...free what the parse allocated...
 *
 * The replay driver forks per input and turns the catching off, so there
 * die() really exits 1, exactly as in the tools. */
extern jmp_buf fuzz_die_jump;
extern int fuzz_die_exits;  /* set by the replay driver */
void fuzz_catch_die(void);

/* A tool's main() that dies leaves its allocations and open files behind,
 * which under libFuzzer would pile up input after input. Between
 * fuzz_track_begin() and fuzz_track_end(1) every malloc, calloc and realloc
 * of the code under test (and of cJSON) is recorded, and fuzz_track_end(1)
 * frees what is still allocated and closes the files opened meanwhile;
 * fuzz_track_end(0) only stops recording, so a leak on a path that returns
 * is still reported. Under libFuzzer the link wraps malloc and friends
 * (FUZZ_TRACK_ALLOCS); in the replay driver, which forks per input, both
 * do nothing. */
void fuzz_track_begin(void);
void fuzz_track_end(int release);

/* For parsers that report failure instead of dying: the replay driver
 * dies with the reason (so reject-* regression inputs are checked like a
 * tool's exit 1); under libFuzzer it does nothing. */
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

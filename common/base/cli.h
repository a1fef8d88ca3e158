/* cli.h — what every tunepipe tool shares: its name in messages, fatal
 * errors, usage errors, checked allocation and output, progress gating. */
#ifndef TUNEPIPE_CLI_H
#define TUNEPIPE_CLI_H

#include <stddef.h>
#include <stdio.h>

#define TUNEPIPE_VERSION "0.1.0"

extern const char *prog_name;

/* Call first in main(): sets prog_name, restores default SIGPIPE so a closed
 * downstream pipe ends the tool quietly. */
void cli_init(const char *name);

/* "tool: message\n" on stderr, exit 1. */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* For neox-train's ranks (train/dist.h, which end the whole job): die()
 * and out_of_memory() call hook after printing their message and before
 * exit(1). NULL removes it. */
void cli_set_die_hook(void (*hook)(void));
/* "tool: message\nTry 'tool --help'.\n" on stderr, exit 2. */
void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* "tool: message\n" on stderr, no exit. */
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Library code never exits on bad input: it returns 0 (or NULL, or -1
 * where 0 means something else) with a one-line reason in a buffer the
 * caller gives, and the tool decides (usually die("%s", err)). This
 * formats the reason into err as one line (control characters from the
 * input become '?') and returns 0, so `return fail_message(err, errlen,
 * "...", ...);` reads well. */
int fail_message(char *err, int errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Room for any reason: more than die() prints (it cuts at 1024 bytes), so
 * a reason returned and then died on reads as die() would have written it. */
#define ERR_MAX 1100
/* "tool: message\n" on stderr, exit 1, for running out of memory: with
 * none a caller can do nothing useful, so it is not returned; the x*alloc
 * functions below end this way too. With the helpers of io.h and
 * write_all (a read or write error of the tool's own files), the only
 * exits below the tools. */
void out_of_memory(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Prints "tool (tunepipe) VERSION" to stdout and exits 0. */
void print_version_and_exit(void) __attribute__((noreturn));
/* Prints text to stdout and exits 0 (for --help). */
void print_help_and_exit(const char *text) __attribute__((noreturn));

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
/* Aligned to a cache line (64 bytes), for the big arrays that vector
 * loops stream through: an unaligned one splits every load. From 32 MB
 * up, aligned to 2 MB and backed by transparent huge pages where the
 * kernel lends them on request: touching a 4 KB page costs a fault, and
 * the parameter, gradient and moment arrays are gigabytes. The start is
 * then also aligned for O_DIRECT writes (checkpoint.h). */
void *xmalloc_aligned(size_t n);
/* xmalloc_aligned, NULL when out of memory. */
void *malloc_aligned(size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* Writes all n bytes to fd; a closed pipe (EPIPE) exits quietly,
 * any other failure dies with the reason (e.g. a full disk). */
void write_all(int fd, const void *buf, size_t n);
/* fflush + ferror check for stdio output; same policy as write_all. */
void checked_fflush(FILE *f);

/* Number parsing for options: dies with a usage error naming the option. */
long parse_long(const char *opt, const char *arg, long min, long max);
double parse_double(const char *opt, const char *arg, double min, double max);

/* Progress goes to stderr only when it is a terminal, or when forced
 * (--progress); quiet (-q) turns it off. */
extern int progress_enabled;
void progress_setup(int forced, int quiet);
/* Overwrites the current progress line (no-op when disabled). */
void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Ends the progress line so later messages start on a clean line. */
void progress_done(void);

/* Seconds since an arbitrary fixed point (CLOCK_MONOTONIC). */
double now_seconds(void);



/* Path of a file shipped in data/: $TUNEPIPE_DATA/name when that variable is
 * set, else the installed copy, else the source tree's (for bin/ use). The
 * returned string is malloc'd. */
char *data_file(const char *name);
#endif

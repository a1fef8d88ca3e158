/* tap.h — minimal TAP producer for C unit tests (run by prove). */
#ifndef TUNEPIPE_TAP_H
#define TUNEPIPE_TAP_H
#include <stdio.h>
#include <stdlib.h>

static int tap_n, tap_failed;

/* ok(cond, "description", ...) prints "ok N - ..." or "not ok N - ...". */
#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
static void tap_ok(int pass, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#include <stdarg.h>
static void tap_ok(int pass, const char *file, int line, const char *fmt, ...) {
    char desc[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(desc, sizeof desc, fmt, ap);
    va_end(ap);
    printf("%sok %d - %s\n", pass ? "" : "not ", ++tap_n, desc);
    fflush(stdout);
    if (!pass) {
        /* On stderr, which prove shows without -v (as Test::More does). */
        fprintf(stderr, "#   Failed test %d '%s'\n#   at %s line %d.\n", tap_n, desc, file, line);
        tap_failed++;
    }
}
/* diag("...") explains a failure: a "# ..." line on stderr, shown by prove. */
#define diag(...) (fflush(stdout), fprintf(stderr, "# "), fprintf(stderr, __VA_ARGS__), fprintf(stderr, "\n"))
/* note("...") is information: a "# ..." line on stdout (prove -v shows it). */
#define note(...) (printf("# "), printf(__VA_ARGS__), printf("\n"))
/* skip_all("reason") for a test that cannot run here. */
#define skip_all(reason) do { printf("1..0 # SKIP %s\n", reason); exit(0); } while (0)
/* Call last: prints the plan, returns the exit status. */
static int done_testing(void) {
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}
#endif

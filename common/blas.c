/* blas.c — see blas.h. */
#include "blas.h"

#include <cpuid.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* OpenBLAS's own entry point (not in cblas.h). */
char *openblas_get_corename(void);

const char *blas_core_name(void) { return openblas_get_corename(); }

int blas_cpu_has_avx512(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE)) return 0;
    /* XCR0: the OS saves SSE, AVX and all three AVX-512 state components. */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xe6) != 0xe6) return 0;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    unsigned need = bit_AVX512F | bit_AVX512DQ | bit_AVX512BW | bit_AVX512VL;
    return (b & need) == need;
}

static int core_uses_avx512(const char *name) {
    static const char *fast[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    for (size_t i = 0; i < sizeof fast / sizeof fast[0]; i++)
        if (name && strcasecmp(name, fast[i]) == 0) return 1;
    return 0;
}

int blas_needs_reexec(const char *coretype_env, int has_avx512, const char *core) {
    return !coretype_env && has_avx512 && !core_uses_avx512(core);
}

void blas_setup(char **argv) {
    if (!blas_needs_reexec(getenv("OPENBLAS_CORETYPE"), blas_cpu_has_avx512(), blas_core_name())) return;
    if (setenv("OPENBLAS_CORETYPE", "SkylakeX", 1) != 0) return;
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc?): keep running with the slow kernels. */
    unsetenv("OPENBLAS_CORETYPE");
}

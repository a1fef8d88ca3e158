/* blas.c — see blas.h. */
#include "blas.h"

#include <cblas.h>
#include <cpuid.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/cli.h"

/* OpenBLAS's own entry points (not in Debian's cblas.h). */
char *openblas_get_corename(void);
int openblas_get_num_threads(void);

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

/* OpenBLAS gives each of its threads a 128 MiB work buffer (the workers at
 * start, the caller at its first product) and, when an allocation fails,
 * retries forever: under an address-space limit (ulimit -v) a tool could
 * hang, even at exit, where the workers are joined. So under such a limit
 * OpenBLAS runs on the calling thread only (unless the user chose a thread
 * count), takes its buffer before the model is loaded, and a limit without
 * room for it is an error. */
#define OPENBLAS_BUFFER_BYTES ((size_t)(128 << 20) + (1 << 20))

static int address_space_limited(struct rlimit *rl) {
    return getrlimit(RLIMIT_AS, rl) == 0 && rl->rlim_cur != RLIM_INFINITY;
}

static void reserve_openblas_buffer(void) {
    struct rlimit rl;
    if (!address_space_limited(&rl)) return;
    void *probe = mmap(NULL, OPENBLAS_BUFFER_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (probe == MAP_FAILED) {
        /* _exit: OpenBLAS threads the user asked for may be stuck allocating. */
        fprintf(stderr, "%s: the address-space limit (ulimit -v %llu KiB) leaves no room for OpenBLAS's 128 MiB buffer\n",
                prog_name, (unsigned long long)rl.rlim_cur / 1024);
        _exit(1);
    }
    munmap(probe, OPENBLAS_BUFFER_BYTES);
    /* Large enough for the blocked path, the one that takes the buffer. */
    const int n = 256;
    float *a = xcalloc((size_t)3 * n * n, sizeof *a);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, a + n * n, n, 0.0f, a + 2 * n * n, n);
    free(a);
}

void blas_setup(char **argv) {
    int reexec = 0;
    if (blas_needs_reexec(getenv("OPENBLAS_CORETYPE"), blas_cpu_has_avx512(), blas_core_name()))
        reexec |= setenv("OPENBLAS_CORETYPE", "SkylakeX", 1) == 0;
    struct rlimit rl;
    if (address_space_limited(&rl) && !getenv("OPENBLAS_NUM_THREADS") && !getenv("OMP_NUM_THREADS") &&
        !getenv("GOTO_NUM_THREADS") && openblas_get_num_threads() > 1)
        reexec |= setenv("OPENBLAS_NUM_THREADS", "1", 1) == 0;
    if (reexec) {
        execv("/proc/self/exe", argv);
        /* exec failed (no /proc?): keep running as we are. */
    }
    reserve_openblas_buffer();
}

/* blas.c — blas_setup() gives OpenBLAS its AVX-512 kernels when the CPU has
 * them, and leaves a user's OPENBLAS_CORETYPE alone. Runs itself as a child
 * with a controlled environment and reads back the core OpenBLAS chose. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "kernels/blas.h"
#include "base/cli.h"
#include "tap.h"

static char self[4096];

/* Runs this test as a child with env_prefix (an `env` argument list) and
 * returns the core name it printed. */
static char *child_core(const char *env_prefix) {
    static char line[3][128];
    static int k;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "env -u OPENBLAS_CORETYPE %s TUNEPIPE_BLAS_CHILD=1 '%s'", env_prefix, self);
    FILE *p = popen(cmd, "r");
    char *out = line[k++ % 3];
    out[0] = '\0';
    if (!p || !fgets(out, sizeof line[0], p)) snprintf(out, sizeof line[0], "(no output)");
    if (p) pclose(p);
    out[strcspn(out, "\n")] = '\0';
    return out;
}

int main(int argc, char **argv) {
    (void)argc;
    if (getenv("TUNEPIPE_BLAS_CHILD")) {
        cli_init("blas.t");
        blas_setup(argv);
        printf("%s %s\n", blas_core_name(), getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "-");
        return 0;
    }
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) skip_all("no /proc/self/exe");
    self[n] = '\0';
    int avx512 = blas_cpu_has_avx512();
    note("AVX-512: %s; this process's core: %s", avx512 ? "yes" : "no", blas_core_name());
    char *plain = child_core("");
    /* The core OpenBLAS picks by itself differs between CPU models (this
     * test cannot make it pick Prescott), so the decision is also checked
     * on its own below. */
    if (avx512)
        ok(strncasecmp(plain, "SkylakeX SkylakeX", 17) == 0 || strncasecmp(plain, "SkylakeX -", 10) == 0 ||
           strncasecmp(plain, "Cooperlake -", 12) == 0 || strncasecmp(plain, "SapphireRapids -", 16) == 0,
           "with AVX-512 and no OPENBLAS_CORETYPE, the tool runs AVX-512 kernels (%s)", plain);
    else
        ok(strstr(plain, " -") != NULL, "without AVX-512 nothing is set (%s)", plain);
    ok(blas_needs_reexec(NULL, 1, "Prescott"), "Prescott on an AVX-512 CPU: re-exec");
    ok(blas_needs_reexec(NULL, 1, "Haswell"), "Haswell on an AVX-512 CPU: re-exec");
    ok(!blas_needs_reexec(NULL, 1, "SkylakeX"), "SkylakeX already: no re-exec");
    ok(!blas_needs_reexec(NULL, 0, "Prescott"), "no AVX-512: no re-exec");
    ok(!blas_needs_reexec("Prescott", 1, "Prescott"), "the user's OPENBLAS_CORETYPE: no re-exec");
    char *user = child_core("OPENBLAS_CORETYPE=Haswell");
    ok(strcasecmp(user, "Haswell Haswell") == 0, "a user's OPENBLAS_CORETYPE=Haswell is kept (%s)", user);
    return done_testing();
}

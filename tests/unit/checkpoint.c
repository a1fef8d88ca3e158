/* checkpoint.c — the safetensors writer read back by the strict reader,
 * dtype rounding as torch does it, the resumable state, config.json's
 * dtype, atomic replacement. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/checkpoint.h"
#include "base/cli.h"
#include "base/io.h"
#include "nn/model.h"
#include "nn/model_io.h"
#include "nn/safetensors.h"
#include "tap.h"

#define TINY "tests/data/tiny-neox/tiny-f32"

static char dir[256];

/* A step that must work, else the reason and a bail-out. */
static char why[ERR_MAX];
static void must(int done) {
    if (!done) {
        printf("Bail out! %s\n", why);
        exit(1);
    }
}

static char *path_in(const char *name) {
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static int lanes_differ;

/* Bits of the stored 16-bit value of x after a round trip through dtype,
 * from 37 copies of it: the vector loop's lanes and the scalar tail must
 * all agree (lanes_differ counts where they do not). */
static uint16_t stored_half(float x, st_dtype dtype) {
    enum { N = 37 };
    float xs[N];
    for (int i = 0; i < N; i++) xs[i] = x;
    st_out_tensor t = {"x", 1, {N, 0}, xs, N};
    must(st_write(path_in("half.safetensors"), &t, 1, dtype, NULL, NULL, 0, why, sizeof why));
    st_file f;
    char err[200];
    if (!st_open(&f, path_in("half.safetensors"), err, sizeof err)) { printf("Bail out! %s\n", err); exit(1); }
    const st_tensor *st = st_find(&f, "x");
    uint16_t h[N];
    memcpy(h, f.data + st->begin, sizeof h);
    st_close(&f);
    for (int i = 1; i < N; i++) lanes_differ += h[i] != h[0];
    return h[0];
}

/* Values exact in dtype (subnormals, signed zero, infinity, the largest
 * finite) come back bit for bit, through the vector loop and the tail. */
static void test_half_read(st_dtype dtype, const float *vals, int nvals) {
    enum { N = 53 };
    float xs[N], back[N];
    for (int i = 0; i < N; i++) xs[i] = vals[i % nvals];
    st_out_tensor t = {"x", 1, {N, 0}, xs, N};
    must(st_write(path_in("half.safetensors"), &t, 1, dtype, NULL, NULL, 0, why, sizeof why));
    st_file f;
    char err[200];
    if (!st_open(&f, path_in("half.safetensors"), err, sizeof err)) { printf("Bail out! %s\n", err); exit(1); }
    int read = st_read_f32(&f, st_find(&f, "x"), back, why, sizeof why) == 1;
    st_close(&f);
    ok(read && memcmp(xs, back, sizeof xs) == 0, "%s: exact values read back bit for bit", st_dtype_name(dtype));
}

static void test_rounding(void) {
    ok(stored_half(1.0f, ST_BF16) == 0x3f80 && stored_half(-2.0f, ST_BF16) == 0xc000, "bf16 of 1 and -2");
    /* 1 + 2^-8 is half-way between two bf16 values: to even (down);
     * 1 + 3·2^-8 is half-way too: to even (up). */
    ok(stored_half(1.00390625f, ST_BF16) == 0x3f80 && stored_half(1.01171875f, ST_BF16) == 0x3f82,
       "bf16 rounds half-way cases to even, as torch");
    ok(stored_half(1.0f / 3, ST_BF16) == 0x3eab, "bf16 of 1/3 rounds to nearest");
    uint16_t nan = stored_half(NAN, ST_BF16);
    ok((nan & 0x7f80) == 0x7f80 && (nan & 0x7f), "bf16 keeps NaN a NaN");
    ok(stored_half(1.0f, ST_F16) == 0x3c00 && stored_half(65504.0f, ST_F16) == 0x7bff && stored_half(1e6f, ST_F16) == 0x7c00,
       "f16 of 1, the largest finite, and overflow to infinity");
    ok(stored_half(1.0f + 1.0f / 2048, ST_F16) == 0x3c00, "f16 rounds half-way to even");
    ok(stored_half(0x1p-20f, ST_F16) == 0x0010 && stored_half(-0.0f, ST_F16) == 0x8000 &&
       stored_half(INFINITY, ST_BF16) == 0x7f80 && stored_half(0x1.fep127f, ST_BF16) == 0x7f7f &&
       stored_half(3.4e38f, ST_BF16) == 0x7f80, "f16 subnormal and -0; bf16 infinity, largest finite, overflow");
    ok(lanes_differ == 0, "the vector conversion agrees with the scalar one lane for lane");
    const float f16_exact[] = {0x1p-20f, -0x1p-24f, 65504.0f, -0.0f, INFINITY, 1.5f, -3.25f, 0x1p-14f};
    const float bf16_exact[] = {0x1p-130f, -0.0f, -INFINITY, 1.5f, 0x1.fep127f, -0x1p-126f, 3.0f};
    test_half_read(ST_F16, f16_exact, sizeof f16_exact / sizeof *f16_exact);
    test_half_read(ST_BF16, bf16_exact, sizeof bf16_exact / sizeof *bf16_exact);
}

/* model_save then model_load gives the same parameters (exactly in f32,
 * to bf16/f16 precision otherwise), and config.json says the dtype. */
static void test_model_round_trip(void) {
    neox_model m, back;
    char err[256];
    if (!model_load(&m, TINY, err, sizeof err)) { printf("Bail out! %s\n", err); exit(1); }
    char *cfg_text = read_file(TINY "/config.json", NULL);
    st_dtype dtypes[3] = {ST_F32, ST_F16, ST_BF16};
    /* Relative rounding error bounds; f16 values below its smallest normal
     * (2^-14) are compared as if they were that large. */
    double tolerance[3] = {0, 1.0 / 2048, 1.0 / 256}, floor_[3] = {1e-30, 0x1p-14, 1e-30};
    for (int k = 0; k < 3; k++) {
        char *cfg = config_with_dtype(cfg_text, dtypes[k], why, sizeof why);
        must(cfg != NULL);
        must(atomic_write_file(path_in("config.json"), cfg, strlen(cfg), why, sizeof why));
        must(model_save(path_in("model.safetensors"), &m, dtypes[k], why, sizeof why));
        int loaded = model_load(&back, dir, err, sizeof err);
        double worst = 0;
        for (size_t i = 0; loaded && i < m.num_params; i++)
            worst = fmax(worst, fabs(back.params[i] - m.params[i]) / fmax(fabs(m.params[i]), floor_[k]));
        ok(loaded && worst <= tolerance[k], "%s: model_save, model_load round trip (worst relative %.2e)",
           st_dtype_name(dtypes[k]), worst);
        ok(config_torch_dtype(cfg) == dtypes[k], "%s: config.json names the dtype", st_dtype_name(dtypes[k]));
        if (loaded) model_free(&back);
        free(cfg);
    }
    free(cfg_text);
    model_free(&m);
}

static void test_state_round_trip(void) {
    neox_model m;
    char err[256];
    if (!model_load(&m, TINY, err, sizeof err)) { printf("Bail out! %s\n", err); exit(1); }
    size_t n = m.num_params;
    float *am = xmalloc(n * sizeof(float)), *av = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        am[i] = (float)i * 1e-3f;
        av[i] = 1.0f / (float)(i + 1);
    }
    float *params = xmalloc(n * sizeof(float));
    memcpy(params, m.params, n * sizeof(float));
    must(state_save(path_in("state.safetensors"), &m, am, av, "{\"step\":7}", why, sizeof why));
    float *bm = xcalloc(n, sizeof(float)), *bv = xcalloc(n, sizeof(float));
    memset(m.params, 0, n * sizeof(float));
    char *json = state_load(path_in("state.safetensors"), &m, bm, bv, why, sizeof why);
    must(json != NULL);
    ok(memcmp(params, m.params, n * sizeof(float)) == 0 && memcmp(am, bm, n * sizeof(float)) == 0 &&
       memcmp(av, bv, n * sizeof(float)) == 0 && strcmp(json, "{\"step\":7}") == 0,
       "state_save, state_load: parameters, moments and JSON come back exactly");
    free(json);
    free(am);
    free(av);
    free(bm);
    free(bv);
    free(params);
    model_free(&m);
}

/* An empty tensor keeps its dtype's reader: F32 reads as float, not integer. */
static void test_empty_tensor(void) {
    float none = 0;
    st_out_tensor t = {"e", 1, {0, 0}, &none, 0};
    must(st_write(path_in("empty.safetensors"), &t, 1, ST_F32, NULL, NULL, 0, why, sizeof why));
    st_file f;
    char err[200];
    if (!st_open(&f, path_in("empty.safetensors"), err, sizeof err)) { printf("Bail out! %s\n", err); exit(1); }
    const st_tensor *st = st_find(&f, "e");
    int64_t i64;
    ok(st && st->numel == 0 && st_read_f32(&f, st, &none, why, sizeof why) == 1 && !st_read_i64(&f, st, &i64),
       "an empty F32 tensor reads as float, not as integer");
    st_close(&f);
}

/* O_DIRECT files take pieces of any length from any address: the file is
 * their concatenation, whether a piece goes to the disk straight from the
 * caller's memory, through the stage, or ends in a partial block. */
static void test_direct_pieces(void) {
    enum { SRC = 9 << 20 };
    unsigned char *src = aligned_alloc(4096, SRC);
    for (size_t i = 0; i < SRC; i++) src[i] = (unsigned char)(i * 131 + (i >> 12));
    /* {offset into src, length}: aligned and not, shorter than a block,
     * across blocks, longer than the stage. */
    static const size_t pieces[][2] = {{0, 3},       {3, 4093},        {4096, 8192},  {12288, 1},
                                       {12289, 4095}, {16384, 3 << 20}, {7, 5000},     {8192, (1 << 20) + 5},
                                       {1, 4096},     {4096, 2 << 20},  {100, 70000},  {4096 * 3, 4097}};
    size_t n = sizeof pieces / sizeof *pieces, total = 0;
    atomic_file af;
    must(atomic_open_direct(&af, path_in("direct.bin"), why, sizeof why));
    for (size_t i = 0; i < n; i++) {
        must(atomic_write(&af, src + pieces[i][0], pieces[i][1], why, sizeof why));
        total += pieces[i][1];
    }
    must(atomic_commit(&af, why, sizeof why));
    size_t len;
    unsigned char *back = (unsigned char *)read_file(path_in("direct.bin"), &len);
    int same = len == total;
    for (size_t i = 0, at = 0; same && i < n; at += pieces[i][1], i++)
        same = memcmp(back + at, src + pieces[i][0], pieces[i][1]) == 0;
    ok(same, "an O_DIRECT file is the concatenation of its pieces, aligned or not (%zu bytes)", total);
    free(back);
    free(src);
}

/* f32 tensors of a page-aligned block go out straight from it, the data
 * section starting on a 4 KB boundary; bf16 and f16 are converted in
 * chunks that run across tensors. Small integers are exact in all three. */
static void test_direct_tensors(void) {
    static const size_t sizes[] = {1, 1023, 300001, 4096, 262143, 7};
    enum { NT = sizeof sizes / sizeof *sizes };
    size_t total = 0;
    for (int i = 0; i < NT; i++) total += sizes[i];
    float *block = aligned_alloc(4096, (total * sizeof(float) + 4095) / 4096 * 4096);
    for (size_t i = 0; i < total; i++) block[i] = (float)((i * 7) % 255) - 127;
    st_out_tensor t[NT];
    char names[NT][8];
    for (size_t i = 0, at = 0; i < NT; at += sizes[i], i++) {
        snprintf(names[i], sizeof names[i], "t%zu", i);
        t[i] = (st_out_tensor){names[i], 1, {(int64_t)sizes[i], 0}, block + at, sizes[i]};
    }
    st_dtype dtypes[3] = {ST_F32, ST_BF16, ST_F16};
    float *back = xmalloc(total * sizeof(float));
    for (int k = 0; k < 3; k++) {
        must(st_write(path_in("direct.safetensors"), t, NT, dtypes[k], NULL, NULL, 0, why, sizeof why));
        st_file f;
        char err[200];
        int same = st_open(&f, path_in("direct.safetensors"), err, sizeof err);
        int aligned = same && (f.data - f.map) % 4096 == 0;
        for (size_t i = 0, at = 0; same && i < NT; at += sizes[i], i++) {
            const st_tensor *st = st_find(&f, names[i]);
            same = st && st->dtype == dtypes[k] && st_read_f32(&f, st, back + at, why, sizeof why) == 1 &&
                   memcmp(back + at, block + at, sizes[i] * sizeof(float)) == 0;
        }
        ok(same && aligned, "%s: tensors of odd sizes from an aligned block read back exactly; data at a 4 KB boundary",
           st_dtype_name(dtypes[k]));
        if (f.map) st_close(&f);
    }
    free(back);
    free(block);
}

static void test_atomic(void) {
    must(atomic_write_file(path_in("a.txt"), "old\n", 4, why, sizeof why));
    atomic_file af;
    must(atomic_open(&af, path_in("a.txt"), why, sizeof why));
    must(atomic_write(&af, "new, not committed\n", 19, why, sizeof why));
    size_t len;
    char *text = read_file(path_in("a.txt"), &len);
    ok(len == 4 && memcmp(text, "old\n", 4) == 0, "until commit the old file stays in place");
    free(text);
    must(atomic_commit(&af, why, sizeof why));
    text = read_file(path_in("a.txt"), &len);
    ok(len == 19 && memcmp(text, "new, not committed\n", 19) == 0, "commit replaces it");
    free(text);
    struct stat st;
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path_in("a.txt"), (long)getpid());
    ok(stat(tmp, &st) != 0, "no temporary file remains");
}

/* A file that cannot be written is a returned reason, not an exit; a
 * state that does not fit the model says which tensor. */
static void test_errors_returned(void) {
    char err[ERR_MAX], path[600];
    snprintf(path, sizeof path, "%s/no-such-dir/a.txt", dir);
    int done = atomic_write_file(path, "x", 1, err, sizeof err);
    ok(!done && strstr(err, "no-such-dir/a.txt.tmp.") && strstr(err, ": cannot create: No such file or directory"),
       "atomic_write_file into a missing directory returns the reason: %s", err);
    float x = 1;
    st_out_tensor t = {"x", 1, {1, 0}, &x, 1};
    must(st_write(path_in("empty.safetensors"), &t, 1, ST_F32, NULL, NULL, 0, why, sizeof why));
    neox_model m;
    if (!model_load(&m, TINY, err, sizeof err)) { printf("Bail out! %s\n", err); exit(1); }
    char *json = state_load(path_in("empty.safetensors"), &m, m.params, m.params, err, sizeof err);
    ok(!json && strstr(err, ": no tensor param."), "state_load of another file returns the reason: %s", err);
    model_free(&m);
}

int main(void) {
    cli_init("checkpoint.t");
    snprintf(dir, sizeof dir, "%s/tunepipe-ckpt.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) { printf("Bail out! mkdtemp\n"); return 1; }
    test_rounding();
    test_model_round_trip();
    test_state_round_trip();
    test_empty_tensor();
    test_direct_pieces();
    test_direct_tensors();
    test_atomic();
    test_errors_returned();
    const char *files[] = {"half.safetensors", "empty.safetensors", "config.json", "model.safetensors",
                           "state.safetensors", "a.txt", "direct.bin", "direct.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) unlink(path_in(files[i]));
    rmdir(dir);
    return done_testing();
}

/* device_open.c — finding a device by name; see device.h. The CUDA
 * backend is a shared object loaded here, so the tools never link CUDA
 * and run where there is no GPU driver. */
#include "device.h"

#include <dlfcn.h>

#include "base/cli.h"
#include "kernels/gemm.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TUNEPIPE_CUDA_LIB
#define TUNEPIPE_CUDA_LIB ""
#endif
#ifndef TUNEPIPE_LIBDIR
#define TUNEPIPE_LIBDIR "/usr/local/lib/tunepipe"
#endif

typedef const device_ops *(*device_entry)(char *err, size_t errlen);

const device_ops *device_open(const char *name, char *err, size_t errlen) {
    if (strcmp(name, "cpu") == 0) return &device_cpu;
    if (strcmp(name, "cuda") != 0) {
        snprintf(err, errlen, "unknown device '%s' (cpu or cuda)", name);
        return NULL;
    }
    /* TUNEPIPE_CUDA_LIB, else the build tree's, else the installed one */
    const char *env = getenv("TUNEPIPE_CUDA_LIB");
    const char *paths[] = {env && *env ? env : NULL, TUNEPIPE_CUDA_LIB, TUNEPIPE_LIBDIR "/libtunepipe-cuda.so"};
    void *lib = NULL;
    char why[512] = "";
    for (size_t i = 0; i < sizeof paths / sizeof *paths && !lib; i++) {
        if (!paths[i] || !*paths[i]) continue;
        lib = dlopen(paths[i], RTLD_NOW | RTLD_LOCAL);
        if (!lib && !*why) snprintf(why, sizeof why, "%s", dlerror());
        if (env && *env) break; /* the one asked for, or nothing */
    }
    if (!lib) {
        snprintf(err, errlen, "--device cuda: no CUDA backend in this build (%s)",
                 *why ? why : "built without nvcc");
        return NULL;
    }
    device_entry entry = (device_entry)dlsym(lib, "tunepipe_cuda_device");
    if (!entry) {
        snprintf(err, errlen, "--device cuda: %s", dlerror());
        return NULL;
    }
    char reason[400] = "";
    const device_ops *dev = entry(reason, sizeof reason);
    if (!dev) snprintf(err, errlen, "--device cuda: no usable GPU: %s", reason);
    return dev;
}

const char *device_default_name(void) {
    const char *env = getenv("TUNEPIPE_DEVICE");
    return env && *env ? env : "cpu";
}

void *device_host_alloc(const device_ops *dev, size_t bytes) {
    if (!dev->host_alloc) return xmalloc(bytes);
    void *p = dev->host_alloc(bytes ? bytes : 1);
    if (!p) out_of_memory("out of page-locked host memory for %s (%zu MB more)", dev->name, bytes >> 20);
    return p;
}

void device_host_release(const device_ops *dev, void *p) {
    if (dev->host_release) dev->host_release(p);
    else free(p);
}

void *device_alloc(const device_ops *dev, size_t bytes) {
    void *p = dev->alloc(bytes ? bytes : 1);
    if (!p) out_of_memory("out of %s memory (%zu MB more)", dev->name, bytes >> 20);
    return p;
}

void device_regrow(const device_ops *dev, float **p, size_t n) {
    dev->release(*p);
    *p = device_alloc(dev, n * sizeof(float));
}

void device_tell_kernels(const device_ops *dev, int bf16) {
    if (dev->host_memory) {
        gemm_tell_kernels(bf16);
        return;
    }
    fprintf(stderr, "%s: %s products on %s (%s), the rest in fp32 on it\n", prog_name, bf16 ? "bf16" : "fp32",
            dev->card, bf16 ? "fp32 accumulation" : "no TF32");
}

void device_tell_peak_memory(const device_ops *dev) {
    if (dev->peak_memory)
        fprintf(stderr, "%s: at most %.2f GiB of %s memory held (the CUDA context's own not counted)\n", prog_name,
                dev->peak_memory() / 1073741824.0, dev->name);
}

/* driver.c - the NVIDIA driver API loaded with dlopen: the probe, devices, buffers, kernel launches
 * (cuda.h). The fatbin of kernels.cu is linked in (kernels_fatbin.c, generated at build time by nvcc and xxd).
 * Not for: layers, device choice (compute/context.c). */
#include "compute/backend/cuda/cuda.h"

#include <cuda.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const unsigned char cuda_kernels_fatbin[]; /* kernels_fatbin.c */

#define XSTR_(s) #s
#define XSTR(s) XSTR_(s)

/* The driver entry points we use, typed from cuda.h; cuda.h's macros (cuMemAlloc -> cuMemAlloc_v2) apply to
 * the field names and the dlsym names alike. */
#define CU_SYMBOLS(X)                                                                                                  \
        X(cuInit)                                                                                                      \
        X(cuDriverGetVersion)                                                                                          \
        X(cuGetErrorString)                                                                                            \
        X(cuDeviceGetCount)                                                                                            \
        X(cuDeviceGet)                                                                                                 \
        X(cuDeviceGetName)                                                                                             \
        X(cuDeviceTotalMem)                                                                                            \
        X(cuDeviceGetAttribute)                                                                                        \
        X(cuDevicePrimaryCtxRetain)                                                                                    \
        X(cuDevicePrimaryCtxRelease)                                                                                   \
        X(cuCtxSetCurrent)                                                                                             \
        X(cuMemGetInfo)                                                                                                \
        X(cuModuleLoadData)                                                                                            \
        X(cuModuleUnload)                                                                                              \
        X(cuModuleGetFunction)                                                                                         \
        X(cuStreamCreate)                                                                                              \
        X(cuStreamDestroy)                                                                                             \
        X(cuStreamSynchronize)                                                                                         \
        X(cuMemAlloc)                                                                                                  \
        X(cuMemFree)                                                                                                   \
        X(cuMemcpyHtoDAsync)                                                                                           \
        X(cuMemcpyDtoHAsync)                                                                                           \
        X(cuLaunchKernel)

static struct {
        void *lib;
#define FIELD(name) __typeof__(name) *name;
        CU_SYMBOLS(FIELD)
#undef FIELD
} cu;

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static struct cuda_probe probe;

static const char *cu_strerror(CUresult r) {
        const char *s = NULL;
        if (cu.cuGetErrorString && cu.cuGetErrorString(r, &s) == CUDA_SUCCESS && s)
                return s;
        return "unknown CUDA error";
}

static void probe_run(void) {
        struct cuda_probe *p = &probe;
        cu.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
        if (!cu.lib) {
                const char *e = dlerror();
                snprintf(p->reason, sizeof(p->reason), "no NVIDIA driver: %s", e ? e : "libcuda.so.1 not found");
                return;
        }
#define LOAD(name)                                                                                                     \
        cu.name = (__typeof__(name) *)dlsym(cu.lib, XSTR(name));                                                       \
        if (!cu.name) {                                                                                                \
                snprintf(p->reason, sizeof(p->reason), "the NVIDIA driver is too old: it has no %s", XSTR(name));      \
                return;                                                                                                \
        }
        CU_SYMBOLS(LOAD)
#undef LOAD
        CUresult r = cu.cuInit(0);
        if (r == CUDA_ERROR_NO_DEVICE) {
                snprintf(p->reason, sizeof(p->reason), "no CUDA device");
                return;
        }
        if (r != CUDA_SUCCESS) {
                snprintf(p->reason, sizeof(p->reason), "the NVIDIA driver did not start: %s", cu_strerror(r));
                return;
        }
        p->driver = true;
        cu.cuDriverGetVersion(&p->driver_version);
        if (cu.cuDeviceGetCount(&p->count) != CUDA_SUCCESS || p->count <= 0) {
                p->count = 0;
                snprintf(p->reason, sizeof(p->reason), "no CUDA device");
                return;
        }
        CUdevice dev;
        size_t mem = 0;
        if (cu.cuDeviceGet(&dev, 0) == CUDA_SUCCESS) {
                if (cu.cuDeviceGetName(p->name, sizeof(p->name), dev) != CUDA_SUCCESS)
                        p->name[0] = '\0';
                if (cu.cuDeviceTotalMem(&mem, dev) == CUDA_SUCCESS)
                        p->memory_bytes = mem;
                cu.cuDeviceGetAttribute(&p->cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
                cu.cuDeviceGetAttribute(&p->cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
        }
}

void cuda_probe(struct cuda_probe *ret) {
        pthread_once(&probe_once, probe_run);
        *ret = probe;
}

struct cuda_device {
        int index;
        CUdevice dev;
        bool retained;
        CUmodule module;
        CUstream stream;
        uint64_t free_bytes;
        char name[CUDA_NAME_MAX];
};

static int cu_error(CUresult r, struct cuda_device *d, const char *what, struct ft_error *err) {
        int e = r == CUDA_ERROR_OUT_OF_MEMORY ? -ENOMEM : r == CUDA_ERROR_NO_BINARY_FOR_GPU ? -ENODEV : -EIO;
        return ft_error_set(err, e, "device", "cuda: %s on CUDA device %d '%s': %s", what, d->index, d->name,
                            r == CUDA_ERROR_OUT_OF_MEMORY ? "out of memory" : cu_strerror(r));
}

int cuda_device_open(int index, struct cuda_device **ret, struct ft_error *err) {
        struct ft_error local;
        if (!err)
                err = &local;
        struct cuda_probe p;
        cuda_probe(&p);
        if (p.count == 0)
                return ft_error_set(err, -ENODEV, "device", "%s", p.reason);
        if (index < 0 || index >= p.count)
                return ft_error_set(err, -ENODEV, "device", "no CUDA device %d (this machine has %d)", index, p.count);
        struct cuda_device *d = calloc(1, sizeof(*d));
        if (!d)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        d->index = index;
        CUresult r = cu.cuDeviceGet(&d->dev, index);
        if (r == CUDA_SUCCESS && cu.cuDeviceGetName(d->name, sizeof(d->name), d->dev) != CUDA_SUCCESS)
                snprintf(d->name, sizeof(d->name), "?");
        CUcontext ctx = NULL;
        if (r == CUDA_SUCCESS)
                r = cu.cuDevicePrimaryCtxRetain(&ctx, d->dev);
        if (r != CUDA_SUCCESS) {
                cu_error(r, d, "creating the context", err);
                goto fail;
        }
        d->retained = true;
        r = cu.cuCtxSetCurrent(ctx);
        size_t free_b = 0, total_b = 0;
        if (r == CUDA_SUCCESS)
                r = cu.cuMemGetInfo(&free_b, &total_b);
        if (r != CUDA_SUCCESS) {
                cu_error(r, d, "asking for free memory", err);
                goto fail;
        }
        d->free_bytes = free_b;
        if (free_b < CUDA_MIN_FREE_BYTES) {
                ft_error_set(err, -ENOMEM, "device",
                             "out of memory on CUDA device %d '%s': %zu MiB free, %llu MiB needed", index, d->name,
                             free_b >> 20, (unsigned long long)(CUDA_MIN_FREE_BYTES >> 20));
                goto fail;
        }
        r = cu.cuModuleLoadData(&d->module, cuda_kernels_fatbin);
        if (r != CUDA_SUCCESS) {
                cu_error(r, d, "loading the kernels (built for sm_80, sm_90 and PTX)", err);
                goto fail;
        }
        r = cu.cuStreamCreate(&d->stream, CU_STREAM_NON_BLOCKING);
        if (r != CUDA_SUCCESS) {
                cu_error(r, d, "creating a stream", err);
                goto fail;
        }
        *ret = d;
        return 0;
fail:
        cuda_device_close(d);
        return err->code;
}

void cuda_device_close(struct cuda_device *d) {
        if (!d)
                return;
        if (d->stream)
                cu.cuStreamDestroy(d->stream);
        if (d->module)
                cu.cuModuleUnload(d->module);
        if (d->retained)
                cu.cuDevicePrimaryCtxRelease(d->dev);
        free(d);
}

const char *cuda_device_name(const struct cuda_device *d) {
        return d->name;
}

int cuda_device_index(const struct cuda_device *d) {
        return d->index;
}

uint64_t cuda_device_free_bytes(const struct cuda_device *d) {
        return d->free_bytes;
}

int cuda_alloc(struct cuda_device *d, size_t n_floats, uint64_t *ret, struct ft_error *err) {
        CUdeviceptr p = 0;
        CUresult r = cu.cuMemAlloc(&p, (n_floats ? n_floats : 1) * sizeof(float));
        if (r != CUDA_SUCCESS)
                return cu_error(r, d, "allocating device memory", err);
        *ret = (uint64_t)p;
        return 0;
}

void cuda_free(struct cuda_device *d, uint64_t ptr) {
        if (d && ptr)
                cu.cuMemFree((CUdeviceptr)ptr);
}

int cuda_upload(struct cuda_device *d, uint64_t dst, const float *src, size_t n, struct ft_error *err) {
        CUresult r = cu.cuMemcpyHtoDAsync((CUdeviceptr)dst, src, n * sizeof(float), d->stream);
        return r == CUDA_SUCCESS ? 0 : cu_error(r, d, "copying to the device", err);
}

int cuda_download(struct cuda_device *d, float *dst, uint64_t src, size_t n, struct ft_error *err) {
        CUresult r = cu.cuMemcpyDtoHAsync(dst, (CUdeviceptr)src, n * sizeof(float), d->stream);
        if (r == CUDA_SUCCESS)
                r = cu.cuStreamSynchronize(d->stream);
        return r == CUDA_SUCCESS ? 0 : cu_error(r, d, "copying from the device", err);
}

int cuda_sync(struct cuda_device *d, struct ft_error *err) {
        CUresult r = cu.cuStreamSynchronize(d->stream);
        return r == CUDA_SUCCESS ? 0 : cu_error(r, d, "waiting for the stream", err);
}

int cuda_launch(struct cuda_device *d, const char *name, long n, void **args, struct ft_error *err) {
        CUfunction f;
        CUresult r = cu.cuModuleGetFunction(&f, d->module, name);
        if (r != CUDA_SUCCESS)
                return cu_error(r, d, name, err);
        if (n <= 0)
                return 0;
        unsigned blocks = (unsigned)((n + 255) / 256);
        r = cu.cuLaunchKernel(f, blocks, 1, 1, 256, 1, 1, 0, d->stream, args, NULL);
        return r == CUDA_SUCCESS ? 0 : cu_error(r, d, name, err);
}

/* cuda.h - the CUDA backend's device layer (private to compute/): the NVIDIA driver loaded at run time with
 * dlopen (libcuda.so.1), so a build with -Dcuda=enabled has no hard dependency on it and runs on a machine
 * without a GPU; the probe behind device selection (compute/context.c) and /v1/version; one opened device
 * per compute context (its primary context, our kernels' module from kernels.cu, a stream); device buffers
 * and kernel launches.
 *
 * Not for: layers (cuDNN/cuBLAS, loaded the same way once the layer families are ported), device choice
 * policy (context.c). Built only with HAVE_CUDA. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

#define CUDA_NAME_MAX 128
#define CUDA_REASON_MAX 200
/* a device with less free memory than this is "out of memory" for device selection */
#define CUDA_MIN_FREE_BYTES ((uint64_t)256 << 20)

struct cuda_probe {
        bool driver; /* libcuda.so.1 loaded and cuInit succeeded */
        int driver_version; /* cuDriverGetVersion: 13000 is 13.0 */
        int count; /* devices */
        char name[CUDA_NAME_MAX]; /* device 0 */
        uint64_t memory_bytes; /* device 0 total */
        int cc_major, cc_minor; /* device 0 compute capability */
        char reason[CUDA_REASON_MAX]; /* why there is no device ("" when count > 0) */
};

/* What the driver says, loaded and asked once per process (thread-safe). Never fails: no driver or no
 * device is in ret->reason ("no NVIDIA driver: libcuda.so.1: cannot open shared object file"). */
void cuda_probe(struct cuda_probe *ret);

struct cuda_device;

/* Open device `index` for the calling thread: its primary context made current, the kernels' module loaded,
 * a stream. -ENODEV (no driver, no such device, no kernel image for its architecture), -ENOMEM (less than
 * CUDA_MIN_FREE_BYTES free, or the context cannot be created for lack of memory), -EIO; err says which and
 * names the device. */
int cuda_device_open(int index, struct cuda_device **ret, struct ft_error *err);
void cuda_device_close(struct cuda_device *d); /* NULL is a no-op */
const char *cuda_device_name(const struct cuda_device *d);
int cuda_device_index(const struct cuda_device *d);
uint64_t cuda_device_free_bytes(const struct cuda_device *d); /* at open */

/* Device memory (float32) and copies on the device's stream; cuda_sync waits for the stream. */
int cuda_alloc(struct cuda_device *d, size_t n_floats, uint64_t *ret, struct ft_error *err);
void cuda_free(struct cuda_device *d, uint64_t ptr);
int cuda_upload(struct cuda_device *d, uint64_t dst, const float *src, size_t n, struct ft_error *err);
int cuda_download(struct cuda_device *d, float *dst, uint64_t src, size_t n, struct ft_error *err);
int cuda_sync(struct cuda_device *d, struct ft_error *err);

/* Launch kernels.cu's `name` over n elements (256 threads a block) with args (cuLaunchKernel's kernelParams). */
int cuda_launch(struct cuda_device *d, const char *name, long n, void **args, struct ft_error *err);

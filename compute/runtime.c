/* runtime.c - what the compute library runs on: oneDNN version and ISA, CUDA.
 * Not for: choosing a backend (that is the backend's job). */
#include "compute/compute.h"

#include <stdio.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "config.h"
#if HAVE_CUDA
#include "compute/backend/cuda/cuda.h"
#endif

static const char *isa_name(dnnl_cpu_isa_t isa) {
        switch (isa) {
        case dnnl_cpu_isa_sse41: return "sse41";
        case dnnl_cpu_isa_avx: return "avx";
        case dnnl_cpu_isa_avx2: return "avx2";
        case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
        case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
        case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
        case dnnl_cpu_isa_avx512_core: return "avx512_core";
        case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
        case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
        case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
        case dnnl_cpu_isa_all: return "all";
        default: return "unknown";
        }
}

void compute_runtime_info(struct compute_runtime_info *info) {
        memset(info, 0, sizeof(*info));
        const dnnl_version_t *v = dnnl_version();
        if (v)
                snprintf(info->onednn_version, sizeof(info->onednn_version), "%d.%d.%d", v->major, v->minor, v->patch);
        snprintf(info->onednn_isa, sizeof(info->onednn_isa), "%s", isa_name(dnnl_get_effective_cpu_isa()));
        info->cuda_compiled = HAVE_CUDA;
#if HAVE_CUDA
        struct cuda_probe p;
        cuda_probe(&p);
        info->cuda_device = p.count > 0;
        info->cuda_devices = p.count;
        info->cuda_driver_version = p.driver_version;
        info->cuda_memory_bytes = p.memory_bytes;
        snprintf(info->cuda_device_name, sizeof(info->cuda_device_name), "%s", p.name);
        snprintf(info->cuda_reason, sizeof(info->cuda_reason), "%s", p.reason);
#else
        snprintf(info->cuda_reason, sizeof(info->cuda_reason), "cuda is not available in this build");
#endif
}

/* compute.h - the machine-learning library's umbrella header: runtime information, and the contracts of
 * tensors (tensor.h), per-thread contexts (context.h), models (model.h), losses (loss.h), optimizers
 * (optim.h), the training loop (train.h) and one job from spec to result (job.h). No HTTP, no SQL, no globals, no
 * logging, no exits. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "compute/context.h"
#include "compute/data.h"
#include "compute/explain.h"
#include "compute/job.h"
#include "compute/jobspec.h"
#include "compute/loss.h"
#include "compute/metrics.h"
#include "compute/model.h"
#include "compute/optim.h"
#include "compute/safetensors.h"
#include "compute/schedule.h"
#include "compute/tensor.h"
#include "compute/train.h"

struct compute_runtime_info {
        char onednn_version[32]; /* "2.6.3" */
        char onednn_isa[32]; /* the CPU ISA oneDNN dispatches to: "avx512_core_bf16" */
        bool cuda_compiled; /* built with -Dcuda=enabled */
        bool cuda_device; /* and a device is present now */
        char cuda_device_name[128]; /* device 0 */
        uint64_t cuda_memory_bytes; /* device 0's total memory */
        int cuda_devices; /* how many */
        int cuda_driver_version; /* 13000 is 13.0; 0: no driver */
        char cuda_reason[200]; /* why there is no device: "cuda is not available in this build", "no CUDA device" */
};

/* Fill info. Never fails; unknown fields are empty strings. */
void compute_runtime_info(struct compute_runtime_info *info);

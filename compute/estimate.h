/* estimate.h - a dry run's estimate measured on this machine (issue 18): train_run on the job's real model and
 * data for a few batches (no checkpoints, nothing written), timed, and from that and the job's size the expected
 * duration, the memory the run grew the process by, and what its checkpoints take on disk.
 *
 * Not for: validating a spec (jobspec.h, job.h do it before), loading data or models (job.h), deciding whether a
 * machine is loaded (the caller warns about workers x threads; a busy machine makes the estimate long).
 */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "common/common.h"
#include "compute/context.h"
#include "compute/data.h"
#include "compute/jobspec.h"
#include "compute/model.h"

#define ESTIMATE_WARMUP_STEPS 2 /* batches run first and not timed: primitive creation, first touches */
#define ESTIMATE_STEPS 8 /* batches timed at least after the warm-up (fewer when an epoch has fewer) */
#define ESTIMATE_MIN_SECONDS 1.0 /* and for at least this long (unless the first epoch ends first) */
#define ESTIMATE_MAX_SECONDS 5.0 /* and at most this long */

struct job_estimate {
        double seconds; /* the whole run: epochs x (training batches + validation) */
        bool first_epoch_measured; /* the first epoch ran whole: seconds = epochs x its time */
        double seconds_per_batch; /* the mean of the timed training batches */
        uint64_t batches_per_epoch, batches_total; /* training batches */
        uint64_t val_batches_per_epoch;
        unsigned batches_timed;
        uint64_t peak_memory_bytes; /* the process's largest resident size during the batches (the caller
                                     * subtracts what it held before loading the job: job_estimate_rss) */
        uint64_t checkpoint_bytes; /* one checkpoint: model + optimizer state (+ best weights) */
        unsigned checkpoints_kept; /* how many stay at once: checkpoint.keep, or all the run writes */
        uint64_t checkpoint_bytes_total; /* checkpoint_bytes x checkpoints_kept */
};

/* Run a few real batches of spec on m (built for the job, not yet trained; it is trained a little and must not
 * be used afterwards) and train/val (val NULL: validation_split) with ctx, and fill *ret. -EINVAL etc. as
 * train_run. */
int job_estimate_run(const struct jobspec *spec, struct model *m, struct compute_ctx *ctx, const struct dataset *train,
                     const struct dataset *val, struct job_estimate *ret, struct ft_error *err);

/* The process's resident memory now, in bytes (0 when unknown). */
uint64_t job_estimate_rss(void);

/* The estimate as JSON: {"seconds", "first_epoch_measured", "seconds_per_batch", "batches_per_epoch", "batches_total",
 * "validation_batches_per_epoch", "batches_timed", "peak_memory_bytes", "checkpoint_bytes", "checkpoints_kept",
 * "checkpoint_bytes_total"} (new reference, NULL when out of memory). */
json_t *job_estimate_json(const struct job_estimate *e);

/* workers.h - the worker pool of `finetuned serve`: --workers N threads that
 * claim jobs from the store with a lease, run compute/train on them and record
 * what happens (events, progress, checkpoints, the final model).
 *
 * Not for: HTTP (api/), the training loop itself (compute/train.h).
 */
#pragma once

#include "common/common.h"

struct workers;

struct workers_options {
        const char *state_dir;
        const char *store_url; /* NULL/"": SQLite in state_dir; else the shared PostgreSQL store */
        unsigned n; /* threads, each running one job at a time (>= 1) */
        unsigned threads; /* OpenMP threads per worker; 0: cores / n */
        const int *gpus; /* --gpus: worker i uses GPU gpus[i % n_gpus] for "auto" and "cuda" jobs */
        unsigned n_gpus; /* 0: every worker uses GPU 0 */
        int64_t lease_ms; /* lease length; renewed every lease_ms / 3 (0: 30000) */
        /* --mpirun: the launcher template ("mpirun -np {ranks} --hostfile FILE") that jobs with
         * resources.ranks above 1 run `finetuned train` under; NULL or "": such jobs fail */
        const char *mpirun;
};

/* Start the threads. They claim queued jobs at once; a job whose lease expired
 * (a daemon killed mid-training) is requeued by the claim and resumes from its
 * last checkpoint, its event stream continuing without gaps or duplicates. */
int workers_start(const struct workers_options *opts, struct workers **ret, struct ft_error *err);

/* Stop: running jobs stop within one batch, write a checkpoint and go back to
 * the queue (store_job_release) for the next start; then join. NULL is a no-op. */
void workers_stop(struct workers *w);

/* The live progress JSON of job_id if a worker of this pool runs it
 * (malloc'd), else NULL. userdata is the struct workers. Thread-safe. */
char *workers_progress(void *userdata, const char *job_id);
/* The compute threads each worker runs a job with (--threads, or the cores shared among the workers). */
unsigned workers_threads(const struct workers *pool);

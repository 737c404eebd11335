/* estimate.c - a dry run's estimate (estimate.h): the real trainer on the real model and data, stopped through its
 * should_stop callback, which it polls before every batch (the time between two polls is one batch). A first
 * epoch that takes at most ESTIMATE_MAX_SECONDS runs whole, validation included, and is the estimate per epoch;
 * a longer one is timed over ESTIMATE_STEPS batches and ESTIMATE_MIN_SECONDS at least (their mean, preemptions
 * included) and its validation costed below. Checkpoint writes (fsync) are not in the estimate. Validation is not run;
 * a validation batch is costed at EVAL_COST of a training batch (a forward pass without the backward pass and the
 * optimizer step, about a third of the work). Early stopping can only make the run shorter than the estimate. Not for:
 * anything the caller does around it (loading, checks, printing). */
#include "compute/estimate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compute/tensor.h"
#include "compute/train.h"

#define EVAL_COST 0.35

struct probe {
        unsigned polls; /* should_stop calls so far: poll k comes before training batch k (1-based) */
        double t0; /* the first poll: the run's first batch */
        double t_first; /* when the first timed batch began (the poll after the warm-up) */
        double t_last; /* the last poll of a training batch */
        unsigned timed; /* training batches between t_first and t_last */
        uint64_t batches; /* per epoch, from the first progress report; 0 before */
        double t_epoch; /* when the first epoch's report came (its validation done); 0 before */
        uint64_t rss_max;
};

/* The process's resident memory in bytes (Linux /proc/self/statm), 0 when unknown. */
static uint64_t rss_bytes(void) {
        FILE *f = fopen("/proc/self/statm", "r");
        unsigned long long size = 0, resident = 0;
        if (!f)
                return 0;
        if (fscanf(f, "%llu %llu", &size, &resident) != 2)
                resident = 0;
        fclose(f);
        return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static bool probe_should_stop(void *userdata) {
        struct probe *p = userdata;
        uint64_t rss = rss_bytes();
        double now = ft_now_monotonic();
        if (rss > p->rss_max)
                p->rss_max = rss;
        if (p->t_epoch > 0) /* the first epoch is done, validation included: that is the measurement */
                return true;
        p->polls++;
        if (p->polls == 1)
                p->t0 = now;
        bool training = !p->batches || p->polls <= p->batches + 1;
        if (training) {
                if (p->polls == ESTIMATE_WARMUP_STEPS + 1) {
                        p->t_first = now;
                } else if (p->polls > ESTIMATE_WARMUP_STEPS + 1) {
                        p->t_last = now;
                        p->timed = p->polls - ESTIMATE_WARMUP_STEPS - 1;
                }
        }
        /* an epoch that fits in ESTIMATE_MAX_SECONDS runs to its end, validation and all (on_epoch); a longer
         * one stops after ESTIMATE_STEPS batches and ESTIMATE_MIN_SECONDS (a loaded machine's scheduler shows
         * only over a while) */
        double spent = p->timed ? now - p->t_first : 0, per = p->timed ? spent / p->timed : 0;
        bool fits = p->batches && per * (double)p->batches <= ESTIMATE_MAX_SECONDS;
        if (fits)
                return now - p->t0 >= 3 * ESTIMATE_MAX_SECONDS; /* a validation far slower than thought */
        return training && p->timed >= ESTIMATE_STEPS && spent >= ESTIMATE_MIN_SECONDS;
}

static int probe_epoch(void *userdata, const struct train_epoch *e) {
        struct probe *p = userdata;
        (void)e;
        if (p->t_epoch == 0)
                p->t_epoch = ft_now_monotonic();
        return 0;
}

static void probe_progress(void *userdata, const struct train_progress *pr) {
        struct probe *p = userdata;
        if (!p->batches)
                p->batches = pr->batches;
}

int job_estimate_run(const struct jobspec *spec, struct model *m, struct compute_ctx *ctx, const struct dataset *train,
                     const struct dataset *val, struct job_estimate *ret, struct ft_error *err) {
        struct probe p = {0};
        struct train_callbacks cb = {.userdata = &p,
                                     .on_epoch = probe_epoch,
                                     .on_progress = probe_progress,
                                     .should_stop = probe_should_stop};
        struct train_options opt = {0}; /* no checkpoint directory: nothing is written */
        struct train_result res = {0};
        struct jobspec s = *spec;
        s.early_stopping.enabled = false; /* nothing of it runs in a few batches; keeps the copy shallow-safe */
        int r = train_run(&s, m, ctx, train, val, &opt, &cb, &res, err);
        train_result_deinit(&res);
        if (r < 0 && r != -ECANCELED)
                return r;
        if ((p.timed < 1 && p.t_epoch == 0) || !p.batches)
                return ft_error_set(err, -EINVAL, NULL, "the dry run did not reach a training batch");

        double per = p.timed ? (p.t_last - p.t_first) / p.timed /* the mean: preemptions are part of the cost */
                             : (p.t_epoch - p.t0) / (double)p.batches;
        unsigned k = p.timed;

        unsigned epochs = spec->hyperparameters.epochs, bs = spec->hyperparameters.batch_size;
        size_t n_val = val ? val->n : (size_t)llround((double)train->n * spec->validation_split);
        uint64_t val_batches = bs ? (n_val + bs - 1) / bs : 0;

        /* one checkpoint: the model, the optimizer's state, early stopping's best weights */
        uint64_t model_bytes = 0, param_bytes = (uint64_t)model_param_numel(m) * sizeof(float);
        for (size_t i = 0; i < model_tensor_count(m); i++)
                model_bytes += tensor_nbytes(model_tensor_at(m, i));
        unsigned moments = 0;
        switch (spec->hyperparameters.optimizer) {
        case JOBSPEC_OPT_ADAM:
        case JOBSPEC_OPT_ADAMW: moments = 2; break;
        case JOBSPEC_OPT_MOMENTUM:
        case JOBSPEC_OPT_NESTEROV:
        case JOBSPEC_OPT_GD: /* the gradient accumulator */ moments = 1; break;
        case JOBSPEC_OPT_SGD: break;
        }
        uint64_t ckpt = model_bytes + moments * param_bytes +
                        (spec->early_stopping.enabled && spec->early_stopping.restore_best ? model_bytes : 0);
        unsigned every = spec->checkpoint.every_epochs;
        unsigned written = every ? epochs / every + (epochs % every != 0) : 0;
        unsigned kept = spec->checkpoint.keep ? FT_MIN(spec->checkpoint.keep, written) : written;

        double epoch_s = p.t_epoch > 0 ? p.t_epoch - p.t0 /* measured whole */
                                       : per * ((double)p.batches + EVAL_COST * (double)val_batches);
        *ret = (struct job_estimate){
                .seconds_per_batch = per,
                .batches_per_epoch = p.batches,
                .batches_total = p.batches * epochs,
                .val_batches_per_epoch = val_batches,
                .batches_timed = k,
                .seconds = epoch_s * epochs,
                .first_epoch_measured = p.t_epoch > 0,
                .peak_memory_bytes = p.rss_max,
                .checkpoint_bytes = ckpt,
                .checkpoints_kept = kept,
                .checkpoint_bytes_total = ckpt * kept,
        };
        return 0;
}

uint64_t job_estimate_rss(void) {
        return rss_bytes();
}

json_t *job_estimate_json(const struct job_estimate *e) {
        return json_pack("{s:f,s:b,s:f,s:I,s:I,s:I,s:i,s:I,s:I,s:i,s:I}", "seconds", round(e->seconds * 1000) / 1000,
                         "first_epoch_measured", e->first_epoch_measured, "seconds_per_batch", e->seconds_per_batch,
                         "batches_per_epoch", (json_int_t)e->batches_per_epoch, "batches_total",
                         (json_int_t)e->batches_total, "validation_batches_per_epoch",
                         (json_int_t)e->val_batches_per_epoch, "batches_timed", (int)e->batches_timed,
                         "peak_memory_bytes", (json_int_t)e->peak_memory_bytes, "checkpoint_bytes",
                         (json_int_t)e->checkpoint_bytes, "checkpoints_kept", (int)e->checkpoints_kept,
                         "checkpoint_bytes_total", (json_int_t)e->checkpoint_bytes_total);
}

/* schedule.h - learning-rate schedules: constant, step, cosine and linear
 * decay, each with an optional linear warmup. The rate is a pure function of
 * the global step, so a checkpoint only needs the step to resume the schedule.
 *
 *   warmup (step < W):  lr * (step + 1) / W
 *   constant:           lr
 *   step:               lr * gamma^floor(epoch / step_size)    (epoch = step / steps_per_epoch)
 *   cosine:             min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2
 *   linear:             lr + (min_lr - lr) * p
 * with p = (step - W) / (T - W) in [0, 1), T the total number of steps and
 * W = round(warmup_epochs * steps_per_epoch).
 *
 * Not for: applying the rate (the trainer sets it on the optimizer).
 */
#pragma once

#include <stdint.h>

#include "compute/jobspec.h"

struct schedule {
        enum jobspec_schedule kind;
        double base_lr, min_lr, gamma;
        uint64_t steps_per_epoch, total_steps, warmup_steps;
        unsigned step_size; /* epochs */
};

/* Set up from the spec's hyperparameters for a run of `epochs` epochs of
 * steps_per_epoch optimizer steps each. -EINVAL when steps_per_epoch is 0. */
int schedule_init(struct schedule *s, const struct jobspec *spec, uint64_t steps_per_epoch);

/* The learning rate for optimizer step `step` (0-based, global). */
double schedule_lr(const struct schedule *s, uint64_t step);

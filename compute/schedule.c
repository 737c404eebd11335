/* schedule.c - learning-rate schedules (see schedule.h). Not for: anything
 * with state. */
#include "compute/schedule.h"

#include <math.h>
#include <string.h>

int schedule_init(struct schedule *s, const struct jobspec *spec, uint64_t steps_per_epoch) {
        if (steps_per_epoch == 0)
                return -EINVAL;
        memset(s, 0, sizeof(*s));
        s->kind = spec->hyperparameters.schedule;
        s->base_lr = spec->hyperparameters.learning_rate;
        s->min_lr = spec->hyperparameters.min_lr;
        s->gamma = spec->hyperparameters.gamma;
        s->steps_per_epoch = steps_per_epoch;
        s->total_steps = steps_per_epoch * spec->hyperparameters.epochs;
        s->warmup_steps = (uint64_t)llround(spec->hyperparameters.warmup_epochs * (double)steps_per_epoch);
        if (s->warmup_steps > s->total_steps)
                s->warmup_steps = s->total_steps;
        s->step_size = spec->hyperparameters.step_size;
        if (s->step_size == 0)
                s->step_size = spec->hyperparameters.epochs / 3 ? spec->hyperparameters.epochs / 3 : 1;
        return 0;
}

double schedule_lr(const struct schedule *s, uint64_t step) {
        if (step < s->warmup_steps)
                return s->base_lr * (double)(step + 1) / (double)s->warmup_steps;
        uint64_t span = s->total_steps > s->warmup_steps ? s->total_steps - s->warmup_steps : 1;
        double p = (double)(step - s->warmup_steps) / (double)span;
        if (p > 1)
                p = 1;
        switch (s->kind) {
        case JOBSPEC_SCHED_CONSTANT: return s->base_lr;
        case JOBSPEC_SCHED_STEP: return s->base_lr * pow(s->gamma, (double)(step / s->steps_per_epoch / s->step_size));
        case JOBSPEC_SCHED_COSINE: return s->min_lr + (s->base_lr - s->min_lr) * 0.5 * (1.0 + cos(M_PI * p));
        case JOBSPEC_SCHED_LINEAR: return s->base_lr + (s->min_lr - s->base_lr) * p;
        }
        return s->base_lr;
}

/* guards.h - training-health guards (the job spec's "guards", docs/job-spec.md): rules the trainer checks while
 * it runs, each reported as a "warning" event (struct train_warning) and each off-switchable:
 *
 *   nonfinite              after every step's backward, a NaN or Inf in the gradient fails the run at once, naming
 *                          the epoch, the batch and the first tensor the backward pass made non-finite (the one
 *                          nearest the output); a NaN or Inf loss fails it too, naming the first parameter that
 *                          holds one (or the model's output when the weights are still finite)
 *   loss_not_decreasing    plateau_epochs epochs in a row whose training loss is not below the lowest before them
 *                          by plateau_min_delta (relative)
 *   overfitting            overfit_epochs epochs in a row in each of which the validation loss rose and the
 *                          training loss fell; names the epoch of the lowest validation loss (what early stopping
 *                          on val_loss would have kept)
 *   frozen_tensor_changed  a frozen parameter whose bytes differ from the run's start (checked every epoch)
 *   diverging              an epoch's training loss above both the first epoch's and divergence_factor times the
 *                          lowest epoch before it: the learning rate is too high
 *
 * The epoch rules are functions of the epoch history, and each warns once, at the first epoch it holds: a resumed
 * run (whose history comes from its checkpoint) warns as the uninterrupted run did.
 *
 * Not for: early stopping (train.c), the events' wire format (train_events.c), what a warning leads to (the
 * callbacks' owners: NDJSON, stored events, webhooks).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "compute/jobspec.h"
#include "compute/model.h"
#include "compute/train.h"

struct guards {
        const struct jobspec *spec;
        size_t n_frozen;
        size_t *frozen_idx; /* model tensor indices of the frozen parameters */
        uint64_t *frozen_hash; /* their bytes' FNV-1a at the start */
        bool *frozen_warned;
};

/* Before the first step (model prepared, optimizer set up): the frozen parameters' fingerprints when
 * guards.frozen. -ENOMEM. */
int guards_init(struct guards *g, const struct jobspec *spec, struct model *m, struct ft_error *err);
void guards_deinit(struct guards *g);

/* A step's loss is NaN or Inf: -EDOM with err naming epoch (1-based), batch (1-based), step and the first
 * non-finite parameter (or the output), and *ret_warning filled for the "warning" event (its strings point
 * into err, its tensor into the model). */
int guards_loss_nonfinite(struct model *m, float loss, unsigned epoch, size_t batch, uint64_t step,
                          struct train_warning *ret_warning, struct ft_error *err);
/* After a step's backward, when guards.nonfinite: 0 when every gradient is finite, else as above (-EDOM). */
int guards_gradients(struct model *m, unsigned epoch, size_t batch, uint64_t step, struct train_warning *ret_warning,
                     struct ft_error *err);

/* After epoch h[n-1]'s report: every rule that first holds at this epoch, as warnings through emit (whose
 * negative return ends the check with that code). The frozen check reads the weights in PyTorch layout
 * (model_sync). */
int guards_epoch(struct guards *g, struct model *m, const struct train_epoch *h, size_t n,
                 int (*emit)(void *userdata, const struct train_warning *w), void *userdata, struct ft_error *err);

/* imbalance.h - imbalanced classification data: the loss's class weights from the job spec's
 * hyperparameters.class_weights, and the rule that calls a dataset imbalanced.
 *
 *   "balanced"         w_c = n_samples / (n_classes * count_c) over the training split, scikit-learn's
 *                      compute_class_weight("balanced"); a class with no training row weighs 0
 *   {class: weight}    the named classes' weights; every other class weighs 1
 *   [weight, ...]      one weight per class, in the data's class order (as the dataset's summary lists them)
 *
 * The weights go into the training loss as CrossEntropyLoss(weight=) (compute/loss.h); the validation loss and the
 * final metrics stay unweighted, so they compare between jobs (docs/decisions.md).
 *
 * Not for: the loss itself (loss.h), the warning's delivery (the daemon stores it at submit, `finetuned train`
 * prints it before training; train.c does not warn).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/common.h"
#include "compute/jobspec.h"

/* The smallest class has fewer than 1 / IMBALANCE_RATIO of the largest's rows: a "class_imbalance" warning. */
#define IMBALANCE_RATIO 10

/* spec->class_weights (not NULL) resolved against the n classes names[] with their training-split counts[]:
 * ret_w[n]. -EINVAL with err->param "hyperparameters.class_weights..." for a class the data does not have, an
 * array of the wrong length, or weights that are all 0. */
int imbalance_class_weights(const struct jobspec *spec, char *const *names, const size_t *counts, size_t n,
                            float *ret_w, struct ft_error *err);

/* Whether counts[n] (n >= 2) are imbalanced by the rule above; the smallest and largest class when so. */
bool imbalance_detect(const size_t *counts, size_t n, size_t *ret_min, size_t *ret_max);
/* The "class_imbalance" warning's message into buf (true), or false when the classes are balanced enough; the
 * message suggests class_weights unless has_weights. The one wording of the daemon (at submit) and the CLI. */
bool imbalance_message(char *const *names, const size_t *counts, size_t n, bool has_weights, char *buf, size_t size);

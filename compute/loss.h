/* loss.h - losses that return the loss and d(loss)/d(output): softmax cross-entropy and MSE, equal to
 * torch.nn.CrossEntropyLoss and torch.nn.MSELoss with reduction "mean".
 *
 * Not for: metrics (accuracy, F1) or anything with state. Pure functions over caller-owned buffers. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

struct loss_ce_options {
        float label_smoothing; /* 0.0 .. 1.0 (exclusive), as CrossEntropyLoss(label_smoothing=) */
        const float *class_weights; /* NULL or [classes] non-negative, as CrossEntropyLoss(weight=) */
};

/* Cross-entropy over logits [batch, classes] and class targets [batch] (0 <= t < classes). opts may be NULL.
 * Mean reduction exactly as PyTorch: with class weights, divided by the sum of the targets' weights. Writes
 * *ret_loss and, when d_logits is not NULL, d(loss)/d(logits) [batch, classes]. -EINVAL (err naming "targets"
 * with the index, or the option) for a target out of range, batch or classes < 1, bad options, or a zero total
 * weight. */
int loss_cross_entropy(const float *logits, const int32_t *targets, int batch, int classes,
                       const struct loss_ce_options *opts, float *ret_loss, float *d_logits, struct ft_error *err);

/* Mean squared error over pred and target [batch, outputs]: mean over all batch*outputs elements. Writes
 * *ret_loss and, when d_pred is not NULL, d(loss)/d(pred). -EINVAL for batch or outputs < 1. */
int loss_mse(const float *pred, const float *target, int batch, int outputs, float *ret_loss, float *d_pred,
             struct ft_error *err);

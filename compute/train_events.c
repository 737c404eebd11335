/* train_events.c - the trainer's events from struct to JSON (see train.h): the one serialiser behind the
 * CLI's NDJSON, the daemon's stored events and progress, checkpoints' history and metrics.json, and the one
 * table of an epoch's metrics by name (early stopping, best epoch, the wire format's keys).
 *
 * Not for: producing the events (train.c), deciding where they go (the callbacks' owners).
 */
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "compute/train.h"

enum metric_task { METRIC_ANY, METRIC_CLASSIFICATION, METRIC_REGRESSION };

/* An epoch's metrics in wire order. `validation`: needs validation data; `null_without`: written as null when
 * there is none (the others are left out then, as the wire format always had it). */
static const struct epoch_metric {
        const char *name;
        size_t offset;
        enum metric_task task;
        bool validation;
        bool null_without;
} epoch_metrics[] = {
        {"train_loss", offsetof(struct train_epoch, train_loss), METRIC_ANY, false, false},
        {"val_loss", offsetof(struct train_epoch, val_loss), METRIC_ANY, true, true},
        {"val_accuracy", offsetof(struct train_epoch, val_accuracy), METRIC_CLASSIFICATION, true, true},
        {"val_f1", offsetof(struct train_epoch, val_f1), METRIC_CLASSIFICATION, true, true},
        {"val_precision", offsetof(struct train_epoch, val_precision), METRIC_CLASSIFICATION, true, false},
        {"val_recall", offsetof(struct train_epoch, val_recall), METRIC_CLASSIFICATION, true, false},
        {"val_mse", offsetof(struct train_epoch, val_mse), METRIC_REGRESSION, true, true},
        {"val_rmse", offsetof(struct train_epoch, val_rmse), METRIC_REGRESSION, true, false},
        {"val_mae", offsetof(struct train_epoch, val_mae), METRIC_REGRESSION, true, false},
        {"val_r2", offsetof(struct train_epoch, val_r2), METRIC_REGRESSION, true, true},
};

static bool metric_applies(const struct epoch_metric *m, const struct train_epoch *e) {
        return m->task == METRIC_ANY || (m->task == METRIC_CLASSIFICATION) == e->classification;
}

static double metric_value(const struct epoch_metric *m, const struct train_epoch *e) {
        return *(const double *)((const char *)e + m->offset);
}

bool train_epoch_metric(const struct train_epoch *e, const char *name, double *ret) {
        for (size_t i = 0; i < ARRAY_SIZE(epoch_metrics); i++) {
                const struct epoch_metric *m = &epoch_metrics[i];
                if (strcmp(m->name, name) != 0)
                        continue;
                if (!metric_applies(m, e) || (m->validation && !e->validated))
                        return false;
                *ret = metric_value(m, e);
                return true;
        }
        return false;
}

const char *train_event_type_name(enum train_event_type type) {
        switch (type) {
        case TRAIN_EVENT_EPOCH: return "epoch";
        case TRAIN_EVENT_PROGRESS: return "progress";
        case TRAIN_EVENT_CHECKPOINT: return "checkpoint";
        case TRAIN_EVENT_EARLY_STOP: return "early_stopping";
        case TRAIN_EVENT_FINAL: return "metrics";
        case TRAIN_EVENT_RUNTIME: return "runtime";
        case TRAIN_EVENT_WARNING: return "warning";
        }
        return "unknown";
}

static json_t *epoch_json(const struct train_epoch *e) {
        json_t *o = json_pack("{s:s s:I s:I s:I}", "type", "epoch", "epoch", (json_int_t)e->epoch, "epochs",
                              (json_int_t)e->epochs, "step", (json_int_t)e->step);
        if (!o)
                return NULL;
        for (size_t i = 0; i < ARRAY_SIZE(epoch_metrics); i++) {
                const struct epoch_metric *m = &epoch_metrics[i];
                if (!metric_applies(m, e))
                        continue;
                if (!m->validation || e->validated)
                        json_object_set_new(o, m->name, json_real(metric_value(m, e)));
                else if (m->null_without)
                        json_object_set_new(o, m->name, json_null());
        }
        json_object_set_new(o, "lr", json_real(e->lr));
        json_object_set_new(o, "seconds", json_real(e->seconds));
        json_object_set_new(o, "samples_per_sec", json_real(e->samples_per_sec));
        return o;
}

static json_t *progress_json(const struct train_progress *p) {
        return json_pack("{s:s s:I s:I s:I s:I s:I s:I s:o s:o}", "type", "progress", "epoch", (json_int_t)p->epoch,
                         "epochs", (json_int_t)p->epochs, "step", (json_int_t)p->step, "steps", (json_int_t)p->steps,
                         "batch", (json_int_t)p->batch, "batches", (json_int_t)p->batches, "eta_seconds",
                         p->has_eta ? json_real(p->eta_seconds) : json_null(), "train_loss",
                         p->has_loss ? json_real(p->train_loss) : json_null());
}

static json_t *final_json(const struct train_final *f) {
        json_t *mj = f->classification ? metrics_classification_to_json(&f->cls, (const char *const *)f->class_names)
                                       : metrics_regression_to_json(&f->reg);
        if (!mj)
                return NULL;
        json_object_set_new(mj, "loss", json_real(f->loss));
        if (f->classification && f->calibration.computed)
                json_object_set_new(mj, "calibration", train_calibration_json(&f->calibration));
        return json_pack("{s:s s:s s:o s:I s:b s:o}", "type", "metrics", "split",
                         f->on_validation ? "validation" : "training", "best_epoch",
                         f->has_best ? json_integer(f->best_epoch) : json_null(), "epochs_run",
                         (json_int_t)f->epochs_run, "stopped_early", f->stopped_early, "metrics", mj);
}

static json_t *runtime_json(const struct train_runtime *rt) {
        json_t *o = json_pack("{s:s s:s s:s s:s s:i s:i}", "type", "runtime", "backend", rt->backend, "device_used",
                              rt->device ? rt->device : "cpu", "device_reason",
                              rt->device_reason ? rt->device_reason : "", "threads", rt->threads, "batch", rt->batch);
        if (o && rt->summary)
                json_object_update(o, (json_t *)rt->summary);
        return o;
}

static json_t *warning_json(const struct train_warning *w) {
        json_t *o = json_pack("{s:s s:s s:I s:s}", "type", "warning", "code", w->code, "epoch", (json_int_t)w->epoch,
                              "message", w->message ? w->message : "");
        if (o && w->tensor)
                json_object_set_new(o, "tensor", json_string(w->tensor));
        if (o && w->batch)
                json_object_set_new(o, "batch", json_integer((json_int_t)w->batch));
        if (o && w->best_epoch)
                json_object_set_new(o, "best_epoch", json_integer((json_int_t)w->best_epoch));
        return o;
}

json_t *train_event_json(const struct train_event *ev) {
        switch (ev->type) {
        case TRAIN_EVENT_EPOCH: return epoch_json(ev->epoch);
        case TRAIN_EVENT_PROGRESS: return progress_json(ev->progress);
        case TRAIN_EVENT_CHECKPOINT:
                return json_pack("{s:s s:I s:I s:b}", "type", "checkpoint", "epoch", (json_int_t)ev->checkpoint->epoch,
                                 "step", (json_int_t)ev->checkpoint->step, "partial", ev->checkpoint->partial);
        case TRAIN_EVENT_EARLY_STOP:
                return json_pack("{s:s s:I s:I s:s s:f}", "type", "early_stopping", "epoch",
                                 (json_int_t)ev->early_stop->epoch, "best_epoch",
                                 (json_int_t)ev->early_stop->best_epoch, "metric", ev->early_stop->metric, "best_value",
                                 ev->early_stop->best_value);
        case TRAIN_EVENT_FINAL: return final_json(ev->final);
        case TRAIN_EVENT_RUNTIME: return runtime_json(ev->runtime);
        case TRAIN_EVENT_WARNING: return warning_json(ev->warning);
        }
        return NULL;
}

int train_epoch_from_json(const json_t *j, bool classification, struct train_epoch *ret) {
        struct train_epoch e = {.classification = classification};
        json_int_t epoch = 0, epochs = 0, step = 0;
        double lr = 0, seconds = 0, sps = 0;
        if (json_unpack((json_t *)j, "{s:I s:I s:I s:F s:F s:F}", "epoch", &epoch, "epochs", &epochs, "step", &step,
                        "lr", &lr, "seconds", &seconds, "samples_per_sec", &sps) < 0 ||
            epoch < 0 || epochs < 0 || step < 0)
                return -EINVAL;
        e.epoch = (unsigned)epoch;
        e.epochs = (unsigned)epochs;
        e.step = (uint64_t)step;
        e.lr = lr;
        e.seconds = seconds;
        e.samples_per_sec = sps;
        e.validated = json_is_number(json_object_get(j, "val_loss"));
        for (size_t i = 0; i < ARRAY_SIZE(epoch_metrics); i++) {
                const struct epoch_metric *m = &epoch_metrics[i];
                if (!metric_applies(m, &e) || (m->validation && !e.validated))
                        continue;
                const json_t *v = json_object_get(j, m->name);
                if (!json_is_number(v))
                        return -EINVAL;
                *(double *)((char *)&e + m->offset) = json_number_value(v);
        }
        *ret = e;
        return 0;
}

int train_progress_from_json(const json_t *j, struct train_progress *ret) {
        json_int_t epoch = 0, epochs = 0, step = 0, steps = 0, batch = 0, batches = 0;
        if (json_unpack((json_t *)j, "{s:I s:I s:I s:I s:I s:I}", "epoch", &epoch, "epochs", &epochs, "step", &step,
                        "steps", &steps, "batch", &batch, "batches", &batches) < 0 ||
            epoch < 0 || epochs < 0 || step < 0 || steps < 0 || batch < 0 || batches < 0 || epoch > UINT_MAX ||
            epochs > UINT_MAX)
                return -EINVAL;
        const json_t *eta = json_object_get(j, "eta_seconds"), *loss = json_object_get(j, "train_loss");
        if ((eta && !json_is_number(eta) && !json_is_null(eta)) ||
            (loss && !json_is_number(loss) && !json_is_null(loss)))
                return -EINVAL;
        *ret = (struct train_progress){
                .epoch = (unsigned)epoch,
                .epochs = (unsigned)epochs,
                .step = (uint64_t)step,
                .steps = (uint64_t)steps,
                .batch = (size_t)batch,
                .batches = (size_t)batches,
                .has_eta = json_is_number(eta),
                .eta_seconds = json_is_number(eta) ? json_number_value(eta) : 0,
                .has_loss = json_is_number(loss),
                .train_loss = json_is_number(loss) ? json_number_value(loss) : 0,
        };
        return 0;
}

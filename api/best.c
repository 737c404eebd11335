/* best.c - the "best" field of a job's JSON: the best value, over the job's
 * epoch events, of the metric the job is judged by (its early-stopping metric,
 * else val_accuracy for classification and val_r2 for regression), with that
 * epoch. For a finished job whose trainer named a best_epoch (early stopping)
 * it is that epoch's value, so it matches the weights the job kept.
 *
 * Each answer comes from one store_event_best statement and is kept in a small
 * cache: the next read of a running job looks only at the events after the
 * last one seen, and a finished job's answer never changes, so polling the
 * jobs list does not read a job's whole history again.
 *
 * Not for: the rest of the job's JSON (jobs.c) or reading events (store/). */
#include <pthread.h>
#include <string.h>

#include "api/internal.h"
#include "common/log.h"
#include "compute/jobspec.h"
#include "store/store.h"

#define BEST_CACHE_SLOTS 512 /* jobs remembered; a job that loses its slot is read again from its first event */

struct best_slot {
        char id[STORE_ID_MAX];
        char metric[32];
        bool final; /* the job had finished: the answer never changes */
        struct store_event_best b;
};

static struct best_slot best_cache[BEST_CACHE_SLOTS];
static pthread_mutex_t best_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t slot_of(const char *id) {
        uint64_t h = 1469598103934665603ull;
        for (const char *c = id; *c; c++)
                h = (h ^ (unsigned char)*c) * 1099511628211ull;
        return (size_t)(h % BEST_CACHE_SLOTS);
}

/* The metric a job is judged by and which way is better, from its canonical spec. */
static int job_metric(const json_t *spec, const char **ret_metric, bool *ret_maximize) {
        const char *task = json_string_value(json_object_get(json_object_get(spec, "task"), "type"));
        enum jobspec_task type =
                task && strcmp(task, "regression") == 0 ? JOBSPEC_TASK_REGRESSION : JOBSPEC_TASK_CLASSIFICATION;
        const char *metric = json_string_value(json_object_get(json_object_get(spec, "early_stopping"), "metric"));
        if (!metric)
                metric = type == JOBSPEC_TASK_REGRESSION ? "val_r2" : "val_accuracy";
        enum jobspec_mode mode;
        if (strlen(metric) >= sizeof(((struct best_slot *)0)->metric) || jobspec_metric_mode(type, metric, &mode) < 0)
                return -EINVAL;
        *ret_metric = metric;
        *ret_maximize = mode == JOBSPEC_MODE_MAX;
        return 0;
}

json_t *api_job_best_json(struct store *st, const struct store_job *j, const json_t *spec, const json_t *result) {
        const char *metric;
        bool maximize;
        if (j->attempt == 0 || job_metric(spec, &metric, &maximize) < 0)
                return json_null(); /* never ran: no epochs */
        bool final = store_job_state_is_terminal(j->state);
        const json_t *be = json_object_get(result, "best_epoch");
        int64_t only_epoch = final && json_is_integer(be) ? (int64_t)json_integer_value(be) : 0;

        /* What is known already: everything (finished), or up to a seq (running). */
        size_t i = slot_of(j->id);
        struct best_slot known = {0};
        pthread_mutex_lock(&best_lock);
        if (strcmp(best_cache[i].id, j->id) == 0 && strcmp(best_cache[i].metric, metric) == 0)
                known = best_cache[i];
        pthread_mutex_unlock(&best_lock);
        if (!known.id[0] || (final && !known.final && only_epoch)) /* the trainer's epoch: read it from the start */
                known = (struct best_slot){0};

        struct store_event_best b = known.b;
        if (!known.final) {
                struct store_event_best fresh;
                struct ft_error err = {0};
                int r = store_event_best(st, j->id, metric, maximize, only_epoch, known.b.last_seq, &fresh, &err);
                if (r < 0) {
                        log_warning("job %s: cannot read its best %s: %s", j->id, metric, err.message);
                        return json_null();
                }
                /* a newer epoch replaces the best only when strictly better: ties keep the earlier one */
                if (fresh.found && (!b.found || (maximize ? fresh.value > b.value : fresh.value < b.value))) {
                        b.found = true;
                        b.value = fresh.value;
                        b.epoch = fresh.epoch;
                }
                b.last_seq = fresh.last_seq;
                /* Keep it unless another request stored a later answer meanwhile. */
                pthread_mutex_lock(&best_lock);
                struct best_slot *s = &best_cache[i];
                bool same = strcmp(s->id, j->id) == 0 && strcmp(s->metric, metric) == 0;
                if (!same || (!s->final && s->b.last_seq <= b.last_seq)) {
                        snprintf(s->id, sizeof(s->id), "%s", j->id);
                        snprintf(s->metric, sizeof(s->metric), "%s", metric);
                        s->final = final;
                        s->b = b;
                }
                pthread_mutex_unlock(&best_lock);
        }
        if (!b.found)
                return json_null();
        return json_pack("{s:s,s:s,s:f,s:I}", "metric", metric, "mode", maximize ? "max" : "min", "value", b.value,
                         "epoch", (json_int_t)b.epoch);
}

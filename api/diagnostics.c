/* diagnostics.c - a finished classification job's per-example diagnostics (compute/diagnostics.h), read from the
 * metrics.json the worker stored: GET /v1/jobs/{id}/diagnostics (the summary), GET /v1/jobs/{id}/examples (every
 * example, sorted, filtered and paged) and the examples.csv artifact (the bytes `finetuned train` writes).
 *
 * Not for: computing the diagnostics (compute/), the other artifacts (jobs.c).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "common/log.h"
#include "compute/diagnostics.h"
#include "compute/imbalance.h"
#include "compute/train.h"
#include "store/store.h"

#define EXAMPLES_LIMIT_DEFAULT 100
#define EXAMPLES_LIMIT_MAX 1000

const char *const api_examples_orders[] = {"index", "loss", "confident_mistakes", "suspected", NULL};

const struct api_field api_example_shape[] = {
        {"position", API_T_INT, .description = "its 0-based place in this order and filter (the cursor)"},
        {"index", API_T_INT,
         .description = "the row's 0-based position in its dataset: the IDX image, the CSV data row"},
        {"line", API_T_INT, .nullable = true, .description = "CSV: the line the row starts on (header = 1); null: IDX"},
        {"label", API_T_STRING, .description = "the class the data gives"},
        {"predicted", API_T_STRING},
        {"p_label", API_T_NUMBER, .description = "the model's probability of the given label"},
        {"p_predicted", API_T_NUMBER},
        {"loss", API_T_NUMBER, .description = "-log p_label"},
        {"correct", API_T_BOOL},
        {"suspected", API_T_BOOL, .description = "a suspected label error (confident learning, docs/diagnostics.md)"},
        {"suggested", API_T_STRING, .nullable = true, .description = "the class confident learning suggests instead"},
        {NULL},
};

const struct api_field api_diagnostics_shape[] = {
        {"object", API_T_STRING, .choices = (const char *const[]){"diagnostics", NULL}},
        {"job", API_T_STRING},
        {"split", API_T_STRING, .choices = (const char *const[]){"validation", "training", NULL}},
        {"examples_count", API_T_INT},
        {"mistakes", API_T_INT},
        {"suspected_label_errors", API_T_INT},
        {"rule", API_T_STRING, .description = "how suspects are found"},
        {"thresholds", API_T_MAP_NUMBER, .description = "class -> mean self-confidence t_j (null: no example)"},
        {"top_loss", API_T_ARRAY_OBJECT, .description = "the 20 highest-loss examples"},
        {"confident_mistakes", API_T_ARRAY_OBJECT, .description = "the 20 mistakes with the highest p_predicted"},
        {"suspected", API_T_ARRAY_OBJECT, .description = "the 20 suspects with the lowest p_label"},
        {NULL},
};

/* The job's stored diagnostics object (a new reference), or a reply queued in *ret and NULL. */
static json_t *job_diagnostics(struct api_request *req, char *ret_id, size_t id_size, enum MHD_Result *ret) {
        const char *id;
        struct store *st;
        struct store_job *job = NULL;
        struct ft_error err = {0};
        if (!api_path_store(req, "job", "job", &id, &st, ret))
                return NULL;
        int r = store_job_get(st, id, &job, &err);
        if (r < 0) {
                *ret = api_reply_ft_error(req, r, &err);
                return NULL;
        }
        snprintf(ret_id, id_size, "%s", job->id);
        if (job->state != STORE_JOB_SUCCEEDED) {
                *ret = api_reply_error(req, API_ERR_CONFLICT, "id",
                                       "job '%s' is %s: diagnostics exist once it succeeds", job->id,
                                       store_job_state_name(job->state));
                store_job_free(job);
                return NULL;
        }
        char path[PATH_MAX];
        json_t *doc = NULL, *d = NULL;
        if (job->metrics_sha256[0] && store_blob_path(st, job->metrics_sha256, path, sizeof(path), NULL) == 0)
                doc = json_load_file(path, 0, NULL);
        store_job_free(job);
        d = json_object_get(doc, "diagnostics");
        if (!json_is_object(d) || !json_is_array(json_object_get(d, "examples"))) {
                json_decref(doc);
                *ret = api_reply_error(req, API_ERR_NOT_FOUND, "id",
                                       "job '%s' has no per-example diagnostics (they are made for classification)",
                                       ret_id);
                return NULL;
        }
        json_incref(d);
        json_decref(doc);
        return d;
}

enum MHD_Result api_jobs_diagnostics(struct api_request *req) {
        enum MHD_Result ret;
        char id[API_ID_MAX + 1];
        json_t *d = job_diagnostics(req, id, sizeof(id), &ret);
        if (!d)
                return ret;
        json_t *body = json_deep_copy(d);
        json_decref(d);
        if (!body)
                return MHD_NO;
        json_object_del(body, "examples");
        json_t *head = json_pack("{s:s,s:s}", "object", "diagnostics", "job", id);
        json_object_update(head, body); /* object and job first */
        json_decref(body);
        return api_reply_json(req, MHD_HTTP_OK, head);
}

enum MHD_Result api_jobs_examples_csv(struct api_request *req) {
        enum MHD_Result ret;
        char id[API_ID_MAX + 1];
        json_t *d = job_diagnostics(req, id, sizeof(id), &ret);
        if (!d)
                return ret;
        char *csv = NULL;
        size_t len = 0;
        struct ft_error err = {0};
        int r = diag_csv_from_json(d, &csv, &len, &err);
        json_decref(d);
        if (r < 0)
                return api_reply_ft_error(req, r, &err);
        struct MHD_Response *resp = MHD_create_response_from_buffer(len, csv, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(csv);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/csv; charset=utf-8");
        MHD_add_response_header(resp, "Content-Disposition", "attachment; filename=\"examples.csv\"");
        ret = MHD_queue_response(req->conn, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ret;
}

/* ---- the paged list ---------------------------------------------------------------------------------------- */

struct sort_item {
        const json_t *e;
        size_t pos; /* evaluation order */
        double key;
};

static int cmp_items(const void *a, const void *b) {
        const struct sort_item *x = a, *y = b;
        if (x->key != y->key)
                return x->key < y->key ? -1 : 1;
        return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static double num(const json_t *e, const char *key) {
        return json_number_value(json_object_get(e, key));
}

enum MHD_Result api_jobs_examples(struct api_request *req) {
        enum MHD_Result ret;
        char id[API_ID_MAX + 1];
        const char *order = api_query_get(req, "order"), *label = api_query_get(req, "label"),
                   *pred = api_query_get(req, "predicted"), *lim = api_query_get(req, "limit"),
                   *aft = api_query_get(req, "after");
        if (!order)
                order = "index";
        size_t limit = lim ? strtoul(lim, NULL, 10) : EXAMPLES_LIMIT_DEFAULT;
        long long after = aft ? strtoll(aft, NULL, 10) : -1;
        json_t *d = job_diagnostics(req, id, sizeof(id), &ret);
        if (!d)
                return ret;
        const json_t *ex = json_object_get(d, "examples");
        size_t n = json_array_size(ex), k = 0;
        struct sort_item *items = malloc((n ? n : 1) * sizeof(*items));
        if (!items) {
                json_decref(d);
                return MHD_NO;
        }
        for (size_t i = 0; i < n; i++) {
                const json_t *e = json_array_get(ex, i);
                const char *l = json_string_value(json_object_get(e, "label"));
                const char *p = json_string_value(json_object_get(e, "predicted"));
                bool correct = json_is_true(json_object_get(e, "correct"));
                bool suspected = json_is_true(json_object_get(e, "suspected"));
                if ((label && (!l || strcmp(l, label) != 0)) || (pred && (!p || strcmp(p, pred) != 0)))
                        continue;
                double key = (double)i;
                if (strcmp(order, "loss") == 0) {
                        key = -num(e, "loss");
                } else if (strcmp(order, "confident_mistakes") == 0) {
                        if (correct)
                                continue;
                        key = -num(e, "p_predicted");
                } else if (strcmp(order, "suspected") == 0) {
                        if (!suspected)
                                continue;
                        key = num(e, "p_label");
                }
                items[k++] = (struct sort_item){e, i, key};
        }
        qsort(items, k, sizeof(*items), cmp_items);
        json_t *data = json_array();
        size_t start = after < 0 ? 0 : (size_t)after + 1, i;
        for (i = start; data && i < k && json_array_size(data) < limit; i++) {
                json_t *e = json_deep_copy(items[i].e);
                json_t *item = json_pack("{s:I}", "position", (json_int_t)i);
                json_object_update(item, e);
                json_decref(e);
                json_array_append_new(data, item);
        }
        bool more = i < k;
        free(items);
        json_decref(d);
        if (!data)
                return MHD_NO;
        json_t *body = api_page_envelope(data, more, "position");
        json_object_set_new(body, "total", json_integer((json_int_t)k));
        return api_reply_json(req, MHD_HTTP_OK, body);
}

/* ---- at submit: the training data's classes ---------------------------------------------------------------- */

int api_jobs_class_check(const struct jobspec *spec, const json_t *schema, const char *stored_target, char *warning,
                         size_t size, struct ft_error *err) {
        warning[0] = '\0';
        if (spec->task.type != JOBSPEC_TASK_CLASSIFICATION)
                return 0;
        /* the upload's summary counts the classes of its target (a CSV's last column, an IDX's labels) */
        if (spec->task.target[0] && stored_target && stored_target[0] && strcmp(spec->task.target, stored_target) != 0)
                return 0;
        const json_t *classes = json_object_get(schema, "classes");
        size_t n = json_array_size(classes);
        if (n < 2)
                return 0;
        char **names = calloc(n, sizeof(char *));
        size_t *counts = calloc(n, sizeof(size_t));
        float *w = calloc(n, sizeof(float));
        int r = names && counts && w ? 0 : -ENOMEM;
        for (size_t c = 0; r == 0 && c < n; c++) {
                const json_t *e = json_array_get(classes, c);
                names[c] = (char *)json_string_value(json_object_get(e, "name"));
                json_int_t k = json_integer_value(json_object_get(e, "count"));
                counts[c] = k > 0 ? (size_t)k : 0;
                if (!names[c])
                        r = -ENOENT; /* not a summary this code wrote: nothing to check */
        }
        if (r == 0 && spec->class_weights)
                r = imbalance_class_weights(spec, names, counts, n, w, err);
        if (r == 0)
                imbalance_message(names, counts, n, spec->class_weights != NULL, warning, size);
        free(names);
        free(counts);
        free(w);
        if (r == -ENOENT)
                return 0;
        return r == -ENOMEM ? ft_error_set(err, r, NULL, "out of memory") : r;
}

void api_jobs_warn(struct store *st, const char *job_id, const char *code, const char *message) {
        struct train_warning w = {.code = code, .message = message};
        json_t *j = train_event_json(&(struct train_event){TRAIN_EVENT_WARNING, .warning = &w});
        char *data = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        struct ft_error err = {0};
        if (!data || store_event_append(st, job_id, 0, "warning", data, NULL, &err) < 0)
                log_error("job %s: cannot record the '%s' warning: %s", job_id, code,
                          data ? err.message : "out of memory");
        free(data);
}

/* jobs.c - /v1/jobs: create (job spec validated with compute/jobspec.h plus
 * the checks that need the store: ids, then model and data against each other
 * with compute/job.h's job_check on the facts the store recorded), idempotent
 * retries, the queue cap, labels (metadata, suffix) and the metadata[KEY]
 * list filter, list, get, cancel, delete, events (JSON or SSE), checkpoints
 * and artifacts.
 * Not for: running jobs (daemon/workers.c), the SSE machinery (sse.c). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api/internal.h"
#include "common/log.h"
#include "common/sha256.h"
#include "compute/job.h"
#include "compute/jobspec.h"
#include "compute/model.h"
#include "store/store.h"

#define RETRY_AFTER_S "10"

/* What api_job_json() and the event and checkpoint lists below answer, for the
 * OpenAPI document: change a table with the code that builds the answer (the
 * contract tests check real answers against the document). */
static const struct api_field api_job_best_shape[] = {
        {"metric", API_T_STRING, .description = "early_stopping.metric, or val_accuracy / val_r2"},
        {"mode", API_T_STRING, .choices = (const char *const[]){"max", "min", NULL}},
        {"value", API_T_NUMBER},
        {"epoch", API_T_INT},
        {NULL},
};

const struct api_field api_job_shape[] = {
        {"id", API_T_STRING, .id_prefix = "job"},
        {"object", API_T_STRING, .choices = (const char *const[]){"job", NULL}},
        {"state", API_T_STRING, .choices = api_job_states},
        {"attempt", API_T_INT, .description = "runs started so far (a job whose worker died runs again)"},
        {"max_attempts", API_T_INT},
        {"model", API_T_STRING, .id_prefix = "mdl", .description = "the base model"},
        {"training_file", API_T_STRING, .id_prefix = "ds"},
        {"validation_file", API_T_STRING, .id_prefix = "ds", .nullable = true},
        {"kind", API_T_STRING, .choices = (const char *const[]){"fine_tune", "predictions", NULL},
         .description = "fine_tune (POST /v1/jobs) or predictions (POST /v1/models/{id}/predictions)"},
        {"spec", API_T_ANY, .ref = "AnyJobSpec",
         .description = "the job spec with every default written out (a predictions job: its model, dataset and "
                        "target)"},
        {"progress", API_T_OBJECT, .nullable = true,
         .description = "while it runs: epoch, step, batches and ETA ({} before the first step)"},
        {"metrics", API_T_OBJECT, .nullable = true, .description = "the final metrics once it succeeded"},
        {"error", API_T_OBJECT, .nullable = true, .description = "why it failed"},
        {"result_model", API_T_STRING, .id_prefix = "mdl", .nullable = true, .description = "the model it produced"},
        {"created_at", API_T_INT, .description = "Unix seconds"},
        {"started_at", API_T_INT, .nullable = true},
        {"finished_at", API_T_INT, .nullable = true},
        {"pause_requested", API_T_BOOL,
         .description = "running, asked to pause: it checkpoints and becomes paused within one batch"},
        {"runtime_seconds", API_T_NUMBER,
         .description = "running time of its earlier runs (pauses, restarts), what limits.max_runtime_seconds counts"},
        {"receipt", API_T_OBJECT, .nullable = true,
         .description = "what makes it repeatable, recorded when it finished: seed, spec_sha256, datasets (id, "
                        "sha256), base_model (id, weights_sha256), finetuned (version, build), onednn (version, "
                        "isa), threads, device, result_sha256 (of the weights' tensor bytes)"},
        {"replay_of", API_T_STRING, .id_prefix = "job", .nullable = true,
         .description = "the job this one replays (POST /v1/jobs/{id}/replay)"},
        {"replay", API_T_OBJECT, .nullable = true,
         .description = "a replay's verdict: of, identical (the same result_sha256; null until it succeeded), "
                        "differences (the receipt fields that differ)"},
        {"best", API_T_OBJECT, .nullable = true, .fields = api_job_best_shape,
         .description = "the best validation metric so far (api/best.c), null before the first epoch"},
        {"metadata", API_T_OBJECT, .description = "the labels given at create ({} when none)"},
        {"suffix", API_T_STRING, .nullable = true, .description = "names the model it produces"},
        {NULL},
};

const struct api_field api_job_create_fields[] = {
        {"metadata", API_T_OBJECT,
         .description = "labels: at most 16 string pairs, keys up to 64 characters, values up to 512; "
                        "GET /v1/jobs?metadata[KEY]=VALUE lists the jobs that have one"},
        {"suffix", API_T_STRING, .max_len = 64,
         .description = "up to 64 of A-Z a-z 0-9 . _ -: the model the job produces is named "
                        "'<base model name>:<suffix>'"},
        {NULL},
};

int api_job_labels_check(const json_t *metadata, const json_t *suffix, struct ft_error *err) {
        if (metadata && !json_is_null(metadata)) {
                if (!json_is_object(metadata))
                        return ft_error_set(err, -EINVAL, "metadata", "'metadata' must be an object of strings");
                if (json_object_size(metadata) > STORE_METADATA_MAX)
                        return ft_error_set(err, -EINVAL, "metadata", "'metadata' has %zu pairs: at most %d",
                                            json_object_size(metadata), STORE_METADATA_MAX);
                const char *k;
                const json_t *v;
                json_object_foreach((json_t *)metadata, k, v) {
                        char param[FT_ERROR_PARAM_MAX];
                        snprintf(param, sizeof(param), "metadata.%.64s", k);
                        if (!*k || strlen(k) > STORE_METADATA_KEY_MAX)
                                return ft_error_set(err, -EINVAL, "metadata",
                                                    "'metadata' keys must be 1 to %d characters",
                                                    STORE_METADATA_KEY_MAX);
                        if (!json_is_string(v))
                                return ft_error_set(err, -EINVAL, param, "'%s' must be a string", param);
                        if (strlen(json_string_value(v)) > STORE_METADATA_VALUE_MAX ||
                            strlen(json_string_value(v)) != json_string_length(v))
                                return ft_error_set(err, -EINVAL, param,
                                                    "'%s' must be at most %d characters (and no NUL)", param,
                                                    STORE_METADATA_VALUE_MAX);
                }
        }
        if (suffix && !json_is_null(suffix)) {
                const char *t = json_string_value(suffix);
                size_t n = t ? strlen(t) : 0;
                bool good = t && n >= 1 && n <= STORE_SUFFIX_MAX - 1;
                for (size_t i = 0; good && i < n; i++)
                        good = (t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') ||
                               (t[i] >= '0' && t[i] <= '9') || t[i] == '.' || t[i] == '_' || t[i] == '-';
                if (!good)
                        return ft_error_set(err, -EINVAL, "suffix",
                                            "'suffix' must be 1 to 64 of the characters A-Z a-z 0-9 . _ -");
        }
        return 0;
}

const struct api_field api_event_shape[] = {
        {"seq", API_T_INT, .description = "per job, from 1, in order (the SSE id)"},
        {"type", API_T_STRING, .description = "status, epoch, checkpoint, metrics, early_stopping, runtime, ..."},
        {"data", API_T_ANY, .description = "the event as the trainer or the worker reported it (docs/job-spec.md)"},
        {"created_at", API_T_INT},
        {NULL},
};

const struct api_field api_checkpoint_shape[] = {
        {"id", API_T_STRING, .description = "its number, as a string"},
        {"object", API_T_STRING, .choices = (const char *const[]){"checkpoint", NULL}},
        {"attempt", API_T_INT, .description = "the attempt that wrote it"},
        {"epoch", API_T_INT, .description = "epochs completed when it was written"},
        {"step", API_T_INT, .description = "optimizer steps completed when it was written"},
        {"meta", API_T_ANY, .description = "what the trainer recorded with it"},
        {"created_at", API_T_INT},
        {NULL},
};

json_t *api_job_json(struct api_server *server, struct store *st, const struct store_job *j) {
        json_t *progress = NULL;
        if (server->opts.job_progress && (j->state == STORE_JOB_RUNNING || j->state == STORE_JOB_CANCELLING)) {
                char *live = server->opts.job_progress(server->opts.job_progress_userdata, j->id);
                if (live)
                        progress = json_loads(live, 0, NULL);
                free(live);
        }
        if (!progress)
                progress = api_json_text(j->progress_json);
        json_t *spec = api_json_text(j->spec_json), *metrics = api_json_text(j->result_json);
        json_t *best = api_job_best_json(st, j, spec, metrics);
        const char *kind = json_string_value(json_object_get(spec, "kind"));
        json_t *replay = api_job_replay_json(st, j);
        json_t *metadata = api_json_text(j->metadata_json);
        if (!json_is_object(metadata)) {
                json_decref(metadata);
                metadata = json_object();
        }
        json_t *out = json_pack(
                "{s:s,s:s,s:s,s:i,s:i,s:s,s:s,s:s?,s:o,s:o,s:o,s:o,s:o,s:s?,s:I,s:o,s:o,s:b,s:f,s:o,s:s?,s:o,s:o,s:s?}",
                "id", j->id, "object", "job", "state", store_job_state_name(j->state), "attempt", j->attempt,
                "max_attempts", j->max_attempts, "model", j->model_id, "training_file", j->training_file,
                "validation_file", j->validation_file[0] ? j->validation_file : NULL, "spec", spec, "progress",
                progress, "metrics", metrics, "best", best, "error", api_json_text(j->error_json), "result_model",
                j->result_model_id[0] ? j->result_model_id : NULL, "created_at", (json_int_t)(j->created_at / 1000),
                "started_at", j->started_at ? json_integer(j->started_at / 1000) : json_null(), "finished_at",
                j->finished_at ? json_integer(j->finished_at / 1000) : json_null(), "pause_requested",
                j->pause_requested, "runtime_seconds", (double)j->runtime_ms / 1000.0, "receipt",
                api_json_text(j->receipt_json), "replay_of", j->replay_of[0] ? j->replay_of : NULL, "replay", replay,
                "metadata", metadata, "suffix", j->suffix[0] ? j->suffix : NULL);
        if (out)
                json_object_set_new(
                        out, "kind",
                        json_string(kind && strcmp(kind, "predictions") == 0 ? "predictions" : "fine_tune"));
        return out;
}

/* A dataset a job spec names, as the store recorded it at upload: its typed facts for job_check, with the
 * column and class names of its upload summary. */
struct stored_facts {
        struct store_dataset *d;
        json_t *schema;
        char **features, **classes; /* into schema's strings */
        struct job_data_facts f;
};

static void stored_facts_deinit(struct stored_facts *sf) {
        store_dataset_free(sf->d);
        json_decref(sf->schema);
        free(sf->features);
        free(sf->classes);
        memset(sf, 0, sizeof(*sf));
}

/* The strings of a JSON array (or of each element's `key`) when there are exactly n: a borrowed view. */
static char **names_of(const json_t *array, const char *key, size_t n) {
        if (!json_is_array(array) || json_array_size(array) != n || n == 0)
                return NULL;
        char **names = calloc(n, sizeof(char *));
        for (size_t i = 0; names && i < n; i++) {
                const json_t *e = json_array_get(array, i);
                const char *v = json_string_value(key ? json_object_get(e, key) : e);
                if (!v) {
                        free(names);
                        return NULL;
                }
                names[i] = (char *)v;
        }
        return names;
}

/* The dataset, which must exist (400 if not: it is a body field). */
static int stored_facts_load(struct store *st, const struct jobspec *spec, const char *id, const char *param,
                             struct stored_facts *ret, struct ft_error *err) {
        if (!api_id_valid(id, "ds"))
                return ft_error_set(err, -EINVAL, param,
                                    "'%s' must be a dataset id ('ds_...', from POST /v1/datasets), got '%.64s'", param,
                                    id);
        struct stored_facts sf = {0};
        int r = store_dataset_get(st, id, &sf.d, err);
        if (r == -ENOENT)
                return ft_error_set(err, -EINVAL, param, "'%s': no dataset '%s'", param, id);
        if (r < 0)
                return r;
        const struct store_dataset_facts *df = &sf.d->facts;
        bool images = df->kind == STORE_DATASET_IDX;
        sf.schema = api_json_text(sf.d->schema_json);
        sf.features = names_of(json_object_get(sf.schema, "feature_names"), NULL, (size_t)df->features);
        sf.classes = names_of(json_object_get(sf.schema, "classes"), "name", (size_t)df->classes);
        sf.f = (struct job_data_facts){
                .label = sf.d->id,
                .kind = images ? DATA_IMAGES : DATA_TABLE,
                .task = images || spec->task.type == JOBSPEC_TASK_CLASSIFICATION ? DATA_CLASSIFICATION
                                                                                 : DATA_REGRESSION,
                .rows = (size_t)df->rows,
                .n_features = (size_t)df->features,
                .feature_names = sf.features,
                .target = sf.d->target[0] ? sf.d->target : NULL,
                .n_classes = (size_t)df->classes,
                .class_names = sf.classes,
                .channels = (size_t)df->channels,
                .height = (size_t)df->height,
                .width = (size_t)df->width,
        };
        *ret = sf;
        return 0;
}

/* Everything that can be known before queueing: the ids, then model and data against each other with the
 * check the trainer applies (job_check), on the facts the store recorded. */
static int check_spec(struct store *st, const struct jobspec *spec, bool distributed, char *warning,
                      size_t warning_size, struct ft_error *err) {
        if (spec->model_spec)
                return ft_error_set(err, -EINVAL, "model",
                                    "'model' must be a model id: register an inline spec with POST /v1/models first");
        if (!api_id_valid(spec->model_ref, "mdl"))
                return ft_error_set(err, -EINVAL, "model",
                                    "'model' must be a model id ('mdl_...', from POST /v1/models), got '%.64s'",
                                    spec->model_ref);
        if (spec->training_file[1][0] || spec->validation_file[1][0])
                return ft_error_set(err, -EINVAL, spec->training_file[1][0] ? "training_file" : "validation_file",
                                    "name one dataset id: an IDX dataset uploaded as images + labels is one dataset");
        if (spec->resources.ranks > 1 && !distributed) /* the workers need an MPI launcher (serve --mpirun) */
                return ft_error_set(err, -EINVAL, "resources.ranks",
                                    "'resources.ranks' %u: this daemon has no MPI launcher (serve --mpirun) and runs "
                                    "each job in one process; train data-parallel with `mpirun -np %u finetuned "
                                    "train JOB.json`",
                                    spec->resources.ranks, spec->resources.ranks);

        struct stored_facts train = {0}, val = {0};
        struct store_model *m = NULL;
        json_t *mspec = NULL;
        int r = stored_facts_load(st, spec, spec->training_file[0], "training_file", &train, err);
        if (r == 0 && spec->validation_file[0][0])
                r = stored_facts_load(st, spec, spec->validation_file[0], "validation_file", &val, err);
        if (r == 0) {
                r = store_model_get(st, spec->model_ref, &m, err);
                if (r == -ENOENT)
                        r = ft_error_set(err, -EINVAL, "model", "'model': no model '%s'", spec->model_ref);
        }
        if (r < 0)
                goto out;
        mspec = api_json_text(m->spec_json);
        struct job_model_facts mf;
        r = job_model_facts_for(mspec, spec, &train.f, &mf, err);
        if (r == 0)
                r = job_check(spec, &mf, &train.f, val.d ? &val.f : NULL, err);
        if (r == 0) /* class_weights and class imbalance (diagnostics.c) */
                r = api_jobs_class_check(spec, train.schema, train.d->target, warning, warning_size, err);
out:
        json_decref(mspec);
        stored_facts_deinit(&train);
        stored_facts_deinit(&val);
        store_model_free(m);
        return r;
}

bool api_idempotency_key_valid(const char *key) {
        return *key && strlen(key) <= 255;
}

int api_last_event_id_parse(const char *s, int64_t *ret) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || *end || v < 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

enum MHD_Result api_jobs_create(struct api_request *req) {
        enum MHD_Result ret;
        struct store *st = api_store(req, &ret);
        if (!st)
                return ret;
        struct ft_error err = {0};
        const char *key = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Idempotency-Key");
        if (key && !api_idempotency_key_valid(key))
                return api_reply_error(req, API_ERR_INVALID_REQUEST, "Idempotency-Key",
                                       "'Idempotency-Key' must be 1 to 255 characters");

        json_t *root = NULL;
        int r = api_json_parse_body(req, &root, &err);
        if (r < 0)
                return api_reply_ft_error(req, r, &err);
        return api_jobs_submit(req, st, root, key);
}

enum MHD_Result api_jobs_submit(struct api_request *req, struct store *st, json_t *root, const char *key) {
        struct ft_error err = {0};
        int r = api_from_checkpoint_resolve(req, st, root, &err);
        if (r < 0) {
                json_decref(root);
                return api_reply_ft_error(req, r, &err);
        }
        /* the labels are the API's, not the job spec's: checked here, the rest goes to jobspec_parse */
        json_t *metadata = json_object_get(root, "metadata"), *suffix = json_object_get(root, "suffix");
        r = api_job_labels_check(metadata, suffix, &err);
        json_t *spec_root = r < 0 ? NULL : json_copy(root);
        if (!spec_root) {
                json_decref(root);
                return api_reply_ft_error(req, r < 0 ? r : -ENOMEM, &err);
        }
        json_object_del(spec_root, "metadata");
        json_object_del(spec_root, "suffix");
        struct store_metadata_pair pairs[STORE_METADATA_MAX];
        size_t n_pairs = 0;
        char *metadata_text = NULL;
        if (json_is_object(metadata)) {
                const char *k;
                json_t *v;
                json_object_foreach(metadata, k, v) pairs[n_pairs++] =
                        (struct store_metadata_pair){k, json_string_value(v)};
                metadata_text = json_dumps(metadata, JSON_COMPACT);
        }
        struct jobspec spec;
        r = jobspec_parse(spec_root, &spec, &err);
        json_decref(spec_root);
        if (r < 0) {
                free(metadata_text);
                json_decref(root);
                return api_reply_ft_error(req, -EINVAL, &err);
        }
        char warning[512] = "";
        r = check_spec(st, &spec, req->server->opts.distributed, warning, sizeof(warning), &err);
        if (r < 0)
                goto fail;
        const char *dry = api_query_get(req, "dry_run");
        if (dry && (strcmp(dry, "true") == 0 || strcmp(dry, "1") == 0)) {
                enum MHD_Result dr = api_jobs_dry_run(req, st, &spec);
                jobspec_deinit(&spec);
                json_decref(root);
                return dr;
        }

        int64_t queued = 0;
        r = store_job_count(st, STORE_JOB_STATE_BIT(STORE_JOB_QUEUED), &queued, &err);
        if (r < 0)
                goto fail;

        /* Canonical JSON (sorted keys, compact) of what the client sent: the
         * idempotency hash, insensitive to whitespace and key order. */
        char *canonical = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
        json_t *full = jobspec_to_json(&spec);
        char *spec_text = full ? json_dumps(full, JSON_COMPACT) : NULL;
        json_decref(full);
        char hash[SHA256_HEX_SIZE] = "";
        if (canonical) {
                uint8_t d[SHA256_DIGEST_SIZE];
                sha256_buffer(canonical, strlen(canonical), d);
                sha256_to_hex(d, hash);
        }
        free(canonical);
        if (!spec_text) {
                r = -ENOMEM;
                goto fail;
        }
        struct store_job_new jn = {
                .spec_json = spec_text,
                .model_id = spec.model_ref,
                .training_file = spec.training_file[0],
                .validation_file = spec.validation_file[0],
                .max_attempts = (int)spec.limits.max_attempts,
                .idempotency_key = key,
                .request_hash = hash,
                .metadata = pairs,
                .n_metadata = n_pairs,
                .metadata_json = metadata_text,
                .suffix = json_string_value(suffix),
        };
        struct store_job *job = NULL;
        if (queued >= (int64_t)req->server->opts.max_queued_jobs) {
                free(spec_text);
                free(metadata_text);
                jobspec_deinit(&spec);
                json_decref(root);
                return api_reply_error_headers(req, API_ERR_RATE_LIMITED, NULL,
                                               (const char *const[]){"Retry-After", RETRY_AFTER_S, NULL},
                                               "%lld jobs are queued (the limit is %u): retry later", (long long)queued,
                                               req->server->opts.max_queued_jobs);
        }
        r = store_job_enqueue(st, &jn, &job, &err);
        free(spec_text);
        free(metadata_text);
        metadata_text = NULL;
        if (r == -EEXIST) {
                jobspec_deinit(&spec);
                json_decref(root);
                return api_reply_error(req, API_ERR_IDEMPOTENCY_MISMATCH, "Idempotency-Key",
                                       "'Idempotency-Key' was already used with a different request body");
        }
        if (r == -ENOENT) /* a dataset or model deleted meanwhile: a body field */
                r = -EINVAL;
        if (r < 0)
                goto fail;
        bool replay = r == 1;
        jobspec_deinit(&spec);
        json_decref(root);
        if (!replay)
                log_info("job %s queued (model %s, data %s)", job->id, job->model_id, job->training_file);
        if (!replay && warning[0])
                api_jobs_warn(st, job->id, "class_imbalance", warning);
        char location[64];
        snprintf(location, sizeof(location), "/v1/jobs/%s", job->id);
        json_t *body = api_job_json(req->server, st, job);
        store_job_free(job);
        return api_reply_json_headers(
                req, replay ? MHD_HTTP_OK : MHD_HTTP_CREATED, body,
                (const char *const[]){"Location", location, "Idempotent-Replayed", replay ? "true" : "false", NULL});
fail:
        free(metadata_text);
        jobspec_deinit(&spec);
        json_decref(root);
        return api_reply_ft_error(req, r, &err);
}

/* The metadata[KEY]=VALUE arguments of a list, in the order given. */
struct metadata_args {
        struct store_metadata_pair pairs[STORE_METADATA_FILTER_MAX];
        char keys[STORE_METADATA_FILTER_MAX][STORE_METADATA_KEY_MAX + 1];
        size_t n;
        bool too_many;
};

static enum MHD_Result metadata_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        struct metadata_args *a = cls;
        (void)kind;
        size_t n = strlen(key);
        if (strncmp(key, "metadata[", 9) != 0 || n < 11 || key[n - 1] != ']')
                return MHD_YES; /* api_query_check vetted the name already */
        if (a->n == STORE_METADATA_FILTER_MAX) {
                a->too_many = true;
                return MHD_NO;
        }
        snprintf(a->keys[a->n], sizeof(a->keys[a->n]), "%.*s", (int)(n - 10), key + 9);
        a->pairs[a->n] = (struct store_metadata_pair){a->keys[a->n], value ? value : ""};
        a->n++;
        return MHD_YES;
}

enum MHD_Result api_jobs_list(struct api_request *req) {
        enum MHD_Result ret;
        struct store *st = api_store(req, &ret);
        if (!st)
                return ret;
        struct api_page page;
        api_page_from_query(req, &page);
        struct store_page sp = {.limit = page.limit, .after = page.after};
        struct store_job_filter filter = {0};
        const char *state = api_query_get(req, "state");
        enum store_job_state s;
        if (state && store_job_state_from_name(state, &s) == 0)
                filter.states = STORE_JOB_STATE_BIT(s);
        struct metadata_args margs = {0};
        MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, metadata_arg, &margs);
        if (margs.too_many)
                return api_reply_error(req, API_ERR_INVALID_REQUEST, "metadata",
                                       "filter by at most %d metadata[KEY]=VALUE pairs", STORE_METADATA_FILTER_MAX);
        filter.metadata = margs.pairs;
        filter.n_metadata = margs.n;
        struct store_job_list l = {0};
        struct ft_error err = {0};
        int r = store_job_list(st, &filter, &sp, &l, &err);
        if (r < 0)
                return api_reply_ft_error(req, r == -ENOENT ? -EINVAL : r, &err);
        json_t *items = json_array();
        for (size_t i = 0; i < l.n; i++)
                json_array_append_new(items, api_job_json(req->server, st, l.items[i]));
        bool more = l.has_more;
        store_job_list_deinit(&l);
        return api_reply_json(req, MHD_HTTP_OK, api_page_envelope(items, more, "id"));
}

static int job_load(struct api_request *req, struct store **ret_st, struct store_job **ret_job,
                    enum MHD_Result *ret_mhd) {
        const char *id;
        struct store *st;
        if (!api_path_store(req, "job", "job", &id, &st, ret_mhd))
                return -1;
        struct ft_error err = {0};
        int r = store_job_get(st, id, ret_job, &err);
        if (r < 0) {
                *ret_mhd = api_reply_ft_error(req, r, &err);
                return -1;
        }
        *ret_st = st;
        return 0;
}

enum MHD_Result api_jobs_get(struct api_request *req) {
        enum MHD_Result ret;
        struct store *st;
        struct store_job *job = NULL;
        if (job_load(req, &st, &job, &ret) < 0)
                return ret;
        json_t *body = api_job_json(req->server, st, job);
        store_job_free(job);
        return api_reply_json(req, MHD_HTTP_OK, body);
}

enum MHD_Result api_jobs_cancel(struct api_request *req) {
        enum MHD_Result ret;
        const char *id;
        if (!api_path_id(req, 0, "job", "job", &id, &ret))
                return ret;
        if (req->body_size > 0) { /* an optional empty object */
                json_t *j = api_request_json(req, (const struct api_field[]){{NULL}}, &ret);
                if (!j)
                        return ret;
                json_decref(j);
        }
        struct store *st = api_store(req, &ret);
        if (!st)
                return ret;
        struct store_job *job = NULL;
        struct ft_error err = {0};
        int r = store_job_cancel(st, id, &job, &err);
        if (r < 0) /* -EALREADY: 409 */
                return api_reply_ft_error(req, r, &err);
        log_info("job %s: cancel requested (%s)", id, store_job_state_name(job->state));
        json_t *body = api_job_json(req->server, st, job);
        store_job_free(job);
        return api_reply_json(req, MHD_HTTP_OK, body);
}

/* POST /v1/jobs/{id}/pause and /resume: the store's state change, answered with the job after it. */
static enum MHD_Result pause_or_resume(struct api_request *req, bool pause) {
        enum MHD_Result ret;
        const char *id;
        if (!api_path_id(req, 0, "job", "job", &id, &ret))
                return ret;
        if (req->body_size > 0) { /* an optional empty object */
                json_t *j = api_request_json(req, (const struct api_field[]){{NULL}}, &ret);
                if (!j)
                        return ret;
                json_decref(j);
        }
        struct store *st = api_store(req, &ret);
        if (!st)
                return ret;
        struct store_job *job = NULL;
        struct ft_error err = {0};
        int r = pause ? store_job_pause(st, id, &job, &err) : store_job_resume(st, id, &job, &err);
        if (r < 0) /* -EALREADY: 409 */
                return api_reply_ft_error(req, r, &err);
        log_info("job %s: %s (%s%s)", id, pause ? "pause requested" : "resumed", store_job_state_name(job->state),
                 job->pause_requested ? ", pause requested" : "");
        json_t *body = api_job_json(req->server, st, job);
        store_job_free(job);
        return api_reply_json(req, MHD_HTTP_OK, body);
}

enum MHD_Result api_jobs_pause(struct api_request *req) {
        return pause_or_resume(req, true);
}

enum MHD_Result api_jobs_resume(struct api_request *req) {
        return pause_or_resume(req, false);
}

/* DELETE /v1/jobs/{id}: a finished job with its events and checkpoints; the
 * model it produced stays. 409 while queued, running or cancelling. */
enum MHD_Result api_jobs_delete(struct api_request *req) {
        enum MHD_Result ret;
        const char *id;
        struct store *st;
        if (!api_path_store(req, "job", "job", &id, &st, &ret))
                return ret;
        struct ft_error err = {0};
        int r = store_job_delete(st, id, &err);
        if (r < 0)
                return api_reply_ft_error(req, r, &err); /* -EBUSY: 409 */
        log_info("job %s: deleted", id);
        return api_reply_deleted(req, "job", id);
}

enum MHD_Result api_jobs_events(struct api_request *req) {
        enum MHD_Result ret;
        struct store *st;
        struct store_job *job = NULL;
        if (job_load(req, &st, &job, &ret) < 0)
                return ret;
        char id[STORE_ID_MAX];
        snprintf(id, sizeof(id), "%s", job->id);
        store_job_free(job);

        const char *a = api_query_get(req, "after");
        int64_t after = a ? strtoll(a, NULL, 10) : 0;
        const char *s = api_query_get(req, "stream");
        const char *accept = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
        bool stream = s ? (strcmp(s, "true") == 0 || strcmp(s, "1") == 0)
                        : (accept && strstr(accept, "text/event-stream") != NULL);
        if (stream) {
                const char *last = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Last-Event-ID");
                if (last) {
                        int64_t v;
                        if (api_last_event_id_parse(last, &v) < 0)
                                return api_reply_error(req, API_ERR_INVALID_REQUEST, "Last-Event-ID",
                                                       "'Last-Event-ID' must be an event sequence number");
                        if (v > after)
                                after = v;
                }
                return api_sse_start(req, id, after);
        }
        const char *l = api_query_get(req, "limit");
        struct store_event_list list = {0};
        struct ft_error err = {0};
        int r = store_event_list(st, id, after, l ? (unsigned)strtoul(l, NULL, 10) : 100, &list, &err);
        if (r < 0)
                return api_reply_ft_error(req, r, &err);
        json_t *items = json_array();
        for (size_t i = 0; i < list.n; i++) {
                const struct store_event *e = &list.items[i];
                json_array_append_new(items, json_pack("{s:I,s:s,s:o,s:I}", "seq", (json_int_t)e->seq, "type", e->type,
                                                       "data", api_json_text(e->data_json), "created_at",
                                                       (json_int_t)(e->created_at / 1000)));
        }
        bool more = list.has_more;
        store_event_list_deinit(&list);
        return api_reply_json(req, MHD_HTTP_OK, api_page_envelope(items, more, "seq"));
}

enum MHD_Result api_jobs_checkpoints(struct api_request *req) {
        enum MHD_Result ret;
        struct store *st;
        struct store_job *job = NULL;
        if (job_load(req, &st, &job, &ret) < 0)
                return ret;
        struct api_page page;
        api_page_from_query(req, &page);
        struct store_page sp = {.limit = page.limit, .after = page.after};
        struct store_checkpoint_list l = {0};
        struct ft_error err = {0};
        int r = store_checkpoint_list(st, job->id, &sp, &l, &err);
        store_job_free(job);
        if (r < 0)
                return api_reply_ft_error(req, r == -ENOENT ? -EINVAL : r, &err);
        json_t *items = json_array();
        for (size_t i = 0; i < l.n; i++) {
                const struct store_checkpoint *c = l.items[i];
                char cid[32];
                snprintf(cid, sizeof(cid), "%lld", (long long)c->id);
                json_array_append_new(items, json_pack("{s:s,s:s,s:i,s:i,s:I,s:o,s:I}", "id", cid, "object",
                                                       "checkpoint", "attempt", c->attempt, "epoch", c->epoch, "step",
                                                       (json_int_t)c->step, "meta", api_json_text(c->meta_json),
                                                       "created_at", (json_int_t)(c->created_at / 1000)));
        }
        bool more = l.has_more;
        store_checkpoint_list_deinit(&l);
        return api_reply_json(req, MHD_HTTP_OK, api_page_envelope(items, more, "id"));
}

/* A predictions job's CSV: "<state>/jobs/<id>/predictions.csv" (the worker writes it before the job succeeds;
 * deleting the job removes it). Frees job. */
static enum MHD_Result predictions_artifact(struct api_request *req, struct store *st, struct store_job *job) {
        char path[PATH_MAX];
        json_t *spec = api_json_text(job->spec_json);
        const char *kind = json_string_value(json_object_get(spec, "kind"));
        bool predictions = kind && strcmp(kind, "predictions") == 0;
        json_decref(spec);
        enum MHD_Result ret;
        if (!predictions)
                ret = api_reply_error(req, API_ERR_NOT_FOUND, "name",
                                      "job '%s' is a fine-tuning job: 'predictions.csv' is a predictions job's "
                                      "artifact (POST /v1/models/{id}/predictions)",
                                      job->id);
        else if (ft_path_join(path, sizeof(path), store_state_dir(st), "jobs", job->id, "predictions.csv", NULL) < 0 ||
                 access(path, R_OK) < 0)
                ret = api_reply_error(req, API_ERR_NOT_FOUND, "name", "the job's predictions.csv is gone");
        else
                ret = api_reply_file(req, path, "text/csv", "predictions.csv");
        store_job_free(job);
        return ret;
}

enum MHD_Result api_jobs_artifact(struct api_request *req) {
        enum MHD_Result ret;
        struct store *st;
        struct store_job *job = NULL;
        const char *name = api_path_param(req, 1);
        if (name && strcmp(name, "examples.csv") == 0) /* per-example diagnostics (diagnostics.c) */
                return api_jobs_examples_csv(req);
        if (!name || (strcmp(name, "model.safetensors") != 0 && strcmp(name, "metrics.json") != 0 &&
                      strcmp(name, "predictions.csv") != 0))
                return api_reply_error(req, API_ERR_NOT_FOUND, "name",
                                       "no artifact '%.64s' (there are 'model.safetensors', 'metrics.json', "
                                       "'examples.csv' and, of a predictions job, 'predictions.csv')",
                                       name ? name : "");
        if (job_load(req, &st, &job, &ret) < 0)
                return ret;
        if (job->state != STORE_JOB_SUCCEEDED) {
                ret = api_reply_error(req, API_ERR_CONFLICT, "id", "job '%s' is %s: artifacts exist once it succeeds",
                                      job->id, store_job_state_name(job->state));
                store_job_free(job);
                return ret;
        }
        if (strcmp(name, "predictions.csv") == 0)
                return predictions_artifact(req, st, job);
        if (strcmp(name, "metrics.json") == 0) {
                /* the file compute/job wrote (the one metrics.json format); a job finished before the store kept
                 * it has its final metrics only */
                char path[PATH_MAX];
                if (!job->metrics_sha256[0] || store_blob_path(st, job->metrics_sha256, path, sizeof(path), NULL) < 0) {
                        json_t *metrics = api_json_text(job->result_json);
                        store_job_free(job);
                        return api_reply_json(req, MHD_HTTP_OK, metrics);
                }
                store_job_free(job);
                return api_reply_file(req, path, "application/json", "metrics.json");
        }
        struct store_model *m = NULL;
        struct ft_error err = {0};
        int r = job->result_model_id[0] ? store_model_get(st, job->result_model_id, &m, &err) : -ENOENT;
        store_job_free(job);
        if (r < 0 || !m->weights_path[0]) {
                store_model_free(m);
                return api_reply_error(req, API_ERR_NOT_FOUND, "name",
                                       "the job has no model (a predictions job makes none) or it was deleted");
        }
        ret = api_reply_file(req, m->weights_path, "application/octet-stream", "model.safetensors");
        store_model_free(m);
        return ret;
}

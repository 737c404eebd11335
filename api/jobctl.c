/* jobctl.c - warm starts and clones (issue 18): POST /v1/jobs/{id}/checkpoints/{n}/model (a checkpoint
 * registered as a model, once per checkpoint: its model.safetensors carries the spec, preprocessing and
 * classes), a job spec's from_checkpoint resolved into its "model" the same way, and POST /v1/jobs/{id}/clone
 * (the job's echoed spec with a partial spec merged over it, RFC 7386, submitted as a new job); POST
 * /v1/jobs/{id}/replay (the same spec again, answered with whether it should be bit-identical, and each replay's
 * job object says whether it was, from the two receipts the workers recorded); POST /v1/jobs?dry_run=true's
 * estimate (compute/estimate.h on the job's real data and model, on an HTTP thread, one at a time).
 * Not for: pause and resume (jobs.c, the store), running jobs (daemon/workers.c). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#include "api/internal.h"
#include "common/log.h"
#include "compute/compute.h"
#include "compute/data.h"
#include "compute/estimate.h"
#include "compute/job.h"
#include "compute/model.h"
#include "compute/safetensors.h"
#include "store/store.h"

#define CHECKPOINT_MODEL_MAX ((int64_t)16 << 30) /* bytes of one checkpoint's weights */
#define CLONE_DEPTH_MAX 16 /* nesting of a merge patch */

/* The body of POST .../checkpoints/{n}/model. */
const struct api_field api_checkpoint_model_fields[] = {
        {"name", API_T_STRING, .max_len = 200,
         .description = "a name for the model (default: '<job> checkpoint <n> (epoch e, step s)')"},
        {NULL},
};

static int parse_checkpoint_id(const char *text, int64_t *ret) {
        char *end;
        errno = 0;
        long long v = text && *text ? strtoll(text, &end, 10) : -1;
        if (!text || !*text || errno || *end || v < 1)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* A file into the blob store: *ret_sha256 its hash. */
static int blob_from_fd(struct store *st, int fd, char ret_sha256[STORE_SHA256_HEX], struct ft_error *err) {
        struct store_blob_writer *w = NULL;
        char buf[1 << 16];
        int r = store_blob_begin(st, CHECKPOINT_MODEL_MAX, &w, err);
        if (r < 0)
                return r;
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0) {
                        store_blob_abort(w);
                        return ft_error_set(err, -EIO, NULL, "cannot read the checkpoint: %s", strerror(errno));
                }
                if (n == 0)
                        break;
                r = store_blob_write(w, buf, (size_t)n, err);
                if (r < 0) {
                        store_blob_abort(w);
                        return r;
                }
        }
        return store_blob_commit(w, ret_sha256, NULL, err);
}

/* Checkpoint `ckpt_id` of job `job_id` as a model: the one registered from it before (same job, same weights),
 * or a new one named `name` (NULL: a default). *ret_created says which. -ENOENT (param "checkpoint") when the
 * job has no such checkpoint or its files are gone; -EINVAL when its weights do not open as a model. */
static int checkpoint_model(struct store *st, const char *job_id, int64_t ckpt_id, const char *name,
                            struct store_model **ret, bool *ret_created, struct ft_error *err) {
        struct store_checkpoint *c = NULL;
        struct store_model *m = NULL;
        struct model *built = NULL;
        char path[PATH_MAX], blob[PATH_MAX], sha[STORE_SHA256_HEX], dflt[STORE_NAME_MAX];
        int fd = -1;
        int r = store_checkpoint_get(st, job_id, ckpt_id, &c, err);
        if (r < 0)
                return r;
        if (!c->dir[0] ||
            ft_path_join(path, sizeof(path), store_state_dir(st), c->dir, "model.safetensors", NULL) < 0) {
                r = ft_error_set(err, -ENOENT, "checkpoint", "checkpoint %lld of job '%s' has no weights file",
                                 (long long)ckpt_id, job_id);
                goto out;
        }
        /* opened first: a checkpoint that keep prunes meanwhile stays readable through the descriptor */
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                r = ft_error_set(err, -ENOENT, "checkpoint", "checkpoint %lld of job '%s' is gone (pruned by keep)",
                                 (long long)ckpt_id, job_id);
                goto out;
        }
        r = blob_from_fd(st, fd, sha, err);
        if (r < 0)
                goto out;
        r = store_model_find_by_weights(st, job_id, sha, &m, err);
        if (r != 0) {
                if (r == 1 && ret_created)
                        *ret_created = false;
                goto out;
        }
        /* the weights open as the model their spec describes, strictly */
        r = store_blob_path(st, sha, blob, sizeof(blob), err);
        if (r == 0)
                r = st_model_open(blob, (size_t)CHECKPOINT_MODEL_MAX, &built, NULL, NULL, NULL, err);
        if (r < 0) {
                char inner[FT_ERROR_MSG_MAX];
                snprintf(inner, sizeof(inner), "%s", err ? err->message : "");
                r = ft_error_set(err, -EINVAL, "checkpoint", "checkpoint %lld does not open as a model: %s",
                                 (long long)ckpt_id, inner);
                goto out;
        }
        char *spec = json_dumps(model_spec(built), JSON_COMPACT | JSON_SORT_KEYS);
        if (!name || !*name) {
                snprintf(dflt, sizeof(dflt), "%s checkpoint %lld (epoch %d, step %lld)", job_id, (long long)ckpt_id,
                         c->epoch, (long long)c->step);
                name = dflt;
        }
        struct store_model_new mn = {.name = name,
                                     .spec_json = spec ? spec : "{}",
                                     .weights_sha256 = sha,
                                     .source = STORE_MODEL_JOB,
                                     .source_job_id = job_id};
        r = spec ? store_model_create(st, &mn, &m, err) : ft_error_set(err, -ENOMEM, NULL, "out of memory");
        free(spec);
        if (r == 0 && ret_created)
                *ret_created = true;
out:
        if (fd >= 0)
                close(fd);
        model_free(built);
        store_checkpoint_free(c);
        if (r >= 0) {
                *ret = m;
                return 0;
        }
        store_model_free(m);
        return r;
}

enum MHD_Result api_jobs_checkpoint_model(struct api_request *req) {
        enum MHD_Result ret;
        const char *id;
        int64_t ckpt_id;
        if (!api_path_id(req, 0, "job", "job", &id, &ret))
                return ret;
        if (parse_checkpoint_id(api_path_param(req, 1), &ckpt_id) < 0)
                return api_reply_error(req, API_ERR_NOT_FOUND, "checkpoint",
                                       "no checkpoint '%.32s' (checkpoint ids are the numbers GET "
                                       "/v1/jobs/{id}/checkpoints lists)",
                                       api_path_param(req, 1) ? api_path_param(req, 1) : "");
        json_t *body = NULL;
        if (req->body_size > 0) {
                body = api_request_json(req, api_checkpoint_model_fields, &ret);
                if (!body)
                        return ret;
        }
        struct store *st = api_store(req, &ret);
        if (!st) {
                json_decref(body);
                return ret;
        }
        struct store_model *m = NULL;
        struct ft_error err = {0};
        bool created = false;
        int r = checkpoint_model(st, id, ckpt_id, json_string_value(json_object_get(body, "name")), &m, &created, &err);
        json_decref(body);
        if (r < 0)
                return api_reply_ft_error(req, r, &err);
        if (created)
                log_info("job %s: checkpoint %lld registered as model %s", id, (long long)ckpt_id, m->id);
        char location[64];
        snprintf(location, sizeof(location), "/v1/models/%s", m->id);
        json_t *out = api_model_json(m);
        store_model_free(m);
        return api_reply_json_headers(req, created ? MHD_HTTP_CREATED : MHD_HTTP_OK, out,
                                      (const char *const[]){"Location", location, NULL});
}

int api_from_checkpoint_resolve(struct api_request *req, struct store *st, json_t *root, struct ft_error *err) {
        (void)req;
        json_t *fc = json_object_get(root, "from_checkpoint");
        if (!fc || json_is_null(fc))
                return 0;
        /* the shape is jobspec's to check (after this, with everything else); only what is needed here */
        const char *job = json_string_value(json_object_get(fc, "job"));
        const char *ckpt = json_string_value(json_object_get(fc, "checkpoint"));
        if (!json_is_object(fc) || !job || !ckpt)
                return 0; /* jobspec_parse names the field */
        if (json_object_get(root, "model"))
                return ft_error_set(err, -EINVAL, "from_checkpoint",
                                    "give 'model' or 'from_checkpoint', not both: the checkpoint's weights become the "
                                    "model");
        int64_t id;
        if (!api_id_valid(job, "job"))
                return ft_error_set(err, -EINVAL, "from_checkpoint.job",
                                    "'from_checkpoint.job' must be a job id ('job_...'), got '%.64s'", job);
        if (parse_checkpoint_id(ckpt, &id) < 0)
                return ft_error_set(err, -EINVAL, "from_checkpoint.checkpoint",
                                    "'from_checkpoint.checkpoint' must be a checkpoint id (a number as a string), "
                                    "got '%.32s'",
                                    ckpt);
        struct store_model *m = NULL;
        int r = checkpoint_model(st, job, id, NULL, &m, NULL, err);
        if (r == -ENOENT) { /* a body field: 400 */
                char inner[FT_ERROR_MSG_MAX];
                snprintf(inner, sizeof(inner), "%s", err ? err->message : "");
                bool no_job = err && strcmp(err->param, "id") == 0;
                return ft_error_set(err, -EINVAL, no_job ? "from_checkpoint.job" : "from_checkpoint.checkpoint",
                                    "'from_checkpoint': %s", inner);
        }
        if (r < 0)
                return r;
        r = json_object_set_new(root, "model", json_string(m->id)) < 0 ? -ENOMEM : 0;
        store_model_free(m);
        return r < 0 ? ft_error_set(err, r, NULL, "out of memory") : 0;
}

/* RFC 7386 JSON merge patch of `patch` over `target` (in place): objects merge key by key, null removes a key,
 * anything else replaces. */
static int merge_patch(json_t *target, json_t *patch, int depth) {
        const char *k;
        json_t *v;
        if (depth > CLONE_DEPTH_MAX)
                return -E2BIG;
        json_object_foreach(patch, k, v) {
                json_t *t = json_object_get(target, k);
                if (json_is_null(v)) {
                        json_object_del(target, k);
                } else if (json_is_object(v) && json_is_object(t)) {
                        int r = merge_patch(t, v, depth + 1);
                        if (r < 0)
                                return r;
                } else if (json_object_set(target, k, v) < 0) {
                        return -ENOMEM;
                }
        }
        return 0;
}

enum MHD_Result api_jobs_clone(struct api_request *req) {
        enum MHD_Result ret;
        const char *id;
        if (!api_path_id(req, 0, "job", "job", &id, &ret))
                return ret;
        const char *key = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Idempotency-Key");
        if (key && !api_idempotency_key_valid(key))
                return api_reply_error(req, API_ERR_INVALID_REQUEST, "Idempotency-Key",
                                       "'Idempotency-Key' must be 1 to 255 characters");
        struct ft_error err = {0};
        json_t *patch = NULL;
        if (req->body_size > 0) {
                int r = api_json_parse_body(req, &patch, &err);
                if (r < 0)
                        return api_reply_ft_error(req, r, &err);
                if (!json_is_object(patch)) {
                        json_decref(patch);
                        return api_reply_error(req, API_ERR_INVALID_REQUEST, NULL,
                                               "the body must be a JSON object: a partial job spec");
                }
        }
        struct store *st = api_store(req, &ret);
        if (!st) {
                json_decref(patch);
                return ret;
        }
        struct store_job *job = NULL;
        int r = store_job_get(st, id, &job, &err);
        if (r < 0) {
                json_decref(patch);
                return api_reply_ft_error(req, r, &err);
        }
        json_t *root = api_json_text(job->spec_json);
        store_job_free(job);
        if (!json_is_object(root)) {
                json_decref(root);
                json_decref(patch);
                return api_reply_error(req, API_ERR_INTERNAL, NULL, "the job's spec cannot be read");
        }
        /* the original's warm start is already its model: a clone starts from that model unless the patch says
         * otherwise */
        json_object_del(root, "from_checkpoint");
        if (patch && json_object_get(patch, "from_checkpoint") &&
            !json_is_null(json_object_get(patch, "from_checkpoint")))
                json_object_del(root, "model");
        r = patch ? merge_patch(root, patch, 0) : 0;
        json_decref(patch);
        if (r < 0) {
                json_decref(root);
                return r == -E2BIG ? api_reply_error(req, API_ERR_INVALID_REQUEST, NULL, "the patch nests too deep")
                                   : api_reply_error(req, API_ERR_INTERNAL, NULL, "out of memory");
        }
        return api_jobs_submit(req, st, root, key);
}

/* ---- reproducibility receipts and replays ------------------------------------------------------------- */

/* The receipt's parts a result depends on, besides result_sha256. */
static const char *const receipt_inputs[] = {"seed",   "spec_sha256", "datasets", "base_model", "finetuned",
                                             "onednn", "threads",     "device",   NULL};

/* The names of the inputs two receipts disagree on, as a JSON array (new reference). */
static json_t *receipt_differences(const json_t *a, const json_t *b) {
        json_t *out = json_array();
        for (size_t i = 0; out && receipt_inputs[i]; i++) {
                const json_t *x = json_object_get(a, receipt_inputs[i]), *y = json_object_get(b, receipt_inputs[i]);
                if (json_is_object(x) && json_is_object(y)) {
                        const char *k;
                        json_t *v;
                        json_object_foreach((json_t *)x, k, v) {
                                if (!json_equal(v, json_object_get(y, k))) {
                                        char name[128];
                                        snprintf(name, sizeof(name), "%s.%s", receipt_inputs[i], k);
                                        json_array_append_new(out, json_string(name));
                                }
                        }
                        json_object_foreach((json_t *)y, k, v) {
                                if (!json_object_get(x, k)) {
                                        char name[128];
                                        snprintf(name, sizeof(name), "%s.%s", receipt_inputs[i], k);
                                        json_array_append_new(out, json_string(name));
                                }
                        }
                } else if (!(x == NULL && y == NULL) && (!x || !y || !json_equal(x, y))) {
                        json_array_append_new(out, json_string(receipt_inputs[i]));
                }
        }
        return out;
}

json_t *api_job_replay_json(struct store *st, const struct store_job *j) {
        if (!j->replay_of[0])
                return json_null();
        struct store_job *orig = NULL;
        json_t *mine = api_json_text(j->receipt_json), *theirs = NULL;
        if (store_job_get(st, j->replay_of, &orig, NULL) == 0)
                theirs = api_json_text(orig->receipt_json);
        store_job_free(orig);
        const char *a = json_string_value(json_object_get(mine, "result_sha256"));
        const char *b = json_string_value(json_object_get(theirs, "result_sha256"));
        json_t *identical = j->state != STORE_JOB_SUCCEEDED ? json_null()
                            : a && b                        ? json_boolean(strcmp(a, b) == 0)
                                                            : json_false();
        json_t *diff =
                json_is_object(mine) && json_is_object(theirs) ? receipt_differences(theirs, mine) : json_array();
        json_decref(mine);
        json_decref(theirs);
        return json_pack("{s:s,s:o,s:o}", "of", j->replay_of, "identical", identical, "differences", diff);
}

/* Why a replay of `job` (succeeded, with `receipt`) cannot run at all (its inputs changed or are gone): a message
 * into why, false; true when it can. */
static bool replay_possible(struct store *st, const struct store_job *job, const json_t *receipt, char *why,
                            size_t size) {
        struct store_model *m = NULL;
        const json_t *base = json_object_get(receipt, "base_model");
        const char *want = json_string_value(json_object_get(base, "weights_sha256"));
        if (store_model_get(st, job->model_id, &m, NULL) < 0) {
                snprintf(why, size, "its base model '%s' was deleted", job->model_id);
                return false;
        }
        bool same = want ? strcmp(want, m->weights_sha256) == 0 : m->weights_sha256[0] == '\0';
        store_model_free(m);
        if (!same) {
                snprintf(why, size, "its base model '%s' has other weights now", job->model_id);
                return false;
        }
        const char *keys[2] = {"training_file", "validation_file"};
        for (int i = 0; i < 2; i++) {
                const json_t *d = json_object_get(json_object_get(receipt, "datasets"), keys[i]);
                const char *id = json_string_value(json_object_get(d, "id"));
                struct store_dataset *ds = NULL;
                if (!id)
                        continue;
                if (store_dataset_get(st, id, &ds, NULL) < 0) {
                        snprintf(why, size, "its %s '%s' was deleted", keys[i], id);
                        return false;
                }
                same = strcmp(ds->sha256, json_string_value(json_object_get(d, "sha256")) ?: "") == 0;
                store_dataset_free(ds);
                if (!same) {
                        snprintf(why, size, "its %s '%s' holds other data now", keys[i], id);
                        return false;
                }
        }
        return true;
}

enum MHD_Result api_jobs_replay(struct api_request *req) {
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
        struct store_job *job = NULL, *made = NULL;
        struct ft_error err = {0};
        int r = store_job_get(st, id, &job, &err);
        if (r < 0)
                return api_reply_ft_error(req, r, &err);
        json_t *receipt = api_json_text(job->receipt_json);
        char why[256];
        if (job->state != STORE_JOB_SUCCEEDED || !json_string_value(json_object_get(receipt, "result_sha256"))) {
                ret = api_reply_error(req, API_ERR_CONFLICT, "id",
                                      "job '%s' is %s%s: only a succeeded job with a receipt can be replayed", id,
                                      store_job_state_name(job->state),
                                      job->state == STORE_JOB_SUCCEEDED ? " without a receipt (finished before "
                                                                          "receipts were recorded)"
                                                                        : "");
                goto out;
        }
        if (!replay_possible(st, job, receipt, why, sizeof(why))) {
                ret = api_reply_error(req, API_ERR_CONFLICT, "id", "job '%s' cannot be replayed: %s", id, why);
                goto out;
        }
        /* what would make this run differ: the receipt against this daemon */
        const struct compute_runtime_info *rt = &req->server->runtime;
        json_t *reasons = json_array();
        const json_t *ft = json_object_get(receipt, "finetuned"), *dnnl = json_object_get(receipt, "onednn");
        const char *v;
        if ((v = json_string_value(json_object_get(ft, "version"))) && strcmp(v, FINETUNED_VERSION) != 0)
                json_array_append_new(reasons, json_sprintf("finetuned %s ran it, this is %s", v, FINETUNED_VERSION));
        if ((v = json_string_value(json_object_get(dnnl, "version"))) && strcmp(v, rt->onednn_version) != 0)
                json_array_append_new(reasons, json_sprintf("oneDNN %s ran it, this is %s", v, rt->onednn_version));
        if ((v = json_string_value(json_object_get(dnnl, "isa"))) && strcmp(v, rt->onednn_isa) != 0)
                json_array_append_new(reasons, json_sprintf("it ran on ISA %s, this daemon's oneDNN uses %s (results "
                                                            "differ in the last bits across ISAs)",
                                                            v, rt->onednn_isa));
        json_int_t threads = json_integer_value(json_object_get(receipt, "threads"));
        if (req->server->opts.job_threads && threads && threads != (json_int_t)req->server->opts.job_threads)
                json_array_append_new(reasons, json_sprintf("it ran with %lld threads, this daemon's workers use %u "
                                                            "(the reductions split differently)",
                                                            (long long)threads, req->server->opts.job_threads));
        if ((v = json_string_value(json_object_get(receipt, "device"))) && strcmp(v, "cpu") != 0)
                json_array_append_new(reasons, json_sprintf("it ran on %s; the GPU's kernels are not bit-reproducible "
                                                            "across runs",
                                                            v));
        int64_t queued = 0;
        r = store_job_count(st, STORE_JOB_STATE_BIT(STORE_JOB_QUEUED), &queued, &err);
        if (r == 0 && queued >= (int64_t)req->server->opts.max_queued_jobs) {
                json_decref(reasons);
                ret = api_reply_error(req, API_ERR_RATE_LIMITED, NULL, "%lld jobs are queued: retry later",
                                      (long long)queued);
                goto out;
        }
        struct jobspec spec;
        int attempts = 0;
        if (r == 0 && jobspec_parse_string(job->spec_json, strlen(job->spec_json), &spec, &err) == 0) {
                attempts = (int)spec.limits.max_attempts;
                jobspec_deinit(&spec);
        }
        struct store_job_new jn = {.spec_json = job->spec_json,
                                   .model_id = job->model_id,
                                   .training_file = job->training_file,
                                   .validation_file = job->validation_file,
                                   .max_attempts = attempts,
                                   .replay_of = job->id};
        if (r == 0)
                r = store_job_enqueue(st, &jn, &made, &err);
        if (r < 0) {
                json_decref(reasons);
                ret = api_reply_ft_error(req, r == -ENOENT ? -EBUSY : r, &err);
                goto out;
        }
        log_info("job %s queued: a replay of %s", made->id, id);
        json_t *body = api_job_json(req->server, st, made);
        json_t *verdict = json_object_get(body, "replay"); /* {of, identical: null, differences} */
        json_object_set_new(verdict, "expect_identical", json_boolean(json_array_size(reasons) == 0));
        json_object_set_new(verdict, "reasons", reasons);
        char location[64];
        snprintf(location, sizeof(location), "/v1/jobs/%s", made->id);
        ret = api_reply_json_headers(req, MHD_HTTP_CREATED, body, (const char *const[]){"Location", location, NULL});
out:
        json_decref(receipt);
        store_job_free(job);
        store_job_free(made);
        return ret;
}

/* ---- dry runs ---------------------------------------------------------------------------------------------- */

static atomic_bool dry_running; /* one dry run at a time: it holds an HTTP thread and the CPU for seconds */

static int dry_load(struct store *st, const struct jobspec *spec, const char *id, const char *param,
                    struct dataset **ret, struct ft_error *err) {
        struct store_dataset *d = NULL;
        int r = store_dataset_get(st, id, &d, err);
        if (r < 0)
                return r;
        struct job_data_source src = {
                .path = d->path, .path2 = d->labels_path[0] ? d->labels_path : NULL, .label = id, .param = param};
        r = job_data_open(spec, &src, ret, err);
        store_dataset_free(d);
        return r;
}

/* The job's base model as a worker builds it (daemon/workers.c build_model): its spec and weights, sized to the
 * data. */
static int dry_model(struct store *st, const struct jobspec *spec, const struct dataset *train, struct model **ret,
                     struct ft_error *err) {
        struct store_model *rec = NULL;
        struct st_file *f = NULL;
        json_t *mspec = NULL;
        int r = store_model_get(st, spec->model_ref, &rec, err);
        if (r == 0 && !(mspec = json_loads(rec->spec_json, 0, NULL)))
                r = ft_error_set(err, -EINVAL, "model", "model '%s' has an unreadable spec", rec->id);
        if (r == 0 && rec->weights_path[0])
                r = st_file_open(rec->weights_path, 0, &f, err);
        if (r == 0) {
                struct job_model_source src = {.spec = mspec, .weights = f, .weights_label = rec->id};
                r = job_model_build(spec, &src, train, ret, NULL, err);
        }
        st_file_free(f);
        json_decref(mspec);
        store_model_free(rec);
        return r;
}

enum MHD_Result api_jobs_dry_run(struct api_request *req, struct store *st, const struct jobspec *spec) {
        if (atomic_exchange(&dry_running, true))
                return api_reply_error_headers(req, API_ERR_RATE_LIMITED, NULL,
                                               (const char *const[]){"Retry-After", "5", NULL},
                                               "another dry run is timing its batches: retry shortly");
        struct ft_error err = {0};
        struct dataset *train = NULL, *val = NULL;
        struct model *m = NULL;
        struct compute_ctx *ctx = NULL;
        struct job_estimate e;
        enum MHD_Result ret;
        unsigned threads = req->server->opts.job_threads, workers = req->server->opts.job_workers;
        uint64_t before = job_estimate_rss();
        int r = dry_load(st, spec, spec->training_file[0], "training_file", &train, &err);
        if (r == 0 && spec->validation_file[0][0])
                r = dry_load(st, spec, spec->validation_file[0], "validation_file", &val, &err);
        if (r == 0)
                r = dry_model(st, spec, train, &m, &err);
        if (r == 0)
                r = compute_ctx_new_on((int)threads, (enum compute_device)spec->device, 0, &ctx, &err);
        if (r == 0)
                r = job_estimate_run(spec, m, ctx, train, val, &e, &err);
        if (r < 0) {
                ret = api_reply_ft_error(req, r == -ENOENT ? -EINVAL : r, &err);
                goto out;
        }
        e.peak_memory_bytes = e.peak_memory_bytes > before ? e.peak_memory_bytes - before : 0;
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        int used = compute_ctx_threads(ctx);
        json_t *warnings = json_array();
        if (cores > 0 && workers && used > 0 && (long)workers * used > cores)
                json_array_append_new(warnings,
                                      json_sprintf("%u workers x %d threads exceed the %ld cores: jobs running at once "
                                                   "slow each other down (this estimate is for one job alone)",
                                                   workers, used, cores));
        if (e.first_epoch_measured == false && e.batches_timed < ESTIMATE_STEPS)
                json_array_append_new(warnings, json_string("few batches were timed: the estimate is rough"));
        json_t *full = jobspec_to_json(spec);
        json_t *body =
                json_pack("{s:s,s:b,s:o,s:o,s:{s:i,s:I,s:s},s:o}", "object", "dry_run", "valid", true, "spec",
                          full ? full : json_null(), "estimate", job_estimate_json(&e), "machine", "threads", used,
                          "cores", (json_int_t)cores, "device", compute_ctx_device(ctx), "warnings", warnings);
        ret = api_reply_json(req, MHD_HTTP_OK, body);
out:
        model_free(m); /* before its context: the model's primitives belong to it */
        compute_ctx_free(ctx);
        dataset_free(train);
        dataset_free(val);
        atomic_store(&dry_running, false);
        return ret;
}

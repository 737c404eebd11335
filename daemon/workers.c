/* workers.c - the worker pool: threads that claim jobs from the store, build
 * the model and load the data the job names, run compute/train with callbacks
 * that record events, progress and checkpoints in the store, and register the
 * result as a model.
 *
 * Leases: a claim holds the job for lease_ms; the worker renews it from the
 * trainer's should_stop callback (polled before every batch) every lease/3,
 * and at once when the store's change notifier says its job changed (a cancel
 * request), so a cancel lands within one batch. Every write is fenced by the
 * attempt number: a worker whose lease was lost (-ESTALE) stops and writes
 * nothing more.
 *
 * Resume: a job requeued after a crash is claimed again with attempt + 1 and
 * continues from its newest recorded checkpoint. Events already stored are
 * never repeated: epoch events for epochs up to the job's last_epoch (which
 * the store raises with each epoch event, in the same transaction) are the
 * epochs run again between the checkpoint and the crash and are dropped, so
 * the stream has every epoch exactly once.
 *
 * What a job is made of (its data, its model, the check, the files it leaves)
 * is compute/job's; the worker keeps ids, leases and store writes: events
 * through train_event_json, Prometheus from the typed events, the model and
 * metrics.json into the blob store.
 *
 * Not for: HTTP, the training loop (compute/train.c), loading data or sizing
 * models (compute/job.c).
 */
#include "daemon/workers.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "api/prometheus.h"
#include "common/log.h"
#include "daemon/ckpt_archive.h"
#include "daemon/sdnotify.h"
#include "compute/context.h"
#include "compute/data.h"
#include "compute/job.h"
#include "compute/jobspec.h"
#include "compute/model.h"
#include "compute/safetensors.h"
#include "compute/train.h"
#include "store/store.h"

#define PROGRESS_DB_INTERVAL_S 1.0
#define IDLE_WAIT_MS 250 /* bounds how long stop waits for an idle worker */

struct workers;

struct worker {
        struct workers *pool;
        pthread_t thread;
        bool started;
        unsigned index;
        char id[96];
        struct store *store;
        int slot; /* the watchdog's progress slot (sdnotify.h), -1 if none */

        pthread_mutex_t lock; /* job_id, progress */
        char job_id[STORE_ID_MAX];
        char *progress;

        /* the running job */
        atomic_bool check; /* the notifier saw a change to our job: heartbeat now */
        int attempt;
        double last_heartbeat, last_progress_write;
        int64_t lease_ms;
        bool cancel, lost;
        int64_t max_epoch_recorded;
        unsigned batch_size; /* for the samples/s metric */
        unsigned keep_checkpoints; /* the job's checkpoint.keep */
        int64_t last_step; /* batches counted so far ((epoch - 1) * batches + batch); -1: none yet */
        int64_t batches_per_epoch; /* from the progress reports */
        bool metrics_started;
        const char *final_state; /* for the metrics: "succeeded", ..., "queued" when released */
};

struct workers {
        char state_dir[PATH_MAX];
        char store_url[1024];
        unsigned n, threads;
        int gpus[64]; /* --gpus: worker i uses gpus[i % n_gpus]; none: GPU 0 */
        unsigned n_gpus;
        int64_t lease_ms;
        atomic_bool stop;
        struct store *sub_store;
        struct store_subscription *sub;
        struct worker *w;
};

/* ---- the change notifier ---------------------------------------------------------- */

/* The notifier runs on the writer's thread: a worker's own writes (events,
 * progress) are not news to it, and skipping them saves a heartbeat commit. */
static void on_change(const char *job_id, void *userdata) {
        struct workers *pool = userdata;
        for (unsigned i = 0; i < pool->n; i++) {
                struct worker *w = &pool->w[i];
                if (w->started && pthread_equal(w->thread, pthread_self()))
                        continue;
                pthread_mutex_lock(&w->lock);
                if (w->job_id[0] && (!job_id || strcmp(job_id, w->job_id) == 0))
                        atomic_store(&w->check, true);
                pthread_mutex_unlock(&w->lock);
        }
}

char *workers_progress(void *userdata, const char *job_id) {
        struct workers *pool = userdata;
        char *out = NULL;
        if (!pool)
                return NULL;
        for (unsigned i = 0; i < pool->n && !out; i++) {
                struct worker *w = &pool->w[i];
                pthread_mutex_lock(&w->lock);
                if (w->progress && strcmp(w->job_id, job_id) == 0)
                        out = strdup(w->progress);
                pthread_mutex_unlock(&w->lock);
        }
        return out;
}

/* ---- trainer callbacks ------------------------------------------------------------- */

static void mark_lost(struct worker *w, int r, const struct ft_error *err) {
        if (r == -ESTALE) {
                if (!w->lost)
                        log_warning("worker %u: lost the lease on %s (attempt %d): stopping", w->index, w->job_id,
                                    w->attempt);
                w->lost = true;
        } else {
                log_error("worker %u: %s: %s", w->index, w->job_id, err->message);
        }
}

static bool cb_should_stop(void *userdata) {
        struct worker *w = userdata;
        sdnotify_progress_beat(w->slot); /* polled before every batch: a hung batch stops the watchdog */
        if (w->lost || w->cancel)
                return true;
        double now = ft_now_monotonic();
        bool due = now - w->last_heartbeat >= (double)w->lease_ms / 3000.0;
        if (atomic_exchange(&w->check, false) || due) {
                bool cancel = false;
                struct ft_error err = {0};
                int r = store_job_heartbeat(w->store, w->job_id, w->attempt, w->lease_ms, &cancel, &err);
                if (r < 0)
                        mark_lost(w, r, &err);
                else
                        w->last_heartbeat = now;
                if (cancel)
                        w->cancel = true;
        }
        return w->lost || w->cancel || atomic_load(&w->pool->stop);
}

/* One trainer event into the job's stream, serialised as every client reads it. */
static int record_event(struct worker *w, const struct train_event *ev) {
        if (w->lost)
                return -ESTALE;
        json_t *j = train_event_json(ev);
        char *data = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
        json_decref(j);
        if (!data)
                return -ENOMEM;
        struct ft_error err = {0};
        int r = store_event_append(w->store, w->job_id, w->attempt, train_event_type_name(ev->type), data, NULL, &err);
        free(data);
        if (r < 0) {
                mark_lost(w, r, &err);
                return r;
        }
        return 0;
}

static int cb_epoch(void *userdata, const struct train_epoch *e) {
        struct worker *w = userdata;
        if (w->lost)
                return -ESTALE;
        if ((int64_t)e->epoch <= w->max_epoch_recorded)
                return 0; /* re-run after a resume: already in the stream */
        w->max_epoch_recorded = e->epoch;
        /* progress is rate-limited: count the epoch's last batches now */
        int64_t end = (int64_t)e->epoch * w->batches_per_epoch;
        if (w->batches_per_epoch > 0 && w->last_step >= 0 && end > w->last_step) {
                api_metrics_job_progress(w->job_id, e->epoch, (uint64_t)(end - w->last_step) * w->batch_size, NAN);
                w->last_step = end;
        }
        api_metrics_job_epoch(w->job_id, e->epoch, e->train_loss);
        /* the event and the job's last_epoch in one transaction */
        json_t *j = train_event_json(&(struct train_event){TRAIN_EVENT_EPOCH, .epoch = e});
        char *data = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
        json_decref(j);
        if (!data)
                return -ENOMEM;
        struct ft_error err = {0};
        int r = store_job_epoch_append(w->store, w->job_id, w->attempt, e->epoch, data, NULL, &err);
        free(data);
        if (r < 0) {
                mark_lost(w, r, &err);
                return r;
        }
        return 0;
}

static int cb_early_stop(void *userdata, const struct train_early_stop *es) {
        return record_event(userdata, &(struct train_event){TRAIN_EVENT_EARLY_STOP, .early_stop = es});
}

static int cb_final(void *userdata, const struct train_final *f) {
        return record_event(userdata, &(struct train_event){TRAIN_EVENT_FINAL, .final = f});
}

static int cb_runtime(void *userdata, const struct train_runtime *rt) {
        return record_event(userdata, &(struct train_event){TRAIN_EVENT_RUNTIME, .runtime = rt});
}

static void cb_progress(void *userdata, const struct train_progress *p) {
        struct worker *w = userdata;
        /* samples = batches x batch_size (an epoch's last, smaller batch counts as full) */
        int64_t batches = (int64_t)p->batches;
        int64_t done = (int64_t)(p->epoch - 1) * batches + (int64_t)p->batch;
        if (w->last_step < 0) /* the first report of this run: a resumed job starts at an epoch boundary */
                w->last_step = (int64_t)(p->epoch - 1) * batches;
        uint64_t samples = done > w->last_step ? (uint64_t)(done - w->last_step) * w->batch_size : 0;
        w->last_step = FT_MAX(w->last_step, done);
        w->batches_per_epoch = batches;
        api_metrics_job_progress(w->job_id, p->epoch, samples, p->has_loss ? p->train_loss : NAN);
        json_t *j = train_event_json(&(struct train_event){TRAIN_EVENT_PROGRESS, .progress = p});
        char *text = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
        json_decref(j);
        if (!text)
                return;
        pthread_mutex_lock(&w->lock);
        free(w->progress);
        w->progress = strdup(text);
        pthread_mutex_unlock(&w->lock);
        double now = ft_now_monotonic();
        if (!w->lost && now - w->last_progress_write >= PROGRESS_DB_INTERVAL_S) {
                struct ft_error err = {0};
                int r = store_job_progress_set(w->store, w->job_id, w->attempt, text, &err);
                if (r < 0)
                        mark_lost(w, r, &err);
                w->last_progress_write = now;
        }
        free(text);
}

static int cb_checkpoint(void *userdata, const struct train_checkpoint_info *info) {
        struct worker *w = userdata;
        if (w->lost)
                return -ESTALE;
        /* the store keeps paths relative to the state directory */
        size_t n = strlen(w->pool->state_dir);
        const char *rel = info->path;
        if (strncmp(rel, w->pool->state_dir, n) == 0 && rel[n] == '/')
                rel += n + 1;
        char meta[96];
        snprintf(meta, sizeof(meta), "{\"partial\":%s}", info->partial ? "true" : "false");
        struct store_checkpoint_new cn = {
                .epoch = (int)info->epoch,
                .step = (int64_t)info->step,
                .dir = rel,
                .meta_json = meta,
                .keep = (int)w->keep_checkpoints}; /* the trainer removes the directories of the dropped rows */
        struct ft_error err = {0};
        char sha[STORE_SHA256_HEX];
        int r = 0;
        if (store_is_shared(w->store)) {
                /* another daemon may resume the job: the checkpoint goes into the shared store as one blob, and
                 * the directory stays here as its local copy (ckpt_archive.h) */
                r = ckpt_archive_pack(w->store, info->path, sha, &err);
                if (r < 0) {
                        log_error("worker %u: %s: cannot store checkpoint '%s': %s", w->index, w->job_id, rel,
                                  err.message);
                        return r;
                }
                cn.dir = NULL;
                cn.blob_sha256 = sha;
        }
        r = store_checkpoint_add(w->store, w->job_id, w->attempt, &cn, NULL, &err);
        if (r < 0) {
                mark_lost(w, r, &err);
                return r;
        }
        return 0;
}

/* Fencing for files: the store's writes are fenced by the attempt, and so is a checkpoint's rename into place.
 * Right before it, the lease is renewed (store_job_heartbeat, fenced by the attempt): -ESTALE means another
 * attempt holds the job now, and this one's checkpoint is abandoned. Its temporary files carry the attempt
 * (temp_tag "a<attempt>"), so a stale writer never touches the live attempt's. */
static int cb_before_checkpoint_commit(void *userdata, const struct train_checkpoint_info *info) {
        struct worker *w = userdata;
        bool cancel = false;
        struct ft_error err = {0};
        int r = w->lost ? -ESTALE : store_job_heartbeat(w->store, w->job_id, w->attempt, w->lease_ms, &cancel, &err);
        if (r < 0) {
                mark_lost(w, r, &err);
                if (r == -ESTALE)
                        log_warning("worker %u: %s: checkpoint at step %llu of attempt %d abandoned: the job "
                                    "belongs to a newer attempt",
                                    w->index, w->job_id, (unsigned long long)info->step, w->attempt);
                return r;
        }
        w->last_heartbeat = ft_now_monotonic();
        if (cancel)
                w->cancel = true;
        return 0;
}

/* Temporary files of older attempts of this job (a crashed or frozen worker's): removed when a newer attempt
 * starts. A stale writer still busy with them then fails on its own files, never on ours. */
static void sweep_stale_temps(struct worker *w, const char *dir) {
        DIR *d = opendir(dir);
        if (!d)
                return;
        struct dirent *e;
        while ((e = readdir(d))) {
                const char *a = strrchr(e->d_name, '-');
                char *end;
                if (strncmp(e->d_name, ".tmp-", 5) != 0 || !a || a[1] != 'a')
                        continue;
                long attempt = strtol(a + 2, &end, 10);
                if ((*end && strcmp(end, ".safetensors") != 0 && strcmp(end, ".json") != 0) || attempt >= w->attempt)
                        continue;
                char path[PATH_MAX], sub[PATH_MAX];
                if (ft_path_join(path, sizeof(path), dir, e->d_name, NULL) < 0)
                        continue;
                DIR *inner = opendir(path);
                if (inner) {
                        struct dirent *f;
                        while ((f = readdir(inner)))
                                if (f->d_name[0] != '.' || (strcmp(f->d_name, ".") && strcmp(f->d_name, "..")))
                                        if (ft_path_join(sub, sizeof(sub), path, f->d_name, NULL) == 0)
                                                unlink(sub);
                        closedir(inner);
                        rmdir(path);
                } else {
                        unlink(path);
                }
                log_info("worker %u: %s: removed '%s' left by attempt %ld", w->index, w->job_id, e->d_name, attempt);
        }
        closedir(d);
}

/* ---- loading what a job names ------------------------------------------------------- */

/* A dataset by id: its blob(s) opened through compute/job, messages naming the id, not the blob path. */
static int load_dataset(struct worker *w, const char *id, const char *param, const struct jobspec *spec,
                        struct dataset **ret, struct ft_error *err) {
        struct store_dataset *d = NULL;
        int r = store_dataset_get(w->store, id, &d, err);
        if (r < 0)
                return r;
        struct job_data_source src = {
                .path = d->path,
                .path2 = d->labels_path[0] ? d->labels_path : NULL, /* an IDX dataset's labels file */
                .label = id,
                .param = param,
        };
        r = job_data_open(spec, &src, ret, err);
        store_dataset_free(d);
        return r;
}

/* The job's base model (a store model: its spec and weights), sized to the data by compute/job. */
static int build_model(struct worker *w, const struct store_model *rec, const struct jobspec *spec,
                       const struct dataset *train, struct model **ret, struct ft_error *err) {
        json_t *mspec = json_loads(rec->spec_json, 0, NULL);
        struct st_file *f = NULL;
        struct st_load_report rep = {0};
        int r = 0;
        if (!mspec)
                return ft_error_set(err, -EINVAL, "model", "model '%s' has an unreadable spec", rec->id);
        if (rec->weights_path[0])
                r = st_file_open(rec->weights_path, 0, &f, err);
        if (r == 0) {
                struct job_model_source src = {.spec = mspec, .weights = f, .weights_label = rec->id};
                r = job_model_build(spec, &src, train, ret, &rep, err);
        }
        if (r == 0 && rep.head_replaced)
                log_info("worker %u: %s: head '%s' replaced for %zu outputs", w->index, w->job_id, rep.head,
                         model_output_count(*ret));
        st_load_report_deinit(&rep);
        st_file_free(f);
        json_decref(mspec);
        return r;
}

/* A file into the blob store (then removed): its sha256 into ret_sha. */
static int blob_from_file(struct worker *w, const char *path, char ret_sha[STORE_SHA256_HEX], struct ft_error *err) {
        struct store_blob_writer *bw = NULL;
        FILE *f = NULL;
        int r = store_blob_begin(w->store, 0, &bw, err);
        if (r == 0 && !(f = fopen(path, "rb")))
                r = ft_error_set(err, -errno, NULL, "cannot read '%s': %s", path, strerror(errno));
        char buf[1 << 16];
        size_t got;
        while (r == 0 && (got = fread(buf, 1, sizeof(buf), f)) > 0)
                r = store_blob_write(bw, buf, got, err);
        if (f)
                fclose(f);
        if (r == 0) {
                r = store_blob_commit(bw, ret_sha, NULL, err);
                bw = NULL;
        }
        store_blob_abort(bw);
        unlink(path);
        return r;
}

/* The final model (compute/job writes it with its spec, preprocessing, class names, task and this job's id),
 * into the blob store. */
static int save_result(struct worker *w, struct model *m, const struct dataset *train, const struct jobspec *spec,
                       const struct train_result *res, const char *dir, char ret_sha[STORE_SHA256_HEX],
                       struct ft_error *err) {
        char path[PATH_MAX], name[64];
        snprintf(name, sizeof(name), ".tmp-model-a%d.safetensors", w->attempt); /* this attempt's own file */
        int r = ft_path_join(path, sizeof(path), dir, name, NULL);
        if (r < 0)
                return ft_error_set(err, r, NULL, "job directory path is too long");
        r = job_result_save(path, m, spec, train, res, w->job_id, err);
        return r < 0 ? r : blob_from_file(w, path, ret_sha, err);
}

/* metrics.json (compute/job's one format, history included) into the blob store. */
static int save_metrics(struct worker *w, const struct train_result *res, const char *dir,
                        char ret_sha[STORE_SHA256_HEX], struct ft_error *err) {
        char path[PATH_MAX], name[64];
        snprintf(name, sizeof(name), ".tmp-metrics-a%d.json", w->attempt);
        int r = ft_path_join(path, sizeof(path), dir, name, NULL);
        if (r < 0)
                return ft_error_set(err, r, NULL, "job directory path is too long");
        r = job_metrics_write(path, res, err);
        return r < 0 ? r : blob_from_file(w, path, ret_sha, err);
}

static int mkdir_p2(const char *state, const char *job_id, char *out, size_t size) {
        int r = ft_path_join(out, size, state, "jobs", NULL);
        if (r < 0)
                return r;
        if (mkdir(out, 0700) < 0 && errno != EEXIST)
                return -errno;
        r = ft_path_join(out, size, state, "jobs", job_id, NULL);
        if (r < 0)
                return r;
        if (mkdir(out, 0700) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static void finish_with(struct worker *w, const struct store_job_outcome *o) {
        struct ft_error err = {0};
        char model_id[STORE_ID_MAX] = "";
        enum store_job_state state = o->state;
        int r = store_job_finish_with(w->store, w->job_id, w->attempt, o, model_id, &err);
        if (r < 0)
                mark_lost(w, r, &err);
        else
                w->final_state = store_job_state_name(state);
        if (r == 0)
                log_info("worker %u: job %s %s%s%s", w->index, w->job_id, store_job_state_name(state),
                         model_id[0] ? ", model " : "", model_id);
}

static void finish(struct worker *w, enum store_job_state state, const char *result, const char *error) {
        finish_with(w, &(struct store_job_outcome){.state = state, .result_json = result, .error_json = error});
}

/* Server paths never reach clients: in a message stored for the job, "<state>/jobs/<id>/" goes (the rest is
 * relative to the job, ".tmp-ckpt-500-a2/model.safetensors"), a blob's "<state>/blobs/xx/<sha>" becomes "blob
 * <sha prefix>", and any other "<state>/" goes. The log keeps the full message. */
static void scrub_paths(const char *state, const char *job_id, const char *in, char *out, size_t size) {
        size_t n = strlen(state), o = 0;
        char job_prefix[STORE_ID_MAX + 8];
        snprintf(job_prefix, sizeof(job_prefix), "/jobs/%s", job_id);
        size_t jn = strlen(job_prefix);
        while (*in && o + 1 < size) {
                if (n && strncmp(in, state, n) == 0 && (in[n] == '/' || in[n] == '\'' || in[n] == '\0')) {
                        in += n;
                        if (strncmp(in, job_prefix, jn) == 0 && (in[jn] == '/' || in[jn] == '\'')) {
                                in += jn;
                                in += *in == '/';
                                if (*in == '\'')
                                        o += (size_t)snprintf(out + o, size - o, "the job's directory");
                        } else if (strncmp(in, "/blobs/", 7) == 0 && strlen(in) >= 10) {
                                in += 10; /* "/blobs/xx/" */
                                o += (size_t)snprintf(out + o, size - o, "blob ");
                                size_t k = 0;
                                for (; in[k] && in[k] != '\'' && in[k] != ' ' && in[k] != ':'; k++)
                                        if (k < 12 && o + 1 < size)
                                                out[o++] = in[k];
                                in += k;
                        } else {
                                in += *in == '/';
                                if (*in == '\'' || !*in)
                                        o += (size_t)snprintf(out + o, size - o, "the state directory");
                        }
                        if (o >= size)
                                o = size - 1;
                        continue;
                }
                out[o++] = *in++;
        }
        out[o] = '\0';
}

static void fail(struct worker *w, const char *code, const struct ft_error *err) {
        char message[sizeof(err->message)];
        scrub_paths(w->pool->state_dir, w->job_id, err->message, message, sizeof(message));
        json_t *e = json_pack("{s:s,s:s,s:s?}", "code", code, "message", message[0] ? message : "failed", "param",
                              err->param[0] ? err->param : NULL);
        char *text = e ? json_dumps(e, JSON_COMPACT) : NULL;
        json_decref(e);
        log_warning("worker %u: job %s failed: %s", w->index, w->job_id, err->message);
        finish(w, STORE_JOB_FAILED, NULL, text);
        free(text);
}

static void run_job(struct worker *w, struct store_job *job) {
        struct ft_error err = {0};
        struct jobspec spec;
        struct dataset *train = NULL, *val = NULL;
        struct store_model *base = NULL;
        struct model *m = NULL;
        struct compute_ctx *ctx = NULL;
        struct store_checkpoint *ckpt = NULL;
        struct train_result res = {0};
        char dir[PATH_MAX], resume[PATH_MAX];
        bool have_spec = false;

        pthread_mutex_lock(&w->lock);
        snprintf(w->job_id, sizeof(w->job_id), "%s", job->id);
        free(w->progress);
        w->progress = NULL;
        pthread_mutex_unlock(&w->lock);
        w->attempt = job->attempt;
        w->cancel = w->lost = false;
        w->last_heartbeat = w->last_progress_write = ft_now_monotonic();
        w->lease_ms = w->pool->lease_ms;
        atomic_store(&w->check, false);
        w->max_epoch_recorded = job->last_epoch; /* epochs a resumed run repeats are already in the stream */
        w->last_step = -1;
        w->batches_per_epoch = 0;
        w->metrics_started = false;
        w->final_state = NULL;
        log_info("worker %u: job %s claimed (attempt %d)", w->index, job->id, job->attempt);

        int r = jobspec_parse_string(job->spec_json, strlen(job->spec_json), &spec, &err);
        if (r < 0) {
                fail(w, "invalid_job", &err);
                goto out;
        }
        have_spec = true;
        w->batch_size = spec.hyperparameters.batch_size;
        w->keep_checkpoints = spec.checkpoint.keep;
        api_metrics_job_start(job->id, spec.hyperparameters.epochs); /* -ENOSPC: no per-job series, totals count */
        w->metrics_started = true;
        r = load_dataset(w, job->training_file, "training_file", &spec, &train, &err);
        if (r == 0 && job->validation_file[0])
                r = load_dataset(w, job->validation_file, "validation_file", &spec, &val, &err);
        if (r < 0) {
                fail(w, "invalid_data", &err);
                goto out;
        }
        r = store_model_get(w->store, job->model_id, &base, &err);
        if (r == 0)
                r = build_model(w, base, &spec, train, &m, &err);
        if (r < 0) {
                fail(w, "invalid_model", &err);
                goto out;
        }
        unsigned threads = w->pool->threads;
        int gpu = w->pool->n_gpus ? w->pool->gpus[w->index % w->pool->n_gpus] : 0;
        r = compute_ctx_new_on((int)threads, (enum compute_device)spec.device, gpu, &ctx, &err);
        if (r < 0) {
                fail(w, strcmp(err.param, "device") == 0 ? "device_unavailable" : "internal_error", &err);
                goto out;
        }
        r = mkdir_p2(w->pool->state_dir, job->id, dir, sizeof(dir));
        if (r < 0) {
                err.message[0] = '\0';
                ft_error_set(&err, r, NULL, "cannot create '%s': %s", dir, strerror(-r));
                fail(w, "internal_error", &err);
                goto out;
        }
        sweep_stale_temps(w, dir);
        char tag[32];
        snprintf(tag, sizeof(tag), "a%d", w->attempt);
        struct train_options topt = {.checkpoint_dir = dir, .temp_tag = tag};
        if (store_checkpoint_latest(w->store, job->id, &ckpt, NULL) == 1 && ckpt->dir[0]) {
                if (ft_path_join(resume, sizeof(resume), w->pool->state_dir, ckpt->dir, NULL) >= 0)
                        topt.resume_from = resume; /* else start over: the checkpoint cannot be named */
                log_info("worker %u: job %s resumes from %s (epoch %d)", w->index, job->id, ckpt->dir, ckpt->epoch);
        } else if (ckpt && ckpt->blob_sha256[0]) {
                /* a shared store's checkpoint: unpacked where the trainer wrote it, on whichever daemon resumes */
                char name[48];
                snprintf(name, sizeof(name), "ckpt-%lld", (long long)ckpt->step);
                struct ft_error uerr = {0};
                if (ft_path_join(resume, sizeof(resume), dir, name, NULL) >= 0 &&
                    ckpt_archive_unpack(w->store, ckpt->blob_sha256, resume, &uerr) == 0) {
                        topt.resume_from = resume;
                        log_info("worker %u: job %s resumes from checkpoint blob %.12s (epoch %d)", w->index, job->id,
                                 ckpt->blob_sha256, ckpt->epoch);
                } else {
                        log_warning("worker %u: job %s starts over: checkpoint %.12s: %s", w->index, job->id,
                                    ckpt->blob_sha256, uerr.message);
                }
        }
        /* Loading and building may have taken a while: renew before the first batch. */
        w->last_heartbeat = 0;
        if (cb_should_stop(w) && w->lost)
                goto out;
        struct train_callbacks cb = {
                .userdata = w,
                .on_epoch = cb_epoch,
                .on_progress = cb_progress,
                .on_checkpoint = cb_checkpoint,
                .on_early_stop = cb_early_stop,
                .on_final = cb_final,
                .on_runtime = cb_runtime,
                .should_stop = cb_should_stop,
                .before_checkpoint_commit = cb_before_checkpoint_commit,
        };
        r = train_run(&spec, m, ctx, train, val, &topt, &cb, &res, &err);
        if (w->lost)
                goto out;
        if (r == -ECANCELED) {
                if (w->cancel) {
                        finish(w, STORE_JOB_CANCELLED, NULL, NULL);
                } else { /* the daemon is stopping: back to the queue, resumed at the next start */
                        r = store_job_release(w->store, job->id, w->attempt, &err);
                        if (r == 0)
                                w->final_state = "queued";
                        log_info("worker %u: job %s released for the next start%s%s", w->index, job->id,
                                 r < 0 ? ": " : "", r < 0 ? err.message : "");
                }
                goto out;
        }
        if (r < 0) {
                fail(w, r == -EINVAL ? "invalid_job" : "training_failed", &err);
                goto out;
        }
        char sha[STORE_SHA256_HEX] = "";
        char metrics_sha[STORE_SHA256_HEX] = "";
        r = save_result(w, m, train, &spec, &res, dir, sha, &err);
        if (r == 0)
                r = save_metrics(w, &res, dir, metrics_sha, &err);
        if (r < 0) {
                fail(w, "internal_error", &err);
                goto out;
        }
        json_t *mdoc = job_metrics_json(&res, false);
        char *metrics = mdoc ? json_dumps(mdoc, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
        json_decref(mdoc);
        char *mspec = json_dumps(model_spec(m), JSON_COMPACT | JSON_SORT_KEYS);
        char name[STORE_NAME_MAX];
        snprintf(name, sizeof(name), "%.200s (fine-tuned by %s)", base->name, job->id);
        struct store_model_new mn = {.name = name,
                                     .spec_json = mspec,
                                     .weights_sha256 = sha,
                                     .source = STORE_MODEL_JOB,
                                     .source_job_id = job->id};
        finish_with(w, &(struct store_job_outcome){.state = STORE_JOB_SUCCEEDED,
                                                   .result_json = metrics ? metrics : "{}",
                                                   .model = &mn,
                                                   .metrics_sha256 = metrics_sha});
        free(metrics);
        free(mspec);
out:
        if (w->metrics_started)
                api_metrics_job_finish(job->id, w->final_state ? w->final_state : w->lost ? "lost" : "failed");
        train_result_deinit(&res);
        store_checkpoint_free(ckpt);
        model_free(m);
        compute_ctx_free(ctx);
        store_model_free(base);
        dataset_free(train);
        dataset_free(val);
        if (have_spec)
                jobspec_deinit(&spec);
        pthread_mutex_lock(&w->lock);
        w->job_id[0] = '\0';
        free(w->progress);
        w->progress = NULL;
        pthread_mutex_unlock(&w->lock);
}

static void *worker_main(void *arg) {
        struct worker *w = arg;
        struct ft_error err = {0};
        while (!atomic_load(&w->pool->stop)) {
                sdnotify_progress_beat(w->slot);
                uint64_t gen = store_queue_generation(w->store);
                struct store_job *job = NULL;
                int r = store_job_claim(w->store, w->id, w->pool->lease_ms, &job, &err);
                if (r < 0) {
                        log_error("worker %u: cannot claim a job: %s", w->index, err.message);
                        store_queue_wait(w->store, gen, 1000, NULL);
                        continue;
                }
                if (r == 0) {
                        store_queue_wait(w->store, gen, IDLE_WAIT_MS, NULL);
                        continue;
                }
                run_job(w, job);
                store_job_free(job);
        }
        return NULL;
}

int workers_start(const struct workers_options *opts, struct workers **ret, struct ft_error *err) {
        struct workers *pool = calloc(1, sizeof(*pool));
        if (!pool)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        if (ft_path_join(pool->state_dir, sizeof(pool->state_dir), opts->state_dir, NULL) < 0) {
                free(pool);
                return ft_error_set(err, -ENAMETOOLONG, "state-dir", "state directory path is too long");
        }
        if (opts->store_url && strlen(opts->store_url) >= sizeof(pool->store_url)) {
                free(pool);
                return ft_error_set(err, -EINVAL, "store", "store URL is too long");
        }
        snprintf(pool->store_url, sizeof(pool->store_url), "%s", opts->store_url ? opts->store_url : "");
        pool->n = opts->n ? opts->n : 1;
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        pool->n_gpus = FT_MIN(opts->n_gpus, ARRAY_SIZE(pool->gpus));
        for (unsigned i = 0; i < pool->n_gpus; i++)
                pool->gpus[i] = opts->gpus[i];
        pool->threads = opts->threads ? opts->threads : (unsigned)FT_MAX(1, cores / (long)pool->n);
        pool->lease_ms = opts->lease_ms ? opts->lease_ms : 30000;
        pool->w = calloc(pool->n, sizeof(*pool->w));
        int r = pool->w ? 0 : -ENOMEM;
        for (unsigned i = 0; r == 0 && i < pool->n; i++) {
                pool->w[i].pool = pool;
                pool->w[i].slot = -1;
                pthread_mutex_init(&pool->w[i].lock, NULL);
        }
        if (r == 0)
                r = store_open_with(pool->state_dir, &(struct store_options){.url = pool->store_url}, &pool->sub_store,
                                    err);
        if (r == 0)
                r = store_subscribe(pool->sub_store, on_change, pool, &pool->sub, err);
        char host[64] = "host";
        gethostname(host, sizeof(host) - 1);
        for (unsigned i = 0; r == 0 && i < pool->n; i++) {
                struct worker *w = &pool->w[i];
                w->index = i;
                char name[32];
                snprintf(name, sizeof(name), "worker %u", i);
                w->slot = sdnotify_progress_add(name);
                snprintf(w->id, sizeof(w->id), "%.60s:%d:w%u", host, (int)getpid(), i);
                r = store_open_with(pool->state_dir, &(struct store_options){.url = pool->store_url}, &w->store, err);
        }
        for (unsigned i = 0; r == 0 && i < pool->n; i++) {
                r = -pthread_create(&pool->w[i].thread, NULL, worker_main, &pool->w[i]);
                if (r < 0)
                        ft_error_set(err, r, NULL, "cannot start worker threads: %s", strerror(-r));
                else
                        pool->w[i].started = true;
        }
        if (r < 0) {
                workers_stop(pool);
                return r;
        }
        *ret = pool;
        return 0;
}

void workers_stop(struct workers *pool) {
        if (!pool)
                return;
        atomic_store(&pool->stop, true);
        for (unsigned i = 0; pool->w && i < pool->n; i++)
                if (pool->w[i].started)
                        pthread_join(pool->w[i].thread, NULL);
        store_unsubscribe(pool->sub);
        for (unsigned i = 0; pool->w && i < pool->n; i++) {
                if (pool->w[i].pool && pool->w[i].slot >= 0)
                        sdnotify_progress_remove(pool->w[i].slot);
                store_close(pool->w[i].store);
                free(pool->w[i].progress);
                if (pool->w[i].pool)
                        pthread_mutex_destroy(&pool->w[i].lock);
        }
        store_close(pool->sub_store);
        free(pool->w);
        free(pool);
}

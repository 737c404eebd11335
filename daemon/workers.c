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
 * Data-parallel jobs (resources.ranks above 1) run as `finetuned train` under
 * the --mpirun launcher (daemon/launcher.c) instead of in the worker's thread;
 * rank 0's NDJSON goes through the same callbacks, the lease and cancel the
 * same way (run_distributed).
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
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"

#include "api/prometheus.h"
#include "common/fileio.h"
#include "common/sha256.h"
#include "compute/compute.h"
#include "common/log.h"
#include "daemon/launcher.h"
#include "daemon/ckpt_archive.h"
#include "daemon/sdnotify.h"
#include "compute/context.h"
#include "compute/data.h"
#include "compute/eval.h"
#include "compute/job.h"
#include "compute/jobspec.h"
#include "compute/model.h"
#include "compute/safetensors.h"
#include "compute/train.h"
#include "common/fileio.h"
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
        bool pause; /* a pause was requested: checkpoint and stop, the job becomes paused */
        bool timeout; /* limits.max_runtime_seconds ran out */
        double claimed_at; /* monotonic, when this claim began running */
        double runtime_before; /* seconds of earlier claims (the job's runtime_ms) */
        double max_runtime; /* limits.max_runtime_seconds; 0: none */
        int64_t max_epoch_recorded;
        int64_t replayed_through; /* epochs of the stream before this attempt (their warnings too) */
        unsigned batch_size; /* for the samples/s metric */
        unsigned keep_checkpoints; /* the job's checkpoint.keep */
        int64_t last_step; /* batches counted so far ((epoch - 1) * batches + batch); -1: none yet */
        int64_t batches_per_epoch; /* from the progress reports */
        bool metrics_started;
        const char *final_state; /* for the metrics: "succeeded", ..., "queued" when released */
        json_t *receipt; /* the reproducibility receipt so far (inputs, runtime); NULL before the inputs load */
};

struct workers {
        char state_dir[PATH_MAX];
        char store_url[1024];
        unsigned n, threads;
        int gpus[64]; /* --gpus: worker i uses gpus[i % n_gpus]; none: GPU 0 */
        unsigned n_gpus;
        int64_t lease_ms;
        char mpirun[LAUNCHER_TEMPLATE_MAX + 1]; /* --mpirun template; "": jobs with ranks above 1 are not run */
        atomic_bool stop;
        /* A job's checkpoint or result did not fit: no worker claims until this many bytes are free (0: go). */
        _Atomic uint64_t disk_need;
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

unsigned workers_threads(const struct workers *pool) {
        return pool ? pool->threads : 0;
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

/* A heartbeat: renews the lease and picks up a cancel or pause request. */
static int heartbeat(struct worker *w, double now) {
        struct store_job_signals sig = {0};
        struct ft_error err = {0};
        int r = store_job_heartbeat_with(w->store, w->job_id, w->attempt, w->lease_ms, &sig, &err);
        if (r < 0) {
                mark_lost(w, r, &err);
                return r;
        }
        w->last_heartbeat = now;
        w->cancel = w->cancel || sig.cancel;
        w->pause = sig.pause; /* a resume before the worker stopped withdraws it */
        return 0;
}

static bool cb_should_stop(void *userdata) {
        struct worker *w = userdata;
        sdnotify_progress_beat(w->slot); /* polled before every batch: a hung batch stops the watchdog */
        if (w->lost || w->cancel || w->timeout)
                return true;
        double now = ft_now_monotonic();
        bool due = now - w->last_heartbeat >= (double)w->lease_ms / 3000.0;
        if (atomic_exchange(&w->check, false) || due)
                heartbeat(w, now);
        if (w->max_runtime > 0 && w->runtime_before + (now - w->claimed_at) >= w->max_runtime)
                w->timeout = true;
        return w->lost || w->cancel || w->pause || w->timeout || atomic_load(&w->pool->stop);
}

/* This claim's running time into the job's (before it pauses, is released or finishes). */
static void runtime_record(struct worker *w) {
        if (w->lost || w->claimed_at <= 0)
                return;
        double s = ft_now_monotonic() - w->claimed_at;
        struct ft_error err = {0};
        int r = store_job_runtime_add(w->store, w->job_id, w->attempt, (int64_t)(s * 1000.0), &err);
        if (r == -EOPNOTSUPP) /* the PostgreSQL store keeps no running time yet: limits count one claim */
                log_debug("worker %u: %s", w->index, err.message);
        else if (r < 0)
                mark_lost(w, r, &err);
        w->claimed_at = 0;
}

/* One event (train_event_json's object) into the job's stream, serialised as every client reads it. */
static int record_event_json(struct worker *w, const char *type, const json_t *j) {
        if (w->lost)
                return -ESTALE;
        char *data = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
        if (!data)
                return -ENOMEM;
        struct ft_error err = {0};
        int r = store_event_append(w->store, w->job_id, w->attempt, type, data, NULL, &err);
        free(data);
        if (r < 0) {
                mark_lost(w, r, &err);
                return r;
        }
        return 0;
}

/* One trainer event into the job's stream. */
static int record_event(struct worker *w, const struct train_event *ev) {
        if (w->lost)
                return -ESTALE;
        json_t *j = train_event_json(ev);
        int r = j ? record_event_json(w, train_event_type_name(ev->type), j) : -ENOMEM;
        json_decref(j);
        return r;
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

static int cb_warning(void *userdata, const struct train_warning *wn) {
        struct worker *w = userdata;
        /* an epoch's warnings follow its epoch event: an epoch a resumed run repeats has had them recorded */
        if (wn->epoch > 0 && (int64_t)wn->epoch <= w->replayed_through)
                return 0;
        return record_event(userdata, &(struct train_event){TRAIN_EVENT_WARNING, .warning = wn});
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
        int r = w->lost ? -ESTALE : heartbeat(w, ft_now_monotonic());
        if (r < 0) {
                if (r == -ESTALE)
                        log_warning("worker %u: %s: checkpoint at step %llu of attempt %d abandoned: the job "
                                    "belongs to a newer attempt",
                                    w->index, w->job_id, (unsigned long long)info->step, w->attempt);
                return r;
        }
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

/* sha256 of a safetensors file's tensor bytes (all after the header): the weights, whatever job id the header
 * names, as `tail -c +$((9 + header length)) FILE | sha256sum` computes it. */
static int weights_sha256(const char *path, char out[STORE_SHA256_HEX], struct ft_error *err) {
        FILE *f = fopen(path, "rb");
        uint8_t len8[8], d[SHA256_DIGEST_SIZE];
        if (!f)
                return ft_error_set(err, -errno, NULL, "cannot read '%s': %s", path, strerror(errno));
        int r = fread(len8, 1, 8, f) == 8 ? 0 : -EIO;
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--)
                hlen = hlen << 8 | len8[i];
        if (r == 0 && (hlen > (1u << 30) || fseeko(f, (off_t)(8 + hlen), SEEK_SET) < 0))
                r = -EIO;
        struct sha256_ctx c;
        sha256_init(&c);
        char buf[1 << 16];
        size_t got;
        while (r == 0 && (got = fread(buf, 1, sizeof(buf), f)) > 0)
                sha256_update(&c, buf, got);
        if (r == 0 && ferror(f))
                r = -EIO;
        fclose(f);
        if (r < 0)
                return ft_error_set(err, r, NULL, "cannot read the weights of '%s'", path);
        sha256_final(&c, d);
        sha256_to_hex(d, out);
        return 0;
}

/* The receipt (docs/api.md "Reproducibility receipts"): what the result depends on, recorded before training. */
static json_t *receipt_new(struct worker *w, const struct store_job *job, const struct jobspec *spec,
                           const struct store_model *base, const struct compute_ctx *ctx, unsigned threads) {
        struct compute_runtime_info rt;
        compute_runtime_info(&rt);
        uint8_t d[SHA256_DIGEST_SIZE];
        char spec_sha[SHA256_HEX_SIZE];
        sha256_buffer(job->spec_json, strlen(job->spec_json), d);
        sha256_to_hex(d, spec_sha);
        json_t *datasets = json_object();
        const char *ids[2] = {job->training_file, job->validation_file},
                   *keys[2] = {"training_file", "validation_file"};
        for (int i = 0; i < 2 && datasets; i++) {
                struct store_dataset *ds = NULL;
                if (!ids[i][0] || store_dataset_get(w->store, ids[i], &ds, NULL) < 0)
                        continue;
                json_object_set_new(datasets, keys[i],
                                    json_pack("{s:s,s:s,s:s?}", "id", ds->id, "sha256", ds->sha256, "labels_sha256",
                                              ds->labels_sha256[0] ? ds->labels_sha256 : NULL));
                store_dataset_free(ds);
        }
        return json_pack("{s:I,s:s,s:o,s:{s:s,s:s?},s:{s:s,s:s},s:{s:s,s:s},s:i,s:s,s:n}", "seed",
                         (json_int_t)spec->seed, "spec_sha256", spec_sha, "datasets",
                         datasets ? datasets : json_object(), "base_model", "id", base->id, "weights_sha256",
                         base->weights_sha256[0] ? base->weights_sha256 : NULL, "finetuned", "version",
                         FINETUNED_VERSION, "build", "C17, " __VERSION__, "onednn", "version", rt.onednn_version, "isa",
                         rt.onednn_isa, "threads", (int)threads, "device", compute_ctx_device(ctx), "result_sha256");
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
        char wsha[STORE_SHA256_HEX];
        if (r == 0)
                r = weights_sha256(path, wsha, err);
        if (r == 0 && w->receipt)
                json_object_set_new(w->receipt, "result_sha256", json_string(wsha));
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
        struct store_job_outcome with = *o;
        char *receipt = w->receipt ? json_dumps(w->receipt, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        with.receipt_json = receipt;
        int r = store_job_finish_with(w->store, w->job_id, w->attempt, &with, model_id, &err);
        free(receipt);
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

static void fail(struct worker *w, const char *code, const struct ft_error *err) {
        char message[sizeof(err->message)];
        ft_scrub_paths(w->pool->state_dir, w->job_id, err->message, message, sizeof(message));
        json_t *e = json_pack("{s:s,s:s,s:s?}", "code", code, "message", message[0] ? message : "failed", "param",
                              err->param[0] ? err->param : NULL);
        char *text = e ? json_dumps(e, JSON_COMPACT) : NULL;
        json_decref(e);
        log_warning("worker %u: job %s failed: %s", w->index, w->job_id, err->message);
        finish(w, STORE_JOB_FAILED, NULL, text);
        free(text);
}

/* ---- a full disk (issue 21) ------------------------------------------------------ */

static bool disk_full(int r) {
        return r == -ENOSPC || r == -EDQUOT;
}

static uint64_t disk_free(const char *dir) {
        struct statvfs v;
        return statvfs(dir, &v) < 0 ? UINT64_MAX : (uint64_t)v.f_bavail * v.f_frsize;
}

/* The bytes of the regular files in dir (a checkpoint directory: no subdirectories). */
static uint64_t dir_bytes(const char *dir) {
        DIR *d = opendir(dir);
        uint64_t sum = 0;
        if (!d)
                return 0;
        for (struct dirent *e; (e = readdir(d));) {
                struct stat st;
                if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
                        sum += (uint64_t)st.st_size;
        }
        closedir(d);
        return sum;
}

/* A checkpoint (or the result) did not fit on the disk. That is transient: the temporary files are gone
 * (compute/train.c removes them), the last good checkpoint stays, and the job goes back to the queue with a
 * warning event saying why; the release does not count as an attempt. The pool then claims nothing until
 * there is room for one more checkpoint of this size and a margin, so the job does not fail over and over. */
static void release_disk_full(struct worker *w, struct store_job *job, const struct model *m,
                              const struct ft_error *cause) {
        struct ft_error err = {0};
        struct store_checkpoint *c = NULL;
        char path[PATH_MAX], message[sizeof(cause->message) + 256], why[sizeof(cause->message)];
        int epoch = 0;
        uint64_t size = 0;
        if (store_checkpoint_latest(w->store, job->id, &c, NULL) == 1) {
                epoch = c->epoch;
                if (c->dir[0] && ft_path_join(path, sizeof(path), w->pool->state_dir, c->dir, NULL) >= 0)
                        size = dir_bytes(path);
        }
        store_checkpoint_free(c);
        if (!size && m) /* none yet: weights, and Adam's two moments */
                size = 3 * (uint64_t)model_param_numel(m) * sizeof(float);
        uint64_t need = size + size / 4 + (4u << 20); /* one more checkpoint, and room for the database */
        ft_scrub_paths(w->pool->state_dir, job->id, cause->message, why, sizeof(why));
        if (epoch > 0)
                snprintf(message, sizeof(message),
                         "the disk is full (%.300s); the job is back in the queue and resumes from its checkpoint "
                         "of epoch %d when %.1f MiB are free",
                         why, epoch, (double)need / (1 << 20));
        else
                snprintf(message, sizeof(message),
                         "the disk is full (%.300s); the job is back in the queue and starts again when %.1f MiB "
                         "are free",
                         why, (double)need / (1 << 20));
        json_t *ev = json_pack("{s:s,s:s,s:s,s:i,s:I,s:I}", "type", "warning", "code", "disk_full", "message", message,
                               "checkpoint_epoch", epoch, "free_bytes",
                               (json_int_t)FT_MIN(disk_free(w->pool->state_dir), (uint64_t)INT64_MAX), "need_bytes",
                               (json_int_t)need);
        char *data = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
        json_decref(ev);
        int r = data ? store_event_append(w->store, job->id, w->attempt, "warning", data, NULL, &err) : -ENOMEM;
        free(data);
        if (r == 0)
                r = store_job_release(w->store, job->id, w->attempt, &err);
        if (r < 0) {
                log_warning("worker %u: job %s: the disk is full and the job cannot be released: %s", w->index, job->id,
                            err.message);
                mark_lost(w, r, &err);
                return;
        }
        w->final_state = "queued";
        uint64_t old = atomic_load(&w->pool->disk_need);
        while (old < need && !atomic_compare_exchange_weak(&w->pool->disk_need, &old, need))
                ;
        api_disk_wait_set(atomic_load(&w->pool->disk_need));
        api_disk_requeued();
        log_warning("worker %u: job %s back in the queue: %s", w->index, job->id, cause->message);
}

/* Before a claim: false while the pool waits for disk space (checked again every second). */
static bool disk_ready(struct workers *pool) {
        uint64_t need = atomic_load(&pool->disk_need);
        if (!need)
                return true;
        uint64_t avail = disk_free(pool->state_dir);
        if (avail < need)
                return false;
        if (atomic_compare_exchange_strong(&pool->disk_need, &need, 0)) {
                api_disk_wait_set(0);
                log_notice("disk space is back (%.1f MiB free): workers claim jobs again", (double)avail / (1 << 20));
        }
        return true;
}

/* ---- predictions jobs (POST /v1/models/{id}/predictions) ------------------------------- */

static bool eval_should_stop(void *userdata) {
        return cb_should_stop(userdata);
}

/* {"rows_done", "rows", "fraction"}: live for GET /v1/jobs/{id}, into the store at most once a second. */
static void eval_progress(void *userdata, size_t done, size_t total) {
        struct worker *w = userdata;
        char text[128];
        snprintf(text, sizeof(text), "{\"rows_done\":%zu,\"rows\":%zu,\"fraction\":%.4f}", done, total,
                 total ? (double)done / (double)total : 1.0);
        pthread_mutex_lock(&w->lock);
        free(w->progress);
        w->progress = strdup(text);
        pthread_mutex_unlock(&w->lock);
        double now = ft_now_monotonic();
        if (!w->lost && (now - w->last_progress_write >= PROGRESS_DB_INTERVAL_S || done == total)) {
                struct ft_error err = {0};
                int r = store_job_progress_set(w->store, w->job_id, w->attempt, text, &err);
                if (r < 0)
                        mark_lost(w, r, &err);
                w->last_progress_write = now;
        }
}

/* A predictions job: the model over the dataset (compute/eval), predictions.csv into the job's directory, and
 * with labels the evaluation's metrics (the job's "metrics" without the curves; metrics.json with them). No
 * checkpoints: a job released or requeued runs again from the first row. */
static void run_predictions(struct worker *w, struct store_job *job, const json_t *spec) {
        struct ft_error err = {0};
        struct store_model *rec = NULL;
        struct store_dataset *d = NULL;
        struct eval_model em = {0};
        struct dataset *ds = NULL;
        struct compute_ctx *ctx = NULL;
        struct eval_output out = {0};
        json_t *mspec = NULL, *metrics = NULL;
        char dir[PATH_MAX], path[PATH_MAX], metrics_sha[STORE_SHA256_HEX] = "";
        bool labelled = false;
        const char *target = json_string_value(json_object_get(spec, "target"));

        api_metrics_job_start(job->id, 0);
        w->metrics_started = true;
        int r = store_model_get(w->store, job->model_id, &rec, &err);
        if (r == 0 && !rec->weights_path[0])
                r = ft_error_set(&err, -EINVAL, "model", "model '%s' has no weights", rec->id);
        if (r == 0) {
                mspec = json_loads(rec->spec_json, 0, NULL);
                r = eval_model_open(rec->weights_path, mspec, 0, &em, &err);
        }
        if (r < 0) {
                fail(w, "invalid_model", &err);
                goto out;
        }
        r = store_dataset_get(w->store, job->training_file, &d, &err);
        if (r == 0) {
                struct eval_data_options o = {
                        .path = d->path,
                        .path2 = d->labels_path[0] ? d->labels_path : NULL,
                        .label = d->id,
                        .param = "dataset",
                        .target = target,
                };
                r = eval_data_open(&em, &o, &ds, &labelled, &err);
        }
        if (r < 0) {
                fail(w, "invalid_data", &err);
                goto out;
        }
        r = compute_ctx_new((int)w->pool->threads, &ctx, &err);
        if (r == 0)
                r = mkdir_p2(w->pool->state_dir, job->id, dir, sizeof(dir));
        if (r < 0) {
                fail(w, "internal_error", &err);
                goto out;
        }
        w->last_heartbeat = 0;
        if (cb_should_stop(w) && w->lost)
                goto out;
        struct eval_callbacks cb = {.userdata = w, .on_progress = eval_progress, .should_stop = eval_should_stop};
        r = eval_run(&em, ctx, ds, labelled, &cb, &out, &err);
        if (w->lost)
                goto out;
        if (r == -ECANCELED) {
                if (w->cancel) {
                        finish(w, STORE_JOB_CANCELLED, NULL, NULL);
                } else {
                        r = store_job_release(w->store, job->id, w->attempt, &err);
                        if (r == 0)
                                w->final_state = "queued";
                }
                goto out;
        }
        if (r < 0) {
                fail(w, r == -ERANGE || r == -EINVAL ? "invalid_data" : "internal_error", &err);
                goto out;
        }
        r = ft_path_join(path, sizeof(path), dir, "predictions.csv", NULL);
        if (r < 0)
                ft_error_set(&err, r, NULL, "job directory path is too long");
        else
                r = eval_predictions_write(&em, &out, path, &err);
        if (r == 0 && labelled) {
                metrics = eval_metrics_json(&em, &out, 0, &err);
                char *text = metrics ? json_dumps(metrics, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) : NULL;
                char tmp[PATH_MAX], name[64];
                snprintf(name, sizeof(name), ".tmp-metrics-a%d.json", w->attempt);
                r = text ? ft_path_join(tmp, sizeof(tmp), dir, name, NULL) : -ENOMEM;
                if (r >= 0)
                        r = fileio_write_atomic(tmp, text, strlen(text), 0644, &err);
                if (r == 0)
                        r = blob_from_file(w, tmp, metrics_sha, &err);
                free(text);
                json_object_del(metrics, "curves"); /* the job row keeps the numbers; metrics.json the curves */
        }
        if (r < 0) {
                fail(w, "internal_error", &err);
                goto out;
        }
        json_t *result = json_pack("{s:s s:I s:b s:O?}", "split", "dataset", "rows", (json_int_t)out.n, "labelled",
                                   labelled, "metrics", metrics);
        char *text = result ? json_dumps(result, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
        json_decref(result);
        finish_with(w, &(struct store_job_outcome){.state = STORE_JOB_SUCCEEDED,
                                                   .result_json = text ? text : "{}",
                                                   .metrics_sha256 = metrics_sha});
        free(text);
out:
        if (w->metrics_started)
                api_metrics_job_finish(job->id, w->final_state ? w->final_state : w->lost ? "lost" : "failed");
        w->metrics_started = false; /* run_job's own exit must not count it again */
        json_decref(metrics);
        json_decref(mspec);
        eval_output_deinit(&out);
        dataset_free(ds);
        eval_model_deinit(&em);
        compute_ctx_free(ctx);
        store_model_free(rec);
        store_dataset_free(d);
}

/* ---- data-parallel jobs: `finetuned train` under the MPI launcher --------------------- */

/* A launch that fails (a rank died, the launcher failed) is run again from the job's newest checkpoint this
 * many times within the claim; then the job fails with the launcher's message. */
#define DIST_RELAUNCHES 2

struct dist_run {
        struct worker *w;
        const char *out; /* the run's --out: its checkpoints are out/checkpoints/ckpt-<step> */
};

/* rank 0's NDJSON back into the trainer's events, through the same callbacks a local job's trainer calls */
static int dist_on_line(void *userdata, char *line, size_t len) {
        struct dist_run *d = userdata;
        struct worker *w = d->w;
        json_t *j = json_loadb(line, len, 0, NULL);
        const char *type = json_string_value(json_object_get(j, "type"));
        int r = 0;
        if (!type) {
                log_info("worker %u: %s: rank 0: %.300s", w->index, w->job_id, line);
        } else if (strcmp(type, "epoch") == 0) {
                struct train_epoch e;
                r = train_epoch_from_json(j, json_object_get(j, "val_accuracy") != NULL, &e);
                if (r == 0)
                        r = cb_epoch(w, &e);
        } else if (strcmp(type, "progress") == 0) {
                struct train_progress p;
                r = train_progress_from_json(j, &p);
                if (r == 0)
                        cb_progress(w, &p);
        } else if (strcmp(type, "checkpoint") == 0) {
                json_int_t epoch = 0, step = 0;
                int partial = 0;
                char name[48], path[PATH_MAX];
                r = json_unpack(j, "{s:I s:I s:b}", "epoch", &epoch, "step", &step, "partial", &partial) < 0 ||
                                    epoch < 0 || step < 0
                            ? -EINVAL
                            : 0;
                snprintf(name, sizeof(name), "ckpt-%llu", (unsigned long long)step);
                if (r == 0 && ft_path_join(path, sizeof(path), d->out, "checkpoints", name, NULL) >= 0)
                        r = cb_checkpoint(w, &(struct train_checkpoint_info){
                                                     .path = path,
                                                     .epoch = (unsigned)epoch,
                                                     .step = (uint64_t)step,
                                                     .partial = partial,
                                             });
        } else if (strcmp(type, "early_stopping") == 0 || strcmp(type, "metrics") == 0 ||
                   strcmp(type, "runtime") == 0) {
                r = record_event_json(w, type, j);
        }
        if (r == -EINVAL)
                log_warning("worker %u: %s: rank 0 printed an unreadable '%s' event: %.200s", w->index, w->job_id, type,
                            line);
        json_decref(j);
        return 0; /* a lost lease or a cancel is seen by dist_poll right after */
}

static enum launcher_action dist_poll(void *userdata) {
        struct dist_run *d = userdata;
        if (!cb_should_stop(d->w))
                return LAUNCHER_CONTINUE;
        return d->w->lost ? LAUNCHER_KILL : LAUNCHER_STOP; /* another attempt owns the job: no checkpoint */
}

/* A store dataset as `finetuned train` names data: its blob's path, or [images, labels] for IDX. */
static int dist_dataset_ref(struct worker *w, const char *id, json_t **ret, struct ft_error *err) {
        struct store_dataset *d = NULL;
        int r = store_dataset_get(w->store, id, &d, err);
        if (r < 0)
                return r;
        *ret = d->labels_path[0] ? json_pack("[s s]", d->path, d->labels_path) : json_string(d->path);
        store_dataset_free(d);
        return *ret ? 0 : ft_error_set(err, -ENOMEM, NULL, "out of memory");
}

/* The job file of the run: the job's spec with its ids replaced by the files they name (the datasets' blobs;
 * the base model's spec with "weights": its blob). */
static int dist_job_file(struct worker *w, const struct store_job *job, const struct store_model *base,
                         const char *path, struct ft_error *err) {
        json_t *doc = json_loads(job->spec_json, 0, NULL), *ref = NULL;
        json_t *model = json_loads(base->spec_json, 0, NULL);
        int r = doc && model ? 0 : ft_error_set(err, -EINVAL, NULL, "the job's spec cannot be read");
        if (r == 0 && (r = dist_dataset_ref(w, job->training_file, &ref, err)) == 0)
                json_object_set_new(doc, "training_file", ref);
        if (r == 0 && job->validation_file[0] && (r = dist_dataset_ref(w, job->validation_file, &ref, err)) == 0)
                json_object_set_new(doc, "validation_file", ref);
        if (r == 0 && base->weights_path[0])
                json_object_set_new(model, "weights", json_string(base->weights_path));
        if (r == 0) {
                json_object_set(doc, "model", model);
                char *text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(17));
                r = text ? fileio_write_atomic(path, text, strlen(text), 0600, err)
                         : ft_error_set(err, -ENOMEM, NULL, "out of memory");
                free(text);
        }
        json_decref(model);
        json_decref(doc);
        return r;
}

/* The run's model.safetensors and metrics.json into the blob store, and the job finished with them. */
static int dist_finish(struct worker *w, const struct store_job *job, const struct store_model *base, const char *out,
                       struct ft_error *err) {
        char path[PATH_MAX], sha[STORE_SHA256_HEX] = "", metrics_sha[STORE_SHA256_HEX] = "";
        char *mspec = NULL, *metrics = NULL;
        struct st_file *f = NULL;
        json_t *spec = NULL, *mdoc = NULL;
        int r = ft_path_join(path, sizeof(path), out, "model.safetensors", NULL) < 0 ? -ENAMETOOLONG : 0;
        if (r == 0)
                r = st_file_open(path, 0, &f, err);
        if (r == 0) {
                const char *text = st_file_metadata(f, ST_META_SPEC);
                spec = text ? json_loads(text, 0, NULL) : NULL;
                mspec = spec ? json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
                if (!mspec)
                        r = ft_error_set(err, -EINVAL, NULL, "the run's model.safetensors has no model spec");
        }
        st_file_free(f);
        if (r == 0)
                r = blob_from_file(w, path, sha, err);
        if (r == 0 && ft_path_join(path, sizeof(path), out, "metrics.json", NULL) < 0)
                r = -ENAMETOOLONG;
        if (r == 0) {
                json_error_t jerr;
                mdoc = json_load_file(path, 0, &jerr);
                if (mdoc)
                        json_object_del(mdoc, "history"); /* the job's result is metrics.json without it */
                metrics = mdoc ? json_dumps(mdoc, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
                if (!metrics)
                        r = ft_error_set(err, -EINVAL, NULL, "the run's metrics.json cannot be read: %s", jerr.text);
        }
        if (r == 0)
                r = blob_from_file(w, path, metrics_sha, err);
        if (r == 0) {
                char name[STORE_NAME_MAX];
                snprintf(name, sizeof(name), "%.200s (fine-tuned by %s)", base->name, job->id);
                struct store_model_new mn = {.name = name,
                                             .spec_json = mspec,
                                             .weights_sha256 = sha,
                                             .source = STORE_MODEL_JOB,
                                             .source_job_id = job->id};
                finish_with(w, &(struct store_job_outcome){.state = STORE_JOB_SUCCEEDED,
                                                           .result_json = metrics,
                                                           .model = &mn,
                                                           .metrics_sha256 = metrics_sha});
        }
        free(metrics);
        free(mspec);
        json_decref(mdoc);
        json_decref(spec);
        return r;
}

/* Stopped before or during a launch: a cancel finishes the job, a stopping daemon gives it back to the queue. */
static void dist_stopped(struct worker *w, const struct store_job *job) {
        struct ft_error err = {0};
        if (w->lost)
                return;
        if (w->cancel) {
                finish(w, STORE_JOB_CANCELLED, NULL, NULL);
                return;
        }
        int r = store_job_release(w->store, job->id, w->attempt, &err);
        if (r == 0)
                w->final_state = "queued";
        log_info("worker %u: job %s released for the next start%s%s", w->index, job->id, r < 0 ? ": " : "",
                 r < 0 ? err.message : "");
}

/* A job with resources.ranks above 1: `finetuned train` under the --mpirun template, its events into the job's
 * stream, the lease kept, cancel and stop forwarded as SIGTERM to the launcher's process group; each launch
 * resumes from the job's newest checkpoint, as a requeued local job does. */
static void run_distributed(struct worker *w, struct store_job *job, const struct jobspec *spec) {
        struct ft_error err = {0};
        struct store_model *base = NULL;
        struct store_checkpoint *ckpt = NULL;
        char dir[PATH_MAX], out[PATH_MAX], jobfile[PATH_MAX], resume[PATH_MAX], exe[PATH_MAX], threads[16];
        int r;

        if (!w->pool->mpirun[0]) { /* the API refuses these jobs; one queued before a restart without --mpirun */
                ft_error_set(&err, -EINVAL, "resources.ranks",
                             "'resources.ranks' %u: this daemon has no MPI launcher (start it with --mpirun)",
                             spec->resources.ranks);
                fail(w, "invalid_job", &err);
                return;
        }
        r = mkdir_p2(w->pool->state_dir, job->id, dir, sizeof(dir));
        if (r == 0 && (ft_path_join(out, sizeof(out), dir, "ranks", NULL) < 0 ||
                       ft_path_join(jobfile, sizeof(jobfile), dir, "ranks-job.json", NULL) < 0))
                r = -ENAMETOOLONG;
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (r == 0 && n <= 0)
                r = -errno;
        if (r < 0) {
                ft_error_set(&err, r, NULL, "cannot prepare the job's directory: %s", strerror(-r));
                fail(w, "internal_error", &err);
                return;
        }
        exe[n] = '\0';
        snprintf(threads, sizeof(threads), "%u", w->pool->threads);
        r = store_model_get(w->store, job->model_id, &base, &err);
        if (r < 0) {
                fail(w, "invalid_model", &err);
                return;
        }
        r = dist_job_file(w, job, base, jobfile, &err);
        if (r < 0) {
                fail(w, "invalid_data", &err);
                goto out;
        }
        struct dist_run d = {.w = w, .out = out};
        struct launcher_callbacks cb = {.userdata = &d, .on_line = dist_on_line, .poll = dist_poll};
        for (int launch = 0;; launch++) {
                char *args[16] = {exe,        "train",        jobfile, "--out",
                                  out,        "--threads",    threads, "--progress-events",
                                  "--job-id", (char *)job->id};
                size_t k = 10;
                store_checkpoint_free(ckpt);
                ckpt = NULL;
                if (store_checkpoint_latest(w->store, job->id, &ckpt, NULL) == 1 && ckpt->dir[0] &&
                    ft_path_join(resume, sizeof(resume), w->pool->state_dir, ckpt->dir, NULL) >= 0) {
                        args[k++] = "--resume";
                        args[k++] = resume;
                        log_info("worker %u: job %s resumes from %s (epoch %d)", w->index, job->id, ckpt->dir,
                                 ckpt->epoch);
                }
                w->last_heartbeat = 0;
                if (cb_should_stop(w)) {
                        dist_stopped(w, job);
                        goto out;
                }
                struct launcher_result lr;
                log_info("worker %u: job %s: starting %u ranks (%s)", w->index, job->id, spec->resources.ranks,
                         w->pool->mpirun);
                r = launcher_run(w->pool->mpirun, spec->resources.ranks, args, &cb, &lr, &err);
                if (r < 0) {
                        fail(w, "internal_error", &err);
                        goto out;
                }
                if (w->lost)
                        goto out;
                if (lr.stopped || w->cancel || atomic_load(&w->pool->stop)) {
                        dist_stopped(w, job);
                        goto out;
                }
                if (!lr.signaled && lr.exit_status == 0) {
                        r = dist_finish(w, job, base, out, &err);
                        if (r < 0)
                                fail(w, "internal_error", &err);
                        goto out;
                }
                char how[64];
                if (lr.signaled)
                        snprintf(how, sizeof(how), "was killed by signal %d", lr.signal);
                else
                        snprintf(how, sizeof(how), "exited with status %d", lr.exit_status);
                if (launch < DIST_RELAUNCHES) {
                        log_warning("worker %u: job %s: the MPI launcher %s (%s); relaunching from the newest "
                                    "checkpoint (%d of %d)",
                                    w->index, job->id, how, lr.message[0] ? lr.message : "it said nothing", launch + 1,
                                    DIST_RELAUNCHES);
                        continue;
                }
                ft_error_set(&err, -EIO, NULL,
                             "the data-parallel run over %u ranks failed %d times; the MPI launcher %s: %s",
                             spec->resources.ranks, DIST_RELAUNCHES + 1, how,
                             lr.message[0] ? lr.message : "it said nothing on stderr");
                fail(w, "training_failed", &err);
                goto out;
        }
out:
        store_checkpoint_free(ckpt);
        store_model_free(base);
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
        w->cancel = w->lost = w->pause = w->timeout = false;
        w->claimed_at = ft_now_monotonic();
        w->runtime_before = (double)job->runtime_ms / 1000.0;
        w->max_runtime = 0;
        w->last_heartbeat = w->last_progress_write = ft_now_monotonic();
        w->lease_ms = w->pool->lease_ms;
        atomic_store(&w->check, false);
        w->max_epoch_recorded = job->last_epoch; /* epochs a resumed run repeats are already in the stream */
        w->replayed_through = job->last_epoch;
        w->last_step = -1;
        w->batches_per_epoch = 0;
        w->metrics_started = false;
        w->final_state = NULL;
        json_decref(w->receipt);
        w->receipt = NULL;
        log_info("worker %u: job %s claimed (attempt %d)", w->index, job->id, job->attempt);

        json_t *raw = json_loads(job->spec_json, 0, NULL);
        const char *kind = json_string_value(json_object_get(raw, "kind"));
        if (kind && strcmp(kind, "predictions") == 0) { /* a job kind of its own, same claim, lease and finish */
                run_predictions(w, job, raw);
                json_decref(raw);
                goto out;
        }
        json_decref(raw);
        int r = jobspec_parse_string(job->spec_json, strlen(job->spec_json), &spec, &err);
        if (r < 0) {
                fail(w, "invalid_job", &err);
                goto out;
        }
        have_spec = true;
        w->batch_size = spec.hyperparameters.batch_size;
        w->keep_checkpoints = spec.checkpoint.keep;
        w->max_runtime = spec.limits.max_runtime_seconds;
        api_metrics_job_start(job->id, spec.hyperparameters.epochs); /* -ENOSPC: no per-job series, totals count */
        w->metrics_started = true;
        if (spec.resources.ranks > 1) { /* data-parallel: `finetuned train` under the MPI launcher */
                run_distributed(w, job, &spec);
                goto out;
        }
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
        w->receipt = receipt_new(w, job, &spec, base, ctx, threads);
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
                .on_warning = cb_warning,
                .on_final = cb_final,
                .on_runtime = cb_runtime,
                .should_stop = cb_should_stop,
                .before_checkpoint_commit = cb_before_checkpoint_commit,
        };
        r = train_run(&spec, m, ctx, train, val, &topt, &cb, &res, &err);
        if (w->lost)
                goto out;
        if (r == -ECANCELED) {
                runtime_record(w);
                if (w->cancel) {
                        finish(w, STORE_JOB_CANCELLED, NULL, NULL);
                } else if (w->timeout) {
                        struct ft_error te = {0};
                        ft_error_set(&te, -ETIME, "limits.max_runtime_seconds",
                                     "the job ran for its 'limits.max_runtime_seconds' (%.0f s); its checkpoints stay",
                                     w->max_runtime);
                        fail(w, "timeout", &te);
                } else if (w->pause && !atomic_load(&w->pool->stop)) {
                        r = store_job_pause_done(w->store, job->id, w->attempt, &err);
                        if (r == 0)
                                w->final_state = "paused";
                        else
                                mark_lost(w, r, &err);
                        log_info("worker %u: job %s paused%s%s", w->index, job->id, r < 0 ? ": " : "",
                                 r < 0 ? err.message : "");
                } else { /* the daemon is stopping: back to the queue, resumed at the next start */
                        r = store_job_release(w->store, job->id, w->attempt, &err);
                        if (r == 0)
                                w->final_state = "queued";
                        log_info("worker %u: job %s released for the next start%s%s", w->index, job->id,
                                 r < 0 ? ": " : "", r < 0 ? err.message : "");
                }
                goto out;
        }
        if (disk_full(r)) {
                release_disk_full(w, job, m, &err);
                goto out;
        }
        if (r < 0) {
                fail(w, r == -EINVAL ? "invalid_job" : "training_failed", &err);
                goto out;
        }
        runtime_record(w);
        char sha[STORE_SHA256_HEX] = "";
        char metrics_sha[STORE_SHA256_HEX] = "";
        r = save_result(w, m, train, &spec, &res, dir, sha, &err);
        if (r == 0)
                r = save_metrics(w, &res, dir, metrics_sha, &err);
        if (disk_full(r)) {
                release_disk_full(w, job, m, &err);
                goto out;
        }
        if (r < 0) {
                fail(w, "internal_error", &err);
                goto out;
        }
        json_t *mdoc = job_metrics_json(&res, false);
        char *metrics = mdoc ? json_dumps(mdoc, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
        json_decref(mdoc);
        char *mspec = json_dumps(model_spec(m), JSON_COMPACT | JSON_SORT_KEYS);
        char name[STORE_NAME_MAX];
        if (job->suffix[0]) /* the job's "suffix" (POST /v1/jobs) names it */
                snprintf(name, sizeof(name), "%.180s:%s", base->name, job->suffix);
        else
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
        json_decref(w->receipt);
        w->receipt = NULL;
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
                if (!disk_ready(w->pool)) {
                        usleep(IDLE_WAIT_MS * 1000);
                        continue;
                }
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
        snprintf(pool->mpirun, sizeof(pool->mpirun), "%s", opts->mpirun ? opts->mpirun : "");
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

/* store.h - durable state: datasets, models, the job queue with leases, job
 * events, checkpoints, idempotency keys, job labels, webhook endpoints with
 * their outbox, and the content-addressed blob store.
 *
 * This is the contract the rest of finetuned sees, for both backends: SQLite
 * in the state directory (the default), or PostgreSQL shared by several daemons
 * (store_options.url "postgresql://...": SELECT ... FOR UPDATE SKIP LOCKED for
 * the claim, LISTEN/NOTIFY for the change notifications, blobs as large
 * objects with a local cache). No database type appears here. A function the
 * PostgreSQL backend does not implement yet returns -EOPNOTSUPP there.
 *
 * Not for: HTTP, JSON validation of job specs (the store keeps JSON text as the
 * caller gives it), training. The store never logs and never exits.
 *
 * Conventions
 * - Every function returns 0 (or a documented positive value) on success and a
 *   negative errno on failure, filling `err` (which may be NULL) with a
 *   user-facing message; `err->param` names the offending field where there is
 *   one ("after", "training_file", ...). Outputs through ret pointers are left
 *   untouched on failure.
 *     -ENOENT     the id does not exist
 *     -EINVAL     a bad argument (bad limit, unknown state, oversized string)
 *     -EEXIST     idempotency key reused with a different request
 *     -EBUSY      delete refused: still referenced by a queued/running job
 *     -ESTALE     a worker write refused: the job is no longer held by that
 *                 attempt (lease expired and requeued, or already finished)
 *     -EALREADY   the job is already in a terminal state
 *     -EFBIG      a blob grew past its size cap
 *     -EIO        the database or the file system failed
 *     -EOPNOTSUPP not implemented by this backend (PostgreSQL) yet
 *     -ENOTCONN   the shared database cannot be reached (PostgreSQL restarting,
 *                 network): nothing was committed, retry later; the next call
 *                 re-establishes the connection
 * - Threads: a struct store is one connection and belongs to one thread at a
 *   time. Open one per thread; store_open on an already-migrated database is
 *   cheap. Connections to the same state directory in one process share one
 *   change notifier (see "Waiting for changes").
 * - Every read-then-write runs in BEGIN IMMEDIATE with a busy timeout, so
 *   concurrent writers wait instead of failing: SQLITE_BUSY never reaches a
 *   caller (it would surface as -EIO only after the busy timeout).
 * - Durability: when a write function returns 0 the change is committed with
 *   synchronous=FULL in WAL mode; it survives kill -9 of the process and a
 *   power loss (docs/decisions.md).
 * - Records returned by _get/_list are heap copies owned by the caller: free
 *   them with the matching _free / _deinit. Timestamps are Unix milliseconds;
 *   0 means "not yet". JSON fields are text (NUL-terminated), never NULL on a
 *   returned record except where noted.
 * - Ids are a prefix plus 24 lowercase hex characters from getrandom():
 *   "ds_", "mdl_", "job_", "wh_" (webhooks), "msg_" (webhook messages). Lists
 *   are newest first unless noted.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/common.h"

struct store;

#define STORE_ID_MAX 32 /* buffer size for any id, NUL included ("job_" + 24 hex + NUL = 29) */
#define STORE_SHA256_HEX 65 /* 64 lowercase hex digits + NUL */
#define STORE_PAGE_MAX 100 /* largest page a list returns */
#define STORE_NAME_MAX 256 /* bytes, for dataset/model names and worker ids */
#define STORE_KEY_MAX 256 /* bytes, for idempotency keys */
#define STORE_EVENT_TYPE_MAX 64 /* bytes, for event types */
#define STORE_JSON_MAX (1 << 20) /* bytes, for any one JSON text field */
#define STORE_SUFFIX_MAX 65 /* a job's model suffix: 64 bytes + NUL */

/* ---- opening --------------------------------------------------------------- */

struct store_options {
        int busy_timeout_ms; /* 0: 10000 */
        /* synchronous=NORMAL instead of FULL: a commit still survives kill -9 of
         * the process (WAL), but not a power loss. For tests and benchmarks only;
         * blob files are fsynced either way. */
        bool relaxed_sync;
        /* NULL or "": SQLite in the state directory. "postgresql://..." (libpq's URI form): that database, shared
         * with other daemons; the state directory then holds only the blob cache and job directories. */
        const char *url;
};

/* Open (creating if needed) "<state_dir>/finetuned.db", enable WAL and apply
 * migrations; creates "<state_dir>/blobs/". state_dir must exist. An existing
 * file that is not a finetuned database is refused, never truncated or
 * overwritten. opts may be NULL (defaults). store_open == store_open_with(NULL). */
int store_open(const char *state_dir, struct store **ret, struct ft_error *err);
int store_open_with(const char *state_dir, const struct store_options *opts, struct store **ret, struct ft_error *err);
void store_close(struct store *s); /* NULL is a no-op */

/* Whether this build can open a postgresql:// store (meson option postgresql). */
bool store_pg_available(void);
/* Whether the store is PostgreSQL. */
bool store_is_shared(struct store *s);
/* The schema version after migrations (PRAGMA user_version). */
int store_schema_version(struct store *s);
/* The state directory this store was opened on (owned by s). */
const char *store_state_dir(struct store *s);

/* ---- pagination -------------------------------------------------------------- */

/* Every list takes a page request: limit 1..STORE_PAGE_MAX (0 means 20), and
 * `after`, the id of the last item of the previous page (NULL or "" for the
 * first page). An `after` that does not exist is -ENOENT with param "after".
 * has_more says whether another page follows the returned items. */
struct store_page {
        unsigned limit;
        const char *after;
};

/* ---- datasets ---------------------------------------------------------------- */

/* What a dataset holds: a CSV table, or IDX images with their labels (two
 * files, one dataset). */
enum store_dataset_kind {
        STORE_DATASET_CSV,
        STORE_DATASET_IDX,
};
const char *store_dataset_kind_name(enum store_dataset_kind kind); /* "csv", "idx" */

/* The facts the readers found at upload, typed (what a job is checked
 * against before it is queued). */
struct store_dataset_facts {
        enum store_dataset_kind kind;
        int64_t rows;
        int64_t features; /* CSV: the columns besides the target; 0 for IDX */
        int64_t classes; /* distinct values of the target read as classes (CSV), distinct labels (IDX) */
        int64_t channels, height, width; /* IDX: the image shape; 0 for CSV */
};

struct store_dataset {
        char id[STORE_ID_MAX];
        char *name;
        char *format; /* e.g. "csv", "idx", "idx.gz" (free text, caller's vocabulary) */
        char sha256[STORE_SHA256_HEX]; /* of the blob holding the file (IDX: the images) */
        int64_t size; /* bytes */
        char *path; /* absolute path of the blob file (derived, read-only) */
        char *schema_json; /* detected schema: columns, rows, classes, image shape (the upload's summary) */
        struct store_dataset_facts facts;
        char *target; /* CSV: the column the schema's classes are of (the last); "" for IDX */
        /* IDX: the labels file; "" / 0 for CSV */
        char labels_sha256[STORE_SHA256_HEX];
        char *labels_format;
        int64_t labels_size;
        char *labels_path; /* absolute path of its blob (derived) */
        int64_t created_at;
};

struct store_dataset_new {
        const char *name; /* required, <= STORE_NAME_MAX */
        const char *format; /* required, <= 32 bytes */
        const char *sha256; /* a blob already committed with store_blob_commit */
        const char *schema_json; /* NULL: "{}" */
        struct store_dataset_facts facts;
        const char *target; /* CSV, <= STORE_NAME_MAX bytes; NULL: "" */
        /* IDX (required there, refused for CSV): the labels file, a committed blob */
        const char *labels_sha256;
        const char *labels_format; /* <= 32 bytes */
};

/* Create a dataset row for a committed blob, and for IDX its labels blob, in
 * one transaction (-ENOENT param "sha256" / "labels" if a blob is unknown;
 * -EINVAL param "labels" for an IDX dataset without labels or a CSV one with
 * them). The sizes are taken from the blobs. */
int store_dataset_create(struct store *s, const struct store_dataset_new *in, struct store_dataset **ret,
                         struct ft_error *err);
int store_dataset_get(struct store *s, const char *id, struct store_dataset **ret, struct ft_error *err);
struct store_dataset_list {
        struct store_dataset **items;
        size_t n;
        bool has_more;
};
int store_dataset_list(struct store *s, const struct store_page *page, struct store_dataset_list *ret,
                       struct ft_error *err);
void store_dataset_list_deinit(struct store_dataset_list *l);
/* Delete the row, an IDX dataset's two files with it, in one transaction (the
 * blobs go at the next store_blob_gc if nothing else uses them). -EBUSY if a queued, running or cancelling job
 * references the dataset (the check and the delete are one transaction); -ENOENT if absent. Jobs that already finished
 * keep the id as history. */
int store_dataset_delete(struct store *s, const char *id, struct ft_error *err);
/* Whether a queued, running or cancelling job references dataset/model `id`. */
int store_dataset_in_use(struct store *s, const char *id, bool *ret, struct ft_error *err);
void store_dataset_free(struct store_dataset *d); /* NULL is a no-op */

/* ---- models -------------------------------------------------------------------- */

enum store_model_source {
        STORE_MODEL_PRESET,
        STORE_MODEL_UPLOAD,
        STORE_MODEL_JOB, /* produced by a job: source_job_id says which */
};
const char *store_model_source_name(enum store_model_source src); /* "preset", "upload", "job" */

struct store_model {
        char id[STORE_ID_MAX];
        char *name;
        char *spec_json; /* architecture JSON */
        char weights_sha256[STORE_SHA256_HEX]; /* "" when the model has no weights yet (fresh preset) */
        char *weights_path; /* absolute blob path, "" when no weights */
        enum store_model_source source;
        char source_job_id[STORE_ID_MAX]; /* "" unless source == STORE_MODEL_JOB */
        int64_t created_at;
};

struct store_model_new {
        const char *name; /* required, <= STORE_NAME_MAX */
        const char *spec_json; /* required */
        const char *weights_sha256; /* NULL/"": none; else a committed blob (-ENOENT param "weights") */
        enum store_model_source source;
        const char *source_job_id; /* for STORE_MODEL_JOB; the job must exist */
};

int store_model_create(struct store *s, const struct store_model_new *in, struct store_model **ret,
                       struct ft_error *err);
int store_model_get(struct store *s, const char *id, struct store_model **ret, struct ft_error *err);
struct store_model_list {
        struct store_model **items;
        size_t n;
        bool has_more;
};
int store_model_list(struct store *s, const struct store_page *page, struct store_model_list *ret,
                     struct ft_error *err);
void store_model_list_deinit(struct store_model_list *l);
/* Like store_dataset_delete: -EBUSY while a queued/running/cancelling job uses
 * the model as its base. */
int store_model_delete(struct store *s, const char *id, struct ft_error *err);
int store_model_in_use(struct store *s, const char *id, bool *ret, struct ft_error *err);
void store_model_free(struct store_model *m);
/* The oldest model that job `source_job_id` produced with exactly these weights (a checkpoint promoted
 * before): returns 1 and fills *ret, 0 when there is none. */
int store_model_find_by_weights(struct store *s, const char *source_job_id, const char *weights_sha256,
                                struct store_model **ret, struct ft_error *err);

/* ---- jobs ------------------------------------------------------------------------ */

/* queued -> running -> succeeded | failed | cancelled; running -> cancelling ->
 * cancelled (or succeeded/failed if the worker finished first); queued ->
 * cancelled; running -> queued when the lease expires (attempt < max_attempts).
 * Pause: queued -> paused at once; running (pause_requested) -> paused when the
 * worker has checkpointed; paused -> queued on resume, -> cancelled on cancel.
 * A terminal state never changes. */
enum store_job_state {
        STORE_JOB_QUEUED,
        STORE_JOB_RUNNING,
        STORE_JOB_CANCELLING,
        STORE_JOB_SUCCEEDED,
        STORE_JOB_FAILED,
        STORE_JOB_CANCELLED,
        STORE_JOB_PAUSED, /* checkpointed and holding no worker until resumed (not terminal) */
        STORE_JOB_STATE_COUNT,
};
const char *store_job_state_name(enum store_job_state st); /* "queued", ... */
/* -EINVAL for an unknown name. */
int store_job_state_from_name(const char *name, enum store_job_state *ret);
bool store_job_state_is_terminal(enum store_job_state st);
#define STORE_JOB_STATE_BIT(st) (1u << (st))

struct store_job {
        char id[STORE_ID_MAX];
        char *spec_json;
        enum store_job_state state;
        int priority; /* higher runs first */
        int attempt; /* number of claims so far; 0 while never claimed; the fencing token */
        int max_attempts; /* claims allowed before a lost lease fails the job */
        char *lease_owner; /* worker id of the current claim, "" when none */
        int64_t lease_expires_at; /* 0 when not leased */
        char model_id[STORE_ID_MAX]; /* base model */
        char training_file[STORE_ID_MAX]; /* dataset id */
        char validation_file[STORE_ID_MAX]; /* dataset id or "" */
        char result_model_id[STORE_ID_MAX]; /* "" until succeeded with a model */
        char *progress_json; /* "{}" until the worker reports */
        char *result_json; /* "null" until finished */
        char *error_json; /* "null" unless failed: {"code","message"} as given by the finisher */
        int64_t last_epoch; /* the highest epoch recorded with store_job_epoch_append (0: none) */
        char metrics_sha256[STORE_SHA256_HEX]; /* the blob of its metrics.json, "" when none */
        int64_t created_at, started_at, finished_at; /* started_at: first claim */
        bool pause_requested; /* running, asked to pause: the worker checkpoints and stops within one batch */
        int64_t runtime_ms; /* running time of its earlier claims (store_job_runtime_add), ms */
        char *receipt_json; /* what makes it repeatable, as the worker recorded it at the finish; "null" before */
        char replay_of[STORE_ID_MAX]; /* the job this one replays (POST /v1/jobs/{id}/replay), "" if none */
        char *metadata_json; /* the labels as a JSON object of strings, "{}" when none */
        char suffix[STORE_SUFFIX_MAX]; /* names the model the job produces; "" when none */
};

/* Labels on a job (OpenAI's limits): at most 16 pairs, keys 1..64 bytes,
 * values 0..512 bytes. */
#define STORE_METADATA_MAX 16
#define STORE_METADATA_KEY_MAX 64
#define STORE_METADATA_VALUE_MAX 512
#define STORE_METADATA_FILTER_MAX 4 /* pairs one list may filter by */
struct store_metadata_pair {
        const char *key;
        const char *value;
};

struct store_job_new {
        const char *spec_json; /* required */
        const char *model_id; /* required; must exist (-ENOENT param "model") */
        const char *training_file; /* required dataset id (-ENOENT param "training_file") */
        const char *validation_file; /* NULL/"" or a dataset id (-ENOENT param "validation_file") */
        int priority; /* default 0; higher first */
        int max_attempts; /* 0: 3 */
        /* Optional idempotency: the same key with the same request_hash returns
         * the job created the first time (and store_job_enqueue returns 1); the
         * same key with a different hash is -EEXIST param "idempotency_key". */
        const char *idempotency_key; /* NULL/"": none; <= STORE_KEY_MAX */
        const char *request_hash; /* e.g. hex sha256 of the request body; required with a key */
        const char *replay_of; /* NULL/"": none; else a job that must exist (-ENOENT param "replay_of") */
        /* Labels: the pairs (distinct keys, within the limits above: -EINVAL param "metadata") and the same
         * pairs as the JSON object shown back (NULL: "{}"); NULL/0: none. */
        const struct store_metadata_pair *metadata;
        size_t n_metadata;
        const char *metadata_json;
        const char *suffix; /* NULL/"": none; <= 64 bytes */
};

/* Enqueue a job (state queued, an event "status" {"state":"queued"} as seq 1).
 * The references are checked in the same transaction as the insert, so a
 * concurrent delete cannot leave the job pointing at nothing. Returns 0 when
 * created, 1 when an idempotency key returned an existing job. */
int store_job_enqueue(struct store *s, const struct store_job_new *in, struct store_job **ret, struct ft_error *err);
int store_job_get(struct store *s, const char *id, struct store_job **ret, struct ft_error *err);

struct store_job_filter {
        unsigned states; /* OR of STORE_JOB_STATE_BIT(); 0: all */
        /* only jobs with every one of these labels (key = value), at most STORE_METADATA_FILTER_MAX */
        const struct store_metadata_pair *metadata;
        size_t n_metadata;
};
struct store_job_list {
        struct store_job **items;
        size_t n;
        bool has_more;
};
/* Newest first. filter may be NULL. */
int store_job_list(struct store *s, const struct store_job_filter *filter, const struct store_page *page,
                   struct store_job_list *ret, struct ft_error *err);
void store_job_list_deinit(struct store_job_list *l);
/* Count jobs in the given states (e.g. queued, for a 429 cap). */
int store_job_count(struct store *s, unsigned states, int64_t *ret, struct ft_error *err);

/* Request cancellation: queued -> cancelled at once; running -> cancelling
 * (the worker sees it on its next heartbeat, or through the change notifier,
 * and finishes with STORE_JOB_CANCELLED); cancelling stays cancelling.
 * -EALREADY if the job is already terminal (its state is in the message).
 * On success *ret (may be NULL) receives the job after the change. */
int store_job_cancel(struct store *s, const char *id, struct store_job **ret, struct ft_error *err);
/* Delete a finished (succeeded, failed or cancelled) job with its events,
 * checkpoint rows and idempotency keys, in one transaction; then remove its
 * checkpoint directory "<state>/jobs/<id>/" (a directory that cannot be
 * removed is left behind: the rows are gone either way). A model the job
 * produced stays a model (its source_job_id keeps the id as history); blobs
 * only the job's checkpoints referenced go at the next store_blob_gc.
 * -EBUSY (param "id", the state in the message) for a queued, running or
 * cancelling job; -ENOENT if absent. */
int store_job_delete(struct store *s, const char *id, struct ft_error *err);
/* Remove the directories under "<state>/jobs/" whose job no longer exists (a delete interrupted between its
 * commit and the removal, or a directory it could not remove then). *ret_removed (may be NULL): how many. */
int store_job_dirs_sweep(struct store *s, int *ret_removed, struct ft_error *err);
void store_job_free(struct store_job *j);

/* ---- the queue: worker side -------------------------------------------------------- */

/* First requeue expired leases (as store_job_requeue_expired), then claim the
 * oldest queued job of the highest priority for `worker_id`: state running,
 * attempt += 1, lease until now + lease_ms. Returns 1 with *ret filled when a
 * job was claimed, 0 when nothing is queued (*ret untouched). Each job is
 * claimed by exactly one caller however many threads claim at once. The
 * worker keeps job->id and job->attempt: every write below is fenced by them. */
int store_job_claim(struct store *s, const char *worker_id, int64_t lease_ms, struct store_job **ret,
                    struct ft_error *err);

/* Renew the lease to now + lease_ms. *ret_cancel (may be NULL) is set when a
 * cancel was requested (state cancelling). -ESTALE when (id, attempt) no longer
 * holds the job: the worker must stop and write nothing more. A heartbeat that
 * arrives after the lease ran out but before anyone requeued the job still
 * succeeds (nobody else can have claimed it). Renew at a fraction of lease_ms
 * (e.g. lease 60 s, heartbeat every 10 s). */
int store_job_heartbeat(struct store *s, const char *id, int attempt, int64_t lease_ms, bool *ret_cancel,
                        struct ft_error *err);
/* Replace the job's progress JSON. Fenced: -ESTALE as above. */
int store_job_progress_set(struct store *s, const char *id, int attempt, const char *progress_json,
                           struct ft_error *err);

/* Finish a job: state must be STORE_JOB_SUCCEEDED, FAILED or CANCELLED.
 * result_json / error_json may be NULL ("null"). If result_model is not NULL a
 * model (source job, source_job_id = id) is created in the same transaction and
 * becomes the job's result_model_id; *ret_model_id (may be NULL) receives its
 * id. Appends an event "status" {"state": ...}. Fenced: -ESTALE. */
int store_job_finish(struct store *s, const char *id, int attempt, enum store_job_state state, const char *result_json,
                     const char *error_json, const struct store_model_new *result_model,
                     char ret_model_id[STORE_ID_MAX], struct ft_error *err);

/* The same with everything a finished job leaves behind: also the blob of
 * its metrics.json (committed before; -ENOENT param "metrics" if unknown),
 * which the job then references until it is deleted. */
struct store_job_outcome {
        enum store_job_state state;
        const char *result_json; /* NULL: "null" */
        const char *error_json; /* NULL: "null" */
        const struct store_model_new *model; /* NULL: none */
        const char *metrics_sha256; /* NULL/"": none */
        const char *receipt_json; /* NULL: "null"; the job's reproducibility receipt */
};
int store_job_finish_with(struct store *s, const char *id, int attempt, const struct store_job_outcome *outcome,
                          char ret_model_id[STORE_ID_MAX], struct ft_error *err);

/* ---- pause and resume (issue 18) ---------------------------------------------------- */

/* Request a pause: queued -> paused at once; running -> pause_requested (the
 * worker sees it on its heartbeat, checkpoints within one batch and calls
 * store_job_pause_done); paused, or running with a pause requested already,
 * stays so. -EALREADY (param "id", the state in the message) for a cancelling
 * or terminal job. *ret (may be NULL) receives the job after the change. */
int store_job_pause(struct store *s, const char *id, struct store_job **ret, struct ft_error *err);
/* Undo a pause: paused -> queued (resumes from its newest checkpoint on the
 * next claim); running with a pause requested -> the request is withdrawn.
 * -EALREADY for any other state ("is not paused"). *ret as above. */
int store_job_resume(struct store *s, const char *id, struct store_job **ret, struct ft_error *err);

/* What a heartbeat tells the worker holding the job. */
struct store_job_signals {
        bool cancel; /* state cancelling */
        bool pause; /* pause_requested */
};
/* store_job_heartbeat with both signals; ret may be NULL. */
int store_job_heartbeat_with(struct store *s, const char *id, int attempt, int64_t lease_ms,
                             struct store_job_signals *ret, struct ft_error *err);
/* The worker's answer to a pause request, after its checkpoint is recorded:
 * running -> paused, lease cleared, the flag cleared, and the claim refunded
 * (max_attempts + 1, as store_job_release); a job that became cancelling
 * meanwhile is cancelled instead. Fenced: -ESTALE. */
int store_job_pause_done(struct store *s, const char *id, int attempt, struct ft_error *err);
/* Add ms of running time to the job's runtime_ms (the worker, before it
 * pauses, releases or finishes). Fenced: -ESTALE; ms < 0 is -EINVAL. */
int store_job_runtime_add(struct store *s, const char *id, int attempt, int64_t ms, struct ft_error *err);

/* Give a job back without failing it (graceful shutdown): running/cancelling ->
 * queued (cancelling -> cancelled), lease cleared; the released claim does not
 * count towards max_attempts. Fenced: -ESTALE. */
int store_job_release(struct store *s, const char *id, int attempt, struct ft_error *err);

/* Requeue every running/cancelling job whose lease expired: back to queued
 * (resumes from its last checkpoint on the next claim); a job that has used
 * max_attempts claims fails instead, with error {"code":"lease_expired",
 * "message":...}; a cancelling one becomes cancelled. *ret_count (may be NULL)
 * is the number of jobs changed. Claim calls this itself; the worker pool may
 * also call it on a timer. */
int store_job_requeue_expired(struct store *s, int *ret_count, struct ft_error *err);

/* ---- events ------------------------------------------------------------------------- */

struct store_event {
        char job_id[STORE_ID_MAX];
        int64_t seq; /* 1, 2, 3 ... per job, no gaps */
        char type[STORE_EVENT_TYPE_MAX];
        char *data_json;
        int64_t created_at;
};

/* Append an event with the next sequence number of the job. Fenced by attempt
 * (-ESTALE) when attempt > 0; attempt 0 means an unfenced write by the daemon
 * itself (still refused on a terminal job: -EALREADY). type <= 63 bytes.
 * *ret_seq (may be NULL) receives the sequence number.
 * The store itself appends type "status" {"state": "...", ...} on every state
 * change, so a stream of events tells the whole story. */
int store_event_append(struct store *s, const char *job_id, int attempt, const char *type, const char *data_json,
                       int64_t *ret_seq, struct ft_error *err);

/* Append an "epoch" event for `epoch` and raise the job's last_epoch to it, in
 * one transaction (a resumed worker reads last_epoch from its claim to drop the
 * epochs it re-runs instead of paging the stream). Fenced: -ESTALE. */
int store_job_epoch_append(struct store *s, const char *job_id, int attempt, int64_t epoch, const char *data_json,
                           int64_t *ret_seq, struct ft_error *err);

struct store_event_list {
        struct store_event *items;
        size_t n;
        bool has_more;
};
/* Events of a job with seq > after_seq, oldest first, at most limit (1..1000,
 * 0 means 100). -ENOENT if the job does not exist. */
int store_event_list(struct store *s, const char *job_id, int64_t after_seq, unsigned limit,
                     struct store_event_list *ret, struct ft_error *err);
void store_event_list_deinit(struct store_event_list *l);

/* The best value of one numeric field over a job's "epoch" events with seq >
 * after_seq, in one statement (a range of the job's primary key, LIMIT 1):
 * field is a top-level key of the event data ("val_accuracy"), maximize says
 * which way is better, epoch > 0 looks only at that epoch (the one the trainer
 * chose). Ties go to the earliest epoch. ret->found says whether any event had
 * a number there (then ret->value, ret->epoch); ret->last_seq is the job's
 * newest event seq in the same snapshot (0 without events), so a caller that
 * keeps the answer can pass it as after_seq next time and read only what is
 * new. -EINVAL for a field that is not a plain key ([a-z0-9_]). */
struct store_event_best {
        bool found;
        double value;
        int64_t epoch;
        int64_t last_seq;
};
int store_event_best(struct store *s, const char *job_id, const char *field, bool maximize, int64_t epoch,
                     int64_t after_seq, struct store_event_best *ret, struct ft_error *err);

/* ---- checkpoints -------------------------------------------------------------------- */

struct store_checkpoint {
        int64_t id; /* per-store sequence, increasing */
        char job_id[STORE_ID_MAX];
        int attempt;
        int epoch;
        int64_t step;
        char *dir; /* relative to the state dir, e.g. "jobs/job_x/ckpt-3", or "" */
        char blob_sha256[STORE_SHA256_HEX]; /* "" when the checkpoint is a directory */
        char *meta_json; /* whatever the trainer wants back on resume; "{}" default */
        int64_t created_at;
};

struct store_checkpoint_new {
        int epoch;
        int64_t step;
        const char *dir; /* written and fsynced before this call */
        const char *blob_sha256; /* or a committed blob */
        const char *meta_json; /* NULL: "{}" */
        int keep; /* > 0: afterwards only the job's newest `keep` checkpoint rows remain (the caller removes the
                   * files of the others); 0: all remain */
};

/* Record a checkpoint (after its files are durable) and append an event
 * "checkpoint" {"epoch","step"}; with in->keep, drop the older rows in the same transaction. Fenced: -ESTALE. */
int store_checkpoint_add(struct store *s, const char *job_id, int attempt, const struct store_checkpoint_new *in,
                         int64_t *ret_id, struct ft_error *err);
/* The newest checkpoint of a job: returns 1 and fills *ret, 0 if there is none. */
int store_checkpoint_latest(struct store *s, const char *job_id, struct store_checkpoint **ret, struct ft_error *err);
struct store_checkpoint_list {
        struct store_checkpoint **items;
        size_t n;
        bool has_more;
};
/* Oldest first; page.after is a checkpoint id in decimal. */
int store_checkpoint_list(struct store *s, const char *job_id, const struct store_page *page,
                          struct store_checkpoint_list *ret, struct ft_error *err);
void store_checkpoint_list_deinit(struct store_checkpoint_list *l);
/* One checkpoint of a job by its id: -ENOENT (param "checkpoint") when the job has no such checkpoint (never
 * had, or pruned by keep), -ENOENT param "id" when the job does not exist. */
int store_checkpoint_get(struct store *s, const char *job_id, int64_t id, struct store_checkpoint **ret,
                         struct ft_error *err);
void store_checkpoint_free(struct store_checkpoint *c);

/* ---- waiting for changes ------------------------------------------------------------- */

/* Every committed change to a job (state, progress, event, checkpoint) bumps a
 * generation counter for that job; enqueue and requeue bump the queue's
 * generation. The notifier is in-process and shared by all connections to the
 * same state directory. Several daemons sharing a PostgreSQL store would feed
 * the same functions from LISTEN/NOTIFY. A write by another process to the
 * same SQLite file does not wake anyone: always wait with a timeout and
 * re-read the database after it.
 *
 * Pattern (SSE): gen = store_job_generation(); read events after last seq;
 * send them; store_job_wait(gen, timeout) -> loop. No change is missed because
 * the generation is read before the database. */
uint64_t store_job_generation(struct store *s, const char *job_id);
/* Block until the job's generation differs from `seen` or timeout_ms passes.
 * Returns 1 when changed (*ret_gen, may be NULL, gets the new value), 0 on
 * timeout. Spurious returns of 1 are possible (generations are kept in hashed
 * buckets); the caller re-reads. */
int store_job_wait(struct store *s, const char *job_id, uint64_t seen, int timeout_ms, uint64_t *ret_gen);
uint64_t store_queue_generation(struct store *s);
/* Workers: claim; if 0, store_queue_wait(gen read before the claim, ...). */
int store_queue_wait(struct store *s, uint64_t seen, int timeout_ms, uint64_t *ret_gen);

/* Callback for code that cannot block a thread (libmicrohttpd suspended
 * connections): called after each commit, on the writer's thread, once per job
 * the commit changed, and once with job_id NULL when the queue changed (or
 * when too many jobs changed to name them: treat NULL as "anything may have
 * changed"). No database lock is held; it must be quick, must not call into the
 * store, and must not subscribe/unsubscribe. After store_unsubscribe returns
 * the callback is never called again. A subscription may outlive the store it
 * was made on. */
typedef void (*store_change_fn)(const char *job_id, void *userdata);
struct store_subscription;
int store_subscribe(struct store *s, store_change_fn fn, void *userdata, struct store_subscription **ret,
                    struct ft_error *err);
void store_unsubscribe(struct store_subscription *sub); /* NULL is a no-op */

/* ---- blobs ---------------------------------------------------------------------------- */

/* Content-addressed files under "<state>/blobs/ab/abcdef..." (sha256 hex).
 * Writing streams: begin, write any number of times, then commit or abort.
 * Data goes to a temporary file under blobs/tmp/, hashed as it streams; commit
 * fsyncs it, renames it to its hash name, fsyncs the directory, and only then
 * records the blob row. A blob that already exists is deduplicated (the temp
 * file is dropped). An interrupted write (abort, crash) leaves only a temp file
 * that no row references and that store_blob_gc removes. */
struct store_blob_writer;
/* max_size: the cap in bytes (writes beyond it fail with -EFBIG); 0: no cap. */
int store_blob_begin(struct store *s, int64_t max_size, struct store_blob_writer **ret, struct ft_error *err);
int store_blob_write(struct store_blob_writer *w, const void *data, size_t n, struct ft_error *err);
/* Make the blob durable and record it. Frees w whatever the result.
 * ret_sha256 (may be NULL) gets the hex digest, *ret_size (may be NULL) the size. */
int store_blob_commit(struct store_blob_writer *w, char ret_sha256[STORE_SHA256_HEX], int64_t *ret_size,
                      struct ft_error *err);
/* Drop the temp file and free w. NULL is a no-op. */
void store_blob_abort(struct store_blob_writer *w);
/* Bytes written so far. */
int64_t store_blob_written(const struct store_blob_writer *w);

/* Absolute path of a committed blob; -ENOENT if unknown, -ENAMETOOLONG if buf is
 * too small. */
int store_blob_path(struct store *s, const char *sha256, char *buf, size_t size, struct ft_error *err);
/* Whether a blob is recorded; *ret_size (may be NULL) gets its size. */
int store_blob_exists(struct store *s, const char *sha256, bool *ret, int64_t *ret_size, struct ft_error *err);

/* Delete blobs that no dataset (file or IDX labels), model, checkpoint or
 * job (metrics.json) references and that were
 * committed (or last deduplicated) more than min_age_ms ago (the grace period
 * covers a blob committed but whose dataset/model row is not written yet), plus
 * files under blobs/ with no row and temp files older than min_age_ms.
 * *ret_removed (may be NULL) counts files removed. */
int store_blob_gc(struct store *s, int64_t min_age_ms, int *ret_removed, struct ft_error *err);

/* ---- idempotency keys -------------------------------------------------------------- */

/* Forget idempotency keys older than max_age_ms (e.g. 24 h). */
int store_idempotency_prune(struct store *s, int64_t max_age_ms, int *ret_removed, struct ft_error *err);

/* ---- webhooks ------------------------------------------------------------------------- */

/* Endpoints that receive job events as signed HTTP POSTs (the Standard
 * Webhooks scheme; the signing and sending is daemon/webhooks.c's). Every
 * event a job gets (store_event_append, the store's own status events) whose
 * webhook type an endpoint subscribes to becomes a delivery row for that
 * endpoint in the same transaction as the event: the outbox, which is also
 * the delivery log. Webhook types: "job.<state>" for a status event
 * (queued, running, paused, succeeded, failed, cancelled: see
 * store_webhook_type_of), "job.epoch" for an epoch event, "job.warning" for a
 * warning event; "webhook.test" for store_webhook_test. */
#define STORE_WEBHOOKS_MAX 16 /* endpoints per store */
#define STORE_WEBHOOK_URL_MAX 2048 /* bytes */
#define STORE_WEBHOOK_DESCRIPTION_MAX 256
#define STORE_WEBHOOK_SECRET_MAX 128
#define STORE_WEBHOOK_TYPES_MAX 512 /* bytes of the comma-separated type list */

/* The webhook type of a job event, or NULL when no webhook carries it. state: the state a status event
 * reports (ignored for other types). */
const char *store_webhook_type_of(const char *event_type, enum store_job_state state);

struct store_webhook {
        char id[STORE_ID_MAX]; /* "wh_..." */
        char *url;
        char *description;
        char *event_types; /* comma-separated, e.g. "job.succeeded,job.failed" */
        char *secret; /* "whsec_..." */
        int64_t created_at;
};
struct store_webhook_new {
        const char *url; /* required, <= STORE_WEBHOOK_URL_MAX (the caller checks scheme and host) */
        const char *description; /* NULL: "" */
        const char *event_types; /* required: comma-separated types, no spaces */
        const char *secret; /* required */
};
/* -ENOSPC (param "url") when STORE_WEBHOOKS_MAX endpoints exist already (checked in the transaction). */
int store_webhook_create(struct store *s, const struct store_webhook_new *in, struct store_webhook **ret,
                         struct ft_error *err);
int store_webhook_get(struct store *s, const char *id, struct store_webhook **ret, struct ft_error *err);
struct store_webhook_list {
        struct store_webhook **items;
        size_t n;
        bool has_more;
};
int store_webhook_list(struct store *s, const struct store_page *page, struct store_webhook_list *ret,
                       struct ft_error *err);
void store_webhook_list_deinit(struct store_webhook_list *l);
/* Delete the endpoint and its deliveries (pending ones are never sent). -ENOENT if absent. */
int store_webhook_delete(struct store *s, const char *id, struct ft_error *err);
void store_webhook_free(struct store_webhook *w);

enum store_delivery_state {
        STORE_DELIVERY_PENDING, /* not yet delivered: due at next_attempt_at */
        STORE_DELIVERY_SUCCEEDED, /* a 2xx answer */
        STORE_DELIVERY_FAILED, /* given up (the sender's retry window ran out) */
};
const char *store_delivery_state_name(enum store_delivery_state st); /* "pending", ... */

struct store_webhook_delivery {
        int64_t seq; /* per store, increasing */
        char msg_id[STORE_ID_MAX]; /* "msg_...": the webhook-id, one per event (the same for every endpoint and
                                    * every retry) */
        char webhook_id[STORE_ID_MAX];
        char event_type[STORE_EVENT_TYPE_MAX]; /* "job.succeeded", ... */
        char job_id[STORE_ID_MAX]; /* "" for webhook.test */
        char *payload; /* the JSON body, fixed when the event happened */
        enum store_delivery_state state;
        int attempts; /* sends started so far */
        int64_t next_attempt_at; /* pending: when it is due (a claimed one: when the claim lapses) */
        int last_status; /* HTTP status of the last answer, 0 when none */
        char *last_error; /* why the last attempt failed, "" */
        int64_t created_at, updated_at;
        char *url, *secret; /* store_webhook_claim only (NULL elsewhere): where and with what to send it */
};
struct store_webhook_delivery_list {
        struct store_webhook_delivery **items;
        size_t n;
        bool has_more;
};
/* A delivery of webhook.test to the endpoint, due now; *ret_msg_id (may be NULL) receives its webhook-id. */
int store_webhook_test(struct store *s, const char *id, char ret_msg_id[STORE_ID_MAX], struct ft_error *err);
/* The endpoint's deliveries, newest first; page.after is a msg_id of this endpoint. -ENOENT for no endpoint. */
int store_webhook_deliveries(struct store *s, const char *id, const struct store_page *page,
                             struct store_webhook_delivery_list *ret, struct ft_error *err);
void store_webhook_delivery_list_deinit(struct store_webhook_delivery_list *l);
void store_webhook_delivery_free(struct store_webhook_delivery *d);

/* Sender side. Claim up to max (1..STORE_PAGE_MAX) pending deliveries due by now, oldest due first, with their
 * endpoint's url and secret: each gets attempts += 1 and next_attempt_at = now + lease_ms, so a sender that
 * dies mid-send leaves it to be claimed again when the lease lapses (at least once; the msg_id lets the
 * receiver drop the duplicate). */
int store_webhook_claim(struct store *s, unsigned max, int64_t lease_ms, struct store_webhook_delivery_list *ret,
                        struct ft_error *err);
/* What one attempt at a claimed delivery came to: delivered (2xx), or not, with the answer's status (0: none),
 * why, and when to try again (0: never, the delivery is failed). Fenced by the claim (seq, attempts and lease
 * as store_webhook_claim returned them): -ESTALE when it was lost (the lease lapsed and it was claimed again,
 * a result was written already, or the endpoint was deleted). */
struct store_webhook_attempt {
        bool delivered;
        int status;
        const char *error; /* NULL: "" */
        int64_t retry_at;
};
int store_webhook_attempt_done(struct store *s, const struct store_webhook_delivery *claimed,
                               const struct store_webhook_attempt *a, struct ft_error *err);
/* The earliest next_attempt_at of a pending delivery (*ret 0 when none). */
int store_webhook_next_due(struct store *s, int64_t *ret, struct ft_error *err);
/* Drop delivered and failed deliveries last updated more than max_age_ms ago. */
int store_webhook_prune(struct store *s, int64_t max_age_ms, int *ret_removed, struct ft_error *err);

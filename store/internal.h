/* internal.h - what the store's .c files share: the connection struct, the
 * statement cache, transactions with deferred change notifications, row
 * helpers. Not part of the contract: nothing outside store/ includes it. */
#pragma once

#include <limits.h>

#include <sqlite3.h>

#include "common/sha256.h"
#include "store/store.h"

#define STMT_CACHE_MAX 128
#define PENDING_JOBS_MAX 64 /* one enqueue batch (jobs.c ENQUEUE_BATCH_MAX) names each of its jobs */

struct notifier;
struct pg_conn;

#define STORE_URL_MAX 1024

struct store {
        /* SQLite: the database. PostgreSQL: a private in-memory database for SQLite's JSON functions only. */
        sqlite3 *db;
        /* PostgreSQL (a PGconn), NULL for SQLite: see "Backends" below */
        struct pg_conn *pg;
        char url[STORE_URL_MAX];
        char pg_instance[32]; /* this process's token in NOTIFY payloads */
        int schema_version;
        char state_dir[PATH_MAX];
        char blob_dir[PATH_MAX]; /* <state>/blobs */
        char tmp_dir[PATH_MAX]; /* <state>/blobs/tmp */
        struct notifier *notifier;
        bool in_tx;
        /* changes committed by the current transaction, signalled after COMMIT */
        char pending[PENDING_JOBS_MAX][STORE_ID_MAX];
        size_t n_pending;
        bool pending_overflow, pending_queue;
        struct {
                const char *sql;
                sqlite3_stmt *st;
        } cache[STMT_CACHE_MAX];
        size_t n_cache;
};

/* A cached prepared statement for a constant SQL string (reset and unbound on
 * return). NULL on failure, with err filled. */
sqlite3_stmt *store_stmt(struct store *s, const char *sql, struct ft_error *err);
/* Fill err from the connection's last error; returns -EIO. */
int store_db_error(struct store *s, struct ft_error *err, const char *what);

int store_tx_begin(struct store *s, struct ft_error *err);
int store_tx_commit(struct store *s, struct ft_error *err); /* signals pending changes */
void store_tx_rollback(struct store *s);
/* Record that a job (NULL: only the queue) changed in this transaction. */
void store_mark_changed(struct store *s, const char *job_id, bool queue);

/* Run a statement that returns no rows (or whose rows are ignored). */
int store_step_done(struct store *s, sqlite3_stmt *st, struct ft_error *err);

/* A copy of column i as text: "" for NULL; NULL only when out of memory. */
char *store_col_strdup(sqlite3_stmt *st, int i);
void store_col_copy(sqlite3_stmt *st, int i, char *buf, size_t size);
int store_bind_text(sqlite3_stmt *st, int i, const char *text); /* NULL or "" binds NULL */

/* "<prefix>" + 24 hex from getrandom(). */
int store_id_new(const char *prefix, char out[STORE_ID_MAX], struct ft_error *err);
int64_t store_now_ms(void);

/* Argument checks that fill err with the parameter name. */
int store_check_string(const char *param, const char *value, size_t max, bool required, struct ft_error *err);
int store_check_json(struct store *s, const char *param, const char *json, bool required, struct ft_error *err);
int store_page_limit(const struct store_page *page, unsigned *ret, struct ft_error *err);
/* The seq of the row a page cursor names: sql selects seq WHERE id = ?1;
 * -ENOENT param "after" (naming `kind`) when there is no such row. */
int store_cursor_seq(struct store *s, const char *sql, const char *kind, const char *after, int64_t *ret,
                     struct ft_error *err);
/* Step a page query bound with LIMIT limit + 1: add(s, st, list, err) turns
 * each of the first `limit` rows into the next item of list; *ret_more says
 * whether one more row followed. `what` names the list in a database error.
 * The caller resets (or finalizes) st and frees the list on failure. */
typedef int (*store_row_add_fn)(struct store *s, sqlite3_stmt *st, void *list, struct ft_error *err);
int store_page_rows(struct store *s, sqlite3_stmt *st, unsigned limit, store_row_add_fn add, void *list, bool *ret_more,
                    const char *what, struct ft_error *err);

/* "<blob_dir>/ab/abcd..." for a hex digest. */
int store_blob_file(struct store *s, const char *sha256, char *buf, size_t size);

/* The job list's query for a state filter (0: all), parameters ?1 = the cursor's seq (INT64_MAX for the first
 * page) and ?2 = limit + 1; every plan is a search of an index, never a scan or a sort of the matching rows
 * (tests/unit/test_store_plan.c checks it with EXPLAIN QUERY PLAN). */
#define STORE_JOB_LIST_SQL_MAX 2048
int store_job_list_sql(unsigned states, char *buf, size_t size, struct ft_error *err);
/* store_job_count's query: it reads the per-state counters (job_counts), never jobs. */
int store_job_count_sql(unsigned states, char *buf, size_t size, struct ft_error *err);

/* Notifier (changes.c). */
int notifier_acquire(const char *state_dir, struct notifier **ret, struct ft_error *err);
void notifier_release(struct notifier *n);
void notifier_signal(struct notifier *n, const char (*jobs)[STORE_ID_MAX], size_t n_jobs, bool all_jobs, bool queue);
/* Attach a cross-process feed to n unless it has one: start(n, userdata) returns it, stop(it) runs when the last
 * reference goes. token (in/out): the first caller's token is kept, every caller gets it back. */
void notifier_listen(struct notifier *n, void *(*start)(struct notifier *n, void *userdata), void (*stop)(void *),
                     void *userdata, char *token, size_t token_size);

/* Internal event append inside an open transaction. */
int store_event_insert(struct store *s, const char *job_id, const char *type, const char *data_json, int64_t *ret_seq,
                       struct ft_error *err);
/* Append a "status" event: {"state", "attempt"[, "reason"][, "worker"]}. */
int store_event_status(struct store *s, const char *job_id, enum store_job_state state, int attempt, const char *reason,
                       const char *worker, struct ft_error *err);
/* Model insert inside an open transaction (catalog.c). */
int store_model_insert(struct store *s, const struct store_model_new *in, char id[STORE_ID_MAX], struct ft_error *err);

/* Webhook outbox (webhooks.c): inside the transaction that appends event `seq` of job_id, write one delivery per
 * endpoint subscribed to its webhook type (none: nothing but one indexed probe). state: a status event's state. */
int store_webhook_outbox_locked(struct store *s, const char *job_id, int64_t seq, const char *event_type,
                                enum store_job_state state, const char *data_json, int64_t created_at,
                                struct ft_error *err);
/* Labels (metadata.c): a job's pairs, inside the enqueue transaction (job_seq: its row). */
int store_job_metadata_insert_locked(struct store *s, int64_t job_seq, const struct store_metadata_pair *pairs,
                                     size_t n, struct ft_error *err);
int store_job_metadata_check(const struct store_metadata_pair *pairs, size_t n, const char *param,
                             struct ft_error *err);
/* The job list's query when it filters by labels: ?1 cursor seq, ?2 limit + 1, ?3.. key, value pairs. */
int store_job_list_metadata_sql(unsigned states, size_t n_pairs, const char *cols, char *buf, size_t size,
                                struct ft_error *err);
/* ---- Backends ------------------------------------------------------------------------------------------------
 *
 * store_open picks the backend from the URL: NULL/"" is SQLite in the state directory (store.c,
 * catalog.c, jobs.c, blobs.c), "postgresql://..." is PostgreSQL (pg_store.c, pg_catalog.c, pg_jobs.c,
 * pg_blobs.c), with s->pg set. The SQLite code stays the reference; each public function that touches the
 * database starts with one dispatch line:
 *
 *     int store_job_get(struct store *s, const char *id, struct store_job **ret, struct ft_error *err) {
 *             STORE_PG(s, pg_job_get(s, id, ret, err));
 *             ...the SQLite code...
 *
 * and a function that has no PostgreSQL twin yet starts with
 *
 *             STORE_PG_UNSUPPORTED(s, "store_job_frobnicate", err);
 *
 * which returns -EOPNOTSUPP with a message naming it. Adding a twin for a new store function: write pg_<name> in
 * the matching store/pg_<area>.c with the same signature and the same documented semantics (same errors, same
 * params, same events), declare it below, and put the STORE_PG line first in the SQLite function. A new SQLite
 * migration N gets its PostgreSQL DDL as entry N of pg_migrations[] in pg_store.c (same number, same meaning).
 * Rules of the PostgreSQL twins: transactions are READ COMMITTED; a read-then-write locks the job row first
 * (pg_job_lock: SELECT ... FOR UPDATE), which is what SQLite's BEGIN IMMEDIATE gives for free; timestamps are the
 * writer's store_now_ms() as on SQLite. With the meson option postgresql disabled, STORE_PG compiles to nothing
 * and store_open refuses a postgresql:// URL. */
bool store_url_is_pg(const char *url);

#ifdef HAVE_LIBPQ
#define STORE_PG(s, call)                                                                                              \
        do {                                                                                                           \
                if ((s)->pg)                                                                                           \
                        return (call);                                                                                 \
        } while (0)
#define STORE_PG_UNSUPPORTED(s, what, err)                                                                             \
        do {                                                                                                           \
                if ((s)->pg)                                                                                           \
                        return pg_unsupported((what), (err));                                                          \
        } while (0)
#else
#define STORE_PG(s, call)                                                                                              \
        do {                                                                                                           \
        } while (0)
#define STORE_PG_UNSUPPORTED(s, what, err)                                                                             \
        do {                                                                                                           \
        } while (0)
#endif

int pg_unsupported(const char *what, struct ft_error *err);

#ifdef HAVE_LIBPQ
#include <libpq-fe.h>

/* Text parameters for one statement ($1..$n). */
#define PG_ARGS_MAX 20
struct pg_args {
        const char *v[PG_ARGS_MAX];
        char buf[PG_ARGS_MAX][24];
        int n;
};
void pg_arg_text(struct pg_args *a, const char *v); /* NULL or "" binds NULL */
void pg_arg_str(struct pg_args *a, const char *v); /* NULL binds "" */
void pg_arg_int(struct pg_args *a, int64_t v);
int64_t pg_int(PGresult *res, int row, int col); /* NULL reads 0 */
char *pg_strdup(PGresult *res, int row, int col); /* "" for NULL; NULL only when out of memory */
void pg_copy(PGresult *res, int row, int col, char *buf, size_t size);

/* Run one statement; *ret (may be NULL: discarded) gets its result, freed by the caller with PQclear. -EIO with
 * err filled on failure (-EEXIST on a unique violation). */
int pg_query(struct store *s, PGresult **ret, struct ft_error *err, const char *what, const char *sql,
             const struct pg_args *a);
int pg_exec(struct store *s, struct ft_error *err, const char *what, const char *sql, const struct pg_args *a);
int pg_error(struct store *s, PGresult *res, struct ft_error *err, const char *what);
int pg_tx_begin(struct store *s, struct ft_error *err);
int pg_tx_commit(struct store *s, struct ft_error *err); /* NOTIFY, COMMIT, then the local notifier */
void pg_tx_rollback(struct store *s);
#define PG(s) ((PGconn *)(s)->pg)

int pg_open(struct store *s, const char *url, const struct store_options *opts, struct ft_error *err);
void pg_close(struct store *s);

/* pg_catalog.c */
int pg_dataset_create(struct store *s, const struct store_dataset_new *in, struct store_dataset **ret,
                      struct ft_error *err);
int pg_dataset_get(struct store *s, const char *id, struct store_dataset **ret, struct ft_error *err);
int pg_dataset_list(struct store *s, const struct store_page *page, struct store_dataset_list *ret,
                    struct ft_error *err);
int pg_dataset_delete(struct store *s, const char *id, struct ft_error *err);
int pg_dataset_in_use(struct store *s, const char *id, bool *ret, struct ft_error *err);
int pg_model_create(struct store *s, const struct store_model_new *in, struct store_model **ret, struct ft_error *err);
int pg_model_get(struct store *s, const char *id, struct store_model **ret, struct ft_error *err);
int pg_model_list(struct store *s, const struct store_page *page, struct store_model_list *ret, struct ft_error *err);
int pg_model_delete(struct store *s, const char *id, struct ft_error *err);
int pg_model_in_use(struct store *s, const char *id, bool *ret, struct ft_error *err);
int pg_model_insert(struct store *s, const struct store_model_new *in, char id[STORE_ID_MAX], struct ft_error *err);

/* pg_jobs.c */
int pg_job_enqueue(struct store *s, const struct store_job_new *in, struct store_job **ret, struct ft_error *err);
int pg_job_get(struct store *s, const char *id, struct store_job **ret, struct ft_error *err);
int pg_job_list(struct store *s, const struct store_job_filter *filter, const struct store_page *page,
                struct store_job_list *ret, struct ft_error *err);
int pg_job_count(struct store *s, unsigned states, int64_t *ret, struct ft_error *err);
int pg_job_cancel(struct store *s, const char *id, struct store_job **ret, struct ft_error *err);
int pg_job_delete(struct store *s, const char *id, struct ft_error *err);
int pg_job_dirs_sweep(struct store *s, int *ret_removed, struct ft_error *err);
int pg_job_claim(struct store *s, const char *worker_id, int64_t lease_ms, struct store_job **ret,
                 struct ft_error *err);
int pg_job_heartbeat(struct store *s, const char *id, int attempt, int64_t lease_ms, bool *ret_cancel,
                     struct ft_error *err);
int pg_job_progress_set(struct store *s, const char *id, int attempt, const char *progress_json, struct ft_error *err);
int pg_job_finish_with(struct store *s, const char *id, int attempt, const struct store_job_outcome *outcome,
                       char ret_model_id[STORE_ID_MAX], struct ft_error *err);
int pg_job_release(struct store *s, const char *id, int attempt, struct ft_error *err);
int pg_job_requeue_expired(struct store *s, int *ret_count, struct ft_error *err);
int pg_event_append(struct store *s, const char *job_id, int attempt, const char *type, const char *data_json,
                    int64_t *ret_seq, struct ft_error *err);
int pg_job_epoch_append(struct store *s, const char *job_id, int attempt, int64_t epoch, const char *data_json,
                        int64_t *ret_seq, struct ft_error *err);
int pg_event_list(struct store *s, const char *job_id, int64_t after_seq, unsigned limit, struct store_event_list *ret,
                  struct ft_error *err);
int pg_event_best(struct store *s, const char *job_id, const char *field, bool maximize, int64_t epoch,
                  int64_t after_seq, struct store_event_best *ret, struct ft_error *err);
int pg_checkpoint_add(struct store *s, const char *job_id, int attempt, const struct store_checkpoint_new *in,
                      int64_t *ret_id, struct ft_error *err);
int pg_checkpoint_latest(struct store *s, const char *job_id, struct store_checkpoint **ret, struct ft_error *err);
int pg_checkpoint_list(struct store *s, const char *job_id, const struct store_page *page,
                       struct store_checkpoint_list *ret, struct ft_error *err);
int pg_idempotency_prune(struct store *s, int64_t max_age_ms, int *ret_removed, struct ft_error *err);

/* pg_blobs.c: the local file is written as on SQLite (blobs.c); commit also streams it into a large object. */
int pg_blob_commit_row(struct store *s, const char *sha, int64_t size, const char *path, struct ft_error *err);
int pg_blob_path(struct store *s, const char *sha256, char *buf, size_t size, struct ft_error *err);
int pg_blob_exists(struct store *s, const char *sha256, bool *ret, int64_t *ret_size, struct ft_error *err);
int pg_blob_gc(struct store *s, int64_t min_age_ms, int *ret_removed, struct ft_error *err);
#endif

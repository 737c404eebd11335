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

struct store {
        sqlite3 *db;
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

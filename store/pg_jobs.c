/* pg_jobs.c - the job queue on PostgreSQL: the twins of jobs.c. Claim with
 * FOR UPDATE SKIP LOCKED (each job to exactly one daemon however many claim at
 * once), leases, fencing by attempt, requeue of expired leases, idempotency
 * keys, events, checkpoints. A read-then-write locks the job row first
 * (job_lock: SELECT ... FOR UPDATE), which serializes the writers of one job
 * the way SQLite's BEGIN IMMEDIATE serializes all writers; events take their
 * seq under that lock, so a job's events have no gaps and no duplicates.
 * Argument checks are done by the SQLite functions before they dispatch here.
 * Not for: datasets/models (pg_catalog.c), files (pg_blobs.c). */
#include "store/internal.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define JOB_COLS                                                                                                       \
        "id, spec_json, state, priority, attempt, max_attempts, lease_owner, lease_expires_at, model_id, "             \
        "training_file, validation_file, result_model_id, progress_json, result_json, error_json, created_at, "        \
        "started_at, finished_at, last_epoch, metrics_sha256"
#define CHECKPOINT_COLS "id, job_id, attempt, epoch, step, dir, blob_sha256, meta_json, created_at"
#define MAX_ATTEMPTS_DEFAULT 3
#define REQUEUE_BATCH 32

static enum store_job_state state_of(const char *t) {
        enum store_job_state st = STORE_JOB_FAILED;
        store_job_state_from_name(t, &st);
        return st;
}

static int job_from_row(PGresult *res, int i, struct store_job **ret, struct ft_error *err) {
        struct store_job *j = calloc(1, sizeof(*j));
        if (!j)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        pg_copy(res, i, 0, j->id, sizeof(j->id));
        j->spec_json = pg_strdup(res, i, 1);
        j->state = state_of(PQgetvalue(res, i, 2));
        j->priority = (int)pg_int(res, i, 3);
        j->attempt = (int)pg_int(res, i, 4);
        j->max_attempts = (int)pg_int(res, i, 5);
        j->lease_owner = pg_strdup(res, i, 6);
        j->lease_expires_at = pg_int(res, i, 7);
        pg_copy(res, i, 8, j->model_id, sizeof(j->model_id));
        pg_copy(res, i, 9, j->training_file, sizeof(j->training_file));
        pg_copy(res, i, 10, j->validation_file, sizeof(j->validation_file));
        pg_copy(res, i, 11, j->result_model_id, sizeof(j->result_model_id));
        j->progress_json = pg_strdup(res, i, 12);
        j->result_json = pg_strdup(res, i, 13);
        j->error_json = pg_strdup(res, i, 14);
        j->created_at = pg_int(res, i, 15);
        j->started_at = pg_int(res, i, 16);
        j->finished_at = pg_int(res, i, 17);
        j->last_epoch = pg_int(res, i, 18);
        pg_copy(res, i, 19, j->metrics_sha256, sizeof(j->metrics_sha256));
        if (!j->spec_json || !j->lease_owner || !j->progress_json || !j->result_json || !j->error_json) {
                store_job_free(j);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        *ret = j;
        return 0;
}

int pg_job_get(struct store *s, const char *id, struct store_job **ret, struct ft_error *err) {
        PGresult *res;
        struct pg_args a = {0};
        id = id ? id : "";
        pg_arg_str(&a, id);
        int r = pg_query(s, &res, err, "read job", "SELECT " JOB_COLS " FROM jobs WHERE id = $1", &a);
        if (r < 0)
                return r;
        if (PQntuples(res) == 1)
                r = job_from_row(res, 0, ret, err);
        else
                r = ft_error_set(err, -ENOENT, "id", "job '%.64s' does not exist", id);
        PQclear(res);
        return r;
}

/* Inside a transaction: lock the job row and read its state and attempt (lock false: read only). */
static int job_lock(struct store *s, const char *id, bool lock, enum store_job_state *ret_state, int *ret_attempt,
                    struct ft_error *err) {
        PGresult *res;
        struct pg_args a = {0};
        pg_arg_str(&a, id);
        int r = pg_query(s, &res, err, "read job",
                         lock ? "SELECT state, attempt FROM jobs WHERE id = $1 FOR UPDATE"
                              : "SELECT state, attempt FROM jobs WHERE id = $1",
                         &a);
        if (r < 0)
                return r;
        if (PQntuples(res) == 1) {
                *ret_state = state_of(PQgetvalue(res, 0, 0));
                if (ret_attempt)
                        *ret_attempt = (int)pg_int(res, 0, 1);
        } else {
                r = ft_error_set(err, -ENOENT, "id", "job '%.64s' does not exist", id);
        }
        PQclear(res);
        return r;
}

static int fence(struct store *s, const char *id, int attempt, enum store_job_state *ret_state, struct ft_error *err) {
        enum store_job_state st;
        int cur;
        int r = job_lock(s, id, true, &st, &cur, err);
        if (r < 0)
                return r;
        if (cur != attempt || (st != STORE_JOB_RUNNING && st != STORE_JOB_CANCELLING))
                return ft_error_set(err, -ESTALE, "attempt",
                                    "job '%s' is no longer held by attempt %d (it is %s at attempt %d)", id, attempt,
                                    store_job_state_name(st), cur);
        if (ret_state)
                *ret_state = st;
        return 0;
}

/* ---- events (inside a transaction, the job row locked) ------------------------------------ */

static int event_insert(struct store *s, const char *job_id, const char *type, const char *data_json, int64_t *ret_seq,
                        struct ft_error *err) {
        PGresult *res;
        struct pg_args a = {0};
        pg_arg_str(&a, job_id);
        pg_arg_str(&a, type);
        pg_arg_str(&a, data_json && *data_json ? data_json : "{}");
        pg_arg_int(&a, store_now_ms());
        int r = pg_query(s, &res, err, "append event",
                         "INSERT INTO events (job_id, seq, type, data_json, created_at) VALUES ($1,"
                         " (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE job_id = $1), $2, $3, $4) RETURNING seq",
                         &a);
        if (r < 0)
                return r;
        if (ret_seq)
                *ret_seq = pg_int(res, 0, 0);
        PQclear(res);
        store_mark_changed(s, job_id, false);
        return 0;
}

/* The "status" event's data, built by SQLite's JSON functions (the private in-memory database) so that it is the
 * same text on both backends. */
static int event_status(struct store *s, const char *job_id, enum store_job_state state, int attempt,
                        const char *reason, const char *worker, struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(
                s,
                "SELECT json_patch(json_object('state', ?1, 'attempt', ?2), json_object('reason', ?3, 'worker', ?4))",
                err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, store_job_state_name(state), -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, attempt);
        store_bind_text(st, 3, reason);
        store_bind_text(st, 4, worker);
        char *data = sqlite3_step(st) == SQLITE_ROW ? store_col_strdup(st, 0) : NULL;
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (!data)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        int r = event_insert(s, job_id, "status", data, NULL, err);
        free(data);
        return r;
}

/* ---- enqueue, list, count ---------------------------------------------------------------- */

/* A referenced row must exist; FOR SHARE keeps a concurrent delete (FOR UPDATE) out until this commits. */
static int ref_exists(struct store *s, const char *sql, const char *param, const char *kind, const char *id,
                      struct ft_error *err) {
        PGresult *res;
        struct pg_args a = {0};
        pg_arg_str(&a, id);
        int r = pg_query(s, &res, err, "check reference", sql, &a);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                r = ft_error_set(err, -ENOENT, param, "%s '%.64s' does not exist", kind, id);
        PQclear(res);
        return r;
}

int pg_job_enqueue(struct store *s, const struct store_job_new *in, struct store_job **ret, struct ft_error *err) {
        char id[STORE_ID_MAX], found[STORE_ID_MAX];
        struct store_job *j = NULL;
        bool keyed = in->idempotency_key && *in->idempotency_key;
        int existed = 0;
        PGresult *res;
        int r = store_id_new("job_", id, err);
        if (r < 0)
                return r;
        snprintf(found, sizeof(found), "%s", id);
        r = pg_tx_begin(s, err);
        if (r < 0)
                return r;
        if (keyed) {
                /* The key first: of concurrent enqueues with one key, the first insert wins and the others wait
                 * for its commit, then find the key (its job reference is checked at commit: DEFERRABLE). */
                struct pg_args a = {0};
                pg_arg_str(&a, in->idempotency_key);
                pg_arg_str(&a, in->request_hash);
                pg_arg_str(&a, id);
                pg_arg_int(&a, store_now_ms());
                r = pg_query(s, &res, err, "record idempotency key",
                             "INSERT INTO idempotency_keys (key, request_hash, job_id, created_at)"
                             " VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING RETURNING key",
                             &a);
                if (r < 0)
                        goto fail;
                int inserted = PQntuples(res);
                PQclear(res);
                if (!inserted) {
                        a = (struct pg_args){0};
                        pg_arg_str(&a, in->idempotency_key);
                        r = pg_query(s, &res, err, "read idempotency key",
                                     "SELECT request_hash, job_id FROM idempotency_keys WHERE key = $1", &a);
                        if (r < 0)
                                goto fail;
                        if (PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), in->request_hash) == 0) {
                                pg_copy(res, 0, 1, found, sizeof(found));
                                existed = 1;
                        } else {
                                r = ft_error_set(err, -EEXIST, "idempotency_key",
                                                 "idempotency key '%.64s' was already used with a different request",
                                                 in->idempotency_key);
                        }
                        PQclear(res);
                        if (r < 0)
                                goto fail;
                }
        }
        if (!existed) {
                r = ref_exists(s, "SELECT 1 FROM models WHERE id = $1 FOR SHARE", "model", "model", in->model_id, err);
                if (r == 0)
                        r = ref_exists(s, "SELECT 1 FROM datasets WHERE id = $1 FOR SHARE", "training_file", "dataset",
                                       in->training_file, err);
                if (r == 0 && in->validation_file && *in->validation_file)
                        r = ref_exists(s, "SELECT 1 FROM datasets WHERE id = $1 FOR SHARE", "validation_file",
                                       "dataset", in->validation_file, err);
                if (r < 0)
                        goto fail;
                struct pg_args a = {0};
                pg_arg_str(&a, id);
                pg_arg_str(&a, in->spec_json);
                pg_arg_int(&a, in->priority);
                pg_arg_int(&a, in->max_attempts ? in->max_attempts : MAX_ATTEMPTS_DEFAULT);
                pg_arg_str(&a, in->model_id);
                pg_arg_str(&a, in->training_file);
                pg_arg_text(&a, in->validation_file);
                pg_arg_int(&a, store_now_ms());
                r = pg_exec(s, err, "enqueue",
                            "INSERT INTO jobs (id, spec_json, state, priority, attempt, max_attempts, model_id,"
                            " training_file, validation_file, progress_json, result_json, error_json, created_at)"
                            " VALUES ($1, $2, 'queued', $3, 0, $4, $5, $6, $7, '{}', 'null', 'null', $8)",
                            &a);
                if (r == 0)
                        r = event_status(s, id, STORE_JOB_QUEUED, 0, NULL, NULL, err);
                if (r < 0)
                        goto fail;
                store_mark_changed(s, id, true);
        }
        if (ret) {
                r = pg_job_get(s, found, &j, err);
                if (r < 0)
                        goto fail;
        }
        r = pg_tx_commit(s, err);
        if (r < 0) {
                store_job_free(j);
                return r;
        }
        if (ret)
                *ret = j;
        return existed;
fail:
        pg_tx_rollback(s);
        return r;
}

/* '{queued,running}' for a mask. */
static void states_array(unsigned states, char *buf, size_t size) {
        size_t n = 0;
        buf[n++] = '{';
        for (int i = 0; i < STORE_JOB_STATE_COUNT; i++)
                if (states & STORE_JOB_STATE_BIT(i))
                        n += (size_t)snprintf(buf + n, size - n, "%s%s", n > 1 ? "," : "",
                                              store_job_state_name((enum store_job_state)i));
        snprintf(buf + n, size - n, "}");
}

int pg_job_list(struct store *s, const struct store_job_filter *filter, const struct store_page *page,
                struct store_job_list *ret, struct ft_error *err) {
        struct store_job_list l = {0};
        char states[128];
        unsigned limit, mask = filter ? filter->states : 0;
        int64_t after = INT64_MAX;
        PGresult *res;
        struct pg_args a = {0};
        int r = store_page_limit(page, &limit, err);
        if (r < 0)
                return r;
        if (mask & ~((1u << STORE_JOB_STATE_COUNT) - 1))
                return ft_error_set(err, -EINVAL, "state", "unknown job state in the filter");
        if (page && page->after && *page->after) {
                pg_arg_str(&a, page->after);
                r = pg_query(s, &res, err, "read cursor", "SELECT seq FROM jobs WHERE id = $1", &a);
                if (r < 0)
                        return r;
                if (PQntuples(res) == 0) {
                        PQclear(res);
                        return ft_error_set(err, -ENOENT, "after", "'after' names %s '%.64s', which does not exist",
                                            "job", page->after);
                }
                after = pg_int(res, 0, 0);
                PQclear(res);
        }
        a = (struct pg_args){0};
        pg_arg_int(&a, after);
        pg_arg_int(&a, (int64_t)limit + 1);
        if (mask) {
                states_array(mask, states, sizeof(states));
                pg_arg_str(&a, states);
        }
        r = pg_query(s, &res, err, "list jobs",
                     mask ? "SELECT " JOB_COLS " FROM jobs WHERE seq < $1 AND state = ANY ($3::text[])"
                            " ORDER BY seq DESC LIMIT $2"
                          : "SELECT " JOB_COLS " FROM jobs WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
                     &a);
        if (r < 0)
                return r;
        int rows = PQntuples(res);
        l.items = calloc(limit, sizeof(*l.items));
        if (!l.items)
                r = ft_error_set(err, -ENOMEM, NULL, "out of memory");
        l.has_more = rows > (int)limit;
        for (int i = 0; r == 0 && i < rows && i < (int)limit; i++) {
                r = job_from_row(res, i, &l.items[i], err);
                if (r == 0)
                        l.n++;
        }
        PQclear(res);
        if (r < 0) {
                store_job_list_deinit(&l);
                return r;
        }
        *ret = l;
        return 0;
}

int pg_job_count(struct store *s, unsigned states, int64_t *ret, struct ft_error *err) {
        char arr[128];
        PGresult *res;
        struct pg_args a = {0};
        if (states & ~((1u << STORE_JOB_STATE_COUNT) - 1))
                return ft_error_set(err, -EINVAL, "state", "unknown job state in the filter");
        if (states) {
                states_array(states, arr, sizeof(arr));
                pg_arg_str(&a, arr);
        }
        int r = pg_query(
                s, &res, err, "count jobs",
                states ? "SELECT count(*) FROM jobs WHERE state = ANY ($1::text[])" : "SELECT count(*) FROM jobs", &a);
        if (r < 0)
                return r;
        *ret = pg_int(res, 0, 0);
        PQclear(res);
        return 0;
}

/* ---- state changes ------------------------------------------------------------------------ */

static int set_terminal(struct store *s, const char *id, enum store_job_state state, const char *error_json,
                        struct ft_error *err) {
        struct pg_args a = {0};
        pg_arg_str(&a, id);
        pg_arg_str(&a, store_job_state_name(state));
        pg_arg_int(&a, store_now_ms());
        pg_arg_text(&a, error_json);
        return pg_exec(s, err, "finish job",
                       "UPDATE jobs SET state = $2, lease_owner = NULL, lease_expires_at = NULL,"
                       " finished_at = $3, error_json = COALESCE($4, error_json) WHERE id = $1",
                       &a);
}

static int requeue(struct store *s, const char *id, bool refund_attempt, struct ft_error *err) {
        struct pg_args a = {0};
        pg_arg_str(&a, id);
        pg_arg_int(&a, refund_attempt ? 1 : 0);
        int r = pg_exec(s, err, "requeue job",
                        "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,"
                        " max_attempts = max_attempts + $2 WHERE id = $1",
                        &a);
        if (r == 0)
                store_mark_changed(s, id, true);
        return r;
}

/* Inside a transaction. SKIP LOCKED: a lease another daemon is requeueing right now is its business. */
static int requeue_expired_locked(struct store *s, int *ret_count, struct ft_error *err) {
        int total = 0;
        for (int round = 0; round < 8; round++) {
                PGresult *res;
                struct pg_args a = {0};
                pg_arg_int(&a, store_now_ms());
                pg_arg_int(&a, REQUEUE_BATCH);
                int r = pg_query(s, &res, err, "find expired leases",
                                 "SELECT id, state, attempt, max_attempts FROM jobs"
                                 " WHERE state IN ('running', 'cancelling') AND lease_expires_at <= $1"
                                 " LIMIT $2 FOR UPDATE SKIP LOCKED",
                                 &a);
                if (r < 0)
                        return r;
                int n = PQntuples(res);
                for (int i = 0; r == 0 && i < n; i++) {
                        const char *id = PQgetvalue(res, i, 0);
                        enum store_job_state state = state_of(PQgetvalue(res, i, 1));
                        int attempt = (int)pg_int(res, i, 2), max_attempts = (int)pg_int(res, i, 3);
                        if (state == STORE_JOB_CANCELLING) {
                                r = set_terminal(s, id, STORE_JOB_CANCELLED, NULL, err);
                                if (r == 0)
                                        r = event_status(s, id, STORE_JOB_CANCELLED, attempt, "lease_expired", NULL,
                                                         err);
                        } else if (attempt >= max_attempts) {
                                char error[384];
                                snprintf(error, sizeof(error),
                                         "{\"code\":\"lease_expired\",\"message\":\"the worker stopped renewing its"
                                         " lease on attempt %d of %d; giving up\"}",
                                         attempt, max_attempts);
                                r = set_terminal(s, id, STORE_JOB_FAILED, error, err);
                                if (r == 0)
                                        r = event_status(s, id, STORE_JOB_FAILED, attempt, "lease_expired", NULL, err);
                        } else {
                                r = requeue(s, id, false, err);
                                if (r == 0)
                                        r = event_status(s, id, STORE_JOB_QUEUED, attempt, "lease_expired", NULL, err);
                        }
                        if (r == 0)
                                total++;
                }
                PQclear(res);
                if (r < 0)
                        return r;
                if (n < REQUEUE_BATCH)
                        break;
        }
        if (ret_count)
                *ret_count = total;
        return 0;
}

int pg_job_requeue_expired(struct store *s, int *ret_count, struct ft_error *err) {
        int count = 0;
        int r = pg_tx_begin(s, err);
        if (r < 0)
                return r;
        r = requeue_expired_locked(s, &count, err);
        if (r < 0) {
                pg_tx_rollback(s);
                return r;
        }
        r = pg_tx_commit(s, err);
        if (r < 0)
                return r;
        if (ret_count)
                *ret_count = count;
        return 0;
}

int pg_job_claim(struct store *s, const char *worker_id, int64_t lease_ms, struct store_job **ret,
                 struct ft_error *err) {
        char id[STORE_ID_MAX];
        struct store_job *j = NULL;
        PGresult *res;
        int r = pg_tx_begin(s, err);
        if (r < 0)
                return r;
        r = requeue_expired_locked(s, NULL, err);
        if (r < 0)
                goto fail;
        int64_t now = store_now_ms();
        struct pg_args a = {0};
        pg_arg_str(&a, worker_id);
        pg_arg_int(&a, now + lease_ms);
        pg_arg_int(&a, now);
        r = pg_query(s, &res, err, "claim job",
                     "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_owner = $1,"
                     " lease_expires_at = $2, started_at = COALESCE(started_at, $3)"
                     " WHERE seq = (SELECT seq FROM jobs WHERE state = 'queued'"
                     " ORDER BY priority DESC, seq LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id, attempt",
                     &a);
        if (r < 0)
                goto fail;
        bool claimed = PQntuples(res) == 1;
        int attempt = 0;
        if (claimed) {
                pg_copy(res, 0, 0, id, sizeof(id));
                attempt = (int)pg_int(res, 0, 1);
        }
        PQclear(res);
        if (claimed) {
                r = event_status(s, id, STORE_JOB_RUNNING, attempt, NULL, worker_id, err);
                if (r == 0)
                        r = pg_job_get(s, id, &j, err);
                if (r < 0)
                        goto fail;
        }
        r = pg_tx_commit(s, err);
        if (r < 0) {
                store_job_free(j);
                return r;
        }
        if (!claimed)
                return 0;
        if (ret)
                *ret = j;
        else
                store_job_free(j);
        return 1;
fail:
        pg_tx_rollback(s);
        return r;
}

int pg_job_heartbeat(struct store *s, const char *id, int attempt, int64_t lease_ms, bool *ret_cancel,
                     struct ft_error *err) {
        enum store_job_state state;
        int r = pg_tx_begin(s, err);
        if (r < 0)
                return r;
        r = fence(s, id, attempt, &state, err);
        if (r < 0)
                goto fail;
        struct pg_args a = {0};
        pg_arg_str(&a, id);
        pg_arg_int(&a, store_now_ms() + lease_ms);
        r = pg_exec(s, err, "renew lease", "UPDATE jobs SET lease_expires_at = $2 WHERE id = $1", &a);
        if (r < 0)
                goto fail;
        r = pg_tx_commit(s, err);
        if (r < 0)
                return r;
        if (ret_cancel)
                *ret_cancel = state == STORE_JOB_CANCELLING;
        return 0;
fail:
        pg_tx_rollback(s);
        return r;
}

int pg_job_progress_set(struct store *s, const char *id, int attempt, const char *progress_json, struct ft_error *err) {
        int r = pg_tx_begin(s, err);
        if (r < 0)
                return r;
        r = fence(s, id, attempt, NULL, err);
        if (r < 0)
                goto fail;
        struct pg_args a = {0};
        pg_arg_str(&a, id);
        pg_arg_str(&a, progress_json);
        r = pg_exec(s, err, "set progress", "UPDATE jobs SET progress_json = $2 WHERE id = $1", &a);
        if (r < 0)
                goto fail;
        store_mark_changed(s, id, false);
        return pg_tx_commit(s, err);
fail:
        pg_tx_rollback(s);
        return r;
}

int pg_job_finish_with(struct store *s, const char *id, int attempt, const struct store_job_outcome *o,
                       char ret_model_id[STORE_ID_MAX], struct ft_error *err) {
        char model_id[STORE_ID_MAX] = "";
        bool has_metrics = o->metrics_sha256 && *o->metrics_sha256;
        int r = pg_tx_begin(s, err);
        if (r < 0)
                return r;
        r = fence(s, id, attempt, NULL, err);
        if (r == 0 && has_metrics)
                r = ref_exists(s, "SELECT 1 FROM blobs WHERE sha256 = $1 FOR SHARE", "metrics", "blob",
                               o->metrics_sha256, err);
        if (r < 0)
                goto fail;
        if (o->model) {
                struct store_model_new m = *o->model;
                m.source = STORE_MODEL_JOB;
                m.source_job_id = id;
                r = pg_model_insert(s, &m, model_id, err);
                if (r < 0)
                        goto fail;
        }
        struct pg_args a = {0};
        pg_arg_str(&a, id);
        pg_arg_str(&a, store_job_state_name(o->state));
        pg_arg_int(&a, store_now_ms());
        pg_arg_str(&a, o->result_json && *o->result_json ? o->result_json : "null");
        pg_arg_str(&a, o->error_json && *o->error_json ? o->error_json : "null");
        pg_arg_text(&a, model_id);
        pg_arg_text(&a, has_metrics ? o->metrics_sha256 : NULL);
        r = pg_exec(s, err, "finish job",
                    "UPDATE jobs SET state = $2, lease_owner = NULL, lease_expires_at = NULL,"
                    " finished_at = $3, result_json = $4, error_json = $5, result_model_id = $6,"
                    " metrics_sha256 = $7 WHERE id = $1",
                    &a);
        if (r == 0)
                r = event_status(s, id, o->state, attempt, NULL, NULL, err);
        if (r < 0)
                goto fail;
        r = pg_tx_commit(s, err);
        if (r < 0)
                return r;
        if (ret_model_id)
                memcpy(ret_model_id, model_id, STORE_ID_MAX);
        return 0;
fail:
        pg_tx_rollback(s);
        return r;
}

int pg_job_release(struct store *s, const char *id, int attempt, struct ft_error *err) {
        enum store_job_state state;
        int r = pg_tx_begin(s, err);
        if (r < 0)
                return r;
        r = fence(s, id, attempt, &state, err);
        if (r < 0)
                goto fail;
        if (state == STORE_JOB_CANCELLING) {
                r = set_terminal(s, id, STORE_JOB_CANCELLED, NULL, err);
                if (r == 0)
                        r = event_status(s, id, STORE_JOB_CANCELLED, attempt, "released", NULL, err);
        } else {
                r = requeue(s, id, true, err);
                if (r == 0)
                        r = event_status(s, id, STORE_JOB_QUEUED, attempt, "released", NULL, err);
        }
        if (r < 0)
                goto fail;
        return pg_tx_commit(s, err);
fail:
        pg_tx_rollback(s);
        return r;
}

int pg_job_cancel(struct store *s, const char *id, struct store_job **ret, struct ft_error *err) {
        enum store_job_state state;
        struct store_job *j = NULL;
        int attempt;
        id = id ? id : "";
        int r = pg_tx_begin(s, err);
        if (r < 0)
                return r;
        r = job_lock(s, id, true, &state, &attempt, err);
        if (r < 0)
                goto fail;
        if (store_job_state_is_terminal(state)) {
                r = ft_error_set(err, -EALREADY, "id", "job '%s' already %s", id, store_job_state_name(state));
                goto fail;
        }
        if (state == STORE_JOB_QUEUED) {
                r = set_terminal(s, id, STORE_JOB_CANCELLED, NULL, err);
                if (r == 0)
                        r = event_status(s, id, STORE_JOB_CANCELLED, attempt, "cancel_requested", NULL, err);
        } else if (state == STORE_JOB_RUNNING) {
                struct pg_args a = {0};
                pg_arg_str(&a, id);
                r = pg_exec(s, err, "cancel job", "UPDATE jobs SET state = 'cancelling' WHERE id = $1", &a);
                if (r == 0)
                        r = event_status(s, id, STORE_JOB_CANCELLING, attempt, "cancel_requested", NULL, err);
        }
        if (r == 0 && ret)
                r = pg_job_get(s, id, &j, err);
        if (r < 0)
                goto fail;
        r = pg_tx_commit(s, err);
        if (r < 0) {
                store_job_free(j);
                return r;
        }
        if (ret)
                *ret = j;
        return 0;
fail:
        pg_tx_rollback(s);
        return r;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
        (void)sb;
        (void)ftw;
        if (flag == FTW_DP)
                rmdir(path);
        else
                unlink(path);
        return 0;
}

int pg_job_delete(struct store *s, const char *id, struct ft_error *err) {
        static const char *const deletes[] = {
                "DELETE FROM events WHERE job_id = $1",
                "DELETE FROM checkpoints WHERE job_id = $1",
                "DELETE FROM idempotency_keys WHERE job_id = $1",
                "DELETE FROM jobs WHERE id = $1",
        };
        enum store_job_state state;
        char dir[PATH_MAX];
        id = id ? id : "";
        int r = pg_tx_begin(s, err);
        if (r < 0)
                return r;
        r = job_lock(s, id, true, &state, NULL, err);
        if (r < 0)
                goto fail;
        if (!store_job_state_is_terminal(state)) {
                r = ft_error_set(err, -EBUSY, "id", "job '%s' is %s: only a finished job can be deleted", id,
                                 store_job_state_name(state));
                goto fail;
        }
        struct pg_args a = {0};
        pg_arg_str(&a, id);
        for (size_t i = 0; r == 0 && i < ARRAY_SIZE(deletes); i++)
                r = pg_exec(s, err, "delete job", deletes[i], &a);
        if (r < 0)
                goto fail;
        store_mark_changed(s, id, false);
        r = pg_tx_commit(s, err);
        if (r < 0)
                return r;
        if (ft_path_join(dir, sizeof(dir), s->state_dir, "jobs", id, NULL) >= 0)
                nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        return 0;
fail:
        pg_tx_rollback(s);
        return r;
}

int pg_job_dirs_sweep(struct store *s, int *ret_removed, struct ft_error *err) {
        char dir[PATH_MAX], path[PATH_MAX];
        int removed = 0, r = 0;
        if (ft_path_join(dir, sizeof(dir), s->state_dir, "jobs", NULL) < 0)
                return ft_error_set(err, -ENAMETOOLONG, NULL, "state directory path is too long");
        DIR *d = opendir(dir);
        if (!d) {
                if (ret_removed)
                        *ret_removed = 0;
                return errno == ENOENT ? 0
                                       : ft_error_set(err, -errno, NULL, "cannot read '%s': %s", dir, strerror(errno));
        }
        struct dirent *e;
        while (r == 0 && (e = readdir(d))) {
                if (e->d_name[0] == '.' || strlen(e->d_name) >= STORE_ID_MAX)
                        continue;
                PGresult *res;
                struct pg_args a = {0};
                pg_arg_str(&a, e->d_name);
                r = pg_query(s, &res, err, "look up a job", "SELECT 1 FROM jobs WHERE id = $1", &a);
                if (r < 0)
                        break;
                int found = PQntuples(res);
                PQclear(res);
                if (found)
                        continue;
                if (ft_path_join(path, sizeof(path), dir, e->d_name, NULL) >= 0) {
                        nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
                        removed++;
                }
        }
        closedir(d);
        if (ret_removed)
                *ret_removed = removed;
        return r;
}

/* ---- events ---------------------------------------------------------------------------------- */

int pg_event_append(struct store *s, const char *job_id, int attempt, const char *type, const char *data_json,
                    int64_t *ret_seq, struct ft_error *err) {
        enum store_job_state state;
        int64_t seq = 0;
        job_id = job_id ? job_id : "";
        int r = pg_tx_begin(s, err);
        if (r < 0)
                return r;
        if (attempt > 0) {
                r = fence(s, job_id, attempt, NULL, err);
        } else {
                r = job_lock(s, job_id, true, &state, NULL, err);
                if (r == 0 && store_job_state_is_terminal(state))
                        r = ft_error_set(err, -EALREADY, "id", "job '%s' already %s", job_id,
                                         store_job_state_name(state));
        }
        if (r == 0)
                r = event_insert(s, job_id, type, data_json, &seq, err);
        if (r < 0)
                goto fail;
        r = pg_tx_commit(s, err);
        if (r < 0)
                return r;
        if (ret_seq)
                *ret_seq = seq;
        return 0;
fail:
        pg_tx_rollback(s);
        return r;
}

int pg_job_epoch_append(struct store *s, const char *job_id, int attempt, int64_t epoch, const char *data_json,
                        int64_t *ret_seq, struct ft_error *err) {
        int64_t seq = 0;
        job_id = job_id ? job_id : "";
        int r = pg_tx_begin(s, err);
        if (r < 0)
                return r;
        r = fence(s, job_id, attempt, NULL, err);
        if (r == 0)
                r = event_insert(s, job_id, "epoch", data_json, &seq, err);
        if (r < 0)
                goto fail;
        struct pg_args a = {0};
        pg_arg_str(&a, job_id);
        pg_arg_int(&a, epoch);
        r = pg_exec(s, err, "record epoch", "UPDATE jobs SET last_epoch = GREATEST(last_epoch, $2) WHERE id = $1", &a);
        if (r < 0)
                goto fail;
        r = pg_tx_commit(s, err);
        if (r < 0)
                return r;
        if (ret_seq)
                *ret_seq = seq;
        return 0;
fail:
        pg_tx_rollback(s);
        return r;
}

int pg_event_list(struct store *s, const char *job_id, int64_t after_seq, unsigned limit, struct store_event_list *ret,
                  struct ft_error *err) {
        struct store_event_list l = {0};
        enum store_job_state state;
        PGresult *res;
        job_id = job_id ? job_id : "";
        int r = job_lock(s, job_id, false, &state, NULL, err);
        if (r < 0)
                return r;
        struct pg_args a = {0};
        pg_arg_str(&a, job_id);
        pg_arg_int(&a, after_seq);
        pg_arg_int(&a, (int64_t)limit + 1);
        r = pg_query(s, &res, err, "list events",
                     "SELECT seq, type, data_json, created_at FROM events WHERE job_id = $1 AND seq > $2"
                     " ORDER BY seq LIMIT $3",
                     &a);
        if (r < 0)
                return r;
        int rows = PQntuples(res);
        l.items = calloc(limit, sizeof(*l.items));
        if (!l.items)
                r = ft_error_set(err, -ENOMEM, NULL, "out of memory");
        l.has_more = rows > (int)limit;
        for (int i = 0; r == 0 && i < rows && i < (int)limit; i++) {
                struct store_event *e = &l.items[l.n];
                snprintf(e->job_id, sizeof(e->job_id), "%s", job_id);
                e->seq = pg_int(res, i, 0);
                pg_copy(res, i, 1, e->type, sizeof(e->type));
                e->data_json = pg_strdup(res, i, 2);
                e->created_at = pg_int(res, i, 3);
                if (!e->data_json)
                        r = ft_error_set(err, -ENOMEM, NULL, "out of memory");
                else
                        l.n++;
        }
        PQclear(res);
        if (r < 0) {
                store_event_list_deinit(&l);
                return r;
        }
        *ret = l;
        return 0;
}

int pg_event_best(struct store *s, const char *job_id, const char *field, bool maximize, int64_t epoch,
                  int64_t after_seq, struct store_event_best *ret, struct ft_error *err) {
        PGresult *res;
        struct pg_args a = {0};
        pg_arg_str(&a, job_id);
        pg_arg_str(&a, field);
        pg_arg_int(&a, maximize ? 1 : -1);
        pg_arg_int(&a, epoch > 0 ? epoch : 0);
        pg_arg_int(&a, after_seq > 0 ? after_seq : 0);
        int r = pg_query(s, &res, err, "best epoch",
                         "SELECT (SELECT max(seq) FROM events WHERE job_id = $1), b.v, b.e FROM (SELECT 1) AS one"
                         " LEFT JOIN (SELECT (j #>> '{}')::float8 AS v, ej #>> '{}' AS e FROM"
                         "  (SELECT seq, data_json::jsonb -> $2 AS j, data_json::jsonb -> 'epoch' AS ej FROM events"
                         "   WHERE job_id = $1 AND seq > $5 AND type = 'epoch') AS x"
                         "  WHERE jsonb_typeof(j) = 'number' AND ($4::bigint = 0 OR"
                         "   (jsonb_typeof(ej) = 'number' AND (ej #>> '{}')::numeric = $4::bigint))"
                         "  ORDER BY (j #>> '{}')::float8 * $3::int DESC, seq LIMIT 1) AS b ON true",
                         &a);
        if (r < 0)
                return r;
        *ret = (struct store_event_best){
                .found = !PQgetisnull(res, 0, 1),
                .value = PQgetisnull(res, 0, 1) ? 0 : strtod(PQgetvalue(res, 0, 1), NULL),
                .epoch = PQgetisnull(res, 0, 2) ? 0 : (int64_t)strtod(PQgetvalue(res, 0, 2), NULL),
                .last_seq = pg_int(res, 0, 0),
        };
        PQclear(res);
        return 0;
}

/* ---- checkpoints ------------------------------------------------------------------------------ */

static int checkpoint_from_row(PGresult *res, int i, struct store_checkpoint **ret, struct ft_error *err) {
        struct store_checkpoint *c = calloc(1, sizeof(*c));
        if (!c)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        c->id = pg_int(res, i, 0);
        pg_copy(res, i, 1, c->job_id, sizeof(c->job_id));
        c->attempt = (int)pg_int(res, i, 2);
        c->epoch = (int)pg_int(res, i, 3);
        c->step = pg_int(res, i, 4);
        c->dir = pg_strdup(res, i, 5);
        pg_copy(res, i, 6, c->blob_sha256, sizeof(c->blob_sha256));
        c->meta_json = pg_strdup(res, i, 7);
        c->created_at = pg_int(res, i, 8);
        if (!c->dir || !c->meta_json) {
                store_checkpoint_free(c);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        *ret = c;
        return 0;
}

int pg_checkpoint_add(struct store *s, const char *job_id, int attempt, const struct store_checkpoint_new *in,
                      int64_t *ret_id, struct ft_error *err) {
        bool has_dir = in->dir && *in->dir, has_blob = in->blob_sha256 && *in->blob_sha256;
        char data[128];
        int64_t id = 0;
        PGresult *res;
        int r = pg_tx_begin(s, err);
        if (r < 0)
                return r;
        r = fence(s, job_id, attempt, NULL, err);
        if (r == 0 && has_blob)
                r = ref_exists(s, "SELECT 1 FROM blobs WHERE sha256 = $1 FOR SHARE", "blob_sha256", "blob",
                               in->blob_sha256, err);
        if (r < 0)
                goto fail;
        struct pg_args a = {0};
        pg_arg_str(&a, job_id);
        pg_arg_int(&a, attempt);
        pg_arg_int(&a, in->epoch);
        pg_arg_int(&a, in->step);
        pg_arg_str(&a, has_dir ? in->dir : "");
        pg_arg_text(&a, in->blob_sha256);
        pg_arg_str(&a, in->meta_json && *in->meta_json ? in->meta_json : "{}");
        pg_arg_int(&a, store_now_ms());
        r = pg_query(s, &res, err, "record checkpoint",
                     "INSERT INTO checkpoints (job_id, attempt, epoch, step, dir, blob_sha256, meta_json, created_at)"
                     " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                     &a);
        if (r < 0)
                goto fail;
        id = pg_int(res, 0, 0);
        PQclear(res);
        snprintf(data, sizeof(data), "{\"checkpoint\":%lld,\"epoch\":%d,\"step\":%lld}", (long long)id, in->epoch,
                 (long long)in->step);
        r = event_insert(s, job_id, "checkpoint", data, NULL, err);
        if (r == 0 && in->keep > 0) {
                a = (struct pg_args){0};
                pg_arg_str(&a, job_id);
                pg_arg_int(&a, in->keep);
                r = pg_exec(s, err, "prune checkpoints",
                            "DELETE FROM checkpoints WHERE job_id = $1 AND id NOT IN"
                            " (SELECT id FROM checkpoints WHERE job_id = $1 ORDER BY id DESC LIMIT $2)",
                            &a);
        }
        if (r < 0)
                goto fail;
        r = pg_tx_commit(s, err);
        if (r < 0)
                return r;
        if (ret_id)
                *ret_id = id;
        return 0;
fail:
        pg_tx_rollback(s);
        return r;
}

int pg_checkpoint_latest(struct store *s, const char *job_id, struct store_checkpoint **ret, struct ft_error *err) {
        PGresult *res;
        struct pg_args a = {0};
        pg_arg_str(&a, job_id);
        int r = pg_query(s, &res, err, "read checkpoint",
                         "SELECT " CHECKPOINT_COLS " FROM checkpoints WHERE job_id = $1 ORDER BY id DESC LIMIT 1", &a);
        if (r < 0)
                return r;
        if (PQntuples(res) == 1) {
                r = checkpoint_from_row(res, 0, ret, err);
                if (r == 0)
                        r = 1;
        }
        PQclear(res);
        return r;
}

int pg_checkpoint_list(struct store *s, const char *job_id, const struct store_page *page,
                       struct store_checkpoint_list *ret, struct ft_error *err) {
        struct store_checkpoint_list l = {0};
        enum store_job_state state;
        unsigned limit;
        int64_t after = 0;
        PGresult *res;
        int r = store_page_limit(page, &limit, err);
        if (r < 0)
                return r;
        if (page && page->after && *page->after) {
                char *end;
                errno = 0;
                long long v = strtoll(page->after, &end, 10);
                if (errno || *end || v < 0)
                        return ft_error_set(err, -EINVAL, "after", "'after' must be a checkpoint id");
                after = v;
        }
        job_id = job_id ? job_id : "";
        r = job_lock(s, job_id, false, &state, NULL, err);
        if (r < 0)
                return r;
        struct pg_args a = {0};
        pg_arg_str(&a, job_id);
        pg_arg_int(&a, after);
        pg_arg_int(&a, (int64_t)limit + 1);
        r = pg_query(s, &res, err, "list checkpoints",
                     "SELECT " CHECKPOINT_COLS " FROM checkpoints WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                     &a);
        if (r < 0)
                return r;
        int rows = PQntuples(res);
        l.items = calloc(limit, sizeof(*l.items));
        if (!l.items)
                r = ft_error_set(err, -ENOMEM, NULL, "out of memory");
        l.has_more = rows > (int)limit;
        for (int i = 0; r == 0 && i < rows && i < (int)limit; i++) {
                r = checkpoint_from_row(res, i, &l.items[i], err);
                if (r == 0)
                        l.n++;
        }
        PQclear(res);
        if (r < 0) {
                store_checkpoint_list_deinit(&l);
                return r;
        }
        *ret = l;
        return 0;
}

int pg_idempotency_prune(struct store *s, int64_t max_age_ms, int *ret_removed, struct ft_error *err) {
        PGresult *res;
        struct pg_args a = {0};
        pg_arg_int(&a, store_now_ms() - max_age_ms);
        int r = pg_query(s, &res, err, "prune idempotency keys", "DELETE FROM idempotency_keys WHERE created_at < $1",
                         &a);
        if (r < 0)
                return r;
        if (ret_removed)
                *ret_removed = atoi(PQcmdTuples(res));
        PQclear(res);
        return 0;
}

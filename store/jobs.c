/* jobs.c - the job queue: enqueue with idempotency keys, claim with a lease,
 * heartbeat, progress, finish, release, cancel, requeue of expired leases;
 * every worker write fenced by the attempt number. Also job events and
 * checkpoints, which are written under the same fence.
 * Not for: datasets/models (catalog.c), files (blobs.c), wake-ups (changes.c). */
#include "store/internal.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define JOB_COLS                                                                                                       \
        "id, spec_json, state, priority, attempt, max_attempts, lease_owner, lease_expires_at, model_id, "             \
        "training_file, validation_file, result_model_id, progress_json, result_json, error_json, created_at, "        \
        "started_at, finished_at, last_epoch, metrics_sha256, pause_requested, runtime_ms, receipt_json, replay_of,"        \
        " metadata_json, suffix"

#define MAX_ATTEMPTS_DEFAULT 3
#define MAX_ATTEMPTS_LIMIT 100
#define LEASE_MS_MAX (24LL * 3600 * 1000)
#define REQUEUE_BATCH 256
#define CHECKPOINT_DIR_MAX 1024

static const char *const state_names[STORE_JOB_STATE_COUNT] = {
        [STORE_JOB_QUEUED] = "queued",       [STORE_JOB_RUNNING] = "running", [STORE_JOB_CANCELLING] = "cancelling",
        [STORE_JOB_SUCCEEDED] = "succeeded", [STORE_JOB_FAILED] = "failed",   [STORE_JOB_CANCELLED] = "cancelled",
        [STORE_JOB_PAUSED] = "paused",
};

const char *store_job_state_name(enum store_job_state st) {
        return (unsigned)st < STORE_JOB_STATE_COUNT ? state_names[st] : "unknown";
}

int store_job_state_from_name(const char *name, enum store_job_state *ret) {
        for (int i = 0; i < STORE_JOB_STATE_COUNT; i++)
                if (name && strcmp(name, state_names[i]) == 0) {
                        *ret = (enum store_job_state)i;
                        return 0;
                }
        return -EINVAL;
}

bool store_job_state_is_terminal(enum store_job_state st) {
        return st == STORE_JOB_SUCCEEDED || st == STORE_JOB_FAILED || st == STORE_JOB_CANCELLED;
}

static enum store_job_state state_of_text(const unsigned char *t) {
        enum store_job_state st = STORE_JOB_FAILED;
        store_job_state_from_name((const char *)t, &st);
        return st;
}

void store_job_free(struct store_job *j) {
        if (!j)
                return;
        free(j->spec_json);
        free(j->lease_owner);
        free(j->progress_json);
        free(j->result_json);
        free(j->error_json);
        free(j->receipt_json);
        free(j->metadata_json);
        free(j);
}

static int job_from_row(sqlite3_stmt *st, struct store_job **ret, struct ft_error *err) {
        struct store_job *j = calloc(1, sizeof(*j));
        if (!j)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        store_col_copy(st, 0, j->id, sizeof(j->id));
        j->spec_json = store_col_strdup(st, 1);
        j->state = state_of_text(sqlite3_column_text(st, 2));
        j->priority = sqlite3_column_int(st, 3);
        j->attempt = sqlite3_column_int(st, 4);
        j->max_attempts = sqlite3_column_int(st, 5);
        j->lease_owner = store_col_strdup(st, 6);
        j->lease_expires_at = sqlite3_column_int64(st, 7);
        store_col_copy(st, 8, j->model_id, sizeof(j->model_id));
        store_col_copy(st, 9, j->training_file, sizeof(j->training_file));
        store_col_copy(st, 10, j->validation_file, sizeof(j->validation_file));
        store_col_copy(st, 11, j->result_model_id, sizeof(j->result_model_id));
        j->progress_json = store_col_strdup(st, 12);
        j->result_json = store_col_strdup(st, 13);
        j->error_json = store_col_strdup(st, 14);
        j->created_at = sqlite3_column_int64(st, 15);
        j->started_at = sqlite3_column_int64(st, 16);
        j->finished_at = sqlite3_column_int64(st, 17);
        j->last_epoch = sqlite3_column_int64(st, 18);
        store_col_copy(st, 19, j->metrics_sha256, sizeof(j->metrics_sha256));
        j->pause_requested = sqlite3_column_int(st, 20) != 0;
        j->runtime_ms = sqlite3_column_int64(st, 21);
        j->receipt_json = store_col_strdup(st, 22);
        store_col_copy(st, 23, j->replay_of, sizeof(j->replay_of));
        j->metadata_json = store_col_strdup(st, 24);
        store_col_copy(st, 25, j->suffix, sizeof(j->suffix));
        if (!j->spec_json || !j->lease_owner || !j->progress_json || !j->result_json || !j->error_json ||
            !j->receipt_json || !j->metadata_json) {
                store_job_free(j);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        *ret = j;
        return 0;
}

static int job_get_locked(struct store *s, const char *id, struct store_job **ret, struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(s, "SELECT " JOB_COLS " FROM jobs WHERE id = ?1", err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW)
                r = job_from_row(st, ret, err);
        else if (r == SQLITE_DONE)
                r = ft_error_set(err, -ENOENT, "id", "job '%.64s' does not exist", id);
        else
                r = store_db_error(s, err, "read job");
        sqlite3_reset(st);
        return r;
}

int store_job_get(struct store *s, const char *id, struct store_job **ret, struct ft_error *err) {
        STORE_PG(s, pg_job_get(s, id, ret, err));
        return job_get_locked(s, id ? id : "", ret, err);
}

/* The state and attempt of a job, inside a transaction. */
static int job_state_locked(struct store *s, const char *id, enum store_job_state *ret_state, int *ret_attempt,
                            struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(s, "SELECT state, attempt FROM jobs WHERE id = ?1", err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
                *ret_state = state_of_text(sqlite3_column_text(st, 0));
                if (ret_attempt)
                        *ret_attempt = sqlite3_column_int(st, 1);
                r = 0;
        } else if (r == SQLITE_DONE) {
                r = ft_error_set(err, -ENOENT, "id", "job '%.64s' does not exist", id);
        } else {
                r = store_db_error(s, err, "read job");
        }
        sqlite3_reset(st);
        return r;
}

/* The fence: (id, attempt) must still hold a running or cancelling job. */
static int fence_locked(struct store *s, const char *id, int attempt, enum store_job_state *ret_state,
                        struct ft_error *err) {
        enum store_job_state st;
        int cur;
        int r = job_state_locked(s, id, &st, &cur, err);
        if (r < 0)
                return r;
        if (cur != attempt || (st != STORE_JOB_RUNNING && st != STORE_JOB_CANCELLING))
                return ft_error_set(err, -ESTALE, "attempt",
                                    "job '%s' is no longer held by attempt %d (it is %s at attempt %d)", id, attempt,
                                    state_names[st], cur);
        if (ret_state)
                *ret_state = st;
        return 0;
}

static int pause_requested_locked(struct store *s, const char *id, bool *ret, struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(s, "SELECT pause_requested FROM jobs WHERE id = ?1", err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
                *ret = sqlite3_column_int(st, 0) != 0;
                r = 0;
        } else {
                r = store_db_error(s, err, "read job");
        }
        sqlite3_reset(st);
        return r;
}

/* ---- events (inside a transaction) ------------------------------------------------ */

int store_event_insert(struct store *s, const char *job_id, const char *type, const char *data_json, int64_t *ret_seq,
                       struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(s,
                                      "INSERT INTO events (job_id, seq, type, data_json, created_at) VALUES (?1,"
                                      " (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE job_id = ?1),"
                                      " ?2, ?3, ?4) RETURNING seq",
                                      err);
        if (!st)
                return -EIO;
        const char *data = data_json && *data_json ? data_json : "{}";
        int64_t now = store_now_ms(), seq = 0;
        sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, data, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, now);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
                seq = sqlite3_column_int64(st, 0);
                r = sqlite3_step(st);
        }
        sqlite3_reset(st);
        if (r != SQLITE_DONE)
                return store_db_error(s, err, "append event");
        r = store_webhook_outbox_locked(s, job_id, seq, type, STORE_JOB_STATE_COUNT, data, now, err);
        if (r < 0)
                return r;
        if (ret_seq)
                *ret_seq = seq;
        store_mark_changed(s, job_id, false);
        return 0;
}

int store_event_status(struct store *s, const char *job_id, enum store_job_state state, int attempt, const char *reason,
                       const char *worker, struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(
                s,
                "INSERT INTO events (job_id, seq, type, data_json, created_at) VALUES (?1,"
                " (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE job_id = ?1), 'status',"
                " json_patch(json_object('state', ?2, 'attempt', ?3), json_object('reason', ?4, 'worker', ?5)), ?6)"
                " RETURNING seq, data_json",
                err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, state_names[state], -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, attempt);
        store_bind_text(st, 4, reason);
        store_bind_text(st, 5, worker);
        int64_t now = store_now_ms();
        sqlite3_bind_int64(st, 6, now);
        int64_t seq = 0;
        char *data = NULL;
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
                seq = sqlite3_column_int64(st, 0);
                data = store_col_strdup(st, 1);
                r = sqlite3_step(st);
        }
        sqlite3_reset(st);
        if (r != SQLITE_DONE) {
                free(data);
                return store_db_error(s, err, "append status event");
        }
        if (!data)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        r = store_webhook_outbox_locked(s, job_id, seq, "status", state, data, now, err);
        free(data);
        if (r < 0)
                return r;
        store_mark_changed(s, job_id, false);
        return 0;
}

/* ---- enqueue, get, list ------------------------------------------------------------- */

static int ref_exists(struct store *s, const char *sql, const char *param, const char *kind, const char *id,
                      struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(s, sql, err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        sqlite3_reset(st);
        if (r == SQLITE_ROW)
                return 0;
        if (r == SQLITE_DONE)
                return ft_error_set(err, -ENOENT, param, "%s '%.64s' does not exist", kind, id);
        return store_db_error(s, err, "check reference");
}

/* Look up an idempotency key: 1 with the job id when the key is known and the
 * hash matches, 0 when unknown, -EEXIST when the hash differs. */
static int idempotency_lookup(struct store *s, const struct store_job_new *in, char job_id[STORE_ID_MAX],
                              struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(s, "SELECT request_hash, job_id FROM idempotency_keys WHERE key = ?1", err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, in->idempotency_key, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
                const char *hash = (const char *)sqlite3_column_text(st, 0);
                if (hash && strcmp(hash, in->request_hash) == 0) {
                        store_col_copy(st, 1, job_id, STORE_ID_MAX);
                        r = 1;
                } else {
                        r = ft_error_set(err, -EEXIST, "idempotency_key",
                                         "idempotency key '%.64s' was already used with a different request",
                                         in->idempotency_key);
                }
        } else if (r == SQLITE_DONE) {
                r = 0;
        } else {
                r = store_db_error(s, err, "read idempotency key");
        }
        sqlite3_reset(st);
        return r;
}

/* The enqueue itself, inside the caller's transaction: 1 when the idempotency key returned an existing job, 0 when
 * created, negative on failure (the caller rolls back). *ret (when ret) gets the job as the transaction sees it. */
static int enqueue_locked(struct store *s, const struct store_job_new *in, const char *id, struct store_job **ret,
                          struct ft_error *err) {
        char found[STORE_ID_MAX];
        struct store_job *j = NULL;
        int max_attempts = in->max_attempts ? in->max_attempts : MAX_ATTEMPTS_DEFAULT;
        bool keyed = in->idempotency_key && *in->idempotency_key;
        int r, existed = 0;

        snprintf(found, sizeof(found), "%s", id);
        if (keyed) {
                r = idempotency_lookup(s, in, found, err);
                if (r < 0)
                        return r;
                existed = r;
        }
        if (!existed) {
                r = ref_exists(s, "SELECT 1 FROM models WHERE id = ?1", "model", "model", in->model_id, err);
                if (r == 0)
                        r = ref_exists(s, "SELECT 1 FROM datasets WHERE id = ?1", "training_file", "dataset",
                                       in->training_file, err);
                if (r == 0 && in->validation_file && *in->validation_file)
                        r = ref_exists(s, "SELECT 1 FROM datasets WHERE id = ?1", "validation_file", "dataset",
                                       in->validation_file, err);
                if (r == 0 && in->replay_of && *in->replay_of)
                        r = ref_exists(s, "SELECT 1 FROM jobs WHERE id = ?1", "replay_of", "job", in->replay_of, err);
                if (r < 0)
                        return r;
                sqlite3_stmt *st = store_stmt(
                        s,
                        "INSERT INTO jobs (id, spec_json, state, priority, attempt, max_attempts, model_id,"
                        " training_file, validation_file, progress_json, result_json, error_json, created_at,"
                        " replay_of, metadata_json, suffix)"
                        " VALUES (?1, ?2, 'queued', ?3, 0, ?4, ?5, ?6, ?7, '{}', 'null', 'null', ?8, ?9, ?10, ?11)"
                        " RETURNING seq",
                        err);
                if (!st)
                        return -EIO;
                sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, in->spec_json, -1, SQLITE_STATIC);
                sqlite3_bind_int(st, 3, in->priority);
                sqlite3_bind_int(st, 4, max_attempts);
                sqlite3_bind_text(st, 5, in->model_id, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 6, in->training_file, -1, SQLITE_STATIC);
                store_bind_text(st, 7, in->validation_file);
                sqlite3_bind_int64(st, 8, store_now_ms());
                store_bind_text(st, 9, in->replay_of);
                sqlite3_bind_text(st, 10, in->metadata_json && *in->metadata_json ? in->metadata_json : "{}", -1,
                                  SQLITE_STATIC);
                sqlite3_bind_text(st, 11, in->suffix ? in->suffix : "", -1, SQLITE_STATIC);
                int64_t job_seq = 0;
                r = sqlite3_step(st);
                if (r == SQLITE_ROW) {
                        job_seq = sqlite3_column_int64(st, 0);
                        r = sqlite3_step(st);
                }
                sqlite3_reset(st);
                if (r != SQLITE_DONE)
                        return store_db_error(s, err, "insert job");
                r = store_job_metadata_insert_locked(s, job_seq, in->metadata, in->n_metadata, err);
                if (r < 0)
                        return r;
                r = store_event_status(s, id, STORE_JOB_QUEUED, 0, NULL, NULL, err);
                if (r < 0)
                        return r;
                if (keyed) {
                        st = store_stmt(s,
                                        "INSERT INTO idempotency_keys (key, request_hash, job_id, created_at)"
                                        " VALUES (?1, ?2, ?3, ?4)",
                                        err);
                        if (!st)
                                return -EIO;
                        sqlite3_bind_text(st, 1, in->idempotency_key, -1, SQLITE_STATIC);
                        sqlite3_bind_text(st, 2, in->request_hash, -1, SQLITE_STATIC);
                        sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
                        sqlite3_bind_int64(st, 4, store_now_ms());
                        r = store_step_done(s, st, err);
                        if (r < 0)
                                return r;
                }
                store_mark_changed(s, id, true);
        }

        if (ret) {
                r = job_get_locked(s, found, &j, err);
                if (r < 0)
                        return r;
                *ret = j;
        }
        return existed;
}

/* Group commit: concurrent enqueues on connections to one database (one notifier) share a transaction and its
 * fsync. The first caller to find no batch running becomes the leader: it takes every request waiting (at most
 * ENQUEUE_BATCH_MAX), runs each in a savepoint on its own connection (a refused request rolls back alone), commits
 * once with synchronous=FULL, and only then hands every caller its result; meanwhile new callers queue up for the
 * next batch. A caller returns only after the commit holding its job is durable. Waiting is on a condition
 * variable, not in SQLite's busy handler, whose sleeps (up to 100 ms each) made the tail latency. */
#define ENQUEUE_BATCH_MAX 64

struct enqueue_req {
        const struct store_job_new *in;
        char id[STORE_ID_MAX];
        bool want_job, done;
        struct store_job *job;
        int r;
        struct ft_error err;
        struct enqueue_req *next;
};

struct enqueue_group {
        const struct notifier *key; /* one per database: connections to it share their notifier */
        pthread_cond_t cond;
        struct enqueue_req *head, **tail;
        bool leading;
        int users;
        struct enqueue_group *next;
};

static pthread_mutex_t groups_lock = PTHREAD_MUTEX_INITIALIZER;
static struct enqueue_group *groups;

static struct enqueue_group *group_get(const struct notifier *key) {
        for (struct enqueue_group *g = groups; g; g = g->next)
                if (g->key == key)
                        return g;
        struct enqueue_group *g = calloc(1, sizeof(*g));
        if (!g)
                return NULL;
        g->key = key;
        pthread_cond_init(&g->cond, NULL);
        g->tail = &g->head;
        g->next = groups;
        groups = g;
        return g;
}

static void group_put(struct enqueue_group *g) {
        if (--g->users > 0)
                return;
        for (struct enqueue_group **p = &groups; *p; p = &(*p)->next)
                if (*p == g) {
                        *p = g->next;
                        break;
                }
        pthread_cond_destroy(&g->cond);
        free(g);
}

static void batch_fail(struct enqueue_req *batch, int r, const struct ft_error *why) {
        for (struct enqueue_req *q = batch; q; q = q->next) {
                store_job_free(q->job);
                q->job = NULL;
                q->r = r;
                q->err = *why;
        }
}

/* Run a batch on s in one transaction. Every request ends with its result in q->r / q->err / q->job. */
static void batch_run(struct store *s, struct enqueue_req *batch) {
        struct ft_error err = {0};
        int r = store_tx_begin(s, &err);
        if (r < 0) {
                batch_fail(batch, r, &err);
                return;
        }
        for (struct enqueue_req *q = batch; q; q = q->next) {
                sqlite3_stmt *sp = store_stmt(s, "SAVEPOINT enqueue", &err);
                r = sp ? store_step_done(s, sp, &err) : -EIO;
                if (r < 0)
                        goto abort;
                q->r = enqueue_locked(s, q->in, q->id, q->want_job ? &q->job : NULL, &q->err);
                if (q->r < 0) {
                        if (sqlite3_get_autocommit(s->db)) { /* the error rolled back the whole transaction */
                                r = q->r;
                                err = q->err;
                                goto abort;
                        }
                        sp = store_stmt(s, "ROLLBACK TO enqueue", &err);
                        r = sp ? store_step_done(s, sp, &err) : -EIO;
                        if (r < 0)
                                goto abort;
                }
                sp = store_stmt(s, "RELEASE enqueue", &err);
                r = sp ? store_step_done(s, sp, &err) : -EIO;
                if (r < 0)
                        goto abort;
        }
        r = store_tx_commit(s, &err);
        if (r < 0)
                batch_fail(batch, r, &err);
        return;
abort:
        store_tx_rollback(s);
        batch_fail(batch, r, &err);
}

int store_job_enqueue(struct store *s, const struct store_job_new *in, struct store_job **ret, struct ft_error *err) {
        struct enqueue_req req = {.in = in, .want_job = ret != NULL};
        int max_attempts = in->max_attempts ? in->max_attempts : MAX_ATTEMPTS_DEFAULT;
        bool keyed = in->idempotency_key && *in->idempotency_key;
        int r;

        if ((r = store_check_json(s, "spec", in->spec_json, true, err)) < 0 ||
            (r = store_check_string("model", in->model_id, STORE_ID_MAX - 1, true, err)) < 0 ||
            (r = store_check_string("training_file", in->training_file, STORE_ID_MAX - 1, true, err)) < 0 ||
            (r = store_check_string("validation_file", in->validation_file, STORE_ID_MAX - 1, false, err)) < 0 ||
            (r = store_check_string("idempotency_key", in->idempotency_key, STORE_KEY_MAX, false, err)) < 0 ||
            (keyed && (r = store_check_string("request_hash", in->request_hash, 128, true, err)) < 0) ||
            (r = store_check_string("replay_of", in->replay_of, STORE_ID_MAX - 1, false, err)) < 0 ||
            (r = store_job_metadata_check(in->metadata, in->n_metadata, "metadata", err)) < 0 ||
            (r = store_check_json(s, "metadata", in->metadata_json, false, err)) < 0 ||
            (r = store_check_string("suffix", in->suffix, STORE_SUFFIX_MAX - 1, false, err)) < 0)
                return r;
        if (max_attempts < 1 || max_attempts > MAX_ATTEMPTS_LIMIT)
                return ft_error_set(err, -EINVAL, "max_attempts", "'max_attempts' must be between 1 and %d",
                                    MAX_ATTEMPTS_LIMIT);
#ifdef HAVE_LIBPQ
        /* labels, suffixes and replays are SQLite-only so far (migrations 6 and 7 have no PostgreSQL twin yet) */
        if (s->pg && (in->n_metadata || (in->suffix && *in->suffix) || (in->replay_of && *in->replay_of)))
                return pg_unsupported(in->n_metadata ? "metadata" : in->replay_of && *in->replay_of ? "replay" : "suffix",
                                      err);
#endif
        STORE_PG(s, pg_job_enqueue(s, in, ret, err));
        r = store_id_new("job_", req.id, err);
        if (r < 0)
                return r;

        pthread_mutex_lock(&groups_lock);
        struct enqueue_group *g = group_get(s->notifier);
        if (!g) {
                pthread_mutex_unlock(&groups_lock);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        g->users++;
        *g->tail = &req;
        g->tail = &req.next;
        while (!req.done) {
                if (g->leading) {
                        pthread_cond_wait(&g->cond, &groups_lock);
                        continue;
                }
                /* lead: take up to ENQUEUE_BATCH_MAX waiting requests */
                struct enqueue_req *batch = g->head, *last = batch;
                for (int n = 1; n < ENQUEUE_BATCH_MAX && last->next; n++)
                        last = last->next;
                g->head = last->next;
                if (!g->head)
                        g->tail = &g->head;
                last->next = NULL;
                g->leading = true;
                pthread_mutex_unlock(&groups_lock);
                batch_run(s, batch);
                pthread_mutex_lock(&groups_lock);
                for (struct enqueue_req *q = batch, *next; q; q = next) {
                        next = q->next;
                        q->done = true;
                }
                g->leading = false;
                pthread_cond_broadcast(&g->cond);
        }
        group_put(g);
        pthread_mutex_unlock(&groups_lock);

        if (req.r < 0) {
                if (err)
                        *err = req.err;
                return req.r;
        }
        if (ret)
                *ret = req.job;
        return req.r;
}

/* "state IN ('a', 'b')" for a mask, or "" for all. */
static int states_sql(unsigned states, char *buf, size_t size, struct ft_error *err) {
        size_t n = 0;
        buf[0] = '\0';
        if (states == 0)
                return 0;
        if (states >> STORE_JOB_STATE_COUNT)
                return ft_error_set(err, -EINVAL, "state", "'state' filter names an unknown state");
        n += (size_t)snprintf(buf + n, size - n, "state IN (");
        bool first = true;
        for (int i = 0; i < STORE_JOB_STATE_COUNT; i++)
                if (states & STORE_JOB_STATE_BIT(i)) {
                        n += (size_t)snprintf(buf + n, size - n, "%s'%s'", first ? "" : ", ", state_names[i]);
                        first = false;
                }
        snprintf(buf + n, size - n, ")");
        return 0;
}

static int job_add(struct store *s, sqlite3_stmt *st, void *list, struct ft_error *err) {
        struct store_job_list *l = list;
        (void)s;
        int r = job_from_row(st, &l->items[l->n], err);
        if (r == 0)
                l->n++;
        return r;
}

int store_job_list_sql(unsigned states, char *buf, size_t size, struct ft_error *err) {
        size_t n = 0;
        int k = 0;
        if (states >> STORE_JOB_STATE_COUNT)
                return ft_error_set(err, -EINVAL, "state", "'state' filter names an unknown state");
        for (int i = 0; i < STORE_JOB_STATE_COUNT; i++)
                k += !!(states & STORE_JOB_STATE_BIT(i));
        if (k == 0 || k == STORE_JOB_STATE_COUNT)
                n = (size_t)snprintf(buf, size,
                                     "SELECT " JOB_COLS " FROM jobs WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2");
        else if (k == 1) {
                for (int i = 0; i < STORE_JOB_STATE_COUNT; i++)
                        if (states & STORE_JOB_STATE_BIT(i))
                                n = (size_t)snprintf(buf, size,
                                                     "SELECT " JOB_COLS " FROM jobs WHERE state = '%s' AND seq < ?1"
                                                     " ORDER BY seq DESC LIMIT ?2",
                                                     state_names[i]);
        } else {
                /* One page per state, each read backwards along jobs_state_seq, merged by the primary key: the
                 * cost is bounded by states x limit rows, however many jobs match (a plain "state IN (...)
                 * ORDER BY seq" would sort every matching row). */
                n = (size_t)snprintf(buf, size, "SELECT " JOB_COLS " FROM jobs WHERE seq IN (");
                bool first = true;
                for (int i = 0; i < STORE_JOB_STATE_COUNT && n < size; i++)
                        if (states & STORE_JOB_STATE_BIT(i)) {
                                n += (size_t)snprintf(buf + n, size - n,
                                                      "%sSELECT seq FROM (SELECT seq FROM jobs WHERE state = '%s'"
                                                      " AND seq < ?1 ORDER BY seq DESC LIMIT ?2)",
                                                      first ? "" : " UNION ALL ", state_names[i]);
                                first = false;
                        }
                if (n < size)
                        n += (size_t)snprintf(buf + n, size - n, ") ORDER BY seq DESC LIMIT ?2");
        }
        if (n >= size)
                return ft_error_set(err, -ENAMETOOLONG, NULL, "job list query too long");
        return 0;
}

int store_job_list(struct store *s, const struct store_job_filter *filter, const struct store_page *page,
                   struct store_job_list *ret, struct ft_error *err) {
#ifdef HAVE_LIBPQ
        if (s->pg && filter && filter->n_metadata)
                return pg_unsupported("metadata filters", err);
#endif
        STORE_PG(s, pg_job_list(s, filter, page, ret, err));
        struct store_job_list l = {0};
        char sql[STORE_JOB_LIST_SQL_MAX];
        sqlite3_stmt *st = NULL;
        unsigned limit;
        int64_t after = INT64_MAX;
        int r = store_page_limit(page, &limit, err);
        if (r < 0)
                return r;
        if (filter && filter->n_metadata)
                r = store_job_list_metadata_sql(filter->states, filter->n_metadata, JOB_COLS, sql, sizeof(sql), err);
        else
                r = store_job_list_sql(filter ? filter->states : 0, sql, sizeof(sql), err);
        if (r < 0)
                return r;
        if (page && page->after && *page->after) {
                r = store_cursor_seq(s, "SELECT seq FROM jobs WHERE id = ?1", "job", page->after, &after, err);
                if (r < 0)
                        return r;
        }
        if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
                return store_db_error(s, err, "prepare job list");
        sqlite3_bind_int64(st, 1, after);
        sqlite3_bind_int(st, 2, (int)limit + 1);
        for (size_t i = 0; filter && i < filter->n_metadata; i++) {
                sqlite3_bind_text(st, 3 + 2 * (int)i, filter->metadata[i].key, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 4 + 2 * (int)i, filter->metadata[i].value, -1, SQLITE_STATIC);
        }
        l.items = calloc(limit, sizeof(*l.items));
        r = l.items ? store_page_rows(s, st, limit, job_add, &l, &l.has_more, "list jobs", err)
                    : ft_error_set(err, -ENOMEM, NULL, "out of memory");
        sqlite3_finalize(st);
        if (r < 0) {
                store_job_list_deinit(&l);
                return r;
        }
        *ret = l;
        return 0;
}

void store_job_list_deinit(struct store_job_list *l) {
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++)
                store_job_free(l->items[i]);
        free(l->items);
        memset(l, 0, sizeof(*l));
}

int store_job_count_sql(unsigned states, char *buf, size_t size, struct ft_error *err) {
        char where[160];
        int r = states_sql(states, where, sizeof(where), err);
        if (r < 0)
                return r;
        /* job_counts (migration 5) is kept by triggers on jobs: never the queue itself */
        if ((size_t)snprintf(buf, size, "SELECT COALESCE(SUM(n), 0) FROM job_counts %s %s", where[0] ? "WHERE" : "",
                             where) >= size)
                return ft_error_set(err, -ENAMETOOLONG, NULL, "job count query too long");
        return 0;
}

int store_job_count(struct store *s, unsigned states, int64_t *ret, struct ft_error *err) {
        STORE_PG(s, pg_job_count(s, states, ret, err));
        char sql[256];
        sqlite3_stmt *st = NULL;
        int r = store_job_count_sql(states, sql, sizeof(sql), err);
        if (r < 0)
                return r;
        if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
                return store_db_error(s, err, "prepare job count");
        r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
                *ret = sqlite3_column_int64(st, 0);
                r = 0;
        } else {
                r = store_db_error(s, err, "count jobs");
        }
        sqlite3_finalize(st);
        return r;
}

/* ---- state changes -------------------------------------------------------------------- */

/* Move a job to a terminal state (clearing its lease). */
static int set_terminal_locked(struct store *s, const char *id, enum store_job_state state, const char *error_json,
                               struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(
                s,
                "UPDATE jobs SET state = ?2, lease_owner = NULL, lease_expires_at = NULL, pause_requested = 0,"
                " finished_at = ?3, error_json = COALESCE(?4, error_json) WHERE id = ?1",
                err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, state_names[state], -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, store_now_ms());
        store_bind_text(st, 4, error_json);
        return store_step_done(s, st, err);
}

static int requeue_locked(struct store *s, const char *id, bool refund_attempt, struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(s,
                                      "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,"
                                      " max_attempts = max_attempts + ?2 WHERE id = ?1",
                                      err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, refund_attempt ? 1 : 0);
        int r = store_step_done(s, st, err);
        if (r == 0)
                store_mark_changed(s, id, true);
        return r;
}

struct expired {
        char id[STORE_ID_MAX];
        enum store_job_state state;
        int attempt, max_attempts;
};

static int requeue_expired_locked(struct store *s, int *ret_count, struct ft_error *err) {
        struct expired batch[32];
        int total = 0, r = 0;

        for (int round = 0; round < REQUEUE_BATCH / (int)ARRAY_SIZE(batch); round++) {
                size_t n = 0;
                sqlite3_stmt *st = store_stmt(s,
                                              "SELECT id, state, attempt, max_attempts FROM jobs"
                                              " WHERE state IN ('running', 'cancelling') AND lease_expires_at <= ?1"
                                              " LIMIT ?2",
                                              err);
                if (!st)
                        return -EIO;
                sqlite3_bind_int64(st, 1, store_now_ms());
                sqlite3_bind_int(st, 2, (int)ARRAY_SIZE(batch));
                while ((r = sqlite3_step(st)) == SQLITE_ROW && n < ARRAY_SIZE(batch)) {
                        store_col_copy(st, 0, batch[n].id, sizeof(batch[n].id));
                        batch[n].state = state_of_text(sqlite3_column_text(st, 1));
                        batch[n].attempt = sqlite3_column_int(st, 2);
                        batch[n].max_attempts = sqlite3_column_int(st, 3);
                        n++;
                }
                sqlite3_reset(st);
                if (r != SQLITE_DONE && r != SQLITE_ROW)
                        return store_db_error(s, err, "find expired leases");
                for (size_t i = 0; i < n; i++) {
                        struct expired *e = &batch[i];
                        if (e->state == STORE_JOB_CANCELLING) {
                                r = set_terminal_locked(s, e->id, STORE_JOB_CANCELLED, NULL, err);
                                if (r == 0)
                                        r = store_event_status(s, e->id, STORE_JOB_CANCELLED, e->attempt,
                                                               "lease_expired", NULL, err);
                        } else if (e->attempt >= e->max_attempts) {
                                char error[384];
                                snprintf(error, sizeof(error),
                                         "{\"code\":\"lease_expired\",\"message\":\"the worker stopped renewing its"
                                         " lease on attempt %d of %d; giving up\"}",
                                         e->attempt, e->max_attempts);
                                r = set_terminal_locked(s, e->id, STORE_JOB_FAILED, error, err);
                                if (r == 0)
                                        r = store_event_status(s, e->id, STORE_JOB_FAILED, e->attempt, "lease_expired",
                                                               NULL, err);
                        } else {
                                r = requeue_locked(s, e->id, false, err);
                                if (r == 0)
                                        r = store_event_status(s, e->id, STORE_JOB_QUEUED, e->attempt, "lease_expired",
                                                               NULL, err);
                        }
                        if (r < 0)
                                return r;
                        total++;
                }
                if (n < ARRAY_SIZE(batch))
                        break;
        }
        if (ret_count)
                *ret_count = total;
        return 0;
}

int store_job_requeue_expired(struct store *s, int *ret_count, struct ft_error *err) {
        STORE_PG(s, pg_job_requeue_expired(s, ret_count, err));
        int count = 0;
        int r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        r = requeue_expired_locked(s, &count, err);
        if (r < 0) {
                store_tx_rollback(s);
                return r;
        }
        r = store_tx_commit(s, err);
        if (r < 0)
                return r;
        if (ret_count)
                *ret_count = count;
        return 0;
}

static int check_lease(int64_t lease_ms, struct ft_error *err) {
        if (lease_ms < 1 || lease_ms > LEASE_MS_MAX)
                return ft_error_set(err, -EINVAL, "lease_ms", "'lease_ms' must be between 1 and %lld",
                                    (long long)LEASE_MS_MAX);
        return 0;
}

int store_job_claim(struct store *s, const char *worker_id, int64_t lease_ms, struct store_job **ret,
                    struct ft_error *err) {
        char id[STORE_ID_MAX];
        struct store_job *j = NULL;
        int attempt = 0, r;

        if ((r = store_check_string("worker_id", worker_id, STORE_NAME_MAX, true, err)) < 0 ||
            (r = check_lease(lease_ms, err)) < 0)
                return r;
        STORE_PG(s, pg_job_claim(s, worker_id, lease_ms, ret, err));
        r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        r = requeue_expired_locked(s, NULL, err);
        if (r < 0)
                goto fail;
        int64_t now = store_now_ms();
        sqlite3_stmt *st = store_stmt(s,
                                      "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_owner = ?1,"
                                      " lease_expires_at = ?2, started_at = COALESCE(started_at, ?3)"
                                      " WHERE seq = (SELECT seq FROM jobs WHERE state = 'queued'"
                                      " ORDER BY priority DESC, seq LIMIT 1) RETURNING id, attempt",
                                      err);
        if (!st) {
                r = -EIO;
                goto fail;
        }
        sqlite3_bind_text(st, 1, worker_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, now + lease_ms);
        sqlite3_bind_int64(st, 3, now);
        r = sqlite3_step(st);
        bool claimed = r == SQLITE_ROW;
        if (claimed) {
                store_col_copy(st, 0, id, sizeof(id));
                attempt = sqlite3_column_int(st, 1);
                r = sqlite3_step(st);
        }
        sqlite3_reset(st);
        if (r != SQLITE_DONE) {
                r = store_db_error(s, err, "claim job");
                goto fail;
        }
        if (claimed) {
                r = store_event_status(s, id, STORE_JOB_RUNNING, attempt, NULL, worker_id, err);
                if (r == 0)
                        r = job_get_locked(s, id, &j, err);
                if (r < 0)
                        goto fail;
        }
        r = store_tx_commit(s, err);
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
        store_tx_rollback(s);
        return r;
}

int store_job_heartbeat(struct store *s, const char *id, int attempt, int64_t lease_ms, bool *ret_cancel,
                        struct ft_error *err) {
        struct store_job_signals sig = {0};
        int r = store_job_heartbeat_with(s, id, attempt, lease_ms, &sig, err);
        if (r == 0 && ret_cancel)
                *ret_cancel = sig.cancel;
        return r;
}

int store_job_heartbeat_with(struct store *s, const char *id, int attempt, int64_t lease_ms,
                             struct store_job_signals *ret, struct ft_error *err) {
        enum store_job_state state;
        bool pause = false;
        int r = check_lease(lease_ms, err);
        if (r < 0)
                return r;
#ifdef HAVE_LIBPQ
        if (s->pg) { /* no pause on PostgreSQL yet (store_job_pause refuses): only the cancel */
                bool cancel = false;
                r = pg_job_heartbeat(s, id, attempt, lease_ms, &cancel, err);
                if (r == 0 && ret)
                        *ret = (struct store_job_signals){.cancel = cancel};
                return r;
        }
#endif
        r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        r = fence_locked(s, id, attempt, &state, err);
        if (r == 0)
                r = pause_requested_locked(s, id, &pause, err);
        if (r < 0)
                goto fail;
        sqlite3_stmt *st = store_stmt(s, "UPDATE jobs SET lease_expires_at = ?2 WHERE id = ?1", err);
        if (!st) {
                r = -EIO;
                goto fail;
        }
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, store_now_ms() + lease_ms);
        r = store_step_done(s, st, err);
        if (r < 0)
                goto fail;
        r = store_tx_commit(s, err);
        if (r < 0)
                return r;
        if (ret)
                *ret = (struct store_job_signals){.cancel = state == STORE_JOB_CANCELLING, .pause = pause};
        return 0;
fail:
        store_tx_rollback(s);
        return r;
}

int store_job_progress_set(struct store *s, const char *id, int attempt, const char *progress_json,
                           struct ft_error *err) {
        int r = store_check_json(s, "progress", progress_json, true, err);
        if (r < 0)
                return r;
        STORE_PG(s, pg_job_progress_set(s, id, attempt, progress_json, err));
        r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        r = fence_locked(s, id, attempt, NULL, err);
        if (r < 0)
                goto fail;
        sqlite3_stmt *st = store_stmt(s, "UPDATE jobs SET progress_json = ?2 WHERE id = ?1", err);
        if (!st) {
                r = -EIO;
                goto fail;
        }
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, progress_json, -1, SQLITE_STATIC);
        r = store_step_done(s, st, err);
        if (r < 0)
                goto fail;
        store_mark_changed(s, id, false);
        return store_tx_commit(s, err);
fail:
        store_tx_rollback(s);
        return r;
}

int store_job_finish(struct store *s, const char *id, int attempt, enum store_job_state state, const char *result_json,
                     const char *error_json, const struct store_model_new *result_model,
                     char ret_model_id[STORE_ID_MAX], struct ft_error *err) {
        struct store_job_outcome o = {
                .state = state, .result_json = result_json, .error_json = error_json, .model = result_model};
        return store_job_finish_with(s, id, attempt, &o, ret_model_id, err);
}

int store_job_finish_with(struct store *s, const char *id, int attempt, const struct store_job_outcome *o,
                          char ret_model_id[STORE_ID_MAX], struct ft_error *err) {
        char model_id[STORE_ID_MAX] = "";
        enum store_job_state state = o->state;
        const char *result_json = o->result_json, *error_json = o->error_json;
        const struct store_model_new *result_model = o->model;
        bool has_metrics = o->metrics_sha256 && *o->metrics_sha256;
        int r;

        if (!store_job_state_is_terminal(state))
                return ft_error_set(err, -EINVAL, "state", "a job can only finish as succeeded, failed or cancelled");
        if ((r = store_check_json(s, "result", result_json, false, err)) < 0 ||
            (r = store_check_json(s, "error", error_json, false, err)) < 0 ||
            (r = store_check_json(s, "receipt", o->receipt_json, false, err)) < 0)
                return r;
        if (has_metrics && !sha256_hex_valid(o->metrics_sha256))
                return ft_error_set(err, -EINVAL, "metrics", "'metrics' must be 64 lowercase hex digits");
        STORE_PG(s, pg_job_finish_with(s, id, attempt, o, ret_model_id, err));
        r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        r = fence_locked(s, id, attempt, NULL, err);
        if (r == 0 && has_metrics)
                r = ref_exists(s, "SELECT 1 FROM blobs WHERE sha256 = ?1", "metrics", "blob", o->metrics_sha256, err);
        if (r < 0)
                goto fail;
        if (result_model) {
                struct store_model_new m = *result_model;
                m.source = STORE_MODEL_JOB;
                m.source_job_id = id;
                r = store_model_insert(s, &m, model_id, err);
                if (r < 0)
                        goto fail;
        }
        sqlite3_stmt *st = store_stmt(
                s,
                "UPDATE jobs SET state = ?2, lease_owner = NULL, lease_expires_at = NULL, pause_requested = 0,"
                " finished_at = ?3, result_json = ?4, error_json = ?5, result_model_id = ?6,"
                " metrics_sha256 = ?7, receipt_json = ?8 WHERE id = ?1",
                err);
        if (!st) {
                r = -EIO;
                goto fail;
        }
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, state_names[state], -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, store_now_ms());
        sqlite3_bind_text(st, 4, result_json && *result_json ? result_json : "null", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, error_json && *error_json ? error_json : "null", -1, SQLITE_STATIC);
        store_bind_text(st, 6, model_id);
        store_bind_text(st, 7, has_metrics ? o->metrics_sha256 : NULL);
        sqlite3_bind_text(st, 8, o->receipt_json && *o->receipt_json ? o->receipt_json : "null", -1, SQLITE_STATIC);
        r = store_step_done(s, st, err);
        if (r < 0)
                goto fail;
        r = store_event_status(s, id, state, attempt, NULL, NULL, err);
        if (r < 0)
                goto fail;
        r = store_tx_commit(s, err);
        if (r < 0)
                return r;
        if (ret_model_id)
                memcpy(ret_model_id, model_id, STORE_ID_MAX);
        return 0;
fail:
        store_tx_rollback(s);
        return r;
}

int store_job_release(struct store *s, const char *id, int attempt, struct ft_error *err) {
        STORE_PG(s, pg_job_release(s, id, attempt, err));
        enum store_job_state state;
        int r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        r = fence_locked(s, id, attempt, &state, err);
        if (r < 0)
                goto fail;
        if (state == STORE_JOB_CANCELLING) {
                r = set_terminal_locked(s, id, STORE_JOB_CANCELLED, NULL, err);
                if (r == 0)
                        r = store_event_status(s, id, STORE_JOB_CANCELLED, attempt, "released", NULL, err);
        } else {
                r = requeue_locked(s, id, true, err);
                if (r == 0)
                        r = store_event_status(s, id, STORE_JOB_QUEUED, attempt, "released", NULL, err);
        }
        if (r < 0)
                goto fail;
        return store_tx_commit(s, err);
fail:
        store_tx_rollback(s);
        return r;
}

int store_job_cancel(struct store *s, const char *id, struct store_job **ret, struct ft_error *err) {
        STORE_PG(s, pg_job_cancel(s, id, ret, err));
        enum store_job_state state;
        struct store_job *j = NULL;
        int attempt;
        int r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        r = job_state_locked(s, id ? id : "", &state, &attempt, err);
        if (r < 0)
                goto fail;
        if (store_job_state_is_terminal(state)) {
                r = ft_error_set(err, -EALREADY, "id", "job '%s' already %s", id, state_names[state]);
                goto fail;
        }
        if (state == STORE_JOB_QUEUED || state == STORE_JOB_PAUSED) {
                r = set_terminal_locked(s, id, STORE_JOB_CANCELLED, NULL, err);
                if (r == 0)
                        r = store_event_status(s, id, STORE_JOB_CANCELLED, attempt, "cancel_requested", NULL, err);
        } else if (state == STORE_JOB_RUNNING) {
                sqlite3_stmt *st = store_stmt(s, "UPDATE jobs SET state = 'cancelling' WHERE id = ?1", err);
                if (!st) {
                        r = -EIO;
                        goto fail;
                }
                sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
                r = store_step_done(s, st, err);
                if (r == 0)
                        r = store_event_status(s, id, STORE_JOB_CANCELLING, attempt, "cancel_requested", NULL, err);
        }
        if (r < 0)
                goto fail;
        if (ret) {
                r = job_get_locked(s, id, &j, err);
                if (r < 0)
                        goto fail;
        }
        r = store_tx_commit(s, err);
        if (r < 0) {
                store_job_free(j);
                return r;
        }
        if (ret)
                *ret = j;
        return 0;
fail:
        store_tx_rollback(s);
        return r;
}

/* ---- pause and resume ------------------------------------------------------------------- */

/* Run one statement bound to (id) inside the open transaction. */
static int job_exec_locked(struct store *s, const char *sql, const char *id, struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(s, sql, err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        int r = store_step_done(s, st, err);
        if (r == 0)
                store_mark_changed(s, id, false);
        return r;
}

/* The job after the change into *ret (when ret), then commit. */
static int commit_with_job(struct store *s, const char *id, struct store_job **ret, struct ft_error *err) {
        struct store_job *j = NULL;
        int r = 0;
        if (ret) {
                r = job_get_locked(s, id, &j, err);
                if (r < 0) {
                        store_tx_rollback(s);
                        return r;
                }
        }
        r = store_tx_commit(s, err);
        if (r < 0) {
                store_job_free(j);
                return r;
        }
        if (ret)
                *ret = j;
        return 0;
}

int store_job_pause(struct store *s, const char *id, struct store_job **ret, struct ft_error *err) {
        STORE_PG_UNSUPPORTED(s, "store_job_pause", err);
        enum store_job_state state;
        bool requested = false;
        int attempt;
        id = id ? id : "";
        int r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        r = job_state_locked(s, id, &state, &attempt, err);
        if (r == 0 && state == STORE_JOB_RUNNING)
                r = pause_requested_locked(s, id, &requested, err);
        if (r < 0)
                goto fail;
        if (store_job_state_is_terminal(state) || state == STORE_JOB_CANCELLING) {
                r = ft_error_set(err, -EALREADY, "id", "job '%s' is %s: only a queued or running job can be paused", id,
                                 state_names[state]);
                goto fail;
        }
        if (state == STORE_JOB_QUEUED) {
                r = job_exec_locked(s, "UPDATE jobs SET state = 'paused', pause_requested = 0 WHERE id = ?1", id, err);
                if (r == 0)
                        r = store_event_status(s, id, STORE_JOB_PAUSED, attempt, "pause_requested", NULL, err);
                store_mark_changed(s, NULL, true);
        } else if (state == STORE_JOB_RUNNING && !requested) {
                r = job_exec_locked(s, "UPDATE jobs SET pause_requested = 1 WHERE id = ?1", id, err);
                if (r == 0)
                        r = store_event_insert(s, id, "pause_requested", "{}", NULL, err);
        }
        if (r < 0)
                goto fail;
        return commit_with_job(s, id, ret, err);
fail:
        store_tx_rollback(s);
        return r;
}

int store_job_resume(struct store *s, const char *id, struct store_job **ret, struct ft_error *err) {
        STORE_PG_UNSUPPORTED(s, "store_job_resume", err);
        enum store_job_state state;
        bool requested = false;
        int attempt;
        id = id ? id : "";
        int r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        r = job_state_locked(s, id, &state, &attempt, err);
        if (r == 0 && state == STORE_JOB_RUNNING)
                r = pause_requested_locked(s, id, &requested, err);
        if (r < 0)
                goto fail;
        if (state == STORE_JOB_PAUSED) {
                r = job_exec_locked(s, "UPDATE jobs SET state = 'queued' WHERE id = ?1", id, err);
                if (r == 0)
                        r = store_event_status(s, id, STORE_JOB_QUEUED, attempt, "resumed", NULL, err);
                store_mark_changed(s, NULL, true);
        } else if (state == STORE_JOB_RUNNING && requested) {
                r = job_exec_locked(s, "UPDATE jobs SET pause_requested = 0 WHERE id = ?1", id, err);
                if (r == 0)
                        r = store_event_insert(s, id, "pause_withdrawn", "{}", NULL, err);
        } else {
                r = ft_error_set(err, -EALREADY, "id", "job '%s' is %s: only a paused job can be resumed", id,
                                 state_names[state]);
        }
        if (r < 0)
                goto fail;
        return commit_with_job(s, id, ret, err);
fail:
        store_tx_rollback(s);
        return r;
}

int store_job_pause_done(struct store *s, const char *id, int attempt, struct ft_error *err) {
        STORE_PG_UNSUPPORTED(s, "store_job_pause_done", err);
        enum store_job_state state;
        int r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        r = fence_locked(s, id, attempt, &state, err);
        if (r < 0)
                goto fail;
        if (state == STORE_JOB_CANCELLING) {
                r = set_terminal_locked(s, id, STORE_JOB_CANCELLED, NULL, err);
                if (r == 0)
                        r = store_event_status(s, id, STORE_JOB_CANCELLED, attempt, "cancel_requested", NULL, err);
        } else {
                r = job_exec_locked(s,
                                    "UPDATE jobs SET state = 'paused', pause_requested = 0, lease_owner = NULL,"
                                    " lease_expires_at = NULL, max_attempts = max_attempts + 1 WHERE id = ?1",
                                    id, err);
                if (r == 0)
                        r = store_event_status(s, id, STORE_JOB_PAUSED, attempt, "pause_requested", NULL, err);
        }
        if (r < 0)
                goto fail;
        return store_tx_commit(s, err);
fail:
        store_tx_rollback(s);
        return r;
}

int store_job_runtime_add(struct store *s, const char *id, int attempt, int64_t ms, struct ft_error *err) {
        STORE_PG_UNSUPPORTED(s, "store_job_runtime_add", err);
        if (ms < 0)
                return ft_error_set(err, -EINVAL, "ms", "running time must not be negative");
        int r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        r = fence_locked(s, id, attempt, NULL, err);
        sqlite3_stmt *st =
                r == 0 ? store_stmt(s, "UPDATE jobs SET runtime_ms = runtime_ms + ?2 WHERE id = ?1", err) : NULL;
        if (r == 0 && !st)
                r = -EIO;
        if (r == 0) {
                sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 2, ms);
                r = store_step_done(s, st, err);
        }
        if (r < 0) {
                store_tx_rollback(s);
                return r;
        }
        return store_tx_commit(s, err);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
        (void)sb;
        (void)ftw;
        if (flag == FTW_DP)
                rmdir(path);
        else
                unlink(path);
        return 0; /* best effort: remove what can be removed */
}

int store_job_delete(struct store *s, const char *id, struct ft_error *err) {
        STORE_PG(s, pg_job_delete(s, id, err));
        static const char *const deletes[] = {
                "DELETE FROM events WHERE job_id = ?1",
                "DELETE FROM checkpoints WHERE job_id = ?1",
                "DELETE FROM idempotency_keys WHERE job_id = ?1",
                "DELETE FROM job_metadata WHERE job_seq = (SELECT seq FROM jobs WHERE id = ?1)",
                "DELETE FROM jobs WHERE id = ?1",
        };
        enum store_job_state state;
        char dir[PATH_MAX];
        int r;

        id = id ? id : "";
        r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        r = job_state_locked(s, id, &state, NULL, err);
        if (r < 0)
                goto fail;
        if (!store_job_state_is_terminal(state)) {
                r = ft_error_set(err, -EBUSY, "id", "job '%s' is %s: only a finished job can be deleted", id,
                                 state_names[state]);
                goto fail;
        }
        for (size_t i = 0; i < sizeof(deletes) / sizeof(deletes[0]); i++) {
                sqlite3_stmt *st = store_stmt(s, deletes[i], err);
                if (!st) {
                        r = -EIO;
                        goto fail;
                }
                sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
                r = store_step_done(s, st, err);
                if (r < 0)
                        goto fail;
        }
        store_mark_changed(s, id, false);
        r = store_tx_commit(s, err);
        if (r < 0)
                return r;
        /* The id matched a row, so it is one we generated: no path tricks. */
        if (snprintf(dir, sizeof(dir), "%s/jobs/%s", s->state_dir, id) < (int)sizeof(dir))
                nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        return 0;
fail:
        store_tx_rollback(s);
        return r;
}

int store_job_dirs_sweep(struct store *s, int *ret_removed, struct ft_error *err) {
        STORE_PG(s, pg_job_dirs_sweep(s, ret_removed, err));
        char dir[PATH_MAX], path[PATH_MAX];
        int removed = 0;
        if (ft_path_join(dir, sizeof(dir), s->state_dir, "jobs", NULL) < 0)
                return ft_error_set(err, -ENAMETOOLONG, NULL, "state directory path is too long");
        DIR *d = opendir(dir);
        if (!d) {
                if (ret_removed)
                        *ret_removed = 0;
                return errno == ENOENT ? 0
                                       : ft_error_set(err, -errno, NULL, "cannot read '%s': %s", dir, strerror(errno));
        }
        sqlite3_stmt *st = store_stmt(s, "SELECT 1 FROM jobs WHERE id = ?1", err);
        int r = st ? 0 : -EIO;
        struct dirent *e;
        while (r == 0 && (e = readdir(d))) {
                if (e->d_name[0] == '.' || strlen(e->d_name) >= STORE_ID_MAX)
                        continue;
                sqlite3_bind_text(st, 1, e->d_name, -1, SQLITE_TRANSIENT);
                int q = sqlite3_step(st);
                sqlite3_reset(st);
                if (q == SQLITE_ROW)
                        continue;
                if (q != SQLITE_DONE) {
                        r = store_db_error(s, err, "look up a job");
                        break;
                }
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

/* ---- events ---------------------------------------------------------------------------- */

int store_event_append(struct store *s, const char *job_id, int attempt, const char *type, const char *data_json,
                       int64_t *ret_seq, struct ft_error *err) {
        enum store_job_state state;
        int64_t seq = 0;
        int r;

        if ((r = store_check_string("type", type, STORE_EVENT_TYPE_MAX - 1, true, err)) < 0 ||
            (r = store_check_json(s, "data", data_json, false, err)) < 0)
                return r;
        STORE_PG(s, pg_event_append(s, job_id, attempt, type, data_json, ret_seq, err));
        r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        if (attempt > 0) {
                r = fence_locked(s, job_id, attempt, NULL, err);
        } else {
                r = job_state_locked(s, job_id, &state, NULL, err);
                if (r == 0 && store_job_state_is_terminal(state))
                        r = ft_error_set(err, -EALREADY, "id", "job '%s' already %s", job_id, state_names[state]);
        }
        if (r < 0)
                goto fail;
        r = store_event_insert(s, job_id, type, data_json, &seq, err);
        if (r < 0)
                goto fail;
        r = store_tx_commit(s, err);
        if (r < 0)
                return r;
        if (ret_seq)
                *ret_seq = seq;
        return 0;
fail:
        store_tx_rollback(s);
        return r;
}

int store_job_epoch_append(struct store *s, const char *job_id, int attempt, int64_t epoch, const char *data_json,
                           int64_t *ret_seq, struct ft_error *err) {
        int64_t seq = 0;
        int r;

        if ((r = store_check_json(s, "data", data_json, false, err)) < 0)
                return r;
        if (epoch < 1)
                return ft_error_set(err, -EINVAL, "epoch", "'epoch' must be 1 or more");
        STORE_PG(s, pg_job_epoch_append(s, job_id, attempt, epoch, data_json, ret_seq, err));
        r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        r = fence_locked(s, job_id, attempt, NULL, err);
        if (r == 0)
                r = store_event_insert(s, job_id, "epoch", data_json, &seq, err);
        if (r < 0)
                goto fail;
        sqlite3_stmt *st = store_stmt(s, "UPDATE jobs SET last_epoch = MAX(last_epoch, ?2) WHERE id = ?1", err);
        if (!st) {
                r = -EIO;
                goto fail;
        }
        sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, epoch);
        r = store_step_done(s, st, err);
        if (r < 0)
                goto fail;
        r = store_tx_commit(s, err);
        if (r < 0)
                return r;
        if (ret_seq)
                *ret_seq = seq;
        return 0;
fail:
        store_tx_rollback(s);
        return r;
}

int store_event_list(struct store *s, const char *job_id, int64_t after_seq, unsigned limit,
                     struct store_event_list *ret, struct ft_error *err) {
        struct store_event_list l = {0};
        enum store_job_state state;
        int r;

        if (limit == 0)
                limit = 100;
        if (limit > 1000)
                return ft_error_set(err, -EINVAL, "limit", "'limit' must be between 1 and 1000");
        if (after_seq < 0)
                return ft_error_set(err, -EINVAL, "after", "'after' must not be negative");
        STORE_PG(s, pg_event_list(s, job_id, after_seq, limit, ret, err));
        r = job_state_locked(s, job_id ? job_id : "", &state, NULL, err);
        if (r < 0)
                return r;
        sqlite3_stmt *st = store_stmt(s,
                                      "SELECT seq, type, data_json, created_at FROM events"
                                      " WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                                      err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, after_seq);
        sqlite3_bind_int(st, 3, (int)limit + 1);
        l.items = calloc(limit, sizeof(*l.items));
        if (!l.items) {
                sqlite3_reset(st);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
                if (l.n == limit) {
                        l.has_more = true;
                        break;
                }
                struct store_event *e = &l.items[l.n];
                snprintf(e->job_id, sizeof(e->job_id), "%s", job_id);
                e->seq = sqlite3_column_int64(st, 0);
                store_col_copy(st, 1, e->type, sizeof(e->type));
                e->data_json = store_col_strdup(st, 2);
                e->created_at = sqlite3_column_int64(st, 3);
                if (!e->data_json) {
                        r = ft_error_set(err, -ENOMEM, NULL, "out of memory");
                        goto fail;
                }
                l.n++;
        }
        if (r != SQLITE_ROW && r != SQLITE_DONE) {
                r = store_db_error(s, err, "list events");
                goto fail;
        }
        sqlite3_reset(st);
        *ret = l;
        return 0;
fail:
        sqlite3_reset(st);
        store_event_list_deinit(&l);
        return r;
}

void store_event_list_deinit(struct store_event_list *l) {
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++)
                free(l->items[i].data_json);
        free(l->items);
        memset(l, 0, sizeof(*l));
}

int store_event_best(struct store *s, const char *job_id, const char *field, bool maximize, int64_t epoch,
                     int64_t after_seq, struct store_event_best *ret, struct ft_error *err) {
        char path[STORE_EVENT_TYPE_MAX + 2];
        int r = store_check_string("field", field, STORE_EVENT_TYPE_MAX - 1, true, err);
        if (r < 0)
                return r;
        for (const char *c = field; *c; c++) /* a plain key: no JSON path syntax */
                if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
                        return ft_error_set(err, -EINVAL, "field", "'field' must be a plain key, got '%.64s'", field);
        STORE_PG(s, pg_event_best(s, job_id, field, maximize, epoch, after_seq, ret, err));
        snprintf(path, sizeof(path), "$.%s", field);
        /* One row always: the newest seq, and the best epoch event when there is one. */
        sqlite3_stmt *st = store_stmt(s,
                                      "SELECT (SELECT max(seq) FROM events WHERE job_id = ?1), b.v, b.e FROM (SELECT 1)"
                                      " LEFT JOIN (SELECT v, json_extract(data_json, '$.epoch') AS e FROM"
                                      "  (SELECT seq, data_json, json_extract(data_json, ?2) AS v FROM events"
                                      "   WHERE job_id = ?1 AND seq > ?5 AND type = 'epoch')"
                                      "  WHERE typeof(v) IN ('integer', 'real')"
                                      "    AND (?4 = 0 OR json_extract(data_json, '$.epoch') = ?4)"
                                      "  ORDER BY v * ?3 DESC, seq LIMIT 1) AS b",
                                      err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, path, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 3, maximize ? 1 : -1);
        sqlite3_bind_int64(st, 4, epoch > 0 ? epoch : 0);
        sqlite3_bind_int64(st, 5, after_seq > 0 ? after_seq : 0);
        r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
                *ret = (struct store_event_best){
                        .found = sqlite3_column_type(st, 1) != SQLITE_NULL,
                        .value = sqlite3_column_double(st, 1),
                        .epoch = sqlite3_column_int64(st, 2),
                        .last_seq = sqlite3_column_int64(st, 0),
                };
                r = 0;
        } else {
                r = store_db_error(s, err, "best epoch");
        }
        sqlite3_reset(st);
        return r;
}

/* ---- checkpoints ------------------------------------------------------------------------ */

#define CHECKPOINT_COLS "id, job_id, attempt, epoch, step, dir, blob_sha256, meta_json, created_at"

void store_checkpoint_free(struct store_checkpoint *c) {
        if (!c)
                return;
        free(c->dir);
        free(c->meta_json);
        free(c);
}

static int checkpoint_from_row(sqlite3_stmt *st, struct store_checkpoint **ret, struct ft_error *err) {
        struct store_checkpoint *c = calloc(1, sizeof(*c));
        if (!c)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        c->id = sqlite3_column_int64(st, 0);
        store_col_copy(st, 1, c->job_id, sizeof(c->job_id));
        c->attempt = sqlite3_column_int(st, 2);
        c->epoch = sqlite3_column_int(st, 3);
        c->step = sqlite3_column_int64(st, 4);
        c->dir = store_col_strdup(st, 5);
        store_col_copy(st, 6, c->blob_sha256, sizeof(c->blob_sha256));
        c->meta_json = store_col_strdup(st, 7);
        c->created_at = sqlite3_column_int64(st, 8);
        if (!c->dir || !c->meta_json) {
                store_checkpoint_free(c);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        *ret = c;
        return 0;
}

int store_checkpoint_add(struct store *s, const char *job_id, int attempt, const struct store_checkpoint_new *in,
                         int64_t *ret_id, struct ft_error *err) {
        bool has_dir = in->dir && *in->dir, has_blob = in->blob_sha256 && *in->blob_sha256;
        char data[128];
        int64_t id = 0;
        int r;

        if (has_dir == has_blob)
                return ft_error_set(err, -EINVAL, "dir", "a checkpoint needs exactly one of a directory or a blob");
        if ((r = store_check_string("dir", in->dir, CHECKPOINT_DIR_MAX, false, err)) < 0 ||
            (r = store_check_json(s, "meta", in->meta_json, false, err)) < 0)
                return r;
        if (has_blob && !sha256_hex_valid(in->blob_sha256))
                return ft_error_set(err, -EINVAL, "blob_sha256", "'blob_sha256' must be 64 lowercase hex digits");
        if (in->epoch < 0 || in->step < 0)
                return ft_error_set(err, -EINVAL, "epoch", "'epoch' and 'step' must not be negative");
        STORE_PG(s, pg_checkpoint_add(s, job_id, attempt, in, ret_id, err));
        r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        r = fence_locked(s, job_id, attempt, NULL, err);
        if (r == 0 && has_blob)
                r = ref_exists(s, "SELECT 1 FROM blobs WHERE sha256 = ?1", "blob_sha256", "blob", in->blob_sha256, err);
        if (r < 0)
                goto fail;
        sqlite3_stmt *st = store_stmt(s,
                                      "INSERT INTO checkpoints (job_id, attempt, epoch, step, dir, blob_sha256,"
                                      " meta_json, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
                                      err);
        if (!st) {
                r = -EIO;
                goto fail;
        }
        sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, attempt);
        sqlite3_bind_int(st, 3, in->epoch);
        sqlite3_bind_int64(st, 4, in->step);
        sqlite3_bind_text(st, 5, has_dir ? in->dir : "", -1, SQLITE_STATIC);
        store_bind_text(st, 6, in->blob_sha256);
        sqlite3_bind_text(st, 7, in->meta_json && *in->meta_json ? in->meta_json : "{}", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 8, store_now_ms());
        r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
                id = sqlite3_column_int64(st, 0);
                r = sqlite3_step(st);
        }
        sqlite3_reset(st);
        if (r != SQLITE_DONE) {
                r = store_db_error(s, err, "record checkpoint");
                goto fail;
        }
        snprintf(data, sizeof(data), "{\"checkpoint\":%lld,\"epoch\":%d,\"step\":%lld}", (long long)id, in->epoch,
                 (long long)in->step);
        r = store_event_insert(s, job_id, "checkpoint", data, NULL, err);
        if (r < 0)
                goto fail;
        if (in->keep > 0) {
                st = store_stmt(s,
                                "DELETE FROM checkpoints WHERE job_id = ?1 AND id NOT IN"
                                " (SELECT id FROM checkpoints WHERE job_id = ?1 ORDER BY id DESC LIMIT ?2)",
                                err);
                if (!st) {
                        r = -EIO;
                        goto fail;
                }
                sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
                sqlite3_bind_int(st, 2, in->keep);
                r = sqlite3_step(st);
                sqlite3_reset(st);
                if (r != SQLITE_DONE) {
                        r = store_db_error(s, err, "prune checkpoints");
                        goto fail;
                }
        }
        r = store_tx_commit(s, err);
        if (r < 0)
                return r;
        if (ret_id)
                *ret_id = id;
        return 0;
fail:
        store_tx_rollback(s);
        return r;
}

int store_checkpoint_latest(struct store *s, const char *job_id, struct store_checkpoint **ret, struct ft_error *err) {
        STORE_PG(s, pg_checkpoint_latest(s, job_id, ret, err));
        sqlite3_stmt *st = store_stmt(
                s, "SELECT " CHECKPOINT_COLS " FROM checkpoints WHERE job_id = ?1 ORDER BY id DESC LIMIT 1", err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, job_id ? job_id : "", -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
                r = checkpoint_from_row(st, ret, err);
                if (r == 0)
                        r = 1;
        } else if (r == SQLITE_DONE) {
                r = 0;
        } else {
                r = store_db_error(s, err, "read checkpoint");
        }
        sqlite3_reset(st);
        return r;
}

int store_checkpoint_get(struct store *s, const char *job_id, int64_t id, struct store_checkpoint **ret,
                         struct ft_error *err) {
        STORE_PG_UNSUPPORTED(s, "store_checkpoint_get", err);
        enum store_job_state state;
        int r = job_state_locked(s, job_id ? job_id : "", &state, NULL, err);
        if (r < 0)
                return r;
        sqlite3_stmt *st =
                store_stmt(s, "SELECT " CHECKPOINT_COLS " FROM checkpoints WHERE job_id = ?1 AND id = ?2", err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, id);
        r = sqlite3_step(st);
        if (r == SQLITE_ROW)
                r = checkpoint_from_row(st, ret, err);
        else if (r == SQLITE_DONE)
                r = ft_error_set(err, -ENOENT, "checkpoint", "job '%s' has no checkpoint %lld (any more)", job_id,
                                 (long long)id);
        else
                r = store_db_error(s, err, "read checkpoint");
        sqlite3_reset(st);
        return r;
}

static int checkpoint_add(struct store *s, sqlite3_stmt *st, void *list, struct ft_error *err) {
        struct store_checkpoint_list *l = list;
        (void)s;
        int r = checkpoint_from_row(st, &l->items[l->n], err);
        if (r == 0)
                l->n++;
        return r;
}

int store_checkpoint_list(struct store *s, const char *job_id, const struct store_page *page,
                          struct store_checkpoint_list *ret, struct ft_error *err) {
        struct store_checkpoint_list l = {0};
        enum store_job_state state;
        unsigned limit;
        int64_t after = 0;
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
        STORE_PG(s, pg_checkpoint_list(s, job_id, page, ret, err));
        r = job_state_locked(s, job_id ? job_id : "", &state, NULL, err);
        if (r < 0)
                return r;
        sqlite3_stmt *st = store_stmt(s,
                                      "SELECT " CHECKPOINT_COLS " FROM checkpoints WHERE job_id = ?1 AND id > ?2"
                                      " ORDER BY id LIMIT ?3",
                                      err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, after);
        sqlite3_bind_int(st, 3, (int)limit + 1);
        l.items = calloc(limit, sizeof(*l.items));
        r = l.items ? store_page_rows(s, st, limit, checkpoint_add, &l, &l.has_more, "list checkpoints", err)
                    : ft_error_set(err, -ENOMEM, NULL, "out of memory");
        sqlite3_reset(st);
        if (r < 0) {
                store_checkpoint_list_deinit(&l);
                return r;
        }
        *ret = l;
        return 0;
}

void store_checkpoint_list_deinit(struct store_checkpoint_list *l) {
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++)
                store_checkpoint_free(l->items[i]);
        free(l->items);
        memset(l, 0, sizeof(*l));
}

/* ---- idempotency keys ------------------------------------------------------------------ */

int store_idempotency_prune(struct store *s, int64_t max_age_ms, int *ret_removed, struct ft_error *err) {
        STORE_PG(s, pg_idempotency_prune(s, max_age_ms, ret_removed, err));
        int r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        sqlite3_stmt *st = store_stmt(s, "DELETE FROM idempotency_keys WHERE created_at < ?1", err);
        if (!st) {
                store_tx_rollback(s);
                return -EIO;
        }
        sqlite3_bind_int64(st, 1, store_now_ms() - max_age_ms);
        r = store_step_done(s, st, err);
        if (r < 0) {
                store_tx_rollback(s);
                return r;
        }
        int removed = sqlite3_changes(s->db);
        r = store_tx_commit(s, err);
        if (r < 0)
                return r;
        if (ret_removed)
                *ret_removed = removed;
        return 0;
}

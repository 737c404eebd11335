/* pg_store.c - the PostgreSQL backend's core: connecting to a postgresql://
 * URL, the schema migrations (numbered like SQLite's in store.c), running a
 * statement with text parameters, transactions whose change notifications go
 * out as NOTIFY at commit, and the LISTEN thread that feeds the in-process
 * notifier (changes.c) with the commits of other daemons.
 *
 * Not for: queue logic (pg_jobs.c), catalog rows (pg_catalog.c), blobs
 * (pg_blobs.c), SQLite (store.c). */
#include "store/internal.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "common/fileio.h"

#define PG_CHANNEL "finetuned_changes"
/* Two daemons migrating at once: the second waits on this advisory lock (any constant; "ftun"). */
#define PG_MIGRATE_LOCK "1718908270"

/* Migrations, applied in order; the version is the row in schema_version. The numbers are SQLite's (store.c):
 * migration N here makes the same schema change as migration N there, in PostgreSQL's words, so one version
 * number means one schema on both backends. Never edit a shipped entry: append. */
static const char *const pg_migrations[] = {
        /* 1: bookkeeping */
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",

        /* 2: datasets, models, jobs, events, checkpoints, idempotency keys, blobs. A blob's bytes are a large
         * object (lo_oid), so that daemons sharing nothing but this server can all read them. */
        "CREATE TABLE blobs ("
        "  sha256 TEXT PRIMARY KEY,"
        "  size BIGINT NOT NULL,"
        "  lo_oid OID NOT NULL,"
        "  created_at BIGINT NOT NULL,"
        "  touched_at BIGINT NOT NULL);"
        "CREATE TABLE datasets ("
        "  seq BIGSERIAL PRIMARY KEY,"
        "  id TEXT NOT NULL UNIQUE,"
        "  name TEXT NOT NULL,"
        "  format TEXT NOT NULL,"
        "  sha256 TEXT NOT NULL REFERENCES blobs(sha256),"
        "  size BIGINT NOT NULL,"
        "  schema_json TEXT NOT NULL,"
        "  created_at BIGINT NOT NULL);"
        "CREATE INDEX datasets_sha256 ON datasets(sha256);"
        "CREATE TABLE models ("
        "  seq BIGSERIAL PRIMARY KEY,"
        "  id TEXT NOT NULL UNIQUE,"
        "  name TEXT NOT NULL,"
        "  spec_json TEXT NOT NULL,"
        "  weights_sha256 TEXT REFERENCES blobs(sha256),"
        "  source TEXT NOT NULL CHECK (source IN ('preset', 'upload', 'job')),"
        "  source_job_id TEXT,"
        "  created_at BIGINT NOT NULL);"
        "CREATE INDEX models_weights ON models(weights_sha256);"
        "CREATE TABLE jobs ("
        "  seq BIGSERIAL PRIMARY KEY,"
        "  id TEXT NOT NULL UNIQUE,"
        "  spec_json TEXT NOT NULL,"
        "  state TEXT NOT NULL CHECK (state IN"
        "    ('queued', 'running', 'cancelling', 'succeeded', 'failed', 'cancelled')),"
        "  priority INTEGER NOT NULL,"
        "  attempt INTEGER NOT NULL,"
        "  max_attempts INTEGER NOT NULL,"
        "  lease_owner TEXT,"
        "  lease_expires_at BIGINT,"
        "  model_id TEXT NOT NULL,"
        "  training_file TEXT NOT NULL,"
        "  validation_file TEXT,"
        "  result_model_id TEXT,"
        "  progress_json TEXT NOT NULL,"
        "  result_json TEXT NOT NULL,"
        "  error_json TEXT NOT NULL,"
        "  created_at BIGINT NOT NULL,"
        "  started_at BIGINT,"
        "  finished_at BIGINT);"
        "CREATE INDEX jobs_claim ON jobs(state, priority DESC, seq);"
        "CREATE INDEX jobs_state_seq ON jobs(state, seq);"
        "CREATE INDEX jobs_lease ON jobs(state, lease_expires_at);"
        "CREATE INDEX jobs_active_model ON jobs(model_id) WHERE state IN ('queued', 'running', 'cancelling');"
        "CREATE INDEX jobs_active_train ON jobs(training_file) WHERE state IN ('queued', 'running', 'cancelling');"
        "CREATE INDEX jobs_active_valid ON jobs(validation_file) WHERE state IN ('queued', 'running', 'cancelling');"
        "CREATE TABLE events ("
        "  job_id TEXT NOT NULL REFERENCES jobs(id),"
        "  seq BIGINT NOT NULL,"
        "  type TEXT NOT NULL,"
        "  data_json TEXT NOT NULL,"
        "  created_at BIGINT NOT NULL,"
        "  PRIMARY KEY (job_id, seq));"
        "CREATE TABLE checkpoints ("
        "  id BIGSERIAL PRIMARY KEY,"
        "  job_id TEXT NOT NULL REFERENCES jobs(id),"
        "  attempt INTEGER NOT NULL,"
        "  epoch INTEGER NOT NULL,"
        "  step BIGINT NOT NULL,"
        "  dir TEXT NOT NULL,"
        "  blob_sha256 TEXT REFERENCES blobs(sha256),"
        "  meta_json TEXT NOT NULL,"
        "  created_at BIGINT NOT NULL);"
        "CREATE INDEX checkpoints_job ON checkpoints(job_id, id);"
        "CREATE INDEX checkpoints_blob ON checkpoints(blob_sha256);"
        /* the key is inserted before its job (first writer wins the key): the reference is checked at commit */
        "CREATE TABLE idempotency_keys ("
        "  key TEXT PRIMARY KEY,"
        "  request_hash TEXT NOT NULL,"
        "  job_id TEXT NOT NULL REFERENCES jobs(id) DEFERRABLE INITIALLY DEFERRED,"
        "  created_at BIGINT NOT NULL);"
        "CREATE INDEX idempotency_created ON idempotency_keys(created_at);",

        /* 3: typed dataset facts, an IDX pair as one dataset with two files (a PostgreSQL store never held the
         * older two-row form, so there is nothing to convert) */
        "ALTER TABLE datasets ADD COLUMN kind TEXT NOT NULL DEFAULT 'csv' CHECK (kind IN ('csv', 'idx'));"
        "ALTER TABLE datasets ADD COLUMN n_rows BIGINT NOT NULL DEFAULT 0;"
        "ALTER TABLE datasets ADD COLUMN n_features BIGINT NOT NULL DEFAULT 0;"
        "ALTER TABLE datasets ADD COLUMN n_classes BIGINT NOT NULL DEFAULT 0;"
        "ALTER TABLE datasets ADD COLUMN channels BIGINT NOT NULL DEFAULT 0;"
        "ALTER TABLE datasets ADD COLUMN height BIGINT NOT NULL DEFAULT 0;"
        "ALTER TABLE datasets ADD COLUMN width BIGINT NOT NULL DEFAULT 0;"
        "ALTER TABLE datasets ADD COLUMN target TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE datasets ADD COLUMN labels_sha256 TEXT REFERENCES blobs(sha256);"
        "ALTER TABLE datasets ADD COLUMN labels_format TEXT;"
        "ALTER TABLE datasets ADD COLUMN labels_size BIGINT;"
        "CREATE INDEX datasets_labels ON datasets(labels_sha256) WHERE labels_sha256 IS NOT NULL;",

        /* 4: the last epoch recorded and the blob of a job's metrics.json */
        "ALTER TABLE jobs ADD COLUMN last_epoch BIGINT NOT NULL DEFAULT 0;"
        "ALTER TABLE jobs ADD COLUMN metrics_sha256 TEXT REFERENCES blobs(sha256);"
        "CREATE INDEX jobs_metrics ON jobs(metrics_sha256) WHERE metrics_sha256 IS NOT NULL;",

        /* 5: SQLite keeps per-state counters here. On PostgreSQL one counter row per state would be a row every
         * daemon's every submit and claim updates (a hot row serializing the fleet), so a count is COUNT(*)
         * over jobs_state_seq instead, an index-only scan of the states asked for; this version only records
         * that the schema matches SQLite's 5. */
        "COMMENT ON INDEX jobs_state_seq IS 'store_job_count reads this (migration 5)';",
};

struct pg_listener {
        pthread_t thread;
        struct notifier *n;
        char url[STORE_URL_MAX];
        char instance[48]; /* "<token>.<pid>" as in the payloads of this process */
        int stop_pipe[2];
};

/* ---- statements ------------------------------------------------------------------ */

int pg_error(struct store *s, PGresult *res, struct ft_error *err, const char *what) {
        const char *msg = res ? PQresultErrorMessage(res) : NULL;
        if (!msg || !*msg)
                msg = PQerrorMessage(s->pg);
        char clean[FT_ERROR_MSG_MAX];
        snprintf(clean, sizeof(clean), "%s", msg ? msg : "unknown error");
        size_t n = strlen(clean);
        while (n && (clean[n - 1] == '\n' || clean[n - 1] == ' '))
                clean[--n] = '\0';
        /* Unreachable, not broken: the connection is gone, or the server said so (class 08 connection exception,
         * 57P01..03 shutting down / starting up), or libpq failed without a server error (no SQLSTATE). */
        const char *code = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        if (PQstatus(s->pg) != CONNECTION_OK || !code || strncmp(code, "08", 2) == 0 || strncmp(code, "57P0", 4) == 0)
                return ft_error_set(err, -ENOTCONN, NULL, "database connection lost (%s): %s", what, clean);
        return ft_error_set(err, -EIO, NULL, "database error (%s): %s", what, clean);
}

/* A connection that broke is reset once before the next statement outside a transaction (inside one, the
 * transaction is gone anyway and the caller gets -EIO). */
static void pg_revive(struct store *s) {
        if (PQstatus(s->pg) == CONNECTION_BAD && !s->in_tx)
                PQreset(s->pg);
}

int pg_query(struct store *s, PGresult **ret, struct ft_error *err, const char *what, const char *sql,
             const struct pg_args *a) {
        pg_revive(s);
        PGresult *res = PQexecParams(s->pg, sql, a ? a->n : 0, NULL, a ? a->v : NULL, NULL, NULL, 0);
        ExecStatusType st = PQresultStatus(res);
        /* An idle connection to a server that restarted looks fine until it is used: the first statement finds
         * it dead. Outside a transaction, a BEGIN or a SELECT changed nothing, so reconnect and run it once more
         * instead of answering 503 while the server is back (each HTTP thread has a connection of its own). */
        if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && !s->in_tx &&
            (strncmp(sql, "BEGIN", 5) == 0 || strncmp(sql, "SELECT", 6) == 0)) {
                struct ft_error why = {0};
                if (pg_error(s, res, &why, what) == -ENOTCONN) {
                        PQclear(res);
                        PQreset(s->pg);
                        res = PQexecParams(s->pg, sql, a ? a->n : 0, NULL, a ? a->v : NULL, NULL, NULL, 0);
                        st = PQresultStatus(res);
                }
        }
        if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
                int r = pg_error(s, res, err, what);
                const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
                if (code && strcmp(code, "23505") == 0) /* unique_violation */
                        r = -EEXIST;
                PQclear(res);
                return r;
        }
        if (ret)
                *ret = res;
        else
                PQclear(res);
        return 0;
}

int pg_exec(struct store *s, struct ft_error *err, const char *what, const char *sql, const struct pg_args *a) {
        return pg_query(s, NULL, err, what, sql, a);
}

void pg_arg_text(struct pg_args *a, const char *v) {
        a->v[a->n++] = v && *v ? v : NULL;
}

void pg_arg_str(struct pg_args *a, const char *v) {
        a->v[a->n++] = v ? v : "";
}

void pg_arg_int(struct pg_args *a, int64_t v) {
        snprintf(a->buf[a->n], sizeof(a->buf[a->n]), "%lld", (long long)v);
        a->v[a->n] = a->buf[a->n];
        a->n++;
}

int64_t pg_int(PGresult *res, int row, int col) {
        if (PQgetisnull(res, row, col))
                return 0;
        return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

char *pg_strdup(PGresult *res, int row, int col) {
        return strdup(PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col));
}

void pg_copy(PGresult *res, int row, int col, char *buf, size_t size) {
        snprintf(buf, size, "%s", PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col));
}

/* ---- transactions ------------------------------------------------------------------ */

int pg_tx_begin(struct store *s, struct ft_error *err) {
        int r = pg_exec(s, err, "begin", "BEGIN", NULL);
        if (r < 0)
                return r;
        s->in_tx = true;
        s->n_pending = 0;
        s->pending_overflow = false;
        s->pending_queue = false;
        return 0;
}

void pg_tx_rollback(struct store *s) {
        if (PQtransactionStatus(s->pg) != PQTRANS_IDLE)
                PQclear(PQexec(s->pg, "ROLLBACK"));
        s->in_tx = false;
        s->n_pending = 0;
        s->pending_overflow = false;
        s->pending_queue = false;
}

/* NOTIFY inside the transaction is delivered by the server only if it commits. Payload: "<me> <job id>",
 * "<me> *" for "anything", "<me> " for the queue, <me> being "<instance token>.<pid>"; the listener drops its
 * own process's (they were
 * signalled locally right after COMMIT, on the writer's thread, as store.h promises). */
static int pg_notify_pending(struct store *s, struct ft_error *err) {
        char payload[STORE_ID_MAX + 64], me[48];
        struct pg_args a = {0};
        int r = 0;
        /* the pid too: a child forked after the listener started shares the token, not the listener */
        snprintf(me, sizeof(me), "%s.%d", s->pg_instance, (int)getpid());
        if (s->pending_overflow) {
                snprintf(payload, sizeof(payload), "%s *", me);
                a = (struct pg_args){0};
                pg_arg_str(&a, payload);
                r = pg_exec(s, err, "notify", "SELECT pg_notify('" PG_CHANNEL "', $1)", &a);
        } else {
                for (size_t i = 0; r == 0 && i < s->n_pending; i++) {
                        snprintf(payload, sizeof(payload), "%s %s", me, s->pending[i]);
                        a = (struct pg_args){0};
                        pg_arg_str(&a, payload);
                        r = pg_exec(s, err, "notify", "SELECT pg_notify('" PG_CHANNEL "', $1)", &a);
                }
        }
        if (r == 0 && s->pending_queue) {
                snprintf(payload, sizeof(payload), "%s ", me);
                a = (struct pg_args){0};
                pg_arg_str(&a, payload);
                r = pg_exec(s, err, "notify", "SELECT pg_notify('" PG_CHANNEL "', $1)", &a);
        }
        return r;
}

int pg_tx_commit(struct store *s, struct ft_error *err) {
        int r = pg_notify_pending(s, err);
        if (r == 0)
                r = pg_exec(s, err, "commit", "COMMIT", NULL);
        if (r < 0) {
                pg_tx_rollback(s);
                return r;
        }
        s->in_tx = false;
        if (s->n_pending || s->pending_overflow || s->pending_queue)
                notifier_signal(s->notifier, (const char(*)[STORE_ID_MAX])s->pending, s->n_pending, s->pending_overflow,
                                s->pending_queue);
        s->n_pending = 0;
        return 0;
}

/* ---- the LISTEN thread ---------------------------------------------------------------- */

static void listener_deliver(struct pg_listener *l, const char *payload) {
        const char *sp = strchr(payload, ' ');
        if (!sp || (size_t)(sp - payload) != strlen(l->instance) || strncmp(payload, l->instance, sp - payload) != 0) {
                const char *job = sp ? sp + 1 : "*";
                if (!*job)
                        notifier_signal(l->n, NULL, 0, false, true);
                else if (strcmp(job, "*") == 0 || strlen(job) >= STORE_ID_MAX)
                        notifier_signal(l->n, NULL, 0, true, false);
                else {
                        char one[1][STORE_ID_MAX];
                        snprintf(one[0], STORE_ID_MAX, "%s", job);
                        notifier_signal(l->n, (const char(*)[STORE_ID_MAX])one, 1, false, false);
                }
        }
}

static void quiet(void *arg, const char *message) {
        (void)arg;
        (void)message;
}

static void *listener_main(void *arg) {
        struct pg_listener *l = arg;
        PGconn *c = NULL;
        for (;;) {
                if (!c || PQstatus(c) != CONNECTION_OK) {
                        if (c)
                                PQfinish(c);
                        c = PQconnectdb(l->url);
                        PQsetNoticeProcessor(c, quiet, NULL);
                        PGresult *res = PQstatus(c) == CONNECTION_OK ? PQexec(c, "LISTEN " PG_CHANNEL) : NULL;
                        bool ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
                        PQclear(res);
                        if (ok) /* what happened while we were not listening is unknown: wake everyone to re-read */
                                notifier_signal(l->n, NULL, 0, true, true);
                        else {
                                PQfinish(c);
                                c = NULL;
                        }
                }
                struct pollfd p[2] = {{.fd = l->stop_pipe[0], .events = POLLIN},
                                      {.fd = c ? PQsocket(c) : -1, .events = POLLIN}};
                int k = poll(p, c ? 2 : 1, 1000);
                if (k > 0 && p[0].revents)
                        break;
                if (!c)
                        continue;
                if (k > 0 && p[1].revents && !PQconsumeInput(c))
                        continue; /* broken: reconnect on the next round */
                PGnotify *note;
                while ((note = PQnotifies(c))) {
                        listener_deliver(l, note->extra);
                        PQfreemem(note);
                }
        }
        if (c)
                PQfinish(c);
        return NULL;
}

static void listener_stop(void *arg) {
        struct pg_listener *l = arg;
        char b = 1;
        if (write(l->stop_pipe[1], &b, 1) < 0) {
                /* the pipe is ours and empty: cannot fail; the join below would then hang, so don't */
        }
        pthread_join(l->thread, NULL);
        close(l->stop_pipe[0]);
        close(l->stop_pipe[1]);
        free(l);
}

static void *listener_start(struct notifier *n, void *userdata) {
        struct store *s = userdata;
        struct pg_listener *l = calloc(1, sizeof(*l));
        if (!l)
                return NULL;
        l->n = n;
        snprintf(l->url, sizeof(l->url), "%s", s->url);
        snprintf(l->instance, sizeof(l->instance), "%s.%d", s->pg_instance, (int)getpid());
        if (pipe(l->stop_pipe) < 0) {
                free(l);
                return NULL;
        }
        if (pthread_create(&l->thread, NULL, listener_main, l) != 0) {
                close(l->stop_pipe[0]);
                close(l->stop_pipe[1]);
                free(l);
                return NULL;
        }
        return l;
}

/* ---- opening ------------------------------------------------------------------------ */

static int pg_migrate(struct store *s, struct ft_error *err) {
        PGresult *res = NULL;
        int r = pg_tx_begin(s, err);
        if (r < 0)
                return r;
        r = pg_exec(s, err, "lock for migration", "SELECT pg_advisory_xact_lock(" PG_MIGRATE_LOCK ")", NULL);
        if (r == 0)
                r = pg_exec(s, err, "schema version",
                            "CREATE TABLE IF NOT EXISTS schema_version (one BOOLEAN PRIMARY KEY DEFAULT TRUE"
                            " CHECK (one), version INTEGER NOT NULL)",
                            NULL);
        if (r == 0)
                r = pg_query(s, &res, err, "schema version", "SELECT version FROM schema_version", NULL);
        if (r < 0)
                goto fail;
        int version = PQntuples(res) ? (int)pg_int(res, 0, 0) : 0;
        bool had_row = PQntuples(res) > 0;
        PQclear(res);
        if (version > (int)ARRAY_SIZE(pg_migrations)) {
                r = ft_error_set(err, -EPROTO, NULL,
                                 "database schema version %d is newer than this finetuned understands (%zu)", version,
                                 ARRAY_SIZE(pg_migrations));
                goto fail;
        }
        for (int v = version; v < (int)ARRAY_SIZE(pg_migrations); v++) {
                PGresult *m = PQexec(s->pg, pg_migrations[v]); /* several statements: simple protocol */
                if (PQresultStatus(m) != PGRES_COMMAND_OK && PQresultStatus(m) != PGRES_TUPLES_OK) {
                        char what[32];
                        snprintf(what, sizeof(what), "migration %d", v + 1);
                        r = pg_error(s, m, err, what);
                        PQclear(m);
                        goto fail;
                }
                PQclear(m);
        }
        struct pg_args a = {0};
        pg_arg_int(&a, (int64_t)ARRAY_SIZE(pg_migrations));
        r = pg_exec(s, err, "schema version",
                    had_row ? "UPDATE schema_version SET version = $1"
                            : "INSERT INTO schema_version (version) VALUES ($1)",
                    &a);
        if (r < 0)
                goto fail;
        r = pg_tx_commit(s, err);
        if (r < 0)
                return r;
        s->schema_version = (int)ARRAY_SIZE(pg_migrations);
        return 0;
fail:
        pg_tx_rollback(s);
        return r;
}

int pg_open(struct store *s, const char *url, const struct store_options *opts, struct ft_error *err) {
        if (strlen(url) >= sizeof(s->url))
                return ft_error_set(err, -EINVAL, "store", "'store' URL is longer than %d bytes", STORE_URL_MAX - 1);
        snprintf(s->url, sizeof(s->url), "%s", url);
        /* JSON checks (store_check_json) and JSON building share SQLite's functions with the SQLite backend, on a
         * private in-memory database: the same text is valid JSON on both backends. */
        if (sqlite3_open_v2(":memory:", &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
                return ft_error_set(err, -ENOMEM, NULL, "cannot open an in-memory database");
        s->pg = PQconnectdb(url);
        if (PQstatus(s->pg) != CONNECTION_OK) {
                char msg[FT_ERROR_MSG_MAX];
                snprintf(msg, sizeof(msg), "%s", PQerrorMessage(s->pg));
                size_t n = strlen(msg);
                while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
                        msg[--n] = '\0';
                return ft_error_set(err, -ENOTCONN, "store", "cannot connect to the PostgreSQL store: %s", msg);
        }
        PQsetNoticeProcessor(s->pg, quiet, NULL); /* the store never logs: errors come back as results */
        PQclear(PQexec(s->pg, "SET client_min_messages = warning"));
        if (opts && opts->relaxed_sync) /* survives a crash of the daemon, not of the server (tests, benchmarks) */
                PQclear(PQexec(s->pg, "SET synchronous_commit = off"));
        char id[STORE_ID_MAX];
        int r = store_id_new("", id, err);
        if (r < 0)
                return r;
        snprintf(s->pg_instance, sizeof(s->pg_instance), "%.16s", id);
        r = pg_migrate(s, err);
        if (r < 0)
                return r;
        r = fileio_mkdir_p(s->tmp_dir, 0755, err);
        if (r < 0)
                return r;
        r = notifier_acquire(s->state_dir, &s->notifier, err);
        if (r < 0)
                return r;
        /* One LISTEN connection per notifier (per state directory in this process), started by the first store;
         * every store of the process shares its instance token, so their own commits are not signalled twice. */
        notifier_listen(s->notifier, listener_start, listener_stop, s, s->pg_instance, sizeof(s->pg_instance));
        return 0;
}

void pg_close(struct store *s) {
        if (s->pg)
                PQfinish(s->pg);
        s->pg = NULL;
}

int pg_unsupported(const char *what, struct ft_error *err) {
        return ft_error_set(err, -EOPNOTSUPP, NULL, "'%s' is not implemented for a PostgreSQL store yet", what);
}

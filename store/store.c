/* store.c - opening the SQLite database, migrating its schema, and the helpers
 * every store file uses (statement cache, transactions, ids, argument checks).
 * Not for: queue logic (jobs.c), catalog rows (catalog.c), blobs (blobs.c),
 * the change notifier (changes.c). */
#include "store/internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "common/fileio.h"

/* Migrations, applied in order by PRAGMA user_version; each runs in one
 * transaction together with the version bump, so a crash mid-way leaves the
 * previous version intact and a re-run is safe. Never edit a shipped entry:
 * append a new one. */
static const char *const migrations[] = {
        /* 1: bookkeeping */
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;",

        /* 2: datasets, models, jobs, events, checkpoints, idempotency keys, blobs */
        "CREATE TABLE blobs ("
        "  sha256 TEXT PRIMARY KEY,"
        "  size INTEGER NOT NULL,"
        "  created_at INTEGER NOT NULL,"
        "  touched_at INTEGER NOT NULL"
        ") STRICT, WITHOUT ROWID;"
        "CREATE TABLE datasets ("
        "  seq INTEGER PRIMARY KEY,"
        "  id TEXT NOT NULL UNIQUE,"
        "  name TEXT NOT NULL,"
        "  format TEXT NOT NULL,"
        "  sha256 TEXT NOT NULL REFERENCES blobs(sha256),"
        "  size INTEGER NOT NULL,"
        "  schema_json TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL"
        ") STRICT;"
        "CREATE INDEX datasets_sha256 ON datasets(sha256);"
        "CREATE TABLE models ("
        "  seq INTEGER PRIMARY KEY,"
        "  id TEXT NOT NULL UNIQUE,"
        "  name TEXT NOT NULL,"
        "  spec_json TEXT NOT NULL,"
        "  weights_sha256 TEXT REFERENCES blobs(sha256),"
        "  source TEXT NOT NULL CHECK (source IN ('preset', 'upload', 'job')),"
        "  source_job_id TEXT,"
        "  created_at INTEGER NOT NULL"
        ") STRICT;"
        "CREATE INDEX models_weights ON models(weights_sha256);"
        "CREATE TABLE jobs ("
        "  seq INTEGER PRIMARY KEY,"
        "  id TEXT NOT NULL UNIQUE,"
        "  spec_json TEXT NOT NULL,"
        "  state TEXT NOT NULL CHECK (state IN"
        "    ('queued', 'running', 'cancelling', 'succeeded', 'failed', 'cancelled')),"
        "  priority INTEGER NOT NULL,"
        "  attempt INTEGER NOT NULL,"
        "  max_attempts INTEGER NOT NULL,"
        "  lease_owner TEXT,"
        "  lease_expires_at INTEGER,"
        "  model_id TEXT NOT NULL,"
        "  training_file TEXT NOT NULL,"
        "  validation_file TEXT,"
        "  result_model_id TEXT,"
        "  progress_json TEXT NOT NULL,"
        "  result_json TEXT NOT NULL,"
        "  error_json TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL,"
        "  started_at INTEGER,"
        "  finished_at INTEGER"
        ") STRICT;"
        "CREATE INDEX jobs_claim ON jobs(state, priority DESC, seq);"
        "CREATE INDEX jobs_state_seq ON jobs(state, seq);"
        "CREATE INDEX jobs_lease ON jobs(state, lease_expires_at);"
        "CREATE INDEX jobs_active_model ON jobs(model_id) WHERE state IN ('queued', 'running', 'cancelling');"
        "CREATE INDEX jobs_active_train ON jobs(training_file)"
        "  WHERE state IN ('queued', 'running', 'cancelling');"
        "CREATE INDEX jobs_active_valid ON jobs(validation_file)"
        "  WHERE state IN ('queued', 'running', 'cancelling');"
        "CREATE TABLE events ("
        "  job_id TEXT NOT NULL REFERENCES jobs(id),"
        "  seq INTEGER NOT NULL,"
        "  type TEXT NOT NULL,"
        "  data_json TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL,"
        "  PRIMARY KEY (job_id, seq)"
        ") STRICT, WITHOUT ROWID;"
        "CREATE TABLE checkpoints ("
        "  id INTEGER PRIMARY KEY,"
        "  job_id TEXT NOT NULL REFERENCES jobs(id),"
        "  attempt INTEGER NOT NULL,"
        "  epoch INTEGER NOT NULL,"
        "  step INTEGER NOT NULL,"
        "  dir TEXT NOT NULL,"
        "  blob_sha256 TEXT REFERENCES blobs(sha256),"
        "  meta_json TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL"
        ") STRICT;"
        "CREATE INDEX checkpoints_job ON checkpoints(job_id, id);"
        "CREATE INDEX checkpoints_blob ON checkpoints(blob_sha256);"
        "CREATE TABLE idempotency_keys ("
        "  key TEXT PRIMARY KEY,"
        "  request_hash TEXT NOT NULL,"
        "  job_id TEXT NOT NULL REFERENCES jobs(id),"
        "  created_at INTEGER NOT NULL"
        ") STRICT, WITHOUT ROWID;"
        "CREATE INDEX idempotency_created ON idempotency_keys(created_at);",

        /* 3: typed dataset facts, and an IDX pair as one dataset with two files. Until now the labels were a
         * second dataset row ({"labels_only": true}) that the images row's schema named as "labels_dataset":
         * each images row takes its labels row's blob, the labels rows go (orphans too: a labels row whose
         * images were deleted could not be used or deleted), and the typed columns are filled from the schema
         * the upload recorded. */
        "ALTER TABLE datasets ADD COLUMN kind TEXT NOT NULL DEFAULT 'csv' CHECK (kind IN ('csv', 'idx'));"
        "ALTER TABLE datasets ADD COLUMN n_rows INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE datasets ADD COLUMN n_features INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE datasets ADD COLUMN n_classes INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE datasets ADD COLUMN channels INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE datasets ADD COLUMN height INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE datasets ADD COLUMN width INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE datasets ADD COLUMN target TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE datasets ADD COLUMN labels_sha256 TEXT REFERENCES blobs(sha256);"
        "ALTER TABLE datasets ADD COLUMN labels_format TEXT;"
        "ALTER TABLE datasets ADD COLUMN labels_size INTEGER;"
        "CREATE INDEX datasets_labels ON datasets(labels_sha256) WHERE labels_sha256 IS NOT NULL;"
        "UPDATE datasets SET (labels_sha256, labels_format, labels_size) ="
        "  (SELECT l.sha256, l.format, l.size FROM datasets l"
        "   WHERE l.id = json_extract(datasets.schema_json, '$.labels_dataset'))"
        "  WHERE json_valid(schema_json) AND json_type(schema_json, '$.labels_dataset') = 'text';"
        "DELETE FROM datasets WHERE json_valid(schema_json) AND json_type(schema_json, '$.labels_only') = 'true';"
        "UPDATE datasets SET schema_json = json_remove(schema_json, '$.labels_dataset')"
        "  WHERE json_valid(schema_json) AND json_type(schema_json, '$.labels_dataset') IS NOT NULL;"
        "UPDATE datasets SET"
        "  kind = CASE WHEN json_type(schema_json, '$.image_shape') = 'array' THEN 'idx' ELSE 'csv' END,"
        "  n_rows = COALESCE(json_extract(schema_json, '$.rows'), 0),"
        "  n_features = COALESCE(json_extract(schema_json, '$.features'), 0),"
        "  n_classes = COALESCE(json_extract(schema_json, '$.num_classes'), 0),"
        "  channels = COALESCE(json_extract(schema_json, '$.image_shape[0]'), 0),"
        "  height = COALESCE(json_extract(schema_json, '$.image_shape[1]'), 0),"
        "  width = COALESCE(json_extract(schema_json, '$.image_shape[2]'), 0),"
        "  target = COALESCE(json_extract(schema_json, '$.target'), '')"
        "  WHERE json_valid(schema_json);",

        /* 4: what a job leaves behind besides events: the last epoch recorded (resume drops the epochs it
         * re-runs by it, instead of paging the event stream) and the blob of its metrics.json */
        "ALTER TABLE jobs ADD COLUMN last_epoch INTEGER NOT NULL DEFAULT 0;"
        "UPDATE jobs SET last_epoch = COALESCE((SELECT MAX(CAST(json_extract(e.data_json, '$.epoch') AS INTEGER))"
        "  FROM events e WHERE e.job_id = jobs.id AND e.type = 'epoch' AND json_valid(e.data_json)), 0);"
        "ALTER TABLE jobs ADD COLUMN metrics_sha256 TEXT REFERENCES blobs(sha256);"
        "CREATE INDEX jobs_metrics ON jobs(metrics_sha256) WHERE metrics_sha256 IS NOT NULL;",

        /* 5: how many jobs each state holds, kept by triggers in the transaction that changes a job, so a count
         * (the queue cap every submit checks) reads at most six rows however long the queue is */
        "CREATE TABLE job_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL) STRICT, WITHOUT ROWID;"
        "INSERT INTO job_counts (state, n) SELECT s.state, (SELECT COUNT(*) FROM jobs WHERE state = s.state) FROM"
        "  (SELECT 'queued' AS state UNION ALL SELECT 'running' UNION ALL SELECT 'cancelling'"
        "   UNION ALL SELECT 'succeeded' UNION ALL SELECT 'failed' UNION ALL SELECT 'cancelled') AS s;"
        "CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN"
        "  UPDATE job_counts SET n = n + 1 WHERE state = NEW.state; END;"
        "CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN"
        "  UPDATE job_counts SET n = n - 1 WHERE state = OLD.state; END;"
        "CREATE TRIGGER job_counts_update AFTER UPDATE OF state ON jobs WHEN OLD.state <> NEW.state BEGIN"
        "  UPDATE job_counts SET n = n - 1 WHERE state = OLD.state;"
        "  UPDATE job_counts SET n = n + 1 WHERE state = NEW.state; END;",

        /* 6: pause and resume (issue 18). The state 'paused'
         * (the CHECK is widened by migrate_paused_state before this runs), the flag a pause request sets on a
         * running job until its worker has checkpointed, the running time of earlier claims (max_runtime_seconds
         * counts across pauses and restarts), a finished job's reproducibility receipt and the job a replay
         * repeats, its counter row, and the indexes of the jobs that hold their model
         * and datasets: a paused job holds them too. */
        "ALTER TABLE jobs ADD COLUMN pause_requested INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE jobs ADD COLUMN runtime_ms INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE jobs ADD COLUMN receipt_json TEXT NOT NULL DEFAULT 'null';"
        "ALTER TABLE jobs ADD COLUMN replay_of TEXT;"
        "INSERT INTO job_counts (state, n) VALUES ('paused', 0);"
        "DROP INDEX IF EXISTS jobs_active_model;"
        "DROP INDEX IF EXISTS jobs_active_train;"
        "DROP INDEX IF EXISTS jobs_active_valid;"
        "CREATE INDEX jobs_active_model ON jobs(model_id)"
        "  WHERE state IN ('queued', 'running', 'cancelling', 'paused');"
        "CREATE INDEX jobs_active_train ON jobs(training_file)"
        "  WHERE state IN ('queued', 'running', 'cancelling', 'paused');"
        "CREATE INDEX jobs_active_valid ON jobs(validation_file)"
        "  WHERE state IN ('queued', 'running', 'cancelling', 'paused');",
        /* 7 (issue 18): labels on jobs (metadata as shown, plus one row per pair for ?metadata[key]=value lists,
         * read backwards along job_metadata_kv), the suffix of the model a job produces, webhook endpoints and
         * their outbox: one delivery row per (event, endpoint), written in the transaction of the event itself
         * and kept as the delivery log. Plain SQL: event types are a ",a,b," text matched with LIKE. */
        "ALTER TABLE jobs ADD COLUMN metadata_json TEXT NOT NULL DEFAULT '{}';"
        "ALTER TABLE jobs ADD COLUMN suffix TEXT NOT NULL DEFAULT '';"
        "CREATE TABLE job_metadata ("
        "  job_seq INTEGER NOT NULL,"
        "  key TEXT NOT NULL,"
        "  value TEXT NOT NULL,"
        "  PRIMARY KEY (job_seq, key)"
        ") STRICT;"
        "CREATE INDEX job_metadata_kv ON job_metadata(key, value, job_seq);"
        "CREATE TABLE webhook_endpoints ("
        "  seq INTEGER PRIMARY KEY,"
        "  id TEXT NOT NULL UNIQUE,"
        "  url TEXT NOT NULL,"
        "  description TEXT NOT NULL,"
        "  event_types TEXT NOT NULL,"
        "  secret TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL"
        ") STRICT;"
        "CREATE TABLE webhook_deliveries ("
        "  seq INTEGER PRIMARY KEY,"
        "  msg_id TEXT NOT NULL,"
        "  endpoint_id TEXT NOT NULL,"
        "  event_type TEXT NOT NULL,"
        "  job_id TEXT NOT NULL,"
        "  payload TEXT NOT NULL,"
        "  state TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),"
        "  attempts INTEGER NOT NULL,"
        "  next_attempt_at INTEGER NOT NULL,"
        "  last_status INTEGER NOT NULL,"
        "  last_error TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL,"
        "  updated_at INTEGER NOT NULL,"
        "  UNIQUE (endpoint_id, msg_id)"
        ") STRICT;"
        "CREATE INDEX webhook_deliveries_due ON webhook_deliveries(state, next_attempt_at);"
        "CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, seq);"
        "CREATE INDEX webhook_deliveries_done ON webhook_deliveries(updated_at) WHERE state <> 'pending';",
};

static int exec_sql(struct store *s, const char *sql, struct ft_error *err);

/* The migration whose SQL needs the state 'paused' allowed first (1-based, as user_version counts). */
#define MIGRATION_PAUSED 6

/* Widen jobs.state's CHECK by 'paused' in place (SQLite cannot ALTER a CHECK): the documented "simpler
 * procedure" of lang_altertable.html, inside the migration's transaction. Every existing row satisfies the wider
 * constraint, and editing the text keeps whatever columns other migrations added to the table. PostgreSQL would
 * drop and re-add the constraint. */
static int migrate_paused_state(struct store *s, struct ft_error *err) {
        static const char old_check[] = "'cancelled')";
        sqlite3_stmt *st = NULL;
        int version = 0, r;

        r = sqlite3_prepare_v2(s->db, "PRAGMA schema_version", -1, &st, NULL);
        if (r == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
                version = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        if (version <= 0)
                return ft_error_set(err, -EIO, NULL, "database: cannot read the schema version");
        r = exec_sql(s, "PRAGMA writable_schema = ON", err);
        if (r < 0)
                return r;
        r = sqlite3_prepare_v2(s->db,
                               "UPDATE sqlite_schema SET sql = replace(sql, ?1, ?2) WHERE type = 'table' AND"
                               " name = 'jobs' AND instr(sql, ?1) > 0",
                               -1, &st, NULL);
        if (r == SQLITE_OK) {
                sqlite3_bind_text(st, 1, old_check, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, "'cancelled', 'paused')", -1, SQLITE_STATIC);
                r = sqlite3_step(st);
        }
        int changed = r == SQLITE_DONE ? sqlite3_changes(s->db) : -1;
        sqlite3_finalize(st);
        if (changed != 1) {
                exec_sql(s, "PRAGMA writable_schema = OFF", NULL);
                return ft_error_set(err, -EIO, NULL, "database: cannot add the state 'paused' to table jobs");
        }
        char bump[64];
        snprintf(bump, sizeof(bump), "PRAGMA schema_version = %d", version + 1);
        r = exec_sql(s, bump, err);
        int off = exec_sql(s, "PRAGMA writable_schema = OFF", r < 0 ? NULL : err);
        return r < 0 ? r : off;
}

static int exec_sql(struct store *s, const char *sql, struct ft_error *err) {
        char *msg = NULL;
        int r = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
        if (r != SQLITE_OK) {
                ft_error_set(err, -EIO, NULL, "database: %s", msg ? msg : sqlite3_errstr(r));
                sqlite3_free(msg);
                return -EIO;
        }
        return 0;
}

static int read_user_version(struct store *s, int *ret, struct ft_error *err) {
        sqlite3_stmt *st = NULL;
        int r = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
        if (r == SQLITE_OK)
                r = sqlite3_step(st);
        if (r != SQLITE_ROW) {
                ft_error_set(err, -EIO, NULL, "database: %s", sqlite3_errmsg(s->db));
                sqlite3_finalize(st);
                return -EIO;
        }
        *ret = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        return 0;
}

static int migrate(struct store *s, struct ft_error *err) {
        int version, r;

        /* Fast path: an up-to-date database needs no write lock. */
        r = read_user_version(s, &version, err);
        if (r < 0)
                return r;
        if (version == (int)ARRAY_SIZE(migrations)) {
                s->schema_version = version;
                return 0;
        }
        r = exec_sql(s, "BEGIN IMMEDIATE", err);
        if (r < 0)
                return r;
        r = read_user_version(s, &version, err);
        if (r < 0)
                goto fail;
        if (version > (int)ARRAY_SIZE(migrations)) {
                r = ft_error_set(err, -EPROTO, NULL,
                                 "database schema version %d is newer than this finetuned understands (%zu)", version,
                                 ARRAY_SIZE(migrations));
                goto fail;
        }
        for (int v = version; v < (int)ARRAY_SIZE(migrations); v++) {
                char bump[64];
                r = v + 1 == MIGRATION_PAUSED ? migrate_paused_state(s, err) : 0;
                if (r < 0)
                        goto fail;
                r = exec_sql(s, migrations[v], err);
                if (r < 0)
                        goto fail;
                snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", v + 1);
                r = exec_sql(s, bump, err);
                if (r < 0)
                        goto fail;
        }
        r = exec_sql(s, "COMMIT", err);
        if (r < 0)
                goto fail;
        s->schema_version = (int)ARRAY_SIZE(migrations);
        return 0;
fail:
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return r;
}

int store_open(const char *state_dir, struct store **ret, struct ft_error *err) {
        return store_open_with(state_dir, NULL, ret, err);
}

bool store_url_is_pg(const char *url) {
        return url && (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0);
}

bool store_pg_available(void) {
#ifdef HAVE_LIBPQ
        return true;
#else
        return false;
#endif
}

bool store_is_shared(struct store *s) {
        return s->pg != NULL;
}

static int open_pg(const char *state_dir, const struct store_options *opts, struct store **ret, struct ft_error *err) {
#ifdef HAVE_LIBPQ
        struct store *s = calloc(1, sizeof(*s));
        if (!s)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        if (ft_path_join(s->state_dir, sizeof(s->state_dir), state_dir, NULL) < 0 ||
            ft_path_join(s->blob_dir, sizeof(s->blob_dir) - 80, state_dir, "blobs", NULL) < 0 ||
            ft_path_join(s->tmp_dir, sizeof(s->tmp_dir), state_dir, "blobs", "tmp", NULL) < 0) {
                free(s);
                return ft_error_set(err, -ENAMETOOLONG, NULL, "state directory path is too long");
        }
        int r = pg_open(s, opts->url, opts, err);
        if (r < 0) {
                store_close(s);
                return r;
        }
        *ret = s;
        return 0;
#else
        (void)state_dir;
        (void)opts;
        (void)ret;
        return ft_error_set(err, -EOPNOTSUPP, "store",
                            "this finetuned was built without PostgreSQL support (meson option postgresql)");
#endif
}

int store_open_with(const char *state_dir, const struct store_options *opts, struct store **ret, struct ft_error *err) {
        char path[PATH_MAX];
        struct store *s;
        int r;

        if (opts && opts->url && *opts->url) {
                if (!store_url_is_pg(opts->url))
                        return ft_error_set(err, -EINVAL, "store",
                                            "'store' must be a postgresql:// URL (or empty for SQLite in the state"
                                            " directory)");
                return open_pg(state_dir, opts, ret, err);
        }

        if (snprintf(path, sizeof(path), "%s/finetuned.db", state_dir) >= (int)sizeof(path) - 64)
                return ft_error_set(err, -ENAMETOOLONG, NULL, "state directory path is too long");
        s = calloc(1, sizeof(*s));
        if (!s)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        snprintf(s->state_dir, sizeof(s->state_dir), "%s", state_dir);
        snprintf(s->blob_dir, sizeof(s->blob_dir), "%s/blobs", state_dir);
        snprintf(s->tmp_dir, sizeof(s->tmp_dir), "%s/blobs/tmp", state_dir);

        r = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
        if (r != SQLITE_OK) {
                r = ft_error_set(err, -EIO, NULL, "cannot open database '%s': %s", path,
                                 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(r));
                goto fail;
        }
        sqlite3_extended_result_codes(s->db, 1);
        sqlite3_busy_timeout(s->db, opts && opts->busy_timeout_ms > 0 ? opts->busy_timeout_ms : 10000);

        /* The first statement that reads the file tells us whether it is a
         * database at all; nothing is written before that. */
        char *msg = NULL;
        r = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, &msg);
        if (r != SQLITE_OK) {
                r = ft_error_set(err, -EIO, NULL, "cannot use database '%s': %s", path,
                                 msg ? msg : sqlite3_errmsg(s->db));
                sqlite3_free(msg);
                goto fail;
        }
        /* FULL: in WAL mode every COMMIT fsyncs the WAL, so an acknowledged
         * write survives power loss, not only kill -9 (docs/decisions.md). */
        r = exec_sql(s,
                     opts && opts->relaxed_sync ? "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
                                                : "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
                     err);
        if (r < 0)
                goto fail;
        r = migrate(s, err);
        if (r < 0) {
                char inner[FT_ERROR_MSG_MAX];
                snprintf(inner, sizeof(inner), "%s", err ? err->message : "");
                r = ft_error_set(err, r, NULL, "cannot migrate database '%s': %s", path, inner);
                goto fail;
        }
        r = fileio_mkdir_p(s->tmp_dir, 0755, err);
        if (r < 0)
                goto fail;
        r = notifier_acquire(state_dir, &s->notifier, err);
        if (r < 0)
                goto fail;
        *ret = s;
        return 0;
fail:
        store_close(s);
        return r;
}

void store_close(struct store *s) {
        if (!s)
                return;
        if (s->in_tx)
                store_tx_rollback(s);
        for (size_t i = 0; i < s->n_cache; i++)
                sqlite3_finalize(s->cache[i].st);
        sqlite3_close_v2(s->db);
#ifdef HAVE_LIBPQ
        pg_close(s);
#endif
        notifier_release(s->notifier);
        free(s);
}

int store_schema_version(struct store *s) {
        return s->schema_version;
}

const char *store_state_dir(struct store *s) {
        return s->state_dir;
}

/* ---- helpers shared by the store files -------------------------------------- */

int store_db_error(struct store *s, struct ft_error *err, const char *what) {
        int code = sqlite3_extended_errcode(s->db);
        if ((code & 0xff) == SQLITE_BUSY)
                return ft_error_set(err, -EIO, NULL, "database is busy (%s): %s", what, sqlite3_errmsg(s->db));
        return ft_error_set(err, -EIO, NULL, "database error (%s): %s", what, sqlite3_errmsg(s->db));
}

sqlite3_stmt *store_stmt(struct store *s, const char *sql, struct ft_error *err) {
        for (size_t i = 0; i < s->n_cache; i++)
                if (s->cache[i].sql == sql) {
                        sqlite3_reset(s->cache[i].st);
                        sqlite3_clear_bindings(s->cache[i].st);
                        return s->cache[i].st;
                }
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
                store_db_error(s, err, "prepare");
                return NULL;
        }
        if (s->n_cache < STMT_CACHE_MAX) {
                s->cache[s->n_cache].sql = sql;
                s->cache[s->n_cache].st = st;
                s->n_cache++;
                return st;
        }
        /* Full cache: a programming error (more distinct statements than
         * STMT_CACHE_MAX); refuse rather than leak. */
        sqlite3_finalize(st);
        ft_error_set(err, -ENOSPC, NULL, "statement cache is full");
        return NULL;
}

int store_step_done(struct store *s, sqlite3_stmt *st, struct ft_error *err) {
        int r;
        while ((r = sqlite3_step(st)) == SQLITE_ROW)
                ;
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (r != SQLITE_DONE)
                return store_db_error(s, err, "write");
        return 0;
}

int store_tx_begin(struct store *s, struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(s, "BEGIN IMMEDIATE", err);
        if (!st)
                return -EIO;
        int r = store_step_done(s, st, err);
        if (r < 0)
                return r;
        s->in_tx = true;
        s->n_pending = 0;
        s->pending_overflow = false;
        s->pending_queue = false;
        return 0;
}

int store_tx_commit(struct store *s, struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(s, "COMMIT", err);
        int r = st ? store_step_done(s, st, err) : -EIO;
        if (r < 0) {
                store_tx_rollback(s);
                return r;
        }
        s->in_tx = false;
        if (s->n_pending || s->pending_overflow || s->pending_queue)
                notifier_signal(s->notifier, (const char(*)[STORE_ID_MAX])s->pending, s->n_pending, s->pending_overflow,
                                s->pending_queue);
        s->n_pending = 0;
        return 0;
}

void store_tx_rollback(struct store *s) {
        if (sqlite3_get_autocommit(s->db) == 0)
                sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        s->in_tx = false;
        s->n_pending = 0;
        s->pending_overflow = false;
        s->pending_queue = false;
}

void store_mark_changed(struct store *s, const char *job_id, bool queue) {
        if (queue)
                s->pending_queue = true;
        if (!job_id)
                return;
        for (size_t i = 0; i < s->n_pending; i++)
                if (strcmp(s->pending[i], job_id) == 0)
                        return;
        if (s->n_pending == PENDING_JOBS_MAX) {
                s->pending_overflow = true;
                return;
        }
        snprintf(s->pending[s->n_pending++], STORE_ID_MAX, "%s", job_id);
}

char *store_col_strdup(sqlite3_stmt *st, int i) {
        const unsigned char *t = sqlite3_column_text(st, i);
        return strdup(t ? (const char *)t : "");
}

void store_col_copy(sqlite3_stmt *st, int i, char *buf, size_t size) {
        const unsigned char *t = sqlite3_column_text(st, i);
        snprintf(buf, size, "%s", t ? (const char *)t : "");
}

int store_bind_text(sqlite3_stmt *st, int i, const char *text) {
        if (!text || !*text)
                return sqlite3_bind_null(st, i);
        return sqlite3_bind_text(st, i, text, -1, SQLITE_TRANSIENT);
}

int store_id_new(const char *prefix, char out[STORE_ID_MAX], struct ft_error *err) {
        unsigned char rnd[12];
        size_t got = 0;
        while (got < sizeof(rnd)) {
                ssize_t k = getrandom(rnd + got, sizeof(rnd) - got, 0);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return ft_error_set(err, -errno, NULL, "cannot get random bytes for an id: %s",
                                            strerror(errno));
                }
                got += (size_t)k;
        }
        int n = snprintf(out, STORE_ID_MAX, "%s", prefix);
        for (size_t i = 0; i < sizeof(rnd); i++)
                n += snprintf(out + n, STORE_ID_MAX - (size_t)n, "%02x", rnd[i]);
        return 0;
}

int64_t store_now_ms(void) {
        return ft_now_unix_ms();
}

int store_check_string(const char *param, const char *value, size_t max, bool required, struct ft_error *err) {
        if (!value || !*value) {
                if (required)
                        return ft_error_set(err, -EINVAL, param, "'%s' is required", param);
                return 0;
        }
        if (strnlen(value, max + 1) > max)
                return ft_error_set(err, -EINVAL, param, "'%s' is longer than %zu bytes", param, max);
        return 0;
}

int store_check_json(struct store *s, const char *param, const char *json, bool required, struct ft_error *err) {
        int r = store_check_string(param, json, STORE_JSON_MAX, required, err);
        if (r < 0 || !json || !*json)
                return r;
        sqlite3_stmt *st = store_stmt(s, "SELECT json_valid(?1)", err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, json, -1, SQLITE_STATIC);
        int valid = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1;
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (!valid)
                return ft_error_set(err, -EINVAL, param, "'%s' is not valid JSON", param);
        return 0;
}

int store_page_limit(const struct store_page *page, unsigned *ret, struct ft_error *err) {
        unsigned limit = page ? page->limit : 0;
        if (limit == 0)
                limit = 20;
        if (limit > STORE_PAGE_MAX)
                return ft_error_set(err, -EINVAL, "limit", "'limit' must be between 1 and %d", STORE_PAGE_MAX);
        *ret = limit;
        return 0;
}

int store_cursor_seq(struct store *s, const char *sql, const char *kind, const char *after, int64_t *ret,
                     struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(s, sql, err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, after, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
                *ret = sqlite3_column_int64(st, 0);
                r = 0;
        } else if (r == SQLITE_DONE) {
                r = ft_error_set(err, -ENOENT, "after", "'after' names %s '%.64s', which does not exist", kind, after);
        } else {
                r = store_db_error(s, err, "read cursor");
        }
        sqlite3_reset(st);
        return r;
}

int store_page_rows(struct store *s, sqlite3_stmt *st, unsigned limit, store_row_add_fn add, void *list, bool *ret_more,
                    const char *what, struct ft_error *err) {
        unsigned n = 0;
        int r;
        *ret_more = false;
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
                if (n == limit) {
                        *ret_more = true;
                        return 0;
                }
                r = add(s, st, list, err);
                if (r < 0)
                        return r;
                n++;
        }
        return r == SQLITE_DONE ? 0 : store_db_error(s, err, what);
}

int store_blob_file(struct store *s, const char *sha256, char *buf, size_t size) {
        if (snprintf(buf, size, "%s/%.2s/%s", s->blob_dir, sha256, sha256) >= (int)size)
                return -ENAMETOOLONG;
        return 0;
}

/* test_store.c - the store against a real SQLite file: migrations, catalog
 * rows, pagination and filters, the queue (claim order, leases, fencing,
 * cancel, terminal states, idempotency), events, the change notifier, and
 * several threads claiming 1,000 jobs. Crash and blob tests live in
 * test_store_crash.c and test_store_blobs.c. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "tests/unit/store_fixture.h"

static char *dir;
static struct refs R;

static void sleep_ms(int ms) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
}

static int raw_exec(const char *path, const char *sql) {
        sqlite3 *db;
        if (sqlite3_open(path, &db) != SQLITE_OK)
                return -1;
        int r = sqlite3_exec(db, sql, NULL, NULL, NULL);
        sqlite3_close(db);
        return r == SQLITE_OK ? 0 : -1;
}

static void test_migrations(void) {
        struct ft_error err = {0};
        struct store *s = NULL;
        char *d = tmpdir_make("mig"), path[600];

        ok(store_open(d, &s, &err) == 0, "open on an empty directory creates the database");
        is_int(store_schema_version(s), 7, "empty database migrated to version 7");
        store_close(s);
        s = NULL;
        ok(store_open(d, &s, &err) == 0, "reopen an already migrated database");
        is_int(store_schema_version(s), 7, "still version 7, nothing re-run");
        store_close(s);
        s = NULL;

        /* A database left at version 1 by an older finetuned. */
        char *d1 = tmpdir_make("mig1");
        snprintf(path, sizeof(path), "%s/finetuned.db", d1);
        ok(raw_exec(path, "PRAGMA journal_mode=WAL; CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
                          " STRICT; INSERT INTO meta VALUES ('k', 'v'); PRAGMA user_version = 1;") == 0,
           "made a version 1 database");
        ok(store_open(d1, &s, &err) == 0, "version 1 database opens");
        is_int(store_schema_version(s), 7, "version 1 migrated to 7");
        store_close(s);
        s = NULL;
        sqlite3 *db;
        sqlite3_stmt *st;
        sqlite3_open(path, &db);
        sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'k'", -1, &st, NULL);
        ok(sqlite3_step(st) == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(st, 0), "v") == 0,
           "existing rows kept by the migration");
        sqlite3_finalize(st);
        sqlite3_close(db);

        /* A newer schema is refused, and so is a file that is not a database. */
        ok(raw_exec(path, "PRAGMA user_version = 99") == 0, "bumped to version 99");
        ok(store_open(d1, &s, &err) == -EPROTO, "newer schema refused");
        ok(strstr(err.message, "newer") != NULL, "message says newer: %s", err.message);

        char *d2 = tmpdir_make("mig2");
        snprintf(path, sizeof(path), "%s/finetuned.db", d2);
        FILE *f = fopen(path, "w");
        fputs("this is not a database, and it must survive\n", f);
        fclose(f);
        ok(store_open(d2, &s, &err) < 0, "a non-database file is refused");
        f = fopen(path, "r");
        char line[128] = "";
        ok(fgets(line, sizeof(line), f) && strncmp(line, "this is not a database", 22) == 0, "and left untouched");
        fclose(f);

        tmpdir_remove(d);
        tmpdir_remove(d1);
        tmpdir_remove(d2);
        free(d);
        free(d1);
        free(d2);
}

/* The schema of version 2 as finetuned shipped it (migration 2), with what an older finetuned wrote into it: an
 * IDX pair as two dataset rows (images naming "labels_dataset", a {"labels_only": true} labels row), a labels row
 * whose images were deleted, a CSV dataset, and a job with epoch events. */
static const char v2_schema[] =
        "PRAGMA journal_mode=WAL;"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;"
        "CREATE TABLE blobs (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, created_at INTEGER NOT NULL,"
        "  touched_at INTEGER NOT NULL) STRICT, WITHOUT ROWID;"
        "CREATE TABLE datasets (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,"
        "  format TEXT NOT NULL, sha256 TEXT NOT NULL REFERENCES blobs(sha256), size INTEGER NOT NULL,"
        "  schema_json TEXT NOT NULL, created_at INTEGER NOT NULL) STRICT;"
        "CREATE INDEX datasets_sha256 ON datasets(sha256);"
        "CREATE TABLE models (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,"
        "  spec_json TEXT NOT NULL, weights_sha256 TEXT REFERENCES blobs(sha256),"
        "  source TEXT NOT NULL CHECK (source IN ('preset', 'upload', 'job')), source_job_id TEXT,"
        "  created_at INTEGER NOT NULL) STRICT;"
        "CREATE INDEX models_weights ON models(weights_sha256);"
        "CREATE TABLE jobs (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, spec_json TEXT NOT NULL,"
        "  state TEXT NOT NULL CHECK (state IN"
        "    ('queued', 'running', 'cancelling', 'succeeded', 'failed', 'cancelled')),"
        "  priority INTEGER NOT NULL, attempt INTEGER NOT NULL, max_attempts INTEGER NOT NULL, lease_owner TEXT,"
        "  lease_expires_at INTEGER, model_id TEXT NOT NULL, training_file TEXT NOT NULL, validation_file TEXT,"
        "  result_model_id TEXT, progress_json TEXT NOT NULL, result_json TEXT NOT NULL, error_json TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER) STRICT;"
        "CREATE INDEX jobs_claim ON jobs(state, priority DESC, seq);"
        "CREATE INDEX jobs_state_seq ON jobs(state, seq);"
        "CREATE INDEX jobs_lease ON jobs(state, lease_expires_at);"
        "CREATE TABLE events (job_id TEXT NOT NULL REFERENCES jobs(id), seq INTEGER NOT NULL, type TEXT NOT NULL,"
        "  data_json TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (job_id, seq)) STRICT, WITHOUT ROWID;"
        "CREATE TABLE checkpoints (id INTEGER PRIMARY KEY, job_id TEXT NOT NULL REFERENCES jobs(id),"
        "  attempt INTEGER NOT NULL, epoch INTEGER NOT NULL, step INTEGER NOT NULL, dir TEXT NOT NULL,"
        "  blob_sha256 TEXT REFERENCES blobs(sha256), meta_json TEXT NOT NULL, created_at INTEGER NOT NULL) STRICT;"
        "CREATE TABLE idempotency_keys (key TEXT PRIMARY KEY, request_hash TEXT NOT NULL,"
        "  job_id TEXT NOT NULL REFERENCES jobs(id), created_at INTEGER NOT NULL) STRICT, WITHOUT ROWID;"
        "PRAGMA user_version = 2;"
        "INSERT INTO blobs VALUES"
        "  ('1111111111111111111111111111111111111111111111111111111111111111', 600, 1, 1),"
        "  ('2222222222222222222222222222222222222222222222222222222222222222', 38, 1, 1),"
        "  ('3333333333333333333333333333333333333333333333333333333333333333', 40, 1, 1),"
        "  ('4444444444444444444444444444444444444444444444444444444444444444', 30, 1, 1);"
        "INSERT INTO datasets (id, name, format, sha256, size, schema_json, created_at) VALUES"
        "  ('ds_labels0000000000000000000', 'pair (labels)', 'idx.gz',"
        "   '2222222222222222222222222222222222222222222222222222222222222222', 38, '{\"labels_only\":true}', 1),"
        "  ('ds_images0000000000000000000', 'pair', 'idx',"
        "   '1111111111111111111111111111111111111111111111111111111111111111', 600,"
        "   '{\"format\":\"idx\",\"rows\":50,\"image_shape\":[1,3,4],\"task\":\"classification\",\"num_classes\":3,"
        "     \"classes\":[{\"name\":\"5\",\"count\":10}],\"labels_dataset\":\"ds_labels0000000000000000000\"}', 2),"
        "  ('ds_table00000000000000000000', 'iris.csv', 'csv',"
        "   '3333333333333333333333333333333333333333333333333333333333333333', 40,"
        "   '{\"format\":\"csv\",\"rows\":4,\"features\":2,\"feature_names\":[\"a\",\"b\"],\"target\":\"species\","
        "     \"task\":\"classification\",\"num_classes\":3}', 3),"
        "  ('ds_orphan0000000000000000000', 'gone (labels)', 'idx',"
        "   '4444444444444444444444444444444444444444444444444444444444444444', 30, '{\"labels_only\":true}', 4);"
        "INSERT INTO jobs (id, spec_json, state, priority, attempt, max_attempts, model_id, training_file,"
        "  progress_json, result_json, error_json, created_at) VALUES"
        "  ('job_old000000000000000000000', '{}', 'queued', 0, 1, 3, 'mdl_x', 'ds_table00000000000000000000', '{}',"
        "   'null', 'null', 1);"
        "INSERT INTO events VALUES ('job_old000000000000000000000', 1, 'status', '{\"state\":\"queued\"}', 1),"
        "  ('job_old000000000000000000000', 2, 'epoch', '{\"type\":\"epoch\",\"epoch\":1}', 2),"
        "  ('job_old000000000000000000000', 3, 'epoch', '{\"type\":\"epoch\",\"epoch\":2}', 3),"
        "  ('job_old000000000000000000000', 4, 'checkpoint', '{\"epoch\":2}', 3);";

static void test_migration_v2(void) {
        struct ft_error err = {0};
        struct store *s = NULL;
        struct store_dataset *d = NULL;
        char *d2 = tmpdir_make("mig-v2"), path[600];
        snprintf(path, sizeof(path), "%s/finetuned.db", d2);
        ok(raw_exec(path, v2_schema) == 0, "made a version 2 database with an IDX pair as two datasets");
        ok(store_open(d2, &s, &err) == 0, "it opens (%s)", err.message);
        is_int(s ? store_schema_version(s) : 0, 7, "version 2 migrated to 7");
        if (!s) {
                tmpdir_remove(d2);
                free(d2);
                return;
        }
        ok(store_dataset_get(s, "ds_images0000000000000000000", &d, &err) == 0 && d->facts.kind == STORE_DATASET_IDX &&
                   strcmp(d->labels_sha256, "2222222222222222222222222222222222222222222222222222222222222222") == 0 &&
                   strcmp(d->labels_format, "idx.gz") == 0 && d->labels_size == 38 && strstr(d->labels_path, "2222"),
           "the images dataset took its labels file: one IDX dataset with two files");
        ok(d && d->facts.rows == 50 && d->facts.channels == 1 && d->facts.height == 3 && d->facts.width == 4 &&
                   d->facts.classes == 3 && d->facts.features == 0 && strcmp(d->target, "") == 0,
           "its typed facts come from the schema it was uploaded with");
        ok(d && !strstr(d->schema_json, "labels_dataset") && strstr(d->schema_json, "image_shape"),
           "its schema no longer names a labels dataset: %s", d ? d->schema_json : "");
        store_dataset_free(d);
        d = NULL;
        ok(store_dataset_get(s, "ds_labels0000000000000000000", &d, &err) == -ENOENT, "the labels row is gone");
        ok(store_dataset_get(s, "ds_orphan0000000000000000000", &d, &err) == -ENOENT,
           "and so is a labels row whose images were deleted");
        ok(store_dataset_get(s, "ds_table00000000000000000000", &d, &err) == 0 && d->facts.kind == STORE_DATASET_CSV &&
                   d->facts.rows == 4 && d->facts.features == 2 && d->facts.classes == 3 &&
                   strcmp(d->target, "species") == 0 && !d->labels_sha256[0] && !d->labels_path[0],
           "a CSV dataset: csv, 4 rows, 2 features, 3 classes of 'species', no labels file");
        store_dataset_free(d);
        struct store_dataset_list l = {0};
        ok(store_dataset_list(s, NULL, &l, &err) == 0 && l.n == 2, "two datasets listed (%zu)", l.n);
        store_dataset_list_deinit(&l);
        struct store_job *j = NULL;
        ok(store_job_get(s, "job_old000000000000000000000", &j, &err) == 0 && j->last_epoch == 2 &&
                   !j->metrics_sha256[0],
           "a job's last epoch comes from its epoch events (%lld)", j ? (long long)j->last_epoch : -1LL);
        store_job_free(j);
        int64_t queued = -1, all = -1;
        ok(store_job_count(s, STORE_JOB_STATE_BIT(STORE_JOB_QUEUED), &queued, &err) == 0 && queued == 1 &&
                   store_job_count(s, 0, &all, &err) == 0 && all == 1,
           "migration 5 counted the queued job already there (%lld queued, %lld in all)", (long long)queued,
           (long long)all);
        ok(store_job_pause(s, "job_old000000000000000000000", &j, &err) == 0 && j->state == STORE_JOB_PAUSED,
           "migration 6 widened the state CHECK of an old table: its queued job pauses (%s)", err.message);
        store_job_free(j);
        j = NULL;
        ok(store_job_resume(s, "job_old000000000000000000000", NULL, &err) == 0, "and resumes");
        bool orphan = true, labels = false;
        ok(store_blob_gc(s, 0, NULL, &err) == 0 &&
                   store_blob_exists(s, "4444444444444444444444444444444444444444444444444444444444444444", &orphan,
                                     NULL, &err) == 0 &&
                   !orphan,
           "gc collects the orphan labels row's blob");
        ok(store_blob_exists(s, "2222222222222222222222222222222222222222222222222222222222222222", &labels, NULL,
                             &err) == 0 &&
                   labels,
           "the labels blob stays: the IDX dataset references it");
        store_close(s);
        tmpdir_remove(d2);
        free(d2);
}

/* PostgreSQL: an empty database is migrated to the same version as SQLite's, a second open re-runs nothing,
 * and a newer version is refused. */
static void test_pg_migrations(void) {
        struct ft_error err = {0};
        struct store *s = NULL;
        char *d = tmpdir_make("pgmig");
        ok(fixture_open(d, &s, &err) == 0, "open on an empty database creates the schema (%s)", err.message);
        is_int(store_schema_version(s), 5, "empty database migrated to version 5");
        ok(store_is_shared(s), "the store is the shared (PostgreSQL) one");
        store_close(s);
        s = NULL;
        ok(fixture_open(d, &s, &err) == 0, "reopen an already migrated database");
        is_int(store_schema_version(s), 5, "still version 5, nothing re-run");
        store_close(s);
        s = NULL;
#ifdef HAVE_LIBPQ
        char url[1200];
        fixture_pg_url(d, url, sizeof(url));
        PGconn *c = PQconnectdb(url);
        PQclear(PQexec(c, "UPDATE schema_version SET version = 99"));
        PQfinish(c);
        ok(fixture_open(d, &s, &err) == -EPROTO, "newer schema refused");
        ok(strstr(err.message, "newer") != NULL, "message says newer: %s", err.message);
#endif
        ok(store_open_with(d, &(struct store_options){.url = "mysql://x"}, &s, &err) == -EINVAL,
           "a URL that is not postgresql:// is refused");
        is_str(err.param, "store", "param store");
        tmpdir_remove(d);
        free(d);
}

static void test_catalog(struct store *s) {
        struct ft_error err = {0};
        struct store_dataset *d = NULL;
        char ids[7][STORE_ID_MAX];

        ok(store_dataset_create(s,
                                &(struct store_dataset_new){
                                        .name = "x",
                                        .format = "csv",
                                        .sha256 = "0000000000000000000000000000000000000000000000000000000000000000"},
                                &d, &err) == -ENOENT,
           "dataset on an unknown blob refused");
        is_str(err.param, "sha256", "param names sha256");
        ok(store_dataset_create(s,
                                &(struct store_dataset_new){
                                        .name = "x", .format = "csv", .sha256 = R.sha, .schema_json = "{not json"},
                                &d, &err) == -EINVAL,
           "bad schema JSON refused");
        is_str(err.param, "schema", "param names schema");

        for (int i = 0; i < 7; i++) {
                char name[32];
                snprintf(name, sizeof(name), "set-%d", i);
                d = NULL;
                ok(store_dataset_create(
                           s,
                           &(struct store_dataset_new){
                                   .name = name, .format = "csv", .sha256 = R.sha, .schema_json = "{\"rows\":2}"},
                           &d, &err) == 0,
                   "dataset %d created", i);
                snprintf(ids[i], sizeof(ids[i]), "%s", d->id);
                if (i == 0) {
                        ok(strncmp(d->id, "ds_", 3) == 0 && strlen(d->id) == 27, "id is ds_ + 24 hex: %s", d->id);
                        is_int(d->size, 16, "size taken from the blob");
                        ok(strstr(d->path, R.sha) != NULL && access(d->path, R_OK) == 0, "path is the blob file");
                }
                store_dataset_free(d);
        }
        /* Pages of 3 over the 7 new ones plus the fixture: newest first. */
        struct store_dataset_list l;
        const char *after = NULL;
        int seen = 0, pages = 0;
        bool order_ok = true, more_ok = true;
        do {
                ok(store_dataset_list(s, &(struct store_page){.limit = 3, .after = after}, &l, &err) == 0,
                   "dataset page %d", pages);
                for (size_t i = 0; i < l.n; i++, seen++)
                        if (seen < 7 && strcmp(l.items[i]->id, ids[6 - seen]) != 0)
                                order_ok = false;
                if (l.has_more != (seen < 8))
                        more_ok = false;
                static char cursor[STORE_ID_MAX];
                if (l.n)
                        snprintf(cursor, sizeof(cursor), "%s", l.items[l.n - 1]->id);
                after = cursor;
                bool more = l.has_more;
                store_dataset_list_deinit(&l);
                pages++;
                if (!more)
                        break;
        } while (pages < 10);
        is_int(seen, 8, "all 8 datasets seen once");
        is_int(pages, 3, "in 3 pages");
        ok(order_ok, "newest first");
        ok(more_ok, "has_more true until the last page");
        ok(store_dataset_list(s, &(struct store_page){.limit = 3, .after = "ds_nope"}, &l, &err) == -ENOENT,
           "unknown cursor refused");
        is_str(err.param, "after", "param names after");
        ok(store_dataset_list(s, &(struct store_page){.limit = 101}, &l, &err) == -EINVAL, "limit over 100 refused");

        /* an IDX dataset: two files, one row */
        char lsha[STORE_SHA256_HEX];
        struct store_blob_writer *bw = NULL;
        ok(store_blob_begin(s, 0, &bw, &err) == 0 && store_blob_write(bw, "labels", 6, &err) == 0 &&
                   store_blob_commit(bw, lsha, NULL, &err) == 0,
           "a labels blob");
        struct store_dataset_new idx = {
                .name = "pair",
                .format = "idx",
                .sha256 = R.sha,
                .facts = {.kind = STORE_DATASET_IDX, .rows = 5, .classes = 3, .channels = 1, .height = 3, .width = 4},
                .labels_format = "idx.gz"};
        ok(store_dataset_create(s, &idx, &d, &err) == -EINVAL && strcmp(err.param, "labels") == 0,
           "an IDX dataset without labels refused");
        idx.labels_sha256 = "5555555555555555555555555555555555555555555555555555555555555555";
        ok(store_dataset_create(s, &idx, &d, &err) == -ENOENT && strcmp(err.param, "labels") == 0,
           "an IDX dataset on an unknown labels blob refused");
        idx.labels_sha256 = lsha;
        d = NULL;
        ok(store_dataset_create(s, &idx, &d, &err) == 0 && d->facts.kind == STORE_DATASET_IDX && d->facts.rows == 5 &&
                   d->facts.height == 3 && strcmp(d->labels_sha256, lsha) == 0 && d->labels_size == 6 &&
                   strcmp(d->labels_format, "idx.gz") == 0 && strstr(d->labels_path, lsha) &&
                   access(d->labels_path, R_OK) == 0,
           "an IDX dataset with its labels file and facts (%s)", err.message);
        char idx_id[STORE_ID_MAX];
        snprintf(idx_id, sizeof(idx_id), "%s", d ? d->id : "");
        store_dataset_free(d);
        d = NULL;
        ok(store_dataset_create(
                   s, &(struct store_dataset_new){.name = "t", .format = "csv", .sha256 = R.sha, .labels_sha256 = lsha},
                   &d, &err) == -EINVAL &&
                   strcmp(err.param, "labels") == 0,
           "a CSV dataset with a labels file refused");
        int removed = -1;
        bool there = false;
        ok(store_blob_gc(s, 0, &removed, &err) == 0 && store_blob_exists(s, lsha, &there, NULL, &err) == 0 && there,
           "gc keeps the labels blob while the dataset references it");
        ok(store_dataset_delete(s, idx_id, &err) == 0, "the IDX dataset deleted: one row, one transaction");
        ok(store_blob_gc(s, 0, &removed, &err) == 0 && store_blob_exists(s, lsha, &there, NULL, &err) == 0 && !there,
           "then gc collects its labels blob");

        ok(store_dataset_delete(s, ids[0], &err) == 0, "unused dataset deleted");
        ok(store_dataset_get(s, ids[0], &d, &err) == -ENOENT, "and gone");
        ok(store_dataset_delete(s, ids[0], &err) == -ENOENT, "second delete is -ENOENT");

        struct store_model *m = NULL;
        ok(store_model_create(
                   s,
                   &(struct store_model_new){
                           .name = "w", .spec_json = "{}", .weights_sha256 = R.sha, .source = STORE_MODEL_UPLOAD},
                   &m, &err) == 0,
           "model with weights created");
        ok(m && strncmp(m->id, "mdl_", 4) == 0 && m->source == STORE_MODEL_UPLOAD, "model id and source");
        ok(m && strcmp(m->weights_sha256, R.sha) == 0 && strstr(m->weights_path, R.sha), "weights blob recorded");
        store_model_free(m);
        ok(store_model_create(
                   s,
                   &(struct store_model_new){
                           .name = "w", .spec_json = "{}", .weights_sha256 = "abc", .source = STORE_MODEL_UPLOAD},
                   NULL, &err) == -EINVAL,
           "malformed weights hash refused");
        ok(store_model_create(
                   s,
                   &(struct store_model_new){
                           .name = "w", .spec_json = "{}", .source = STORE_MODEL_JOB, .source_job_id = "job_nope"},
                   NULL, &err) == -ENOENT,
           "model from an unknown job refused");
        struct store_model_list ml;
        ok(store_model_list(s, NULL, &ml, &err) == 0 && ml.n == 2 && !ml.has_more, "two models listed");
        store_model_list_deinit(&ml);
}

static void test_enqueue_and_idempotency(struct store *s) {
        struct ft_error err = {0};
        struct store_job *j = NULL, *j2 = NULL;
        struct store_job_new in = job_new(&R);

        in.model_id = "mdl_nope";
        ok(store_job_enqueue(s, &in, &j, &err) == -ENOENT, "unknown model refused");
        is_str(err.param, "model", "param names model");
        in = job_new(&R);
        in.validation_file = "ds_nope";
        ok(store_job_enqueue(s, &in, &j, &err) == -ENOENT, "unknown validation file refused");
        is_str(err.param, "validation_file", "param names validation_file");
        in = job_new(&R);
        in.spec_json = "[1,";
        ok(store_job_enqueue(s, &in, &j, &err) == -EINVAL, "bad spec JSON refused");
        in = job_new(&R);
        in.max_attempts = 1000;
        ok(store_job_enqueue(s, &in, &j, &err) == -EINVAL, "max_attempts over the limit refused");

        in = job_new(&R);
        in.idempotency_key = "key-1";
        in.request_hash = "hash-a";
        ok(store_job_enqueue(s, &in, &j, &err) == 0, "keyed enqueue creates");
        ok(store_job_enqueue(s, &in, &j2, &err) == 1, "same key and hash returns 1");
        ok(j && j2 && strcmp(j->id, j2->id) == 0, "and the same job");
        store_job_free(j2);
        j2 = NULL;
        ok(j && j->state == STORE_JOB_QUEUED && j->attempt == 0 && j->max_attempts == 3, "queued, attempt 0, 3 tries");
        ok(j && strcmp(j->progress_json, "{}") == 0 && strcmp(j->result_json, "null") == 0, "empty progress/result");
        in.request_hash = "hash-b";
        ok(store_job_enqueue(s, &in, NULL, &err) == -EEXIST, "same key, other request: -EEXIST");
        is_str(err.param, "idempotency_key", "param names idempotency_key");
        int removed = -1;
        ok(store_idempotency_prune(s, 3600 * 1000, &removed, &err) == 0 && removed == 0, "young keys kept");
        sleep_ms(5);
        ok(store_idempotency_prune(s, 1, &removed, &err) == 0 && removed == 1, "old keys pruned");
        ok(store_job_enqueue(s, &in, &j2, &err) == 0 && strcmp(j2->id, j->id) != 0,
           "after pruning the key is free again");
        store_job_free(j2);
        j2 = NULL;

        /* Events: status queued is seq 1. */
        struct store_event_list ev;
        ok(store_event_list(s, j->id, 0, 0, &ev, &err) == 0 && ev.n == 1, "one event after enqueue");
        ok(ev.n == 1 && ev.items[0].seq == 1 && strcmp(ev.items[0].type, "status") == 0 &&
                   strstr(ev.items[0].data_json, "\"queued\""),
           "status queued as seq 1: %s", ev.n ? ev.items[0].data_json : "");
        store_event_list_deinit(&ev);
        ok(store_event_list(s, "job_nope", 0, 0, &ev, &err) == -ENOENT, "events of an unknown job: -ENOENT");

        /* Cancel a queued job: straight to cancelled, and cancelled stays. */
        ok(store_job_cancel(s, j->id, &j2, &err) == 0 && j2->state == STORE_JOB_CANCELLED, "queued -> cancelled");
        ok(j2 && j2->finished_at > 0, "finished_at set");
        store_job_free(j2);
        ok(store_job_cancel(s, j->id, NULL, &err) == -EALREADY, "cancel of a cancelled job: -EALREADY");
        ok(store_event_append(s, j->id, 0, "note", "{}", NULL, &err) == -EALREADY, "no events on a terminal job");
        store_job_free(j);
}

static void drain_queue(struct store *s) {
        struct store_job *j;
        struct ft_error err;
        while (store_job_claim(s, "drain", 60000, &j, &err) == 1) {
                store_job_finish(s, j->id, j->attempt, STORE_JOB_CANCELLED, NULL, NULL, NULL, NULL, &err);
                store_job_free(j);
        }
}

static void test_claim_order_and_lists(struct store *s) {
        struct ft_error err = {0};
        struct store_job *j = NULL;
        char ids[25][STORE_ID_MAX];

        drain_queue(s);
        for (int i = 0; i < 25; i++) {
                struct store_job_new in = job_new(&R);
                in.priority = i == 20 ? 5 : 0; /* one urgent job enqueued late */
                store_job_enqueue(s, &in, &j, &err);
                snprintf(ids[i], sizeof(ids[i]), "%s", j->id);
                store_job_free(j);
        }
        int64_t count = -1;
        ok(store_job_count(s, STORE_JOB_STATE_BIT(STORE_JOB_QUEUED), &count, &err) == 0 && count == 25, "25 queued");
        ok(store_job_claim(s, "w1", 60000, &j, &err) == 1 && strcmp(j->id, ids[20]) == 0,
           "higher priority claimed first");
        ok(j->state == STORE_JOB_RUNNING && j->attempt == 1 && strcmp(j->lease_owner, "w1") == 0 &&
                   j->lease_expires_at > j->started_at,
           "running, attempt 1, leased to w1");
        store_job_free(j);
        for (int i = 0; i < 4; i++) {
                ok(store_job_claim(s, "w1", 60000, &j, &err) == 1 && strcmp(j->id, ids[i]) == 0,
                   "then oldest first (%d)", i);
                store_job_free(j);
        }
        ok(store_job_cancel(s, ids[5], NULL, &err) == 0, "cancel one queued");
        ok(store_job_cancel(s, ids[0], &j, &err) == 0 && j->state == STORE_JOB_CANCELLING, "running -> cancelling");
        store_job_free(j);

        /* Filters and pagination over 19 queued, 4 running, 1 cancelling, 1 cancelled (+ earlier jobs). */
        struct store_job_list l;
        struct store_job_filter queued = {STORE_JOB_STATE_BIT(STORE_JOB_QUEUED)};
        const char *after = NULL;
        char cursor[STORE_ID_MAX];
        int seen = 0, pages = 0;
        bool all_queued = true, order_ok = true;
        int64_t prev_created = INT64_MAX;
        for (;;) {
                if (store_job_list(s, &queued, &(struct store_page){.limit = 5, .after = after}, &l, &err) < 0) {
                        ok(0, "list failed: %s", err.message);
                        break;
                }
                for (size_t i = 0; i < l.n; i++) {
                        if (l.items[i]->state != STORE_JOB_QUEUED)
                                all_queued = false;
                        if (l.items[i]->created_at > prev_created)
                                order_ok = false;
                        prev_created = l.items[i]->created_at;
                }
                seen += (int)l.n;
                pages++;
                if (l.n)
                        snprintf(cursor, sizeof(cursor), "%s", l.items[l.n - 1]->id);
                after = cursor;
                bool more = l.has_more;
                store_job_list_deinit(&l);
                if (!more)
                        break;
        }
        is_int(seen, 19, "19 queued jobs listed");
        is_int(pages, 4, "in 4 pages of 5");
        ok(all_queued, "filter returns only queued");
        ok(order_ok, "newest first");
        struct store_job_filter active = {STORE_JOB_STATE_BIT(STORE_JOB_RUNNING) |
                                          STORE_JOB_STATE_BIT(STORE_JOB_CANCELLING)};
        ok(store_job_list(s, &active, &(struct store_page){.limit = 100}, &l, &err) == 0 && l.n == 5 && !l.has_more,
           "running|cancelling filter: 5");
        store_job_list_deinit(&l);
        ok(store_job_count(s, active.states, &count, &err) == 0 && count == 5, "count agrees");
        ok(store_job_list(s, &(struct store_job_filter){1u << 10}, NULL, &l, &err) == -EINVAL,
           "unknown state bit refused");
        enum store_job_state st;
        ok(store_job_state_from_name("cancelling", &st) == 0 && st == STORE_JOB_CANCELLING, "state names parse");
        ok(store_job_state_from_name("done", &st) == -EINVAL, "unknown state name refused");

        /* A dataset used by a queued job cannot be deleted; the model neither. */
        bool busy = false;
        ok(store_dataset_in_use(s, R.dataset, &busy, &err) == 0 && busy, "dataset in use");
        ok(store_dataset_delete(s, R.dataset, &err) == -EBUSY, "delete of a used dataset: -EBUSY");
        ok(store_model_delete(s, R.model, &err) == -EBUSY, "delete of a used model: -EBUSY");
        drain_queue(s);
        /* the running ones still hold it */
        ok(store_dataset_in_use(s, R.dataset, &busy, &err) == 0 && busy, "still in use by running jobs");
}

static void test_lease_and_fencing(struct store *s) {
        struct ft_error err = {0};
        struct store_job *j = NULL, *j2 = NULL, *cur = NULL;
        struct store_job_new in = job_new(&R);
        bool cancel = true;

        drain_queue(s);
        in.max_attempts = 2;
        store_job_enqueue(s, &in, &j, &err);
        char id[STORE_ID_MAX];
        snprintf(id, sizeof(id), "%s", j->id);
        store_job_free(j);

        ok(store_job_claim(s, "old", 1, &j, &err) == 1 && strcmp(j->id, id) == 0 && j->attempt == 1,
           "claimed with a 1 ms lease");
        ok(store_job_progress_set(s, id, 1, "{\"epoch\":1}", &err) == 0, "attempt 1 writes progress");
        ok(store_checkpoint_add(s, id, 1,
                                &(struct store_checkpoint_new){.epoch = 1, .step = 10, .dir = "jobs/x/ckpt-1"}, NULL,
                                &err) == 0,
           "attempt 1 writes a checkpoint");
        sleep_ms(5);
        int n = -1;
        ok(store_job_requeue_expired(s, &n, &err) == 0 && n >= 1, "expired lease requeued (%d)", n);
        ok(store_job_get(s, id, &cur, &err) == 0 && cur->state == STORE_JOB_QUEUED && cur->attempt == 1 &&
                   cur->lease_owner[0] == 0,
           "queued again, lease cleared");
        store_job_free(cur);
        ok(store_job_heartbeat(s, id, 1, 60000, &cancel, &err) == -ESTALE, "old attempt heartbeat: -ESTALE");
        is_str(err.param, "attempt", "param names attempt");

        ok(store_job_claim(s, "new", 60000, &j2, &err) == 1 && strcmp(j2->id, id) == 0 && j2->attempt == 2,
           "reclaimed with attempt 2");
        ok(strcmp(j2->progress_json, "{\"epoch\":1}") == 0, "progress survives the requeue");
        struct store_checkpoint *c = NULL;
        ok(store_checkpoint_latest(s, id, &c, &err) == 1 && c->epoch == 1 && c->step == 10 && c->attempt == 1 &&
                   strcmp(c->dir, "jobs/x/ckpt-1") == 0,
           "latest checkpoint available to resume from");
        store_checkpoint_free(c);

        ok(store_job_heartbeat(s, id, 1, 60000, NULL, &err) == -ESTALE, "stale heartbeat refused");
        ok(store_job_progress_set(s, id, 1, "{\"epoch\":9}", &err) == -ESTALE, "stale progress refused");
        ok(store_event_append(s, id, 1, "epoch", "{}", NULL, &err) == -ESTALE, "stale event refused");
        ok(store_checkpoint_add(s, id, 1, &(struct store_checkpoint_new){.epoch = 9, .dir = "d"}, NULL, &err) ==
                   -ESTALE,
           "stale checkpoint refused");
        ok(store_job_finish(s, id, 1, STORE_JOB_SUCCEEDED, "{}", NULL, NULL, NULL, &err) == -ESTALE,
           "stale finish refused");
        ok(store_job_release(s, id, 1, &err) == -ESTALE, "stale release refused");

        ok(store_job_heartbeat(s, id, 2, 60000, &cancel, &err) == 0 && !cancel, "current attempt heartbeats");
        int64_t seq = 0;
        ok(store_event_append(s, id, 2, "epoch", "{\"epoch\":2,\"train_loss\":0.5}", &seq, &err) == 0,
           "current attempt appends an event");
        ok(store_job_get(s, id, &cur, &err) == 0 && strcmp(cur->progress_json, "{\"epoch\":1}") == 0,
           "stale writes changed nothing");
        store_job_free(cur);

        /* Lose the lease again: attempt 2 of 2 fails the job with the reason. */
        ok(store_job_heartbeat(s, id, 2, 1, NULL, &err) == 0, "lease shortened to 1 ms");
        sleep_ms(5);
        ok(store_job_requeue_expired(s, &n, &err) == 0 && n == 1, "expired again");
        ok(store_job_get(s, id, &cur, &err) == 0 && cur->state == STORE_JOB_FAILED, "failed after max attempts");
        ok(strstr(cur->error_json, "lease_expired") != NULL, "error says why: %s", cur->error_json);
        store_job_free(cur);
        ok(store_job_finish(s, id, 2, STORE_JOB_SUCCEEDED, "{}", NULL, NULL, NULL, &err) == -ESTALE,
           "a failed job stays failed");

        /* Events tell the story in order with no gaps. */
        struct store_event_list ev;
        ok(store_event_list(s, id, 0, 0, &ev, &err) == 0, "events listed");
        bool gapless = true;
        for (size_t i = 0; i < ev.n; i++)
                if (ev.items[i].seq != (int64_t)i + 1)
                        gapless = false;
        ok(gapless && ev.n == 7, "7 events numbered 1..7 (got %zu)", ev.n);
        ok(ev.n == 7 && strstr(ev.items[3].data_json, "\"lease_expired\"") && strstr(ev.items[6].data_json, "failed"),
           "requeue and failure are status events");
        ok(ev.n == 7 && ev.items[4].seq == seq - 1 && strcmp(ev.items[5].type, "epoch") == 0,
           "the worker event has the seq it was given");
        store_event_list_deinit(&ev);
        ok(store_event_list(s, id, 5, 1, &ev, &err) == 0 && ev.n == 1 && ev.items[0].seq == 6 && ev.has_more,
           "after 5, limit 1: seq 6 and more");
        store_event_list_deinit(&ev);
        store_job_free(j);
        store_job_free(j2);
}

/* Epoch events raise the job's last_epoch in the same transaction; a finished job can reference its
 * metrics.json blob, which gc keeps until the job is deleted. */
static void test_epochs_and_metrics(struct store *s) {
        struct ft_error err = {0};
        struct store_job *j = NULL, *cur = NULL;
        struct store_job_new in = job_new(&R);
        in.priority = 1000;
        ok(store_job_enqueue(s, &in, &j, &err) == 0 && j->last_epoch == 0 && !j->metrics_sha256[0],
           "a new job: last_epoch 0, no metrics blob");
        store_job_free(j);
        j = NULL;
        ok(store_job_claim(s, "w", 60000, &j, &err) == 1 && j->priority == 1000, "claimed");
        if (!j)
                return;
        ok(store_job_epoch_append(s, j->id, j->attempt + 1, 1, "{\"epoch\":1}", NULL, &err) == -ESTALE,
           "a stale epoch refused");
        int64_t seq = 0;
        ok(store_job_epoch_append(s, j->id, j->attempt, 1, "{\"epoch\":1}", NULL, &err) == 0 &&
                   store_job_epoch_append(s, j->id, j->attempt, 2, "{\"epoch\":2}", &seq, &err) == 0 && seq > 0,
           "epochs 1 and 2 appended");
        ok(store_job_epoch_append(s, j->id, j->attempt, 1, "{\"epoch\":1}", NULL, &err) == 0,
           "an earlier epoch again (not the store's to refuse)");
        ok(store_job_get(s, j->id, &cur, &err) == 0 && cur->last_epoch == 2, "last_epoch is the highest, 2");
        store_job_free(cur);
        struct store_event_list ev = {0};
        ok(store_event_list(s, j->id, seq - 1, 1, &ev, &err) == 0 && ev.n == 1 &&
                   strcmp(ev.items[0].type, "epoch") == 0 && strcmp(ev.items[0].data_json, "{\"epoch\":2}") == 0,
           "an epoch event as given");
        store_event_list_deinit(&ev);

        char msha[STORE_SHA256_HEX];
        struct store_blob_writer *bw = NULL;
        ok(store_blob_begin(s, 0, &bw, &err) == 0 && store_blob_write(bw, "{\"metrics\":{}}\n", 15, &err) == 0 &&
                   store_blob_commit(bw, msha, NULL, &err) == 0,
           "a metrics.json blob");
        struct store_job_outcome o = {.state = STORE_JOB_SUCCEEDED,
                                      .result_json = "{}",
                                      .metrics_sha256 =
                                              "6666666666666666666666666666666666666666666666666666666666666666"};
        ok(store_job_finish_with(s, j->id, j->attempt, &o, NULL, &err) == -ENOENT && strcmp(err.param, "metrics") == 0,
           "an unknown metrics blob refused");
        o.metrics_sha256 = msha;
        ok(store_job_finish_with(s, j->id, j->attempt, &o, NULL, &err) == 0, "finished with its metrics blob");
        ok(store_job_get(s, j->id, &cur, &err) == 0 && strcmp(cur->metrics_sha256, msha) == 0 &&
                   cur->state == STORE_JOB_SUCCEEDED,
           "the job references it");
        store_job_free(cur);
        int removed = 0;
        bool there = false;
        ok(store_blob_gc(s, 0, &removed, &err) == 0 && store_blob_exists(s, msha, &there, NULL, &err) == 0 && there,
           "gc keeps it while the job exists");
        ok(store_job_delete(s, j->id, &err) == 0 && store_blob_gc(s, 0, &removed, &err) == 0 &&
                   store_blob_exists(s, msha, &there, NULL, &err) == 0 && !there,
           "and collects it once the job is deleted");
        store_job_free(j);
}

/* checkpoint.keep: recording a checkpoint with keep 2 leaves the job's newest two rows (and its events) */
static void test_checkpoint_keep(struct store *s) {
        struct ft_error err = {0};
        struct store_job *j = NULL;
        struct store_job_new in = job_new(&R);
        drain_queue(s);
        ok(store_job_enqueue(s, &in, &j, &err) == 0, "keep: enqueued (%s)", err.message);
        store_job_free(j);
        j = NULL;
        if (!ok(store_job_claim(s, "w", 60000, &j, &err) == 1, "keep: claimed"))
                return;
        int r = 0;
        for (int e = 1; e <= 4 && r == 0; e++) {
                char cdir[64];
                snprintf(cdir, sizeof(cdir), "jobs/%s/ckpt-%d", j->id, e * 10);
                r = store_checkpoint_add(
                        s, j->id, j->attempt,
                        &(struct store_checkpoint_new){.epoch = e, .step = e * 10, .dir = cdir, .keep = 2}, NULL, &err);
        }
        struct store_checkpoint_list l = {0};
        if (r == 0)
                r = store_checkpoint_list(s, j->id, &(struct store_page){.limit = 10}, &l, &err);
        ok(r == 0 && l.n == 2 && l.items[0]->step == 30 && l.items[1]->step == 40,
           "keep 2: the newest two of 4 checkpoints remain (%zu) (%s)", l.n, err.message);
        store_checkpoint_list_deinit(&l);
        struct store_event_list ev = {0};
        int cks = 0;
        if (store_event_list(s, j->id, 0, 0, &ev, &err) == 0)
                for (size_t i = 0; i < ev.n; i++)
                        cks += strcmp(ev.items[i].type, "checkpoint") == 0;
        store_event_list_deinit(&ev);
        is_int(cks, 4, "keep 2: every checkpoint event stays in the history");
        store_job_free(j);
        drain_queue(s);
}

/* store_event_best: the best value of a field over the epoch events, either way, ties to the earliest epoch,
 * one epoch when asked, only events after a seq, nothing for a field no epoch has as a number */
static void test_event_best(struct store *s) {
        struct ft_error err = {0};
        struct store_job *j = NULL;
        struct store_job_new in = job_new(&R);
        drain_queue(s);
        ok(store_job_enqueue(s, &in, &j, &err) == 0, "best: enqueued (%s)", err.message);
        store_job_free(j);
        j = NULL;
        if (!ok(store_job_claim(s, "w", 60000, &j, &err) == 1, "best: claimed"))
                return;
        struct store_event_best b = {0};
        int r = store_event_best(s, j->id, "val_accuracy", true, 0, 0, &b, &err);
        ok(r == 0 && !b.found && b.last_seq == 2, "best: no epochs yet: none, last seq 2 (%lld)",
           (long long)b.last_seq);
        static const char *const events[] = {
                "{\"epoch\":1,\"val_accuracy\":0.5,\"val_loss\":0.9,\"val_f1\":null}",
                "{\"epoch\":2,\"val_accuracy\":0.75,\"val_loss\":0.4}",
                "{\"epoch\":3,\"val_accuracy\":0.75,\"val_loss\":0.6}",
                "{\"epoch\":4,\"val_accuracy\":0.625,\"val_loss\":0.45,\"val_f1\":\"x\"}",
        };
        for (size_t i = 0; i < ARRAY_SIZE(events) && r == 0; i++)
                r = store_event_append(s, j->id, j->attempt, "epoch", events[i], NULL, &err);
        if (r == 0) /* a bigger number in an event of another type does not count */
                r = store_event_append(s, j->id, j->attempt, "note", "{\"epoch\":9,\"val_accuracy\":1}", NULL, &err);
        ok(r == 0, "best: events appended (%s)", err.message);
        r = store_event_best(s, j->id, "val_accuracy", true, 0, 0, &b, &err);
        ok(r == 0 && b.found && b.value == 0.75 && b.epoch == 2 && b.last_seq == 7,
           "best: highest val_accuracy, the earlier of two equal epochs (%g at %lld, last seq %lld)", b.value,
           (long long)b.epoch, (long long)b.last_seq);
        r = store_event_best(s, j->id, "val_loss", false, 0, 0, &b, &err);
        ok(r == 0 && b.found && b.value == 0.4 && b.epoch == 2, "best: lowest val_loss (%g at %lld)", b.value,
           (long long)b.epoch);
        r = store_event_best(s, j->id, "val_loss", false, 0, 4, &b, &err);
        ok(r == 0 && b.found && b.value == 0.45 && b.epoch == 4, "best: only events after seq 4 (%g at %lld)", b.value,
           (long long)b.epoch);
        r = store_event_best(s, j->id, "val_loss", false, 0, 7, &b, &err);
        ok(r == 0 && !b.found && b.last_seq == 7, "best: nothing after the last seq");
        r = store_event_best(s, j->id, "val_loss", false, 4, 0, &b, &err);
        ok(r == 0 && b.found && b.value == 0.45 && b.epoch == 4, "best: the given epoch only (%g at %lld)", b.value,
           (long long)b.epoch);
        r = store_event_best(s, j->id, "val_loss", false, 7, 0, &b, &err);
        ok(r == 0 && !b.found, "best: an epoch with no event: none");
        r = store_event_best(s, j->id, "val_f1", true, 0, 0, &b, &err);
        ok(r == 0 && !b.found, "best: null and text are not numbers");
        is_int(store_event_best(s, j->id, "val_loss') OR 1 --", false, 0, 0, &b, &err), -EINVAL,
               "best: a field that is not a plain key is refused");
        r = store_event_best(s, "job_000000000000000000000000", "val_loss", false, 0, 0, &b, &err);
        ok(r == 0 && !b.found && b.last_seq == 0, "best: an unknown job has no events");
        store_job_free(j);
        drain_queue(s);
}

static void test_finish_cancel_release(struct store *s) {
        struct ft_error err = {0};
        struct store_job *j = NULL, *cur = NULL;
        struct store_job_new in = job_new(&R);
        char model_id[STORE_ID_MAX] = "x";
        bool cancel = false;

        drain_queue(s);
        store_job_enqueue(s, &in, NULL, &err);
        ok(store_job_claim(s, "w", 60000, &j, &err) == 1, "claimed");
        ok(store_job_release(s, j->id, j->attempt, &err) == 0, "released on shutdown");
        ok(store_job_get(s, j->id, &cur, &err) == 0 && cur->state == STORE_JOB_QUEUED && cur->max_attempts == 4,
           "queued again, the released claim refunded");
        store_job_free(cur);
        store_job_free(j);
        ok(store_job_claim(s, "w", 60000, &j, &err) == 1 && j->attempt == 2, "reclaimed, attempt 2");
        ok(store_job_finish(s, j->id, j->attempt, STORE_JOB_QUEUED, NULL, NULL, NULL, NULL, &err) == -EINVAL,
           "finish to a non-terminal state refused");
        ok(store_job_finish(s, j->id, j->attempt, STORE_JOB_SUCCEEDED, "{\"val_accuracy\":0.9}", NULL,
                            &(struct store_model_new){.name = "tuned", .spec_json = "{}", .weights_sha256 = R.sha},
                            model_id, &err) == 0,
           "finished with a result model");
        ok(store_job_get(s, j->id, &cur, &err) == 0 && cur->state == STORE_JOB_SUCCEEDED &&
                   strcmp(cur->result_model_id, model_id) == 0 && cur->lease_owner[0] == 0 && cur->finished_at > 0,
           "succeeded, result model recorded, lease cleared");
        store_job_free(cur);
        struct store_model *m = NULL;
        ok(store_model_get(s, model_id, &m, &err) == 0 && m->source == STORE_MODEL_JOB &&
                   strcmp(m->source_job_id, j->id) == 0,
           "the model says which job made it");
        store_model_free(m);
        ok(store_job_cancel(s, j->id, NULL, &err) == -EALREADY, "cancel of a succeeded job refused");
        ok(store_job_finish(s, j->id, j->attempt, STORE_JOB_FAILED, NULL, "{}", NULL, NULL, &err) == -ESTALE,
           "a succeeded job cannot finish again");
        store_job_free(j);

        /* Cancel a running job: cancelling, seen on heartbeat, then cancelled. */
        store_job_enqueue(s, &in, NULL, &err);
        store_job_claim(s, "w", 60000, &j, &err);
        ok(store_job_cancel(s, j->id, NULL, &err) == 0, "cancel requested");
        ok(store_job_cancel(s, j->id, &cur, &err) == 0 && cur->state == STORE_JOB_CANCELLING, "twice is fine");
        store_job_free(cur);
        ok(store_job_heartbeat(s, j->id, j->attempt, 60000, &cancel, &err) == 0 && cancel, "heartbeat sees cancel");
        ok(store_job_finish(s, j->id, j->attempt, STORE_JOB_CANCELLED, NULL, NULL, NULL, NULL, &err) == 0,
           "worker finishes as cancelled");
        ok(store_job_get(s, j->id, &cur, &err) == 0 && cur->state == STORE_JOB_CANCELLED, "cancelled");
        store_job_free(cur);
        store_job_free(j);
        /* A cancelling job whose worker died becomes cancelled, not requeued. */
        store_job_enqueue(s, &in, NULL, &err);
        store_job_claim(s, "w", 1, &j, &err);
        store_job_cancel(s, j->id, NULL, &err);
        sleep_ms(5);
        store_job_requeue_expired(s, NULL, &err);
        ok(store_job_get(s, j->id, &cur, &err) == 0 && cur->state == STORE_JOB_CANCELLED,
           "cancelling + lost lease -> cancelled");
        store_job_free(cur);
        store_job_free(j);
}

/* What the PostgreSQL store does not do yet (docs/decisions.md "What the PostgreSQL store does not do yet"):
 * pause, resume, running time and labels answer -EOPNOTSUPP naming themselves, and nothing changes. */
static void test_pg_not_yet(struct store *s) {
        struct ft_error err = {0};
        struct store_job *j = NULL, *cur = NULL;
        struct store_job_new in = job_new(&R);
        drain_queue(s);
        ok(store_job_enqueue(s, &in, &j, &err) == 0 && j, "PostgreSQL: a job (%s)", err.message);
        if (!j)
                return;
        ok(store_job_pause(s, j->id, NULL, &err) == -EOPNOTSUPP && strstr(err.message, "store_job_pause"),
           "PostgreSQL: pause is not there yet: %s", err.message);
        ok(store_job_resume(s, j->id, NULL, &err) == -EOPNOTSUPP, "PostgreSQL: nor resume");
        ok(store_job_runtime_add(s, j->id, 1, 10, &err) == -EOPNOTSUPP, "PostgreSQL: nor the running time");
        struct store_metadata_pair pair = {"team", "vision"};
        struct store_job_new labelled = job_new(&R);
        labelled.metadata = &pair;
        labelled.n_metadata = 1;
        labelled.metadata_json = "{\"team\":\"vision\"}";
        ok(store_job_enqueue(s, &labelled, NULL, &err) == -EOPNOTSUPP && strstr(err.message, "metadata"),
           "PostgreSQL: labels are refused, not dropped: %s", err.message);
        ok(store_job_get(s, j->id, &cur, &err) == 0 && cur->state == STORE_JOB_QUEUED, "and the job is still queued");
        store_job_free(cur);
        store_job_free(j);
        drain_queue(s);
}

/* ---- delete ------------------------------------------------------------------------ */

/* Pause and resume (issue 18): queued pauses at once, running pauses when the worker says its checkpoint is
 * written, resume requeues, a paused job holds its references, cancel of a paused job is immediate. */
static void test_pause_resume(struct store *s) {
        struct ft_error err = {0};
        struct store_job *j = NULL, *cur = NULL;
        struct store_job_new in = job_new(&R);
        struct store_job_signals sig = {0};
        bool used = false;
        int64_t n = -1;

        drain_queue(s);
        store_job_enqueue(s, &in, &j, &err);
        ok(store_job_pause(s, j->id, &cur, &err) == 0 && cur->state == STORE_JOB_PAUSED && !cur->pause_requested,
           "queued -> paused at once");
        store_job_free(cur);
        ok(store_job_claim(s, "w", 60000, &cur, &err) == 0, "a paused job is not claimed");
        ok(store_job_count(s, STORE_JOB_STATE_BIT(STORE_JOB_PAUSED), &n, &err) == 0 && n == 1, "counted as paused");
        ok(store_model_in_use(s, R.model, &used, &err) == 0 && used, "a paused job holds its model");
        ok(store_job_pause(s, j->id, NULL, &err) == 0, "pausing a paused job is fine");
        ok(store_job_resume(s, j->id, &cur, &err) == 0 && cur->state == STORE_JOB_QUEUED, "resume -> queued");
        store_job_free(cur);
        ok(store_job_resume(s, j->id, NULL, &err) == -EALREADY && strstr(err.message, "queued"),
           "resume of a queued job refused (%s)", err.message);
        store_job_free(j);

        ok(store_job_claim(s, "w", 60000, &j, &err) == 1, "claimed");
        ok(store_job_heartbeat_with(s, j->id, j->attempt, 60000, &sig, &err) == 0 && !sig.pause && !sig.cancel,
           "no signal yet");
        ok(store_job_pause(s, j->id, &cur, &err) == 0 && cur->state == STORE_JOB_RUNNING && cur->pause_requested,
           "running: pause requested, still running");
        store_job_free(cur);
        ok(store_job_heartbeat_with(s, j->id, j->attempt, 60000, &sig, &err) == 0 && sig.pause && !sig.cancel,
           "the heartbeat says pause");
        ok(store_job_resume(s, j->id, &cur, &err) == 0 && cur->state == STORE_JOB_RUNNING && !cur->pause_requested,
           "resume before the worker paused withdraws the request");
        store_job_free(cur);
        ok(store_job_heartbeat_with(s, j->id, j->attempt, 60000, &sig, &err) == 0 && !sig.pause, "no pause signal");
        store_job_pause(s, j->id, NULL, &err);
        ok(store_job_runtime_add(s, j->id, j->attempt, 1500, &err) == 0, "running time recorded");
        ok(store_job_pause_done(s, j->id, j->attempt, &err) == 0, "the worker paused");
        ok(store_job_get(s, j->id, &cur, &err) == 0 && cur->state == STORE_JOB_PAUSED && !cur->pause_requested &&
                   cur->lease_owner[0] == '\0' && cur->max_attempts == 4 && cur->runtime_ms == 1500,
           "paused: no lease, flag cleared, the claim refunded, 1.5 s of running time");
        store_job_free(cur);
        ok(store_job_pause_done(s, j->id, j->attempt, &err) == -ESTALE, "the fence holds after the pause");
        ok(store_job_runtime_add(s, j->id, j->attempt, 1, &err) == -ESTALE, "so does the running time");
        ok(store_job_resume(s, j->id, NULL, &err) == 0, "resumed");
        store_job_free(j);
        ok(store_job_claim(s, "w", 60000, &j, &err) == 1 && j->attempt == 2 && j->runtime_ms == 1500,
           "claimed again as attempt 2, its running time kept");
        ok(store_job_pause(s, j->id, NULL, &err) == 0 && store_job_cancel(s, j->id, NULL, &err) == 0,
           "pause, then cancel");
        ok(store_job_pause(s, j->id, NULL, &err) == -EALREADY, "a cancelling job cannot pause");
        ok(store_job_pause_done(s, j->id, j->attempt, &err) == 0 && store_job_get(s, j->id, &cur, &err) == 0 &&
                   cur->state == STORE_JOB_CANCELLED,
           "cancel wins over the pause");
        store_job_free(cur);
        store_job_free(j);

        /* a lease lost while a pause was asked for: requeued with the request, paused right after the resume */
        store_job_enqueue(s, &in, NULL, &err);
        store_job_claim(s, "w", 1, &j, &err);
        store_job_pause(s, j->id, NULL, &err);
        sleep_ms(5);
        store_job_requeue_expired(s, NULL, &err);
        store_job_free(j);
        ok(store_job_claim(s, "w", 60000, &j, &err) == 1 && j->pause_requested, "the pause request survives a requeue");
        store_job_pause_done(s, j->id, j->attempt, &err);
        ok(store_job_cancel(s, j->id, &cur, &err) == 0 && cur->state == STORE_JOB_CANCELLED,
           "paused -> cancelled at once");
        store_job_free(cur);
        ok(store_job_pause(s, j->id, NULL, &err) == -EALREADY, "a cancelled job cannot pause");
        store_job_free(j);
}

static void test_job_delete(struct store *s) {
        struct ft_error err = {0};
        struct store_job *j = NULL, *cur = NULL;
        struct store_job_new in = job_new(&R);
        struct store_blob_writer *bw = NULL;
        struct store_checkpoint *ck = NULL;
        struct store_event_list ev = {0};
        struct store_model *m = NULL;
        char ckpt_sha[STORE_SHA256_HEX] = "", model_id[STORE_ID_MAX] = "", path[4096];
        bool exists = true;
        int removed = 0;

        drain_queue(s);
        in.idempotency_key = "delete-me";
        in.request_hash = "h1";
        ok(store_job_enqueue(s, &in, &j, &err) == 0, "job to delete enqueued with an idempotency key");
        ok(store_job_delete(s, j->id, &err) == -EBUSY && strcmp(err.param, "id") == 0 &&
                   strstr(err.message, "queued") != NULL,
           "delete of a queued job refused: %s", err.message);
        store_job_free(j);
        ok(store_job_claim(s, "w", 60000, &j, &err) == 1, "claimed");
        ok(store_job_delete(s, j->id, &err) == -EBUSY && strstr(err.message, "running") != NULL,
           "delete of a running job refused");
        /* A checkpoint on disk under jobs/<id>/ and one held as a blob. */
        snprintf(path, sizeof(path), "%s/jobs", dir);
        mkdir(path, 0700);
        snprintf(path, sizeof(path), "%s/jobs/%s", dir, j->id);
        mkdir(path, 0700);
        snprintf(path, sizeof(path), "%s/jobs/%s/ckpt-1", dir, j->id);
        mkdir(path, 0700);
        snprintf(path, sizeof(path), "%s/jobs/%s/ckpt-1/state.json", dir, j->id);
        FILE *f = fopen(path, "w");
        if (f) {
                fputs("{}", f);
                fclose(f);
        }
        ok(store_blob_begin(s, 0, &bw, &err) == 0 && store_blob_write(bw, "ckpt-only", 9, &err) == 0 &&
                   store_blob_commit(bw, ckpt_sha, NULL, &err) == 0,
           "checkpoint blob committed");
        ok(store_checkpoint_add(s, j->id, j->attempt, &(struct store_checkpoint_new){.epoch = 1, .dir = "x"}, NULL,
                                &err) == 0 &&
                   store_checkpoint_add(s, j->id, j->attempt,
                                        &(struct store_checkpoint_new){.epoch = 2, .blob_sha256 = ckpt_sha}, NULL,
                                        &err) == 0,
           "checkpoints recorded");
        ok(store_job_cancel(s, j->id, NULL, &err) == 0 && store_job_delete(s, j->id, &err) == -EBUSY &&
                   strstr(err.message, "cancelling") != NULL,
           "delete of a cancelling job refused");
        ok(store_job_finish(s, j->id, j->attempt, STORE_JOB_SUCCEEDED, "{}", NULL,
                            &(struct store_model_new){.name = "kept", .spec_json = "{}", .weights_sha256 = R.sha},
                            model_id, &err) == 0,
           "finished with a model");
        ok(store_job_get(s, j->id, &cur, &err) == 0 && cur->state == STORE_JOB_SUCCEEDED, "finished, still there");
        store_job_free(cur);

        ok(store_job_delete(s, j->id, &err) == 0, "delete of a succeeded job");
        ok(store_job_get(s, j->id, &cur, &err) == -ENOENT, "the job is gone");
        ok(store_event_list(s, j->id, 0, 0, &ev, &err) == -ENOENT, "its events are gone");
        ok(store_checkpoint_latest(s, j->id, &ck, &err) == 0, "its checkpoint rows are gone");
        snprintf(path, sizeof(path), "%s/jobs/%s", dir, j->id);
        ok(access(path, F_OK) < 0 && errno == ENOENT, "its checkpoint directory is gone");
        ok(store_model_get(s, model_id, &m, &err) == 0 && m->source == STORE_MODEL_JOB &&
                   strcmp(m->source_job_id, j->id) == 0 && strcmp(m->weights_sha256, R.sha) == 0,
           "the model it produced stays, naming the job as history");
        store_model_free(m);
        ok(store_job_delete(s, j->id, &err) == -ENOENT && strcmp(err.param, "id") == 0, "a second delete: not found");
        ok(store_job_delete(s, "job_000000000000000000000000", &err) == -ENOENT, "unknown job: not found");
        store_job_free(j);

        /* The idempotency key went with the job: the same key makes a new job. */
        ok(store_job_enqueue(s, &in, &j, &err) == 0, "the key is free again");
        ok(store_job_cancel(s, j->id, NULL, &err) == 0 && store_job_delete(s, j->id, &err) == 0,
           "a cancelled (never run) job deletes");
        store_job_free(j);

        ok(store_blob_gc(s, 0, &removed, &err) == 0, "blob gc");
        ok(store_blob_exists(s, ckpt_sha, &exists, NULL, &err) == 0 && !exists, "the checkpoint's blob is collected");
        ok(store_blob_exists(s, R.sha, &exists, NULL, &err) == 0 && exists, "the model's weights are kept");

        /* A delete interrupted after its commit leaves jobs/<id>/ behind: the sweep removes it, and only it. */
        ok(store_job_enqueue(s, &in, &j, &err) == 0, "a live job");
        char live[1024], stray[1024];
        snprintf(live, sizeof(live), "%s/jobs/%s", dir, j->id);
        snprintf(stray, sizeof(stray), "%s/jobs/job_0123456789abcdef01234567", dir);
        mkdir(live, 0700);
        mkdir(stray, 0700);
        snprintf(path, sizeof(path), "%s/ckpt-3", stray);
        mkdir(path, 0700);
        int swept = -1, rs = store_job_dirs_sweep(s, &swept, &err);
        ok(rs == 0 && swept == 1 && access(stray, F_OK) < 0 && access(live, F_OK) == 0,
           "sweep: the deleted job's directory is removed (%d), the live job's stays", swept);
        ok(store_job_cancel(s, j->id, NULL, &err) == 0 && store_job_delete(s, j->id, &err) == 0, "live job deleted");
        store_job_free(j);
}

/* ---- notifier ---------------------------------------------------------------------- */

struct waiter {
        const char *id;
        uint64_t gen;
        int changed;
        struct store *s;
};

static void *wait_thread(void *p) {
        struct waiter *w = p;
        w->changed = store_job_wait(w->s, w->id, w->gen, 20000, NULL);
        return NULL;
}

static atomic_int callbacks, queue_callbacks;
static void on_change(const char *job_id, void *userdata) {
        (void)userdata;
        if (job_id)
                atomic_fetch_add(&callbacks, 1);
        else
                atomic_fetch_add(&queue_callbacks, 1);
}

static void test_notifier(struct store *s) {
        struct ft_error err = {0};
        struct store *s2 = NULL;
        struct store_job *j = NULL;
        struct store_subscription *sub = NULL;

        drain_queue(s);
        ok(fixture_open(dir, &s2, &err) == 0, "second connection for the waiter");
        ok(store_subscribe(s, on_change, NULL, &sub, &err) == 0, "subscribed");
        struct store_job_new in = job_new(&R);
        store_job_enqueue(s, &in, NULL, &err);
        ok(atomic_load(&callbacks) == 1 && atomic_load(&queue_callbacks) == 1,
           "enqueue: one job and one queue callback");
        ok(store_job_wait(s2, "job_x", store_job_generation(s2, "job_x"), 0, NULL) == 0, "nothing changed: timeout");
        uint64_t qgen = store_queue_generation(s2);
        store_job_claim(s, "w", 60000, &j, &err);

        struct waiter w = {.id = j->id, .gen = store_job_generation(s2, j->id), .s = s2};
        pthread_t t;
        pthread_create(&t, NULL, wait_thread, &w);
        sleep_ms(20); /* let it block (not required for correctness: the generation was read first) */
        store_event_append(s, j->id, j->attempt, "epoch", "{\"epoch\":1}", NULL, &err);
        pthread_join(t, NULL);
        is_int(w.changed, 1, "waiter on another connection woken by the event");
        ok(store_job_generation(s2, j->id) != w.gen, "generation moved");

        store_job_enqueue(s, &in, NULL, &err);
        ok(store_queue_wait(s2, qgen, 0, NULL) == 1, "queue generation moved on enqueue");
        store_unsubscribe(sub);
        int before = atomic_load(&callbacks);
        store_job_finish(s, j->id, j->attempt, STORE_JOB_SUCCEEDED, NULL, NULL, NULL, NULL, &err);
        is_int(atomic_load(&callbacks), before, "no callbacks after unsubscribe");
        store_job_free(j);
        store_close(s2);
}

/* ---- many threads claiming -------------------------------------------------------- */

#define CLAIM_JOBS 1000
#define CLAIM_THREADS 8

struct claimer {
        int index;
        int claimed;
        int errors;
        char (*ids)[STORE_ID_MAX];
        char errmsg[FT_ERROR_MSG_MAX];
};

static atomic_int claim_slot;
static char claimed_ids[CLAIM_JOBS + CLAIM_THREADS][STORE_ID_MAX];

static void *claim_thread(void *p) {
        struct claimer *c = p;
        struct ft_error err = {0};
        struct store *s = NULL;
        char worker[32];
        snprintf(worker, sizeof(worker), "worker-%d", c->index);
        if (fixture_open(dir, &s, &err) < 0) {
                c->errors++;
                snprintf(c->errmsg, sizeof(c->errmsg), "%s", err.message);
                return NULL;
        }
        for (;;) {
                struct store_job *j = NULL;
                int r = store_job_claim(s, worker, 60000, &j, &err);
                if (r < 0) {
                        c->errors++;
                        snprintf(c->errmsg, sizeof(c->errmsg), "%s", err.message);
                        break;
                }
                if (r == 0)
                        break;
                int slot = atomic_fetch_add(&claim_slot, 1);
                if (slot < (int)ARRAY_SIZE(claimed_ids))
                        snprintf(claimed_ids[slot], STORE_ID_MAX, "%s", j->id);
                c->claimed++;
                if (store_job_finish(s, j->id, j->attempt, STORE_JOB_SUCCEEDED, "{}", NULL, NULL, NULL, &err) < 0) {
                        c->errors++;
                        snprintf(c->errmsg, sizeof(c->errmsg), "%s", err.message);
                }
                store_job_free(j);
        }
        store_close(s);
        return NULL;
}

static int cmp_id(const void *a, const void *b) {
        return strcmp(a, b);
}

/* PostgreSQL: a commit by another process (its own connection, as another daemon would) wakes this process's
 * waiters through LISTEN/NOTIFY, for a job and for the queue. */
static void test_pg_cross_process(struct store *s) {
        struct ft_error err = {0};
        struct store_job *j = NULL;
        struct store_job_new in = job_new(&R);
        drain_queue(s);
        ok(store_job_enqueue(s, &in, &j, &err) == 0, "enqueue a job to write to from another process");
        uint64_t gen = store_job_generation(s, j->id), qgen = store_queue_generation(s);
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
                struct store *cs = NULL;
                sleep_ms(300); /* let the parent block first */
                if (fixture_open(dir, &cs, &err) < 0 ||
                    store_event_append(cs, j->id, 0, "note", "{\"from\":\"child\"}", NULL, &err) < 0)
                        _exit(3);
                sleep_ms(300);
                if (store_job_enqueue(cs, &in, NULL, &err) < 0)
                        _exit(4);
                store_close(cs);
                _exit(0);
        }
        uint64_t now = 0;
        ok(store_job_wait(s, j->id, gen, 10000, &now) == 1, "the job's waiter woke for the other process's event");
        struct store_event_list l = {0};
        ok(store_event_list(s, j->id, 0, 0, &l, &err) == 0 && l.n == 2 && strcmp(l.items[1].type, "note") == 0,
           "and finds the event there (%zu events)", l.n);
        store_event_list_deinit(&l);
        ok(store_queue_wait(s, qgen, 10000, NULL) == 1, "the queue's waiter woke for the other process's enqueue");
        int status = 0;
        waitpid(pid, &status, 0);
        ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the other process wrote without errors (%d)", status);
        store_job_free(j);
        drain_queue(s);
}

static void test_concurrent_claims(struct store *s) {
        struct ft_error err = {0};
        struct claimer cl[CLAIM_THREADS] = {0};
        pthread_t t[CLAIM_THREADS];
        struct store_job_new in = job_new(&R);
        int enqueue_errors = 0;

        drain_queue(s);
        for (int i = 0; i < CLAIM_JOBS; i++)
                if (store_job_enqueue(s, &in, NULL, &err) < 0)
                        enqueue_errors++;
        is_int(enqueue_errors, 0, "1000 jobs enqueued");
        for (int i = 0; i < CLAIM_THREADS; i++) {
                cl[i].index = i;
                pthread_create(&t[i], NULL, claim_thread, &cl[i]);
        }
        /* Keep enqueueing a few while they claim, to mix writers. */
        int total = 0, errors = 0;
        for (int i = 0; i < CLAIM_THREADS; i++) {
                pthread_join(t[i], NULL);
                total += cl[i].claimed;
                errors += cl[i].errors;
                if (cl[i].errors)
                        diag("thread %d: %s", i, cl[i].errmsg);
        }
        is_int(errors, 0, "no errors (no SQLITE_BUSY) reached any of %d threads", CLAIM_THREADS);
        is_int(total, CLAIM_JOBS, "1000 claims in total");
        int n = FT_MIN(atomic_load(&claim_slot), (int)ARRAY_SIZE(claimed_ids));
        qsort(claimed_ids, (size_t)n, STORE_ID_MAX, cmp_id);
        int dups = 0;
        for (int i = 1; i < n; i++)
                if (strcmp(claimed_ids[i - 1], claimed_ids[i]) == 0)
                        dups++;
        is_int(dups, 0, "each job claimed exactly once");
        int busy_threads = 0;
        for (int i = 0; i < CLAIM_THREADS; i++)
                busy_threads += cl[i].claimed > 0;
        diag("claims per thread spread over %d threads", busy_threads);
        int64_t left = -1, done = -1;
        store_job_count(s, STORE_JOB_STATE_BIT(STORE_JOB_QUEUED), &left, &err);
        store_job_count(s, STORE_JOB_STATE_BIT(STORE_JOB_SUCCEEDED), &done, &err);
        is_int(left, 0, "queue empty");
        ok(done >= CLAIM_JOBS, "all succeeded (%lld)", (long long)done);
}

/* Group commit: threads enqueueing at once on their own connections share transactions; each caller still gets
 * its own answer: its job (by its spec), a refusal of its own (a missing model) that does not roll back the others,
 * an idempotent replay or a key conflict decided as if the requests had run one by one. */
#define ENQ_THREADS 16
#define ENQ_EACH 40

struct enqueuer {
        int index;
        char dir[600];
        int created, replayed, refused, conflicts, wrong;
        char ids[ENQ_EACH][STORE_ID_MAX];
        char errmsg[FT_ERROR_MSG_MAX + 32];
};

static void *enqueue_thread(void *p) {
        struct enqueuer *e = p;
        struct ft_error err = {0};
        struct store *s = NULL;
        if (fixture_open(e->dir, &s, &err) < 0) {
                e->wrong = ENQ_EACH;
                snprintf(e->errmsg, sizeof(e->errmsg), "%s", err.message);
                return NULL;
        }
        for (int k = 0; k < ENQ_EACH; k++) {
                char spec[128], tag[32], key[32] = "", hash[32] = "";
                snprintf(spec, sizeof(spec), "{\"hyperparameters\":{\"epochs\":1},\"tag\":\"t%d-%d\"}", e->index, k);
                struct store_job_new in = job_new(&R);
                in.spec_json = spec;
                snprintf(tag, sizeof(tag), "\"t%d-%d\"", e->index, k);
                if (k == 0) { /* one key, a different request from every thread: one wins */
                        snprintf(key, sizeof(key), "conflict");
                        snprintf(hash, sizeof(hash), "h%d", e->index);
                } else if (k % 5 == 3) { /* the same request from every thread: one job */
                        snprintf(key, sizeof(key), "shared-%d", k);
                        snprintf(hash, sizeof(hash), "same-%d", k);
                        snprintf(spec, sizeof(spec), "{\"hyperparameters\":{\"epochs\":1},\"tag\":\"shared-%d\"}", k);
                } else if (k % 5 == 4) {
                        in.model_id = "mdl_missing00000000000000000";
                }
                if (key[0]) {
                        in.idempotency_key = key;
                        in.request_hash = hash;
                }
                struct store_job *j = NULL;
                memset(&err, 0, sizeof(err));
                int r = store_job_enqueue(s, &in, &j, &err);
                if (k % 5 == 4 && k != 0) {
                        if (r == -ENOENT && strcmp(err.param, "model") == 0 && !j)
                                e->refused++;
                        else
                                e->wrong++;
                } else if (k == 0 && r == -EEXIST) {
                        if (strcmp(err.param, "idempotency_key") == 0 && !j)
                                e->conflicts++;
                        else
                                e->wrong++;
                } else if (r == 0 || r == 1) {
                        if (!j || !strstr(j->spec_json, k % 5 == 3 ? "shared-" : tag) || j->state != STORE_JOB_QUEUED ||
                            (r == 1 && k % 5 != 3))
                                e->wrong++;
                        else if (r == 1)
                                e->replayed++;
                        else
                                e->created++;
                        if (j)
                                snprintf(e->ids[k], STORE_ID_MAX, "%s", j->id);
                } else {
                        e->wrong++;
                        snprintf(e->errmsg, sizeof(e->errmsg), "k=%d: %d %s", k, r, err.message);
                }
                store_job_free(j);
        }
        store_close(s);
        return NULL;
}

static void test_concurrent_enqueue(void) {
        struct ft_error err = {0};
        struct store *s = NULL;
        char *d = tmpdir_make("enq");
        struct refs saved = R;
        struct enqueuer *e = calloc(ENQ_THREADS, sizeof(*e));
        pthread_t t[ENQ_THREADS];
        if (fixture_open(d, &s, &err) < 0) {
                ok(0, "open: %s", err.message);
                return;
        }
        refs_make(s, &R);
        for (int i = 0; i < ENQ_THREADS; i++) {
                e[i].index = i;
                snprintf(e[i].dir, sizeof(e[i].dir), "%s", d);
                pthread_create(&t[i], NULL, enqueue_thread, &e[i]);
        }
        int created = 0, replayed = 0, refused = 0, conflicts = 0, wrong = 0;
        for (int i = 0; i < ENQ_THREADS; i++) {
                pthread_join(t[i], NULL);
                created += e[i].created;
                replayed += e[i].replayed;
                refused += e[i].refused;
                conflicts += e[i].conflicts;
                wrong += e[i].wrong;
                if (e[i].wrong)
                        diag("thread %d: %d wrong answers (%s)", i, e[i].wrong, e[i].errmsg);
        }
        int shared_keys = ENQ_EACH / 5; /* k = 3, 8, ... */
        is_int(wrong, 0, "every concurrent enqueue got its own right answer");
        is_int(refused, ENQ_THREADS * (ENQ_EACH / 5), "each missing model refused alone");
        is_int(conflicts, ENQ_THREADS - 1, "one key, %d different requests: one job, the others -EEXIST", ENQ_THREADS);
        is_int(replayed, (ENQ_THREADS - 1) * shared_keys, "the same keyed request from every thread replays");
        int64_t n = -1;
        int rc = store_job_count(s, 0, &n, &err);
        ok(rc == 0 && n == created, "%d jobs created, %lld in the table", created, (long long)n);
        /* every id handed out is a job with exactly one event (its "queued" status), and the replays name the
         * job of the first request */
        int bad = 0;
        for (int i = 0; i < ENQ_THREADS; i++)
                for (int k = 1; k < ENQ_EACH; k++) {
                        if (k % 5 == 4)
                                continue;
                        struct store_event_list ev = {0};
                        if (store_event_list(s, e[i].ids[k], 0, 10, &ev, &err) < 0 || ev.n != 1 ||
                            strcmp(ev.items[0].type, "status") != 0)
                                bad++;
                        store_event_list_deinit(&ev);
                        if (k % 5 == 3 && strcmp(e[i].ids[k], e[0].ids[k]) != 0)
                                bad++;
                }
        is_int(bad, 0, "each job has its one status event; replays name one job per key");
        free(e);
        store_close(s);
        R = saved;
        tmpdir_remove(d);
        free(d);
}

/* Several processes (each its own connection, as several daemons on one
 * SQLite file would be) and this one claim 400 jobs: each exactly once. */
#define PROC_JOBS 400
#define PROCS 3

static void test_process_claims(struct store *s) {
        struct ft_error err = {0};
        struct store_job_new in = job_new(&R);
        static char ids[PROC_JOBS * 2][STORE_ID_MAX];
        int n = 0, fds[PROCS], errors = 0;
        pid_t pids[PROCS];

        drain_queue(s);
        for (int i = 0; i < PROC_JOBS; i++)
                if (store_job_enqueue(s, &in, NULL, &err) < 0)
                        errors++;
        fflush(stdout);
        for (int p = 0; p < PROCS; p++) {
                int pfd[2];
                if (pipe(pfd) < 0)
                        exit(2);
                pids[p] = fork();
                if (pids[p] == 0) {
                        struct store *cs = NULL;
                        struct store_job *j;
                        close(pfd[0]);
                        FILE *out = fdopen(pfd[1], "w");
                        if (fixture_open(dir, &cs, &err) < 0)
                                _exit(3);
                        int r;
                        while ((r = store_job_claim(cs, "proc", 60000, &j, &err)) == 1) {
                                fprintf(out, "%s\n", j->id);
                                store_job_free(j);
                        }
                        fclose(out);
                        store_close(cs);
                        _exit(r < 0 ? 4 : 0);
                }
                close(pfd[1]);
                fds[p] = pfd[0];
        }
        struct store_job *j;
        int r;
        while ((r = store_job_claim(s, "parent", 60000, &j, &err)) == 1) {
                if (n < (int)ARRAY_SIZE(ids))
                        snprintf(ids[n++], STORE_ID_MAX, "%s", j->id);
                store_job_free(j);
        }
        if (r < 0)
                errors++;
        for (int p = 0; p < PROCS; p++) {
                FILE *in_f = fdopen(fds[p], "r");
                char line[64];
                while (fgets(line, sizeof(line), in_f))
                        if (n < (int)ARRAY_SIZE(ids)) {
                                line[strcspn(line, "\n")] = 0;
                                snprintf(ids[n++], STORE_ID_MAX, "%.31s", line);
                        }
                fclose(in_f);
                int status = 0;
                waitpid(pids[p], &status, 0);
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        errors++;
        }
        is_int(errors, 0, "%d processes + this one claimed without errors", PROCS);
        is_int(n, PROC_JOBS, "400 claims across processes");
        qsort(ids, (size_t)n, STORE_ID_MAX, cmp_id);
        int dups = 0;
        for (int i = 1; i < n; i++)
                dups += strcmp(ids[i - 1], ids[i]) == 0;
        is_int(dups, 0, "each claimed exactly once across processes");
}

int main(void) {
        struct ft_error err = {0};
        struct store *s = NULL;

        if (fixture_is_pg()) { /* the SQLite file's own migrations; PostgreSQL's are test_pg_migrations */
                test_pg_migrations();
        } else {
                test_migrations();
                test_migration_v2();
        }

        dir = tmpdir_make("store");
        if (fixture_open(dir, &s, &err) < 0) {
                printf("Bail out! %s\n", err.message);
                return 1;
        }
        refs_make(s, &R);
        test_catalog(s);
        test_enqueue_and_idempotency(s);
        test_claim_order_and_lists(s);
        test_lease_and_fencing(s);
        test_finish_cancel_release(s);
        if (fixture_is_pg())
                test_pg_not_yet(s);
        else
                test_pause_resume(s);
        test_checkpoint_keep(s);
        test_epochs_and_metrics(s);
        test_event_best(s);
        test_job_delete(s);
        test_notifier(s);
        if (fixture_is_pg())
                test_pg_cross_process(s);
        test_concurrent_claims(s);
        test_concurrent_enqueue();
        test_process_claims(s);
        store_close(s);
        tmpdir_remove(dir);
        free(dir);
        return tap_done();
}

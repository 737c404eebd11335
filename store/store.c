/* store.c - opening the SQLite database and migrating its schema.
 * Not for: queue logic or blobs (they get their own files). */
#include "store/store.h"

#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

struct store {
        sqlite3 *db;
        int schema_version;
};

/* Migrations, applied in order by PRAGMA user_version; each runs in one
 * transaction together with the version bump, so a crash mid-way leaves the
 * previous version intact and a re-run is safe. */
static const char *const migrations[] = {
        /* 1: bookkeeping */
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;",
};

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
        r = exec_sql(s, "BEGIN IMMEDIATE", err);
        if (r < 0)
                return r;
        r = read_user_version(s, &version, err);
        if (r < 0)
                goto fail;
        if (version > (int)ARRAY_SIZE(migrations)) {
                r = ft_error_set(err, -EPROTO, NULL,
                                 "database schema version %d is newer than this finetuned understands (%zu)",
                                 version, ARRAY_SIZE(migrations));
                goto fail;
        }
        for (int v = version; v < (int)ARRAY_SIZE(migrations); v++) {
                char bump[64];
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
        char path[4096];
        struct store *s;
        int r;

        if (snprintf(path, sizeof(path), "%s/finetuned.db", state_dir) >= (int)sizeof(path))
                return ft_error_set(err, -ENAMETOOLONG, NULL, "state directory path is too long");
        s = calloc(1, sizeof(*s));
        if (!s)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");

        r = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                            NULL);
        if (r != SQLITE_OK) {
                r = ft_error_set(err, -EIO, NULL, "cannot open database '%s': %s", path,
                                 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(r));
                goto fail;
        }
        sqlite3_extended_result_codes(s->db, 1);
        sqlite3_busy_timeout(s->db, 5000);

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
        r = exec_sql(s, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", err);
        if (r < 0)
                goto fail;
        r = migrate(s, err);
        if (r < 0) {
                char inner[FT_ERROR_MSG_MAX];
                snprintf(inner, sizeof(inner), "%s", err ? err->message : "");
                r = ft_error_set(err, r, NULL, "cannot migrate database '%s': %s", path, inner);
                goto fail;
        }
        *ret = s;
        return 0;
fail:
        store_close(s);
        return r;
}

void store_close(struct store *s) {
        if (!s)
                return;
        sqlite3_close_v2(s->db);
        free(s);
}

int store_schema_version(struct store *s) {
        return s->schema_version;
}

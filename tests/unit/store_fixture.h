/* store_fixture.h - helpers shared by the store tests: a temporary state
 * directory, and a dataset + model to point jobs at. Header-only. */
#pragma once

#include <errno.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "tests/tap.h"

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
        (void)sb;
        (void)flag;
        (void)ftw;
        return remove(path);
}

__attribute__((unused)) static void tmpdir_remove(const char *dir) {
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory under $TMPDIR, else /dev/shm (the logic tests do not need
 * a disk, and fsync on a disk shared with parallel builds makes them slow),
 * else /tmp. on_disk: skip /dev/shm (the crash test wants a real file system). */
__attribute__((unused)) static char *tmpdir_make_on(const char *tag, bool on_disk) {
        const char *base = getenv("TMPDIR");
        char tmpl[512];
        if (!base || !*base)
                base = !on_disk && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(tmpl, sizeof(tmpl), "%s/ft-%s-XXXXXX", base, tag);
        char *d = mkdtemp(tmpl);
        if (!d) {
                perror("mkdtemp");
                exit(2);
        }
        return strdup(d);
}

__attribute__((unused)) static char *tmpdir_make(const char *tag) {
        return tmpdir_make_on(tag, false);
}

/* The backend under test: SQLite in the directory, or, when FT_TEST_PG_HOST names the socket directory of a
 * PostgreSQL server (tools/pg-test-server.sh, which tests/pg-run.sh starts around the test), a database of its
 * own for each directory, created on first use, so a test that opens one directory twice gets the same data. */
__attribute__((unused)) static bool fixture_is_pg(void) {
        const char *h = getenv("FT_TEST_PG_HOST");
        return h && *h;
}

#ifdef HAVE_LIBPQ
#include <libpq-fe.h>

__attribute__((unused)) static int fixture_pg_url(const char *dir, char *url, size_t size) {
        const char *host = getenv("FT_TEST_PG_HOST"), *base = strrchr(dir, '/'); /* the database is dir's name */
        char admin[600], sql[300];
        base = base ? base + 1 : dir;
        snprintf(admin, sizeof(admin), "postgresql:///postgres?host=%s", host);
        PGconn *c = PQconnectdb(admin);
        if (PQstatus(c) != CONNECTION_OK) {
                printf("# cannot connect to the test server: %s", PQerrorMessage(c));
                PQfinish(c);
                return -1;
        }
        snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\"", base);
        PGresult *res = PQexec(c, sql);
        const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || (code && strcmp(code, "42P04") == 0); /* exists */
        PQclear(res);
        PQfinish(c);
        if (!ok)
                return -1;
        snprintf(url, size, "postgresql:///%s?host=%s", base, host);
        return 0;
}
#endif

/* store_open_with on the backend under test; PostgreSQL: the database of db_dir (NULL: dir), so two state
 * directories can share one database as two daemons would. */
__attribute__((unused)) static int fixture_open_sharing(const char *dir, const char *db_dir, struct store_options opts,
                                                        struct store **ret, struct ft_error *err) {
#ifdef HAVE_LIBPQ
        char url[1200];
        if (fixture_is_pg()) {
                if (fixture_pg_url(db_dir ? db_dir : dir, url, sizeof(url)) < 0)
                        return ft_error_set(err, -EIO, NULL, "cannot create a test database for '%s'", dir);
                opts.url = url;
        }
#endif
        (void)db_dir;
        return store_open_with(dir, &opts, ret, err);
}

__attribute__((unused)) static int fixture_open_with(const char *dir, struct store_options opts, struct store **ret,
                                                     struct ft_error *err) {
        return fixture_open_sharing(dir, NULL, opts, ret, err);
}

__attribute__((unused)) static int fixture_open(const char *dir, struct store **ret, struct ft_error *err) {
        return fixture_open_with(dir, (struct store_options){0}, ret, err);
}

struct refs {
        char dataset[STORE_ID_MAX];
        char model[STORE_ID_MAX];
        char sha[STORE_SHA256_HEX];
};

/* A blob, a dataset on it and a preset model; bails out on failure. */
__attribute__((unused)) static void refs_make(struct store *s, struct refs *ret) {
        struct ft_error err = {0};
        struct store_blob_writer *w;
        struct store_dataset *d = NULL;
        struct store_model *m = NULL;
        static const char csv[] = "x,label\n1,0\n2,1\n";
        if (store_blob_begin(s, 0, &w, &err) < 0 || store_blob_write(w, csv, sizeof(csv) - 1, &err) < 0 ||
            store_blob_commit(w, ret->sha, NULL, &err) < 0)
                goto fail;
        if (store_dataset_create(s,
                                 &(struct store_dataset_new){.name = "tiny.csv", .format = "csv", .sha256 = ret->sha},
                                 &d, &err) < 0)
                goto fail;
        if (store_model_create(s,
                               &(struct store_model_new){.name = "mlp",
                                                         .spec_json = "{\"preset\":\"mlp\"}",
                                                         .source = STORE_MODEL_PRESET},
                               &m, &err) < 0)
                goto fail;
        snprintf(ret->dataset, sizeof(ret->dataset), "%s", d->id);
        snprintf(ret->model, sizeof(ret->model), "%s", m->id);
        store_dataset_free(d);
        store_model_free(m);
        return;
fail:
        printf("Bail out! cannot make fixtures: %s\n", err.message);
        exit(1);
}

__attribute__((unused)) static struct store_job_new job_new(const struct refs *r) {
        return (struct store_job_new){
                .spec_json = "{\"hyperparameters\":{\"epochs\":1}}",
                .model_id = r->model,
                .training_file = r->dataset,
        };
}

/* pg_catalog.c - dataset and model rows on PostgreSQL: the twins of catalog.c,
 * same checks, same errors. Not for: the files (pg_blobs.c), jobs (pg_jobs.c). */
#include "store/internal.h"

#include <stdio.h>
#include <string.h>

#define ACTIVE_STATES "('queued', 'running', 'cancelling')"
#define DATASET_COLS                                                                                                   \
        "id, name, format, sha256, size, schema_json, created_at, kind, n_rows, n_features, n_classes, channels, "     \
        "height, width, target, labels_sha256, labels_format, labels_size"
#define MODEL_COLS "id, name, spec_json, weights_sha256, source, source_job_id, created_at"

static int dataset_from_row(struct store *s, PGresult *res, int i, struct store_dataset **ret, struct ft_error *err) {
        char path[PATH_MAX];
        struct store_dataset *d = calloc(1, sizeof(*d));
        if (!d)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        pg_copy(res, i, 0, d->id, sizeof(d->id));
        d->name = pg_strdup(res, i, 1);
        d->format = pg_strdup(res, i, 2);
        pg_copy(res, i, 3, d->sha256, sizeof(d->sha256));
        d->size = pg_int(res, i, 4);
        d->schema_json = pg_strdup(res, i, 5);
        d->created_at = pg_int(res, i, 6);
        d->facts.kind = strcmp(PQgetvalue(res, i, 7), "idx") == 0 ? STORE_DATASET_IDX : STORE_DATASET_CSV;
        d->facts.rows = pg_int(res, i, 8);
        d->facts.features = pg_int(res, i, 9);
        d->facts.classes = pg_int(res, i, 10);
        d->facts.channels = pg_int(res, i, 11);
        d->facts.height = pg_int(res, i, 12);
        d->facts.width = pg_int(res, i, 13);
        d->target = pg_strdup(res, i, 14);
        pg_copy(res, i, 15, d->labels_sha256, sizeof(d->labels_sha256));
        d->labels_format = pg_strdup(res, i, 16);
        d->labels_size = pg_int(res, i, 17);
        /* the local cache paths (pg_blobs.c fills them on store_blob_path) */
        if (store_blob_file(s, d->sha256, path, sizeof(path)) < 0)
                path[0] = '\0';
        d->path = strdup(path);
        if (!d->labels_sha256[0] || store_blob_file(s, d->labels_sha256, path, sizeof(path)) < 0)
                path[0] = '\0';
        d->labels_path = strdup(path);
        if (!d->name || !d->format || !d->schema_json || !d->path || !d->target || !d->labels_format ||
            !d->labels_path) {
                store_dataset_free(d);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        *ret = d;
        return 0;
}

int pg_dataset_get(struct store *s, const char *id, struct store_dataset **ret, struct ft_error *err) {
        PGresult *res;
        struct pg_args a = {0};
        pg_arg_str(&a, id);
        int r = pg_query(s, &res, err, "read dataset", "SELECT " DATASET_COLS " FROM datasets WHERE id = $1", &a);
        if (r < 0)
                return r;
        struct store_dataset *d = NULL;
        if (PQntuples(res) == 1)
                r = dataset_from_row(s, res, 0, &d, err);
        else
                r = ft_error_set(err, -ENOENT, "id", "dataset '%.64s' does not exist", id ? id : "");
        PQclear(res);
        /* the files are in the database: make sure the paths the record names exist here (the local cache) */
        char path[PATH_MAX];
        if (r == 0)
                r = pg_blob_path(s, d->sha256, path, sizeof(path), err);
        if (r == 0 && d->labels_sha256[0])
                r = pg_blob_path(s, d->labels_sha256, path, sizeof(path), err);
        if (r < 0) {
                store_dataset_free(d);
                return r;
        }
        *ret = d;
        return 0;
}

static int blob_known(struct store *s, const char *sha, const char *param, struct ft_error *err) {
        PGresult *res;
        struct pg_args a = {0};
        pg_arg_str(&a, sha);
        /* FOR SHARE: a concurrent gc cannot delete the blob before this transaction commits its reference */
        int r = pg_query(s, &res, err, "look up a blob", "SELECT 1 FROM blobs WHERE sha256 = $1 FOR SHARE", &a);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                r = ft_error_set(err, -ENOENT, param, "blob '%s' does not exist", sha);
        PQclear(res);
        return r;
}

int pg_dataset_create(struct store *s, const struct store_dataset_new *in, struct store_dataset **ret,
                      struct ft_error *err) {
        char id[STORE_ID_MAX];
        struct store_dataset *d = NULL;
        int r;

        bool idx = in->facts.kind == STORE_DATASET_IDX;
        if ((r = store_check_string("name", in->name, STORE_NAME_MAX, true, err)) < 0 ||
            (r = store_check_string("format", in->format, 32, true, err)) < 0 ||
            (r = store_check_json(s, "schema", in->schema_json, false, err)) < 0 ||
            (r = store_check_string("target", in->target, STORE_NAME_MAX, false, err)) < 0 ||
            (r = store_check_string("labels_format", in->labels_format, 32, false, err)) < 0)
                return r;
        if (!sha256_hex_valid(in->sha256))
                return ft_error_set(err, -EINVAL, "sha256", "'sha256' must be 64 lowercase hex digits");
        if (in->facts.kind != STORE_DATASET_CSV && in->facts.kind != STORE_DATASET_IDX)
                return ft_error_set(err, -EINVAL, "kind", "'kind' is not a known dataset kind");
        if (idx != (in->labels_sha256 && *in->labels_sha256))
                return ft_error_set(err, -EINVAL, "labels",
                                    idx ? "an IDX dataset needs its labels file"
                                        : "only an IDX dataset has a labels file");
        if (idx && !sha256_hex_valid(in->labels_sha256))
                return ft_error_set(err, -EINVAL, "labels", "'labels' must be 64 lowercase hex digits");
        if (in->facts.rows < 0 || in->facts.features < 0 || in->facts.classes < 0 || in->facts.channels < 0 ||
            in->facts.height < 0 || in->facts.width < 0)
                return ft_error_set(err, -EINVAL, "facts", "dataset facts must not be negative");
        r = store_id_new("ds_", id, err);
        if (r < 0)
                return r;
        r = pg_tx_begin(s, err);
        if (r < 0)
                return r;
        r = blob_known(s, in->sha256, "sha256", err);
        if (r == 0 && idx)
                r = blob_known(s, in->labels_sha256, "labels", err);
        if (r < 0)
                goto fail;
        struct pg_args a = {0};
        pg_arg_str(&a, id);
        pg_arg_str(&a, in->name);
        pg_arg_str(&a, in->format);
        pg_arg_str(&a, in->schema_json && *in->schema_json ? in->schema_json : "{}");
        pg_arg_int(&a, store_now_ms());
        pg_arg_str(&a, in->sha256);
        pg_arg_str(&a, store_dataset_kind_name(in->facts.kind));
        pg_arg_int(&a, in->facts.rows);
        pg_arg_int(&a, in->facts.features);
        pg_arg_int(&a, in->facts.classes);
        pg_arg_int(&a, in->facts.channels);
        pg_arg_int(&a, in->facts.height);
        pg_arg_int(&a, in->facts.width);
        pg_arg_str(&a, in->target ? in->target : "");
        pg_arg_text(&a, idx ? in->labels_sha256 : NULL);
        pg_arg_text(&a, idx ? (in->labels_format && *in->labels_format ? in->labels_format : "idx") : NULL);
        r = pg_exec(s, err, "create dataset",
                    "INSERT INTO datasets (id, name, format, sha256, size, schema_json, created_at,"
                    " kind, n_rows, n_features, n_classes, channels, height, width, target,"
                    " labels_sha256, labels_format, labels_size)"
                    " SELECT $1, $2, $3, sha256, size, $4, $5, $7, $8, $9, $10, $11, $12, $13, $14,"
                    " $15, $16, (SELECT size FROM blobs WHERE sha256 = $15)"
                    " FROM blobs WHERE sha256 = $6",
                    &a);
        if (r < 0)
                goto fail;
        if (ret) {
                r = pg_dataset_get(s, id, &d, err);
                if (r < 0)
                        goto fail;
        }
        r = pg_tx_commit(s, err);
        if (r < 0) {
                store_dataset_free(d);
                return r;
        }
        if (ret)
                *ret = d;
        return 0;
fail:
        pg_tx_rollback(s);
        return r;
}

/* A page of rows after the cursor's seq (newest first): "SELECT cols FROM t WHERE seq < $1 ORDER BY seq DESC
 * LIMIT $2". */
static int list_page(struct store *s, const char *table, const char *kind, const char *cols,
                     const struct store_page *page, void ***items, size_t *n, bool *more,
                     int (*from_row)(struct store *, PGresult *, int, void **, struct ft_error *),
                     struct ft_error *err) {
        char sql[512];
        unsigned limit;
        int64_t after = INT64_MAX;
        PGresult *res;
        struct pg_args a = {0};
        int r = store_page_limit(page, &limit, err);
        if (r < 0)
                return r;
        if (page && page->after && *page->after) {
                snprintf(sql, sizeof(sql), "SELECT seq FROM %s WHERE id = $1", table);
                pg_arg_str(&a, page->after);
                r = pg_query(s, &res, err, "read cursor", sql, &a);
                if (r < 0)
                        return r;
                if (PQntuples(res) == 0) {
                        PQclear(res);
                        return ft_error_set(err, -ENOENT, "after", "'after' names %s '%.64s', which does not exist",
                                            kind, page->after);
                }
                after = pg_int(res, 0, 0);
                PQclear(res);
        }
        a = (struct pg_args){0};
        pg_arg_int(&a, after);
        pg_arg_int(&a, (int64_t)limit + 1);
        snprintf(sql, sizeof(sql), "SELECT %s FROM %s WHERE seq < $1 ORDER BY seq DESC LIMIT $2", cols, table);
        r = pg_query(s, &res, err, "list", sql, &a);
        if (r < 0)
                return r;
        int rows = PQntuples(res);
        *items = calloc(limit, sizeof(void *));
        if (!*items) {
                PQclear(res);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        *n = 0;
        *more = rows > (int)limit;
        for (int i = 0; i < rows && i < (int)limit; i++) {
                r = from_row(s, res, i, &(*items)[i], err);
                if (r < 0)
                        break;
                (*n)++;
        }
        PQclear(res);
        return r;
}

static int dataset_row(struct store *s, PGresult *res, int i, void **slot, struct ft_error *err) {
        return dataset_from_row(s, res, i, (struct store_dataset **)slot, err);
}

int pg_dataset_list(struct store *s, const struct store_page *page, struct store_dataset_list *ret,
                    struct ft_error *err) {
        struct store_dataset_list l = {0};
        int r = list_page(s, "datasets", "dataset", DATASET_COLS, page, (void ***)&l.items, &l.n, &l.has_more,
                          dataset_row, err);
        if (r < 0) {
                store_dataset_list_deinit(&l);
                return r;
        }
        *ret = l;
        return 0;
}

static const char dataset_in_use_sql[] =
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE training_file = $1 AND state IN " ACTIVE_STATES ")"
        " OR EXISTS (SELECT 1 FROM jobs WHERE validation_file = $1 AND state IN " ACTIVE_STATES ")";
static const char model_in_use_sql[] =
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE model_id = $1 AND state IN " ACTIVE_STATES ")";

static int in_use(struct store *s, const char *sql, const char *id, bool *ret, struct ft_error *err) {
        PGresult *res;
        struct pg_args a = {0};
        pg_arg_str(&a, id);
        int r = pg_query(s, &res, err, "check references", sql, &a);
        if (r < 0)
                return r;
        *ret = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        return 0;
}

int pg_dataset_in_use(struct store *s, const char *id, bool *ret, struct ft_error *err) {
        return in_use(s, dataset_in_use_sql, id ? id : "", ret, err);
}

int pg_model_in_use(struct store *s, const char *id, bool *ret, struct ft_error *err) {
        return in_use(s, model_in_use_sql, id ? id : "", ret, err);
}

/* The row is locked first (FOR UPDATE), so a job enqueued concurrently either commits before (and the check sees
 * it) or waits on the lock its reference check takes (FOR SHARE in pg_jobs.c) and then finds the row gone. */
static int delete_row(struct store *s, const char *kind, const char *lock_sql, const char *in_use_sql,
                      const char *delete_sql, const char *id, struct ft_error *err) {
        bool busy = false;
        PGresult *res;
        struct pg_args a = {0};
        pg_arg_str(&a, id);
        int r = pg_tx_begin(s, err);
        if (r < 0)
                return r;
        r = pg_query(s, &res, err, "lock row", lock_sql, &a);
        if (r < 0)
                goto fail;
        int found = PQntuples(res);
        PQclear(res);
        if (!found) {
                r = ft_error_set(err, -ENOENT, "id", "%s '%.64s' does not exist", kind, id);
                goto fail;
        }
        r = in_use(s, in_use_sql, id, &busy, err);
        if (r < 0)
                goto fail;
        if (busy) {
                r = ft_error_set(err, -EBUSY, "id", "%s '%.64s' is used by a queued or running job", kind, id);
                goto fail;
        }
        r = pg_exec(s, err, "delete", delete_sql, &a);
        if (r < 0)
                goto fail;
        return pg_tx_commit(s, err);
fail:
        pg_tx_rollback(s);
        return r;
}

int pg_dataset_delete(struct store *s, const char *id, struct ft_error *err) {
        return delete_row(s, "dataset", "SELECT 1 FROM datasets WHERE id = $1 FOR UPDATE", dataset_in_use_sql,
                          "DELETE FROM datasets WHERE id = $1", id ? id : "", err);
}

/* ---- models ------------------------------------------------------------------- */

static int model_from_row(struct store *s, PGresult *res, int i, struct store_model **ret, struct ft_error *err) {
        char path[PATH_MAX] = "";
        struct store_model *m = calloc(1, sizeof(*m));
        if (!m)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        pg_copy(res, i, 0, m->id, sizeof(m->id));
        m->name = pg_strdup(res, i, 1);
        m->spec_json = pg_strdup(res, i, 2);
        pg_copy(res, i, 3, m->weights_sha256, sizeof(m->weights_sha256));
        const char *src = PQgetvalue(res, i, 4);
        m->source = strcmp(src, "preset") == 0   ? STORE_MODEL_PRESET
                    : strcmp(src, "upload") == 0 ? STORE_MODEL_UPLOAD
                                                 : STORE_MODEL_JOB;
        pg_copy(res, i, 5, m->source_job_id, sizeof(m->source_job_id));
        m->created_at = pg_int(res, i, 6);
        if (m->weights_sha256[0] && store_blob_file(s, m->weights_sha256, path, sizeof(path)) < 0)
                path[0] = '\0';
        m->weights_path = strdup(path);
        if (!m->name || !m->spec_json || !m->weights_path) {
                store_model_free(m);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        *ret = m;
        return 0;
}

int pg_model_get(struct store *s, const char *id, struct store_model **ret, struct ft_error *err) {
        PGresult *res;
        struct pg_args a = {0};
        pg_arg_str(&a, id);
        int r = pg_query(s, &res, err, "read model", "SELECT " MODEL_COLS " FROM models WHERE id = $1", &a);
        if (r < 0)
                return r;
        struct store_model *m = NULL;
        if (PQntuples(res) == 1)
                r = model_from_row(s, res, 0, &m, err);
        else
                r = ft_error_set(err, -ENOENT, "id", "model '%.64s' does not exist", id ? id : "");
        PQclear(res);
        char path[PATH_MAX];
        if (r == 0 && m->weights_sha256[0])
                r = pg_blob_path(s, m->weights_sha256, path, sizeof(path), err);
        if (r < 0) {
                store_model_free(m);
                return r;
        }
        *ret = m;
        return 0;
}

int pg_model_insert(struct store *s, const struct store_model_new *in, char id[STORE_ID_MAX], struct ft_error *err) {
        int r;
        if ((r = store_check_string("name", in->name, STORE_NAME_MAX, true, err)) < 0 ||
            (r = store_check_json(s, "spec", in->spec_json, true, err)) < 0)
                return r;
        if (in->source != STORE_MODEL_PRESET && in->source != STORE_MODEL_UPLOAD && in->source != STORE_MODEL_JOB)
                return ft_error_set(err, -EINVAL, "source", "'source' is not a known model source");
        if (in->weights_sha256 && *in->weights_sha256) {
                if (!sha256_hex_valid(in->weights_sha256))
                        return ft_error_set(err, -EINVAL, "weights", "'weights' must be 64 lowercase hex digits");
                r = blob_known(s, in->weights_sha256, "weights", err);
                if (r < 0)
                        return r;
        }
        if (in->source == STORE_MODEL_JOB) {
                if (!in->source_job_id || !*in->source_job_id)
                        return ft_error_set(err, -EINVAL, "source_job_id", "'source_job_id' is required");
                PGresult *res;
                struct pg_args a = {0};
                pg_arg_str(&a, in->source_job_id);
                r = pg_query(s, &res, err, "read", "SELECT 1 FROM jobs WHERE id = $1", &a);
                if (r < 0)
                        return r;
                int found = PQntuples(res);
                PQclear(res);
                if (!found)
                        return ft_error_set(err, -ENOENT, "source_job_id", "job '%.64s' does not exist",
                                            in->source_job_id);
        }
        r = store_id_new("mdl_", id, err);
        if (r < 0)
                return r;
        struct pg_args a = {0};
        pg_arg_str(&a, id);
        pg_arg_str(&a, in->name);
        pg_arg_str(&a, in->spec_json);
        pg_arg_text(&a, in->weights_sha256);
        pg_arg_str(&a, store_model_source_name(in->source));
        pg_arg_text(&a, in->source == STORE_MODEL_JOB ? in->source_job_id : NULL);
        pg_arg_int(&a, store_now_ms());
        return pg_exec(s, err, "create model",
                       "INSERT INTO models (id, name, spec_json, weights_sha256, source, source_job_id, created_at)"
                       " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                       &a);
}

int pg_model_create(struct store *s, const struct store_model_new *in, struct store_model **ret, struct ft_error *err) {
        char id[STORE_ID_MAX];
        struct store_model *m = NULL;
        int r = pg_tx_begin(s, err);
        if (r < 0)
                return r;
        r = pg_model_insert(s, in, id, err);
        if (r == 0 && ret)
                r = pg_model_get(s, id, &m, err);
        if (r < 0)
                goto fail;
        r = pg_tx_commit(s, err);
        if (r < 0) {
                store_model_free(m);
                return r;
        }
        if (ret)
                *ret = m;
        return 0;
fail:
        pg_tx_rollback(s);
        return r;
}

static int model_row(struct store *s, PGresult *res, int i, void **slot, struct ft_error *err) {
        return model_from_row(s, res, i, (struct store_model **)slot, err);
}

int pg_model_list(struct store *s, const struct store_page *page, struct store_model_list *ret, struct ft_error *err) {
        struct store_model_list l = {0};
        int r = list_page(s, "models", "model", MODEL_COLS, page, (void ***)&l.items, &l.n, &l.has_more, model_row,
                          err);
        if (r < 0) {
                store_model_list_deinit(&l);
                return r;
        }
        *ret = l;
        return 0;
}

int pg_model_delete(struct store *s, const char *id, struct ft_error *err) {
        return delete_row(s, "model", "SELECT 1 FROM models WHERE id = $1 FOR UPDATE", model_in_use_sql,
                          "DELETE FROM models WHERE id = $1", id ? id : "", err);
}

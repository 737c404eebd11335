/* catalog.c - dataset and model rows: create, get, list with a cursor, delete
 * (refused while a queued or running job uses them). Not for: the files
 * themselves (blobs.c) or jobs (jobs.c). */
#include "store/internal.h"

#include <stdio.h>
#include <string.h>

#define ACTIVE_STATES "('queued', 'running', 'cancelling', 'paused')"

/* ---- datasets --------------------------------------------------------------- */

#define DATASET_COLS                                                                                                   \
        "id, name, format, sha256, size, schema_json, created_at, kind, n_rows, n_features, n_classes, channels, "     \
        "height, width, target, labels_sha256, labels_format, labels_size"

const char *store_dataset_kind_name(enum store_dataset_kind kind) {
        return kind == STORE_DATASET_IDX ? "idx" : "csv";
}

void store_dataset_free(struct store_dataset *d) {
        if (!d)
                return;
        free(d->name);
        free(d->format);
        free(d->path);
        free(d->schema_json);
        free(d->target);
        free(d->labels_format);
        free(d->labels_path);
        free(d);
}

static int dataset_from_row(struct store *s, sqlite3_stmt *st, struct store_dataset **ret, struct ft_error *err) {
        char path[PATH_MAX];
        struct store_dataset *d = calloc(1, sizeof(*d));
        if (!d)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        store_col_copy(st, 0, d->id, sizeof(d->id));
        d->name = store_col_strdup(st, 1);
        d->format = store_col_strdup(st, 2);
        store_col_copy(st, 3, d->sha256, sizeof(d->sha256));
        d->size = sqlite3_column_int64(st, 4);
        d->schema_json = store_col_strdup(st, 5);
        d->created_at = sqlite3_column_int64(st, 6);
        const char *kind = (const char *)sqlite3_column_text(st, 7);
        d->facts.kind = kind && strcmp(kind, "idx") == 0 ? STORE_DATASET_IDX : STORE_DATASET_CSV;
        d->facts.rows = sqlite3_column_int64(st, 8);
        d->facts.features = sqlite3_column_int64(st, 9);
        d->facts.classes = sqlite3_column_int64(st, 10);
        d->facts.channels = sqlite3_column_int64(st, 11);
        d->facts.height = sqlite3_column_int64(st, 12);
        d->facts.width = sqlite3_column_int64(st, 13);
        d->target = store_col_strdup(st, 14);
        store_col_copy(st, 15, d->labels_sha256, sizeof(d->labels_sha256));
        d->labels_format = store_col_strdup(st, 16);
        d->labels_size = sqlite3_column_int64(st, 17);
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

static int dataset_get_locked(struct store *s, const char *id, struct store_dataset **ret, struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(s, "SELECT " DATASET_COLS " FROM datasets WHERE id = ?1", err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW)
                r = dataset_from_row(s, st, ret, err);
        else if (r == SQLITE_DONE)
                r = ft_error_set(err, -ENOENT, "id", "dataset '%.64s' does not exist", id);
        else
                r = store_db_error(s, err, "read dataset");
        sqlite3_reset(st);
        return r;
}

int store_dataset_create(struct store *s, const struct store_dataset_new *in, struct store_dataset **ret,
                         struct ft_error *err) {
        STORE_PG(s, pg_dataset_create(s, in, ret, err));
        char id[STORE_ID_MAX];
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
        r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        if (idx) {
                sqlite3_stmt *q = store_stmt(s, "SELECT 1 FROM blobs WHERE sha256 = ?1", err);
                if (!q) {
                        r = -EIO;
                        goto fail;
                }
                sqlite3_bind_text(q, 1, in->labels_sha256, -1, SQLITE_STATIC);
                r = sqlite3_step(q);
                sqlite3_reset(q);
                if (r != SQLITE_ROW) {
                        r = r == SQLITE_DONE ? ft_error_set(err, -ENOENT, "labels", "blob '%s' does not exist",
                                                            in->labels_sha256)
                                             : store_db_error(s, err, "look up a blob");
                        goto fail;
                }
        }
        sqlite3_stmt *st = store_stmt(s,
                                      "INSERT INTO datasets (id, name, format, sha256, size, schema_json, created_at,"
                                      " kind, n_rows, n_features, n_classes, channels, height, width, target,"
                                      " labels_sha256, labels_format, labels_size)"
                                      " SELECT ?1, ?2, ?3, sha256, size, ?4, ?5, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
                                      " ?15, ?16, (SELECT size FROM blobs WHERE sha256 = ?15)"
                                      " FROM blobs WHERE sha256 = ?6",
                                      err);
        if (!st) {
                r = -EIO;
                goto fail;
        }
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, in->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, in->format, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, in->schema_json && *in->schema_json ? in->schema_json : "{}", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, store_now_ms());
        sqlite3_bind_text(st, 6, in->sha256, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, store_dataset_kind_name(in->facts.kind), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 8, in->facts.rows);
        sqlite3_bind_int64(st, 9, in->facts.features);
        sqlite3_bind_int64(st, 10, in->facts.classes);
        sqlite3_bind_int64(st, 11, in->facts.channels);
        sqlite3_bind_int64(st, 12, in->facts.height);
        sqlite3_bind_int64(st, 13, in->facts.width);
        sqlite3_bind_text(st, 14, in->target ? in->target : "", -1, SQLITE_STATIC);
        store_bind_text(st, 15, idx ? in->labels_sha256 : NULL);
        store_bind_text(st, 16, idx ? (in->labels_format && *in->labels_format ? in->labels_format : "idx") : NULL);
        r = store_step_done(s, st, err);
        if (r < 0)
                goto fail;
        if (sqlite3_changes(s->db) != 1) {
                r = ft_error_set(err, -ENOENT, "sha256", "blob '%s' does not exist", in->sha256);
                goto fail;
        }
        struct store_dataset *d = NULL;
        if (ret) {
                r = dataset_get_locked(s, id, &d, err);
                if (r < 0)
                        goto fail;
        }
        r = store_tx_commit(s, err);
        if (r < 0) {
                store_dataset_free(d);
                return r;
        }
        if (ret)
                *ret = d;
        return 0;
fail:
        store_tx_rollback(s);
        return r;
}

int store_dataset_get(struct store *s, const char *id, struct store_dataset **ret, struct ft_error *err) {
        STORE_PG(s, pg_dataset_get(s, id, ret, err));
        return dataset_get_locked(s, id ? id : "", ret, err);
}

static int dataset_add(struct store *s, sqlite3_stmt *st, void *list, struct ft_error *err) {
        struct store_dataset_list *l = list;
        int r = dataset_from_row(s, st, &l->items[l->n], err);
        if (r == 0)
                l->n++;
        return r;
}

int store_dataset_list(struct store *s, const struct store_page *page, struct store_dataset_list *ret,
                       struct ft_error *err) {
        STORE_PG(s, pg_dataset_list(s, page, ret, err));
        struct store_dataset_list l = {0};
        unsigned limit;
        int64_t after = INT64_MAX;
        int r = store_page_limit(page, &limit, err);
        if (r < 0)
                return r;
        if (page && page->after && *page->after) {
                r = store_cursor_seq(s, "SELECT seq FROM datasets WHERE id = ?1", "dataset", page->after, &after, err);
                if (r < 0)
                        return r;
        }
        sqlite3_stmt *st =
                store_stmt(s, "SELECT " DATASET_COLS " FROM datasets WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2", err);
        if (!st)
                return -EIO;
        sqlite3_bind_int64(st, 1, after);
        sqlite3_bind_int(st, 2, (int)limit + 1);
        l.items = calloc(limit, sizeof(*l.items));
        r = l.items ? store_page_rows(s, st, limit, dataset_add, &l, &l.has_more, "list datasets", err)
                    : ft_error_set(err, -ENOMEM, NULL, "out of memory");
        sqlite3_reset(st);
        if (r < 0) {
                store_dataset_list_deinit(&l);
                return r;
        }
        *ret = l;
        return 0;
}

void store_dataset_list_deinit(struct store_dataset_list *l) {
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++)
                store_dataset_free(l->items[i]);
        free(l->items);
        memset(l, 0, sizeof(*l));
}

static int in_use_locked(struct store *s, const char *sql, const char *id, bool *ret, struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(s, sql, err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
                *ret = sqlite3_column_int(st, 0) != 0;
                r = 0;
        } else {
                r = store_db_error(s, err, "check references");
        }
        sqlite3_reset(st);
        return r;
}

static const char dataset_in_use_sql[] =
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE training_file = ?1 AND state IN " ACTIVE_STATES ")"
        " OR EXISTS (SELECT 1 FROM jobs WHERE validation_file = ?1 AND state IN " ACTIVE_STATES ")";
static const char model_in_use_sql[] =
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE model_id = ?1 AND state IN " ACTIVE_STATES ")";

int store_dataset_in_use(struct store *s, const char *id, bool *ret, struct ft_error *err) {
        STORE_PG(s, pg_dataset_in_use(s, id, ret, err));
        return in_use_locked(s, dataset_in_use_sql, id, ret, err);
}

int store_model_in_use(struct store *s, const char *id, bool *ret, struct ft_error *err) {
        STORE_PG(s, pg_model_in_use(s, id, ret, err));
        return in_use_locked(s, model_in_use_sql, id, ret, err);
}

static int delete_row(struct store *s, const char *kind, const char *in_use_sql, const char *delete_sql, const char *id,
                      struct ft_error *err) {
        bool busy = false;
        int r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        r = in_use_locked(s, in_use_sql, id, &busy, err);
        if (r < 0)
                goto fail;
        if (busy) {
                r = ft_error_set(err, -EBUSY, "id", "%s '%.64s' is used by a queued or running job", kind, id);
                goto fail;
        }
        sqlite3_stmt *st = store_stmt(s, delete_sql, err);
        if (!st) {
                r = -EIO;
                goto fail;
        }
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        r = store_step_done(s, st, err);
        if (r < 0)
                goto fail;
        if (sqlite3_changes(s->db) != 1) {
                r = ft_error_set(err, -ENOENT, "id", "%s '%.64s' does not exist", kind, id);
                goto fail;
        }
        return store_tx_commit(s, err);
fail:
        store_tx_rollback(s);
        return r;
}

int store_dataset_delete(struct store *s, const char *id, struct ft_error *err) {
        STORE_PG(s, pg_dataset_delete(s, id, err));
        return delete_row(s, "dataset", dataset_in_use_sql, "DELETE FROM datasets WHERE id = ?1", id ? id : "", err);
}

/* ---- models ------------------------------------------------------------------- */

#define MODEL_COLS "id, name, spec_json, weights_sha256, source, source_job_id, created_at"

const char *store_model_source_name(enum store_model_source src) {
        switch (src) {
        case STORE_MODEL_PRESET: return "preset";
        case STORE_MODEL_UPLOAD: return "upload";
        case STORE_MODEL_JOB: return "job";
        }
        return "unknown";
}

void store_model_free(struct store_model *m) {
        if (!m)
                return;
        free(m->name);
        free(m->spec_json);
        free(m->weights_path);
        free(m);
}

static int model_from_row(struct store *s, sqlite3_stmt *st, struct store_model **ret, struct ft_error *err) {
        char path[PATH_MAX] = "";
        struct store_model *m = calloc(1, sizeof(*m));
        if (!m)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        store_col_copy(st, 0, m->id, sizeof(m->id));
        m->name = store_col_strdup(st, 1);
        m->spec_json = store_col_strdup(st, 2);
        store_col_copy(st, 3, m->weights_sha256, sizeof(m->weights_sha256));
        const char *src = (const char *)sqlite3_column_text(st, 4);
        m->source = !src || strcmp(src, "preset") == 0 ? STORE_MODEL_PRESET
                    : strcmp(src, "upload") == 0       ? STORE_MODEL_UPLOAD
                                                       : STORE_MODEL_JOB;
        store_col_copy(st, 5, m->source_job_id, sizeof(m->source_job_id));
        m->created_at = sqlite3_column_int64(st, 6);
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

static int model_get_locked(struct store *s, const char *id, struct store_model **ret, struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(s, "SELECT " MODEL_COLS " FROM models WHERE id = ?1", err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW)
                r = model_from_row(s, st, ret, err);
        else if (r == SQLITE_DONE)
                r = ft_error_set(err, -ENOENT, "id", "model '%.64s' does not exist", id);
        else
                r = store_db_error(s, err, "read model");
        sqlite3_reset(st);
        return r;
}

static int exists_locked(struct store *s, const char *sql, const char *key, bool *ret, struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(s, sql, err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW || r == SQLITE_DONE) {
                *ret = r == SQLITE_ROW;
                r = 0;
        } else {
                r = store_db_error(s, err, "read");
        }
        sqlite3_reset(st);
        return r;
}

int store_model_insert(struct store *s, const struct store_model_new *in, char id[STORE_ID_MAX], struct ft_error *err) {
        STORE_PG(s, pg_model_insert(s, in, id, err));
        bool found;
        int r;

        if ((r = store_check_string("name", in->name, STORE_NAME_MAX, true, err)) < 0 ||
            (r = store_check_json(s, "spec", in->spec_json, true, err)) < 0)
                return r;
        if (in->source != STORE_MODEL_PRESET && in->source != STORE_MODEL_UPLOAD && in->source != STORE_MODEL_JOB)
                return ft_error_set(err, -EINVAL, "source", "'source' is not a known model source");
        if (in->weights_sha256 && *in->weights_sha256) {
                if (!sha256_hex_valid(in->weights_sha256))
                        return ft_error_set(err, -EINVAL, "weights", "'weights' must be 64 lowercase hex digits");
                r = exists_locked(s, "SELECT 1 FROM blobs WHERE sha256 = ?1", in->weights_sha256, &found, err);
                if (r < 0)
                        return r;
                if (!found)
                        return ft_error_set(err, -ENOENT, "weights", "blob '%s' does not exist", in->weights_sha256);
        }
        if (in->source == STORE_MODEL_JOB) {
                if (!in->source_job_id || !*in->source_job_id)
                        return ft_error_set(err, -EINVAL, "source_job_id", "'source_job_id' is required");
                r = exists_locked(s, "SELECT 1 FROM jobs WHERE id = ?1", in->source_job_id, &found, err);
                if (r < 0)
                        return r;
                if (!found)
                        return ft_error_set(err, -ENOENT, "source_job_id", "job '%.64s' does not exist",
                                            in->source_job_id);
        }
        r = store_id_new("mdl_", id, err);
        if (r < 0)
                return r;
        sqlite3_stmt *st = store_stmt(s,
                                      "INSERT INTO models (id, name, spec_json, weights_sha256, source, "
                                      "source_job_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                      err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, in->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, in->spec_json, -1, SQLITE_STATIC);
        store_bind_text(st, 4, in->weights_sha256);
        sqlite3_bind_text(st, 5, store_model_source_name(in->source), -1, SQLITE_STATIC);
        store_bind_text(st, 6, in->source == STORE_MODEL_JOB ? in->source_job_id : NULL);
        sqlite3_bind_int64(st, 7, store_now_ms());
        return store_step_done(s, st, err);
}

int store_model_create(struct store *s, const struct store_model_new *in, struct store_model **ret,
                       struct ft_error *err) {
        STORE_PG(s, pg_model_create(s, in, ret, err));
        char id[STORE_ID_MAX];
        struct store_model *m = NULL;
        int r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        r = store_model_insert(s, in, id, err);
        if (r < 0)
                goto fail;
        if (ret) {
                r = model_get_locked(s, id, &m, err);
                if (r < 0)
                        goto fail;
        }
        r = store_tx_commit(s, err);
        if (r < 0) {
                store_model_free(m);
                return r;
        }
        if (ret)
                *ret = m;
        return 0;
fail:
        store_tx_rollback(s);
        return r;
}

int store_model_get(struct store *s, const char *id, struct store_model **ret, struct ft_error *err) {
        STORE_PG(s, pg_model_get(s, id, ret, err));
        return model_get_locked(s, id ? id : "", ret, err);
}

int store_model_find_by_weights(struct store *s, const char *source_job_id, const char *weights_sha256,
                                struct store_model **ret, struct ft_error *err) {
        STORE_PG_UNSUPPORTED(s, "store_model_find_by_weights", err);
        sqlite3_stmt *st = store_stmt(s,
                                      "SELECT " MODEL_COLS " FROM models WHERE weights_sha256 = ?1 AND source = 'job'"
                                      " AND source_job_id = ?2 ORDER BY seq LIMIT 1",
                                      err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, weights_sha256 ? weights_sha256 : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, source_job_id ? source_job_id : "", -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
                r = model_from_row(s, st, ret, err);
                if (r == 0)
                        r = 1;
        } else if (r == SQLITE_DONE) {
                r = 0;
        } else {
                r = store_db_error(s, err, "find model");
        }
        sqlite3_reset(st);
        return r;
}

static int model_add(struct store *s, sqlite3_stmt *st, void *list, struct ft_error *err) {
        struct store_model_list *l = list;
        int r = model_from_row(s, st, &l->items[l->n], err);
        if (r == 0)
                l->n++;
        return r;
}

int store_model_list(struct store *s, const struct store_page *page, struct store_model_list *ret,
                     struct ft_error *err) {
        STORE_PG(s, pg_model_list(s, page, ret, err));
        struct store_model_list l = {0};
        unsigned limit;
        int64_t after = INT64_MAX;
        int r = store_page_limit(page, &limit, err);
        if (r < 0)
                return r;
        if (page && page->after && *page->after) {
                r = store_cursor_seq(s, "SELECT seq FROM models WHERE id = ?1", "model", page->after, &after, err);
                if (r < 0)
                        return r;
        }
        sqlite3_stmt *st =
                store_stmt(s, "SELECT " MODEL_COLS " FROM models WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2", err);
        if (!st)
                return -EIO;
        sqlite3_bind_int64(st, 1, after);
        sqlite3_bind_int(st, 2, (int)limit + 1);
        l.items = calloc(limit, sizeof(*l.items));
        r = l.items ? store_page_rows(s, st, limit, model_add, &l, &l.has_more, "list models", err)
                    : ft_error_set(err, -ENOMEM, NULL, "out of memory");
        sqlite3_reset(st);
        if (r < 0) {
                store_model_list_deinit(&l);
                return r;
        }
        *ret = l;
        return 0;
}

void store_model_list_deinit(struct store_model_list *l) {
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++)
                store_model_free(l->items[i]);
        free(l->items);
        memset(l, 0, sizeof(*l));
}

int store_model_delete(struct store *s, const char *id, struct ft_error *err) {
        STORE_PG(s, pg_model_delete(s, id, err));
        return delete_row(s, "model", model_in_use_sql, "DELETE FROM models WHERE id = ?1", id ? id : "", err);
}

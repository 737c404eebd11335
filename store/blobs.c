/* blobs.c - the content-addressed blob store: streaming writes to a temporary
 * file, hashed on the way, committed by fsync + rename + directory fsync before
 * the row is written; deduplication; garbage collection of blobs nothing
 * references. Not for: what the bytes mean (datasets, weights: catalog.c). */
#include "store/internal.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"

struct store_blob_writer {
        struct store *s;
        struct fileio_writer *w;
        struct sha256_ctx hash;
};

int store_blob_begin(struct store *s, int64_t max_size, struct store_blob_writer **ret, struct ft_error *err) {
        if (max_size < 0)
                return ft_error_set(err, -EINVAL, "max_size", "'max_size' must not be negative");
        struct store_blob_writer *b = calloc(1, sizeof(*b));
        if (!b)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        int r = fileio_writer_new(NULL, s->tmp_dir, 0644, max_size, &b->w, err);
        if (r < 0) {
                free(b);
                return r;
        }
        b->s = s;
        sha256_init(&b->hash);
        *ret = b;
        return 0;
}

int store_blob_write(struct store_blob_writer *b, const void *data, size_t n, struct ft_error *err) {
        int r = fileio_writer_write(b->w, data, n, err);
        if (r < 0)
                return r;
        sha256_update(&b->hash, data, n);
        return 0;
}

int64_t store_blob_written(const struct store_blob_writer *b) {
        return fileio_writer_size(b->w);
}

void store_blob_abort(struct store_blob_writer *b) {
        if (!b)
                return;
        fileio_writer_abort(b->w);
        free(b);
}

/* Inside a transaction: the recorded size of a blob, or -ENOENT. */
static int blob_row_locked(struct store *s, const char *sha, int64_t *ret_size, struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(s, "SELECT size FROM blobs WHERE sha256 = ?1", err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, sha, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
                if (ret_size)
                        *ret_size = sqlite3_column_int64(st, 0);
                r = 0;
        } else if (r == SQLITE_DONE) {
                r = -ENOENT;
        } else {
                r = store_db_error(s, err, "read blob");
        }
        sqlite3_reset(st);
        return r;
}

int store_blob_commit(struct store_blob_writer *b, char ret_sha256[STORE_SHA256_HEX], int64_t *ret_size,
                      struct ft_error *err) {
        struct store *s = b->s;
        uint8_t digest[SHA256_DIGEST_SIZE];
        char sha[SHA256_HEX_SIZE], dir[PATH_MAX], path[PATH_MAX];
        int64_t size = fileio_writer_size(b->w), existing;
        struct stat stbuf;
        int r;

        sha256_final(&b->hash, digest);
        sha256_to_hex(digest, sha);
        if (snprintf(dir, sizeof(dir), "%s/%.2s", s->blob_dir, sha) >= (int)sizeof(dir) ||
            store_blob_file(s, sha, path, sizeof(path)) < 0) {
                r = ft_error_set(err, -ENAMETOOLONG, NULL, "blob path under '%s' is too long", s->blob_dir);
                goto fail_abort;
        }
        /* The slow part (fsync of the data) happens outside the write lock. */
        r = fileio_writer_sync(b->w, err);
        if (r < 0)
                goto fail_abort;
        r = fileio_mkdir_p(dir, 0755, err);
        if (r < 0)
                goto fail_abort;
#ifdef HAVE_LIBPQ
        if (s->pg) {
                /* The local file is the cache entry; the row and the large object come after it (a file without a
                 * row is an orphan store_blob_gc removes). */
                if (stat(path, &stbuf) == 0 && stbuf.st_size == size)
                        fileio_writer_abort(b->w);
                else if ((r = fileio_writer_commit(b->w, path, err)) < 0) {
                        b->w = NULL;
                        goto fail_abort;
                }
                b->w = NULL;
                r = pg_blob_commit_row(s, sha, size, path, err);
                free(b);
                if (r < 0)
                        return r;
                if (ret_sha256)
                        memcpy(ret_sha256, sha, SHA256_HEX_SIZE);
                if (ret_size)
                        *ret_size = size;
                return 0;
        }
#endif
        /* Rename and row insert happen under the database write lock, so that
         * garbage collection (which also holds it) never sees a renamed file
         * without its row, nor deletes a file a concurrent commit relies on. */
        r = store_tx_begin(s, err);
        if (r < 0)
                goto fail_abort;
        r = blob_row_locked(s, sha, &existing, err);
        if (r < 0 && r != -ENOENT)
                goto fail_tx;
        if (r == 0 && stat(path, &stbuf) == 0 && stbuf.st_size == size) {
                /* Deduplicated: keep the existing file, refresh its grace period. */
                fileio_writer_abort(b->w);
                b->w = NULL;
        } else {
                r = fileio_writer_commit(b->w, path, err);
                b->w = NULL;
                if (r < 0)
                        goto fail_tx;
        }
        sqlite3_stmt *st = store_stmt(s,
                                      "INSERT INTO blobs (sha256, size, created_at, touched_at) VALUES (?1, ?2, ?3, ?3)"
                                      " ON CONFLICT (sha256) DO UPDATE SET touched_at = excluded.touched_at",
                                      err);
        if (!st) {
                r = -EIO;
                goto fail_tx;
        }
        sqlite3_bind_text(st, 1, sha, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, size);
        sqlite3_bind_int64(st, 3, store_now_ms());
        r = store_step_done(s, st, err);
        if (r < 0)
                goto fail_tx;
        r = store_tx_commit(s, err);
        free(b);
        if (r < 0)
                return r;
        if (ret_sha256)
                memcpy(ret_sha256, sha, SHA256_HEX_SIZE);
        if (ret_size)
                *ret_size = size;
        return 0;
fail_tx:
        /* A file renamed into place without its row is an orphan that
         * store_blob_gc removes; nothing references it. */
        store_tx_rollback(s);
fail_abort:
        fileio_writer_abort(b->w);
        free(b);
        return r;
}

int store_blob_path(struct store *s, const char *sha256, char *buf, size_t size, struct ft_error *err) {
        if (!sha256_hex_valid(sha256))
                return ft_error_set(err, -EINVAL, "sha256", "'sha256' must be 64 lowercase hex digits");
        STORE_PG(s, pg_blob_path(s, sha256, buf, size, err));
        int r = blob_row_locked(s, sha256, NULL, err);
        if (r == -ENOENT)
                return ft_error_set(err, -ENOENT, "sha256", "blob '%s' does not exist", sha256);
        if (r < 0)
                return r;
        if (store_blob_file(s, sha256, buf, size) < 0)
                return ft_error_set(err, -ENAMETOOLONG, NULL, "buffer too small for the path of blob '%s'", sha256);
        return 0;
}

int store_blob_exists(struct store *s, const char *sha256, bool *ret, int64_t *ret_size, struct ft_error *err) {
        int64_t size = 0;
        if (!sha256_hex_valid(sha256))
                return ft_error_set(err, -EINVAL, "sha256", "'sha256' must be 64 lowercase hex digits");
        STORE_PG(s, pg_blob_exists(s, sha256, ret, ret_size, err));
        int r = blob_row_locked(s, sha256, &size, err);
        if (r < 0 && r != -ENOENT)
                return r;
        *ret = r == 0;
        if (ret_size)
                *ret_size = r == 0 ? size : 0;
        return 0;
}

/* ---- garbage collection ------------------------------------------------------------ */

static bool older_than(const char *path, int64_t cutoff_ms) {
        struct stat st;
        if (lstat(path, &st) < 0)
                return false;
        int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
        return mtime < cutoff_ms;
}

/* Remove files in blobs/ab/ with no row, and stale temp files. Runs inside the
 * write transaction, so no commit can be renaming a file concurrently. */
static int sweep_files_locked(struct store *s, int64_t cutoff_ms, int *removed, struct ft_error *err) {
        char path[PATH_MAX];
        DIR *top = opendir(s->blob_dir);
        if (!top)
                return ft_error_set(err, -errno, NULL, "cannot read directory '%s': %s", s->blob_dir, strerror(errno));
        struct dirent *de;
        int r = 0;
        while (r == 0 && (de = readdir(top))) {
                const char *name = de->d_name;
                if (name[0] == '.')
                        continue;
                bool is_tmp = strcmp(name, "tmp") == 0;
                bool is_fan = strlen(name) == 2 && strspn(name, "0123456789abcdef") == 2;
                if (!is_tmp && !is_fan)
                        continue;
                char sub[PATH_MAX];
                if (snprintf(sub, sizeof(sub), "%s/%s", s->blob_dir, name) >= (int)sizeof(sub))
                        continue;
                DIR *d = opendir(sub);
                if (!d)
                        continue;
                struct dirent *fe;
                bool changed = false;
                while (r == 0 && (fe = readdir(d))) {
                        if (strcmp(fe->d_name, ".") == 0 || strcmp(fe->d_name, "..") == 0)
                                continue;
                        if (snprintf(path, sizeof(path), "%s/%s", sub, fe->d_name) >= (int)sizeof(path))
                                continue;
                        if (!older_than(path, cutoff_ms))
                                continue;
                        bool orphan = is_tmp;
                        if (is_fan && sha256_hex_valid(fe->d_name) && strncmp(fe->d_name, name, 2) == 0) {
                                r = blob_row_locked(s, fe->d_name, NULL, err);
                                if (r == -ENOENT) {
                                        orphan = true;
                                        r = 0;
                                }
                        }
                        if (r == 0 && orphan && unlink(path) == 0) {
                                (*removed)++;
                                changed = true;
                        }
                }
                closedir(d);
                if (changed && r == 0)
                        r = fileio_fsync_dir(sub, err);
        }
        closedir(top);
        return r;
}

static int trash_file(struct store *s, const char *sha, char *buf, size_t size) {
        if (snprintf(buf, size, "%s/.gc-%s", s->tmp_dir, sha) >= (int)size)
                return -ENAMETOOLONG;
        return 0;
}

int store_blob_gc(struct store *s, int64_t min_age_ms, int *ret_removed, struct ft_error *err) {
        char(*victims)[SHA256_HEX_SIZE] = NULL;
        size_t n = 0, cap = 0;
        int removed = 0, r;
        int64_t cutoff = store_now_ms() - (min_age_ms > 0 ? min_age_ms : 0);

        STORE_PG(s, pg_blob_gc(s, min_age_ms, ret_removed, err));
        r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        sqlite3_stmt *st = store_stmt(s,
                                      "SELECT sha256 FROM blobs b WHERE touched_at <= ?1"
                                      " AND NOT EXISTS (SELECT 1 FROM datasets WHERE sha256 = b.sha256)"
                                      " AND NOT EXISTS (SELECT 1 FROM datasets WHERE labels_sha256 = b.sha256)"
                                      " AND NOT EXISTS (SELECT 1 FROM jobs WHERE metrics_sha256 = b.sha256)"
                                      " AND NOT EXISTS (SELECT 1 FROM models WHERE weights_sha256 = b.sha256)"
                                      " AND NOT EXISTS (SELECT 1 FROM checkpoints WHERE blob_sha256 = b.sha256)",
                                      err);
        if (!st) {
                r = -EIO;
                goto fail;
        }
        sqlite3_bind_int64(st, 1, cutoff);
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 64;
                        void *p = realloc(victims, ncap * sizeof(*victims));
                        if (!p) {
                                sqlite3_reset(st);
                                r = ft_error_set(err, -ENOMEM, NULL, "out of memory");
                                goto fail;
                        }
                        victims = p;
                        cap = ncap;
                }
                store_col_copy(st, 0, victims[n], SHA256_HEX_SIZE);
                n++;
        }
        sqlite3_reset(st);
        if (r != SQLITE_DONE) {
                r = store_db_error(s, err, "find unreferenced blobs");
                goto fail;
        }
        /* Delete the rows and the files under the write lock: the files first
         * move into tmp/ so that a failed COMMIT can put them back. */
        for (size_t i = 0; i < n; i++) {
                char path[PATH_MAX], trash[PATH_MAX + 80];
                st = store_stmt(s, "DELETE FROM blobs WHERE sha256 = ?1", err);
                if (!st) {
                        r = -EIO;
                        goto fail_restore;
                }
                sqlite3_bind_text(st, 1, victims[i], -1, SQLITE_STATIC);
                r = store_step_done(s, st, err);
                if (r < 0)
                        goto fail_restore;
                store_blob_file(s, victims[i], path, sizeof(path));
                trash_file(s, victims[i], trash, sizeof(trash));
                if (rename(path, trash) < 0 && errno != ENOENT) {
                        r = ft_error_set(err, -errno, NULL, "cannot remove blob '%s': %s", path, strerror(errno));
                        i++;
                        n = i; /* restore only what was moved */
                        goto fail_restore;
                }
        }
        r = sweep_files_locked(s, cutoff, &removed, err);
        if (r < 0)
                goto fail_restore;
        r = store_tx_commit(s, err);
        if (r < 0)
                goto fail_restore_nolock;
        for (size_t i = 0; i < n; i++) {
                char trash[PATH_MAX + 80];
                trash_file(s, victims[i], trash, sizeof(trash));
                if (unlink(trash) == 0)
                        removed++;
        }
        free(victims);
        if (removed)
                fileio_fsync_dir(s->tmp_dir, NULL);
        if (ret_removed)
                *ret_removed = removed;
        return 0;
fail_restore:
        store_tx_rollback(s);
fail_restore_nolock:
        for (size_t i = 0; i < n; i++) {
                char path[PATH_MAX], trash[PATH_MAX + 80];
                store_blob_file(s, victims[i], path, sizeof(path));
                trash_file(s, victims[i], trash, sizeof(trash));
                rename(trash, path);
        }
        free(victims);
        return r;
fail:
        store_tx_rollback(s);
        free(victims);
        return r;
}

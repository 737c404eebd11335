/* pg_blobs.c - blobs on PostgreSQL: the bytes live in a large object per blob
 * (streamed in 1 MiB chunks both ways, never whole in memory), so daemons that
 * share nothing but the server can all read them; each daemon keeps a local,
 * content-addressed cache under <state>/blobs/ab/abcd... (the same layout as
 * the SQLite store), which store_blob_path fills on first use and verifies by
 * hash. Garbage collection deletes unreferenced rows with their large objects
 * and the local files nothing references any more.
 * Not for: the writer (blobs.c writes the local file for both backends). */
#include "store/internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq/libpq-fs.h>

#include "common/fileio.h"

#define LO_CHUNK (1 << 20)

/* Stream the file at path into a new large object (inside the caller's transaction). */
static int lo_from_file(struct store *s, const char *path, Oid *ret, struct ft_error *err) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return ft_error_set(err, -errno, NULL, "cannot read blob '%s': %s", path, strerror(errno));
        char *buf = malloc(LO_CHUNK);
        Oid oid = buf ? lo_creat(PG(s), INV_READ | INV_WRITE) : InvalidOid;
        int lo = oid != InvalidOid ? lo_open(PG(s), oid, INV_WRITE) : -1;
        int r = 0;
        if (!buf)
                r = ft_error_set(err, -ENOMEM, NULL, "out of memory");
        else if (lo < 0)
                r = pg_error(s, NULL, err, "create large object");
        while (r == 0) {
                ssize_t n = read(fd, buf, LO_CHUNK);
                if (n < 0) {
                        r = ft_error_set(err, -errno, NULL, "cannot read blob '%s': %s", path, strerror(errno));
                        break;
                }
                if (n == 0)
                        break;
                if (lo_write(PG(s), lo, buf, (size_t)n) != (int)n)
                        r = pg_error(s, NULL, err, "write large object");
        }
        if (lo >= 0)
                lo_close(PG(s), lo);
        free(buf);
        close(fd);
        if (r == 0)
                *ret = oid;
        return r;
}

int pg_blob_commit_row(struct store *s, const char *sha, int64_t size, const char *path, struct ft_error *err) {
        PGresult *res;
        struct pg_args a = {0};
        pg_arg_str(&a, sha);
        int r = pg_tx_begin(s, err);
        if (r < 0)
                return r;
        r = pg_query(s, &res, err, "read blob", "SELECT lo_oid FROM blobs WHERE sha256 = $1 FOR UPDATE", &a);
        if (r < 0)
                goto fail;
        bool exists = PQntuples(res) == 1;
        PQclear(res);
        Oid mine = InvalidOid;
        if (!exists) {
                r = lo_from_file(s, path, &mine, err);
                if (r < 0)
                        goto fail;
        }
        a = (struct pg_args){0};
        pg_arg_str(&a, sha);
        pg_arg_int(&a, size);
        pg_arg_int(&a, (int64_t)mine);
        pg_arg_int(&a, store_now_ms());
        /* Two daemons committing the same new blob: the second waits on the first's row, then only touches it
         * (and drops its own large object). */
        r = pg_query(s, &res, err, "record blob",
                     "INSERT INTO blobs (sha256, size, lo_oid, created_at, touched_at) VALUES ($1, $2, $3, $4, $4)"
                     " ON CONFLICT (sha256) DO UPDATE SET touched_at = excluded.touched_at RETURNING lo_oid",
                     &a);
        if (r < 0)
                goto fail;
        Oid kept = (Oid)pg_int(res, 0, 0);
        PQclear(res);
        if (mine != InvalidOid && kept != mine && lo_unlink(PG(s), mine) < 0) {
                r = pg_error(s, NULL, err, "drop large object");
                goto fail;
        }
        return pg_tx_commit(s, err);
fail:
        pg_tx_rollback(s);
        return r;
}

static int blob_row(struct store *s, const char *sha, int64_t *ret_size, Oid *ret_oid, struct ft_error *err) {
        PGresult *res;
        struct pg_args a = {0};
        pg_arg_str(&a, sha);
        int r = pg_query(s, &res, err, "read blob", "SELECT size, lo_oid FROM blobs WHERE sha256 = $1", &a);
        if (r < 0)
                return r;
        if (PQntuples(res) == 1) {
                if (ret_size)
                        *ret_size = pg_int(res, 0, 0);
                if (ret_oid)
                        *ret_oid = (Oid)pg_int(res, 0, 1);
        } else {
                r = -ENOENT;
        }
        PQclear(res);
        return r;
}

/* Copy a large object into the local cache: a temp file, hashed as it streams, renamed to its name only when the
 * hash is the one asked for. */
static int materialize(struct store *s, const char *sha, Oid oid, int64_t size, const char *path,
                       struct ft_error *err) {
        char dir[PATH_MAX], got[SHA256_HEX_SIZE];
        uint8_t digest[SHA256_DIGEST_SIZE];
        struct fileio_writer *w = NULL;
        struct sha256_ctx hash;
        int64_t total = 0;
        if (snprintf(dir, sizeof(dir), "%s/%.2s", s->blob_dir, sha) >= (int)sizeof(dir))
                return ft_error_set(err, -ENAMETOOLONG, NULL, "blob path under '%s' is too long", s->blob_dir);
        int r = fileio_mkdir_p(dir, 0755, err);
        if (r < 0)
                return r;
        r = fileio_writer_new(NULL, s->tmp_dir, 0644, 0, &w, err);
        if (r < 0)
                return r;
        char *buf = malloc(LO_CHUNK);
        if (!buf) {
                fileio_writer_abort(w);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        sha256_init(&hash);
        /* large objects are read inside a transaction: the caller's, or one of our own */
        bool own_tx = !s->in_tx;
        if (own_tx && (r = pg_tx_begin(s, err)) < 0)
                goto out;
        int lo = lo_open(PG(s), oid, INV_READ);
        if (lo < 0)
                r = pg_error(s, NULL, err, "open large object");
        while (r == 0) {
                int n = lo_read(PG(s), lo, buf, LO_CHUNK);
                if (n < 0) {
                        r = pg_error(s, NULL, err, "read large object");
                        break;
                }
                if (n == 0)
                        break;
                sha256_update(&hash, buf, (size_t)n);
                total += n;
                r = fileio_writer_write(w, buf, (size_t)n, err);
        }
        if (lo >= 0)
                lo_close(PG(s), lo);
        if (own_tx)
                pg_tx_rollback(s); /* read only */
        if (r < 0)
                goto out;
        sha256_final(&hash, digest);
        sha256_to_hex(digest, got);
        if (total != size || strcmp(got, sha) != 0) {
                r = ft_error_set(err, -EIO, NULL, "blob '%s' read back from the database as '%s' (%lld bytes)", sha,
                                 got, (long long)total);
                goto out;
        }
        r = fileio_writer_commit(w, path, err);
        w = NULL;
out:
        fileio_writer_abort(w);
        free(buf);
        return r;
}

int pg_blob_path(struct store *s, const char *sha256, char *buf, size_t size, struct ft_error *err) {
        int64_t bytes = 0;
        Oid oid = InvalidOid;
        struct stat st;
        int r = blob_row(s, sha256, &bytes, &oid, err);
        if (r == -ENOENT)
                return ft_error_set(err, -ENOENT, "sha256", "blob '%s' does not exist", sha256);
        if (r < 0)
                return r;
        if (store_blob_file(s, sha256, buf, size) < 0)
                return ft_error_set(err, -ENAMETOOLONG, NULL, "buffer too small for the path of blob '%s'", sha256);
        /* The name is the content's hash and files arrive by rename only: a file of the right size is the blob. */
        if (stat(buf, &st) == 0 && st.st_size == bytes)
                return 0;
        return materialize(s, sha256, oid, bytes, buf, err);
}

int pg_blob_exists(struct store *s, const char *sha256, bool *ret, int64_t *ret_size, struct ft_error *err) {
        int64_t size = 0;
        int r = blob_row(s, sha256, &size, NULL, err);
        if (r < 0 && r != -ENOENT)
                return r;
        *ret = r == 0;
        if (ret_size)
                *ret_size = r == 0 ? size : 0;
        return 0;
}

static bool older_than(const char *path, int64_t cutoff_ms) {
        struct stat st;
        if (lstat(path, &st) < 0)
                return false;
        int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
        return mtime < cutoff_ms;
}

/* Local files: cache entries whose row is gone and temp files, older than the cutoff. */
static int sweep_local(struct store *s, int64_t cutoff_ms, int *removed, struct ft_error *err) {
        char sub[PATH_MAX], path[PATH_MAX];
        DIR *top = opendir(s->blob_dir);
        if (!top)
                return ft_error_set(err, -errno, NULL, "cannot read directory '%s': %s", s->blob_dir, strerror(errno));
        struct dirent *de;
        int r = 0;
        while (r == 0 && (de = readdir(top))) {
                const char *name = de->d_name;
                bool is_tmp = strcmp(name, "tmp") == 0;
                bool is_fan = strlen(name) == 2 && strspn(name, "0123456789abcdef") == 2;
                if ((!is_tmp && !is_fan) || ft_path_join(sub, sizeof(sub), s->blob_dir, name, NULL) < 0)
                        continue;
                DIR *d = opendir(sub);
                if (!d)
                        continue;
                struct dirent *fe;
                while (r == 0 && (fe = readdir(d))) {
                        if (strcmp(fe->d_name, ".") == 0 || strcmp(fe->d_name, "..") == 0 ||
                            ft_path_join(path, sizeof(path), sub, fe->d_name, NULL) < 0 || !older_than(path, cutoff_ms))
                                continue;
                        bool orphan = is_tmp;
                        if (is_fan && sha256_hex_valid(fe->d_name) && strncmp(fe->d_name, name, 2) == 0) {
                                r = blob_row(s, fe->d_name, NULL, NULL, err);
                                if (r == -ENOENT) {
                                        orphan = true;
                                        r = 0;
                                }
                        }
                        if (r == 0 && orphan && unlink(path) == 0)
                                (*removed)++;
                }
                closedir(d);
        }
        closedir(top);
        return r;
}

#define UNREFERENCED                                                                                                   \
        " NOT EXISTS (SELECT 1 FROM datasets WHERE sha256 = b.sha256)"                                                 \
        " AND NOT EXISTS (SELECT 1 FROM datasets WHERE labels_sha256 = b.sha256)"                                      \
        " AND NOT EXISTS (SELECT 1 FROM jobs WHERE metrics_sha256 = b.sha256)"                                         \
        " AND NOT EXISTS (SELECT 1 FROM models WHERE weights_sha256 = b.sha256)"                                       \
        " AND NOT EXISTS (SELECT 1 FROM checkpoints WHERE blob_sha256 = b.sha256)"

int pg_blob_gc(struct store *s, int64_t min_age_ms, int *ret_removed, struct ft_error *err) {
        int64_t cutoff = store_now_ms() - (min_age_ms > 0 ? min_age_ms : 0);
        int removed = 0;
        PGresult *cand = NULL, *res;
        struct pg_args a = {0};
        pg_arg_int(&a, cutoff);
        int r = pg_tx_begin(s, err);
        if (r < 0)
                return r;
        /* Lock the candidates (SKIP LOCKED: one a transaction is referencing right now is not a candidate), then
         * delete each in a statement of its own: its fresh snapshot sees every reference committed meanwhile, and
         * the lock keeps new ones waiting until this commits (they then find no blob). */
        r = pg_query(s, &cand, err, "find unreferenced blobs",
                     "SELECT sha256 FROM blobs b WHERE touched_at <= $1 AND" UNREFERENCED " FOR UPDATE SKIP LOCKED",
                     &a);
        if (r < 0)
                goto fail;
        for (int i = 0; i < PQntuples(cand); i++) {
                a = (struct pg_args){0};
                pg_arg_str(&a, PQgetvalue(cand, i, 0));
                r = pg_query(s, &res, err, "delete blob",
                             "DELETE FROM blobs b WHERE sha256 = $1 AND" UNREFERENCED " RETURNING lo_oid", &a);
                if (r < 0)
                        goto fail;
                Oid oid = PQntuples(res) == 1 ? (Oid)pg_int(res, 0, 0) : InvalidOid;
                PQclear(res);
                if (oid != InvalidOid && lo_unlink(PG(s), oid) < 0) {
                        r = pg_error(s, NULL, err, "drop large object");
                        goto fail;
                }
        }
        r = pg_tx_commit(s, err);
        if (r < 0)
                goto out;
        /* After the commit: a cached file whose row is gone is only a cache entry. */
        for (int i = 0; i < PQntuples(cand); i++) {
                char path[PATH_MAX];
                if (store_blob_file(s, PQgetvalue(cand, i, 0), path, sizeof(path)) == 0 &&
                    blob_row(s, PQgetvalue(cand, i, 0), NULL, NULL, NULL) == -ENOENT) {
                        unlink(path);
                        removed++;
                }
        }
        r = sweep_local(s, cutoff, &removed, err);
        if (r == 0 && ret_removed)
                *ret_removed = removed;
        goto out;
fail:
        pg_tx_rollback(s);
out:
        PQclear(cand);
        return r;
}

/* test_store_blobs.c - SHA-256 against FIPS 180-4 vectors, atomic file
 * writing, and the content-addressed blob store: streaming, size caps, dedup,
 * interrupted writes, garbage collection. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <signal.h>
#include <sys/wait.h>

#include "common/fileio.h"
#include "common/sha256.h"
#include "tests/unit/store_fixture.h"

static void hex_of(const void *data, size_t n, char out[SHA256_HEX_SIZE]) {
        uint8_t d[SHA256_DIGEST_SIZE];
        sha256_buffer(data, n, d);
        sha256_to_hex(d, out);
}

static void test_sha256(void) {
        char hex[SHA256_HEX_SIZE];
        hex_of("", 0, hex);
        is_str(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "sha256 of empty");
        hex_of("abc", 3, hex);
        is_str(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "sha256 of abc");
        const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        hex_of(m448, strlen(m448), hex);
        is_str(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
               "sha256 of the 448-bit message");
        const char *m896 =
                "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrs"
                "mnopqrstnopqrstu";
        hex_of(m896, strlen(m896), hex);
        is_str(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
               "sha256 of the 896-bit message");

        /* One million 'a', streamed in uneven chunks across block boundaries. */
        struct sha256_ctx c;
        char buf[997];
        uint8_t d[SHA256_DIGEST_SIZE];
        memset(buf, 'a', sizeof(buf));
        sha256_init(&c);
        size_t left = 1000000, step = 1;
        while (left) {
                size_t k = FT_MIN(FT_MIN(left, step), sizeof(buf));
                sha256_update(&c, buf, k);
                left -= k;
                step = step % 997 + 63;
        }
        sha256_final(&c, d);
        sha256_to_hex(d, hex);
        is_str(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", "sha256 of a million a");
        /* 55, 56 and 64 bytes: the padding edge cases (references from coreutils sha256sum). */
        char a64[64];
        memset(a64, 'x', sizeof(a64));
        hex_of(a64, 55, hex);
        is_str(hex, "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072", "sha256 of 55 bytes");
        hex_of(a64, 56, hex);
        is_str(hex, "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e", "sha256 of 56 bytes");
        hex_of(a64, 64, hex);
        is_str(hex, "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c", "sha256 of 64 bytes");
        ok(sha256_hex_valid("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "hex valid");
        ok(!sha256_hex_valid("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"), "upper case refused");
        ok(!sha256_hex_valid("e3b0"), "short refused");
}

static int count_files(const char *path) {
        DIR *d = opendir(path);
        int n = 0;
        struct dirent *de;
        if (!d)
                return -1;
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

static int read_file(const char *path, char *buf, size_t size) {
        FILE *f = fopen(path, "r");
        if (!f)
                return -1;
        size_t n = fread(buf, 1, size - 1, f);
        buf[n] = 0;
        fclose(f);
        return (int)n;
}

static void test_fileio(const char *dir) {
        struct ft_error err = {0};
        struct fileio_writer *w = NULL;
        char path[700], sub[600], buf[256];

        snprintf(sub, sizeof(sub), "%s/a/b/c", dir);
        ok(fileio_mkdir_p(sub, 0755, &err) == 0, "mkdir -p");
        ok(fileio_mkdir_p(sub, 0755, &err) == 0, "mkdir -p again is fine");
        snprintf(path, sizeof(path), "%s/state.json", sub);
        ok(fileio_write_atomic(path, "{\"v\":1}", 7, 0644, &err) == 0, "atomic write");
        ok(read_file(path, buf, sizeof(buf)) == 7 && strcmp(buf, "{\"v\":1}") == 0, "content there");

        ok(fileio_writer_new(path, NULL, 0644, 0, &w, &err) == 0, "writer over an existing file");
        ok(fileio_writer_write(w, "{\"v\":2,", 7, &err) == 0, "half written");
        ok(read_file(path, buf, sizeof(buf)) == 7 && strcmp(buf, "{\"v\":1}") == 0, "old content until commit");
        ok(fileio_writer_write(w, "\"x\":0}", 6, &err) == 0, "rest written");
        ok(fileio_writer_commit(w, NULL, &err) == 0, "committed");
        ok(read_file(path, buf, sizeof(buf)) == 13 && strcmp(buf, "{\"v\":2,\"x\":0}") == 0, "new content");
        is_int(count_files(sub), 1, "no temporary file left behind");

        ok(fileio_writer_new(path, NULL, 0644, 10, &w, &err) == 0, "writer with a 10 byte cap");
        ok(fileio_writer_write(w, "0123456789", 10, &err) == 0, "10 bytes fit");
        ok(fileio_writer_write(w, "x", 1, &err) == -EFBIG, "the 11th is -EFBIG");
        fileio_writer_abort(w);
        ok(read_file(path, buf, sizeof(buf)) == 13, "abort left the old file");
        is_int(count_files(sub), 1, "and removed the temporary file");

        /* A write larger than the internal buffer, in odd pieces. */
        static char big[300000];
        for (size_t i = 0; i < sizeof(big); i++)
                big[i] = (char)(i * 7);
        ok(fileio_writer_new(path, NULL, 0600, 0, &w, &err) == 0, "writer for 300 KB");
        ok(fileio_writer_write(w, big, 1000, &err) == 0 && fileio_writer_write(w, big + 1000, 200000, &err) == 0 &&
                   fileio_writer_write(w, big + 201000, sizeof(big) - 201000, &err) == 0,
           "written in pieces");
        ok(fileio_writer_commit(w, NULL, &err) == 0, "committed");
        FILE *f = fopen(path, "r");
        static char back[300001];
        size_t n = fread(back, 1, sizeof(back), f);
        fclose(f);
        ok(n == sizeof(big) && memcmp(back, big, sizeof(big)) == 0, "300 KB read back identical");
        struct stat st;
        ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "mode applied");
        ok(fileio_write_atomic("/nonexistent-dir/x", "a", 1, 0644, &err) < 0 && strstr(err.message, "/nonexistent-dir"),
           "error names the directory: %s", err.message);
}

static void test_blobs(const char *dir) {
        struct ft_error err = {0};
        struct store *s = NULL;
        struct store_blob_writer *w = NULL;
        char sha[STORE_SHA256_HEX], sha2[STORE_SHA256_HEX], path[1024], tmp[600];
        int64_t size = 0;
        bool exists = true;

        if (fixture_open(dir, &s, &err) < 0) {
                printf("Bail out! %s\n", err.message);
                exit(1);
        }
        snprintf(tmp, sizeof(tmp), "%s/blobs/tmp", dir);

        /* Stream 1 MB in 4 KB pieces; the hash is of the whole. */
        static char data[1 << 20];
        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (char)(i * 2654435761u >> 13);
        char want[SHA256_HEX_SIZE];
        hex_of(data, sizeof(data), want);
        ok(store_blob_begin(s, 2 << 20, &w, &err) == 0, "blob begun");
        bool wrote = true;
        for (size_t off = 0; off < sizeof(data); off += 4096)
                wrote &= store_blob_write(w, data + off, 4096, &err) == 0;
        ok(wrote && store_blob_written(w) == (int64_t)sizeof(data), "1 MB streamed");
        ok(store_blob_commit(w, sha, &size, &err) == 0, "blob committed");
        is_str(sha, want, "named by its sha256");
        is_int(size, sizeof(data), "size reported");
        ok(store_blob_path(s, sha, path, sizeof(path), &err) == 0, "path of the blob");
        char expect[1024];
        snprintf(expect, sizeof(expect), "%s/blobs/%.2s/%s", dir, sha, sha);
        is_str(path, expect, "blobs/ab/abcdef... layout");
        struct stat st;
        ok(stat(path, &st) == 0 && st.st_size == (off_t)sizeof(data), "file complete on disk");
        is_int(count_files(tmp), 0, "no temp file left");

        /* Dedup. */
        ok(store_blob_begin(s, 0, &w, &err) == 0 && store_blob_write(w, data, sizeof(data), &err) == 0 &&
                   store_blob_commit(w, sha2, NULL, &err) == 0,
           "same content committed again");
        is_str(sha2, sha, "same name");
        is_int(count_files(tmp), 0, "duplicate temp file dropped");

        /* Cap. */
        ok(store_blob_begin(s, 100, &w, &err) == 0, "blob with a 100 byte cap");
        ok(store_blob_write(w, data, 64, &err) == 0, "64 bytes");
        ok(store_blob_write(w, data, 64, &err) == -EFBIG, "128 bytes: -EFBIG");
        ok(strstr(err.message, "100") != NULL, "message names the limit: %s", err.message);
        store_blob_abort(w);
        is_int(count_files(tmp), 0, "abort removes the temp file");

        /* Interrupted write in a child killed mid-stream: a temp file, no row. */
        int pfd[2];
        ok(pipe(pfd) == 0, "pipe");
        pid_t pid = fork();
        if (pid == 0) {
                struct store *cs = NULL;
                struct store_blob_writer *cw = NULL;
                if (fixture_open(dir, &cs, NULL) < 0 || store_blob_begin(cs, 0, &cw, NULL) < 0)
                        _exit(1);
                store_blob_write(cw, "interrupted", 11, NULL);
                store_blob_write(cw, data, sizeof(data), NULL); /* flushes to the file */
                if (write(pfd[1], "x", 1) != 1)
                        _exit(1);
                for (;;)
                        pause();
        }
        char c;
        ok(read(pfd[0], &c, 1) == 1, "child is mid-write");
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(pfd[0]);
        close(pfd[1]);
        is_int(count_files(tmp), 1, "killed writer left one temp file");
        char part[SHA256_HEX_SIZE];
        {
                struct sha256_ctx cx;
                uint8_t d[32];
                sha256_init(&cx);
                sha256_update(&cx, "interrupted", 11);
                sha256_update(&cx, data, sizeof(data));
                sha256_final(&cx, d);
                sha256_to_hex(d, part);
        }
        ok(store_blob_exists(s, part, &exists, NULL, &err) == 0 && !exists, "no row for the half blob");
        int removed = -1;
        ok(store_blob_gc(s, 3600 * 1000, &removed, &err) == 0 && removed == 0, "gc keeps young temp files");
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL); /* file times are coarse */
        ok(store_blob_gc(s, 0, &removed, &err) == 0, "gc with no grace: %s", err.message);
        is_int(count_files(tmp), 0, "the half file is gone");
        ok(store_blob_path(s, sha, path, sizeof(path), &err) == -ENOENT,
           "the unreferenced 1 MB blob was collected too");
        ok(access(expect, F_OK) < 0, "and its file");

        /* A file renamed into place whose row never got written (crash between
         * the two): an orphan with no row, collected. */
        struct store_blob_writer *w2 = NULL;
        ok(store_blob_begin(s, 0, &w2, &err) == 0 && store_blob_write(w2, "abc", 3, &err) == 0 &&
                   store_blob_commit(w2, sha, NULL, &err) == 0,
           "small blob committed");
        ok(store_dataset_create(s, &(struct store_dataset_new){.name = "abc", .format = "csv", .sha256 = sha}, NULL,
                                &err) == 0,
           "a dataset references it");
        char orphan[1024];
        snprintf(orphan, sizeof(orphan), "%s/blobs/ee/ee%062d", dir, 0);
        {
                char d2[1024];
                snprintf(d2, sizeof(d2), "%s/blobs/ee", dir);
                fileio_mkdir_p(d2, 0755, &err);
        }
        ok(fileio_write_atomic(orphan, "orphan", 6, 0644, &err) == 0, "orphan file planted");
        /* age it by a minute, as if left by a crash */
        struct timespec old[2] = {{time(NULL) - 60, 0}, {time(NULL) - 60, 0}};
        ok(utimensat(AT_FDCWD, orphan, old, 0) == 0, "orphan aged");
        ok(store_blob_gc(s, 30000, NULL, &err) == 0, "gc with a 30 s grace");
        ok(access(orphan, F_OK) < 0, "removed the old orphan");
        ok(store_blob_path(s, sha, path, sizeof(path), &err) == 0, "the referenced blob survives");
        ok(store_blob_gc(s, 0, &removed, &err) == 0, "gc again");
        is_int(removed, 0, "nothing more to remove");
        ok(store_blob_path(s, sha, path, sizeof(path), &err) == 0 && access(path, R_OK) == 0,
           "the referenced blob survives gc");
        ok(store_blob_exists(s, sha, &exists, &size, &err) == 0 && exists && size == 3, "exists, 3 bytes");
        ok(store_blob_path(s, "nothex", path, sizeof(path), &err) == -EINVAL, "malformed hash refused");
        store_close(s);
}

#ifdef HAVE_LIBPQ
static int64_t pg_count(const char *db_dir, const char *sql) {
        char url[1200];
        fixture_pg_url(db_dir, url, sizeof(url));
        PGconn *c = PQconnectdb(url);
        PGresult *res = PQexec(c, sql);
        int64_t n = PQresultStatus(res) == PGRES_TUPLES_OK ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : -1;
        PQclear(res);
        PQfinish(c);
        return n;
}

/* PostgreSQL: two state directories on one database (two daemons). A blob committed through one is a large
 * object that the other reads into its own cache, streamed in 1 MiB chunks and checked by hash; a cache file of
 * the wrong size is fetched again; the same bytes committed through the other are one large object; gc drops the
 * row with its large object, and each side's gc drops its now unreferenced cache file. */
static void test_pg_shared(void) {
        struct ft_error err = {0};
        struct store *s1 = NULL, *s2 = NULL;
        struct store_blob_writer *w = NULL;
        char *d1 = tmpdir_make("pgb1"), *d2 = tmpdir_make("pgb2");
        char sha[STORE_SHA256_HEX], sha2[STORE_SHA256_HEX], want[SHA256_HEX_SIZE], path[1024], got[SHA256_HEX_SIZE];
        static char data[(3 << 20) + 123];
        bool exists = false;
        int removed = 0;

        ok(fixture_open(d1, &s1, &err) == 0 && fixture_open_sharing(d2, d1, (struct store_options){0}, &s2, &err) == 0,
           "two stores, two state directories, one database (%s)", err.message);
        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (char)(i * 2654435761u >> 11);
        hex_of(data, sizeof(data), want);
        ok(store_blob_begin(s1, 0, &w, &err) == 0 && store_blob_write(w, data, sizeof(data), &err) == 0 &&
                   store_blob_commit(w, sha, NULL, &err) == 0,
           "3 MiB + 123 bytes committed through the first");
        is_int(pg_count(d1, "SELECT count(*) FROM pg_largeobject_metadata"), 1, "one large object");
        ok(store_blob_exists(s2, sha, &exists, NULL, &err) == 0 && exists, "the second knows the blob");
        ok(store_blob_path(s2, sha, path, sizeof(path), &err) == 0 && strncmp(path, d2, strlen(d2)) == 0,
           "its path is in the second's own state directory (%s)", err.message);
        void *map = NULL;
        size_t n = 0;
        ok(fileio_map(path, sizeof(data) + 1, &map, &n, &err) == 0 && n == sizeof(data), "the cache file is whole");
        if (map)
                hex_of(map, n, got);
        fileio_unmap(map, n);
        is_str(map ? got : "", want, "and has the blob's hash");
        ok(truncate(path, 10) == 0, "truncate the cache file");
        ok(store_blob_path(s2, sha, path, sizeof(path), &err) == 0, "path again");
        struct stat st;
        ok(stat(path, &st) == 0 && st.st_size == (off_t)sizeof(data),
           "a cache file of the wrong size is fetched again");
        ok(store_blob_begin(s2, 0, &w, &err) == 0 && store_blob_write(w, data, sizeof(data), &err) == 0 &&
                   store_blob_commit(w, sha2, NULL, &err) == 0 && strcmp(sha, sha2) == 0,
           "the same bytes committed through the second");
        is_int(pg_count(d1, "SELECT count(*) FROM pg_largeobject_metadata"), 1, "still one large object");
        ok(store_blob_gc(s1, 0, &removed, &err) == 0 && removed >= 1, "gc through the first (%d removed)", removed);
        is_int(pg_count(d1, "SELECT count(*) FROM pg_largeobject_metadata"), 0, "the large object is gone");
        ok(store_blob_exists(s2, sha, &exists, NULL, &err) == 0 && !exists, "the second no longer knows it");
        ok(access(path, F_OK) == 0, "its cache file is still there");
        ok(store_blob_gc(s2, 0, &removed, &err) == 0 && removed == 1 && access(path, F_OK) < 0,
           "until the second's gc removes it (%d)", removed);
        store_close(s1);
        store_close(s2);
        tmpdir_remove(d1);
        tmpdir_remove(d2);
        free(d1);
        free(d2);
}
#endif

int main(void) {
        char *dir = tmpdir_make("blobs");
        test_sha256();
        test_fileio(dir);
        test_blobs(dir);
#ifdef HAVE_LIBPQ
        if (fixture_is_pg())
                test_pg_shared();
#endif
        tmpdir_remove(dir);
        free(dir);
        return tap_done();
}

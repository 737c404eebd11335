/* ckpt_archive.c - checkpoint directories packed into one store blob and back (ckpt_archive.h).
 * Not for: the trainer's files themselves (compute/train.c). */
#include "daemon/ckpt_archive.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"

#define MAGIC "finetuned-checkpoint 1\n"
#define FILES_MAX 64
#define CHUNK (1 << 16)

int ckpt_archive_pack(struct store *s, const char *dir, char ret_sha[STORE_SHA256_HEX], struct ft_error *err) {
        struct store_blob_writer *w = NULL;
        char path[PATH_MAX], head[NAME_MAX + 32];
        char *buf = malloc(CHUNK);
        DIR *d = opendir(dir);
        int r = 0;
        if (!buf || !d) {
                r = !buf ? ft_error_set(err, -ENOMEM, NULL, "out of memory")
                         : ft_error_set(err, -errno, NULL, "cannot read checkpoint '%s': %s", dir, strerror(errno));
                goto out;
        }
        r = store_blob_begin(s, 0, &w, err);
        if (r == 0)
                r = store_blob_write(w, MAGIC, strlen(MAGIC), err);
        struct dirent *e;
        while (r == 0 && (e = readdir(d))) {
                struct stat st;
                if (e->d_name[0] == '.' || ft_path_join(path, sizeof(path), dir, e->d_name, NULL) < 0 ||
                    stat(path, &st) < 0 || !S_ISREG(st.st_mode))
                        continue;
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                        r = ft_error_set(err, -errno, NULL, "cannot read '%s': %s", path, strerror(errno));
                        break;
                }
                int n = snprintf(head, sizeof(head), "%s %lld\n", e->d_name, (long long)st.st_size);
                r = store_blob_write(w, head, (size_t)n, err);
                off_t left = st.st_size;
                while (r == 0 && left > 0) {
                        ssize_t k = read(fd, buf, (size_t)(left < CHUNK ? left : CHUNK));
                        if (k <= 0) {
                                r = ft_error_set(err, k < 0 ? -errno : -EIO, NULL, "cannot read '%s'", path);
                                break;
                        }
                        r = store_blob_write(w, buf, (size_t)k, err);
                        left -= k;
                }
                close(fd);
        }
        if (r == 0) {
                r = store_blob_commit(w, ret_sha, NULL, err);
                w = NULL;
        }
out:
        store_blob_abort(w);
        if (d)
                closedir(d);
        free(buf);
        return r;
}

int ckpt_archive_unpack(struct store *s, const char *sha, const char *dir, struct ft_error *err) {
        char path[PATH_MAX], tmp[PATH_MAX], line[NAME_MAX + 32], name[NAME_MAX + 1];
        struct stat st;
        if (stat(dir, &st) == 0)
                return 0; /* this daemon wrote it, or unpacked it before */
        int r = store_blob_path(s, sha, path, sizeof(path), err);
        if (r < 0)
                return r;
        if (snprintf(tmp, sizeof(tmp), "%s.unpack-%d", dir, (int)getpid()) >= (int)sizeof(tmp))
                return ft_error_set(err, -ENAMETOOLONG, NULL, "checkpoint path too long");
        FILE *f = fopen(path, "rb");
        char *buf = malloc(CHUNK);
        if (!f || !buf) {
                r = ft_error_set(err, -EIO, NULL, "cannot read checkpoint blob '%s'", sha);
                goto out;
        }
        if (!fgets(line, sizeof(line), f) || strcmp(line, MAGIC) != 0) {
                r = ft_error_set(err, -EBADMSG, NULL, "checkpoint blob '%s' is not a checkpoint archive", sha);
                goto out;
        }
        r = fileio_mkdir_p(tmp, 0755, err);
        for (int files = 0; r == 0 && fgets(line, sizeof(line), f); files++) {
                long long size = -1;
                if (files == FILES_MAX || sscanf(line, "%255s %lld", name, &size) != 2 || size < 0 ||
                    strchr(name, '/') || name[0] == '.') {
                        r = ft_error_set(err, -EBADMSG, NULL, "checkpoint blob '%s' has a bad entry", sha);
                        break;
                }
                struct fileio_writer *fw = NULL;
                if (ft_path_join(path, sizeof(path), tmp, name, NULL) < 0) {
                        r = ft_error_set(err, -ENAMETOOLONG, NULL, "checkpoint path too long");
                        break;
                }
                r = fileio_writer_new(path, NULL, 0644, 0, &fw, err);
                while (r == 0 && size > 0) {
                        size_t k = fread(buf, 1, (size_t)(size < CHUNK ? size : CHUNK), f);
                        if (k == 0) {
                                r = ft_error_set(err, -EBADMSG, NULL, "checkpoint blob '%s' is truncated", sha);
                                break;
                        }
                        r = fileio_writer_write(fw, buf, k, err);
                        size -= (long long)k;
                }
                if (r == 0)
                        r = fileio_writer_commit(fw, NULL, err);
                else
                        fileio_writer_abort(fw);
        }
        if (r == 0 && rename(tmp, dir) < 0)
                r = ft_error_set(err, -errno, NULL, "cannot rename '%s': %s", tmp, strerror(errno));
out:
        if (r < 0 && tmp[0]) { /* leave nothing half unpacked */
                DIR *d = opendir(tmp);
                struct dirent *e;
                while (d && (e = readdir(d)))
                        if (e->d_name[0] != '.' && ft_path_join(path, sizeof(path), tmp, e->d_name, NULL) >= 0)
                                unlink(path);
                if (d)
                        closedir(d);
                rmdir(tmp);
        }
        if (f)
                fclose(f);
        free(buf);
        return r;
}

/* fileio.c - atomic, durable file writing (temp name, fsync, rename, directory
 * fsync). Not for: reading files or in-place appends. */
#include "common/fileio.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILEIO_BUF (64 * 1024)

struct fileio_writer {
        int fd;
        mode_t mode;
        int64_t size, max_size;
        size_t fill;
        char tmp_path[PATH_MAX];
        char tmp_dir[PATH_MAX];
        char final_path[PATH_MAX]; /* "" when given at commit */
        unsigned char buf[FILEIO_BUF];
};

static int dir_of(const char *path, char *buf, size_t size) {
        const char *slash = strrchr(path, '/');
        if (!slash)
                return snprintf(buf, size, ".") >= (int)size ? -ENAMETOOLONG : 0;
        if (slash == path)
                return snprintf(buf, size, "/") >= (int)size ? -ENAMETOOLONG : 0;
        if ((size_t)(slash - path) >= size)
                return -ENAMETOOLONG;
        memcpy(buf, path, (size_t)(slash - path));
        buf[slash - path] = '\0';
        return 0;
}

static const char *base_of(const char *path) {
        const char *slash = strrchr(path, '/');
        return slash ? slash + 1 : path;
}

int fileio_fsync_dir(const char *dir, struct ft_error *err) {
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return ft_error_set(err, -errno, NULL, "cannot open directory '%s': %s", dir, strerror(errno));
        if (fsync(fd) < 0) {
                int e = errno;
                close(fd);
                return ft_error_set(err, -e, NULL, "cannot sync directory '%s': %s", dir, strerror(e));
        }
        close(fd);
        return 0;
}

int fileio_mkdir_p(const char *path, mode_t mode, struct ft_error *err) {
        char buf[PATH_MAX];
        size_t len = strlen(path);
        if (len == 0 || len >= sizeof(buf))
                return ft_error_set(err, -ENAMETOOLONG, NULL, "path '%.200s' is empty or too long", path);
        memcpy(buf, path, len + 1);
        while (len > 1 && buf[len - 1] == '/')
                buf[--len] = '\0';
        for (size_t i = 1; i <= len; i++) {
                if (buf[i] != '/' && buf[i] != '\0')
                        continue;
                char c = buf[i];
                buf[i] = '\0';
                if (mkdir(buf, mode) == 0) {
                        char parent[PATH_MAX];
                        int r = dir_of(buf, parent, sizeof(parent));
                        if (r == 0)
                                r = fileio_fsync_dir(parent, err);
                        if (r < 0)
                                return r;
                } else if (errno != EEXIST) {
                        return ft_error_set(err, -errno, NULL, "cannot create directory '%s': %s", buf,
                                            strerror(errno));
                } else {
                        struct stat st;
                        if (stat(buf, &st) < 0 || !S_ISDIR(st.st_mode))
                                return ft_error_set(err, -ENOTDIR, NULL, "'%s' exists and is not a directory", buf);
                }
                buf[i] = c;
        }
        return 0;
}

int fileio_writer_new(const char *final_path, const char *tmp_dir, mode_t mode, int64_t max_size,
                      struct fileio_writer **ret, struct ft_error *err) {
        struct fileio_writer *w;
        int r;

        if (!final_path && !tmp_dir)
                return ft_error_set(err, -EINVAL, NULL, "a final path or a temporary directory is required");
        w = calloc(1, sizeof(*w));
        if (!w)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        w->fd = -1;
        w->mode = mode;
        w->max_size = max_size;
        if (final_path && snprintf(w->final_path, sizeof(w->final_path), "%s", final_path) >= PATH_MAX) {
                r = ft_error_set(err, -ENAMETOOLONG, NULL, "path '%.200s' is too long", final_path);
                goto fail;
        }
        if (tmp_dir) {
                if (snprintf(w->tmp_dir, sizeof(w->tmp_dir), "%s", tmp_dir) >= PATH_MAX) {
                        r = ft_error_set(err, -ENAMETOOLONG, NULL, "path '%.200s' is too long", tmp_dir);
                        goto fail;
                }
        } else if (dir_of(final_path, w->tmp_dir, sizeof(w->tmp_dir)) < 0) {
                r = ft_error_set(err, -ENAMETOOLONG, NULL, "path '%.200s' is too long", final_path);
                goto fail;
        }
        if (snprintf(w->tmp_path, sizeof(w->tmp_path), "%s/.tmp-%.64s-XXXXXX", w->tmp_dir,
                     final_path ? base_of(final_path) : "blob") >= PATH_MAX) {
                r = ft_error_set(err, -ENAMETOOLONG, NULL, "path '%.200s' is too long", w->tmp_dir);
                goto fail;
        }
        w->fd = mkostemp(w->tmp_path, O_CLOEXEC);
        if (w->fd < 0) {
                r = ft_error_set(err, -errno, NULL, "cannot create a temporary file in '%s': %s", w->tmp_dir,
                                 strerror(errno));
                goto fail;
        }
        *ret = w;
        return 0;
fail:
        free(w);
        return r;
}

static int flush_buf(struct fileio_writer *w, struct ft_error *err) {
        size_t off = 0;
        while (off < w->fill) {
                ssize_t k = write(w->fd, w->buf + off, w->fill - off);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return ft_error_set(err, -errno, NULL, "cannot write '%s': %s", w->tmp_path, strerror(errno));
                }
                off += (size_t)k;
        }
        w->fill = 0;
        return 0;
}

static int write_all(struct fileio_writer *w, const unsigned char *p, size_t n, struct ft_error *err) {
        while (n > 0) {
                ssize_t k = write(w->fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return ft_error_set(err, -errno, NULL, "cannot write '%s': %s", w->tmp_path, strerror(errno));
                }
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

int fileio_writer_write(struct fileio_writer *w, const void *data, size_t n, struct ft_error *err) {
        const unsigned char *p = data;
        int r;

        if (w->fd < 0)
                return ft_error_set(err, -EBADF, NULL, "file writer already failed");
        if (w->max_size > 0 && (n > (uint64_t)(w->max_size - w->size)))
                return ft_error_set(err, -EFBIG, NULL, "file is larger than the limit of %lld bytes",
                                    (long long)w->max_size);
        while (n > 0) {
                if (w->fill == 0 && n >= FILEIO_BUF) {
                        /* A large write goes straight to the file. */
                        size_t big = n - n % FILEIO_BUF;
                        r = write_all(w, p, big, err);
                        if (r < 0)
                                return r;
                        w->size += (int64_t)big;
                        p += big;
                        n -= big;
                        continue;
                }
                size_t take = FT_MIN(n, FILEIO_BUF - w->fill);
                memcpy(w->buf + w->fill, p, take);
                w->fill += take;
                w->size += (int64_t)take;
                p += take;
                n -= take;
                if (w->fill == FILEIO_BUF) {
                        r = flush_buf(w, err);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

int fileio_writer_sync(struct fileio_writer *w, struct ft_error *err) {
        int r = flush_buf(w, err);
        if (r < 0)
                return r;
        if (fchmod(w->fd, w->mode) < 0)
                return ft_error_set(err, -errno, NULL, "cannot set the mode of '%s': %s", w->tmp_path, strerror(errno));
        if (fsync(w->fd) < 0)
                return ft_error_set(err, -errno, NULL, "cannot sync '%s': %s", w->tmp_path, strerror(errno));
        return 0;
}

int fileio_writer_commit(struct fileio_writer *w, const char *final_path, struct ft_error *err) {
        char dir[PATH_MAX];
        int r;

        if (!final_path || !*final_path)
                final_path = w->final_path;
        if (!*final_path) {
                r = ft_error_set(err, -EINVAL, NULL, "no final path to commit '%s' to", w->tmp_path);
                goto fail;
        }
        r = fileio_writer_sync(w, err);
        if (r < 0)
                goto fail;
        if (close(w->fd) < 0) {
                w->fd = -1;
                r = ft_error_set(err, -errno, NULL, "cannot close '%s': %s", w->tmp_path, strerror(errno));
                goto fail;
        }
        w->fd = -1;
        if (rename(w->tmp_path, final_path) < 0) {
                r = ft_error_set(err, -errno, NULL, "cannot rename '%s' to '%s': %s", w->tmp_path, final_path,
                                 strerror(errno));
                goto fail;
        }
        if (dir_of(final_path, dir, sizeof(dir)) < 0) {
                r = ft_error_set(err, -ENAMETOOLONG, NULL, "path '%.200s' is too long", final_path);
                free(w);
                return r;
        }
        r = fileio_fsync_dir(dir, err);
        if (r == 0 && strcmp(dir, w->tmp_dir) != 0)
                r = fileio_fsync_dir(w->tmp_dir, err);
        free(w);
        return r;
fail:
        fileio_writer_abort(w);
        return r;
}

void fileio_writer_abort(struct fileio_writer *w) {
        if (!w)
                return;
        if (w->fd >= 0)
                close(w->fd);
        unlink(w->tmp_path);
        free(w);
}

int64_t fileio_writer_size(const struct fileio_writer *w) {
        return w->size;
}

const char *fileio_writer_tmp_path(const struct fileio_writer *w) {
        return w->tmp_path;
}

int fileio_write_atomic(const char *path, const void *data, size_t n, mode_t mode, struct ft_error *err) {
        struct fileio_writer *w;
        int r = fileio_writer_new(path, NULL, mode, 0, &w, err);
        if (r < 0)
                return r;
        r = fileio_writer_write(w, data, n, err);
        if (r < 0) {
                fileio_writer_abort(w);
                return r;
        }
        return fileio_writer_commit(w, NULL, err);
}

int fileio_map(const char *path, size_t max_bytes, void **ret_map, size_t *ret_size, struct ft_error *err) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return ft_error_set(err, -errno, NULL, "cannot open '%s': %s", path, strerror(errno));
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                return ft_error_set(err, -EINVAL, NULL, "'%s' is not a regular file", path);
        }
        size_t size = (size_t)st.st_size;
        if (max_bytes && size > max_bytes) {
                close(fd);
                return ft_error_set(err, -EFBIG, NULL, "'%s' is %zu bytes, over the limit of %zu", path, size,
                                    max_bytes);
        }
        void *map = NULL;
        if (size > 0 && (map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED) {
                int e = errno;
                close(fd);
                return ft_error_set(err, -e, NULL, "cannot map '%s': %s", path, strerror(e));
        }
        close(fd);
        *ret_map = map;
        *ret_size = size;
        return 0;
}

void fileio_unmap(void *map, size_t size) {
        if (map)
                munmap(map, size);
}

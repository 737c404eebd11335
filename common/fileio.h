/* fileio.h - durable file writing: a streaming writer to a temporary name in
 * the destination's file system, fsync, rename over the final name, fsync of
 * the directory. After fileio_writer_commit returns 0 the file is complete
 * under its final name and survives a crash or power loss; before, the final
 * name holds the old content (or nothing), never a half file.
 *
 * Used by the blob store and the trainer's checkpoints. Also: mapping a file
 * for reading with a size cap (the CSV, IDX and safetensors readers). Not for:
 * files that are appended to in place (logs). Never logs. Errors name the path.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/common.h"

struct fileio_writer;

/* Start writing a new file: a temporary file ".tmp-<final-name>-XXXXXX" is
 * created in tmp_dir (NULL: the directory of final_path; it must be on the same
 * file system as final_path). final_path may be NULL and given at commit
 * instead (content-addressed names are known only at the end). mode: the
 * permissions of the final file (e.g. 0644). Writes are buffered (64 KiB).
 * max_size caps the bytes written (-EFBIG beyond it); 0 means no cap. */
int fileio_writer_new(const char *final_path, const char *tmp_dir, mode_t mode, int64_t max_size,
                      struct fileio_writer **ret, struct ft_error *err);
int fileio_writer_write(struct fileio_writer *w, const void *data, size_t n, struct ft_error *err);
/* Flush, fsync, rename to final_path (NULL: the one given to _new), fsync the
 * final directory (and tmp_dir when different). Frees w whatever the result;
 * on failure the temporary file is removed. */
int fileio_writer_commit(struct fileio_writer *w, const char *final_path, struct ft_error *err);
/* Flush and fsync the temporary file without renaming it (for callers that
 * want to inspect it, e.g. hash it, before deciding). */
int fileio_writer_sync(struct fileio_writer *w, struct ft_error *err);
/* Remove the temporary file and free w. NULL is a no-op. */
void fileio_writer_abort(struct fileio_writer *w);
int64_t fileio_writer_size(const struct fileio_writer *w);
const char *fileio_writer_tmp_path(const struct fileio_writer *w);

/* Whole-buffer convenience: write data to path atomically and durably. */
int fileio_write_atomic(const char *path, const void *data, size_t n, mode_t mode, struct ft_error *err);

/* fsync a directory so that entries created/renamed in it are durable. */
int fileio_fsync_dir(const char *dir, struct ft_error *err);
/* mkdir -p; each directory created is made durable (its parent fsynced). */
int fileio_mkdir_p(const char *path, mode_t mode, struct ft_error *err);

/* Map the regular file at path read-only: *ret_map (NULL for an empty file)
 * and *ret_size. -EFBIG when it is over max_bytes (0: no cap), -EINVAL when it
 * is not a regular file. Release with fileio_unmap. */
int fileio_map(const char *path, size_t max_bytes, void **ret_map, size_t *ret_size, struct ft_error *err);
void fileio_unmap(void *map, size_t size); /* NULL is a no-op */

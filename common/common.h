/* common.h - tiny helpers every module may use: array size, checked
 * arithmetic, path joining, and the error convention.
 *
 * Not for: anything with state. Logging is in log.h (and only daemon/ and api/
 * may call it); files and atomic writes in fileio.h.
 *
 * Error convention (systemd CODING_STYLE): functions return int, 0 on success
 * and a negative errno-style code on failure; outputs go through ret_ pointers
 * that are left untouched on failure. Where a user needs to know *what* was
 * wrong, the function also fills a struct ft_error with a message.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define FT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define FT_MAX(a, b) ((a) > (b) ? (a) : (b))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _warn_unused_ __attribute__((warn_unused_result))

/* A message for the user: what was wrong and where (field, file:line:col,
 * tensor name). Lowercase, no full stop; every subject (a field, a value, a
 * name the user gave) in single quotes: 'batch_size', 'relu', 'conv1' (JSON
 * syntax, such as ["images", "labels"], stays JSON). `param` names the
 * request field when there is one (the API puts it in the error envelope). */
#define FT_ERROR_MSG_MAX 512
#define FT_ERROR_PARAM_MAX 128
struct ft_error {
        int code; /* negative errno */
        char message[FT_ERROR_MSG_MAX];
        char param[FT_ERROR_PARAM_MAX];
};

/* Fill err (which may be NULL) and return -abs(code). param may be NULL. */
int ft_error_set(struct ft_error *err, int code, const char *param, const char *fmt, ...) _printf_(4, 5);
void ft_error_clear(struct ft_error *err);

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool ft_mul_size(size_t a, size_t b, size_t *ret) {
        return !__builtin_mul_overflow(a, b, ret);
}
static inline bool ft_add_size(size_t a, size_t b, size_t *ret) {
        return !__builtin_add_overflow(a, b, ret);
}

/* Join path parts with '/' into buf (size bytes): ft_path_join(buf, size,
 * dir, name, NULL). Returns the length, or -ENAMETOOLONG when the result
 * does not fit (buf then holds ""), so no caller sizes a path buffer by hand
 * and hopes. A part may be "" (skipped); parts are not normalized. */
int ft_path_join(char *buf, size_t size, const char *first, ...) __attribute__((sentinel));

/* Server paths never reach clients (issue 21): copy message `in` to out with
 * the state directory `root` taken out. "<root>/jobs/<job_id>/" goes (what
 * follows is relative to the job; "<root>/jobs/<job_id>'" becomes "the job's
 * directory"), a blob "<root>/blobs/xx/<sha>" becomes "blob <sha prefix>",
 * any other "<root>/" goes and a bare "<root>" becomes "the state directory".
 * job_id may be NULL. The log keeps the full message. */
void ft_scrub_paths(const char *root, const char *job_id, const char *in, char *out, size_t size);

/* Monotonic and wall clocks. */
double ft_now_monotonic(void); /* seconds */
int64_t ft_now_unix_ms(void);

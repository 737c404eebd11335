/* error.c - struct ft_error helpers, path joining and clocks. Not for: logging. */
#include "common/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int ft_error_set(struct ft_error *err, int code, const char *param, const char *fmt, ...) {
        if (code > 0)
                code = -code;
        if (code == 0)
                code = -EINVAL;
        if (err) {
                va_list ap;
                err->code = code;
                va_start(ap, fmt);
                vsnprintf(err->message, sizeof(err->message), fmt, ap);
                va_end(ap);
                snprintf(err->param, sizeof(err->param), "%s", param ? param : "");
        }
        return code;
}

void ft_error_clear(struct ft_error *err) {
        if (err)
                memset(err, 0, sizeof(*err));
}

int ft_path_join(char *buf, size_t size, const char *first, ...) {
        size_t len = 0;
        va_list ap;
        int r = 0;

        if (!buf || size == 0)
                return -ENAMETOOLONG;
        buf[0] = '\0';
        va_start(ap, first);
        for (const char *part = first; part; part = va_arg(ap, const char *)) {
                size_t n = strlen(part);
                bool sep = len > 0 && buf[len - 1] != '/' && n > 0 && part[0] != '/';

                if (n == 0)
                        continue;
                if (len + sep + n >= size) {
                        r = -ENAMETOOLONG;
                        break;
                }
                if (sep)
                        buf[len++] = '/';
                memcpy(buf + len, part, n);
                len += n;
                buf[len] = '\0';
        }
        va_end(ap);
        if (r < 0) {
                buf[0] = '\0';
                return r;
        }
        return (int)len;
}

double ft_now_monotonic(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int64_t ft_now_unix_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ft_scrub_paths(const char *state, const char *job_id, const char *in, char *out, size_t size) {
        size_t n = strlen(state), o = 0;
        char job_prefix[96] = "";
        if (job_id && job_id[0])
                snprintf(job_prefix, sizeof(job_prefix), "/jobs/%.64s", job_id);
        size_t jn = strlen(job_prefix);
        while (*in && o + 1 < size) {
                if (n && strncmp(in, state, n) == 0 && (in[n] == '/' || in[n] == '\'' || in[n] == '\0')) {
                        in += n;
                        if (jn && strncmp(in, job_prefix, jn) == 0 && (in[jn] == '/' || in[jn] == '\'')) {
                                in += jn;
                                in += *in == '/';
                                if (*in == '\'')
                                        o += (size_t)snprintf(out + o, size - o, "the job's directory");
                        } else if (strncmp(in, "/blobs/", 7) == 0 && strlen(in) >= 10) {
                                in += 10; /* "/blobs/xx/" */
                                o += (size_t)snprintf(out + o, size - o, "blob ");
                                size_t k = 0;
                                for (; in[k] && in[k] != '\'' && in[k] != ' ' && in[k] != ':'; k++)
                                        if (k < 12 && o + 1 < size)
                                                out[o++] = in[k];
                                in += k;
                        } else {
                                in += *in == '/';
                                if (*in == '\'' || !*in)
                                        o += (size_t)snprintf(out + o, size - o, "the state directory");
                        }
                        if (o >= size)
                                o = size - 1;
                        continue;
                }
                out[o++] = *in++;
        }
        out[o] = '\0';
}

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

/* error.c - struct ft_error helpers and clocks. Not for: logging. */
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

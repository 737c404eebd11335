/* log.c - the stderr logger behind log.h. One write(2) per line so lines from
 * several threads never interleave. Not for: structured events (those go to
 * the store as job events). */
#include "common/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level_current = LOG_LEVEL_INFO;
static atomic_int log_journal = -1; /* -1: detect */

static const char *const level_names[] = {
        [LOG_LEVEL_ERROR] = "error",   [LOG_LEVEL_WARNING] = "warning", [LOG_LEVEL_NOTICE] = "notice",
        [LOG_LEVEL_INFO] = "info",     [LOG_LEVEL_DEBUG] = "debug",
};

int log_level_from_string(const char *s, enum log_level *ret) {
        if (!s)
                return -EINVAL;
        for (int l = LOG_LEVEL_ERROR; l <= LOG_LEVEL_DEBUG; l++)
                if (strcasecmp(s, level_names[l]) == 0) {
                        *ret = (enum log_level)l;
                        return 0;
                }
        if (strcasecmp(s, "warn") == 0) {
                *ret = LOG_LEVEL_WARNING;
                return 0;
        }
        return -EINVAL;
}

const char *log_level_to_string(enum log_level level) {
        if (level < LOG_LEVEL_ERROR || level > LOG_LEVEL_DEBUG)
                return "unknown";
        return level_names[level];
}

void log_set_level(enum log_level level) {
        atomic_store(&log_level_current, (int)level);
}

enum log_level log_get_level(void) {
        return (enum log_level)atomic_load(&log_level_current);
}

void log_set_journal(bool on) {
        atomic_store(&log_journal, on ? 1 : 0);
}

void log_emit(enum log_level level, const char *fmt, ...) {
        if ((int)level > atomic_load(&log_level_current))
                return;
        int journal = atomic_load(&log_journal);
        if (journal < 0) {
                journal = getenv("JOURNAL_STREAM") != NULL;
                atomic_store(&log_journal, journal);
        }

        char line[2048];
        size_t n;
        if (journal) {
                n = (size_t)snprintf(line, sizeof(line), "<%d>", (int)level);
        } else {
                struct timespec ts;
                struct tm tm;
                clock_gettime(CLOCK_REALTIME, &ts);
                gmtime_r(&ts.tv_sec, &tm);
                n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
                n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ %s: ", ts.tv_nsec / 1000000,
                                      log_level_to_string(level));
        }
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
        if (k < 0)
                k = 0;
        n += (size_t)k;
        if (n > sizeof(line) - 2)
                n = sizeof(line) - 2;
        /* One event, one line: fold embedded newlines. */
        for (size_t i = 0; i < n; i++)
                if (line[i] == '\n' || line[i] == '\r')
                        line[i] = ' ';
        line[n++] = '\n';
        ssize_t w = write(STDERR_FILENO, line, n);
        (void)w;
}

/* log.h - one line per event on stderr, journald-friendly.
 *
 * Under journald (JOURNAL_STREAM set, or --log-format=journal) each line starts
 * with the syslog priority prefix "<N>" that journald parses; on a terminal or
 * in a file, lines read "2026-11-27T17:00:00.123Z info: message".
 * Only daemon/ and api/ log; compute/ and store/ return errors instead.
 */
#pragma once

#include "common/common.h"

enum log_level {
        LOG_LEVEL_ERROR = 3,
        LOG_LEVEL_WARNING = 4,
        LOG_LEVEL_NOTICE = 5,
        LOG_LEVEL_INFO = 6,
        LOG_LEVEL_DEBUG = 7,
};

/* Parse "error", "warning"/"warn", "notice", "info", "debug". */
int log_level_from_string(const char *s, enum log_level *ret);
const char *log_level_to_string(enum log_level level);

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Use "<N>" prefixes (journald) instead of timestamps. Default: auto-detect. */
void log_set_journal(bool on);

void log_emit(enum log_level level, const char *fmt, ...) _printf_(2, 3);

#define log_error(...) log_emit(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(...) log_emit(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_notice(...) log_emit(LOG_LEVEL_NOTICE, __VA_ARGS__)
#define log_info(...) log_emit(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_emit(LOG_LEVEL_DEBUG, __VA_ARGS__)

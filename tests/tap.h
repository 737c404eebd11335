/* tap.h - a tiny TAP producer for the C tests (meson runs them with
 * protocol: 'tap'). Header-only so every test is one file.
 *
 *   int main(void) { ok(1 + 1 == 2, "addition"); return tap_done(); }
 *
 * The plan is printed at the end ("1..N"); a test that crashes midway is
 * reported by meson as failed. */
#pragma once

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_count, tap_failed;

__attribute__((format(printf, 2, 3), unused)) static int ok(int cond, const char *fmt, ...) {
        va_list ap;
        tap_count++;
        printf("%sok %d - ", cond ? "" : "not ", tap_count);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        if (!cond)
                tap_failed++;
        fflush(stdout);
        return cond;
}

__attribute__((format(printf, 1, 2), unused)) static void diag(const char *fmt, ...) {
        va_list ap;
        printf("# ");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        fflush(stdout);
}

__attribute__((unused)) static int tap_done(void) {
        printf("1..%d\n", tap_count);
        return tap_failed ? 1 : 0;
}

#define is_int(got, want, ...)                                                                               \
        do {                                                                                                 \
                long long g_ = (long long)(got), w_ = (long long)(want);                                     \
                if (!ok(g_ == w_, __VA_ARGS__))                                                              \
                        diag("  got %lld, want %lld", g_, w_);                                               \
        } while (0)

#define is_str(got, want, ...)                                                                               \
        do {                                                                                                 \
                const char *g_ = (got), *w_ = (want);                                                        \
                if (!ok(g_ && w_ && strcmp(g_, w_) == 0, __VA_ARGS__))                                       \
                        diag("  got '%s', want '%s'", g_ ? g_ : "(null)", w_ ? w_ : "(null)");               \
        } while (0)

/* Relative error |got-want| / max(|want|, floor) <= tol. */
#define is_close(got, want, tol, ...)                                                                        \
        do {                                                                                                 \
                double g_ = (double)(got), w_ = (double)(want);                                              \
                double d_ = fabs(g_ - w_) / fmax(fabs(w_), 1e-6);                                            \
                if (!ok(d_ <= (tol), __VA_ARGS__))                                                           \
                        diag("  got %.9g, want %.9g (relative error %.3g > %.3g)", g_, w_, d_, (double)(tol)); \
        } while (0)

/* sdnotify.c - the service-manager notifications of sdnotify.h: sd_notify through
 * libsystemd when built with it, the datagram protocol by hand otherwise; the
 * progress slots that gate the watchdog; and the main loop's periodic tick
 * that refreshes STATUS= and the job-count metrics.
 * Not for: signals, shutdown order or the worker pool itself. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/prometheus.h"
#include "config.h"
#include "daemon/daemon.h"
#include "daemon/sdnotify.h"
#include "store/store.h"

#if HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

static struct {
        char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
        uint64_t watchdog_usec;
        int main_slot;
        char last_status[NOTIFY_MESSAGE_MAX];
        char ready_status[NOTIFY_MESSAGE_MAX / 2]; /* what READY=1 said: the tick's STATUS= starts with it */
        bool watchdog_stuck_logged;
} state = {.main_slot = -1};

static struct {
        pthread_mutex_t lock; /* add/remove only; beats are atomic */
        bool used[NOTIFY_PROGRESS_SLOTS];
        char name[NOTIFY_PROGRESS_SLOTS][32];
        _Atomic int64_t beat_us[NOTIFY_PROGRESS_SLOTS]; /* monotonic microseconds */
} slots = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int64_t now_us(void) {
        return (int64_t)(ft_now_monotonic() * 1e6);
}

void sdnotify_init(void) {
        const char *s = getenv("NOTIFY_SOCKET");
        if (s && (s[0] == '/' || s[0] == '@') && strlen(s) < sizeof(state.socket_path))
                snprintf(state.socket_path, sizeof(state.socket_path), "%s", s);
        else
                state.socket_path[0] = '\0';

        state.watchdog_usec = 0;
#if HAVE_LIBSYSTEMD
        uint64_t usec = 0;
        if (sd_watchdog_enabled(0, &usec) > 0)
                state.watchdog_usec = usec;
#else
        const char *w = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
        if (w && *w) {
                char *end;
                unsigned long long usec = strtoull(w, &end, 10);
                bool ours = !pid || !*pid || strtol(pid, NULL, 10) == (long)getpid();
                if (!*end && usec > 0 && ours)
                        state.watchdog_usec = usec;
        }
#endif
        if (state.main_slot < 0)
                state.main_slot = sdnotify_progress_add("main loop");
}

uint64_t sdnotify_watchdog_usec(void) {
        return state.watchdog_usec;
}

int sdnotify_send_to(const char *socket_path, const char *message) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        size_t n = strlen(socket_path);
        if (n == 0 || n >= sizeof(sa.sun_path))
                return -EINVAL;
        memcpy(sa.sun_path, socket_path, n);
        if (sa.sun_path[0] == '@')
                sa.sun_path[0] = '\0'; /* abstract namespace */
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        ssize_t k = sendto(fd, message, strlen(message), MSG_NOSIGNAL, (struct sockaddr *)&sa,
                           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
        int r = k < 0 ? -errno : 0;
        close(fd);
        return r;
}

int sdnotify_send(const char *message) {
        if (!state.socket_path[0])
                return 0;
#if HAVE_LIBSYSTEMD
        int r = sd_notify(0, message);
        return r < 0 ? r : 0;
#else
        return sdnotify_send_to(state.socket_path, message);
#endif
}

/* "KEY=1\nSTATUS=..." with the status on one line. */
static int send_with_status(const char *first, const char *status) {
        char msg[NOTIFY_MESSAGE_MAX];
        if (status) {
                snprintf(msg, sizeof(msg), "%sSTATUS=%s\n", first, status);
                for (char *p = msg + strlen(first) + 7; *p && p[1]; p++)
                        if (*p == '\n')
                                *p = ' ';
                snprintf(state.last_status, sizeof(state.last_status), "%s", status);
        } else {
                snprintf(msg, sizeof(msg), "%s", first);
        }
        return sdnotify_send(msg);
}

int sdnotify_ready(const char *status) {
        if (status)
                snprintf(state.ready_status, sizeof(state.ready_status), "%s", status);
        return send_with_status("READY=1\n", status);
}

int sdnotify_reloading(void) {
        return sdnotify_send("RELOADING=1\n");
}

int sdnotify_stopping(const char *status) {
        return send_with_status("STOPPING=1\n", status);
}

int sdnotify_status(const char *status) {
        return send_with_status("", status);
}

int sdnotify_progress_add(const char *name) {
        int slot = -ENOSPC;
        pthread_mutex_lock(&slots.lock);
        for (int i = 0; i < NOTIFY_PROGRESS_SLOTS; i++)
                if (!slots.used[i]) {
                        snprintf(slots.name[i], sizeof(slots.name[i]), "%s", name);
                        atomic_store(&slots.beat_us[i], now_us());
                        slots.used[i] = true;
                        slot = i;
                        break;
                }
        pthread_mutex_unlock(&slots.lock);
        return slot;
}

void sdnotify_progress_remove(int slot) {
        if (slot < 0 || slot >= NOTIFY_PROGRESS_SLOTS)
                return;
        pthread_mutex_lock(&slots.lock);
        slots.used[slot] = false;
        pthread_mutex_unlock(&slots.lock);
}

void sdnotify_progress_beat(int slot) {
        if (slot >= 0 && slot < NOTIFY_PROGRESS_SLOTS)
                atomic_store(&slots.beat_us[slot], now_us());
}

bool sdnotify_progress_ok(double now, double max_age_s, char *stuck, size_t stuck_size) {
        bool ok = true;
        double oldest = 0;
        pthread_mutex_lock(&slots.lock);
        for (int i = 0; i < NOTIFY_PROGRESS_SLOTS; i++) {
                if (!slots.used[i])
                        continue;
                double age = now - (double)atomic_load(&slots.beat_us[i]) * 1e-6;
                if (age > max_age_s) {
                        if (ok || age > oldest) {
                                oldest = age;
                                if (stuck)
                                        snprintf(stuck, stuck_size, "%s", slots.name[i]);
                        }
                        ok = false;
                }
        }
        pthread_mutex_unlock(&slots.lock);
        return ok;
}

unsigned sdnotify_tick_interval_ms(void) {
        /* systemd suggests pinging at half the interval; a third leaves room
         * for a tick delayed by a slow store query. */
        uint64_t ms = state.watchdog_usec / 3000;
        if (ms == 0 || ms > 1000)
                ms = 1000;
        if (ms < 10)
                ms = 10;
        return (unsigned)ms;
}

void sdnotify_tick(struct store *store) {
        sdnotify_progress_beat(state.main_slot);
        if (store) {
                const char *names[STORE_JOB_STATE_COUNT];
                int64_t counts[STORE_JOB_STATE_COUNT];
                size_t n = 0;
                for (int st = 0; st < STORE_JOB_STATE_COUNT; st++) {
                        struct ft_error err = {0};
                        if (store_job_count(store, STORE_JOB_STATE_BIT(st), &counts[n], &err) < 0) {
                                log_warning("cannot count jobs: %s", err.message);
                                return; /* a store that cannot answer is no progress: no WATCHDOG=1 */
                        }
                        names[n++] = store_job_state_name((enum store_job_state)st);
                }
                api_metrics_jobs_set(names, counts, n);
        }

        char status[NOTIFY_MESSAGE_MAX];
        int64_t queued = api_metrics_jobs_get("queued");
        unsigned running = api_metrics_jobs_running();
        const char *sep = state.ready_status[0] ? "; " : "";
        if (queued >= 0)
                snprintf(status, sizeof(status), "%s%s%lld queued, %u running", state.ready_status, sep,
                         (long long)queued, running);
        else
                snprintf(status, sizeof(status), "%s%s%u running", state.ready_status, sep, running);
        if (strcmp(status, state.last_status) != 0)
                sdnotify_status(status);

        if (state.watchdog_usec == 0)
                return;
        char stuck[32] = "";
        if (sdnotify_progress_ok(ft_now_monotonic(), (double)state.watchdog_usec * 1e-6, stuck, sizeof(stuck))) {
                sdnotify_send("WATCHDOG=1\n");
                state.watchdog_stuck_logged = false;
        } else if (!state.watchdog_stuck_logged) {
                log_error("%s made no progress for %.1f s: not feeding the watchdog", stuck,
                          (double)state.watchdog_usec * 1e-6);
                state.watchdog_stuck_logged = true;
        }
}

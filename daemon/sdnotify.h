/* sdnotify.h - talking to the service manager: readiness (READY=1), STATUS=,
 * RELOADING=1, STOPPING=1 and the watchdog (WATCHDOG=1), through libsystemd's
 * sd_notify when built with it and a small built-in datagram sender
 * otherwise (the protocol is a text datagram to the AF_UNIX socket named by
 * $NOTIFY_SOCKET). Without $NOTIFY_SOCKET every call is a cheap no-op.
 *
 * The watchdog is only fed while the daemon makes progress: each thread that
 * must stay alive (the main loop, each worker) takes a progress slot and
 * beats it; sdnotify_tick() sends WATCHDOG=1 only when every slot has beaten
 * within the watchdog interval. A worker busy inside one long batch does not
 * beat, so WatchdogSec= must exceed the longest batch (the unit uses 60 s).
 *
 * Not for: signals or shutdown order (serve.c); metrics (api/prometheus.h).
 */
#pragma once

#include <stdint.h>

#include "common/common.h"

struct store;

#define NOTIFY_MESSAGE_MAX 1024
#define NOTIFY_PROGRESS_SLOTS 128

/* Read $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID (once, at start). */
void sdnotify_init(void);
/* The watchdog interval in microseconds, 0 when no watchdog was asked for. */
uint64_t sdnotify_watchdog_usec(void);

/* Send one notification ("KEY=value" lines). 0 when sent or when there is no
 * $NOTIFY_SOCKET; a negative errno when sending failed. */
int sdnotify_send(const char *message);
/* The built-in sender (also used without libsystemd): one datagram to the
 * AF_UNIX socket at path ("@name" for the abstract namespace). */
int sdnotify_send_to(const char *socket_path, const char *message);

int sdnotify_ready(const char *status); /* READY=1 and STATUS= */
int sdnotify_reloading(void); /* RELOADING=1 (READY=1 follows through sdnotify_ready) */
int sdnotify_stopping(const char *status); /* STOPPING=1 and STATUS= */
int sdnotify_status(const char *status); /* STATUS= */

/* Progress slots: name is for the log ("main", "worker 2"). Returns a slot
 * index >= 0 or -ENOSPC. A new slot counts as having just beaten. */
int sdnotify_progress_add(const char *name);
void sdnotify_progress_remove(int slot);
void sdnotify_progress_beat(int slot); /* thread-safe, lock-free */
/* True when every live slot beat within max_age_s of now (monotonic seconds);
 * otherwise false and, when stuck is given, the name of the oldest one. */
bool sdnotify_progress_ok(double now, double max_age_s, char *stuck, size_t stuck_size);

/* Called by the main loop every sdnotify_tick_interval_ms(): beats the main
 * slot, refreshes the job-count metrics and STATUS= from store (when not
 * NULL), and sends WATCHDOG=1 when every progress slot is fresh. */
void sdnotify_tick(struct store *store);
unsigned sdnotify_tick_interval_ms(void);

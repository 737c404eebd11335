/* prometheus.h - the process-wide metrics registry behind GET /metrics
 * (Prometheus text format 0.0.4). Every function is thread-safe and cheap
 * (one mutex, no allocation after the first use of a series), so the HTTP
 * threads, the worker pool and the main loop call it directly.
 *
 * What reports what:
 *   api/server.c   api_metrics_http_observe() once per finished request
 *   daemon/sdnotify.c api_metrics_jobs_set() from the store's counts, every tick
 *   daemon workers api_metrics_job_start / _progress / _epoch / _finish
 *   daemon/webhooks.c api_metrics_webhook_attempt() once per delivery attempt
 *
 * Not for: logging, or anything the API returns as JSON (jobs' progress lives
 * in the store). Cardinality is bounded: route labels are route patterns,
 * methods a fixed set, at most API_METRICS_MAX_RUNNING running jobs.
 */
#pragma once

#include <stdint.h>

#include "common/common.h"

#define API_METRICS_MAX_RUNNING 64 /* running jobs shown with per-job series */
#define API_METRICS_MAX_HTTP_SERIES 512
#define API_METRICS_RATE_WINDOW_S 1.0 /* samples/s is measured over windows at least this long */

/* A static string for a request method: one of GET HEAD POST PUT PATCH
 * DELETE OPTIONS, else "other". */
const char *api_metrics_method_label(const char *method);

/* One finished request: method and route must be static strings (the route
 * table's pattern, or NULL for a request no route matched), status the HTTP
 * status sent, seconds from the first byte to the completed response. */
void api_metrics_http_observe(const char *method, const char *route, unsigned status, double seconds);

/* Job counts by state, as the store last reported them. names[i] (static
 * strings such as "queued") with counts[i]; n <= 8. */
void api_metrics_jobs_set(const char *const *names, const int64_t *counts, size_t n);
/* The last count set for state name, or -1 when never set. */
int64_t api_metrics_jobs_get(const char *name);

/* A job started running on a worker (attempt >= 1). -ENOSPC when
 * API_METRICS_MAX_RUNNING jobs already run (its totals still count). */
int api_metrics_job_start(const char *job_id, unsigned epochs_total);
/* Progress within an epoch: samples processed since the previous call and the
 * current (running mean) training loss (NAN: not known yet, keep the last). */
void api_metrics_job_progress(const char *job_id, unsigned epoch, uint64_t samples, double loss);
/* An epoch ended: the epoch number (1-based) and its training loss. */
void api_metrics_job_epoch(const char *job_id, unsigned epoch, double train_loss);
/* The job left the worker; state is its final state ("succeeded", ...,
 * "queued" when it was released for a restart). */
void api_metrics_job_finish(const char *job_id, const char *state);
/* Jobs between api_metrics_job_start and api_metrics_job_finish. */
unsigned api_metrics_jobs_running(void);

/* The state directory's file system, watched for a full disk (issue 21).
 * Configure once at start: low_bytes is --disk-low-mb (0: never "almost full"). */
void api_disk_configure(const char *state_dir, uint64_t low_bytes);
/* Workers wait for this many free bytes before they claim again (0: not waiting): set after a job was put back
 * to the queue because its checkpoint did not fit, cleared when the space is there. */
void api_disk_wait_set(uint64_t need_bytes);
uint64_t api_disk_wait_get(void);
/* A job was put back to the queue because the disk was full. */
void api_disk_requeued(void);
struct api_disk_status {
        bool known; /* statvfs answered */
        uint64_t free_bytes; /* available to the daemon's user */
        uint64_t size_bytes;
        uint64_t low_bytes; /* the configured threshold */
        uint64_t wait_bytes; /* what the workers wait for (0: not waiting) */
        uint64_t requeued; /* jobs put back because the disk was full, since start */
        bool low; /* known && free_bytes < low_bytes */
};
void api_disk_status(struct api_disk_status *ret);
/* One webhook delivery attempt ended (daemon/webhooks.c). */
enum api_metrics_webhook_result {
        API_METRICS_WEBHOOK_DELIVERED,
        API_METRICS_WEBHOOK_RETRY,
        API_METRICS_WEBHOOK_GIVEN_UP,
};
void api_metrics_webhook_attempt(enum api_metrics_webhook_result result);

/* Render the whole registry in the Prometheus text exposition format.
 * *ret is NUL-terminated and malloc'ed (the caller frees). */
int api_metrics_render(char **ret, size_t *ret_size);

/* test_prometheus.c - the metrics registry behind GET /metrics: HTTP series and histograms, job
 * counts, per-job series, label escaping, thread safety under concurrent
 * writers, and the rendered text accepted by Prometheus's own parser
 * (`promtool check metrics`, from Debian's prometheus package). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "api/prometheus.h"
#include "tests/tap.h"

static bool has_line(const char *text, const char *line) {
        size_t n = strlen(line);
        for (const char *p = strstr(text, line); p; p = strstr(p + 1, line))
                if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
                        return true;
        return false;
}

static void *hammer(void *arg) {
        (void)arg;
        for (int i = 0; i < 20000; i++)
                api_metrics_http_observe("GET", "/v1/jobs/{id}", 200, 0.0001 * (i % 100));
        return NULL;
}

static int promtool(const char *text) {
        FILE *p = popen("promtool check metrics 2>&1", "w");
        if (!p)
                return -1;
        fputs(text, p);
        return pclose(p);
}

int main(void) {
        char *text = NULL;
        size_t size = 0;

        is_str(api_metrics_method_label("GET"), "GET", "known method");
        is_str(api_metrics_method_label("BREW"), "other", "unknown method is 'other'");

        api_metrics_http_observe("GET", "/healthz", 200, 0.0002);
        api_metrics_http_observe("GET", "/healthz", 200, 0.003);
        api_metrics_http_observe("GET", "/healthz", 503, 20.0);
        api_metrics_http_observe("GET", NULL, 404, 0.0001);

        pthread_t t[4];
        for (int i = 0; i < 4; i++)
                pthread_create(&t[i], NULL, hammer, NULL);

        const char *names[] = {"queued", "running", "succeeded"};
        int64_t counts[] = {3, 1, 7};
        api_metrics_jobs_set(names, counts, 3);
        is_int(api_metrics_jobs_get("queued"), 3, "job count read back");
        is_int(api_metrics_jobs_get("nope"), -1, "an unknown state is -1");

        ok(api_metrics_job_start("job_a", 10) == 0, "job_a starts");
        ok(api_metrics_job_start("job_\"b\\\n", 5) == 0, "a job id that needs escaping starts");
        is_int(api_metrics_jobs_running(), 2, "two running");
        api_metrics_job_progress("job_a", 1, 640, 2.25);
        api_metrics_job_epoch("job_a", 1, 2.0);
        api_metrics_job_progress("job_a", 2, 360, 1.5);
        api_metrics_job_progress("job_a", 2, 0, NAN); /* loss not known yet: the last one stays */
        api_metrics_job_finish("job_\"b\\\n", "succeeded");
        is_int(api_metrics_jobs_running(), 1, "one left running");
        api_metrics_job_finish("ghost", "failed"); /* never started: counted, not crashing */

        for (int i = 0; i < 4; i++)
                pthread_join(t[i], NULL);

        ok(api_metrics_render(&text, &size) == 0 && text && strlen(text) == size, "render");
        ok(has_line(text, "finetuned_http_requests_total{method=\"GET\",route=\"/healthz\",code=\"200\"} 2"),
           "requests by method, route and code");
        ok(has_line(text, "finetuned_http_requests_total{method=\"GET\",route=\"/healthz\",code=\"503\"} 1"),
           "a second status is its own series");
        ok(has_line(text, "finetuned_http_requests_total{method=\"GET\",route=\"unmatched\",code=\"404\"} 1"),
           "no route matched -> route=\"unmatched\"");
        ok(has_line(text, "finetuned_http_requests_total{method=\"GET\",route=\"/v1/jobs/{id}\",code=\"200\"} 80000"),
           "80000 concurrent observations from 4 threads all counted");
        ok(has_line(
                   text,
                   "finetuned_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"0.0005\"} 1"),
           "0.2 ms lands in the 0.5 ms bucket");
        ok(has_line(text,
                    "finetuned_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"0.005\"} 2"),
           "buckets are cumulative");
        ok(has_line(text,
                    "finetuned_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"10\"} 2"),
           "20 s is above the last finite bucket");
        ok(has_line(text,
                    "finetuned_http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"+Inf\"} 3"),
           "+Inf bucket counts every request, all statuses merged");
        ok(has_line(text, "finetuned_http_request_duration_seconds_count{method=\"GET\",route=\"/healthz\"} 3"),
           "histogram count");
        ok(has_line(text, "finetuned_jobs{state=\"queued\"} 3") &&
                   has_line(text, "finetuned_jobs{state=\"succeeded\"} 7"),
           "jobs by state");
        ok(has_line(text, "finetuned_queue_depth 3"), "queue depth");
        ok(has_line(text, "finetuned_jobs_running 1"), "running jobs");
        ok(has_line(text, "finetuned_training_samples_total 1000"), "samples processed");
        ok(has_line(text, "finetuned_training_epochs_total 1"), "epochs processed");
        ok(has_line(text, "finetuned_job_epoch{job=\"job_a\"} 2"), "current epoch of a running job");
        ok(has_line(text, "finetuned_job_loss{job=\"job_a\"} 1.5"), "current loss of a running job");
        ok(has_line(text, "finetuned_job_epochs{job=\"job_a\"} 10"), "requested epochs of a running job");
        ok(has_line(text, "finetuned_jobs_finished_total{state=\"succeeded\"} 1") &&
                   has_line(text, "finetuned_jobs_finished_total{state=\"failed\"} 1"),
           "finished jobs by state");
        ok(strstr(text, "job_\\\"b") == NULL || strstr(text, "finetuned_job_epoch{job=\"job_\\\"b\\\\\\n\"}") == NULL,
           "a finished job's series is gone");
        ok(strstr(text, "\nprocess_resident_memory_bytes ") != NULL, "process RSS");
        ok(strstr(text, "\nprocess_start_time_seconds ") != NULL, "process start time");
        int rc = promtool(text);
        ok(rc == 0, "promtool check metrics accepts the output (status %d)", rc);
        free(text);

        /* Escaping, checked by promtool while the job is running. */
        ok(api_metrics_job_start("job_\"b\\\n", 5) == 0, "the odd job id runs again");
        ok(api_metrics_render(&text, &size) == 0, "render again");
        ok(has_line(text, "finetuned_job_epoch{job=\"job_\\\"b\\\\\\n\"} 0"), "label value escaped: \\\" \\\\ \\n");
        rc = promtool(text);
        ok(rc == 0, "promtool accepts escaped labels (status %d)", rc);
        free(text);
        return tap_done();
}

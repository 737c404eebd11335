/* prometheus.c - the metrics registry (prometheus.h) and GET /metrics, which renders
 * it in the Prometheus text exposition format 0.0.4 together with the
 * process's own numbers read from /proc at scrape time.
 * Not for: deciding what the workers report (daemon/), or JSON. */
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "api/internal.h"
#include "api/prometheus.h"
#include "config.h"

/* Upper bounds of the request-latency buckets, in seconds (+Inf is implicit). */
static const double http_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define N_BUCKETS ARRAY_SIZE(http_buckets)

struct http_series {
        const char *method, *route; /* static strings */
        unsigned status;
        uint64_t count;
        uint64_t buckets[N_BUCKETS]; /* per bucket (not cumulative) */
        double sum;
};

struct running_job {
        bool used;
        char id[64];
        unsigned epoch, epochs_total;
        double loss; /* NAN until the first report */
        bool rate_started; /* the first progress report opens the first window */
        double window_start;
        uint64_t window_samples;
        double samples_per_second;
};

#define MAX_STATES 8
#define MAX_FINISH_STATES 8

static struct {
        pthread_mutex_t lock;
        struct http_series http[API_METRICS_MAX_HTTP_SERIES];
        size_t n_http;
        uint64_t http_dropped; /* observations past API_METRICS_MAX_HTTP_SERIES series */
        const char *state_names[MAX_STATES];
        int64_t state_counts[MAX_STATES];
        size_t n_states;
        struct running_job running[API_METRICS_MAX_RUNNING];
        unsigned n_running;
        uint64_t epochs_total, samples_total, jobs_started;
        const char *finish_names[MAX_FINISH_STATES];
        uint64_t finish_counts[MAX_FINISH_STATES];
        size_t n_finish;
        uint64_t webhook_attempts[3]; /* by enum api_metrics_webhook_result */
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER};

static struct {
        char state_dir[PATH_MAX];
        uint64_t low_bytes;
        _Atomic uint64_t wait_bytes, requeued;
} disk;

void api_disk_configure(const char *state_dir, uint64_t low_bytes) {
        snprintf(disk.state_dir, sizeof(disk.state_dir), "%s", state_dir ? state_dir : "");
        disk.low_bytes = low_bytes;
}

void api_disk_wait_set(uint64_t need_bytes) {
        atomic_store(&disk.wait_bytes, need_bytes);
}

uint64_t api_disk_wait_get(void) {
        return atomic_load(&disk.wait_bytes);
}

void api_disk_requeued(void) {
        atomic_fetch_add(&disk.requeued, 1);
}

void api_disk_status(struct api_disk_status *ret) {
        struct statvfs v;
        *ret = (struct api_disk_status){.low_bytes = disk.low_bytes,
                                        .wait_bytes = atomic_load(&disk.wait_bytes),
                                        .requeued = atomic_load(&disk.requeued)};
        if (!disk.state_dir[0] || statvfs(disk.state_dir, &v) < 0)
                return;
        ret->known = true;
        ret->free_bytes = (uint64_t)v.f_bavail * v.f_frsize;
        ret->size_bytes = (uint64_t)v.f_blocks * v.f_frsize;
        ret->low = ret->free_bytes < ret->low_bytes;
}

void api_metrics_webhook_attempt(enum api_metrics_webhook_result result) {
        if ((unsigned)result >= ARRAY_SIZE(reg.webhook_attempts))
                return;
        pthread_mutex_lock(&reg.lock);
        reg.webhook_attempts[result]++;
        pthread_mutex_unlock(&reg.lock);
}

const char *api_metrics_method_label(const char *method) {
        static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
        for (size_t i = 0; method && i < ARRAY_SIZE(known); i++)
                if (strcmp(method, known[i]) == 0)
                        return known[i];
        return "other";
}

void api_metrics_http_observe(const char *method, const char *route, unsigned status, double seconds) {
        if (!method)
                method = "other";
        if (!route)
                route = "unmatched";
        if (!(seconds >= 0))
                seconds = 0;
        pthread_mutex_lock(&reg.lock);
        struct http_series *s = NULL;
        for (size_t i = 0; i < reg.n_http; i++) {
                struct http_series *c = &reg.http[i];
                /* pointer equality first: labels are static strings */
                if (c->status == status && (c->method == method || strcmp(c->method, method) == 0) &&
                    (c->route == route || strcmp(c->route, route) == 0)) {
                        s = c;
                        break;
                }
        }
        if (!s && reg.n_http < ARRAY_SIZE(reg.http)) {
                s = &reg.http[reg.n_http++];
                *s = (struct http_series){.method = method, .route = route, .status = status};
        }
        if (s) {
                s->count++;
                s->sum += seconds;
                for (size_t b = 0; b < N_BUCKETS; b++)
                        if (seconds <= http_buckets[b]) {
                                s->buckets[b]++;
                                break;
                        }
        } else {
                reg.http_dropped++;
        }
        pthread_mutex_unlock(&reg.lock);
}

void api_metrics_jobs_set(const char *const *names, const int64_t *counts, size_t n) {
        pthread_mutex_lock(&reg.lock);
        reg.n_states = FT_MIN(n, (size_t)MAX_STATES);
        for (size_t i = 0; i < reg.n_states; i++) {
                reg.state_names[i] = names[i];
                reg.state_counts[i] = counts[i];
        }
        pthread_mutex_unlock(&reg.lock);
}

int64_t api_metrics_jobs_get(const char *name) {
        int64_t v = -1;
        pthread_mutex_lock(&reg.lock);
        for (size_t i = 0; i < reg.n_states; i++)
                if (strcmp(reg.state_names[i], name) == 0)
                        v = reg.state_counts[i];
        pthread_mutex_unlock(&reg.lock);
        return v;
}

static struct running_job *find_job(const char *id) {
        for (size_t i = 0; i < ARRAY_SIZE(reg.running); i++)
                if (reg.running[i].used && strcmp(reg.running[i].id, id) == 0)
                        return &reg.running[i];
        return NULL;
}

int api_metrics_job_start(const char *job_id, unsigned epochs_total) {
        int r = -ENOSPC;
        pthread_mutex_lock(&reg.lock);
        reg.jobs_started++;
        struct running_job *j = find_job(job_id);
        for (size_t i = 0; !j && i < ARRAY_SIZE(reg.running); i++)
                if (!reg.running[i].used) {
                        j = &reg.running[i];
                        reg.n_running++;
                }
        if (j) {
                *j = (struct running_job){
                        .used = true, .epochs_total = epochs_total, .loss = NAN, .window_start = ft_now_monotonic()};
                snprintf(j->id, sizeof(j->id), "%s", job_id);
                r = 0;
        }
        pthread_mutex_unlock(&reg.lock);
        return r;
}

void api_metrics_job_progress(const char *job_id, unsigned epoch, uint64_t samples, double loss) {
        double now = ft_now_monotonic();
        pthread_mutex_lock(&reg.lock);
        reg.samples_total += samples;
        struct running_job *j = find_job(job_id);
        if (j) {
                j->epoch = epoch;
                if (!isnan(loss))
                        j->loss = loss;
                if (!j->rate_started) {
                        /* when these samples started is unknown (loading, building the model) */
                        j->rate_started = true;
                        j->window_start = now;
                } else {
                        j->window_samples += samples;
                }
                if (now - j->window_start >= API_METRICS_RATE_WINDOW_S) {
                        j->samples_per_second = (double)j->window_samples / (now - j->window_start);
                        j->window_start = now;
                        j->window_samples = 0;
                }
        }
        pthread_mutex_unlock(&reg.lock);
}

void api_metrics_job_epoch(const char *job_id, unsigned epoch, double train_loss) {
        pthread_mutex_lock(&reg.lock);
        reg.epochs_total++;
        struct running_job *j = find_job(job_id);
        if (j) {
                j->epoch = epoch;
                if (!isnan(train_loss))
                        j->loss = train_loss;
        }
        pthread_mutex_unlock(&reg.lock);
}

void api_metrics_job_finish(const char *job_id, const char *state) {
        pthread_mutex_lock(&reg.lock);
        struct running_job *j = find_job(job_id);
        if (j) {
                j->used = false;
                reg.n_running--;
        }
        size_t i;
        for (i = 0; i < reg.n_finish; i++)
                if (strcmp(reg.finish_names[i], state) == 0)
                        break;
        if (i == reg.n_finish && i < MAX_FINISH_STATES)
                reg.finish_names[reg.n_finish++] = state;
        if (i < reg.n_finish)
                reg.finish_counts[i]++;
        pthread_mutex_unlock(&reg.lock);
}

unsigned api_metrics_jobs_running(void) {
        pthread_mutex_lock(&reg.lock);
        unsigned n = reg.n_running;
        pthread_mutex_unlock(&reg.lock);
        return n;
}

/* ---- rendering ------------------------------------------------------------ */

struct out {
        char *buf;
        size_t size, cap;
        bool failed;
};

_printf_(2, 3) static void put(struct out *o, const char *fmt, ...) {
        if (o->failed)
                return;
        for (;;) {
                va_list ap;
                va_start(ap, fmt);
                int n = vsnprintf(o->buf + o->size, o->cap - o->size, fmt, ap);
                va_end(ap);
                if (n < 0) {
                        o->failed = true;
                        return;
                }
                if ((size_t)n < o->cap - o->size) {
                        o->size += (size_t)n;
                        return;
                }
                size_t cap = FT_MAX(o->cap * 2, o->size + (size_t)n + 1);
                char *b = realloc(o->buf, cap);
                if (!b) {
                        o->failed = true;
                        return;
                }
                o->buf = b;
                o->cap = cap;
        }
}

static void header(struct out *o, const char *name, const char *type, const char *help) {
        put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value with \, " and newline escaped, into a bounded buffer. */
static const char *esc(const char *in, char *buf, size_t size) {
        size_t k = 0;
        for (; *in && k + 3 < size; in++) {
                if (*in == '\\' || *in == '"') {
                        buf[k++] = '\\';
                        buf[k++] = *in;
                } else if (*in == '\n') {
                        buf[k++] = '\\';
                        buf[k++] = 'n';
                } else {
                        buf[k++] = *in;
                }
        }
        buf[k] = '\0';
        return buf;
}

/* Prometheus float syntax: NaN, +Inf, -Inf, or a number that round-trips. */
static const char *num(double v, char buf[32]) {
        if (isnan(v))
                return "NaN";
        if (isinf(v))
                return v > 0 ? "+Inf" : "-Inf";
        snprintf(buf, 32, "%.15g", v);
        return buf;
}

static void render_http(struct out *o) {
        char e1[128], e2[256];
        header(o, "finetuned_http_requests_total", "counter",
               "HTTP requests answered, by method, route pattern and status code.");
        for (size_t i = 0; i < reg.n_http; i++) {
                const struct http_series *s = &reg.http[i];
                put(o, "finetuned_http_requests_total{method=\"%s\",route=\"%s\",code=\"%u\"} %llu\n",
                    esc(s->method, e1, sizeof(e1)), esc(s->route, e2, sizeof(e2)), s->status,
                    (unsigned long long)s->count);
        }
        header(o, "finetuned_http_request_duration_seconds", "histogram",
               "Time from the start of a request to the end of its response, by method and route pattern.");
        /* Histograms are per (method, route): merge the per-status series. */
        for (size_t i = 0; i < reg.n_http; i++) {
                const struct http_series *s = &reg.http[i];
                bool first = true;
                for (size_t k = 0; k < i; k++)
                        if (strcmp(reg.http[k].method, s->method) == 0 && strcmp(reg.http[k].route, s->route) == 0)
                                first = false;
                if (!first)
                        continue;
                uint64_t b[N_BUCKETS] = {0}, count = 0;
                double sum = 0;
                for (size_t k = i; k < reg.n_http; k++) {
                        const struct http_series *t = &reg.http[k];
                        if (strcmp(t->method, s->method) != 0 || strcmp(t->route, s->route) != 0)
                                continue;
                        for (size_t j = 0; j < N_BUCKETS; j++)
                                b[j] += t->buckets[j];
                        count += t->count;
                        sum += t->sum;
                }
                esc(s->method, e1, sizeof(e1));
                esc(s->route, e2, sizeof(e2));
                uint64_t cum = 0;
                char nb[32];
                for (size_t j = 0; j < N_BUCKETS; j++) {
                        cum += b[j];
                        put(o,
                            "finetuned_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\",le=\"%s\"} "
                            "%llu\n",
                            e1, e2, num(http_buckets[j], nb), (unsigned long long)cum);
                }
                put(o, "finetuned_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\",le=\"+Inf\"} %llu\n",
                    e1, e2, (unsigned long long)count);
                put(o, "finetuned_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\"} %s\n", e1, e2,
                    num(sum, nb));
                put(o, "finetuned_http_request_duration_seconds_count{method=\"%s\",route=\"%s\"} %llu\n", e1, e2,
                    (unsigned long long)count);
        }
}

/* The last complete window's rate; the open window's while there is none yet
 * or when the job has stopped reporting (so a stalled job drops to 0). */
static double job_rate(const struct running_job *j, double now) {
        double open = now - j->window_start;
        if (j->samples_per_second > 0 && open < 2 * API_METRICS_RATE_WINDOW_S)
                return j->samples_per_second;
        if (open > 0 && j->window_samples > 0)
                return (double)j->window_samples / open;
        return open < 2 * API_METRICS_RATE_WINDOW_S ? j->samples_per_second : 0;
}

static void render_jobs(struct out *o) {
        double now = ft_now_monotonic();
        char e[160], nb[32];
        if (reg.n_states > 0) {
                header(o, "finetuned_jobs", "gauge", "Jobs in the store, by state.");
                for (size_t i = 0; i < reg.n_states; i++)
                        put(o, "finetuned_jobs{state=\"%s\"} %lld\n", esc(reg.state_names[i], e, sizeof(e)),
                            (long long)reg.state_counts[i]);
                for (size_t i = 0; i < reg.n_states; i++)
                        if (strcmp(reg.state_names[i], "queued") == 0) {
                                header(o, "finetuned_queue_depth", "gauge", "Jobs waiting for a worker.");
                                put(o, "finetuned_queue_depth %lld\n", (long long)reg.state_counts[i]);
                        }
        }
        header(o, "finetuned_jobs_running", "gauge", "Jobs being trained by this process's workers now.");
        put(o, "finetuned_jobs_running %u\n", reg.n_running);
        header(o, "finetuned_jobs_started_total", "counter", "Job attempts started by this process's workers.");
        put(o, "finetuned_jobs_started_total %llu\n", (unsigned long long)reg.jobs_started);
        header(o, "finetuned_jobs_finished_total", "counter",
               "Job attempts that left this process's workers, by the state they left in.");
        for (size_t i = 0; i < reg.n_finish; i++)
                put(o, "finetuned_jobs_finished_total{state=\"%s\"} %llu\n", esc(reg.finish_names[i], e, sizeof(e)),
                    (unsigned long long)reg.finish_counts[i]);
        header(o, "finetuned_training_epochs_total", "counter", "Training epochs completed.");
        put(o, "finetuned_training_epochs_total %llu\n", (unsigned long long)reg.epochs_total);
        header(o, "finetuned_training_samples_total", "counter", "Training samples processed (forward and backward).");
        put(o, "finetuned_training_samples_total %llu\n", (unsigned long long)reg.samples_total);

        double total_rate = 0;
        for (size_t i = 0; i < ARRAY_SIZE(reg.running); i++)
                if (reg.running[i].used)
                        total_rate += job_rate(&reg.running[i], now);
        header(o, "finetuned_training_samples_per_second", "gauge",
               "Training throughput of all running jobs, over the last few seconds.");
        put(o, "finetuned_training_samples_per_second %s\n", num(total_rate, nb));

        static const struct {
                const char *name, *help;
        } per_job[] = {
                {"finetuned_job_epoch", "Current epoch (1-based) of each running job."},
                {"finetuned_job_epochs", "Epochs requested by each running job."},
                {"finetuned_job_loss", "Current training loss (running mean over the epoch) of each running job."},
                {"finetuned_job_samples_per_second", "Training throughput of each running job."},
        };
        for (size_t m = 0; m < ARRAY_SIZE(per_job); m++) {
                header(o, per_job[m].name, "gauge", per_job[m].help);
                for (size_t i = 0; i < ARRAY_SIZE(reg.running); i++) {
                        const struct running_job *j = &reg.running[i];
                        if (!j->used)
                                continue;
                        double v = m == 0 ? j->epoch : m == 1 ? j->epochs_total : m == 2 ? j->loss : job_rate(j, now);
                        put(o, "%s{job=\"%s\"} %s\n", per_job[m].name, esc(j->id, e, sizeof(e)), num(v, nb));
                }
        }
}

static void render_webhooks(struct out *o) {
        static const char *const names[] = {"delivered", "retry", "given_up"};
        header(o, "finetuned_webhook_attempts_total", "counter",
               "Webhook deliveries attempted by this process, by outcome: delivered (2xx), retry (will be sent "
               "again), given_up (the day of retries is over).");
        for (size_t i = 0; i < ARRAY_SIZE(names); i++)
                put(o, "finetuned_webhook_attempts_total{result=\"%s\"} %llu\n", names[i],
                    (unsigned long long)reg.webhook_attempts[i]);
}

/* The process collector's usual names, so stock dashboards work. */
static void render_process(struct out *o) {
        long page = sysconf(_SC_PAGESIZE);
        unsigned long long vm_pages = 0, rss_pages = 0;
        FILE *f = fopen("/proc/self/statm", "re");
        if (f) {
                if (fscanf(f, "%llu %llu", &vm_pages, &rss_pages) != 2)
                        vm_pages = rss_pages = 0;
                fclose(f);
        }
        header(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        put(o, "process_resident_memory_bytes %llu\n", rss_pages * (unsigned long long)page);
        header(o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
        put(o, "process_virtual_memory_bytes %llu\n", vm_pages * (unsigned long long)page);

        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0) {
                char nb[32];
                double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
                             (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
                header(o, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
                put(o, "process_cpu_seconds_total %s\n", num(cpu, nb));
        }

        unsigned fds = 0;
        DIR *d = opendir("/proc/self/fd");
        if (d) {
                struct dirent *de;
                while ((de = readdir(d)))
                        if (de->d_name[0] != '.')
                                fds++;
                closedir(d);
                header(o, "process_open_fds", "gauge", "Number of open file descriptors.");
                put(o, "process_open_fds %u\n", fds > 0 ? fds - 1 : 0); /* less the one opendir holds */
        }
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
                header(o, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
                put(o, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
        }

        /* Start time: field 22 of /proc/self/stat (clock ticks after boot) + btime. */
        char stat[1024];
        unsigned long long start_ticks = 0, btime = 0;
        f = fopen("/proc/self/stat", "re");
        if (f) {
                size_t n = fread(stat, 1, sizeof(stat) - 1, f);
                stat[n] = '\0';
                fclose(f);
                char *p = strrchr(stat, ')');
                /* after ") " come fields 3..; starttime is the 20th of those */
                for (int field = 3; p && field <= 22; field++)
                        p = strchr(p + 1, ' ');
                if (p)
                        start_ticks = strtoull(p + 1, NULL, 10);
        }
        f = fopen("/proc/stat", "re");
        if (f) {
                char line[256];
                while (fgets(line, sizeof(line), f))
                        if (sscanf(line, "btime %llu", &btime) == 1)
                                break;
                fclose(f);
        }
        long hz = sysconf(_SC_CLK_TCK);
        if (btime > 0 && hz > 0) {
                char nb[32];
                header(o, "process_start_time_seconds", "gauge",
                       "Start time of the process since the Unix epoch in seconds.");
                put(o, "process_start_time_seconds %s\n", num((double)btime + (double)start_ticks / (double)hz, nb));
        }
}

/* The GPUs the driver sees (the probe runs once per process, compute/backend/cuda/driver.c). */
static void render_cuda(struct out *o) {
        struct compute_runtime_info rt;
        compute_runtime_info(&rt);
        header(o, "finetuned_cuda_devices", "gauge", "CUDA devices the driver sees (0 without CUDA or a driver).");
        put(o, "finetuned_cuda_devices %d\n", rt.cuda_devices);
        if (rt.cuda_device) {
                char nb[2 * sizeof(rt.cuda_device_name) + 4];
                header(o, "finetuned_cuda_device_memory_bytes", "gauge", "Total memory of the CUDA device.");
                put(o, "finetuned_cuda_device_memory_bytes{gpu=\"0\",name=\"%s\"} %llu\n",
                    esc(rt.cuda_device_name, nb, sizeof(nb)), (unsigned long long)rt.cuda_memory_bytes);
        }
}

static void render_disk(struct out *o) {
        struct api_disk_status d;
        api_disk_status(&d);
        if (d.known) {
                header(o, "finetuned_state_disk_free_bytes", "gauge",
                       "Bytes free for the daemon on the state directory's file system.");
                put(o, "finetuned_state_disk_free_bytes %llu\n", (unsigned long long)d.free_bytes);
                header(o, "finetuned_state_disk_size_bytes", "gauge", "Size of the state directory's file system.");
                put(o, "finetuned_state_disk_size_bytes %llu\n", (unsigned long long)d.size_bytes);
        }
        header(o, "finetuned_state_disk_low", "gauge",
               "1 when the free bytes are below --disk-low-mb (/healthz is then degraded).");
        put(o, "finetuned_state_disk_low %d\n", d.low ? 1 : 0);
        header(o, "finetuned_workers_disk_wait_bytes", "gauge",
               "Free bytes the workers wait for before they claim a job again (0: not waiting).");
        put(o, "finetuned_workers_disk_wait_bytes %llu\n", (unsigned long long)d.wait_bytes);
        header(o, "finetuned_jobs_requeued_disk_full_total", "counter",
               "Jobs put back to the queue because a checkpoint or result did not fit on the disk.");
        put(o, "finetuned_jobs_requeued_disk_full_total %llu\n", (unsigned long long)d.requeued);
}

int api_metrics_render(char **ret, size_t *ret_size) {
        struct out o = {0};
        header(&o, "finetuned_build_info", "gauge", "Always 1; the labels describe the running build.");
        put(&o, "finetuned_build_info{version=\"%s\",libsystemd=\"%s\",cuda=\"%s\"} 1\n", FINETUNED_VERSION,
            HAVE_LIBSYSTEMD ? "yes" : "no", HAVE_CUDA ? "yes" : "no");
        render_cuda(&o);
        pthread_mutex_lock(&reg.lock);
        render_http(&o);
        render_jobs(&o);
        render_webhooks(&o);
        uint64_t dropped = reg.http_dropped;
        pthread_mutex_unlock(&reg.lock);
        header(&o, "finetuned_http_requests_unrecorded_total", "counter",
               "Requests not recorded because the series limit was reached.");
        put(&o, "finetuned_http_requests_unrecorded_total %llu\n", (unsigned long long)dropped);
        render_process(&o);
        render_disk(&o);
        if (o.failed) {
                free(o.buf);
                return -ENOMEM;
        }
        *ret = o.buf;
        *ret_size = o.size;
        return 0;
}

enum MHD_Result api_handle_metrics(struct api_request *req) {
        char *text = NULL;
        size_t size = 0;
        if (api_metrics_render(&text, &size) < 0)
                return api_reply_error(req, API_ERR_INTERNAL, NULL, "cannot render metrics: out of memory");
        struct MHD_Response *resp = MHD_create_response_from_buffer(size, text, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(text);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
        MHD_add_response_header(resp, "Cache-Control", "no-store");
        enum MHD_Result r = MHD_queue_response(req->conn, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return r;
}

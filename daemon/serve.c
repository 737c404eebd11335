/* serve.c - `finetuned serve`: prepare the state directory, load the token,
 * open the store, bind the socket, start the workers and the HTTP server, then
 * wait for a signal (collecting unused blobs hourly) and shut everything down
 * in reverse order.
 * Not for: flag parsing (config.c), running jobs (workers.c). */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "api/prometheus.h"
#include "config.h"
#include "daemon/daemon.h"
#include "daemon/sdnotify.h"
#include "daemon/webhooks.h"
#include "daemon/workers.h"
#include "store/store.h"

extern char **environ;

/* mkdir -p with 0700 for the parts we create. */
static int mkdir_p(const char *path, struct ft_error *err) {
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof(tmp), "%s", path);
        for (char *p = tmp + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
                        return ft_error_set(err, -errno, "state-dir", "cannot create state directory '%s': %s", path,
                                            strerror(errno));
                *p = '/';
        }
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
                return ft_error_set(err, -errno, "state-dir", "cannot create state directory '%s': %s", path,
                                    strerror(errno));
        return 0;
}

static int prepare_state_dir(const char *path, struct ft_error *err) {
        struct stat st;
        if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode))
                return ft_error_set(err, -ENOTDIR, "state-dir", "state directory '%s' is not a directory", path);
        int r = mkdir_p(path, err);
        if (r < 0)
                return r;
        if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
                return ft_error_set(err, -ENOTDIR, "state-dir", "state directory '%s' is not a directory", path);

        /* access(2) says yes to root everywhere: try for real. */
        char probe[PATH_MAX];
        if (snprintf(probe, sizeof(probe), "%s/.write-test-XXXXXX", path) >= (int)sizeof(probe))
                return ft_error_set(err, -ENAMETOOLONG, "state-dir", "state directory path is too long");
        int fd = mkstemp(probe);
        if (fd < 0)
                return ft_error_set(err, -errno, "state-dir", "state directory '%s' is not writable: %s", path,
                                    strerror(errno));
        close(fd);
        unlink(probe);
        return 0;
}

/* One daemon per state directory: an exclusive flock(2) on <state>/finetuned.lock, held (the descriptor kept open)
 * until the process exits, so a crash or kill -9 releases it. The holder's pid is written into the file for the
 * message a second daemon prints. Returns the descriptor, or negative errno with err set. */
static int state_dir_lock(const char *state, struct ft_error *err) {
        char path[PATH_MAX];
        int r = ft_path_join(path, sizeof(path), state, "finetuned.lock", NULL);
        if (r < 0)
                return ft_error_set(err, r, "state-dir", "state directory path is too long");
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
                return ft_error_set(err, -errno, "state-dir", "cannot open '%s': %s", path, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                int e = errno;
                char pid[32] = "";
                ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
                pid[n > 0 ? n : 0] = '\0';
                pid[strcspn(pid, "\n")] = '\0';
                close(fd);
                if (e == EWOULDBLOCK)
                        return ft_error_set(err, -EBUSY, "state-dir",
                                            "state directory '%s' is in use by another finetuned (pid %s): one "
                                            "daemon per state directory",
                                            state, pid[0] ? pid : "unknown");
                return ft_error_set(err, -e, "state-dir", "cannot lock '%s': %s", path, strerror(e));
        }
        char pid[32];
        int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
        if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)len, 0) != len)
                log_warning("cannot write the pid into '%s': %s", path, strerror(errno));
        return fd;
}

#define MAINTENANCE_INTERVAL_S 3600
#define BLOB_GRACE_MS (3600 * 1000LL) /* an upload being registered is never collected */
#define IDEMPOTENCY_TTL_MS (24 * 3600 * 1000LL) /* a retry a day later is a new request */

/* Hourly housekeeping (and at start): remove blobs nothing refers to (uploads the readers refused, deleted
 * datasets and models) and directories of deleted jobs, and forget old idempotency keys. */
static void maintenance(struct store *store) {
        struct ft_error err = {0};
        int removed = 0, pruned = 0, dirs = 0;
        if (store_blob_gc(store, BLOB_GRACE_MS, &removed, &err) < 0)
                log_warning("blob garbage collection: %s", err.message);
        if (store_job_dirs_sweep(store, &dirs, &err) < 0)
                log_warning("sweeping deleted jobs' directories: %s", err.message);
        if (dirs)
                log_info("maintenance: %d director%s of deleted jobs removed", dirs, dirs == 1 ? "y" : "ies");
        if (store_idempotency_prune(store, IDEMPOTENCY_TTL_MS, &pruned, &err) < 0)
                log_warning("idempotency key pruning: %s", err.message);
        if (removed || pruned)
                log_info("maintenance: %d unused blob file%s removed, %d idempotency key%s forgotten", removed,
                         removed == 1 ? "" : "s", pruned, pruned == 1 ? "" : "s");
}

int serve_main(int argc, char **argv) {
        struct daemon_config cfg;
        struct ft_error err = {0};
        bool usage = false, exit_now = false;
        struct store *store = NULL;
        struct api_server *server = NULL;
        struct workers *workers = NULL;
        struct webhooks *webhooks = NULL;
        int listen_fd = -1, status = 1;
        char bound[128];

        config_init(&cfg);
        int r = config_parse_serve(argc, argv, environ, &cfg, &usage, &exit_now, &err);
        if (r < 0) {
                fprintf(stderr, "finetuned serve: %s\n", err.message);
                if (usage) {
                        serve_usage(stderr);
                        return 2;
                }
                return 1;
        }
        if (exit_now) {
                serve_usage(stdout);
                return 0;
        }
        if (cfg.check_config) {
                r = config_check(&cfg, stdout, &err);
                if (r < 0)
                        fprintf(stderr, "finetuned serve: %s\n", err.message);
                return r < 0 ? 1 : 0;
        }
        log_set_level(cfg.log_level);
        if (config_log_file_open(cfg.log_file, &err) < 0) {
                fprintf(stderr, "finetuned serve: %s\n", err.message);
                return 1;
        }
        sdnotify_init();

        /* Signals are taken synchronously by this thread; every thread started
         * from here on inherits the blocked mask. */
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = prepare_state_dir(cfg.state_dir, &err);
        if (r < 0) {
                log_error("%s", err.message);
                return 1;
        }
        int lock_fd = state_dir_lock(cfg.state_dir, &err); /* kept open until exit */
        if (lock_fd < 0) {
                log_error("%s", err.message);
                return 1;
        }
        char token[API_TOKEN_SET_MAX + 1] = "";
        if (cfg.token_file[0]) {
                r = api_token_load(cfg.token_file, token, sizeof(token), &err);
                if (r < 0) {
                        log_error("%s", err.message);
                        return 1;
                }
        } else if (!api_host_is_loopback(cfg.listen_host)) {
                log_error("listening on '%s' (not loopback) needs --token-file: anyone who can reach the port "
                          "could otherwise run jobs and read data",
                          cfg.listen_host);
                return 1;
        }
        r = store_open_with(cfg.state_dir, &(struct store_options){.url = cfg.store_url}, &store, &err);
        if (r < 0) {
                log_error("%s", err.message);
                return 1;
        }
        r = api_listen(cfg.listen_host, cfg.listen_port, &listen_fd, bound, sizeof(bound), &err);
        if (r < 0) {
                log_error("%s", err.message);
                goto out;
        }
        struct api_options opts = {
                .listen_fd = listen_fd,
                .state_dir = cfg.state_dir,
                .store_url = cfg.store_url,
                .http_threads = 16, /* concurrent submits share one commit (group commit): more than 4 helps */
                .max_connections = 512,
                .max_connections_per_ip = cfg.max_per_ip,
                .connection_timeout_s = cfg.http_timeout_s,
                .token = token,
                .upload_max = (uint64_t)cfg.max_upload_mb << 20,
                .max_queued_jobs = cfg.max_queued_jobs,
                .job_progress = workers_progress,
                .webhook_allow = &cfg.webhook_allow,
                .distributed = cfg.mpirun[0] != 0,
        };
        api_disk_configure(cfg.state_dir, (uint64_t)cfg.disk_low_mb << 20);
        struct workers_options wopts = {
                .state_dir = cfg.state_dir,
                .store_url = cfg.store_url,
                .n = cfg.workers,
                .threads = cfg.threads,
                .gpus = cfg.gpus,
                .n_gpus = cfg.n_gpus,
                .lease_ms = (int64_t)cfg.lease_s * 1000,
                .mpirun = cfg.mpirun,
        };
        r = workers_start(&wopts, &workers, &err);
        if (r < 0) {
                close(listen_fd);
                log_error("%s", err.message);
                goto out;
        }
        /* the webhook outbox is SQLite-only so far: with --store postgresql:// the sender does not run and
         * POST /v1/webhooks answers 501 (docs/decisions.md) */
        r = cfg.store_url[0] ? 0
                             : webhooks_start(&(struct webhooks_options){.state_dir = cfg.state_dir,
                                                                         .allow = &cfg.webhook_allow},
                                              &webhooks, &err);
        if (r < 0) {
                close(listen_fd);
                log_error("%s", err.message);
                goto out;
        }
        opts.job_progress_userdata = workers;
        opts.job_threads = workers_threads(workers);
        opts.job_workers = cfg.workers ? cfg.workers : 1;
        r = api_server_start(&opts, &server, &err);
        explicit_bzero(token, sizeof(token));
        if (r < 0) {
                close(listen_fd);
                log_error("%s", err.message);
                goto out;
        }
        log_notice("finetuned %s listening on http://%s (state %s, schema v%d, %u worker%s, auth %s, store %s)",
                   FINETUNED_VERSION, bound, cfg.state_dir, store_schema_version(store), cfg.workers,
                   cfg.workers == 1 ? "" : "s", cfg.token_file[0] ? "bearer token" : "off (loopback)",
                   store_is_shared(store) ? "postgresql" : "sqlite");
        if (cfg.config_file[0])
                log_info("configuration file %s", cfg.config_file);
        char ready[160];
        snprintf(ready, sizeof(ready), "listening on http://%s", bound);
        sdnotify_ready(ready); /* the database is open and migrated, the socket bound and served */
        struct timespec tick = {.tv_sec = sdnotify_tick_interval_ms() / 1000,
                                .tv_nsec = (long)(sdnotify_tick_interval_ms() % 1000) * 1000000};

        maintenance(store);
        double last_maintenance = ft_now_monotonic();
        for (;;) {
                int sig = sigtimedwait(&mask, NULL, &tick);
                int saved = errno; /* maintenance logs and queries: errno is not sigtimedwait's after it */
                if (ft_now_monotonic() - last_maintenance >= MAINTENANCE_INTERVAL_S) {
                        maintenance(store);
                        last_maintenance = ft_now_monotonic();
                }
                if (sig < 0 && saved == EAGAIN) {
                        sdnotify_tick(store); /* watchdog, STATUS=, job-count metrics */
                        continue;
                }
                if (sig < 0) {
                        if (saved == EINTR)
                                continue;
                        log_error("sigtimedwait: %s", strerror(saved));
                        break;
                }
                if (sig == SIGHUP) {
                        sdnotify_reloading();
                        if (cfg.token_file[0]) {
                                char fresh[API_TOKEN_SET_MAX + 1];
                                if (api_token_load(cfg.token_file, fresh, sizeof(fresh), &err) < 0 ||
                                    api_server_set_token(server, fresh, &err) < 0)
                                        log_error("SIGHUP: keeping the old token: %s", err.message);
                                else
                                        log_notice("SIGHUP: token file re-read");
                                explicit_bzero(fresh, sizeof(fresh));
                        }
                        if (config_log_file_open(cfg.log_file, &err) < 0)
                                log_error("%s", err.message);
                        log_notice("SIGHUP: log file reopened");
                        sdnotify_ready(ready);
                        continue;
                }
                log_notice("%s received, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
                sdnotify_stopping("stopping");
                break;
        }
        status = 0;
out:
        /* HTTP first (no new jobs or cancels), then the workers hand their jobs back. */
        api_server_stop(server);
        workers_stop(workers);
        webhooks_stop(webhooks); /* after the workers: their last events are in the outbox for the next start */
        store_close(store);
        close(lock_fd); /* the next daemon may start */
        if (status == 0)
                log_notice("stopped");
        return status;
}

/* daemon.h - the finetuned program: configuration and the subcommands.
 * main.c dispatches argv[1] to one of the *_main functions declared here.
 * This is the only module that exits the process. */
#pragma once

#include <limits.h>
#include <stdio.h>

#include "common/common.h"
#include "common/log.h"

#define DAEMON_DEFAULT_HOST "127.0.0.1"
#define DAEMON_DEFAULT_PORT "8080"
#define DAEMON_DEFAULT_STATE_DIR "./var"
#define DAEMON_MAX_WORKERS 64
#define DAEMON_MAX_THREADS 1024
#define DAEMON_DEFAULT_MAX_QUEUED 1000
#define DAEMON_DEFAULT_MAX_UPLOAD_MB 1024

struct daemon_config {
        char listen_host[256]; /* numeric address or name; IPv6 without brackets */
        char listen_port[8];   /* decimal, 0..65535 (0: an ephemeral port) */
        char state_dir[PATH_MAX];
        unsigned workers; /* concurrent jobs, >= 1 */
        unsigned threads; /* OpenMP threads per worker; 0 = cores / workers */
        enum log_level log_level;
        char token_file[PATH_MAX]; /* "" : no auth (only allowed on loopback) */
        unsigned max_queued_jobs;  /* POST /v1/jobs answers 429 beyond this */
        unsigned max_upload_mb;    /* largest dataset / weights upload, MiB */
        unsigned http_timeout_s;   /* idle HTTP connections are closed after this */
        unsigned max_per_ip;       /* concurrent connections from one client address */
        unsigned lease_s;          /* a claimed job's lease; a dead daemon's jobs are requeued after it */
};

/* Defaults, before the environment and flags are applied. */
void config_init(struct daemon_config *cfg);

/* Parse a --listen value: "host:port", "[v6addr]:port", ":port" (all IPv4
 * interfaces) or "port" (loopback). */
int config_parse_listen(const char *value, struct daemon_config *cfg, struct ft_error *err);

/* Apply FINETUNED_* variables from envp (NULL-terminated "KEY=value"), then the
 * flags of `finetuned serve` (argv[0] is "serve"). Precedence: flags >
 * environment > defaults. Returns 0, or a negative errno with err naming the
 * flag or variable; *ret_usage is set when the error is a usage error (unknown
 * flag, missing argument), which exits 2 rather than 1. *ret_exit_now is set
 * for --help (usage printed on stdout). */
int config_parse_serve(int argc, char **argv, char *const *envp, struct daemon_config *cfg, bool *ret_usage,
                       bool *ret_exit_now, struct ft_error *err);

void serve_usage(FILE *out);

/* Subcommands: each returns the process exit status. */
int serve_main(int argc, char **argv);
int inspect_main(int argc, char **argv);
int train_main(int argc, char **argv);

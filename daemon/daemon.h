/* daemon.h - the finetuned program: configuration and the subcommands.
 * main.c dispatches argv[1] to one of the *_main functions declared here.
 * This is the only module that exits the process. */
#pragma once

#include <limits.h>
#include <stdio.h>

#include "common/common.h"
#include "common/log.h"
#include "common/netaddr.h"

#define DAEMON_DEFAULT_HOST "127.0.0.1"
#define DAEMON_DEFAULT_PORT "8080"
#define DAEMON_DEFAULT_STATE_DIR "./var"
#define DAEMON_MAX_WORKERS 64
#define DAEMON_MAX_THREADS 1024
#define DAEMON_DEFAULT_MAX_QUEUED 1000
#define DAEMON_DEFAULT_MAX_UPLOAD_MB 1024
#define DAEMON_DEFAULT_DISK_LOW_MB 1024
#define DAEMON_CONFIG_FILE_NAME "finetuned.conf"
#define DAEMON_CONFIG_FILE_MAX (64u * 1024) /* bytes; a longer file is refused */
#define DAEMON_CONFIG_LINE_MAX 4096
#define DAEMON_CONFIG_ORIGIN_MAX 48
#define DAEMON_CONFIG_OPTION_COUNT 17
#define DAEMON_STORE_URL_MAX 1024 /* bytes, NUL included */
#define DAEMON_MAX_GPUS 64 /* --gpus entries; GPU numbers are 0 .. DAEMON_MAX_GPUS - 1 */

struct daemon_config {
        char listen_host[256]; /* numeric address or name; IPv6 without brackets */
        char listen_port[8];   /* decimal, 0..65535 (0: an ephemeral port) */
        char state_dir[PATH_MAX];
        unsigned workers; /* concurrent jobs, >= 1 */
        unsigned threads; /* OpenMP threads per worker; 0 = cores / workers */
        enum log_level log_level;
        char token_file[PATH_MAX]; /* bearer tokens for the API (api/ reads it); "" = none */
        char log_file[PATH_MAX];   /* append log lines here instead of stderr; reopened on SIGHUP; "" = stderr */
        char config_file[PATH_MAX]; /* the configuration file that was read; "" when none */
        bool check_config;          /* --check-config: validate, print the effective settings, exit */
        /* where each option's value came from ("default", "--workers", "FINETUNED_WORKERS", "line 12"),
         * in the order of config_option_names() */
        char origin[DAEMON_CONFIG_OPTION_COUNT][DAEMON_CONFIG_ORIGIN_MAX];
        unsigned max_queued_jobs;  /* POST /v1/jobs answers 429 beyond this */
        unsigned max_upload_mb;    /* largest dataset / weights upload, MiB */
        unsigned http_timeout_s;   /* idle HTTP connections are closed after this */
        unsigned max_per_ip;       /* concurrent connections from one client address */
        unsigned lease_s;          /* a claimed job's lease; a dead daemon's jobs are requeued after it */
        int gpus[DAEMON_MAX_GPUS]; /* --gpus: worker i uses gpus[i % n_gpus] */
        unsigned n_gpus;           /* 0: "none" (every worker asks for GPU 0) */
        unsigned disk_low_mb;      /* /healthz is degraded below this many MiB free on the state disk (0: never) */
        /* --webhook-allow: internal addresses webhooks may reach anyway (CIDR list; default none) */
        struct netaddr_list webhook_allow;
        char webhook_allow_text[NETADDR_TEXT_MAX + 1];
        char mpirun[1025];         /* --mpirun: the MPI launcher template (daemon/launcher.h); "": none */
        char store_url[DAEMON_STORE_URL_MAX]; /* --store: "" = SQLite in the state directory, else postgresql://... */
};

/* Defaults, before the environment and flags are applied. */
void config_init(struct daemon_config *cfg);

/* Parse a --listen value: "host:port", "[v6addr]:port", ":port" (all IPv4
 * interfaces) or "port" (loopback). */
int config_parse_listen(const char *value, struct daemon_config *cfg, struct ft_error *err);

/* Apply, in this order (later wins): $STATE_DIRECTORY (systemd), the
 * configuration file, FINETUNED_* variables from envp (NULL-terminated
 * "KEY=value"), then the flags of `finetuned serve` (argv[0] is "serve").
 * So: flags > environment > configuration file > defaults.
 *
 * The configuration file is --config FILE, else $FINETUNED_CONFIG, else
 * $CONFIGURATION_DIRECTORY/finetuned.conf, else
 * <sysconfdir>/finetuned/finetuned.conf; the first two must exist, the last
 * two are skipped when missing. Returns 0, or a negative errno with err naming
 * the flag, variable or FILE:LINE:COL; *ret_usage is set when the error is a
 * usage error (unknown flag, missing argument), which exits 2 rather than 1.
 * *ret_exit_now is set for --help (usage printed on stdout). */
int config_parse_serve(int argc, char **argv, char *const *envp, struct daemon_config *cfg, bool *ret_usage,
                       bool *ret_exit_now, struct ft_error *err);

/* Parse configuration-file text (path names it in errors: "PATH:LINE:COL:
 * message"): "key = value" lines, keys as the long flags without "--", blank
 * lines and lines starting with # or ; ignored, values optionally in double
 * quotes. An unknown key, a key given twice, a bad value, a line longer than
 * DAEMON_CONFIG_LINE_MAX or a NUL byte is an error. */
int config_parse_text(const char *path, const char *text, size_t size, struct daemon_config *cfg,
                      struct ft_error *err);

/* Read and apply one configuration file (at most DAEMON_CONFIG_FILE_MAX bytes).
 * -ENOENT when it does not exist (err says so). */
int config_parse_file(const char *path, struct daemon_config *cfg, struct ft_error *err);

/* The option names, in the order of cfg->origin[]; and one value formatted as
 * it would be written in the configuration file. */
const char *const *config_option_names(void);
void config_option_format(const struct daemon_config *cfg, size_t index, char *buf, size_t size);

/* --check-config: check what can be checked without starting (the token file
 * is a readable regular file not readable by others, the log file's directory
 * exists), then print the effective settings with their origins to out. */
int config_check(const struct daemon_config *cfg, FILE *out, struct ft_error *err);

void serve_usage(FILE *out);

/* Point stderr (where log lines go) at path, opened for appending (0640,
 * created if missing); called at start and on SIGHUP so that logrotate can
 * move the file away. An empty path does nothing. */
int config_log_file_open(const char *path, struct ft_error *err);

/* Subcommands: each returns the process exit status. */
int serve_main(int argc, char **argv);
int inspect_main(int argc, char **argv);
int explain_main(int argc, char **argv); /* explain_cmd.c */
/* eval_cmd.c: `finetuned evaluate` and `finetuned predict`. */
int evaluate_main(int argc, char **argv);
int predict_main(int argc, char **argv);
int train_main(int argc, char **argv);

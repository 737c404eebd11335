/* config.c - defaults, FINETUNED_* environment variables and `serve` flags,
 * with precedence flags > environment > defaults.
 * Not for: acting on the configuration (serve.c does that). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "daemon/daemon.h"

void config_init(struct daemon_config *cfg) {
        memset(cfg, 0, sizeof(*cfg));
        snprintf(cfg->listen_host, sizeof(cfg->listen_host), "%s", DAEMON_DEFAULT_HOST);
        snprintf(cfg->listen_port, sizeof(cfg->listen_port), "%s", DAEMON_DEFAULT_PORT);
        snprintf(cfg->state_dir, sizeof(cfg->state_dir), "%s", DAEMON_DEFAULT_STATE_DIR);
        cfg->workers = 1;
        cfg->threads = 0;
        cfg->log_level = LOG_LEVEL_INFO;
        cfg->max_queued_jobs = DAEMON_DEFAULT_MAX_QUEUED;
        cfg->max_upload_mb = DAEMON_DEFAULT_MAX_UPLOAD_MB;
        cfg->http_timeout_s = 30;
        cfg->lease_s = 30;
        cfg->max_per_ip = 64;
}

static int parse_port(const char *s, const char *value, char out[8], struct ft_error *err) {
        size_t n = strlen(s);
        if (n == 0 || n > 5 || strspn(s, "0123456789") != n || strtoul(s, NULL, 10) > 65535)
                return ft_error_set(err, -EINVAL, "listen",
                                    "invalid listen address '%s': port must be a number from 0 to 65535", value);
        snprintf(out, 8, "%lu", strtoul(s, NULL, 10));
        return 0;
}

int config_parse_listen(const char *value, struct daemon_config *cfg, struct ft_error *err) {
        char host[256], port[8];
        const char *colon;

        if (!value || !*value)
                return ft_error_set(err, -EINVAL, "listen", "invalid listen address '': empty");
        if (strlen(value) >= sizeof(host) || strpbrk(value, " \t\r\n/"))
                return ft_error_set(err, -EINVAL, "listen", "invalid listen address '%s'", value);

        if (value[0] == '[') {
                const char *close = strchr(value, ']');
                if (!close || close == value + 1 || close[1] != ':')
                        return ft_error_set(err, -EINVAL, "listen",
                                            "invalid listen address '%s': expected [address]:port", value);
                snprintf(host, sizeof(host), "%.*s", (int)(close - value - 1), value + 1);
                colon = close + 1;
        } else if ((colon = strrchr(value, ':'))) {
                if (memchr(value, ':', (size_t)(colon - value)))
                        return ft_error_set(err, -EINVAL, "listen",
                                            "invalid listen address '%s': write IPv6 addresses as [address]:port",
                                            value);
                if (colon == value)
                        snprintf(host, sizeof(host), "0.0.0.0");
                else
                        snprintf(host, sizeof(host), "%.*s", (int)(colon - value), value);
        } else {
                snprintf(host, sizeof(host), "%s", DAEMON_DEFAULT_HOST);
                colon = value - 1; /* the whole value is the port */
        }
        int r = parse_port(colon + 1, value, port, err);
        if (r < 0)
                return r;
        memcpy(cfg->listen_host, host, sizeof(host));
        memcpy(cfg->listen_port, port, sizeof(port));
        return 0;
}

static int parse_uint(const char *s, unsigned min, unsigned max, const char *name, unsigned *ret,
                      struct ft_error *err) {
        char *end;
        if (!s || !*s || strspn(s, "0123456789") != strlen(s))
                return ft_error_set(err, -EINVAL, name, "invalid %s '%s': expected a whole number", name, s ? s : "");
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || v < min || v > max)
                return ft_error_set(err, -ERANGE, name, "invalid %s '%s': must be from %u to %u", name, s, min, max);
        *ret = (unsigned)v;
        return 0;
}

static int set_option(struct daemon_config *cfg, const char *name, const char *value, struct ft_error *err) {
        if (strcmp(name, "listen") == 0)
                return config_parse_listen(value, cfg, err);
        if (strcmp(name, "state-dir") == 0) {
                if (!*value)
                        return ft_error_set(err, -EINVAL, name, "invalid state-dir '': empty");
                if (strlen(value) >= sizeof(cfg->state_dir))
                        return ft_error_set(err, -ENAMETOOLONG, name, "invalid state-dir: path too long");
                snprintf(cfg->state_dir, sizeof(cfg->state_dir), "%s", value);
                return 0;
        }
        if (strcmp(name, "workers") == 0)
                return parse_uint(value, 1, DAEMON_MAX_WORKERS, name, &cfg->workers, err);
        if (strcmp(name, "threads") == 0)
                return parse_uint(value, 0, DAEMON_MAX_THREADS, name, &cfg->threads, err);
        if (strcmp(name, "token-file") == 0) {
                if (!*value || strlen(value) >= sizeof(cfg->token_file))
                        return ft_error_set(err, -EINVAL, name, "invalid token-file: empty or too long");
                snprintf(cfg->token_file, sizeof(cfg->token_file), "%s", value);
                return 0;
        }
        if (strcmp(name, "max-queued-jobs") == 0)
                return parse_uint(value, 1, 1000000, name, &cfg->max_queued_jobs, err);
        if (strcmp(name, "max-connections-per-ip") == 0)
                return parse_uint(value, 1, 100000, name, &cfg->max_per_ip, err);
        if (strcmp(name, "lease") == 0)
                return parse_uint(value, 1, 3600, name, &cfg->lease_s, err);
        if (strcmp(name, "http-timeout") == 0)
                return parse_uint(value, 1, 3600, name, &cfg->http_timeout_s, err);
        if (strcmp(name, "max-upload-mb") == 0)
                return parse_uint(value, 1, 1024 * 1024, name, &cfg->max_upload_mb, err);
        if (strcmp(name, "log-level") == 0) {
                if (log_level_from_string(value, &cfg->log_level) < 0)
                        return ft_error_set(err, -EINVAL, name,
                                            "invalid log-level '%s': expected error, warning, notice, info or debug",
                                            value);
                return 0;
        }
        return ft_error_set(err, -EINVAL, name, "unknown option '%s'", name);
}

static const struct {
        const char *env;
        const char *name;
} env_options[] = {
        {"FINETUNED_LISTEN", "listen"},   {"FINETUNED_STATE_DIR", "state-dir"},
        {"FINETUNED_WORKERS", "workers"}, {"FINETUNED_THREADS", "threads"},
        {"FINETUNED_LOG_LEVEL", "log-level"}, {"FINETUNED_TOKEN_FILE", "token-file"},
        {"FINETUNED_MAX_QUEUED_JOBS", "max-queued-jobs"}, {"FINETUNED_MAX_UPLOAD_MB", "max-upload-mb"},
        {"FINETUNED_HTTP_TIMEOUT", "http-timeout"}, {"FINETUNED_LEASE", "lease"},
        {"FINETUNED_MAX_CONNECTIONS_PER_IP", "max-connections-per-ip"},
};

void serve_usage(FILE *out) {
        fprintf(out,
                "Usage: finetuned serve [OPTIONS]\n"
                "\n"
                "Run the fine-tuning daemon: HTTP API, dashboard and workers.\n"
                "\n"
                "Options (each also read from the environment variable shown):\n"
                "  --listen ADDR       address to listen on: host:port, [v6]:port, :port or port\n"
                "                      (default " DAEMON_DEFAULT_HOST ":" DAEMON_DEFAULT_PORT
                "; FINETUNED_LISTEN)\n"
                "  --state-dir DIR     database and files (default " DAEMON_DEFAULT_STATE_DIR
                "; FINETUNED_STATE_DIR,\n"
                "                      or $STATE_DIRECTORY under systemd)\n"
                "  --workers N         jobs trained at the same time (default 1; FINETUNED_WORKERS)\n"
                "  --threads N         compute threads per worker, 0 = cores / workers\n"
                "                      (default 0; FINETUNED_THREADS)\n"
                "  --log-level LEVEL   error, warning, notice, info or debug (default info;\n"
                "                      FINETUNED_LOG_LEVEL)\n"
                "  --token-file PATH   require 'Authorization: Bearer TOKEN' with the token in\n"
                "                      PATH (mode 0600); required unless listening on loopback\n"
                "                      (FINETUNED_TOKEN_FILE)\n"
                "  --max-queued-jobs N answer 429 to new jobs beyond N queued (default 1000;\n"
                "                      FINETUNED_MAX_QUEUED_JOBS)\n"
                "  --max-upload-mb N   largest dataset or weights upload in MiB (default 1024;\n"
                "                      FINETUNED_MAX_UPLOAD_MB)\n"
                "  --http-timeout S    close HTTP connections idle for S seconds (default 30;\n"
                "                      FINETUNED_HTTP_TIMEOUT)\n"
                "  --max-connections-per-ip N\n"
                "                      concurrent connections from one address (default 64;\n"
                "                      FINETUNED_MAX_CONNECTIONS_PER_IP)\n"
                "  --lease S           job lease: a crashed daemon's running jobs are requeued\n"
                "                      S seconds after its last heartbeat (default 30; FINETUNED_LEASE)\n"
                "  -h, --help          show this help\n"
                "\n"
                "Flags override environment variables, which override defaults.\n");
}

int config_parse_serve(int argc, char **argv, char *const *envp, struct daemon_config *cfg, bool *ret_usage,
                       bool *ret_exit_now, struct ft_error *err) {
        static const struct option longopts[] = {
                {"listen", required_argument, NULL, 'l'},  {"state-dir", required_argument, NULL, 's'},
                {"workers", required_argument, NULL, 'w'}, {"threads", required_argument, NULL, 't'},
                {"log-level", required_argument, NULL, 'L'}, {"help", no_argument, NULL, 'h'},
                {"token-file", required_argument, NULL, 'T'}, {"max-queued-jobs", required_argument, NULL, 'Q'},
                {"max-upload-mb", required_argument, NULL, 'U'}, {"http-timeout", required_argument, NULL, 'H'},
                {"lease", required_argument, NULL, 'E'}, {"max-connections-per-ip", required_argument, NULL, 'P'},
                {NULL, 0, NULL, 0},
        };
        int r;

        *ret_usage = false;
        *ret_exit_now = false;

        /* $STATE_DIRECTORY (systemd) is a default; FINETUNED_STATE_DIR wins over it. */
        for (char *const *e = envp; e && *e; e++)
                if (strncmp(*e, "STATE_DIRECTORY=", 16) == 0 && (*e)[16]) {
                        /* systemd may pass several colon-separated paths: the first is ours */
                        const char *v = *e + 16;
                        size_t n = strcspn(v, ":");
                        if (n < sizeof(cfg->state_dir))
                                snprintf(cfg->state_dir, sizeof(cfg->state_dir), "%.*s", (int)n, v);
                }
        for (size_t i = 0; i < ARRAY_SIZE(env_options); i++) {
                size_t n = strlen(env_options[i].env);
                for (char *const *e = envp; e && *e; e++)
                        if (strncmp(*e, env_options[i].env, n) == 0 && (*e)[n] == '=') {
                                r = set_option(cfg, env_options[i].name, *e + n + 1, err);
                                if (r < 0) {
                                        char inner[FT_ERROR_MSG_MAX];
                                        snprintf(inner, sizeof(inner), "%s", err ? err->message : "");
                                        return ft_error_set(err, r, env_options[i].name, "%s: %s",
                                                            env_options[i].env, inner);
                                }
                        }
        }

        optind = 0; /* full reset: several parses in one process (tests) */
        opterr = 0;
        for (;;) {
                int c = getopt_long(argc, argv, "+:h", longopts, NULL);
                if (c < 0)
                        break;
                switch (c) {
                case 'h':
                        *ret_exit_now = true;
                        return 0;
                case 'l':
                        r = set_option(cfg, "listen", optarg, err);
                        break;
                case 's':
                        r = set_option(cfg, "state-dir", optarg, err);
                        break;
                case 'w':
                        r = set_option(cfg, "workers", optarg, err);
                        break;
                case 't':
                        r = set_option(cfg, "threads", optarg, err);
                        break;
                case 'L':
                        r = set_option(cfg, "log-level", optarg, err);
                        break;
                case 'T':
                        r = set_option(cfg, "token-file", optarg, err);
                        break;
                case 'Q':
                        r = set_option(cfg, "max-queued-jobs", optarg, err);
                        break;
                case 'U':
                        r = set_option(cfg, "max-upload-mb", optarg, err);
                        break;
                case 'H':
                        r = set_option(cfg, "http-timeout", optarg, err);
                        break;
                case 'E':
                        r = set_option(cfg, "lease", optarg, err);
                        break;
                case 'P':
                        r = set_option(cfg, "max-connections-per-ip", optarg, err);
                        break;
                case ':':
                        *ret_usage = true;
                        return ft_error_set(err, -EINVAL, NULL, "option '%s' needs a value", argv[optind - 1]);
                default:
                        *ret_usage = true;
                        return ft_error_set(err, -EINVAL, NULL, "unknown option '%s'",
                                            optopt ? (char[]){'-', (char)optopt, '\0'} : argv[optind - 1]);
                }
                if (r < 0)
                        return r;
        }
        if (optind < argc) {
                *ret_usage = true;
                return ft_error_set(err, -EINVAL, NULL, "unexpected argument '%s'", argv[optind]);
        }
        return 0;
}

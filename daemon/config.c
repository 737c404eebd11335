/* config.c - defaults, the configuration file, FINETUNED_* environment
 * variables and `serve` flags, with precedence flags > environment >
 * configuration file > defaults; `serve --check-config`; (re)opening the
 * log file. Not for: acting on the rest of the configuration (serve.c). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "daemon/daemon.h"
#include "daemon/launcher.h"

/* The options every source can set: flag "--NAME", file key "NAME",
 * environment variable ENV. The index is the one of cfg->origin[]. */
static const struct config_option {
        const char *name;
        const char *env;
} options[DAEMON_CONFIG_OPTION_COUNT] = {
        {"listen", "FINETUNED_LISTEN"},         {"state-dir", "FINETUNED_STATE_DIR"},
        {"workers", "FINETUNED_WORKERS"},       {"threads", "FINETUNED_THREADS"},
        {"log-level", "FINETUNED_LOG_LEVEL"},   {"token-file", "FINETUNED_TOKEN_FILE"},
        {"log-file", "FINETUNED_LOG_FILE"},     {"max-queued-jobs", "FINETUNED_MAX_QUEUED_JOBS"},
        {"max-upload-mb", "FINETUNED_MAX_UPLOAD_MB"}, {"http-timeout", "FINETUNED_HTTP_TIMEOUT"},
        {"max-connections-per-ip", "FINETUNED_MAX_CONNECTIONS_PER_IP"}, {"lease", "FINETUNED_LEASE"},
        {"gpus", "FINETUNED_GPUS"}, {"disk-low-mb", "FINETUNED_DISK_LOW_MB"},
        {"webhook-allow", "FINETUNED_WEBHOOK_ALLOW"}, {"mpirun", "FINETUNED_MPIRUN"},
        {"store", "FINETUNED_STORE"},
};

static const char *const option_names[DAEMON_CONFIG_OPTION_COUNT + 1] = {
        "listen",        "state-dir",     "workers",      "threads",
        "log-level",     "token-file",    "log-file",     "max-queued-jobs",
        "max-upload-mb", "http-timeout",  "max-connections-per-ip", "lease", "gpus", "disk-low-mb", "webhook-allow",
        "mpirun", "store", NULL,
};

const char *const *config_option_names(void) {
        return option_names;
}

static int option_index(const char *name) {
        for (size_t i = 0; i < ARRAY_SIZE(options); i++)
                if (strcmp(options[i].name, name) == 0)
                        return (int)i;
        return -1;
}

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
        cfg->disk_low_mb = DAEMON_DEFAULT_DISK_LOW_MB;
        cfg->http_timeout_s = 30;
        cfg->lease_s = 30;
        cfg->max_per_ip = 256; /* a dashboard behind a reverse proxy: every client is one address */
        for (size_t i = 0; i < ARRAY_SIZE(options); i++)
                snprintf(cfg->origin[i], sizeof(cfg->origin[i]), "default");
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

static int set_path(char *dst, size_t size, const char *name, const char *value, bool empty_ok,
                    struct ft_error *err) {
        if (!*value && !empty_ok)
                return ft_error_set(err, -EINVAL, name, "invalid %s '': empty", name);
        if (strlen(value) >= size)
                return ft_error_set(err, -ENAMETOOLONG, name, "invalid %s: path too long", name);
        if (strpbrk(value, "\n\r"))
                return ft_error_set(err, -EINVAL, name, "invalid %s: a newline in the path", name);
        snprintf(dst, size, "%s", value);
        return 0;
}

/* --gpus: "none" (or empty), or GPU numbers separated by commas ("0,1"), each at most once. */
static int parse_gpus(const char *value, struct daemon_config *cfg, struct ft_error *err) {
        int gpus[DAEMON_MAX_GPUS];
        unsigned n = 0;
        if (*value && strcmp(value, "none") != 0)
                for (const char *p = value;;) {
                        char *end;
                        errno = 0;
                        long v = strtol(p, &end, 10);
                        if (end == p || *p < '0' || *p > '9' || errno || v >= DAEMON_MAX_GPUS || (*end && *end != ','))
                                return ft_error_set(err, -EINVAL, "gpus",
                                                    "invalid gpus '%s': expected 'none' or GPU numbers from 0 to %d "
                                                    "separated by commas",
                                                    value, DAEMON_MAX_GPUS - 1);
                        for (unsigned i = 0; i < n; i++)
                                if (gpus[i] == (int)v)
                                        return ft_error_set(err, -EINVAL, "gpus", "invalid gpus '%s': GPU %ld twice",
                                                            value, v);
                        gpus[n++] = (int)v; /* n < DAEMON_MAX_GPUS: the numbers are distinct and below it */
                        if (!*end)
                                break;
                        p = end + 1;
                }
        memcpy(cfg->gpus, gpus, n * sizeof(gpus[0]));
        cfg->n_gpus = n;
        return 0;
}

static int set_option(struct daemon_config *cfg, const char *name, const char *value, struct ft_error *err) {
        if (strcmp(name, "listen") == 0)
                return config_parse_listen(value, cfg, err);
        if (strcmp(name, "state-dir") == 0)
                return set_path(cfg->state_dir, sizeof(cfg->state_dir), name, value, false, err);
        /* An empty token-file or log-file turns the feature off again. */
        if (strcmp(name, "token-file") == 0)
                return set_path(cfg->token_file, sizeof(cfg->token_file), name, value, true, err);
        if (strcmp(name, "log-file") == 0)
                return set_path(cfg->log_file, sizeof(cfg->log_file), name, value, true, err);
        if (strcmp(name, "workers") == 0)
                return parse_uint(value, 1, DAEMON_MAX_WORKERS, name, &cfg->workers, err);
        if (strcmp(name, "threads") == 0)
                return parse_uint(value, 0, DAEMON_MAX_THREADS, name, &cfg->threads, err);
        if (strcmp(name, "max-queued-jobs") == 0)
                return parse_uint(value, 1, 1000000, name, &cfg->max_queued_jobs, err);
        if (strcmp(name, "max-connections-per-ip") == 0)
                return parse_uint(value, 1, 100000, name, &cfg->max_per_ip, err);
        if (strcmp(name, "gpus") == 0)
                return parse_gpus(value, cfg, err);
        if (strcmp(name, "webhook-allow") == 0) {
                char why[160];
                if (netaddr_list_parse(value, &cfg->webhook_allow, why, sizeof(why)) < 0)
                        return ft_error_set(err, -EINVAL, name, "invalid webhook-allow '%.64s': %s", value, why);
                snprintf(cfg->webhook_allow_text, sizeof(cfg->webhook_allow_text), "%s", value);
                return 0;
        }
        if (strcmp(name, "mpirun") == 0) {
                int r = launcher_template_check(value, err);
                if (r < 0)
                        return r; /* a build without MPI takes it too and refuses the jobs (jobspec) */
                snprintf(cfg->mpirun, sizeof(cfg->mpirun), "%s", value);
                return 0;
        }
        if (strcmp(name, "store") == 0) {
                if (*value && strncmp(value, "postgresql://", 13) != 0 && strncmp(value, "postgres://", 11) != 0)
                        return ft_error_set(err, -EINVAL, name,
                                            "invalid store '%.64s': expected a postgresql:// URL, or empty for SQLite"
                                            " in the state directory",
                                            value);
                if (strlen(value) >= sizeof(cfg->store_url))
                        return ft_error_set(err, -EINVAL, name, "store URL is longer than %d bytes",
                                            DAEMON_STORE_URL_MAX - 1);
                snprintf(cfg->store_url, sizeof(cfg->store_url), "%s", value);
                return 0;
        }
        if (strcmp(name, "lease") == 0)
                return parse_uint(value, 1, 3600, name, &cfg->lease_s, err);
        if (strcmp(name, "http-timeout") == 0)
                return parse_uint(value, 1, 3600, name, &cfg->http_timeout_s, err);
        if (strcmp(name, "max-upload-mb") == 0)
                return parse_uint(value, 1, 1024 * 1024, name, &cfg->max_upload_mb, err);
        if (strcmp(name, "disk-low-mb") == 0)
                return parse_uint(value, 0, 1024 * 1024 * 1024, name, &cfg->disk_low_mb, err);
        if (strcmp(name, "log-level") == 0) {
                if (log_level_from_string(value, &cfg->log_level) < 0)
                        return ft_error_set(err, -EINVAL, name,
                                            "invalid log-level '%s': expected error, warning, notice, info or debug",
                                            value);
                return 0;
        }
        return ft_error_set(err, -EINVAL, name, "unknown option '%s'", name);
}

/* Set option index i from a source, recording where the value came from. */
static int apply(struct daemon_config *cfg, size_t i, const char *value, const char *origin, struct ft_error *err) {
        int r = set_option(cfg, options[i].name, value, err);
        if (r < 0)
                return r;
        snprintf(cfg->origin[i], sizeof(cfg->origin[i]), "%s", origin);
        return 0;
}

/* ---- the configuration file --------------------------------------------- */

static bool is_blank(char c) {
        return c == ' ' || c == '\t';
}

/* One "key = value" line, NUL-terminated, without its newline. */
static int parse_line(const char *path, unsigned lineno, char *line, struct daemon_config *cfg,
                      unsigned seen_line[], struct ft_error *err) {
        char *p = line, *end = line + strlen(line);
        while (end > p && (is_blank(end[-1]) || end[-1] == '\r'))
                *--end = '\0';
        while (is_blank(*p))
                p++;
        if (!*p || *p == '#' || *p == ';')
                return 0;
        unsigned col = (unsigned)(p - line) + 1;
        if (*p == '[')
                return ft_error_set(err, -EINVAL, NULL, "%s:%u:%u: sections are not supported: '%s'", path, lineno,
                                    col, p);

        char *eq = strchr(p, '=');
        if (!eq)
                return ft_error_set(err, -EINVAL, NULL, "%s:%u:%u: expected 'key = value', got '%.64s'", path, lineno,
                                    col, p);
        char *kend = eq;
        while (kend > p && is_blank(kend[-1]))
                kend--;
        *kend = '\0';
        if (!*p)
                return ft_error_set(err, -EINVAL, NULL, "%s:%u:%u: missing key before '='", path, lineno, col);
        int i = option_index(p);
        if (i < 0)
                return ft_error_set(err, -EINVAL, p, "%s:%u:%u: unknown option '%.64s'", path, lineno, col, p);
        if (seen_line[i])
                return ft_error_set(err, -EINVAL, p, "%s:%u:%u: '%s' set twice (first on line %u)", path, lineno,
                                    col, p, seen_line[i]);

        char *v = eq + 1;
        while (is_blank(*v))
                v++;
        unsigned vcol = (unsigned)(v - line) + 1;
        if (*v == '"') {
                size_t n = strlen(v);
                if (n < 2 || v[n - 1] != '"' || memchr(v + 1, '"', n - 2))
                        return ft_error_set(err, -EINVAL, p, "%s:%u:%u: unterminated or misplaced '\"' in the value",
                                            path, lineno, vcol);
                v[n - 1] = '\0';
                v++;
        }
        char origin[DAEMON_CONFIG_ORIGIN_MAX];
        snprintf(origin, sizeof(origin), "line %u", lineno);
        int r = apply(cfg, (size_t)i, v, origin, err);
        if (r < 0) {
                char inner[FT_ERROR_MSG_MAX];
                snprintf(inner, sizeof(inner), "%s", err ? err->message : "");
                return ft_error_set(err, r, options[i].name, "%s:%u:%u: %s", path, lineno, vcol, inner);
        }
        seen_line[i] = lineno;
        return 0;
}

int config_parse_text(const char *path, const char *text, size_t size, struct daemon_config *cfg,
                      struct ft_error *err) {
        unsigned seen_line[DAEMON_CONFIG_OPTION_COUNT] = {0};
        char line[DAEMON_CONFIG_LINE_MAX + 1];
        unsigned lineno = 0;
        size_t pos = 0;

        if (size > DAEMON_CONFIG_FILE_MAX)
                return ft_error_set(err, -EFBIG, NULL, "%s: larger than %u bytes", path, DAEMON_CONFIG_FILE_MAX);
        while (pos < size) {
                const char *start = text + pos;
                const char *nl = memchr(start, '\n', size - pos);
                size_t n = nl ? (size_t)(nl - start) : size - pos;
                lineno++;
                if (memchr(start, '\0', n))
                        return ft_error_set(err, -EINVAL, NULL, "%s:%u:%zu: NUL byte: not a text file", path, lineno,
                                            (size_t)((const char *)memchr(start, '\0', n) - start) + 1);
                if (n > DAEMON_CONFIG_LINE_MAX)
                        return ft_error_set(err, -EINVAL, NULL, "%s:%u:1: line longer than %u bytes", path, lineno,
                                            DAEMON_CONFIG_LINE_MAX);
                memcpy(line, start, n);
                line[n] = '\0';
                int r = parse_line(path, lineno, line, cfg, seen_line, err);
                if (r < 0)
                        return r;
                pos += n + (nl ? 1 : 0);
        }
        return 0;
}

int config_parse_file(const char *path, struct daemon_config *cfg, struct ft_error *err) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return ft_error_set(err, -errno, "config", "cannot open configuration file '%s': %s", path,
                                    strerror(errno));
        struct stat st;
        if (fstat(fd, &st) < 0 || S_ISDIR(st.st_mode)) {
                close(fd);
                return ft_error_set(err, -EISDIR, "config", "configuration file '%s' is a directory", path);
        }
        char *buf = malloc(DAEMON_CONFIG_FILE_MAX + 1);
        if (!buf) {
                close(fd);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        size_t size = 0;
        for (;;) {
                ssize_t k = read(fd, buf + size, DAEMON_CONFIG_FILE_MAX + 1 - size);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        int e = errno;
                        free(buf);
                        close(fd);
                        return ft_error_set(err, -e, "config", "cannot read configuration file '%s': %s", path,
                                            strerror(e));
                }
                if (k == 0)
                        break;
                size += (size_t)k;
                if (size > DAEMON_CONFIG_FILE_MAX)
                        break;
        }
        close(fd);
        int r = config_parse_text(path, buf, size, cfg, err);
        free(buf);
        if (r == 0)
                snprintf(cfg->config_file, sizeof(cfg->config_file), "%s", path);
        return r;
}

/* ---- environment and flags ----------------------------------------------- */

static const char *env_get(char *const *envp, const char *key) {
        size_t n = strlen(key);
        const char *found = NULL;
        for (char *const *e = envp; e && *e; e++)
                if (strncmp(*e, key, n) == 0 && (*e)[n] == '=')
                        found = *e + n + 1; /* the last one wins, as getenv's callers would expect of a shell */
        return found;
}

/* "a:b:c" -> "a" into out; false when empty or too long. */
static bool first_path(const char *list, char *out, size_t size) {
        size_t n = strcspn(list, ":");
        if (n == 0 || n >= size)
                return false;
        snprintf(out, size, "%.*s", (int)n, list);
        return true;
}

void serve_usage(FILE *out) {
        fprintf(out,
                "Usage: finetuned serve [OPTIONS]\n"
                "\n"
                "Run the fine-tuning daemon: HTTP API, dashboard and workers.\n"
                "\n"
                "Options (each also read from the environment variable shown, and from the\n"
                "configuration file as 'name = value' without the leading dashes):\n"
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
                "  --token-file FILE   the bearer token the API requires ('Authorization: Bearer\n"
                "                      TOKEN'), one line, mode 0600; required unless listening on\n"
                "                      loopback (FINETUNED_TOKEN_FILE)\n"
                "  --log-file FILE     append log lines to FILE instead of stderr; reopened on\n"
                "                      SIGHUP (FINETUNED_LOG_FILE)\n"
                "  --max-queued-jobs N answer 429 to new jobs beyond N queued (default 1000;\n"
                "                      FINETUNED_MAX_QUEUED_JOBS)\n"
                "  --max-upload-mb N   largest dataset or weights upload in MiB (default 1024;\n"
                "                      FINETUNED_MAX_UPLOAD_MB)\n"
                "  --disk-low-mb N     /healthz says degraded below N MiB free on the state directory's\n"
                "                      file system (default 1024; 0: never; FINETUNED_DISK_LOW_MB)\n"
                "  --http-timeout S    idle connections, and request headers, get S seconds (default 30;\n"
                "                      FINETUNED_HTTP_TIMEOUT)\n"
                "  --max-connections-per-ip N\n"
                "                      concurrent connections from one address (default 256;\n"
                "                      FINETUNED_MAX_CONNECTIONS_PER_IP)\n"
                "  --lease S           job lease: a crashed daemon's running jobs are requeued\n"
                "                      S seconds after its last heartbeat (default 30; FINETUNED_LEASE)\n"
                "  --gpus LIST         GPUs for jobs with device auto or cuda: 'none' or numbers\n"
                "                      like 0,1; worker i uses the (i mod count)th, so --workers\n"
                "                      equal to the count is one worker per GPU (default none:\n"
                "                      GPU 0; FINETUNED_GPUS)\n"
                "  --webhook-allow LIST  internal addresses (CIDR list like 10.0.0.0/8,::1) that\n"
                "                      webhooks may reach; loopback, private and link-local ones are\n"
                "                      refused otherwise (default none; FINETUNED_WEBHOOK_ALLOW)\n"
                "  --mpirun TEMPLATE   run jobs with resources.ranks above 1 under this MPI\n"
                "                      launcher: words without a shell, {ranks} replaced, e.g.\n"
                "                      'mpirun -np {ranks} --hostfile FILE' (default none: such\n"
                "                      jobs are refused; FINETUNED_MPIRUN)\n"
                "  --store URL         postgresql://... to share one queue and its files with other\n"
                "                      daemons (default: SQLite in the state directory;\n"
                "                      FINETUNED_STORE)\n"
                "  --config FILE       configuration file (FINETUNED_CONFIG; default\n"
                "                      $CONFIGURATION_DIRECTORY/" DAEMON_CONFIG_FILE_NAME ", else\n"
                "                      " FINETUNED_SYSCONFDIR "/finetuned/" DAEMON_CONFIG_FILE_NAME
                ", when present)\n"
                "  --check-config      check the configuration, print the effective settings, exit\n"
                "  -h, --help          show this help\n"
                "\n"
                "Flags override environment variables, which override the configuration file,\n"
                "which overrides the defaults.\n");
}

int config_parse_serve(int argc, char **argv, char *const *envp, struct daemon_config *cfg, bool *ret_usage,
                       bool *ret_exit_now, struct ft_error *err) {
        enum { OPT_CONFIG = 256, OPT_CHECK };
        static const struct option longopts[] = {
                {"listen", required_argument, NULL, 0},     {"state-dir", required_argument, NULL, 0},
                {"workers", required_argument, NULL, 0},    {"threads", required_argument, NULL, 0},
                {"log-level", required_argument, NULL, 0},  {"token-file", required_argument, NULL, 0},
                {"log-file", required_argument, NULL, 0},   {"config", required_argument, NULL, OPT_CONFIG},
                {"check-config", no_argument, NULL, OPT_CHECK}, {"help", no_argument, NULL, 'h'},
                {"max-queued-jobs", required_argument, NULL, 0}, {"max-upload-mb", required_argument, NULL, 0},
                {"http-timeout", required_argument, NULL, 0}, {"max-connections-per-ip", required_argument, NULL, 0},
                {"lease", required_argument, NULL, 0},      {"gpus", required_argument, NULL, 0},
                {"disk-low-mb", required_argument, NULL, 0},
                {"webhook-allow", required_argument, NULL, 0},
                {"mpirun", required_argument, NULL, 0},
                {"store", required_argument, NULL, 0},
                {NULL, 0, NULL, 0},
        };
        /* Flags are collected first and applied last, so that --config (which
         * may come after them) is read before them. */
        struct {
                size_t option;
                const char *value;
        } flags[64];
        size_t n_flags = 0;
        const char *config_path = NULL;
        bool config_required = false;
        char pathbuf[PATH_MAX];
        int r;

        *ret_usage = false;
        *ret_exit_now = false;

        optind = 0; /* full reset: several parses in one process (tests) */
        opterr = 0;
        for (;;) {
                int index = -1;
                int c = getopt_long(argc, argv, "+:h", longopts, &index);
                if (c < 0)
                        break;
                switch (c) {
                case 0:
                        if (n_flags == ARRAY_SIZE(flags)) {
                                *ret_usage = true;
                                return ft_error_set(err, -E2BIG, NULL, "too many flags");
                        }
                        flags[n_flags].option = (size_t)option_index(longopts[index].name);
                        flags[n_flags++].value = optarg;
                        break;
                case OPT_CONFIG:
                        config_path = optarg;
                        config_required = true;
                        break;
                case OPT_CHECK:
                        cfg->check_config = true;
                        break;
                case 'h':
                        *ret_exit_now = true;
                        return 0;
                case ':':
                        *ret_usage = true;
                        return ft_error_set(err, -EINVAL, NULL, "option '%s' needs a value", argv[optind - 1]);
                default:
                        *ret_usage = true;
                        return ft_error_set(err, -EINVAL, NULL, "unknown option '%s'",
                                            optopt ? (char[]){'-', (char)optopt, '\0'} : argv[optind - 1]);
                }
        }
        if (optind < argc) {
                *ret_usage = true;
                return ft_error_set(err, -EINVAL, NULL, "unexpected argument '%s'", argv[optind]);
        }

        /* 1. $STATE_DIRECTORY (systemd) is a default; everything else wins over it. */
        const char *v = env_get(envp, "STATE_DIRECTORY");
        if (v && first_path(v, pathbuf, sizeof(pathbuf))) {
                snprintf(cfg->state_dir, sizeof(cfg->state_dir), "%s", pathbuf);
                snprintf(cfg->origin[1], sizeof(cfg->origin[1]), "$STATE_DIRECTORY");
        }

        /* 2. The configuration file. */
        if (!config_path && (v = env_get(envp, "FINETUNED_CONFIG")) && *v) {
                config_path = v;
                config_required = true;
        }
        if (!config_path && (v = env_get(envp, "CONFIGURATION_DIRECTORY")) &&
            first_path(v, pathbuf, sizeof(pathbuf) - sizeof(DAEMON_CONFIG_FILE_NAME) - 1)) {
                size_t n = strlen(pathbuf);
                snprintf(pathbuf + n, sizeof(pathbuf) - n, "/%s", DAEMON_CONFIG_FILE_NAME);
                config_path = pathbuf;
        }
        if (!config_path)
                config_path = FINETUNED_SYSCONFDIR "/finetuned/" DAEMON_CONFIG_FILE_NAME;
        if (*config_path) { /* --config '' reads no file at all */
                r = config_parse_file(config_path, cfg, err);
                if (r == -ENOENT && !config_required)
                        ft_error_clear(err);
                else if (r < 0)
                        return r;
        }

        /* 3. The environment. */
        for (size_t i = 0; i < ARRAY_SIZE(options); i++) {
                v = env_get(envp, options[i].env);
                if (!v)
                        continue;
                r = apply(cfg, i, v, options[i].env, err);
                if (r < 0) {
                        char inner[FT_ERROR_MSG_MAX];
                        snprintf(inner, sizeof(inner), "%s", err ? err->message : "");
                        return ft_error_set(err, r, options[i].name, "%s: %s", options[i].env, inner);
                }
        }

        /* 4. The flags. */
        for (size_t k = 0; k < n_flags; k++) {
                char origin[DAEMON_CONFIG_ORIGIN_MAX];
                snprintf(origin, sizeof(origin), "--%s", options[flags[k].option].name);
                r = apply(cfg, flags[k].option, flags[k].value, origin, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- --check-config --------------------------------------------------------- */

void config_option_format(const struct daemon_config *cfg, size_t index, char *buf, size_t size) {
        switch (index) {
        case 0:
                if (strchr(cfg->listen_host, ':'))
                        snprintf(buf, size, "[%s]:%s", cfg->listen_host, cfg->listen_port);
                else
                        snprintf(buf, size, "%s:%s", cfg->listen_host, cfg->listen_port);
                return;
        case 1:
                snprintf(buf, size, "%s", cfg->state_dir);
                return;
        case 2:
                snprintf(buf, size, "%u", cfg->workers);
                return;
        case 3:
                snprintf(buf, size, "%u", cfg->threads);
                return;
        case 4:
                snprintf(buf, size, "%s", log_level_to_string(cfg->log_level));
                return;
        case 5:
                snprintf(buf, size, "%s", cfg->token_file);
                return;
        case 6:
                snprintf(buf, size, "%s", cfg->log_file);
                return;
        case 7:
                snprintf(buf, size, "%u", cfg->max_queued_jobs);
                return;
        case 8:
                snprintf(buf, size, "%u", cfg->max_upload_mb);
                return;
        case 9:
                snprintf(buf, size, "%u", cfg->http_timeout_s);
                return;
        case 10:
                snprintf(buf, size, "%u", cfg->max_per_ip);
                return;
        case 11:
                snprintf(buf, size, "%u", cfg->lease_s);
                return;
        case 12: {
                size_t o = 0;
                buf[0] = '\0';
                if (!cfg->n_gpus)
                        snprintf(buf, size, "none");
                for (unsigned i = 0; i < cfg->n_gpus && o < size; i++)
                        o += (size_t)snprintf(buf + o, size - o, "%s%d", i ? "," : "", cfg->gpus[i]);
                return;
        }
        case 13:
                snprintf(buf, size, "%u", cfg->disk_low_mb);
                return;
        case 14:
                snprintf(buf, size, "%s", cfg->webhook_allow_text);
                return;
        case 15:
                snprintf(buf, size, "%s", cfg->mpirun);
                return;
        case 16: {
                /* a password in the URL is not printed: "postgresql://user:***@host/db" */
                const char *at = strchr(cfg->store_url, '@'), *scheme = strstr(cfg->store_url, "://");
                const char *colon = scheme ? strchr(scheme + 3, ':') : NULL;
                if (at && colon && colon < at)
                        snprintf(buf, size, "%.*s:***%s", (int)(colon - cfg->store_url), cfg->store_url, at);
                else
                        snprintf(buf, size, "%s", cfg->store_url);
                return;
        }
        default:
                snprintf(buf, size, "?");
        }
}

static int check_token_file(const char *path, struct ft_error *err) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return ft_error_set(err, -errno, "token-file", "cannot open token-file '%s': %s", path,
                                    strerror(errno));
        struct stat st;
        int r = fstat(fd, &st);
        close(fd);
        if (r < 0 || !S_ISREG(st.st_mode))
                return ft_error_set(err, -EINVAL, "token-file", "token-file '%s' is not a regular file", path);
        /* the same rule as api/auth.c, which reads it at start and on SIGHUP */
        if (st.st_mode & (S_IRWXG | S_IRWXO))
                return ft_error_set(err, -EPERM, "token-file",
                                    "token-file '%s' is readable by group or others (chmod 600 it)", path);
        if (st.st_size == 0)
                return ft_error_set(err, -EINVAL, "token-file", "token-file '%s' is empty", path);
        return 0;
}

int config_check(const struct daemon_config *cfg, FILE *out, struct ft_error *err) {
        int r;
        if (cfg->token_file[0] && (r = check_token_file(cfg->token_file, err)) < 0)
                return r;
        if (cfg->log_file[0]) {
                char dir[PATH_MAX];
                snprintf(dir, sizeof(dir), "%s", cfg->log_file);
                char *slash = strrchr(dir, '/');
                if (slash == dir)
                        slash[1] = '\0';
                else if (slash)
                        *slash = '\0';
                else
                        snprintf(dir, sizeof(dir), ".");
                struct stat st;
                if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
                        return ft_error_set(err, -ENOENT, "log-file", "log-file '%s': directory '%s' does not exist",
                                            cfg->log_file, dir);
        }
        fprintf(out, "# configuration file: %s\n", cfg->config_file[0] ? cfg->config_file : "(none)");
        for (size_t i = 0; i < ARRAY_SIZE(options); i++) {
                char value[PATH_MAX], line[PATH_MAX + 64];
                config_option_format(cfg, i, value, sizeof(value));
                snprintf(line, sizeof(line), "%s = %s", options[i].name, value);
                fprintf(out, "%-40s # %s\n", line, cfg->origin[i]);
        }
        return 0;
}

int config_log_file_open(const char *path, struct ft_error *err) {
        if (!path || !*path)
                return 0;
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
        if (fd < 0)
                return ft_error_set(err, -errno, "log-file", "cannot open log-file '%s': %s", path, strerror(errno));
        int r = dup2(fd, STDERR_FILENO) < 0 ? -errno : 0;
        close(fd);
        if (r < 0)
                return ft_error_set(err, r, "log-file", "cannot redirect stderr to '%s': %s", path, strerror(-r));
        log_set_journal(false); /* a file gets timestamps, not journald's <N> prefixes */
        return 0;
}

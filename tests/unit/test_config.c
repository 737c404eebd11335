/* test_config.c - `finetuned serve` flags, environment and precedence. */
#include "daemon/daemon.h"
#include "tests/tap.h"

static int parse(struct daemon_config *cfg, char *const *envp, bool *usage, struct ft_error *err, int argc,
                 char **argv) {
        bool exit_now;
        config_init(cfg);
        return config_parse_serve(argc, argv, envp, cfg, usage, &exit_now, err);
}

#define ARGV(...) ((char *[]){"serve", __VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *[]){"serve", __VA_ARGS__}) / sizeof(char *)))

int main(void) {
        struct daemon_config cfg;
        struct ft_error err;
        bool usage, exit_now;
        char *noenv[] = {NULL};

        config_init(&cfg);
        is_str(cfg.listen_host, "127.0.0.1", "default host is loopback");
        is_str(cfg.listen_port, "8080", "default port 8080");
        is_str(cfg.state_dir, "./var", "default state dir ./var");
        is_int(cfg.workers, 1, "default one worker");

        char *a0[] = {"serve", NULL};
        ok(config_parse_serve(1, a0, noenv, &cfg, &usage, &exit_now, &err) == 0, "no flags parse");

        ok(parse(&cfg, noenv, &usage, &err, ARGC("--listen", "0.0.0.0:9000"), ARGV("--listen", "0.0.0.0:9000")) == 0,
           "--listen host:port");
        is_str(cfg.listen_host, "0.0.0.0", "host parsed");
        is_str(cfg.listen_port, "9000", "port parsed");

        ok(parse(&cfg, noenv, &usage, &err, ARGC("--listen=[::1]:0"), ARGV("--listen=[::1]:0")) == 0,
           "--listen=[v6]:port");
        is_str(cfg.listen_host, "::1", "v6 host without brackets");
        is_str(cfg.listen_port, "0", "ephemeral port");

        ok(parse(&cfg, noenv, &usage, &err, ARGC("--listen", "1234"), ARGV("--listen", "1234")) == 0, "port only");
        is_str(cfg.listen_host, "127.0.0.1", "port only listens on loopback");

        ok(parse(&cfg, noenv, &usage, &err, ARGC("--listen", ":80"), ARGV("--listen", ":80")) == 0, ":port");
        is_str(cfg.listen_host, "0.0.0.0", ":port listens on all interfaces");

        const char *bad_listen[] = {"", "host:", "host:99999", "host:12a", "::1:80", "[::1]80", "[]:80", "a b:1"};
        for (size_t i = 0; i < ARRAY_SIZE(bad_listen); i++) {
                int r = parse(&cfg, noenv, &usage, &err, 3, (char *[]){"serve", "--listen", (char *)bad_listen[i], NULL});
                ok(r < 0 && !usage && strstr(err.message, "listen"), "bad --listen '%s' rejected: %s", bad_listen[i],
                   err.message);
        }

        ok(parse(&cfg, noenv, &usage, &err, ARGC("--workers", "0"), ARGV("--workers", "0")) < 0 && !usage,
           "--workers 0 rejected");
        ok(parse(&cfg, noenv, &usage, &err, ARGC("--workers", "-3"), ARGV("--workers", "-3")) < 0,
           "--workers -3 rejected");
        ok(parse(&cfg, noenv, &usage, &err, ARGC("--threads", "x"), ARGV("--threads", "x")) < 0, "--threads x rejected");
        ok(parse(&cfg, noenv, &usage, &err, ARGC("--log-level", "loud"), ARGV("--log-level", "loud")) < 0,
           "--log-level loud rejected");
        ok(parse(&cfg, noenv, &usage, &err, ARGC("--log-level", "debug"), ARGV("--log-level", "debug")) == 0 &&
                   cfg.log_level == LOG_LEVEL_DEBUG,
           "--log-level debug");

        ok(parse(&cfg, noenv, &usage, &err, ARGC("--bogus"), ARGV("--bogus")) < 0 && usage, "unknown flag is a usage error");
        ok(strstr(err.message, "--bogus") != NULL, "message names the flag: %s", err.message);
        ok(parse(&cfg, noenv, &usage, &err, ARGC("--listen"), ARGV("--listen")) < 0 && usage, "missing value is a usage error");
        ok(parse(&cfg, noenv, &usage, &err, ARGC("extra"), ARGV("extra")) < 0 && usage, "stray argument is a usage error");

        char *env[] = {"FINETUNED_WORKERS=3", "FINETUNED_LISTEN=127.0.0.1:7000", "FINETUNED_STATE_DIR=/tmp/ft",
                       "STATE_DIRECTORY=/var/lib/finetuned", NULL};
        ok(parse(&cfg, env, &usage, &err, 1, a0) == 0, "environment parses");
        is_int(cfg.workers, 3, "FINETUNED_WORKERS applied");
        is_str(cfg.listen_port, "7000", "FINETUNED_LISTEN applied");
        is_str(cfg.state_dir, "/tmp/ft", "FINETUNED_STATE_DIR wins over STATE_DIRECTORY");

        char *env2[] = {"STATE_DIRECTORY=/var/lib/finetuned:/other", NULL};
        ok(parse(&cfg, env2, &usage, &err, 1, a0) == 0, "systemd STATE_DIRECTORY parses");
        is_str(cfg.state_dir, "/var/lib/finetuned", "STATE_DIRECTORY's first path is the default");

        ok(parse(&cfg, env, &usage, &err, ARGC("--workers", "2"), ARGV("--workers", "2")) == 0 && cfg.workers == 2,
           "flag overrides environment");

        char *badenv[] = {"FINETUNED_WORKERS=many", NULL};
        ok(parse(&cfg, badenv, &usage, &err, 1, a0) < 0 && strstr(err.message, "FINETUNED_WORKERS"),
           "bad environment value names the variable: %s", err.message);

        ok(parse(&cfg, noenv, &usage, &err, ARGC("--help"), ARGV("--help")) == 0, "--help parses");
        /* --webhook-allow (issue 18): a CIDR list, checked when read; FINETUNED_WEBHOOK_ALLOW too */
        ok(parse(&cfg, noenv, &usage, &err, ARGC("--webhook-allow", "127.0.0.1/32, 10.0.0.0/8,fd00::/8"),
                 ARGV("--webhook-allow", "127.0.0.1/32, 10.0.0.0/8,fd00::/8")) == 0 &&
                   cfg.webhook_allow.n == 3 && cfg.webhook_allow.items[1].prefix == 8,
           "--webhook-allow parses a CIDR list");
        ok(parse(&cfg, noenv, &usage, &err, ARGC("--webhook-allow", "10.0.0.0/40"),
                 ARGV("--webhook-allow", "10.0.0.0/40")) < 0 &&
                   !usage && strstr(err.message, "webhook-allow"),
           "a bad prefix is refused: %s", err.message);
        char *wenv[] = {"FINETUNED_WEBHOOK_ALLOW=192.168.1.0/24", NULL};
        ok(parse(&cfg, wenv, &usage, &err, 1, (char *[]){"serve", NULL}) == 0 && cfg.webhook_allow.n == 1 &&
                   cfg.webhook_allow.items[0].prefix == 24,
           "FINETUNED_WEBHOOK_ALLOW");
        config_init(&cfg);
        ok(cfg.webhook_allow.n == 0, "default: no internal address allowed");
        /* --store: a postgresql:// URL (flag or FINETUNED_STORE), empty for SQLite; anything else refused */
        is_str(cfg.store_url, "", "default store: SQLite in the state directory");
        ok(parse(&cfg, noenv, &usage, &err, ARGC("--store", "postgresql:///ft?host=/run/pg"),
                 ARGV("--store", "postgresql:///ft?host=/run/pg")) == 0,
           "--store postgresql://");
        is_str(cfg.store_url, "postgresql:///ft?host=/run/pg", "store URL kept");
        char *store_env[] = {"FINETUNED_STORE=postgres://db.example/ft", NULL};
        ok(parse(&cfg, store_env, &usage, &err, 1, (char *[]){"serve", NULL}) == 0, "FINETUNED_STORE");
        is_str(cfg.store_url, "postgres://db.example/ft", "store URL from the environment");
        ok(parse(&cfg, noenv, &usage, &err, ARGC("--store", "mysql://x"), ARGV("--store", "mysql://x")) < 0 && !usage &&
                   strcmp(err.param, "store") == 0,
           "--store mysql:// refused: %s", err.message);
        char shown[1100];
        snprintf(cfg.store_url, sizeof(cfg.store_url), "postgresql://ft:s3cret@db.example/ft");
        config_option_format(&cfg, 16, shown, sizeof(shown));
        is_str(shown, "postgresql://ft:***@db.example/ft", "--check-config does not print the password");
        return tap_done();
}

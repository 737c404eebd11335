/* test_config_file.c - the configuration file: syntax, errors with
 * FILE:LINE:COL, which file is read, and the precedence flags > environment >
 * configuration file > $STATE_DIRECTORY > defaults; --check-config output. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "tests/tap.h"

static char dir[] = "/tmp/finetuned-test-config.XXXXXX";

static void write_file(const char *path, const char *text, mode_t mode) {
        FILE *f = fopen(path, "w");
        if (!f)
                return;
        fputs(text, f);
        fclose(f);
        chmod(path, mode);
}

static int text(struct daemon_config *cfg, const char *t, struct ft_error *err) {
        config_init(cfg);
        ft_error_clear(err);
        return config_parse_text("test.conf", t, strlen(t), cfg, err);
}

static int serve(struct daemon_config *cfg, char *const *envp, int argc, char **argv, struct ft_error *err) {
        bool usage, exit_now;
        config_init(cfg);
        ft_error_clear(err);
        return config_parse_serve(argc, argv, envp, cfg, &usage, &exit_now, err);
}

/* The value field of "name = value   # origin" in check output. */
static bool check_line(const char *out, const char *name, const char *value, const char *origin) {
        char want[512];
        snprintf(want, sizeof(want), "%s = %s", name, value);
        const char *p = strstr(out, want);
        if (!p || (p != out && p[-1] != '\n'))
                return false;
        const char *eol = strchr(p, '\n'), *hash = strstr(p, "# ");
        if (!eol || !hash || hash > eol)
                return false;
        return strncmp(hash + 2, origin, strlen(origin)) == 0 && hash + 2 + strlen(origin) == eol;
}

int main(void) {
        struct daemon_config cfg;
        struct ft_error err;
        char path[512], path2[512];

        if (!mkdtemp(dir))
                return 1;

        /* Syntax. */
        ok(text(&cfg,
                "# a comment\n"
                "; another comment\n"
                "\n"
                "   listen = 0.0.0.0:9000   \n"
                "workers=3\r\n"
                "state-dir = \"/srv/finetuned data\"\n"
                "\tlog-level\t=\tdebug\n"
                "threads = 2",
                &err) == 0,
           "a valid file parses: %s", err.message);
        is_str(cfg.listen_host, "0.0.0.0", "listen host");
        is_str(cfg.listen_port, "9000", "listen port");
        is_int(cfg.workers, 3, "workers (CRLF line end)");
        is_str(cfg.state_dir, "/srv/finetuned data", "quoted value with a space");
        is_int(cfg.log_level, LOG_LEVEL_DEBUG, "tabs around '='");
        is_int(cfg.threads, 2, "last line without a newline");
        is_str(cfg.origin[2], "line 5", "origin of workers is its line");
        is_str(cfg.origin[0], "line 4", "origin of listen is its line");

        ok(text(&cfg, "", &err) == 0 && cfg.workers == 1, "an empty file leaves the defaults");
        ok(text(&cfg, "token-file = /etc/finetuned/token\nlog-file = /var/log/ft.log\n", &err) == 0 &&
                   strcmp(cfg.token_file, "/etc/finetuned/token") == 0 && strcmp(cfg.log_file, "/var/log/ft.log") == 0,
           "token-file and log-file");
        ok(text(&cfg, "token-file =\n", &err) == 0 && cfg.token_file[0] == '\0', "an empty token-file means none");

        /* Errors name file:line:col. */
        static const struct {
                const char *text, *want, *what;
        } bad[] = {
                {"workers = 2\n\n  wokers = 3\n", "test.conf:3:3: unknown option 'wokers'", "unknown key"},
                {"# x\nworkers = many\n", "test.conf:2:11: invalid workers 'many': expected a whole number",
                 "bad number"},
                {"workers = 0\n", "test.conf:1:11: invalid workers '0': must be from 1 to 64", "out of range"},
                {"listen = 1.2.3.4:99999\n", "test.conf:1:10: invalid listen address '1.2.3.4:99999'", "bad port"},
                {"log-level = loud\n", "test.conf:1:13: invalid log-level 'loud'", "bad level"},
                {"\n\njust words\n", "test.conf:3:1: expected 'key = value'", "no '='"},
                {"= 3\n", "test.conf:1:1: missing key before '='", "no key"},
                {"[serve]\nworkers = 2\n", "test.conf:1:1: sections are not supported", "a section"},
                {"workers = 2\nthreads = 1\nworkers = 3\n", "test.conf:3:1: 'workers' set twice (first on line 1)",
                 "a key twice"},
                {"state-dir = \"/a\n", "test.conf:1:13: unterminated", "unterminated quote"},
                {"state-dir = \"/a\"b\"\n", "test.conf:1:13: unterminated or misplaced", "quote inside"},
                {"state-dir =\n", "test.conf:1:12: invalid state-dir '': empty", "empty state-dir"},
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                int r = text(&cfg, bad[i].text, &err);
                ok(r < 0 && strncmp(err.message, bad[i].want, strlen(bad[i].want)) == 0, "%s: %s", bad[i].what,
                   err.message);
        }
        /* NUL byte, over-long line, over-long file. */
        config_init(&cfg);
        ok(config_parse_text("t.conf", "workers = 2\nthr\0eads = 1\n", 24, &cfg, &err) < 0 &&
                   strstr(err.message, "t.conf:2:4: NUL byte"),
           "a NUL byte is refused with its position: %s", err.message);
        char *long_line = malloc(DAEMON_CONFIG_LINE_MAX + 64);
        memset(long_line, 'x', DAEMON_CONFIG_LINE_MAX + 10);
        memcpy(long_line, "state-dir = /", 13);
        long_line[DAEMON_CONFIG_LINE_MAX + 10] = '\0';
        ok(text(&cfg, long_line, &err) < 0 && strstr(err.message, "test.conf:1:1: line longer than"),
           "an over-long line is refused: %s", err.message);
        free(long_line);
        config_init(&cfg);
        ok(config_parse_text("big.conf", "", DAEMON_CONFIG_FILE_MAX + 1, &cfg, &err) == -EFBIG,
           "a file over %u bytes is refused", DAEMON_CONFIG_FILE_MAX);

        /* Files. */
        snprintf(path, sizeof(path), "%s/finetuned.conf", dir);
        write_file(path, "workers = 4\nthreads = 3\nlisten = 127.0.0.1:7001\nstate-dir = /from/file\n", 0644);
        config_init(&cfg);
        ok(config_parse_file(path, &cfg, &err) == 0 && cfg.workers == 4 && strcmp(cfg.config_file, path) == 0,
           "config_parse_file reads a file and remembers its path");
        snprintf(path2, sizeof(path2), "%s/missing.conf", dir);
        config_init(&cfg);
        ok(config_parse_file(path2, &cfg, &err) == -ENOENT && strstr(err.message, path2),
           "a missing file is -ENOENT naming it: %s", err.message);
        config_init(&cfg);
        ok(config_parse_file(dir, &cfg, &err) < 0 && strstr(err.message, "directory"), "a directory is refused: %s",
           err.message);

        /* Which file, and precedence. */
        char cfgflag[600], cfgdir[600];
        snprintf(cfgflag, sizeof(cfgflag), "--config=%s", path);
        snprintf(cfgdir, sizeof(cfgdir), "CONFIGURATION_DIRECTORY=%s:/elsewhere", dir);
        char *noenv[] = {NULL};

        ok(serve(&cfg, noenv, 2, (char *[]){"serve", cfgflag, NULL}, &err) == 0 && cfg.workers == 4,
           "--config FILE is read");
        char *env_dir[] = {cfgdir, NULL};
        ok(serve(&cfg, env_dir, 1, (char *[]){"serve", NULL}, &err) == 0 && cfg.workers == 4 &&
                   strcmp(cfg.config_file, path) == 0,
           "$CONFIGURATION_DIRECTORY/finetuned.conf is read (first path of the list)");
        char envcfg[600];
        snprintf(envcfg, sizeof(envcfg), "FINETUNED_CONFIG=%s", path);
        char *env_cfg[] = {envcfg, NULL};
        ok(serve(&cfg, env_cfg, 1, (char *[]){"serve", NULL}, &err) == 0 && cfg.workers == 4,
           "FINETUNED_CONFIG names the file");

        char missing_flag[600];
        snprintf(missing_flag, sizeof(missing_flag), "--config=%s", path2);
        ok(serve(&cfg, noenv, 2, (char *[]){"serve", missing_flag, NULL}, &err) == -ENOENT,
           "--config with a missing file is an error: %s", err.message);
        char emptydir[600];
        snprintf(emptydir, sizeof(emptydir), "CONFIGURATION_DIRECTORY=%s/nothing-here", dir);
        char *env_empty[] = {emptydir, NULL};
        ok(serve(&cfg, env_empty, 1, (char *[]){"serve", NULL}, &err) == 0 && cfg.config_file[0] == '\0',
           "a missing $CONFIGURATION_DIRECTORY/finetuned.conf is skipped");
        ok(serve(&cfg, env_dir, 2, (char *[]){"serve", "--config=", NULL}, &err) == 0 && cfg.workers == 1,
           "--config '' reads no file");

        /* flags > environment > file > $STATE_DIRECTORY > defaults */
        char *env_all[] = {cfgdir, "FINETUNED_THREADS=5", "FINETUNED_LISTEN=127.0.0.1:7002",
                           "STATE_DIRECTORY=/var/lib/finetuned", NULL};
        ok(serve(&cfg, env_all, 3, (char *[]){"serve", "--listen", "127.0.0.1:7003", NULL}, &err) == 0,
           "all sources together parse");
        is_int(cfg.workers, 4, "file beats default (workers)");
        is_int(cfg.threads, 5, "environment beats file (threads)");
        is_str(cfg.listen_port, "7003", "flag beats environment and file (listen)");
        is_str(cfg.state_dir, "/from/file", "file beats $STATE_DIRECTORY (state-dir)");
        is_str(cfg.origin[3], "FINETUNED_THREADS", "origin: environment");
        is_str(cfg.origin[0], "--listen", "origin: flag");
        is_str(cfg.origin[2], "line 1", "origin: file line");
        is_str(cfg.origin[4], "default", "origin: default");

        /* The flag may come before --config and still win over the file. */
        ok(serve(&cfg, noenv, 4, (char *[]){"serve", "--workers", "7", cfgflag, NULL}, &err) == 0 && cfg.workers == 7,
           "a flag before --config still beats the file");

        /* A bad file value is reported with the file's path and line even via serve. */
        snprintf(path2, sizeof(path2), "%s/bad.conf", dir);
        write_file(path2, "# comment\nworkers = 2\nthreads = lots\n", 0644);
        char badflag[600];
        snprintf(badflag, sizeof(badflag), "--config=%s", path2);
        char want[700];
        snprintf(want, sizeof(want), "%s:3:11: invalid threads 'lots'", path2);
        ok(serve(&cfg, noenv, 2, (char *[]){"serve", badflag, NULL}, &err) < 0 && strstr(err.message, want),
           "serve reports PATH:LINE:COL: %s", err.message);

        /* --check-config */
        ok(serve(&cfg, env_all, 2, (char *[]){"serve", "--check-config", NULL}, &err) == 0 && cfg.check_config,
           "--check-config is a flag");
        char *out = NULL;
        size_t outsize = 0;
        FILE *f = open_memstream(&out, &outsize);
        ok(config_check(&cfg, f, &err) == 0, "config_check passes a good configuration");
        fclose(f);
        for (const char *l = out; *l;) {
                int n = (int)strcspn(l, "\n");
                diag("%.*s", n, l);
                l += n + (l[n] ? 1 : 0);
        }
        ok(check_line(out, "workers", "4", "line 1"), "check output: workers from the file line");
        ok(check_line(out, "threads", "5", "FINETUNED_THREADS"), "check output: threads from the environment");
        ok(check_line(out, "listen", "127.0.0.1:7002", "FINETUNED_LISTEN"), "check output: listen");
        ok(check_line(out, "log-level", "info", "default"), "check output: a default");
        ok(strstr(out, path) != NULL, "check output names the configuration file");
        free(out);

        char token[600];
        snprintf(token, sizeof(token), "%s/token", dir);
        write_file(token, "s3cret-token-0123456789\n", 0644);
        config_init(&cfg);
        snprintf(cfg.token_file, sizeof(cfg.token_file), "%s", token);
        f = fopen("/dev/null", "w");
        ok(config_check(&cfg, f, &err) == -EPERM && strstr(err.message, "readable by group or others"),
           "check refuses a world-readable token file: %s", err.message);
        chmod(token, 0640);
        ok(config_check(&cfg, f, &err) == -EPERM, "check refuses a group-readable token file");
        chmod(token, 0600);
        ok(config_check(&cfg, f, &err) == 0, "check accepts a 0600 token file");
        snprintf(cfg.token_file, sizeof(cfg.token_file), "%s/nope", dir);
        ok(config_check(&cfg, f, &err) == -ENOENT, "check refuses a missing token file: %s", err.message);
        cfg.token_file[0] = '\0';
        snprintf(cfg.log_file, sizeof(cfg.log_file), "%s/no/such/dir/log", dir);
        ok(config_check(&cfg, f, &err) < 0 && strstr(err.message, "does not exist"),
           "check refuses a log file in a missing directory: %s", err.message);
        fclose(f);

        /* The log file is opened for appending and stderr points at it. */
        snprintf(path2, sizeof(path2), "%s/ft.log", dir);
        int saved = dup(STDERR_FILENO);
        ok(config_log_file_open(path2, &err) == 0, "log file opens");
        fprintf(stderr, "hello log\n");
        fflush(stderr);
        dup2(saved, STDERR_FILENO);
        close(saved);
        f = fopen(path2, "r");
        char line[64] = "";
        ok(f && fgets(line, sizeof(line), f) && strcmp(line, "hello log\n") == 0, "stderr went to the log file");
        if (f)
                fclose(f);
        ok(config_log_file_open("/proc/nonexistent/x.log", &err) < 0 && strstr(err.message, "/proc/nonexistent"),
           "an unopenable log file names it: %s", err.message);

        unlink(path);
        unlink(token);
        unlink(path2);
        snprintf(path2, sizeof(path2), "%s/bad.conf", dir);
        unlink(path2);
        rmdir(dir);
        return tap_done();
}

/* launcher.c - runs `finetuned train` under the --mpirun template (see
 * launcher.h): template words, fork + exec into a new process group, a poll
 * loop over the child's stdout and stderr, stop and kill by group.
 *
 * Not for: the meaning of the lines (daemon/workers.c), MPI (daemon/dist.c).
 */
#include "daemon/launcher.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define POLL_MS 200
#define TAIL_BYTES 4096

static bool is_blank(char c) {
        return c == ' ' || c == '\t' || c == '\n';
}

/* Split tmpl into words (in buf, pointers in words); -E2BIG beyond max words. */
static int split_words(const char *tmpl, char *buf, size_t size, char **words, size_t max, size_t *ret_n) {
        size_t n = 0;
        snprintf(buf, size, "%s", tmpl);
        for (char *p = buf; *p;) {
                while (is_blank(*p))
                        *p++ = '\0';
                if (!*p)
                        break;
                if (n == max)
                        return -E2BIG;
                words[n++] = p;
                while (*p && !is_blank(*p))
                        p++;
        }
        *ret_n = n;
        return 0;
}

int launcher_template_check(const char *tmpl, struct ft_error *err) {
        char buf[LAUNCHER_TEMPLATE_MAX + 1];
        char *words[LAUNCHER_ARGS_MAX];
        size_t n = 0;
        if (strlen(tmpl) > LAUNCHER_TEMPLATE_MAX)
                return ft_error_set(err, -EINVAL, "mpirun", "'mpirun' is longer than %d bytes", LAUNCHER_TEMPLATE_MAX);
        if (strpbrk(tmpl, "'\"\\$`;|&<>"))
                return ft_error_set(err, -EINVAL, "mpirun",
                                    "'mpirun' is a command and its arguments separated by blanks, run without a "
                                    "shell: no quotes, variables, redirections or ';', got '%s'",
                                    tmpl);
        if (split_words(tmpl, buf, sizeof(buf), words, ARRAY_SIZE(words), &n) < 0)
                return ft_error_set(err, -EINVAL, "mpirun", "'mpirun' has more than %d words", LAUNCHER_ARGS_MAX);
        if (n == 0)
                return 0; /* empty: no launcher, jobs with ranks above 1 are refused */
        if (!strstr(tmpl, "{ranks}"))
                return ft_error_set(err, -EINVAL, "mpirun",
                                    "'mpirun' must say where the rank count goes with {ranks}, as in 'mpirun -np "
                                    "{ranks} --hostfile FILE', got '%s'",
                                    tmpl);
        return 0;
}

/* The word with every "{ranks}" replaced, malloc'd. */
static char *expand(const char *word, unsigned ranks) {
        char num[16], out[LAUNCHER_TEMPLATE_MAX * 2];
        size_t o = 0;
        snprintf(num, sizeof(num), "%u", ranks);
        for (const char *p = word; *p && o + sizeof(num) < sizeof(out);) {
                if (strncmp(p, "{ranks}", 7) == 0) {
                        o += (size_t)snprintf(out + o, sizeof(out) - o, "%s", num);
                        p += 7;
                } else {
                        out[o++] = *p++;
                }
        }
        out[o] = '\0';
        return strdup(out);
}

/* prog as execv wants it: itself when it has a slash, else the first executable match in $PATH. */
static int resolve_program(const char *prog, char *out, size_t size) {
        if (strchr(prog, '/'))
                return ft_path_join(out, size, prog, NULL) < 0 ? -ENAMETOOLONG : 0;
        const char *path = getenv("PATH");
        if (!path || !*path)
                path = "/usr/local/bin:/usr/bin:/bin";
        for (const char *p = path; *p;) {
                const char *end = strchr(p, ':');
                size_t len = end ? (size_t)(end - p) : strlen(p);
                char dir[PATH_MAX];
                if (len > 0 && len < sizeof(dir)) {
                        memcpy(dir, p, len);
                        dir[len] = '\0';
                        if (ft_path_join(out, size, dir, prog, NULL) >= 0 && access(out, X_OK) == 0)
                                return 0;
                }
                p += len + (end ? 1 : 0);
        }
        return -ENOENT;
}

/* The end of stderr as one line: Open MPI's banners ("-----") and blank lines dropped, lines joined by "; ". */
static void tail_message(const char *tail, size_t n, char *out, size_t size) {
        char buf[TAIL_BYTES + 1];
        size_t o = 0;
        memcpy(buf, tail, n);
        buf[n] = '\0';
        out[0] = '\0';
        char *save = NULL;
        for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                while (is_blank(*line) || *line == '\r')
                        line++;
                size_t len = strlen(line);
                while (len && (is_blank(line[len - 1]) || line[len - 1] == '\r'))
                        line[--len] = '\0';
                if (!len || strspn(line, "-=*") == len)
                        continue;
                o += (size_t)snprintf(out + o, o < size ? size - o : 0, "%s%s", o ? "; " : "", line);
        }
        if (o >= size) { /* keep the end: the last lines say what happened */
                size_t keep = size - 4;
                const char *s = out + strlen(out) - keep;
                memmove(out + 3, s, keep);
                memcpy(out, "...", 3);
                out[size - 1] = '\0';
        }
}

struct pipe_buf {
        int fd;
        char *data;
        size_t len, cap;
        bool overflow; /* the line in progress is too long: dropped up to its newline */
};

int launcher_run(const char *tmpl, unsigned ranks, char *const *args, const struct launcher_callbacks *cb,
                 struct launcher_result *ret, struct ft_error *err) {
        char buf[LAUNCHER_TEMPLATE_MAX + 1], prog[PATH_MAX];
        char *words[LAUNCHER_ARGS_MAX];
        size_t n_words = 0, n_args = 0;
        int r = launcher_template_check(tmpl, err);
        if (r < 0)
                return r;
        split_words(tmpl, buf, sizeof(buf), words, ARRAY_SIZE(words), &n_words);
        if (n_words == 0)
                return ft_error_set(err, -EINVAL, "mpirun", "no MPI launcher is configured (--mpirun)");
        while (args[n_args])
                n_args++;
        char **argv = calloc(n_words + n_args + 1, sizeof(*argv));
        if (!argv)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        for (size_t i = 0; i < n_words; i++)
                if (!(argv[i] = expand(words[i], ranks)))
                        r = -ENOMEM;
        for (size_t i = 0; i < n_args; i++)
                argv[n_words + i] = args[i];
        int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, devnull = -1;
        struct pipe_buf pout = {.fd = -1}, perr = {.fd = -1};
        char tail[TAIL_BYTES];
        size_t tail_len = 0;
        pid_t pid = -1;
        if (r < 0) {
                ft_error_set(err, r, NULL, "out of memory");
                goto out;
        }
        r = resolve_program(argv[0], prog, sizeof(prog));
        if (r < 0) {
                ft_error_set(err, r, "mpirun", "the MPI launcher '%s' is not found in PATH", argv[0]);
                goto out;
        }
        if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0 ||
            (devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
                r = ft_error_set(err, -errno, NULL, "cannot start the MPI launcher: %s", strerror(errno));
                if (out_pipe[0] >= 0)
                        close(out_pipe[0]);
                if (err_pipe[0] >= 0)
                        close(err_pipe[0]);
                goto out;
        }
        pout.fd = out_pipe[0];
        perr.fd = err_pipe[0];
        pid_t parent = getpid();
        pid = fork();
        if (pid < 0) {
                r = ft_error_set(err, -errno, NULL, "cannot start the MPI launcher: %s", strerror(errno));
                goto out;
        }
        if (pid == 0) {
                /* the child: async-signal-safe calls only until exec */
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL); /* the daemon blocks the signals it waits for */
                signal(SIGPIPE, SIG_DFL);
                signal(SIGTERM, SIG_DFL);
                signal(SIGINT, SIG_DFL);
                signal(SIGHUP, SIG_DFL);
                setpgid(0, 0);
                prctl(PR_SET_PDEATHSIG, SIGKILL); /* dies with the worker thread that started it */
                if (getppid() != parent)
                        _exit(127);
                if (dup2(devnull, 0) < 0 || dup2(out_pipe[1], 1) < 0 || dup2(err_pipe[1], 2) < 0)
                        _exit(127);
                close_range(3, ~0U, 0); /* the daemon's database, sockets and the like stay with the daemon */
                execv(prog, argv);
                _exit(127);
        }
        setpgid(pid, pid); /* also here: no race with the first kill(-pid) */
        close(out_pipe[1]);
        close(err_pipe[1]);
        out_pipe[1] = err_pipe[1] = -1;
        *ret = (struct launcher_result){0};

        int status = 0;
        bool exited = false, term_sent = false, kill_sent = false;
        double term_at = 0, exited_at = 0;
        /* after the exit, the pipes are read to their end (bounded: a process outside the group may hold them) */
        while (!exited || ((pout.fd >= 0 || perr.fd >= 0) && ft_now_monotonic() - exited_at < 5.0)) {
                struct pollfd fds[2] = {{.fd = pout.fd, .events = POLLIN}, {.fd = perr.fd, .events = POLLIN}};
                int k = poll(fds, 2, POLL_MS);
                if (k < 0 && errno != EINTR)
                        break;
                for (int i = 0; k > 0 && i < 2; i++) {
                        struct pipe_buf *pb = i == 0 ? &pout : &perr;
                        if (pb->fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        char chunk[65536];
                        ssize_t got = read(pb->fd, chunk, sizeof(chunk));
                        if (got < 0 && (errno == EINTR || errno == EAGAIN))
                                continue;
                        if (got <= 0) {
                                close(pb->fd);
                                pb->fd = -1;
                                continue;
                        }
                        if (pb == &perr) { /* keep the last TAIL_BYTES */
                                size_t g = (size_t)got;
                                if (g >= sizeof(tail)) {
                                        memcpy(tail, chunk + g - sizeof(tail), sizeof(tail));
                                        tail_len = sizeof(tail);
                                } else {
                                        size_t keep = FT_MIN(tail_len, sizeof(tail) - g);
                                        memmove(tail, tail + tail_len - keep, keep);
                                        memcpy(tail + keep, chunk, g);
                                        tail_len = keep + g;
                                }
                                continue;
                        }
                        for (ssize_t j = 0; j < got; j++) {
                                char c = chunk[j];
                                if (c == '\n') {
                                        if (!pb->overflow && pb->len && cb->on_line) {
                                                pb->data[pb->len] = '\0';
                                                if (cb->on_line(cb->userdata, pb->data, pb->len) != 0 && !term_sent) {
                                                        kill(-pid, SIGTERM);
                                                        term_sent = true;
                                                        term_at = ft_now_monotonic();
                                                }
                                        }
                                        pb->len = 0;
                                        pb->overflow = false;
                                        continue;
                                }
                                if (pb->overflow)
                                        continue;
                                if (pb->len + 1 >= pb->cap) {
                                        size_t cap = pb->cap ? pb->cap * 2 : 4096;
                                        char *d = cap <= LAUNCHER_LINE_MAX ? realloc(pb->data, cap) : NULL;
                                        if (!d) {
                                                pb->overflow = true;
                                                pb->len = 0;
                                                continue;
                                        }
                                        pb->data = d;
                                        pb->cap = cap;
                                }
                                pb->data[pb->len++] = c;
                        }
                }
                if (!exited && waitpid(pid, &status, WNOHANG) == pid) {
                        exited = true;
                        exited_at = ft_now_monotonic();
                        /* anything of the group still alive (a rank its launcher left behind) goes too */
                        kill(-pid, SIGKILL);
                }
                enum launcher_action a = exited || !cb->poll ? LAUNCHER_CONTINUE : cb->poll(cb->userdata);
                if (!exited && a == LAUNCHER_STOP && !term_sent) {
                        kill(-pid, SIGTERM);
                        term_sent = true;
                        term_at = ft_now_monotonic();
                }
                if (!exited && !kill_sent &&
                    (a == LAUNCHER_KILL || (term_sent && ft_now_monotonic() - term_at > LAUNCHER_GRACE_S))) {
                        kill(-pid, SIGKILL);
                        kill_sent = true;
                }
        }
        if (!exited) { /* poll failed: do not leave it running */
                kill(-pid, SIGKILL);
                waitpid(pid, &status, 0);
        }
        ret->stopped = term_sent || kill_sent;
        ret->signaled = WIFSIGNALED(status);
        ret->signal = ret->signaled ? WTERMSIG(status) : 0;
        ret->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        tail_message(tail, tail_len, ret->message, sizeof(ret->message));
        r = 0;
out:
        for (size_t i = 0; i < n_words; i++)
                free(argv[i]);
        free(argv);
        free(pout.data);
        if (pout.fd >= 0)
                close(pout.fd);
        if (perr.fd >= 0)
                close(perr.fd);
        if (out_pipe[1] >= 0)
                close(out_pipe[1]);
        if (err_pipe[1] >= 0)
                close(err_pipe[1]);
        if (devnull >= 0)
                close(devnull);
        return r;
}

/* launcher.h - the daemon's MPI launcher: runs `finetuned train` under the
 * configured launcher command (the --mpirun template, "mpirun -np {ranks}
 * --hostfile FILE"), in its own process group, hands every line rank 0
 * prints on stdout (the NDJSON events) to a callback, keeps the end of
 * stderr for the message of a failure, and stops it when asked: SIGTERM to
 * the whole group (every rank agrees to stop and rank 0 writes a partial
 * checkpoint), SIGKILL after a grace period or at once.
 *
 * The launcher dies with the worker thread that started it (PR_SET_PDEATHSIG),
 * and every rank ends when its launcher is gone (daemon/dist.c's watchdog), so
 * a daemon killed with SIGKILL leaves no ranks behind to race the job's next
 * attempt.
 *
 * Not for: what the lines mean and what the job's store rows become
 * (daemon/workers.c), MPI inside a rank (daemon/dist.c).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/common.h"

#define LAUNCHER_TEMPLATE_MAX 1024 /* bytes of the --mpirun template */
#define LAUNCHER_ARGS_MAX 64 /* words of the template */
#define LAUNCHER_LINE_MAX ((size_t)1 << 20) /* a longer stdout line is dropped whole */
#define LAUNCHER_GRACE_S 60.0 /* after SIGTERM, how long the ranks get to checkpoint before SIGKILL */

/* Whether tmpl is a usable template: 1 to LAUNCHER_ARGS_MAX words separated by blanks (no shell: no quotes,
 * no variables), at most LAUNCHER_TEMPLATE_MAX bytes, containing "{ranks}". err names param "mpirun". */
int launcher_template_check(const char *tmpl, struct ft_error *err);

enum launcher_action {
        LAUNCHER_CONTINUE,
        LAUNCHER_STOP, /* SIGTERM to the group, then wait (SIGKILL after LAUNCHER_GRACE_S) */
        LAUNCHER_KILL, /* SIGKILL to the group now */
};

struct launcher_callbacks {
        void *userdata;
        /* One line of stdout, NUL-terminated, without its newline. Nonzero: stop as LAUNCHER_STOP. */
        int (*on_line)(void *userdata, char *line, size_t len);
        /* Polled at least every 200 ms, and after every line. */
        enum launcher_action (*poll)(void *userdata);
};

struct launcher_result {
        bool signaled; /* ended by a signal (then signal), else exit_status */
        int exit_status;
        int signal;
        bool stopped; /* we sent SIGTERM or SIGKILL */
        char message[512]; /* the end of stderr, one line, banners dropped; "" when it said nothing */
};

/* Run the template (its words, "{ranks}" replaced by ranks) followed by args (argv of `finetuned train ...`,
 * NULL-terminated) until it exits; *ret says how. Returns 0 when it ran (whatever its exit status), or a
 * negative errno with err set when it could not be started. */
int launcher_run(const char *tmpl, unsigned ranks, char *const *args, const struct launcher_callbacks *cb,
                 struct launcher_result *ret, struct ft_error *err);

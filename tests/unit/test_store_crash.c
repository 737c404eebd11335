/* test_store_crash.c - kill -9 in the middle of a stream of writes, then
 * reopen: PRAGMA integrity_check is ok and every write the child saw
 * acknowledged (the store function returned 0) is there. Default settings
 * (synchronous=FULL), real files. */
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include "tests/unit/store_fixture.h"

#define ROUNDS 3
#define ACKS_BEFORE_KILL 150
#define MAX_ACKS 4096

struct ack {
        char kind; /* 'J' job enqueued, 'E' event appended, 'F' job finished */
        char id[STORE_ID_MAX];
        long long seq;
};

/* The child: write forever, acknowledging each write on the pipe after the
 * store returned. Never returns. */
static void writer_child(const char *dir, const struct refs *r, int fd) {
        struct ft_error err = {0};
        struct store *s = NULL;
        FILE *out = fdopen(fd, "w");
        if (store_open(dir, &s, &err) < 0 || !out)
                _exit(3);
        setvbuf(out, NULL, _IOLBF, 0);
        struct store_job_new in = job_new(r);
        for (unsigned i = 0;; i++) {
                struct store_job *j = NULL;
                if (store_job_enqueue(s, &in, &j, &err) < 0)
                        _exit(4);
                fprintf(out, "J %s 0\n", j->id);
                int64_t seq;
                if (store_event_append(s, j->id, 0, "note", "{\"i\":1}", &seq, &err) < 0)
                        _exit(5);
                fprintf(out, "E %s %lld\n", j->id, (long long)seq);
                if (i % 3 == 0) {
                        struct store_job *c = NULL;
                        if (store_job_claim(s, "crash-worker", 60000, &c, &err) == 1) {
                                if (store_job_finish(s, c->id, c->attempt, STORE_JOB_SUCCEEDED, "{\"ok\":true}", NULL,
                                                     NULL, NULL, &err) < 0)
                                        _exit(6);
                                fprintf(out, "F %s 0\n", c->id);
                                store_job_free(c);
                        }
                }
                store_job_free(j);
        }
}

static int integrity_ok(const char *dir) {
        char path[600];
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int good = 0;
        snprintf(path, sizeof(path), "%s/finetuned.db", dir);
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
            sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
                good = strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
        sqlite3_finalize(st);
        sqlite3_close(db);
        return good;
}

int main(void) {
        struct ft_error err = {0};
        struct store *s = NULL;
        struct refs r;
        static struct ack acks[MAX_ACKS];
        char *dir = tmpdir_make_on("crash", true);

        if (store_open(dir, &s, &err) < 0) {
                printf("Bail out! %s\n", err.message);
                return 1;
        }
        refs_make(s, &r);
        store_close(s);

        for (int round = 0; round < ROUNDS; round++) {
                int pfd[2];
                int n = 0;
                if (pipe(pfd) < 0) {
                        printf("Bail out! pipe\n");
                        return 1;
                }
                fflush(stdout);
                pid_t pid = fork();
                if (pid == 0) {
                        close(pfd[0]);
                        writer_child(dir, &r, pfd[1]);
                }
                close(pfd[1]);
                FILE *in = fdopen(pfd[0], "r");
                char line[128];
                /* Read acknowledgements, kill at a point that varies per round,
                 * then drain what was acknowledged before the kill landed. */
                int kill_at = ACKS_BEFORE_KILL + round * 37;
                bool killed = false;
                while (fgets(line, sizeof(line), in)) {
                        if (n < MAX_ACKS && sscanf(line, "%c %31s %lld", &acks[n].kind, acks[n].id, &acks[n].seq) == 3)
                                n++;
                        if (!killed && n >= kill_at) {
                                kill(pid, SIGKILL);
                                killed = true;
                        }
                }
                fclose(in);
                int status = 0;
                waitpid(pid, &status, 0);
                ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "round %d: writer killed by SIGKILL", round);
                ok(n >= kill_at, "round %d: %d writes acknowledged before the kill", round, n);

                ok(integrity_ok(dir), "round %d: PRAGMA integrity_check is ok", round);
                if (store_open(dir, &s, &err) < 0) {
                        ok(0, "round %d: reopen: %s", round, err.message);
                        break;
                }
                int missing = 0;
                for (int i = 0; i < n; i++) {
                        struct store_job *j = NULL;
                        if (store_job_get(s, acks[i].id, &j, &err) < 0) {
                                missing++;
                                diag("acknowledged job %s missing", acks[i].id);
                                continue;
                        }
                        if (acks[i].kind == 'F' && j->state != STORE_JOB_SUCCEEDED) {
                                missing++;
                                diag("acknowledged finish of %s missing", acks[i].id);
                        }
                        if (acks[i].kind == 'E') {
                                struct store_event_list ev;
                                if (store_event_list(s, acks[i].id, acks[i].seq - 1, 1, &ev, &err) < 0 || ev.n != 1 ||
                                    ev.items[0].seq != acks[i].seq || strcmp(ev.items[0].type, "note") != 0) {
                                        missing++;
                                        diag("acknowledged event %s/%lld missing", acks[i].id, acks[i].seq);
                                }
                                store_event_list_deinit(&ev);
                        }
                        store_job_free(j);
                }
                is_int(missing, 0, "round %d: every acknowledged write is there", round);
                /* And the store still works after recovery. */
                struct store_job_new jn = job_new(&r);
                ok(store_job_enqueue(s, &jn, NULL, &err) == 0, "round %d: writable after recovery", round);
                store_close(s);
        }
        tmpdir_remove(dir);
        free(dir);
        return tap_done();
}

/* test_workers_fence.c - a stale worker cannot touch the live attempt's files.
 *
 * Two real processes run the daemon's worker pool (daemon/workers.c) on one
 * state directory, as two daemons of a fleet would (one `finetuned serve` per
 * state directory is enforced by serve's lock, which is why the pools run here
 * without it: the fence must hold on its own). Worker A claims a training job
 * (attempt 1, 1 s lease) and is frozen with a real SIGSTOP after its first
 * checkpoint; its lease expires, worker B claims attempt 2 and resumes. Then A
 * is thawed (SIGCONT) and stopped: it notices it lost the lease and, stopping,
 * writes the partial checkpoint a stopping run writes. That checkpoint must be
 * abandoned before its rename: at the end every ckpt-<step> directory of the
 * job is one the store recorded, none is a partial one, no temporary file of
 * attempt 1 is left, and B's job succeeded.
 *
 * Before the fix the thawed worker renamed its partial checkpoint into place
 * (an unrecorded, partial ckpt-<step> directory appeared) and wrote the same
 * .tmp-ckpt-<step>/ names as the live attempt. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "compute/model.h"
#include "daemon/workers.h"
#include "store/store.h"
#include "tests/tap.h"
#include "tests/unit/store_fixture.h"

static void sleep_ms(int ms) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
}

/* A child process running a worker pool until SIGTERM; its log goes to log_path. */
static pid_t pool_start(const char *state, const char *log_path) {
        pid_t pid = fork();
        if (pid != 0)
                return pid;
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
                dup2(fd, 2);
                close(fd);
        }
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        struct workers *w = NULL;
        struct ft_error err = {0};
        struct workers_options o = {.state_dir = state, .n = 1, .threads = 1, .lease_ms = 1000};
        if (workers_start(&o, &w, &err) < 0) {
                fprintf(stderr, "workers_start: %s\n", err.message);
                _exit(3);
        }
        int sig;
        sigwait(&mask, &sig);
        workers_stop(w);
        _exit(0);
}

static struct store_job *job_get(struct store *s, const char *id) {
        struct store_job *j = NULL;
        struct ft_error err = {0};
        return store_job_get(s, id, &j, &err) == 0 ? j : NULL;
}

static bool file_has(const char *path, const char *needle) {
        FILE *f = fopen(path, "r");
        char line[2048];
        bool found = false;
        while (f && !found && fgets(line, sizeof(line), f))
                found = strstr(line, needle) != NULL;
        if (f)
                fclose(f);
        return found;
}

int main(void) {
        char *state = tmpdir_make_on("fence", true);
        char log_a[600], log_b[600];
        snprintf(log_a, sizeof(log_a), "%s/a.log", state);
        snprintf(log_b, sizeof(log_b), "%s/b.log", state);
        struct store *s = NULL;
        struct ft_error err = {0};
        if (store_open(state, &s, &err) < 0) {
                printf("Bail out! %s\n", err.message);
                return 1;
        }

        /* 4000 rows, 200 batches of 16 an epoch, a checkpoint every epoch, all kept */
        struct store_blob_writer *bw = NULL;
        char sha[STORE_SHA256_HEX];
        store_blob_begin(s, 0, &bw, &err);
        store_blob_write(bw, "a,b,c,label\n", 12, &err);
        unsigned long long x = 11;
        for (int i = 0; i < 4000; i++) {
                x = (x * 1103515245ULL + 12345ULL) % 2147483648ULL;
                double v = (double)x / 2147483648.0;
                char row[96];
                int n = snprintf(row, sizeof(row), "%.4f,%.4f,%.4f,%d\n", v, 1 - v, v * v, v > 0.5);
                store_blob_write(bw, row, (size_t)n, &err);
        }
        ok(store_blob_commit(bw, sha, NULL, &err) == 0, "training data stored");
        struct store_dataset *d = NULL;
        struct store_model *m = NULL;
        ok(store_dataset_create(s, &(struct store_dataset_new){.name = "rows.csv", .format = "csv", .sha256 = sha}, &d,
                                &err) == 0,
           "dataset");
        json_t *config = json_pack("{s:i s:[i i] s:i}", "inputs", 3, "hidden", 64, 64, "outputs", 2), *mspec = NULL;
        ok(model_preset_spec("mlp", config, &mspec, &err) == 0, "mlp spec: %s", err.message);
        char *mtext = json_dumps(mspec, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(config);
        json_decref(mspec);
        ok(store_model_create(
                   s, &(struct store_model_new){.name = "mlp", .spec_json = mtext, .source = STORE_MODEL_PRESET}, &m,
                   &err) == 0,
           "model");
        free(mtext);
        char spec[512];
        snprintf(spec, sizeof(spec),
                 "{\"model\":\"%s\",\"training_file\":\"%s\",\"task\":{\"type\":\"classification\",\"target\":"
                 "\"label\"},\"hyperparameters\":{\"epochs\":12,\"batch_size\":16,\"learning_rate\":0.01},"
                 "\"checkpoint\":{\"every_epochs\":1,\"keep\":0},\"seed\":7}",
                 m->id, d->id);
        struct store_job *job = NULL;
        ok(store_job_enqueue(s, &(struct store_job_new){.spec_json = spec, .model_id = m->id, .training_file = d->id},
                             &job, &err) == 0,
           "job queued: %s", err.message);
        char id[STORE_ID_MAX];
        snprintf(id, sizeof(id), "%s", job->id);
        store_job_free(job);

        /* A runs attempt 1 until its first checkpoint is recorded, then is frozen */
        pid_t a = pool_start(state, log_a);
        struct store_checkpoint *c = NULL;
        bool first = false;
        for (int i = 0; i < 60000 && !first; i++) {
                first = store_checkpoint_latest(s, id, &c, &err) == 1;
                struct store_job *j = first ? NULL : job_get(s, id);
                bool gone = j && j->state != STORE_JOB_RUNNING && j->state != STORE_JOB_QUEUED;
                if (gone)
                        diag("the job ended early: %s", j->error_json);
                store_job_free(j);
                if (gone)
                        break;
                if (!first)
                        sleep_ms(5);
        }
        ok(first && c->attempt == 1, "worker A recorded a checkpoint of attempt 1 (step %lld)",
           first ? (long long)c->step : -1LL);
        store_checkpoint_free(c);
        /* Frozen holding SQLite's write lock, A would freeze everyone (why one daemon holds a state directory):
         * freeze it at a moment it holds none, as a probe's write transaction with a 1 ms busy timeout shows. */
        struct store *probe = NULL;
        store_open_with(state, &(struct store_options){.busy_timeout_ms = 1}, &probe, &err);
        bool frozen = false;
        for (int i = 0; i < 1000 && !frozen; i++) {
                kill(a, SIGSTOP);
                waitpid(a, NULL, WUNTRACED);
                frozen = store_job_requeue_expired(probe, NULL, &err) == 0;
                if (!frozen) {
                        kill(a, SIGCONT);
                        sleep_ms(3);
                }
        }
        store_close(probe);
        ok(frozen, "worker A frozen (SIGSTOP) outside a database transaction");

        /* its lease runs out; B claims attempt 2 and resumes */
        pid_t b = pool_start(state, log_b);
        bool claimed = false;
        for (int i = 0; i < 60000 && !claimed; i++) {
                struct store_job *j = job_get(s, id);
                claimed = j && j->attempt == 2;
                store_job_free(j);
                if (!claimed)
                        sleep_ms(5);
        }
        ok(claimed, "worker B claimed attempt 2 while A is frozen");

        /* A thaws and stops: it must notice the lost lease and write nothing */
        kill(a, SIGCONT);
        kill(a, SIGTERM);
        int status = -1;
        waitpid(a, &status, 0);
        ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "worker A stopped (status %d)", status);
        ok(file_has(log_a, "lost the lease"), "A saw it lost the lease");
        ok(file_has(log_a, "of attempt 1 abandoned"), "A abandoned the checkpoint it was stopping with");

        /* B finishes the job */
        enum store_job_state st = STORE_JOB_RUNNING;
        for (int i = 0; i < 120000; i++) {
                struct store_job *j = job_get(s, id);
                st = j ? j->state : STORE_JOB_FAILED;
                store_job_free(j);
                if (st != STORE_JOB_RUNNING && st != STORE_JOB_QUEUED)
                        break;
                sleep_ms(5);
        }
        struct store_job *j = job_get(s, id);
        ok(st == STORE_JOB_SUCCEEDED, "the live attempt succeeded: %s %s", store_job_state_name(st),
           j ? j->error_json : "");
        ok(j && j->attempt == 2, "as attempt 2");
        store_job_free(j);
        kill(b, SIGTERM);
        waitpid(b, &status, 0);

        /* the job's directory: only recorded, complete checkpoints; no temporary file of attempt 1 */
        struct store_checkpoint_list list = {0};
        ok(store_checkpoint_list(s, id, &(struct store_page){.limit = 100}, &list, &err) == 0, "checkpoints listed%s%s",
           err.message[0] ? ": " : "", err.message);
        char dir[700];
        snprintf(dir, sizeof(dir), "%s/jobs/%s", state, id);
        DIR *dd = opendir(dir);
        struct dirent *e;
        int unrecorded = 0, partial = 0, stale_tmp = 0, ckpts = 0;
        while (dd && (e = readdir(dd))) {
                if (strncmp(e->d_name, ".tmp-", 5) == 0 && strstr(e->d_name, "-a1"))
                        stale_tmp++;
                if (strncmp(e->d_name, "ckpt-", 5) != 0)
                        continue;
                ckpts++;
                bool recorded = false;
                for (size_t i = 0; i < list.n; i++) {
                        const char *slash = strrchr(list.items[i]->dir, '/');
                        recorded |= slash && strcmp(slash + 1, e->d_name) == 0;
                }
                if (!recorded) {
                        diag("unrecorded checkpoint directory %s", e->d_name);
                        unrecorded++;
                }
                char statef[1400];
                snprintf(statef, sizeof(statef), "%s/%s/state.json", dir, e->d_name);
                if (file_has(statef, "\"partial\": true")) {
                        diag("partial checkpoint %s", e->d_name);
                        partial++;
                }
        }
        if (dd)
                closedir(dd);
        ok(ckpts > 0 && (size_t)ckpts == list.n, "%d checkpoint directories, %zu recorded", ckpts, list.n);
        ok(unrecorded == 0, "no checkpoint directory the store does not know (%d)", unrecorded);
        ok(partial == 0, "no partial checkpoint from the stale attempt (%d)", partial);
        ok(stale_tmp == 0, "no temporary file of attempt 1 left (%d)", stale_tmp);

        store_checkpoint_list_deinit(&list);
        store_dataset_free(d);
        store_model_free(m);
        store_close(s);
        if (tap_failed)
                diag("kept %s", state);
        else
                tmpdir_remove(state);
        free(state);
        return tap_done();
}

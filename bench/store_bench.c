/* store_bench.c - store throughput and latency: enqueue, claim (one thread and
 * several), and one page of 50 from a table of 100,000 jobs (target < 5 ms).
 * Prints one line per measurement. Not a test: nothing here asserts a time.
 *
 *   build/bench/store_bench [--jobs 100000] [--dir DIR] [--threads 4]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "tests/unit/store_fixture.h"

static const char *dir;

static double now(void) {
        return ft_now_monotonic();
}

static void die(const char *what, const struct ft_error *err) {
        fprintf(stderr, "store_bench: %s: %s\n", what, err->message);
        exit(1);
}

struct claimer {
        int claimed;
};

static void *claim_thread(void *p) {
        struct claimer *c = p;
        struct ft_error err = {0};
        struct store *s;
        if (store_open(dir, &s, &err) < 0)
                die("open", &err);
        for (;;) {
                int r = store_job_claim(s, "bench", 600000, NULL, &err);
                if (r < 0)
                        die("claim", &err);
                if (r == 0)
                        break;
                c->claimed++;
        }
        store_close(s);
        return NULL;
}

/* Concurrent submits: each thread its own connection, as the HTTP server's threads are. */
#define ENQ_EACH 50
struct submitter {
        const struct store_job_new *in;
        double lat_ms[ENQ_EACH];
};

static void *submit_thread(void *p) {
        struct submitter *sub = p;
        struct ft_error err = {0};
        struct store *s;
        if (store_open(dir, &s, &err) < 0)
                die("open", &err);
        for (int i = 0; i < ENQ_EACH; i++) {
                double t0 = now();
                if (store_job_enqueue(s, sub->in, NULL, &err) < 0)
                        die("enqueue", &err);
                sub->lat_ms[i] = (now() - t0) * 1000.0;
        }
        store_close(s);
        return NULL;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static void submit_bench(const struct store_job_new *in, int n) {
        pthread_t t[64];
        struct submitter *sub = calloc((size_t)n, sizeof(*sub));
        double *all = calloc((size_t)n * ENQ_EACH, sizeof(double));
        double t0 = now();
        for (int i = 0; i < n; i++) {
                sub[i].in = in;
                pthread_create(&t[i], NULL, submit_thread, &sub[i]);
        }
        for (int i = 0; i < n; i++) {
                pthread_join(t[i], NULL);
                memcpy(all + (size_t)i * ENQ_EACH, sub[i].lat_ms, sizeof(sub[i].lat_ms));
        }
        double dt = now() - t0;
        size_t total = (size_t)n * ENQ_EACH;
        qsort(all, total, sizeof(double), cmp_double);
        printf("enqueue (synchronous=FULL, %d threads, one connection each): %zu jobs in %.3f s = %.0f jobs/s,"
               " latency p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
               n, total, dt, total / dt, all[total / 2], all[total * 99 / 100], all[total - 1]);
        free(all);
        free(sub);
}

static double page_ms(struct store *s, const struct store_job_filter *f, const char *after, int reps) {
        struct ft_error err = {0};
        struct store_job_list l;
        double t0 = now();
        for (int i = 0; i < reps; i++) {
                if (store_job_list(s, f, &(struct store_page){.limit = 50, .after = after}, &l, &err) < 0)
                        die("list", &err);
                if (l.n != 50)
                        fprintf(stderr, "store_bench: short page (%zu)\n", l.n);
                store_job_list_deinit(&l);
        }
        return (now() - t0) * 1000.0 / reps;
}

int main(int argc, char **argv) {
        int total = 100000, threads = 4, small = 2000;
        const char *given = NULL;
        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc)
                        total = atoi(argv[++i]);
                else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
                        given = argv[++i];
                else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
                        threads = atoi(argv[++i]);
                else {
                        fprintf(stderr, "usage: store_bench [--jobs N] [--dir DIR] [--threads N]\n");
                        return 2;
                }
        }
        if (total < 1000 || threads < 1 || threads > 64) {
                fprintf(stderr, "store_bench: --jobs must be >= 1000, --threads 1..64\n");
                return 2;
        }
        char *made = given ? NULL : tmpdir_make_on("bench", true);
        dir = given ? given : made;
        struct ft_error err = {0};
        struct store *s;
        struct refs r;
        if (store_open(dir, &s, &err) < 0)
                die("open", &err);
        refs_make(s, &r);
        struct store_job_new in = job_new(&r);

        /* 1. enqueue, durable (synchronous=FULL), one transaction each */
        double t0 = now();
        for (int i = 0; i < small; i++)
                if (store_job_enqueue(s, &in, NULL, &err) < 0)
                        die("enqueue", &err);
        double dt = now() - t0;
        printf("enqueue (synchronous=FULL, 1 thread): %d jobs in %.3f s = %.0f jobs/s\n", small, dt, small / dt);

        submit_bench(&in, 1);
        submit_bench(&in, 32);

        /* 2. claim, one thread then several */
        t0 = now();
        int claimed = 0;
        for (int i = 0; i < small / 2; i++) {
                int rc = store_job_claim(s, "bench", 600000, NULL, &err);
                if (rc < 0)
                        die("claim", &err);
                claimed += rc;
        }
        dt = now() - t0;
        printf("claim (synchronous=FULL, 1 thread): %d jobs in %.3f s = %.0f claims/s\n", claimed, dt, claimed / dt);
        pthread_t t[64];
        struct claimer cl[64] = {0};
        t0 = now();
        for (int i = 0; i < threads; i++)
                pthread_create(&t[i], NULL, claim_thread, &cl[i]);
        claimed = 0;
        for (int i = 0; i < threads; i++) {
                pthread_join(t[i], NULL);
                claimed += cl[i].claimed;
        }
        dt = now() - t0;
        printf("claim (synchronous=FULL, %d threads, one connection each): %d jobs in %.3f s = %.0f claims/s\n",
               threads, claimed, dt, claimed / dt);
        store_close(s);

        /* 3. fill to `total` jobs (relaxed sync for the fill only), some running */
        struct store *fast;
        if (store_open_with(dir, &(struct store_options){.relaxed_sync = true}, &fast, &err) < 0)
                die("open", &err);
        t0 = now();
        for (int i = small; i < total; i++) {
                in.priority = i % 7 == 0 ? 1 : 0;
                if (store_job_enqueue(fast, &in, NULL, &err) < 0)
                        die("enqueue", &err);
        }
        dt = now() - t0;
        printf("enqueue (synchronous=NORMAL, fill): %d jobs in %.3f s = %.0f jobs/s\n", total - small, dt,
               (total - small) / dt);
        for (int i = 0; i < 500; i++)
                store_job_claim(fast, "bench", 600000, NULL, &err);
        store_close(fast);

        if (store_open(dir, &s, &err) < 0)
                die("open", &err);
        int64_t count = 0;
        store_job_count(s, 0, &count, &err);
        struct store_job_list mid;
        /* a cursor in the middle of the table */
        const char *after = NULL;
        char cursor[STORE_ID_MAX] = "";
        for (int p = 0;
             p < 10 && store_job_list(s, NULL, &(struct store_page){.limit = 100, .after = after}, &mid, &err) == 0;
             p++) {
                snprintf(cursor, sizeof(cursor), "%s", mid.items[mid.n - 1]->id);
                after = cursor;
                store_job_list_deinit(&mid);
        }
        struct store_job_filter queued = {STORE_JOB_STATE_BIT(STORE_JOB_QUEUED)};
        struct store_job_filter running = {STORE_JOB_STATE_BIT(STORE_JOB_RUNNING)};
        struct store_job_filter active = {STORE_JOB_STATE_BIT(STORE_JOB_QUEUED) |
                                          STORE_JOB_STATE_BIT(STORE_JOB_RUNNING)};
        int reps = 200;
        printf("page of 50 from %lld jobs, first page, no filter: %.3f ms\n", (long long)count,
               page_ms(s, NULL, NULL, reps));
        printf("page of 50 from %lld jobs, after a cursor 1000 deep: %.3f ms\n", (long long)count,
               page_ms(s, NULL, cursor, reps));
        printf("page of 50 from %lld jobs, state=queued: %.3f ms\n", (long long)count, page_ms(s, &queued, NULL, reps));
        printf("page of 50 from %lld jobs, state=running (2,500 of them): %.3f ms\n", (long long)count,
               page_ms(s, &running, NULL, reps));
        printf("page of 50 from %lld jobs, state=queued|running after a cursor: %.3f ms\n", (long long)count,
               page_ms(s, &active, cursor, reps));
        int64_t q = 0;
        t0 = now();
        for (int i = 0; i < reps; i++)
                store_job_count(s, STORE_JOB_STATE_BIT(STORE_JOB_QUEUED), &q, &err);
        printf("count of queued jobs (%lld): %.3f ms\n", (long long)q, (now() - t0) * 1000.0 / reps);
        t0 = now();
        for (int i = 0; i < 200; i++)
                if (store_job_claim(s, "bench", 600000, NULL, &err) < 0)
                        die("claim", &err);
        printf("claim with %lld queued (synchronous=FULL): %.3f ms each\n", (long long)q, (now() - t0) * 1000.0 / 200);
        store_close(s);
        if (made) {
                tmpdir_remove(made);
                free(made);
        }
        return 0;
}

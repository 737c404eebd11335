/* changes.c - the in-process change notifier: generation counters per job
 * (hashed into buckets) and for the queue, a condition variable for blocking
 * waiters, and callbacks for code that cannot block. Shared by every struct
 * store opened on the same state directory in this process.
 *
 * Not for: cross-process wake-ups themselves: a PostgreSQL store attaches a
 * LISTEN thread (pg_store.c) that feeds notifier_signal with other daemons'
 * commits; a SQLite store has none. */
#include "store/internal.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define BUCKETS 256

struct store_subscription {
        struct notifier *n;
        store_change_fn fn;
        void *userdata;
        struct store_subscription *next;
};

struct notifier {
        char key[PATH_MAX];
        int refs;
        struct notifier *next;
        pthread_mutex_t lock;
        pthread_cond_t cond; /* CLOCK_MONOTONIC */
        uint64_t job_gen[BUCKETS];
        uint64_t queue_gen;
        /* subscriptions: callbacks run under subs_lock so that unsubscribe
         * returning means "never called again" */
        pthread_mutex_t subs_lock;
        struct store_subscription *subs;
        /* the cross-process feed (PostgreSQL's LISTEN thread), stopped with the last reference */
        void *listener;
        void (*listener_stop)(void *listener);
        char listener_token[32];
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct notifier *registry;

static unsigned bucket_of(const char *job_id) {
        uint32_t h = 2166136261u; /* FNV-1a */
        for (const unsigned char *p = (const unsigned char *)job_id; *p; p++)
                h = (h ^ *p) * 16777619u;
        return h % BUCKETS;
}

int notifier_acquire(const char *state_dir, struct notifier **ret, struct ft_error *err) {
        char key[PATH_MAX];
        if (!realpath(state_dir, key))
                return ft_error_set(err, -errno, NULL, "cannot resolve state directory '%s': %s", state_dir,
                                    strerror(errno));
        pthread_mutex_lock(&registry_lock);
        struct notifier *n;
        for (n = registry; n; n = n->next)
                if (strcmp(n->key, key) == 0)
                        break;
        if (!n) {
                n = calloc(1, sizeof(*n));
                if (!n) {
                        pthread_mutex_unlock(&registry_lock);
                        return ft_error_set(err, -ENOMEM, NULL, "out of memory");
                }
                memcpy(n->key, key, sizeof(key));
                pthread_condattr_t ca;
                pthread_condattr_init(&ca);
                pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
                pthread_cond_init(&n->cond, &ca);
                pthread_condattr_destroy(&ca);
                pthread_mutex_init(&n->lock, NULL);
                pthread_mutex_init(&n->subs_lock, NULL);
                n->next = registry;
                registry = n;
        }
        n->refs++;
        pthread_mutex_unlock(&registry_lock);
        *ret = n;
        return 0;
}

void notifier_release(struct notifier *n) {
        if (!n)
                return;
        pthread_mutex_lock(&registry_lock);
        if (--n->refs > 0) {
                pthread_mutex_unlock(&registry_lock);
                return;
        }
        for (struct notifier **p = &registry; *p; p = &(*p)->next)
                if (*p == n) {
                        *p = n->next;
                        break;
                }
        pthread_mutex_unlock(&registry_lock);
        if (n->listener)
                n->listener_stop(n->listener);
        pthread_cond_destroy(&n->cond);
        pthread_mutex_destroy(&n->lock);
        pthread_mutex_destroy(&n->subs_lock);
        free(n);
}

void notifier_listen(struct notifier *n, void *(*start)(struct notifier *n, void *userdata), void (*stop)(void *),
                     void *userdata, char *token, size_t token_size) {
        pthread_mutex_lock(&registry_lock);
        if (!n->listener) {
                snprintf(n->listener_token, sizeof(n->listener_token), "%s", token);
                n->listener = start(n, userdata);
                n->listener_stop = stop;
        }
        snprintf(token, token_size, "%s", n->listener_token);
        pthread_mutex_unlock(&registry_lock);
}

void notifier_signal(struct notifier *n, const char (*jobs)[STORE_ID_MAX], size_t n_jobs, bool all_jobs, bool queue) {
        pthread_mutex_lock(&n->lock);
        if (all_jobs)
                for (unsigned b = 0; b < BUCKETS; b++)
                        n->job_gen[b]++;
        else
                for (size_t i = 0; i < n_jobs; i++)
                        n->job_gen[bucket_of(jobs[i])]++;
        if (queue)
                n->queue_gen++;
        pthread_cond_broadcast(&n->cond);
        pthread_mutex_unlock(&n->lock);

        pthread_mutex_lock(&n->subs_lock);
        for (struct store_subscription *sub = n->subs; sub; sub = sub->next) {
                if (all_jobs || queue)
                        sub->fn(NULL, sub->userdata);
                if (!all_jobs)
                        for (size_t i = 0; i < n_jobs; i++)
                                sub->fn(jobs[i], sub->userdata);
        }
        pthread_mutex_unlock(&n->subs_lock);
}

uint64_t store_job_generation(struct store *s, const char *job_id) {
        struct notifier *n = s->notifier;
        pthread_mutex_lock(&n->lock);
        uint64_t g = n->job_gen[bucket_of(job_id)];
        pthread_mutex_unlock(&n->lock);
        return g;
}

uint64_t store_queue_generation(struct store *s) {
        struct notifier *n = s->notifier;
        pthread_mutex_lock(&n->lock);
        uint64_t g = n->queue_gen;
        pthread_mutex_unlock(&n->lock);
        return g;
}

static int wait_gen(struct notifier *n, const uint64_t *gen, uint64_t seen, int timeout_ms, uint64_t *ret_gen) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        if (timeout_ms < 0)
                timeout_ms = 0;
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000L;
        }
        int changed = 0;
        pthread_mutex_lock(&n->lock);
        for (;;) {
                if (*gen != seen) {
                        changed = 1;
                        if (ret_gen)
                                *ret_gen = *gen;
                        break;
                }
                if (pthread_cond_timedwait(&n->cond, &n->lock, &deadline) == ETIMEDOUT) {
                        if (*gen != seen) /* changed just as the timeout fired */
                                continue;
                        break;
                }
        }
        pthread_mutex_unlock(&n->lock);
        return changed;
}

int store_job_wait(struct store *s, const char *job_id, uint64_t seen, int timeout_ms, uint64_t *ret_gen) {
        return wait_gen(s->notifier, &s->notifier->job_gen[bucket_of(job_id)], seen, timeout_ms, ret_gen);
}

int store_queue_wait(struct store *s, uint64_t seen, int timeout_ms, uint64_t *ret_gen) {
        return wait_gen(s->notifier, &s->notifier->queue_gen, seen, timeout_ms, ret_gen);
}

int store_subscribe(struct store *s, store_change_fn fn, void *userdata, struct store_subscription **ret,
                    struct ft_error *err) {
        struct store_subscription *sub = calloc(1, sizeof(*sub));
        if (!sub)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        sub->n = s->notifier;
        pthread_mutex_lock(&registry_lock); /* the subscription keeps the notifier alive */
        sub->n->refs++;
        pthread_mutex_unlock(&registry_lock);
        sub->fn = fn;
        sub->userdata = userdata;
        pthread_mutex_lock(&sub->n->subs_lock);
        sub->next = sub->n->subs;
        sub->n->subs = sub;
        pthread_mutex_unlock(&sub->n->subs_lock);
        *ret = sub;
        return 0;
}

void store_unsubscribe(struct store_subscription *sub) {
        if (!sub)
                return;
        struct notifier *n = sub->n;
        pthread_mutex_lock(&n->subs_lock);
        for (struct store_subscription **p = &n->subs; *p; p = &(*p)->next)
                if (*p == sub) {
                        *p = sub->next;
                        break;
                }
        pthread_mutex_unlock(&n->subs_lock);
        free(sub);
        notifier_release(n);
}

/* dist.c - MPI for data-parallel training (see dist.h): init, the watchdog,
 * and sum-allreduce / broadcast as struct train_collective's callbacks.
 *
 * Not for: splitting batches or averaging gradients (compute/train.c), or
 * launching ranks (daemon/launcher.c).
 */
#include "config.h"

#include "daemon/dist.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if HAVE_MPI
#include <mpi.h>
#endif

bool dist_launched(void) {
        const char *s = getenv("OMPI_COMM_WORLD_SIZE");
        return s && s[0];
}

bool dist_available(void) {
        return HAVE_MPI;
}

#if HAVE_MPI

struct dist {
        struct train_collective coll;
        double timeout;
        pthread_t watchdog;
        bool watchdog_started;
        atomic_bool quit;
        pid_t parent; /* the launcher (mpirun, or Open MPI's orted on another host); 0: not watched */
        /* when the collective in progress began (CLOCK_MONOTONIC ns), 0 when none; and what it is */
        atomic_llong since;
        const char *_Atomic what;
};

static long long now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *watchdog_main(void *arg) {
        struct dist *d = arg;
        while (!atomic_load(&d->quit)) {
                struct timespec nap = {0, 100 * 1000 * 1000};
                nanosleep(&nap, NULL);
                if (d->parent && getppid() != d->parent) {
                        /* the launcher is gone (killed with the daemon that ran it): a rank left alone would go
                         * on training and writing its --out beside the job's next attempt */
                        fprintf(stderr, "finetuned train: rank %d of %d: the MPI launcher is gone; giving up\n",
                                d->coll.rank, d->coll.size);
                        fflush(stderr);
                        _exit(1);
                }
                long long since = atomic_load(&d->since);
                if (since && (double)(now_ns() - since) / 1e9 > d->timeout) {
                        /* the other ranks never came: one died or hangs. MPI cannot be called from here (the
                         * main thread is inside it), so end the process; the launcher ends the rest */
                        fprintf(stderr,
                                "finetuned train: rank %d of %d: %s waited more than %g s for the other ranks "
                                "(a rank died, hangs or lost its network); giving up\n",
                                d->coll.rank, d->coll.size, atomic_load(&d->what), d->timeout);
                        fflush(stderr);
                        _exit(1);
                }
        }
        return NULL;
}

static int mpi_fail(struct dist *d, int rc, const char *what, struct ft_error *err) {
        char msg[MPI_MAX_ERROR_STRING] = "";
        int len = 0;
        MPI_Error_string(rc, msg, &len);
        return ft_error_set(err, -EIO, NULL, "rank %d of %d: %s failed: %s", d->coll.rank, d->coll.size, what, msg);
}

static void guard_begin(struct dist *d, const char *what) {
        atomic_store(&d->what, what);
        atomic_store(&d->since, now_ns());
}

static void guard_end(struct dist *d) {
        atomic_store(&d->since, 0);
}

/* MPI counts are int: large spans go in chunks */
#define CHUNK ((size_t)1 << 28)

static int allreduce(void *ud, void *buf, size_t n, size_t elem, MPI_Datatype type, const char *what,
                     struct ft_error *err) {
        struct dist *d = ud;
        guard_begin(d, what);
        for (size_t off = 0; off < n; off += CHUNK) {
                size_t k = n - off < CHUNK ? n - off : CHUNK;
                int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * elem, (int)k, type, MPI_SUM, MPI_COMM_WORLD);
                if (rc != MPI_SUCCESS) {
                        guard_end(d);
                        return mpi_fail(d, rc, what, err);
                }
        }
        guard_end(d);
        return 0;
}

static int dist_allreduce_f32(void *ud, float *buf, size_t n, struct ft_error *err) {
        return allreduce(ud, buf, n, sizeof(float), MPI_FLOAT, "the gradient allreduce", err);
}

static int dist_allreduce_f64(void *ud, double *buf, size_t n, struct ft_error *err) {
        return allreduce(ud, buf, n, sizeof(double), MPI_DOUBLE, "the loss allreduce", err);
}

static int dist_broadcast(void *ud, void *buf, size_t bytes, struct ft_error *err) {
        struct dist *d = ud;
        int r = 0;
        guard_begin(d, "the buffer broadcast");
        for (size_t off = 0; off < bytes; off += CHUNK) {
                size_t k = bytes - off < CHUNK ? bytes - off : CHUNK;
                int rc = MPI_Bcast((char *)buf + off, (int)k, MPI_BYTE, 0, MPI_COMM_WORLD);
                if (rc != MPI_SUCCESS) {
                        r = mpi_fail(d, rc, "the buffer broadcast", err);
                        break;
                }
        }
        guard_end(d);
        return r;
}

int dist_open(double timeout, struct dist **ret, struct ft_error *err) {
        int provided = 0, rank = 0, size = 1;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
                return ft_error_set(err, -EIO, NULL, "MPI_Init failed");
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        struct dist *d = calloc(1, sizeof(*d));
        if (!d) {
                MPI_Finalize();
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        d->timeout = timeout;
        d->parent = getppid() > 1 ? getppid() : 0;
        d->coll = (struct train_collective){
                .rank = rank,
                .size = size,
                .userdata = d,
                .allreduce_f32 = dist_allreduce_f32,
                .allreduce_f64 = dist_allreduce_f64,
                .broadcast = dist_broadcast,
        };
        atomic_init(&d->since, 0);
        atomic_init(&d->quit, false);
        atomic_init(&d->what, "");
        if (pthread_create(&d->watchdog, NULL, watchdog_main, d) == 0)
                d->watchdog_started = true;
        *ret = d;
        return 0;
}

void dist_close(struct dist *d) {
        if (!d)
                return;
        atomic_store(&d->quit, true);
        if (d->watchdog_started)
                pthread_join(d->watchdog, NULL);
        MPI_Finalize();
        free(d);
}

const struct train_collective *dist_collective(struct dist *d) {
        return &d->coll;
}

#else

struct dist {
        struct train_collective coll;
};

int dist_open(double timeout, struct dist **ret, struct ft_error *err) {
        (void)timeout;
        (void)ret;
        return ft_error_set(err, -EOPNOTSUPP, NULL,
                            "this build has no MPI (rebuild with -Dmpi=enabled and Open MPI installed)");
}

void dist_close(struct dist *d) {
        (void)d;
}

const struct train_collective *dist_collective(struct dist *d) {
        return &d->coll;
}

#endif

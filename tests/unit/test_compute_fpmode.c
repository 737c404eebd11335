/* test_compute_fpmode.c - a compute context flushes denormal floats to zero (MXCSR FTZ and DAZ) in the thread that
 * created it and in each of its OpenMP threads, so that training whose values shrink towards zero does not run on
 * the cores' slow denormal path (compute/context.c); freeing the context gives the creating thread its mode back.
 * Not for: the speed this buys (bench/estimate_bench.sh shows it; timings are never assertions). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "compute/compute.h"
#include "tests/tap.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define FLUSH 0x8040u

/* A denormal times one, computed where the compiler cannot fold it. */
static float times_one(volatile float x) {
        volatile float one = 1.0f;
        return x * one;
}

int main(void) {
        volatile float tiny = 1e-40f; /* below FLT_MIN: a denormal */
        ok((_mm_getcsr() & FLUSH) == 0, "a new thread computes on denormals (MXCSR %#x)", _mm_getcsr());
        ok(times_one(tiny) != 0.0f, "1e-40 * 1 is not 0 before a context");
        struct compute_ctx *ctx = NULL;
        struct ft_error err = {0};
        if (!ok(compute_ctx_new(2, &ctx, &err) == 0, "context with 2 threads (%s)", err.message))
                return tap_done();
        ok((_mm_getcsr() & FLUSH) == FLUSH, "the creating thread flushes denormals (MXCSR %#x)", _mm_getcsr());
        ok(times_one(tiny) == 0.0f, "1e-40 * 1 is 0 with the context");
        int flushed = 0, n = 0;
#pragma omp parallel num_threads(2) reduction(+ : flushed, n)
        {
                flushed += (_mm_getcsr() & FLUSH) == FLUSH && times_one(tiny) == 0.0f;
                n++;
        }
        ok(n == 2 && flushed == 2, "every OpenMP thread of the context flushes them too (%d of %d)", flushed, n);
        compute_ctx_free(ctx);
        ok((_mm_getcsr() & FLUSH) == 0 && times_one(tiny) != 0.0f, "compute_ctx_free restores the thread's mode");
        return tap_done();
}
#else
int main(void) {
        printf("1..0 # SKIP MXCSR is x86's; this CPU's denormal mode is left as it is\n");
        return 0;
}
#endif

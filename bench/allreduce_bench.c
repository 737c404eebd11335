/* allreduce_bench.c - `mpirun -np N allreduce_bench`: the time of one in-place
 * MPI_Allreduce (float sum, as compute/train's data-parallel step does over
 * the gradient span) against the span's size, median of several runs, printed
 * by rank 0 as "floats bytes median_ms GB/s (algorithm bandwidth)".
 *
 * Not for: tests (timings are never assertions); see bench/dist_bench.sh.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
        int rank, size;
        MPI_Init(&argc, &argv);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        const size_t max = (size_t)16 << 20; /* 64 MiB of floats: ResNet-18's 11.7M parameters fit */
        float *buf = calloc(max, sizeof(float));
        if (!buf)
                MPI_Abort(MPI_COMM_WORLD, 1);
        if (rank == 0)
                printf("# %d ranks\n# floats bytes median_ms GB/s\n", size);
        for (size_t n = 1024; n <= max; n *= 4) {
                enum { RUNS = 9 };
                double t[RUNS];
                for (int i = 0; i < RUNS; i++) {
                        MPI_Barrier(MPI_COMM_WORLD);
                        double t0 = MPI_Wtime();
                        MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
                        t[i] = MPI_Wtime() - t0;
                }
                qsort(t, RUNS, sizeof(double), cmp_double);
                if (rank == 0)
                        printf("%zu %zu %.3f %.2f\n", n, n * sizeof(float), t[RUNS / 2] * 1e3,
                               (double)(n * sizeof(float)) / t[RUNS / 2] / 1e9);
        }
        free(buf);
        MPI_Finalize();
        return 0;
}

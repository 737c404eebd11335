/* st_compare.c - `st_compare A.safetensors B.safetensors TOL`: exit 0 when both
 * files hold the same tensors (names, shapes) and every F32 tensor agrees within
 * TOL relative (max |a-b| over the tensor divided by its max |a|); prints the
 * worst tensor. For the data-parallel equivalence tests (test_dist_mpi.sh).
 *
 * Not for: anything but tests.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/safetensors.h"

int main(int argc, char **argv) {
        struct st_file *a = NULL, *b = NULL;
        struct ft_error err = {0};
        double worst = 0;
        const char *worst_name = "";
        int status = 1;
        if (argc != 4) {
                fprintf(stderr, "usage: st_compare A B TOL\n");
                return 2;
        }
        double tol = strtod(argv[3], NULL);
        if (st_file_open(argv[1], 0, &a, &err) < 0 || st_file_open(argv[2], 0, &b, &err) < 0) {
                fprintf(stderr, "st_compare: %s\n", err.message);
                goto out;
        }
        if (a->n_tensors != b->n_tensors) {
                fprintf(stderr, "st_compare: %zu tensors against %zu\n", a->n_tensors, b->n_tensors);
                goto out;
        }
        for (size_t i = 0; i < a->n_tensors; i++) {
                const struct st_tensor *ta = &a->tensors[i], *tb = st_file_find(b, ta->name);
                if (!tb || tb->numel != ta->numel || tb->dtype != ta->dtype) {
                        fprintf(stderr, "st_compare: '%s' differs in name, shape or type\n", ta->name);
                        goto out;
                }
                if (ta->dtype != ST_DTYPE_F32)
                        continue;
                float *x = malloc(ta->numel * sizeof(float)), *y = malloc(ta->numel * sizeof(float));
                if (!x || !y || st_tensor_read_f32(a, ta, x, ta->numel, &err) < 0 ||
                    st_tensor_read_f32(b, tb, y, tb->numel, &err) < 0) {
                        free(x);
                        free(y);
                        fprintf(stderr, "st_compare: '%s': cannot read\n", ta->name);
                        goto out;
                }
                double diff = 0, mag = 0;
                for (size_t k = 0; k < ta->numel; k++) {
                        diff = fmax(diff, fabs((double)x[k] - (double)y[k]));
                        mag = fmax(mag, fabs((double)x[k]));
                }
                free(x);
                free(y);
                double rel = mag > 0 ? diff / mag : diff;
                if (rel > worst || isnan(rel)) {
                        worst = rel;
                        worst_name = ta->name;
                }
        }
        printf("max relative difference %.3g in '%s'\n", worst, worst_name);
        status = worst <= tol ? 0 : 1;
out:
        st_file_free(a);
        st_file_free(b);
        return status;
}

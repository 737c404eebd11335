/* tensor.c - tensor helpers and the arena that holds a model's (or optimizer's) tensors.
 * Not for: math on tensors (backend, optim). */
#include "compute/tensor.h"

#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN 64

size_t tensor_nbytes(const struct tensor *t) {
        return t->numel * (t->dtype == TENSOR_I64 ? 8 : 4);
}

const char *tensor_dtype_name(enum tensor_dtype dtype) {
        return dtype == TENSOR_I64 ? "I64" : "F32";
}

bool arena_size_add(size_t *total, size_t size) {
        size_t rounded;
        if (!ft_add_size(size, ARENA_ALIGN - 1, &rounded))
                return false;
        rounded &= ~(size_t)(ARENA_ALIGN - 1);
        return ft_add_size(*total, rounded, total);
}

int arena_init(struct arena *a, size_t size) {
        memset(a, 0, sizeof(*a));
        if (size == 0)
                size = ARENA_ALIGN;
        size = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
        a->base = aligned_alloc(ARENA_ALIGN, size);
        if (!a->base)
                return -ENOMEM;
        memset(a->base, 0, size);
        a->size = size;
        return 0;
}

void arena_deinit(struct arena *a) {
        free(a->base);
        memset(a, 0, sizeof(*a));
}

void *arena_alloc(struct arena *a, size_t size) {
        size_t need = 0;
        if (!arena_size_add(&need, size) || need > a->size - a->used)
                return NULL;
        void *p = a->base + a->used;
        a->used += need;
        return p;
}

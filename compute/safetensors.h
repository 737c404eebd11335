/* safetensors.h - read and write the safetensors format, the weight interchange
 * format with PyTorch: an 8-byte little-endian header length, a JSON header
 * ({"name": {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}}),
 * then the raw little-endian tensor bytes.
 *
 * This works on a neutral list of named tensors (name, dtype, shape, bytes); it
 * knows nothing about models. Binding a file to a model's parameters is in
 * model glue (compute/st_model.c). Not for: pickled .pt/.pth files.
 *
 * Validation follows the reference implementation (huggingface/safetensors):
 * header at most ST_HEADER_MAX bytes, starting with '{', valid UTF-8 JSON with
 * no duplicate keys; each tensor's byte length equals its shape product times
 * its dtype size (overflow-checked); data_offsets are in range, contiguous and
 * non-overlapping and cover the data section exactly (no trailing bytes). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

#define ST_HEADER_MAX ((size_t)100 * 1000 * 1000) /* as the reference implementation */
#define ST_MAX_DIMS 8
#define ST_NAME_MAX 1024

enum st_dtype {
        ST_DTYPE_F32,
        ST_DTYPE_F16,
        ST_DTYPE_BF16,
        ST_DTYPE_F64,
        ST_DTYPE_I64,
};

/* "F32", "F16", "BF16", "F64", "I64". */
const char *st_dtype_name(enum st_dtype dtype);
size_t st_dtype_size(enum st_dtype dtype);

struct st_tensor {
        const char *name;
        enum st_dtype dtype;
        size_t ndim; /* 0 for a scalar */
        int64_t shape[ST_MAX_DIMS];
        size_t numel;     /* product of shape (1 for a scalar) */
        size_t nbytes;    /* numel * dtype size */
        const void *data; /* raw little-endian bytes; reading: points into the mapping */
        uint64_t offset;  /* reading: absolute byte offset of the data in the file */
};

/* A parsed, validated file. Tensors are in file order (by offset); their data
 * points into the mapping and stays valid until st_file_free(). */
struct st_file {
        char *path; /* or the label given to st_file_parse() */
        const uint8_t *bytes;
        size_t size;
        size_t header_len;
        struct st_tensor *tensors;
        size_t n_tensors;
        char **meta_keys; /* __metadata__, in header order */
        char **meta_values;
        size_t n_meta;
        void *json;   /* the parsed header (owns the tensor names) */
        void *mapped; /* non-NULL when we own an mmap of path */
};

/* Map and validate `path` (at most max_bytes; 0 = no limit other than the
 * format's). On failure err names the file and where (tensor name, byte
 * offset). The data is never read here: only the header. */
int st_file_open(const char *path, size_t max_bytes, struct st_file **ret, struct ft_error *err);

/* The same on bytes already in memory (a fuzz corpus, an upload buffer); the
 * bytes must outlive the result. label names the data in messages. */
int st_file_parse(const void *bytes, size_t size, const char *label, struct st_file **ret, struct ft_error *err);

void st_file_free(struct st_file *f);

/* NULL when absent. */
const struct st_tensor *st_file_find(const struct st_file *f, const char *name);
const char *st_file_metadata(const struct st_file *f, const char *key);

/* Convert a tensor's data to float32 into dst (n must equal t->numel).
 * F32/F16/BF16/F64 convert; I64 converts exactly where |v| <= 2^24 and is
 * otherwise an error (it is a counter, not a weight). */
int st_tensor_read_f32(const struct st_file *f, const struct st_tensor *t, float *dst, size_t n,
                       struct ft_error *err);
/* I64 data into dst (n must equal t->numel). */
int st_tensor_read_i64(const struct st_file *f, const struct st_tensor *t, int64_t *dst, size_t n,
                       struct ft_error *err);

/* Write tensors (name, dtype F32 or I64 or F64/F16/BF16 raw bytes, ndim, shape,
 * data; numel/nbytes/offset are computed) and string metadata to `path`,
 * atomically (temporary file, fsync, rename, directory fsync). Names must be
 * unique and not "__metadata__". The header is space-padded to a multiple of 8
 * bytes as the reference writer does, so data is 8-byte aligned. */
struct st_meta {
        const char *key;
        const char *value;
};
int st_write(const char *path, const struct st_tensor *tensors, size_t n_tensors, const struct st_meta *meta,
             size_t n_meta, struct ft_error *err);

/* The same into a malloc'd buffer (*ret_bytes, *ret_size), for tests and uploads. */
int st_write_buffer(const struct st_tensor *tensors, size_t n_tensors, const struct st_meta *meta, size_t n_meta,
                    uint8_t **ret_bytes, size_t *ret_size, struct ft_error *err);

/* Half-precision conversions (exposed for tests). */
float st_f16_to_f32(uint16_t h);
float st_bf16_to_f32(uint16_t h);

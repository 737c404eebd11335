/* safetensors.h - read and write the safetensors format, the weight interchange
 * format with PyTorch: an 8-byte little-endian header length, a JSON header
 * ({"name": {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}}),
 * then the raw little-endian tensor bytes.
 *
 * The reader and writer work on a neutral list of named tensors (name, dtype,
 * shape, bytes) and know nothing about models (safetensors.c). The model glue
 * at the end of this header binds a file to a model's state_dict names
 * (safetensors_model.c). Not for: pickled .pt/.pth files.
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
        size_t numel; /* product of shape (1 for a scalar) */
        size_t nbytes; /* numel * dtype size */
        const void *data; /* raw little-endian bytes; reading: points into the mapping */
        uint64_t offset; /* reading: absolute byte offset of the data in the file */
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
        void *json; /* the parsed header (owns the tensor names) */
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
int st_tensor_read_f32(const struct st_file *f, const struct st_tensor *t, float *dst, size_t n, struct ft_error *err);
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

/* ---- model glue (safetensors_model.c) --------------------------------------- */

struct model;
struct data_transform;
struct json_t;

/* Metadata keys of a model saved by finetuned (values are JSON text). */
#define ST_META_FORMAT "format" /* "pt", as the safetensors torch helpers write */
#define ST_META_SPEC "finetuned.spec" /* the canonical model spec: model_new() rebuilds the model */
#define ST_META_PREPROCESS "finetuned.preprocess" /* data_transform_to_json(): standardization, normalize, input */
#define ST_META_CLASSES "finetuned.classes" /* ["cat", "dog", ...], index order */

/* Save every tensor of m under its state_dict name (F32, I64 for num_batches_tracked),
 * in state_dict order, plus the metadata above (t and class_names may be NULL).
 * The file loads in PyTorch with load_state_dict(strict=True). Atomic. */
int st_model_save(const char *path, struct model *m, const struct data_transform *t, char *const *class_names,
                  size_t n_classes, struct ft_error *err);
/* The same with more metadata after the keys above (e.g. "finetuned.task",
 * "finetuned.job"); extra may be NULL when n_extra is 0. */
int st_model_save_with(const char *path, struct model *m, const struct data_transform *t, char *const *class_names,
                       size_t n_classes, const struct st_meta *extra, size_t n_extra, struct ft_error *err);

struct st_load_options {
        /* Head replacement: when the last layer's tensors (the last parameter's
         * layer, e.g. "fc" or "4") differ only in their output size, keep every
         * other tensor and initialise the head as PyTorch does (model_init_prefix). */
        bool replace_head;
        /* Input adaptation (as timm's adapt_input_conv): when the first
         * convolution's weight differs only in input channels, a model with 1
         * channel gets the file's kernels summed over input channels; a model with
         * C channels gets them repeated (channel i from file channel i mod I) and
         * scaled by I / C. */
        bool adapt_input;
        /* Re-initialise the head whatever the file holds for it: its tensors
         * may be absent, of any shape, or extra (the classes were renamed or
         * re-counted). Implies replace_head. */
        bool reinit_head;
        uint64_t seed; /* for the re-initialised head */
};

struct st_load_report {
        size_t loaded; /* tensors copied (adapted ones included) */
        bool head_replaced; /* the head was re-initialised */
        char head[128]; /* its prefix, "fc" */
        bool input_adapted;
        char input_conv[128]; /* "conv1.weight" */
        size_t from_channels, to_channels;
        char *mismatch; /* on -EINVAL: every missing, unexpected and mis-shaped tensor, one per line (malloc'd) */
};
void st_load_report_deinit(struct st_load_report *r);

/* Load f into m. opt NULL (or all false) is strict: every tensor of m must be
 * in f with the same shape and dtype class (float / I64), and f has no other
 * tensors. On a mismatch m is untouched, err lists the first problems by name
 * and report->mismatch lists all of them. F16/BF16/F64 convert to F32. */
int st_model_load(struct model *m, const struct st_file *f, const struct st_load_options *opt,
                  struct st_load_report *report, struct ft_error *err);

/* Open a file written by st_model_save: build the model from its spec, load it
 * strictly, and return its preprocessing (t may be NULL; zeroed when absent) and
 * class names (ret_classes may be NULL; a NULL-free malloc'd array of malloc'd
 * strings, *ret_n_classes of them, free with st_classes_free). */
int st_model_open(const char *path, size_t max_bytes, struct model **ret_model, struct data_transform *ret_t,
                  char ***ret_classes, size_t *ret_n_classes, struct ft_error *err);
void st_classes_free(char **classes, size_t n);

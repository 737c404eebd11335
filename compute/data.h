/* data.h - datasets in: CSV and IDX(.gz) readers, the dataset summary,
 * preprocessing (split, standardization statistics, image transforms) and the
 * batch loader; and `data_inspect`, the validation the CLI and uploads share.
 *
 * A dataset is held in memory once, in its compact form (floats for a table,
 * bytes for images); preprocessing is applied per batch by the loader into one
 * preallocated NCHW buffer, so a split is only index arrays and an epoch
 * allocates nothing. Not for: models, training, files other than CSV and IDX.
 *
 * Every error names the file and where in it: "'f.csv':5:3: ..." (line and
 * field number, 1-based) for CSV, the byte offset for IDX. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* Limits a client cannot raise (uploads pass their own byte limit too). */
#define DATA_FIELD_MAX ((size_t)10 * 1024 * 1024) /* one CSV field */
#define DATA_COLUMNS_MAX 100000
#define DATA_CLASSES_MAX 100000
#define DATA_NAME_MAX 1024 /* a column or class name */
#define DATA_IMAGE_SIDE_MAX 4096 /* IDX rows / columns, resize targets */

enum data_kind {
        DATA_TABLE, /* rows x features, float */
        DATA_IMAGES, /* N x C x H x W, uint8 */
};

enum data_task {
        DATA_CLASSIFICATION, /* labels are class indices */
        DATA_REGRESSION, /* targets are floats */
};

struct dataset {
        enum data_kind kind;
        enum data_task task;
        char *source; /* the file name(s), for messages */
        size_t n; /* rows or images */

        /* DATA_TABLE */
        size_t n_features;
        char **feature_names;
        char *target_name;
        float *x; /* n * n_features, row-major */

        /* DATA_IMAGES */
        size_t channels, height, width;
        uint8_t *pixels; /* n * channels * height * width */

        int32_t *labels; /* DATA_CLASSIFICATION: n class indices */
        float *targets; /* DATA_REGRESSION: n values */
        size_t n_classes;
        char **class_names; /* sorted: numerically when every label is an integer, else bytewise */
        size_t *class_counts;

        /* what the reader found */
        size_t rows_read; /* data rows in the file, dropped ones included */
        size_t rows_dropped; /* dropna */
        size_t missing_values; /* missing cells seen */
        size_t *lines; /* CSV: the 1-based file line each row starts on (header = line 1), so a report can name
                        * the row a user fixes; NULL for IDX (an image's index is its position) */
};

void dataset_free(struct dataset *ds);

/* Drop the classes no row has (an IDX subset labelled 5-9 has ten label values but five classes; a CSV label
 * only dropped rows had): renumber the labels 0..k-1 in the same order, keep the names and counts of the
 * classes present. The one place classes are compacted: the CSV and IDX readers call it before they return,
 * so every dataset a reader hands out has n_classes classes that all have rows. A no-op for regression or an
 * already compact dataset; -ENOMEM leaves ds as it was. */
int dataset_classes_compact(struct dataset *ds);

/* ---- CSV ---------------------------------------------------------------- */

struct csv_options {
        char delimiter; /* 0: detect from the header line among , ; TAB | */
        const char *target; /* target column name; NULL: the last column */
        enum data_task task;
        bool dropna; /* drop rows with a missing value; otherwise a missing value is an error */
        size_t max_bytes; /* 0: no limit */
        bool no_target; /* every column is a feature: no labels or targets (data to predict on) */
        bool one_class_ok; /* classification: a single class is fine (data to evaluate on) */
};

/* Missing values: an empty cell, NA, N/A, NaN, nan, null, NULL, None (as pandas).
 * inf and values overflowing float are errors, never silently kept. Feature
 * columns must be numeric. Quoting is RFC 4180; a UTF-8 BOM and CRLF are
 * accepted; blank lines are skipped. */
int csv_read(const char *path, const struct csv_options *opt, struct dataset **ret, struct ft_error *err);
/* The same over a buffer (fuzzing, uploads); label names it in messages. */
int csv_parse(const char *bytes, size_t size, const char *label, const struct csv_options *opt, struct dataset **ret,
              struct ft_error *err);

/* ---- IDX ---------------------------------------------------------------- */

/* An IDX image file (magic 0x00000803, N x H x W, unsigned bytes; or 0x00000804,
 * N x C x H x W with C = 1 or 3, channel planes in order) and its label file
 * (0x00000801, N), each plain or gzip-compressed (detected by content).
 * Images load as N x C x H x W (C = 1 for 3-D files); classes are the distinct label values, in
 * numeric order, named by their value ("0", "1", ...; a file with the
 * labels 5-9 only has 5 classes "5".."9"). max_bytes limits each file, compressed and
 * uncompressed (0: no limit). */
int idx_read(const char *images_path, const char *labels_path, size_t max_bytes, struct dataset **ret,
             struct ft_error *err);
/* An IDX images file's labels file beside it, by the usual naming:
 * *-images-idx3-ubyte[.gz] -> *-labels-idx1-ubyte[.gz] (Fashion-MNIST's). The one
 * rule `finetuned train` and `finetuned inspect` share. -ENOENT: the name does
 * not follow it; -ENAMETOOLONG. */
int idx_labels_path(const char *images_path, char *out, size_t size);
/* One IDX file's content (possibly gzip) from memory: dims and a pointer into
 * *ret_data (malloc'd, the uncompressed payload after the header). */
int idx_parse(const void *bytes, size_t size, const char *label, size_t max_bytes, uint8_t *ret_ndim,
              uint32_t ret_dims[4], uint8_t **ret_data, size_t *ret_len, struct ft_error *err);

/* ---- summary and inspection ---------------------------------------------- */

/* A JSON object (jansson json_t *, caller decrefs): kind, rows, features or
 * image shape, task, classes with counts, missing values, rows dropped. */
int data_summary_json(const struct dataset *ds, void **ret_json, struct ft_error *err);

/* How to read a dataset file whatever its format. opt may be NULL: CSV target =
 * the last column, classification, missing values counted and their rows
 * dropped, the delimiter detected, no byte limit. */
struct data_open_options {
        const char *target; /* CSV target column; NULL: the last */
        enum data_task task; /* CSV: how to read the target (IDX is always classification) */
        bool strict_missing; /* CSV: a missing value is an error (default: counted and dropped) */
        char delimiter; /* CSV: 0 detects */
        size_t max_bytes; /* each file, compressed and not (0: no limit) */
        bool no_target; /* CSV: every column is a feature (csv_options.no_target) */
        bool one_class_ok; /* CSV: a single class is fine (csv_options.one_class_ok) */
};

/* Open a dataset by content: path alone is CSV; path and path2 are an IDX
 * image/label pair (plain or gzip, in either order). What the trainer calls. */
int data_open(const char *path, const char *path2, const struct data_open_options *opt, struct dataset **ret,
              struct ft_error *err);

/* What `finetuned inspect` and uploads call: data_open, or for a safetensors
 * file (detected by content) the weights' validation; returns a JSON summary
 * (jansson json_t *, caller decrefs): the dataset summary, or every tensor with
 * dtype and shape plus the metadata. */
int data_inspect(const char *path, const char *path2, const struct data_open_options *opt, void **ret_json,
                 struct ft_error *err);

/* ---- preprocessing --------------------------------------------------------- */

/* A seeded PRNG (splitmix64 seeding xoshiro256**), the same on every platform. */
struct data_rng {
        uint64_t s[4];
};
void data_rng_seed(struct data_rng *rng, uint64_t seed);
uint64_t data_rng_next(struct data_rng *rng);
uint64_t data_rng_below(struct data_rng *rng, uint64_t n); /* uniform in [0, n) */
void data_shuffle(size_t *idx, size_t n, struct data_rng *rng);

/* Split ds into train and validation index arrays (malloc'd). val_fraction in
 * [0, 1); stratified for classification (each class keeps its proportion,
 * every class with >= 2 rows gets at least one in each side when val > 0);
 * shuffled with seed when shuffle is set (else the last rows of each class go
 * to validation). */
struct data_split {
        size_t *train;
        size_t n_train;
        size_t *val;
        size_t n_val;
};
int data_split_make(const struct dataset *ds, double val_fraction, bool shuffle, uint64_t seed, struct data_split *ret,
                    struct ft_error *err);
void data_split_deinit(struct data_split *s);

/* The preprocessing a model was trained with; saved in the model's safetensors
 * metadata ("finetuned.preprocess") so predict reapplies it. */
#define DATA_NORM_MAX 4
struct data_transform {
        /* table: z-score with statistics from the training split */
        bool standardize;
        size_t n_features;
        float *mean; /* n_features, malloc'd (NULL when !standardize) */
        float *std; /* n_features; a constant column gets 1 */
        /* images: scale to [0,1], resize, channels, normalize; augmentation in training only */
        size_t channels, height, width; /* the model's input; 0: as the data */
        size_t n_norm; /* 0: none; 1: one value for every channel; else one per channel */
        float norm_mean[DATA_NORM_MAX];
        float norm_std[DATA_NORM_MAX];
        size_t crop_padding; /* random crop with this zero padding; 0: none */
        bool hflip; /* random horizontal flip with p = 0.5 */
};
void data_transform_deinit(struct data_transform *t);

/* Fill t->mean / t->std (population std, as sklearn's StandardScaler) from the
 * rows in idx (the training split only). */
int data_transform_fit(struct data_transform *t, const struct dataset *ds, const size_t *idx, size_t n,
                       struct ft_error *err);
/* Check t against ds (feature count, channels 1 or 3 or equal, sizes, std > 0). */
int data_transform_check(const struct data_transform *t, const struct dataset *ds, struct ft_error *err);

/* To and from the JSON string stored in model metadata. *ret is malloc'd. */
int data_transform_to_json(const struct data_transform *t, char **ret, struct ft_error *err);
int data_transform_from_json(const char *json, struct data_transform *ret, struct ft_error *err);

/* Bilinear resize of one plane, as PyTorch's interpolate(mode="bilinear",
 * align_corners=False, antialias=False). */
void data_resize_bilinear(const float *src, size_t sh, size_t sw, float *dst, size_t dh, size_t dw);

/* ---- the loader ---------------------------------------------------------- */

/* Batches of rows idx[0..n) of ds, transformed, as one contiguous NCHW float
 * buffer (a table is N x F, i.e. C=F, H=W=1) plus labels or targets. Batches
 * are views into buffers allocated once by data_loader_new; the loader borrows
 * ds, idx and t, which must outlive it. */
struct data_batch {
        size_t n; /* rows in this batch (the last may be short) */
        size_t c, h, w;
        float *x; /* n*c*h*w */
        const int32_t *labels; /* classification, else NULL */
        const float *targets; /* regression, else NULL */
};

struct data_loader_options {
        size_t batch_size;
        bool shuffle; /* reshuffle every epoch with seed + epoch */
        bool augment; /* apply t's crop/flip (training) */
        bool drop_last;
        uint64_t seed;
};

struct data_loader;
int data_loader_new(const struct dataset *ds, const size_t *idx, size_t n, const struct data_transform *t,
                    const struct data_loader_options *opt, struct data_loader **ret, struct ft_error *err);
void data_loader_free(struct data_loader *l);
/* Start an epoch (order and augmentation depend on seed and epoch only). */
void data_loader_start(struct data_loader *l, uint64_t epoch);
/* The next batch: 1 and *ret filled, or 0 at the end of the epoch. */
int data_loader_next(struct data_loader *l, struct data_batch *ret);
size_t data_loader_batches(const struct data_loader *l);

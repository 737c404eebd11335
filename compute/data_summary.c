/* data_summary.c - what a dataset or weights file holds: the dataset's
 * lifecycle (free, class compaction), the JSON summary, and data_inspect, the one validation entry point that
 * `finetuned inspect` and uploads share (format detection by content).
 * Not for: reading the formats themselves (data_csv.c, data_idx.c, safetensors.c). */
#include "compute/data.h"

#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "compute/safetensors.h"

void dataset_free(struct dataset *ds) {
        if (!ds)
                return;
        if (ds->feature_names)
                for (size_t i = 0; i < ds->n_features; i++)
                        free(ds->feature_names[i]);
        free(ds->feature_names);
        free(ds->target_name);
        if (ds->class_names)
                for (size_t i = 0; i < ds->n_classes; i++)
                        free(ds->class_names[i]);
        free(ds->class_names);
        free(ds->class_counts);
        free(ds->x);
        free(ds->pixels);
        free(ds->labels);
        free(ds->targets);
        free(ds->lines);
        free(ds->source);
        free(ds);
}

int dataset_classes_compact(struct dataset *ds) {
        if (ds->task != DATA_CLASSIFICATION || !ds->class_counts)
                return 0;
        size_t used = 0;
        for (size_t c = 0; c < ds->n_classes; c++)
                used += ds->class_counts[c] > 0;
        if (used == ds->n_classes)
                return 0;
        int32_t *map = malloc(ds->n_classes * sizeof(int32_t));
        if (!map)
                return -ENOMEM;
        size_t k = 0;
        for (size_t c = 0; c < ds->n_classes; c++) {
                if (ds->class_counts[c] == 0) {
                        map[c] = -1;
                        free(ds->class_names[c]);
                        continue;
                }
                map[c] = (int32_t)k;
                ds->class_names[k] = ds->class_names[c];
                ds->class_counts[k] = ds->class_counts[c];
                k++;
        }
        for (size_t i = 0; i < ds->n; i++)
                ds->labels[i] = map[ds->labels[i]];
        ds->n_classes = k;
        free(map);
        return 0;
}

int data_summary_json(const struct dataset *ds, void **ret_json, struct ft_error *err) {
        json_t *o = json_object();
        if (!o)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        json_object_set_new(o, "format", json_string(ds->kind == DATA_TABLE ? "csv" : "idx"));
        json_object_set_new(o, "rows", json_integer((json_int_t)ds->n));
        if (ds->kind == DATA_TABLE) {
                json_t *f = json_array();
                for (size_t i = 0; i < ds->n_features; i++)
                        json_array_append_new(f, json_string(ds->feature_names[i]));
                json_object_set_new(o, "features", json_integer((json_int_t)ds->n_features));
                json_object_set_new(o, "feature_names", f);
                json_object_set_new(o, "target", json_string(ds->target_name));
        } else {
                json_object_set_new(o, "image_shape",
                                    json_pack("[I, I, I]", (json_int_t)ds->channels, (json_int_t)ds->height,
                                              (json_int_t)ds->width));
        }
        json_object_set_new(o, "task", json_string(ds->task == DATA_CLASSIFICATION ? "classification" : "regression"));
        if (ds->task == DATA_CLASSIFICATION) {
                json_t *c = json_array();
                for (size_t i = 0; i < ds->n_classes; i++)
                        json_array_append_new(c, json_pack("{s:s, s:I}", "name", ds->class_names[i], "count",
                                                           (json_int_t)ds->class_counts[i]));
                json_object_set_new(o, "num_classes", json_integer((json_int_t)ds->n_classes));
                json_object_set_new(o, "classes", c);
        } else {
                double lo = ds->targets[0], hi = ds->targets[0], sum = 0;
                for (size_t i = 0; i < ds->n; i++) {
                        lo = fmin(lo, ds->targets[i]);
                        hi = fmax(hi, ds->targets[i]);
                        sum += ds->targets[i];
                }
                json_object_set_new(o, "target_stats",
                                    json_pack("{s:f, s:f, s:f}", "min", lo, "max", hi, "mean", sum / (double)ds->n));
        }
        json_object_set_new(o, "rows_read", json_integer((json_int_t)ds->rows_read));
        json_object_set_new(o, "missing_values", json_integer((json_int_t)ds->missing_values));
        json_object_set_new(o, "rows_dropped", json_integer((json_int_t)ds->rows_dropped));
        *ret_json = o;
        return 0;
}

enum fmt { FMT_CSV, FMT_IDX, FMT_SAFETENSORS };

static int sniff(const char *path, enum fmt *ret, uint8_t *ret_ndim, struct ft_error *err) {
        uint8_t b[16] = {0};
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return ft_error_set(err, -errno, NULL, "cannot open '%s': %s", path, strerror(errno));
        ssize_t n = read(fd, b, sizeof(b));
        close(fd);
        if (n < 0)
                return ft_error_set(err, -EIO, NULL, "cannot read '%s'", path);
        *ret_ndim = 0;
        if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
                *ret = FMT_IDX; /* gzip: IDX is the only compressed format we take */
        } else if (n >= 4 && b[0] == 0 && b[1] == 0 && b[2] == 0x08) {
                *ret = FMT_IDX;
                *ret_ndim = b[3];
        } else if (n >= 9 && b[8] == '{') {
                *ret = FMT_SAFETENSORS;
        } else {
                *ret = FMT_CSV;
        }
        return 0;
}

static json_t *safetensors_json(const struct st_file *f) {
        json_t *o = json_object(), *ts = json_array(), *m = json_object();
        size_t params = 0;
        for (size_t i = 0; i < f->n_tensors; i++) {
                const struct st_tensor *t = &f->tensors[i];
                json_t *shape = json_array();
                for (size_t d = 0; d < t->ndim; d++)
                        json_array_append_new(shape, json_integer(t->shape[d]));
                json_array_append_new(ts, json_pack("{s:s, s:s, s:o}", "name", t->name, "dtype",
                                                    st_dtype_name(t->dtype), "shape", shape));
                params += t->numel;
        }
        for (size_t i = 0; i < f->n_meta; i++)
                json_object_set_new(m, f->meta_keys[i], json_string(f->meta_values[i]));
        json_object_set_new(o, "format", json_string("safetensors"));
        json_object_set_new(o, "bytes", json_integer((json_int_t)f->size));
        json_object_set_new(o, "num_tensors", json_integer((json_int_t)f->n_tensors));
        json_object_set_new(o, "num_elements", json_integer((json_int_t)params));
        json_object_set_new(o, "tensors", ts);
        json_object_set_new(o, "metadata", m);
        return o;
}

int data_open(const char *path, const char *path2, const struct data_open_options *opt, struct dataset **ret,
              struct ft_error *err) {
        struct data_open_options defaults = {0};
        if (!opt)
                opt = &defaults;
        size_t max_bytes = opt->max_bytes;
        enum fmt f1, f2;
        uint8_t n1, n2;
        int r = sniff(path, &f1, &n1, err);
        if (r < 0)
                return r;
        if (path2) {
                if ((r = sniff(path2, &f2, &n2, err)) < 0)
                        return r;
                if (f1 != FMT_IDX || f2 != FMT_IDX)
                        return ft_error_set(err, -EINVAL, NULL,
                                            "two files make an IDX image/label pair; '%s' is not IDX",
                                            f1 != FMT_IDX ? path : path2);
                /* images have 3 or 4 dimensions, labels 1; gzip'd files are tried in the given order, then swapped */
                bool swap = n1 == 1 || n2 == 3 || n2 == 4;
                r = swap ? idx_read(path2, path, max_bytes, ret, err) : idx_read(path, path2, max_bytes, ret, err);
                if (r < 0 && !swap && (n1 == 0 || n2 == 0)) {
                        struct ft_error e2;
                        if (idx_read(path2, path, max_bytes, ret, &e2) == 0)
                                r = 0;
                }
                return r;
        }
        if (f1 == FMT_SAFETENSORS)
                return ft_error_set(err, -EINVAL, NULL, "'%s' is a safetensors weights file, not a dataset", path);
        if (f1 == FMT_IDX) {
                /* an images file alone: its labels file beside it, by the naming `finetuned train` uses */
                char labels[PATH_MAX];
                if (n1 != 1 && idx_labels_path(path, labels, sizeof(labels)) == 0)
                        return data_open(path, labels, opt, ret, err);
                return ft_error_set(err, -EINVAL, NULL,
                                    "'%s' is an IDX file: give it with its pair (images and labels), or name it "
                                    "'*-images-idx3-ubyte' with '*-labels-idx1-ubyte' beside it",
                                    path);
        }
        struct csv_options o = {.target = opt->target,
                                .task = opt->task,
                                .dropna = !opt->strict_missing,
                                .delimiter = opt->delimiter,
                                .max_bytes = max_bytes,
                                .no_target = opt->no_target,
                                .one_class_ok = opt->one_class_ok};
        return csv_read(path, &o, ret, err);
}

int data_inspect(const char *path, const char *path2, const struct data_open_options *opt, void **ret_json,
                 struct ft_error *err) {
        enum fmt f1;
        uint8_t n1;
        int r;
        if (!path2) {
                if ((r = sniff(path, &f1, &n1, err)) < 0)
                        return r;
                if (f1 == FMT_SAFETENSORS) {
                        struct st_file *st;
                        if ((r = st_file_open(path, opt ? opt->max_bytes : 0, &st, err)) < 0)
                                return r;
                        *ret_json = safetensors_json(st);
                        st_file_free(st);
                        return 0;
                }
        }
        struct dataset *ds = NULL;
        if ((r = data_open(path, path2, opt, &ds, err)) < 0)
                return r;
        void *j;
        r = data_summary_json(ds, &j, err);
        dataset_free(ds);
        if (r < 0)
                return r;
        *ret_json = j;
        return 0;
}

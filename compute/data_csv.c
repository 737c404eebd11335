/* data_csv.c - the CSV reader: RFC 4180 tokenizer (quotes, BOM, CRLF,
 * delimiter detection) and the table builder (numeric features, a target
 * column, class labels, missing values). Not for: preprocessing (data_preprocess.c)
 * or any format other than delimited text. */
#include "compute/data.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/fileio.h"

/* ---- tokenizer ------------------------------------------------------------ */

struct tok {
        const char *p, *end;
        const char *label;
        char delim;
        size_t line; /* line of the next byte, 1-based */
        char *buf; /* the current field, unescaped, NUL-terminated */
        size_t len, cap;
};

static int buf_push(struct tok *t, char c, struct ft_error *err, size_t line, size_t col) {
        if (t->len > DATA_FIELD_MAX) /* the NUL makes len + 1 */
                return ft_error_set(err, -EFBIG, NULL, "'%s':%zu:%zu: field longer than %zu bytes", t->label, line, col,
                                    DATA_FIELD_MAX);
        if (t->len + 1 >= t->cap) {
                size_t cap = t->cap ? FT_MIN(t->cap * 2, DATA_FIELD_MAX + 2) : 256;
                char *b = realloc(t->buf, cap);
                if (!b)
                        return ft_error_set(err, -ENOMEM, NULL, "out of memory");
                t->buf = b;
                t->cap = cap;
        }
        t->buf[t->len++] = c;
        return 0;
}

/* Skip blank lines; 1 when a record starts, 0 at the end of the data. */
static int tok_record_start(struct tok *t) {
        for (;;) {
                if (t->p == t->end)
                        return 0;
                if (*t->p == '\n') {
                        t->p++;
                        t->line++;
                } else if (*t->p == '\r') {
                        t->p++;
                        if (t->p < t->end && *t->p == '\n')
                                t->p++;
                        t->line++;
                } else {
                        return 1;
                }
        }
}

/* Read one field into t->buf; *ret_eol is set when it ends its record,
 * *ret_quoted when it was quoted. col is its 1-based field number. */
static int tok_field(struct tok *t, size_t col, bool *ret_eol, bool *ret_quoted, struct ft_error *err) {
        size_t line0 = t->line;
        int r;
        t->len = 0;
        *ret_quoted = false;
        if (t->p < t->end && *t->p == '"') {
                *ret_quoted = true;
                t->p++;
                for (;;) {
                        if (t->p == t->end)
                                return ft_error_set(err, -EINVAL, NULL,
                                                    "'%s':%zu:%zu: quoted field is not closed before the end of the "
                                                    "file",
                                                    t->label, line0, col);
                        char c = *t->p++;
                        if (c == '"') {
                                if (t->p < t->end && *t->p == '"') {
                                        t->p++;
                                } else {
                                        break;
                                }
                        } else if (c == '\n') {
                                t->line++;
                        } else if (c == '\r' && !(t->p < t->end && *t->p == '\n')) {
                                t->line++;
                        }
                        if ((r = buf_push(t, c, err, line0, col)) < 0)
                                return r;
                }
                if (t->p < t->end && *t->p != t->delim && *t->p != '\n' && *t->p != '\r')
                        return ft_error_set(err, -EINVAL, NULL,
                                            "'%s':%zu:%zu: unexpected '%c' after a closing quote (a quote inside a "
                                            "quoted field is written \"\")",
                                            t->label, t->line, col, *t->p);
        } else {
                while (t->p < t->end && *t->p != t->delim && *t->p != '\n' && *t->p != '\r')
                        if ((r = buf_push(t, *t->p++, err, line0, col)) < 0)
                                return r;
        }
        if ((r = buf_push(t, '\0', err, line0, col)) < 0)
                return r;
        t->len--;
        if (t->p == t->end) {
                *ret_eol = true;
        } else if (*t->p == t->delim) {
                t->p++;
                *ret_eol = false;
        } else {
                if (*t->p == '\r' && t->p + 1 < t->end && t->p[1] == '\n')
                        t->p++;
                t->p++;
                t->line++;
                *ret_eol = true;
        }
        return 0;
}

static char detect_delimiter(const char *p, const char *end) {
        static const char cand[] = {',', ';', '\t', '|'};
        size_t count[4] = {0};
        bool q = false;
        for (; p < end; p++) {
                if (*p == '"')
                        q = !q;
                else if (!q && (*p == '\n' || *p == '\r'))
                        break;
                else if (!q)
                        for (size_t i = 0; i < 4; i++)
                                count[i] += *p == cand[i];
        }
        size_t best = 0;
        for (size_t i = 1; i < 4; i++)
                if (count[i] > count[best])
                        best = i;
        return cand[best];
}

/* ---- cells ----------------------------------------------------------------- */

static bool is_missing(const char *s) {
        static const char *const na[] = {"",     "NA",   "N/A", "NaN",  "nan",  "NAN", "null",
                                         "NULL", "None", "n/a", "-NaN", "-nan", "<NA>"};
        while (*s == ' ' || *s == '\t')
                s++;
        size_t n = strlen(s);
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
                n--;
        for (size_t i = 0; i < ARRAY_SIZE(na); i++)
                if (strlen(na[i]) == n && strncmp(s, na[i], n) == 0)
                        return true;
        return false;
}

enum num { NUM_OK, NUM_BAD, NUM_INF, NUM_RANGE };

static enum num parse_float(const char *s, float *ret) {
        while (*s == ' ' || *s == '\t')
                s++;
        const char *q = s;
        if (*q == '+' || *q == '-')
                q++;
        if (strncasecmp(q, "inf", 3) == 0)
                return NUM_INF;
        if (!((*q >= '0' && *q <= '9') || *q == '.'))
                return NUM_BAD;
        for (const char *c = q; *c; c++)
                if (!((*c >= '0' && *c <= '9') || *c == '.' || *c == 'e' || *c == 'E' || *c == '+' || *c == '-' ||
                      *c == ' ' || *c == '\t'))
                        return NUM_BAD;
        char *e;
        errno = 0;
        double d = strtod(s, &e);
        while (*e == ' ' || *e == '\t')
                e++;
        if (*e || e == s)
                return NUM_BAD;
        if (!isfinite(d) || fabs(d) > FLT_MAX)
                return NUM_RANGE;
        *ret = (float)d;
        return NUM_OK;
}

/* ---- labels: interned strings ---------------------------------------------- */

struct labels {
        char **names;
        size_t n, cap;
        uint32_t *slots; /* open addressing: index + 1, 0 empty */
        size_t nslots;
};

static uint64_t hash_str(const char *s) {
        uint64_t h = 1469598103934665603ull;
        for (; *s; s++)
                h = (h ^ (uint8_t)*s) * 1099511628211ull;
        return h;
}

static int labels_intern(struct labels *L, const char *s, int32_t *ret) {
        if (L->n * 2 >= L->nslots) {
                size_t ns = L->nslots ? L->nslots * 2 : 64;
                uint32_t *sl = calloc(ns, sizeof(*sl));
                if (!sl)
                        return -ENOMEM;
                for (size_t i = 0; i < L->n; i++) {
                        size_t h = hash_str(L->names[i]) & (ns - 1);
                        while (sl[h])
                                h = (h + 1) & (ns - 1);
                        sl[h] = (uint32_t)i + 1;
                }
                free(L->slots);
                L->slots = sl;
                L->nslots = ns;
        }
        size_t h = hash_str(s) & (L->nslots - 1);
        while (L->slots[h]) {
                if (strcmp(L->names[L->slots[h] - 1], s) == 0) {
                        *ret = (int32_t)(L->slots[h] - 1);
                        return 0;
                }
                h = (h + 1) & (L->nslots - 1);
        }
        if (L->n >= DATA_CLASSES_MAX)
                return -E2BIG;
        if (L->n == L->cap) {
                size_t cap = L->cap ? L->cap * 2 : 16;
                char **nn = realloc(L->names, cap * sizeof(char *));
                if (!nn)
                        return -ENOMEM;
                L->names = nn;
                L->cap = cap;
        }
        if (!(L->names[L->n] = strdup(s)))
                return -ENOMEM;
        L->slots[h] = (uint32_t)L->n + 1;
        *ret = (int32_t)L->n++;
        return 0;
}

static bool parse_ll(const char *s, long long *ret) {
        char *e;
        errno = 0;
        long long v = strtoll(s, &e, 10);
        if (e == s || *e || errno)
                return false;
        *ret = v;
        return true;
}

static int cmp_label(const void *a, const void *b, void *numeric) {
        const char *x = *(char *const *)a, *y = *(char *const *)b;
        if (*(bool *)numeric) {
                long long u, v;
                parse_ll(x, &u);
                parse_ll(y, &v);
                return (u > v) - (u < v);
        }
        return strcmp(x, y);
}

/* Sort the class names and remap the provisional (first-seen) indices. */
static int labels_finish(struct labels *L, struct dataset *ds) {
        bool numeric = true;
        for (size_t i = 0; i < L->n && numeric; i++) {
                long long v;
                numeric = parse_ll(L->names[i], &v);
        }
        char **sorted = malloc(L->n * sizeof(char *));
        int32_t *map = malloc(L->n * sizeof(int32_t));
        ds->class_counts = calloc(L->n, sizeof(size_t));
        if (!sorted || !map || !ds->class_counts) {
                free(sorted);
                free(map);
                return -ENOMEM;
        }
        memcpy(sorted, L->names, L->n * sizeof(char *));
        qsort_r(sorted, L->n, sizeof(char *), cmp_label, &numeric);
        for (size_t i = 0; i < L->n; i++)
                for (size_t j = 0; j < L->n; j++)
                        if (sorted[j] == L->names[i]) {
                                map[i] = (int32_t)j;
                                break;
                        }
        for (size_t i = 0; i < ds->n; i++) {
                ds->labels[i] = map[ds->labels[i]];
                ds->class_counts[ds->labels[i]]++;
        }
        free(map);
        ds->class_names = sorted;
        ds->n_classes = L->n;
        free(L->names);
        L->names = NULL;
        L->n = 0;
        return 0;
}

/* ---- the table builder ----------------------------------------------------- */

int csv_parse(const char *bytes, size_t size, const char *label, const struct csv_options *opt, struct dataset **ret,
              struct ft_error *err) {
        struct csv_options defaults = {0};
        if (!opt)
                opt = &defaults;
        struct tok t = {.p = bytes, .end = bytes + size, .label = label, .line = 1};
        struct labels L = {0};
        struct dataset *ds = calloc(1, sizeof(*ds));
        size_t ncols = 0, cap_rows = 0, target = 0;
        char **names = NULL;
        int r = -ENOMEM;
        if (!ds || !(ds->source = strdup(label)))
                goto oom;
        ds->kind = DATA_TABLE;
        ds->task = opt->task;
        if (opt->max_bytes && size > opt->max_bytes) {
                r = ft_error_set(err, -EFBIG, NULL, "'%s' is %zu bytes, over the limit of %zu", label, size,
                                 opt->max_bytes);
                goto fail;
        }
        if (size >= 3 && memcmp(bytes, "\xEF\xBB\xBF", 3) == 0)
                t.p += 3;
        t.delim = opt->delimiter ? opt->delimiter : detect_delimiter(t.p, t.end);
        if (t.delim == '"' || t.delim == '\n' || t.delim == '\r') {
                r = ft_error_set(err, -EINVAL, "delimiter", "delimiter cannot be a quote or a line break");
                goto fail;
        }
        if (!tok_record_start(&t)) {
                r = ft_error_set(err, -ENODATA, NULL, "'%s' is empty", label);
                goto fail;
        }

        /* header */
        size_t header_line = t.line;
        for (bool eol = false, q; !eol;) {
                if ((r = tok_field(&t, ncols + 1, &eol, &q, err)) < 0)
                        goto fail;
                if (ncols >= DATA_COLUMNS_MAX) {
                        r = ft_error_set(err, -E2BIG, NULL, "'%s':%zu: more than %d columns", label, header_line,
                                         DATA_COLUMNS_MAX);
                        goto fail;
                }
                if (t.len > DATA_NAME_MAX) {
                        r = ft_error_set(err, -EINVAL, NULL, "'%s':%zu:%zu: column name longer than %d bytes", label,
                                         header_line, ncols + 1, DATA_NAME_MAX);
                        goto fail;
                }
                char **nn = realloc(names, (ncols + 1) * sizeof(char *));
                if (!nn)
                        goto oom;
                names = nn;
                if (!(names[ncols] = strdup(t.buf)))
                        goto oom;
                for (size_t i = 0; i < ncols; i++)
                        if (strcmp(names[i], names[ncols]) == 0) {
                                r = ft_error_set(err, -EINVAL, NULL, "'%s':%zu:%zu: column '%s' appears twice", label,
                                                 header_line, ncols + 1, names[ncols]);
                                ncols++;
                                goto fail;
                        }
                ncols++;
        }
        if (opt->target) {
                for (target = 0; target < ncols; target++)
                        if (strcmp(names[target], opt->target) == 0)
                                break;
                if (target == ncols) {
                        char list[256] = "";
                        size_t o = 0;
                        for (size_t i = 0; i < ncols && o < sizeof(list) - 8; i++)
                                o += (size_t)snprintf(list + o, sizeof(list) - o, "%s'%s'", i ? ", " : "", names[i]);
                        if (o >= sizeof(list) - 8)
                                snprintf(list + sizeof(list) - 8, 8, ", ...");
                        r = ft_error_set(err, -ENOENT, "target",
                                         "'%s': target column '%s' not found (the header has %s)", label, opt->target,
                                         list);
                        goto fail;
                }
        } else if (opt->no_target) {
                target = ncols; /* no column is the target */
        } else {
                target = ncols - 1;
        }
        if (ncols < 2 && !opt->no_target) {
                r = ft_error_set(err, -EINVAL, NULL,
                                 "'%s':%zu: one column '%s': a feature column and a target column are needed "
                                 "(delimiter '%c')",
                                 label, header_line, names[0], t.delim);
                goto fail;
        }
        ds->n_features = target < ncols ? ncols - 1 : ncols;
        ds->feature_names = calloc(ds->n_features, sizeof(char *));
        if (!ds->feature_names)
                goto oom;
        for (size_t i = 0, k = 0; i < ncols; i++) {
                if (i == target)
                        ds->target_name = names[i];
                else
                        ds->feature_names[k++] = names[i];
                names[i] = NULL;
        }

        /* rows */
        while (tok_record_start(&t)) {
                size_t line = t.line, col = 0;
                bool drop = false, eol = false, q;
                if (ds->n == cap_rows) {
                        size_t nc = cap_rows ? cap_rows * 2 : 256, nx;
                        if (!ft_mul_size(nc, ds->n_features * sizeof(float), &nx))
                                goto oom;
                        float *x = realloc(ds->x, nx);
                        if (!x)
                                goto oom;
                        ds->x = x;
                        if (target == ncols) {
                                /* no target: features only */
                        } else if (ds->task == DATA_CLASSIFICATION) {
                                int32_t *l = realloc(ds->labels, nc * sizeof(int32_t));
                                if (!l)
                                        goto oom;
                                ds->labels = l;
                        } else {
                                float *tg = realloc(ds->targets, nc * sizeof(float));
                                if (!tg)
                                        goto oom;
                                ds->targets = tg;
                        }
                        size_t *ln = realloc(ds->lines, nc * sizeof(size_t));
                        if (!ln)
                                goto oom;
                        ds->lines = ln;
                        cap_rows = nc;
                }
                float *row = ds->x + ds->n * ds->n_features;
                size_t k = 0;
                while (!eol) {
                        if ((r = tok_field(&t, col + 1, &eol, &q, err)) < 0)
                                goto fail;
                        if (col >= ncols) {
                                r = ft_error_set(err, -EINVAL, NULL,
                                                 "'%s':%zu:%zu: row has more fields than the header's %zu", label, line,
                                                 col + 1, ncols);
                                goto fail;
                        }
                        const char *cname = col == target ? ds->target_name : ds->feature_names[k];
                        if (is_missing(t.buf)) {
                                ds->missing_values++;
                                if (!opt->dropna) {
                                        r = ft_error_set(err, -EINVAL, NULL,
                                                         "'%s':%zu:%zu: missing value in column '%s' (dropna drops "
                                                         "such rows)",
                                                         label, line, col + 1, cname);
                                        goto fail;
                                }
                                drop = true;
                                if (col != target)
                                        k++;
                                col++;
                                continue;
                        }
                        if (col == target && ds->task == DATA_CLASSIFICATION) {
                                if (t.len > DATA_NAME_MAX) {
                                        r = ft_error_set(err, -EINVAL, NULL,
                                                         "'%s':%zu:%zu: class label longer than %d bytes", label, line,
                                                         col + 1, DATA_NAME_MAX);
                                        goto fail;
                                }
                                r = labels_intern(&L, t.buf, &ds->labels[ds->n]);
                                if (r == -E2BIG) {
                                        r = ft_error_set(err, r, NULL, "'%s':%zu:%zu: more than %d classes in '%s'",
                                                         label, line, col + 1, DATA_CLASSES_MAX, cname);
                                        goto fail;
                                }
                                if (r < 0)
                                        goto oom;
                        } else {
                                float v = 0;
                                enum num nr = parse_float(t.buf, &v);
                                if (nr != NUM_OK) {
                                        r = ft_error_set(err, -EINVAL, NULL,
                                                         "'%s':%zu:%zu: column '%s': \"%.40s%s\" %s", label, line,
                                                         col + 1, cname, t.buf, t.len > 40 ? "..." : "",
                                                         nr == NUM_INF     ? "is not a finite number"
                                                         : nr == NUM_RANGE ? "is out of the float range"
                                                                           : "is not a number");
                                        goto fail;
                                }
                                if (col == target)
                                        ds->targets[ds->n] = v;
                                else
                                        row[k++] = v;
                        }
                        col++;
                }
                if (col != ncols) {
                        r = ft_error_set(err, -EINVAL, NULL, "'%s':%zu: row has %zu field%s, the header has %zu", label,
                                         line, col, col == 1 ? "" : "s", ncols);
                        goto fail;
                }
                ds->rows_read++;
                if (drop) {
                        ds->rows_dropped++;
                } else {
                        ds->lines[ds->n] = line;
                        ds->n++;
                }
        }
        if (ds->rows_read == 0) {
                r = ft_error_set(err, -ENODATA, NULL, "'%s' has a header but no data rows", label);
                goto fail;
        }
        if (ds->n == 0) {
                r = ft_error_set(err, -ENODATA, NULL, "'%s': every one of the %zu rows has a missing value", label,
                                 ds->rows_read);
                goto fail;
        }
        if (ds->task == DATA_CLASSIFICATION && target < ncols) {
                /* a label interned only by a dropped row has no rows: rebuild from kept rows */
                if ((r = labels_finish(&L, ds)) < 0)
                        goto oom;
                if (dataset_classes_compact(ds) < 0) /* drop classes only dropped rows had */
                        goto oom;
                if (ds->n_classes < 2 && !opt->one_class_ok) {
                        r = ft_error_set(err, -EINVAL, "target",
                                         "'%s': target column '%s' has a single class '%s': classification needs two "
                                         "or more",
                                         label, ds->target_name, ds->class_names[0]);
                        goto fail;
                }
        }
        for (size_t i = 0; i < ncols; i++)
                free(names[i]);
        free(names);
        free(L.slots);
        free(t.buf);
        *ret = ds;
        return 0;
oom:
        r = ft_error_set(err, -ENOMEM, NULL, "out of memory reading '%s'", label);
fail:
        if (names)
                for (size_t i = 0; i < ncols; i++)
                        free(names[i]);
        free(names);
        for (size_t i = 0; i < L.n; i++)
                free(L.names[i]);
        free(L.names);
        free(L.slots);
        free(t.buf);
        dataset_free(ds);
        return r;
}

int csv_read(const char *path, const struct csv_options *opt, struct dataset **ret, struct ft_error *err) {
        void *map = NULL;
        size_t size = 0;
        int r = fileio_map(path, opt ? opt->max_bytes : 0, &map, &size, err);
        if (r < 0)
                return r;
        r = csv_parse(map ? map : "", size, path, opt, ret, err);
        fileio_unmap(map, size);
        return r;
}

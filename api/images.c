/* images.c - GET /v1/datasets/{id}/images?indices=...: an IDX dataset's images by index, as base64 bytes (C x H x
 * W, channel planes in order, as the file holds them) with their labels, for the dashboard's per-example grid.
 *
 * Not for: uploads and the dataset's schema (datasets.c), preprocessing (the images are the file's bytes).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "compute/data.h"
#include "store/store.h"

#define IMAGES_MAX 100 /* indices per request */

static char *base64(const uint8_t *p, size_t n) {
        static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i += 3) {
                uint32_t v =
                        (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
                *o++ = tab[v >> 18 & 63];
                *o++ = tab[v >> 12 & 63];
                *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
                *o++ = i + 2 < n ? tab[v & 63] : '=';
        }
        *o = '\0';
        return out;
}

/* "3,17,42": 1 to IMAGES_MAX indices; -EINVAL otherwise */
static int parse_indices(const char *s, size_t *idx, size_t *ret_n) {
        size_t n = 0;
        if (!s || !*s)
                return -EINVAL;
        for (const char *p = s;;) {
                char *end;
                if (*p < '0' || *p > '9' || n == IMAGES_MAX)
                        return -EINVAL;
                errno = 0;
                unsigned long long v = strtoull(p, &end, 10);
                if (errno || end - p > 12)
                        return -EINVAL;
                idx[n++] = (size_t)v;
                if (*end == '\0')
                        break;
                if (*end != ',')
                        return -EINVAL;
                p = end + 1;
        }
        *ret_n = n;
        return 0;
}

enum MHD_Result api_datasets_images(struct api_request *req) {
        enum MHD_Result ret;
        const char *id;
        struct store *st;
        size_t idx[IMAGES_MAX], n;
        if (parse_indices(api_query_get(req, "indices"), idx, &n) < 0)
                return api_reply_error(req, API_ERR_INVALID_REQUEST, "indices",
                                       "'indices' must be 1 to %d image indices separated by commas", IMAGES_MAX);
        if (!api_path_store(req, "ds", "dataset", &id, &st, &ret))
                return ret;
        struct store_dataset *d = NULL;
        struct ft_error err = {0};
        int r = store_dataset_get(st, id, &d, &err);
        if (r < 0)
                return api_reply_ft_error(req, r, &err);
        if (d->facts.kind != STORE_DATASET_IDX) {
                ret = api_reply_error(req, API_ERR_INVALID_REQUEST, "id",
                                      "dataset '%s' is a CSV file: only IDX datasets have images", d->id);
                store_dataset_free(d);
                return ret;
        }
        for (size_t i = 0; i < n; i++)
                if ((int64_t)idx[i] >= d->facts.rows) {
                        ret = api_reply_error(req, API_ERR_INVALID_REQUEST, "indices",
                                              "'indices': %zu is past the last image (%lld images)", idx[i],
                                              (long long)d->facts.rows);
                        store_dataset_free(d);
                        return ret;
                }
        struct dataset *ds = NULL;
        r = idx_read(d->path, d->labels_path, 0, &ds, &err);
        char did[STORE_ID_MAX];
        snprintf(did, sizeof(did), "%s", d->id);
        store_dataset_free(d);
        if (r < 0)
                return api_reply_ft_error(req, r == -EINVAL ? -EIO : r, &err);
        size_t bytes = ds->channels * ds->height * ds->width;
        json_t *images = json_array();
        for (size_t i = 0; images && i < n && idx[i] < ds->n; i++) {
                char *b64 = base64(ds->pixels + idx[i] * bytes, bytes);
                json_array_append_new(images, json_pack("{s:I,s:s,s:s?}", "index", (json_int_t)idx[i], "label",
                                                        ds->class_names[ds->labels[idx[i]]], "pixels", b64));
                free(b64);
        }
        json_t *body = json_pack("{s:s,s:s,s:I,s:I,s:I,s:o}", "object", "images", "dataset", did, "channels",
                                 (json_int_t)ds->channels, "height", (json_int_t)ds->height, "width",
                                 (json_int_t)ds->width, "images", images ? images : json_array());
        dataset_free(ds);
        return api_reply_json(req, MHD_HTTP_OK, body);
}

const struct api_field api_images_shape[] = {
        {"object", API_T_STRING, .choices = (const char *const[]){"images", NULL}},
        {"dataset", API_T_STRING},
        {"channels", API_T_INT},
        {"height", API_T_INT},
        {"width", API_T_INT},
        {"images", API_T_ARRAY_OBJECT,
         .description = "{index, label, pixels}: pixels is base64 of channels x height x width bytes, channel planes "
                        "in order, rows top to bottom"},
        {NULL},
};

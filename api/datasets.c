/* datasets.c - /v1/datasets: uploads (streamed into the blob store by
 * server.c, validated here with the data readers), list, get, delete.
 *
 * An IDX dataset is a pair of files. It is uploaded in one multipart request
 * with the parts 'images' and 'labels' (curl -F images=@x -F labels=@y): both
 * are validated together (same count, labels in range) and stored as one
 * dataset with two files (the images blob and the labels blob, "labels" in the
 * answer), created and deleted in one transaction. The readers' typed facts
 * (kind, rows, features, classes, image shape, target) are stored beside the
 * summary JSON the answer shows as "schema".
 *
 * Not for: the blob store (store/), parsing files (compute/data.h). */
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "common/log.h"
#include "compute/data.h"
#include "store/store.h"

/* What api_dataset_json() answers, for the OpenAPI document. */
static const struct api_field dataset_labels_shape[] = {
        {"format", API_T_STRING, .description = "idx or idx.gz"},
        {"sha256", API_T_STRING},
        {"bytes", API_T_INT},
        {NULL},
};

const struct api_field api_dataset_shape[] = {
        {"id", API_T_STRING, .id_prefix = "ds"},
        {"object", API_T_STRING, .choices = (const char *const[]){"dataset", NULL}},
        {"name", API_T_STRING},
        {"format", API_T_STRING, .description = "csv, idx or idx.gz, from the file's first bytes"},
        {"sha256", API_T_STRING},
        {"bytes", API_T_INT},
        {"labels", API_T_OBJECT, .fields = dataset_labels_shape, .nullable = true,
         .description = "an IDX dataset's labels file (format, sha256 and bytes are its images file's); null for CSV"},
        {"schema", API_T_OBJECT, .nullable = true,
         .description = "what the readers found: rows, columns, target, classes, image shape"},
        {"created_at", API_T_INT},
        {NULL},
};

json_t *api_json_text(const char *text) {
        json_t *j = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
        return j ? j : json_null();
}

json_t *api_dataset_json(const struct store_dataset *d) {
        json_t *labels = d->labels_sha256[0] ? json_pack("{s:s,s:s,s:I}", "format", d->labels_format, "sha256",
                                                         d->labels_sha256, "bytes", (json_int_t)d->labels_size)
                                             : json_null();
        return json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:o,s:o,s:I}", "id", d->id, "object", "dataset", "name", d->name,
                         "format", d->format, "sha256", d->sha256, "bytes", (json_int_t)d->size, "labels", labels,
                         "schema", api_json_text(d->schema_json), "created_at", (json_int_t)(d->created_at / 1000));
}

/* "csv", "idx", "idx.gz" or "safetensors", from the first bytes of the file. */
static const char *sniff_format(const char *path) {
        unsigned char b[4] = {0};
        FILE *f = fopen(path, "rb");
        size_t n = f ? fread(b, 1, sizeof(b), f) : 0;
        if (f)
                fclose(f);
        if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b)
                return "idx.gz";
        if (n >= 4 && b[0] == 0 && b[1] == 0 && b[2] == 0x08)
                return "idx";
        if (n >= 1 && b[0] != 0 && b[0] != '{' && b[1] == 0 && b[2] == 0 && b[3] == 0)
                return "safetensors"; /* little-endian header length */
        return "csv";
}

/* Messages from the readers name the file by its path in the blob store:
 * say what the client calls it instead. */
void api_message_replace(char *msg, size_t size, const char *path, const char *label) {
        char *at;
        size_t pn = strlen(path), ln = strlen(label);
        if (!pn)
                return;
        while ((at = strstr(msg, path))) {
                size_t tail = strlen(at + pn);
                if ((size_t)(at - msg) + ln + tail + 1 > size)
                        break;
                memmove(at + ln, at + pn, tail + 1);
                memcpy(at, label, ln);
        }
}

static bool valid_name(const char *s) {
        if (!s || !*s || strlen(s) > 200)
                return false;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return false;
        json_t *j = json_string(s); /* NULL unless valid UTF-8 */
        json_decref(j);
        return j != NULL;
}

enum MHD_Result api_datasets_create(struct api_request *req) {
        enum MHD_Result ret;
        struct store *st = api_store(req, &ret);
        if (!st)
                return ret;
        struct api_upload *raw = api_upload_get(req, ""), *images = api_upload_get(req, "images"),
                          *labels = api_upload_get(req, "labels"), *file = api_upload_get(req, "file");
        if (!raw)
                raw = file;
        if (!raw && !images)
                return api_reply_error(req, API_ERR_INVALID_REQUEST, "file",
                                       "no file: send it as the raw body (curl --data-binary @FILE) or as "
                                       "multipart parts 'images' and 'labels' (or 'file')");
        if (images && !labels)
                return api_reply_error(req, API_ERR_INVALID_REQUEST, "labels",
                                       "an IDX dataset needs a 'labels' part next to 'images'");
        for (unsigned i = 0; i < req->n_uploads; i++) {
                const struct api_upload *u = &req->uploads[i];
                if (u != raw && u != images && u != labels)
                        return api_reply_error(req, API_ERR_INVALID_REQUEST, u->name,
                                               "unknown part '%s' (expected 'images' and 'labels', or 'file')",
                                               u->name);
                if (!u->is_file)
                        return api_reply_error(req, API_ERR_INVALID_REQUEST, u->name,
                                               "part '%s' must be a file (curl -F %s=@PATH)", u->name, u->name);
                if (u->size == 0)
                        return api_reply_error(req, API_ERR_INVALID_REQUEST, u->name[0] ? u->name : "file",
                                               "the uploaded file is empty");
        }
        const struct api_upload *main = raw ? raw : images;
        const char *name = api_query_get(req, "name");
        if (!name || !*name)
                name = main->filename[0] ? main->filename : "dataset";
        if (!valid_name(name))
                return api_reply_error(req, API_ERR_INVALID_REQUEST, "name",
                                       "'name' must be 1 to 200 printable characters");
        const char *format = sniff_format(main->path);
        if (strcmp(format, "safetensors") == 0)
                return api_reply_error(req, API_ERR_INVALID_REQUEST, "file",
                                       "this is a safetensors file: upload weights with POST /v1/models");
        if (!images && strcmp(format, "csv") != 0)
                return api_reply_error(req, API_ERR_INVALID_REQUEST, "labels",
                                       "an IDX file needs its labels: send both as multipart parts 'images' and "
                                       "'labels' (curl -F images=@IMAGES -F labels=@LABELS)");

        struct ft_error err = {0};
        struct dataset *data = NULL;
        void *summary = NULL;
        struct data_open_options oo = {.max_bytes = (size_t)req->server->opts.upload_max * 4};
        int r = data_open(main->path, images ? labels->path : NULL, &oo, &data, &err);
        if (r == 0)
                r = data_summary_json(data, &summary, &err);
        if (r < 0) {
                dataset_free(data);
                if (r == -ENOMEM)
                        return api_reply_ft_error(req, r, &err);
                /* the blobs stay unreferenced; store_blob_gc collects them */
                api_message_replace(err.message, sizeof(err.message), main->path,
                                    main->filename[0] ? main->filename
                                    : main == images  ? "images"
                                                      : "upload");
                if (images)
                        api_message_replace(err.message, sizeof(err.message), labels->path,
                                            labels->filename[0] ? labels->filename : "labels");
                return api_reply_error(req, API_ERR_INVALID_REQUEST, err.param[0] ? err.param : "file", "%s",
                                       err.message);
        }
        char *schema = json_dumps(summary, JSON_COMPACT);
        json_decref(summary);
        struct store_dataset_new dn = {
                .name = name,
                .format = format,
                .sha256 = main->sha256,
                .schema_json = schema,
                .facts = {.kind = data->kind == DATA_IMAGES ? STORE_DATASET_IDX : STORE_DATASET_CSV,
                          .rows = (int64_t)data->n,
                          .features = (int64_t)data->n_features,
                          .classes = data->task == DATA_CLASSIFICATION ? (int64_t)data->n_classes : 0,
                          .channels = (int64_t)data->channels,
                          .height = (int64_t)data->height,
                          .width = (int64_t)data->width},
                .target = data->target_name,
                .labels_sha256 = images ? labels->sha256 : NULL,
                .labels_format = images ? sniff_format(labels->path) : NULL,
        };
        struct store_dataset *ds = NULL;
        r = schema ? store_dataset_create(st, &dn, &ds, &err) : -ENOMEM;
        free(schema);
        dataset_free(data);
        if (r < 0)
                return api_reply_ft_error(req, r, &err);
        log_info("dataset %s created: '%s', %s, %lld bytes", ds->id, ds->name, ds->format, (long long)ds->size);
        json_t *body = api_dataset_json(ds);
        char location[64];
        snprintf(location, sizeof(location), "/v1/datasets/%s", ds->id);
        store_dataset_free(ds);
        return api_reply_json_headers(req, MHD_HTTP_CREATED, body, (const char *const[]){"Location", location, NULL});
}

enum MHD_Result api_datasets_list(struct api_request *req) {
        enum MHD_Result ret;
        struct store *st = api_store(req, &ret);
        if (!st)
                return ret;
        struct api_page page;
        api_page_from_query(req, &page);
        struct store_page sp = {.limit = page.limit, .after = page.after};
        struct store_dataset_list l = {0};
        struct ft_error err = {0};
        int r = store_dataset_list(st, &sp, &l, &err);
        if (r < 0)
                return api_reply_ft_error(req, r == -ENOENT ? -EINVAL : r, &err);
        json_t *items = json_array();
        for (size_t i = 0; i < l.n; i++)
                json_array_append_new(items, api_dataset_json(l.items[i]));
        bool more = l.has_more;
        store_dataset_list_deinit(&l);
        return api_reply_json(req, MHD_HTTP_OK, api_page_envelope(items, more, "id"));
}

enum MHD_Result api_datasets_get(struct api_request *req) {
        enum MHD_Result ret;
        const char *id;
        struct store *st;
        if (!api_path_store(req, "ds", "dataset", &id, &st, &ret))
                return ret;
        struct store_dataset *d = NULL;
        struct ft_error err = {0};
        int r = store_dataset_get(st, id, &d, &err);
        if (r < 0)
                return api_reply_ft_error(req, r, &err);
        json_t *body = api_dataset_json(d);
        store_dataset_free(d);
        return api_reply_json(req, MHD_HTTP_OK, body);
}

enum MHD_Result api_datasets_delete(struct api_request *req) {
        enum MHD_Result ret;
        const char *id;
        struct store *st;
        if (!api_path_store(req, "ds", "dataset", &id, &st, &ret))
                return ret;
        struct ft_error err = {0};
        int r = store_dataset_delete(st, id, &err); /* an IDX dataset's two files go together */
        if (r < 0)
                return api_reply_ft_error(req, r, &err); /* -EBUSY: 409 */
        return api_reply_deleted(req, "dataset", id);
}

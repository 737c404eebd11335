/* webhooks.c - /v1/webhooks: register an endpoint (url, event types; the
 * signing secret is answered once, at creation), list, get, delete, a
 * test-send, and the delivery log of an endpoint. The URL policy lives here:
 * http or https only, no credentials in it, and an address literal (or
 * localhost) that is internal is refused unless --webhook-allow names it; the
 * sender checks every address again when it connects.
 * Not for: signing and sending (daemon/webhooks.c), the outbox rows
 * (store/webhooks.c). */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "api/internal.h"
#include "common/base64.h"
#include "common/netaddr.h"
#include "store/store.h"

#define SECRET_BYTES 32 /* Standard Webhooks: 24 to 64 random bytes */

const char *const api_webhook_event_types[] = {
        "job.queued", "job.running", "job.paused", "job.succeeded", "job.failed", "job.cancelled",
        "job.epoch",  "job.warning", NULL,
};
/* What an endpoint gets when it names no types: every state change and warning; job.epoch is opt-in. */
static const char default_types[] = "job.queued,job.running,job.paused,job.succeeded,job.failed,job.cancelled,"
                                    "job.warning";

const struct api_field api_webhook_create_fields[] = {
        {"url", API_T_STRING, .required = true, .max_len = STORE_WEBHOOK_URL_MAX,
         .description = "where to POST: http:// or https://, no user:password; an internal address is refused "
                        "unless the daemon's --webhook-allow names it"},
        {"event_types", API_T_ARRAY_STRING, .min_items = 1, .max_len = 8, .choices = api_webhook_event_types,
         .description = "the events to send (default: every one but job.epoch, which is opt-in)"},
        {"description", API_T_STRING, .max_len = STORE_WEBHOOK_DESCRIPTION_MAX},
        {NULL},
};

const struct api_field api_webhook_shape[] = {
        {"id", API_T_STRING, .id_prefix = "wh"},
        {"object", API_T_STRING, .choices = (const char *const[]){"webhook", NULL}},
        {"url", API_T_STRING},
        {"description", API_T_STRING},
        {"event_types", API_T_ARRAY_STRING, .choices = api_webhook_event_types},
        {"created_at", API_T_INT, .description = "Unix seconds"},
        {NULL},
};

const struct api_field api_webhook_created_shape[] = {
        {"id", API_T_STRING, .id_prefix = "wh"},
        {"object", API_T_STRING, .choices = (const char *const[]){"webhook", NULL}},
        {"url", API_T_STRING},
        {"description", API_T_STRING},
        {"event_types", API_T_ARRAY_STRING, .choices = api_webhook_event_types},
        {"created_at", API_T_INT, .description = "Unix seconds"},
        {"secret", API_T_STRING,
         .description = "whsec_ + base64 of the 32-byte signing key: in this answer only, never again"},
        {NULL},
};

const struct api_field api_webhook_delivery_shape[] = {
        {"id", API_T_STRING, .id_prefix = "msg",
         .description = "the webhook-id header: one per event, the same on every retry (receivers drop repeats)"},
        {"object", API_T_STRING, .choices = (const char *const[]){"webhook_delivery", NULL}},
        {"webhook", API_T_STRING, .id_prefix = "wh"},
        {"event_type", API_T_STRING},
        {"job", API_T_STRING, .id_prefix = "job", .nullable = true},
        {"state", API_T_STRING, .choices = (const char *const[]){"pending", "succeeded", "failed", NULL}},
        {"attempts", API_T_INT, .description = "sends started so far"},
        {"last_status", API_T_INT, .nullable = true, .description = "HTTP status of the last answer"},
        {"last_error", API_T_STRING, .nullable = true, .description = "why the last attempt failed"},
        {"next_attempt_at", API_T_INT, .nullable = true, .description = "while pending: when it is sent (again)"},
        {"payload", API_T_OBJECT, .description = "the body as sent: {type, timestamp, data}"},
        {"created_at", API_T_INT},
        {"updated_at", API_T_INT},
        {NULL},
};

const struct api_field api_webhook_test_shape[] = {
        {"object", API_T_STRING, .choices = (const char *const[]){"webhook_test", NULL}},
        {"webhook", API_T_STRING, .id_prefix = "wh"},
        {"delivery", API_T_STRING, .id_prefix = "msg", .description = "its id in GET /v1/webhooks/{id}/deliveries"},
        {NULL},
};

static json_t *webhook_json(const struct store_webhook *w, bool with_secret) {
        json_t *types = json_array();
        const char *p = w->event_types;
        while (*p) {
                size_t n = strcspn(p, ",");
                json_array_append_new(types, json_stringn(p, n));
                p += n;
                if (*p == ',')
                        p++;
        }
        json_t *o =
                json_pack("{s:s,s:s,s:s,s:s,s:o,s:I}", "id", w->id, "object", "webhook", "url", w->url, "description",
                          w->description, "event_types", types, "created_at", (json_int_t)(w->created_at / 1000));
        if (with_secret)
                json_object_set_new(o, "secret", json_string(w->secret));
        return o;
}

static json_t *delivery_json(const struct store_webhook_delivery *d) {
        return json_pack("{s:s,s:s,s:s,s:s,s:o,s:s,s:i,s:o,s:o,s:o,s:o,s:I,s:I}", "id", d->msg_id, "object",
                         "webhook_delivery", "webhook", d->webhook_id, "event_type", d->event_type, "job",
                         d->job_id[0] ? json_string(d->job_id) : json_null(), "state",
                         store_delivery_state_name(d->state), "attempts", d->attempts, "last_status",
                         d->last_status ? json_integer(d->last_status) : json_null(), "last_error",
                         d->last_error[0] ? json_string(d->last_error) : json_null(), "next_attempt_at",
                         d->state == STORE_DELIVERY_PENDING ? json_integer(d->next_attempt_at / 1000) : json_null(),
                         "payload", api_json_text(d->payload), "created_at", (json_int_t)(d->created_at / 1000),
                         "updated_at", (json_int_t)(d->updated_at / 1000));
}

/* The URL policy: scheme, no credentials, a host, a port in range; an address literal (or localhost) that is
 * internal must be allowed. Names are checked by the sender at each connect. */
int api_webhook_url_check(const char *url, const struct netaddr_list *allow, struct ft_error *err) {
        const char *p;
        if (strncasecmp(url, "https://", 8) == 0)
                p = url + 8;
        else if (strncasecmp(url, "http://", 7) == 0)
                p = url + 7;
        else
                return ft_error_set(err, -EINVAL, "url", "'url' must start with http:// or https://");
        for (const char *c = url; *c; c++)
                if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
                        return ft_error_set(err, -EINVAL, "url", "'url' has a space or a control character: encode it");
        size_t alen = strcspn(p, "/?#");
        char host[256];
        if (memchr(p, '@', alen))
                return ft_error_set(err, -EINVAL, "url", "'url' must not carry a user or password");
        const char *port = NULL;
        size_t hlen;
        if (*p == '[') {
                const char *close = memchr(p, ']', alen);
                if (!close)
                        return ft_error_set(err, -EINVAL, "url", "'url' has an unterminated [IPv6] host");
                hlen = (size_t)(close - p - 1);
                if (hlen == 0 || hlen >= sizeof(host))
                        return ft_error_set(err, -EINVAL, "url", "'url' has a bad [IPv6] host");
                memcpy(host, p + 1, hlen);
                if ((size_t)(close + 1 - p) < alen) {
                        if (close[1] != ':')
                                return ft_error_set(err, -EINVAL, "url", "'url' has junk after its [IPv6] host");
                        port = close + 2;
                }
        } else {
                const char *colon = memchr(p, ':', alen);
                hlen = colon ? (size_t)(colon - p) : alen;
                if (hlen == 0 || hlen >= sizeof(host))
                        return ft_error_set(err, -EINVAL, "url", "'url' needs a host (at most 255 bytes)");
                memcpy(host, p, hlen);
                if (colon)
                        port = colon + 1;
        }
        host[hlen] = '\0';
        if (port) {
                size_t plen = (size_t)(p + alen - port);
                unsigned v = 0;
                bool digits = plen > 0 && plen <= 5;
                for (size_t i = 0; digits && i < plen; i++) {
                        digits = port[i] >= '0' && port[i] <= '9';
                        v = v * 10 + (unsigned)(port[i] - '0');
                }
                if (!digits || v == 0 || v > 65535)
                        return ft_error_set(err, -EINVAL, "url", "'url' has a bad port (1 to 65535)");
        }
        struct sockaddr_storage ss;
        bool literal = netaddr_parse(host, &ss);
        if (!literal &&
            (strcasecmp(host, "localhost") == 0 || (hlen > 10 && strcasecmp(host + hlen - 10, ".localhost") == 0)))
                literal = netaddr_parse("127.0.0.1", &ss); /* and ::1: refused unless 127.0.0.1 is allowed */
        if (literal && !netaddr_allowed((struct sockaddr *)&ss, allow))
                return ft_error_set(err, -EINVAL, "url",
                                    "'url' names an internal address ('%s'): webhooks reach loopback, private and "
                                    "link-local addresses only where the daemon's --webhook-allow names them",
                                    host);
        return 0;
}

/* The event types as the store keeps them: known, each once, comma-separated. */
static int types_text(const json_t *types, char *out, size_t size, struct ft_error *err) {
        if (!types || json_is_null(types)) {
                snprintf(out, size, "%s", default_types);
                return 0;
        }
        size_t n = 0;
        out[0] = '\0';
        for (size_t i = 0; i < json_array_size(types); i++) {
                const char *t = json_string_value(json_array_get(types, i));
                for (size_t j = 0; j < i; j++)
                        if (strcmp(json_string_value(json_array_get(types, j)), t) == 0)
                                return ft_error_set(err, -EINVAL, "event_types", "'event_types' names '%s' twice", t);
                n += (size_t)snprintf(out + n, size - n, "%s%s", i ? "," : "", t);
                if (n >= size)
                        return ft_error_set(err, -EINVAL, "event_types", "'event_types' is too long");
        }
        return 0;
}

enum MHD_Result api_webhooks_create(struct api_request *req) {
        enum MHD_Result ret;
        json_t *body = api_request_json(req, api_webhook_create_fields, &ret);
        if (!body)
                return ret;
        struct store *st = api_store(req, &ret);
        if (!st) {
                json_decref(body);
                return ret;
        }
        struct ft_error err = {0};
        char types[STORE_WEBHOOK_TYPES_MAX + 1];
        const char *url = json_string_value(json_object_get(body, "url"));
        int r = api_webhook_url_check(url, &req->server->webhook_allow, &err);
        if (r == 0)
                r = types_text(json_object_get(body, "event_types"), types, sizeof(types), &err);
        uint8_t key[SECRET_BYTES];
        char secret[6 + BASE64_ENCODED_SIZE(SECRET_BYTES)];
        if (r == 0 && getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key))
                r = ft_error_set(&err, -EIO, NULL, "cannot get random bytes for the secret");
        if (r < 0) {
                json_decref(body);
                return api_reply_ft_error(req, r, &err);
        }
        memcpy(secret, "whsec_", 6);
        base64_encode(key, sizeof(key), secret + 6);
        explicit_bzero(key, sizeof(key));
        struct store_webhook *w = NULL;
        r = store_webhook_create(
                st,
                &(struct store_webhook_new){.url = url,
                                            .description = json_string_value(json_object_get(body, "description")),
                                            .event_types = types,
                                            .secret = secret},
                &w, &err);
        explicit_bzero(secret, sizeof(secret));
        json_decref(body);
        if (r == -ENOSPC) /* the endpoint cap: a limit of the request, like any other */
                return api_reply_error(req, API_ERR_INVALID_REQUEST, err.param, "%s", err.message);
        if (r < 0)
                return api_reply_ft_error(req, r, &err);
        char location[64];
        snprintf(location, sizeof(location), "/v1/webhooks/%s", w->id);
        json_t *o = webhook_json(w, true);
        store_webhook_free(w);
        return api_reply_json_headers(req, MHD_HTTP_CREATED, o, (const char *const[]){"Location", location, NULL});
}

enum MHD_Result api_webhooks_list(struct api_request *req) {
        enum MHD_Result ret;
        struct store *st = api_store(req, &ret);
        if (!st)
                return ret;
        struct api_page page;
        api_page_from_query(req, &page);
        struct store_webhook_list l = {0};
        struct ft_error err = {0};
        int r = store_webhook_list(st, &(struct store_page){.limit = page.limit, .after = page.after}, &l, &err);
        if (r < 0)
                return api_reply_ft_error(req, r == -ENOENT ? -EINVAL : r, &err);
        json_t *items = json_array();
        for (size_t i = 0; i < l.n; i++)
                json_array_append_new(items, webhook_json(l.items[i], false));
        bool more = l.has_more;
        store_webhook_list_deinit(&l);
        return api_reply_json(req, MHD_HTTP_OK, api_page_envelope(items, more, "id"));
}

enum MHD_Result api_webhooks_get(struct api_request *req) {
        enum MHD_Result ret;
        const char *id;
        struct store *st;
        if (!api_path_store(req, "wh", "webhook", &id, &st, &ret))
                return ret;
        struct store_webhook *w = NULL;
        struct ft_error err = {0};
        int r = store_webhook_get(st, id, &w, &err);
        if (r < 0)
                return api_reply_ft_error(req, r, &err);
        json_t *o = webhook_json(w, false);
        store_webhook_free(w);
        return api_reply_json(req, MHD_HTTP_OK, o);
}

enum MHD_Result api_webhooks_delete(struct api_request *req) {
        enum MHD_Result ret;
        const char *id;
        struct store *st;
        if (!api_path_store(req, "wh", "webhook", &id, &st, &ret))
                return ret;
        struct ft_error err = {0};
        int r = store_webhook_delete(st, id, &err);
        if (r < 0)
                return api_reply_ft_error(req, r, &err);
        return api_reply_deleted(req, "webhook", id);
}

enum MHD_Result api_webhooks_test(struct api_request *req) {
        enum MHD_Result ret;
        const char *id;
        if (!api_path_id(req, 0, "wh", "webhook", &id, &ret))
                return ret;
        if (req->body_size > 0) { /* an optional empty object */
                json_t *j = api_request_json(req, (const struct api_field[]){{NULL}}, &ret);
                if (!j)
                        return ret;
                json_decref(j);
        }
        struct store *st = api_store(req, &ret);
        if (!st)
                return ret;
        char msg[STORE_ID_MAX];
        struct ft_error err = {0};
        int r = store_webhook_test(st, id, msg, &err);
        if (r < 0)
                return api_reply_ft_error(req, r, &err);
        return api_reply_json(req, MHD_HTTP_ACCEPTED,
                              json_pack("{s:s,s:s,s:s}", "object", "webhook_test", "webhook", id, "delivery", msg));
}

enum MHD_Result api_webhooks_deliveries(struct api_request *req) {
        enum MHD_Result ret;
        const char *id;
        struct store *st;
        if (!api_path_store(req, "wh", "webhook", &id, &st, &ret))
                return ret;
        struct api_page page;
        api_page_from_query(req, &page);
        struct store_webhook_delivery_list l = {0};
        struct ft_error err = {0};
        int r = store_webhook_deliveries(st, id, &(struct store_page){.limit = page.limit, .after = page.after}, &l,
                                         &err);
        if (r == -ENOENT && strcmp(err.param, "after") == 0)
                r = -EINVAL;
        if (r < 0)
                return api_reply_ft_error(req, r, &err);
        json_t *items = json_array();
        for (size_t i = 0; i < l.n; i++)
                json_array_append_new(items, delivery_json(l.items[i]));
        bool more = l.has_more;
        store_webhook_delivery_list_deinit(&l);
        return api_reply_json(req, MHD_HTTP_OK, api_page_envelope(items, more, "id"));
}

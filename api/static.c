/* static.c - serving the embedded dashboard: GET / answers index.html and
 * GET /static/{name} the other files (main.js and the ES modules it imports,
 * app.css, chart.js, ...), each with its content type, a strong ETag
 * (If-None-Match -> 304), revalidation on every load (Cache-Control:
 * no-cache) and a strict Content-Security-Policy.
 *
 * Not for: the API (JSON handlers live in their own files) or the files
 * themselves (web/, embedded by web/embed.c). */
#include <string.h>

#include "api/internal.h"
#include "web/assets.h"

/* The page loads only its own scripts and styles, talks only to its own
 * origin, and may not be framed. Chart.js sets canvas styles inline. */
#define STATIC_CSP                                                                                                     \
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "        \
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

/* True when an If-None-Match header lists etag (or is "*"). */
static bool etag_matches(const char *header, const char *etag) {
        if (!header)
                return false;
        size_t len = strlen(etag);
        for (const char *p = header; *p;) {
                while (*p == ' ' || *p == ',' || *p == '\t')
                        p++;
                if (strncmp(p, "W/", 2) == 0)
                        p += 2;
                if (*p == '*')
                        return true;
                if (strncmp(p, etag, len) == 0 && (p[len] == '\0' || p[len] == ',' || p[len] == ' '))
                        return true;
                p = strchrnul(p, ',');
        }
        return false;
}

static enum MHD_Result reply_asset(struct api_request *req, const struct web_asset *asset) {
        const char *inm = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
        bool not_modified = etag_matches(inm, asset->etag);
        struct MHD_Response *resp = not_modified ? MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT)
                                                 : MHD_create_response_from_buffer(asset->size, (void *)asset->data,
                                                                                   MHD_RESPMEM_PERSISTENT);
        if (!resp)
                return MHD_NO;
        if (!not_modified)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, asset->content_type);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, asset->etag);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
        if (strcmp(asset->name, "index.html") == 0) {
                MHD_add_response_header(resp, "Content-Security-Policy", STATIC_CSP);
                MHD_add_response_header(resp, "X-Frame-Options", "DENY");
        }
        enum MHD_Result ret = MHD_queue_response(req->conn, not_modified ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ret;
}

enum MHD_Result api_static_index(struct api_request *req) {
        const struct web_asset *asset = web_asset_find("index.html");
        if (!asset)
                return api_reply_error(req, API_ERR_NOT_FOUND, NULL, "the dashboard is not built into this binary");
        return reply_asset(req, asset);
}

enum MHD_Result api_static_file(struct api_request *req) {
        const char *name = req->n_path_params > 0 ? req->path_params[0] : "";
        /* index.html is served at / only, so the page has one address. */
        const struct web_asset *asset = strcmp(name, "index.html") != 0 ? web_asset_find(name) : NULL;
        if (!asset)
                return api_reply_error(req, API_ERR_NOT_FOUND, NULL, "no dashboard file '/static/%.64s'", name);
        return reply_asset(req, asset);
}

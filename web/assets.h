/* assets.h - the dashboard's files (web/ plus Debian's Chart.js), embedded
 * into the binary at build time by web/embed.c, so an installed finetuned
 * serves its dashboard with no files on disk and no network.
 *
 * Not for: serving them (api/static.c does that) or anything else in web/. */
#pragma once

#include <stddef.h>

struct web_asset {
        const char *name; /* URL name: "index.html", "main.js", "chart.js" */
        const char *content_type; /* with charset for text types */
        const unsigned char *data;
        size_t size;
        const char *etag; /* quoted strong validator: a hash of the content */
};

/* Every embedded file, sorted by name. */
extern const struct web_asset web_assets[];
extern const size_t web_assets_count;

/* Find an asset by name; NULL when there is none. */
const struct web_asset *web_asset_find(const char *name);

/* base64.c - RFC 4648 base64 with padding. Not for: base64url or line-wrapped
 * MIME text. */
#include "common/base64.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encode(const void *data, size_t n, char *out) {
        const uint8_t *p = data;
        size_t o = 0;
        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t)p[i] << 16;
                if (i + 1 < n)
                        v |= (uint32_t)p[i + 1] << 8;
                if (i + 2 < n)
                        v |= p[i + 2];
                out[o++] = alphabet[(v >> 18) & 63];
                out[o++] = alphabet[(v >> 12) & 63];
                out[o++] = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
                out[o++] = i + 2 < n ? alphabet[v & 63] : '=';
        }
        out[o] = '\0';
        return o;
}

static int value_of(char c) {
        const char *p = c ? strchr(alphabet, c) : NULL;
        return p ? (int)(p - alphabet) : -1;
}

int base64_decode(const char *text, uint8_t *out, size_t out_size) {
        size_t len = strlen(text), o = 0;
        if (len % 4)
                return -EINVAL;
        for (size_t i = 0; i < len; i += 4) {
                int v[4];
                bool last = i + 4 == len;
                for (int k = 0; k < 4; k++) {
                        v[k] = value_of(text[i + k]);
                        if (v[k] < 0 && !(last && k >= 2 && text[i + k] == '='))
                                return -EINVAL;
                }
                if (v[2] < 0 && v[3] >= 0) /* "x=y" */
                        return -EINVAL;
                size_t bytes = v[2] < 0 ? 1 : v[3] < 0 ? 2 : 3;
                if (o + bytes > out_size)
                        return -ENOBUFS;
                uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)(v[2] < 0 ? 0 : v[2]) << 6 |
                             (uint32_t)(v[3] < 0 ? 0 : v[3]);
                out[o++] = (uint8_t)(w >> 16);
                if (bytes > 1)
                        out[o++] = (uint8_t)(w >> 8);
                if (bytes > 2)
                        out[o++] = (uint8_t)w;
        }
        return (int)o;
}

/* base64.h - standard base64 (RFC 4648 section 4, with '=' padding): webhook
 * secrets ("whsec_" + base64) and signatures.
 * Not for: base64url, MIME line breaks, streaming. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Bytes base64_encode writes for n input bytes, NUL included. */
#define BASE64_ENCODED_SIZE(n) ((((n) + 2) / 3) * 4 + 1)

/* Encode n bytes into out (BASE64_ENCODED_SIZE(n) bytes, NUL-terminated).
 * Returns the length written, NUL not counted. */
size_t base64_encode(const void *data, size_t n, char *out);

/* Decode NUL-terminated text into out (at most out_size bytes). Padding is
 * required (the length must be a multiple of 4); whitespace is refused.
 * Returns the number of bytes, or -EINVAL for text that is not base64 and
 * -ENOBUFS when out is too small. */
int base64_decode(const char *text, uint8_t *out, size_t out_size);

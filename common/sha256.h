/* sha256.h - SHA-256 (FIPS 180-4), streaming, and HMAC-SHA256 (RFC 2104) on
 * top of it. Used for content addresses of blobs, request hashes and webhook
 * signatures. Not for: passwords or key derivation. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_SIZE 32
#define SHA256_HEX_SIZE 65 /* 64 lowercase hex digits + NUL */

struct sha256_ctx {
        uint32_t h[8];
        uint64_t length; /* bytes hashed so far */
        uint8_t block[64];
        size_t fill; /* bytes in block */
};

void sha256_init(struct sha256_ctx *c);
void sha256_update(struct sha256_ctx *c, const void *data, size_t n);
/* Write the digest and leave c unusable until sha256_init. */
void sha256_final(struct sha256_ctx *c, uint8_t out[SHA256_DIGEST_SIZE]);

/* One-shot helpers. */
void sha256_buffer(const void *data, size_t n, uint8_t out[SHA256_DIGEST_SIZE]);
void sha256_to_hex(const uint8_t digest[SHA256_DIGEST_SIZE], char out[SHA256_HEX_SIZE]);
/* Whether s is exactly 64 lowercase hex digits. */
int sha256_hex_valid(const char *s);

/* HMAC-SHA256 (RFC 2104, checked against RFC 4231's vectors) of msg under key. */
#define HMAC_SHA256_SIZE SHA256_DIGEST_SIZE
void hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len, uint8_t out[HMAC_SHA256_SIZE]);
/* The same over the concatenation of n pieces (msgs[i], lens[i]), without copying them together. */
void hmac_sha256_v(const void *key, size_t key_len, const void *const *msgs, const size_t *lens, size_t n,
                   uint8_t out[HMAC_SHA256_SIZE]);

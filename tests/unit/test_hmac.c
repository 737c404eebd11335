/* test_hmac.c - HMAC-SHA256 against RFC 4231's test cases 1-4, 6 and 7 (5 is
 * a truncated MAC), base64 against RFC 4648 section 10, and a Standard
 * Webhooks signature against the example of its specification (the secret,
 * id, timestamp and body of the spec's reference libraries' tests). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/base64.h"
#include "common/sha256.h"
#include "tests/tap.h"

static void hex_of(const uint8_t *d, size_t n, char *out) {
        for (size_t i = 0; i < n; i++)
                sprintf(out + 2 * i, "%02x", d[i]);
}

static bool hmac_is(const void *key, size_t key_len, const void *msg, size_t msg_len, const char *want) {
        uint8_t mac[HMAC_SHA256_SIZE];
        char hex[2 * HMAC_SHA256_SIZE + 1];
        hmac_sha256(key, key_len, msg, msg_len, mac);
        hex_of(mac, sizeof(mac), hex);
        if (strcmp(hex, want) != 0)
                printf("# got %s\n# want %s\n", hex, want);
        return strcmp(hex, want) == 0;
}

int main(void) {
        uint8_t k[131];

        memset(k, 0x0b, 20);
        ok(hmac_is(k, 20, "Hi There", 8, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
           "RFC 4231 test case 1");
        ok(hmac_is("Jefe", 4, "what do ya want for nothing?", 28,
                   "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
           "RFC 4231 test case 2 (key shorter than the block)");
        uint8_t m[50];
        memset(k, 0xaa, 20);
        memset(m, 0xdd, 50);
        ok(hmac_is(k, 20, m, 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
           "RFC 4231 test case 3");
        for (int i = 0; i < 25; i++)
                k[i] = (uint8_t)(i + 1);
        memset(m, 0xcd, 50);
        ok(hmac_is(k, 25, m, 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
           "RFC 4231 test case 4");
        memset(k, 0xaa, 131);
        const char *t6 = "Test Using Larger Than Block-Size Key - Hash Key First";
        ok(hmac_is(k, 131, t6, strlen(t6), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
           "RFC 4231 test case 6 (key longer than the block)");
        const char *t7 = "This is a test using a larger than block-size key and a larger than block-size data. The "
                         "key needs to be hashed before being used by the HMAC algorithm.";
        ok(hmac_is(k, 131, t7, strlen(t7), "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
           "RFC 4231 test case 7");

        /* the pieces variant equals the one-shot over the concatenation */
        uint8_t a[HMAC_SHA256_SIZE], b[HMAC_SHA256_SIZE];
        hmac_sha256("key", 3, "id.123.body", 11, a);
        hmac_sha256_v("key", 3, (const void *const[]){"id", ".", "123", ".", "body"}, (const size_t[]){2, 1, 3, 1, 4},
                      5, b);
        ok(memcmp(a, b, sizeof(a)) == 0, "hmac_sha256_v over pieces == hmac_sha256 over the whole");

        /* RFC 4648 section 10 */
        static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
        static const char *const coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
        bool enc = true, dec = true;
        for (size_t i = 0; i < 7; i++) {
                char out[16];
                uint8_t back[16];
                base64_encode(plain[i], strlen(plain[i]), out);
                enc = enc && strcmp(out, coded[i]) == 0;
                int n = base64_decode(coded[i], back, sizeof(back));
                dec = dec && n == (int)strlen(plain[i]) && memcmp(back, plain[i], (size_t)n) == 0;
        }
        ok(enc, "base64_encode: RFC 4648 vectors");
        ok(dec, "base64_decode: RFC 4648 vectors");
        uint8_t small[2];
        ok(base64_decode("Zm9v", small, sizeof(small)) == -ENOBUFS, "decode into a short buffer: -ENOBUFS");
        ok(base64_decode("Zm9", k, sizeof(k)) == -EINVAL && base64_decode("Zm=v", k, sizeof(k)) == -EINVAL &&
                   base64_decode("Zm9v\n", k, sizeof(k)) == -EINVAL && base64_decode("Z!9v", k, sizeof(k)) == -EINVAL,
           "not base64: -EINVAL");

        /* Standard Webhooks: base64(HMAC-SHA256(base64decode(secret without whsec_), "id.timestamp.body")) */
        uint8_t key[64];
        int kl = base64_decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", key, sizeof(key));
        const char *msg = "msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{\"test\": 2432232314}";
        uint8_t mac[HMAC_SHA256_SIZE];
        char sig[BASE64_ENCODED_SIZE(HMAC_SHA256_SIZE)];
        hmac_sha256(key, (size_t)kl, msg, strlen(msg), mac);
        base64_encode(mac, sizeof(mac), sig);
        ok(kl == 24 && strcmp(sig, "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=") == 0,
           "Standard Webhooks example signature: %s", sig);
        return tap_done();
}

/* test_webhooks_sign.c - the sender's signature header and backoff: the
 * Standard Webhooks example message signs to the spec's "v1,g0hM..." value, a
 * secret that is not whsec_ + base64 is refused, and the waits between
 * attempts double from 5 s up to the one-hour cap. */
#include <errno.h>
#include <string.h>

#include "daemon/webhooks.h"
#include "tests/tap.h"

int main(void) {
        char sig[WEBHOOKS_SIGNATURE_MAX];
        const char *body = "{\"test\": 2432232314}";
        ok(webhooks_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
                         strlen(body), sig) == 0 &&
                   strcmp(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=") == 0,
           "the specification's example: %s", sig);
        ok(webhooks_sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_x", 1, "{}", 2, sig) == -EINVAL,
           "a secret without whsec_ is refused");
        ok(webhooks_sign("whsec_not base64!", "msg_x", 1, "{}", 2, sig) == -EINVAL, "a secret that is not base64 too");
        ok(webhooks_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, body,
                         strlen(body), sig) == 0 &&
                   strcmp(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=") != 0,
           "another timestamp, another signature");
        ok(webhooks_backoff_s(1) == WEBHOOKS_RETRY_FIRST_S && webhooks_backoff_s(2) == 2 * WEBHOOKS_RETRY_FIRST_S &&
                   webhooks_backoff_s(3) == 4 * WEBHOOKS_RETRY_FIRST_S,
           "waits double: 5, 10, 20 s");
        ok(webhooks_backoff_s(11) == WEBHOOKS_RETRY_MAX_S && webhooks_backoff_s(1000) == WEBHOOKS_RETRY_MAX_S,
           "and stop at an hour");
        int64_t total = 0;
        int n = 0;
        while (total < WEBHOOKS_RETRY_WINDOW_S)
                total += webhooks_backoff_s(++n);
        ok(n > 20 && n < 40, "a day of retries is %d attempts", n);
        return tap_done();
}

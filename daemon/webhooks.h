/* webhooks.h - the webhook sender of `finetuned serve`: one thread that
 * claims due deliveries from the store's outbox, signs them with the Standard
 * Webhooks scheme and POSTs them with libcurl's multi interface (at most
 * WEBHOOKS_IN_FLIGHT at once, each under a timeout), retrying with
 * exponential backoff for a day. Training and the API never wait for it: they
 * only write outbox rows in their own transactions.
 *
 * Not for: endpoints and the outbox's rows (store/webhooks.c), the API
 * (api/webhooks.c), the address policy itself (common/netaddr.h).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "common/netaddr.h"

#define WEBHOOKS_IN_FLIGHT 8 /* deliveries sent at once */
#define WEBHOOKS_CONNECT_TIMEOUT_S 5
#define WEBHOOKS_TIMEOUT_S 10 /* the whole exchange; a slower receiver counts as failed */
#define WEBHOOKS_RETRY_FIRST_S 5 /* the first retry waits this long; each next one twice as long */
#define WEBHOOKS_RETRY_MAX_S 3600 /* longest wait between two attempts */
#define WEBHOOKS_RETRY_WINDOW_S (24 * 3600) /* no attempt starts later than this after the event */
#define WEBHOOKS_KEEP_LOG_S (7 * 24 * 3600) /* delivered and failed rows are pruned after this */
#define WEBHOOKS_SIGNATURE_MAX 64 /* "v1," + base64 of 32 bytes + NUL */

struct webhooks;

struct webhooks_options {
        const char *state_dir;
        const struct netaddr_list *allow; /* internal addresses that may be reached anyway (--webhook-allow) */
};

/* Start the sender thread (it opens its own store connection). */
int webhooks_start(const struct webhooks_options *opts, struct webhooks **ret, struct ft_error *err);
/* Stop within one poll interval: transfers in flight are abandoned (their
 * claims lapse and they are sent again after the next start). NULL is a no-op. */
void webhooks_stop(struct webhooks *w);

/* The webhook-signature header value for one message: "v1," + base64 of
 * HMAC-SHA256 under the secret's key (base64 after "whsec_") of
 * "msg_id.timestamp.body". -EINVAL for a secret that is not "whsec_" + base64. */
int webhooks_sign(const char *secret, const char *msg_id, int64_t timestamp, const char *body, size_t body_len,
                  char out[WEBHOOKS_SIGNATURE_MAX]);

/* The wait before attempt n + 1 after n failed attempts (n >= 1), in seconds, before jitter. */
int64_t webhooks_backoff_s(int attempts);

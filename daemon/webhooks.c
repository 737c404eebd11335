/* webhooks.c - the webhook sender thread: claim due deliveries, sign, POST
 * with libcurl's multi interface, record the outcome, back off, prune.
 * Not for: the outbox rows (store/webhooks.c), the endpoints API
 * (api/webhooks.c). */
#include "daemon/webhooks.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "api/prometheus.h"
#include "common/base64.h"
#include "common/log.h"
#include "common/sha256.h"
#include "config.h"
#include "store/store.h"

#define POLL_MS 500 /* look for due deliveries at least this often */
#define CLAIM_LEASE_MS ((int64_t)(WEBHOOKS_TIMEOUT_S + 20) * 1000)
#define PRUNE_INTERVAL_MS (3600 * 1000)
#define ERROR_TEXT_MAX 320

struct transfer {
        CURL *easy;
        struct curl_slist *headers;
        struct store_webhook_delivery *d;
        struct webhooks *w;
        char refused[192]; /* the address policy's reason, when it refused a connection */
        char errbuf[CURL_ERROR_SIZE];
};

struct webhooks {
        char state_dir[4096];
        struct netaddr_list allow;
        pthread_t thread;
        CURLM *multi;
        atomic_bool stop;
        struct store *store;
        struct store_subscription *sub;
        struct transfer *slots[WEBHOOKS_IN_FLIGHT];
        unsigned in_flight;
};

int webhooks_sign(const char *secret, const char *msg_id, int64_t timestamp, const char *body, size_t body_len,
                  char out[WEBHOOKS_SIGNATURE_MAX]) {
        uint8_t key[96], mac[HMAC_SHA256_SIZE];
        char ts[24];
        if (strncmp(secret, "whsec_", 6) != 0)
                return -EINVAL;
        int n = base64_decode(secret + 6, key, sizeof(key));
        if (n <= 0)
                return -EINVAL;
        int tl = snprintf(ts, sizeof(ts), "%lld", (long long)timestamp);
        hmac_sha256_v(key, (size_t)n, (const void *const[]){msg_id, ".", ts, ".", body},
                      (const size_t[]){strlen(msg_id), 1, (size_t)tl, 1, body_len}, 5, mac);
        explicit_bzero(key, sizeof(key));
        memcpy(out, "v1,", 3);
        base64_encode(mac, sizeof(mac), out + 3);
        return 0;
}

int64_t webhooks_backoff_s(int attempts) {
        int64_t s = WEBHOOKS_RETRY_FIRST_S;
        for (int i = 1; i < attempts && s < WEBHOOKS_RETRY_MAX_S; i++)
                s *= 2;
        return s < WEBHOOKS_RETRY_MAX_S ? s : WEBHOOKS_RETRY_MAX_S;
}

/* The address policy, where curl is about to connect: every address a name resolves to passes here. */
static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr) {
        struct transfer *t = clientp;
        (void)purpose;
        if (!netaddr_allowed(&addr->addr, &t->w->allow)) {
                char text[64];
                netaddr_format(&addr->addr, text, sizeof(text));
                snprintf(t->refused, sizeof(t->refused),
                         "refused to connect to internal address %s (allow it with --webhook-allow)", text);
                return CURL_SOCKET_BAD;
        }
        return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *userdata) {
        (void)ptr;
        (void)userdata;
        return size * nmemb; /* the answer's body is not read: only its status counts */
}

static void transfer_free(struct transfer *t) {
        if (!t)
                return;
        if (t->easy) {
                curl_multi_remove_handle(t->w->multi, t->easy);
                curl_easy_cleanup(t->easy);
        }
        curl_slist_free_all(t->headers);
        store_webhook_delivery_free(t->d);
        free(t);
}

static void record(struct webhooks *w, const struct store_webhook_delivery *d, bool delivered, int status,
                   const char *why) {
        struct store_webhook_attempt a = {.delivered = delivered, .status = status, .error = why};
        int64_t now = ft_now_unix_ms();
        if (!delivered) {
                uint32_t rnd = 0;
                (void)!getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK);
                int64_t wait_ms = webhooks_backoff_s(d->attempts) * 1000;
                wait_ms += (int64_t)(rnd % 1000) * wait_ms / 5000; /* up to +20%: retries of many do not align */
                if (now + wait_ms <= d->created_at + (int64_t)WEBHOOKS_RETRY_WINDOW_S * 1000)
                        a.retry_at = now + wait_ms;
        }
        api_metrics_webhook_attempt(delivered    ? API_METRICS_WEBHOOK_DELIVERED
                                    : a.retry_at ? API_METRICS_WEBHOOK_RETRY
                                                 : API_METRICS_WEBHOOK_GIVEN_UP);
        struct ft_error err = {0};
        int r = store_webhook_attempt_done(w->store, d, &a, &err);
        if (r == -ESTALE)
                log_debug("webhook %s: %s: %s", d->webhook_id, d->msg_id, err.message);
        else if (r < 0)
                log_warning("webhook %s: cannot record delivery %s: %s", d->webhook_id, d->msg_id, err.message);
        else if (delivered)
                log_debug("webhook %s: %s %s delivered (HTTP %d, attempt %d)", d->webhook_id, d->event_type, d->msg_id,
                          status, d->attempts);
        else if (a.retry_at)
                log_info("webhook %s: %s %s attempt %d failed (%s), retry in %llds", d->webhook_id, d->event_type,
                         d->msg_id, d->attempts, why, (long long)((a.retry_at - now) / 1000));
        else
                log_warning("webhook %s: %s %s given up after %d attempts (%s)", d->webhook_id, d->event_type,
                            d->msg_id, d->attempts, why);
}

static int transfer_start(struct webhooks *w, struct store_webhook_delivery *d) {
        struct transfer *t = calloc(1, sizeof(*t));
        char sig[WEBHOOKS_SIGNATURE_MAX], line[256];
        if (!t) {
                store_webhook_delivery_free(d);
                return -ENOMEM;
        }
        t->w = w;
        t->d = d;
        int64_t now_s = ft_now_unix_ms() / 1000;
        size_t len = strlen(d->payload);
        if (webhooks_sign(d->secret, d->msg_id, now_s, d->payload, len, sig) < 0) {
                record(w, d, false, 0, "the endpoint's secret is not whsec_ + base64");
                transfer_free(t);
                return 0;
        }
        static const char *const fixed[] = {"Content-Type: application/json",
                                            "User-Agent: finetuned/" FINETUNED_VERSION, "Expect:"};
        for (size_t i = 0; i < ARRAY_SIZE(fixed); i++)
                t->headers = curl_slist_append(t->headers, fixed[i]);
        snprintf(line, sizeof(line), "webhook-id: %s", d->msg_id);
        t->headers = curl_slist_append(t->headers, line);
        snprintf(line, sizeof(line), "webhook-timestamp: %lld", (long long)now_s);
        t->headers = curl_slist_append(t->headers, line);
        snprintf(line, sizeof(line), "webhook-signature: %s", sig);
        t->headers = curl_slist_append(t->headers, line);
        t->easy = curl_easy_init();
        if (!t->headers || !t->easy) {
                transfer_free(t);
                return -ENOMEM;
        }
        CURL *e = t->easy;
        curl_easy_setopt(e, CURLOPT_URL, d->url);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(e, CURLOPT_PROXY, ""); /* never through http_proxy from the environment */
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)WEBHOOKS_CONNECT_TIMEOUT_S);
        curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)WEBHOOKS_TIMEOUT_S);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, d->payload);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
        curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, t);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
        curl_easy_setopt(e, CURLOPT_PRIVATE, t);
        if (curl_multi_add_handle(w->multi, e) != CURLM_OK) {
                record(w, d, false, 0, "cannot start the transfer");
                transfer_free(t);
                return 0;
        }
        for (unsigned i = 0; i < WEBHOOKS_IN_FLIGHT; i++)
                if (!w->slots[i]) {
                        w->slots[i] = t;
                        break;
                }
        w->in_flight++;
        return 0;
}

static void transfer_done(struct webhooks *w, CURL *easy, CURLcode result) {
        struct transfer *t = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
        if (!t)
                return;
        long status = 0;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        char why[ERROR_TEXT_MAX];
        bool delivered = result == CURLE_OK && status >= 200 && status < 300;
        if (result != CURLE_OK)
                snprintf(why, sizeof(why), "%s",
                         t->refused[0]  ? t->refused
                         : t->errbuf[0] ? t->errbuf
                                        : curl_easy_strerror(result));
        else
                snprintf(why, sizeof(why), delivered ? "" : "HTTP %ld", status);
        record(w, t->d, delivered, (int)status, why);
        for (unsigned i = 0; i < WEBHOOKS_IN_FLIGHT; i++)
                if (w->slots[i] == t)
                        w->slots[i] = NULL;
        w->in_flight--;
        transfer_free(t);
}

/* Any job changed: an event (and with it an outbox row) may have been committed. Never blocks. */
static void on_change(const char *job_id, void *userdata) {
        (void)job_id;
        struct webhooks *w = userdata;
        curl_multi_wakeup(w->multi);
}

/* Claim what is due, if anything: a read first, so that an idle sender never takes the write lock the workers
 * and the API write under. */
static void claim_more(struct webhooks *w) {
        if (w->in_flight >= WEBHOOKS_IN_FLIGHT)
                return;
        struct store_webhook_delivery_list l = {0};
        struct ft_error err = {0};
        int64_t due = 0;
        if (store_webhook_next_due(w->store, &due, &err) < 0) {
                log_warning("webhooks: cannot read the outbox: %s", err.message);
                return;
        }
        if (due == 0 || due > ft_now_unix_ms())
                return;
        if (store_webhook_claim(w->store, WEBHOOKS_IN_FLIGHT - w->in_flight, CLAIM_LEASE_MS, &l, &err) < 0) {
                log_warning("webhooks: cannot claim deliveries: %s", err.message);
                return;
        }
        for (size_t i = 0; i < l.n; i++) {
                struct store_webhook_delivery *d = l.items[i];
                l.items[i] = NULL;
                if (transfer_start(w, d) < 0)
                        log_warning("webhooks: out of memory starting a delivery");
        }
        l.n = 0;
        store_webhook_delivery_list_deinit(&l);
}

static void *sender_main(void *arg) {
        struct webhooks *w = arg;
        int64_t last_prune = 0;
        while (!atomic_load(&w->stop)) {
                int64_t now = ft_now_unix_ms();
                if (now - last_prune >= PRUNE_INTERVAL_MS) {
                        struct ft_error err = {0};
                        int removed = 0;
                        if (store_webhook_prune(w->store, (int64_t)WEBHOOKS_KEEP_LOG_S * 1000, &removed, &err) < 0)
                                log_warning("webhooks: prune: %s", err.message);
                        else if (removed)
                                log_info("webhooks: pruned %d old deliveries", removed);
                        last_prune = now;
                }
                claim_more(w);
                int running = 0;
                curl_multi_perform(w->multi, &running);
                CURLMsg *m;
                int left;
                while ((m = curl_multi_info_read(w->multi, &left)))
                        if (m->msg == CURLMSG_DONE)
                                transfer_done(w, m->easy_handle, m->data.result);
                if (atomic_load(&w->stop))
                        break;
                curl_multi_poll(w->multi, NULL, 0, POLL_MS, NULL);
        }
        return NULL;
}

static void curl_init_once(void) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
}

int webhooks_start(const struct webhooks_options *opts, struct webhooks **ret, struct ft_error *err) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, curl_init_once); /* on the main thread, before the sender */
        struct webhooks *w = calloc(1, sizeof(*w));
        if (!w)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        snprintf(w->state_dir, sizeof(w->state_dir), "%s", opts->state_dir);
        if (opts->allow)
                w->allow = *opts->allow;
        int r = store_open(w->state_dir, &w->store, err);
        if (r < 0) {
                free(w);
                return r;
        }
        w->multi = curl_multi_init();
        if (!w->multi) {
                store_close(w->store);
                free(w);
                return ft_error_set(err, -ENOMEM, NULL, "webhooks: cannot initialize libcurl");
        }
        curl_multi_setopt(w->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)WEBHOOKS_IN_FLIGHT);
        r = store_subscribe(w->store, on_change, w, &w->sub, err);
        if (r == 0) {
                r = -pthread_create(&w->thread, NULL, sender_main, w);
                if (r < 0) {
                        store_unsubscribe(w->sub);
                        ft_error_set(err, r, NULL, "webhooks: cannot start the sender thread");
                }
        }
        if (r < 0) {
                curl_multi_cleanup(w->multi);
                store_close(w->store);
                free(w);
                return r;
        }
        *ret = w;
        return 0;
}

void webhooks_stop(struct webhooks *w) {
        if (!w)
                return;
        atomic_store(&w->stop, true);
        curl_multi_wakeup(w->multi);
        pthread_join(w->thread, NULL);
        store_unsubscribe(w->sub);
        for (unsigned i = 0; i < WEBHOOKS_IN_FLIGHT; i++)
                transfer_free(w->slots[i]);
        curl_multi_cleanup(w->multi);
        store_close(w->store);
        free(w);
}

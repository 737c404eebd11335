/* webhooks.c - webhook endpoints and their outbox: the delivery rows written
 * in the transaction of each job event (store_webhook_outbox_locked, called
 * by jobs.c's event inserts), the sender's claim with a lease and its
 * fenced result, the delivery log, pruning.
 * Not for: signing or sending (daemon/webhooks.c), URL policy (api/webhooks.c
 * and the daemon check scheme and addresses). */
#include "store/internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define WEBHOOK_COLS "id, url, description, event_types, secret, created_at"
#define DELIVERY_COLS                                                                                                  \
        "d.seq, d.msg_id, d.endpoint_id, d.event_type, d.job_id, d.payload, d.state, d.attempts, "                     \
        "d.next_attempt_at, d.last_status, d.last_error, d.created_at, d.updated_at"
#define PAYLOAD_FIXED_MAX 512 /* the payload besides the event data and the labels */

static const char *const delivery_state_names[] = {
        [STORE_DELIVERY_PENDING] = "pending",
        [STORE_DELIVERY_SUCCEEDED] = "succeeded",
        [STORE_DELIVERY_FAILED] = "failed",
};

const char *store_delivery_state_name(enum store_delivery_state st) {
        return (unsigned)st < ARRAY_SIZE(delivery_state_names) ? delivery_state_names[st] : "unknown";
}

const char *store_webhook_type_of(const char *event_type, enum store_job_state state) {
        if (!event_type)
                return NULL;
        if (strcmp(event_type, "epoch") == 0)
                return "job.epoch";
        if (strcmp(event_type, "warning") == 0)
                return "job.warning";
        if (strcmp(event_type, "status") != 0 || (unsigned)state >= STORE_JOB_STATE_COUNT)
                return NULL;
        /* every state a job rests in or ends in; not the passing "cancelling" */
        static const char *const types[][2] = {
                {"queued", "job.queued"},       {"running", "job.running"}, {"paused", "job.paused"},
                {"succeeded", "job.succeeded"}, {"failed", "job.failed"},   {"cancelled", "job.cancelled"},
        };
        const char *name = store_job_state_name(state);
        for (size_t i = 0; i < ARRAY_SIZE(types); i++)
                if (strcmp(types[i][0], name) == 0)
                        return types[i][1];
        return NULL;
}

/* ISO 8601 UTC with milliseconds, the payload's "timestamp". */
static void iso_time(int64_t ms, char out[32]) {
        time_t t = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

static int delivery_insert_locked(struct store *s, const char *sql, const char *msg_id, const char *type,
                                  const char *job_id, const char *payload, int64_t now, const char *arg,
                                  struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(s, sql, err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, msg_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, job_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, payload, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, now);
        sqlite3_bind_text(st, 6, arg, -1, SQLITE_STATIC);
        return store_step_done(s, st, err);
}

int store_webhook_outbox_locked(struct store *s, const char *job_id, int64_t seq, const char *event_type,
                                enum store_job_state state, const char *data_json, int64_t created_at,
                                struct ft_error *err) {
        const char *type = store_webhook_type_of(event_type, state);
        if (!type)
                return 0;
        char like[STORE_EVENT_TYPE_MAX + 8];
        snprintf(like, sizeof(like), "%%,%s,%%", type);

        /* the common case: nobody listens, one indexed probe of a table of at most STORE_WEBHOOKS_MAX rows */
        sqlite3_stmt *st = store_stmt(s, "SELECT 1 FROM webhook_endpoints WHERE event_types LIKE ?1 LIMIT 1", err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, like, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        sqlite3_reset(st);
        if (r == SQLITE_DONE)
                return 0;
        if (r != SQLITE_ROW)
                return store_db_error(s, err, "read webhooks");

        /* the job's state now (an epoch happens while running; a status event reports its own) and labels */
        char job_state[32] = "", *metadata = NULL;
        st = store_stmt(s, "SELECT state, metadata_json FROM jobs WHERE id = ?1", err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
        r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
                store_col_copy(st, 0, job_state, sizeof(job_state));
                metadata = store_col_strdup(st, 1);
        }
        sqlite3_reset(st);
        if (r != SQLITE_ROW)
                return r == SQLITE_DONE ? 0 : store_db_error(s, err, "read job");
        if (!metadata)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        if (strcmp(event_type, "status") == 0)
                snprintf(job_state, sizeof(job_state), "%s", store_job_state_name(state));

        char when[32], msg_id[STORE_ID_MAX];
        iso_time(created_at, when);
        r = store_id_new("msg_", msg_id, err);
        size_t size = PAYLOAD_FIXED_MAX + strlen(metadata) + strlen(data_json);
        char *payload = r < 0 ? NULL : malloc(size);
        if (!payload) {
                free(metadata);
                return r < 0 ? r : ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        /* every piece is JSON already (the store checked the event data and the labels) or a name we made */
        snprintf(payload, size,
                 "{\"type\":\"%s\",\"timestamp\":\"%s\",\"data\":{\"object\":\"job\",\"id\":\"%s\",\"state\":\"%s\","
                 "\"metadata\":%s,\"event\":{\"seq\":%lld,\"type\":\"%s\",\"data\":%s,\"created_at\":%lld}}}",
                 type, when, job_id, job_state, metadata, (long long)seq, event_type, data_json,
                 (long long)(created_at / 1000));
        free(metadata);
        r = delivery_insert_locked(
                s,
                "INSERT INTO webhook_deliveries (msg_id, endpoint_id, event_type, job_id, payload, state, attempts,"
                " next_attempt_at, last_status, last_error, created_at, updated_at)"
                " SELECT ?1, id, ?2, ?3, ?4, 'pending', 0, ?5, 0, '', ?5, ?5 FROM webhook_endpoints"
                " WHERE event_types LIKE ?6",
                msg_id, type, job_id, payload, created_at, like, err);
        free(payload);
        return r;
}

/* ---- endpoints --------------------------------------------------------------------------- */

void store_webhook_free(struct store_webhook *w) {
        if (!w)
                return;
        free(w->url);
        free(w->description);
        free(w->event_types);
        free(w->secret);
        free(w);
}

static int webhook_from_row(sqlite3_stmt *st, struct store_webhook **ret, struct ft_error *err) {
        struct store_webhook *w = calloc(1, sizeof(*w));
        if (!w)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        store_col_copy(st, 0, w->id, sizeof(w->id));
        w->url = store_col_strdup(st, 1);
        w->description = store_col_strdup(st, 2);
        char *types = store_col_strdup(st, 3); /* ",a,b," -> "a,b" */
        if (types) {
                size_t n = strlen(types);
                if (n >= 2 && types[0] == ',' && types[n - 1] == ',') {
                        memmove(types, types + 1, n - 2);
                        types[n - 2] = '\0';
                }
        }
        w->event_types = types;
        w->secret = store_col_strdup(st, 4);
        w->created_at = sqlite3_column_int64(st, 5);
        if (!w->url || !w->description || !w->event_types || !w->secret) {
                store_webhook_free(w);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        *ret = w;
        return 0;
}

static int webhook_get_locked(struct store *s, const char *id, struct store_webhook **ret, struct ft_error *err) {
        sqlite3_stmt *st = store_stmt(s, "SELECT " WEBHOOK_COLS " FROM webhook_endpoints WHERE id = ?1", err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, id ? id : "", -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW)
                r = webhook_from_row(st, ret, err);
        else if (r == SQLITE_DONE)
                r = ft_error_set(err, -ENOENT, "id", "webhook '%.64s' does not exist", id ? id : "");
        else
                r = store_db_error(s, err, "read webhook");
        sqlite3_reset(st);
        return r;
}

int store_webhook_get(struct store *s, const char *id, struct store_webhook **ret, struct ft_error *err) {
        STORE_PG_UNSUPPORTED(s, "store_webhook_get", err);
        return webhook_get_locked(s, id, ret, err);
}

int store_webhook_create(struct store *s, const struct store_webhook_new *in, struct store_webhook **ret,
                         struct ft_error *err) {
        STORE_PG_UNSUPPORTED(s, "store_webhook_create", err);
        char id[STORE_ID_MAX], types[STORE_WEBHOOK_TYPES_MAX + 3];
        int r;
        if ((r = store_check_string("url", in->url, STORE_WEBHOOK_URL_MAX, true, err)) < 0 ||
            (r = store_check_string("description", in->description, STORE_WEBHOOK_DESCRIPTION_MAX, false, err)) < 0 ||
            (r = store_check_string("event_types", in->event_types, STORE_WEBHOOK_TYPES_MAX, true, err)) < 0 ||
            (r = store_check_string("secret", in->secret, STORE_WEBHOOK_SECRET_MAX, true, err)) < 0)
                return r;
        snprintf(types, sizeof(types), ",%s,", in->event_types);
        r = store_id_new("wh_", id, err);
        if (r < 0)
                return r;
        r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        sqlite3_stmt *st = store_stmt(s, "SELECT COUNT(*) FROM webhook_endpoints", err);
        if (!st) {
                r = -EIO;
                goto fail;
        }
        r = sqlite3_step(st);
        int64_t n = r == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
        sqlite3_reset(st);
        if (n < 0) {
                r = store_db_error(s, err, "count webhooks");
                goto fail;
        }
        if (n >= STORE_WEBHOOKS_MAX) {
                r = ft_error_set(err, -ENOSPC, "url", "there are %lld webhooks already: at most %d", (long long)n,
                                 STORE_WEBHOOKS_MAX);
                goto fail;
        }
        st = store_stmt(s,
                        "INSERT INTO webhook_endpoints (id, url, description, event_types, secret, created_at)"
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        err);
        if (!st) {
                r = -EIO;
                goto fail;
        }
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, in->url, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, in->description ? in->description : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, types, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, in->secret, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, store_now_ms());
        r = store_step_done(s, st, err);
        if (r < 0)
                goto fail;
        struct store_webhook *w = NULL;
        if (ret && (r = webhook_get_locked(s, id, &w, err)) < 0)
                goto fail;
        r = store_tx_commit(s, err);
        if (r < 0) {
                store_webhook_free(w);
                return r;
        }
        if (ret)
                *ret = w;
        return 0;
fail:
        store_tx_rollback(s);
        return r;
}

static int webhook_add(struct store *s, sqlite3_stmt *st, void *list, struct ft_error *err) {
        (void)s;
        struct store_webhook_list *l = list;
        int r = webhook_from_row(st, &l->items[l->n], err);
        if (r == 0)
                l->n++;
        return r;
}

int store_webhook_list(struct store *s, const struct store_page *page, struct store_webhook_list *ret,
                       struct ft_error *err) {
        STORE_PG_UNSUPPORTED(s, "store_webhook_list", err);
        struct store_webhook_list l = {0};
        unsigned limit;
        int64_t after = INT64_MAX;
        int r = store_page_limit(page, &limit, err);
        if (r < 0)
                return r;
        if (page && page->after && *page->after) {
                r = store_cursor_seq(s, "SELECT seq FROM webhook_endpoints WHERE id = ?1", "webhook", page->after,
                                     &after, err);
                if (r < 0)
                        return r;
        }
        sqlite3_stmt *st = store_stmt(
                s, "SELECT " WEBHOOK_COLS " FROM webhook_endpoints WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2", err);
        if (!st)
                return -EIO;
        sqlite3_bind_int64(st, 1, after);
        sqlite3_bind_int(st, 2, (int)limit + 1);
        l.items = calloc(limit, sizeof(*l.items));
        r = l.items ? store_page_rows(s, st, limit, webhook_add, &l, &l.has_more, "list webhooks", err)
                    : ft_error_set(err, -ENOMEM, NULL, "out of memory");
        sqlite3_reset(st);
        if (r < 0) {
                store_webhook_list_deinit(&l);
                return r;
        }
        *ret = l;
        return 0;
}

void store_webhook_list_deinit(struct store_webhook_list *l) {
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++)
                store_webhook_free(l->items[i]);
        free(l->items);
        memset(l, 0, sizeof(*l));
}

int store_webhook_delete(struct store *s, const char *id, struct ft_error *err) {
        STORE_PG_UNSUPPORTED(s, "store_webhook_delete", err);
        int r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        static const char *const deletes[] = {
                "DELETE FROM webhook_deliveries WHERE endpoint_id = ?1",
                "DELETE FROM webhook_endpoints WHERE id = ?1",
        };
        for (size_t i = 0; i < ARRAY_SIZE(deletes); i++) {
                sqlite3_stmt *st = store_stmt(s, deletes[i], err);
                if (!st) {
                        r = -EIO;
                        goto fail;
                }
                sqlite3_bind_text(st, 1, id ? id : "", -1, SQLITE_STATIC);
                r = store_step_done(s, st, err);
                if (r < 0)
                        goto fail;
        }
        if (sqlite3_changes(s->db) == 0) {
                r = ft_error_set(err, -ENOENT, "id", "webhook '%.64s' does not exist", id ? id : "");
                goto fail;
        }
        return store_tx_commit(s, err);
fail:
        store_tx_rollback(s);
        return r;
}

int store_webhook_test(struct store *s, const char *id, char ret_msg_id[STORE_ID_MAX], struct ft_error *err) {
        STORE_PG_UNSUPPORTED(s, "store_webhook_test", err);
        char msg_id[STORE_ID_MAX], when[32], payload[PAYLOAD_FIXED_MAX];
        int64_t now = store_now_ms();
        int r = store_id_new("msg_", msg_id, err);
        if (r < 0)
                return r;
        r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        struct store_webhook *w = NULL;
        r = webhook_get_locked(s, id, &w, err);
        if (r < 0)
                goto fail;
        iso_time(now, when);
        snprintf(payload, sizeof(payload),
                 "{\"type\":\"webhook.test\",\"timestamp\":\"%s\",\"data\":{\"object\":\"webhook\",\"id\":\"%s\"}}",
                 when, w->id);
        store_webhook_free(w);
        r = delivery_insert_locked(s,
                                   "INSERT INTO webhook_deliveries (msg_id, endpoint_id, event_type, job_id, payload,"
                                   " state, attempts, next_attempt_at, last_status, last_error, created_at,"
                                   " updated_at) VALUES (?1, ?6, ?2, ?3, ?4, 'pending', 0, ?5, 0, '', ?5, ?5)",
                                   msg_id, "webhook.test", "", payload, now, id, err);
        if (r < 0)
                goto fail;
        r = store_tx_commit(s, err);
        if (r == 0 && ret_msg_id)
                memcpy(ret_msg_id, msg_id, STORE_ID_MAX);
        return r;
fail:
        store_tx_rollback(s);
        return r;
}

/* ---- deliveries ---------------------------------------------------------------------------- */

void store_webhook_delivery_free(struct store_webhook_delivery *d) {
        if (!d)
                return;
        free(d->payload);
        free(d->last_error);
        free(d->url);
        free(d->secret);
        free(d);
}

static enum store_delivery_state delivery_state_of(const unsigned char *t) {
        for (size_t i = 0; i < ARRAY_SIZE(delivery_state_names); i++)
                if (t && strcmp((const char *)t, delivery_state_names[i]) == 0)
                        return (enum store_delivery_state)i;
        return STORE_DELIVERY_FAILED;
}

/* DELIVERY_COLS, then (claim only) url and secret at 13 and 14. */
static int delivery_from_row(sqlite3_stmt *st, bool claim, struct store_webhook_delivery **ret, struct ft_error *err) {
        struct store_webhook_delivery *d = calloc(1, sizeof(*d));
        if (!d)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        d->seq = sqlite3_column_int64(st, 0);
        store_col_copy(st, 1, d->msg_id, sizeof(d->msg_id));
        store_col_copy(st, 2, d->webhook_id, sizeof(d->webhook_id));
        store_col_copy(st, 3, d->event_type, sizeof(d->event_type));
        store_col_copy(st, 4, d->job_id, sizeof(d->job_id));
        d->payload = store_col_strdup(st, 5);
        d->state = delivery_state_of(sqlite3_column_text(st, 6));
        d->attempts = sqlite3_column_int(st, 7);
        d->next_attempt_at = sqlite3_column_int64(st, 8);
        d->last_status = sqlite3_column_int(st, 9);
        d->last_error = store_col_strdup(st, 10);
        d->created_at = sqlite3_column_int64(st, 11);
        d->updated_at = sqlite3_column_int64(st, 12);
        if (claim) {
                d->url = store_col_strdup(st, 13);
                d->secret = store_col_strdup(st, 14);
        }
        if (!d->payload || !d->last_error || (claim && (!d->url || !d->secret))) {
                store_webhook_delivery_free(d);
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        }
        *ret = d;
        return 0;
}

static int delivery_add(struct store *s, sqlite3_stmt *st, void *list, struct ft_error *err) {
        (void)s;
        struct store_webhook_delivery_list *l = list;
        int r = delivery_from_row(st, false, &l->items[l->n], err);
        if (r == 0)
                l->n++;
        return r;
}

void store_webhook_delivery_list_deinit(struct store_webhook_delivery_list *l) {
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++)
                store_webhook_delivery_free(l->items[i]);
        free(l->items);
        memset(l, 0, sizeof(*l));
}

int store_webhook_deliveries(struct store *s, const char *id, const struct store_page *page,
                             struct store_webhook_delivery_list *ret, struct ft_error *err) {
        STORE_PG_UNSUPPORTED(s, "store_webhook_deliveries", err);
        struct store_webhook_delivery_list l = {0};
        struct store_webhook *w = NULL;
        unsigned limit;
        int64_t after = INT64_MAX;
        int r = store_page_limit(page, &limit, err);
        if (r == 0)
                r = webhook_get_locked(s, id, &w, err);
        store_webhook_free(w);
        if (r < 0)
                return r;
        if (page && page->after && *page->after) {
                sqlite3_stmt *st =
                        store_stmt(s, "SELECT seq FROM webhook_deliveries WHERE endpoint_id = ?1 AND msg_id = ?2", err);
                if (!st)
                        return -EIO;
                sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, page->after, -1, SQLITE_STATIC);
                r = sqlite3_step(st);
                if (r == SQLITE_ROW)
                        after = sqlite3_column_int64(st, 0);
                sqlite3_reset(st);
                if (r == SQLITE_DONE)
                        return ft_error_set(err, -ENOENT, "after",
                                            "'after' names delivery '%.64s', which this webhook does not have",
                                            page->after);
                if (r != SQLITE_ROW)
                        return store_db_error(s, err, "read cursor");
        }
        sqlite3_stmt *st = store_stmt(s,
                                      "SELECT " DELIVERY_COLS " FROM webhook_deliveries d WHERE d.endpoint_id = ?1"
                                      " AND d.seq < ?2 ORDER BY d.seq DESC LIMIT ?3",
                                      err);
        if (!st)
                return -EIO;
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, after);
        sqlite3_bind_int(st, 3, (int)limit + 1);
        l.items = calloc(limit, sizeof(*l.items));
        r = l.items ? store_page_rows(s, st, limit, delivery_add, &l, &l.has_more, "list deliveries", err)
                    : ft_error_set(err, -ENOMEM, NULL, "out of memory");
        sqlite3_reset(st);
        if (r < 0) {
                store_webhook_delivery_list_deinit(&l);
                return r;
        }
        *ret = l;
        return 0;
}

int store_webhook_claim(struct store *s, unsigned max, int64_t lease_ms, struct store_webhook_delivery_list *ret,
                        struct ft_error *err) {
        STORE_PG_UNSUPPORTED(s, "store_webhook_claim", err);
        struct store_webhook_delivery_list l = {0};
        if (max == 0 || max > STORE_PAGE_MAX || lease_ms <= 0)
                return ft_error_set(err, -EINVAL, "max", "claim 1 to %d deliveries with a positive lease",
                                    STORE_PAGE_MAX);
        int64_t now = store_now_ms();
        int r = store_tx_begin(s, err);
        if (r < 0)
                return r;
        sqlite3_stmt *st = store_stmt(s,
                                      "SELECT " DELIVERY_COLS ", w.url, w.secret FROM webhook_deliveries d"
                                      " JOIN webhook_endpoints w ON w.id = d.endpoint_id"
                                      " WHERE d.state = 'pending' AND d.next_attempt_at <= ?1"
                                      " ORDER BY d.next_attempt_at LIMIT ?2",
                                      err);
        if (!st) {
                r = -EIO;
                goto fail;
        }
        sqlite3_bind_int64(st, 1, now);
        sqlite3_bind_int(st, 2, (int)max);
        l.items = calloc(max, sizeof(*l.items));
        if (!l.items) {
                sqlite3_reset(st);
                r = ft_error_set(err, -ENOMEM, NULL, "out of memory");
                goto fail;
        }
        while ((r = sqlite3_step(st)) == SQLITE_ROW && l.n < max) {
                r = delivery_from_row(st, true, &l.items[l.n], err);
                if (r < 0)
                        break;
                l.n++;
        }
        sqlite3_reset(st);
        if (r < 0)
                goto fail;
        if (r != SQLITE_DONE && r != SQLITE_ROW) {
                r = store_db_error(s, err, "claim deliveries");
                goto fail;
        }
        for (size_t i = 0; i < l.n; i++) {
                struct store_webhook_delivery *d = l.items[i];
                st = store_stmt(s,
                                "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ?2,"
                                " updated_at = ?3 WHERE seq = ?1",
                                err);
                if (!st) {
                        r = -EIO;
                        goto fail;
                }
                d->attempts++;
                d->next_attempt_at = now + lease_ms;
                sqlite3_bind_int64(st, 1, d->seq);
                sqlite3_bind_int64(st, 2, d->next_attempt_at);
                sqlite3_bind_int64(st, 3, now);
                r = store_step_done(s, st, err);
                if (r < 0)
                        goto fail;
        }
        r = store_tx_commit(s, err);
        if (r < 0) {
                store_webhook_delivery_list_deinit(&l);
                return r;
        }
        *ret = l;
        return 0;
fail:
        store_tx_rollback(s);
        store_webhook_delivery_list_deinit(&l);
        return r;
}

int store_webhook_attempt_done(struct store *s, const struct store_webhook_delivery *claimed,
                               const struct store_webhook_attempt *a, struct ft_error *err) {
        STORE_PG_UNSUPPORTED(s, "store_webhook_attempt_done", err);
        sqlite3_stmt *st = store_stmt(s,
                                      "UPDATE webhook_deliveries SET state = ?3, next_attempt_at = ?4,"
                                      " last_status = ?5, last_error = ?6, updated_at = ?7"
                                      " WHERE seq = ?1 AND attempts = ?2 AND next_attempt_at = ?8"
                                      " AND state = 'pending'",
                                      err);
        if (!st)
                return -EIO;
        int64_t now = store_now_ms();
        const char *state = a->delivered ? "succeeded" : a->retry_at > 0 ? "pending" : "failed";
        char why[256];
        snprintf(why, sizeof(why), "%s", a->error ? a->error : "");
        sqlite3_bind_int64(st, 1, claimed->seq);
        sqlite3_bind_int(st, 2, claimed->attempts);
        sqlite3_bind_int64(st, 8, claimed->next_attempt_at);
        sqlite3_bind_text(st, 3, state, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, a->delivered ? now : a->retry_at > 0 ? a->retry_at : now);
        sqlite3_bind_int(st, 5, a->status);
        sqlite3_bind_text(st, 6, why, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, now);
        int r = store_step_done(s, st, err);
        if (r < 0)
                return r;
        if (sqlite3_changes(s->db) == 0)
                return ft_error_set(err, -ESTALE, "attempts",
                                    "delivery %lld is no longer held by attempt %d (claimed again, or deleted)",
                                    (long long)claimed->seq, claimed->attempts);
        return 0;
}

int store_webhook_next_due(struct store *s, int64_t *ret, struct ft_error *err) {
        STORE_PG_UNSUPPORTED(s, "store_webhook_next_due", err);
        sqlite3_stmt *st =
                store_stmt(s, "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE state = 'pending'", err);
        if (!st)
                return -EIO;
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW)
                *ret = sqlite3_column_int64(st, 0); /* NULL reads as 0 */
        sqlite3_reset(st);
        return r == SQLITE_ROW ? 0 : store_db_error(s, err, "read deliveries");
}

int store_webhook_prune(struct store *s, int64_t max_age_ms, int *ret_removed, struct ft_error *err) {
        STORE_PG_UNSUPPORTED(s, "store_webhook_prune", err);
        sqlite3_stmt *st =
                store_stmt(s, "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND updated_at < ?1", err);
        if (!st)
                return -EIO;
        sqlite3_bind_int64(st, 1, store_now_ms() - max_age_ms);
        int r = store_step_done(s, st, err);
        if (r == 0 && ret_removed)
                *ret_removed = sqlite3_changes(s->db);
        return r;
}

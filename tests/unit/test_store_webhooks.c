/* test_store_webhooks.c - the webhook outbox and job labels in the store: a
 * delivery row per subscribed endpoint written with the event itself (and
 * none for an endpoint that does not subscribe, none for an event the fence
 * refuses), one msg_id per event across endpoints, the claim's lease and the
 * fenced result (a second result for one claim is refused), retry and
 * give-up, the endpoint cap, delete, prune; labels stored, shown, filtered
 * (one pair, two pairs, with a state), limits. */
#include <errno.h>
#include <time.h>

#include "tests/unit/store_fixture.h"

static int64_t store_now_ms_for_tests(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct store_job *enqueue(struct store *s, const struct refs *rf, const struct store_metadata_pair *md, size_t n,
                                 const char *json) {
        struct ft_error err = {0};
        struct store_job *j = NULL;
        struct store_job_new in = {.spec_json = "{}",
                                   .model_id = rf->model,
                                   .training_file = rf->dataset,
                                   .metadata = md,
                                   .n_metadata = n,
                                   .metadata_json = json,
                                   .suffix = "v1"};
        if (store_job_enqueue(s, &in, &j, &err) < 0)
                printf("# enqueue: %s\n", err.message);
        return j;
}

static size_t pending_for(struct store *s, const char *wh, const char *type) {
        struct store_webhook_delivery_list l = {0};
        struct ft_error err = {0};
        size_t n = 0;
        if (store_webhook_deliveries(s, wh, &(struct store_page){.limit = 100}, &l, &err) < 0)
                return (size_t)-1;
        for (size_t i = 0; i < l.n; i++)
                n += !type || strcmp(l.items[i]->event_type, type) == 0;
        store_webhook_delivery_list_deinit(&l);
        return n;
}

int main(void) {
        char *dir = tmpdir_make("webhooks");
        struct store *s = NULL;
        struct ft_error err = {0};
        struct refs rf;
        ok(store_open_with(dir, &(struct store_options){.relaxed_sync = true}, &s, &err) == 0, "open");
        refs_make(s, &rf);

        /* endpoints */
        struct store_webhook *a = NULL, *b = NULL;
        ok(store_webhook_create(s,
                                &(struct store_webhook_new){.url = "http://127.0.0.1:1/a",
                                                            .event_types = "job.queued,job.succeeded,job.epoch",
                                                            .secret = "whsec_AAAA"},
                                &a, &err) == 0 &&
                   strncmp(a->id, "wh_", 3) == 0 && strcmp(a->event_types, "job.queued,job.succeeded,job.epoch") == 0,
           "create endpoint a: %s", a ? a->event_types : err.message);
        ok(store_webhook_create(s,
                                &(struct store_webhook_new){.url = "http://127.0.0.1:1/b",
                                                            .event_types = "job.succeeded",
                                                            .secret = "whsec_BBBB"},
                                &b, &err) == 0,
           "create endpoint b (succeeded only)");

        /* an event becomes one delivery per subscribed endpoint, in its own transaction */
        struct store_metadata_pair md[] = {{"team", "vision"}, {"run", "7"}};
        struct store_job *j = enqueue(s, &rf, md, 2, "{\"team\":\"vision\",\"run\":\"7\"}");
        ok(j && strcmp(j->metadata_json, "{\"team\":\"vision\",\"run\":\"7\"}") == 0 && strcmp(j->suffix, "v1") == 0,
           "job keeps its labels and suffix");
        ok(pending_for(s, a->id, "job.queued") == 1 && pending_for(s, b->id, NULL) == 0,
           "job.queued: a delivery for a, none for b");

        struct store_job *c = NULL;
        ok(store_job_claim(s, "w1", 60000, &c, &err) == 1, "claim the job");
        ok(pending_for(s, a->id, "job.running") == 0, "job.running: a does not subscribe, no row");
        ok(store_job_epoch_append(s, j->id, c->attempt, 1, "{\"epoch\":1,\"train_loss\":0.5}", NULL, &err) == 0 &&
                   pending_for(s, a->id, "job.epoch") == 1,
           "job.epoch written with the epoch event");
        ok(store_event_append(s, j->id, c->attempt, "warning", "{\"message\":\"loss is nan\"}", NULL, &err) == 0,
           "a warning event (nobody subscribes)");
        ok(store_job_finish(s, j->id, c->attempt, STORE_JOB_SUCCEEDED, "{}", NULL, NULL, NULL, &err) == 0, "finish");
        ok(pending_for(s, a->id, "job.succeeded") == 1 && pending_for(s, b->id, "job.succeeded") == 1,
           "job.succeeded for both");
        ok(store_job_epoch_append(s, j->id, c->attempt, 2, "{\"epoch\":2}", NULL, &err) == -ESTALE &&
                   pending_for(s, a->id, "job.epoch") == 1,
           "an epoch the fence refuses (the job is finished) leaves no delivery");

        struct store_webhook_delivery_list da = {0}, db = {0};
        store_webhook_deliveries(s, a->id, &(struct store_page){.limit = 10}, &da, &err);
        store_webhook_deliveries(s, b->id, &(struct store_page){.limit = 10}, &db, &err);
        ok(da.n == 3 && db.n == 1 && strcmp(da.items[0]->msg_id, db.items[0]->msg_id) == 0 &&
                   strncmp(da.items[0]->msg_id, "msg_", 4) == 0 &&
                   strcmp(da.items[0]->msg_id, da.items[1]->msg_id) != 0,
           "one msg_id per event, shared by both endpoints");
        ok(da.n && strstr(da.items[0]->payload, "\"type\":\"job.succeeded\"") &&
                   strstr(da.items[0]->payload, "\"state\":\"succeeded\"") &&
                   strstr(da.items[0]->payload, "\"metadata\":{\"team\":\"vision\",\"run\":\"7\"}") &&
                   da.items[0]->state == STORE_DELIVERY_PENDING && da.items[0]->url == NULL,
           "payload: type, state, labels: %s", da.n ? da.items[0]->payload : "");
        store_webhook_delivery_list_deinit(&da);
        store_webhook_delivery_list_deinit(&db);

        /* claim: lease, fence, retry, success, give up */
        struct store_webhook_delivery_list cl = {0}, cl2 = {0};
        ok(store_webhook_claim(s, 2, 60000, &cl, &err) == 0 && cl.n == 2 && cl.items[0]->attempts == 1 &&
                   cl.items[0]->url && cl.items[0]->secret && strncmp(cl.items[0]->secret, "whsec_", 6) == 0,
           "claim 2 of 4 with url and secret");
        ok(store_webhook_claim(s, 10, 60000, &cl2, &err) == 0 && cl2.n == 2, "the other 2 only: the first are leased");
        int64_t seq0 = cl.items[0]->seq;
        ok(store_webhook_attempt_done(s, cl.items[0],
                                      &(struct store_webhook_attempt){
                                              .status = 500, .error = "HTTP 500", .retry_at = store_now_ms_for_tests()},
                                      &err) == 0,
           "attempt 1 failed: retry due now");
        ok(store_webhook_attempt_done(s, cl.items[0], &(struct store_webhook_attempt){.delivered = true, .status = 200},
                                      &err) == -ESTALE,
           "a second result for the same attempt: -ESTALE");
        struct store_webhook_delivery_list cl3 = {0};
        ok(store_webhook_claim(s, 10, 60000, &cl3, &err) == 0 && cl3.n == 1 && cl3.items[0]->seq == seq0 &&
                   cl3.items[0]->attempts == 2 && strcmp(cl3.items[0]->msg_id, cl.items[0]->msg_id) == 0,
           "the retry is claimed with attempts 2 and the same msg_id");
        ok(store_webhook_attempt_done(s, cl3.items[0],
                                      &(struct store_webhook_attempt){.delivered = true, .status = 204}, &err) == 0,
           "attempt 2 delivered");
        ok(store_webhook_attempt_done(s, cl.items[1], &(struct store_webhook_attempt){.status = 0, .error = "refused"},
                                      &err) == 0,
           "another given up (retry_at 0)");
        int64_t due = -1;
        ok(store_webhook_next_due(s, &due, &err) == 0 && due > store_now_ms_for_tests(), "next due: the leased ones");
        store_webhook_delivery_list_deinit(&cl);
        store_webhook_delivery_list_deinit(&cl2);
        store_webhook_delivery_list_deinit(&cl3);

        store_webhook_deliveries(s, a->id, &(struct store_page){.limit = 10}, &da, &err);
        size_t ok_n = 0, failed_n = 0;
        for (size_t i = 0; i < da.n; i++) {
                ok_n += da.items[i]->state == STORE_DELIVERY_SUCCEEDED && da.items[i]->last_status == 204;
                failed_n +=
                        da.items[i]->state == STORE_DELIVERY_FAILED && strcmp(da.items[i]->last_error, "refused") == 0;
        }
        ok(ok_n + failed_n >= 1, "the log shows the outcomes");
        /* pages by msg_id */
        struct store_webhook_delivery_list p1 = {0}, p2 = {0};
        ok(store_webhook_deliveries(s, a->id, &(struct store_page){.limit = 2}, &p1, &err) == 0 && p1.n == 2 &&
                   p1.has_more &&
                   store_webhook_deliveries(s, a->id, &(struct store_page){.limit = 2, .after = p1.items[1]->msg_id},
                                            &p2, &err) == 0 &&
                   p2.n == 1 && !p2.has_more,
           "deliveries paginate by msg_id");
        store_webhook_delivery_list_deinit(&p1);
        store_webhook_delivery_list_deinit(&p2);
        store_webhook_delivery_list_deinit(&da);

        char msg[STORE_ID_MAX];
        ok(store_webhook_test(s, b->id, msg, &err) == 0 && pending_for(s, b->id, "webhook.test") == 1,
           "test-send: a webhook.test delivery");
        ok(store_webhook_test(s, "wh_000000000000000000000000", msg, &err) == -ENOENT, "test-send to nothing: -ENOENT");

        /* the cap */
        int made = 2, r = 0;
        while ((r = store_webhook_create(s,
                                         &(struct store_webhook_new){
                                                 .url = "http://x/", .event_types = "job.failed", .secret = "whsec_C"},
                                         NULL, &err)) == 0)
                made++;
        ok(r == -ENOSPC && made == STORE_WEBHOOKS_MAX && strcmp(err.param, "url") == 0, "at most %d endpoints: %s",
           STORE_WEBHOOKS_MAX, err.message);

        /* labels: filter, limits */
        struct store_metadata_pair other[] = {{"team", "audio"}};
        struct store_job *j2 = enqueue(s, &rf, other, 1, "{\"team\":\"audio\"}");
        struct store_job *j3 = enqueue(s, &rf, md, 1, "{\"team\":\"vision\"}");
        struct store_job_list l = {0};
        ok(store_job_list(s, &(struct store_job_filter){.metadata = md, .n_metadata = 1},
                          &(struct store_page){.limit = 10}, &l, &err) == 0 &&
                   l.n == 2 && strcmp(l.items[0]->id, j3->id) == 0 && strcmp(l.items[1]->id, j->id) == 0,
           "metadata[team]=vision: two jobs, newest first");
        store_job_list_deinit(&l);
        ok(store_job_list(s, &(struct store_job_filter){.metadata = md, .n_metadata = 2},
                          &(struct store_page){.limit = 10}, &l, &err) == 0 &&
                   l.n == 1 && strcmp(l.items[0]->id, j->id) == 0,
           "team=vision and run=7: one");
        store_job_list_deinit(&l);
        ok(store_job_list(s,
                          &(struct store_job_filter){
                                  .metadata = md, .n_metadata = 1, .states = STORE_JOB_STATE_BIT(STORE_JOB_QUEUED)},
                          &(struct store_page){.limit = 10}, &l, &err) == 0 &&
                   l.n == 1 && strcmp(l.items[0]->id, j3->id) == 0,
           "team=vision and queued: one");
        store_job_list_deinit(&l);
        ok(store_job_list(s, &(struct store_job_filter){.metadata = md, .n_metadata = 1},
                          &(struct store_page){.limit = 1}, &l, &err) == 0 &&
                   l.n == 1 && l.has_more,
           "pages: has_more");
        store_job_list_deinit(&l);
        ok(store_job_list(s, &(struct store_job_filter){.metadata = md, .n_metadata = 1},
                          &(struct store_page){.limit = 5, .after = j3->id}, &l, &err) == 0 &&
                   l.n == 1 && strcmp(l.items[0]->id, j->id) == 0 && !l.has_more,
           "the next page after the cursor");
        store_job_list_deinit(&l);

        struct store_metadata_pair many[STORE_METADATA_MAX + 1];
        char keys[STORE_METADATA_MAX + 1][8];
        for (int i = 0; i <= STORE_METADATA_MAX; i++) {
                snprintf(keys[i], sizeof(keys[i]), "k%d", i);
                many[i] = (struct store_metadata_pair){keys[i], "v"};
        }
        struct store_job *bad = NULL;
        struct store_job_new in = {.spec_json = "{}",
                                   .model_id = rf.model,
                                   .training_file = rf.dataset,
                                   .metadata = many,
                                   .n_metadata = STORE_METADATA_MAX + 1};
        ok(store_job_enqueue(s, &in, &bad, &err) == -EINVAL && strcmp(err.param, "metadata") == 0,
           "17 pairs: -EINVAL: %s", err.message);
        struct store_metadata_pair dup[] = {{"a", "1"}, {"a", "2"}};
        in.metadata = dup;
        in.n_metadata = 2;
        ok(store_job_enqueue(s, &in, &bad, &err) == -EINVAL, "a key twice: -EINVAL: %s", err.message);
        char longv[STORE_METADATA_VALUE_MAX + 2];
        memset(longv, 'v', sizeof(longv) - 1);
        longv[sizeof(longv) - 1] = '\0';
        struct store_metadata_pair lv[] = {{"a", longv}};
        in.metadata = lv;
        in.n_metadata = 1;
        ok(store_job_enqueue(s, &in, &bad, &err) == -EINVAL, "a 513-byte value: -EINVAL");

        /* delete: the job's labels go with it; the endpoint's deliveries with the endpoint */
        ok(store_job_delete(s, j->id, &err) == 0, "delete the finished job");
        ok(store_job_list(s, &(struct store_job_filter){.metadata = md, .n_metadata = 2},
                          &(struct store_page){.limit = 10}, &l, &err) == 0 &&
                   l.n == 0,
           "its labels are gone");
        store_job_list_deinit(&l);
        ok(store_webhook_delete(s, b->id, &err) == 0 && pending_for(s, b->id, NULL) == (size_t)-1, "delete endpoint b");
        ok(store_webhook_delete(s, b->id, &err) == -ENOENT, "again: -ENOENT");
        int removed = -1;
        ok(store_webhook_prune(s, -1000, &removed, &err) == 0 && removed >= 2, "prune finished deliveries: %d",
           removed);

        store_job_free(j);
        store_job_free(j2);
        store_job_free(j3);
        store_job_free(c);
        store_webhook_free(a);
        store_webhook_free(b);
        store_close(s);
        tmpdir_remove(dir);
        free(dir);
        return tap_done();
}

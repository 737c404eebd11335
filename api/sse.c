/* sse.c - Server-Sent Events for GET /v1/jobs/{id}/events?stream=true.
 *
 * A stream is a libmicrohttpd content-reader response. The reader replays the
 * job's events after the client's Last-Event-ID from the store, then, when it
 * has nothing to send, suspends the connection and returns: no HTTP pool
 * thread ever waits on training. The store's change notifier (store_subscribe)
 * calls back on the writer's thread; the hub resumes the streams of that job,
 * whose readers then read the new events. One timer thread resumes every
 * stream every API_SSE_KEEPALIVE_S so it sends a comment line (proxies keep
 * the connection, dead clients are noticed). A stream ends after the job's
 * terminal status event.
 *
 * Not for: the JSON event list (jobs.c).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api/internal.h"
#include "common/log.h"
#include "store/store.h"

#define API_SSE_KEEPALIVE_S 15
#define API_SSE_BATCH 100

struct sse_stream {
        struct api_sse_hub *hub;
        struct MHD_Connection *conn;
        char job_id[STORE_ID_MAX];
        int64_t last_seq;
        bool suspended, wake, keepalive, done;
        char *buf;
        size_t len, off;
        struct sse_stream *prev, *next;
};

struct api_sse_hub {
        struct api_server *server;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct sse_stream *streams;
        unsigned n_streams;
        bool shutdown;
        struct store *store; /* only for the subscription */
        struct store_subscription *sub;
        pthread_t timer;
        bool timer_started;
};

/* Called with hub->lock held. */
static void stream_wake_locked(struct sse_stream *s) {
        if (s->suspended) {
                s->suspended = false;
                MHD_resume_connection(s->conn);
        } else {
                s->wake = true;
        }
}

void api_sse_wake(struct api_sse_hub *hub, const char *job_id) {
        if (!hub)
                return;
        pthread_mutex_lock(&hub->lock);
        for (struct sse_stream *s = hub->streams; s; s = s->next)
                if (!job_id || strcmp(s->job_id, job_id) == 0)
                        stream_wake_locked(s);
        pthread_mutex_unlock(&hub->lock);
}

/* job_id NULL: the queue changed, or too many jobs to name: wake everyone. */
static void on_store_change(const char *job_id, void *userdata) {
        api_sse_wake(userdata, job_id);
}

static void *timer_main(void *arg) {
        struct api_sse_hub *hub = arg;
        pthread_mutex_lock(&hub->lock);
        while (!hub->shutdown) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += API_SSE_KEEPALIVE_S;
                int r = pthread_cond_timedwait(&hub->cond, &hub->lock, &ts);
                if (r == ETIMEDOUT && !hub->shutdown)
                        for (struct sse_stream *s = hub->streams; s; s = s->next) {
                                s->keepalive = true;
                                stream_wake_locked(s);
                        }
        }
        pthread_mutex_unlock(&hub->lock);
        return NULL;
}

int api_sse_hub_new(struct api_server *server, struct api_sse_hub **ret) {
        struct api_sse_hub *hub = calloc(1, sizeof(*hub));
        struct ft_error err = {0};
        if (!hub)
                return -ENOMEM;
        hub->server = server;
        pthread_mutex_init(&hub->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_cond_init(&hub->cond, &ca);
        pthread_condattr_destroy(&ca);
        int r = store_open_with(server->opts.state_dir, &(struct store_options){.url = server->opts.store_url},
                                &hub->store, &err);
        if (r == 0)
                r = store_subscribe(hub->store, on_store_change, hub, &hub->sub, &err);
        if (r < 0) {
                log_error("event streams: %s", err.message);
                api_sse_hub_free(hub);
                return r;
        }
        r = -pthread_create(&hub->timer, NULL, timer_main, hub);
        if (r < 0) {
                api_sse_hub_free(hub);
                return r;
        }
        hub->timer_started = true;
        *ret = hub;
        return 0;
}

void api_sse_shutdown(struct api_sse_hub *hub) {
        if (!hub)
                return;
        pthread_mutex_lock(&hub->lock);
        hub->shutdown = true;
        for (struct sse_stream *s = hub->streams; s; s = s->next)
                stream_wake_locked(s);
        pthread_cond_broadcast(&hub->cond);
        pthread_mutex_unlock(&hub->lock);
}

void api_sse_hub_free(struct api_sse_hub *hub) {
        if (!hub)
                return;
        api_sse_shutdown(hub);
        if (hub->timer_started)
                pthread_join(hub->timer, NULL);
        store_unsubscribe(hub->sub);
        store_close(hub->store);
        pthread_cond_destroy(&hub->cond);
        pthread_mutex_destroy(&hub->lock);
        free(hub);
}

static int buf_append(struct sse_stream *s, const char *text, size_t n) {
        if (s->off == s->len)
                s->off = s->len = 0;
        char *b = realloc(s->buf, s->len + n + 1);
        if (!b)
                return -ENOMEM;
        memcpy(b + s->len, text, n);
        s->buf = b;
        s->len += n;
        return 0;
}

static bool event_is_terminal(const struct store_event *e) {
        if (strcmp(e->type, "status") != 0)
                return false;
        json_t *j = json_loads(e->data_json, 0, NULL);
        const char *state = json_string_value(json_object_get(j, "state"));
        enum store_job_state st;
        bool terminal = state && store_job_state_from_name(state, &st) == 0 && store_job_state_is_terminal(st);
        json_decref(j);
        return terminal;
}

/* Read the next events into the buffer. Returns 0, or a negative errno when
 * the stream must end (the job was deleted, the database failed). */
static int stream_fill(struct sse_stream *s) {
        struct ft_error err = {0};
        struct store *st = api_store_thread(s->hub->server, &err);
        if (!st)
                return -EIO;
        struct store_event_list list = {0};
        int r = store_event_list(st, s->job_id, s->last_seq, API_SSE_BATCH, &list, &err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < list.n && !s->done; i++) {
                const struct store_event *e = &list.items[i];
                /* data is one line: the store keeps compact JSON, but be sure */
                char head[160];
                int hn = snprintf(head, sizeof(head), "id: %lld\nevent: %s\ndata: ", (long long)e->seq, e->type);
                r = buf_append(s, head, (size_t)hn);
                for (const char *p = e->data_json; r == 0 && *p; p++)
                        r = buf_append(s, *p == '\n' ? " " : p, 1);
                if (r == 0)
                        r = buf_append(s, "\n\n", 2);
                if (r < 0)
                        break;
                s->last_seq = e->seq;
                if (event_is_terminal(e))
                        s->done = true;
        }
        if (list.n == 0 && r == 0) {
                /* Nothing after the client's position: if the job has finished (a client
                 * resuming after the terminal event), the story is over. */
                struct store_job *job = NULL;
                r = store_job_get(st, s->job_id, &job, &err);
                if (r == 0 && store_job_state_is_terminal(job->state))
                        s->done = true;
                store_job_free(job);
        }
        if (list.has_more && !s->done) {
                pthread_mutex_lock(&s->hub->lock);
                s->wake = true;
                pthread_mutex_unlock(&s->hub->lock);
        }
        store_event_list_deinit(&list);
        return r;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
        struct sse_stream *s = cls;
        for (;;) {
                if (s->off < s->len) {
                        size_t n = FT_MIN(max, s->len - s->off);
                        memcpy(out, s->buf + s->off, n);
                        s->off += n;
                        return (ssize_t)n;
                }
                if (s->done)
                        return MHD_CONTENT_READER_END_OF_STREAM;

                pthread_mutex_lock(&s->hub->lock);
                bool shutdown = s->hub->shutdown, keepalive = s->keepalive;
                s->wake = false;
                s->keepalive = false;
                pthread_mutex_unlock(&s->hub->lock);
                if (shutdown)
                        return MHD_CONTENT_READER_END_OF_STREAM;

                int r = stream_fill(s);
                if (r < 0) {
                        if (r != -ENOENT)
                                log_warning("event stream of %s ends: %s", s->job_id, strerror(-r));
                        return MHD_CONTENT_READER_END_OF_STREAM;
                }
                if (s->off < s->len || s->done)
                        continue;
                if (keepalive) {
                        buf_append(s, ": keepalive\n\n", 13);
                        continue;
                }

                /* Nothing to send: sleep until the notifier or the timer wakes us. */
                pthread_mutex_lock(&s->hub->lock);
                if (s->wake || s->hub->shutdown) {
                        pthread_mutex_unlock(&s->hub->lock);
                        continue;
                }
                s->suspended = true;
                MHD_suspend_connection(s->conn);
                pthread_mutex_unlock(&s->hub->lock);
                return 0;
        }
}

static void stream_free(void *cls) {
        struct sse_stream *s = cls;
        struct api_sse_hub *hub = s->hub;
        pthread_mutex_lock(&hub->lock);
        if (s->prev)
                s->prev->next = s->next;
        else
                hub->streams = s->next;
        if (s->next)
                s->next->prev = s->prev;
        hub->n_streams--;
        pthread_mutex_unlock(&hub->lock);
        free(s->buf);
        free(s);
}

enum MHD_Result api_sse_start(struct api_request *req, const char *job_id, int64_t after) {
        struct api_sse_hub *hub = req->server->sse;
        struct sse_stream *s = calloc(1, sizeof(*s));
        if (!s)
                return MHD_NO;
        s->hub = hub;
        s->conn = req->conn;
        s->last_seq = after;
        snprintf(s->job_id, sizeof(s->job_id), "%s", job_id);
        /* A first comment line: clients (and curl -N) see the stream is open. */
        buf_append(s, ": stream of events for ", 23);
        buf_append(s, job_id, strlen(job_id));
        buf_append(s, "\nretry: 2000\n\n", 14);

        struct MHD_Response *resp =
                MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s, stream_free);
        if (!resp) {
                free(s->buf);
                free(s);
                return MHD_NO;
        }
        pthread_mutex_lock(&hub->lock);
        s->next = hub->streams;
        if (hub->streams)
                hub->streams->prev = s;
        hub->streams = s;
        hub->n_streams++;
        pthread_mutex_unlock(&hub->lock);

        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        enum MHD_Result ret = MHD_queue_response(req->conn, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp); /* stream_free runs when the connection is done with it */
        return ret;
}

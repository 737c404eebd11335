/* db.c - one store connection per HTTP thread (a struct store belongs to one
 * thread), opened on first use and closed when the server stops.
 * Not for: SQL (store/ does that). */
#include <pthread.h>
#include <string.h>

#include "api/internal.h"
#include "common/log.h"
#include "store/store.h"

struct thread_store {
        struct store *store;
        struct thread_store *next;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct thread_store *registry;
static _Thread_local struct thread_store *mine;

struct store *api_store_thread(struct api_server *server, struct ft_error *err) {
        if (mine)
                return mine->store;
        struct thread_store *ts = calloc(1, sizeof(*ts));
        if (!ts) {
                ft_error_set(err, -ENOMEM, NULL, "out of memory");
                return NULL;
        }
        int r = store_open_with(server->opts.state_dir, &(struct store_options){.url = server->opts.store_url},
                                &ts->store, err);
        if (r < 0) {
                free(ts);
                return NULL;
        }
        pthread_mutex_lock(&registry_lock);
        ts->next = registry;
        registry = ts;
        pthread_mutex_unlock(&registry_lock);
        mine = ts;
        return ts->store;
}

struct store *api_store(struct api_request *req, enum MHD_Result *ret_mhd) {
        struct ft_error err = {0};
        struct store *s = api_store_thread(req->server, &err);
        if (!s) {
                log_error("cannot open the store: %s", err.message);
                *ret_mhd = api_reply_error_headers(req, API_ERR_UNAVAILABLE, NULL,
                                                   (const char *const[]){"Retry-After", "1", NULL},
                                                   "the database is unavailable");
        }
        return s;
}

/* Called after every HTTP thread has been joined: the connections are idle. */
void api_store_close_all(void) {
        pthread_mutex_lock(&registry_lock);
        struct thread_store *ts = registry;
        registry = NULL;
        pthread_mutex_unlock(&registry_lock);
        while (ts) {
                struct thread_store *next = ts->next;
                store_close(ts->store);
                free(ts);
                ts = next;
        }
        mine = NULL;
}

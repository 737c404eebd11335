/* fuzz_multipart.c - fuzz the multipart/form-data uploads on a real API server
 * (issue 21): libmicrohttpd's post processor splits the body, and api/server.c
 * keeps the parts (names, sizes, the file part streamed into the blob store,
 * the form fields of a model). The server runs in this process on loopback
 * with a state directory of its own; each input is sent as one request.
 *
 * Input: the first byte picks the route (bit 0: POST /v1/models, else POST
 * /v1/datasets) and bit 1 a second boundary spelling; the rest is the body,
 * sent with "Content-Type: multipart/form-data; boundary=fz" (or "b-1"). The
 * oracle: every request gets a complete HTTP answer; a 4xx or 5xx carries the
 * error envelope; never a 500 (a client's bytes are never the server's fault);
 * and the server still answers /healthz afterwards.
 *
 * Not for: the JSON bodies (fuzz_body), the query string (fuzz_query). */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>

#include "api/api.h"
#include "common/log.h"
#include "store/store.h"
#include "tests/fuzz/fuzz.h"

#define UPLOAD_MAX (256u * 1024) /* small: bodies past it must be refused with 413, not stored */
#define ANSWER_MAX (64u * 1024)

static struct api_server *server;
static struct store *store;
static char state_dir[64];
static int port;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void)st, (void)flag, (void)ftw;
        return remove(path);
}

static void stop(void) {
        api_server_stop(server);
        store_close(store);
        if (state_dir[0])
                nftw(state_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void start(void) {
        struct ft_error err = {0};
        char bound[128];
        int fd;
        signal(SIGPIPE, SIG_IGN);
        log_set_level(LOG_LEVEL_ERROR);
        snprintf(state_dir, sizeof(state_dir), "/tmp/fuzz-multipart.XXXXXX");
        if (!mkdtemp(state_dir) || store_open(state_dir, &store, &err) < 0 ||
            api_listen("127.0.0.1", "0", &fd, bound, sizeof(bound), &err) < 0) {
                fprintf(stderr, "fuzz_multipart: cannot start: %s\n", err.message);
                abort();
        }
        port = atoi(strrchr(bound, ':') + 1);
        struct api_options opts = {.listen_fd = fd,
                                   .state_dir = state_dir,
                                   .http_threads = 2,
                                   .max_connections = 64,
                                   .connection_timeout_s = 5,
                                   .upload_max = UPLOAD_MAX};
        if (api_server_start(&opts, &server, &err) < 0) {
                fprintf(stderr, "fuzz_multipart: cannot start the server: %s\n", err.message);
                abort();
        }
        atexit(stop);
}

/* Send head + body on a new connection; the whole answer (the server closes, or Content-Length ends it) into
 * buf. Returns its length, or -1 when there is none. */
static ssize_t exchange(const char *head, const uint8_t *body, size_t n, char *buf, size_t size) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        struct timeval tv = {.tv_sec = 10};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0)
                abort();
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        /* the server may answer (413) and close before it read everything: a failed send is not a failure */
        if (send(s, head, strlen(head), MSG_NOSIGNAL) >= 0)
                for (size_t off = 0; off < n;) {
                        ssize_t w = send(s, body + off, n - off, MSG_NOSIGNAL);
                        if (w <= 0)
                                break;
                        off += (size_t)w;
                }
        shutdown(s, SHUT_WR);
        size_t got = 0;
        for (;;) {
                ssize_t r = recv(s, buf + got, size - 1 - got, 0);
                if (r <= 0)
                        break;
                got += (size_t)r;
                if (got == size - 1)
                        break;
        }
        close(s);
        buf[got] = '\0';
        return got ? (ssize_t)got : -1;
}

static void check_answer(const char *answer, size_t n, const char *what) {
        unsigned status = 0;
        if (sscanf(answer, "HTTP/1.1 %u", &status) != 1) {
                fprintf(stderr, "fuzz_multipart: %s: no HTTP answer (%zu bytes)\n", what, n);
                abort();
        }
        if (status == 500) {
                fprintf(stderr, "fuzz_multipart: %s: 500\n%s\n", what, answer);
                abort();
        }
        if (status < 400 || status == 413) /* 413 may come from libmicrohttpd itself, before our handler */
                return;
        const char *body = strstr(answer, "\r\n\r\n");
        json_t *j = body ? json_loads(body + 4, 0, NULL) : NULL;
        json_t *e = json_object_get(j, "error");
        if (!json_is_string(json_object_get(e, "code")) || !json_is_string(json_object_get(e, "message")) ||
            !json_object_get(e, "param")) {
                fprintf(stderr, "fuzz_multipart: %s: %u without the error envelope\n%s\n", what, status, answer);
                abort();
        }
        json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static char answer[ANSWER_MAX];
        if (size < 1 || size > 2 * UPLOAD_MAX)
                return 0;
        if (!server)
                start();
        const char *path = data[0] & 1 ? "/v1/models" : "/v1/datasets";
        const char *boundary = data[0] & 2 ? "b-1" : "fz";
        char head[256];
        snprintf(head, sizeof(head),
                 "POST %s HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\nContent-Type: multipart/form-data; "
                 "boundary=%s\r\nContent-Length: %zu\r\n\r\n",
                 path, boundary, size - 1);
        ssize_t n = exchange(head, data + 1, size - 1, answer, sizeof(answer));
        if (n < 0) {
                fprintf(stderr, "fuzz_multipart: POST %s: no answer\n", path);
                abort();
        }
        if (getenv("FUZZ_MULTIPART_VERBOSE")) /* what each input got, to see a corpus does reach the handlers */
                fprintf(stderr, "%s: %.*s %s\n", path, (int)strcspn(answer, "\r"), answer,
                        strstr(answer, "\r\n\r\n") ? strstr(answer, "\r\n\r\n") + 4 : "");
        check_answer(answer, (size_t)n, path);
        n = exchange("GET /healthz HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n", NULL, 0, answer,
                     sizeof(answer));
        if (n < 0 || strncmp(answer, "HTTP/1.1 200", 12) != 0) {
                fprintf(stderr, "fuzz_multipart: /healthz after POST %s: %s\n", path, n < 0 ? "no answer" : answer);
                abort();
        }
        return 0;
}

/* listen.c - creating the listening socket ourselves, so that a port in use or
 * a bad address gets a precise error (libmicrohttpd would only say "failed").
 * Not for: parsing flags (daemon/config.c does that). */
#include "api/api.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void format_addr(const struct sockaddr *sa, char *out, size_t size) {
        char host[INET6_ADDRSTRLEN] = "?";
        unsigned port = 0;
        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
                inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
                port = ntohs(in->sin_port);
                snprintf(out, size, "%s:%u", host, port);
        } else if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
                inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
                port = ntohs(in6->sin6_port);
                snprintf(out, size, "[%s]:%u", host, port);
        } else {
                snprintf(out, size, "?");
        }
}

int api_listen(const char *host, const char *port, int *ret_fd, char *bound, size_t bound_size, struct ft_error *err) {
        struct addrinfo hints = {.ai_family = AF_UNSPEC,
                                 .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_PASSIVE | AI_NUMERICSERV | AI_ADDRCONFIG};
        struct addrinfo *res = NULL;
        int r = getaddrinfo(host, port, &hints, &res);
        if (r == EAI_ADDRFAMILY || r == EAI_NONAME) {
                hints.ai_flags &= ~AI_ADDRCONFIG; /* loopback-only machines */
                r = getaddrinfo(host, port, &hints, &res);
        }
        if (r != 0)
                return ft_error_set(err, -EINVAL, "listen", "cannot resolve listen address '%s:%s': %s", host, port,
                                    gai_strerror(r));

        int fd = -1, saved = 0;
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
                if (fd < 0) {
                        saved = errno;
                        continue;
                }
                int one = 1;
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0)
                        break;
                saved = errno;
                close(fd);
                fd = -1;
        }
        freeaddrinfo(res);
        if (fd < 0)
                return ft_error_set(err, -saved, "listen", "cannot listen on %s:%s: %s", host, port, strerror(saved));

        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
                format_addr((struct sockaddr *)&ss, bound, bound_size);
        else
                snprintf(bound, bound_size, "%s:%s", host, port);
        *ret_fd = fd;
        return 0;
}

/* auth.c - the bearer token: loading it from --token-file, and deciding
 * whether an address is loopback (anything else requires a token). The
 * constant-time comparison itself is in server.c, where requests arrive.
 * Not for: logging the token (nothing ever does). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"

bool api_host_is_loopback(const char *host) {
        if (strcasecmp(host, "localhost") == 0)
                return true;
        struct in_addr a4;
        struct in6_addr a6;
        if (inet_pton(AF_INET, host, &a4) == 1)
                return (ntohl(a4.s_addr) >> 24) == 127;
        if (inet_pton(AF_INET6, host, &a6) == 1)
                return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
        return false;
}

int api_token_load(const char *path, char *ret_token, size_t size, struct ft_error *err) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return ft_error_set(err, -errno, "token-file", "cannot open token file '%s': %s", path,
                                    strerror(errno));
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                return ft_error_set(err, -EINVAL, "token-file", "token file '%s' is not a regular file", path);
        }
        if (st.st_mode & 0077) {
                close(fd);
                return ft_error_set(err, -EPERM, "token-file",
                                    "token file '%s' is readable by group or others (chmod 600 it)", path);
        }
        char buf[API_TOKEN_MAX + 2];
        ssize_t n = read(fd, buf, sizeof(buf));
        close(fd);
        if (n < 0)
                return ft_error_set(err, -errno, "token-file", "cannot read token file '%s': %s", path,
                                    strerror(errno));
        size_t len = (size_t)n;
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
                len--;
        if (len > API_TOKEN_MAX)
                return ft_error_set(err, -EINVAL, "token-file", "token in '%s' is longer than %d characters", path,
                                    API_TOKEN_MAX);
        if (len < 16)
                return ft_error_set(err, -EINVAL, "token-file", "token in '%s' is shorter than 16 characters", path);
        for (size_t i = 0; i < len; i++)
                if (buf[i] <= ' ' || buf[i] > '~') {
                        explicit_bzero(buf, sizeof(buf));
                        return ft_error_set(err, -EINVAL, "token-file",
                                            "token in '%s' must be one line of printable characters without spaces",
                                            path);
                }
        if (size < len + 1)
                return ft_error_set(err, -ENAMETOOLONG, "token-file", "token buffer too small");
        memcpy(ret_token, buf, len);
        ret_token[len] = '\0';
        explicit_bzero(buf, sizeof(buf));
        return 0;
}

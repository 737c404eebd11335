/* auth.c - the bearer tokens: loading them from --token-file (admin and
 * read-only tokens, docs/operations.md), and deciding
 * whether an address is loopback (anything else requires a token). The
 * constant-time comparison itself is in server.c, where requests arrive.
 * Not for: logging the token (nothing ever does). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdlib.h>
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
        /* Room for every token with its scope and comments beside them; a
         * longer file is refused rather than read in part. */
        size_t cap = API_TOKEN_SET_MAX * 2;
        char *buf = malloc(cap + 1);
        if (!buf) {
                close(fd);
                return ft_error_set(err, -ENOMEM, "token-file", "out of memory");
        }
        size_t len = 0;
        ssize_t n = 0;
        while (len <= cap && (n = read(fd, buf + len, cap + 1 - len)) > 0)
                len += (size_t)n;
        int r = 0;
        if (n < 0)
                r = ft_error_set(err, -errno, "token-file", "cannot read token file '%s': %s", path, strerror(errno));
        else if (len > cap)
                r = ft_error_set(err, -EFBIG, "token-file", "token file '%s' is larger than %zu bytes", path, cap);
        close(fd);

        size_t out = 0, tokens = 0;
        unsigned line = 0;
        for (size_t p = 0; r == 0 && p < len; line++) {
                size_t e = p;
                while (e < len && buf[e] != '\n')
                        e++;
                size_t b = p, l = e;
                p = e + 1;
                while (l > b && (buf[l - 1] == '\r' || buf[l - 1] == ' ' || buf[l - 1] == '\t'))
                        l--;
                while (b < l && (buf[b] == ' ' || buf[b] == '\t'))
                        b++;
                if (b == l || buf[b] == '#')
                        continue;
                const char *scope = "admin";
                size_t sp = b;
                while (sp < l && buf[sp] != ' ' && buf[sp] != '\t')
                        sp++;
                if (sp < l) {
                        size_t slen = sp - b;
                        if (slen == 4 && memcmp(buf + b, "read", 4) == 0)
                                scope = "read";
                        else if (!(slen == 5 && memcmp(buf + b, "admin", 5) == 0)) {
                                r = ft_error_set(err, -EINVAL, "token-file",
                                                 "%s:%u: unknown token scope '%.*s' (admin or read)", path, line + 1,
                                                 (int)FT_MIN(slen, 32), buf + b);
                                break;
                        }
                        b = sp;
                        while (b < l && (buf[b] == ' ' || buf[b] == '\t'))
                                b++;
                }
                size_t tlen = l - b;
                if (tlen > API_TOKEN_MAX) {
                        r = ft_error_set(err, -EINVAL, "token-file", "%s:%u: token is longer than %d characters", path,
                                         line + 1, API_TOKEN_MAX);
                        break;
                }
                if (tlen < 16) {
                        r = ft_error_set(err, -EINVAL, "token-file", "%s:%u: token is shorter than 16 characters", path,
                                         line + 1);
                        break;
                }
                for (size_t i = b; i < l && r == 0; i++)
                        if (buf[i] <= ' ' || buf[i] > '~')
                                r = ft_error_set(err, -EINVAL, "token-file",
                                                 "%s:%u: a token must be printable characters without spaces", path,
                                                 line + 1);
                if (r < 0)
                        break;
                if (++tokens > API_TOKENS_MAX) {
                        r = ft_error_set(err, -EINVAL, "token-file", "token file '%s' has more than %d tokens", path,
                                         API_TOKENS_MAX);
                        break;
                }
                size_t need = strlen(scope) + 1 + tlen + 1;
                if (out + need + 1 > size) {
                        r = ft_error_set(err, -ENAMETOOLONG, "token-file", "token buffer too small");
                        break;
                }
                out += (size_t)sprintf(ret_token + out, "%s %.*s\n", scope, (int)tlen, buf + b);
        }
        if (r == 0 && tokens == 0)
                r = ft_error_set(err, -EINVAL, "token-file", "token file '%s' has no token", path);
        explicit_bzero(buf, cap + 1);
        free(buf);
        if (r < 0) {
                if (size)
                        explicit_bzero(ret_token, size);
                return r;
        }
        ret_token[out] = '\0';
        return 0;
}

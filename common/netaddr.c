/* netaddr.c - CIDR lists and the internal-address policy of outgoing
 * webhooks. Not for: resolving names or opening sockets. */
#include "common/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The address bytes of sa (4 or 16) and its family, with IPv4-mapped IPv6 turned into IPv4. */
static int addr_bytes(const struct sockaddr *sa, uint8_t out[16]) {
        if (sa->sa_family == AF_INET) {
                memcpy(out, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
                return AF_INET;
        }
        if (sa->sa_family == AF_INET6) {
                const uint8_t *a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
                static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
                if (memcmp(a, mapped, 12) == 0) {
                        memcpy(out, a + 12, 4);
                        return AF_INET;
                }
                memcpy(out, a, 16);
                return AF_INET6;
        }
        return 0;
}

static bool prefix_match(const uint8_t *a, const uint8_t *net, unsigned prefix) {
        unsigned full = prefix / 8, rest = prefix % 8;
        if (memcmp(a, net, full) != 0)
                return false;
        if (!rest)
                return true;
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        return (a[full] & mask) == (net[full] & mask);
}

bool netaddr_parse(const char *text, struct sockaddr_storage *ret_sa) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET, text, &in4->sin_addr) == 1)
                in4->sin_family = AF_INET;
        else if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1)
                in6->sin6_family = AF_INET6;
        else
                return false;
        if (ret_sa)
                *ret_sa = ss;
        return true;
}

int netaddr_list_parse(const char *text, struct netaddr_list *ret, char *why, size_t why_size) {
        struct netaddr_list l = {0};
        const char *p = text ? text : "";
        if (strlen(p) > NETADDR_TEXT_MAX) {
                snprintf(why, why_size, "longer than %d bytes", NETADDR_TEXT_MAX);
                return -EINVAL;
        }
        while (*p) {
                while (*p == ' ' || *p == ',')
                        p++;
                if (!*p)
                        break;
                size_t len = strcspn(p, ", ");
                char entry[64];
                if (len >= sizeof(entry)) {
                        snprintf(why, why_size, "'%.40s...' is not an address or CIDR", p);
                        return -EINVAL;
                }
                memcpy(entry, p, len);
                entry[len] = '\0';
                p += len;
                if (l.n == NETADDR_LIST_MAX) {
                        snprintf(why, why_size, "more than %d entries", NETADDR_LIST_MAX);
                        return -EINVAL;
                }
                char *slash = strchr(entry, '/');
                long prefix = -1;
                if (slash) {
                        char *end;
                        *slash = '\0';
                        prefix = strtol(slash + 1, &end, 10);
                        if (!slash[1] || *end || prefix < 0)
                                prefix = 999;
                }
                struct sockaddr_storage ss;
                struct netaddr_cidr *c = &l.items[l.n];
                if (!netaddr_parse(entry, &ss)) {
                        snprintf(why, why_size, "'%s' is not an IPv4 or IPv6 address", entry);
                        return -EINVAL;
                }
                c->family = ss.ss_family;
                if (c->family == AF_INET)
                        memcpy(c->addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
                else
                        memcpy(c->addr, ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr, 16);
                unsigned max = c->family == AF_INET ? 32 : 128;
                if (prefix > (long)max) {
                        snprintf(why, why_size, "'%s/%s' has a bad prefix length (0 to %u)", entry,
                                 slash ? slash + 1 : "", max);
                        return -EINVAL;
                }
                c->prefix = prefix < 0 ? max : (unsigned)prefix;
                l.n++;
        }
        *ret = l;
        return 0;
}

bool netaddr_is_internal(const struct sockaddr *sa) {
        static const struct {
                uint8_t net[4];
                unsigned prefix;
        } v4[] = {
                {{0, 0, 0, 0}, 8},      {{10, 0, 0, 0}, 8},    {{100, 64, 0, 0}, 10}, {{127, 0, 0, 0}, 8},
                {{169, 254, 0, 0}, 16}, {{172, 16, 0, 0}, 12}, {{192, 0, 0, 0}, 24},  {{192, 168, 0, 0}, 16},
                {{198, 18, 0, 0}, 15},  {{224, 0, 0, 0}, 4},   {{240, 0, 0, 0}, 4},
        };
        static const struct {
                uint8_t net[16];
                unsigned prefix;
        } v6[] = {
                {{0}, 128}, /* :: */
                {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128}, /* ::1 */
                {{0xfc}, 7},
                {{0xfe, 0x80}, 10},
                {{0xff}, 8},
                {{0, 0x64, 0xff, 0x9b}, 96}, /* NAT64 could reach anything: internal unless allowed */
        };
        uint8_t a[16];
        int family = addr_bytes(sa, a);
        if (family == AF_INET) {
                for (size_t i = 0; i < sizeof(v4) / sizeof(v4[0]); i++)
                        if (prefix_match(a, v4[i].net, v4[i].prefix))
                                return true;
                return false;
        }
        if (family == AF_INET6) {
                for (size_t i = 0; i < sizeof(v6) / sizeof(v6[0]); i++)
                        if (prefix_match(a, v6[i].net, v6[i].prefix))
                                return true;
                return false;
        }
        return true; /* not IP at all: never */
}

bool netaddr_allowed(const struct sockaddr *sa, const struct netaddr_list *allow) {
        uint8_t a[16];
        int family = addr_bytes(sa, a);
        if (!family)
                return false;
        for (size_t i = 0; allow && i < allow->n; i++)
                if (allow->items[i].family == family && prefix_match(a, allow->items[i].addr, allow->items[i].prefix))
                        return true;
        return !netaddr_is_internal(sa);
}

void netaddr_format(const struct sockaddr *sa, char *buf, size_t size) {
        const void *src = sa->sa_family == AF_INET
                                  ? (const void *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr
                                  : (const void *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (size < INET6_ADDRSTRLEN || !inet_ntop(sa->sa_family, src, buf, (socklen_t)size))
                snprintf(buf, size, "?");
}

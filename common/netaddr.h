/* netaddr.h - which IP addresses an outgoing webhook may connect to: CIDR
 * lists ("127.0.0.1/32,10.0.0.0/8,fd00::/8") and the ranges that are
 * internal by default (loopback, private, link-local, shared, multicast,
 * unspecified, IPv4-mapped forms of those). Used by the API when an endpoint
 * is registered (an address in the URL) and by the sender when it connects
 * (every address a name resolves to, so DNS cannot smuggle one in).
 * Not for: name resolution, firewalls, listening sockets. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define NETADDR_LIST_MAX 32 /* CIDR entries in one list */
#define NETADDR_TEXT_MAX 2048 /* bytes of a list's text */

struct netaddr_cidr {
        int family; /* AF_INET or AF_INET6 */
        uint8_t addr[16]; /* network byte order; IPv4 in the first 4 */
        unsigned prefix; /* 0..32 or 0..128 */
};

struct netaddr_list {
        struct netaddr_cidr items[NETADDR_LIST_MAX];
        size_t n;
};

/* Parse "CIDR[,CIDR...]" (spaces around commas allowed; an address without
 * "/n" is one host). "" is an empty list. -EINVAL with a message naming the
 * bad entry. */
int netaddr_list_parse(const char *text, struct netaddr_list *ret, char *why, size_t why_size);

/* Whether a numeric address (IPv4 dotted or IPv6, without brackets) parses;
 * fills *ret_sa (sockaddr_in or sockaddr_in6, port 0). */
bool netaddr_parse(const char *text, struct sockaddr_storage *ret_sa);

/* Whether sa is internal: loopback, RFC 1918, link-local, 100.64/10, 0/8,
 * multicast, broadcast, benchmarking 198.18/15, IPv6 ::, ::1, fc00::/7,
 * fe80::/10, ff00::/8, and IPv4-mapped (::ffff:a.b.c.d) forms of the IPv4 ones. */
bool netaddr_is_internal(const struct sockaddr *sa);

/* Whether a connection to sa is allowed: it is in allow (may be NULL), or it is not internal. */
bool netaddr_allowed(const struct sockaddr *sa, const struct netaddr_list *allow);

/* sa as text ("10.0.0.1", "::1"); buf of at least 46 bytes. */
void netaddr_format(const struct sockaddr *sa, char *buf, size_t size);

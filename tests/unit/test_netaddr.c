/* test_netaddr.c - the webhook address policy: CIDR lists parse (and bad
 * ones are refused with a reason), the internal ranges are internal in both
 * families and in IPv4-mapped form, public addresses are not, and an allow
 * list lets exactly its ranges through. */
#include <string.h>

#include "common/netaddr.h"
#include "tests/tap.h"

static int internal(const char *text) {
        struct sockaddr_storage ss;
        return netaddr_parse(text, &ss) ? netaddr_is_internal((struct sockaddr *)&ss) : -1;
}

static int allowed(const char *text, const struct netaddr_list *l) {
        struct sockaddr_storage ss;
        return netaddr_parse(text, &ss) ? netaddr_allowed((struct sockaddr *)&ss, l) : -1;
}

int main(void) {
        static const char *const inside[] = {
                "127.0.0.1",  "10.1.2.3", "172.16.0.1",       "172.31.255.255",  "192.168.1.1", "169.254.169.254",
                "100.64.0.1", "0.0.0.0",  "224.0.0.1",        "255.255.255.255", "::1",         "::",
                "fd00::1",    "fe80::1",  "::ffff:127.0.0.1", "::ffff:10.0.0.1"};
        static const char *const outside[] = {
                "8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"};
        bool all = true;
        for (size_t i = 0; i < sizeof(inside) / sizeof(inside[0]); i++)
                if (internal(inside[i]) != 1) {
                        printf("# %s should be internal\n", inside[i]);
                        all = false;
                }
        ok(all, "loopback, private, link-local, shared, multicast, unspecified and mapped forms are internal");
        all = true;
        for (size_t i = 0; i < sizeof(outside) / sizeof(outside[0]); i++)
                if (internal(outside[i]) != 0) {
                        printf("# %s should not be internal\n", outside[i]);
                        all = false;
                }
        ok(all, "public addresses are not");

        struct netaddr_list l;
        char why[128];
        ok(netaddr_list_parse("127.0.0.1/32, 10.0.0.0/8,fd00::/8", &l, why, sizeof(why)) == 0 && l.n == 3,
           "parse a list of three");
        ok(allowed("127.0.0.1", &l) == 1 && allowed("127.0.0.2", &l) == 0 && allowed("10.9.9.9", &l) == 1 &&
                   allowed("fd12::1", &l) == 1 && allowed("fe80::1", &l) == 0 && allowed("::ffff:127.0.0.1", &l) == 1,
           "the allow list lets its ranges through, and only those");
        ok(allowed("8.8.8.8", NULL) == 1 && allowed("127.0.0.1", NULL) == 0, "no list: public yes, internal no");
        ok(netaddr_list_parse("", &l, why, sizeof(why)) == 0 && l.n == 0, "empty list");
        ok(netaddr_list_parse("::1", &l, why, sizeof(why)) == 0 && l.n == 1 && l.items[0].prefix == 128,
           "a bare address is one host");
        ok(netaddr_list_parse("10.0.0.0/33", &l, why, sizeof(why)) < 0 && strstr(why, "prefix"), "prefix too long: %s",
           why);
        ok(netaddr_list_parse("example.com", &l, why, sizeof(why)) < 0 && strstr(why, "example.com"),
           "a name is refused: %s", why);
        ok(netaddr_list_parse("10.0.0.0/", &l, why, sizeof(why)) < 0, "empty prefix refused");
        return tap_done();
}

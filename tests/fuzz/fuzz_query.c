/* fuzz_query.c - fuzz query-string checking (api/validate.c): the first byte
 * picks a route of the real table, the rest is a query string split on '&' and
 * '=' and URL-unescaped as libmicrohttpd does, each argument checked against
 * the route's table by api_query_arg_check. A refusal always has a message
 * and names the parameter. */
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1 || size > 64 * 1024)
                return 0;
        const struct api_route *route = &api_routes[data[0] % api_routes_count];
        char *q = malloc(size);
        if (!q)
                return 0;
        memcpy(q, data + 1, size - 1);
        q[size - 1] = 0;
        char *save = NULL;
        for (char *arg = strtok_r(q, "&", &save); arg; arg = strtok_r(NULL, "&", &save)) {
                char *value = strchr(arg, '=');
                if (value)
                        *value++ = 0;
                MHD_http_unescape(arg);
                if (value)
                        MHD_http_unescape(value);
                struct ft_error err = {0};
                if (api_query_arg_check(route->query, arg, value, &err) < 0) {
                        if (!err.message[0] || (!err.param[0] && arg[0]))
                                abort();
                        break;
                }
        }
        free(q);
        return 0;
}

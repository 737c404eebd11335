/* test_common.c - common/'s helpers: ft_path_join (joins, skips empty parts,
 * refuses what does not fit with -ENAMETOOLONG and leaves "") and
 * ft_error_set's sign convention. */
#include <errno.h>
#include <string.h>

#include "common/common.h"
#include "tests/tap.h"

int main(void) {
        char buf[16];
        struct ft_error err;

        ok(ft_path_join(buf, sizeof(buf), "a", "b", "c", NULL) == 5 && strcmp(buf, "a/b/c") == 0, "joins with '/'");
        ok(ft_path_join(buf, sizeof(buf), "dir/", "x", NULL) == 5 && strcmp(buf, "dir/x") == 0,
           "no second '/' after a trailing one");
        ok(ft_path_join(buf, sizeof(buf), "", "x", "", NULL) == 1 && strcmp(buf, "x") == 0, "empty parts skipped");
        ok(ft_path_join(buf, sizeof(buf), "/abs", "y", NULL) == 6 && strcmp(buf, "/abs/y") == 0, "absolute first part");
        ok(ft_path_join(buf, sizeof(buf), "0123456789", "abcd", NULL) == 15 && strlen(buf) == 15,
           "exactly fits (15+NUL)");
        ok(ft_path_join(buf, sizeof(buf), "0123456789", "abcde", NULL) == -ENAMETOOLONG && buf[0] == '\0',
           "one byte too long: -ENAMETOOLONG, buf empty");
        ok(ft_path_join(buf, 0, "a", NULL) == -ENAMETOOLONG, "zero-size buffer refused");
        ok(ft_error_set(&err, EINVAL, "p", "bad '%s'", "x") == -EINVAL && err.code == -EINVAL &&
                   strcmp(err.message, "bad 'x'") == 0 && strcmp(err.param, "p") == 0,
           "ft_error_set returns and stores a negative code");
        return tap_done();
}

/* test_common.c - common/'s helpers: ft_path_join (joins, skips empty parts,
 * refuses what does not fit with -ENAMETOOLONG and leaves "") and
 * ft_error_set's sign convention, ft_scrub_paths (no server path in a message
 * a client sees). */
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

        char out[256];
        const char *st = "/srv/ft/state";
        ft_scrub_paths(st, "job_1", "cannot write '/srv/ft/state/jobs/job_1/.tmp-ckpt-5/model.safetensors': full", out,
                       sizeof(out));
        ok(strcmp(out, "cannot write '.tmp-ckpt-5/model.safetensors': full") == 0, "job path: relative to the job (%s)",
           out);
        ft_scrub_paths(st, "job_1", "cannot create '/srv/ft/state/jobs/job_1': x", out, sizeof(out));
        ok(strcmp(out, "cannot create 'the job's directory': x") == 0, "the job's own directory (%s)", out);
        ft_scrub_paths(st, NULL, "'/srv/ft/state/blobs/c4/c44072842468c3cf2f69': header", out, sizeof(out));
        ok(strcmp(out, "'blob c44072842468': header") == 0, "a blob: 'blob' and a sha prefix (%s)", out);
        ft_scrub_paths(st, NULL, "'/srv/ft/state/jobs/job_2/x' and '/srv/ft/state'", out, sizeof(out));
        ok(strcmp(out, "'jobs/job_2/x' and 'the state directory'") == 0, "another job, the bare root (%s)", out);
        ft_scrub_paths(st, NULL, "'/srv/ft/statement' stays", out, sizeof(out));
        ok(strcmp(out, "'/srv/ft/statement' stays") == 0, "a longer name that starts like the root stays (%s)", out);
        ft_scrub_paths(st, NULL, "tensor '0.weight': NaN", out, 8);
        ok(strlen(out) == 7, "truncates to the buffer");
        return tap_done();
}

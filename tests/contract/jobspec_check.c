/* jobspec_check.c - the job spec parser as a filter, for the contract tests
 * in JavaScript: `jobspec_check --schema` prints jobspec_schema(); without
 * arguments each line of stdin is a job spec and each line of stdout the
 * parser's verdict: {"ok": true, "spec": jobspec_to_json()} or
 * {"ok": false, "param", "message"}.
 * Not for: users (finetuned train is the CLI); no reference is resolved. */
#include <stdio.h>
#include <string.h>

#include "compute/jobspec.h"

int main(int argc, char **argv) {
        if (argc > 1 && strcmp(argv[1], "--schema") == 0) {
                json_t *s = jobspec_schema();
                if (!s || json_dumpf(s, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(15)) < 0)
                        return 1;
                json_decref(s);
                putchar('\n');
                return 0;
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, stdin)) > 0) {
                struct jobspec spec;
                struct ft_error err = {0};
                int r = jobspec_parse_string(line, (size_t)n, &spec, &err);
                json_t *out = r == 0 ? json_pack("{s:b,s:o}", "ok", 1, "spec", jobspec_to_json(&spec))
                                     : json_pack("{s:b,s:s?,s:s}", "ok", 0, "param", err.param[0] ? err.param : NULL,
                                                 "message", err.message);
                if (r == 0)
                        jobspec_deinit(&spec);
                if (!out || json_dumpf(out, stdout, JSON_COMPACT) < 0)
                        return 1;
                json_decref(out);
                putchar('\n');
                fflush(stdout);
        }
        free(line);
        return 0;
}

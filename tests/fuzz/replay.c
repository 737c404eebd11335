/* replay.c - run a fuzz harness over every file of the corpus directories (or
 * files) given as arguments, printing TAP. Not for: finding new inputs (that is
 * the libFuzzer build). A crash or sanitizer report fails the test. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz.h"

static int count;

static int run_file(const char *path) {
        FILE *f = fopen(path, "rb");
        if (!f) {
                printf("not ok %d - cannot open %s\n", ++count, path);
                return 1;
        }
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
        size_t got = buf ? fread(buf, 1, (size_t)n, f) : 0;
        fclose(f);
        LLVMFuzzerTestOneInput(buf, got);
        free(buf);
        printf("ok %d - %s\n", ++count, path);
        fflush(stdout);
        return 0;
}

int main(int argc, char **argv) {
        int failed = 0;
        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        printf("not ok %d - %s missing\n", ++count, argv[i]);
                        failed++;
                        continue;
                }
                if (!S_ISDIR(st.st_mode)) {
                        failed += run_file(argv[i]);
                        continue;
                }
                struct dirent **ents;
                int n = scandir(argv[i], &ents, NULL, alphasort);
                for (int k = 0; k < n; k++) {
                        if (ents[k]->d_name[0] != '.') {
                                char p[4096];
                                snprintf(p, sizeof(p), "%s/%s", argv[i], ents[k]->d_name);
                                failed += run_file(p);
                        }
                        free(ents[k]);
                }
                free(ents);
        }
        printf("1..%d\n", count);
        return failed ? 1 : 0;
}

/* explain_cmd.c - `finetuned explain WEIGHTS REQUEST`: the saliency map of POST /v1/models/{id}/explain for a
 * safetensors file (one a job wrote, or downloaded from the API), without a daemon. REQUEST is the API's request
 * body as a JSON file ("-": stdin); the answer is the API's, as JSON on stdout.
 * Not for: the explanation itself (api/explain.c, compute/explain.c). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "api/api.h"
#include "daemon/daemon.h"

#define EXPLAIN_REQUEST_MAX ((size_t)16 << 20) /* as the API's body limit */

static void explain_usage(FILE *out) {
        fprintf(out, "Usage: finetuned explain [OPTIONS] WEIGHTS.safetensors REQUEST.json\n\n"
                     "Explain one image with the model in WEIGHTS (its spec, preprocessing and class names\n"
                     "come from the file's metadata): REQUEST is the body POST /v1/models/{id}/explain\n"
                     "takes ('-' reads stdin), e.g. {\"images\": [[784 pixels 0..255]], \"method\":\n"
                     "\"integrated_gradients\", \"steps\": 32, \"target\": \"3\"}; the answer, a per-pixel\n"
                     "map with the class explained, is printed as JSON (docs/api.md). A bad request or\n"
                     "file prints the error on stderr and exits 1.\n\n"
                     "  -h, --help         show this help\n");
}

int explain_main(int argc, char **argv) {
        static const struct option opts[] = {
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        int c;
        optind = 1;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 'h': explain_usage(stdout); return 0;
                default: explain_usage(stderr); return 2;
                }
        }
        if (argc - optind != 2) {
                explain_usage(stderr);
                return 2;
        }
        const char *weights = argv[optind], *request = argv[optind + 1];
        FILE *f = strcmp(request, "-") == 0 ? stdin : fopen(request, "re");
        if (!f) {
                fprintf(stderr, "finetuned explain: cannot open '%s': %m\n", request);
                return 1;
        }
        char *buf = malloc(EXPLAIN_REQUEST_MAX + 1);
        size_t n = buf ? fread(buf, 1, EXPLAIN_REQUEST_MAX + 1, f) : 0;
        if (f != stdin)
                fclose(f);
        if (!buf || n > EXPLAIN_REQUEST_MAX) {
                fprintf(stderr, "finetuned explain: '%s' is larger than %zu bytes\n", request, EXPLAIN_REQUEST_MAX);
                free(buf);
                return 1;
        }
        json_error_t jerr;
        json_t *body = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &jerr);
        free(buf);
        if (!json_is_object(body)) {
                fprintf(stderr, "finetuned explain: '%s':%d:%d: %s\n", request, jerr.line, jerr.column,
                        body ? "the request must be a JSON object" : jerr.text);
                json_decref(body);
                return 1;
        }
        struct ft_error err = {0};
        void *out = NULL;
        int r = api_explain_file(weights, NULL, weights, body, &out, &err);
        json_decref(body);
        if (r < 0) {
                fprintf(stderr, "finetuned explain: %s%s%s%s\n", err.message[0] ? err.message : strerror(-r),
                        err.param[0] ? " (param '" : "", err.param, err.param[0] ? "')" : "");
                return 1;
        }
        json_dumpf(out, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(out);
        return fflush(stdout) == 0 ? 0 : 1;
}

/* inspect.c - `finetuned inspect FILE [FILE2]`: validate a dataset (CSV, an
 * IDX image/label pair) or a safetensors file and print its summary as JSON.
 * Not for: the validation itself, which is data_inspect() in compute/, the
 * same code the API's uploads call. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "compute/compute.h"
#include "daemon/daemon.h"

#define INSPECT_DEFAULT_MAX_BYTES ((size_t)4 << 30)

static void inspect_usage(FILE *out) {
        fprintf(out, "Usage: finetuned inspect [OPTIONS] FILE [FILE2]\n\n"
                     "Validate FILE and print its summary as JSON on stdout: a CSV dataset, an IDX\n"
                     "image/label pair (FILE and FILE2, plain or .gz, in either order; an images file\n"
                     "*-images-idx3-ubyte[.gz] alone finds *-labels-idx1-ubyte[.gz] beside it) or a\n"
                     "safetensors file (every tensor with dtype and shape, and the metadata).\n"
                     "An invalid file prints the error on stderr and exits 1.\n\n"
                     "  --target COLUMN    the CSV target column (default: the last column)\n"
                     "  --regression       the CSV target is a number, not a class label\n"
                     "  --strict-missing   a missing CSV value is an error (default: counted, row dropped)\n"
                     "  --delimiter C      the CSV delimiter (default: detected among , ; TAB |)\n"
                     "  --max-bytes N      refuse files larger than N bytes (default 4 GiB)\n"
                     "  -h, --help         show this help\n");
}

int inspect_main(int argc, char **argv) {
        static const struct option opts[] = {
                {"target", required_argument, NULL, 't'},
                {"max-bytes", required_argument, NULL, 'm'},
                {"regression", no_argument, NULL, 'r'},
                {"strict-missing", no_argument, NULL, 's'},
                {"delimiter", required_argument, NULL, 'd'},
                {"help", no_argument, NULL, 'h'},
                {0},
        };
        struct data_open_options o = {.max_bytes = INSPECT_DEFAULT_MAX_BYTES};
        int c;
        optind = 1;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 't': o.target = optarg; break;
                case 'r': o.task = DATA_REGRESSION; break;
                case 's': o.strict_missing = true; break;
                case 'd':
                        if (strlen(optarg) != 1 && strcmp(optarg, "\\t") != 0) {
                                fprintf(stderr, "finetuned inspect: --delimiter '%s' is not one character\n", optarg);
                                return 2;
                        }
                        o.delimiter = strcmp(optarg, "\\t") == 0 ? '\t' : optarg[0];
                        break;
                case 'm': {
                        char *e;
                        errno = 0;
                        unsigned long long v = strtoull(optarg, &e, 10);
                        if (errno || *e || e == optarg || optarg[0] == '-') {
                                fprintf(stderr, "finetuned inspect: --max-bytes '%s' is not a byte count\n", optarg);
                                return 2;
                        }
                        o.max_bytes = (size_t)v;
                        break;
                }
                case 'h': inspect_usage(stdout); return 0;
                default: inspect_usage(stderr); return 2;
                }
        }
        int nfiles = argc - optind;
        if (nfiles < 1 || nfiles > 2) {
                inspect_usage(stderr);
                return 2;
        }
        struct ft_error err = {0};
        void *j;
        if (data_inspect(argv[optind], nfiles == 2 ? argv[optind + 1] : NULL, &o, &j, &err) < 0) {
                fprintf(stderr, "finetuned inspect: %s\n", err.message);
                return 1;
        }
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(j);
        return fflush(stdout) == 0 ? 0 : 1;
}

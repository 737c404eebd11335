/* main.c - the finetuned binary: dispatch to a subcommand. Not for: any
 * subcommand's logic. */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "daemon/daemon.h"

static const struct command {
        const char *name;
        int (*main)(int argc, char **argv);
        const char *summary;
} commands[] = {
        {"serve", serve_main, "run the daemon: HTTP API, dashboard and workers"},
        {"train", train_main, "run a fine-tuning job in the foreground, events as NDJSON on stdout"},
        {"inspect", inspect_main, "validate a dataset or weights file and print its summary as JSON"},
        {"explain", explain_main, "a saliency map of one image for a model's class, as JSON (docs/api.md)"},
        {"evaluate", evaluate_main, "evaluate a saved model on a labelled dataset, metrics as JSON"},
        {"predict", predict_main, "run a saved model over a dataset, predictions as CSV"},
};

static void usage(FILE *out) {
        fprintf(out, "Usage: finetuned COMMAND [OPTIONS]\n\nCommands:\n");
        for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
                fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
        fprintf(out, "\nOptions:\n  -h, --help     show this help\n  -V, --version  show the version\n"
                     "\n`finetuned COMMAND --help` describes each command.\n");
}

int main(int argc, char **argv) {
        if (argc < 2) {
                usage(stderr);
                return 2;
        }
        if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
                usage(stdout);
                return 0;
        }
        if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
                printf("finetuned %s\n", FINETUNED_VERSION);
                return 0;
        }
        for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
                if (strcmp(argv[1], commands[i].name) == 0)
                        return commands[i].main(argc - 1, argv + 1);
        fprintf(stderr, "finetuned: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return 2;
}

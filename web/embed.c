/* embed.c - build-time generator (run by meson, never installed): turns the
 * dashboard's files into one C source defining web_assets[] (see assets.h).
 *
 *   web-embed OUTPUT.c NAME=PATH...
 *
 * Each NAME is the URL name the file is served under; the content type comes
 * from NAME's extension and the ETag is a 64-bit FNV-1a hash of the bytes.
 * Not for: anything at run time. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EMBED_MAX_FILE (16u << 20) /* a dashboard file over 16 MiB is a mistake */

struct entry {
        const char *name;
        const char *path;
};

static const char *content_type_for(const char *name) {
        static const struct {
                const char *ext, *type;
        } types[] = {
                {".html", "text/html; charset=utf-8"},
                {".js", "text/javascript; charset=utf-8"},
                {".css", "text/css; charset=utf-8"},
                {".svg", "image/svg+xml"},
                {".json", "application/json"},
                {".png", "image/png"},
                {".ico", "image/x-icon"},
        };
        const char *dot = strrchr(name, '.');
        for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
                if (strcmp(dot, types[i].ext) == 0)
                        return types[i].type;
        return NULL;
}

static int cmp_entry(const void *a, const void *b) {
        return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

static int name_is_valid(const char *name) {
        if (!*name || strlen(name) > 128)
                return 0;
        for (const char *c = name; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '.' ||
                      *c == '-' || *c == '_'))
                        return 0;
        return 1;
}

/* Write one file as a static array; return its size and hash. */
static int emit_file(FILE *out, size_t index, const struct entry *e, size_t *ret_size, uint64_t *ret_hash) {
        FILE *in = fopen(e->path, "rb");
        if (!in) {
                fprintf(stderr, "web-embed: cannot open '%s': %s\n", e->path, strerror(errno));
                return -1;
        }
        uint64_t hash = 1469598103934665603ull;
        size_t size = 0;
        unsigned char buf[65536];
        size_t n;
        fprintf(out, "static const unsigned char asset_%zu[] = {", index);
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
                for (size_t i = 0; i < n; i++) {
                        if ((size + i) % 24 == 0)
                                fputs("\n       ", out);
                        fprintf(out, " %u,", buf[i]);
                        hash = (hash ^ buf[i]) * 1099511628211ull;
                }
                size += n;
                if (size > EMBED_MAX_FILE) {
                        fprintf(stderr, "web-embed: '%s' is larger than %u bytes\n", e->path, EMBED_MAX_FILE);
                        fclose(in);
                        return -1;
                }
        }
        int bad = ferror(in);
        fclose(in);
        if (bad) {
                fprintf(stderr, "web-embed: cannot read '%s'\n", e->path);
                return -1;
        }
        /* A zero-length array is not C: always end with a NUL the size leaves out. */
        fputs("\n        0,\n};\n", out);
        *ret_size = size;
        *ret_hash = hash;
        return 0;
}

int main(int argc, char **argv) {
        if (argc < 3) {
                fprintf(stderr, "usage: web-embed OUTPUT.c NAME=PATH...\n");
                return 2;
        }
        size_t n = (size_t)argc - 2;
        struct entry *entries = calloc(n, sizeof(*entries));
        size_t *sizes = calloc(n, sizeof(*sizes));
        uint64_t *hashes = calloc(n, sizeof(*hashes));
        if (!entries || !sizes || !hashes) {
                fprintf(stderr, "web-embed: out of memory\n");
                return 1;
        }
        for (size_t i = 0; i < n; i++) {
                char *arg = argv[i + 2], *eq = strchr(arg, '=');
                if (!eq) {
                        fprintf(stderr, "web-embed: '%s' is not NAME=PATH\n", arg);
                        return 2;
                }
                *eq = '\0';
                entries[i].name = arg;
                entries[i].path = eq + 1;
                if (!name_is_valid(arg) || !content_type_for(arg)) {
                        fprintf(stderr, "web-embed: '%s' is not a valid asset name with a known extension\n", arg);
                        return 2;
                }
        }
        qsort(entries, n, sizeof(*entries), cmp_entry);
        for (size_t i = 1; i < n; i++)
                if (strcmp(entries[i - 1].name, entries[i].name) == 0) {
                        fprintf(stderr, "web-embed: '%s' given twice\n", entries[i].name);
                        return 2;
                }

        FILE *out = fopen(argv[1], "w");
        if (!out) {
                fprintf(stderr, "web-embed: cannot create '%s': %s\n", argv[1], strerror(errno));
                return 1;
        }
        fputs("/* Generated by web/embed.c from the dashboard's files. Do not edit. */\n"
              "#include <string.h>\n\n#include \"web/assets.h\"\n\n",
              out);
        for (size_t i = 0; i < n; i++)
                if (emit_file(out, i, &entries[i], &sizes[i], &hashes[i]) < 0) {
                        fclose(out);
                        remove(argv[1]);
                        return 1;
                }
        fputs("\nconst struct web_asset web_assets[] = {\n", out);
        for (size_t i = 0; i < n; i++)
                fprintf(out, "        {\"%s\", \"%s\", asset_%zu, %zu, \"\\\"%016llx\\\"\"},\n", entries[i].name,
                        content_type_for(entries[i].name), i, sizes[i], (unsigned long long)hashes[i]);
        fprintf(out, "};\nconst size_t web_assets_count = %zu;\n\n", n);
        fputs("const struct web_asset *web_asset_find(const char *name) {\n"
              "        size_t lo = 0, hi = web_assets_count;\n"
              "        while (lo < hi) {\n"
              "                size_t mid = lo + (hi - lo) / 2;\n"
              "                int c = strcmp(name, web_assets[mid].name);\n"
              "                if (c == 0)\n"
              "                        return &web_assets[mid];\n"
              "                if (c < 0)\n"
              "                        hi = mid;\n"
              "                else\n"
              "                        lo = mid + 1;\n"
              "        }\n"
              "        return NULL;\n"
              "}\n",
              out);
        if (fclose(out) != 0) {
                fprintf(stderr, "web-embed: cannot write '%s': %s\n", argv[1], strerror(errno));
                remove(argv[1]);
                return 1;
        }
        free(entries);
        free(sizes);
        free(hashes);
        return 0;
}

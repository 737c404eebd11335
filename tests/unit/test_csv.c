/* test_csv.c - the CSV reader: RFC 4180 quoting, delimiters, BOM/CRLF, labels,
 * missing values, and every class of bad input with its file:line:column. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "compute/data.h"
#include "tests/tap.h"

static struct dataset *parse(const char *text, const struct csv_options *o, struct ft_error *err) {
        struct dataset *ds = NULL;
        if (csv_parse(text, strlen(text), "d.csv", o, &ds, err) < 0)
                return NULL;
        return ds;
}

static void bad(const char *what, const char *text, const struct csv_options *o, const char *n1, const char *n2) {
        struct ft_error err = {0};
        struct dataset *ds = parse(text, o, &err);
        bool good = !ds && strstr(err.message, "'d.csv'") && (!n1 || strstr(err.message, n1)) &&
                    (!n2 || strstr(err.message, n2));
        if (!ok(good, "rejects %s", what))
                diag("message: %s", err.message);
        else
                diag("%s", err.message);
        dataset_free(ds);
}

static void test_basic(void) {
        struct ft_error err = {0};
        struct csv_options o = {.target = "species"};
        struct dataset *ds = parse("a,b,species\n1,2,dog\n3.5,-4e2,cat\n5, 6 ,dog\n0,0,bird\n", &o, &err);
        if (!ok(ds != NULL, "parses a simple table: %s", err.message))
                return;
        is_int(ds->n, 4, "four rows");
        is_int(ds->n_features, 2, "two features");
        is_str(ds->feature_names[1], "b", "feature names kept");
        is_str(ds->target_name, "species", "target name");
        is_int(ds->n_classes, 3, "three classes");
        is_str(ds->class_names[0], "bird", "class names sorted bytewise");
        is_str(ds->class_names[2], "dog", "last class");
        ok(ds->labels[0] == 2 && ds->labels[1] == 1 && ds->labels[3] == 0, "labels are indices into the names");
        is_int(ds->class_counts[2], 2, "class counts");
        ok(ds->x[2] == 3.5f && ds->x[3] == -400.0f && ds->x[5] == 6.0f, "numbers parsed (spaces around them allowed)");
        void *j;
        ok(data_summary_json(ds, &j, &err) == 0, "summary");
        char *s = json_dumps(j, JSON_COMPACT);
        ok(s && strstr(s, "\"rows\":4") && strstr(s, "{\"name\":\"dog\",\"count\":2}") && strstr(s, "\"features\":2") &&
                   strstr(s, "\"missing_values\":0"),
           "summary has rows, features, classes with counts: %s", s);
        free(s);
        json_decref(j);
        dataset_free(ds);

        /* target defaults to the last column; numeric labels sort numerically */
        ds = parse("x,y\n1,10\n2,9\n3,10\n4,-1\n", NULL, &err);
        ok(ds && ds->n_classes == 3 && strcmp(ds->class_names[0], "-1") == 0 && strcmp(ds->class_names[2], "10") == 0 &&
                   ds->labels[1] == 1,
           "integer labels sort numerically; the last column is the default target");
        dataset_free(ds);
}

static void test_dialects(void) {
        struct ft_error err = {0};
        struct dataset *ds;
        static const char *texts[] = {"f;g;t\n1;2;a\n3;4;b\n",
                                      "f\tg\tt\n1\t2\ta\n3\t4\tb\n",
                                      "f|g|t\n1|2|a\n3|4|b\n",
                                      "\xEF\xBB\xBF"
                                      "f,g,t\r\n1,2,a\r\n3,4,b\r\n",
                                      "f,g,t\n1,2,a\n\n3,4,b",
                                      "\"f\",\"g\",\"t\"\n\"1\",2,\"a\"\n3,\"4\",b\n"};
        static const char *names[] = {
                "semicolon", "tab", "pipe", "BOM and CRLF", "blank line, no final newline", "quoted header and cells"};
        for (size_t i = 0; i < ARRAY_SIZE(texts); i++) {
                ds = parse(texts[i], &(struct csv_options){.target = "t"}, &err);
                ok(ds && ds->n == 2 && ds->n_features == 2 && ds->x[3] == 4.0f &&
                           strcmp(ds->feature_names[0], "f") == 0 && strcmp(ds->class_names[1], "b") == 0,
                   "%s: %s", names[i], ds ? "" : err.message);
                dataset_free(ds);
        }
        ds = parse("f,t\n1,\"say \"\"hi\"\", then\nleave\"\n2,plain\n", NULL, &err);
        ok(ds && ds->n == 2 && strcmp(ds->class_names[1], "say \"hi\", then\nleave") == 0,
           "RFC 4180: delimiter, doubled quote and newline inside quotes");
        dataset_free(ds);
        ds = parse("a,b,t\n1,2,x\n3,4,y\n", &(struct csv_options){.delimiter = ';'}, &err);
        ok(!ds && strstr(err.message, "one column"), "a given delimiter is used: %s", err.message);
        ds = parse("f,t\n1,\"a\"\n\"x,2\",b\n", NULL, &err);
        ok(!ds && strstr(err.message, "'d.csv':3:1") && strstr(err.message, "x,2"),
           "a quoted non-number is reported at its line and column");
        ds = parse("f,t\n1,\"multi\nline\"\n2,b\nzz,c\n", NULL, &err);
        ok(!ds && strstr(err.message, "'d.csv':5:1:"), "line numbers count newlines inside quotes: %s", err.message);
}

static void test_missing(void) {
        struct ft_error err = {0};
        struct csv_options o = {.dropna = true};
        struct dataset *ds = parse("a,b,t\n1,NA,x\n2,3,y\n,4,x\n5,6,y\n7,8,\n9,nan,z\n10,11,x\n", &o, &err);
        if (!ok(ds != NULL, "dropna parses: %s", err.message))
                return;
        is_int(ds->n, 3, "three complete rows kept");
        is_int(ds->rows_read, 7, "seven rows read");
        is_int(ds->rows_dropped, 4, "four dropped");
        is_int(ds->missing_values, 4, "four missing cells (empty, NA, nan, empty label)");
        is_int(ds->n_classes, 2, "a class seen only in dropped rows is gone");
        ok(ds->x[0] == 2 && ds->x[1] == 3 && ds->x[4] == 10 && ds->labels[2] == 0, "kept rows in order");
        dataset_free(ds);
        bad("a missing value without dropna", "a,b,t\n1,2,x\n3,,y\n", NULL,
            "'d.csv':3:2:", "missing value in column 'b'");
        bad("NaN without dropna", "a,b,t\n1,2,x\n3,NaN,y\n", NULL, "'d.csv':3:2:", "missing");
        bad("every row missing", "a,t\n,x\nNA,y\n", &o, "every one of the 2 rows", NULL);
}

static void test_bad(void) {
        bad("an empty file", "", NULL, "is empty", NULL);
        bad("a file of blank lines", "\n\r\n\n", NULL, "is empty", NULL);
        bad("a header only", "a,b,t\n", NULL, "no data rows", NULL);
        bad("a short row", "a,b,t\n1,2,x\n3,4\n", NULL, "'d.csv':3:", "2 fields, the header has 3");
        bad("a long row", "a,b,t\n1,2,x\n3,4,y,5\n", NULL, "'d.csv':3:4:", "more fields");
        bad("a non-numeric cell", "a,b,t\n1,2,x\n3,abc,y\n", NULL,
            "'d.csv':3:2:", "column 'b': \"abc\" is not a number");
        bad("hex that strtod would take", "a,t\n0x10,x\n1,y\n", NULL, "'d.csv':2:1:", "not a number");
        bad("inf", "a,b,t\n1,2,x\n3,inf,y\n", NULL, "'d.csv':3:2:", "not a finite number");
        bad("-Infinity", "a,b,t\n1,-Infinity,x\n3,4,y\n", &(struct csv_options){.dropna = true},
            "'d.csv':2:2:", "not a finite number");
        bad("a float overflow", "a,t\n1e39,x\n1,y\n", NULL, "'d.csv':2:1:", "out of the float range");
        bad("a missing target column", "a,b,t\n1,2,x\n", &(struct csv_options){.target = "label"},
            "target column 'label' not found", "'a', 'b', 't'");
        bad("a single class", "a,t\n1,x\n2,x\n", NULL, "single class 'x'", NULL);
        bad("a single column", "a\n1\n2\n", NULL, "one column 'a'", NULL);
        bad("duplicate column names", "a,a,t\n1,2,x\n", NULL, "'d.csv':1:2:", "column 'a' appears twice");
        bad("an unterminated quote", "a,t\n1,\"x\n2,y\n", NULL, "'d.csv':2:2:", "not closed");
        bad("text after a closing quote", "a,t\n1,\"x\"y\n", NULL, "'d.csv':2:2:", "after a closing quote");
        bad("a non-numeric regression target", "a,t\n1,2\n2,x\n", &(struct csv_options){.task = DATA_REGRESSION},
            "'d.csv':3:2:", "column 't'");
        bad("a size over the byte limit", "a,t\n1,x\n2,y\n", &(struct csv_options){.max_bytes = 5}, "over the limit",
            NULL);

        size_t big = DATA_FIELD_MAX + 16;
        char *s = malloc(big + 32);
        strcpy(s, "a,t\n");
        memset(s + 4, '1', big);
        strcpy(s + 4 + big, ",x\n2,y\n");
        bad("a 10 MB field", s, NULL, "'d.csv':2:1:", "field longer than 10485760 bytes");
        s[4] = '"';
        s[4 + big - 1] = '"';
        bad("a 10 MB quoted field", s, NULL, "'d.csv':2:1:", "field longer");
        free(s);
}

static void test_regression_and_file(void) {
        struct ft_error err = {0};
        char path[] = "/tmp/test_csv_XXXXXX";
        int fd = mkstemp(path);
        const char *text = "x1,x2,price\n1,2,10.5\n2,3,-1\n3,4,0.25\n";
        ok(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write temp file");
        close(fd);
        struct dataset *ds = NULL;
        struct csv_options o = {.target = "price", .task = DATA_REGRESSION};
        ok(csv_read(path, &o, &ds, &err) == 0 && ds->targets && ds->targets[0] == 10.5f && ds->targets[2] == 0.25f &&
                   !ds->labels,
           "regression targets: %s", err.message);
        dataset_free(ds);
        ds = NULL;
        ok(csv_read(path, &(struct csv_options){.target = "nope"}, &ds, &err) < 0 && strstr(err.message, path),
           "errors from a file name the path: %s", err.message);
        unlink(path);
        ok(csv_read(path, NULL, &ds, &err) < 0 && strstr(err.message, "cannot open"), "missing file");
}

/* Data to predict on and to evaluate on (compute/eval.c): no target column; a single class. */
static void test_no_target_and_one_class(void) {
        struct ft_error err = {0};
        struct csv_options o = {.no_target = true};
        struct dataset *ds = parse("a,b\n1,2\n3,4\n5,6\n", &o, &err);
        ok(ds && ds->n == 3 && ds->n_features == 2 && !ds->labels && !ds->targets && !ds->target_name &&
                   ds->x[5] == 6 && strcmp(ds->feature_names[1], "b") == 0,
           "no_target: every column is a feature, no labels");
        dataset_free(ds);
        ds = parse("a\n1\n2\n", &o, &err);
        ok(ds && ds->n_features == 1, "no_target: one column is enough");
        dataset_free(ds);
        ds = parse("a,b\n1,x\n", &o, &err);
        ok(!ds, "no_target: a text column is an error, as any feature");
        struct csv_options one = {0};
        ds = parse("a,label\n1,cat\n2,cat\n", &one, &err);
        ok(!ds && strcmp(err.param, "target") == 0, "a single class is refused for training");
        one.one_class_ok = true;
        ds = parse("a,label\n1,cat\n2,cat\n", &one, &err);
        ok(ds && ds->n_classes == 1 && ds->labels[1] == 0, "one_class_ok: a single class is read");
        dataset_free(ds);
}

int main(void) {
        test_no_target_and_one_class();
        test_basic();
        test_dialects();
        test_missing();
        test_bad();
        test_regression_and_file();
        return tap_done();
}

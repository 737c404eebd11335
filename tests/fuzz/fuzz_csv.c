/* fuzz_csv.c - fuzz the CSV reader, and what runs on its result: the first byte
 * picks the options (delimiter, task, dropna); a table that parses is split,
 * standardized and loaded for one epoch. */
#include <string.h>

#include <jansson.h>

#include "compute/data.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        static const char delims[] = {0, ',', ';', '\t'};
        struct csv_options o = {.delimiter = delims[data[0] & 3],
                                .task = (data[0] & 4) ? DATA_REGRESSION : DATA_CLASSIFICATION,
                                .dropna = (data[0] & 8) != 0,
                                .target = (data[0] & 16) ? "t" : NULL};
        struct dataset *ds = NULL;
        struct ft_error err;
        if (csv_parse((const char *)data + 1, size - 1, "fuzz.csv", &o, &ds, &err) < 0)
                return 0;
        struct data_split s;
        if (data_split_make(ds, 0.25, true, 1, &s, &err) == 0) {
                struct data_transform t = {.standardize = true};
                struct data_loader *l = NULL;
                struct data_loader_options lo = {.batch_size = 3, .shuffle = true};
                struct data_batch b;
                if (data_transform_fit(&t, ds, s.train, s.n_train, &err) == 0 &&
                    data_loader_new(ds, s.train, s.n_train, &t, &lo, &l, &err) == 0)
                        while (data_loader_next(l, &b))
                                ;
                data_loader_free(l);
                data_transform_deinit(&t);
                data_split_deinit(&s);
        }
        void *j;
        if (data_summary_json(ds, &j, &err) == 0)
                json_decref(j);
        dataset_free(ds);
        return 0;
}

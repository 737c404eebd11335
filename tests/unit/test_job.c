/* test_job.c - compute/job: the data a spec names (an IDX subset labelled 5-9 has 5 classes, messages name the
 * dataset's label), a preset sized to the data, a spec's head sized as the API will check it, the one model/data
 * check (each rule, its param and that it names the data) and the metrics document.
 * Not for: training (test_train*.c), the same job through the CLI and the daemon (integration/test_job_parity.sh). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "compute/compute.h"
#include "tests/tap.h"

static char dir[] = "/tmp/test_job_XXXXXX";

static const char *tmp(const char *name) {
        static char p[4][256];
        static int k;
        k = (k + 1) % 4;
        snprintf(p[k], sizeof(p[k]), "%s/%s", dir, name);
        return p[k];
}

static void write_idx(const char *path, uint8_t ndim, const uint32_t *dims, const uint8_t *data, size_t len) {
        uint8_t h[16] = {0, 0, 8, ndim};
        for (uint8_t i = 0; i < ndim; i++) {
                h[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
                h[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
                h[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
                h[7 + 4 * i] = (uint8_t)dims[i];
        }
        FILE *f = fopen(path, "wb");
        fwrite(h, 1, 4 + 4u * ndim, f);
        fwrite(data, 1, len, f);
        fclose(f);
}

static void spec_of(const char *text, struct jobspec *spec) {
        struct ft_error err = {0};
        if (jobspec_parse_string(text, strlen(text), spec, &err) < 0)
                diag("job spec: %s: %s", err.param, err.message);
}

static void test_data(void) {
        uint8_t pix[6 * 2 * 2] = {0}, lab[6] = {9, 5, 7, 5, 9, 7};
        write_idx(tmp("img"), 3, (uint32_t[]){6, 2, 2}, pix, sizeof(pix));
        write_idx(tmp("lab"), 1, (uint32_t[]){6}, lab, sizeof(lab));
        struct jobspec spec;
        spec_of("{\"model\": \"cnn\", \"training_file\": \"x\"}", &spec);
        struct dataset *ds = NULL;
        struct ft_error err = {0};
        struct job_data_source src = {
                .path = tmp("lab"), .path2 = tmp("img"), .label = "ds_five", .param = "training_file"};
        ok(job_data_open(&spec, &src, &ds, &err) == 0 && ds->n_classes == 3 && strcmp(ds->class_names[0], "5") == 0 &&
                   strcmp(ds->class_names[2], "9") == 0 && strcmp(ds->source, "ds_five") == 0,
           "an IDX pair (either order) labelled 5, 7, 9: 3 classes \"5\" \"7\" \"9\", named by its label (%s)",
           err.message);
        dataset_free(ds);
        ds = NULL;

        FILE *f = fopen(tmp("bad.csv"), "w");
        fputs("a,b,y\n1,2,x\n3,oops,y\n", f);
        fclose(f);
        src = (struct job_data_source){.path = tmp("bad.csv"), .label = "ds_bad", .param = "validation_file"};
        ok(job_data_open(&spec, &src, &ds, &err) < 0 && !ds && strstr(err.message, "ds_bad") &&
                   !strstr(err.message, dir) && strcmp(err.param, "validation_file") == 0,
           "a reader's error names the label, not the path, with the spec's field: %s (%s)", err.message, err.param);
        jobspec_deinit(&spec);
}

static void test_model(void) {
        struct jobspec spec;
        spec_of("{\"model\": \"mlp\", \"training_file\": \"x\"}", &spec);
        struct ft_error err = {0};
        /* a 4-feature, 3-class table */
        char *features[] = {"a", "b", "c", "d"}, *classes[] = {"x", "y", "z"};
        struct dataset ds = {.kind = DATA_TABLE,
                             .task = DATA_CLASSIFICATION,
                             .source = "t.csv",
                             .n = 9,
                             .n_features = 4,
                             .feature_names = features,
                             .target_name = "label",
                             .n_classes = 3,
                             .class_names = classes};
        struct model *m = NULL;
        struct job_model_source src = {.preset = "mlp", .options = NULL};
        json_t *opts = json_pack("{s:[i]}", "hidden", 8);
        src.options = opts;
        ok(job_model_build(&spec, &src, &ds, &m, NULL, &err) == 0 && model_input_numel(m) == 4 &&
                   model_output_count(m) == 3 && model_tensor_find(m, "0.weight")->shape[0] == 8,
           "a preset sized to the data (4 inputs, 3 outputs), its options kept (hidden 8): %s", err.message);
        model_free(m);
        m = NULL;
        src.preset = "vgg";
        ok(job_model_build(&spec, &src, &ds, &m, NULL, &err) == -EINVAL && !m &&
                   strcmp(err.param, "model.preset") == 0 && strstr(err.message, "mlp, cnn, resnet18, resnet34"),
           "an unknown preset names the list: %s", err.message);
        json_decref(opts);

        /* the facts the API checks: the head sized to the classes when they are known */
        json_t *spec10 = NULL, *o10 = json_pack("{s:i s:i}", "inputs", 4, "outputs", 10);
        model_preset_spec("mlp", o10, &spec10, &err);
        json_decref(o10);
        struct job_data_facts f;
        job_data_facts_of(&ds, &f);
        struct job_model_facts mf;
        ok(job_model_facts_for(spec10, &spec, &f, &mf, &err) == 0 && mf.ndim == 1 && mf.shape[0] == 4 &&
                   mf.outputs == 3,
           "a 10-output spec on 3 classes: [4] -> 3, as job_model_build sizes it");
        jobspec_deinit(&spec);
        spec_of("{\"model\": \"mlp\", \"training_file\": \"x\", \"task\": {\"target\": \"d\"}}", &spec);
        ok(job_model_facts_for(spec10, &spec, &f, &mf, &err) == 0 && mf.outputs == 10 && job_outputs(&spec, &f) == 0,
           "classes of another column are not known: the head stays as it is");
        jobspec_deinit(&spec);
        json_decref(spec10);
        spec_of("{\"model\": \"mlp\", \"training_file\": \"x\"}", &spec);
        json_t *headless =
                json_pack("{s:[i,i,i] s:[{s:s s:i s:i} {s:s} {s:s}]}", "input", 1, 4, 4, "layers", "type", "conv2d",
                          "out_channels", 5, "kernel_size", 1, "type", "global_avg_pool", "type", "flatten");
        ok(job_model_facts_for(headless, &spec, &f, &mf, &err) == -EINVAL && strcmp(err.param, "model") == 0 &&
                   strstr(err.message, "no linear head"),
           "a spec whose head cannot be sized: %s", err.message);
        json_decref(headless);
        jobspec_deinit(&spec);
}

/* check SPEC_TEXT against facts: the return code and the param */
static void check(const char *what, const char *text, const struct job_model_facts *m, const struct job_data_facts *t,
                  const struct job_data_facts *v, const char *want_param) {
        struct jobspec spec;
        struct ft_error err = {0};
        spec_of(text, &spec);
        int r = job_check(&spec, m, t, v, &err);
        if (!want_param)
                ok(r == 0, "%s: fits (%s)", what, err.message);
        else
                ok(r == -EINVAL && strcmp(err.param, want_param) == 0 &&
                           (strstr(err.message, t->label) || strncmp(want_param, "preprocess.", 11) == 0),
                   "%s: %s names the data: %s", what, want_param, err.message);
        jobspec_deinit(&spec);
}

static void test_check(void) {
        static char *features[] = {"a", "b"}, *classes[] = {"cat", "dog"}, *numbers[] = {"1.5", "2"},
                    *other[] = {"cat", "cow"};
        const char *cls = "{\"model\": \"m\", \"training_file\": \"x\"}";
        struct job_data_facts table = {.label = "ds_table",
                                       .kind = DATA_TABLE,
                                       .task = DATA_CLASSIFICATION,
                                       .rows = 10,
                                       .n_features = 2,
                                       .feature_names = features,
                                       .target = "y",
                                       .n_classes = 2,
                                       .class_names = classes};
        struct job_data_facts images = {.label = "ds_images",
                                        .kind = DATA_IMAGES,
                                        .task = DATA_CLASSIFICATION,
                                        .rows = 10,
                                        .n_classes = 2,
                                        .class_names = classes,
                                        .channels = 1,
                                        .height = 28,
                                        .width = 28};
        struct job_model_facts flat2 = {1, {2}, 2}, flat3 = {1, {3}, 2}, img = {3, {1, 28, 28}, 2},
                               img3 = {3, {3, 28, 28}, 2}, img5 = {3, {5, 28, 28}, 2}, out3 = {1, {2}, 3},
                               flat1 = {1, {2}, 1};

        check("a table on a 2-input model", cls, &flat2, &table, NULL, NULL);
        check("features", cls, &flat3, &table, NULL, "model");
        check("a table on an image model", cls, &img, &table, NULL, "model");
        check("outputs", cls, &out3, &table, NULL, "model");
        check("a target column that is not there",
              "{\"model\": \"m\", \"training_file\": \"x\", \"task\": "
              "{\"target\": \"nope\"}}",
              &flat2, &table, NULL, "task.target");
        struct job_data_facts numeric = table;
        numeric.task = DATA_REGRESSION;
        check("regression on a text column",
              "{\"model\": \"m\", \"training_file\": \"x\", \"task\": {\"type\": "
              "\"regression\"}}",
              &flat1, &numeric, NULL, "task.type");
        numeric.class_names = numbers;
        check("regression on a numeric column",
              "{\"model\": \"m\", \"training_file\": \"x\", \"task\": {\"type\": "
              "\"regression\"}}",
              &flat1, &numeric, NULL, NULL);
        check("data read for classification, spec regression",
              "{\"model\": \"m\", \"training_file\": \"x\", "
              "\"task\": {\"type\": \"regression\"}}",
              &flat1, &table, NULL, "task.type");
        struct job_data_facts one = table;
        one.n_classes = 1;
        check("one class", cls, &flat2, &one, NULL, "training_file");
        struct job_data_facts empty = table;
        empty.rows = 0;
        check("no rows", cls, &flat2, &empty, NULL, "training_file");

        check("images on a [1, 28, 28] model", cls, &img, &images, NULL, NULL);
        check("gray images on a 3-channel model", cls, &img3, &images, NULL, NULL);
        check("gray images on a 5-channel model", cls, &img5, &images, NULL, "preprocess.channels");
        check("images on a flat model", cls, &flat2, &images, NULL, "model");
        check("images with a target", "{\"model\": \"m\", \"training_file\": \"x\", \"task\": {\"target\": \"y\"}}",
              &img, &images, NULL, "task.target");
        check("images for regression",
              "{\"model\": \"m\", \"training_file\": \"x\", \"task\": {\"type\": "
              "\"regression\"}}",
              &flat1, &images, NULL, "task.type");
        struct job_model_facts img32 = {3, {1, 32, 32}, 2};
        check("resize to the model's input",
              "{\"model\": \"m\", \"training_file\": \"x\", \"preprocess\": "
              "{\"resize\": [32, 32]}}",
              &img32, &images, NULL, NULL);
        check("resize to another size",
              "{\"model\": \"m\", \"training_file\": \"x\", \"preprocess\": {\"resize\": "
              "[30, 30]}}",
              &img32, &images, NULL, "preprocess.resize");

        struct job_data_facts val = table;
        val.label = "ds_val";
        check("validation like training", cls, &flat2, &table, &val, NULL);
        val.class_names = other;
        check("a validation class training lacks", cls, &flat2, &table, &val, "validation_file");
        check("validation of another kind", cls, &flat2, &table, &images, "validation_file");
        val = table;
        val.label = "ds_val";
        val.n_features = 3;
        check("validation with other columns", cls, &flat2, &table, &val, "validation_file");
}

static void test_metrics(void) {
        struct train_epoch h[2] = {
                {.epoch = 1, .epochs = 2, .step = 3, .train_loss = 1.5, .lr = 0.1, .seconds = 0.5},
                {.epoch = 2, .epochs = 2, .step = 6, .train_loss = 1.0, .lr = 0.05, .seconds = 0.5},
        };
        struct train_result res = {
                .final = {.epochs_run = 2, .loss = 0.25, .reg = {.n_samples = 4, .mse = 0.25, .r2 = 0.5}},
                .history = h,
                .n_history = 2,
        };
        json_t *doc = job_metrics_json(&res, true), *bare = job_metrics_json(&res, false);
        ok(doc && json_is_null(json_object_get(doc, "best_epoch")) &&
                   strcmp(json_string_value(json_object_get(doc, "split")), "training") == 0 &&
                   json_integer_value(json_object_get(doc, "epochs_run")) == 2 &&
                   json_number_value(json_object_get(json_object_get(doc, "metrics"), "mse")) == 0.25 &&
                   !json_object_get(doc, "type"),
           "the document: split, best_epoch, epochs_run, stopped_early, metrics; no type");
        ok(json_array_size(json_object_get(doc, "history")) == 2 &&
                   json_is_null(json_object_get(json_array_get(json_object_get(doc, "history"), 1), "val_mse")) &&
                   !json_object_get(bare, "history"),
           "with history: the epoch events; without: none");
        json_object_del(doc, "history");
        ok(json_equal(doc, bare), "the rest is the same document");
        json_decref(doc);
        json_decref(bare);
        ok(job_metrics_write(tmp("metrics.json"), &res, NULL) == 0 && access(tmp("metrics.json"), R_OK) == 0,
           "metrics.json written");
        json_t *back = json_load_file(tmp("metrics.json"), 0, NULL);
        ok(back && json_array_size(json_object_get(back, "history")) == 2, "and it reads back with its history");
        json_decref(back);
}

int main(void) {
        if (!mkdtemp(dir)) {
                printf("Bail out! mkdtemp\n");
                return 1;
        }
        test_data();
        test_model();
        test_check();
        test_metrics();
        const char *names[] = {"img", "lab", "bad.csv", "metrics.json"};
        for (size_t i = 0; i < ARRAY_SIZE(names); i++)
                unlink(tmp(names[i]));
        rmdir(dir);
        return tap_done();
}

/* test_jobspec.c - the job spec parser: defaults, the ARCHITECTURE.md example,
 * and one rejected spec per rule, each naming the field in `param`. Not for:
 * running jobs (test_train*.c). */
#include <string.h>

#include "config.h"

#include "compute/jobspec.h"
#include "tests/tap.h"

static const char *arch_example =
        "{\"model\": \"mdl_abc\", \"training_file\": \"ds_1\", \"validation_file\": \"ds_2\", \"validation_split\": "
        "0.2,"
        " \"task\": {\"type\": \"classification\", \"target\": \"label\"},"
        " \"preprocess\": {\"dropna\": true, \"standardize\": true, \"shuffle\": true, \"resize\": [64, 64],"
        "   \"channels\": 3, \"normalize\": {\"mean\": [0.5], \"std\": [0.5]},"
        "   \"augment\": {\"random_crop_padding\": 4, \"hflip\": false}},"
        " \"hyperparameters\": {\"epochs\": 10, \"batch_size\": 64, \"learning_rate\": 0.001, \"optimizer\": \"adam\","
        "   \"momentum\": 0.9, \"betas\": [0.9, 0.999], \"weight_decay\": 0.0, \"schedule\": \"cosine\","
        "   \"warmup_epochs\": 0},"
        " \"strategy\": {\"type\": \"full\", \"freeze\": [\"conv1.*\", \"layer1.*\"], \"train_batchnorm\": true,"
        "   \"layer_decay\": 0.8, \"lr_multipliers\": {\"fc.*\": 10.0}},"
        " \"early_stopping\": {\"metric\": \"val_f1\", \"patience\": 3, \"min_delta\": 0.0},"
        " \"seed\": 42, \"device\": \"auto\"}";

static int parse(const char *text, struct jobspec *s, struct ft_error *err) {
        ft_error_clear(err);
        return jobspec_parse_string(text, strlen(text), s, err);
}

/* Expect a failure whose param is `param`. */
static void rejects(const char *text, const char *param, const char *what) {
        struct jobspec s;
        struct ft_error err;
        int r = parse(text, &s, &err);
        ok(r == -EINVAL, "rejects %s", what);
        if (r == 0) {
                jobspec_deinit(&s);
                return;
        }
        is_str(err.param, param, "  param for %s", what);
        ok(err.message[0] != 0 && err.message[strlen(err.message) - 1] != '.', "  message: %s", err.message);
}

#define BASE "\"model\": \"cnn\", \"training_file\": \"train.csv\""

int main(void) {
        struct jobspec s;
        struct ft_error err;

        /* defaults */
        is_int(parse("{" BASE "}", &s, &err), 0, "minimal spec parses");
        is_str(s.model_ref, "cnn", "model ref");
        ok(s.model_spec == NULL, "no inline spec");
        is_str(s.training_file[0], "train.csv", "training file");
        ok(s.hyperparameters.optimizer == JOBSPEC_OPT_ADAM, "default optimizer adam");
        is_int(s.hyperparameters.epochs, 10, "default epochs");
        is_int(s.hyperparameters.batch_size, 32, "default batch size");
        is_close(s.hyperparameters.learning_rate, 1e-3, 0, "default learning rate");
        ok(s.hyperparameters.schedule == JOBSPEC_SCHED_COSINE, "default schedule cosine");
        ok(s.strategy.type == JOBSPEC_STRATEGY_FULL, "default strategy full");
        ok(!s.early_stopping.enabled, "early stopping off by default");
        is_close(s.validation_split, 0.2, 0, "default validation split");
        is_int(s.checkpoint.every_epochs, 1, "checkpoint every epoch");
        is_int(s.checkpoint.keep, 3, "the newest 3 checkpoints kept");
        is_int(s.seed, 42, "default seed");
        jobspec_deinit(&s);

        /* the documented example */
        is_int(parse(arch_example, &s, &err), 0, "ARCHITECTURE.md example parses (%s)", err.message);
        is_int(s.preprocess.resize[0], 64, "resize");
        is_int(s.preprocess.channels, 3, "channels");
        is_int(s.preprocess.normalize_n, 1, "normalize entries");
        is_int(s.preprocess.random_crop_padding, 4, "crop padding");
        is_int(s.strategy.n_freeze, 2, "freeze patterns");
        is_str(s.strategy.freeze[1], "layer1.*", "freeze pattern");
        is_int(s.strategy.n_lr_multipliers, 1, "lr multipliers");
        is_close(s.strategy.lr_multipliers[0].multiplier, 10.0, 0, "multiplier");
        ok(s.early_stopping.enabled && s.early_stopping.mode == JOBSPEC_MODE_MAX, "val_f1 is maximised");
        is_close(s.strategy.layer_decay, 0.8, 0, "layer decay");

        /* round trip through jobspec_to_json */
        json_t *j = jobspec_to_json(&s);
        ok(j != NULL, "to_json");
        struct jobspec s2;
        is_int(jobspec_parse(j, &s2, &err), 0, "to_json output parses back (%s: %s)", err.param, err.message);
        json_t *j2 = jobspec_to_json(&s2);
        ok(json_equal(j, j2), "round trip is stable");
        json_decref(j);
        json_decref(j2);
        jobspec_deinit(&s2);
        jobspec_deinit(&s);

        /* inline model spec and IDX pair */
        is_int(parse("{\"model\": {\"preset\": \"mlp\", \"inputs\": 4}, \"training_file\": [\"a.idx\", \"b.idx\"],"
                     " \"task\": {\"type\": \"regression\"}, \"early_stopping\": {\"metric\": \"val_r2\"}}",
                     &s, &err),
               0, "inline model spec, file pair, regression");
        ok(s.model_spec && json_is_object(s.model_spec), "model spec kept");
        is_str(s.training_file[1], "b.idx", "labels file");
        ok(s.early_stopping.mode == JOBSPEC_MODE_MAX, "val_r2 maximised");
        jobspec_deinit(&s);

        /* failures: each names the field */
        rejects("{\"model\": \"m\", \"training_file\": \"x\", \"task\": {\"type\": \"regression\"},"
                " \"calibration\": {\"temperature_scaling\": true}}",
                "calibration.temperature_scaling", "temperature scaling for regression");
        rejects("{\"model\": \"m\", \"training_file\": \"x\", \"validation_split\": 0,"
                " \"calibration\": {\"temperature_scaling\": true}}",
                "calibration.temperature_scaling", "temperature scaling without validation data");
        rejects("{\"model\": \"m\", \"training_file\": \"x\", \"calibration\": {\"temperature_scaling\": 1}}",
                "calibration.temperature_scaling", "a non-boolean temperature_scaling");
        rejects("{\"model\": \"m\", \"training_file\": \"x\", \"calibration\": {\"bins\": 10}}", "calibration.bins",
                "an unknown calibration field");
        {
                struct jobspec c;
                struct ft_error e;
                int r = parse("{\"model\": \"m\", \"training_file\": \"x\", \"validation_file\": \"v\", "
                              "\"validation_split\": 0,"
                              " \"calibration\": {\"temperature_scaling\": true}}",
                              &c, &e);
                json_t *cj = r == 0 ? jobspec_to_json(&c) : NULL;
                ok(r == 0 && c.calibration.temperature_scaling &&
                           json_is_true(json_object_get(json_object_get(cj, "calibration"), "temperature_scaling")),
                   "temperature scaling with a validation file parses and is echoed");
                json_decref(cj);
                if (r == 0)
                        jobspec_deinit(&c);
        }
        rejects("[1]", "", "a non-object");
        rejects("{\"training_file\": \"x\"}", "model", "a missing model");
        rejects("{\"model\": \"m\"}", "training_file", "a missing training file");
        rejects("{" BASE ", \"bogus\": 1}", "bogus", "an unknown top-level field");
        rejects("{" BASE ", \"hyperparameters\": {\"learning_rat\": 0.1}}", "hyperparameters.learning_rat",
                "an unknown nested field");
        rejects("{" BASE ", \"hyperparameters\": {\"learning_rate\": \"fast\"}}", "hyperparameters.learning_rate",
                "a string learning rate");
        rejects("{" BASE ", \"hyperparameters\": {\"learning_rate\": 0}}", "hyperparameters.learning_rate",
                "a zero learning rate");
        rejects("{" BASE ", \"hyperparameters\": {\"learning_rate\": -1}}", "hyperparameters.learning_rate",
                "a negative learning rate");
        rejects("{" BASE ", \"hyperparameters\": {\"epochs\": 0}}", "hyperparameters.epochs", "zero epochs");
        rejects("{" BASE ", \"checkpoint\": {\"keep\": -1}}", "checkpoint.keep", "negative checkpoint.keep");
        rejects("{" BASE ", \"checkpoint\": {\"keep\": \"all\"}}", "checkpoint.keep", "checkpoint.keep a string");
        rejects("{" BASE ", \"hyperparameters\": {\"epochs\": 2.5}}", "hyperparameters.epochs", "fractional epochs");
        rejects("{" BASE ", \"hyperparameters\": {\"batch_size\": 0}}", "hyperparameters.batch_size",
                "a zero batch size");
        rejects("{" BASE ", \"hyperparameters\": {\"batch_size\": 10000000}}", "hyperparameters.batch_size",
                "a huge batch size");
        rejects("{" BASE ", \"hyperparameters\": {\"optimizer\": \"lbfgs\"}}", "hyperparameters.optimizer",
                "an unknown optimizer");
        rejects("{" BASE ", \"hyperparameters\": {\"momentum\": 1}}", "hyperparameters.momentum", "momentum 1");
        rejects("{" BASE ", \"hyperparameters\": {\"betas\": [0.9]}}", "hyperparameters.betas", "one beta");
        rejects("{" BASE ", \"hyperparameters\": {\"betas\": [0.9, 1.5]}}", "hyperparameters.betas[1]",
                "a beta above 1");
        rejects("{" BASE ", \"hyperparameters\": {\"schedule\": \"exp\"}}", "hyperparameters.schedule",
                "an unknown schedule");
        rejects("{" BASE ", \"hyperparameters\": {\"epochs\": 2, \"warmup_epochs\": 3}}",
                "hyperparameters.warmup_epochs", "warmup longer than training");
        rejects("{" BASE ", \"hyperparameters\": {\"label_smoothing\": 1}}", "hyperparameters.label_smoothing",
                "label smoothing 1");
        rejects("{" BASE ", \"hyperparameters\": {\"learning_rate\": 0.01, \"min_lr\": 0.1}}", "hyperparameters.min_lr",
                "min_lr above lr");
        rejects("{" BASE ", \"validation_split\": 1}", "validation_split", "validation split 1");
        rejects("{" BASE ", \"task\": {\"type\": \"clustering\"}}", "task.type", "an unknown task");
        rejects("{" BASE ", \"task\": 3}", "task", "task not an object");
        rejects("{" BASE ", \"preprocess\": {\"resize\": [0, 5]}}", "preprocess.resize[0]", "a zero resize");
        rejects("{" BASE ", \"preprocess\": {\"channels\": 2}}", "preprocess.channels", "two channels");
        rejects("{" BASE ", \"preprocess\": {\"normalize\": {\"mean\": [0.5, 0.5], \"std\": [0.5]}}}",
                "preprocess.normalize.std", "mean/std of different lengths");
        rejects("{" BASE ", \"preprocess\": {\"normalize\": {\"mean\": [0.5], \"std\": [0]}}}",
                "preprocess.normalize.std[0]", "a zero std");
        rejects("{" BASE ", \"preprocess\": {\"augment\": {\"hflip\": 1}}}", "preprocess.augment.hflip",
                "a non-boolean flag");
        rejects("{" BASE ", \"strategy\": {\"type\": \"partial\", \"freeze\": [\"a\"], \"trainable\": [\"b\"]}}",
                "strategy.trainable", "freeze and trainable together");
        rejects("{" BASE ", \"strategy\": {\"freeze\": [1]}}", "strategy.freeze[0]", "a non-string glob");
        rejects("{" BASE ", \"strategy\": {\"layer_decay\": 0}}", "strategy.layer_decay", "layer decay 0");
        rejects("{" BASE ", \"strategy\": {\"lr_multipliers\": {\"fc.*\": -1}}}", "strategy.lr_multipliers.fc.*",
                "a negative multiplier");
        rejects("{" BASE ", \"early_stopping\": {\"metric\": \"val_banana\"}}", "early_stopping.metric",
                "an unknown metric");
        rejects("{" BASE ", \"early_stopping\": {\"metric\": \"val_r2\"}}", "early_stopping.metric",
                "a regression metric on classification");
        rejects("{" BASE ", \"validation_split\": 0, \"early_stopping\": {\"metric\": \"val_loss\"}}",
                "early_stopping.metric", "a validation metric with no validation data");
        rejects("{" BASE ", \"seed\": -1}", "seed", "a negative seed");
        rejects("{" BASE ", \"device\": \"tpu\"}", "device", "an unknown device");
        rejects("{" BASE ", \"resources\": {\"ranks\": 0}}", "resources.ranks", "zero ranks");
        rejects("{" BASE ", \"resources\": {\"ranks\": 1025}}", "resources.ranks", "more ranks than the limit");
        rejects("{" BASE ", \"resources\": {\"gpus\": 1}}", "resources.gpus", "an unknown resource");
        {
                int r = parse("{" BASE ", \"resources\": {\"ranks\": 2}}", &s, &err);
                if (HAVE_MPI) {
                        ok(r == 0 && s.resources.ranks == 2, "resources.ranks 2 parses (a build with MPI)");
                } else {
                        ok(r == -EINVAL && strcmp(err.param, "resources.ranks") == 0 &&
                                   strstr(err.message, "-Dmpi=enabled"),
                           "resources.ranks 2 is refused naming -Dmpi=enabled (a build without MPI): %s", err.message);
                }
                if (r == 0)
                        jobspec_deinit(&s);
                r = parse("{" BASE "}", &s, &err);
                ok(r == 0 && s.resources.ranks == 1, "resources.ranks defaults to 1");
                if (r == 0)
                        jobspec_deinit(&s);
        }
        rejects("{\"model\": 5, \"training_file\": \"x\"}", "model", "a numeric model");
        rejects("{\"model\": \"m\", \"training_file\": [\"a\", \"b\", \"c\"]}", "training_file", "three files");

        /* integers as JSON Schema counts them; betas in [0, 1) */
        is_int(parse("{" BASE ", \"hyperparameters\": {\"epochs\": 2.0, \"betas\": [0.9, 0.9999999999]}}", &s, &err), 0,
               "epochs 2.0 is an integer, beta2 0.9999999999 is below 1 (%s)", err.message);
        is_int(s.hyperparameters.epochs, 2, "  epochs");
        jobspec_deinit(&s);
        rejects("{" BASE ", \"hyperparameters\": {\"betas\": [0.9, 1]}}", "hyperparameters.betas[1]", "beta2 1");

        /* the schema, from the same tables (tests/contract checks it against the parser) */
        json_t *schema = jobspec_schema();
        json_t *props = json_object_get(schema, "properties"), *req = json_pack("[ss]", "model", "training_file");
        ok(schema && json_equal(json_object_get(schema, "required"), req) &&
                   json_is_false(json_object_get(schema, "additionalProperties")),
           "schema: model and training_file required, no unknown field");
        json_t *epochs =
                json_object_get(json_object_get(json_object_get(props, "hyperparameters"), "properties"), "epochs");
        is_int(json_integer_value(json_object_get(epochs, "default")), 10, "schema: epochs defaults to 10");
        is_int(json_integer_value(json_object_get(epochs, "maximum")), JOBSPEC_EPOCHS_MAX, "schema: epochs maximum");
        json_decref(req);
        json_decref(schema);

        /* syntax errors name line and column; duplicates are rejected */
        ok(parse("{\n\"model\": }", &s, &err) < 0 && strstr(err.message, "line 2"), "syntax error: %s", err.message);
        ok(parse("{" BASE ", \"seed\": 1, \"seed\": 2}", &s, &err) < 0, "duplicate key rejected: %s", err.message);

        return tap_done();
}

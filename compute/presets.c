/* presets.c - the built-in model specs: mlp, cnn, resnet18, resnet34 (torchvision topology and names), the
 * one list of preset names, and each preset's sizing options (what "sized to the data" sets).
 * Not for: building models (model.c), deciding what the data needs (compute/job.c); a preset is only a spec
 * generator. */
#include <stdio.h>
#include <string.h>

#include "compute/model.h"

static int opt_int(const json_t *opts, const char *key, int64_t def, int64_t min, int64_t max, int64_t *ret,
                   struct ft_error *err) {
        json_t *v = opts ? json_object_get(opts, key) : NULL;
        if (!v) {
                *ret = def;
                return 0;
        }
        if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
                return ft_error_set(err, -EINVAL, key, "'%s' must be an integer from %lld to %lld", key, (long long)min,
                                    (long long)max);
        *ret = json_integer_value(v);
        return 0;
}

/* an array of 1..max_len integers from min to max */
static int opt_ints(const json_t *opts, const char *key, const int64_t *def, size_t def_len, size_t min_len,
                    size_t max_len, int64_t min, int64_t max, int64_t *ret, size_t *ret_len, struct ft_error *err) {
        json_t *v = opts ? json_object_get(opts, key) : NULL;
        if (!v) {
                memcpy(ret, def, def_len * sizeof(*def));
                *ret_len = def_len;
                return 0;
        }
        if (!json_is_array(v) || json_array_size(v) < min_len || json_array_size(v) > max_len)
                goto bad;
        for (size_t i = 0; i < json_array_size(v); i++) {
                json_t *e = json_array_get(v, i);
                if (!json_is_integer(e) || json_integer_value(e) < min || json_integer_value(e) > max)
                        goto bad;
                ret[i] = json_integer_value(e);
        }
        *ret_len = json_array_size(v);
        return 0;
bad:
        return ft_error_set(err, -EINVAL, key, "'%s' must be an array of %zu to %zu integers from %lld to %lld", key,
                            min_len, max_len, (long long)min, (long long)max);
}

static int check_opts(const json_t *opts, const char *const *allowed, const char *preset, struct ft_error *err) {
        if (!opts)
                return 0;
        if (!json_is_object(opts))
                return ft_error_set(err, -EINVAL, "opts", "the options of preset '%s' must be an object", preset);
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)opts, key, v) {
                bool found = false;
                for (size_t i = 0; allowed[i]; i++)
                        found = found || strcmp(key, allowed[i]) == 0;
                if (!found)
                        return ft_error_set(err, -EINVAL, key, "unknown option '%s' for preset '%s'", key, preset);
        }
        return 0;
}

#define LIST_MAX 64

static int preset_mlp(const json_t *opts, json_t **ret, struct ft_error *err) {
        static const char *const allowed[] = {"inputs", "hidden", "outputs", "activation", "dropout", NULL};
        static const int64_t def_hidden[] = {512, 256};
        int64_t inputs, outputs, hidden[LIST_MAX];
        size_t nh;
        int r;
        if ((r = check_opts(opts, allowed, "mlp", err)) < 0 ||
            (r = opt_int(opts, "inputs", 784, 1, MODEL_DIM_MAX, &inputs, err)) < 0 ||
            (r = opt_int(opts, "outputs", 10, 1, MODEL_DIM_MAX, &outputs, err)) < 0 ||
            (r = opt_ints(opts, "hidden", def_hidden, 2, 0, LIST_MAX, 1, MODEL_DIM_MAX, hidden, &nh, err)) < 0)
                return r;
        const char *act = "relu";
        json_t *ja = opts ? json_object_get(opts, "activation") : NULL;
        if (ja) {
                static const char *const acts[] = {"relu", "leaky_relu", "gelu", "tanh", "sigmoid"};
                bool ok = false;
                for (size_t i = 0; json_is_string(ja) && i < ARRAY_SIZE(acts); i++)
                        ok = ok || strcmp(json_string_value(ja), acts[i]) == 0;
                if (!ok)
                        return ft_error_set(err, -EINVAL, "activation",
                                            "'activation' must be relu, leaky_relu, gelu, tanh or sigmoid");
                act = json_string_value(ja);
        }
        double dropout = 0.0;
        json_t *jd = opts ? json_object_get(opts, "dropout") : NULL;
        if (jd) {
                if (!json_is_number(jd) || json_number_value(jd) < 0.0 || json_number_value(jd) >= 1.0)
                        return ft_error_set(err, -EINVAL, "dropout", "'dropout' must be from 0 to 1 (exclusive)");
                dropout = json_number_value(jd);
        }
        json_t *layers = json_array();
        for (size_t i = 0; i < nh; i++) {
                json_array_append_new(layers,
                                      json_pack("{s:s, s:I}", "type", "linear", "out_features", (json_int_t)hidden[i]));
                json_array_append_new(layers, json_pack("{s:s}", "type", act));
                if (dropout > 0.0)
                        json_array_append_new(layers, json_pack("{s:s, s:f}", "type", "dropout", "p", dropout));
        }
        json_array_append_new(layers, json_pack("{s:s, s:I}", "type", "linear", "out_features", (json_int_t)outputs));
        *ret = json_pack("{s:[I], s:o}", "input", (json_int_t)inputs, "layers", layers);
        return *ret ? 0 : ft_error_set(err, -ENOMEM, NULL, "out of memory");
}

static int preset_cnn(const json_t *opts, json_t **ret, struct ft_error *err) {
        static const char *const allowed[] = {"in_channels", "input_size", "channels", "hidden", "outputs", NULL};
        static const int64_t def_ch[] = {32, 64}, def_size[] = {28, 28};
        int64_t inc, hidden, outputs, ch[LIST_MAX], size[2];
        size_t nc, ns;
        int r;
        if ((r = check_opts(opts, allowed, "cnn", err)) < 0 ||
            (r = opt_int(opts, "in_channels", 1, 1, 4096, &inc, err)) < 0 ||
            (r = opt_int(opts, "hidden", 128, 1, MODEL_DIM_MAX, &hidden, err)) < 0 ||
            (r = opt_int(opts, "outputs", 10, 1, MODEL_DIM_MAX, &outputs, err)) < 0 ||
            (r = opt_ints(opts, "channels", def_ch, 2, 1, 8, 1, 4096, ch, &nc, err)) < 0 ||
            (r = opt_ints(opts, "input_size", def_size, 2, 2, 2, 1, 4096, size, &ns, err)) < 0)
                return r;
        json_t *layers = json_array();
        for (size_t i = 0; i < nc; i++) {
                json_array_append_new(layers, json_pack("{s:s, s:I, s:i}", "type", "conv2d", "out_channels",
                                                        (json_int_t)ch[i], "kernel_size", 3));
                json_array_append_new(layers, json_pack("{s:s}", "type", "relu"));
                json_array_append_new(layers, json_pack("{s:s, s:i}", "type", "maxpool2d", "kernel_size", 2));
        }
        json_array_append_new(layers, json_pack("{s:s}", "type", "flatten"));
        json_array_append_new(layers, json_pack("{s:s, s:I}", "type", "linear", "out_features", (json_int_t)hidden));
        json_array_append_new(layers, json_pack("{s:s}", "type", "relu"));
        json_array_append_new(layers, json_pack("{s:s, s:I}", "type", "linear", "out_features", (json_int_t)outputs));
        *ret = json_pack("{s:[I,I,I], s:o}", "input", (json_int_t)inc, (json_int_t)size[0], (json_int_t)size[1],
                         "layers", layers);
        return *ret ? 0 : ft_error_set(err, -ENOMEM, NULL, "out of memory");
}

static int preset_resnet(const json_t *opts, const int blocks[4], const char *preset, json_t **ret,
                         struct ft_error *err) {
        static const char *const allowed[] = {"num_classes", "in_channels", "input_size", NULL};
        static const int64_t def_size[] = {224, 224};
        int64_t classes, inc, size[2];
        size_t ns;
        int r;
        if ((r = check_opts(opts, allowed, preset, err)) < 0 ||
            (r = opt_int(opts, "num_classes", 1000, 1, MODEL_DIM_MAX, &classes, err)) < 0 ||
            (r = opt_int(opts, "in_channels", 3, 1, 4096, &inc, err)) < 0 ||
            (r = opt_ints(opts, "input_size", def_size, 2, 2, 2, 1, 4096, size, &ns, err)) < 0)
                return r;
        json_t *layers = json_array();
        json_array_append_new(layers,
                              json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:b}", "type", "conv2d", "name", "conv1",
                                        "out_channels", 64, "kernel_size", 7, "stride", 2, "padding", 3, "bias", 0));
        json_array_append_new(layers, json_pack("{s:s, s:s}", "type", "batchnorm2d", "name", "bn1"));
        json_array_append_new(layers, json_pack("{s:s, s:s}", "type", "relu", "name", "relu"));
        json_array_append_new(layers, json_pack("{s:s, s:s, s:i, s:i, s:i}", "type", "maxpool2d", "name", "maxpool",
                                                "kernel_size", 3, "stride", 2, "padding", 1));
        static const int width[4] = {64, 128, 256, 512};
        for (int l = 0; l < 4; l++)
                for (int b = 0; b < blocks[l]; b++) {
                        char name[32];
                        snprintf(name, sizeof(name), "layer%d.%d", l + 1, b);
                        json_array_append_new(layers,
                                              json_pack("{s:s, s:s, s:i, s:i}", "type", "basic_block", "name", name,
                                                        "out_channels", width[l], "stride", (l > 0 && b == 0) ? 2 : 1));
                }
        json_array_append_new(layers, json_pack("{s:s, s:s}", "type", "global_avg_pool", "name", "avgpool"));
        json_array_append_new(layers, json_pack("{s:s, s:s}", "type", "flatten", "name", "flatten"));
        json_array_append_new(layers, json_pack("{s:s, s:s, s:I}", "type", "linear", "name", "fc", "out_features",
                                                (json_int_t)classes));
        *ret = json_pack("{s:[I,I,I], s:s, s:o}", "input", (json_int_t)inc, (json_int_t)size[0], (json_int_t)size[1],
                         "init", "torchvision", "layers", layers);
        return *ret ? 0 : ft_error_set(err, -ENOMEM, NULL, "out of memory");
}

static int preset_resnet18(const json_t *opts, json_t **ret, struct ft_error *err) {
        static const int blocks[4] = {2, 2, 2, 2};
        return preset_resnet(opts, blocks, "resnet18", ret, err);
}

static int preset_resnet34(const json_t *opts, json_t **ret, struct ft_error *err) {
        static const int blocks[4] = {3, 4, 6, 3};
        return preset_resnet(opts, blocks, "resnet34", ret, err);
}

/* The one list of preset names, and beside it (same order) each preset's builder and the options that size it to
 * the data. */
const char *const model_preset_names[] = {"mlp", "cnn", "resnet18", "resnet34", NULL};

static const struct preset {
        int (*build)(const json_t *opts, json_t **ret, struct ft_error *err);
        bool images; /* takes [C, H, W] (in_channels, input_size), else [features] (inputs) */
        const char *outputs; /* the option that sets the output count */
} presets[] = {
        {preset_mlp, false, "outputs"},
        {preset_cnn, true, "outputs"},
        {preset_resnet18, true, "num_classes"},
        {preset_resnet34, true, "num_classes"},
};
_Static_assert(ARRAY_SIZE(model_preset_names) == ARRAY_SIZE(presets) + 1, "one name per preset");

static const struct preset *preset_find(const char *name) {
        for (size_t i = 0; name && i < ARRAY_SIZE(presets); i++)
                if (strcmp(model_preset_names[i], name) == 0)
                        return &presets[i];
        return NULL;
}

bool model_preset_exists(const char *name) {
        return preset_find(name) != NULL;
}

const char *model_preset_list(char *buf, size_t size) {
        if (size)
                buf[0] = '\0';
        for (size_t i = 0; i < ARRAY_SIZE(presets) && size; i++)
                snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", i ? ", " : "", model_preset_names[i]);
        return buf;
}

static int unknown_preset(const char *name, struct ft_error *err) {
        char list[128];
        model_preset_list(list, sizeof(list));
        return ft_error_set(err, -EINVAL, "preset", "unknown preset '%.64s' (%s)", name ? name : "", list);
}

int model_preset_spec(const char *name, const json_t *opts, json_t **ret_spec, struct ft_error *err) {
        const struct preset *p = preset_find(name);
        if (!p)
                return unknown_preset(name, err);
        return p->build(opts, ret_spec, err);
}

int model_preset_spec_sized(const char *name, const struct model_preset_size *size, const json_t *opts,
                            json_t **ret_spec, struct ft_error *err) {
        const struct preset *p = preset_find(name);
        if (!p)
                return unknown_preset(name, err);
        if (opts && !json_is_object(opts))
                return ft_error_set(err, -EINVAL, "opts", "the options of preset '%s' must be an object", name);
        json_t *o = json_object();
        if (!o)
                return ft_error_set(err, -ENOMEM, NULL, "out of memory");
        if (p->images) {
                json_object_set_new(o, "in_channels", json_integer((json_int_t)size->channels));
                json_object_set_new(o, "input_size",
                                    json_pack("[I, I]", (json_int_t)size->height, (json_int_t)size->width));
        } else {
                json_object_set_new(o, "inputs", json_integer((json_int_t)size->features));
        }
        json_object_set_new(o, p->outputs, json_integer((json_int_t)size->outputs));
        if (opts)
                json_object_update(o, (json_t *)opts); /* the user's options win */
        int r = p->build(o, ret_spec, err);
        json_decref(o);
        return r;
}

/* SPDX-License-Identifier: Apache-2.0
 * cli_common.c: shared loading and measurement helpers of the offline subcommands (cli layer). */
#include "cli_common.h"
#include "inferd/error.h"
#include "inferd/log.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>

/* The first *.gguf (by name) in dir, into out. */
static int first_gguf(const char *dir, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d) return IFD_ERR_NOT_FOUND;
    char best[256] = "";
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n > 5 && strcmp(e->d_name + n - 5, ".gguf") == 0 && (!best[0] || strcmp(e->d_name, best) < 0))
            snprintf(best, sizeof best, "%s", e->d_name);
    }
    closedir(d);
    if (!best[0]) return IFD_ERR_NOT_FOUND;
    snprintf(out, cap, "%s/%s", dir, best);
    return 0;
}

int cli_model_path(const struct config *c, char *out, size_t cap, char *err, size_t errlen)
{
    struct stat st;
    if (c->model[0]) {
        if (stat(c->model, &st) == 0 && S_ISDIR(st.st_mode)) {
            if (first_gguf(c->model, out, cap))
                return ifd_fail(err, errlen, IFD_ERR_NOT_FOUND, "--model %s: the directory holds no .gguf file", c->model);
            return 0;
        }
        if (stat(c->model, &st) != 0 && !strchr(c->model, '/'))
            return ifd_fail(err, errlen, IFD_ERR_NOT_FOUND,
                            "--model %s: no such file (models are loaded from local GGUF files; nothing is downloaded)",
                            c->model);
        snprintf(out, cap, "%s", c->model);
        return 0;
    }
    if (config_find_default_model(out, cap) == 0) return 0;
    if (first_gguf("/opt/ml/model", out, cap) == 0) return 0; /* SageMaker puts model data here */
    return ifd_fail(err, errlen, IFD_ERR_NOT_FOUND,
                    "no --model given and the default model (models/%s) was not found; run scripts/fetch_model.sh",
                    CONFIG_DEFAULT_MODEL_FILE);
}

enum kv_dtype cli_kv_dtype(const struct config *c)
{
    int t = kv_dtype_parse(c->kv_cache_dtype);
    return t < 0 ? KV_F16 : (enum kv_dtype)t; /* config_validate accepted only known names */
}

void cli_engine_config(const struct config *c, struct engine_config *ec)
{
    engine_config_default(ec);
    ec->max_num_batched_tokens = c->max_num_batched_tokens;
    ec->max_num_seqs = c->max_num_seqs;
    ec->sampling_threads = c->sampling_threads;
    ec->max_queued_requests = c->max_queued_requests;
    ec->max_model_len = c->ctx_size;
    ec->kv_cache_bytes = (size_t)c->kv_cache_memory;
    ec->kv_cache_dtype = cli_kv_dtype(c);
    ec->gpu_memory_utilization = c->gpu_memory_utilization;
    ec->enable_prefix_caching = c->enable_prefix_caching != 0;
}

int cli_parse(struct config *c, unsigned cmd, const char *usage, int argc, char **argv, int first)
{
    char err[512];
    int help = 0;
    config_defaults(c);
    const char *file = config_file_arg(argc, argv, first);
    if (!file && getenv("INFERD_CONFIG")) file = getenv("INFERD_CONFIG");
    if ((file && config_apply_file(c, cmd, file, err, sizeof err)) || config_apply_env(c, cmd, err, sizeof err) ||
        config_parse_args(c, cmd, argc, argv, first, &help, err, sizeof err) ||
        (!help && config_validate(c, err, sizeof err))) {
        fprintf(stderr, "inferd: %s\n", err);
        return -1;
    }
    if (help) {
        printf("%s\n\nOptions:\n", usage);
        config_print_help(stdout, cmd);
        return 1;
    }
    log_set_level((enum log_level)log_level_parse(c->log_level[0] ? c->log_level : cmd == CMD_SERVE ? "info" : "warn"));
    log_set_json(strcmp(c->log_format, "json") == 0);
    if (c->log_file[0] && log_open(c->log_file)) {
        fprintf(stderr, "inferd: cannot open --log-file %s\n", c->log_file);
        return -1;
    }
    return 0;
}

static enum qtype parse_qtype(const char *name)
{
    for (int t = 0; t < QT_COUNT; t++) {
        const struct qtype_info *ti = qtype_get((uint32_t)t);
        if (ti && ti->weight_ok && strcasecmp(ti->name, name) == 0) return (enum qtype)t;
    }
    return QT_COUNT;
}

int cli_load(struct cli_runtime *rt, const struct config *c, char *err, size_t errlen)
{
    memset(rt, 0, sizeof *rt);
    struct backend_opts bo = { .device = c->device, .n_threads = c->threads, .isa = c->isa[0] ? c->isa : NULL,
                               .enforce_eager = c->enforce_eager };
    int rc = backend_create(&rt->be, &bo, err, errlen);
    if (rc) return rc;
    int dummy = strcmp(c->load_format, "dummy") == 0;
    char path[CONFIG_PATH_MAX];
    const char *model_path = NULL;
    /* a dummy model takes its shape from an explicit --dummy-preset first, so a
     * model path that came from the environment cannot silently replace it */
    if (!dummy || (c->model[0] && !c->dummy_preset[0])) {
        if ((rc = cli_model_path(c, path, sizeof path, err, errlen))) {
            cli_unload(rt);
            return rc;
        }
        model_path = path;
    }
    struct model_load_opts mo = { .path = model_path, .dummy = dummy,
                                  .dummy_preset = c->dummy_preset[0] ? c->dummy_preset : NULL };
    if (dummy) {
        mo.dummy_type = parse_qtype(c->dummy_type);
        if (mo.dummy_type == QT_COUNT) {
            cli_unload(rt);
            return ifd_fail(err, errlen, IFD_ERR_INVALID, "--dummy-type '%s' is not a supported weight type", c->dummy_type);
        }
    }
    rc = model_load(&rt->model, rt->be, &mo, err, errlen);
    if (!rc && rt->model->gguf) rc = tokenizer_load(&rt->tok, rt->model->gguf, err, errlen);
    if (!rc && rt->model->gguf) gguf_drop_metadata_pages(rt->model->gguf); /* the tokenizer copied what it needs */
    if (rc) cli_unload(rt);
    return rc;
}

void cli_unload(struct cli_runtime *rt)
{
    tokenizer_free(rt->tok);
    model_free(rt->model);
    backend_destroy(rt->be);
    memset(rt, 0, sizeof *rt);
}

int cli_run(int argc, char **argv, unsigned cmd, const char *usage, cli_check_fn check, cli_body_fn body)
{
    struct config *c = malloc(sizeof *c); /* large (prompt buffer): not on the stack */
    if (!c) return 1;
    int status = 1, p = cli_parse(c, cmd, usage, argc, argv, 2);
    const char *msg = p || !check ? NULL : check(c, NULL);
    struct cli_runtime rt;
    char err[512];
    if (p) {
        status = p < 0 ? 1 : 0;
    } else if (msg) {
        fprintf(stderr, "inferd: %s\n", msg);
    } else if (cli_load(&rt, c, err, sizeof err)) {
        fprintf(stderr, "inferd: %s\n", err);
    } else {
        if (check && (msg = check(c, &rt))) fprintf(stderr, "inferd: %s\n", msg);
        else status = body(c, &rt);
        cli_unload(&rt);
    }
    free(c);
    return status;
}

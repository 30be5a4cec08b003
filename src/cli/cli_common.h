/* SPDX-License-Identifier: Apache-2.0
 *
 * cli_common.h: what the offline subcommands (generate, bench) share: loading
 * backend + model + tokenizer from a config, and timing/RSS helpers.
 *
 * Layer: cli (top; may use every layer below).
 */
#ifndef INFERD_CLI_COMMON_H
#define INFERD_CLI_COMMON_H

#include "inferd/sys.h"
#include "inferd/backend.h"
#include "inferd/config.h"
#include "inferd/engine.h"
#include "inferd/model.h"
#include "inferd/tokenizer.h"

struct cli_runtime {
    struct backend *be;
    struct model *model;
    struct tokenizer *tok; /* NULL for a dummy model built from a preset */
};

int cli_load(struct cli_runtime *rt, const struct config *c, char *err, size_t errlen);
void cli_unload(struct cli_runtime *rt);

/* Engine settings from the options. */
void cli_engine_config(const struct config *c, struct engine_config *ec);
/* --kv-cache-dtype as the model layer's enum. */
enum kv_dtype cli_kv_dtype(const struct config *c);

/* Checks a subcommand's own requirements: first with rt NULL (after parsing),
 * then with the loaded runtime. Returns an error message or NULL. */
typedef const char *(*cli_check_fn)(const struct config *c, const struct cli_runtime *rt);
typedef int (*cli_body_fn)(const struct config *c, struct cli_runtime *rt);
/* The shape of every offline subcommand: parse, check, load, run body, unload.
 * Returns the process exit status. */
int cli_run(int argc, char **argv, unsigned cmd, const char *usage, cli_check_fn check, cli_body_fn body);

int cmd_generate(int argc, char **argv);
int cmd_bench(int argc, char **argv);
/* bench_engine.c: --requests N --concurrency C */
int bench_engine(const struct config *c, struct cli_runtime *rt);
/* Parses config file + env + args (argv[first..]) for cmd into c, prints errors/help;
 * returns -1 to exit(1), 1 after help, 0 to run. */
int cli_parse(struct config *c, unsigned cmd, const char *usage, int argc, char **argv, int first);
/* The model file to load: --model (a file, or a directory holding one .gguf), else the default model. */
int cli_model_path(const struct config *c, char *out, size_t cap, char *err, size_t errlen);
int cmd_serve(int argc, char **argv, int first);

#endif

/* SPDX-License-Identifier: Apache-2.0
 *
 * config.h: the one configuration struct of the inferd executable. Defaults
 * live in one table (config.c), validation in one function; command-line flags
 * and environment variables (and, with the server, a config file) all land in
 * this struct, so every subcommand sees the same names and checks.
 *
 * Precedence: built-in default < config file (--config FILE, JSON) <
 * environment variable < command-line flag. Environment names are inferd's
 * own (INFERD_*) first, then the SageMaker / LMI / vLLM-container names
 * people already set for other servers (SAGEMAKER_BIND_TO_PORT, HF_MODEL_ID,
 * OPTION_MAX_ROLLING_BATCH_SIZE, SM_VLLM_<OPTION>, ...).
 *
 * Layer: util (used by main.c and the subcommands; the engine receives plain
 * values taken from it, never the struct).
 */
#ifndef INFERD_CONFIG_H
#define INFERD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_PATH_MAX 4096

/* Which subcommands an option applies to. */
enum config_cmd { CMD_GENERATE = 1u, CMD_BENCH = 2u, CMD_SERVE = 4u, CMD_ALL = 7u };

struct config {
    /* model and backend */
    char model[CONFIG_PATH_MAX];
    char load_format[16];      /* gguf | dummy */
    char dummy_preset[32];
    char dummy_type[16];
    char device[16];
    char isa[16];
    int threads;
    int enforce_eager;         /* CUDA: no graph recording of decode steps */
    int ctx_size;              /* engine max_model_len (0: the model's) */
    int max_num_batched_tokens;/* token budget of one engine step (prefill chunk size) */
    int max_num_seqs;
    int sampling_threads;      /* engine: threads sampling a step's rows (0: by backend) */
    int max_queued_requests;
    uint64_t kv_cache_memory;  /* bytes; 0: derived from available memory */
    char kv_cache_dtype[8];    /* auto | f16 | q8_0 */
    float gpu_memory_utilization; /* device backends: share of device memory for weights + workspace + KV */
    int enable_prefix_caching;
    char log_level[8];         /* "": warn for offline commands, info for serve */
    char log_format[8];        /* text | json */
    char log_file[CONFIG_PATH_MAX];
    char config_file[CONFIG_PATH_MAX];
    /* serve */
    char host[64];
    int port;
    int http_threads;
    int max_connections;
    uint64_t max_body_size;
    uint64_t max_header_size;
    int timeout_s;
    int keepalive_s;
    char api_key[1024];        /* comma-separated keys */
    char api_key_file[CONFIG_PATH_MAX];
    int auth_health;
    char served_model_name[256];
    char chat_template[CONFIG_PATH_MAX];
    float shutdown_timeout;
    /* generation */
    char prompt[65536];
    int n_predict;
    float temperature;
    int top_k;
    float top_p;
    float min_p;
    float repeat_penalty;
    uint64_t seed;
    int ignore_eos;
    char stop[256];
    /* bench */
    int prompt_len;
    int gen_len;
    int decode_depth;
    int repetitions;
    int json;
    int requests;              /* > 0: engine benchmark with this many requests */
    int concurrency;
    int mixed;
};

/* Sets every field to its default. */
void config_defaults(struct config *c);
/* Applies a JSON config file: an object whose keys are option names
 * ("threads": 2, "model": "..."); unknown keys and wrong types are errors. */
int config_apply_file(struct config *c, unsigned cmd, const char *path, char *err, size_t errlen);
/* Finds "--config FILE" / "--config=FILE" in argv[first..argc); NULL if absent. */
const char *config_file_arg(int argc, char **argv, int first);
/* Applies environment variables (INFERD_*) for options of cmd. */
int config_apply_env(struct config *c, unsigned cmd, char *err, size_t errlen);
/* Parses argv[first..argc) for cmd. Sets *help when --help/-h was given. */
int config_parse_args(struct config *c, unsigned cmd, int argc, char **argv, int first, int *help, char *err,
                      size_t errlen);
/* Range and consistency checks; the message names the option. */
int config_validate(const struct config *c, char *err, size_t errlen);
/* Prints the options of cmd with defaults and environment names. */
void config_print_help(FILE *f, unsigned cmd);
/* Resolves the default model path when --model was not given; 0 or IFD_ERR_NOT_FOUND. */
int config_find_default_model(char *out, size_t cap);

#define CONFIG_DEFAULT_MODEL_FILE "SmolLM2-135M-Instruct.Q4_1.gguf"

#endif

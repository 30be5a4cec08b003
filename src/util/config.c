/* SPDX-License-Identifier: Apache-2.0
 *
 * config.c: the option table behind config.h. Each option is one row: name,
 * short flag, type, field offset, default, environment variable, the commands
 * it applies to, and its help text. Parsing, environment lookup, help output
 * and defaults are all driven by this table, so adding an option is one line
 * plus (if needed) one check in config_validate().
 *
 * Layer: util.
 */
#include "inferd/config.h"
#include "inferd/error.h"
#include "inferd/log.h"

#include <jansson.h>

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum opt_type { OPT_STR, OPT_INT, OPT_FLOAT, OPT_U64, OPT_FLAG, OPT_FLAG_INV, OPT_SIZE };

struct option_row {
    const char *name;
    char short_name;
    enum opt_type type;
    size_t offset;
    size_t size;        /* OPT_STR: capacity of the char array */
    const char *def;
    const char *env;    /* comma-separated, first set wins: inferd's name, then other servers' */
    unsigned cmds;
    const char *help;
    const char *alias;  /* vLLM's name for the option, also accepted (and as SM_VLLM_<ALIAS>) */
};

#define F(field) offsetof(struct config, field), sizeof(((struct config *)0)->field)

/* Rows leave the trailing alias out when there is none. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const struct option_row g_rows[] = {
    /* model and backend */
    { "model", 'm', OPT_STR, F(model), "", "INFERD_MODEL,HF_MODEL_ID,OPTION_MODEL_ID", CMD_ALL,
      "GGUF model file, or a directory holding one (default: models/" CONFIG_DEFAULT_MODEL_FILE
      ", or the GGUF in /opt/ml/model)" },
    { "load-format", 0, OPT_STR, F(load_format), "gguf", "INFERD_LOAD_FORMAT", CMD_ALL,
      "gguf, or dummy for random weights (shape from --model or --dummy-preset)" },
    { "dummy-preset", 0, OPT_STR, F(dummy_preset), "", NULL, CMD_ALL,
      "shape of a dummy model: smollm2-135m, tinyllama-1.1b, llama2-7b, llama3-8b, mistral-7b, tiny; given, it "
      "wins over --model (and INFERD_MODEL); default: --model's shape, else smollm2-135m" },
    { "dummy-type", 0, OPT_STR, F(dummy_type), "Q4_1", NULL, CMD_ALL,
      "weight type of dummy matrices: Q4_0 Q4_1 Q8_0 Q4_K Q5_K Q6_K F16 BF16 F32" },
    { "device", 0, OPT_STR, F(device), "cpu", "INFERD_DEVICE", CMD_ALL, "compute device: cpu or cuda" },
    { "isa", 0, OPT_STR, F(isa), "", "INFERD_ISA", CMD_ALL, "CPU kernel set: scalar, avx2 or avx512 (default: best available)" },
    { "threads", 't', OPT_INT, F(threads), "0", "INFERD_THREADS", CMD_ALL, "CPU worker threads (0 = all cores)" },
    { "enforce-eager", 0, OPT_FLAG, F(enforce_eager), "0", "INFERD_ENFORCE_EAGER,OPTION_ENFORCE_EAGER", CMD_ALL,
      "--device cuda: launch every kernel of every step instead of replaying decode steps recorded as CUDA graphs" },
    /* engine */
    { "ctx-size", 'c', OPT_INT, F(ctx_size), "0", "INFERD_CTX_SIZE,OPTION_MAX_MODEL_LEN", CMD_ALL,
      "max context length in tokens (0: the model's, capped by the KV cache)", "max-model-len" },
    { "max-num-batched-tokens", 'b', OPT_INT, F(max_num_batched_tokens), "512",
      "INFERD_MAX_NUM_BATCHED_TOKENS,OPTION_MAX_ROLLING_BATCH_PREFILL_TOKENS", CMD_ALL,
      "token budget of one engine step: longer prompts are prefilled in chunks" },
    { "max-num-seqs", 0, OPT_INT, F(max_num_seqs), "64", "INFERD_MAX_NUM_SEQS,OPTION_MAX_ROLLING_BATCH_SIZE,MAX_BATCH_SIZE",
      CMD_ALL, "sequences decoded together at most" },
    { "sampling-threads", 0, OPT_INT, F(sampling_threads), "0", "INFERD_SAMPLING_THREADS", CMD_ALL,
      "threads that sample a step's rows in parallel (0: 1 on the CPU backend, up to 8 on a GPU)" },
    { "max-queued-requests", 0, OPT_INT, F(max_queued_requests), "256", "INFERD_MAX_QUEUED_REQUESTS,MAX_CONCURRENT_REQUESTS",
      CMD_ALL, "requests waiting at most; more are refused (HTTP 429)" },
    { "kv-cache-memory", 0, OPT_SIZE, F(kv_cache_memory), "0", "INFERD_KV_CACHE_MEMORY", CMD_ALL,
      "KV cache size, e.g. 512M or 2G (0: a quarter of available memory, at most what max-num-seqs contexts use)" },
    { "kv-cache-dtype", 0, OPT_STR, F(kv_cache_dtype), "auto", "INFERD_KV_CACHE_DTYPE,OPTION_KV_CACHE_DTYPE", CMD_ALL,
      "KV cache element type: auto (= f16) or q8_0 (half the memory per token, CPU backend)" },
    { "gpu-memory-utilization", 0, OPT_FLOAT, F(gpu_memory_utilization), "0.9",
      "INFERD_GPU_MEMORY_UTILIZATION,OPTION_GPU_MEMORY_UTILIZATION", CMD_ALL,
      "--device cuda without --kv-cache-memory: weights, workspace and KV cache fill this share of GPU memory" },
    { "enable-prefix-caching", 0, OPT_FLAG, F(enable_prefix_caching), "1", "INFERD_PREFIX_CACHING,OPTION_ENABLE_PREFIX_CACHING",
      CMD_ALL, "reuse the KV of shared prompt prefixes" },
    { "no-prefix-caching", 0, OPT_FLAG_INV, F(enable_prefix_caching), "0", NULL, CMD_ALL, "disable automatic prefix caching" },
    /* logging and configuration */
    { "log-level", 0, OPT_STR, F(log_level), "", "INFERD_LOG_LEVEL", CMD_ALL,
      "debug, info, warn, error or off (default: info for serve, warn otherwise)" },
    { "log-format", 0, OPT_STR, F(log_format), "text", "INFERD_LOG_FORMAT", CMD_ALL, "text or json" },
    { "log-file", 0, OPT_STR, F(log_file), "", "INFERD_LOG_FILE", CMD_ALL, "append logs here instead of stderr (SIGHUP reopens)" },
    { "config", 0, OPT_STR, F(config_file), "", "INFERD_CONFIG", CMD_ALL,
      "JSON file of options ({\"threads\": 2, ...}); environment and flags override it" },
    /* serve */
    { "host", 0, OPT_STR, F(host), "0.0.0.0", "INFERD_HOST", CMD_SERVE, "address to listen on" },
    { "port", 0, OPT_INT, F(port), "8080", "INFERD_PORT,SAGEMAKER_BIND_TO_PORT", CMD_SERVE, "port to listen on" },
    { "http-threads", 0, OPT_INT, F(http_threads), "2", "INFERD_HTTP_THREADS", CMD_SERVE,
      "HTTP polling threads (connections are not tied to threads)" },
    { "max-connections", 0, OPT_INT, F(max_connections), "1024", "INFERD_MAX_CONNECTIONS", CMD_SERVE,
      "open connections at most" },
    { "max-body-size", 0, OPT_SIZE, F(max_body_size), "8M", "INFERD_MAX_BODY_SIZE", CMD_SERVE,
      "largest request body (HTTP 413 above)" },
    { "max-header-size", 0, OPT_SIZE, F(max_header_size), "64K", NULL, CMD_SERVE,
      "memory for one connection's request line and headers" },
    { "timeout", 0, OPT_INT, F(timeout_s), "60", "INFERD_TIMEOUT", CMD_SERVE,
      "seconds a connection may stay idle while reading or writing" },
    { "keepalive", 0, OPT_INT, F(keepalive_s), "10", NULL, CMD_SERVE,
      "seconds without output before a streaming response gets an SSE comment (long prefills)" },
    { "api-key", 0, OPT_STR, F(api_key), "", "INFERD_API_KEY", CMD_SERVE,
      "require 'Authorization: Bearer KEY'; several keys separated by commas" },
    { "api-key-file", 0, OPT_STR, F(api_key_file), "", "INFERD_API_KEY_FILE", CMD_SERVE, "file with one API key per line" },
    { "auth-health", 0, OPT_FLAG, F(auth_health), "0", NULL, CMD_SERVE,
      "also require the key on /health, /ping and /metrics" },
    { "served-model-name", 0, OPT_STR, F(served_model_name), "", "INFERD_SERVED_MODEL_NAME,SERVED_MODEL_NAME", CMD_SERVE,
      "model name in the API (default: the model file's name)" },
    { "chat-template", 0, OPT_STR, F(chat_template), "", "INFERD_CHAT_TEMPLATE", CMD_SERVE,
      "Jinja chat template file (default: the model's own)" },
    { "shutdown-timeout", 0, OPT_FLOAT, F(shutdown_timeout), "25", "INFERD_SHUTDOWN_TIMEOUT", CMD_SERVE,
      "seconds in-flight requests get to finish after SIGTERM/SIGINT" },
    /* generate */
    { "prompt", 'p', OPT_STR, F(prompt), "", NULL, CMD_GENERATE, "prompt text" },
    { "n-predict", 'n', OPT_INT, F(n_predict), "128", NULL, CMD_GENERATE, "tokens to generate" },
    { "temp", 0, OPT_FLOAT, F(temperature), "0", NULL, CMD_GENERATE, "sampling temperature (0 = greedy)" },
    { "top-k", 0, OPT_INT, F(top_k), "0", NULL, CMD_GENERATE, "keep the k most likely tokens (0 = off)" },
    { "top-p", 0, OPT_FLOAT, F(top_p), "1", NULL, CMD_GENERATE, "nucleus sampling mass (1 = off)" },
    { "min-p", 0, OPT_FLOAT, F(min_p), "0", NULL, CMD_GENERATE, "drop tokens below min-p times the top probability" },
    { "repeat-penalty", 0, OPT_FLOAT, F(repeat_penalty), "1", NULL, CMD_GENERATE, "repetition penalty (1 = off)" },
    { "seed", 's', OPT_U64, F(seed), "0", NULL, CMD_GENERATE, "sampling seed" },
    { "ignore-eos", 0, OPT_FLAG, F(ignore_eos), "0", NULL, CMD_GENERATE, "keep generating past end-of-sequence tokens" },
    { "stop", 0, OPT_STR, F(stop), "", NULL, CMD_GENERATE, "stop string (not printed)" },
    /* bench */
    { "prompt-len", 0, OPT_INT, F(prompt_len), "512", NULL, CMD_BENCH, "prompt tokens for the prefill measurement" },
    { "gen-len", 0, OPT_INT, F(gen_len), "128", NULL, CMD_BENCH, "tokens for the decode measurement" },
    { "decode-depth", 0, OPT_INT, F(decode_depth), "128", NULL, CMD_BENCH,
      "context tokens already in the cache when the decode measurement starts" },
    { "repetitions", 'r', OPT_INT, F(repetitions), "5", NULL, CMD_BENCH, "runs per measurement (the median is reported)" },
    { "json", 0, OPT_FLAG, F(json), "0", NULL, CMD_BENCH, "print results as one JSON object" },
    { "requests", 0, OPT_INT, F(requests), "0", NULL, CMD_BENCH,
      "engine benchmark: requests to serve (0: the single-sequence prefill/decode benchmark)" },
    { "concurrency", 0, OPT_INT, F(concurrency), "8", NULL, CMD_BENCH, "engine benchmark: requests in flight" },
    { "mixed", 0, OPT_FLAG, F(mixed), "0", NULL, CMD_BENCH,
      "engine benchmark: prompt and output lengths drawn from [1/4, 2] x --prompt-len / --gen-len" },
};
#pragma GCC diagnostic pop
#define N_ROWS (sizeof g_rows / sizeof g_rows[0])

static int set_value(struct config *c, const struct option_row *r, const char *v, char *err, size_t errlen)
{
    char *field = (char *)c + r->offset, *end = NULL;
    errno = 0;
    switch (r->type) {
    case OPT_STR:
        if (strlen(v) >= r->size)
            return ifd_fail(err, errlen, IFD_ERR_INVALID, "--%s: value is longer than %zu bytes", r->name, r->size - 1);
        memcpy(field, v, strlen(v) + 1);
        return 0;
    case OPT_INT: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < INT_MIN || x > INT_MAX)
            return ifd_fail(err, errlen, IFD_ERR_INVALID, "--%s: '%s' is not an integer", r->name, v);
        *(int *)field = (int)x;
        return 0;
    }
    case OPT_FLOAT: {
        float x = strtof(v, &end);
        if (errno || end == v || *end || !isfinite(x))
            return ifd_fail(err, errlen, IFD_ERR_INVALID, "--%s: '%s' is not a number", r->name, v);
        *(float *)field = x;
        return 0;
    }
    case OPT_U64: {
        if (*v == '-') return ifd_fail(err, errlen, IFD_ERR_INVALID, "--%s: '%s' is negative", r->name, v);
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end)
            return ifd_fail(err, errlen, IFD_ERR_INVALID, "--%s: '%s' is not an unsigned integer", r->name, v);
        *(uint64_t *)field = x;
        return 0;
    }
    case OPT_SIZE: { /* 123, 512K, 64M, 2G, 1.5GiB */
        double x = strtod(v, &end);
        if (errno || end == v || x < 0) return ifd_fail(err, errlen, IFD_ERR_INVALID, "--%s: '%s' is not a size", r->name, v);
        double mult = 1;
        if (*end == 'K' || *end == 'k') mult = 1024.0, end++;
        else if (*end == 'M' || *end == 'm') mult = 1024.0 * 1024, end++;
        else if (*end == 'G' || *end == 'g') mult = 1024.0 * 1024 * 1024, end++;
        if (mult > 1 && (*end == 'i' || *end == 'I')) end++;
        if (mult > 1 && (*end == 'B' || *end == 'b')) end++;
        if (*end || x * mult > 1e15) return ifd_fail(err, errlen, IFD_ERR_INVALID, "--%s: '%s' is not a size", r->name, v);
        *(uint64_t *)field = (uint64_t)(x * mult);
        return 0;
    }
    case OPT_FLAG:
    case OPT_FLAG_INV: {
        int on;
        if (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes")) on = 1;
        else if (!strcmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no")) on = 0;
        else return ifd_fail(err, errlen, IFD_ERR_INVALID, "--%s: '%s' is not a boolean", r->name, v);
        *(int *)field = r->type == OPT_FLAG_INV ? !on : on;
        return 0;
    }
    }
    return IFD_ERR_INTERNAL;
}

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_ROWS; i++) {
        if (g_rows[i].type == OPT_FLAG_INV) continue; /* shares its field with the positive flag */
        int rc = set_value(c, &g_rows[i], g_rows[i].def, NULL, 0);
        (void)rc; /* defaults are valid by construction; config_validate would catch a bad one */
    }
}

static bool name_is(const char *candidate, const char *name, size_t len)
{
    return candidate && strlen(candidate) == len && strncmp(candidate, name, len) == 0;
}

static const struct option_row *find_row(const char *name, size_t len, char short_name)
{
    for (size_t i = 0; i < N_ROWS; i++) {
        if (short_name && g_rows[i].short_name == short_name) return &g_rows[i];
        if (!short_name && (name_is(g_rows[i].name, name, len) || name_is(g_rows[i].alias, name, len))) return &g_rows[i];
    }
    return NULL;
}

const char *config_file_arg(int argc, char **argv, int first)
{
    for (int i = first; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) return argv[i + 1];
        if (strncmp(argv[i], "--config=", 9) == 0) return argv[i] + 9;
    }
    return NULL;
}

/* Converts a JSON scalar to the text form set_value parses. */
static int json_to_text(const json_t *v, char *buf, size_t cap)
{
    if (json_is_string(v)) snprintf(buf, cap, "%s", json_string_value(v));
    else if (json_is_integer(v)) snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v)) snprintf(buf, cap, "%.9g", json_real_value(v));
    else if (json_is_boolean(v)) snprintf(buf, cap, "%s", json_is_true(v) ? "1" : "0");
    else return -1;
    return 0;
}

int config_apply_file(struct config *c, unsigned cmd, const char *path, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) return ifd_fail(err, errlen, IFD_ERR_INVALID, "config %s: %s (line %d)", path, je.text, je.line);
    int rc = 0;
    if (!json_is_object(root)) rc = ifd_fail(err, errlen, IFD_ERR_INVALID, "config %s: not a JSON object", path);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (rc) break;
        const struct option_row *r = find_row(key, strlen(key), 0);
        char text[CONFIG_PATH_MAX];
        if (!r || !(r->cmds & cmd) || strcmp(key, "config") == 0)
            rc = ifd_fail(err, errlen, IFD_ERR_INVALID, "config %s: unknown option \"%s\"", path, key);
        else if (json_to_text(v, text, sizeof text))
            rc = ifd_fail(err, errlen, IFD_ERR_INVALID, "config %s: \"%s\" must be a string, number or boolean", path, key);
        else if ((rc = set_value(c, r, text, err, errlen))) {
            size_t n = strlen(err);
            snprintf(err + n, errlen - n, " (in %s)", path);
        }
    }
    json_decref(root);
    return rc;
}

/* The first set variable among a row's comma-separated names (name copied to which). */
static const char *env_lookup(const char *names, char *which, size_t cap)
{
    while (names && *names) {
        const char *comma = strchr(names, ',');
        size_t len = comma ? (size_t)(comma - names) : strlen(names);
        snprintf(which, cap, "%.*s", (int)len, names);
        const char *v = getenv(which);
        if (v && *v) return v;
        names = comma ? comma + 1 : NULL;
    }
    return NULL;
}

/* SM_VLLM_<NAME>: vLLM's SageMaker container passes --<name> this way. */
static const char *sm_vllm_lookup(const struct option_row *r, char *which, size_t cap)
{
    const char *names[2] = { r->alias, r->name };
    for (int k = 0; k < 2; k++) {
        if (!names[k]) continue;
        int n = snprintf(which, cap, "SM_VLLM_");
        for (const char *p = names[k]; *p && (size_t)n + 1 < cap; p++) which[n++] = *p == '-' ? '_' : (char)toupper(*p);
        which[n] = 0;
        const char *v = getenv(which);
        if (v && *v) return v;
    }
    return NULL;
}

int config_apply_env(struct config *c, unsigned cmd, char *err, size_t errlen)
{
    for (size_t i = 0; i < N_ROWS; i++) {
        const struct option_row *r = &g_rows[i];
        if (!(r->cmds & cmd) || r->type == OPT_FLAG_INV) continue;
        char which[128];
        const char *v = env_lookup(r->env, which, sizeof which);
        if (!v) v = sm_vllm_lookup(r, which, sizeof which);
        if (!v) continue;
        int rc = set_value(c, r, v, err, errlen);
        if (rc) {
            size_t n = strlen(err);
            snprintf(err + n, errlen - n, " (from %s)", which);
            return rc;
        }
    }
    return 0;
}

int config_parse_args(struct config *c, unsigned cmd, int argc, char **argv, int first, int *help, char *err,
                      size_t errlen)
{
    *help = 0;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = 1;
            return 0;
        }
        const struct option_row *r = NULL;
        const char *value = NULL;
        if (a[0] == '-' && a[1] == '-' && a[2]) {
            const char *eq = strchr(a + 2, '=');
            r = find_row(a + 2, eq ? (size_t)(eq - a - 2) : strlen(a + 2), 0);
            if (eq) value = eq + 1;
        } else if (a[0] == '-' && a[1] && !a[2]) {
            r = find_row(NULL, 0, a[1]);
        }
        if (!r || !(r->cmds & cmd)) return ifd_fail(err, errlen, IFD_ERR_INVALID, "unknown option '%s' (see --help)", a);
        if (!value && (r->type == OPT_FLAG || r->type == OPT_FLAG_INV)) value = "1";
        if (!value) {
            if (i + 1 >= argc) return ifd_fail(err, errlen, IFD_ERR_INVALID, "--%s needs a value", r->name);
            value = argv[++i];
        }
        int rc = set_value(c, r, value, err, errlen);
        if (rc) return rc;
    }
    return 0;
}

int config_validate(const struct config *c, char *err, size_t errlen)
{
    if (strcmp(c->load_format, "gguf") && strcmp(c->load_format, "dummy"))
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "--load-format must be gguf or dummy");
    if (c->threads < 0 || c->threads > 1024) return ifd_fail(err, errlen, IFD_ERR_INVALID, "--threads must be in [0, 1024]");
    if (c->ctx_size < 0) return ifd_fail(err, errlen, IFD_ERR_INVALID, "--ctx-size must be >= 0");
    if (c->max_num_batched_tokens < 1 || c->max_num_batched_tokens > 65536)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "--max-num-batched-tokens must be in [1, 65536]");
    if (c->max_num_seqs < 1 || c->max_num_seqs > 4096 || c->max_num_seqs > c->max_num_batched_tokens)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "--max-num-seqs must be in [1, min(4096, --max-num-batched-tokens)]");
    if (c->max_queued_requests < 1) return ifd_fail(err, errlen, IFD_ERR_INVALID, "--max-queued-requests must be >= 1");
    if (c->sampling_threads < 0 || c->sampling_threads > 256)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "--sampling-threads must be in [0, 256]");
    if (!(c->gpu_memory_utilization > 0 && c->gpu_memory_utilization <= 1))
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "--gpu-memory-utilization must be in (0, 1]");
    if (strcmp(c->kv_cache_dtype, "auto") && strcmp(c->kv_cache_dtype, "f16") && strcmp(c->kv_cache_dtype, "q8_0"))
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "--kv-cache-dtype must be auto, f16 or q8_0");
    if (c->requests < 0 || c->concurrency < 1 || c->concurrency > 4096)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "--requests must be >= 0 and --concurrency in [1, 4096]");
    if (c->log_level[0] && log_level_parse(c->log_level) < 0)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "--log-level must be debug, info, warn, error or off");
    if (c->n_predict < 0) return ifd_fail(err, errlen, IFD_ERR_INVALID, "--n-predict must be >= 0");
    if (!(c->temperature >= 0 && c->temperature <= 100)) return ifd_fail(err, errlen, IFD_ERR_INVALID, "--temp must be in [0, 100]");
    if (!(c->top_p > 0 && c->top_p <= 1)) return ifd_fail(err, errlen, IFD_ERR_INVALID, "--top-p must be in (0, 1]");
    if (!(c->min_p >= 0 && c->min_p <= 1)) return ifd_fail(err, errlen, IFD_ERR_INVALID, "--min-p must be in [0, 1]");
    if (!(c->repeat_penalty > 0)) return ifd_fail(err, errlen, IFD_ERR_INVALID, "--repeat-penalty must be > 0");
    if (strcmp(c->log_format, "text") && strcmp(c->log_format, "json"))
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "--log-format must be text or json");
    if (c->port < 1 || c->port > 65535) return ifd_fail(err, errlen, IFD_ERR_INVALID, "--port must be in [1, 65535]");
    if (c->http_threads < 1 || c->http_threads > 256)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "--http-threads must be in [1, 256]");
    if (c->max_connections < 1 || c->max_connections > 1000000)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "--max-connections must be in [1, 1000000]");
    if (c->max_body_size < 1024) return ifd_fail(err, errlen, IFD_ERR_INVALID, "--max-body-size must be at least 1K");
    if (c->max_header_size < 4096 || c->max_header_size > (1u << 24))
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "--max-header-size must be in [4K, 16M]");
    if (c->timeout_s < 1 || c->keepalive_s < 1)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "--timeout and --keepalive must be >= 1 second");
    if (!(c->shutdown_timeout >= 0 && c->shutdown_timeout <= 3600))
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "--shutdown-timeout must be in [0, 3600]");
    if (c->prompt_len < 1 || c->gen_len < 1 || c->decode_depth < 0)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "--prompt-len and --gen-len must be >= 1, --decode-depth >= 0");
    if (c->repetitions < 1 || c->repetitions > 1000)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "--repetitions must be in [1, 1000]");
    return 0;
}

void config_print_help(FILE *f, unsigned cmd)
{
    for (size_t i = 0; i < N_ROWS; i++) {
        const struct option_row *r = &g_rows[i];
        if (!(r->cmds & cmd)) continue;
        char flag[48];
        if (r->short_name) snprintf(flag, sizeof flag, "-%c, --%s", r->short_name, r->name);
        else snprintf(flag, sizeof flag, "    --%s", r->name);
        fprintf(f, "  %-24s %s", flag, r->help);
        if (r->def[0] && r->type != OPT_FLAG && r->type != OPT_FLAG_INV) fprintf(f, " [default: %s]", r->def);
        if (r->alias) fprintf(f, " [also --%s]", r->alias);
        if (r->env) fprintf(f, " [env: %s]", r->env);
        fputc('\n', f);
    }
}

static int file_exists(const char *p) { return access(p, R_OK) == 0; }

int config_find_default_model(char *out, size_t cap)
{
    /* cwd first (the README runs from the checkout), then next to the executable
     * (build/inferd -> ../models), then a system location. */
    char exe[CONFIG_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    const char *candidates[] = { "models", NULL, NULL, "/usr/share/inferd/models" };
    char up1[CONFIG_PATH_MAX + 16], up2[CONFIG_PATH_MAX + 16];
    snprintf(up1, sizeof up1, "%s/../models", exe);
    snprintf(up2, sizeof up2, "%s/../../models", exe);
    candidates[1] = up1;
    candidates[2] = up2;
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        snprintf(out, cap, "%s/%s", candidates[i], CONFIG_DEFAULT_MODEL_FILE);
        if (file_exists(out)) return 0;
    }
    return IFD_ERR_NOT_FOUND;
}

/* SPDX-License-Identifier: Apache-2.0
 *
 * test_config.c: the option table: every example in configs/ loads and
 * validates for its command (configs/<command>-*.json), precedence is
 * default < file < environment < flag, and bad values name the option.
 */
#include "test.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "inferd/config.h"

TEST(config_examples_load)
{
    char dir[4096], path[8192], err[512];
    snprintf(dir, sizeof dir, "%s/configs", test_root());
    DIR *d = opendir(dir);
    ASSERT(d);
    int n = 0;
    struct config *c = malloc(sizeof *c);
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json")) continue;
        unsigned cmd = strncmp(e->d_name, "generate-", 9) == 0 ? CMD_GENERATE
                     : strncmp(e->d_name, "bench-", 6) == 0   ? CMD_BENCH
                     : strncmp(e->d_name, "serve-", 6) == 0   ? CMD_SERVE
                                                               : 0;
        ASSERT_MSG(cmd, "configs/%s: name must start with the command it is for (generate-, bench-, serve-)",
                   e->d_name);
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        config_defaults(c);
        ASSERT_MSG(config_apply_file(c, cmd, path, err, sizeof err) == 0, "%s: %s", e->d_name, err);
        ASSERT_MSG(config_validate(c, err, sizeof err) == 0, "%s: %s", e->d_name, err);
        n++;
    }
    closedir(d);
    ASSERT(n >= 4);
    free(c);
}

TEST(config_precedence_and_errors)
{
    char path[] = "/tmp/inferd-config-XXXXXX", err[512];
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    const char *json = "{\"threads\": 2, \"temp\": 0.5, \"prompt\": \"from file\", \"ignore-eos\": true}";
    ASSERT(write(fd, json, strlen(json)) == (ssize_t)strlen(json));
    close(fd);
    struct config *c = malloc(sizeof *c);
    config_defaults(c);
    ASSERT_EQ(c->threads, 0);
    ASSERT_EQ(c->n_predict, 128);
    ASSERT_OK(config_apply_file(c, CMD_GENERATE, path, err, sizeof err));
    ASSERT_EQ(c->threads, 2);
    ASSERT_NEAR(c->temperature, 0.5, 0);
    ASSERT_EQ(c->ignore_eos, 1);
    ASSERT_STR_EQ(c->prompt, "from file");
    setenv("INFERD_THREADS", "3", 1);
    ASSERT_OK(config_apply_env(c, CMD_GENERATE, err, sizeof err));
    ASSERT_EQ(c->threads, 3);
    char *argv[] = { "inferd", "generate", "-t", "4", "--temp=0.25", "--ignore-eos", NULL };
    int help;
    ASSERT_OK(config_parse_args(c, CMD_GENERATE, 6, argv, 2, &help, err, sizeof err));
    ASSERT_EQ(c->threads, 4);
    ASSERT_NEAR(c->temperature, 0.25, 0);
    ASSERT_EQ(help, 0);
    /* errors name the option */
    setenv("INFERD_THREADS", "many", 1);
    ASSERT_EQ(config_apply_env(c, CMD_GENERATE, err, sizeof err), IFD_ERR_INVALID);
    ASSERT(strstr(err, "--threads") && strstr(err, "INFERD_THREADS"));
    unsetenv("INFERD_THREADS");
    char *bad[] = { "inferd", "bench", "--prompt", "x", NULL }; /* a generate-only option */
    ASSERT_EQ(config_parse_args(c, CMD_BENCH, 4, bad, 2, &help, err, sizeof err), IFD_ERR_INVALID);
    ASSERT(strstr(err, "unknown option"));
    c->top_p = 1.5f;
    ASSERT_EQ(config_validate(c, err, sizeof err), IFD_ERR_INVALID);
    ASSERT(strstr(err, "--top-p"));
    c->top_p = 1;
    ASSERT_NEAR(c->gpu_memory_utilization, 0.9, 1e-6);
    char *gmu[] = { "inferd", "serve", "--gpu-memory-utilization", "1.5", NULL };
    ASSERT_OK(config_parse_args(c, CMD_SERVE, 4, gmu, 2, &help, err, sizeof err));
    ASSERT_EQ(config_validate(c, err, sizeof err), IFD_ERR_INVALID);
    ASSERT(strstr(err, "--gpu-memory-utilization"));
    gmu[3] = "0.5";
    ASSERT_OK(config_parse_args(c, CMD_SERVE, 4, gmu, 2, &help, err, sizeof err));
    ASSERT_OK(config_validate(c, err, sizeof err));
    ASSERT_NEAR(c->gpu_memory_utilization, 0.5, 1e-6);
    unlink(path);
    free(c);
}

/* The environment a SageMaker LMI or vLLM container is given maps onto our
 * options; INFERD_* wins over the container names when both are set. */
TEST(config_sagemaker_environment)
{
    char err[512];
    struct config *c = malloc(sizeof *c);
    config_defaults(c);
    setenv("HF_MODEL_ID", "/opt/ml/model", 1);
    setenv("SAGEMAKER_BIND_TO_PORT", "9090", 1);
    setenv("OPTION_MAX_ROLLING_BATCH_SIZE", "8", 1);
    setenv("OPTION_MAX_MODEL_LEN", "1024", 1);
    setenv("SM_VLLM_MAX_NUM_BATCHED_TOKENS", "256", 1);
    setenv("SM_VLLM_SERVED_MODEL_NAME", "smol", 1);
    setenv("OPTION_GPU_MEMORY_UTILIZATION", "0.75", 1);
    ASSERT_OK(config_apply_env(c, CMD_SERVE, err, sizeof err));
    ASSERT_NEAR(c->gpu_memory_utilization, 0.75, 1e-6);
    ASSERT_STR_EQ(c->model, "/opt/ml/model");
    ASSERT_EQ(c->port, 9090);
    ASSERT_EQ(c->max_num_seqs, 8);
    ASSERT_EQ(c->ctx_size, 1024);
    ASSERT_EQ(c->max_num_batched_tokens, 256);
    ASSERT_STR_EQ(c->served_model_name, "smol");
    setenv("INFERD_PORT", "7070", 1);
    ASSERT_OK(config_apply_env(c, CMD_SERVE, err, sizeof err));
    ASSERT_EQ(c->port, 7070);
    setenv("OPTION_MAX_MODEL_LEN", "lots", 1);
    ASSERT_EQ(config_apply_env(c, CMD_SERVE, err, sizeof err), IFD_ERR_INVALID);
    ASSERT(strstr(err, "OPTION_MAX_MODEL_LEN"));
    const char *vars[] = { "HF_MODEL_ID", "SAGEMAKER_BIND_TO_PORT", "OPTION_MAX_ROLLING_BATCH_SIZE", "OPTION_MAX_MODEL_LEN",
                           "SM_VLLM_MAX_NUM_BATCHED_TOKENS", "SM_VLLM_SERVED_MODEL_NAME", "INFERD_PORT",
                           "OPTION_GPU_MEMORY_UTILIZATION" };
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) unsetenv(vars[i]);
    free(c);
}

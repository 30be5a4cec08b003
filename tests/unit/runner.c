/* SPDX-License-Identifier: Apache-2.0
 *
 * runner.c: the unit-test runner. Each registered test (test_list.h) runs in a
 * forked child with an alarm-based timeout; the parent reports PASS, FAIL,
 * TIMEOUT or CRASH with the signal. CTest calls it once per test by name.
 *
 *   inferd_tests                 run the default tier
 *   inferd_tests --tier full     run every tier
 *   inferd_tests NAME...         run the named tests (any tier)
 *   inferd_tests --list          print names, timeouts and tiers
 */
#include "test.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { TIER_DEFAULT = 0, TIER_FULL = 1 };

#define TEST_ENTRY(name, timeout, tier) void test_##name(void);
#include "test_list.h"
#undef TEST_ENTRY

struct test_case {
    const char *name;
    void (*fn)(void);
    int timeout;
    int tier;
};

static const struct test_case g_tests[] = {
#define TEST_ENTRY(name, timeout, tier) { #name, test_##name, timeout, tier },
#include "test_list.h"
#undef TEST_ENTRY
};
static const int g_n_tests = (int)(sizeof g_tests / sizeof g_tests[0]);

void test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "  %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    _exit(1);
}

void test_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("  note: ", stdout);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
}

const char *test_root(void)
{
    const char *r = getenv("INFERD_SOURCE_DIR");
    return r ? r : INFERD_SOURCE_DIR;
}

const char *test_data_path(const char *rel, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/tests/data/%s", test_root(), rel);
    return buf;
}

const char *test_model_path(void)
{
    static char buf[4096];
    const char *m = getenv("INFERD_MODEL");
    if (m) return m;
    snprintf(buf, sizeof buf, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", test_root());
    return buf;
}

const char *test_gemma_path(void)
{
    static char buf[4096];
    const char *m = getenv("INFERD_GEMMA_MODEL");
    if (m) return m;
    snprintf(buf, sizeof buf, "%s/models/gemma-3-270m-q4_k_m.gguf", test_root());
    return buf;
}

char *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) test_fail(__FILE__, __LINE__, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) test_fail(__FILE__, __LINE__, "cannot read %s", path);
    buf[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Runs one test in a child; returns 0 on pass. */
static int run_one(const struct test_case *t)
{
    fflush(stdout);
    fflush(stderr);
    double t0 = now_ms();
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        const char *scale = getenv("INFERD_TEST_TIMEOUT_SCALE"); /* sanitizer builds run slower */
        alarm((unsigned)(t->timeout * (scale && atoi(scale) > 0 ? atoi(scale) : 1)));
        t->fn();
        fflush(stdout);
        _exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {}
    double ms = now_ms() - t0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        printf("PASS %s (%.0f ms)\n", t->name, ms);
        return 0;
    }
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        printf("TIMEOUT %s (after %d s)\n", t->name, t->timeout);
    else if (WIFSIGNALED(status))
        printf("CRASH %s (signal %d: %s)\n", t->name, WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        printf("FAIL %s (%.0f ms)\n", t->name, ms);
    return 1;
}

int main(int argc, char **argv)
{
    int tier = TIER_DEFAULT, n_run = 0, n_fail = 0, named = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            for (int k = 0; k < g_n_tests; k++)
                printf("%s %d %s\n", g_tests[k].name, g_tests[k].timeout, g_tests[k].tier ? "full" : "default");
            return 0;
        }
        if (strcmp(argv[i], "--tier") == 0 && i + 1 < argc) {
            tier = strcmp(argv[++i], "full") == 0 ? TIER_FULL : TIER_DEFAULT;
            continue;
        }
        named = 1;
        int found = 0;
        for (int k = 0; k < g_n_tests; k++) {
            if (strcmp(g_tests[k].name, argv[i]) != 0) continue;
            found = 1;
            n_run++;
            n_fail += run_one(&g_tests[k]);
        }
        if (!found) {
            fprintf(stderr, "no test named '%s' (see --list)\n", argv[i]);
            n_fail++;
        }
    }
    if (!named)
        for (int k = 0; k < g_n_tests; k++)
            if (g_tests[k].tier <= tier) {
                n_run++;
                n_fail += run_one(&g_tests[k]);
            }
    printf("%d run, %d failed\n", n_run, n_fail);
    return n_fail ? 1 : 0;
}

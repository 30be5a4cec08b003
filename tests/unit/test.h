/* SPDX-License-Identifier: Apache-2.0
 *
 * test.h: the unit-test vocabulary. A test is `TEST(name) { ... }` in some
 * tests/unit/test_<module>.c and one TEST_ENTRY line in test_list.h. The runner
 * runs each test in its own process with a timeout, so a crash or hang fails
 * that test alone. Assertions print file:line and the values, then end the
 * test process.
 *
 * Tests may #include the .c file they test to reach its static functions.
 */
#ifndef INFERD_TEST_H
#define INFERD_TEST_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "inferd/error.h"

#define TEST(name) void test_##name(void)

_Noreturn void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prints an informational line (measurements a test reports, e.g. max |diff|). */
void test_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Paths: the repository root, tests/data, the default model (INFERD_MODEL overrides),
 * and the Gemma 3 270M model used for the SentencePiece tokenizer (INFERD_GEMMA_MODEL). */
const char *test_root(void);
const char *test_data_path(const char *rel, char *buf, size_t cap);
const char *test_model_path(void);
const char *test_gemma_path(void);
/* Reads a whole file into a malloc'd NUL-terminated buffer (fails the test on error). */
char *test_read_file(const char *path, size_t *len);

#define ASSERT(cond)                                                                                          \
    do {                                                                                                      \
        if (!(cond)) test_fail(__FILE__, __LINE__, "assertion failed: %s", #cond);                           \
    } while (0)

#define ASSERT_MSG(cond, ...)                                                                                 \
    do {                                                                                                      \
        if (!(cond)) test_fail(__FILE__, __LINE__, __VA_ARGS__);                                              \
    } while (0)

#define ASSERT_EQ(a, b)                                                                                       \
    do {                                                                                                      \
        long long a_ = (long long)(a), b_ = (long long)(b);                                                  \
        if (a_ != b_) test_fail(__FILE__, __LINE__, "%s == %s failed: %lld vs %lld", #a, #b, a_, b_);       \
    } while (0)

#define ASSERT_OK(expr)                                                                                       \
    do {                                                                                                      \
        int rc_ = (expr);                                                                                     \
        if (rc_ != 0) test_fail(__FILE__, __LINE__, "%s returned %d (%s)", #expr, rc_, ifd_strerror(rc_));  \
    } while (0)

#define ASSERT_NEAR(a, b, tol)                                                                                \
    do {                                                                                                      \
        double a_ = (double)(a), b_ = (double)(b);                                                           \
        if (!(fabs(a_ - b_) <= (tol)))                                                                        \
            test_fail(__FILE__, __LINE__, "%s ~= %s failed: %.9g vs %.9g (tol %g)", #a, #b, a_, b_, (double)(tol)); \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                                                   \
    do {                                                                                                      \
        const char *a_ = (a), *b_ = (b);                                                                      \
        if (strcmp(a_, b_) != 0) test_fail(__FILE__, __LINE__, "%s == %s failed: \"%s\" vs \"%s\"", #a, #b, a_, b_); \
    } while (0)

#endif

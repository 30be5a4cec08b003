/* SPDX-License-Identifier: Apache-2.0
 *
 * fuzz_jinja.c: libFuzzer target for the chat-template interpreter. Each
 * input is template text; it is compiled and, when that succeeds, rendered
 * against a fixed conversation (system/user/assistant turns, a tool call and
 * its result, a tools list, string and list content, unicode) with tight
 * limits so every run stays fast. What must hold for any bytes:
 *   - compile and render return 0 or a negative IFD_ERR_* code, with a
 *     NUL-terminated message on failure;
 *   - a successful render's output is NUL-terminated, its length fits the
 *     output limit and it is valid UTF-8 unless the template itself wrote
 *     raw bytes through escapes (we only check termination and bounds);
 *   - rendering twice gives the same result (no hidden state).
 * Memory errors and undefined behaviour are the sanitizers' to find.
 *
 * Seed it with the real templates:
 *   ./build-fuzz/tests/fuzz/fuzz_jinja -max_len=16384 corpus/ tests/data/templates/
 */
#include "inferd/chat_template.h"
#include "inferd/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_INPUT (1 << 16)

static json_t *g_messages, *g_tools, *g_kwargs;

static void check(bool ok, const char *what)
{
    if (ok) return;
    fprintf(stderr, "fuzz_jinja: invariant failed: %s\n", what);
    __builtin_trap();
}

static void init(void)
{
    static bool done;
    if (done) return;
    done = true;
    const char *conv =
        "[{\"role\":\"system\",\"content\":\"Be brief. \\u00e9\\ud83d\\ude00\"},"
        "{\"role\":\"user\",\"content\":\"What's the weather in \\\"Paris\\\"?\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call12345\",\"type\":\"function\","
        "\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\",\"n\":1.5}}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call12345\",\"content\":\"21C\"},"
        "{\"role\":\"assistant\",\"content\":\"<think>hmm</think>It is 21C.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"thanks\"},{\"type\":\"image\"}]}]";
    const char *tools = "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather.\","
                        "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]";
    g_messages = json_loads(conv, 0, NULL);
    g_tools = json_loads(tools, 0, NULL);
    g_kwargs = json_loads("{\"enable_thinking\":false}", 0, NULL);
    check(g_messages && g_tools && g_kwargs, "fixed context parses");
}

static int render(const struct jinja_template *t, char **out, size_t *len, char *err, size_t errlen)
{
    struct jinja_render_opts o;
    memset(&o, 0, sizeof o);
    o.now = 1721995200;
    o.limits.max_output = 1 << 20;
    o.limits.max_memory = 32 << 20;
    o.limits.max_steps = 200000;
    o.limits.max_depth = 200;
    return chat_template_apply(t, g_messages, g_tools, true, "<s>", "</s>", g_kwargs, &o, out, len, err, errlen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT) return 0;
    init();
    char err[512];
    struct jinja_template *t = NULL;
    int rc = jinja_compile(&t, (const char *)data, size, err, sizeof err);
    check(rc <= 0, "compile returns 0 or an error code");
    if (rc < 0) {
        check(t == NULL && memchr(err, 0, sizeof err) != NULL, "failed compile leaves no template and a message");
        return 0;
    }
    char *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;
    int ra = render(t, &a, &alen, err, sizeof err);
    int rb = render(t, &b, &blen, err, sizeof err);
    check(ra <= 0 && rb <= 0, "render returns 0 or an error code");
    check(ra == rb, "rendering is repeatable");
    if (ra == 0) {
        check(a && b && a[alen] == 0 && alen <= (1u << 20), "output terminated and bounded");
        check(alen == blen && memcmp(a, b, alen) == 0, "same output twice");
    } else {
        check(!a && !b, "no output on failure");
    }
    free(a);
    free(b);
    jinja_free(t);
    return 0;
}

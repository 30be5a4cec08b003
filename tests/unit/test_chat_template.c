/* SPDX-License-Identifier: Apache-2.0
 *
 * test_chat_template.c: the chat-template interpreter (chat_template.h)
 * against Python's jinja2 as transformers sets it up. The goldens in
 * tests/data/templates/ come from scripts/gen_template_golden.py:
 *   golden_chat.json      every template of templates.json with every
 *                         conversation of conversations.json
 *   golden_snippets.json  the language corpus of snippets.json
 * A golden is either the exact output or jinja2's error; for errors raised
 * by the template's raise_exception() the message must match exactly, for
 * jinja2's own errors our message must start with jinja2's (we add the
 * template line), unless the snippet is marked loose_error.
 *
 * Also: limits against hostile templates, API conventions, concurrency, speed.
 */
#include "test.h"

#include "inferd/chat_template.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PINNED_NOW 1721995200 /* 2024-07-26 12:00:00 UTC, as the golden generator pins strftime_now */

static json_t *load_json(const char *rel)
{
    char path[4096];
    json_error_t e;
    json_t *j = json_load_file(test_data_path(rel, path, sizeof path), 0, &e);
    ASSERT_MSG(j, "%s: %s (line %d)", path, e.text, e.line);
    return j;
}

static struct jinja_template *compile_file(const char *rel)
{
    char path[4096];
    size_t len;
    char *src = test_read_file(test_data_path(rel, path, sizeof path), &len);
    char err[512];
    struct jinja_template *t;
    int rc = jinja_compile(&t, src, len, err, sizeof err);
    ASSERT_MSG(rc == 0, "%s: %s", rel, err);
    free(src);
    return t;
}

static struct jinja_render_opts pinned_opts(void)
{
    struct jinja_render_opts o;
    memset(&o, 0, sizeof o);
    o.now = PINNED_NOW;
    return o;
}

/* Compares one C result with one golden; returns false (after printing why) on a difference. */
static bool check_result(const char *what, const json_t *gold, int rc, const char *out, size_t out_len, const char *err,
                         bool compiled, bool loose)
{
    const json_t *want_out = json_object_get(gold, "out");
    if (want_out) {
        if (rc != 0) {
            fprintf(stderr, "  %s: jinja2 renders, we fail: %s\n", what, err);
            return false;
        }
        if (out_len != json_string_length(want_out) || memcmp(out, json_string_value(want_out), out_len) != 0) {
            fprintf(stderr, "  %s: output differs\n    jinja2: %.300s\n    ours:   %.300s\n", what,
                    json_string_value(want_out), out);
            return false;
        }
        return true;
    }
    const char *want_err = json_string_value(json_object_get(gold, "error"));
    const char *exc = json_string_value(json_object_get(gold, "exc"));
    const char *stage = json_string_value(json_object_get(gold, "stage"));
    if (rc == 0) {
        fprintf(stderr, "  %s: jinja2 fails (%s: %s), we render: %.200s\n", what, exc, want_err, out);
        return false;
    }
    if (loose) return true;
    if ((strcmp(stage, "compile") == 0) != !compiled) {
        fprintf(stderr, "  %s: jinja2 fails at %s, we fail %s: %s\n", what, stage, compiled ? "rendering" : "compiling", err);
        return false;
    }
    bool raised = strcmp(exc, "TemplateError") == 0;
    if (raised ? (rc != IFD_ERR_INVALID || strcmp(err, want_err) != 0) : strncmp(err, want_err, strlen(want_err)) != 0) {
        fprintf(stderr, "  %s: error differs (rc %d)\n    jinja2: %s: %s\n    ours:   %s\n", what, rc, exc, want_err, err);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- the real templates */

TEST(chat_template_matches_jinja2_corpus)
{
    json_t *manifest = load_json("templates/templates.json");
    json_t *convs = load_json("templates/conversations.json");
    json_t *golden = load_json("templates/golden_chat.json");
    json_t *results = json_object_get(golden, "results");
    ASSERT(json_array_size(convs) >= 30);
    struct jinja_render_opts opts = pinned_opts();
    int n = 0, bad = 0, raised = 0;
    size_t i, k;
    json_t *tpl, *conv;
    json_array_foreach(manifest, i, tpl) {
        const char *name = json_string_value(json_object_get(tpl, "name"));
        char rel[256];
        snprintf(rel, sizeof rel, "templates/%s", json_string_value(json_object_get(tpl, "file")));
        struct jinja_template *t = compile_file(rel);
        json_array_foreach(convs, k, conv) {
            const char *cname = json_string_value(json_object_get(conv, "name"));
            const json_t *gold = json_object_get(json_object_get(results, name), cname);
            ASSERT_MSG(gold, "no golden for %s x %s: rerun scripts/gen_template_golden.py", name, cname);
            char *out = NULL, err[1024] = "";
            size_t out_len = 0;
            int rc = chat_template_apply(t, json_object_get(conv, "messages"), json_object_get(conv, "tools"),
                                         json_is_true(json_object_get(conv, "add_generation_prompt")),
                                         json_string_value(json_object_get(tpl, "bos_token")),
                                         json_string_value(json_object_get(tpl, "eos_token")),
                                         json_object_get(conv, "kwargs"), &opts, &out, &out_len, err, sizeof err);
            char what[256];
            snprintf(what, sizeof what, "%s x %s", name, cname);
            if (!check_result(what, gold, rc, out, out_len, err, true, false)) bad++;
            if (rc == IFD_ERR_INVALID && json_object_get(gold, "exc") &&
                strcmp(json_string_value(json_object_get(gold, "exc")), "TemplateError") == 0)
                raised++;
            if (rc == 0) ASSERT(out && out[out_len] == 0);
            else ASSERT(out == NULL);
            free(out);
            n++;
        }
        jinja_free(t);
    }
    test_note("%d renders (%zu templates x %zu conversations), %d raise_exception matches, jinja2 %s", n,
              json_array_size(manifest), json_array_size(convs), raised,
              json_string_value(json_object_get(golden, "jinja2")));
    ASSERT_MSG(bad == 0, "%d of %d renders differ from jinja2", bad, n);
    ASSERT(raised > 10);
    json_decref(manifest);
    json_decref(convs);
    json_decref(golden);
}

/* ---------------------------------------------------------------- the language corpus */

TEST(chat_template_language_matches_jinja2)
{
    json_t *snippets = load_json("templates/snippets.json");
    json_t *golden = load_json("templates/golden_snippets.json");
    json_t *results = json_object_get(golden, "results");
    json_t *base = json_object_get(snippets, "context");
    struct jinja_render_opts opts = pinned_opts();
    int n = 0, bad = 0;
    size_t i;
    json_t *sn;
    json_array_foreach(json_object_get(snippets, "snippets"), i, sn) {
        const char *name = json_string_value(json_object_get(sn, "name"));
        const json_t *gold = json_object_get(results, name);
        ASSERT_MSG(gold, "no golden for snippet %s: rerun scripts/gen_template_golden.py", name);
        json_t *ctx = json_deep_copy(base);
        json_t *extra = json_object_get(sn, "ctx");
        if (extra) json_object_update(ctx, extra);
        const json_t *src = json_object_get(sn, "template");
        char err[1024] = "";
        char *out = NULL;
        size_t out_len = 0;
        struct jinja_template *t = NULL;
        int rc = jinja_compile(&t, json_string_value(src), json_string_length(src), err, sizeof err);
        bool compiled = rc == 0;
        if (compiled) rc = jinja_render_opts(t, ctx, &opts, &out, &out_len, err, sizeof err);
        if (!check_result(name, gold, rc, out, out_len, err, compiled, json_is_true(json_object_get(sn, "loose_error"))))
            bad++;
        free(out);
        jinja_free(t);
        json_decref(ctx);
        n++;
    }
    test_note("%d snippets", n);
    ASSERT_MSG(bad == 0, "%d of %d snippets differ from jinja2", bad, n);
    json_decref(snippets);
    json_decref(golden);
}

/* ---------------------------------------------------------------- hostile templates */

struct bad_case {
    const char *src;
    int rc;           /* expected error code */
    const char *needle; /* expected in the message */
};

static void expect_failure(const struct bad_case *c, const struct jinja_limits *lim)
{
    char err[512] = "";
    struct jinja_template *t = NULL;
    char *out = NULL;
    size_t out_len = 0;
    int rc = jinja_compile(&t, c->src, strlen(c->src), err, sizeof err);
    if (rc == 0) {
        struct jinja_render_opts o = pinned_opts();
        if (lim) o.limits = *lim;
        json_t *ctx = json_pack("{s:[s,s]}", "messages", "a", "b");
        rc = jinja_render_opts(t, ctx, &o, &out, &out_len, err, sizeof err);
        json_decref(ctx);
    }
    ASSERT_MSG(rc == c->rc, "%.80s: rc %d (%s), wanted %d; message: %s", c->src, rc, ifd_strerror(rc), c->rc, err);
    ASSERT_MSG(out == NULL, "%.80s: output on failure", c->src);
    ASSERT_MSG(strstr(err, c->needle), "%.80s: message '%s' lacks '%s'", c->src, err, c->needle);
    jinja_free(t);
}

TEST(chat_template_bad_templates_fail_cleanly)
{
    static const struct bad_case cases[] = {
        /* syntax: a message with the line and column */
        {"hello\n  {{ 1 +* 2 }}", IFD_ERR_FORMAT, "unexpected '*' at line 2, column 9"},
        {"{% for x in y %}", IFD_ERR_FORMAT, "Unexpected end of template"},
        {"{{ x|nosuch }}", IFD_ERR_FORMAT, "No filter named 'nosuch'."},
        {"{{ x is nosuch }}", IFD_ERR_FORMAT, "No test named 'nosuch'."},
        {"{% block b %}{% endblock %}", IFD_ERR_FORMAT, "not supported"},
        {"{% include 'x' %}", IFD_ERR_FORMAT, "not supported"},
        {"{{ '\\N{BULLET}' }}", IFD_ERR_FORMAT, "not supported"},
        {"ok\xff\xfe", IFD_ERR_FORMAT, "not valid UTF-8 at line 1, column 3"},
        /* runtime: jinja2-style errors name the template line */
        {"a\n{{ x.y }}", IFD_ERR_INVALID, "'x' is undefined (template line 2)"},
        {"{{ raise_exception('no way') }}", IFD_ERR_INVALID, "no way"},
        {"{{ 'a' + 1 }}", IFD_ERR_INVALID, "can only concatenate str"},
        {"{{ [].append(1) }}", IFD_ERR_INVALID, "unsafe"},
        {"{{ joiner() }}", IFD_ERR_UNSUPPORTED, "not supported"},
        {"{{ 99999999999 * 99999999999 }}", IFD_ERR_RANGE, "integer overflow"},
        /* limits */
        {"{% set xs = range(1000)|list %}{% for i in xs %}{% for j in xs %}{% for k in xs %}{% endfor %}{% endfor %}{% endfor %}",
         IFD_ERR_RANGE, "evaluation steps"},
        {"{% set ns = namespace(i=0) %}{% set xs = range(1000)|list %}{% for i in xs %}{% for j in xs %}{% for k in xs %}"
         "{% set ns.i = ns.i + 1 %}{% endfor %}{% endfor %}{% endfor %}",
         IFD_ERR_RANGE, "evaluation steps"},
        {"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", IFD_ERR_RANGE, "evaluation steps"},
        {"{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", IFD_ERR_RANGE, "nested deeper"},
        {"{% macro f() %}{% for m in messages %}{{ f() }}{% endfor %}{% endmacro %}{{ f() }}", IFD_ERR_RANGE, "nested deeper"},
        {"{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", IFD_ERR_RANGE, "output exceeds"},
        {"{{ 'x' * 1000000000000 }}", IFD_ERR_NOMEM, "memory"},
        {"{% set s = 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' %}{% set ns = namespace(s=s) %}"
         "{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
         IFD_ERR_NOMEM, "memory"},
        {"{% set ns = namespace(l=[]) %}{% for i in range(2000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}",
         IFD_ERR_RANGE, "recursion depth"},
        {"{% set ns = namespace(l=[]) %}{% for i in range(2000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l|tojson }}",
         IFD_ERR_RANGE, "recursion depth"},
        {"{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", IFD_ERR_RANGE, "recursion depth"},
        {"{{ range(1000000)|list }}", IFD_ERR_RANGE, "MAX_RANGE"},
        {"{{ '%99999999999d' % 1 }}", IFD_ERR_RANGE, "too large"},
        {"{{ 'x'|center(999999999999) }}", IFD_ERR_RANGE, "too large"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) expect_failure(&cases[i], NULL);

    /* nesting the parser refuses before it can exhaust the stack */
    static const char *const deep[][3] = {{"{{ ", "(", ")"}, {"{{ ", "-", ""}, {"{{ ", "[", "]"}, {"{{ ", "not ", ""},
                                          {"", "{% if 1 %}", "{% endif %}"}, {"", "{% for x in y %}", "{% endfor %}"}};
    for (size_t i = 0; i < sizeof deep / sizeof deep[0]; i++) {
        static char src[16384]; /* 300 * 16 + 300 * 12 bytes at most */
        src[0] = 0;
        strcat(src, deep[i][0]);
        for (int k = 0; k < 300; k++) strcat(src, deep[i][1]);
        strcat(src, "1");
        for (int k = 0; k < 300; k++) strcat(src, deep[i][2]);
        if (deep[i][0][0]) strcat(src, " }}");
        struct bad_case c = {src, IFD_ERR_FORMAT, "nesting too deep"};
        expect_failure(&c, NULL);
    }

    /* tighter limits are honoured */
    struct jinja_limits lim = {.max_output = 100, .max_steps = 1000, .max_memory = 1 << 20, .max_depth = 20};
    static const struct bad_case tight[] = {
        {"{% for i in range(101) %}x{% endfor %}", IFD_ERR_RANGE, "output exceeds 100 bytes"},
        {"{% for i in range(2000) %}{% endfor %}", IFD_ERR_RANGE, "exceeded 1000 evaluation steps"},
        {"{{ 'x' * 2000000 }}", IFD_ERR_NOMEM, "memory"},
        {"{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(0) }}", IFD_ERR_RANGE, "nested deeper than 20"},
    };
    for (size_t i = 0; i < sizeof tight / sizeof tight[0]; i++) expect_failure(&tight[i], &lim);
}

/* Random mutations of the real templates must end in output or an error. */
TEST(chat_template_mutations_never_crash)
{
    static const char *const files[] = {"templates/qwen3.jinja", "templates/llama-3.1.jinja", "templates/gemma3.jinja",
                                        "templates/mistral-small-3.2.jinja"};
    static const char *const inserts[] = {"{{", "}}", "{%", "%}", "{#", "#}", "-", "(", ")", "[", "]", "'", "\"",
                                          "|", ".", "~", "**", " if ", " for ", "endfor", "loop", "\\", "\xc3\xa9", ","};
    json_t *convs = load_json("templates/conversations.json");
    json_t *conv = NULL, *c;
    size_t ci;
    json_array_foreach(convs, ci, c) if (strcmp(json_string_value(json_object_get(c, "name")), "tool_call_roundtrip") == 0) conv = c;
    ASSERT(conv);
    unsigned seed = 12345;
    int compiled = 0, rendered = 0, total = 0;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        char path[4096];
        size_t len;
        char *src = test_read_file(test_data_path(files[f], path, sizeof path), &len);
        char *buf = malloc(len + 64);
        for (int iter = 0; iter < 400; iter++) {
            memcpy(buf, src, len);
            size_t n = len;
            for (int m = 0; m < 1 + iter % 4; m++) {
                seed = seed * 1103515245u + 12345u;
                size_t at = (seed >> 8) % n;
                seed = seed * 1103515245u + 12345u;
                int op = (int)(seed >> 16) % 3;
                const char *ins = inserts[(seed >> 4) % (sizeof inserts / sizeof inserts[0])];
                size_t il = strlen(ins);
                if (op == 0 && n > 1) { /* delete a byte run */
                    size_t del = 1 + (seed >> 20) % 8;
                    if (at + del > n) del = n - at;
                    memmove(buf + at, buf + at + del, n - at - del);
                    n -= del;
                } else if (n + il < len + 64) { /* insert a token */
                    memmove(buf + at + il, buf + at, n - at);
                    memcpy(buf + at, ins, il);
                    n += il;
                }
            }
            char err[512];
            struct jinja_template *t;
            total++;
            if (jinja_compile(&t, buf, n, err, sizeof err) != 0) continue;
            compiled++;
            struct jinja_render_opts o = pinned_opts();
            char *out = NULL;
            size_t out_len;
            if (chat_template_apply(t, json_object_get(conv, "messages"), json_object_get(conv, "tools"), true, "<s>",
                                    "</s>", NULL, &o, &out, &out_len, err, sizeof err) == 0)
                rendered++;
            free(out);
            jinja_free(t);
        }
        free(buf);
        free(src);
    }
    test_note("%d mutants: %d compiled, %d rendered", total, compiled, rendered);
    ASSERT(compiled > 0);
    json_decref(convs);
}

/* ---------------------------------------------------------------- API conventions */

TEST(chat_template_api_conventions)
{
    char err[256];
    struct jinja_template *t;
    char *out;
    size_t n;

    /* no context: only globals; output NUL-terminated; length reported */
    const char *src = "{{ x }}|{{ range(3)|list }}|{{ raise_exception is defined }}";
    ASSERT_OK(jinja_compile(&t, src, strlen(src), err, sizeof err));
    ASSERT_OK(jinja_render(t, NULL, &out, &n, err, sizeof err));
    ASSERT_STR_EQ(out, "|[0, 1, 2]|True");
    ASSERT_EQ(n, strlen(out));
    free(out);
    /* a context that is not an object */
    json_t *arr = json_array();
    ASSERT_EQ(jinja_render(t, arr, &out, &n, err, sizeof err), IFD_ERR_INVALID);
    json_decref(arr);
    /* a NULL error buffer is allowed */
    ASSERT_OK(jinja_render(t, NULL, &out, &n, NULL, 0));
    free(out);
    jinja_free(t);
    jinja_free(NULL);

    /* "\x00" in a string literal survives as a byte */
    src = "a{{ '\\x00' }}b";
    ASSERT_OK(jinja_compile(&t, src, strlen(src), err, sizeof err));
    ASSERT_OK(jinja_render(t, NULL, &out, &n, err, sizeof err));
    ASSERT_EQ(n, 3);
    ASSERT(memcmp(out, "a\0b", 3) == 0);
    free(out);
    jinja_free(t);

    /* chat_template_apply binds what transformers binds */
    src = "{{ bos_token }}{{ messages|length }}{{ tools }}{{ documents }}{{ add_generation_prompt }}"
                      "{{ eos_token is defined }}{{ enable_thinking }}";
    ASSERT_OK(jinja_compile(&t, src, strlen(src), err, sizeof err));
    json_t *msgs = json_pack("[{s:s,s:s}]", "role", "user", "content", "hi");
    json_t *kw = json_pack("{s:b,s:s}", "enable_thinking", 0, "bos_token", "<override>");
    ASSERT_OK(chat_template_apply(t, msgs, NULL, true, "<s>", NULL, kw, NULL, &out, &n, err, sizeof err));
    ASSERT_STR_EQ(out, "<override>1NoneNoneTrueFalseFalse");
    free(out);
    ASSERT_EQ(chat_template_apply(t, kw, NULL, true, NULL, NULL, NULL, NULL, &out, &n, err, sizeof err), IFD_ERR_INVALID);
    ASSERT(strstr(err, "messages"));
    ASSERT(out == NULL);
    ASSERT_EQ(chat_template_apply(t, msgs, NULL, true, NULL, NULL, msgs, NULL, &out, &n, err, sizeof err), IFD_ERR_INVALID);
    json_decref(kw);
    jinja_free(t);

    /* raise_exception's message comes back verbatim, without a line suffix */
    src = "\n\n{% if messages[0].role == 'user' %}{{ raise_exception('Only \"system\" first, sorry') }}{% endif %}";
    ASSERT_OK(jinja_compile(&t, src, strlen(src), err, sizeof err));
    ASSERT_EQ(chat_template_apply(t, msgs, NULL, true, NULL, NULL, NULL, NULL, &out, &n, err, sizeof err), IFD_ERR_INVALID);
    ASSERT_STR_EQ(err, "Only \"system\" first, sorry");
    jinja_free(t);
    json_decref(msgs);

    /* a short error buffer truncates but stays terminated */
    char tiny[8];
    ASSERT_EQ(jinja_compile(&t, "{{ 1 +", 6, tiny, sizeof tiny), IFD_ERR_FORMAT);
    ASSERT(strlen(tiny) == sizeof tiny - 1);
    ASSERT(t == NULL);

    /* strftime_now: pinned as UTC, or the local time when unpinned */
    src = "{{ strftime_now('%d %b %Y') }}";
    ASSERT_OK(jinja_compile(&t, src, strlen(src), err, sizeof err));
    struct jinja_render_opts o = pinned_opts();
    ASSERT_OK(jinja_render_opts(t, NULL, &o, &out, &n, err, sizeof err));
    ASSERT_STR_EQ(out, "26 Jul 2024");
    free(out);
    ASSERT_OK(jinja_render(t, NULL, &out, &n, err, sizeof err));
    char today[64];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(today, sizeof today, "%d %b %Y", &tm);
    ASSERT_STR_EQ(out, today);
    free(out);
    jinja_free(t);
}

/* ---------------------------------------------------------------- threads and speed */

struct render_job {
    const struct jinja_template *t;
    const json_t *messages;
    const char *want;
    int iterations;
    int failures;
};

static void *render_worker(void *arg)
{
    struct render_job *j = arg;
    struct jinja_render_opts o = pinned_opts();
    for (int i = 0; i < j->iterations; i++) {
        char *out = NULL, err[256];
        size_t n;
        if (chat_template_apply(j->t, j->messages, NULL, true, NULL, "<|im_end|>", NULL, &o, &out, &n, err, sizeof err) ||
            strcmp(out, j->want) != 0)
            j->failures++;
        free(out);
    }
    return NULL;
}

static json_t *long_conversation(int n)
{
    json_t *msgs = json_array();
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", "You are a helpful assistant."));
    for (int i = 1; i < n; i++) {
        char text[160];
        snprintf(text, sizeof text, "Message %d: the quick brown fox jumps over the lazy dog, %d times.", i, i * 7);
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", i % 2 ? "user" : "assistant", "content", text));
    }
    return msgs;
}

TEST(chat_template_concurrent_renders)
{
    struct jinja_template *t = compile_file("templates/qwen3.jinja");
    json_t *msgs = long_conversation(21);
    struct jinja_render_opts o = pinned_opts();
    char *want, err[256];
    size_t n;
    ASSERT_OK(chat_template_apply(t, msgs, NULL, true, NULL, "<|im_end|>", NULL, &o, &want, &n, err, sizeof err));
    enum { N_THREADS = 4 };
    pthread_t th[N_THREADS];
    struct render_job jobs[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        jobs[i] = (struct render_job){t, msgs, want, 200, 0};
        ASSERT(pthread_create(&th[i], NULL, render_worker, &jobs[i]) == 0);
    }
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(th[i], NULL);
        ASSERT_EQ(jobs[i].failures, 0);
    }
    free(want);
    json_decref(msgs);
    jinja_free(t);
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

TEST(chat_template_render_speed)
{
    struct jinja_template *t = compile_file("templates/qwen3.jinja");
    json_t *msgs = long_conversation(50);
    struct jinja_render_opts o = pinned_opts();
    char err[256];
    int iters = 300;
    double t0 = now_us();
    size_t bytes = 0;
    for (int i = 0; i < iters; i++) {
        char *out;
        size_t n;
        ASSERT_OK(chat_template_apply(t, msgs, NULL, true, NULL, "<|im_end|>", NULL, &o, &out, &n, err, sizeof err));
        bytes = n;
        free(out);
    }
    double per = (now_us() - t0) / iters;
    const char *scale = getenv("INFERD_TEST_TIMEOUT_SCALE"); /* sanitizer builds run several times slower */
    double budget = 1000.0 * (scale && atoi(scale) > 0 ? atoi(scale) : 1);
    test_note("Qwen3 template, 50 messages: %.1f us per render (%zu bytes out), budget %.0f us", per, bytes, budget);
    ASSERT_MSG(per < budget, "render took %.1f us", per);
    json_decref(msgs);
    jinja_free(t);
}

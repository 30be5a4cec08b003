/* SPDX-License-Identifier: Apache-2.0
 *
 * chat_template.h: a Jinja-subset interpreter that renders a model's chat
 * template (GGUF tokenizer.chat_template, or a HF tokenizer_config.json
 * "chat_template") byte for byte like Python's jinja2 does inside Hugging
 * Face transformers' apply_chat_template: an ImmutableSandboxedEnvironment
 * with trim_blocks and lstrip_blocks, the loopcontrols extension (break,
 * continue), the "generation" tag, the globals raise_exception(msg) and
 * strftime_now(fmt), and HF's tojson filter (json.dumps, ensure_ascii off).
 *
 * What it covers, and the few places where it knowingly differs from jinja2,
 * are listed in src/server/jinja_internal.h; tests/data/templates/ holds the
 * corpus that checks it against jinja2 itself.
 *
 * The template text is semi-trusted (it comes from a model file or a
 * --chat-template file): compiling and rendering any bytes ends in output or
 * an error, never a crash or a hang. Rendering is bounded by the limits in
 * struct jinja_limits (output size, memory, evaluation steps, nesting depth);
 * going past one is an error that names the limit.
 *
 * Threads: a compiled template is immutable; any number of threads may render
 * it at once.
 *
 * Layer: server. Values come in as jansson JSON; nothing here knows HTTP.
 */
#ifndef INFERD_CHAT_TEMPLATE_H
#define INFERD_CHAT_TEMPLATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jinja_template;

/* Compiles template source (any bytes; need not be NUL-terminated). Syntax
 * errors are IFD_ERR_FORMAT with a message naming the problem, line and
 * column ("unexpected '}' at line 3, column 14"), as are invalid UTF-8,
 * unknown filters/tests outside if-branches (as in jinja2) and the few
 * unsupported constructs (block/extends/include, recursive loops...);
 * IFD_ERR_RANGE for sources over 4 MiB; IFD_ERR_NOMEM when malloc fails or
 * the template needs more than 64 MiB. */
int jinja_compile(struct jinja_template **out, const char *src, size_t len, char *err, size_t errlen);
void jinja_free(struct jinja_template *t);

/* Limits for one render. Zero fields take the defaults below. */
struct jinja_limits {
    size_t max_output;    /* bytes of rendered text (default 16 MiB) */
    size_t max_memory;    /* bytes of intermediate values (default 256 MiB) */
    uint64_t max_steps;   /* statements, loop iterations and element operations (default 10 M) */
    int max_depth;        /* nested evaluation: expressions, blocks, macro calls (default 400) */
};

#define JINJA_DEFAULT_MAX_OUTPUT ((size_t)16 << 20)
#define JINJA_DEFAULT_MAX_MEMORY ((size_t)256 << 20)
#define JINJA_DEFAULT_MAX_STEPS ((uint64_t)10000000)
#define JINJA_DEFAULT_MAX_DEPTH 400

struct jinja_render_opts {
    struct jinja_limits limits;
    /* The time strftime_now() formats. 0: the current local time (what
     * transformers does). Otherwise seconds since the epoch, formatted as UTC:
     * tests pin the date this way, e.g. 1721952000 is 26 Jul 2024. */
    int64_t now;
};

/* Renders t with the variables of ctx, a JSON object (messages,
 * add_generation_prompt, bos_token, eos_token, tools, chat_template_kwargs'
 * entries...). On success *out is a malloc'd NUL-terminated string (the text
 * itself may contain NUL bytes only if the template wrote "\x00"), *out_len
 * its length. Errors (nothing is written to *out):
 *   IFD_ERR_INVALID   the template called raise_exception(msg): err is msg,
 *                     verbatim, so the server can answer 400 with it; or the
 *                     template failed at run time the way jinja2 would
 *                     (undefined value used, type error, unknown filter...):
 *                     err says what, and on which template line;
 *   IFD_ERR_RANGE     a limit was exceeded (err names it), or a value outside
 *                     what we model (64-bit integer overflow);
 *   IFD_ERR_NOMEM     the memory limit was reached or malloc failed;
 *   IFD_ERR_UNSUPPORTED  the template used something we do not implement
 *                     (joiner(), |random...).
 * opts may be NULL (defaults). */
int jinja_render(const struct jinja_template *t, const json_t *ctx, char **out, size_t *out_len, char *err,
                 size_t errlen);
int jinja_render_opts(const struct jinja_template *t, const json_t *ctx, const struct jinja_render_opts *opts,
                      char **out, size_t *out_len, char *err, size_t errlen);

/* The convenience the server uses: renders a compiled template with the
 * variables transformers' apply_chat_template passes, without building a
 * JSON context object.
 *   messages               JSON array of message objects (not modified)
 *   tools                  JSON array or NULL (then the variable tools is none,
 *                          as transformers passes tools=None)
 *   add_generation_prompt  the variable of that name
 *   bos, eos               bos_token / eos_token (NULL: the variable is
 *                          undefined, as when a tokenizer has no such token)
 *   kwargs                 JSON object or NULL: chat_template_kwargs, each
 *                          entry becomes a variable (enable_thinking,
 *                          date_string...); they override bos_token and
 *                          eos_token as in HF, not messages, tools or
 *                          add_generation_prompt (HF refuses those twice).
 * Also defines documents = none, as transformers does. opts may be NULL. */
int chat_template_apply(const struct jinja_template *t, const json_t *messages, const json_t *tools,
                        bool add_generation_prompt, const char *bos, const char *eos, const json_t *kwargs,
                        const struct jinja_render_opts *opts, char **out, size_t *out_len, char *err,
                        size_t errlen);

#endif

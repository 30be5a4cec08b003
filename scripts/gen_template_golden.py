#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Golden renders for the chat-template interpreter (src/server/jinja_*.c).

Renders every template of tests/data/templates/templates.json with every
conversation of conversations.json, and every snippet of snippets.json, with
Python's jinja2 set up exactly as Hugging Face transformers'
apply_chat_template sets it up (transformers/utils/chat_template_utils.py,
_compile_jinja_template), without importing transformers:

  ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                extensions=[AssistantTracker, loopcontrols])
  filters["tojson"]          = json.dumps(x, ensure_ascii=False, indent=None,
                                          separators=None, sort_keys=False)
  globals["raise_exception"] = raise jinja2.exceptions.TemplateError(message)
  globals["strftime_now"]    = datetime.now().strftime(format)

and render(messages=..., tools=..., documents=None, add_generation_prompt=...,
**special_tokens, **chat_template_kwargs), as apply_chat_template does.

strftime_now is pinned to 2024-07-26 12:00:00 so the goldens do not depend on
the day they were made; the C tests pin the same instant through
jinja_render_opts.now = 1721995200 (formatted as UTC).

snippets.json is {"context": shared variables, "snippets": [{"name", "template",
"ctx" (optional, added to the shared context), "loose_error" (optional: jinja2's
wording differs, only the failure must match)}]}.

Writes golden_chat.json and golden_snippets.json next to the inputs. Each
result is {"out": text} or {"error": message, "exc": exception class,
"stage": "compile" | "render"}.

    .venv/bin/python scripts/gen_template_golden.py
"""
import copy
import datetime
import json
import os
import sys

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "templates")
PINNED_NOW = datetime.datetime(2024, 7, 26, 12, 0, 0)
PINNED_EPOCH = 1721995200  # the same instant as seconds since the epoch, UTC


class AssistantTracker(Extension):
    """transformers' {% generation %} tag: renders its body in place (the
    index tracking only matters for return_assistant_tokens_mask)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    @jinja2.pass_eval_context
    def _generation_support(self, context, caller):
        return caller()


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return PINNED_NOW.strftime(format)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def result(env, source, variables):
    try:
        template = env.from_string(source)
    except Exception as e:  # noqa: BLE001 - every failure is a golden
        return {"error": str(e), "exc": type(e).__name__, "stage": "compile"}
    try:
        # a fresh copy: jinja2 can mutate what it is given (list += str extends the list)
        return {"out": template.render(**copy.deepcopy(variables))}
    except Exception as e:  # noqa: BLE001
        return {"error": str(e), "exc": type(e).__name__, "stage": "render"}


def chat_variables(tpl, conv):
    """What apply_chat_template passes to render()."""
    special = {}
    if tpl.get("bos_token") is not None:
        special["bos_token"] = tpl["bos_token"]
    if tpl.get("eos_token") is not None:
        special["eos_token"] = tpl["eos_token"]
    variables = {
        "messages": conv["messages"],
        "tools": conv.get("tools"),
        "documents": None,
        "add_generation_prompt": conv.get("add_generation_prompt", False),
    }
    variables.update({**special, **conv.get("kwargs", {})})
    return variables


def load(name):
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return json.load(f)


def dump(name, obj):
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")


def main():
    env = make_env()
    manifest = load("templates.json")
    conversations = load("conversations.json")
    snippets = load("snippets.json")
    header = {"jinja2": jinja2.__version__, "python": sys.version.split()[0], "now": PINNED_EPOCH}

    chat = {}
    for tpl in manifest:
        with open(os.path.join(HERE, tpl["file"]), encoding="utf-8") as f:
            source = f.read()
        chat[tpl["name"]] = {c["name"]: result(env, source, chat_variables(tpl, c)) for c in conversations}
    dump("golden_chat.json", {**header, "results": chat})

    # each snippet sees the shared context plus its own ctx entries
    base = snippets["context"]
    snip = {s["name"]: result(env, s["template"], {**base, **s.get("ctx", {})}) for s in snippets["snippets"]}
    dump("golden_snippets.json", {**header, "results": snip})

    n_err = sum("error" in r for t in chat.values() for r in t.values())
    print(f"jinja2 {jinja2.__version__}: {len(manifest)} templates x {len(conversations)} conversations "
          f"({n_err} raise), {len(snip)} snippets ({sum('error' in r for r in snip.values())} raise)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Regenerates the llama.cpp reference outputs that tests/unit/test_model.c
compares inferd against, using llama-cpp-python (which builds llama.cpp from
source) on the same GGUF file:

  tests/data/model/greedy_golden.json
      10 varied prompts: llama.cpp's prompt token ids, its first 64 greedy
      tokens, and at each generated position the gap between llama.cpp's top
      two logits (so a test can tell a real mismatch from a near-tie).
  tests/data/model/teacher_golden.json
      the first 1000 tokens of teacher_text.txt, and at each position
      llama.cpp's 10 largest logits (id, value) when fed the true prefix.

Both files also carry a calibration: the same measurements through
llama.cpp's *other* CPU attention path (flash attention). On small quantized
models two correct implementations that round differently disagree at
near-ties (activation quantization amplifies float-order differences), so the
test judges inferd against how much llama.cpp disagrees with itself.

Usage: scripts/gen_model_golden.py [--model FILE] [--threads N]
"""
import argparse
import json

import numpy as np
from llama_cpp import Llama, __version__ as llama_cpp_version

PROMPTS = [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a concise assistant.<|im_end|>\n<|im_start|>user\nExplain photosynthesis in two sentences.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWrite a Python function that reverses a string.<|im_end|>\n<|im_start|>assistant\n",
    "Once upon a time, in a small village by the sea,",
    "The three primary colors are",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "<|im_start|>user\nList five fruits that are red.<|im_end|>\n<|im_start|>assistant\n",
    "In 1969, the first humans landed on the Moon. The mission was called",
    "<|im_start|>user\nTranslate 'good morning' into Spanish and German.<|im_end|>\n<|im_start|>assistant\n",
    "Q: What is 12 times 7?\nA:",
]
N_GEN = 64
N_TEACHER = 1000
TOP = 10


def top2_gap(logits):
    part = np.partition(logits, -2)[-2:]
    return float(part[1] - part[0])


def greedy_ids(llm, ids):
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(N_GEN):
        tok = int(np.argmax(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)))
        out.append(tok)
        llm.eval([tok])
    return out


def greedy(llm, prompt):
    ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    llm.reset()
    llm.eval(ids)
    out, gaps = [], []
    for _ in range(N_GEN):
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        tok = int(np.argmax(logits))
        out.append(tok)
        gaps.append(round(top2_gap(logits), 5))
        llm.eval([tok])
    return {"prompt": prompt, "prompt_ids": ids, "greedy_ids": out, "top2_gap": gaps}


def teacher(llm, text):
    ids = llm.tokenize(text.encode(), add_bos=False, special=False)[:N_TEACHER]
    llm.reset()
    llm.eval(ids)
    rows = []
    for i in range(len(ids)):
        logits = np.array(llm.scores[i], dtype=np.float32)
        top = np.argsort(-logits, kind="stable")[:TOP]
        rows.append([[int(t), round(float(logits[t]), 5)] for t in top])
    return {"ids": ids, "top_logits": rows}


def first_diff(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), -1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    def make(flash):
        return Llama(model_path=a.model, n_ctx=2048, n_batch=512, n_threads=a.threads, logits_all=True,
                     flash_attn=flash, verbose=False)
    llm, llm_fa = make(False), make(True)
    meta = {"generator": "scripts/gen_model_golden.py", "llama_cpp_python": llama_cpp_version, "model": a.model}

    prompts = [greedy(llm, p) for p in PROMPTS]
    for p in prompts:
        p["flash_attn_first_diff"] = first_diff(p["greedy_ids"], greedy_ids(llm_fa, p["prompt_ids"]))
    with open("tests/data/model/greedy_golden.json", "w") as f:
        json.dump({"meta": meta, "prompts": prompts}, f)

    with open("tests/data/model/teacher_text.txt") as tf:
        data = teacher(llm, tf.read())
    fa = teacher(llm_fa, open("tests/data/model/teacher_text.txt").read())
    data["flash_attn_top1"] = [row[0][0] for row in fa["top_logits"]]
    with open("tests/data/model/teacher_golden.json", "w") as f:
        json.dump({"meta": meta, **data}, f)
    same = sum(x == y[0][0] for x, y in zip(data["flash_attn_top1"], data["top_logits"]))
    print(f"llama.cpp flash-attn vs default: teacher-forced top-1 {same}/{len(data['ids'])}; greedy identical "
          f"{sum(p['flash_attn_first_diff'] < 0 for p in prompts)}/{len(prompts)}")


if __name__ == "__main__":
    main()

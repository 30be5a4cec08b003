#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Regenerates tests/data/quant/dequant_golden.bin: real tensor blocks of every
weight type inferd loads, with the float values the `gguf` Python package
dequantizes them to. test_quant.c checks inferd's dequant_row against it.

Sources (real weights, not random data):
  Q4_1, Q8_0, F32   the default model (SmolLM2-135M Q4_1)
  Q4_K, Q6_K        Gemma 3 270M Q4_K_M
  Q5_K              the default model requantized to Q5_K_M by llama.cpp
                    (llama-cpp-python's llama_model_quantize)
  Q4_0, F16, BF16   real SmolLM2 weights quantized by gguf-py

Each case holds up to 2048 elements. Format (little-endian): b"IDQG", u32 n_cases, then per case:
  u32 type, u32 n_elems, u32 n_bytes, 64-byte NUL-padded source name,
  n_bytes of blocks, n_elems float32.
Usage: scripts/gen_dequant_golden.py [--models DIR] [--out FILE]
"""
import argparse
import ctypes
import os
import struct
import tempfile

import numpy as np
from gguf import GGUFReader
from gguf.constants import GGMLQuantizationType as T
import gguf.quants as gq

N_ELEMS = 2048  # 8 super-blocks of 256, 64 blocks of 32


def first_tensor_of(reader, qtype):
    """The first tensor of qtype, preferring one with at least N_ELEMS elements."""
    names = [t for t in reader.tensors if t.tensor_type == qtype]
    if not names:
        raise SystemExit(f"no {qtype.name} tensor found")
    big = [t for t in names if t.n_elements >= N_ELEMS]
    return (big or names)[0].name


def requantize_q5k(src, dst):
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M
    params.allow_requantize = True
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed: {rc}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="models")
    ap.add_argument("--out", default="tests/data/quant/dequant_golden.bin")
    a = ap.parse_args()
    smol = os.path.join(a.models, "SmolLM2-135M-Instruct.Q4_1.gguf")
    gemma = os.path.join(a.models, "gemma-3-270m-q4_k_m.gguf")
    rs, rg = GGUFReader(smol), GGUFReader(gemma)
    cases = []

    def add_from(reader, label, qtype):
        name = first_tensor_of(reader, qtype)
        t = next(t for t in reader.tensors if t.name == name)
        block, size = gq.GGML_QUANT_SIZES[qtype]
        n = min(N_ELEMS, int(t.n_elements)) // block * block
        raw = np.asarray(t.data).reshape(-1).view(np.uint8)[: n // block * size]
        cases.append((qtype, bytes(raw), f"{label}:{name}"))

    add_from(rs, "smollm2", T.Q4_1)
    add_from(rs, "smollm2", T.Q8_0)
    add_from(rs, "smollm2", T.F32)
    add_from(rg, "gemma3", T.Q4_K)
    add_from(rg, "gemma3", T.Q6_K)
    with tempfile.TemporaryDirectory() as d:
        q5 = os.path.join(d, "smollm2-q5km.gguf")
        requantize_q5k(smol, q5)
        add_from(GGUFReader(q5), "smollm2-q5_k_m", T.Q5_K)
    # real weights (a Q8_0 tensor, dequantized) re-encoded by gguf-py
    qname = first_tensor_of(rs, T.Q8_0)
    qt = next(t for t in rs.tensors if t.name == qname)
    w = gq.dequantize(np.asarray(qt.data)[: N_ELEMS // qt.shape[0] + 1], T.Q8_0).reshape(-1)[:N_ELEMS].astype(np.float32)
    for qtype in (T.Q4_0, T.F16, T.BF16):
        blocks = gq.quantize(w.reshape(1, -1), qtype)
        cases.append((qtype, blocks.reshape(-1).view(np.uint8).tobytes(), f"smollm2:{qname} via gguf-py {qtype.name}"))

    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "wb") as f:
        f.write(b"IDQG" + struct.pack("<I", len(cases)))
        for qtype, raw, src in cases:
            n_blocks_bytes = np.frombuffer(raw, dtype=np.uint8)
            values = gq.dequantize(n_blocks_bytes.reshape(1, -1), qtype).reshape(-1).astype(np.float32)
            f.write(struct.pack("<III", int(qtype), values.size, len(raw)))
            f.write(src.encode()[:63].ljust(64, b"\0"))
            f.write(raw)
            f.write(values.tobytes())
            print(f"{qtype.name:5s} {len(raw):6d} bytes  {src}")


if __name__ == "__main__":
    main()

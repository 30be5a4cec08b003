#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""cut_model.py: a GGUF with only the first N transformer blocks of another.

The GPU check (tests/gpu/run.sh) runs on a machine that receives at most 64 MiB
of files, so the default model (98 MB) cannot travel there; its first few
blocks can. The cut model keeps every metadata key (the tokenizer and chat
template included) with <arch>.block_count set to N, the embedding, output
norm and output tensors, and blk.0..N-1 byte for byte. Its text is not
meaningful, but it runs the real tokenizer, real quantized weights and real
shapes, so the CPU and CUDA backends can be compared on it token for token.

  .venv/bin/pip install gguf==0.19.0     # gguf-py, llama.cpp's GGUF package
  .venv/bin/python scripts/cut_model.py --layers 4 [IN.gguf] [OUT.gguf]
  (defaults: models/SmolLM2-135M-Instruct.Q4_1.gguf -> models/smollm2-cut4.gguf)
"""
import argparse
import os
import re
import sys

from gguf import GGUFReader, GGUFValueType, GGUFWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def copy_field(w, name, field, value_override=None):
    vtype = field.types[0]
    value = field.contents() if value_override is None else value_override
    if vtype == GGUFValueType.ARRAY:
        w.add_key_value(name, value, vtype, sub_type=field.types[-1])
    else:
        w.add_key_value(name, value, vtype)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="?", default=os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("output", nargs="?")
    ap.add_argument("--layers", type=int, default=4)
    a = ap.parse_args()
    out = a.output or os.path.join(ROOT, f"models/smollm2-cut{a.layers}.gguf")

    r = GGUFReader(a.input)
    arch = r.fields["general.architecture"].contents()
    n_layers = r.fields[f"{arch}.block_count"].contents()
    if not 1 <= a.layers <= n_layers:
        sys.exit(f"cut_model: --layers must be 1..{n_layers}")
    w = GGUFWriter(out, arch)
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue  # written by GGUFWriter itself
        copy_field(w, name, field, a.layers if name == f"{arch}.block_count" else None)
    kept = 0
    for t in r.tensors:
        m = re.match(r"blk\.(\d+)\.", t.name)
        if m and int(m.group(1)) >= a.layers:
            continue
        # the stored array as is (bytes per row for quantized types) and the GGUF type
        w.add_tensor(t.name, t.data, raw_shape=list(t.data.shape), raw_dtype=t.tensor_type)
        kept += 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"cut_model: {out}: {a.layers} of {n_layers} blocks, {kept} tensors, "
          f"{os.path.getsize(out) / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the hand-made GGUF corpus under tests/data/gguf_corrupt/:
  valid_small.gguf       a small valid file using every metadata value type
  <defect>.gguf          one defect each (bad magic, huge counts, offsets past
                         the end, unknown types, truncated strings, ...)
  EXPECTED               "<file>\t<substring of the error message>" per defect
and tests/data/model_corrupt/ (llama files with bad hyper-parameters or tensors),
with its own EXPECTED. Built with struct by hand (not gguf-py) so that broken
fields can be written exactly. The same files seed the GGUF fuzzer.
Usage: scripts/gen_corrupt_gguf.py [OUT_DIR]   (default tests/data)
"""
import os
import struct
import sys

ALIGN = 32
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
              U64: "<Q", I64: "<q", F64: "<d"}


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(b)) + b


def val(t, v):
    if t == STR:
        return s(v)
    if t == ARR:
        et, items = v
        out = struct.pack("<IQ", et, len(items))
        for it in items:
            out += val(et, it)
        return out
    return struct.pack(SCALAR_FMT[t], v)


def kv(key, t, v):
    return s(key) + struct.pack("<I", t) + val(t, v)


def tinfo(name, dims, ttype, offset):
    return s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + \
        struct.pack("<IQ", ttype, offset)


def gguf(kvs, tinfos, data=b"", version=3, n_tensors=None, n_kv=None, align=ALIGN, magic=b"GGUF"):
    head = magic + struct.pack("<IQQ", version, len(tinfos) if n_tensors is None else n_tensors,
                               len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(tinfos)
    pad = (align - len(body) % align) % align
    return body + b"\0" * pad + data


def f32_tensor(n, offset=0):
    return struct.pack(f"<{n}f", *[0.5] * n)


EVERY_TYPE = [
    kv("general.architecture", STR, "test"),
    kv("t.u8", U8, 200), kv("t.i8", I8, -100), kv("t.u16", U16, 60000), kv("t.i16", I16, -30000),
    kv("t.u32", U32, 4000000000), kv("t.i32", I32, -2000000000), kv("t.f32", F32, 1.5), kv("t.bool", BOOL, True),
    kv("t.str", STR, "héllo"), kv("t.u64", U64, 2**63 + 5), kv("t.i64", I64, -2**62), kv("t.f64", F64, 2.25),
    kv("t.arr_u32", ARR, (U32, [1, 2, 3])), kv("t.arr_str", ARR, (STR, ["a", "bc", ""])),
    kv("t.arr_nested", ARR, (ARR, [(I16, [-1, 2]), (F32, [0.5])])),
]
VALID_TENSORS = [tinfo("a.weight", [8], 0, 0), tinfo("b.weight", [32, 2], 2, 32)]
VALID_DATA = f32_tensor(8) + b"\x11" * (2 * 18)


def corpus():
    v = gguf(EVERY_TYPE, VALID_TENSORS, VALID_DATA)
    yield "valid_small.gguf", v, None
    yield "empty.gguf", b"", "empty"
    yield "truncated_header.gguf", v[:10], "truncated"
    yield "bad_magic.gguf", gguf(EVERY_TYPE, VALID_TENSORS, VALID_DATA, magic=b"GGUX"), "bad magic"
    yield "version_1.gguf", gguf([], [], version=1), "version 1"
    yield "version_99.gguf", gguf([], [], version=99), "version 99"
    yield "huge_tensor_count.gguf", gguf([], [], n_tensors=2**62), "tensors, more than the file can hold"
    yield "huge_kv_count.gguf", gguf([], [], n_kv=2**61), "metadata pairs, more than the file can hold"
    yield "key_length_past_end.gguf", gguf([], [], n_kv=1)[:24] + struct.pack("<Q", 2**40) + b"abc" * 10, "runs past the end"
    yield "truncated_string_value.gguf", gguf([s("k") + struct.pack("<I", STR) + struct.pack("<Q", 100) + b"short"], [],
                                              n_kv=1)[:24 + 9 + 4 + 8 + 5], "runs past the end"
    yield "unknown_value_type.gguf", gguf([s("k") + struct.pack("<I", 99) + b"\0" * 8], []), "unknown value type 99"
    yield "array_count_huge.gguf", gguf([s("k") + struct.pack("<IIQ", ARR, U32, 2**60)], []), "runs past the end"
    yield "string_array_huge.gguf", gguf([s("k") + struct.pack("<IIQ", ARR, STR, 2**40)], []), "cannot fit in the file"
    yield "array_unknown_elem_type.gguf", gguf([s("k") + struct.pack("<IIQ", ARR, 77, 1)], []), "unknown element type 77"
    nested = struct.pack("<IQ", ARR, 1) * 12 + struct.pack("<IQ", U8, 0)
    yield "nested_array_too_deep.gguf", gguf([s("k") + struct.pack("<I", ARR) + nested], []), "nested deeper"
    yield "tensor_offset_past_end.gguf", gguf([], [tinfo("w", [8], 0, 4096)], f32_tensor(8)), "runs past the end of the file"
    yield "tensor_unknown_type.gguf", gguf([], [tinfo("w", [8], 200, 0)], f32_tensor(8)), "unknown tensor type id 200"
    yield "tensor_retired_type.gguf", gguf([], [tinfo("w", [8], 4, 0)], f32_tensor(8)), "unknown tensor type id 4"
    yield "tensor_5_dims.gguf", gguf([], [tinfo("w", [1, 1, 1, 1, 8], 0, 0)], f32_tensor(8)), "5 dimensions"
    yield "tensor_zero_dims.gguf", gguf([], [tinfo("w", [], 0, 0)], f32_tensor(8)), "0 dimensions"
    yield "tensor_zero_size.gguf", gguf([], [tinfo("w", [8, 0], 0, 0)], f32_tensor(8)), "invalid size 0"
    yield "tensor_dims_overflow.gguf", gguf([], [tinfo("w", [2**40, 2**40], 0, 0)], f32_tensor(8)), "overflows"
    yield "tensor_misaligned.gguf", gguf([], [tinfo("w", [8], 0, 4)], f32_tensor(16)), "not a multiple of the alignment"
    yield "tensor_overlap.gguf", gguf([], [tinfo("a", [16], 0, 0), tinfo("b", [16], 0, 32)], f32_tensor(32)), "overlap"
    yield "tensor_row_not_block_multiple.gguf", gguf([], [tinfo("w", [33], 2, 0)], b"\0" * 64), "not a multiple of the Q4_0 block"
    yield "tensor_name_too_long.gguf", gguf([], [tinfo("w" * 300, [8], 0, 0)], f32_tensor(8)), "exceeds the limit"
    yield "duplicate_key.gguf", gguf([kv("a", U32, 1), kv("a", U32, 2)], []), "duplicate metadata key 'a'"
    yield "duplicate_tensor.gguf", gguf([], [tinfo("w", [8], 0, 0), tinfo("w", [8], 0, 32)], f32_tensor(16)), \
        "duplicate tensor name 'w'"
    yield "alignment_not_pow2.gguf", gguf([kv("general.alignment", U32, 24)], [], align=24), "not a power of two"
    yield "alignment_wrong_type.gguf", gguf([kv("general.alignment", STR, "32")], []), "must be uint32"
    # a 4-dimensional tensor info whose fourth dimension is missing
    yield "truncated_tensor_info.gguf", gguf([], [], n_tensors=1)[:24] + s("w") + struct.pack("<IQQQ", 4, 8, 1, 1), \
        "truncated"


# ---- llama-shaped files for model-level checks ----
def llama_file(overrides=None, drop=None, shapes=None):
    E, L, H, KV, FF, V = 32, 1, 2, 1, 64, 32
    hp = {"general.architecture": (STR, "llama"), "llama.embedding_length": (U32, E), "llama.block_count": (U32, L),
          "llama.attention.head_count": (U32, H), "llama.attention.head_count_kv": (U32, KV),
          "llama.feed_forward_length": (U32, FF), "llama.context_length": (U32, 128),
          "llama.attention.layer_norm_rms_epsilon": (F32, 1e-5), "llama.rope.freq_base": (F32, 10000.0)}
    hp.update(overrides or {})
    hd = E // H
    tensors = {"token_embd.weight": [E, V], "output_norm.weight": [E],
               "blk.0.attn_norm.weight": [E], "blk.0.ffn_norm.weight": [E],
               "blk.0.attn_q.weight": [E, H * hd], "blk.0.attn_k.weight": [E, KV * hd],
               "blk.0.attn_v.weight": [E, KV * hd], "blk.0.attn_output.weight": [H * hd, E],
               "blk.0.ffn_gate.weight": [E, FF], "blk.0.ffn_up.weight": [E, FF], "blk.0.ffn_down.weight": [FF, E]}
    tensors.update(shapes or {})
    for d in drop or []:
        tensors.pop(d)
    kvs = [kv(k, t, v) for k, (t, v) in hp.items() if t is not None]
    infos, data, off = [], b"", 0
    for name, dims in tensors.items():
        n = 1
        for d in dims:
            n *= d
        infos.append(tinfo(name, dims, 0, off))
        blob = struct.pack(f"<{n}f", *([1.0] * n)) if "norm" in name else struct.pack(f"<{n}f", *([0.01] * n))
        blob += b"\0" * ((ALIGN - len(blob) % ALIGN) % ALIGN)
        data += blob
        off += len(blob)
    return gguf(kvs, infos, data)


def model_corpus():
    yield "valid_tiny_llama.gguf", llama_file(), None
    yield "arch_unknown.gguf", llama_file({"general.architecture": (STR, "mamba")}), "architecture 'mamba' is not supported"
    yield "missing_block_count.gguf", llama_file({"llama.block_count": (None, None)}), "'llama.block_count' is missing"
    yield "heads_zero.gguf", llama_file({"llama.attention.head_count": (U32, 0)}), "invalid hyper-parameters"
    yield "kv_heads_not_divisor.gguf", llama_file({"llama.attention.head_count_kv": (U32, 3)}), "not a multiple of the KV head count"
    yield "eps_wrong_type.gguf", llama_file({"llama.attention.layer_norm_rms_epsilon": (STR, "x")}), "not a finite float"
    yield "block_count_string.gguf", llama_file({"llama.block_count": (STR, "1")}), "not an integer"
    yield "missing_tensor.gguf", llama_file(drop=["blk.0.ffn_up.weight"]), "required tensor 'blk.0.ffn_up.weight' is missing"
    yield "wrong_shape.gguf", llama_file(shapes={"blk.0.attn_q.weight": [32, 30]}), "has shape [32, 30], expected [32, 32]"
    yield "rope_scaling_yarn.gguf", llama_file({"llama.rope.scaling.type": (STR, "yarn")}), "rope scaling type 'yarn'"


def write(out_dir, items):
    os.makedirs(out_dir, exist_ok=True)
    lines = []
    for name, blob, expect in items:
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(blob)
        if expect is not None:
            lines.append(f"{name}\t{expect}")
    with open(os.path.join(out_dir, "EXPECTED"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    base = sys.argv[1] if len(sys.argv) > 1 else "tests/data"
    write(os.path.join(base, "gguf_corrupt"), corpus())
    write(os.path.join(base, "model_corrupt"), model_corpus())

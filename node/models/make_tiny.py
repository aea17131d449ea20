#!/usr/bin/env python3
"""Generate the tiny byte-level test decoder (tiny-test-v1) with a fixed seed.

Same graph I/O contract as the converted SmolLM2 model (see README.md,
onnx_llama.py); only the sizes differ:
  vocab 259 = 256 byte tokens (id == byte value) + <|bos|>=256, <|eos|>=257, <|pad|>=258
  2 layers, hidden 64, 4 query heads / 2 kv heads, head_dim 16, ffn 192  (~0.55 MB fp32)

The weights are random but shaped so greedy decoding is context dependent and readable:
  * three residual dimensions are side channels written only by the embedding and read
    only by the lm_head: a constant bias feature (keeps the output to a-z, space, "," and
    "."), "current token is \\n" and "current token is ." flags;
  * "." is therefore followed by "\\n" and "\\n" by <|eos|> (a prompt ending in "\\n" gives
    <|eos|> at once), and the lm_head discourages repeating the current byte;
  * attention uses small query/key weights (close to a causal running average of the
    whole context) plus strong value/output weights, so the continuation depends on the
    entire prompt, not only on its last byte.
Plain ONNX ops only (fp32 MatMul/Gemm), no contrib ops.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import onnx_llama as ol  # noqa: E402

BOS, EOS, PAD = 256, 257, 258
VOCAB = 259
D, LAYERS, H, KV, HD, F = 64, 2, 4, 2, 16, 192
TEXT_BYTES = set(range(ord("a"), ord("z") + 1)) | set(b" ,.")


def bytes_to_unicode() -> dict:
    """GPT-2 byte-level alphabet: printable latin-1 bytes map to themselves, the others
    to code points 256.. in byte order (what the ByteLevel pre-tokenizer/decoder use)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def tokenizer_json() -> dict:
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    specials = [(BOS, "<|bos|>"), (EOS, "<|eos|>"), (PAD, "<|pad|>")]
    for i, s in specials:
        vocab[s] = i
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, s in specials],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": False},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": []},
    }


def make_weights(seed: int, p: dict | None = None):
    p = dict(TUNING, **(p or {}))
    rng = np.random.default_rng(seed)
    f32 = np.float32

    def rnd(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(f32)

    # dims 0..2 are side channels that only the embedding writes and only the lm_head
    # reads: dim 0 = constant bias feature, dim 1 = "current token is a newline",
    # dim 2 = "current token is a full stop".
    emb = rnd(VOCAB, D)
    emb[:, :SIDE] = 0.0
    emb[:, 0] = p["bias_feature"]
    emb[ord("\n"), 1] = p["flag_feature"]
    emb[ord("."), 2] = p["flag_feature"]

    layers = []
    for _ in range(LAYERS):
        wq = rnd(D, H * HD, scale=p["qk"] / np.sqrt(D))
        wk = rnd(D, KV * HD, scale=p["qk"] / np.sqrt(D))
        wv = rnd(D, KV * HD, scale=p["v"] / np.sqrt(D))
        wo = rnd(H * HD, D, scale=p["o"] / np.sqrt(H * HD))
        wg = rnd(D, F, scale=p["mlp"] / np.sqrt(D))
        wu = rnd(D, F, scale=p["mlp"] / np.sqrt(D))
        wd = rnd(F, D, scale=p["mlp"] / np.sqrt(F))
        for w in (wq, wk, wv, wg, wu):
            w[:SIDE, :] = 0.0  # side channels are not read by the layers ...
        wo[:, :SIDE] = 0.0  # ... and never written
        wd[:, :SIDE] = 0.0
        layers.append(ol.LayerWeights(
            attn_norm=np.ones(D, f32),
            qkv=ol.LinearF32(np.concatenate([wq, wk, wv], axis=1)),
            o=ol.LinearF32(wo),
            ffn_norm=np.ones(D, f32),
            gate_up=ol.LinearF32(np.concatenate([wg, wu], axis=1)),
            down=ol.LinearF32(wd),
        ))

    head = np.zeros((VOCAB, D), f32)
    text = sorted(TEXT_BYTES)
    head[text, SIDE:] = rnd(len(text), D - SIDE)
    head[text, SIDE:] -= p["anti_repeat"] * emb[text, SIDE:]  # discourage immediate repeats
    head[:, 0] = -6.0  # non-text bytes and specials: never
    head[text, 0] = p["text_bias"]
    head[ord(" "), 0] = p["space_bias"]
    head[ord("\n"), 0] = p["newline_bias"]
    head[ord("."), 0] = p["stop_bias"]
    head[ord("\n"), 2] = p["flag_readout"]  # "." is followed by "\n" ...
    head[EOS, 0] = -1.0
    head[EOS, 1] = p["flag_readout"]  # ... and "\n" by <|eos|>
    return emb, layers, np.ones(D, f32), head


SIDE = 3
TUNING = dict(bias_feature=4.0, flag_feature=6.0, flag_readout=10.0, qk=0.3, v=1.5, o=1.5, mlp=1.0,
              anti_repeat=0.5, text_bias=1.0, space_bias=1.6, newline_bias=-3.0, stop_bias=0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    emb, layers, final_norm, head = make_weights(args.seed)
    cfg = ol.LlamaConfig(
        vocab_size=VOCAB, hidden_size=D, num_layers=LAYERS, num_heads=H, num_kv_heads=KV,
        head_dim=HD, intermediate_size=F, rope_theta=10000.0, rms_eps=1e-5, max_positions=4096,
        doc=f"tiny-test-v1 byte-level test decoder (seed {args.seed})",
        metadata={"source": f"make_tiny.py --seed {args.seed}", "weights": "fp32",
                  "bos_token_id": BOS, "eos_token_id": EOS, "context_length": 4096},
    )
    model = ol.build_llama(cfg, ol.EmbeddingF32(emb), layers, final_norm, lm_head=ol.EmbeddingF32(head))
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, "model.onnx")
    ol.save_model(model, path)
    tok_path = os.path.join(args.out_dir, "tokenizer.json")
    with open(tok_path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(tokenizer_json(), f, ensure_ascii=False, indent=1)
    os.replace(tok_path + ".tmp", tok_path)
    info = {"name": "tiny-test-v1", "vocab_size": VOCAB, "hidden_size": D, "num_layers": LAYERS,
            "num_heads": H, "num_kv_heads": KV, "head_dim": HD, "intermediate_size": F,
            "bos_token_id": BOS, "eos_token_id": EOS, "pad_token_id": PAD, "add_bos_token": True,
            "context_length": 4096, "seed": args.seed}
    with open(os.path.join(args.out_dir, "model_info.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    print(f"[make_tiny] wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB) and {tok_path}", file=sys.stderr)


if __name__ == "__main__":
    main()

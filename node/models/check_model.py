#!/usr/bin/env python3
"""Greedy-decoding check of a node model with the onnxruntime Python package.

Runs prefill (empty past tensors of length 0) + one-token KV-cache decode steps,
exactly as the Rust node is expected to (see README.md).

  check_model.py --model oss-chat-v1 --acceptance      # SmolLM2 acceptance test
  check_model.py --model tiny-test-v1 --acceptance     # tiny model acceptance test
  check_model.py --model oss-chat-v1 --prompt "Hi" --threads 2
  check_model.py --model-dir .cache/models/tiny --template raw --prompt "abc"

Models are looked up in node/models/registry.toml; paths there are relative to the
repository root.  Exit status is non-zero when an acceptance check fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tomllib

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def apply_template(template: str, prompt: str) -> str:
    if template == "chatml":
        return f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    if template == "chatml-system":  # SmolLM2's own default (adds its default system prompt)
        return ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                f"<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n")
    if template == "raw":
        return prompt
    raise SystemExit(f"unknown template {template!r}")


class Runner:
    def __init__(self, model_path: str, threads: int):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        t = time.perf_counter()
        self.sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
        self.load_s = time.perf_counter() - t
        self.past_names = [i.name for i in self.sess.get_inputs() if i.name.startswith("past_key_values.")]
        shp = next(i.shape for i in self.sess.get_inputs() if i.name == "past_key_values.0.key")
        # [batch, kv_heads, past_sequence_length, head_dim]
        self.kv_heads, self.head_dim = int(shp[1]), int(shp[3])
        self.out_names = [o.name for o in self.sess.get_outputs()]
        assert self.out_names[0] == "logits"

    def generate(self, ids: list[int], max_new: int, eos: set[int], bos: int | None = None):
        """Greedy decode, batch 1.  Returns (new_ids, prefill_s, decode_s, decode_steps)."""
        empty = np.zeros((1, self.kv_heads, 0, self.head_dim), dtype=np.float32)
        past = {n: empty for n in self.past_names}
        inp = np.asarray([ids], dtype=np.int64)
        pos0 = 0
        out_ids: list[int] = []
        prefill_s = decode_s = 0.0
        steps = 0
        for step in range(max_new):
            total = pos0 + inp.shape[1]
            feeds = {
                "input_ids": inp,
                "attention_mask": np.ones((1, total), dtype=np.int64),
                "position_ids": np.arange(pos0, total, dtype=np.int64)[None, :],
                **past,
            }
            t = time.perf_counter()
            res = self.sess.run(self.out_names, feeds)
            dt = time.perf_counter() - t
            if step == 0:
                prefill_s = dt
            else:
                decode_s += dt
                steps += 1
            nxt = int(np.argmax(res[0][0, -1]))
            past = {n.replace("present.", "past_key_values."): v for n, v in zip(self.out_names[1:], res[1:])}
            pos0 = total
            if nxt in eos:
                break
            out_ids.append(nxt)
            inp = np.asarray([[nxt]], dtype=np.int64)
        return out_ids, prefill_s, decode_s, steps

    def rescore(self, ids: list[int]) -> list[int]:
        """One prefill over the whole sequence; greedy argmax at every position."""
        empty = np.zeros((1, self.kv_heads, 0, self.head_dim), dtype=np.float32)
        feeds = {"input_ids": np.asarray([ids], dtype=np.int64),
                 "attention_mask": np.ones((1, len(ids)), dtype=np.int64),
                 "position_ids": np.arange(len(ids), dtype=np.int64)[None, :],
                 **{n: empty for n in self.past_names}}
        return [int(t) for t in np.argmax(self.sess.run(["logits"], feeds)[0][0], axis=-1)]


def load_registry(key: str, registry: str) -> dict:
    with open(registry, "rb") as f:
        reg = tomllib.load(f)
    try:
        e = dict(reg["models"][key])
    except KeyError:
        raise SystemExit(f"model {key!r} not in {registry}")
    e["path"] = os.path.join(REPO, e["path"])
    e["tokenizer"] = os.path.join(REPO, e["tokenizer"])
    return e


def run_once(entry, prompt, threads, max_new, quiet=False):
    tk = Tokenizer.from_file(entry["tokenizer"])
    text = apply_template(entry.get("chat_template", "raw"), prompt)
    ids = tk.encode(text, add_special_tokens=False).ids
    if entry.get("add_bos", False):
        ids = [entry["bos_token_id"]] + ids
    r = Runner(entry["path"], threads)
    out, pre_s, dec_s, steps = r.generate(ids, max_new, set(entry["eos_token_ids"]))
    gen = tk.decode(out, skip_special_tokens=False)
    tps = steps / dec_s if dec_s > 0 else float("nan")
    if not quiet:
        print(f"  threads={threads} prompt_tokens={len(ids)} new_tokens={len(out)} "
              f"load={r.load_s:.2f}s prefill={pre_s * 1e3:.1f}ms ({len(ids) / pre_s:.0f} tok/s) "
              f"decode={tps:.1f} tok/s")
        print(f"  -> {gen!r}")
    if not quiet and out:
        full = r.rescore(ids + out)
        agree = sum(int(a == b) for a, b in zip(full[len(ids) - 1:], out))
        print(f"  one-shot prefill re-score agrees with KV-cache decode on {agree}/{len(out)} greedy tokens")
    return out, gen, tps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="registry key (e.g. oss-chat-v1, tiny-test-v1)")
    ap.add_argument("--model-dir", help="directory with model.onnx + tokenizer.json (instead of --model)")
    ap.add_argument("--registry", default=os.path.join(HERE, "registry.toml"))
    ap.add_argument("--template", help="override chat template: chatml | chatml-system | raw")
    ap.add_argument("--eos", type=int, action="append", help="EOS id (with --model-dir)")
    ap.add_argument("--prompt", action="append", help="prompt (repeatable)")
    ap.add_argument("--threads", type=int, default=1, help="intra_op_num_threads")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--acceptance", action="store_true",
                    help="run the acceptance checks (determinism, thread invariance, expected output)")
    args = ap.parse_args()

    if args.model:
        entry = load_registry(args.model, args.registry)
    elif args.model_dir:
        entry = {"path": os.path.join(args.model_dir, "model.onnx"),
                 "tokenizer": os.path.join(args.model_dir, "tokenizer.json"),
                 "eos_token_ids": args.eos or [], "chat_template": "raw"}
    else:
        ap.error("need --model or --model-dir")
    if args.template:
        entry["chat_template"] = args.template
    print(f"model: {entry['path']}  (onnxruntime {ort.__version__}, template={entry.get('chat_template')})")

    if not args.acceptance:
        for p in args.prompt or ["What is the capital of France?"]:
            print(f"prompt: {p!r}")
            run_once(entry, p, args.threads, args.max_new_tokens)
        return 0

    ok = True
    prompts = args.prompt or entry.get("check_prompts") or ["What is the capital of France?"]
    expect = entry.get("check_expect", [])
    results = {}
    for p in prompts:
        print(f"prompt: {p!r}")
        a, gen, tps = run_once(entry, p, 1, args.max_new_tokens)
        b, _, _ = run_once(entry, p, 1, args.max_new_tokens, quiet=True)
        c, _, tps2 = run_once(entry, p, 2, args.max_new_tokens, quiet=True)
        same_runs, same_threads = a == b, a == c
        print(f"  identical across 2 runs: {same_runs}; identical threads 1 vs 2: {same_threads} "
              f"(2 threads: {tps2:.1f} tok/s)")
        ok &= same_runs and same_threads
        results[p] = (a, gen)
    for p, needle in zip(prompts, expect):
        if needle and needle not in results[p][1]:
            print(f"FAIL: expected {needle!r} in output for {p!r}")
            ok = False
    if len(prompts) > 1:
        outs = [tuple(results[p][0]) for p in prompts]
        distinct = len(set(outs)) == len(outs)
        print(f"distinct continuations for distinct prompts: {distinct}")
        ok &= distinct
    print("ACCEPTANCE " + ("PASSED" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

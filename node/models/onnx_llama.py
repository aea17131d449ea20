"""Shared ONNX graph builder for Llama-style decoders (ParalleliX node models).

Used by convert_gguf.py (SmolLM2 from GGUF) and make_tiny.py (tiny test model)
so that both graphs expose exactly the same input/output contract:

  inputs
    input_ids                     int64   [batch_size, sequence_length]
    attention_mask                int64   [batch_size, total_sequence_length]
    position_ids                  int64   [batch_size, sequence_length]
    past_key_values.{i}.key       float32 [batch_size, num_kv_heads, past_sequence_length, head_dim]
    past_key_values.{i}.value     float32 [batch_size, num_kv_heads, past_sequence_length, head_dim]
  outputs
    logits                        float32 [batch_size, sequence_length, vocab_size]
    present.{i}.key               float32 [batch_size, num_kv_heads, total_sequence_length, head_dim]
    present.{i}.value             float32 [batch_size, num_kv_heads, total_sequence_length, head_dim]

total_sequence_length = past_sequence_length + sequence_length.  See README.md.

Only `onnx` and `numpy` are needed.  Weights are described by small "linear
specs" (see the Linear* classes) so the same graph code can emit plain fp32
MatMul/Gemm or com.microsoft MatMulNBits (4-bit and 8-bit blockwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
MS_DOMAIN = "com.microsoft"
FLOAT_MIN = float(np.finfo(np.float32).min)


# --------------------------------------------------------------------------
# weight specs
# --------------------------------------------------------------------------
@dataclass
class LinearF32:
    """y = x @ w, w stored as float32 [K, N]."""

    w: np.ndarray  # [K, N]

    @property
    def k(self) -> int:
        return int(self.w.shape[0])

    @property
    def n(self) -> int:
        return int(self.w.shape[1])


@dataclass
class LinearQ4:
    """Blockwise 4-bit weight, exact re-encoding of GGUF Q4_0 / Q4_1 blocks.

    W[n, b*32 + j] = scales[n, b] * (q[n, b, j] - 8) + bias[n, b]

    `packed` is MatMulNBits layout: uint8 [N, K/32, 16], byte i of a block
    holds element 2i in its low nibble and element 2i+1 in its high nibble.
    MatMulNBits is given no zero_points, so its implicit zero point is 8 and
    the fast MLAS kernel is used.  The per-block offset `bias` (Q4_1's `m`
    plus 8*d) is added with a tiny extra MatMul on the per-block sums of x:
        y[n] += sum_b bias[n, b] * sum_{j in block b} x[b*32 + j]
    `bias` is None for Q4_0 (pure symmetric blocks).
    """

    packed: np.ndarray  # uint8 [N, K/32, 16]
    scales: np.ndarray  # float32 [N, K/32]
    bias: Optional[np.ndarray]  # float32 [N, K/32] or None
    block_size: int = 32

    @property
    def n(self) -> int:
        return int(self.packed.shape[0])

    @property
    def k(self) -> int:
        return int(self.packed.shape[1]) * self.block_size


def concat_linear(parts: list):
    """Concatenate several linear specs along N (fused QKV / gate-up)."""
    if all(isinstance(p, LinearF32) for p in parts):
        return LinearF32(np.concatenate([p.w for p in parts], axis=1))
    if all(isinstance(p, LinearQ4) for p in parts):
        has_bias = [p.bias is not None for p in parts]
        if any(has_bias):
            bias = np.concatenate(
                [p.bias if p.bias is not None else np.zeros_like(p.scales) for p in parts], axis=0
            )
        else:
            bias = None
        return LinearQ4(
            np.concatenate([p.packed for p in parts], axis=0),
            np.concatenate([p.scales for p in parts], axis=0),
            bias,
            parts[0].block_size,
        )
    raise ValueError("cannot fuse mixed weight types")


@dataclass
class EmbeddingF32:
    """Token embedding float32 [V, D]; as lm_head it is used via Gemm(transB=1)."""

    table: np.ndarray


@dataclass
class EmbeddingQ8:
    """Exact GGUF Q8_0 table stored once, as MatMulNBits 8-bit layout.

    data: uint8 [V, D/32, 32] = int8 q + 128 ; scales float32 [V, D/32]
    value[v, b*32+j] = scales[v, b] * (data[v, b, j] - 128)
    Used by Gather for the embedding and by MatMulNBits(bits=8) for a tied lm_head.
    """

    data: np.ndarray
    scales: np.ndarray
    block_size: int = 32


@dataclass
class LayerWeights:
    attn_norm: np.ndarray  # [D]
    qkv: object  # fused linear spec, N = (H + 2*KV) * head_dim, Q/K rows in HF (rotate-half) order
    o: object
    ffn_norm: np.ndarray  # [D]
    gate_up: object  # fused linear spec, N = 2*F (gate first)
    down: object


@dataclass
class LlamaConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    rope_theta: float
    rms_eps: float
    # MatMulNBits accuracy_level for 4-bit weights (0 = fp32 math, 4 = int8-quantised activations)
    q4_accuracy_level: int = 4
    # context length; with rope_impl="contrib" position_ids must stay below it (RoPE cache size)
    max_positions: int = 8192
    # "ops": plain Cos/Sin/Mul/Add (default, no position limit); "contrib": com.microsoft RotaryEmbedding
    rope_impl: str = "ops"
    # MatMulNBits accuracy_level for the 8-bit tied lm_head (CPU only has a fast int8 kernel)
    q8_accuracy_level: int = 4
    # "gqa": com.microsoft GroupQueryAttention, each sequence attending over its own length
    # (batch-invariant; right-padded batches); "ops": MatMul/Softmax over the padded length
    attn_impl: str = "gqa"
    doc: str = ""
    metadata: dict = field(default_factory=dict)


# --------------------------------------------------------------------------
# graph builder
# --------------------------------------------------------------------------
class _G:
    def __init__(self):
        self.nodes: List[onnx.NodeProto] = []
        self.inits: List[onnx.TensorProto] = []
        self._n = 0
        self._consts = {}

    def uid(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def op(self, op_type, inputs, name=None, n_out=1, domain=None, outputs=None, **attrs):
        name = name or self.uid(op_type)
        if outputs is None:
            outputs = [f"{name}/out{i}" for i in range(n_out)]
        self.nodes.append(
            helper.make_node(op_type, inputs, outputs, name=name, domain=domain, **attrs)
        )
        return outputs[0] if len(outputs) == 1 else outputs

    def init(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def const_i64(self, values, name=None):
        arr = np.asarray(values, dtype=np.int64)
        key = ("i64", arr.shape, tuple(arr.reshape(-1).tolist()))
        if key not in self._consts:
            self._consts[key] = self.init(name or self.uid("const_i64"), arr)
        return self._consts[key]

    def const_f32(self, values, name=None):
        arr = np.asarray(values, dtype=np.float32)
        key = ("f32", arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self.init(name or self.uid("const_f32"), arr)
        return self._consts[key]


def _scale_rows(spec, n_rows: int, s: float):
    """Copy of a fused linear spec with output channels [0, n_rows) multiplied by s."""
    s = np.float32(s)
    if isinstance(spec, LinearF32):
        w = spec.w.copy()
        w[:, :n_rows] *= s
        return LinearF32(w)
    scales = spec.scales.copy()
    scales[:n_rows] *= s
    bias = None
    if spec.bias is not None:
        bias = spec.bias.copy()
        bias[:n_rows] *= s
    return LinearQ4(spec.packed, scales, bias, spec.block_size)


def build_llama(cfg: LlamaConfig, embed, layers: List[LayerWeights], final_norm: np.ndarray,
                lm_head=None) -> onnx.ModelProto:
    """Build the decoder graph.  lm_head=None means tied to `embed`."""
    g = _G()
    D, H, KV, HD = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    G = H // KV
    assert H % KV == 0, "num_heads must be a multiple of num_kv_heads"
    V = cfg.vocab_size

    # ---------------- inputs / outputs ----------------
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch_size", "total_sequence_length"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", "sequence_length", V]),
    ]
    for i in range(cfg.num_layers):
        for kv in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(
                f"past_key_values.{i}.{kv}", TensorProto.FLOAT,
                ["batch_size", KV, "past_sequence_length", HD]))
            outputs.append(helper.make_tensor_value_info(
                f"present.{i}.{kv}", TensorProto.FLOAT,
                ["batch_size", KV, "total_sequence_length", HD]))

    # ---------------- shared helpers ----------------
    def rmsnorm(x, w, name):
        # Pow/ReduceMean/Add/Sqrt/Div/Mul: ORT fuses this into SimplifiedLayerNormalization
        sq = g.op("Pow", [x, g.const_f32(2.0, "const_two")], name=f"{name}/sq")
        ms = g.op("ReduceMean", [sq], name=f"{name}/mean", axes=[-1], keepdims=1)
        ms = g.op("Add", [ms, g.const_f32(cfg.rms_eps, "rms_eps")], name=f"{name}/add_eps")
        rs = g.op("Sqrt", [ms], name=f"{name}/sqrt")
        xn = g.op("Div", [x, rs], name=f"{name}/div")
        return g.op("Mul", [xn, g.init(f"{name}.weight", w.astype(np.float32))], name=f"{name}/scale")

    blocksum_cache = {}

    def linear(x, spec, name):
        if isinstance(spec, LinearF32):
            return g.op("MatMul", [x, g.init(f"{name}.weight", spec.w.astype(np.float32))], name=name)
        if isinstance(spec, LinearQ4):
            kb = spec.packed.shape[1]
            y = g.op(
                "MatMulNBits",
                [x, g.init(f"{name}.qweight", spec.packed), g.init(f"{name}.scales", spec.scales.reshape(-1))],
                name=name, domain=MS_DOMAIN,
                K=spec.k, N=spec.n, bits=4, block_size=spec.block_size,
                accuracy_level=cfg.q4_accuracy_level,
            )
            if spec.bias is None:
                return y
            key = (x, kb)
            if key not in blocksum_cache:
                # per-block sums of x as one tiny MatMul with a 0/1 block-indicator matrix [K, kb]
                ind = np.kron(np.eye(kb, dtype=np.float32), np.ones((spec.block_size, 1), np.float32))
                ind_name = g.const_f32(ind, f"block_indicator_{spec.k}")
                blocksum_cache[key] = g.op("MatMul", [x, ind_name], name=f"{name}/blk_sum")
            corr = g.op("MatMul", [blocksum_cache[key],
                                   g.init(f"{name}.block_bias", spec.bias.T.astype(np.float32))],
                        name=f"{name}/blk_bias")
            return g.op("Add", [y, corr], name=f"{name}/add_bias")
        raise TypeError(type(spec))

    # ---------------- embedding ----------------
    ids = "input_ids"
    if isinstance(embed, EmbeddingF32):
        emb_name = g.init("model.embed_tokens.weight", embed.table.astype(np.float32))
        x = g.op("Gather", [emb_name, ids], name="embed/gather", axis=0)
    elif isinstance(embed, EmbeddingQ8):
        emb_name = g.init("model.embed_tokens.q8", embed.data)
        sc_name = g.init("model.embed_tokens.q8_scales", embed.scales.astype(np.float32))
        rows = g.op("Gather", [emb_name, ids], name="embed/gather", axis=0)  # [B,S,kb,32] u8
        rows = g.op("Cast", [rows], name="embed/cast", to=TensorProto.FLOAT)
        rows = g.op("Sub", [rows, g.const_f32(128.0)], name="embed/center")
        sc = g.op("Gather", [sc_name, ids], name="embed/gather_scales", axis=0)  # [B,S,kb]
        sc = g.op("Unsqueeze", [sc, g.const_i64([-1])], name="embed/unsq_scales")
        rows = g.op("Mul", [rows, sc], name="embed/scale")
        x = g.op("Reshape", [rows, g.const_i64([0, 0, D])], name="embed/reshape")
    else:
        raise TypeError(type(embed))

    # ---------------- mask (shared) ----------------
    # total length T from attention_mask, new length S from input_ids, past = T - S
    t_len = g.op("Shape", ["attention_mask"], name="mask/shape_T", start=1, end=2)
    t_sc = g.op("Squeeze", [t_len, g.const_i64([0])], name="mask/T")
    one = g.const_i64(1, "const_one_scalar")
    if cfg.attn_impl == "ops":
        zero = g.const_i64(0, "const_zero_scalar")
        s_len = g.op("Shape", ["input_ids"], name="mask/shape_S", start=1, end=2)
        s_sc = g.op("Squeeze", [s_len, g.const_i64([0])], name="mask/S")
        past_sc = g.op("Sub", [t_sc, s_sc], name="mask/past")
        # the causal and padding mask of the MatMul/Softmax attention (GQA derives its own)
        k_idx = g.op("Range", [zero, t_sc, one], name="mask/k_idx")  # [T]
        q_idx = g.op("Range", [past_sc, t_sc, one], name="mask/q_idx")  # [S]
        k_row = g.op("Unsqueeze", [k_idx, g.const_i64([0])], name="mask/k_row")  # [1,T]
        q_col = g.op("Unsqueeze", [q_idx, g.const_i64([1])], name="mask/q_col")  # [S,1]
        causal = g.op("LessOrEqual", [k_row, q_col], name="mask/causal")  # [S,T]
        am = g.op("Cast", ["attention_mask"], name="mask/am_bool", to=TensorProto.BOOL)  # [B,T]
        am = g.op("Unsqueeze", [am, g.const_i64([1, 2, 3])], name="mask/am_unsq")  # [B,1,1,1,T]
        mask = g.op("And", [am, causal], name="mask/and")  # [B,1,1,S,T]

    # ---------------- rotary (shared) ----------------
    # rotate-half (HF / NeoX) convention; inv_freq[i] = theta^(-2i/HD)
    half = HD // 2
    inv_freq = 1.0 / (cfg.rope_theta ** (np.arange(0, HD, 2, dtype=np.float64) / HD))
    if cfg.rope_impl == "contrib":
        # com.microsoft RotaryEmbedding with precomputed caches [max_positions, HD/2]
        ang = np.arange(cfg.max_positions, dtype=np.float64)[:, None] * inv_freq[None, :]
        cos_cache = g.init("rope.cos_cache", np.cos(ang).astype(np.float32))
        sin_cache = g.init("rope.sin_cache", np.sin(ang).astype(np.float32))

        def rope(x, name):  # x [B,n,S,HD]
            return g.op("RotaryEmbedding", [x, "position_ids", cos_cache, sin_cache], name=name,
                        domain=MS_DOMAIN, interleaved=0)
    else:
        pos = g.op("Cast", ["position_ids"], name="rope/pos_f", to=TensorProto.FLOAT)
        pos = g.op("Unsqueeze", [pos, g.const_i64([-1])], name="rope/pos_unsq")  # [B,S,1]
        freqs = g.op("Mul", [pos, g.init("rope.inv_freq", inv_freq.astype(np.float32).reshape(1, 1, half))],
                     name="rope/freqs")  # [B,S,half]
        cos_h = g.op("Cos", [freqs], name="rope/cos_half")
        sin_h = g.op("Sin", [freqs], name="rope/sin_half")
        neg_sin_h = g.op("Neg", [sin_h], name="rope/neg_sin_half")
        cos = g.op("Concat", [cos_h, cos_h], name="rope/cos", axis=-1)
        sin_signed = g.op("Concat", [neg_sin_h, sin_h], name="rope/sin_signed", axis=-1)
        cos_bs, sin_bs = cos, sin_signed  # [B,S,HD]
        cos = g.op("Unsqueeze", [cos, g.const_i64([1])], name="rope/cos_unsq")  # [B,1,S,HD]
        sin_signed = g.op("Unsqueeze", [sin_signed, g.const_i64([1])], name="rope/sin_unsq")
        split_half = g.const_i64([half, half], "rope_split")

        def rope(x, name):  # x [B,n,S,HD]
            x1, x2 = g.op("Split", [x, split_half], name=f"{name}/split", n_out=2, axis=-1)
            rot = g.op("Concat", [x2, x1], name=f"{name}/swap", axis=-1)
            a = g.op("Mul", [x, cos], name=f"{name}/mul_cos")
            b = g.op("Mul", [rot, sin_signed], name=f"{name}/mul_sin")
            return g.op("Add", [a, b], name=f"{name}/add")

        # the same rotation for x [B,S,n,HD] (GroupQueryAttention takes BSNH)
        cos_s = g.op("Unsqueeze", [cos_bs, g.const_i64([2])], name="rope/cos_bsnh")  # [B,S,1,HD]
        sin_s = g.op("Unsqueeze", [sin_bs, g.const_i64([2])], name="rope/sin_bsnh")

        def rope_bsnh(x, name):
            x1, x2 = g.op("Split", [x, split_half], name=f"{name}/split", n_out=2, axis=-1)
            rot = g.op("Concat", [x2, x1], name=f"{name}/swap", axis=-1)
            a = g.op("Mul", [x, cos_s], name=f"{name}/mul_cos")
            b = g.op("Mul", [rot, sin_s], name=f"{name}/mul_sin")
            return g.op("Add", [a, b], name=f"{name}/add")

    scale = 1.0 / float(np.sqrt(HD))
    # 1/sqrt(head_dim) is folded into the Q rows of the weights when it is a power of two
    # (exact in floating point); otherwise it is applied with a Mul.
    fold_scale = float(np.log2(scale)).is_integer()
    split_qkv = g.const_i64([H * HD, KV * HD, KV * HD], "qkv_split")
    split_ffn = g.const_i64([cfg.intermediate_size, cfg.intermediate_size], "ffn_split")

    def mlp(i, p, lw, x):
        hn = rmsnorm(x, lw.ffn_norm, f"{p}.post_attention_layernorm")
        gu = linear(hn, lw.gate_up, f"{p}.mlp.gate_up_proj")
        gate, up = g.op("Split", [gu, split_ffn], name=f"{p}.mlp.split", n_out=2, axis=-1)
        sg = g.op("Sigmoid", [gate], name=f"{p}.mlp.sigmoid")
        act = g.op("Mul", [gate, sg], name=f"{p}.mlp.silu")
        act = g.op("Mul", [act, up], name=f"{p}.mlp.gate_mul_up")
        dn = linear(act, lw.down, f"{p}.mlp.down_proj")
        return g.op("Add", [x, dn], name=f"{p}.mlp.residual")

    if cfg.attn_impl == "gqa":
        assert cfg.rope_impl == "ops", "attn_impl gqa applies RoPE with plain ops"
        # Right-padded batches: sequence b holds its tokens at cache slots 0..len_b-1, and
        # GroupQueryAttention reads exactly those (seqlens_k = len_b - 1), so a sequence's
        # numbers never depend on the padding or on the other sequences of its batch.
        lens = g.op("ReduceSum", ["attention_mask", g.const_i64([1])], name="gqa/lens", keepdims=0)
        last = g.op("Sub", [lens, one], name="gqa/last")
        seqlens_k = g.op("Cast", [last], name="gqa/seqlens_k", to=TensorProto.INT32)
        total_len = g.op("Cast", [t_sc], name="gqa/total_len", to=TensorProto.INT32)

    def gqa_attention(i, p, q, k, v):
        q = g.op("Reshape", [q, g.const_i64([0, 0, H, HD])], name=f"{p}.attn.q_reshape")
        k = g.op("Reshape", [k, g.const_i64([0, 0, KV, HD])], name=f"{p}.attn.k_reshape")
        q = rope_bsnh(q, f"{p}.attn.q_rope")
        k = rope_bsnh(k, f"{p}.attn.k_rope")
        q = g.op("Reshape", [q, g.const_i64([0, 0, H * HD])], name=f"{p}.attn.q_flat")
        k = g.op("Reshape", [k, g.const_i64([0, 0, KV * HD])], name=f"{p}.attn.k_flat")
        ctx = g.uid(f"{p}.attn.ctx")
        g.op("GroupQueryAttention",
             [q, k, v, f"past_key_values.{i}.key", f"past_key_values.{i}.value", seqlens_k, total_len],
             name=f"{p}.attn.gqa", domain=MS_DOMAIN,
             outputs=[ctx, f"present.{i}.key", f"present.{i}.value"],
             num_heads=H, kv_num_heads=KV, scale=1.0 if fold_scale else scale)
        return linear(ctx, lw_o[i], f"{p}.attn.o_proj")

    lw_o = [lw.o for lw in layers]

    # ---------------- layers ----------------
    for i, lw in enumerate(layers):
        p = f"layers.{i}"
        hn = rmsnorm(x, lw.attn_norm, f"{p}.input_layernorm")
        qkv = linear(hn, _scale_rows(lw.qkv, H * HD, scale) if fold_scale else lw.qkv, f"{p}.attn.qkv_proj")
        q, k, v = g.op("Split", [qkv, split_qkv], name=f"{p}.attn.split_qkv", n_out=3, axis=-1)
        if cfg.attn_impl == "gqa":
            o = gqa_attention(i, p, q, k, v)
            x = g.op("Add", [x, o], name=f"{p}.attn.residual")
            x = mlp(i, p, lw, x)
            continue
        q = g.op("Reshape", [q, g.const_i64([0, 0, H, HD])], name=f"{p}.attn.q_reshape")
        q = g.op("Transpose", [q], name=f"{p}.attn.q_t", perm=[0, 2, 1, 3])  # [B,H,S,HD]
        k = g.op("Reshape", [k, g.const_i64([0, 0, KV, HD])], name=f"{p}.attn.k_reshape")
        k = g.op("Transpose", [k], name=f"{p}.attn.k_t", perm=[0, 2, 1, 3])  # [B,KV,S,HD]
        v = g.op("Reshape", [v, g.const_i64([0, 0, KV, HD])], name=f"{p}.attn.v_reshape")
        v = g.op("Transpose", [v], name=f"{p}.attn.v_t", perm=[0, 2, 1, 3])
        q = rope(q, f"{p}.attn.q_rope")
        k = rope(k, f"{p}.attn.k_rope")
        if not fold_scale:
            q = g.op("Mul", [q, g.const_f32(scale, "attn_scale")], name=f"{p}.attn.q_scale")
        k_all = g.op("Concat", [f"past_key_values.{i}.key", k], name=f"{p}.attn.k_cat",
                     outputs=[f"present.{i}.key"], axis=2)  # [B,KV,T,HD]
        v_all = g.op("Concat", [f"past_key_values.{i}.value", v], name=f"{p}.attn.v_cat",
                     outputs=[f"present.{i}.value"], axis=2)
        # grouped-query attention without materialising repeated K/V:
        # q [B,KV,G,S,HD] x k [B,KV,1,HD,T] -> [B,KV,G,S,T]
        q5 = g.op("Reshape", [q, g.const_i64([0, KV, G, -1, HD])], name=f"{p}.attn.q_group")
        k5 = g.op("Unsqueeze", [k_all, g.const_i64([2])], name=f"{p}.attn.k_unsq")
        k5 = g.op("Transpose", [k5], name=f"{p}.attn.k_tr", perm=[0, 1, 2, 4, 3])
        v5 = g.op("Unsqueeze", [v_all, g.const_i64([2])], name=f"{p}.attn.v_unsq")
        sc = g.op("MatMul", [q5, k5], name=f"{p}.attn.qk")
        sc = g.op("Where", [mask, sc, g.const_f32(FLOAT_MIN, "mask_fill")], name=f"{p}.attn.mask")
        pr = g.op("Softmax", [sc], name=f"{p}.attn.softmax", axis=-1)
        ctx = g.op("MatMul", [pr, v5], name=f"{p}.attn.pv")  # [B,KV,G,S,HD]
        ctx = g.op("Reshape", [ctx, g.const_i64([0, H, -1, HD])], name=f"{p}.attn.ctx_heads")
        ctx = g.op("Transpose", [ctx], name=f"{p}.attn.ctx_t", perm=[0, 2, 1, 3])  # [B,S,H,HD]
        ctx = g.op("Reshape", [ctx, g.const_i64([0, 0, H * HD])], name=f"{p}.attn.ctx_flat")
        o = linear(ctx, lw.o, f"{p}.attn.o_proj")
        x = g.op("Add", [x, o], name=f"{p}.attn.residual")
        x = mlp(i, p, lw, x)

    x = rmsnorm(x, final_norm, "model.norm")

    # ---------------- lm head ----------------
    head = embed if lm_head is None else lm_head
    if isinstance(head, EmbeddingQ8):
        name = emb_name if lm_head is None else g.init("lm_head.q8", head.data)
        scn = sc_name if lm_head is None else g.init("lm_head.q8_scales", head.scales.astype(np.float32))
        V_, kb, bs = head.data.shape
        g.op("MatMulNBits",
             [x, name, scn, g.init("lm_head.zero_points", np.full(V_ * kb, 128, dtype=np.uint8))],
             name="lm_head", domain=MS_DOMAIN, outputs=["logits"],
             K=kb * bs, N=V_, bits=8, block_size=bs, accuracy_level=cfg.q8_accuracy_level)
    elif isinstance(head, EmbeddingF32):
        # logits = x @ table^T via Gemm(transB=1) so a tied table is stored once
        name = emb_name if lm_head is None else g.init("lm_head.weight", head.table.astype(np.float32))
        x2 = g.op("Reshape", [x, g.const_i64([-1, D])], name="lm_head/flatten")
        y2 = g.op("Gemm", [x2, name], name="lm_head", transB=1)
        out_shape = g.op("Concat", [g.op("Shape", ["input_ids"], name="lm_head/shape_BS"),
                                    g.const_i64([V])], name="lm_head/out_shape", axis=0)
        g.op("Reshape", [y2, out_shape], name="lm_head/reshape", outputs=["logits"])
    elif isinstance(head, (LinearF32, LinearQ4)):
        y = linear(x, head, "lm_head")
        g.op("Identity", [y], name="lm_head/identity", outputs=["logits"])
    else:
        raise TypeError(type(head))

    graph = helper.make_graph(g.nodes, "llama_decoder", inputs, outputs, g.inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
        producer_name="parallelix-node-models",
        producer_version="1",
        doc_string=cfg.doc,
    )
    model.ir_version = 8
    meta = {
        "vocab_size": V, "hidden_size": D, "num_layers": cfg.num_layers, "num_heads": H,
        "num_kv_heads": KV, "head_dim": HD, "intermediate_size": cfg.intermediate_size,
        "rope_theta": cfg.rope_theta, "rms_eps": cfg.rms_eps, "max_positions": cfg.max_positions,
        "q4_accuracy_level": cfg.q4_accuracy_level,
        "io_contract": "parallelix-llama-kv-v2" if cfg.attn_impl == "gqa" else "parallelix-llama-kv-v1",
    }
    meta.update(cfg.metadata)
    for k_, v_ in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=str(k_), value=str(v_)))
    return model


def save_model(model: onnx.ModelProto, path: str) -> None:
    """Save as one self-contained file (all our models are far below 2 GiB)."""
    data = model.SerializeToString(deterministic=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    import os
    os.replace(tmp, path)

#!/usr/bin/env python3
"""Random-weight GGUFs shaped like real 4B and 8B models, for the memory benchmark
(BENCHMARKS.md, "Models larger than f32 RAM"): does a model whose f32 copy would not fit in
this machine's memory explain a prompt, and in how much memory?

  qwen3-4b-shape  Qwen3-4B: 36 layers, hidden 2560, 32 q / 8 kv heads of 128, ffn 9728,
                  q/k norms, tied embeddings, vocabulary 151936 (Qwen's real tokenizer)
  llama31-8b-shape  Llama-3.1-8B: 32 layers, hidden 4096, 32 q / 8 kv heads of 128,
                  ffn 14336, vocabulary 128256 (Llama 3's real tokenizer), rope_freqs
  phi4-mini-shape  Phi-4-mini: 32 layers, hidden 3072, 24 q / 8 kv heads of 128 (96 of each
                  rotated), ffn 8192, fused attn_qkv and gate+up ffn_up as llama.cpp keeps
                  them, LongRoPE factors, vocabulary 200064 (GPT-4o's tokenizer, o200k as
                  Phi-4's), tied embeddings
  smollm3-3b-shape  SmolLM3-3B: 36 layers, hidden 2048, 16 q / 4 kv heads of 128, ffn 11008,
                  every fourth layer without RoPE, vocabulary 128256 (Llama 3's), tied
  ministral3-3b-shape  Ministral-3-3B: 26 layers, hidden 3072, 32 q / 8 kv heads of 128, ffn
                  9216, YaRN (factor 16 over 16384) and the attention temperature, vocabulary
                  131072 (Mistral's tekken), tied
  qwen35-4b-shape  Qwen3.5-4B: 32 layers, hidden 2560, ffn 9216; three of every four layers
                  Gated DeltaNet (16 key / 32 value heads of 128, a 4-tap convolution; the
                  tensors as llama.cpp's converter writes them: attn_qkv, attn_gate,
                  ssm_{beta,alpha,conv1d,a,norm,out}, ssm_dt.bias), the fourth gated attention
                  (16 q / 4 kv heads of 256, 64 of each rotated, q/k norms); vocabulary 248320
                  (the qwen35 pre-tokenizer's test vocabulary from llama.cpp, 151936 tokens,
                  padded to the real size), tied, Qwen3.5-4B's chat template
  gemma4-e2b-shape  Gemma 4 E2B: 35 layers, hidden 1536, 8 q / 1 kv heads of 256 (sliding,
                  window 512) or 512 (every fifth layer, full, a quarter of its frequencies
                  turning: rope_freqs), the last 20 layers reading layers 13's and 14's keys and
                  values with MLPs of 12288 (6144 before), per-layer inputs of 256 a layer (a
                  262144 × 8960 table), vocabulary 262144 (llama.cpp's gemma-4 test vocabulary,
                  tokenizer model gemma4), tied, Gemma 4's chat template
  qwen3-30b-a3b-shape  Qwen3-30B-A3B: 48 layers, hidden 2048, 32 q / 4 kv heads of 128, q/k
                  norms, 128 experts of width 768 in every layer (8 per token), stacked as
                  llama.cpp keeps them (ffn_{gate,up,down}_exps) with the router ffn_gate_inp,
                  vocabulary 151936 (Qwen's), untied; each layer's experts repeat 8 distinct
                  random ones (writing 29 billion random values would take an hour here; the
                  memory and the work per token are the real model's)

Matrices are written in Q8_0 (gguf's own quantizer), norms in F32, as llama.cpp writes them,
one tensor at a time (the 30B file is larger than this machine's memory),
with the real model's chat template; scripts/big_models.sh requantizes them to Q4_K_M (the file
people download) with llama.cpp's llama-quantize.
`qwen3-4b-shape-bf16` writes the Qwen3 shape as a Hugging Face directory in bf16 instead (the
form Qwen/Qwen3-4B ships in).
The tokenizers come from scripts/fetch-models.sh's cache. Weights are N(0, 0.02) from a fixed
seed: the numbers mean nothing, the shapes and the memory are real.

Run: scripts/reference-env.sh && ~/.cache/tokenlens/venv/bin/python scripts/make_big_gguf.py \
       qwen3-4b-shape [llama31-8b-shape] [qwen35-4b-shape] [gemma4-e2b-shape] [qwen3-4b-shape-bf16]
       (files go to $TOKENLENS_CACHE/models/)
"""
import json
import math
import os
import sys

import gguf
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("TOKENLENS_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tokenlens"
)

SHAPES = {
    "qwen3-4b-shape": dict(
        arch="qwen3", tokenizer="qwen3", pre="qwen2", layers=36, hidden=2560, heads=32,
        kv_heads=8, head_dim=128, ffn=9728, vocab=151936, context=40960, theta=1e6,
        eps=1e-6, qk_norm=True, tied=True, eos="<|im_end|>",
    ),
    "llama31-8b-shape": dict(
        arch="llama", tokenizer="llama3", pre="llama-bpe", layers=32, hidden=4096, heads=32,
        kv_heads=8, head_dim=128, ffn=14336, vocab=128256, context=131072, theta=5e5,
        eps=1e-5, qk_norm=False, tied=False, eos="<|eot_id|>",
        rope_llama3=dict(factor=8.0, low=1.0, high=4.0, original=8192),
    ),
    "phi4-mini-shape": dict(
        arch="phi3", tokenizer="gpt-4o", pre="gpt-4o", layers=32, hidden=3072, heads=24,
        kv_heads=8, head_dim=128, ffn=8192, vocab=200064, context=131072, theta=1e4,
        eps=1e-5, qk_norm=False, tied=True, eos="<|endoftext|>", rotary=96, fused=True,
        longrope=dict(original=4096), window=262144,
        template="microsoft__Phi-4-mini-instruct.jinja",
    ),
    "smollm3-3b-shape": dict(
        arch="smollm3", tokenizer="llama3", pre="llama-bpe", layers=36, hidden=2048, heads=16,
        kv_heads=4, head_dim=128, ffn=11008, vocab=128256, context=65536, theta=5e6,
        eps=1e-6, qk_norm=False, tied=True, eos="<|end_of_text|>",
        template="HuggingFaceTB__SmolLM3-3B.jinja",
    ),
    "ministral3-3b-shape": dict(
        arch="mistral3", tokenizer="mistral-nemo", pre="tekken", layers=26, hidden=3072,
        heads=32, kv_heads=8, head_dim=128, ffn=9216, vocab=131072, context=262144, theta=1e6,
        eps=1e-5, qk_norm=False, tied=True, eos="</s>",
        yarn=dict(factor=16.0, original=16384, beta=0.1),
        template="mistralai__Ministral-3-14B-Reasoning-2512.jinja",
    ),
    "qwen35-4b-shape": dict(
        arch="qwen35", tokenizer="llama.cpp/ggml-vocab-qwen35.gguf", pre="qwen35", layers=32,
        hidden=2560, heads=16, kv_heads=4, head_dim=256, rotary=64, ffn=9216, vocab=248320,
        context=262144, theta=1e7, eps=1e-6, qk_norm=True, tied=True, eos="<|im_end|>",
        template="Qwen__Qwen3.5-4B.jinja",
        delta_net=dict(key_heads=16, value_heads=32, dim=128, kernel=4, every=4),
    ),
    "gemma4-e2b-shape": dict(
        arch="gemma4", tokenizer="llama.cpp/ggml-vocab-gemma-4.gguf", layers=35, hidden=1536,
        heads=8, kv_heads=1, head_dim=256, ffn=6144, vocab=262144, context=131072, theta=1e6,
        eps=1e-6, qk_norm=True, tied=True, eos="<turn|>", template="google__gemma-4-31B-it.jinja",
        gemma4=dict(global_head_dim=512, window=512, full_every=5, shared=20, per_layer=256,
                    local_theta=1e4, softcap=30.0, turned=64),
    ),
    "qwen3-30b-a3b-shape": dict(
        arch="qwen3moe", tokenizer="qwen3", pre="qwen2", layers=48, hidden=2048, heads=32,
        kv_heads=4, head_dim=128, ffn=6144, vocab=151936, context=40960, theta=1e6,
        eps=1e-6, qk_norm=True, tied=False, eos="<|im_end|>",
        experts=dict(count=128, used=8, width=768, distinct=8),
    ),
}

CONTROL, USER_DEFINED, NORMAL, UNUSED = 3, 4, 1, 5


def vocab(name, size):
    """Tokens, types and merges from a real tokenizer.json, as llama.cpp's converter lays
    them out (id order; holes padded), or from a GGUF's (`*.gguf`: llama.cpp's vocabulary
    files) padded to `size`."""
    if name.endswith(".gguf"):
        r = gguf.GGUFReader(os.path.join(CACHE, "tokenizers", name))
        field = lambda k: [r.fields[k].contents(i) for i in range(len(r.fields[k].data))]
        tokens, types = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.token_type")
        pad = range(len(tokens), size)
        return (tokens + [f"[PAD{i}]" for i in pad], types + [UNUSED for _ in pad],
                field("tokenizer.ggml.merges"))
    with open(os.path.join(CACHE, "tokenizers", name, "tokenizer.json")) as f:
        tj = json.load(f)
    by_id = {i: (t, NORMAL) for t, i in tj["model"]["vocab"].items()}
    for a in tj["added_tokens"]:
        special = a["special"] or (a["content"].startswith("<|") and a["content"].endswith("|>"))
        by_id[a["id"]] = (a["content"], CONTROL if special else USER_DEFINED)
    tokens, types = [], []
    for i in range(size):
        t, ty = by_id.get(i, (f"[PAD{i}]", UNUSED))
        tokens.append(t)
        types.append(ty)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    return tokens, types, merges


def llama3_factors(head_dim, theta, factor, low, high, original):
    out = []
    for i in range(head_dim // 2):
        wavelen = 2 * math.pi * theta ** (2 * i / head_dim)
        if wavelen < original / high:
            out.append(1.0)
        elif wavelen > original / low:
            out.append(factor)
        else:
            smooth = (original / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def gemma4_parts(w, s, g4, matrix, array, ones):
    """Gemma 4's metadata and tensors as llama.cpp's converter writes them
    (conversion/gemma.py, Gemma4Model): head widths per layer type, the layer pattern, the
    shared layers, per-layer MLP widths, the per-layer inputs, the proportional RoPE's
    rope_freqs (1 for the turning frequencies, 1e30 for the rest)."""
    a, h, n = s["arch"], s["hidden"], s["layers"]
    swa_hd, full_hd, pl = s["head_dim"], g4["global_head_dim"], g4["per_layer"]
    slides = [(i + 1) % g4["full_every"] != 0 for i in range(n)]
    first = n - g4["shared"]
    widths = [s["ffn"] if i < first else 2 * s["ffn"] for i in range(n)]
    w.add_uint32(f"{a}.attention.key_length", full_hd)
    w.add_uint32(f"{a}.attention.value_length", full_hd)
    w.add_uint32(f"{a}.attention.key_length_swa", swa_hd)
    w.add_uint32(f"{a}.attention.value_length_swa", swa_hd)
    w.add_uint32(f"{a}.rope.dimension_count", full_hd)
    w.add_uint32(f"{a}.rope.dimension_count_swa", swa_hd)
    w.add_float32(f"{a}.rope.freq_base_swa", g4["local_theta"])
    w.add_uint32(f"{a}.attention.sliding_window", g4["window"])
    w.add_array(f"{a}.attention.sliding_window_pattern", slides)
    w.add_uint32(f"{a}.attention.shared_kv_layers", g4["shared"])
    w.add_uint32(f"{a}.embedding_length_per_layer_input", pl)
    w.add_float32(f"{a}.final_logit_softcapping", g4["softcap"])
    # Lists where the common header wrote numbers (the writer keeps the last value).
    w.add_array(f"{a}.feed_forward_length", widths)
    half = full_hd // 2
    freqs = np.array([1.0] * g4["turned"] + [1e30] * (half - g4["turned"]), dtype=np.float32)
    array("rope_freqs.weight", freqs)
    matrix("per_layer_token_embd.weight", s["vocab"], n * pl)
    matrix("per_layer_model_proj.weight", n * pl, h)
    ones("per_layer_proj_norm.weight", pl)
    for i in range(n):
        p, hd = f"blk.{i}", swa_hd if slides[i] else full_hd
        for norm in ["attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm", "post_norm"]:
            ones(f"{p}.{norm}.weight", h)
        matrix(f"{p}.attn_q.weight", s["heads"] * hd, h)
        ones(f"{p}.attn_q_norm.weight", hd)
        if i < first:  # the shared layers read an earlier layer's keys and values
            matrix(f"{p}.attn_k.weight", s["kv_heads"] * hd, h)
            matrix(f"{p}.attn_v.weight", s["kv_heads"] * hd, h)
            ones(f"{p}.attn_k_norm.weight", hd)
        matrix(f"{p}.attn_output.weight", h, s["heads"] * hd)
        matrix(f"{p}.ffn_gate.weight", widths[i], h)
        matrix(f"{p}.ffn_up.weight", widths[i], h)
        matrix(f"{p}.ffn_down.weight", h, widths[i])
        ones(f"{p}.layer_output_scale.weight", 1)
        matrix(f"{p}.inp_gate.weight", pl, h)
        matrix(f"{p}.proj.weight", h, pl)


def write(name, s):
    path = os.path.join(CACHE, "models", f"{name}.q8_0.gguf")
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(path, s["arch"])
    a = s["arch"]
    w.add_name(name)
    w.add_uint32(f"{a}.block_count", s["layers"])
    w.add_uint32(f"{a}.context_length", s["context"])
    w.add_uint32(f"{a}.embedding_length", s["hidden"])
    w.add_uint32(f"{a}.feed_forward_length", s["ffn"])
    w.add_uint32(f"{a}.attention.head_count", s["heads"])
    w.add_uint32(f"{a}.attention.head_count_kv", s["kv_heads"])
    w.add_uint32(f"{a}.attention.key_length", s["head_dim"])
    w.add_uint32(f"{a}.attention.value_length", s["head_dim"])
    w.add_uint32(f"{a}.rope.dimension_count", s.get("rotary", s["head_dim"]))
    w.add_float32(f"{a}.rope.freq_base", s["theta"])
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", s["eps"])
    tokens, types, merges = vocab(s["tokenizer"], s["vocab"])
    g4 = s.get("gemma4")
    if g4:  # Gemma 4's converter: its own tokenizer model, no pre-tokenizer name
        w.add_tokenizer_model("gemma4")
        r = gguf.GGUFReader(os.path.join(CACHE, "tokenizers", s["tokenizer"]))
        w.add_token_scores([r.fields["tokenizer.ggml.scores"].contents(i)
                            for i in range(len(r.fields["tokenizer.ggml.scores"].data))])
        w.add_bos_token_id(tokens.index("<bos>"))
        w.add_add_bos_token(True)
        w.add_add_space_prefix(False)
    else:
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(s["pre"])
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_eos_token_id(tokens.index(s["eos"]))
    # The real model's chat template, so that the first seed's chat query runs as it would.
    if "template" in s:  # the family's own, from the template test's real set
        with open(os.path.join(ROOT, "tests", "fixtures", "templates", s["template"])) as f:
            template = f.read()
    else:
        with open(os.path.join(CACHE, "tokenizers", s["tokenizer"], "tokenizer_config.json")) as f:
            template = json.load(f).get("chat_template")
    if template:
        w.add_chat_template(template)

    # Tensors are declared first and written after the header, one at a time.
    pending = []

    def tensor(tname, make, shape, dtype, nbytes, raw=None):
        w.add_tensor_info(tname, shape, dtype, nbytes, raw_dtype=raw)
        pending.append(make)

    def q8(x):
        return gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0)

    def q8_shape(*dims):  # the byte shape of a Q8_0 tensor: 34 bytes per 32 values
        return (*dims[:-1], dims[-1] // 32 * 34)

    def matrix(tname, rows, cols):
        make = lambda: q8(rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(0.02))
        shape = q8_shape(rows, cols)
        tensor(tname, make, shape, np.uint8, math.prod(shape), gguf.GGMLQuantizationType.Q8_0)

    def experts(tname, count, distinct, rows, cols):
        def make():
            x = rng.standard_normal((distinct, rows, cols), dtype=np.float32) * np.float32(0.02)
            return np.tile(q8(x), (count // distinct, 1, 1))
        shape = q8_shape(count, rows, cols)
        tensor(tname, make, shape, np.uint8, math.prod(shape), gguf.GGMLQuantizationType.Q8_0)

    def array(tname, x):
        tensor(tname, lambda: x, x.shape, x.dtype, x.nbytes)

    def ones(tname, n):
        array(tname, np.ones(n, dtype=np.float32))

    h, hd, q_rows, kv_rows = s["hidden"], s["head_dim"], s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"]
    matrix("token_embd.weight", s["vocab"], h)
    if not s["tied"]:
        matrix("output.weight", s["vocab"], h)
    ones("output_norm.weight", h)
    if "longrope" in s:  # Phi-3's converter: both divisor sets as tensors, the attention factor
        lr, half = s["longrope"], s["rotary"] // 2
        w.add_uint32(f"{a}.rope.scaling.original_context_length", lr["original"])
        factor = s["context"] / lr["original"]
        w.add_float32(f"{a}.rope.scaling.attn_factor", math.sqrt(1 + math.log(factor) / math.log(lr["original"])))
        array("rope_factors_short.weight", np.linspace(1.0, 3.0, half, dtype=np.float32))
        array("rope_factors_long.weight", np.linspace(1.0, 60.0, half, dtype=np.float32))
    if "window" in s:
        w.add_uint32(f"{a}.attention.sliding_window", s["window"])
    if "yarn" in s:  # Ministral 3's converter
        y = s["yarn"]
        w.add_string(f"{a}.rope.scaling.type", "yarn")
        w.add_float32(f"{a}.rope.scaling.factor", y["factor"])
        w.add_uint32(f"{a}.rope.scaling.original_context_length", y["original"])
        w.add_float32(f"{a}.rope.scaling.yarn_log_multiplier", 1.0)
        w.add_float32(f"{a}.attention.temperature_scale", y["beta"])
    if "rope_llama3" in s:
        r = s["rope_llama3"]
        array("rope_freqs.weight", llama3_factors(hd, s["theta"], r["factor"], r["low"], r["high"], r["original"]))
    if "experts" in s:  # Qwen3-MoE's converter
        e = s["experts"]
        w.add_uint32(f"{a}.expert_count", e["count"])
        w.add_uint32(f"{a}.expert_used_count", e["used"])
        w.add_uint32(f"{a}.expert_feed_forward_length", e["width"])
    dn = s.get("delta_net")
    if dn:  # Qwen3.5's converter (conversion/qwen.py, Qwen3NextModel)
        w.add_uint32(f"{a}.ssm.conv_kernel", dn["kernel"])
        w.add_uint32(f"{a}.ssm.state_size", dn["dim"])
        w.add_uint32(f"{a}.ssm.group_count", dn["key_heads"])
        w.add_uint32(f"{a}.ssm.time_step_rank", dn["value_heads"])
        w.add_uint32(f"{a}.ssm.inner_size", dn["dim"] * dn["value_heads"])
        w.add_uint32(f"{a}.full_attention_interval", dn["every"])
        # Multimodal RoPE's sections (llama.cpp requires them; for text, plain RoPE).
        w.add_array(f"{a}.rope.dimension_sections", [11, 11, 10, 0])
    if g4:
        gemma4_parts(w, s, g4, matrix, array, ones)
        pending_layers = range(0)
    else:
        pending_layers = range(s["layers"])
    for i in pending_layers:
        p = f"blk.{i}"
        ones(f"{p}.attn_norm.weight", h)
        if dn and (i + 1) % dn["every"] != 0:
            ones(f"{p}.post_attention_norm.weight", h)
            kd, vd, hv = dn["key_heads"] * dn["dim"], dn["value_heads"] * dn["dim"], dn["value_heads"]
            matrix(f"{p}.attn_qkv.weight", 2 * kd + vd, h)
            matrix(f"{p}.attn_gate.weight", vd, h)
            matrix(f"{p}.ssm_beta.weight", hv, h)
            matrix(f"{p}.ssm_alpha.weight", hv, h)
            conv = rng.standard_normal((2 * kd + vd, dn["kernel"]), dtype=np.float32) * np.float32(0.5)
            array(f"{p}.ssm_conv1d.weight", conv)
            ones(f"{p}.ssm_dt.bias", hv)
            array(f"{p}.ssm_a", -np.linspace(1.0, 16.0, hv, dtype=np.float32))
            ones(f"{p}.ssm_norm.weight", dn["dim"])
            matrix(f"{p}.ssm_out.weight", h, vd)
            matrix(f"{p}.ffn_gate.weight", s["ffn"], h)
            matrix(f"{p}.ffn_up.weight", s["ffn"], h)
            matrix(f"{p}.ffn_down.weight", h, s["ffn"])
            continue
        # Qwen3.5's gated attention: attn_q holds each head's queries, then its gate.
        q_out = 2 * q_rows if dn else q_rows
        ones(f"{p}.post_attention_norm.weight" if dn else f"{p}.ffn_norm.weight", h)
        if s.get("fused"):
            matrix(f"{p}.attn_qkv.weight", q_rows + 2 * kv_rows, h)
        else:
            matrix(f"{p}.attn_q.weight", q_out, h)
            matrix(f"{p}.attn_k.weight", kv_rows, h)
            matrix(f"{p}.attn_v.weight", kv_rows, h)
        matrix(f"{p}.attn_output.weight", h, q_rows)
        if s["qk_norm"]:
            ones(f"{p}.attn_q_norm.weight", hd)
            ones(f"{p}.attn_k_norm.weight", hd)
        if "experts" in s:
            e = s["experts"]
            matrix(f"{p}.ffn_gate_inp.weight", e["count"], h)
            for proj, rows, cols in [("gate", e["width"], h), ("up", e["width"], h), ("down", h, e["width"])]:
                experts(f"{p}.ffn_{proj}_exps.weight", e["count"], e["distinct"], rows, cols)
        elif s.get("fused"):
            matrix(f"{p}.ffn_up.weight", 2 * s["ffn"], h)  # gate rows, then up rows
        else:
            matrix(f"{p}.ffn_gate.weight", s["ffn"], h)
            matrix(f"{p}.ffn_up.weight", s["ffn"], h)
        if "experts" not in s:
            matrix(f"{p}.ffn_down.weight", h, s["ffn"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for k, make in enumerate(pending):
        w.write_tensor_data(make())
        if k % 50 == 0:
            print(f"{name}: tensor {k + 1}/{len(pending)}", file=sys.stderr)
    w.close()
    print(path)


def write_bf16_dir(name, s):
    """The Qwen3 shape as a Hugging Face directory in bf16 (config.json, one model.safetensors,
    the real tokenizer), as Qwen/Qwen3-4B ships: written tensor by tensor, so that the 8 GB
    file never sits in this process's memory."""
    import shutil

    assert s["arch"] == "qwen3", "only the Qwen3 shape has a bf16 directory form"
    out = os.path.join(CACHE, "models", f"{name}-bf16")
    os.makedirs(out, exist_ok=True)
    h, hd, ffn = s["hidden"], s["head_dim"], s["ffn"]
    q_rows, kv_rows = s["heads"] * hd, s["kv_heads"] * hd
    tensors = [("model.embed_tokens.weight", (s["vocab"], h)), ("model.norm.weight", (h,))]
    for i in range(s["layers"]):
        p = f"model.layers.{i}"
        tensors += [
            (f"{p}.input_layernorm.weight", (h,)), (f"{p}.post_attention_layernorm.weight", (h,)),
            (f"{p}.self_attn.q_proj.weight", (q_rows, h)), (f"{p}.self_attn.k_proj.weight", (kv_rows, h)),
            (f"{p}.self_attn.v_proj.weight", (kv_rows, h)), (f"{p}.self_attn.o_proj.weight", (h, q_rows)),
            (f"{p}.self_attn.q_norm.weight", (hd,)), (f"{p}.self_attn.k_norm.weight", (hd,)),
            (f"{p}.mlp.gate_proj.weight", (ffn, h)), (f"{p}.mlp.up_proj.weight", (ffn, h)),
            (f"{p}.mlp.down_proj.weight", (h, ffn)),
        ]
    header, offset = {}, 0
    for tname, shape in tensors:
        n = 2 * math.prod(shape)
        header[tname] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    rng = np.random.default_rng(0)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for k, (tname, shape) in enumerate(tensors):
            if len(shape) == 1:
                x = np.ones(shape, dtype=np.float32)
            else:
                x = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
            # bf16: the upper half of each f32 (truncated; the values are random anyway).
            f.write((x.view(np.uint32) >> 16).astype(np.uint16).tobytes())
            if k % 11 == 0:
                print(f"{name}-bf16: {k + 1}/{len(tensors)} tensors", file=sys.stderr)
    config = {
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": h,
        "intermediate_size": ffn, "num_hidden_layers": s["layers"], "num_attention_heads": s["heads"],
        "num_key_value_heads": s["kv_heads"], "head_dim": hd, "vocab_size": s["vocab"],
        "max_position_embeddings": s["context"], "rope_theta": s["theta"], "rms_norm_eps": s["eps"],
        "tie_word_embeddings": s["tied"], "torch_dtype": "bfloat16", "hidden_act": "silu",
        "bos_token_id": 151643, "eos_token_id": 151645,
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    for t in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(CACHE, "tokenizers", s["tokenizer"], t), os.path.join(out, t))
    print(out)


def main():
    names = sys.argv[1:] or list(SHAPES)
    for n in names:
        if n.endswith("-bf16") and n[: -len("-bf16")] in SHAPES:
            write_bf16_dir(n[: -len("-bf16")], SHAPES[n[: -len("-bf16")]])
        elif n in SHAPES:
            write(n, SHAPES[n])
        else:
            sys.exit(f"unknown shape {n!r}; known: {', '.join(SHAPES)}, qwen3-4b-shape-bf16")


if __name__ == "__main__":
    main()

"""A Llama-3-style GGUF for the reference fixtures (imported by scripts/reference.py).

tests/fixtures/tiny-llama3/weights.gguf holds tiny random weights laid out as llama.cpp's
converter writes a Llama 3.1 / 3.2 model:
  - Q and K rows permuted for llama.cpp's RoPE (pairs of adjacent dimensions);
  - `rope_freqs.weight`, the converter's per-frequency divisors for rope_scaling "llama3"
    (theta 500000, factor 8, low/high frequency factors 1 and 4, original context 8192);
  - Q4_0 embeddings tied to the output (as Llama 3.2 1B/3B), Q8_0 layer matrices, f32 norms.

It carries no vocabulary: Llama 3.2's real tokenizer.json (Llama 3.1's special tokens, from
scripts/fetch-models.sh's cache) is 9 MB, so the test adds it to the GGUF the way the
converter does (tokenizer.ggml.pre = "llama-bpe"), with Llama 3.1's real chat template.

The PyTorch side reads the GGUF back, dequantizes it with the gguf package, undoes the
permutation and runs transformers' LlamaForCausalLM with the Hugging Face rope_scaling config:
an independent path for every step the engine takes from the GGUF.
"""
import json
import math
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(ROOT, "tests", "fixtures", "tiny-llama3")
WEIGHTS = os.path.join(DIR, "weights.gguf")
VOCABULARY = os.path.join(DIR, "vocabulary.json")  # what the test adds to the GGUF
TEMPLATE = os.path.join(ROOT, "tests", "fixtures", "templates", "meta-llama__Llama-3.1-8B-Instruct.jinja")

VOCAB = 128256
HIDDEN, FFN, LAYERS, HEADS, KV_HEADS, HEAD_DIM = 32, 64, 2, 4, 2, 8
THETA, EPS = 500000.0, 1e-5
ROPE = dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)
EOS = [128001, 128008, 128009]


def config():
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM,
        max_position_embeddings=131072, rms_norm_eps=EPS, rope_theta=THETA,
        rope_scaling={"rope_type": "llama3", **ROPE}, tie_word_embeddings=True,
        bos_token_id=128000, eos_token_id=EOS,
    )


def rope_divisors():
    """llama.cpp's convert_hf_to_gguf.py for rope_scaling "llama3", written from its rule:
    keep high frequencies, divide low ones by the factor, interpolate in between."""
    import numpy as np

    low_wavelen = ROPE["original_max_position_embeddings"] / ROPE["low_freq_factor"]
    high_wavelen = ROPE["original_max_position_embeddings"] / ROPE["high_freq_factor"]
    out = []
    for i in range(0, HEAD_DIM, 2):
        wavelen = 2 * math.pi * THETA ** (i / HEAD_DIM)
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(ROPE["factor"])
        else:
            smooth = (ROPE["original_max_position_embeddings"] / wavelen - ROPE["low_freq_factor"]) / (
                ROPE["high_freq_factor"] - ROPE["low_freq_factor"])
            out.append(1.0 / ((1 - smooth) / ROPE["factor"] + smooth))
    return np.array(out, dtype=np.float32)


def permute(w, heads):
    """llama.cpp's permutation of Q/K rows: each head's halves interleaved."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, heads):
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def make():
    """Writes weights.gguf from a seeded random init (HF names -> GGUF names)."""
    import gguf
    import numpy as np
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    cfg = config()
    cfg.initializer_range = 0.4
    model = LlamaForCausalLM(cfg)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(0)
    os.makedirs(DIR, exist_ok=True)
    w = gguf.GGUFWriter(WEIGHTS, "llama")
    w.add_name("tiny-llama3")
    w.add_uint32("llama.block_count", LAYERS)
    w.add_uint32("llama.context_length", 131072)
    w.add_uint32("llama.embedding_length", HIDDEN)
    w.add_uint32("llama.feed_forward_length", FFN)
    w.add_uint32("llama.attention.head_count", HEADS)
    w.add_uint32("llama.attention.head_count_kv", KV_HEADS)
    w.add_uint32("llama.rope.dimension_count", HEAD_DIM)
    w.add_float32("llama.rope.freq_base", THETA)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", EPS)
    w.add_uint32("llama.vocab_size", VOCAB)

    Q = gguf.GGMLQuantizationType

    def quantized(name, x, kind):
        w.add_tensor(name, gguf.quants.quantize(np.ascontiguousarray(x), kind), raw_dtype=kind)

    def norm(name, n):
        # Non-trivial norm weights, so that they matter.
        w.add_tensor(name, (1.0 + 0.3 * rng.standard_normal(n)).astype(np.float32))

    quantized("token_embd.weight", sd["model.embed_tokens.weight"], Q.Q4_0)
    norm("output_norm.weight", HIDDEN)
    w.add_tensor("rope_freqs.weight", rope_divisors())
    for i in range(LAYERS):
        p, b = f"blk.{i}", f"model.layers.{i}"
        norm(f"{p}.attn_norm.weight", HIDDEN)
        norm(f"{p}.ffn_norm.weight", HIDDEN)
        quantized(f"{p}.attn_q.weight", permute(sd[f"{b}.self_attn.q_proj.weight"], HEADS), Q.Q8_0)
        quantized(f"{p}.attn_k.weight", permute(sd[f"{b}.self_attn.k_proj.weight"], KV_HEADS), Q.Q8_0)
        quantized(f"{p}.attn_v.weight", sd[f"{b}.self_attn.v_proj.weight"], Q.Q8_0)
        quantized(f"{p}.attn_output.weight", sd[f"{b}.self_attn.o_proj.weight"], Q.Q8_0)
        quantized(f"{p}.ffn_gate.weight", sd[f"{b}.mlp.gate_proj.weight"], Q.Q8_0)
        quantized(f"{p}.ffn_up.weight", sd[f"{b}.mlp.up_proj.weight"], Q.Q8_0)
        quantized(f"{p}.ffn_down.weight", sd[f"{b}.mlp.down_proj.weight"], Q.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(VOCABULARY, "w") as f:
        json.dump({"tokenizer": "llama3.2", "pre": "llama-bpe", "bos": "<|begin_of_text|>", "eos": "<|eot_id|>",
                   "chat_template": os.path.relpath(TEMPLATE, ROOT)}, f, indent=1)
        f.write("\n")


def load(cache):
    """(tokenizer, model): the GGUF read back and dequantized into transformers' Llama with
    the Hugging Face rope_scaling config; the tokenizer is Llama 3.2's tokenizer.json with
    Llama 3.1's chat template."""
    import gguf
    import numpy as np
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    reader = gguf.GGUFReader(WEIGHTS)
    t = {}
    for x in reader.tensors:
        a = gguf.quants.dequantize(x.data, x.tensor_type).astype(np.float32)
        t[x.name] = a.reshape([int(d) for d in reversed(x.shape)])
    factors = t["rope_freqs.weight"]
    assert np.allclose(factors, rope_divisors()), factors
    sd = {"model.embed_tokens.weight": t["token_embd.weight"], "model.norm.weight": t["output_norm.weight"],
          "lm_head.weight": t["token_embd.weight"]}
    for i in range(LAYERS):
        p, b = f"blk.{i}", f"model.layers.{i}"
        sd[f"{b}.input_layernorm.weight"] = t[f"{p}.attn_norm.weight"]
        sd[f"{b}.post_attention_layernorm.weight"] = t[f"{p}.ffn_norm.weight"]
        sd[f"{b}.self_attn.q_proj.weight"] = unpermute(t[f"{p}.attn_q.weight"], HEADS)
        sd[f"{b}.self_attn.k_proj.weight"] = unpermute(t[f"{p}.attn_k.weight"], KV_HEADS)
        sd[f"{b}.self_attn.v_proj.weight"] = t[f"{p}.attn_v.weight"]
        sd[f"{b}.self_attn.o_proj.weight"] = t[f"{p}.attn_output.weight"]
        sd[f"{b}.mlp.gate_proj.weight"] = t[f"{p}.ffn_gate.weight"]
        sd[f"{b}.mlp.up_proj.weight"] = t[f"{p}.ffn_up.weight"]
        sd[f"{b}.mlp.down_proj.weight"] = t[f"{p}.ffn_down.weight"]
    model = LlamaForCausalLM(config()).float()
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()},
                                                strict=False)
    assert not unexpected and all("rotary" in k for k in missing), (missing, unexpected)
    model.config._attn_implementation = "eager"
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with open(VOCABULARY) as f:
        vocabulary = json.load(f)
    tok = AutoTokenizer.from_pretrained(os.path.join(cache, "tokenizers", vocabulary["tokenizer"]))
    with open(os.path.join(ROOT, vocabulary["chat_template"])) as f:
        tok.chat_template = f.read()
    return tok, model

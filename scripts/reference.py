#!/usr/bin/env python3
"""Reference fixtures for TokenLens, computed with PyTorch + transformers (+ lxt for AttnLRP).

Loads the *same* GGUF file the engine uses through transformers' GGUF loader (dequantized to
f32), and writes, for every prompt in PROMPTS and two targets (the argmax and the runner-up):
token ids, the templated text, top logits, and per method the token scores and the latent
trace. Output: tests/fixtures/reference/<name>.json (committed; CI does not need torch).

Pinned environment (scripts/reference-env.sh makes it): torch 2.6.0, transformers 4.52.4,
lxt 2.1, gguf.

Run: scripts/reference-env.sh && ~/.cache/tokenlens/venv/bin/python scripts/reference.py

Each attribution mode runs in its own process because lxt's monkey_patch changes the
transformers module globally.
"""
import argparse
import json
import os
import subprocess
import sys

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

# A tiny random-weight Llama saved as a Hugging Face directory (config.json, safetensors,
# tokenizer.json): exercises the safetensors loader and the half-split RoPE layout.
TINY_DIR = os.path.join(ROOT, "tests", "fixtures", "tiny-llama")
TINY_PROMPTS = {
    "tiny_chat": ("Why is the sky blue? 42 reasons, s'il vous plaît.", True),
    "tiny_raw": ("fn main() { println!(\"hi\"); }", False),
}


def make_tiny(gguf_path):
    """Writes TINY_DIR from a seeded random init, with SmolLM2's tokenizer and template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok, _ = load(gguf_path, tokenizer_only=True)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=40, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
        initializer_range=0.4, bos_token_id=1, eos_token_id=2, torch_dtype="bfloat16",
    )
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    # Non-trivial norm weights so the norms matter.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
    os.makedirs(TINY_DIR, exist_ok=True)
    model.save_pretrained(TINY_DIR, safe_serialization=True)
    tok.save_pretrained(TINY_DIR)
    for extra in ["special_tokens_map.json", "generation_config.json"]:
        path = os.path.join(TINY_DIR, extra)
        if os.path.exists(path):
            os.remove(path)


def load(gguf_path, tokenizer_only=False):
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
    if tokenizer_only:
        return tok, None
    model = AutoModelForCausalLM.from_pretrained(
        d, gguf_file=f, torch_dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return tok, model


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


def attribute(model, ids, target, contrast=None):
    """One forward + backward of the target's logit (None: the argmax, as the engine's
    default), or of logit[target] - logit[contrast]; returns (grad, embeds, trace, logits)."""
    import torch

    layers = model.model.layers
    saved = []

    def hook(_m, _i, out):
        h = out[0] if isinstance(out, tuple) else out
        h.retain_grad()
        saved.append(h)

    handles = [l.register_forward_hook(hook) for l in layers]
    try:
        ids_t = torch.tensor([ids])
        emb = model.get_input_embeddings()(ids_t).detach().requires_grad_(True)
        logits = model(inputs_embeds=emb, use_cache=False).logits[0, -1]
        if target is None:
            target = int(logits.argmax())
            torch.topk(logits.detach(), 10)  # the prediction the engine also reports
        y = logits[target] if contrast is None else logits[target] - logits[contrast]
        y.backward()
    finally:
        for h in handles:
            h.remove()
    grad = emb.grad[0]
    trace = [(h[0] * h.grad[0]).sum(-1).tolist() for h in saved]
    return grad, emb[0].detach(), trace, logits.detach()


def r(xs):
    return [float(f"{x:.7g}") for x in xs]


def run_mode(mode, gguf, out_path):
    import torch
    from transformers.models.llama import modeling_llama

    torch.set_num_threads(os.cpu_count() or 1)
    if mode != "plain":
        from lxt.efficient import monkey_patch
        from lxt.efficient.models.llama import attnLRP, cp_LRP

        monkey_patch(modeling_llama, attnLRP if mode == "attnlrp" else cp_LRP)
    result = {}
    if mode == "plain":
        result["__generation__"] = run_generation(gguf)
    for source, prompts in [(gguf, PROMPTS), (TINY_DIR, TINY_PROMPTS)]:
        tok, model = load(source)
        run_prompts(tok, model, prompts, mode, result)
    with open(out_path, "w") as f:
        json.dump(result, f)


def run_prompts(tok, model, prompts, mode, result):
    import torch

    for name, (prompt, chat) in prompts.items():
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
    "tiny_chat": (TINY_PROMPTS["tiny_chat"][0], True, "tiny"),
}
GEN_TOKENS = 32


def run_generation(gguf):
    """transformers' greedy decoding (generate, do_sample=False, its KV cache and its
    end-of-sequence ids) for GEN_TOKENS new tokens."""
    import torch

    out = {}
    models = {"smollm2": load(gguf), "tiny": load(TINY_DIR)}
    for name, (prompt, chat, which) in GEN_PROMPTS.items():
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
            "model": "smollm2-135m" if which == "smollm2" else "tests/fixtures/tiny-llama",
            "ids": ids, "generated": seq, "eos_ids": eos,
            "text": tok.decode(seq, skip_special_tokens=False),
        }
        print(f"generate: {name}: {len(seq)} tokens {out[name]['text']!r}", file=sys.stderr)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default=os.path.expanduser(
        "~/.cache/tokenlens/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--mode", choices=MODES, help="internal: run one mode")
    ap.add_argument("--out", help="internal: partial output file")
    args = ap.parse_args()
    if args.mode:
        run_mode(args.mode, args.gguf, args.out)
        return
    import transformers, torch, lxt  # noqa: F401  (versions recorded below)
    from importlib.metadata import version

    make_tiny(args.gguf)
    parts = {}
    for mode in MODES:
        out = os.path.join(OUT, f".{mode}.partial.json")
        os.makedirs(OUT, exist_ok=True)
        subprocess.run([sys.executable, __file__, "--mode", mode, "--gguf", args.gguf, "--out", out], check=True)
        with open(out) as f:
            parts[mode] = json.load(f)
        os.remove(out)
    every = [(n, p, "smollm2-135m") for n, p in PROMPTS.items()]
    every += [(n, p, "tests/fixtures/tiny-llama") for n, p in TINY_PROMPTS.items()]
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
    gen = {
        "versions": {p: version(p) for p in ["torch", "transformers"]},
        "max_new_tokens": GEN_TOKENS,
        "prompts": parts["plain"]["__generation__"],
    }
    with open(GEN_OUT, "w") as f:
        json.dump(gen, f, ensure_ascii=False, indent=1)
    print(f"wrote {len(every)} fixtures to {OUT} and {GEN_OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference token ids for the GGUF tokenizer tests (tests/tokenizers.rs).

For each real Hugging Face tokenizer that scripts/fetch-models.sh puts in the cache
(tokenizers/<name>/tokenizer.json, or GPT-2's vocab.json and merges.txt), tokenizes the corpus below with Hugging Face's own
`tokenizers` library (what transformers' fast tokenizers run) and writes the ids to
tests/fixtures/tokenizers.json. The Rust test rebuilds each vocabulary as a GGUF (as
llama.cpp's converter writes it), loads it through TokenLens' GGUF tokenizer and compares.

Run: scripts/reference-env.sh && ~/.cache/tokenlens/venv/bin/python scripts/tokenizer_reference.py
"""
import hashlib
import json
import os
import sys

import tokenizers

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from reference import GEMMA_PROMPTS, PROMPTS, TINY  # noqa: E402

ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizers.json")
CACHE = os.environ.get("TOKENLENS_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tokenlens"
)

# name in the cache -> the tokenizer.ggml.pre llama.cpp's converter writes for it
FAMILIES = {
    "qwen3": "qwen2",
    "llama3": "llama-bpe",
    "llama3.2": "llama-bpe",
    "deepseek-v3": "deepseek-v3",
    "gpt-4o": "gpt-4o",
    "mistral-nemo": "tekken",
    # vocab.json + merges.txt: transformers' GPT2TokenizerFast builds GPT-2's tokenizer
    "gpt-2": "gpt-2",
}

CORPUS = [
    # digits
    "12345", "3.14159", "  42", "1,000,000 and 2024-12-04 at 10:30", "x²+y³=z⁴ ½ ٣٤٥",
    # contractions
    "don't", "I'M", "We'LL see, they'd've", "she's ſ's",
    # whitespace runs, tabs, newlines
    "a  b   c    d", "\ttab\t\tand  \t mixed", "line one\nline two\n\nthree",
    "\n\nleading newlines", "trailing spaces   ", "  \n  \n", "\r\nwindows\r\nlines",
    # CJK and other scripts
    "東京はどこ? 北京欢迎你。", "한국어 텍스트입니다", "Привет, мир!", "مرحبا بالعالم",
    "ελληνικά ῥήματα Ωmega K", "e\u0301te\u0301 (decomposed accents)",
    # emoji, ZWJ sequences, flags, skin tones
    "👨‍👩‍👧‍👦 family, 👩🏽‍💻 coder, 🏳️‍🌈 flag, 🇫🇷 France",
    # code with indentation
    "def f(x):\n    if x:\n        return [i ** 2 for i in range(x)]\n\treturn None\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).collect();\n    println!(\"{v:?}\");\n}",
    "<div class=\"a\">\n  <span>&nbsp;</span>\n</div>",
    # camel case, punctuation runs, URLs
    "HelloWorld getHTTPResponse XMLParser", "Wait... what?!?! --- ok ;-)",
    "see https://example.com/path?q=1&r=2#frag",
    # special and template tokens inside text
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
]


def corpus():
    texts = [p for p, _ in PROMPTS.values()]
    for _, prompts in TINY.values():
        texts += [p for p, _ in prompts.values()]
    texts += [p for p, _ in GEMMA_PROMPTS.values()]
    seen, out = set(), []
    for t in texts + CORPUS:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def main():
    texts = corpus()
    result = {
        "reference": f"Hugging Face tokenizers {tokenizers.__version__}: "
        "Tokenizer.from_file(tokenizer.json).encode(text, add_special_tokens=False).ids",
        "families": {},
    }
    for name, pre in FAMILIES.items():
        d = os.path.join(CACHE, "tokenizers", name)
        if os.path.exists(os.path.join(d, "tokenizer.json")):
            path = os.path.join(d, "tokenizer.json")
            tok = tokenizers.Tokenizer.from_file(path)
            encode = lambda t: tok.encode(t, add_special_tokens=False).ids  # noqa: E731
        else:
            from transformers import GPT2TokenizerFast

            path = os.path.join(d, "vocab.json")
            fast = GPT2TokenizerFast(vocab_file=path, merges_file=os.path.join(d, "merges.txt"))
            encode = lambda t: fast(t, add_special_tokens=False).input_ids  # noqa: E731
        with open(path, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        cases = [[t, encode(t)] for t in texts]
        result["families"][name] = {"pre": pre, "tokenizer_sha256": sha, "cases": cases}
        print(f"{name}: {len(cases)} texts", file=sys.stderr)
    with open(OUT, "w") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(OUT, file=sys.stderr)


if __name__ == "__main__":
    main()

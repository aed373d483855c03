#!/usr/bin/env python3
"""Reference renderings for the chat-template tests (tests/templates.rs).

Renders each real model template in tests/fixtures/templates/ with transformers'
apply_chat_template (one user message, add_generation_prompt=True, the model's bos/eos token
strings, enable_thinking off and on) and writes tests/fixtures/templates.json. strftime_now is
pinned to FIXED (the Rust side fixes its clock to the same time), so Llama 3.2's
"Today Date" line is reproducible.

Sources of the templates: tests/fixtures/templates/SOURCES.md.

Run: scripts/reference-env.sh && ~/.cache/tokenlens/venv/bin/python scripts/template_reference.py
"""
import datetime
import json
import os

import transformers
from transformers import PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DIR = os.path.join(ROOT, "tests", "fixtures", "templates")
OUT = os.path.join(ROOT, "tests", "fixtures", "templates.json")
CACHE = os.environ.get("TOKENLENS_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tokenlens"
)
FIXED = datetime.datetime(2025, 3, 5, 9, 26, 53)

# template file -> (bos_token, eos_token) from the model's tokenizer_config.json
MODELS = {
    "Qwen__Qwen2.5-Coder-0.5B-Instruct.jinja": (None, "<|im_end|>"),
    "Qwen__Qwen3.jinja": (None, "<|im_end|>"),
    "meta-llama__Llama-3.1-8B-Instruct.jinja": ("<|begin_of_text|>", "<|eot_id|>"),
    "meta-llama__Llama-3.2-3B-Instruct.jinja": ("<|begin_of_text|>", "<|eot_id|>"),
    "mistralai__Mistral-Nemo-Instruct-2407.jinja": ("<s>", "</s>"),
    "mistralai__Mistral-Nemo-Instruct-2407.v1.jinja": ("<s>", "</s>"),
    "google__gemma-3-4b-it.jinja": ("<bos>", "<eos>"),
    "HuggingFaceTB__SmolLM2-135M-Instruct.jinja": ("<|im_start|>", "<|im_end|>"),
    "HuggingFaceTB__SmolLM3-3B.jinja": (None, "<|im_end|>"),
    "Qwen__Qwen3.5-4B.jinja": (None, "<|im_end|>"),
    "google__gemma-4-31B-it.jinja": ("<bos>", "<eos>"),
    "microsoft__Phi-3.5-mini-instruct.jinja": ("<s>", "<|endoftext|>"),
    "microsoft__Phi-4-mini-instruct.jinja": ("<|endoftext|>", "<|endoftext|>"),
    "allenai__OLMo-2-1124-13B-Instruct.jinja": ("<|endoftext|>", "<|endoftext|>"),
    "mistralai__Ministral-3-14B-Reasoning-2512.jinja": ("<s>", "</s>"),
    "mistralai__Mistral-Small-3.2-24B-Instruct-2506.jinja": ("<s>", "</s>"),
    "deepseek-ai__DeepSeek-V3.jinja": ("<\uff5cbegin\u2581of\u2581sentence\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>"),
}

PROMPTS = [
    "What is the capital of France?",
    "How much self-awareness a smaller and quantized LLM model like you can achieve?",
    "  Leading and trailing spaces, \"quotes\", {braces} and {{ jinja }} stay as typed.  ",
    "def f(x):\n    return x * 2\n\nExplain this code.",
]


def main():
    # Any byte-level tokenizer will do: apply_chat_template(tokenize=False) only renders.
    tok = PreTrainedTokenizerFast(
        tokenizer_file=os.path.join(CACHE, "tokenizers", "qwen3", "tokenizer.json")
    )
    result = {
        "reference": f"transformers {transformers.__version__} apply_chat_template("
        "[user message], tokenize=False, add_generation_prompt=True, enable_thinking=...)",
        "now": FIXED.isoformat(),
        "templates": {},
    }
    for name, (bos, eos) in MODELS.items():
        with open(os.path.join(DIR, name)) as f:
            source = f.read()
        tok.bos_token, tok.eos_token = bos, eos
        cases = []
        for prompt in PROMPTS:
            for thinking in (False, True):
                text = tok.apply_chat_template(
                    [{"role": "user", "content": prompt}],
                    chat_template=source,
                    tokenize=False,
                    add_generation_prompt=True,
                    enable_thinking=thinking,
                    strftime_now=lambda fmt: FIXED.strftime(fmt),
                )
                cases.append({"prompt": prompt, "thinking": thinking, "text": text})
        result["templates"][name] = {"bos_token": bos or "", "eos_token": eos or "", "cases": cases}
    with open(OUT, "w") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(OUT)


if __name__ == "__main__":
    main()

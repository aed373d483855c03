#!/usr/bin/env python3
"""Reference for a given answer (forced decoding, issue 34 item 3), with PyTorch +
transformers (+ lxt for AttnLRP and CP-LRP).

For each reference fixture below (tests/fixtures/reference/<name>.json: its prompt and token
ids) and the answer text written here, the answer is tokenized on its own without special
tokens (`tokenizer(answer, add_special_tokens=False)`, as a researcher forcing a decoding in
transformers or Inseq does) and put after the prompt's ids. Then, per answer token k:
- its probability given the prompt and answer tokens before it (softmax of the logits at the
  position before it, plain mode);
- the all-steps row: the context is the ids and answer[:k], y = logits[-1][answer[k]],
  y.backward() gives each method's scores (plain: saliency |grad| and input x gradient;
  lxt's efficient AttnLRP and CP-LRP: e . grad), one score per token of the context.
Output: tests/fixtures/answer.json.

Run: $(scripts/reference-env.sh) scripts/answer_reference.py   (about a minute)
Each mode runs in its own process (lxt patches transformers for the whole process).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

OUT = os.path.join(reference.ROOT, "tests", "fixtures", "answer.json")
# fixture -> the given answer: a chat answer, a raw continuation that starts with a space,
# and text whose characters take several byte-level tokens each.
CASES = {
    "capital_chat": "The capital of France is Paris. It is on the Seine.",
    "eiffel_raw": " Paris, France.",
    "tiny_qwen3_raw": "\n# squares: 東京 🙂 done",
    "tiny_gemma3_chat": "Le chat dort sur le tapis chaud.",
}
MODES = reference.METHOD_MODES


def run_mode(mode, out_path):
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    reference.patch_lxt(mode)
    out = {}
    for name in CASES:
        fx, tok, model = reference.fixture_model(name)
        ids = fx["ids"]
        entry = {"steps": []}
        if mode == "plain":
            answer_ids = tok(CASES[name], add_special_tokens=False).input_ids
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids + answer_ids]), use_cache=False).logits[0]
            probs = torch.softmax(logits.float(), -1)
            entry["answer_ids"] = answer_ids
            entry["probs"] = reference.r(
                [probs[len(ids) + k - 1, t].item() for k, t in enumerate(answer_ids)])
        else:
            answer_ids = json.load(open(out_path + ".ids"))[name]
        for k, t in enumerate(answer_ids):
            grad, e, _, _ = reference.attribute(model, ids + answer_ids[:k], t)
            entry["steps"].append(reference.method_scores(mode, grad, e))
        out[name] = entry
        print(f"{mode}: {name} answer of {len(answer_ids)} tokens", file=sys.stderr)
    with open(out_path, "w") as f:
        json.dump(out, f)


def main():
    import subprocess
    import tempfile

    if len(sys.argv) == 3:
        run_mode(sys.argv[1], sys.argv[2])
        return
    parts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in MODES:
            path = os.path.join(tmp, f"{mode}.json")
            if mode != "plain":
                # The other modes explain the answer ids the plain run tokenized.
                with open(path + ".ids", "w") as f:
                    json.dump({n: parts["plain"][n]["answer_ids"] for n in CASES}, f)
            subprocess.run([sys.executable, __file__, mode, path], check=True)
            parts[mode] = json.load(open(path))
    cases = []
    for name, answer in CASES.items():
        fx = json.load(open(os.path.join(reference.OUT, f"{name}.json")))
        base = parts["plain"][name]
        steps = []
        for k in range(len(base["answer_ids"])):
            row = {}
            for mode in MODES:
                row.update(parts[mode][name]["steps"][k])
            steps.append(row)
        cases.append({"fixture": name, "model": fx["model"], "prompt": fx["prompt"],
                      "chat_template": fx["chat_template"], "ids": fx["ids"],
                      "target": fx["targets"][0]["id"], "answer": answer,
                      "answer_ids": base["answer_ids"], "probs": base["probs"], "steps": steps})
    reference.write_doc(OUT, cases)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference log-probability and span attributions for TokenLens, with PyTorch +
transformers (+ lxt for AttnLRP and CP-LRP).

For each reference fixture below (tests/fixtures/reference/<name>.json: its token ids), the
model continues greedily for a few tokens; then, per mode (plain autograd, lxt's AttnLRP,
lxt's CP-LRP):
- the log-probability of the fixture's argmax target: y = log_softmax(logits[-1])[target];
- a span: the context is the ids and the continuation but its last token, and
  y = Σ_k log_softmax(logits[p_k])[c_k] over the span's tokens c_k, p_k the position before
  each;
y.backward() gives the gradient at the input embeddings and at every layer's output: the
saliency (plain: |grad|), input × gradient (the mode's relevance: e · grad) and the trace.
Output: tests/fixtures/span.json.

Run: scripts/reference-env.sh && ~/.cache/tokenlens/venv/bin/python scripts/span_reference.py
Each mode runs in its own process (lxt patches transformers for the whole process).
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

OUT = os.path.join(reference.ROOT, "tests", "fixtures", "span.json")
CASES = ["capital_chat", "tiny_qwen3_raw", "gemma_eiffel_raw"]
CONTINUE = 4
# The span: continuation tokens START..END (0-based, END exclusive).
SPAN = (1, 4)


def backward(model, ids, targets):
    """y = Σ log_softmax(logits[p])[t] over `targets` [(p, t)]: (grad, embeds, trace)."""
    import torch

    saved = []

    def hook(_m, _i, out):
        h = out[0] if isinstance(out, tuple) else out
        h.retain_grad()
        saved.append(h)

    handles = [l.register_forward_hook(hook) for l in model.model.layers]
    try:
        emb = model.get_input_embeddings()(torch.tensor([ids])).detach().requires_grad_(True)
        logits = model(inputs_embeds=emb, use_cache=False).logits[0]
        y = sum(torch.log_softmax(logits[p], -1)[t] for p, t in targets)
        y.backward()
    finally:
        for h in handles:
            h.remove()
    trace = [reference.r((h[0] * h.grad[0]).sum(-1).tolist()) for h in saved]
    return emb.grad[0], emb[0].detach(), trace, float(y)


def run_mode(mode, out_path):
    import torch

    out = {}
    for name, fx, model, ids, target in reference.mode_cases(mode, CASES):
        cont = []
        with torch.no_grad():
            for _ in range(CONTINUE):
                logits = model(input_ids=torch.tensor([ids + cont]), use_cache=False).logits[0, -1]
                cont.append(int(logits.argmax()))
        g, e, trace, y = backward(model, ids, [(len(ids) - 1, target)])
        token = {"value": y, "scores": reference.method_scores(mode, g, e), "trace": trace}
        a, b = SPAN
        context = ids + cont[:b - 1]
        pairs = [(len(ids) + k - 1, cont[k]) for k in range(a, b)]
        g, e, trace, y = backward(model, context, pairs)
        span = {"value": y, "scores": reference.method_scores(mode, g, e), "trace": trace}
        out[name] = {"ids": ids, "target": target, "continuation": cont,
                     "token": token, "span": span}
        print(f"{mode}: {name} continues {cont}", file=sys.stderr)
    with open(out_path, "w") as f:
        json.dump(out, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=reference.MODES, help="internal: run one mode")
    ap.add_argument("--out", help="internal: partial output file")
    args = ap.parse_args()
    if args.mode:
        run_mode(args.mode, args.out)
        return
    parts = {}
    for mode in reference.MODES:
        part = OUT + f".{mode}.partial"
        subprocess.run([sys.executable, __file__, "--mode", mode, "--out", part], check=True)
        with open(part) as f:
            parts[mode] = json.load(f)
        os.remove(part)
    cases = []
    for name in CASES:
        base = parts["plain"][name]
        fx = json.load(open(os.path.join(reference.OUT, f"{name}.json")))
        case = {"fixture": name, "model": fx["model"], "prompt": fx["prompt"],
                "chat_template": fx["chat_template"], "ids": base["ids"], "target": base["target"],
                "continuation": base["continuation"], "range": list(SPAN)}
        for kind in ["token", "span"]:
            case[kind] = {"value": base[kind]["value"], "scores": dict(base[kind]["scores"]),
                          "traces": {"plain": base[kind]["trace"]}}
            for mode in ["attnlrp", "cp_lrp"]:
                other = parts[mode][name]
                assert other["continuation"] == base["continuation"], f"{mode} continued {name} differently"
                case[kind]["scores"].update(other[kind]["scores"])
                case[kind]["traces"][mode] = other[kind]["trace"]
        cases.append(case)
    reference.write_doc(OUT, cases)


if __name__ == "__main__":
    main()

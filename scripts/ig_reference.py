#!/usr/bin/env python3
"""Reference integrated gradients for TokenLens, computed with Captum on the same weights.

For each reference fixture below (tests/fixtures/reference/<name>.json: its token ids and
argmax target), Captum 0.8's `IntegratedGradients` attributes the target's logit to the input
embeddings from the zero baseline with `method="riemann_right"` and STEPS steps; the score of a
token is the attribution summed over the hidden dimension. Its completeness (`f(x) −
f(baseline)`, Captum's `return_convergence_delta`) and the layer trace are written beside: the
trace is layer conductance along the same path, computed here with forward hooks (h_l at every
point, its gradient at the points after the baseline; Σ_i g_l,i · (h_l,i − h_l,i−1)), and
written for the last layer and the first. Output: tests/fixtures/integrated_gradients.json.

Run: scripts/reference-env.sh && ~/.cache/tokenlens/venv/bin/python scripts/ig_reference.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

OUT = os.path.join(reference.ROOT, "tests", "fixtures", "integrated_gradients.json")
CASES = ["eiffel_raw", "capital_chat", "tiny_raw", "tiny_qwen2_chat", "tiny_gemma3_raw"]
STEPS = 32


def conductance(model, emb, target, steps):
    """Layer conductance of every decoder layer's output along the path α·emb, α = i/steps."""
    import torch

    layers = model.model.layers
    hs, gs = [], []
    for i in range(steps + 1):
        saved = []
        handles = reference.tap_layers(model, saved)
        try:
            x = (emb * (i / steps)).detach().requires_grad_(True)
            logit = model(inputs_embeds=x, use_cache=False).logits[0, -1, target]
            if i > 0:
                logit.backward()
        finally:
            for h in handles:
                h.remove()
        hs.append([h.detach()[0] for h in saved])
        gs.append([None if i == 0 else h.grad[0] for h in saved])
    out = []
    for l in range(len(layers)):
        acc = sum(gs[i][l] * (hs[i][l] - hs[i - 1][l]) for i in range(1, steps + 1))
        out.append(acc.sum(-1).tolist())
    return out


def main():
    import torch
    from captum.attr import IntegratedGradients

    torch.set_num_threads(os.cpu_count() or 1)
    out = []
    for name in CASES:
        fx, _, model = reference.fixture_model(name)
        ids, target = fx["ids"], fx["targets"][0]["id"]
        with torch.no_grad():
            emb = model.get_input_embeddings()(torch.tensor([ids]))

        def f(x):
            return model(inputs_embeds=x, use_cache=False).logits[:, -1, target]

        ig = IntegratedGradients(f)
        attr, delta = ig.attribute(emb, baselines=torch.zeros_like(emb), method="riemann_right",
                                   n_steps=STEPS, internal_batch_size=1,
                                   return_convergence_delta=True)
        with torch.no_grad():
            ends = [float(f(torch.zeros_like(emb))[0]), float(f(emb)[0])]
        trace = conductance(model, emb, target, STEPS)
        scores = attr[0].sum(-1).tolist()
        out.append({"fixture": name, "model": fx["model"], "prompt": fx["prompt"],
                    "chat_template": fx["chat_template"], "ids": ids, "target": target,
                    "steps": STEPS, "scores": reference.r(scores), "ends": ends,
                    "delta": float(delta[0]),
                    "trace_first": reference.r(trace[0]), "trace_last": reference.r(trace[-1])})
        print(f"{name}: {len(ids)} tokens, Σ scores {sum(scores):.4f} of f(x) − f(0) "
              f"{ends[1] - ends[0]:.4f}", file=sys.stderr)
    reference.write_doc(OUT, out)


if __name__ == "__main__":
    main()

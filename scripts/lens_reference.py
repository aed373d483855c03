#!/usr/bin/env python3
"""Reference logit lens for TokenLens, computed with PyTorch + transformers.

For each reference fixture below (tests/fixtures/reference/<name>.json: its token ids and
argmax target), the residual stream after every decoder layer is taken with forward hooks and
put through the model's own final norm, lm_head and (when configured) final soft-cap, as
transformers does for the last layer; at every position: the 5 most probable tokens (ties:
lower id first), their probabilities, and the target's rank and probability. Output:
tests/fixtures/lens.json. Every family has a case (its tiny model's first prompt); each
transformers computes its own families' cases (reference.TF5_FAMILIES) and keeps the rest.

Run: $(scripts/reference-env.sh) scripts/lens_reference.py
     $(scripts/reference-env-tf5.sh) scripts/lens_reference.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

OUT = os.path.join(reference.ROOT, "tests", "fixtures", "lens.json")
CASES = ["capital_chat", "eiffel_raw", "tiny_gemma3_chat", "tiny_qwen3_raw", "gemma_eiffel_raw"] + [
    next(iter(prompts)) for family, (_, prompts) in reference.TINY.items()
    if family not in ("gemma3", "qwen3")
]
TOP = 5


def main():
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    import transformers

    done = {}
    for name in reference.here(CASES):
        fx, _, model = reference.fixture_model(name)
        ids, target = fx["ids"], fx["targets"][0]["id"]
        captured = []
        hooks = [layer.register_forward_hook(
            lambda m, i, o: captured.append((o[0] if isinstance(o, tuple) else o)[0].detach()))
            for layer in model.model.layers]
        with torch.no_grad():
            model(input_ids=torch.tensor([ids]), use_cache=False)
        for h in hooks:
            h.remove()
        cap = getattr(model.config, "final_logit_softcapping", None)
        lens = []
        for h in captured:
            with torch.no_grad():
                logits = model.lm_head(model.model.norm(h))
                if cap:
                    logits = torch.tanh(logits / cap) * cap
            logits = logits.double()
            probs = torch.softmax(logits, -1)
            row = []
            for t in range(len(ids)):
                l = logits[t]
                # Highest logit first, ties to the lower id (a stable sort keeps id order).
                order = torch.argsort(-l, stable=True)[:TOP].tolist()
                row.append({
                    "top": order,
                    "probs": [float(probs[t, i]) for i in order],
                    "target_rank": int((l > l[target]).sum()),
                    "target_prob": float(probs[t, target]),
                })
            lens.append(row)
        done[name] = {"fixture": name, "model": fx["model"], "prompt": fx["prompt"],
                      "chat_template": fx["chat_template"], "ids": ids, "target": target,
                      "transformers": transformers.__version__, "lens": lens}
        print(f"{name}: {len(lens)} layers × {len(ids)} positions", file=sys.stderr)
    reference.write_merged(OUT, CASES, done)


if __name__ == "__main__":
    main()

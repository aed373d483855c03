#!/usr/bin/env python3
"""Reference for the gated delta rule (Qwen3.5's linear attention), computed with PyTorch +
transformers 5.25.0: tests/fixtures/delta_rule.json.

Random q, k (l2-normed, q scaled by dk^-1/2), v, log decays g <= 0 and write strengths beta
for 2 heads over 140 tokens (past two of the backward's 64-token checkpoints). Written:
- the outputs and final states of transformers' `torch_recurrent_gated_delta_rule`, checked
  here against its `torch_chunk_gated_delta_rule` (chunks of 64);
- for two seeds (cotangents of the outputs), the inputs' cotangents under three sets of
  product shares: the ordinary gradient (autograd through transformers' recurrence), and the
  AttnLRP and CP-LRP rules of src/methods/attnlrp.rs (autograd through the same recurrence
  written here with each product's factors scaled in the backward only: x·s + x.detach()·(1−s)
  keeps x's value and passes s of its cotangent). The rule recurrence with the ordinary
  shares is checked against transformers' gradient first.

Run: $(scripts/reference-env-tf5.sh) scripts/delta_rule_reference.py
"""
import json
import os

import torch
from transformers.models.qwen3_5.modeling_qwen3_5 import (
    torch_chunk_gated_delta_rule,
    torch_recurrent_gated_delta_rule,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "delta_rule.json")
H, T, DK, DV, SEEDS = 2, 140, 4, 5, 2

# Each product's shares: [to the first factor, to the second]; the decay's share to g.
SCALES = {
    "gradient": {"read": [1, 1], "recall": [1, 1], "gate": [1, 1], "write": [1, 1], "decay": 1},
    # AttnLRP: the uniform rule on every product of two input-dependent factors (half each),
    # the decay a constant.
    "attnlrp": {"read": [.5, .5], "recall": [.5, .5], "gate": [.5, .5], "write": [.5, .5],
                "decay": 0},
    # CP-LRP: what decides the mixing (q, k, beta, g) constant, as attention probabilities
    # are: the state passes values linearly.
    "cp_lrp": {"read": [1, 0], "recall": [1, 0], "gate": [0, 1], "write": [0, 1], "decay": 0},
}


def share(x, s):
    """x in the forward; s of its cotangent in the backward."""
    return x * s + x.detach() * (1 - s)


def recurrence(q, k, v, g, beta, sc):
    """The gated delta rule over (H, T, ·) tensors with the products' shares `sc`."""
    s = torch.zeros(q.shape[0], q.shape[2], v.shape[2], dtype=q.dtype)
    out = []
    for t in range(q.shape[1]):
        qt, kt, vt, gt, bt = q[:, t], k[:, t], v[:, t], g[:, t], beta[:, t]
        s = s * share(gt, sc["decay"]).exp()[:, None, None]
        m = torch.einsum("hij,hi->hj", share(s, sc["recall"][0]), share(kt, sc["recall"][1]))
        delta = share(bt, sc["gate"][0])[:, None] * share(vt - m, sc["gate"][1])
        s = s + share(kt, sc["write"][0])[:, :, None] * share(delta, sc["write"][1])[:, None, :]
        out.append(torch.einsum("hij,hi->hj", share(s, sc["read"][0]), share(qt, sc["read"][1])))
    return torch.stack(out, 1), s


def grads(fn, inputs, d_out):
    xs = [x.clone().requires_grad_(True) for x in inputs]
    out = fn(*xs)
    got = torch.autograd.grad(out, xs, d_out)
    return [g.detach() for g in got]


def main():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(H, T, DK), dim=-1) * DK ** -0.5
    k = torch.nn.functional.normalize(torch.randn(H, T, DK), dim=-1)
    v = torch.randn(H, T, DV)
    g = -torch.nn.functional.softplus(torch.randn(H, T)) * 0.5
    beta = torch.sigmoid(torch.randn(H, T))
    d_out = torch.randn(SEEDS, H, T, DV)

    def hf(q, k, v, g, beta, chunked=False):
        # transformers takes (batch, T, heads, ·) and scales q by dk^-1/2 itself.
        args = [x.transpose(0, 1)[None] for x in (q * DK ** 0.5, k, v)]
        args += [x.transpose(0, 1)[None] for x in (g, beta)]
        fn = torch_chunk_gated_delta_rule if chunked else torch_recurrent_gated_delta_rule
        o, s = fn(*args, output_final_state=True)
        return o[0].transpose(0, 1), s[0]

    out, state = hf(q, k, v, g, beta)
    out_c, state_c = hf(q, k, v, g, beta, chunked=True)
    assert torch.allclose(out, out_c, atol=1e-5), (out - out_c).abs().max()
    assert torch.allclose(state, state_c, atol=1e-5)
    inputs = [q, k, v, g, beta]
    doc = {"heads": H, "len": T, "dk": DK, "dv": DV, "seeds": SEEDS,
           "q": q, "k": k, "v": v, "g": g, "beta": beta, "d_out": d_out,
           "out": out, "state": state, "rules": {}}
    for name, sc in SCALES.items():
        per_seed = []
        for b in range(SEEDS):
            ours = grads(lambda *x: recurrence(*x, sc)[0], [x.double() for x in inputs],
                         d_out[b].double())
            if name == "gradient":
                theirs = grads(lambda *x: hf(*x)[0], inputs, d_out[b])
                for a, t in zip(ours, theirs):
                    assert torch.allclose(a.float(), t, rtol=1e-4, atol=1e-5), (a - t).abs().max()
            per_seed.append(ours)
        doc["rules"][name] = {"scales": sc, **{
            part: torch.stack([p[i] for p in per_seed]).float()
            for i, part in enumerate(["q", "k", "v", "g", "beta"])}}
    # f32 values, 8 significant digits.
    plain = lambda t: [float(f"{x:.8g}") for x in t.flatten().tolist()] if isinstance(t, torch.Tensor) else (
        {k: plain(v) for k, v in t.items()} if isinstance(t, dict) else t)
    doc = plain(doc)
    doc["versions"] = {"torch": torch.__version__, "transformers": __import__("transformers").__version__}
    with open(OUT, "w") as f:
        json.dump(doc, f)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

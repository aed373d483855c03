#!/usr/bin/env python3
"""Reference for one Gated DeltaNet layer (Qwen3.5's linear attention), with PyTorch +
transformers 5.25.0: tests/fixtures/gated_deltanet/ (the layer's weights under its Hugging
Face names, `layer.safetensors`, and `reference.json`).

A random `Qwen3_5GatedDeltaNet` (2 key heads, 4 value heads of width 8, a kernel of 4, norm
weights and biases of the time step randomised so that they matter) on 70 random hidden
states (past one 64-token chunk of transformers' chunked form). Written: its output, and for
two seeds (cotangents of the output) the input's cotangents under the ordinary gradient
(autograd through transformers' module) and the AttnLRP and CP-LRP rules
(scripts/lxt_qwen3_5.py, autograd in f64). The rules' forward with the ordinary gradient is
checked against the module's forward and gradient first.

Run: $(scripts/reference-env-tf5.sh) scripts/gated_deltanet_reference.py
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lxt_qwen3_5 import gdn_forward  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "gated_deltanet")
T, HIDDEN, SEEDS = 70, 16, 2


def main():
    from safetensors.torch import save_file
    from transformers import Qwen3_5TextConfig
    from transformers.models.qwen3_5.modeling_qwen3_5 import Qwen3_5GatedDeltaNet

    torch.manual_seed(0)
    cfg = Qwen3_5TextConfig(
        hidden_size=HIDDEN, linear_num_key_heads=2, linear_num_value_heads=4,
        linear_key_head_dim=8, linear_value_head_dim=8, linear_conv_kernel_dim=4,
        rms_norm_eps=1e-6, num_hidden_layers=1, layer_types=["linear_attention"],
    )
    m = Qwen3_5GatedDeltaNet(cfg, 0).eval()
    with torch.no_grad():
        m.norm.weight.copy_(1.0 + 0.3 * torch.randn_like(m.norm.weight))
        m.dt_bias.copy_(torch.randn_like(m.dt_bias))
        m.conv1d.weight.mul_(2.0)
    x = torch.randn(T, HIDDEN)
    d_out = torch.randn(SEEDS, T, HIDDEN)

    out = m(x[None])[0].detach()
    mine = gdn_forward(m, x.double(), "plain").float()
    err = (out - mine).abs().max() / out.abs().max()
    assert err < 1e-5, err

    def grad(fn, x, g):
        x = x.clone().requires_grad_(True)
        (d,) = torch.autograd.grad(fn(x), x, g)
        return d

    rules = {}
    for mode in ["plain", "attnlrp", "cp_lrp"]:
        per_seed = []
        for b in range(SEEDS):
            d = grad(lambda x: gdn_forward(m, x, mode), x.double(), d_out[b].double()).float()
            if mode == "plain":
                theirs = grad(lambda x: m(x[None])[0], x, d_out[b])
                # transformers runs the chunked form in f32: within 1e-4 of the largest.
                err = (d - theirs).abs().max() / theirs.abs().max()
                assert err < 1e-4, err
            per_seed.append(d)
        rules[mode] = torch.stack(per_seed)

    os.makedirs(OUT, exist_ok=True)
    weights = {f"linear_attn.{n}": p.detach().contiguous() for n, p in m.named_parameters()}
    save_file(weights, os.path.join(OUT, "layer.safetensors"))
    flat = lambda t: [float(f"{v:.8g}") for v in t.flatten().tolist()]
    doc = {
        "versions": {"torch": torch.__version__,
                     "transformers": __import__("transformers").__version__},
        "len": T, "hidden": HIDDEN, "seeds": SEEDS,
        "key_heads": cfg.linear_num_key_heads, "value_heads": cfg.linear_num_value_heads,
        "key_dim": cfg.linear_key_head_dim, "value_dim": cfg.linear_value_head_dim,
        "kernel": cfg.linear_conv_kernel_dim, "eps": cfg.rms_norm_eps,
        "x": flat(x), "d_out": flat(d_out), "out": flat(out),
        "d_x": {mode: flat(d) for mode, d in rules.items()},
    }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(doc, f)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

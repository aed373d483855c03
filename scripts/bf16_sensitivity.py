"""How far transformers' own bf16 autocast moves a tiny fixture's saliency and its gradient
trace: for each of its reference prompts and its reference targets, the largest change of a
token's saliency under `torch.autocast("cpu", torch.bfloat16)` as a fraction of the largest
f32 saliency, and the largest change of a trace cell (h · ∂y/∂h per layer and position) as a
fraction of the trace's largest |value|, as tests/precision.rs measures it. Says which
fixtures are too ill-conditioned for the bf16-vs-f32 test (`tests/util.rs` BF16_SENSITIVE).

    $(bash scripts/reference-env-tf5.sh) scripts/bf16_sensitivity.py gemma4 gemma3
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as R  # noqa: E402


def moved(family):
    tok, model = R.load(R.tiny_dir(family))
    for name in R.TINY[family][1]:
        fx = json.load(open(os.path.join(R.OUT, f"{name}.json")))
        for t in fx["targets"]:
            g32, _, tr32, _ = R.attribute(model, fx["ids"], t["id"])
            with torch.autocast("cpu", dtype=torch.bfloat16):
                g16, _, tr16, _ = R.attribute(model, fx["ids"], t["id"])
            s32, s16 = g32.norm(dim=-1), g16.float().norm(dim=-1)
            tr32, tr16 = torch.tensor(tr32), torch.tensor(tr16)
            yield (name, t["id"], float((s32 - s16).abs().max() / s32.abs().max()),
                   float((tr32 - tr16).abs().max() / tr32.abs().max()))


if __name__ == "__main__":
    for family in sys.argv[1:]:
        for name, target, sal, trace in moved(family):
            print(f"{name} target {target}: bf16 moves saliency by {sal:.3f} of its largest "
                  f"value, the trace by {trace:.3f}")

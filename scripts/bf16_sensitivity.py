"""How far transformers' own bf16 autocast moves a tiny fixture's saliency: for each of its
reference prompts, the largest change of a token's saliency under
`torch.autocast("cpu", torch.bfloat16)`, as a fraction of the largest f32 saliency (the
same target). Says which fixtures are too ill-conditioned for the bf16-vs-f32 test
(`tests/util.rs` BF16_SENSITIVE).

    $(bash scripts/reference-env-tf5.sh) scripts/bf16_sensitivity.py gemma4 gemma3
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as R  # noqa: E402


def moved(family):
    tok, model = R.load(R.tiny_dir(family))
    for name, (prompt, chat) in R.TINY[family][1].items():
        _, ids = R.encode(tok, prompt, chat)
        g32, _, _, logits = R.attribute(model, ids, None)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            g16, _, _, _ = R.attribute(model, ids, int(logits.argmax()))
        s32, s16 = g32.norm(dim=-1), g16.float().norm(dim=-1)
        yield name, float((s32 - s16).abs().max() / s32.abs().max())


if __name__ == "__main__":
    for family in sys.argv[1:]:
        for name, m in moved(family):
            print(f"{name}: bf16 moves saliency by {m:.3f} of its largest value")

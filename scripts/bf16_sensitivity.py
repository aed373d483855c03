"""How far transformers' own bf16 autocast moves a tiny fixture's saliency and its gradient
trace: for each of its reference prompts and its reference targets, the largest change of a
token's saliency under `torch.autocast("cpu", torch.bfloat16)` as a fraction of the largest
f32 saliency, and the largest change of a trace cell (h · ∂y/∂h per layer and position) as a
fraction of the trace's largest |value|, as tests/precision.rs measures it. Says which
fixtures are too ill-conditioned for the bf16-vs-f32 test (`tests/util.rs` BF16_SENSITIVE).

    $(bash scripts/reference-env-tf5.sh) scripts/bf16_sensitivity.py gemma4 gemma3

With `--search FAMILY INITS SEEDS`, looks for a better-conditioned twin of FAMILY (for
`scripts/reference.py` VARIANTS): makes the tiny model of each init range and seed (comma-
separated lists) under a scratch directory and prints, over its prompts and their argmax,
runner-up and contrast targets, the largest bf16 moves, how far f32 is from f64 (the
conditioning the 1e-3 references need), and the smallest gap of the top two logits (as a
share of the logits' range):

    $(bash scripts/reference-env-tf5.sh) scripts/bf16_sensitivity.py --search qwen3_5 0.1,0.14 0,1,2
"""
import itertools
import json
import os
import sys
import tempfile

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
            yield (name, t["id"], share(g16.float().norm(dim=-1), g32.norm(dim=-1)),
                   share(torch.tensor(tr16), torch.tensor(tr32)))


def share(a, b):
    """max |a − b| as a share of max |b|."""
    return float((a - b).abs().max() / b.abs().max())


def candidate(family):
    """The worst moves of a candidate tiny model over its prompts and the reference targets."""
    tok, model = R.load(R.tiny_dir(family))
    worst = dict(bf16_saliency=0.0, bf16_trace=0.0, f64_ixg=0.0, f64_trace=0.0, gap=1.0)
    for prompt, chat in R.TINY[family][1].values():
        _, ids = R.encode(tok, prompt, chat)
        with torch.no_grad():
            emb = model.get_input_embeddings()(torch.tensor([ids]))
            logits = model(inputs_embeds=emb, use_cache=False).logits[0, -1]
        top = torch.topk(logits, 2)
        a, b = (int(i) for i in top.indices)
        gap = float((top.values[0] - top.values[1]) / (logits.max() - logits.min()))
        worst["gap"] = min(worst["gap"], gap)
        for t, c in [(a, None), (b, None), (a, b)]:
            g32, e32, tr32, _ = R.attribute(model, ids, t, c)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                g16, _, tr16, _ = R.attribute(model, ids, t, c)
            g64, e64, tr64, _ = R.attribute(model.double(), ids, t, c)
            model.float()
            tr32, tr16, tr64 = (torch.tensor(x) for x in (tr32, tr16, tr64))
            moves = dict(
                bf16_saliency=share(g16.float().norm(dim=-1), g32.norm(dim=-1)),
                bf16_trace=share(tr16, tr32),
                f64_ixg=share((e32 * g32).sum(-1), (e64 * g64).sum(-1)),
                f64_trace=share(tr32, tr64),
            )
            for k, v in moves.items():
                worst[k] = max(worst[k], v)
    return worst


def search(family, inits, seeds, gguf):
    scratch = tempfile.mkdtemp(prefix="tokenlens-twins-")
    # The candidates' tokenizer.json links to the family's, as a twin's does.
    os.symlink(R.tiny_dir(family), os.path.join(scratch, R.TINY[family][0]))
    R.tiny_dir = lambda f: os.path.join(scratch, R.TINY[f][0])
    name = f"{family}_candidate"
    R.TINY[name] = (R.TINY[family][0] + "-candidate", R.TINY[family][1])
    for init, seed in itertools.product(inits, seeds):
        R.VARIANTS[name] = (family, {"initializer_range": init}, seed)
        R.make_tiny(gguf, name)
        w = candidate(name)
        print(f"{family} init {init} seed {seed}: bf16 moves saliency by {w['bf16_saliency']:.3f}, "
              f"the trace by {w['bf16_trace']:.3f}; f32 is {w['f64_ixg']:.1e} (input × gradient) "
              f"and {w['f64_trace']:.1e} (trace) from f64; top-2 gap {w['gap']:.3f}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--search"]:
        family, inits, seeds = sys.argv[2:5]
        gguf = os.path.join(R.CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
        search(family, [float(x) for x in inits.split(",")], [int(x) for x in seeds.split(",")],
               gguf)
        sys.exit()
    for family in sys.argv[1:]:
        for name, target, sal, trace in moved(family):
            print(f"{name} target {target}: bf16 moves saliency by {sal:.3f} of its largest "
                  f"value, the trace by {trace:.3f}")

#!/usr/bin/env python3
"""Reference perturbation curves for TokenLens, computed with PyTorch + transformers.

For each case below: the reference fixture's prompt and PyTorch (+ lxt) scores of the argmax
target (tests/fixtures/reference/<name>.json), the eligible tokens, orders, steps, random
permutations and fractions as `src/faithfulness.rs` documents them, and the target's logit
and probability after each step with the operator applied, by transformers on the same
weights (no KV cache: every input runs whole). Output: tests/fixtures/faithfulness.json.

Run: scripts/reference-env.sh && ~/.cache/tokenlens/venv/bin/python scripts/faithfulness_reference.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

OUT = os.path.join(reference.ROOT, "tests", "fixtures", "faithfulness.json")
# (reference fixture, operator, query_only)
CASES = [
    ("capital_chat", "replace", True),
    ("eiffel_raw", "delete", False),
    ("cats_raw", "zero", False),
    ("tiny_chat", "replace", False),
]
RANDOM_ORDERS = 10
FRACTIONS = [10, 20, 50]
MASK = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def permutation(items, seed):
    v = list(items)
    state = seed
    for i in range(len(v) - 1, 0, -1):
        state, x = splitmix64(state)
        j = x % (i + 1)
        v[i], v[j] = v[j], v[i]
    return v


def steps(e):
    return list(range(e + 1)) if e <= 32 else [(i * e + 10) // 20 for i in range(21)]


def order(scores, eligible, most_first):
    key = (lambda i: (-scores[i], i)) if most_first else (lambda i: (scores[i], i))
    return sorted(eligible, key=key)


def fraction_counts(e):
    return [min(max((p * e + 50) // 100, 1), e) for p in FRACTIONS]


def tokens_of(tok, text, prompt, chat, ids):
    """(special flags, query span) of the ids, from transformers' offsets."""
    enc = tok(text, add_special_tokens=not chat, return_offsets_mapping=True)
    assert enc.input_ids == ids, "the fixture's ids are not transformers' tokens"
    special_ids = set(tok.all_special_ids) | {
        i for i, t in tok.added_tokens_decoder.items() if t.special}
    special = [i in special_ids for i in ids]
    if not chat:
        return special, None
    start = text.find(prompt)
    end = start + len(prompt)
    inside = [s < end and e > start for s, e in enc.offset_mapping]
    first = inside.index(True)
    last = len(inside) - 1 - inside[::-1].index(True)
    return special, (first, last + 1)


def eligible(special, span, query_only, n):
    a, b = span if span else (0, n)
    # No generated tokens in these cases: outside the query span is the template, which moves
    # unless query_only.
    return [i for i in range(n) if (not query_only or a <= i < b) and not special[i] and i != n - 1]


def neutral_id(tok, model):
    # The padding token unless it ends sequences (a batching convention, not a neutral input).
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    if tok.pad_token_id is not None and tok.pad_token_id not in eos | {tok.eos_token_id}:
        return tok.pad_token_id
    if tok.unk_token_id is not None:
        return tok.unk_token_id
    return tok(" ", add_special_tokens=False).input_ids[-1]


def main():
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    out = []
    for name, operator, query_only in CASES:
        fx, tok, model = reference.fixture_model(name)
        ids = fx["ids"]
        n = len(ids)
        special, span = tokens_of(tok, fx["text"], fx["prompt"], fx["chat_template"], ids)
        elig = eligible(special, span, query_only, n)
        target = fx["targets"][0]["id"]
        scores = fx["targets"][0]["scores"]
        neutral = neutral_id(tok, model) if operator == "replace" else None
        emb = model.get_input_embeddings()(torch.tensor([ids]))[0].detach()
        cache = {}

        def value(out_set):
            key = tuple(sorted(out_set))
            if key in cache:
                return cache[key]
            gone = set(key)
            if operator == "zero":
                e = emb.clone()
                for i in gone:
                    e[i] = 0
                inp = e
            elif operator == "replace":
                inp = model.get_input_embeddings()(torch.tensor(
                    [[neutral if i in gone else t for i, t in enumerate(ids)]]))[0]
            else:
                inp = model.get_input_embeddings()(torch.tensor(
                    [[t for i, t in enumerate(ids) if i not in gone]]))[0]
            with torch.no_grad():
                logits = model(inputs_embeds=inp[None], use_cache=False).logits[0, -1].double()
            v = (float(logits[target]), float(torch.softmax(logits, -1)[target]))
            cache[key] = v
            return v

        st = steps(len(elig))

        def curve(o):
            vals = [value(o[:k]) for k in st]
            return {"order": o, "logit": [v[0] for v in vals], "prob": [v[1] for v in vals]}

        def abpc(morf, lerf):
            return sum(l - m for l, m in zip(lerf["logit"], morf["logit"])) / len(st)

        methods = {}
        for m, s in scores.items():
            morf, lerf = curve(order(s, elig, True)), curve(order(s, elig, False))
            e = len(elig)
            p0 = value([])[1]
            methods[m] = {
                "morf": morf, "lerf": lerf, "abpc": abpc(morf, lerf),
                "comprehensiveness": [p0 - value(morf["order"][:k])[1] for k in fraction_counts(e)],
                "sufficiency": [p0 - value(lerf["order"][:e - k])[1] for k in fraction_counts(e)],
            }
        rand, abpcs = [], []
        for seed in range(RANDOM_ORDERS):
            p = permutation(elig, seed)
            c, r = curve(p), curve(p[::-1])
            rand.append(c)
            abpcs.append(abpc(c, r))
        t = torch.tensor

        def band(field):
            x = t([c[field] for c in rand], dtype=torch.float64)
            return x.mean(0).tolist(), x.std(0).tolist()

        lm, ls = band("logit")
        pm, ps = band("prob")
        a = t(abpcs, dtype=torch.float64)
        out.append({
            "fixture": name, "model": fx["model"], "prompt": fx["prompt"],
            "chat_template": fx["chat_template"], "operator": operator, "query_only": query_only,
            "ids": ids, "target": target, "neutral_id": neutral, "eligible": elig, "steps": st,
            "scores": scores, "methods": methods,
            "random": {"logit_mean": lm, "logit_sd": ls, "prob_mean": pm, "prob_sd": ps,
                       "abpc_mean": float(a.mean()), "abpc_sd": float(a.std())},
            "inputs": len(cache),
        })
        print(f"{name} ({operator}): {len(elig)} eligible, {len(cache)} inputs", file=sys.stderr)
    reference.write_doc(OUT, out)


if __name__ == "__main__":
    main()

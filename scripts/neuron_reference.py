#!/usr/bin/env python3
"""Reference neuron and head relevance for TokenLens, computed with PyTorch + transformers
(+ lxt).

For each reference fixture below (tests/fixtures/reference/<name>.json: its token ids and
argmax target) and each mode (plain gradients; lxt's efficient AttnLRP and CP-LRP, each in
its own process because lxt patches the modules process-wide), a forward pre-hook keeps the
input of every layer's `mlp.down_proj` (the MLP's hidden units: act(gate) · up) with its
gradient retained; one backward pass of the target's logit follows. Per layer and neuron j:
- input × gradient (and, under lxt's rules, its relevance): Σ_t x_t,j · g_t,j;
- saliency: Σ_t |g_t,j|;
written as the layer's total (Σ_j) and the K neurons of largest |value| with their values and
per-token terms. Likewise at every layer's `self_attn.o_proj` input (the heads' outputs side
by side), summed over each head's slice: every head's value, per-token terms and the total.
A layer of sparse experts (Qwen3-MoE) has each expert's units side by side (neuron
e · width + j is unit j of expert e): every expert's `down_proj` input is kept for the rows
routed to it, placed at those rows (the router's choice, recomputed from its logits as the
block computes it), zeros where the expert was not chosen. Experts held stacked
(transformers 5: Gemma 4's beside the dense MLP, Qwen3.5-MoE's beside its shared expert) are
read inside their forward (scripts/lxt_rules.py's loop, under the rules or plain), then the
units of the MLP every token runs (at its `down_proj`).
A Gated DeltaNet layer (Qwen3.5) has no heads: an empty row. Qwen3.5's gated attention reads
its heads before the output gate, `m` of `o_proj(m ⊙ σ(g))`: from the o_proj input `y` and
its gradient, `m`'s gradient is `σ(g) · ∂y` times the rule's share of the product (AttnLRP
½, else 1), so its saliency is `σ(g) |∂y|` and its input × gradient `share · y ∂y`; g is read
from `q_proj`'s output (each head's queries, then its gate).
Each transformers computes its own families' cases (reference.TF5_FAMILIES) and keeps the
rest, as scripts/lens_reference.py does.
Output: tests/fixtures/neurons.json.

Run: $(scripts/reference-env.sh) scripts/neuron_reference.py   (about 2 min)
     $(scripts/reference-env-tf5.sh) scripts/neuron_reference.py
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

OUT = os.path.join(reference.ROOT, "tests", "fixtures", "neurons.json")
CASES = ["eiffel_raw", "tiny_raw", "tiny_qwen2_chat", "tiny_gemma3_raw", "tiny_qwen3_raw", "tiny_llama31_raw",
         "tiny_qwen3_moe_raw", "tiny_smollm3_raw", "tiny_phi3_raw", "tiny_ministral3_raw",
         "tiny_olmo3_raw", "tiny_qwen3_5_raw", "tiny_qwen3_5_moe_raw", "tiny_gemma4_raw",
         "tiny_gemma4_moe_raw"]
MODES = reference.METHOD_MODES
K = 8


def layer_entry(per_token, k):
    """A layer's total and top-k neurons from its per-token terms `(seq, neurons)`."""
    import torch

    sums = per_token.sum(0)
    top = torch.topk(sums.abs(), k).indices.tolist()
    return {
        "total": float(sums.sum()),
        "top": [{"index": j, "value": float(sums[j]),
                 "per_token": reference.r(per_token[:, j].tolist())} for j in top],
    }


def side_by_side(block, logits, parts):
    """Per-expert terms `(routed rows, width)`, in the order the experts ran, placed at their
    rows of `(seq, experts · width)`."""
    import torch

    probs = torch.softmax(logits.float(), dim=-1)
    chosen = torch.topk(probs, block.top_k, dim=-1).indices
    mask = torch.nn.functional.one_hot(chosen, num_classes=block.num_experts).permute(2, 1, 0)
    width = parts[0].shape[-1]
    out = torch.zeros(logits.shape[0], block.num_experts * width)
    for e, terms in enumerate(parts):
        _, rows = torch.where(mask[e])
        out[rows, e * width:(e + 1) * width] = terms
    return out


def beside_terms(block, kept, seq, terms):
    """Stacked experts' terms `(seq, experts · width)` from the units they `kept`
    (`keep_hidden`, scripts/lxt_rules.py): `terms(units)` at the rows routed to each, zeros
    elsewhere."""
    import torch

    w = block.intermediate_dim
    out = torch.zeros(seq, block.num_experts * w)
    for e, rows, x in kept:
        out[rows, e * w:(e + 1) * w] = terms(x).detach()
    return out


def stacked(layer):
    """A layer's experts held stacked (transformers 5: Gemma 4's beside the dense MLP,
    Qwen3.5-MoE's) with the MLP whose units follow theirs (the dense MLP, the shared expert),
    or None."""
    experts = getattr(layer, "experts", None)
    if experts is not None:
        return experts, layer.mlp
    experts = getattr(getattr(layer, "mlp", None), "experts", None)
    if hasattr(experts, "gate_up_proj"):
        return experts, layer.mlp.shared_expert
    return None


def plain_stacked_experts(model):
    """Stacked experts computed by scripts/lxt_rules.py's loop (transformers' own computation,
    with points to edit and read their units): for plain gradients, where lxt has not
    patched them."""
    for layer in model.model.layers:
        if stacked(layer):
            import lxt_rules

            type(stacked(layer)[0]).forward = lxt_rules.plain_experts_forward
            return


def run_mode(mode, path):
    import torch
    import transformers

    out = {}
    for name, fx, model, ids, target in reference.mode_cases(mode, reference.here(CASES)):
        kept = []

        def keep(into):
            def hook(_m, args):
                x = args[0]
                x.retain_grad()
                into.append(x)
            return hook

        layers = model.model.layers
        handles, experts, beside = [], [], []
        dense = [[] for _ in layers]
        for i, l in enumerate(layers):
            if stacked(l):  # stacked experts, then an MLP every token runs
                if mode == "plain":
                    plain_stacked_experts(model)
                block, after = stacked(l)
                block.keep_hidden = []
                beside.append((i, block))
                handles.append(after.down_proj.register_forward_pre_hook(keep(dense[i])))
            elif hasattr(l.mlp, "experts"):
                parts, logits = [], []
                experts.append((i, l.mlp, parts, logits))
                handles += [e.down_proj.register_forward_pre_hook(keep(parts)) for e in l.mlp.experts]
                handles.append(l.mlp.gate.register_forward_hook(
                    lambda _m, _a, out, into=logits: into.append(out.detach())))
            else:
                handles.append(l.mlp.down_proj.register_forward_pre_hook(keep(dense[i])))
        # Each layer's o_proj input, and its output gate where it has one (Qwen3.5).
        heads_in = [[] for _ in layers]
        gates = [[] for _ in layers]
        gated = model.config.model_type.startswith("qwen3_5")
        for i, l in enumerate(layers):
            if not hasattr(l, "self_attn"):
                continue
            handles.append(l.self_attn.o_proj.register_forward_pre_hook(keep(heads_in[i])))
            if gated:
                handles.append(l.self_attn.q_proj.register_forward_hook(
                    lambda _m, _a, out, into=gates[i]: into.append(out.detach()[0])))
        n_heads = model.config.num_attention_heads
        try:
            emb = model.get_input_embeddings()(torch.tensor([ids])).detach().requires_grad_(True)
            logit = model(inputs_embeds=emb, use_cache=False).logits[0, -1, target]
            logit.backward()
        finally:
            for h in handles:
                h.remove()
        # Units kept, and no more keeping.
        units = {slot: block.__dict__.pop("keep_hidden") for slot, block in beside}
        kept = [d[0] if d else None for d in dense]
        methods, heads = {}, {}
        # Per token: a hooked input `(1, seq, width)`, or `(seq, width)` where the block
        # flattens its tokens (Qwen3.5-MoE's shared expert).
        per_token = lambda t: t[0] if t.dim() == 3 else t
        terms_of = lambda m, x: (per_token(x.grad).abs() if m == "saliency"
                                 else per_token(x.detach()) * per_token(x.grad))
        def expert_terms(m, x):  # an expert no token chose has no gradient
            g = x.grad if x.grad is not None else torch.zeros_like(x)
            return g.abs() if m == "saliency" else x.detach() * g
        for m in MODES[mode]:
            layer_terms = [None if x is None else terms_of(m, x) for x in kept]
            for slot, block, parts, logits in experts:
                layer_terms[slot] = side_by_side(block, logits[0], [expert_terms(m, x) for x in parts])
            for slot, block in beside:
                routed = beside_terms(block, units[slot], len(ids), lambda x: expert_terms(m, x))
                layer_terms[slot] = torch.cat([routed, layer_terms[slot]], -1)
            methods[m] = [layer_entry(t, K) for t in layer_terms]
            heads[m] = []
            for x, g in zip(heads_in, gates):
                if not x:  # no attention in this layer
                    heads[m].append({"total": 0.0, "heads": [], "per_token": []})
                    continue
                x = x[0]
                t = terms_of(m, x)
                if g:  # before the output gate
                    seq = g[0].shape[0]
                    sg = torch.sigmoid(g[0].view(seq, n_heads, 2, -1)[:, :, 1].reshape(seq, -1))
                    t = x.grad[0].abs() * sg if m == "saliency" else t * (0.5 if m == "attnlrp" else 1.0)
                per = t.reshape(t.shape[0], n_heads, -1).sum(-1).T  # (heads, seq)
                heads[m].append({"total": float(per.sum()), "heads": reference.r(per.sum(-1).tolist()),
                                 "per_token": [reference.r(row) for row in per.tolist()]})
        out[name] = {"fixture": name, "model": fx["model"], "prompt": fx["prompt"],
                     "chat_template": fx["chat_template"], "ids": ids, "target": target,
                     "transformers": transformers.__version__, "methods": methods, "heads": heads}
        print(f"{mode}: {name} ({len(ids)} tokens, {len(kept)} layers, {n_heads} heads)", file=sys.stderr)
    with open(path, "w") as f:
        json.dump(out, f)


def main():
    if len(sys.argv) == 3:
        return run_mode(sys.argv[1], sys.argv[2])
    reference.write_merged(OUT, CASES, reference.per_mode(__file__, MODES, ["methods", "heads"]))


if __name__ == "__main__":
    main()

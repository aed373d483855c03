#!/usr/bin/env python3
"""Reference steering for TokenLens, computed with PyTorch + transformers (+ lxt).

For each reference fixture below (tests/fixtures/reference/<name>.json: its token ids and
argmax target), a set of edits to the model's MLP neurons and attention heads is applied by
forward pre-hooks (at every layer's `mlp.down_proj` input, the neurons, and
`self_attn.o_proj` input, the heads' outputs side by side):
- a neuron scaled: x[:, j] * s; clamped: x[:, j] = v;
- a head scaled: o_h * s; clamped to a norm: o_h * v / |o_h| (under lxt's rules the factor
  v / |o_h| is a constant, as LRP's identity rule treats a norm; plain gradients go through
  it).
Under the edits: the last position's logits (the target's, its log-probability, the top 10),
32 greedy tokens (plain mode), and each method's scores for the fixture's target (saliency,
input x gradient; lxt's efficient AttnLRP and CP-LRP, each mode in its own process).
Then ablation (issue 35 item 5), unsteered: the model's neurons, and its heads, ranked by
their input x gradient relevance for the fixture's target (signed, the most supporting
first), and the target's log-probability with the top k zeroed, k = 0..8.
In a layer of sparse experts (Qwen3-MoE) neuron e · width + j is unit j of expert e: its
edit is applied at that expert's `down_proj` input, on the tokens routed to it (where the
expert runs), and its relevance is read there (scripts/neuron_reference.py's side_by_side).
Stacked experts (Gemma 4's 26B-A4B, Qwen3.5-MoE) are edited and read inside their forward
(scripts/lxt_rules.py's loop, under the rules or plain), the MLP every token runs (Gemma 4's
dense MLP beside them, Qwen3.5-MoE's shared expert), whose units are numbered after the
experts', at its `down_proj`.
In a hybrid (Qwen3.5) the heads' edits and ranks are among the layers with heads; its
Gated DeltaNet layers have none. Its gated attention's heads are their outputs before the
gate, `m` of `o_proj(m ⊙ σ(g))` (as scripts/neuron_reference.py reads them): a clamp sets
|m_h| = |y_h / σ(g_h)|, with g from q_proj's output.
Each transformers computes its own families' cases (reference.TF5_FAMILIES) and keeps the
rest.
Output: tests/fixtures/steer.json.

Run: $(scripts/reference-env.sh) scripts/steer_reference.py   (about 1 min)
     $(scripts/reference-env-tf5.sh) scripts/steer_reference.py
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402
from neuron_reference import beside_terms, plain_stacked_experts, side_by_side, stacked  # noqa: E402

OUT = os.path.join(reference.ROOT, "tests", "fixtures", "steer.json")
CASES = ["eiffel_raw", "tiny_raw", "tiny_qwen2_chat", "tiny_gemma3_raw", "tiny_qwen3_raw", "tiny_llama31_raw",
         "tiny_qwen3_moe_raw", "tiny_smollm3_raw", "tiny_phi3_raw", "tiny_ministral3_raw",
         "tiny_olmo3_raw", "tiny_gemma4_raw", "tiny_gemma4_moe_raw", "tiny_qwen3_5_raw",
         "tiny_qwen3_5_moe_raw"]
MODES = reference.METHOD_MODES
GREEDY = 32
ABLATE = 8


def attention_layers(cfg):
    """The layers with heads: all but a hybrid's linear-attention ones (Qwen3.5)."""
    types = getattr(cfg, "layer_types", None) or ["full_attention"] * cfg.num_hidden_layers
    return [i for i, t in enumerate(types) if t != "linear_attention"]


def edits_for(cfg):
    """Four edits, one of each kind, placed by the model's shape: the heads' in the middle
    and the last of the layers with heads."""
    L, heads = cfg.num_hidden_layers, cfg.num_attention_heads
    inter = getattr(cfg, "intermediate_size", None)  # none in Qwen3.5-MoE's configuration
    if getattr(cfg, "num_experts", 0):  # every expert's units (the edited layers have experts)
        inter = cfg.num_experts * cfg.moe_intermediate_size
        if getattr(cfg, "enable_moe_block", False):  # and Gemma 4's dense MLP's after them
            inter += cfg.intermediate_size
    attn = attention_layers(cfg)
    return [
        {"layer": 0, "unit": {"neuron": inter // 5}, "setting": {"scale": 0.0}},
        {"layer": L - 1, "unit": {"neuron": inter // 3}, "setting": {"clamp": 3.0}},
        {"layer": attn[len(attn) // 2], "unit": {"head": heads - 1}, "setting": {"scale": 2.5}},
        {"layer": attn[-1], "unit": {"head": 0}, "setting": {"clamp": 4.0}},
    ]


def hooks(model, edits, constant_norms):
    """Registers the edits' pre-hooks; returns their handles."""
    import torch

    layers = model.model.layers
    handles = []
    # Qwen3.5's gated attention: a head is its output before the gate, `m` of
    # `o_proj(m ⊙ σ(g))` (as scripts/neuron_reference.py reads it), so a clamp sets |m|.
    gated = model.config.model_type.startswith("qwen3_5")
    for l, layer in enumerate(layers):
        mine = [e for e in edits if e["layer"] == l]
        neurons = [e for e in mine if "neuron" in e["unit"]]
        heads = [e for e in mine if "head" in e["unit"]]

        def on_neurons(_m, args, neurons=neurons, width=0):
            x = args[0].clone()
            for e in neurons:
                j = e["unit"]["neuron"] - width
                if "scale" in e["setting"]:
                    x[..., j] = x[..., j] * e["setting"]["scale"]
                else:
                    x[..., j] = e["setting"]["clamp"]
            return (x,)

        # The layer's own head width (Gemma 4's full layers' is wider than head_dim).
        width_here = getattr(getattr(layer, "self_attn", None), "head_dim", None)

        gate_of = {}

        def on_heads(_m, args, heads=heads, hd=width_here, gate_of=gate_of):
            x = args[0]
            o = list(x.reshape(*x.shape[:-1], -1, hd).unbind(-2))
            if gate_of:  # each head's σ(g), from q_proj's output (its queries, then its gate)
                g = gate_of["g"]
                g = torch.sigmoid(g.reshape(*g.shape[:-1], len(o), 2, hd)[..., 1, :]).unbind(-2)
            for e in heads:
                h = e["unit"]["head"]
                if "scale" in e["setting"]:
                    o[h] = o[h] * e["setting"]["scale"]
                else:
                    before = o[h] / g[h] if gate_of else o[h]
                    factor = e["setting"]["clamp"] / before.norm(dim=-1, keepdim=True)
                    if constant_norms:
                        factor = factor.detach()
                    o[h] = o[h] * factor
            return (torch.stack(o, -2).reshape(x.shape),)

        if neurons and stacked(layer):  # Gemma 4's and Qwen3.5-MoE's stacked experts
            handles += stacked_neuron_edits(*stacked(layer), neurons, on_neurons)
        elif neurons and hasattr(layer.mlp, "experts"):
            width = model.config.moe_intermediate_size
            for x, expert in enumerate(layer.mlp.experts):
                own = [e for e in neurons if e["unit"]["neuron"] // width == x]
                if own:
                    hook = lambda m, a, own=own, at=x * width: on_neurons(m, a, own, at)
                    handles.append(expert.down_proj.register_forward_pre_hook(hook))
        elif neurons:
            handles.append(layer.mlp.down_proj.register_forward_pre_hook(on_neurons))
        if heads and gated:
            keep_gate = lambda _m, _a, out, into=gate_of: into.__setitem__("g", out)
            handles.append(layer.self_attn.q_proj.register_forward_hook(keep_gate))
        if heads:
            handles.append(layer.self_attn.o_proj.register_forward_pre_hook(on_heads))
    return handles


class _Unset:
    """A handle removing an attribute set on a module."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def remove(self):
        delattr(self.module, self.name)


def stacked_neuron_edits(experts, dense, neurons, on_neurons):
    """Edits of a layer's neurons where its experts are stacked: the experts' inside their
    forward, those of the MLP every token runs (Gemma 4's dense MLP, Qwen3.5-MoE's shared
    expert; numbered after the experts') at its `down_proj` input. Returns the handles."""
    width = experts.intermediate_dim
    routed = experts.num_experts * width
    own = [e for e in neurons if e["unit"]["neuron"] < routed]
    handles = []
    if own:
        def edit(x, h):
            mine = [e for e in own if e["unit"]["neuron"] // width == x]
            return on_neurons(None, (h,), mine, x * width)[0] if mine else h
        experts.edit_hidden = edit
        handles.append(_Unset(experts, "edit_hidden"))
    rest = [e for e in neurons if e["unit"]["neuron"] >= routed]
    if rest:
        hook = lambda m, a: on_neurons(m, a, rest, routed)
        handles.append(dense.down_proj.register_forward_pre_hook(hook))
    return handles


def scores_of(method, grad, emb):
    return (grad.norm(dim=-1) if method == "saliency" else (grad * emb).sum(-1)).tolist()


def ablation(model, ids, target):
    """Per kind (neurons, heads): the model's ABLATE units of largest input x gradient
    relevance (signed: the most supporting first; unsteered), and the target's
    log-probability with the first k of them zeroed, k = 0..ABLATE."""
    import torch

    heads_in = []

    def keep(into):
        def hook(_m, args):
            args[0].retain_grad()
            into.append(args[0])
        return hook

    layers = model.model.layers
    handles, experts, beside = [], {}, {}
    kept = [[] for _ in layers]
    for i, l in enumerate(layers):
        if stacked(l):  # stacked experts, then the MLP every token runs
            block, after = stacked(l)
            beside[i] = block
            block.keep_hidden = []
            handles.append(after.down_proj.register_forward_pre_hook(keep(kept[i])))
        elif hasattr(l.mlp, "experts"):
            experts[i] = (l.mlp, [], [])
            handles += [e.down_proj.register_forward_pre_hook(keep(experts[i][1])) for e in l.mlp.experts]
            handles.append(l.mlp.gate.register_forward_hook(
                lambda _m, _a, out, into=experts[i][2]: into.append(out.detach())))
        else:
            handles.append(l.mlp.down_proj.register_forward_pre_hook(keep(kept[i])))
    head_layers = attention_layers(model.config)
    handles += [layers[l].self_attn.o_proj.register_forward_pre_hook(keep(heads_in)) for l in head_layers]
    try:
        emb = model.get_input_embeddings()(torch.tensor([ids])).detach().requires_grad_(True)
        model(inputs_embeds=emb, use_cache=False).logits[0, -1, target].backward()
    finally:
        for h in handles:
            h.remove()
    expert_units = {i: block.__dict__.pop("keep_hidden") for i, block in beside.items()}
    grad = lambda x: x.grad if x.grad is not None else torch.zeros_like(x)  # an idle expert

    def neuron_terms(l):
        if l in beside:
            x = kept[l][0]
            routed = beside_terms(beside[l], expert_units[l], len(ids), lambda u: u.detach() * grad(u))
            # The MLP after them: (1, seq, width), or (seq, width) where the block flattens
            # its tokens (Qwen3.5-MoE's shared expert).
            after = (x.detach() * x.grad).reshape(-1, x.shape[-1])
            return torch.cat([routed, after], -1)
        if l not in experts:
            x = kept[l][0]
            return x.detach()[0] * x.grad[0]
        block, parts, logits = experts[l]
        return side_by_side(block, logits[0], [x.detach() * grad(x) for x in parts])

    n_heads = model.config.num_attention_heads
    out = {}
    for kind, xs in [("neurons", enumerate(range(len(layers)))), ("heads", zip(head_layers, heads_in))]:
        units = []
        for l, x in xs:
            terms = (neuron_terms(l) if kind == "neurons" else x.detach()[0] * x.grad[0]).sum(0)
            if kind == "heads":
                terms = terms.reshape(n_heads, -1).sum(-1)
            units += [(float(v), l, j) for j, v in enumerate(terms.tolist())]
        units.sort(key=lambda u: -u[0])
        top = units[:ABLATE]
        unit = (lambda j: {"neuron": j}) if kind == "neurons" else (lambda j: {"head": j})
        curve = []
        for k in range(ABLATE + 1):
            edits = [{"layer": l, "unit": unit(j), "setting": {"scale": 0.0}} for _, l, j in top[:k]]
            handles = hooks(model, edits, False)
            try:
                with torch.no_grad():
                    logits = model(torch.tensor([ids]), use_cache=False).logits[0, -1]
            finally:
                for h in handles:
                    h.remove()
            curve.append(float(torch.log_softmax(logits.double(), -1)[target]))
        out[kind] = {"units": [{"layer": l, "unit": unit(j)} for _, l, j in top],
                     "values": reference.r([v for v, _, _ in top]), "log_probs": curve}
    return out


def run_mode(mode, path):
    import torch

    out = {}
    for name, fx, model, ids, target in reference.mode_cases(mode, reference.here(CASES)):
        if mode == "plain":
            plain_stacked_experts(model)
        edits = edits_for(model.config)
        entry = {"fixture": name, "model": fx["model"], "prompt": fx["prompt"],
                 "chat_template": fx["chat_template"], "ids": ids, "target": target,
                 "steer": edits, "methods": {}}
        handles = hooks(model, edits, mode != "plain")
        try:
            inputs, leaves = reference.model_inputs(model, ids)
            logits = model(**inputs, use_cache=False).logits[0, -1]
            logits[target].backward()
            grad = reference.side_by_side_rows([x.grad for x in leaves])
            emb = reference.side_by_side_rows(leaves).detach()
            for m in MODES[mode]:
                entry["methods"][m] = reference.r(scores_of(m, grad, emb))
            if mode == "plain":
                lp = torch.log_softmax(logits.detach().double(), -1)
                top = torch.topk(logits.detach(), 10)
                entry["logit"] = float(logits[target])
                entry["log_prob"] = float(lp[target])
                entry["top"] = top.indices.tolist()
                entry["top_logits"] = reference.r(top.values.tolist())
                seq = list(ids)
                with torch.no_grad():
                    for _ in range(GREEDY):
                        nxt = model(torch.tensor([seq]), use_cache=False).logits[0, -1]
                        seq.append(int(nxt.argmax()))
                entry["greedy"] = seq[len(ids):]
        finally:
            for h in handles:
                h.remove()
        if mode == "plain":
            entry["ablation"] = ablation(model, ids, target)
        out[name] = entry
        print(f"{mode}: {name} ({len(ids)} tokens)", file=sys.stderr)
    with open(path, "w") as f:
        json.dump(out, f)


def main():
    if len(sys.argv) == 3:
        return run_mode(sys.argv[1], sys.argv[2])
    reference.write_merged(OUT, CASES, reference.per_mode(__file__, MODES, ["methods"]))


if __name__ == "__main__":
    main()

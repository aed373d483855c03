#!/usr/bin/env python3
"""Reference unit cards for TokenLens, computed with PyTorch + transformers.

For each reference fixture below (tests/fixtures/reference/<name>.json: its token ids) and
two units placed by the model's shape (a neuron of the last layer, a head of the middle
layer):
- the neuron's logit lens: column j of the layer's `mlp.down_proj` weight through the model's
  final norm and `lm_head` (and the final soft-cap, where the config has one): the 10 tokens
  of largest logit and the 10 of smallest, with their logits;
- its activation at each token: the input of `down_proj` (a forward pre-hook);
- the head's attention probabilities `[query][key]` (eager attention, `output_attentions`).
In a layer of sparse experts (Qwen3-MoE) the neuron is a unit of the expert the last token
chooses first (neuron e · width + j), its activation the expert's `act(gate) · up` at the
tokens routed to it (the router's top-k recomputed from its softmax) and 0 elsewhere. Where
the layer has a shared expert (Qwen3.5-MoE), the neuron is one of its units, numbered after
every routed expert's (neuron experts · width + j), read at its `down_proj`; likewise a unit
of the dense MLP beside Gemma 4's experts (26B-A4B).
A hybrid's head (Qwen3.5) is in its first attention layer from the middle on (its Gated
DeltaNet layers have none). Each transformers computes its own families' cases
(reference.TF5_FAMILIES) and keeps the rest, as scripts/lens_reference.py does.
Output: tests/fixtures/units.json.

Run: $(scripts/reference-env.sh) scripts/unit_reference.py   (about 20 s)
     $(scripts/reference-env-tf5.sh) scripts/unit_reference.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

OUT = os.path.join(reference.ROOT, "tests", "fixtures", "units.json")
CASES = ["eiffel_raw", "tiny_raw", "tiny_qwen2_chat", "tiny_gemma3_raw", "tiny_qwen3_raw", "tiny_llama31_raw",
         "tiny_qwen3_moe_raw", "tiny_smollm3_raw", "tiny_phi3_raw", "tiny_ministral3_raw",
         "tiny_olmo3_raw", "tiny_qwen3_5_raw", "tiny_qwen3_5_moe_raw", "tiny_gemma4_raw",
         "tiny_gemma4_moe_raw"]
TOP = 10


def main():
    import torch

    import transformers

    torch.set_num_threads(os.cpu_count() or 1)
    cases = []
    for name in reference.here(CASES):
        fx, _, model = reference.fixture_model(name)
        cfg, ids = model.config, fx["ids"]
        layer, j = cfg.num_hidden_layers - 1, getattr(cfg, "intermediate_size", 0) // 2
        hl, h = cfg.num_hidden_layers // 2, cfg.num_attention_heads - 1
        attending = [i for i, l in enumerate(model.model.layers) if hasattr(l, "self_attn")]
        hl = min(i for i in attending if i >= hl)
        acts, inputs = [], []
        mlp = model.model.layers[layer].mlp
        shared = getattr(mlp, "shared_expert", None)
        experts = hasattr(mlp, "experts") and shared is None
        neuron = j
        if shared is not None:
            j = shared.down_proj.in_features // 2
            neuron = cfg.num_experts * cfg.moe_intermediate_size + j
            down = shared.down_proj  # its input `(tokens, width)`: the block flattens them
            handle = down.register_forward_pre_hook(
                lambda _m, a: acts.append(a[0].reshape(-1, a[0].shape[-1])[:, j].tolist()))
        elif experts:
            handle = mlp.register_forward_pre_hook(lambda _m, a: inputs.append(a[0][0]))
        else:
            down = mlp.down_proj
            handle = down.register_forward_pre_hook(lambda _m, a: acts.append(a[0][0, :, j].tolist()))
        try:
            with torch.no_grad():
                out = model(torch.tensor([ids]), use_cache=False, output_attentions=True)
        finally:
            handle.remove()
        if getattr(model.model.layers[layer], "experts", None) is not None:
            # Gemma 4: the dense MLP's units come after the experts' beside it.
            neuron = cfg.num_experts * cfg.moe_intermediate_size + j
        if experts:
            with torch.no_grad():
                x = inputs[0]
                chosen = torch.topk(torch.softmax(mlp.gate(x).float(), -1), mlp.top_k, -1).indices
                e = int(chosen[-1, 0])
                j = cfg.moe_intermediate_size // 2
                expert = mlp.experts[e]
                unit = (expert.act_fn(expert.gate_proj(x)) * expert.up_proj(x))[:, j]
                routed = (chosen == e).any(-1)
                acts.append(torch.where(routed, unit, torch.zeros_like(unit)).tolist())
            down, neuron = expert.down_proj, e * cfg.moe_intermediate_size + j
        with torch.no_grad():
            column = down.weight[:, j]
            logits = model.lm_head(model.model.norm(column[None, None, :]))[0, 0]
            cap = getattr(cfg, "final_logit_softcapping", None)
            if cap:
                logits = torch.tanh(logits / cap) * cap
        top = torch.topk(logits, TOP)
        bottom = torch.topk(-logits, TOP)
        cases.append({
            "fixture": name, "model": fx["model"], "prompt": fx["prompt"],
            "chat_template": fx["chat_template"], "ids": ids, "target": fx["targets"][0]["id"],
            "neuron": {"layer": layer, "unit": {"neuron": neuron}},
            "promotes": top.indices.tolist(), "promotes_logits": reference.r(top.values.tolist()),
            "suppresses": bottom.indices.tolist(),
            "suppresses_logits": reference.r((-bottom.values).tolist()),
            "activations": reference.r(acts[0]),
            "head": {"layer": hl, "unit": {"head": h}},
            "attention": [reference.r(row) for row in attention(out.attentions, attending, hl)[0, h].tolist()],
            "transformers": transformers.__version__,
        })
        print(f"{name}: neuron {layer}:{neuron}, head {hl}:h{h}", file=sys.stderr)
    reference.write_merged(OUT, CASES, {c["fixture"]: c for c in cases})


def attention(attentions, attending, layer):
    """Layer `layer`'s probabilities from a model's `attentions`: one per layer, or (a
    hybrid's) one per attention layer."""
    if len(attentions) == len(attending) and len(attending) < max(attending) + 1:
        return attentions[attending.index(layer)]
    return attentions[layer]


if __name__ == "__main__":
    main()

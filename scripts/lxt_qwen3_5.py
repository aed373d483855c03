"""The attribution rules of src/methods/attnlrp.rs for Qwen3.5's Gated DeltaNet layer, in
PyTorch (lxt 2.1 has no Qwen3.5 module): the layer's forward written out with each rule point
replaced, so that autograd through it gives the rule's cotangents. Forward values are the
module's (`Qwen3_5GatedDeltaNet.forward`, checked by scripts/gated_deltanet_reference.py).

Rule points, by mode (plain: the ordinary gradient everywhere):
- the convolution's SiLU: lxt's identity rule, `grad · act(x) / (x + 1e-10)`;
- q and k's l2 norms and the output's RMSNorm: the identity rule (the norm a constant);
- β = σ(b): its ordinary derivative (as the router's softmax), after the gate's share;
- the decay g: a constant;
- the delta rule's products (read, recall, gate, write): each factor's share, `SCALES`;
- the output gate `norm(o) ⊙ silu(z)`: as the MLP's gate under each rule (AttnLRP: identity
  rule through SiLU and half to each factor; CP-LRP: the gate a constant).
"""
import torch
import torch.nn.functional as F

from delta_rule_reference import SCALES, recurrence, share

EPS_IDENTITY = 1e-10


class IdentityAct(torch.autograd.Function):
    """act(x) forward; grad · act(x) / (x + ε) backward (lxt's identity rule)."""

    @staticmethod
    def forward(ctx, x):
        y = F.silu(x)
        ctx.save_for_backward(x, y)
        return y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        return g * y / (x + EPS_IDENTITY)


def silu(x, mode):
    return F.silu(x) if mode == "plain" else IdentityAct.apply(x)


def norm(x, eps, mode, mean=True):
    """x / sqrt(mean(x²) + eps) (sum with `mean=False`: the l2 norm); the identity rule holds
    the denominator constant."""
    r = torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) if mean else torch.rsqrt(
        (x * x).sum(-1, keepdim=True) + eps)
    return x * (r if mode == "plain" else r.detach())


def gdn_forward(m, x, mode):
    """Qwen3_5GatedDeltaNet `m` on `x` (T, hidden), f64 or f32, with `mode`'s rules."""
    sc = SCALES["gradient" if mode == "plain" else mode]
    T = x.shape[0]
    qkv = x @ m.in_proj_qkv.weight.T.to(x)
    k_size = m.conv1d.kernel_size[0]
    w = m.conv1d.weight.squeeze(1).to(x)  # (C, K)
    padded = F.pad(qkv.T, (k_size - 1, 0))  # (C, K-1+T)
    pre = sum(w[:, j:j + 1] * padded[:, j:j + T] for j in range(k_size)).T  # (T, C)
    mixed = silu(pre, mode)
    q, k, v = torch.split(mixed, [m.key_dim, m.key_dim, m.value_dim], dim=-1)
    rep = m.num_v_heads // m.num_k_heads
    q = norm(q.reshape(T, m.num_k_heads, m.head_k_dim), 1e-6, mode, mean=False)
    k = norm(k.reshape(T, m.num_k_heads, m.head_k_dim), 1e-6, mode, mean=False)
    q = q.repeat_interleave(rep, dim=1).transpose(0, 1) * m.head_k_dim ** -0.5
    k = k.repeat_interleave(rep, dim=1).transpose(0, 1)
    v = v.reshape(T, m.num_v_heads, m.head_v_dim).transpose(0, 1)
    beta = torch.sigmoid(x @ m.in_proj_b.weight.T.to(x)).T
    a = x @ m.in_proj_a.weight.T.to(x)
    g = (-m.A_log.to(x).exp() * F.softplus(a + m.dt_bias.to(x))).T
    core, _ = recurrence(q, k, v, g, beta, sc)  # (Hv, T, dv)
    core = core.transpose(0, 1)
    z = (x @ m.in_proj_z.weight.T.to(x)).reshape(T, m.num_v_heads, m.head_v_dim)
    normed = norm(core, m.norm.variance_epsilon, mode) * m.norm.weight.to(x)
    if mode == "plain":
        y = normed * F.silu(z)
    elif mode == "attnlrp":
        y = share(normed, 0.5) * share(IdentityAct.apply(z), 0.5)
    else:  # cp_lrp: the gate a constant
        y = normed * F.silu(z).detach()
    return y.reshape(T, -1) @ m.out_proj.weight.T.to(x)


# The whole model's rule maps (scripts/reference.py patches them in as lxt's own): lxt's rules
# for the MLP and attention, the norms' identity rule on their `_norm` (they scale by 1 + w, as
# lxt's Gemma 3 module handles), and the two blocks above written out with their rules.
from functools import partial  # noqa: E402

from lxt_rules import _eager_only  # noqa: E402  (also sets up lxt.efficient's rule modules)
from lxt.efficient.patches import (  # noqa: E402
    cp_gated_mlp_forward,
    cp_wrap_attention_forward,
    gated_mlp_forward,
    patch_method,
    wrap_attention_forward,
)
from transformers.models.qwen3_5 import modeling_qwen3_5 as _m  # noqa: E402

# Attention's output gate `m ⊙ σ(g)`: shares to the merged heads and to the gate.
OUTPUT_GATE = {"attnlrp": (0.5, 0.5), "cp_lrp": (1.0, 0.0)}


def norm_identity(self, x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps).detach()


def attention_forward(mode):
    """Qwen3_5Attention.forward (eager) with the output gate's shares."""
    to_heads, to_gate = OUTPUT_GATE[mode]

    def forward(self, hidden_states, position_embeddings, attention_mask, cache=None, **kwargs):
        shape = hidden_states.shape[:-1]
        heads = (*shape, -1, self.head_dim)
        q, gate = torch.chunk(self.q_proj(hidden_states).view(*shape, -1, self.head_dim * 2), 2,
                              dim=-1)
        gate = gate.reshape(*shape, -1)
        q = self.q_norm(q.view(heads)).transpose(1, 2)
        k = self.k_norm(self.k_proj(hidden_states).view(heads)).transpose(1, 2)
        v = self.v_proj(hidden_states).view(heads).transpose(1, 2)
        cos, sin = position_embeddings
        q, k = _m.apply_rotary_pos_emb(q, k, cos, sin)
        out, weights = _m.eager_attention_forward(self, q, k, v, attention_mask, dropout=0.0,
                                                  scaling=self.scaling, **kwargs)
        out = out.reshape(*shape, -1).contiguous()
        out = share(out, to_heads) * share(torch.sigmoid(gate), to_gate)
        return self.o_proj(out), weights

    return forward


def deltanet_forward(mode):
    """Qwen3_5GatedDeltaNet.forward (a whole sequence, no cache) with `mode`'s rules."""

    def forward(self, hidden_states, cache=None, attention_mask=None, **kwargs):
        return torch.stack([gdn_forward(self, x, mode) for x in hidden_states])

    return forward


def _maps(mode, mlp_forward, wrap):
    return {
        _m.Qwen3_5MLP: partial(patch_method, mlp_forward),
        _m.Qwen3_5RMSNorm: partial(patch_method, norm_identity, method_name="_norm"),
        _m.Qwen3_5Attention: partial(patch_method, attention_forward(mode)),
        _m.Qwen3_5GatedDeltaNet: partial(patch_method, deltanet_forward(mode)),
        _m: partial(_eager_only, wrap),
    }


attnLRP = _maps("attnlrp", gated_mlp_forward, wrap_attention_forward)
cp_LRP = _maps("cp_lrp", cp_gated_mlp_forward, cp_wrap_attention_forward)

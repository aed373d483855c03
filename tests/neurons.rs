//! Neuron and head relevance against PyTorch + transformers (+ lxt's efficient AttnLRP and
//! CP-LRP) on the same weights: at every layer's MLP hidden units (the input of `down_proj`)
//! and attention heads (their slices of `o_proj`'s input, each head's every value, per-token
//! terms and the layer's total within 1e-3 of the largest head), the activation times the
//! gradient (saliency: the gradient's magnitude), summed over tokens;
//! the top neurons of each layer (index, value, per-token values) within 1e-3 of the case's
//! largest neuron value, and the layers' totals within 1e-3 of the largest total or neuron
//! (relative, f32). Ties at the edge of the top k may swap.
//!
//! Fixture: `tests/fixtures/neurons.json`, written by `scripts/neuron_reference.py`.

use std::collections::BTreeMap;

use serde::Deserialize;
use tokenlens::{HeadLayer, Method, NeuronLayer, TargetSpec};

use crate::util::{cases, engine_for, rel_err, Fixture};

const TOL: f32 = 1e-3;

#[derive(Deserialize)]
struct Case {
    #[serde(flatten)]
    at: Fixture,
    methods: BTreeMap<Method, Vec<NeuronLayer>>,
    heads: BTreeMap<Method, Vec<HeadLayer>>,
}

#[test]
fn neuron_relevance_matches_pytorch_and_lxt() {
    for c in cases::<Case>("neurons.json") {
        let name = &c.at.fixture;
        let k = c.methods.values().next().map_or(0, |l| l[0].top.len());
        assert!(k > 0, "{name}: the fixture keeps neurons");
        let e = engine_for(&c.at.model);
        let mut req = c.at.request();
        req.target = TargetSpec::Id(c.at.target);
        req.methods = c.methods.keys().copied().collect();
        req.neurons = k;
        req.heads = true;
        let ex = e.explain(&req).unwrap();
        let ids: Vec<u32> = ex.tokens.iter().map(|t| t.id).collect();
        assert_eq!(ids, c.at.ids, "{name}: tokens");
        for (m, want) in &c.methods {
            let got = ex.methods[m].neurons.as_ref().expect("neurons kept");
            assert_eq!(got.len(), want.len(), "{name} {m}: layers");
            let scale = want
                .iter()
                .map(|l| l.top[0].value.abs())
                .fold(0f32, f32::max);
            assert!(scale > 0.0, "{name} {m}: some neuron carries the target");
            // A layer's total sums every neuron: held to the largest total, or the largest
            // neuron where signed terms cancel in the totals.
            let totals: Vec<f32> = want.iter().map(|l| l.total).collect();
            let total_scale = tokenlens::text::max_abs(&totals).max(scale);
            assert!(
                got.iter().all(|l| l.total.is_finite()
                    && l.top
                        .iter()
                        .all(|n| n.per_token.iter().all(|v| v.is_finite()))),
                "{name} {m}: finite"
            );
            let total_err = got
                .iter()
                .zip(&totals)
                .map(|(g, w)| (g.total - w).abs() / total_scale)
                .fold(0f32, f32::max);
            assert!(total_err <= TOL, "{name} {m}: layer totals {total_err:e}");
            let mut worst = 0f32;
            for (l, (g, w)) in got.iter().zip(want).enumerate() {
                let off = |a: f32, b: f32| (a - b).abs() / scale;
                assert_eq!(g.top.len(), w.top.len(), "{name} {m} layer {l}: top k");
                // Rank by rank, the values agree; a neuron clearly inside the top k is ours too.
                let edge = w.top.last().map_or(0.0, |n| n.value.abs());
                for (r, (gn, wn)) in g.top.iter().zip(&w.top).enumerate() {
                    worst = worst.max(off(gn.value, wn.value));
                    assert!(
                        off(gn.value.abs(), wn.value.abs()) <= TOL,
                        "{name} {m} layer {l} rank {r}"
                    );
                    if (wn.value.abs() - edge) / scale <= TOL {
                        continue;
                    }
                    let Some(mine) = g.top.iter().find(|n| n.index == wn.index) else {
                        panic!(
                            "{name} {m} layer {l}: neuron {} is not in our top {k}",
                            wn.index
                        );
                    };
                    let err = rel_err(&mine.per_token, &wn.per_token)
                        * tokenlens::text::max_abs(&wn.per_token)
                        / scale;
                    assert!(
                        err <= TOL,
                        "{name} {m} layer {l} neuron {}: per token {err:e}",
                        wn.index
                    );
                    assert!(
                        off(mine.value, wn.value) <= TOL,
                        "{name} {m} layer {l} neuron {}",
                        wn.index
                    );
                }
            }
            println!(
                "{name} {m}: {} layers, top {k} within {worst:.1e} of the largest neuron, totals within {total_err:.1e}",
                got.len()
            );
            let heads_err = heads_off(&ex.methods[m].heads, &c.heads[m]);
            assert!(heads_err <= TOL, "{name} {m}: heads {heads_err:e}");
            println!("{name} {m}: heads within {heads_err:.1e} of the largest head");
        }
    }
}

/// How far our heads are from the reference's, in units of its largest head value: every
/// head's value, its per-token terms and each layer's total.
fn heads_off(got: &Option<Vec<HeadLayer>>, want: &[HeadLayer]) -> f32 {
    let got = got.as_ref().expect("heads kept");
    assert_eq!(got.len(), want.len(), "layers");
    let scale = want
        .iter()
        .map(|l| tokenlens::text::max_abs(&l.heads))
        .fold(0f32, f32::max);
    assert!(scale > 0.0, "some head carries the target");
    let mut worst = 0f32;
    // The largest difference over two lists, in units of `scale` (NaN counts as infinite).
    let off = |a: &[f32], b: &[f32]| {
        assert_eq!(a.len(), b.len(), "lengths");
        a.iter()
            .zip(b)
            .map(|(x, y)| {
                if x.is_finite() {
                    (x - y).abs() / scale
                } else {
                    f32::INFINITY
                }
            })
            .fold(0f32, f32::max)
    };
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.per_token.len(), w.per_token.len(), "heads per layer");
        worst = worst.max(off(&g.heads, &w.heads));
        worst = worst.max(off(&[g.total], &[w.total]));
        for (a, b) in g.per_token.iter().zip(&w.per_token) {
            worst = worst.max(off(a, b));
        }
    }
    worst
}

#[test]
fn neurons_come_only_when_asked_and_within_limits() {
    let e = engine_for("smollm2-135m");
    let mut req = tokenlens::ExplainRequest::new("The capital of France is");
    req.chat_template = false;
    req.methods = vec![Method::Attnlrp, Method::IntegratedGradients];
    let ex = e.explain(&req).unwrap();
    assert!(ex
        .methods
        .values()
        .all(|r| r.neurons.is_none() && r.heads.is_none()));
    req.neurons = tokenlens::MAX_NEURONS + 1;
    let err = e.explain(&req).unwrap_err().to_string();
    assert!(err.contains("neurons must be at most"), "{err}");
    // Neurons asked, heads not: a one-pass method keeps neurons only; integrated gradients
    // (a path of passes) none.
    req.neurons = 3;
    let ex = e.explain(&req).unwrap();
    let r = &ex.methods[&Method::Attnlrp];
    assert!(r.heads.is_none());
    let ig = &ex.methods[&Method::IntegratedGradients];
    assert!(ig.neurons.is_none() && ig.heads.is_none());
    let layers = r.neurons.as_ref().expect("asked");
    assert_eq!(layers.len(), e.n_layers());
    for l in layers {
        assert_eq!(l.top.len(), 3);
        assert!(l
            .top
            .iter()
            .all(|n| n.per_token.len() == ex.tokens.len() && n.value.is_finite()));
        assert!(l
            .top
            .windows(2)
            .all(|w| w[0].value.abs() >= w[1].value.abs()));
    }
    // Heads asked, neurons not.
    (req.neurons, req.heads, req.methods) = (0, true, vec![Method::Saliency]);
    let ex = e.explain(&req).unwrap();
    let r = &ex.methods[&Method::Saliency];
    assert!(r.neurons.is_none());
    let heads = r.heads.as_ref().expect("asked");
    assert_eq!(heads.len(), e.n_layers());
    assert!(heads
        .iter()
        .all(|l| l.heads.len() == 9 && l.per_token.iter().all(|t| t.len() == ex.tokens.len())));
}

/// The blocks' relevance ties the neurons and heads to the latent trace. Per layer, the
/// change of the trace's sum is what its two blocks write less what they hand back
/// (`Σ h_after · g_after − Σ h_before · g_before = Σ_blocks (output − input)`, the layer
/// before the first being the input scores), for every method, within 1e-3 of the largest
/// trace sum (measured ≤ 5e-7). Under AttnLRP and CP-LRP the neurons and heads sum to their
/// block's output (`down_proj` and `o_proj` are linear, the post-norms follow the identity
/// rule; ≤ 3e-7) and the MLP hands back what it receives (ratio 1 within 1e-3; measured
/// ≤ 8e-5); under CP-LRP so does attention where q, k and v have no bias (a bias keeps its
/// share: Qwen2's 0.61-0.69). Under input × gradient a block hands back nothing: its input
/// norm is scale-invariant, so `h · ∂norm(h)/∂h = 0` (≤ 2e-3 of its output, measured;
/// not OLMo's blocks, whose norms come after them).
/// Sparse experts (tiny Qwen3-MoE): under CP-LRP, as an MLP (the routing weights are
/// constants); under AttnLRP, lxt's uniform rule on `w · expert(x)` gives the experts' units
/// exactly half the block's output and the routing weights the other half, which the router's
/// softmax hands back by its gradient: not conserved (the block hands back 0.45 and −1.58 of
/// its output in the two expert layers, measured; printed by the test).
/// Gemma 4's layers add a third block, their own input's (not reported as a block): there the
/// trace's change is not checked, the blocks' own checks are; and its last layers attend to
/// an earlier layer's keys and values, whose relevance goes back to that layer's attention:
/// under CP-LRP the two hand back less and more than their outputs.
#[test]
fn blocks_conserve_relevance() {
    const LRP: [Method; 2] = [Method::Attnlrp, Method::CpLrp];
    for c in cases::<Case>("neurons.json") {
        let name = &c.at.fixture;
        let e = engine_for(&c.at.model);
        let cfg = e.decoder().config();
        if cfg.arch.delta_net.is_some() {
            continue; // a hybrid's blocks: `qwen35_blocks_conserve_relevance`
        }
        let biased = cfg.arch.attention_bias;
        // OLMo's norms follow its blocks: their inputs are not normed, so input × gradient
        // hands some of their output back.
        let post_norms = cfg.arch.norms == tokenlens::models::config::NormPlacement::Post;
        // Layers with inputs of their own (Gemma 4) add a third block that writes the input's
        // relevance into the stream: the trace changes by more than the two blocks.
        let own_inputs = cfg.arch.per_layer_input.is_some();
        let mut req = c.at.request();
        req.target = TargetSpec::Id(c.at.target);
        req.methods = vec![Method::InputXGradient, Method::Attnlrp, Method::CpLrp];
        (req.neurons, req.heads) = (1, true);
        let ex = e.explain(&req).unwrap();
        for (m, r) in &ex.methods {
            let (neurons, heads) = (r.neurons.as_ref(), r.heads.as_ref());
            let (neurons, heads) = (neurons.expect("neurons"), heads.expect("heads"));
            let sums: Vec<f32> = r.trace.iter().map(|t| t.iter().sum()).collect();
            let scale = tokenlens::text::max_abs(&sums);
            let mut before: f32 = r.scores.iter().sum();
            for (l, (n, h)) in neurons.iter().zip(heads).enumerate() {
                let at = format!("{name} {m} layer {l}");
                let mlp = n.block.expect("the MLP block's relevance");
                let att = h.block.expect("the attention block's relevance");
                let blocks = (att.output - att.input) + (mlp.output - mlp.input);
                let off = ((sums[l] - before) - blocks).abs() / scale;
                assert!(own_inputs || off <= TOL, "{at}: the trace's change {off:e}");
                before = sums[l];
                let ratio = |b: tokenlens::BlockRelevance| b.input / b.output;
                // A layer of experts under AttnLRP: the uniform rule on `w · expert(x)` gives
                // the experts' units half of the block's output, the routing weights the other
                // half, which the router's softmax hands back by its gradient (not conserved).
                let routed = cfg.experts_at(l).is_some() && *m == Method::Attnlrp;
                // Gemma 4's dense MLP beside the experts keeps all of its branch's relevance:
                // the neurons sum to it plus half the experts' branch's, which the block's
                // total cannot separate (each neuron is checked against lxt in
                // `neuron_relevance_matches_pytorch_and_lxt`).
                let beside = cfg.experts_at(l).is_some_and(|e| e.beside_dense);
                if LRP.contains(m) && !(routed && beside) {
                    let share = if routed { 0.5 } else { 1.0 };
                    let off = (n.total - share * mlp.output).abs() / scale;
                    assert!(
                        off <= TOL,
                        "{at}: neurons sum to {share} of the MLP's output ({off:e})"
                    );
                }
                if LRP.contains(m) {
                    let off = (h.total - att.output).abs() / scale;
                    assert!(
                        off <= TOL,
                        "{at}: heads sum to attention's output ({off:e})"
                    );
                    if routed {
                        eprintln!("{at}: experts hand back {} of their output", ratio(mlp));
                    } else {
                        assert!((ratio(mlp) - 1.0).abs() <= TOL, "{at}: MLP {}", ratio(mlp));
                    }
                }
                // Shared keys and values (Gemma 4) carry a reader's attention relevance to the
                // layer that made them: the one hands back less, the other more.
                let shares = cfg.kv_from(l).is_some() || cfg.arch.kv_from.contains(&Some(l));
                if *m == Method::CpLrp && !biased && !shares {
                    assert!(
                        (ratio(att) - 1.0).abs() <= TOL,
                        "{at}: attention {}",
                        ratio(att)
                    );
                }
                if *m == Method::InputXGradient && !post_norms {
                    for (what, b) in [("MLP", mlp), ("attention", att)] {
                        assert!(ratio(b).abs() <= 1e-2, "{at}: {what} hands back {b:?}");
                    }
                }
            }
        }
        // Saliency's magnitudes have no block relevance.
        req.methods = vec![Method::Saliency];
        let ex = e.explain(&req).unwrap();
        let r = &ex.methods[&Method::Saliency];
        assert!(r
            .neurons
            .as_ref()
            .is_some_and(|l| l.iter().all(|l| l.block.is_none())));
    }
}

/// Qwen3.5's blocks (the tiny Qwen3.5: three Gated DeltaNet layers, then a gated attention
/// layer). Per layer the trace's change is what the blocks write less what they hand back
/// (≤ 1e-3, any method); a DeltaNet layer has no heads (an empty row), the attention layer
/// its four. The gated attention's heads are read before the output gate: under input ×
/// gradient and CP-LRP (the gate a constant) they sum to the block's output; under AttnLRP
/// the uniform rule on `m ⊙ σ(g)` gives them half. The MLPs hand back what they receive under
/// both rules; CP-LRP's DeltaNet blocks too (q, k, β, the decay and the gates constant: the
/// state carries the values linearly); AttnLRP's hand back what its uniform rules leave
/// (printed).
#[test]
fn qwen35_blocks_conserve_relevance() {
    hybrid_blocks_conserve("tests/fixtures/tiny-qwen3_5", true);
}

/// Qwen3.5-MoE's blocks as Qwen3.5's, but for its MLPs: under CP-LRP the routing weights and
/// the shared expert's gate are constants, so the sparse blocks hand back what they receive;
/// under AttnLRP the uniform rules give the weights and the shared gate half of the
/// relevance, which the router's softmax and the gate's σ do not conserve (printed).
#[test]
fn qwen35_moe_blocks_conserve_relevance() {
    hybrid_blocks_conserve("tests/fixtures/tiny-qwen3_5-moe", false);
}

/// The checks above on the hybrid checkpoint `model`; `attnlrp_mlp`: whether its MLPs
/// conserve under AttnLRP too.
fn hybrid_blocks_conserve(model: &str, attnlrp_mlp: bool) {
    let e = engine_for(model);
    let cfg = e.decoder().config();
    let mut req = tokenlens::ExplainRequest::new("Each state decays, is corrected toward");
    req.methods = vec![Method::InputXGradient, Method::Attnlrp, Method::CpLrp];
    (req.neurons, req.heads) = (1, true);
    let ex = e.explain(&req).unwrap();
    for (m, r) in &ex.methods {
        let (neurons, heads) = (r.neurons.as_ref(), r.heads.as_ref());
        let (neurons, heads) = (neurons.expect("neurons"), heads.expect("heads"));
        let sums: Vec<f32> = r.trace.iter().map(|t| t.iter().sum()).collect();
        let scale = tokenlens::text::max_abs(&sums);
        let mut before: f32 = r.scores.iter().sum();
        for (l, (n, h)) in neurons.iter().zip(heads).enumerate() {
            let at = format!("{m} layer {l}");
            let (mlp, mixer) = (n.block.expect("MLP block"), h.block.expect("mixer block"));
            let blocks = (mixer.output - mixer.input) + (mlp.output - mlp.input);
            let off = ((sums[l] - before) - blocks).abs() / scale;
            assert!(off <= TOL, "{at}: the trace's change {off:e}");
            before = sums[l];
            let ratio = |b: tokenlens::BlockRelevance| b.input / b.output;
            if cfg.is_linear(l) {
                assert!(h.heads.is_empty() && h.per_token.is_empty(), "{at}: heads");
            } else {
                assert_eq!(h.heads.len(), cfg.num_attention_heads, "{at}: heads");
                let share = if *m == Method::Attnlrp { 0.5 } else { 1.0 };
                let off = (h.total - share * mixer.output).abs() / scale;
                assert!(
                    off <= TOL,
                    "{at}: heads hold {share} of attention's output ({off:e})"
                );
            }
            if *m == Method::CpLrp || (*m == Method::Attnlrp && attnlrp_mlp) {
                assert!((ratio(mlp) - 1.0).abs() <= TOL, "{at}: MLP {}", ratio(mlp));
            }
            if *m == Method::CpLrp && cfg.is_linear(l) {
                assert!(
                    (ratio(mixer) - 1.0).abs() <= TOL,
                    "{at}: DeltaNet {}",
                    ratio(mixer)
                );
            }
            eprintln!(
                "{at}: the mixer hands back {} of its output, the MLP {}",
                ratio(mixer),
                ratio(mlp)
            );
        }
    }
}

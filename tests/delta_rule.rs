//! The gated delta rule (Qwen3.5's linear attention) against transformers' own recurrence on
//! the same inputs: outputs and final states, and the inputs' cotangents for two seeds under
//! the ordinary gradient and the AttnLRP and CP-LRP shares of its products.
//!
//! Fixture: `tests/fixtures/delta_rule.json`, written by `scripts/delta_rule_reference.py`
//! (transformers 5.25.0; the rules' cotangents by autograd through the recurrence with each
//! product's shares, in f64). Tolerance: max |ours − ref| / max |ref| ≤ 1e-4 per tensor (f32).

use crate::util::{rel_err, root};
use serde::Deserialize;
use std::collections::BTreeMap;
use tokenlens::models::gated_delta::{backward, forward, Dims, Inputs, Scales};

const TOL: f32 = 1e-4;

#[derive(Deserialize)]
struct Fixture {
    heads: usize,
    len: usize,
    dk: usize,
    dv: usize,
    seeds: usize,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    g: Vec<f32>,
    beta: Vec<f32>,
    d_out: Vec<f32>,
    out: Vec<f32>,
    state: Vec<f32>,
    rules: BTreeMap<String, Rule>,
}

#[derive(Deserialize)]
struct Rule {
    scales: RuleScales,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    g: Vec<f32>,
    beta: Vec<f32>,
}

#[derive(Deserialize)]
struct RuleScales {
    read: [f32; 2],
    recall: [f32; 2],
    gate: [f32; 2],
    write: [f32; 2],
    decay: f32,
}

fn fixture() -> Fixture {
    let path = root().join("tests/fixtures/delta_rule.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn inputs(f: &Fixture) -> Inputs<'_> {
    Inputs {
        dims: Dims {
            heads: f.heads,
            len: f.len,
            dk: f.dk,
            dv: f.dv,
        },
        q: &f.q,
        k: &f.k,
        v: &f.v,
        g: &f.g,
        beta: &f.beta,
    }
}

#[test]
fn outputs_and_states_match_transformers() {
    let f = fixture();
    let (out, state) = forward(&inputs(&f), None).unwrap();
    let (e_out, e_state) = (rel_err(&out, &f.out), rel_err(&state, &f.state));
    assert!(e_out <= TOL, "outputs differ by {e_out:e}");
    assert!(e_state <= TOL, "final states differ by {e_state:e}");
    // Generation's steps: the first tokens as one pass, then the rest from its state.
    let x = inputs(&f);
    let cut = 100;
    let part = |lo: usize, hi: usize, w: usize, xs: &[f32]| -> Vec<f32> {
        (0..f.heads)
            .flat_map(|h| xs[(h * f.len + lo) * w..(h * f.len + hi) * w].to_vec())
            .collect()
    };
    let halves: Vec<_> = [(0, cut), (cut, f.len)]
        .iter()
        .map(|&(lo, hi)| {
            (
                part(lo, hi, f.dk, x.q),
                part(lo, hi, f.dk, x.k),
                part(lo, hi, f.dv, x.v),
                part(lo, hi, 1, x.g),
                part(lo, hi, 1, x.beta),
                hi - lo,
            )
        })
        .collect();
    let run = |i: usize, state: Option<&[f32]>| {
        let (q, k, v, g, beta, len) = &halves[i];
        let dims = Dims {
            len: *len,
            ..x.dims
        };
        forward(
            &Inputs {
                dims,
                q,
                k,
                v,
                g,
                beta,
            },
            state,
        )
        .unwrap()
    };
    let (first, s) = run(0, None);
    let (second, s) = run(1, Some(&s));
    assert_eq!(first, part(0, cut, f.dv, &out));
    assert!(rel_err(&second, &part(cut, f.len, f.dv, &out)) <= 1e-6);
    assert!(rel_err(&s, &state) <= 1e-6);
}

#[test]
fn cotangents_match_autograd_under_each_rule() {
    let f = fixture();
    assert_eq!(f.rules.len(), 3, "gradient, attnlrp, cp_lrp");
    for (name, r) in &f.rules {
        let s = &r.scales;
        let sc = Scales {
            read: s.read,
            recall: s.recall,
            gate: s.gate,
            write: s.write,
            decay: s.decay,
        };
        // The shares the reference took are the methods' own.
        use tokenlens::models::Derivatives;
        let own = match name.as_str() {
            "gradient" => Scales::GRADIENT,
            "attnlrp" => tokenlens::methods::attnlrp::ATTNLRP.delta_scales(),
            "cp_lrp" => tokenlens::methods::attnlrp::CP_LRP.delta_scales(),
            other => panic!("unknown rule set {other}"),
        };
        assert_eq!(
            sc, own,
            "{name}: the reference's shares are not the method's"
        );
        let got = backward(&inputs(&f), &f.d_out, &sc).unwrap();
        assert_eq!(got.v.len(), f.seeds * f.heads * f.len * f.dv);
        for (part, a, b) in [
            ("q", &got.q, &r.q),
            ("k", &got.k, &r.k),
            ("v", &got.v, &r.v),
            ("g", &got.g, &r.g),
            ("beta", &got.beta, &r.beta),
        ] {
            let err = rel_err(a, b);
            let scale = tokenlens::text::max_abs(b);
            assert!(
                err <= TOL,
                "{name}: d{part} differs by {err:e} (max |ref| {scale})"
            );
        }
    }
}

#[test]
fn mismatched_shapes_are_refused() {
    let f = fixture();
    let mut x = inputs(&f);
    x.beta = &f.beta[1..];
    let err = forward(&x, None).unwrap_err().to_string();
    assert!(err.contains("beta has"), "{err}");
    let err = backward(&inputs(&f), &f.d_out[1..], &Scales::GRADIENT)
        .unwrap_err()
        .to_string();
    assert!(err.contains("output cotangents"), "{err}");
    let err = forward(&inputs(&f), Some(&[0.0; 3]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("the state has 3 values"), "{err}");
}

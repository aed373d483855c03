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
use tokenlens::models::gated_delta::{
    backward, backward_in, forward, forward_in, Dims, Form, Inputs, Scales,
};

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

/// Tokens `lo..hi` of every head of a pass's inputs (or outputs, `w` wide), owned.
struct Part {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    g: Vec<f32>,
    beta: Vec<f32>,
    dims: Dims,
}

fn rows(x: &[f32], dims: Dims, (lo, hi): (usize, usize), w: usize) -> Vec<f32> {
    (0..dims.heads)
        .flat_map(|h| x[(h * dims.len + lo) * w..(h * dims.len + hi) * w].to_vec())
        .collect()
}

impl Part {
    fn of(x: &Inputs, span: (usize, usize)) -> Part {
        let d = x.dims;
        Part {
            q: rows(x.q, d, span, d.dk),
            k: rows(x.k, d, span, d.dk),
            v: rows(x.v, d, span, d.dv),
            g: rows(x.g, d, span, 1),
            beta: rows(x.beta, d, span, 1),
            dims: Dims {
                len: span.1 - span.0,
                ..d
            },
        }
    }

    fn inputs(&self) -> Inputs<'_> {
        Inputs {
            dims: self.dims,
            q: &self.q,
            k: &self.k,
            v: &self.v,
            g: &self.g,
            beta: &self.beta,
        }
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
    let (first, s) = forward(&Part::of(&x, (0, cut)).inputs(), None).unwrap();
    let (second, s) = forward(&Part::of(&x, (cut, f.len)).inputs(), Some(&s)).unwrap();
    assert!(rel_err(&first, &rows(&out, x.dims, (0, cut), f.dv)) <= 1e-6);
    assert!(rel_err(&second, &rows(&out, x.dims, (cut, f.len), f.dv)) <= 1e-6);
    assert!(rel_err(&s, &state) <= 1e-6);
    // One token at a time, as generation steps.
    let mut s = None;
    let mut steps = Vec::new();
    for t in 0..f.len {
        let (o, next) = forward(&Part::of(&x, (t, t + 1)).inputs(), s.as_deref()).unwrap();
        steps.push(o);
        s = Some(next);
    }
    let steps: Vec<f32> = (0..f.heads)
        .flat_map(|h| {
            steps
                .iter()
                .flat_map(move |o| o[h * f.dv..(h + 1) * f.dv].to_vec())
        })
        .collect();
    assert!(
        rel_err(&steps, &out) <= 1e-5,
        "token by token: {:e}",
        rel_err(&steps, &out)
    );
}

/// The chunked form is the recurrence: at lengths below, at and across a chunk's 64 tokens,
/// from zero states and from a carried one, and backward. Tolerance 1e-5 of the largest
/// value (f32; the two forms sum in different orders); 1e-4 for the cotangents.
#[test]
fn chunked_form_equals_the_recurrent_form() {
    let f = fixture();
    let x = inputs(&f);
    let (_, carried) = forward_in(&Part::of(&x, (0, 10)).inputs(), None, Form::Recurrent).unwrap();
    for (lo, hi) in [
        (0, 2),
        (0, 63),
        (0, 64),
        (0, 65),
        (0, 140),
        (10, 140),
        (10, 75),
    ] {
        let p = Part::of(&x, (lo, hi));
        let start = (lo > 0).then_some(&carried[..]);
        let (ro, rs) = forward_in(&p.inputs(), start, Form::Recurrent).unwrap();
        let (co, cs) = forward_in(&p.inputs(), start, Form::Chunked).unwrap();
        let (eo, es) = (rel_err(&co, &ro), rel_err(&cs, &rs));
        assert!(eo <= 1e-5, "tokens {lo}..{hi}: outputs differ by {eo:e}");
        assert!(es <= 1e-5, "tokens {lo}..{hi}: states differ by {es:e}");
    }
    // Qwen3.5's widths (128), unit keys and queries, and decays weak enough that a chunk's
    // state reaches well into the next (e^γ over a chunk ≈ 0.14; the fixture's are strong).
    let (heads, len, w) = (2, 150, 128);
    let mut seed = 7u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut unit = |rows: usize| -> Vec<f32> {
        let mut x: Vec<f32> = (0..rows * w).map(|_| next() - 0.5).collect();
        for r in x.chunks_exact_mut(w) {
            let n = r.iter().map(|a| a * a).sum::<f32>().sqrt();
            r.iter_mut().for_each(|a| *a /= n);
        }
        x
    };
    let (q, k) = (unit(heads * len), unit(heads * len));
    let v: Vec<f32> = (0..heads * len * w)
        .map(|i| (i as f32 * 0.013).sin())
        .collect();
    let g: Vec<f32> = (0..heads * len)
        .map(|i| -((i % 7) as f32) * 0.01 - 1e-3)
        .collect();
    let beta: Vec<f32> = (0..heads * len)
        .map(|i| ((i % 5) as f32 + 0.5) / 5.0)
        .collect();
    let dims = Dims {
        heads,
        len,
        dk: w,
        dv: w,
    };
    let x = Inputs {
        dims,
        q: &q,
        k: &k,
        v: &v,
        g: &g,
        beta: &beta,
    };
    let (ro, rs) = forward_in(&x, None, Form::Recurrent).unwrap();
    let (co, cs) = forward_in(&x, None, Form::Chunked).unwrap();
    let (eo, es) = (rel_err(&co, &ro), rel_err(&cs, &rs));
    assert!(
        eo <= 1e-5 && es <= 1e-5,
        "widths of 128: outputs {eo:e}, states {es:e}"
    );
    assert_eq!(Form::for_len(1), Form::Recurrent);
    assert_eq!(Form::for_len(2), Form::Chunked);
    // A huge decay, then small ones: each pair's decay is a difference of the chunk's sums
    // (about −60,000 here), which must keep the small steps (in f32 they drift by 0.4%).
    let mut g_steep = g.clone();
    for h in 0..heads {
        g_steep[h * len + 3] = -6e4;
    }
    let steep = Inputs { g: &g_steep, ..x };
    let (ro, rs) = forward_in(&steep, None, Form::Recurrent).unwrap();
    let (co, cs) = forward_in(&steep, None, Form::Chunked).unwrap();
    let (eo, es) = (rel_err(&co, &ro), rel_err(&cs, &rs));
    assert!(
        eo <= 1e-5 && es <= 1e-5,
        "a steep decay: outputs {eo:e}, states {es:e}"
    );
    // The backward of two seeds, under the gradient and under shares that differ in every
    // product (so that a share applied at the wrong point shows). Tolerance 1e-4 of the
    // largest value per tensor (f32).
    let d_out: Vec<f32> = (0..2 * heads * len * w)
        .map(|i| (i as f32 * 0.071).cos())
        .collect();
    let odd = Scales {
        read: [0.3, 0.7],
        recall: [0.2, 0.9],
        gate: [0.6, 0.4],
        write: [0.8, 0.5],
        decay: 0.35,
    };
    for sc in [Scales::GRADIENT, odd] {
        let r = backward_in(&x, &d_out, &sc, Form::Recurrent).unwrap();
        let c = backward_in(&x, &d_out, &sc, Form::Chunked).unwrap();
        for (part, a, b) in [
            ("q", &c.q, &r.q),
            ("k", &c.k, &r.k),
            ("v", &c.v, &r.v),
            ("g", &c.g, &r.g),
            ("beta", &c.beta, &r.beta),
        ] {
            let err = rel_err(a, b);
            assert!(err <= 1e-4, "{sc:?}: d{part} differs by {err:e}");
        }
    }
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

//! bf16 explanations against the f32 references (`tests/fixtures/reference`, PyTorch +
//! transformers + lxt in f32): the same fixtures, targets and methods as `reference.rs`,
//! computed with `precision: bf16` (bf16 operands with f32 accumulation in every matrix
//! product of the forward and backward passes; the prediction's output layer on the stored
//! weights). bf16 keeps 8 bits of mantissa, so the scores are not within 1e-3; what a reader
//! of the map relies on is checked instead, with tolerances measured on these fixtures
//! (2026-12-05, this machine; the worst case is printed by the test). On a CPU without bf16
//! units the test runs itself again with `TOKENLENS_BF16=emulate`, so that bf16 is checked
//! on every machine:
//! - Spearman's ρ between bf16 and reference scores ≥ [`MIN_SPEARMAN`];
//! - the 5 tokens of largest |score| share ≥ [`MIN_TOP5`] of 5 with the reference's (on
//!   average over a fixture's targets and methods ≥ [`MIN_TOP5_MEAN`]);
//! - each trace layer within [`TRACE_TOL`] of the reference trace's largest value (or of
//!   [`TRACE_FLOOR`] × the target's logit, if more);
//! - AttnLRP's and CP-LRP's conservation: the last layer's trace sums to the explained
//!   value, and the scores' sum is the reference's, within [`CONSERVATION_TOL`] of the
//!   target's logit.

use crate::reference::{fixtures, trace_key};
use crate::util::{engine_for, spearman};
use tokenlens::{ExplainRequest, Method, Precision, TargetSpec};

// Measured 2026-12-05 on the 22 fixtures × 2-3 targets × 4 methods: Spearman ≥ 0.974, top-5
// share ≥ 4 of 5 (a fixture's mean ≥ 4.5), trace layers within 0.128 (tiny-llama3's random
// weights; ≤ 0.1 on the real models), conservation within 0.091 (Qwen2.5-Coder's CP-LRP,
// whose input share is −12.5 in f32: a sum of large cancelling terms). 2026-12-06, with
// tiny-phi3 and tiny-ministral3 (24 fixtures, 468 checks): Spearman ≥ 0.917, on tiny-phi3's
// chat prompt (a window of 8 over 3 layers leaves 22 tokens in reach, ten of them under 1%
// of the largest score, whose order bf16 does not keep: swaps among values of 10⁻³ against a
// top of 0.2); the rest unchanged. 2026-12-07, on an AMD EPYC without bf16 units, emulated
// (`TOKENLENS_BF16=emulate`), with the Gemma 4 twins (26 fixtures, 588 checks): Spearman ≥
// 0.915, top-5 ≥ 4 of 5, trace layers within 0.176, conservation within 0.124. 2026-12-07
// again, with the Qwen3.5 twins (30 fixtures, 636 checks): the same worst cases (the twins':
// Spearman ≥ 0.964, trace layers within 0.124, conservation within 0.006), conservation
// within 0.090 (since the vectorized exponentials).
const MIN_SPEARMAN: f64 = 0.9;
const MIN_TOP5: usize = 3;
const MIN_TOP5_MEAN: f64 = 4.0;
const TRACE_TOL: f32 = 0.2;
const TRACE_FLOOR: f32 = 0.05;
const CONSERVATION_TOL: f32 = 0.15;

/// The indices of the `k` largest |values|.
fn top(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].abs().total_cmp(&v[a].abs()));
    idx.truncate(k);
    idx
}

#[test]
fn bf16_explanations_agree_with_the_f32_references() {
    if !tokenlens::kernels::bf16_available() {
        // No bf16 units here: the same checks on emulated bf16 (operands rounded to bf16,
        // products in f32: the units' numbers but for the order of the sums), in a child
        // process of this binary, as the switch is read once per process.
        assert!(
            std::env::var_os("TOKENLENS_BF16").is_none(),
            "TOKENLENS_BF16=emulate did not turn bf16 on"
        );
        crate::util::rerun_with_env(
            "precision::bf16_explanations_agree_with_the_f32_references",
            ("TOKENLENS_BF16", "emulate"),
        );
        return;
    }
    let (mut min_rho, mut min_top5, mut worst_trace, mut worst_cons) = (1f64, 5usize, 0f32, 0f32);
    let mut checked = 0;
    for f in fixtures() {
        if crate::util::BF16_SENSITIVE.contains(&f.model.as_str()) {
            continue;
        }
        let e = engine_for(&f.model);
        let mut overlap_sum = 0usize;
        let mut overlaps = 0usize;
        for t in &f.targets {
            let req = ExplainRequest {
                target: TargetSpec::Id(t.id),
                contrast: t.contrast.map(TargetSpec::Id),
                methods: Method::single_pass(),
                chat_template: f.chat_template,
                precision: Precision::Bf16,
                ..ExplainRequest::new(f.prompt.clone())
            };
            let bf16 = e.explain(&req).unwrap();
            assert_eq!(bf16.precision, Precision::Bf16, "{}: ran in bf16", f.name);
            assert_eq!(bf16.precision_note, None, "{}: as asked", f.name);
            let explained = t.logit - t.contrast_logit.unwrap_or(0.0);
            for (method, want) in &t.scores {
                let ctx = format!("{} target {} {method}", f.name, t.id);
                let got = &bf16.methods[method];
                let rho = spearman(&got.scores, want);
                min_rho = min_rho.min(rho);
                assert!(rho >= MIN_SPEARMAN, "{ctx}: spearman {rho}");
                let (a, b) = (top(&got.scores, 5), top(want, 5));
                let shared = a.iter().filter(|i| b.contains(i)).count().min(want.len());
                min_top5 = min_top5.min(shared);
                overlap_sum += shared;
                overlaps += 1;
                assert!(
                    shared >= MIN_TOP5.min(want.len()),
                    "{ctx}: top-5 share {shared}"
                );
                // Each layer against the trace's largest value, or 5% of the target's logit
                // if that is more: a trace far below the logit is h·∂y/∂h cancelling to
                // nearly 0 over the hidden dimension, rounding noise in bf16 (as the last
                // layer's is in f32).
                let want_trace = &t.traces[trace_key(method)];
                let scale = want_trace
                    .iter()
                    .flatten()
                    .fold(TRACE_FLOOR * t.logit.abs(), |m, x| m.max(x.abs()));
                for (l, (g, w)) in got.trace.iter().zip(want_trace).enumerate() {
                    let err = g.iter().zip(w).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
                    worst_trace = worst_trace.max(err);
                    assert!(err <= TRACE_TOL, "{ctx}: trace layer {l} off by {err}");
                }
                // Conservation, as shares of the target's logit (a contrast's explained
                // difference can be near 0).
                if let Some(c) = &got.conservation {
                    let input32 = want.iter().sum::<f32>() / explained;
                    let norm = explained.abs() / t.logit.abs().max(explained.abs());
                    let d = (c.last_layer - 1.0).abs().max((c.input - input32).abs()) * norm;
                    worst_cons = worst_cons.max(d);
                    assert!(
                        d <= CONSERVATION_TOL,
                        "{ctx}: conservation {c:?}, f32's input share {input32}"
                    );
                }
                checked += 1;
            }
        }
        let mean = overlap_sum as f64 / overlaps.max(1) as f64;
        assert!(mean >= MIN_TOP5_MEAN, "{}: mean top-5 share {mean}", f.name);
    }
    eprintln!(
        "bf16 against f32 references: min spearman {min_rho:.4}, min top-5 share {min_top5}/5, \
         worst trace layer {worst_trace:.4}, worst conservation {worst_cons:.4} ({checked} checks)"
    );
    assert!(checked >= 22 * 3 * 4, "only {checked} comparisons ran");
}

/// A bf16 request where the machine has no bf16 products is computed in f32 (the same scores
/// as an f32 request), and the result says so and why; where it has them, bf16 says nothing
/// more. Asking for f32, or `auto` (bf16 only where the machine has it), is never noted.
#[test]
fn a_bf16_request_says_what_it_ran_in() {
    let e = crate::util::engine();
    let ask = |precision, prompt: &str| {
        let req = ExplainRequest {
            methods: vec![Method::Saliency, Method::Attnlrp],
            precision,
            ..ExplainRequest::new(prompt.to_string())
        };
        e.explain(&req).unwrap()
    };
    let prompt = "The capital of France is";
    let (bf16, f32) = (ask(Precision::Bf16, prompt), ask(Precision::F32, prompt));
    // Long enough that `auto` picks bf16 where there is bf16.
    let long = prompt.repeat(60);
    assert!(e.f32_seconds(6 * 60, 2) > 1.0);
    let auto = ask(Precision::Auto, &long);
    assert_eq!(auto.precision_note, None);
    let bf16_here = tokenlens::kernels::bf16_available();
    let want = [Precision::F32, Precision::Bf16][usize::from(bf16_here)];
    assert_eq!(auto.precision, want);
    assert_eq!(
        (f32.precision, &f32.precision_note),
        (Precision::F32, &None)
    );
    match tokenlens::kernels::bf16_unavailable_reason() {
        None => assert_eq!(
            (bf16.precision, bf16.precision_note),
            (Precision::Bf16, None)
        ),
        Some(why) => {
            assert_eq!(bf16.precision, Precision::F32);
            let note = bf16.precision_note.expect("a note on the fallback");
            assert!(
                note.contains("bf16 was asked for") && note.contains(why),
                "{note}"
            );
            for (m, r) in &f32.methods {
                assert_eq!(bf16.methods[m].scores, r.scores, "{m}: f32 either way");
            }
        }
    }
}

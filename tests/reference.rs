//! The engine against PyTorch + transformers (+ lxt) on the same GGUF weights.
//!
//! Fixtures: `tests/fixtures/reference/*.json`, written by `scripts/reference.py`.
//! Tolerances (f32 on both sides):
//! - token ids and templated text identical; same argmax;
//! - top-10 logits: max |ours − ref| / max |ref| ≤ 1e-4;
//! - each method's scores: max |ours − ref| / max |ref| ≤ 1e-3 and Spearman ≥ 0.99;
//! - each trace layer: max |ours − ref| / max |ref layer| ≤ 1e-3; except a layer that
//!   vanishes (max |ref| < 1e-4 × |logit|): there ours must vanish too. With plain gradients
//!   the last layer's trace is zero in exact arithmetic (RMSNorm is scale-invariant, so
//!   h ⟂ ∂y/∂h); both sides hold only f32 rounding noise there (~1e-7 of the logit).

use crate::util::{engine, engine_for, rel_err, root, spearman, Complete};
use serde::Deserialize;
use std::collections::BTreeMap;
use tokenlens::{ExplainRequest, Method, TargetSpec};

const SCORE_TOL: f32 = 1e-3;
const LOGIT_TOL: f32 = 1e-4;
const MIN_SPEARMAN: f64 = 0.99;
const VANISHING: f32 = 1e-4;

#[derive(Deserialize)]
pub(crate) struct Fixture {
    pub(crate) name: String,
    pub(crate) model: String,
    pub(crate) prompt: String,
    pub(crate) chat_template: bool,
    pub(crate) text: String,
    pub(crate) ids: Vec<u32>,
    pub(crate) top_ids: Vec<u32>,
    pub(crate) top_logits: Vec<f32>,
    pub(crate) targets: Vec<FixtureTarget>,
}

#[derive(Deserialize)]
pub(crate) struct FixtureTarget {
    pub(crate) id: u32,
    pub(crate) logit: f32,
    /// Contrastive targets explain `logit(id) − logit(contrast)`.
    #[serde(default)]
    pub(crate) contrast: Option<u32>,
    #[serde(default)]
    pub(crate) contrast_logit: Option<f32>,
    pub(crate) scores: BTreeMap<Method, Vec<f32>>,
    pub(crate) traces: BTreeMap<String, Vec<Vec<f32>>>,
}

pub(crate) fn fixtures() -> Vec<Fixture> {
    let dir = root().join("tests/fixtures/reference");
    let mut out: Vec<Fixture> = std::fs::read_dir(&dir)
        .expect("fixture directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(
        out.len() >= 8,
        "expected at least 8 fixtures, found {}",
        out.len()
    );
    out
}

pub(crate) fn trace_key(method: &Method) -> &'static str {
    match method {
        Method::Saliency | Method::InputXGradient => "plain",
        m => m.name(),
    }
}

/// Every method of the registry has a reference: its scores in the lxt fixtures, or a
/// document of its own (integrated gradients: Captum's).
#[test]
fn every_registered_method_has_a_reference() {
    let fx = fixtures();
    for m in Method::ALL {
        let own = root().join(format!("tests/fixtures/{}.json", m.name()));
        let in_fixtures = fx
            .iter()
            .all(|f| f.targets.iter().all(|t| t.scores.contains_key(m)));
        assert!(
            in_fixtures || own.exists(),
            "{}: no reference fixture (scripts/reference.py or a script of its own)",
            m.name()
        );
    }
}

#[test]
fn fixtures_cover_the_required_cases() {
    let fx = fixtures();
    assert!(fx.iter().any(|f| f.chat_template) && fx.iter().any(|f| !f.chat_template));
    assert!(
        fx.iter().any(|f| f.ids.len() >= 250),
        "no fixture of 250+ tokens"
    );
    assert!(fx
        .iter()
        .any(|f| f.prompt.chars().any(|c| c.is_ascii_digit())));
    assert!(fx.iter().any(|f| !f.prompt.is_ascii()));
    assert!(fx
        .iter()
        .all(|f| f.targets.len() >= 2 && f.targets[0].id != f.targets[1].id));
    assert!(
        fx.iter()
            .all(|f| f.targets.iter().any(|t| t.contrast.is_some())),
        "every fixture has a contrastive target"
    );
    // Every family, on real weights where they are reachable here, else tiny random ones.
    for model in [
        "smollm2-135m",
        "gemma3-270m",
        "tests/fixtures/tiny-llama",
        "tests/fixtures/tiny-qwen2",
        "tests/fixtures/tiny-qwen3",
        "tests/fixtures/tiny-gemma3",
        "tests/fixtures/tiny-gemma4",
        "tests/fixtures/tiny-gemma4-moe",
        "tests/fixtures/tiny-olmo2",
        "tests/fixtures/tiny-olmo3",
        "tests/fixtures/tiny-qwen3_5",
        "tests/fixtures/tiny-qwen3_5-moe",
        "tests/fixtures/tiny-smollm3",
        "tests/fixtures/tiny-phi3",
        "tests/fixtures/tiny-ministral3",
        "tests/fixtures/tiny-mistral",
        "tests/fixtures/tiny-qwen3-moe",
        "tests/fixtures/tiny-llama3",
        // The bf16-conditioned twins (scripts/reference.py VARIANTS).
        "tests/fixtures/tiny-gemma4-bf16",
        "tests/fixtures/tiny-gemma4-moe-bf16",
        "tests/fixtures/tiny-qwen3_5-bf16",
        "tests/fixtures/tiny-qwen3_5-moe-bf16",
    ] {
        let n = fx.iter().filter(|f| f.model == model).count();
        assert!(n >= 2, "{model}: {n} fixtures");
    }
}

#[test]
fn tokens_and_template_match_transformers() {
    for f in fixtures() {
        let e = engine_for(&f.model);
        let tok = e.tokenize(&f.prompt, f.chat_template, false).unwrap();
        assert_eq!(tok.text, f.text, "{}: templated text differs", f.name);
        let ids: Vec<u32> = tok.tokens.iter().map(|t| t.id).collect();
        assert_eq!(ids, f.ids, "{}: token ids differ", f.name);
        if f.chat_template {
            let [a, b] = tok.query_span.expect("query span");
            let q = &tok.text[tok.tokens[a].start..tok.tokens[b - 1].end];
            assert_eq!(
                q, f.prompt,
                "{}: query span does not cover the prompt exactly",
                f.name
            );
            assert!(
                tok.tokens[a - 1].end <= tok.tokens[a].start,
                "{}: span starts late",
                f.name
            );
        } else {
            assert_eq!(tok.query_span, None);
        }
    }
}

#[test]
fn scores_match_pytorch_and_lxt() {
    let mut checked = 0;
    // Worst relative error per method (scores, trace) and lowest Spearman, printed at the end.
    let mut worst: BTreeMap<String, (f32, f32, f64)> = BTreeMap::new();
    for f in fixtures() {
        let e = engine_for(&f.model);
        for (ti, t) in f.targets.iter().enumerate() {
            let req = ExplainRequest {
                target: TargetSpec::Id(t.id),
                contrast: t.contrast.map(TargetSpec::Id),
                methods: Method::single_pass(),
                top_k: f.top_ids.len(),
                precision: tokenlens::Precision::F32,
                ..ExplainRequest {
                    chat_template: f.chat_template,
                    ..ExplainRequest::new(f.prompt.clone())
                }
            };
            let ex = e.explain(&req).unwrap();
            let ctx = format!("{} target {} ({} vs {:?})", f.name, ti, t.id, t.contrast);
            if let (Some(c), Some(cl)) = (t.contrast, t.contrast_logit) {
                let got = ex.target().contrast.as_ref().expect("contrast reported");
                assert_eq!(got.id, c, "{ctx}: contrast id");
                let err = (got.logit - cl).abs() / f.top_logits[0].abs();
                assert!(err <= LOGIT_TOL, "{ctx}: contrast logit rel err {err:e}");
            }
            if ti == 0 {
                assert_eq!(
                    ex.prediction().best.id,
                    f.top_ids[0],
                    "{ctx}: argmax differs"
                );
                let ours: Vec<u32> = ex.prediction().top.iter().map(|c| c.id).collect();
                assert_eq!(ours[..2], f.top_ids[..2], "{ctx}: top-2 differ");
                let ol: Vec<f32> = f
                    .top_ids
                    .iter()
                    .map(|id| {
                        ex.prediction()
                            .top
                            .iter()
                            .find(|c| c.id == *id)
                            .map_or(f32::NAN, |c| c.logit)
                    })
                    .collect();
                let err = rel_err(&ol, &f.top_logits);
                assert!(err <= LOGIT_TOL, "{ctx}: logits rel err {err:e}");
            }
            let lerr = (ex.target().token.logit - t.logit).abs()
                / f.top_logits[0].abs().max(t.logit.abs());
            assert!(lerr <= LOGIT_TOL, "{ctx}: target logit rel err {lerr:e}");
            for (method, want) in &t.scores {
                let got = &ex.methods[method];
                let err = rel_err(&got.scores, want);
                let rho = spearman(&got.scores, want);
                assert!(err <= SCORE_TOL, "{ctx} {method}: rel err {err:e}");
                assert!(rho >= MIN_SPEARMAN, "{ctx} {method}: spearman {rho}");
                assert!(
                    got.scores.iter().any(|&s| s != 0.0),
                    "{ctx} {method}: all zero"
                );
                let key = format!("{} {method}", f.model);
                let w = worst.entry(key.clone()).or_insert((0.0, 0.0, 1.0));
                w.0 = w.0.max(err);
                w.2 = w.2.min(rho);
                let want_trace = &t.traces[trace_key(method)];
                assert_eq!(got.trace.len(), want_trace.len(), "{ctx} {method}: layers");
                // Vanishing against the target's logit (as the module says), not a
                // contrast's difference: a contrast's layer is the difference of its two
                // targets' layers, and carries their rounding. tiny_qwen3_5_moe_bf16_chat's
                // last layer is 9.3e-6, the difference of two of 4.2e-4 (each within 3.4e-4
                // of PyTorch's), where the explained difference is 0.052.
                let explained = t.logit - t.contrast_logit.unwrap_or(0.0);
                let vanish = VANISHING * explained.abs().max(t.logit.abs());
                for (l, (g, w)) in got.trace.iter().zip(want_trace).enumerate() {
                    if tokenlens::text::max_abs(w) < vanish {
                        assert!(
                            tokenlens::text::max_abs(g) < vanish,
                            "{ctx} {method} trace layer {l} should vanish"
                        );
                        continue;
                    }
                    let err = rel_err(g, w);
                    let wm = worst.get_mut(&key).unwrap();
                    wm.1 = wm.1.max(err);
                    assert!(
                        err <= SCORE_TOL,
                        "{ctx} {method} trace layer {l}: rel err {err:e}"
                    );
                }
                checked += 1;
            }
        }
    }
    for (m, (s, t, r)) in &worst {
        eprintln!("{m}: worst score rel err {s:.2e}, worst trace-layer rel err {t:.2e}, min spearman {r:.6}");
    }
    assert!(checked >= 22 * 3 * 4, "only {checked} comparisons ran");
}

#[test]
fn attnlrp_conservation_is_reported() {
    let mut req = ExplainRequest::new("What is the capital of France?");
    req.methods = vec![Method::Attnlrp, Method::CpLrp];
    let ex = engine().explain(&req).unwrap();
    for m in [Method::Attnlrp, Method::CpLrp] {
        let c = ex.methods[&m].conservation.clone().expect("conservation");
        // The last layer's trace sums to the logit exactly (identity-rule norm + lm_head).
        assert!(
            (c.last_layer - 1.0).abs() < 1e-3,
            "{m}: last layer {}",
            c.last_layer
        );
        assert!(c.input > 0.0 && c.input <= 1.01, "{m}: input {}", c.input);
    }
    // Seeding with the logit scales every score by it.
    req.seed_with_logit = true;
    let ex2 = engine().explain(&req).unwrap();
    let logit = ex.target().token.logit;
    let a = &ex.methods[&Method::Attnlrp].scores;
    let b: Vec<f32> = ex2.methods[&Method::Attnlrp]
        .scores
        .iter()
        .map(|v| v / logit)
        .collect();
    assert!(rel_err(&b, a) < 1e-4);
}

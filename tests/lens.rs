//! The logit lens against transformers on the same weights: at every layer and position, the
//! top-5 ids identical, every probability within 1e-4 (absolute), and the target's rank equal
//! unless the target is so unlikely (p < 1e-4) that rounding reorders it among the tail.
//!
//! Fixture: `tests/fixtures/lens.json`, written by `scripts/lens_reference.py`.

use serde::Deserialize;
use tokenlens::{LensCell, TargetSpec};

use crate::util::{cases, engine_for, root, Fixture};

const TOL: f32 = 1e-4;

#[derive(Deserialize)]
struct Case {
    #[serde(flatten)]
    at: Fixture,
    lens: Vec<Vec<LensCell>>,
}

#[test]
fn lens_matches_transformers() {
    let doc: Vec<Case> = cases("lens.json");
    let mut worst = 0f32;
    let mut ranks_moved = 0;
    for c in &doc {
        let e = engine_for(&c.at.model);
        let mut req = c.at.request();
        req.target = TargetSpec::Id(c.at.target);
        req.methods = Vec::new();
        req.lens = true;
        let ex = e.explain(&req).unwrap();
        let ids: Vec<u32> = ex.tokens.iter().map(|t| t.id).collect();
        assert_eq!(ids, c.at.ids, "{}: tokens", c.at.fixture);
        let lens = ex.lens.expect("lens asked for");
        assert_eq!(lens.len(), c.lens.len(), "{}: layers", c.at.fixture);
        for (l, (got, want)) in lens.iter().zip(&c.lens).enumerate() {
            assert_eq!(
                got.len(),
                want.len(),
                "{} layer {l}: positions",
                c.at.fixture
            );
            for (t, (g, w)) in got.iter().zip(want).enumerate() {
                let at = format!("{} layer {l} position {t}", c.at.fixture);
                let close = |a: f32, b: f32| (a - b).abs() <= TOL;
                assert_eq!(g.top, w.top, "{at}: top tokens");
                for (gp, wp) in g.probs.iter().zip(&w.probs) {
                    worst = worst.max((gp - wp).abs());
                    assert!(close(*gp, *wp), "{at}: probability {gp} vs {wp}");
                }
                worst = worst.max((g.target_prob - w.target_prob).abs());
                assert!(
                    close(g.target_prob, w.target_prob),
                    "{at}: target probability"
                );
                if g.target_rank != w.target_rank {
                    // Among tens of thousands of near-equal tails, f32 rounding moves an
                    // unlikely target's rank by a few: only there.
                    assert!(
                        w.target_prob < TOL,
                        "{at}: target rank {} vs {}",
                        g.target_rank,
                        w.target_rank
                    );
                    ranks_moved += 1;
                }
            }
        }
    }
    println!("lens: worst probability difference {worst:e}; {ranks_moved} unlikely targets' ranks moved by rounding");
    // Every family's tiny checkpoint has its case (a family's lens goes through its own
    // final norm and soft-cap); the bf16-conditioned twins (`tiny-*-bf16`, the same families
    // and shapes: scripts/reference.py VARIANTS) are their families'.
    for dir in std::fs::read_dir(root().join("tests/fixtures")).unwrap() {
        let dir = dir.unwrap().path();
        let twin = dir.to_string_lossy().ends_with("-bf16");
        if !dir.join("config.json").exists() || twin {
            continue;
        }
        let model = format!(
            "tests/fixtures/{}",
            dir.file_name().unwrap().to_string_lossy()
        );
        assert!(
            doc.iter().any(|c| c.at.model == model),
            "{model} has no lens case (scripts/lens_reference.py)"
        );
    }
}

/// `explain --lens` puts the lens in the JSON document (a row per layer, a cell per token, 5
/// tokens each) and says in the terminal where the target settles.
#[test]
fn the_cli_prints_and_writes_the_lens() {
    let model = root().join("tests/fixtures/tiny-llama");
    let model = model.to_str().unwrap();
    let run = |json: bool| {
        let mut args = vec![
            "explain",
            "--model",
            model,
            "--prompt",
            "Why is the sky blue?",
        ];
        args.extend(["--raw", "--methods", "saliency", "--lens"]);
        if json {
            args.push("--json");
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenlens"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let doc: serde_json::Value = serde_json::from_str(&run(true)).unwrap();
    let lens = doc["lens"].as_array().unwrap();
    assert_eq!(lens.len(), doc["n_layers"].as_u64().unwrap() as usize);
    assert_eq!(
        lens[0].as_array().unwrap().len(),
        doc["tokens"].as_array().unwrap().len()
    );
    assert_eq!(lens[0][0]["top"].as_array().unwrap().len(), 5);
    assert!(run(false).contains("lens:       the target is"));
}

/// The map comes first and the lens after it (it often takes longer than the methods), with
/// progress reports that a cancel stops at.
#[test]
fn the_lens_streams_after_the_map_and_stops_at_a_cancel() {
    use std::ops::ControlFlow;
    use tokenlens::{Error, ExplainRequest, Method, Stage, StreamEvent};
    let e = crate::util::engine();
    let req = ExplainRequest {
        methods: vec![Method::Saliency, Method::Attnlrp],
        lens: true,
        ..ExplainRequest::new("The capital of France is")
    };
    let mut events = Vec::new();
    e.explain_streaming(&req, &mut |ev| {
        events.push(ev.clone());
        ControlFlow::Continue(())
    })
    .map_err(|e| e.to_string())
    .expect("runs");
    let at = |f: &dyn Fn(&StreamEvent) -> bool| events.iter().position(f).expect("sent");
    let last_method = events
        .iter()
        .rposition(|ev| matches!(ev, StreamEvent::Method { .. }))
        .expect("methods sent");
    let lens = at(&|ev| matches!(ev, StreamEvent::Lens { .. }));
    assert!(last_method < lens, "the lens came before the map");
    let report = at(&|ev| {
        matches!(
            ev,
            StreamEvent::Progress {
                stage: Stage::Lens,
                ..
            }
        )
    });
    assert!(
        last_method < report && report < lens,
        "the lens reports its progress"
    );
    // A cancel at the lens' first report (found in this run's own events: how many progress
    // reports come before it depends on how fast the machine is): nothing after it, no lens.
    let (mut cancelled, mut after) = (false, 0);
    let r = e.explain_streaming(&req, &mut |ev| {
        if cancelled {
            after += 1;
        }
        if matches!(
            ev,
            StreamEvent::Progress {
                stage: Stage::Lens,
                ..
            }
        ) {
            cancelled = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    assert!(cancelled, "the lens reported its progress");
    assert!(matches!(r, Err(Error::Cancelled)), "not cancelled");
    assert_eq!(after, 0, "events after the cancel");
}

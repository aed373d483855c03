//! Cancellation reaches a running pass at its next progress report (the server's cancel is
//! the sink answering `Break`: a client gone, a Cancel press, or the time budget). Passes
//! report as their layers run, forward and backward, so a job stops inside a pass, not at its
//! next result. These tests count events, never milliseconds (a busy machine cannot break
//! them); how soon a cancel lands is `tokenlens bench --cancel`'s figure (BENCHMARKS.md).

use crate::util::engine;
use std::ops::ControlFlow;
use tokenlens::{Error, ExplainRequest, Method, Stage, StreamEvent};

/// A prompt of about 700 tokens.
fn long_prompt() -> String {
    let sentence = "The river bends past the old mill, where the miller counts sacks of grain \
                    and tells the children stories about the winter of the great flood. ";
    let e = engine();
    let mut p = String::new();
    while e.tokenize(&p, false, false).map_or(0, |t| t.tokens.len()) < 700 {
        p.push_str(sentence);
    }
    p
}

/// A progress report as `(stage, method, done, total)`.
fn report(ev: &StreamEvent) -> Option<(Stage, Option<Method>, usize, usize)> {
    match *ev {
        StreamEvent::Progress {
            stage,
            method,
            done,
            total,
        } => Some((stage, method, done, total)),
        _ => None,
    }
}

#[test]
fn a_cancel_at_a_progress_report_ends_the_job_there() {
    let e = engine();
    let req = ExplainRequest {
        methods: vec![Method::Saliency, Method::Attnlrp, Method::CpLrp],
        ..ExplainRequest::new(long_prompt())
    };
    let mut all = Vec::new();
    e.explain_streaming(&req, &mut |ev| {
        all.push(ev.clone());
        ControlFlow::Continue(())
    })
    .map_err(|e| e.to_string())
    .expect("the whole job runs");
    let reports: Vec<_> = all.iter().filter_map(report).collect();
    // Every pass reports its layers: the forward and one backward per rule set (saliency's
    // plain gradient, AttnLRP's and CP-LRP's rules), each ending at its last layer.
    let passes = |stage| {
        reports
            .iter()
            .filter(|r| r.0 == stage && r.2 == r.3 && r.3 > 0)
            .count()
    };
    assert_eq!(
        passes(Stage::Forward),
        1,
        "the forward pass reports its end"
    );
    assert_eq!(
        passes(Stage::Backward),
        3,
        "each backward pass reports its end"
    );
    // Cancel at the forward's first report, the first backward's and the last backward's:
    // at the first report of that pass (which one it is depends on the time, as reports are
    // sent at most about ten a second; the pass does not).
    let points = [
        (Stage::Forward, None),
        (Stage::Backward, Some(Method::Saliency)),
        (Stage::Backward, Some(Method::CpLrp)),
    ];
    for (stage, method) in points {
        let mut seen: Vec<StreamEvent> = Vec::new();
        let mut after = 0;
        let r = e.explain_streaming(&req, &mut |ev| {
            if after > 0 {
                after += 1;
                return ControlFlow::Break(());
            }
            seen.push(ev.clone());
            if report(ev).is_some_and(|r| r.0 == stage && r.1 == method) {
                after += 1;
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        let cut = seen.last().cloned();
        assert!(
            matches!(r, Err(Error::Cancelled)),
            "cancelled at {cut:?}: {}",
            r.map_or_else(|e| e.to_string(), |_| "the job ran to its end".into())
        );
        assert_eq!(after, 1, "nothing is sent after the cancel at {cut:?}");
        // Nothing the cancelled pass would have produced came before it: a cancel in the
        // forward pass leaves no method's scores, one in a backward pass not that method's.
        let methods_before = seen
            .iter()
            .filter(|ev| matches!(ev, StreamEvent::Method { .. }))
            .count();
        let expected = match (stage, method) {
            (Stage::Forward, _) | (_, Some(Method::Saliency)) => 0,
            _ => 2,
        };
        assert_eq!(methods_before, expected, "methods done before {cut:?}");
    }
}

//! Cancellation reaches a running pass within a second (the server's cancel is the sink
//! answering `Break`: a client gone, a Cancel press, or the time budget). The pass checks per
//! layer, forward and backward, so a job stops mid-pass instead of at its next result.

use crate::util::engine;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};
use tokenlens::{Error, ExplainRequest, Method};

const LIMIT: Duration = Duration::from_secs(1);

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

#[test]
fn cancel_reaches_a_running_pass_within_a_second() {
    let e = engine();
    let req = ExplainRequest {
        methods: vec![Method::Saliency, Method::Attnlrp, Method::CpLrp],
        ..ExplainRequest::new(long_prompt())
    };
    let start = Instant::now();
    e.explain(&req).expect("the whole job runs");
    let whole = start.elapsed();
    // Cancel during the forward pass, the first backward and the last.
    let mut worst = Duration::ZERO;
    for frac in [0.05, 0.4, 0.8] {
        let at = whole.mul_f64(frac);
        let start = Instant::now();
        let mut events_after = 0;
        let r = e.explain_streaming(&req, &mut |_| {
            if start.elapsed() >= at {
                events_after += 1;
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        let latency = start.elapsed().saturating_sub(at);
        assert!(matches!(r, Err(Error::Cancelled)), "at {at:?}: {r:?}");
        assert_eq!(events_after, 1, "nothing runs after the cancel");
        assert!(
            latency < LIMIT,
            "cancelled {at:?} into a {whole:?} job, stopped {latency:?} later"
        );
        worst = worst.max(latency);
    }
    eprintln!(
        "cancel latency: worst {:.0} ms over 3 points of a {:.2} s 3-method 700-token job",
        worst.as_secs_f64() * 1e3,
        whole.as_secs_f64()
    );
}

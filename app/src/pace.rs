//! How fast this server explains: seconds per token-pass (one token through one forward and
//! one backward pass, as `tokenlens::cost` counts them), learned per model from the
//! explanations it runs, so that the page can say how long a prompt will take before it runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Seconds per token-pass by model name: a running average over recent explanations.
#[derive(Clone, Default)]
pub struct Pace(Arc<Mutex<HashMap<String, f64>>>);

impl Pace {
    /// Notes that an explanation of `cost` token-passes on `model` took `seconds`.
    pub fn record(&self, model: &str, cost: u64, seconds: f64) {
        if cost == 0 || !seconds.is_finite() || seconds < 0.0 {
            return;
        }
        let per = seconds / cost as f64;
        if let Ok(mut paces) = self.0.lock() {
            paces
                .entry(model.to_string())
                .and_modify(|p| *p = 0.7 * *p + 0.3 * per)
                .or_insert(per);
        }
    }

    /// Seconds that `cost` token-passes take on `model`, once an explanation has run on it.
    pub fn seconds(&self, model: &str, cost: u64) -> Option<f64> {
        let paces = self.0.lock().ok()?;
        paces.get(model).map(|p| p * cost as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_per_model_and_follows_recent_runs() {
        let pace = Pace::default();
        assert_eq!(pace.seconds("m", 100), None, "nothing run yet");
        pace.record("m", 1000, 2.0);
        assert_eq!(pace.seconds("m", 500), Some(1.0));
        pace.record("m", 1000, 4.0);
        let s = pace.seconds("m", 1000).unwrap();
        assert!(s > 2.0 && s < 4.0, "{s}");
        pace.record("m", 0, 1.0);
        pace.record("m", 10, f64::NAN);
        assert_eq!(
            pace.seconds("m", 1000),
            Some(s),
            "nothing learned from no work"
        );
        assert_eq!(pace.seconds("other", 10), None);
    }
}

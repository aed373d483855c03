//! Memory for the weights of every model the server offers: each model is loaded dense while
//! its dense copy fits in what is left, kept as its file stores it otherwise (quantized or
//! 16-bit), and skipped (the model list says why) when even that does not fit.

use std::sync::Mutex;
use tokenlens::source::{self, ModelPath};

/// What is left of the weights' memory.
pub struct WeightBudget {
    remaining: Mutex<u64>,
}

impl WeightBudget {
    /// A budget of `total` bytes; None: the memory available now, less an eighth and 1 GiB.
    pub fn new(total: Option<u64>) -> Self {
        WeightBudget {
            remaining: Mutex::new(total.unwrap_or_else(source::memory_available)),
        }
    }

    /// The dense-weight limit to load `spec` with, or why it is not loaded: its weights, as
    /// small as they can be held, do not fit in what is left.
    pub fn admit(&self, spec: &str, dtype: tokenlens::DType) -> Result<u64, String> {
        let remaining = self.remaining();
        let need = source::resolve(spec)
            .and_then(|(_, path): (String, ModelPath)| source::min_weights_bytes(&path, dtype))
            .map_err(|e| e.to_string())?;
        if need > remaining {
            return Err(format!(
                "skipped: its weights need at least {:.1} GB and {:.1} GB of the server's weight \
                 memory are left (--max-memory)",
                need as f64 / 1e9,
                remaining as f64 / 1e9
            ));
        }
        // Dense only within the per-model default too, so one model does not take all.
        Ok(remaining.min(source::memory_budget()))
    }

    /// Takes a loaded model's weights off the budget.
    pub fn charge(&self, bytes: u64) {
        if let Ok(mut r) = self.remaining.lock() {
            *r = r.saturating_sub(bytes);
        }
    }

    fn remaining(&self) -> u64 {
        self.remaining.lock().map(|r| *r).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_over_the_budget_is_skipped_with_the_reason() {
        let budget = WeightBudget::new(Some(1_000));
        let err = budget
            .admit(tokenlens::source::DEFAULT_MODEL, tokenlens::DType::F32)
            .unwrap_err();
        assert!(
            err.starts_with("skipped") && err.contains("--max-memory"),
            "{err}"
        );
        let roomy = WeightBudget::new(Some(u64::MAX));
        let limit = roomy
            .admit(tokenlens::source::DEFAULT_MODEL, tokenlens::DType::F32)
            .unwrap();
        roomy.charge(limit);
        assert!(roomy.remaining() < u64::MAX);
    }
}

//! How much memory an explanation takes beyond the weights, and so the longest prompt that
//! fits: a prompt past it would be killed by the kernel's OOM killer mid-pass instead of
//! being refused with a message.
//!
//! Two terms, fitted on SmolLM2-135M (30 layers, hidden 576, MLP 1536, 9 heads) explaining
//! raw prompts of 500, 1000 and 2000 tokens with saliency + AttnLRP + CP-LRP (peak RSS 1.48,
//! 2.47 and 4.56 GB):
//! - activations kept for the backward pass grow with the prompt: about 1.9 MB a token there,
//!   8 floats per layer per hidden and MLP unit;
//! - attention probabilities grow with its square, per head: about 73 bytes per token², two
//!   layers' worth of f32 probabilities alive at a time in the backward pass.
//!
//! The estimate below doubles the quadratic term and adds a quarter to the linear one, so
//! that the limit errs towards refusing.

use super::config::Config;

/// Floats kept per layer per hidden and MLP unit and per token (measured: 8), with a margin.
const FLOATS_PER_UNIT: u64 = 10;
/// Layers whose attention probabilities are alive at once (measured: 2), with a margin.
const ATTENTION_LAYERS: u64 = 4;

/// Estimated bytes an explanation of `n` tokens needs beyond the weights.
pub fn explain_bytes(cfg: &Config, n: u64) -> u64 {
    let float = 4u64;
    let units = (cfg.hidden_size + cfg.intermediate_size) as u64;
    let linear = n
        .saturating_mul(cfg.num_hidden_layers as u64)
        .saturating_mul(units)
        .saturating_mul(FLOATS_PER_UNIT * float);
    let quadratic = n
        .saturating_mul(n)
        .saturating_mul(cfg.num_attention_heads as u64)
        .saturating_mul(ATTENTION_LAYERS * float);
    linear.saturating_add(quadratic)
}

/// The longest prompt whose explanation fits in `bytes` (at least 1).
pub fn max_prompt_tokens(cfg: &Config, bytes: u64) -> usize {
    // explain_bytes grows with n: bisect.
    let (mut lo, mut hi) = (1u64, 1u64 << 24);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if explain_bytes(cfg, mid) <= bytes {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    usize::try_from(lo).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smollm2() -> Config {
        serde_json::from_value(serde_json::json!({
            "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
            "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
            "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
        }))
        .unwrap()
    }

    #[test]
    fn the_estimate_covers_what_was_measured() {
        let cfg = smollm2();
        // Peak RSS less the weights and the process (0.5 GB, 0.15 GB) at 1000 and 2000 tokens.
        for (n, measured) in [(1000u64, 1.82e9), (2000, 3.91e9)] {
            let est = explain_bytes(&cfg, n) as f64;
            assert!(
                est >= measured && est < 2.0 * measured,
                "{n}: {est} vs {measured}"
            );
        }
    }

    #[test]
    fn the_limit_is_the_longest_prompt_that_fits() {
        let cfg = smollm2();
        let n = max_prompt_tokens(&cfg, 16 << 30);
        assert!(explain_bytes(&cfg, n as u64) <= 16 << 30);
        assert!(explain_bytes(&cfg, n as u64 + 1) > 16 << 30);
        assert!((4000..8192).contains(&n), "{n}");
        assert_eq!(max_prompt_tokens(&cfg, 0), 1);
    }
}

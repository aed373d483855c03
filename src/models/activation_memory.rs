//! How much memory an explanation takes beyond the weights, and so the longest prompt that
//! fits: a prompt past it would be killed by the kernel's OOM killer mid-pass instead of
//! being refused with a message.
//!
//! Two terms, fitted on SmolLM2-135M (30 layers, hidden 576, MLP 1536, 9 heads) explaining
//! raw prompts of 991, 1981 and 8191 tokens with the explicit backward (`decoder::backward`;
//! peak RSS less weights and process: 0.70, 1.46 and 9.0 GB):
//! - the forward pass's activations kept for the backward passes grow with the prompt:
//!   622 KB a token there, 2.45 floats per layer per hidden and MLP unit (the residual
//!   stream before and after each layer's attention block, q/k/v and the MLP's gate and up
//!   projections; Gemma 3 also its blocks' outputs before their post-norms);
//! - attention's (heads, n, n) buffers grow with its square: 58 bytes per token², 1.6 floats
//!   per head (the forward pass's scores and probabilities of one layer; the backward pass
//!   takes heads in groups of bounded size).
//!
//! The estimate below adds a fifth to the linear term and doubles the quadratic one, so that
//! the limit errs towards refusing. A Gated DeltaNet layer (Qwen3.5) keeps its own tensors
//! per token beside those (counted from what its backward reads, with the same fifth), and
//! its backward the update's states every 64 tokens for one layer at a time. Layers with
//! inputs of their own (Gemma 4) keep their block's tensors beside those, counted the same
//! way.

use super::config::Config;

/// Floats kept per layer per hidden and MLP unit and per token (measured: 2.45), with a
/// margin.
const FLOATS_PER_UNIT: u64 = 3;
/// Floats per head per token² alive at the peak (measured: 1.6), with a margin.
const ATTENTION_FLOATS: u64 = 3;

/// Estimated bytes an explanation of `n` tokens needs beyond the weights.
pub fn explain_bytes(cfg: &Config, n: u64) -> u64 {
    let float = 4u64;
    let units = (cfg.hidden_size + cfg.max_active_width()) as u64;
    let linear = n
        .saturating_mul(cfg.num_hidden_layers as u64)
        .saturating_mul(units)
        .saturating_mul(FLOATS_PER_UNIT * float);
    let quadratic = n
        .saturating_mul(n)
        .saturating_mul(cfg.num_attention_heads as u64)
        .saturating_mul(ATTENTION_FLOATS * float);
    let recurrent = match cfg.arch.delta_net {
        Some(d) => {
            let layers = (0..cfg.num_hidden_layers)
                .filter(|&l| cfg.is_linear(l))
                .count() as u64;
            let saved = n
                .saturating_mul(layers)
                .saturating_mul(d.saved_floats() as u64)
                .saturating_mul(float);
            let saved = saved.saturating_add(saved / 5);
            saved.saturating_add(d.state_floats(n).saturating_mul(float))
        }
        None => 0,
    };
    // Layers with inputs of their own (Gemma 4): each keeps its block's input and output
    // (hidden each), its gate and its input (width each); the pass keeps every layer's input
    // and its projection, and the gradient of the wider input rows.
    let own_inputs = match cfg.arch.per_layer_input {
        Some(width) => {
            let (h, w, l) = (
                cfg.hidden_size as u64,
                width as u64,
                cfg.num_hidden_layers as u64,
            );
            n.saturating_mul(l.saturating_mul(2 * h + 2 * w) + 3 * l * w)
                .saturating_mul(float)
        }
        None => 0,
    };
    linear
        .saturating_add(quadratic)
        .saturating_add(recurrent)
        .saturating_add(own_inputs)
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
        // Peak RSS less the weights and the process (0.5 GB, 0.15 GB).
        for (n, measured) in [(991u64, 0.70e9), (1981, 1.46e9), (8191, 9.0e9)] {
            let est = explain_bytes(&cfg, n) as f64;
            assert!(
                est >= measured && est < 2.0 * measured,
                "{n}: {est} vs {measured}"
            );
        }
    }

    /// Qwen3.5-4B's shape: its 24 DeltaNet layers (of 32) keep ≈ 37k floats per token each
    /// beside the common term, so the estimate grows by about that.
    #[test]
    fn deltanet_layers_count_their_saved_tensors() {
        let mut cfg: Config = serde_json::from_value(serde_json::json!({
            "hidden_size": 2560, "intermediate_size": 9216, "num_hidden_layers": 32,
            "num_attention_heads": 16, "num_key_value_heads": 4, "vocab_size": 248320,
            "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "rope_theta": 1e7,
            "head_dim": 256,
        }))
        .unwrap();
        let dense = explain_bytes(&cfg, 1000);
        cfg.arch.delta_net = Some(crate::models::config::DeltaNet {
            key_heads: 16,
            value_heads: 32,
            key_dim: 128,
            value_dim: 128,
            kernel: 4,
            layout: Default::default(),
        });
        cfg.arch.linear_layers = (0..32).map(|i| (i + 1) % 4 != 0).collect();
        let extra = (explain_bytes(&cfg, 1000) - dense) as f64;
        let floats = 8192 + 4096 + 8192 + 4 * 4096 + 96;
        let want = 1000.0 * 24.0 * floats as f64 * 4.0 * 1.2;
        assert!((extra - want).abs() / want < 0.05, "{extra} vs {want}");
    }

    #[test]
    fn the_limit_is_the_longest_prompt_that_fits() {
        let cfg = smollm2();
        let n = max_prompt_tokens(&cfg, 16 << 30);
        assert!(explain_bytes(&cfg, n as u64) <= 16 << 30);
        assert!(explain_bytes(&cfg, n as u64 + 1) > 16 << 30);
        assert!((8192..12000).contains(&n), "{n}");
        assert_eq!(max_prompt_tokens(&cfg, 0), 1);
    }
}

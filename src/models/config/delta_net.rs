//! A Gated DeltaNet layer's shape (Qwen3.5's linear attention) and how a file lays out its
//! tensors.

use super::check::Expect;

/// A Gated DeltaNet layer's shape: `key_heads` heads of keys and queries of width `key_dim`,
/// `value_heads` of values of width `value_dim` (a multiple of the key heads: each key head
/// serves `value_heads / key_heads` of them, which ones as `layout` says), and a causal
/// depthwise convolution of `kernel` taps over q, k and v.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaNet {
    /// `linear_num_key_heads` (GGUF `ssm.group_count`).
    pub key_heads: usize,
    /// `linear_num_value_heads` (GGUF `ssm.time_step_rank`).
    pub value_heads: usize,
    /// `linear_key_head_dim` (GGUF `ssm.state_size`).
    pub key_dim: usize,
    /// `linear_value_head_dim` (GGUF `ssm.inner_size / ssm.time_step_rank`).
    pub value_dim: usize,
    /// `linear_conv_kernel_dim` (GGUF `ssm.conv_kernel`).
    pub kernel: usize,
    /// How the file orders the value heads and stores the decay rate.
    pub layout: DeltaNetLayout,
}

/// How a file lays out a Gated DeltaNet's value heads and decay rate. The two describe the
/// same layer: the value heads are a permutation of each other, consistently through every
/// tensor that has them (the values' rows of `in_proj_qkv` and of the convolution,
/// `in_proj_z`, `in_proj_b`, `in_proj_a`, `A_log`, `dt_bias`, `out_proj`'s columns), so the
/// model reads either as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeltaNetLayout {
    /// Hugging Face's: value head `h` reads key head `h / (value_heads / key_heads)` (each key
    /// head's value heads consecutive), the decay's rate as `A_log` (rate `exp(A_log)`), the
    /// convolution `(channels, 1, kernel)`.
    #[default]
    HuggingFace,
    /// llama.cpp's converter's: value head `h` reads key head `h mod key_heads` (tiled, so
    /// that ggml repeats the keys), the rate stored negated as `ssm_a = −exp(A_log)`, the
    /// convolution `(channels, kernel)`.
    LlamaCpp,
}

impl DeltaNet {
    /// Channels of the convolution: q, k and v side by side.
    pub fn channels(&self) -> usize {
        2 * self.key_heads * self.key_dim + self.value_heads * self.value_dim
    }

    /// Floats a layer keeps per token for its backward (`SavedDeltaNet`): the convolution's
    /// output, q and k before their norms and per value head after, v, the gates' inputs,
    /// the update's output, its norm and the output gate's input.
    pub fn saved_floats(&self) -> usize {
        let (kv, vv) = (
            self.key_heads * self.key_dim,
            self.value_heads * self.value_dim,
        );
        self.channels()
            + 2 * kv
            + 2 * self.value_heads * self.key_dim
            + 4 * vv
            + 3 * self.value_heads
    }

    /// Floats of the states a layer's backward keeps at once for `n` tokens (one per head
    /// every 64 tokens, `models::gated_delta`).
    pub fn state_floats(&self, n: u64) -> u64 {
        (n / 64 + 1) * (self.value_heads * self.key_dim * self.value_dim) as u64
    }

    /// The layer's tensors under `p` (`model.layers.0.linear_attn`) against its shape.
    pub(super) fn check_shapes(
        &self,
        expect: Expect<'_>,
        p: &str,
        h: usize,
    ) -> std::result::Result<(), String> {
        let (c, v, hv) = (
            self.channels(),
            self.value_heads * self.value_dim,
            self.value_heads,
        );
        let qkv = "2 × linear_num_key_heads × linear_key_head_dim + linear_num_value_heads × \
                   linear_value_head_dim";
        let values = "linear_num_value_heads × linear_value_head_dim";
        expect(
            &format!("{p}.in_proj_qkv.weight"),
            &[c, h],
            &format!("{qkv}, hidden_size"),
        )?;
        expect(
            &format!("{p}.in_proj_z.weight"),
            &[v, h],
            &format!("{values}, hidden_size"),
        )?;
        for n in ["in_proj_b", "in_proj_a"] {
            let f = "linear_num_value_heads, hidden_size";
            expect(&format!("{p}.{n}.weight"), &[hv, h], f)?;
        }
        let conv = format!("{p}.conv1d.weight");
        match self.layout {
            DeltaNetLayout::HuggingFace => expect(
                &conv,
                &[c, 1, self.kernel],
                &format!("{qkv}, 1, linear_conv_kernel_dim"),
            )?,
            DeltaNetLayout::LlamaCpp => expect(
                &conv,
                &[c, self.kernel],
                &format!("{qkv}, linear_conv_kernel_dim"),
            )?,
        }
        for n in ["A_log", "dt_bias"] {
            expect(&format!("{p}.{n}"), &[hv], "linear_num_value_heads")?;
        }
        expect(
            &format!("{p}.norm.weight"),
            &[self.value_dim],
            "linear_value_head_dim",
        )?;
        expect(
            &format!("{p}.out_proj.weight"),
            &[h, v],
            &format!("hidden_size, {values}"),
        )
    }
}

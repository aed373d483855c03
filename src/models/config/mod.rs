//! A decoder's hyper-parameters ([`Config`], from `config.json` or GGUF metadata), where its
//! weights come from ([`WeightSource`]), and the check that the two agree before any large
//! allocation: a model file whose metadata disagrees with its tensors is refused with the
//! field named, never a panic, a division by zero or an out-of-memory abort.

use super::gated::Activation;
use super::rope_scaling::RopeScaling;
use candle_core::Tensor;
use serde::Deserialize;

mod delta_net;
pub use delta_net::{DeltaNet, DeltaNetLayout};

/// Hyper-parameters, with `config.json`'s field names where they have one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Residual stream width.
    pub hidden_size: usize,
    /// MLP width (absent where every layer has sparse experts: Qwen3.5-MoE).
    #[serde(default)]
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub num_key_value_heads: usize,
    /// Per-head width; `hidden_size / num_attention_heads` when absent.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Context length.
    pub max_position_embeddings: usize,
    /// lm_head shares the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// RoPE pairs adjacent dimensions (GGUF's permuted Q/K) instead of the two halves
    /// (Hugging Face checkpoints). Not a `config.json` field.
    #[serde(skip)]
    pub rope_interleaved: bool,
    /// RoPE's scaling (`rope_scaling` in `config.json`; llama.cpp's `rope_freqs.weight`,
    /// `rope_factors_{short,long}.weight` and `rope.scaling.*` keys).
    #[serde(skip)]
    pub rope: RopeScaling,
    /// The width of each head that RoPE rotates, when it rotates only part of it (Phi-4-mini:
    /// `partial_rotary_factor` 0.75); the rest passes through. Not a `config.json` field.
    #[serde(skip)]
    pub rotary_dim: Option<usize>,
    /// Family traits the families' modules set (not `config.json` fields).
    #[serde(skip)]
    pub arch: Arch,
}

/// What sets a family's decoder apart from Llama's.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Arch {
    /// q, k and v projections have biases (Qwen2).
    pub attention_bias: bool,
    /// RMSNorm on q and k before RoPE: each head's (Qwen3, Gemma 3) or all heads' at once
    /// (OLMo 2).
    pub qk_norm: Option<QkNorm>,
    /// Norm weights are stored as w and multiply by (1 + w) (Gemma, Hugging Face layout;
    /// llama.cpp stores 1 + w).
    pub norm_plus_one: bool,
    /// Where a layer's norms sit around its two blocks.
    pub norms: NormPlacement,
    /// Input embeddings multiplied by this (Gemma: √hidden).
    pub embed_scale: Option<f64>,
    /// The MLP's activation.
    pub activation: Activation,
    /// Attention scores scaled by `query_pre_attn_scalar^-½` instead of `head_dim^-½`.
    pub query_pre_attn_scalar: Option<f64>,
    /// Per layer: a sliding attention window (local layers), or none (global).
    pub layer_windows: Vec<Option<usize>>,
    /// Per layer: whether it rotates q and k (SmolLM3 leaves every fourth layer without
    /// RoPE); layers past the end of the list (all, when it is empty) do.
    pub layer_rope: Vec<bool>,
    /// RoPE base of the sliding-window layers, when it differs (Gemma 3: 10,000).
    pub rope_local_theta: Option<f64>,
    /// `logits = c·tanh(logits / c)` (Gemma 2/3 when configured).
    pub final_logit_softcapping: Option<f64>,
    /// Queries multiplied by a factor that grows with position past a length (Llama 4's
    /// attention temperature; Ministral 3).
    pub query_temperature: Option<QueryTemperature>,
    /// Sparse experts in place of the MLP in some layers (Qwen3-MoE).
    pub experts: Option<Experts>,
    /// Gated DeltaNet layers in place of attention where `linear_layers` says (Qwen3.5).
    pub delta_net: Option<DeltaNet>,
    /// Per layer: whether it is a Gated DeltaNet layer (the rest attend).
    pub linear_layers: Vec<bool>,
    /// Attention's merged heads multiplied by σ of a gate that `q_proj` gives with the
    /// queries (Qwen3.5: each head's queries, then its gate).
    pub attention_output_gate: bool,
    /// The head width of the global (full-attention) layers, where it differs from the
    /// sliding-window layers' `head_dim` (Gemma 4: 512 against 256).
    pub global_head_dim: Option<usize>,
    /// The global layers' own count of key/value heads, where it differs from
    /// `num_key_value_heads` (Gemma 4's 26B and 31B: `num_global_key_value_heads`).
    pub global_kv_heads: Option<usize>,
    /// The global layers project no values: their values are their keys' projection, taken
    /// before the key norm and RoPE (Gemma 4's `attention_k_eq_v`).
    pub global_values_from_keys: bool,
    /// Values RMS-normed per head, without a weight, before attention (Gemma 4's `v_norm`).
    pub value_norm: bool,
    /// Each layer's output, the whole residual stream, multiplied by a number the layer
    /// stores (Gemma 4's `layer_scalar`).
    pub layer_scalar: bool,
    /// The width of each layer's own input per token, where the model has them (Gemma 4's
    /// per-layer embeddings, `hidden_size_per_layer_input`): a token's row of a second
    /// embedding table and a projection of its input embedding, added to the stream after
    /// each layer's MLP through a gated block.
    pub per_layer_input: Option<usize>,
    /// Per layer: the earlier layer whose final keys and values it attends to instead of
    /// its own (Gemma 4's shared layers: no key or value projections of their own); layers
    /// past the end of the list (all, when it is empty) have their own.
    pub kv_from: Vec<Option<usize>>,
    /// Per layer: its MLP's width, where layers differ (Gemma 4's shared layers are twice as
    /// wide in E2B); layers past the end of the list take `intermediate_size`.
    pub mlp_widths: Vec<usize>,
}

/// A mixture of experts: a router picks `per_token` of `count` gated MLPs of width `width`
/// for each token and sums their outputs weighted by its probabilities.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Experts {
    /// Experts per layer (`num_experts`).
    pub count: usize,
    /// Experts each token is routed to (`num_experts_per_tok`).
    pub per_token: usize,
    /// Each expert's hidden width (`moe_intermediate_size`).
    pub width: usize,
    /// The chosen experts' probabilities renormalised to sum to 1 (`norm_topk_prob`).
    pub normalize: bool,
    /// Per layer: whether it has the experts (the rest keep a dense MLP of
    /// `intermediate_size`: `mlp_only_layers`, `decoder_sparse_step`).
    pub sparse: Vec<bool>,
    /// The width of a shared expert beside the routed ones, where the model has one
    /// (`shared_expert_intermediate_size`): a gated MLP every token runs, its output scaled
    /// by σ of `shared_expert_gate`, a number per token.
    pub shared: Option<usize>,
    /// Gemma 4 (26B-A4B): a dense MLP of the layer's `mlp_width` runs beside the experts on
    /// the un-normed stream, each with norms of its own before and after; the router reads
    /// the stream through a weightless RMSNorm times a stored scale and `hidden^-½`, and each
    /// chosen expert's weight is multiplied by a stored number of its own
    /// (`decoder/dense_and_experts.rs`).
    pub beside_dense: bool,
}

impl Experts {
    /// `count` experts in every layer, `per_token` chosen, each of width `width`, their
    /// weights renormalised; no shared expert.
    pub fn in_every_layer(layers: usize, [count, per_token, width]: [usize; 3]) -> Self {
        Experts {
            count,
            per_token,
            width,
            normalize: true,
            sparse: vec![true; layers],
            shared: None,
            beside_dense: false,
        }
    }
}

/// Llama 4's attention temperature: the query at position `p` is multiplied by
/// `1 + beta · ln(1 + ⌊p / length⌋)` (transformers' `get_llama_4_attn_scale`; llama.cpp's
/// `attention.temperature_scale` with the original context as the length). 1 below `length`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryTemperature {
    /// The factor's slope.
    pub beta: f64,
    /// Positions per step (the pre-training context).
    pub length: usize,
}

impl QueryTemperature {
    /// The factor at position `p`.
    pub fn at(&self, p: usize) -> f64 {
        1.0 + self.beta * (1.0 + (p / self.length.max(1)) as f64).ln()
    }
}

/// Where a layer's RMSNorms sit around its attention and MLP blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NormPlacement {
    /// Before each block (Llama): `input_layernorm`, then `post_attention_layernorm` before
    /// the MLP.
    #[default]
    Pre,
    /// Before and after each block (Gemma 3's four): `input_layernorm`,
    /// `post_attention_layernorm`, `pre_feedforward_layernorm`, `post_feedforward_layernorm`.
    Sandwich,
    /// After each block only (OLMo 2): `post_attention_layernorm`,
    /// `post_feedforward_layernorm`.
    Post,
}

impl NormPlacement {
    /// The norms' weight names in a layer: (attention's pre and post, the MLP's pre and post).
    pub fn names(self) -> [Option<&'static str>; 4] {
        match self {
            NormPlacement::Pre => [
                Some("input_layernorm"),
                None,
                Some("post_attention_layernorm"),
                None,
            ],
            NormPlacement::Sandwich => [
                Some("input_layernorm"),
                Some("post_attention_layernorm"),
                Some("pre_feedforward_layernorm"),
                Some("post_feedforward_layernorm"),
            ],
            NormPlacement::Post => [
                None,
                Some("post_attention_layernorm"),
                None,
                Some("post_feedforward_layernorm"),
            ],
        }
    }
}

/// What a q/k RMSNorm normalizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNorm {
    /// Each head's `head_dim` values (Qwen3, Gemma 3).
    PerHead,
    /// The whole projection, all heads together (OLMo 2).
    AllHeads,
}

fn default_rope_theta() -> f64 {
    10_000.0
}

impl Config {
    /// The width of each head that RoPE rotates in the global layers (their table's width).
    pub fn rotary_dim(&self) -> usize {
        self.rotary_dim
            .unwrap_or_else(|| self.arch.global_head_dim.unwrap_or_else(|| self.head_dim()))
    }

    /// The rotated width of the sliding-window layers' own table (Gemma 3, 4, OLMo 3): their
    /// whole head where the global layers' heads are wider.
    pub fn local_rotary_dim(&self) -> usize {
        match self.arch.global_head_dim {
            Some(_) => self.head_dim(),
            None => self.rotary_dim(),
        }
    }

    /// Layer `layer`'s head width: `head_dim`, or the global layers' own where they have one.
    pub fn head_dim_at(&self, layer: usize) -> usize {
        match self.arch.global_head_dim {
            Some(g) if self.is_global(layer) => g,
            _ => self.head_dim(),
        }
    }

    /// Layer `layer`'s count of key/value heads: `num_key_value_heads`, or the global layers'
    /// own where they have one.
    pub fn kv_heads_at(&self, layer: usize) -> usize {
        match self.arch.global_kv_heads {
            Some(k) if self.is_global(layer) => k,
            _ => self.num_key_value_heads,
        }
    }

    /// Whether layer `layer`'s values are its keys' projection (no value projection).
    pub fn values_from_keys(&self, layer: usize) -> bool {
        self.arch.global_values_from_keys && self.is_global(layer)
    }

    /// Whether layer `layer` attends to every position before it (no sliding window).
    pub fn is_global(&self, layer: usize) -> bool {
        self.arch
            .layer_windows
            .get(layer)
            .copied()
            .flatten()
            .is_none()
    }

    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        // 0 for zero heads, which `check` refuses.
        self.head_dim.unwrap_or_else(|| {
            self.hidden_size
                .checked_div(self.num_attention_heads)
                .unwrap_or(0)
        })
    }

    /// Whether layer `layer` is a Gated DeltaNet layer (no attention).
    pub fn is_linear(&self, layer: usize) -> bool {
        self.arch.delta_net.is_some()
            && self.arch.linear_layers.get(layer).copied().unwrap_or(false)
    }

    /// Layer `layer`'s experts, where it has them.
    pub fn experts_at(&self, layer: usize) -> Option<&Experts> {
        self.arch
            .experts
            .as_ref()
            .filter(|e| e.sparse.get(layer).copied().unwrap_or(false))
    }

    /// Layer `layer`'s dense MLP width: its own where layers differ, else
    /// `intermediate_size`.
    pub fn mlp_width(&self, layer: usize) -> usize {
        self.arch
            .mlp_widths
            .get(layer)
            .copied()
            .unwrap_or(self.intermediate_size)
    }

    /// The earlier layer whose keys and values layer `layer` reads, where it shares them.
    pub fn kv_from(&self, layer: usize) -> Option<usize> {
        self.arch.kv_from.get(layer).copied().flatten()
    }

    /// Layer `layer`'s MLP neurons: its MLP's width, or every expert's units side by side
    /// (neuron `e · width + j` is unit `j` of expert `e`), the shared expert's or the dense MLP's beside them last.
    pub fn neurons(&self, layer: usize) -> usize {
        match self.experts_at(layer) {
            Some(e) => e.count * e.width + self.units_every_token(layer, e),
            None => self.mlp_width(layer),
        }
    }

    /// The units every token computes beside its chosen experts: a shared expert's, or
    /// the dense MLP's beside them.
    fn units_every_token(&self, layer: usize, e: &Experts) -> usize {
        let dense = match e.beside_dense {
            true => self.mlp_width(layer),
            false => 0,
        };
        e.shared.unwrap_or(0) + dense
    }

    /// The most MLP neurons of any layer.
    pub fn max_neurons(&self) -> usize {
        self.most(Self::neurons)
    }

    /// The largest of `f` over the layers.
    fn most(&self, f: impl Fn(&Self, usize) -> usize) -> usize {
        (0..self.num_hidden_layers)
            .map(|l| f(self, l))
            .max()
            .unwrap_or(self.intermediate_size)
    }

    /// The MLP units a token computes in layer `layer`: `intermediate_size`, or its chosen
    /// experts' widths.
    pub fn active_width(&self, layer: usize) -> usize {
        match self.experts_at(layer) {
            Some(e) => e.per_token * e.width + self.units_every_token(layer, e),
            None => self.mlp_width(layer),
        }
    }

    /// The most units a token computes in any layer's MLP.
    pub fn max_active_width(&self) -> usize {
        self.most(Self::active_width)
    }

    /// Elements of the decoder layers' matrices each token multiplies once per pass
    /// (attention's four projections, a Gated DeltaNet's five, the MLP's three, or the chosen
    /// experts', the router and a shared expert's gate; the layers' own inputs' projection,
    /// gates and projections back), embeddings excluded.
    pub fn layer_matrix_params(&self) -> u64 {
        let h = self.hidden_size as u64;
        let attention = |l: usize| {
            let d = self.head_dim_at(l) as u64;
            let q = self.num_attention_heads as u64 * d;
            // A layer that reads an earlier one's keys and values projects none; one whose
            // values are its keys projects keys only.
            let kv = match self.kv_from(l) {
                Some(_) => 0,
                None => self.kv_heads_at(l) as u64 * d,
            };
            let projections = if self.values_from_keys(l) { 1 } else { 2 };
            // Queries and, where gated, as many gates; the output projection reads the
            // queries'.
            let gates = if self.arch.attention_output_gate {
                q
            } else {
                0
            };
            h * (q + gates + projections * kv) + q * h
        };
        let delta_net = self.arch.delta_net.map_or(0, |n| {
            let values = (n.value_heads * n.value_dim) as u64;
            // in_proj_qkv, in_proj_z, in_proj_b and in_proj_a; out_proj.
            h * (n.channels() as u64 + values + 2 * n.value_heads as u64) + values * h
        });
        // A layer's own input's gate and projection (Gemma 4).
        let own = self.arch.per_layer_input.map_or(0, |w| 2 * h * w as u64);
        (0..self.num_hidden_layers)
            .map(|l| {
                let mixer = if self.is_linear(l) {
                    delta_net
                } else {
                    attention(l)
                };
                let router = self
                    .experts_at(l)
                    .map_or(0, |e| (e.count as u64 + u64::from(e.shared.is_some())) * h);
                mixer + router + 3 * h * self.active_width(l) as u64 + own
            })
            .sum::<u64>()
            // Every layer's own input projected from the input embedding (Gemma 4).
            + own * self.num_hidden_layers as u64 / 2
    }
}

/// Source of named weights (Hugging Face names), dequantized.
pub trait WeightSource {
    /// The tensor stored under this Hugging Face name, e.g. `model.layers.0.self_attn.q_proj.weight`.
    fn get(&mut self, name: &str) -> crate::Result<Tensor>;
    /// A weight matrix under this name: dense, or kept as stored when the source was opened
    /// to keep weights in their file's form.
    fn get_matrix(&mut self, name: &str) -> crate::Result<super::weight::Weight> {
        Ok(super::weight::Weight::dense(self.get(name)?))
    }
    /// Whether a tensor of that name exists.
    fn contains(&self, name: &str) -> bool;
    /// The shape of the tensor stored under this name, `(rows, columns)` for a matrix, read
    /// from the file's header without loading it.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// Bytes every tensor takes once dense in `dtype`.
    fn dense_bytes(&self, dtype: candle_core::DType) -> u64;
    /// From now on, hand out weight matrices as stored in the file, to be dequantized per
    /// use; returns the stored formats and their size in bytes, or None when this source
    /// cannot (it then stays dense).
    fn keep_stored(&mut self) -> Option<(String, u64)> {
        None
    }
    /// The name the file itself uses for a tensor, for messages (GGUF: `blk.0.attn_q.weight`).
    fn file_name(&self, name: &str) -> String {
        name.to_string()
    }
}

mod check;
pub use check::{mlp_names, MAX_CONTEXT, MAX_LAYERS};

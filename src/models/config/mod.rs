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

    /// Layer `layer`'s MLP neurons: `intermediate_size`, or every expert's units side by side
    /// (neuron `e · width + j` is unit `j` of expert `e`), the shared expert's last.
    pub fn neurons(&self, layer: usize) -> usize {
        match self.experts_at(layer) {
            Some(e) => e.count * e.width + e.shared.unwrap_or(0),
            None => self.intermediate_size,
        }
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
            Some(e) => e.per_token * e.width + e.shared.unwrap_or(0),
            None => self.intermediate_size,
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
            let kv = self.num_key_value_heads as u64 * d;
            // Queries and, where gated, as many gates; the output projection reads the
            // queries'.
            let gates = if self.arch.attention_output_gate {
                q
            } else {
                0
            };
            h * (q + gates + 2 * kv) + q * h
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

/// The longest context a model may declare. The RoPE tables are built for all of it at load
/// (`head_dim × 4` bytes per position and table, f32: 512 MB at this length for a head width
/// of 128; Gemma 3 builds two tables).
pub const MAX_CONTEXT: usize = 1 << 20;

/// The most decoder layers a model may declare (the largest open models have about 130):
/// per-layer tables are sized by it before any tensor is looked at.
pub const MAX_LAYERS: usize = 1024;

impl Config {
    /// Checks the hyper-parameters against each other and against the weights' shapes (read
    /// from the file's header), so that nothing is allocated for a model that cannot run.
    /// The message names the field at fault.
    pub fn validate(&self, w: &dyn WeightSource) -> std::result::Result<(), String> {
        self.check()?;
        self.check_shapes(w)
    }

    /// Checks the hyper-parameters on their own: what the families' set-up code relies on
    /// (no zero head count to divide by, no layer count to size a table by that is absurd).
    pub fn check(&self) -> std::result::Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            (
                "max_position_embeddings (context length)",
                self.max_position_embeddings,
            ),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(format!("{field} is 0"));
            }
        }
        if self.head_dim == Some(0) {
            return Err("head_dim is 0".into());
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {} (and head_dim is not given)",
                self.hidden_size, self.num_attention_heads
            ));
        }
        let hd = self.head_dim();
        for (field, d) in [
            ("head_dim", Some(hd)),
            ("global_head_dim", self.arch.global_head_dim),
        ] {
            match d {
                Some(0) => return Err(format!("{field} is 0")),
                Some(d) if !d.is_multiple_of(2) => {
                    return Err(format!(
                        "{field} {d} is odd; rotary embeddings need an even width"
                    ))
                }
                _ => {}
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if self.max_position_embeddings > MAX_CONTEXT {
            return Err(format!(
                "max_position_embeddings (context length) {} is beyond the {MAX_CONTEXT} supported",
                self.max_position_embeddings
            ));
        }
        for (field, v) in [
            ("rms_norm_eps", self.rms_norm_eps),
            ("rope_theta", self.rope_theta),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{field} is {v}; it must be a positive number"));
            }
        }
        if self.num_hidden_layers > MAX_LAYERS {
            return Err(format!(
                "num_hidden_layers (block_count) {} is beyond the {MAX_LAYERS} supported",
                self.num_hidden_layers
            ));
        }
        let rd = self.rotary_dim();
        let widest = self.arch.global_head_dim.unwrap_or(hd);
        if rd == 0 || rd > widest || !rd.is_multiple_of(2) {
            return Err(format!(
                "the rotated width {rd} (partial_rotary_factor, rope.dimension_count) must be \
                 even, positive and at most the head width {widest}"
            ));
        }
        self.rope.check(rd)?;
        if let Some(e) = &self.arch.experts {
            if e.shared == Some(0) {
                return Err("shared_expert_intermediate_size is 0".into());
            }
            if e.count == 0 || e.width == 0 || e.per_token == 0 || e.per_token > e.count {
                return Err(format!(
                    "experts: {} chosen of {} (num_experts_per_tok, num_experts), each of width \
                     {} (moe_intermediate_size); all must be positive, the chosen at most all",
                    e.per_token, e.count, e.width
                ));
            }
        }
        if let Some(t) = &self.arch.query_temperature {
            if t.length == 0 || !t.beta.is_finite() {
                return Err(format!(
                    "attention temperature: beta {} over a length of {} positions",
                    t.beta, t.length
                ));
            }
        }
        Ok(())
    }

    fn check_shapes(&self, w: &dyn WeightSource) -> std::result::Result<(), String> {
        let (h, ffn) = (self.hidden_size, self.intermediate_size);
        let expect =
            |name: &str, want: &[usize], fields: &str| -> std::result::Result<(), String> {
                match w.shape(name) {
                    None => Err(format!("tensor {} is missing", w.file_name(name))),
                    Some(got) if got != want => Err(format!(
                        "tensor {} has shape {got:?}, but {fields} say {want:?}",
                        w.file_name(name)
                    )),
                    Some(_) => Ok(()),
                }
            };
        expect(
            "model.embed_tokens.weight",
            &[self.vocab_size, h],
            "vocab_size × hidden_size",
        )?;
        if w.contains("lm_head.weight") {
            expect(
                "lm_head.weight",
                &[self.vocab_size, h],
                "vocab_size × hidden_size",
            )?;
        }
        for i in 0..self.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let a = &self.arch;
            let hd = self.head_dim_at(i);
            let (q, kv) = (self.num_attention_heads * hd, self.num_key_value_heads * hd);
            if let Some(d) = a.delta_net.filter(|_| self.is_linear(i)) {
                d.check_shapes(&expect, &format!("{p}.linear_attn"), h)?;
            }
            let heads = "num_attention_heads × head_dim, hidden_size";
            let kv_heads = "num_key_value_heads × head_dim, hidden_size";
            let gated = "2 × num_attention_heads × head_dim (queries and gates), hidden_size";
            if self.is_linear(i) {
                // No attention in this layer: its MLP and norms below.
            } else if a.attention_output_gate {
                expect(&format!("{p}.self_attn.q_proj.weight"), &[2 * q, h], gated)?;
            } else {
                expect(&format!("{p}.self_attn.q_proj.weight"), &[q, h], heads)?;
            }
            if !self.is_linear(i) {
                expect(&format!("{p}.self_attn.k_proj.weight"), &[kv, h], kv_heads)?;
                expect(&format!("{p}.self_attn.v_proj.weight"), &[kv, h], kv_heads)?;
                expect(
                    &format!("{p}.self_attn.o_proj.weight"),
                    &[h, q],
                    "hidden_size, num_attention_heads × head_dim",
                )?;
            }
            match self.experts_at(i) {
                Some(e) => {
                    let router = "num_experts, hidden_size";
                    expect(&format!("{p}.mlp.gate.weight"), &[e.count, h], router)?;
                    for x in 0..e.count {
                        let names = mlp_names(&format!("{p}.mlp.experts.{x}"));
                        check_mlp(&expect, names, (e.width, h), "moe_intermediate_size")?;
                    }
                    if let Some(width) = e.shared {
                        let names = mlp_names(&format!("{p}.mlp.shared_expert"));
                        let field = "shared_expert_intermediate_size";
                        check_mlp(&expect, names, (width, h), field)?;
                        // A row, or (llama.cpp) a vector.
                        let gate = format!("{p}.mlp.shared_expert_gate.weight");
                        if w.shape(&gate) != Some(vec![h]) {
                            expect(&gate, &[1, h], "1, hidden_size")?;
                        }
                    }
                }
                None if ffn == 0 => {
                    return Err(format!(
                        "layer {i} has a dense MLP, but intermediate_size is 0 or missing"
                    ))
                }
                None => {
                    let names = mlp_names(&format!("{p}.mlp"));
                    check_mlp(&expect, names, (ffn, h), "intermediate_size")?;
                }
            }
            // Vectors too: one of the wrong length would be broadcast against the wrong
            // axis, or read past its end, in the first pass.
            for n in a.norms.names().into_iter().flatten() {
                expect(&format!("{p}.{n}.weight"), &[h], "hidden_size")?;
            }
            if a.layer_scalar {
                expect(&format!("{p}.layer_scalar"), &[1], "one number per layer")?;
            }
            if self.is_linear(i) {
                continue;
            }
            match a.qk_norm {
                Some(QkNorm::PerHead) => {
                    for n in ["q_norm", "k_norm"] {
                        expect(&format!("{p}.self_attn.{n}.weight"), &[hd], "head_dim")?;
                    }
                }
                Some(QkNorm::AllHeads) => {
                    let heads = "num_attention_heads × head_dim";
                    expect(&format!("{p}.self_attn.q_norm.weight"), &[q], heads)?;
                    let kv_heads = "num_key_value_heads × head_dim";
                    expect(&format!("{p}.self_attn.k_norm.weight"), &[kv], kv_heads)?;
                }
                None => {}
            }
            if a.attention_bias {
                expect(
                    &format!("{p}.self_attn.q_proj.bias"),
                    &[q],
                    "num_attention_heads × head_dim",
                )?;
                for n in ["k_proj", "v_proj"] {
                    expect(
                        &format!("{p}.self_attn.{n}.bias"),
                        &[kv],
                        "num_key_value_heads × head_dim",
                    )?;
                }
            }
        }
        expect("model.norm.weight", &[h], "hidden_size")?;
        self.check_per_layer_inputs(w, &expect)
    }

    /// Gemma 4's per-layer inputs: the second embedding table, with a row for every token
    /// id, the projection and norm that make each layer's share of the input embedding, and
    /// each layer's gated block.
    fn check_per_layer_inputs(
        &self,
        w: &dyn WeightSource,
        expect: Expect<'_>,
    ) -> std::result::Result<(), String> {
        let Some(width) = self.arch.per_layer_input else {
            return Ok(());
        };
        let (h, all) = (self.hidden_size, self.num_hidden_layers * width);
        let table = "model.embed_tokens_per_layer.weight";
        match w.shape(table).as_deref() {
            Some(&[rows, cols]) if rows >= self.vocab_size && cols == all => {}
            Some(got) => {
                return Err(format!(
                    "tensor {} has shape {got:?}, but it needs a row for each of the \
                     {} token ids (vocab_size) of num_hidden_layers × \
                     hidden_size_per_layer_input = {all} values",
                    w.file_name(table),
                    self.vocab_size
                ))
            }
            None => return Err(format!("tensor {} is missing", w.file_name(table))),
        }
        let fields = "num_hidden_layers × hidden_size_per_layer_input, hidden_size";
        expect("model.per_layer_model_projection.weight", &[all, h], fields)?;
        let field = "hidden_size_per_layer_input";
        expect("model.per_layer_projection_norm.weight", &[width], field)?;
        for i in 0..self.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let fields = "hidden_size_per_layer_input, hidden_size";
            expect(
                &format!("{p}.per_layer_input_gate.weight"),
                &[width, h],
                fields,
            )?;
            let fields = "hidden_size, hidden_size_per_layer_input";
            expect(
                &format!("{p}.per_layer_projection.weight"),
                &[h, width],
                fields,
            )?;
            expect(
                &format!("{p}.post_per_layer_input_norm.weight"),
                &[h],
                "hidden_size",
            )?;
        }
        Ok(())
    }
}

/// A gated MLP's three matrices under prefix `p` (`….mlp`, `….mlp.experts.3`).
pub fn mlp_names(p: &str) -> [String; 3] {
    ["gate_proj", "up_proj", "down_proj"].map(|m| format!("{p}.{m}.weight"))
}

/// Checks one tensor's shape: its name, the shape the fields give, the fields.
pub(super) type Expect<'a> = &'a dyn Fn(&str, &[usize], &str) -> std::result::Result<(), String>;

/// Checks a gated MLP's matrices: gate and up `(width, hidden)`, down `(hidden, width)`.
fn check_mlp(
    expect: Expect<'_>,
    [gate, up, down]: [String; 3],
    (width, h): (usize, usize),
    field: &str,
) -> std::result::Result<(), String> {
    let rows = format!("{field}, hidden_size");
    expect(&gate, &[width, h], &rows)?;
    expect(&up, &[width, h], &rows)?;
    expect(&down, &[h, width], &format!("hidden_size, {field}"))
}

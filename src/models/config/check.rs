//! The checks that a model's hyper-parameters agree with each other and with its weights'
//! shapes (read from the file's header), before anything is allocated.

use super::{Config, QkNorm, WeightSource};

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
        for (field, kv) in [
            ("num_key_value_heads", Some(self.num_key_value_heads)),
            ("num_global_key_value_heads", self.arch.global_kv_heads),
        ] {
            match kv {
                Some(0) => return Err(format!("{field} is 0")),
                Some(kv) if !self.num_attention_heads.is_multiple_of(kv) => {
                    return Err(format!(
                        "num_attention_heads {} is not a multiple of {field} {kv}",
                        self.num_attention_heads
                    ))
                }
                _ => {}
            }
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
        for layer in 0..self.num_hidden_layers {
            let Some(from) = self.kv_from(layer) else {
                continue;
            };
            let producer = from < layer && !self.is_linear(from) && self.kv_from(from).is_none();
            let same = self.head_dim_at(from) == self.head_dim_at(layer)
                && self.arch.layer_windows.get(from) == self.arch.layer_windows.get(layer);
            if !producer || !same || self.is_linear(layer) {
                return Err(format!(
                    "layer {layer} would read the keys and values of layer {from}, which is not \
                     an earlier attention layer of its own kind with keys of its own"
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
        let h = self.hidden_size;
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
            let (q, kv) = (self.num_attention_heads * hd, self.kv_heads_at(i) * hd);
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
            let own_kv = !self.is_linear(i) && self.kv_from(i).is_none();
            if own_kv {
                expect(&format!("{p}.self_attn.k_proj.weight"), &[kv, h], kv_heads)?;
                if !self.values_from_keys(i) {
                    expect(&format!("{p}.self_attn.v_proj.weight"), &[kv, h], kv_heads)?;
                }
            }
            if !self.is_linear(i) {
                expect(
                    &format!("{p}.self_attn.o_proj.weight"),
                    &[h, q],
                    "hidden_size, num_attention_heads × head_dim",
                )?;
            }
            match self.experts_at(i) {
                Some(e) if e.beside_dense => {
                    let (count, router) = (e.count, "num_experts, hidden_size");
                    expect(&format!("{p}.router.proj.weight"), &[count, h], router)?;
                    expect(&format!("{p}.router.scale"), &[h], "hidden_size")?;
                    let scale = format!("{p}.router.per_expert_scale");
                    expect(&scale, &[count], "num_experts")?;
                    for x in 0..count {
                        let names = mlp_names(&format!("{p}.experts.{x}"));
                        check_mlp(&expect, names, (e.width, h), "moe_intermediate_size")?;
                    }
                    let names = mlp_names(&format!("{p}.mlp"));
                    check_mlp(&expect, names, (self.mlp_width(i), h), "intermediate_size")?;
                    for n in crate::models::decoder::DENSE_AND_EXPERTS_NORMS {
                        expect(&format!("{p}.{n}.weight"), &[h], "hidden_size")?;
                    }
                }
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
                None if self.mlp_width(i) == 0 => {
                    return Err(format!(
                        "layer {i} has a dense MLP, but intermediate_size is 0 or missing"
                    ))
                }
                None => {
                    let names = mlp_names(&format!("{p}.mlp"));
                    check_mlp(&expect, names, (self.mlp_width(i), h), "intermediate_size")?;
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
                    let norms = if own_kv {
                        &["q_norm", "k_norm"][..]
                    } else {
                        &["q_norm"]
                    };
                    for n in norms {
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
pub(crate) type Expect<'a> = &'a dyn Fn(&str, &[usize], &str) -> std::result::Result<(), String>;

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

//! GGUF files: metadata to a decoder `Config`, the tokenizer and chat template, and the
//! tensors by Hugging Face name (dense, or kept quantized as stored).

use super::{bad, Loaded};
use crate::chat_template::ChatTemplate;
use crate::error::{Error, Result};
use crate::models::decoder::{Config, WeightSource};
use crate::models::family::{Family, GgufMetadata};
use crate::models::rope_scaling::{yarn, yarn_mscale, LongFactors, RopeScaling, Yarn};
use crate::models::weight::Weight;
use crate::models::FAMILIES;
use candle_core::quantized::gguf_file::{self, Content};
use candle_core::{DType, Device, Tensor};
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

struct GgufWeights {
    family: &'static dyn Family,
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
    dtype: DType,
    device: Device,
    /// Hand out matrices quantized, as the file stores them (see `Weight::from_blocks`).
    stored: bool,
}

/// Maps a Hugging Face tensor name to llama.cpp's.
fn gguf_name(hf: &str, family: &dyn Family) -> String {
    let direct = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
        // Gemma 4's per-layer inputs.
        (
            "model.embed_tokens_per_layer.weight",
            "per_layer_token_embd.weight",
        ),
        (
            "model.per_layer_model_projection.weight",
            "per_layer_model_proj.weight",
        ),
        (
            "model.per_layer_projection_norm.weight",
            "per_layer_proj_norm.weight",
        ),
    ];
    if let Some((_, g)) = direct.iter().find(|(h, _)| *h == hf) {
        return g.to_string();
    }
    let Some(rest) = hf.strip_prefix("model.layers.") else {
        return hf.to_string();
    };
    let (idx, tail) = rest.split_once('.').unwrap_or((rest, ""));
    if let Some(part) = family.gguf_tensor(tail) {
        return format!("blk.{idx}.{part}");
    }
    let part = match tail {
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "self_attn.qkv_proj.weight" => "attn_qkv.weight",
        "self_attn.q_proj.bias" => "attn_q.bias",
        "self_attn.k_proj.bias" => "attn_k.bias",
        "self_attn.v_proj.bias" => "attn_v.bias",
        "self_attn.q_norm.weight" => "attn_q_norm.weight",
        "self_attn.k_norm.weight" => "attn_k_norm.weight",
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        // Sandwich and post-norm families (Gemma 3, OLMo 2).
        "pre_feedforward_layernorm.weight" => "ffn_norm.weight",
        "post_feedforward_layernorm.weight" => "post_ffw_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        // Sparse experts, stacked (`source::fused` serves each expert's rows).
        "mlp.experts.gate_proj.weight" => "ffn_gate_exps.weight",
        "mlp.experts.up_proj.weight" => "ffn_up_exps.weight",
        "mlp.experts.down_proj.weight" => "ffn_down_exps.weight",
        other => other,
    };
    format!("blk.{idx}.{part}")
}

impl WeightSource for GgufWeights {
    fn get(&mut self, name: &str) -> Result<Tensor> {
        let g = gguf_name(name, self.family);
        let q = self
            .content
            .tensor(&mut self.reader, &g, &Device::Cpu)
            .map_err(|e| bad(&self.path, format!("tensor {g}: {e}")))?;
        // Dequantize on the CPU (exact), then move: gradients need dense weights.
        let t = q
            .dequantize(&Device::Cpu)
            .map_err(|e| bad(&self.path, format!("tensor {g}: {e}")))?;
        Ok(t.to_dtype(self.dtype)?.to_device(&self.device)?)
    }

    fn contains(&self, name: &str) -> bool {
        self.content
            .tensor_infos
            .contains_key(&gguf_name(name, self.family))
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let info = self
            .content
            .tensor_infos
            .get(&gguf_name(name, self.family))?;
        Some(info.shape.dims().to_vec())
    }

    fn file_name(&self, name: &str) -> String {
        gguf_name(name, self.family)
    }

    fn get_matrix(&mut self, name: &str) -> Result<Weight> {
        let g = gguf_name(name, self.family);
        let q = self
            .content
            .tensor(&mut self.reader, &g, &Device::Cpu)
            .map_err(|e| bad(&self.path, format!("tensor {g}: {e}")))?;
        let dense = if self.stored {
            None
        } else {
            // Dequantize on the CPU (exact), then move: gradients need dense weights.
            let t = q
                .dequantize(&Device::Cpu)
                .map_err(|e| bad(&self.path, format!("tensor {g}: {e}")))?;
            Some(t.to_dtype(self.dtype)?.to_device(&self.device)?)
        };
        Ok(Weight::from_blocks(
            std::sync::Arc::new(q),
            dense,
            self.dtype,
            &self.device,
        ))
    }

    fn dense_bytes(&self, dtype: DType) -> u64 {
        self.content
            .tensor_infos
            .values()
            .map(|i| i.shape.elem_count() as u64 * dtype.size_in_bytes() as u64)
            .sum()
    }

    fn keep_stored(&mut self) -> Option<(String, u64)> {
        self.stored = true;
        let mut kinds: Vec<String> = self
            .content
            .tensor_infos
            .values()
            .map(|i| format!("{:?}", i.ggml_dtype))
            .collect();
        kinds.sort();
        kinds.dedup();
        let bytes = self
            .content
            .tensor_infos
            .values()
            .map(|i| {
                (i.shape.elem_count() / i.ggml_dtype.block_size() * i.ggml_dtype.type_size()) as u64
            })
            .sum();
        Some((kinds.join("/"), bytes))
    }
}

/// The file's metadata under its architecture's prefix, as families read it.
struct Meta<'a> {
    content: &'a Content,
    arch: &'a str,
}

impl GgufMetadata for Meta<'_> {
    fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn num(&self, k: &str) -> Option<f64> {
        let key = format!("{}.{k}", self.arch);
        md_f32(self.content, &key)
            .map(f64::from)
            .or_else(|| md_u32(self.content, &key).map(f64::from))
    }

    fn bools(&self, k: &str) -> std::result::Result<Option<Vec<bool>>, String> {
        let key = format!("{}.{k}", self.arch);
        match self.content.metadata.get(&key) {
            None => Ok(None),
            Some(gguf_file::Value::Array(xs)) => xs
                .iter()
                .map(|x| {
                    x.to_bool()
                        .map_err(|_| format!("{key} is not a list of booleans"))
                })
                .collect::<std::result::Result<_, _>>()
                .map(Some),
            // A single number: a family's own reading (a period of layers).
            Some(_) => Ok(None),
        }
    }

    fn nums(&self, k: &str) -> std::result::Result<Option<Vec<f64>>, String> {
        let key = format!("{}.{k}", self.arch);
        let number = |v: &gguf_file::Value| {
            v.to_f32()
                .map(f64::from)
                .or_else(|_| v.to_u32().map(f64::from))
                .or_else(|_| v.to_i32().map(f64::from))
                .map_err(|_| format!("{key} is not a number or a list of numbers"))
        };
        match self.content.metadata.get(&key) {
            None => Ok(None),
            Some(gguf_file::Value::Array(xs)) => xs
                .iter()
                .map(number)
                .collect::<std::result::Result<_, _>>()
                .map(Some),
            Some(v) => Ok(Some(vec![number(v)?])),
        }
    }
}

fn md_u32(c: &Content, key: &str) -> Option<u32> {
    c.metadata.get(key).and_then(|v| v.to_u32().ok())
}
fn md_f32(c: &Content, key: &str) -> Option<f32> {
    c.metadata.get(key).and_then(|v| v.to_f32().ok())
}
fn md_str<'a>(c: &'a Content, key: &str) -> Option<&'a str> {
    c.metadata
        .get(key)
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
}

/// RoPE scaling in a GGUF, as llama.cpp's converter writes it: Llama 3.1's per-frequency
/// divisors as the tensor `rope_freqs.weight`; LongRoPE's (Phi-3) as `rope_factors_short` and
/// `rope_factors_long` with `rope.scaling.attn_factor`; linear (Gemma 3) and YaRN
/// (Ministral 3) as `{arch}.rope.scaling.*` keys.
fn gguf_rope(
    content: &Content,
    reader: &mut BufReader<File>,
    arch: &str,
    cfg: &Config,
) -> std::result::Result<RopeScaling, String> {
    let mut vector = |name: &str| -> std::result::Result<Option<Vec<f64>>, String> {
        if !content.tensor_infos.contains_key(name) {
            return Ok(None);
        }
        let t = content
            .tensor(reader, name, &Device::Cpu)
            .and_then(|q| q.dequantize(&Device::Cpu))
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .map_err(|e| format!("tensor {name}: {e}"))?;
        Ok(Some(t.into_iter().map(f64::from).collect()))
    };
    let key = |k: &str| md_f32(content, &format!("{arch}.rope.scaling.{k}")).map(f64::from);
    let positive = |k: &str| {
        key(k)
            .filter(|f| f.is_finite() && *f > 0.0)
            .ok_or_else(|| format!("{arch}.rope.scaling.{k} is missing or not positive"))
    };
    let original = || {
        md_u32(
            content,
            &format!("{arch}.rope.scaling.original_context_length"),
        )
        .filter(|&n| n > 0)
        .map(|n| n as usize)
        .ok_or_else(|| format!("{arch}.rope.scaling.original_context_length is missing"))
    };
    if let Some(factors) = vector("rope_freqs.weight")? {
        return Ok(RopeScaling {
            factors: Some(factors),
            ..Default::default()
        });
    }
    if let Some(long) = vector("rope_factors_long.weight")? {
        let short = vector("rope_factors_short.weight")?
            .ok_or("rope_factors_long.weight without rope_factors_short.weight")?;
        return Ok(RopeScaling {
            factors: Some(short),
            attention_factor: key("attn_factor"),
            long: Some(LongFactors {
                factors: long,
                original: original()?,
            }),
        });
    }
    let rd = cfg.rotary_dim();
    match md_str(content, &format!("{arch}.rope.scaling.type")) {
        None | Some("none") => Ok(RopeScaling::default()),
        Some("linear") => Ok(RopeScaling {
            factors: Some(vec![positive("factor")?; rd / 2]),
            ..Default::default()
        }),
        Some("yarn") => {
            let factor = positive("factor")?;
            // llama.cpp takes mscale as 1 and `yarn_log_multiplier` as mscale_all_dim.
            let attention = match key("yarn_attn_factor") {
                Some(a) => a,
                None => match key("yarn_log_multiplier").filter(|m| *m != 0.0) {
                    Some(all) => yarn_mscale(factor, 1.0) / yarn_mscale(factor, all),
                    None => yarn_mscale(factor, 1.0),
                },
            };
            let y = Yarn {
                factor,
                original: original()? as f64,
                beta_fast: key("yarn_beta_fast").unwrap_or(32.0),
                beta_slow: key("yarn_beta_slow").unwrap_or(1.0),
                truncate: true,
            };
            Ok(RopeScaling {
                factors: Some(yarn(rd, cfg.rope_theta, y)),
                attention_factor: Some(attention),
                long: None,
            })
        }
        Some(other) => Err(format!(
            "{arch}.rope.scaling.type {other:?} is not supported yet"
        )),
    }
}

/// Token texts that end generation in llama.cpp (its `special_eog_ids` list, for the model
/// families TokenLens runs): end of turn, of message, of text.
const END_OF_GENERATION: &[&str] = &[
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
];

/// Refuses tensors that run past the end of the file (a truncated download has a valid
/// header) or whose declared sizes overflow, before any of them is read.
fn check_tensor_extents(content: &Content, path: &Path) -> Result<()> {
    let len = std::fs::metadata(path)
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    for (name, info) in &content.tensor_infos {
        let elems = info
            .shape
            .dims()
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
        let block = info.ggml_dtype.block_size() as u64;
        let end = elems
            .filter(|e| block > 0 && e % block == 0)
            .and_then(|e| (e / block).checked_mul(info.ggml_dtype.type_size() as u64))
            .and_then(|size| size.checked_add(info.offset))
            .and_then(|end| end.checked_add(content.tensor_data_offset));
        match end {
            Some(end) if end <= len => {}
            Some(_) => {
                return Err(bad(
                    path,
                    format!("truncated: tensor {name} runs past the end of the file"),
                ))
            }
            None => {
                return Err(bad(
                    path,
                    format!(
                        "tensor {name}: shape {:?} does not fit its type {:?}",
                        info.shape.dims(),
                        info.ggml_dtype
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// Opens a GGUF file.
pub(super) fn open(path: &Path, dtype: DType, dev: &Device) -> Result<Loaded> {
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    crate::gguf_header::check_alignment(&mut reader).map_err(|e| bad(path, e))?;
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let content = gguf_file::Content::read(&mut reader).map_err(|e| bad(path, e))?;
    check_tensor_extents(&content, path)?;
    let arch = md_str(&content, "general.architecture").unwrap_or("");
    let family = *FAMILIES
        .iter()
        .find(|f| f.gguf_architecture() == arch)
        .ok_or_else(|| Error::UnsupportedArchitecture(arch.into()))?;
    let need_u32 = |k: &str| {
        md_u32(&content, &format!("{arch}.{k}"))
            .map(|v| v as usize)
            .ok_or_else(|| bad(path, format!("metadata has no {arch}.{k}")))
    };
    let tokenizer = crate::tokenizer::from_gguf(&content)?;
    let hidden = need_u32("embedding_length")?;
    let heads = need_u32("attention.head_count")?;
    let config = Config {
        vocab_size: tokenizer.get_vocab_size(true),
        hidden_size: hidden,
        // Absent where every layer has sparse experts (Qwen3.5-MoE).
        intermediate_size: md_u32(&content, &format!("{arch}.feed_forward_length"))
            .map_or(0, |v| v as usize),
        num_hidden_layers: need_u32("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: md_u32(&content, &format!("{arch}.attention.head_count_kv"))
            .map(|v| v as usize)
            .unwrap_or(heads),
        head_dim: md_u32(&content, &format!("{arch}.attention.key_length")).map(|v| v as usize),
        rms_norm_eps: md_f32(
            &content,
            &format!("{arch}.attention.layer_norm_rms_epsilon"),
        )
        .unwrap_or(1e-5) as f64,
        rope_theta: md_f32(&content, &format!("{arch}.rope.freq_base")).unwrap_or(10_000.0) as f64,
        max_position_embeddings: need_u32("context_length")?,
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        rope_interleaved: family.gguf_rope_interleaved(),
        rope: Default::default(),
        rotary_dim: None,
        arch: Default::default(),
    };
    let mut config = config;
    let md = Meta {
        content: &content,
        arch,
    };
    // RoPE may rotate only part of each head (Phi-4-mini).
    config.rotary_dim = md_u32(&content, &format!("{arch}.rope.dimension_count"))
        .map(|v| v as usize)
        .filter(|&d| d != config.head_dim());
    // What reading the RoPE scaling relies on (the rotated width); the whole configuration,
    // the scaling included, is checked against the tensors once the family has set it.
    config.check().map_err(|e| bad(path, e))?;
    config.rope = gguf_rope(&content, &mut reader, arch, &config).map_err(|e| bad(path, e))?;
    family
        .configure_gguf(&md, &mut config)
        .map_err(|e| bad(path, e))?;
    // Which layers slide, where the file says it layer by layer (llama.cpp's
    // `sliding_window_pattern` as a bool per layer: OLMo 3's converter writes `layer_types`
    // so); the family read the window and a numeric pattern.
    let pattern_key = format!("{arch}.attention.sliding_window_pattern");
    if let Some(flags) = md
        .bools("attention.sliding_window_pattern")
        .map_err(|e| bad(path, e))?
    {
        let window = md_u32(&content, &format!("{arch}.attention.sliding_window"))
            .filter(|&w| w > 0)
            .ok_or_else(|| bad(path, format!("{pattern_key} without a sliding_window")))?;
        if flags.len() != config.num_hidden_layers {
            return Err(bad(
                path,
                format!(
                    "{pattern_key} has {} entries for {} layers",
                    flags.len(),
                    config.num_hidden_layers
                ),
            ));
        }
        config.arch.layer_windows = flags
            .iter()
            .map(|&slides| slides.then_some(window as usize))
            .collect();
    }
    // A layer has experts where the file has its router (llama.cpp's `ffn_gate_inp`); the
    // rest keep a dense MLP.
    if let Some(e) = config.arch.experts.as_mut() {
        e.sparse = (0..config.num_hidden_layers)
            .map(|l| {
                let router = format!("blk.{l}.ffn_gate_inp.weight");
                content.tensor_infos.contains_key(&router)
            })
            .collect();
    }
    let tokens = crate::tokenizer::gguf_strings(&content, "tokenizer.ggml.tokens")?;
    let token_str = |key: &str| {
        md_u32(&content, key)
            .and_then(|id| tokens.get(id as usize).cloned())
            .unwrap_or_default()
    };
    let bos = md_u32(&content, "tokenizer.ggml.bos_token_id");
    let add_bos = match content.metadata.get("tokenizer.ggml.add_bos_token") {
        Some(v) => v.to_bool().unwrap_or(false),
        None => false,
    };
    let chat_template = md_str(&content, "tokenizer.chat_template").map(|src| {
        ChatTemplate::new(
            src.to_string(),
            token_str("tokenizer.ggml.bos_token_id"),
            token_str("tokenizer.ggml.eos_token_id"),
        )
    });
    // Generation ends where llama.cpp ends it: at the declared end-of-sequence, end-of-turn
    // and end-of-message tokens, and at every token whose text its end-of-generation list
    // names (GGUF converters leave eot_token_id unset for most models).
    let mut eos_ids: Vec<u32> = [
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
    ]
    .iter()
    .filter_map(|k| md_u32(&content, k))
    .filter(|&id| (id as usize) < tokens.len())
    .collect();
    for t in END_OF_GENERATION {
        eos_ids.extend(tokenizer.token_to_id(t));
    }
    eos_ids.sort_unstable();
    eos_ids.dedup();
    let neutral = super::neutral_token(
        &eos_ids,
        [
            "tokenizer.ggml.padding_token_id",
            "tokenizer.ggml.unknown_token_id",
        ]
        .map(|k| md_u32(&content, k).filter(|&id| (id as usize) < tokens.len())),
    );
    let weights = Box::new(GgufWeights {
        family,
        path: path.to_path_buf(),
        content,
        reader,
        dtype,
        device: dev.clone(),
        stored: false,
    });
    Ok(Loaded {
        weights: super::fused::split(weights, family, &config),
        config,
        tokenizer,
        chat_template,
        add_bos: if add_bos { bos } else { None },
        eos: eos_ids,
        neutral,
        weights_note: String::new(),
        weights_bytes: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::gguf_name;
    use crate::models::{gemma3::Gemma3, llama::Llama};

    #[test]
    fn maps_names_to_llama_cpp() {
        let l = &Llama;
        assert_eq!(
            gguf_name("model.layers.12.mlp.up_proj.weight", l),
            "blk.12.ffn_up.weight"
        );
        assert_eq!(
            gguf_name("model.layers.0.self_attn.o_proj.weight", l),
            "blk.0.attn_output.weight"
        );
        assert_eq!(
            gguf_name("model.embed_tokens.weight", l),
            "token_embd.weight"
        );
        assert_eq!(gguf_name("lm_head.weight", l), "output.weight");
        assert_eq!(
            gguf_name("model.layers.3.post_attention_layernorm.weight", l),
            "blk.3.ffn_norm.weight"
        );
        let g = &Gemma3;
        assert_eq!(
            gguf_name("model.layers.3.post_attention_layernorm.weight", g),
            "blk.3.post_attention_norm.weight"
        );
        assert_eq!(
            gguf_name("model.layers.3.pre_feedforward_layernorm.weight", g),
            "blk.3.ffn_norm.weight"
        );
        assert_eq!(
            gguf_name("model.layers.3.self_attn.k_norm.weight", g),
            "blk.3.attn_k_norm.weight"
        );
    }
}

//! Finding and opening model files: aliases in the local cache, GGUF files, Hugging Face
//! directories (config.json + *.safetensors + tokenizer.json).

use crate::chat_template::ChatTemplate;
use crate::error::{Error, Result};
use crate::models::decoder::{Config, WeightSource};
use crate::models::family::Family;
use crate::models::weight::Weight;
use crate::models::FAMILIES;
use candle_core::quantized::gguf_file::{self, Content};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// A model the engine knows by a short name, fetched into the cache by
/// `scripts/fetch-models.sh`.
#[derive(Debug, Clone, Copy)]
pub struct Alias {
    /// Short name.
    pub name: &'static str,
    /// File name inside the cache's `models/` directory.
    pub file: &'static str,
}

/// Every alias; the first is the default model.
pub const ALIASES: &[Alias] = &[
    Alias {
        name: "smollm2-135m",
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    },
    Alias {
        name: "gemma3-270m",
        file: "gemma-3-270m-q4_k_m.gguf",
    },
    Alias {
        name: "qwen2.5-coder-0.5b",
        file: "qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf",
    },
];

/// The default model's alias.
pub const DEFAULT_MODEL: &str = "smollm2-135m";

/// The cache directory: `$TOKENLENS_CACHE`, else `$XDG_CACHE_HOME/tokenlens`, else
/// `~/.cache/tokenlens`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TOKENLENS_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("tokenlens");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache").join("tokenlens")
}

/// Parses a device name: `cpu`, `cuda` or `cuda:N`. A build without the `cuda` feature
/// refuses CUDA devices with a message saying so.
pub fn parse_device(name: &str) -> Result<Device> {
    let bad = || Error::InvalidSetting(format!("unknown device {name:?} (cpu, cuda, cuda:N)"));
    match name {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = match name.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(bad)?,
                None => return Err(bad()),
            };
            if !cfg!(feature = "cuda") {
                return Err(Error::InvalidSetting(
                    "this build has no CUDA support: build with `--features cuda` \
                     (scripts/build-cuda.sh)"
                        .into(),
                ));
            }
            Ok(Device::new_cuda(ordinal)?)
        }
    }
}

/// Parses a memory size: bytes, or a number with K, M, G or T (powers of 1024; a trailing B
/// or iB is allowed): `8G`, `512MiB`, `1.5G`.
pub fn parse_size(text: &str) -> Result<u64> {
    let bad = || Error::InvalidSetting(format!("{text:?} is not a size (e.g. 8G, 512M)"));
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, ' '),
    };
    let scale = match unit {
        ' ' => 1u64,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        'T' => 1 << 40,
        _ => return Err(bad()),
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if !(n.is_finite() && n >= 0.0) || n * scale as f64 > u64::MAX as f64 {
        return Err(bad());
    }
    Ok((n * scale as f64) as u64)
}

/// Parses a dtype name: `f32` (exact gradients; the default), `bf16` or `f16`.
pub fn parse_dtype(name: &str) -> Result<DType> {
    match name {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        _ => Err(Error::InvalidSetting(format!(
            "unknown dtype {name:?} (f32, bf16, f16)"
        ))),
    }
}

/// Where a model spec points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelPath {
    /// A GGUF file.
    Gguf(PathBuf),
    /// A Hugging Face model directory.
    HfDir(PathBuf),
}

/// Resolves `--model`: an alias, a `.gguf` file or a directory.
pub fn resolve(spec: &str) -> Result<(String, ModelPath)> {
    if let Some(alias) = ALIASES.iter().find(|a| a.name == spec) {
        let path = cache_dir().join("models").join(alias.file);
        if !path.is_file() {
            return Err(Error::ModelNotFetched {
                alias: alias.name.into(),
                path,
            });
        }
        return Ok((alias.name.into(), ModelPath::Gguf(path)));
    }
    let path = PathBuf::from(spec);
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| spec.to_string());
    if path.is_dir() {
        return Ok((name, ModelPath::HfDir(path)));
    }
    if path.is_file() {
        return Ok((name, ModelPath::Gguf(path)));
    }
    #[cfg(feature = "hub")]
    if looks_like_hub_id(spec) {
        return Ok((spec.to_string(), ModelPath::HfDir(hub::fetch(spec)?)));
    }
    Err(Error::UnknownModel {
        spec: spec.into(),
        known: ALIASES
            .iter()
            .map(|a| a.name)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// `owner/name`: one slash, no path-like parts.
#[cfg(feature = "hub")]
fn looks_like_hub_id(spec: &str) -> bool {
    let ok = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    matches!(spec.split_once('/'), Some((a, b)) if ok(a) && ok(b))
}

/// Models on the Hugging Face Hub, through hf-hub: files come from its cache
/// (`$HF_HOME/hub`), downloaded first unless `HF_HUB_OFFLINE=1`.
#[cfg(feature = "hub")]
mod hub {
    use super::*;
    use hf_hub::{api::sync::ApiBuilder, Cache, Repo};

    const REQUIRED: &[&str] = &["config.json", "tokenizer.json"];
    const OPTIONAL: &[&str] = &[
        "tokenizer_config.json",
        "chat_template.jinja",
        "generation_config.json",
    ];

    fn offline() -> bool {
        std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0")
    }

    /// The snapshot directory holding the model's files.
    pub fn fetch(id: &str) -> Result<PathBuf> {
        let cache = Cache::from_env();
        let cached = cache.repo(Repo::model(id.to_string()));
        let api = if offline() {
            None
        } else {
            Some(
                ApiBuilder::from_cache(cache.clone())
                    .with_progress(false)
                    .build()
                    .map_err(|e| hub_err(id, e))?
                    .repo(Repo::model(id.to_string())),
            )
        };
        // A file from the cache, else from the Hub; Err says why it is not there.
        let get = |file: &str| -> std::result::Result<PathBuf, String> {
            if let Some(p) = cached.get(file) {
                return Ok(p);
            }
            match &api {
                Some(api) => api.get(file).map_err(|e| format!("{file}: {e}")),
                None => Err(format!(
                    "{file} is not in the Hugging Face cache (HF_HUB_OFFLINE is set)"
                )),
            }
        };
        let mut dir = None;
        for file in REQUIRED {
            let p = get(file).map_err(|e| hub_err(id, e))?;
            dir = p.parent().map(Path::to_path_buf);
        }
        for file in OPTIONAL {
            // Absent optional files are fine.
            let _ = get(file);
        }
        if let Err(single) = get("model.safetensors") {
            let index = get("model.safetensors.index.json")
                .map_err(|e| hub_err(id, format!("{single}; and {e}")))?;
            let index = read_json(&index)?;
            let mut shards: Vec<&str> = index
                .get("weight_map")
                .and_then(|m| m.as_object())
                .map(|m| m.values().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            shards.sort();
            shards.dedup();
            for shard in shards {
                get(shard).map_err(|e| hub_err(id, e))?;
            }
        }
        dir.ok_or_else(|| hub_err(id, "no files"))
    }

    fn hub_err(id: &str, e: impl std::fmt::Display) -> Error {
        Error::BadModelFile {
            path: PathBuf::from(format!("hf://{id}")),
            reason: e.to_string(),
        }
    }
}

/// Everything needed to build an engine: configuration, weights, tokenizer, template.
pub struct Loaded {
    /// Model hyper-parameters.
    pub config: Config,
    /// Weights by Hugging Face name.
    pub weights: Box<dyn WeightSource>,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The chat template, if the model has one.
    pub chat_template: Option<ChatTemplate>,
    /// Whether to prepend BOS when tokenizing.
    pub add_bos: Option<u32>,
    /// End-of-sequence token ids.
    pub eos: Vec<u32>,
    /// How the weights are held: dense, or as stored and dequantized per layer (and why).
    pub weights_note: String,
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::BadModelFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Opens a model from where [`resolve`] points.
///
/// The configuration is checked against the tensors' shapes before any weight is read.
/// Weights whose dense copy would exceed `max_memory` bytes (default: [`memory_budget`]) are
/// kept as the file stores them and dequantized one matrix at a time during each pass.
pub fn open(
    path: &ModelPath,
    dtype: DType,
    dev: &Device,
    max_memory: Option<u64>,
) -> Result<Loaded> {
    let (mut loaded, p) = match path {
        ModelPath::Gguf(p) => (open_gguf(p, dtype, dev)?, p),
        ModelPath::HfDir(p) => (open_hf_dir(p, dtype, dev)?, p),
    };
    loaded
        .config
        .validate(loaded.weights.as_ref())
        .map_err(|e| bad(p, e))?;
    let dense = loaded.weights.dense_bytes(dtype);
    let budget = max_memory.unwrap_or_else(memory_budget);
    let gb = |b: u64| format!("{:.1} GB", b as f64 / 1e9);
    loaded.weights_note = if dense <= budget {
        format!("dense {dtype:?} ({})", gb(dense))
    } else {
        match loaded.weights.keep_stored() {
            Some((kinds, bytes)) => format!(
                "kept as stored ({kinds}, {}), dequantized per layer: dense {dtype:?} would need \
                 {} of a {} budget",
                gb(bytes),
                gb(dense),
                gb(budget)
            ),
            None => format!(
                "dense {dtype:?} ({}, over the {} budget: only GGUF weights can be kept as stored)",
                gb(dense),
                gb(budget)
            ),
        }
    };
    tracing::info!(weights = %loaded.weights_note, "weights");
    Ok(loaded)
}

/// The default memory budget for dense weights: half the machine's memory (a server may
/// hold several models, and a 4B model's 16 GB f32 copy would leave a 24 GB machine little
/// else), and never more than the memory available now less an eighth and 1 GiB.
pub fn memory_budget() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    match (field("MemTotal:"), field("MemAvailable:")) {
        (Some(total), Some(available)) => (total / 2).min(
            available
                .saturating_sub(available / 8)
                .saturating_sub(1 << 30),
        ),
        // Not Linux: no reading, so no limit (dense, as before).
        _ => u64::MAX,
    }
}

struct GgufWeights {
    family: &'static dyn Family,
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
    dtype: DType,
    device: Device,
    /// Hand out matrices quantized, as the file stores them (see `Weight::Stored`).
    stored: bool,
}

/// Maps a Hugging Face tensor name to llama.cpp's.
fn gguf_name(hf: &str, family: &dyn Family) -> String {
    let direct = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
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
        "self_attn.q_proj.bias" => "attn_q.bias",
        "self_attn.k_proj.bias" => "attn_k.bias",
        "self_attn.v_proj.bias" => "attn_v.bias",
        "self_attn.q_norm.weight" => "attn_q_norm.weight",
        "self_attn.k_norm.weight" => "attn_k_norm.weight",
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
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
        if !self.stored {
            return Ok(Weight::Dense(self.get(name)?));
        }
        let g = gguf_name(name, self.family);
        let q = self
            .content
            .tensor(&mut self.reader, &g, &Device::Cpu)
            .map_err(|e| bad(&self.path, format!("tensor {g}: {e}")))?;
        Ok(Weight::Stored {
            q: std::sync::Arc::new(q),
            dtype: self.dtype,
            device: self.device.clone(),
        })
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

/// RoPE scaling in a GGUF: llama.cpp writes Llama 3.1's per-frequency divisors as the
/// tensor `rope_freqs.weight`, and linear scaling (Gemma 3) as `{arch}.rope.scaling.type` and
/// `.factor`.
fn gguf_rope_factors(
    content: &Content,
    reader: &mut BufReader<File>,
    arch: &str,
    head_dim: usize,
) -> std::result::Result<Option<Vec<f64>>, String> {
    if content.tensor_infos.contains_key("rope_freqs.weight") {
        let t = content
            .tensor(reader, "rope_freqs.weight", &Device::Cpu)
            .and_then(|q| q.dequantize(&Device::Cpu))
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .map_err(|e| format!("tensor rope_freqs.weight: {e}"))?;
        return Ok(Some(t.into_iter().map(f64::from).collect()));
    }
    match md_str(content, &format!("{arch}.rope.scaling.type")) {
        None | Some("none") => Ok(None),
        Some("linear") => {
            let factor = md_f32(content, &format!("{arch}.rope.scaling.factor"))
                .filter(|f| f.is_finite() && *f > 0.0)
                .ok_or_else(|| format!("{arch}.rope.scaling.factor is missing or not positive"))?;
            Ok(Some(vec![f64::from(factor); head_dim / 2]))
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

fn open_gguf(path: &Path, dtype: DType, dev: &Device) -> Result<Loaded> {
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
        intermediate_size: need_u32("feed_forward_length")?,
        num_hidden_layers: need_u32("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: md_u32(&content, &format!("{arch}.attention.head_count_kv"))
            .map(|v| v as usize)
            .unwrap_or(heads),
        head_dim: md_u32(&content, &format!("{arch}.attention.key_length"))
            .or_else(|| md_u32(&content, &format!("{arch}.rope.dimension_count")))
            .map(|v| v as usize),
        rms_norm_eps: md_f32(
            &content,
            &format!("{arch}.attention.layer_norm_rms_epsilon"),
        )
        .unwrap_or(1e-5) as f64,
        rope_theta: md_f32(&content, &format!("{arch}.rope.freq_base")).unwrap_or(10_000.0) as f64,
        max_position_embeddings: need_u32("context_length")?,
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        rope_interleaved: family.gguf_rope_interleaved(),
        rope_freq_factors: None,
        arch: Default::default(),
    };
    let mut config = config;
    let md = |k: &str| -> Option<f64> {
        md_f32(&content, &format!("{arch}.{k}"))
            .map(f64::from)
            .or_else(|| md_u32(&content, &format!("{arch}.{k}")).map(f64::from))
    };
    config.check().map_err(|e| bad(path, e))?;
    config.rope_freq_factors = gguf_rope_factors(&content, &mut reader, arch, config.head_dim())
        .map_err(|e| bad(path, e))?;
    family
        .configure_gguf(&md, &mut config)
        .map_err(|e| bad(path, e))?;
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
    Ok(Loaded {
        config,
        weights: Box::new(GgufWeights {
            family,
            path: path.to_path_buf(),
            content,
            reader,
            dtype,
            device: dev.clone(),
            stored: false,
        }),
        tokenizer,
        chat_template,
        add_bos: if add_bos { bos } else { None },
        eos: eos_ids,
        weights_note: String::new(),
    })
}

/// A Hugging Face checkpoint's tensors: shapes from the files' headers at open, the data
/// read on first use (after the configuration has been checked against the shapes).
struct SafetensorsWeights {
    files: Vec<PathBuf>,
    shapes: HashMap<String, Vec<usize>>,
    tensors: Option<HashMap<String, Tensor>>,
    dtype: DType,
    device: Device,
    dir: PathBuf,
}

impl SafetensorsWeights {
    fn open(dir: &Path, files: Vec<PathBuf>, dtype: DType, device: &Device) -> Result<Self> {
        let mut shapes = HashMap::new();
        for f in &files {
            shapes.extend(safetensors_shapes(f)?);
        }
        Ok(SafetensorsWeights {
            files,
            shapes,
            tensors: None,
            dtype,
            device: device.clone(),
            dir: dir.to_path_buf(),
        })
    }
}

/// Tensor shapes from a `.safetensors` header: an 8-byte length, then JSON.
fn safetensors_shapes(path: &Path) -> Result<HashMap<String, Vec<usize>>> {
    use std::io::Read;
    // Headers of real checkpoints are tens to hundreds of kilobytes.
    const MAX_HEADER: u64 = 100 << 20;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(io)?;
    let mut n = [0u8; 8];
    f.read_exact(&mut n)
        .map_err(|e| bad(path, format!("no safetensors header: {e}")))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER || n > f.metadata().map_err(io)?.len() {
        return Err(bad(
            path,
            format!("safetensors header length {n} is not plausible"),
        ));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(io)?;
    let header: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| bad(path, format!("safetensors header: {e}")))?;
    Ok(header
        .into_iter()
        .filter(|(k, _)| k != "__metadata__")
        .filter_map(|(k, v)| {
            let shape = v
                .get("shape")?
                .as_array()?
                .iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect::<Option<Vec<_>>>()?;
            Some((k, shape))
        })
        .collect())
}

impl WeightSource for SafetensorsWeights {
    fn get(&mut self, name: &str) -> Result<Tensor> {
        if self.tensors.is_none() {
            let mut all = HashMap::new();
            for f in &self.files {
                all.extend(candle_core::safetensors::load(f, &Device::Cpu).map_err(|e| bad(f, e))?);
            }
            self.tensors = Some(all);
        }
        let t = self
            .tensors
            .as_mut()
            .and_then(|t| t.remove(name))
            .ok_or_else(|| bad(&self.dir, format!("no tensor {name}")))?;
        Ok(t.to_dtype(self.dtype)?.to_device(&self.device)?)
    }
    fn contains(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.shapes.get(name).cloned()
    }
    fn dense_bytes(&self, dtype: DType) -> u64 {
        self.shapes
            .values()
            .map(|s| s.iter().product::<usize>() as u64 * dtype.size_in_bytes() as u64)
            .sum()
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| bad(path, e))
}

fn open_hf_dir(dir: &Path, dtype: DType, dev: &Device) -> Result<Loaded> {
    let cfg_path = dir.join("config.json");
    let raw = read_json(&cfg_path)?;
    let model_type = raw.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
    let family = *FAMILIES
        .iter()
        .find(|f| f.hf_model_types().contains(&model_type))
        .ok_or_else(|| Error::UnsupportedArchitecture(model_type.into()))?;
    let mut config: Config = serde_json::from_value(raw.clone()).map_err(|e| bad(&cfg_path, e))?;
    config.rope_interleaved = false;
    config.check().map_err(|e| bad(&cfg_path, e))?;
    config.rope_freq_factors =
        crate::models::rope_scaling::from_hf(&raw, config.head_dim(), config.rope_theta)
            .map_err(|e| bad(&cfg_path, e))?;
    family
        .configure_hf(&raw, &mut config)
        .map_err(|e| bad(&cfg_path, e))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(bad(dir, "no *.safetensors files"));
    }
    let weights = SafetensorsWeights::open(dir, files, dtype, dev)?;
    let tokenizer = crate::tokenizer::from_file(&dir.join("tokenizer.json"))?;
    if tokenizer.get_vocab_size(true) > config.vocab_size {
        return Err(bad(
            &cfg_path,
            format!(
                "vocab_size {} is smaller than the tokenizer's {} tokens",
                config.vocab_size,
                tokenizer.get_vocab_size(true)
            ),
        ));
    }
    let tok_cfg = read_json(&dir.join("tokenizer_config.json")).ok();
    let special = |key: &str| -> String {
        tok_cfg
            .as_ref()
            .and_then(|c| c.get(key))
            .and_then(|v| {
                v.as_str()
                    .or_else(|| v.get("content").and_then(|c| c.as_str()))
            })
            .unwrap_or("")
            .to_string()
    };
    // transformers ≥ 4.50 writes the template to chat_template.jinja; older versions keep it
    // in tokenizer_config.json.
    let template_src = std::fs::read_to_string(dir.join("chat_template.jinja"))
        .ok()
        .or_else(|| {
            tok_cfg
                .as_ref()
                .and_then(|c| c.get("chat_template"))
                .and_then(|v| v.as_str())
                .map(String::from)
        });
    let chat_template =
        template_src.map(|src| ChatTemplate::new(src, special("bos_token"), special("eos_token")));
    // transformers' generate() stops at generation_config.json's eos_token_id (a number or a
    // list: Llama 3.1 lists <|end_of_text|>, <|eom_id|> and <|eot_id|>), else config.json's.
    let generation = read_json(&dir.join("generation_config.json")).ok();
    let eos_of = |v: &serde_json::Value| -> Vec<u32> {
        match v.get("eos_token_id") {
            Some(serde_json::Value::Number(n)) => {
                n.as_u64().map(|v| v as u32).into_iter().collect()
            }
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_u64())
                .map(|v| v as u32)
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut eos = generation.as_ref().map(eos_of).unwrap_or_default();
    if eos.is_empty() {
        eos = eos_of(&raw);
    }
    let add_bos = tok_cfg
        .as_ref()
        .and_then(|c| c.get("add_bos_token"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let bos = raw
        .get("bos_token_id")
        .and_then(|v| v.as_u64())
        .map(|v| v as u32);
    Ok(Loaded {
        config,
        weights: Box::new(weights),
        tokenizer,
        chat_template,
        add_bos: if add_bos { bos } else { None },
        eos,
        weights_note: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::{gguf_name, parse_size};

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8G").unwrap(), 8 << 30);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        for bad in ["", "G", "-1G", "8X", "nanG", "1e30T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
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

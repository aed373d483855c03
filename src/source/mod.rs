//! Finding and opening model files: aliases in the local cache, GGUF files, Hugging Face
//! directories (config.json + *.safetensors + tokenizer.json).

use crate::chat_template::ChatTemplate;
use crate::error::{Error, Result};
use crate::models::decoder::{Config, WeightSource};
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

mod fused;
mod gguf;
mod hf_dir;

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
    /// The model's padding token, else its unknown token (what a perturbation puts in).
    pub neutral: Option<u32>,
    /// How the weights are held: dense, or as stored and converted per layer (and why).
    pub weights_note: String,
    /// Bytes the weights take in memory, as held.
    pub weights_bytes: u64,
}

/// The token a perturbation puts in: the padding token unless it is an end-of-sequence token
/// (padding with end-of-text is a batching convention, not a neutral input), else the
/// unknown token.
pub(crate) fn neutral_token(eos: &[u32], [pad, unk]: [Option<u32>; 2]) -> Option<u32> {
    pad.filter(|p| !eos.contains(p)).or(unk)
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
        ModelPath::Gguf(p) => (gguf::open(p, dtype, dev)?, p),
        ModelPath::HfDir(p) => (hf_dir::open(p, dtype, dev)?, p),
    };
    loaded
        .config
        .validate(loaded.weights.as_ref())
        .map_err(|e| bad(p, e))?;
    if let Some(t) = &loaded.chat_template {
        t.check_fuel().map_err(|e| bad(p, e))?;
    }
    let dense = loaded.weights.dense_bytes(dtype);
    let budget = max_memory.unwrap_or_else(memory_budget);
    let gb = |b: u64| format!("{:.1} GB", b as f64 / 1e9);
    loaded.weights_bytes = dense;
    // An f32 model gets a bf16 copy the first time a request multiplies in bf16.
    let copy = if dtype == DType::F32 { dense / 2 } else { 0 };
    loaded.weights_note = if dense + copy <= budget {
        if copy > 0 {
            format!(
                "dense {dtype:?} ({}; {} more in bf16 once a request uses bf16)",
                gb(dense),
                gb(copy)
            )
        } else {
            format!("dense {dtype:?} ({})", gb(dense))
        }
    } else {
        match loaded.weights.keep_stored() {
            Some((kinds, bytes)) => {
                loaded.weights_bytes = bytes;
                format!(
                "kept as stored ({kinds}, {}), converted per layer: dense {dtype:?} would need \
                 {} of a {} budget",
                    gb(bytes),
                    gb(dense),
                    gb(budget)
                )
            }
            None => format!(
                "dense {dtype:?} ({}, over the {} budget: only GGUF and 16-bit safetensors \
                 weights can be kept as stored)",
                gb(dense),
                gb(budget)
            ),
        }
    };
    tracing::info!(weights = %loaded.weights_note, "weights");
    Ok(loaded)
}

/// The least memory a model's weights can take: a GGUF as stored (its file's size), a
/// Hugging Face checkpoint with its 16-bit matrices as stored and the rest dense in `dtype`
/// (from its headers). Reads no tensor.
pub fn min_weights_bytes(path: &ModelPath, dtype: DType) -> Result<u64> {
    match path {
        ModelPath::Gguf(p) => std::fs::metadata(p)
            .map(|m| m.len())
            .map_err(|source| Error::Io {
                path: p.clone(),
                source,
            }),
        ModelPath::HfDir(p) => hf_dir::min_bytes(p, dtype),
    }
}

/// The memory available now (`MemAvailable`) less an eighth and 1 GiB for activations, the
/// tokenizer and the rest of the process; unlimited where it cannot be read (not Linux).
pub fn memory_available() -> u64 {
    match meminfo("MemAvailable:") {
        Some(a) => a.saturating_sub(a / 8).saturating_sub(1 << 30),
        None => u64::MAX,
    }
}

/// The default memory budget for one model's dense weights: half the machine's memory (a
/// server may hold several models, and a 4B model's 16 GB f32 copy would leave a 24 GB machine
/// little else), and never more than [`memory_available`].
pub fn memory_budget() -> u64 {
    let half = meminfo("MemTotal:").map_or(u64::MAX, |t| t / 2);
    half.min(memory_available())
}

/// A `/proc/meminfo` field in bytes.
fn meminfo(name: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// A JSON file.
fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| bad(path, e))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

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
}

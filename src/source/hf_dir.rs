//! Hugging Face model directories: `config.json`, `*.safetensors` (shapes from their headers,
//! data on first use), `tokenizer.json`, the chat template and the end-of-sequence ids.

use super::{bad, read_json, Loaded};
use crate::chat_template::ChatTemplate;
use crate::error::{Error, Result};
use crate::models::decoder::{Config, WeightSource};
use crate::models::FAMILIES;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

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

/// The directory's `*.safetensors` files, in name order (shards sort by their number).
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
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
    Ok(files)
}

/// Bytes tensors of these shapes take in `dtype`.
fn bytes_of<'a>(shapes: impl Iterator<Item = &'a Vec<usize>>, dtype: DType) -> u64 {
    shapes
        .map(|s| s.iter().product::<usize>() as u64 * dtype.size_in_bytes() as u64)
        .sum()
}

/// Bytes the checkpoint's tensors take dense in `dtype`, from the files' headers.
pub(super) fn dense_bytes(dir: &Path, dtype: DType) -> Result<u64> {
    let mut total = 0u64;
    for f in safetensors_files(dir)? {
        total += bytes_of(safetensors_shapes(&f)?.values(), dtype);
    }
    Ok(total)
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
        bytes_of(self.shapes.values(), dtype)
    }
}

/// Opens a Hugging Face model directory.
pub(super) fn open(dir: &Path, dtype: DType, dev: &Device) -> Result<Loaded> {
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
    let weights = SafetensorsWeights::open(dir, safetensors_files(dir)?, dtype, dev)?;
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
        weights_bytes: 0,
    })
}

//! Hugging Face model directories: `config.json`, `*.safetensors` (indexed from their headers,
//! each tensor read when used), `tokenizer.json`, the chat template and the end-of-sequence ids.

use super::{bad, read_json, Loaded};
use crate::chat_template::ChatTemplate;
use crate::error::{Error, Result};
use crate::models::decoder::{Config, WeightSource};
use crate::models::weight::Weight;
use crate::models::FAMILIES;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Where one tensor lies in a `.safetensors` file.
#[derive(Debug, Clone)]
struct Entry {
    file: PathBuf,
    dtype: DType,
    shape: Vec<usize>,
    /// Byte offset of the data in the file, and its length.
    offset: u64,
    len: u64,
}

impl Entry {
    /// The tensor as the file stores it, on the CPU: only its own bytes are read.
    fn read(&self, name: &str) -> Result<Tensor> {
        use std::io::{Read, Seek, SeekFrom};
        let io = |source| Error::Io {
            path: self.file.clone(),
            source,
        };
        let mut f = File::open(&self.file).map_err(io)?;
        f.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let mut bytes = vec![0u8; self.len as usize];
        f.read_exact(&mut bytes)
            .map_err(|e| bad(&self.file, format!("tensor {name}: {e}")))?;
        Tensor::from_raw_buffer(&bytes, self.dtype, &self.shape, &Device::Cpu)
            .map_err(|e| bad(&self.file, format!("tensor {name}: {e}")))
    }

    fn is_half(&self) -> bool {
        matches!(self.dtype, DType::BF16 | DType::F16)
    }
}

/// A Hugging Face checkpoint's tensors, indexed from the files' headers at open; each is read
/// when asked for (after the configuration has been checked against the shapes).
struct SafetensorsWeights {
    entries: HashMap<String, Entry>,
    dtype: DType,
    device: Device,
    dir: PathBuf,
    /// Hand out 16-bit matrices as stored (see `Weight::half`).
    stored: bool,
}

impl SafetensorsWeights {
    fn open(dir: &Path, files: Vec<PathBuf>, dtype: DType, device: &Device) -> Result<Self> {
        let mut entries = HashMap::new();
        for f in &files {
            entries.extend(safetensors_index(f)?);
        }
        Ok(SafetensorsWeights {
            entries,
            dtype,
            device: device.clone(),
            dir: dir.to_path_buf(),
            stored: false,
        })
    }

    /// Keeps only a multimodal checkpoint's language model, under the names of a text-only
    /// one: `language_model.model.*` (as transformers 4 saved Mistral 3, Gemma 3) and
    /// `model.language_model.*` (transformers 5) become `model.*`, and
    /// `language_model.lm_head.*` becomes `lm_head.*`. The vision tower and the projector are
    /// left out (never read, never counted).
    fn language_model(self) -> Self {
        let rename = |name: &str| -> Option<String> {
            for (from, to) in [
                ("language_model.model.", "model."),
                ("model.language_model.", "model."),
                ("language_model.lm_head.", "lm_head."),
                ("lm_head.", "lm_head."),
            ] {
                if let Some(rest) = name.strip_prefix(from) {
                    return Some(format!("{to}{rest}"));
                }
            }
            None
        };
        let entries = self
            .entries
            .into_iter()
            .filter_map(|(name, e)| Some((rename(&name)?, e)))
            .collect();
        SafetensorsWeights { entries, ..self }
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries
            .get(name)
            .ok_or_else(|| bad(&self.dir, format!("no tensor {name}")))
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

fn elems(shape: &[usize]) -> u64 {
    shape.iter().map(|&d| d as u64).product()
}

/// The least bytes the checkpoint's tensors can take when the pass computes in `dtype`:
/// 16-bit matrices as stored, the rest dense in `dtype`. From the files' headers.
pub(super) fn min_bytes(dir: &Path, dtype: DType) -> Result<u64> {
    let mut total = 0u64;
    for f in safetensors_files(dir)? {
        total += safetensors_index(&f)?
            .values()
            .map(|e| {
                let dense = elems(&e.shape) * dtype.size_in_bytes() as u64;
                if e.is_half() && e.shape.len() == 2 {
                    dense.min(e.len)
                } else {
                    dense
                }
            })
            .sum::<u64>();
    }
    Ok(total)
}

/// The tensors of a `.safetensors` file from its header (an 8-byte length, then JSON): names,
/// dtypes, shapes and where their bytes are, each checked against the file's size.
fn safetensors_index(path: &Path) -> Result<HashMap<String, Entry>> {
    use std::io::Read;
    // Headers of real checkpoints are tens to hundreds of kilobytes.
    const MAX_HEADER: u64 = 100 << 20;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(io)?;
    let file_len = f.metadata().map_err(io)?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n)
        .map_err(|e| bad(path, format!("no safetensors header: {e}")))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER || n > file_len {
        return Err(bad(
            path,
            format!("safetensors header length {n} is not plausible"),
        ));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(io)?;
    let header: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| bad(path, format!("safetensors header: {e}")))?;
    let data_start = 8 + n;
    let mut out = HashMap::new();
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        let fail = |what: String| bad(path, format!("tensor {name}: {what}"));
        let shape = v
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|a| {
                a.iter()
                    .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| fail("no valid shape".into()))?;
        let dtype = match v.get("dtype").and_then(|d| d.as_str()) {
            Some("F32") => DType::F32,
            Some("BF16") => DType::BF16,
            Some("F16") => DType::F16,
            Some("F64") => DType::F64,
            Some("I64") => DType::I64,
            Some("U32") => DType::U32,
            Some("U8") => DType::U8,
            other => return Err(fail(format!("unsupported dtype {other:?}"))),
        };
        let [begin, end] = v
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .and_then(|o| match o.as_slice() {
                [a, b] => Some([a.as_u64()?, b.as_u64()?]),
                _ => None,
            })
            .ok_or_else(|| fail("no valid data_offsets".into()))?;
        let want = shape
            .iter()
            .try_fold(dtype.size_in_bytes() as u64, |acc, &d| {
                acc.checked_mul(d as u64)
            });
        if end < begin || want != Some(end - begin) || data_start + end > file_len {
            return Err(fail(format!(
                "data_offsets [{begin}, {end}] do not hold a {dtype:?} tensor of shape {shape:?} \
                 inside the file's {file_len} bytes"
            )));
        }
        out.insert(
            name,
            Entry {
                file: path.to_path_buf(),
                dtype,
                shape,
                offset: data_start + begin,
                len: end - begin,
            },
        );
    }
    Ok(out)
}

impl WeightSource for SafetensorsWeights {
    fn get(&mut self, name: &str) -> Result<Tensor> {
        let t = self.entry(name)?.read(name)?;
        Ok(t.to_dtype(self.dtype)?.to_device(&self.device)?)
    }
    fn get_matrix(&mut self, name: &str) -> Result<Weight> {
        let e = self.entry(name)?;
        if self.stored && e.is_half() && self.dtype.size_in_bytes() > 2 {
            return Ok(Weight::half(
                e.read(name)?.to_device(&self.device)?,
                self.dtype,
            ));
        }
        Ok(Weight::dense(self.get(name)?))
    }
    fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.entries.get(name).map(|e| e.shape.clone())
    }
    fn dense_bytes(&self, dtype: DType) -> u64 {
        self.entries
            .values()
            .map(|e| elems(&e.shape) * dtype.size_in_bytes() as u64)
            .sum()
    }
    fn keep_stored(&mut self) -> Option<(String, u64)> {
        let wide = self.dtype.size_in_bytes();
        let halves = |e: &&Entry| e.is_half() && e.shape.len() == 2;
        if wide <= 2 || !self.entries.values().any(|e| halves(&e)) {
            return None;
        }
        self.stored = true;
        let mut kinds: Vec<String> = self
            .entries
            .values()
            .filter(halves)
            .map(|e| format!("{:?}", e.dtype))
            .collect();
        kinds.sort();
        kinds.dedup();
        let bytes = self
            .entries
            .values()
            .map(|e| {
                if halves(&e) {
                    e.len
                } else {
                    elems(&e.shape) * wide as u64
                }
            })
            .sum();
        Some((kinds.join("/"), bytes))
    }
}

/// The rotated width of a head when `partial_rotary_factor` (top level, or in transformers
/// 5's `rope_parameters`) rotates only part of it, as transformers rounds it.
fn partial_rotary(raw: &serde_json::Value, head_dim: usize) -> Option<usize> {
    let factor = raw
        .get("partial_rotary_factor")
        .or_else(|| raw.get("rope_parameters")?.get("partial_rotary_factor"))
        .and_then(serde_json::Value::as_f64)?;
    let dim = (head_dim as f64 * factor) as usize;
    (dim != head_dim).then_some(dim)
}

/// A multimodal `config.json`'s `text_config`, with the fields it leaves to the top level
/// (`tie_word_embeddings`, the vocabulary size) filled from there.
fn text_config(mut raw: serde_json::Value) -> serde_json::Value {
    let top = raw.clone();
    let Some(text) = raw.get_mut("text_config").and_then(|t| t.as_object_mut()) else {
        return top;
    };
    for key in ["tie_word_embeddings", "vocab_size"] {
        if let Some(v) = top.get(key).filter(|_| !text.contains_key(key)) {
            text.insert(key.into(), v.clone());
        }
    }
    raw["text_config"].take()
}

/// Opens a Hugging Face model directory.
pub(super) fn open(dir: &Path, dtype: DType, dev: &Device) -> Result<Loaded> {
    let cfg_path = dir.join("config.json");
    let mut raw = read_json(&cfg_path)?;
    // A multimodal checkpoint (Mistral 3, Gemma 3 from 4B): its language model is read.
    let multimodal = raw
        .get("text_config")
        .is_some_and(serde_json::Value::is_object);
    if multimodal {
        raw = text_config(raw);
    }
    crate::models::rope_scaling::from_rope_parameters(&mut raw);
    let model_type = raw.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
    let family = *FAMILIES
        .iter()
        .find(|f| f.hf_model_types().contains(&model_type))
        .ok_or_else(|| Error::UnsupportedArchitecture(model_type.into()))?;
    let mut config: Config = serde_json::from_value(raw.clone()).map_err(|e| bad(&cfg_path, e))?;
    config.rope_interleaved = false;
    config.check().map_err(|e| bad(&cfg_path, e))?;
    config.rotary_dim = partial_rotary(&raw, config.head_dim());
    config.rope = crate::models::rope_scaling::from_hf(
        &raw,
        config.rotary_dim(),
        config.rope_theta,
        config.max_position_embeddings,
    )
    .map_err(|e| bad(&cfg_path, e))?;
    family
        .configure_hf(&raw, &mut config)
        .map_err(|e| bad(&cfg_path, e))?;
    let mut weights = SafetensorsWeights::open(dir, safetensors_files(dir)?, dtype, dev)?;
    if multimodal {
        weights = weights.language_model();
    }
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
    let neutral = super::neutral_token(
        &eos,
        ["pad_token", "unk_token"].map(|k| tokenizer.token_to_id(&special(k))),
    );
    Ok(Loaded {
        weights: super::fused::split(Box::new(weights), family, &config),
        config,
        tokenizer,
        chat_template,
        add_bos: if add_bos { bos } else { None },
        eos,
        neutral,
        weights_note: String::new(),
        weights_bytes: 0,
    })
}

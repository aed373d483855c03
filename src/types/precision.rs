//! How a request's matrix products are computed.

use serde::{Deserialize, Serialize};

/// The precision of a request's matrix products. Norms, softmaxes, the rules' divisions and
/// every reduction stay f32 in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// f32 where an explanation answers within about a second in f32 on this machine, bf16
    /// above that (and where the machine has no bf16 products, f32). Generation runs on the
    /// weights as stored wherever the model has quantized weights.
    #[default]
    Auto,
    /// Exact: every product in f32, as the PyTorch references compute.
    F32,
    /// Approximate: attribution's products with bf16 operands and f32 accumulation (the
    /// CPU's matrix units), forward-only passes (generation, the prediction, the lens, the
    /// perturbation curves) on the weights as the file stores them (GGUF quantized blocks,
    /// 8-bit activations per block, as llama.cpp).
    Bf16,
}

impl Precision {
    /// Every choice, as the URL, the CLI and the JSON name it.
    pub const ALL: [Precision; 3] = [Precision::Auto, Precision::F32, Precision::Bf16];

    /// Its name in the URL, the CLI and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Parses a name (`auto`, `f32`, `bf16`).
    pub fn parse(name: &str) -> Result<Precision, String> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| format!("unknown precision {name:?} (expected auto, f32 or bf16)"))
    }

    /// A result's precision as a reader sees it: "f32: exact" or "bf16: approximate".
    pub fn label(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32: exact",
            Precision::Bf16 => "bf16: approximate",
        }
    }

    /// Whether this is the default (`auto`), for serde's `skip_serializing_if`.
    pub fn is_auto(&self) -> bool {
        *self == Precision::Auto
    }

    /// f32: what a result without a precision (older JSON) was computed in.
    pub fn exact() -> Precision {
        Precision::F32
    }

    /// Whether a result was computed in f32, for serde's `skip_serializing_if`.
    pub fn is_exact(&self) -> bool {
        *self == Precision::F32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Precision::ALL {
            assert_eq!(Precision::parse(p.name()), Ok(p));
            let json = serde_json::to_string(&p).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", p.name()));
        }
        assert!(Precision::parse("fp16").is_err_and(|e| e.contains("fp16")));
    }
}

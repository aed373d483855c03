//! RoPE frequency scaling, as transformers' `modeling_rope_utils.py` computes it and llama.cpp
//! stores it: one divisor per frequency (the decoder divides each inverse frequency by its
//! factor; llama.cpp's `rope_freqs.weight`), a factor on cos and sin (YaRN's and LongRoPE's
//! attention factor), and LongRoPE's second set of divisors for sequences longer than the
//! pre-training context.
//!
//! Types: `"llama3"` (Llama 3.1: low frequencies stretched), `"linear"` (Gemma 3's global
//! layers: all of them), `"yarn"` (Ministral 3: high frequencies kept, low ones interpolated,
//! a ramp between), `"longrope"` / `"su"` (Phi-3, Phi-4-mini: given divisors, short and long).

use serde_json::Value;

/// How a model scales RoPE. The default is plain RoPE.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RopeScaling {
    /// Per-frequency divisors of the inverse frequencies.
    pub factors: Option<Vec<f64>>,
    /// cos and sin multiplied by this (YaRN's and LongRoPE's attention factor).
    pub attention_factor: Option<f64>,
    /// LongRoPE: the divisors used instead of `factors` for a pass whose last position is
    /// past `original` (transformers picks the set per forward call from its longest
    /// position).
    pub long: Option<LongFactors>,
}

/// LongRoPE's divisors for long sequences.
#[derive(Debug, Clone, PartialEq)]
pub struct LongFactors {
    /// One divisor per frequency.
    pub factors: Vec<f64>,
    /// The pre-training context: passes reaching past it use these divisors.
    pub original: usize,
}

impl RopeScaling {
    /// Checks the divisors' count against the rotated width and their values.
    pub fn check(&self, rotary_dim: usize) -> Result<(), String> {
        let sets = self
            .factors
            .iter()
            .chain(self.long.as_ref().map(|l| &l.factors));
        for f in sets {
            if f.len() != rotary_dim / 2 || f.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
                return Err(format!(
                    "RoPE frequency factors (rope_freqs / rope_scaling): {} positive values \
                     needed, got {}",
                    rotary_dim / 2,
                    f.len()
                ));
            }
        }
        if let Some(a) = self.attention_factor {
            if !(a.is_finite() && a > 0.0) {
                return Err(format!(
                    "RoPE attention factor {a}: it must be a positive number"
                ));
            }
        }
        if self.long.as_ref().is_some_and(|l| l.original == 0) {
            return Err("rope_scaling.original_max_position_embeddings is 0".into());
        }
        Ok(())
    }
}

/// transformers 5 writes RoPE's settings as `rope_parameters` (`rope_theta`, `rope_type` and
/// the scaling's fields together; per layer type where those differ, as Gemma 3's
/// `full_attention` and `sliding_attention`). Rewrites them into the fields transformers 4
/// wrote and the families read: `rope_theta`, `rope_scaling`, and for the sliding layers
/// `rope_local_base_freq`. Fields already there are left as they are.
pub fn from_rope_parameters(raw: &mut Value) {
    let Some(params) = raw.get("rope_parameters").cloned() else {
        return;
    };
    let (global, local) = match params.get("full_attention") {
        Some(full) => (full.clone(), params.get("sliding_attention").cloned()),
        None => (params, None),
    };
    let Some(obj) = raw.as_object_mut() else {
        return;
    };
    if let Some(theta) = global.get("rope_theta") {
        obj.entry("rope_theta").or_insert_with(|| theta.clone());
    }
    let kind = global
        .get("rope_type")
        .or_else(|| global.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    if kind != "default" && obj.get("rope_scaling").is_none_or(Value::is_null) {
        obj.insert("rope_scaling".into(), global);
    }
    if let Some(theta) = local.as_ref().and_then(|l| l.get("rope_theta")) {
        obj.entry("rope_local_base_freq")
            .or_insert_with(|| theta.clone());
    }
}

/// A frequency divisor that stops a pair of dimensions turning (llama.cpp's convention for
/// Gemma 4's unrotated frequencies, `rope_freqs` of 1e30): its frequency is taken as 0.
pub const NO_ROTATION: f64 = 1e30;

/// The scaling a `config.json`'s `rope_scaling` asks for, for `rotary_dim` rotated values
/// per head, RoPE base `theta` and context `max_positions`.
pub fn from_hf(
    raw: &Value,
    rotary_dim: usize,
    theta: f64,
    max_positions: usize,
) -> Result<RopeScaling, String> {
    let Some(rs) = raw.get("rope_scaling").filter(|v| !v.is_null()) else {
        return Ok(RopeScaling::default());
    };
    let kind = rs
        .get("rope_type")
        .or_else(|| rs.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let field = |k: &str| rs.get(k).filter(|v| !v.is_null());
    let num = |k: &str| {
        field(k)
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or_else(|| format!("rope_scaling.{k} is missing or not a positive number"))
    };
    let optional = |k: &str| field(k).map(|_| num(k)).transpose();
    // transformers 4 kept Phi-3's at the top level of config.json.
    let original = || {
        optional("original_max_position_embeddings")?
            .or_else(|| {
                raw.get("original_max_position_embeddings")
                    .and_then(Value::as_f64)
            })
            .filter(|v| *v >= 1.0)
            .ok_or_else(|| {
                "rope_scaling.original_max_position_embeddings is missing or below 1".to_string()
            })
    };
    match kind {
        "default" => Ok(RopeScaling::default()),
        // Gemma 4's full layers: the first `partial_rotary_factor` of the frequencies,
        // computed over the whole head, divided by the factor; the rest do not turn (their
        // dimensions pass through), rather than a narrower rotated width.
        "proportional" => {
            let partial = optional("partial_rotary_factor")?.unwrap_or(1.0);
            let factor = optional("factor")?.unwrap_or(1.0);
            let half = rotary_dim / 2;
            let angles = ((partial * rotary_dim as f64) / 2.0).floor() as usize;
            if angles == 0 || angles > half {
                return Err(format!(
                    "rope_scaling.partial_rotary_factor {partial} turns {angles} of {half} \
                     frequencies"
                ));
            }
            let mut factors = vec![factor; angles];
            factors.resize(half, NO_ROTATION);
            Ok(RopeScaling {
                factors: Some(factors),
                ..Default::default()
            })
        }
        // Every frequency divided by the factor (Gemma 3's global layers).
        "linear" => Ok(RopeScaling {
            factors: Some(vec![num("factor")?; rotary_dim / 2]),
            ..Default::default()
        }),
        "llama3" => {
            let low = num("low_freq_factor")?;
            let high = num("high_freq_factor")?;
            if high <= low {
                return Err(format!(
                    "rope_scaling.high_freq_factor {high} must exceed low_freq_factor {low}"
                ));
            }
            let (factor, original) = (num("factor")?, num("original_max_position_embeddings")?);
            Ok(RopeScaling {
                factors: Some(llama3(rotary_dim, theta, factor, low, high, original)),
                ..Default::default()
            })
        }
        "yarn" => {
            let original = original()?;
            let factor = optional("factor")?.unwrap_or(max_positions as f64 / original);
            let attention = match optional("attention_factor")? {
                Some(a) => a,
                None => match (optional("mscale")?, optional("mscale_all_dim")?) {
                    (Some(m), Some(all)) => yarn_mscale(factor, m) / yarn_mscale(factor, all),
                    _ => yarn_mscale(factor, 1.0),
                },
            };
            let beta_fast = optional("beta_fast")?.unwrap_or(32.0);
            let beta_slow = optional("beta_slow")?.unwrap_or(1.0);
            let truncate = field("truncate").and_then(Value::as_bool).unwrap_or(true);
            Ok(RopeScaling {
                factors: Some(yarn(
                    rotary_dim,
                    theta,
                    Yarn {
                        factor,
                        original,
                        beta_fast,
                        beta_slow,
                        truncate,
                    },
                )),
                attention_factor: Some(attention),
                long: None,
            })
        }
        "longrope" | "su" => {
            let list = |k: &str| -> Result<Vec<f64>, String> {
                field(k)
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<_>>>())
                    .ok_or_else(|| format!("rope_scaling.{k} is missing or not a list of numbers"))
            };
            let original = original()?;
            let factor = optional("factor")?.unwrap_or(max_positions as f64 / original);
            let attention = match optional("attention_factor")? {
                Some(a) => a,
                None => longrope_attention(factor, original),
            };
            Ok(RopeScaling {
                factors: Some(list("short_factor")?),
                attention_factor: Some(attention),
                long: Some(LongFactors {
                    factors: list("long_factor")?,
                    original: original as usize,
                }),
            })
        }
        other => Err(format!(
            "rope_scaling of type {other:?} is not supported yet"
        )),
    }
}

/// LongRoPE's default attention factor: `√(1 + ln factor / ln original)`, 1 when the
/// context is not extended.
pub fn longrope_attention(factor: f64, original: f64) -> f64 {
    if factor <= 1.0 {
        1.0
    } else {
        (1.0 + factor.ln() / original.ln()).sqrt()
    }
}

/// YaRN's `mscale` (its paper's eq. 21): `0.1 · m · ln factor + 1`, 1 when not extended.
pub fn yarn_mscale(factor: f64, m: f64) -> f64 {
    if factor <= 1.0 {
        1.0
    } else {
        0.1 * m * factor.ln() + 1.0
    }
}

/// YaRN's settings.
#[derive(Debug, Clone, Copy)]
pub struct Yarn {
    /// Context extension factor.
    pub factor: f64,
    /// Pre-training context.
    pub original: f64,
    /// Rotations below which frequencies are kept (default 32).
    pub beta_fast: f64,
    /// Rotations above which frequencies are interpolated (default 1).
    pub beta_slow: f64,
    /// Round the ramp's ends outward to whole dimensions (transformers' and llama.cpp's
    /// default).
    pub truncate: bool,
}

/// YaRN's divisors: frequencies that turn more than `beta_fast` times over the original
/// context unchanged, fewer than `beta_slow` times divided by `factor`, a linear ramp
/// between (transformers' `_compute_yarn_parameters`, llama.cpp's `rope_yarn`).
pub fn yarn(rotary_dim: usize, theta: f64, y: Yarn) -> Vec<f64> {
    let dim = rotary_dim as f64;
    let correction = |rotations: f64| {
        dim * (y.original / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * theta.ln())
    };
    let (mut low, mut high) = (correction(y.beta_fast), correction(y.beta_slow));
    if y.truncate {
        (low, high) = (low.floor(), high.ceil());
    }
    let (low, mut high) = (low.max(0.0), high.min(dim - 1.0));
    if low == high {
        high += 0.001;
    }
    (0..rotary_dim / 2)
        .map(|i| {
            let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
            let keep = 1.0 - ramp;
            1.0 / ((1.0 - keep) / y.factor + keep)
        })
        .collect()
}

/// Llama 3's divisors: high frequencies (wavelength below `original / high`) unchanged, low
/// ones (above `original / low`) divided by `factor`, those between interpolated smoothly.
pub fn llama3(
    head_dim: usize,
    theta: f64,
    factor: f64,
    low: f64,
    high: f64,
    original: f64,
) -> Vec<f64> {
    (0..head_dim / 2)
        .map(|i| {
            let inv_freq = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / inv_freq;
            if wavelen < original / high {
                1.0
            } else if wavelen > original / low {
                factor
            } else {
                let smooth = (original / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transformers_5_rope_parameters() {
        let mut raw =
            serde_json::json!({"rope_parameters": {"rope_theta": 2e6, "rope_type": "default"}});
        from_rope_parameters(&mut raw);
        assert_eq!(raw["rope_theta"], 2e6);
        assert!(raw.get("rope_scaling").is_none());
        let mut raw = serde_json::json!({"rope_scaling": null, "rope_parameters": {
            "rope_theta": 5e5, "rope_type": "llama3", "factor": 8.0}});
        from_rope_parameters(&mut raw);
        assert_eq!(raw["rope_scaling"]["factor"], 8.0);
        let mut raw = serde_json::json!({"rope_parameters": {
            "full_attention": {"rope_theta": 1e6, "rope_type": "linear", "factor": 8.0},
            "sliding_attention": {"rope_theta": 1e4, "rope_type": "default"}}});
        from_rope_parameters(&mut raw);
        assert_eq!(raw["rope_theta"], 1e6);
        assert_eq!(raw["rope_scaling"]["rope_type"], "linear");
        assert_eq!(raw["rope_local_base_freq"], 1e4);
    }

    #[test]
    fn llama3_keeps_high_and_divides_low_frequencies() {
        // Llama 3.1 8B: head 128, base 500,000, factor 8, low 1, high 4, original 8192.
        let f = llama3(128, 500_000.0, 8.0, 1.0, 4.0, 8192.0);
        assert_eq!(f.len(), 64);
        assert_eq!(f[0], 1.0);
        assert_eq!(f[63], 8.0);
        assert!(f.windows(2).all(|w| w[0] <= w[1]), "monotone");
        assert!(f.iter().any(|&x| x > 1.0 && x < 8.0), "a smooth band");
    }

    #[test]
    fn unknown_types_are_refused() {
        let raw = serde_json::json!({"rope_scaling": {"rope_type": "dynamic", "factor": 4.0}});
        assert!(from_hf(&raw, 64, 1e4, 4096)
            .unwrap_err()
            .contains("dynamic"));
        let none = serde_json::json!({"rope_scaling": null});
        assert_eq!(
            from_hf(&none, 64, 1e4, 4096).unwrap(),
            RopeScaling::default()
        );
    }
}

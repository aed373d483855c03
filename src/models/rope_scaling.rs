//! RoPE frequency scaling: Llama 3.1's `rope_scaling` of type `"llama3"`, which stretches the
//! low frequencies for long contexts, and `"linear"` (Gemma 3's global layers), which
//! stretches all of them. Expressed as one divisor per frequency, as llama.cpp
//! stores it in GGUF files (`rope_freqs.weight`): the decoder divides each inverse frequency
//! by its factor.
//!
//! Follows transformers' `_compute_llama3_parameters` (`modeling_rope_utils.py`).

use serde_json::Value;

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

/// The divisors a `config.json`'s `rope_scaling` asks for (`None`: plain RoPE), for a head
/// width `head_dim` and RoPE base `theta`.
pub fn from_hf(raw: &Value, head_dim: usize, theta: f64) -> Result<Option<Vec<f64>>, String> {
    let Some(rs) = raw.get("rope_scaling").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let kind = rs
        .get("rope_type")
        .or_else(|| rs.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    match kind {
        "default" => Ok(None),
        // Every frequency divided by the factor (Gemma 3's global layers).
        "linear" => {
            let factor = rs
                .get("factor")
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or("rope_scaling.factor is missing or not a positive number")?;
            Ok(Some(vec![factor; head_dim / 2]))
        }
        "llama3" => {
            let num = |k: &str| {
                rs.get(k)
                    .and_then(Value::as_f64)
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .ok_or_else(|| format!("rope_scaling.{k} is missing or not a positive number"))
            };
            let factor = num("factor")?;
            let low = num("low_freq_factor")?;
            let high = num("high_freq_factor")?;
            let original = num("original_max_position_embeddings")?;
            if high <= low {
                return Err(format!(
                    "rope_scaling.high_freq_factor {high} must exceed low_freq_factor {low}"
                ));
            }
            Ok(Some(llama3(head_dim, theta, factor, low, high, original)))
        }
        other => Err(format!(
            "rope_scaling of type {other:?} is not supported yet"
        )),
    }
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
        let raw = serde_json::json!({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}});
        assert!(from_hf(&raw, 64, 1e4).unwrap_err().contains("yarn"));
        let none = serde_json::json!({"rope_scaling": null});
        assert_eq!(from_hf(&none, 64, 1e4).unwrap(), None);
    }
}

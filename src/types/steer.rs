//! Steering: edits to a model's MLP neurons and attention heads, applied in every forward
//! (and backward) pass of a request. A neuron is one of a layer's MLP hidden units (the input
//! of `down_proj`); a head's output is its slice of `o_proj`'s input.
//!
//! Written `layer:unit` then the setting, comma-separated: `12:4031*0` scales neuron 4031 of
//! layer 12 by 0 (ablates it), `14:h3*2` doubles head 3 of layer 14, `12:4031=5` clamps the
//! neuron to 5 at every position, `14:h3=8` clamps the head's output to norm 8 at every
//! position (its direction kept). Layers, neurons and heads count from 0.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The largest scale factor in magnitude.
pub const MAX_SCALE: f32 = 10.0;
/// The largest clamp value in magnitude.
pub const MAX_CLAMP: f32 = 1e4;
/// The most edits a request holds.
pub const MAX_EDITS: usize = 64;

/// What an edit acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// An MLP hidden unit.
    Neuron(u32),
    /// An attention head.
    Head(u32),
}

/// What an edit does to its unit's activation at every position.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    /// Multiplies it (0 ablates it).
    Scale(f32),
    /// Sets it: a neuron's value, or a head's output norm (its direction kept).
    Clamp(f32),
}

/// One edit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Edit {
    /// The layer, from 0.
    pub layer: usize,
    /// The neuron or head in it.
    pub unit: Unit,
    /// What is done to it.
    pub setting: Setting,
}

impl Edit {
    /// Checks the setting's range and the unit against a model of `layers` layers,
    /// `neurons` MLP hidden units and `heads` heads per layer.
    pub fn check(&self, layers: usize, neurons: usize, heads: usize) -> Result<(), String> {
        let range = match self.setting {
            Setting::Scale(s) if !(s.is_finite() && s.abs() <= MAX_SCALE) => {
                Some(format!("a scale between -{MAX_SCALE} and {MAX_SCALE}"))
            }
            Setting::Clamp(v) if !(v.is_finite() && v.abs() <= MAX_CLAMP) => {
                Some(format!("a clamp between -{MAX_CLAMP} and {MAX_CLAMP}"))
            }
            Setting::Clamp(v) if matches!(self.unit, Unit::Head(_)) && v < 0.0 => {
                Some("a head's clamp is its output's norm: at least 0".to_string())
            }
            _ => None,
        };
        if let Some(want) = range {
            return Err(format!("steering {self}: {want}"));
        }
        if self.layer >= layers {
            return Err(format!(
                "steering {self}: the model has layers 0 to {}",
                layers.saturating_sub(1)
            ));
        }
        let (kind, of, i) = match self.unit {
            Unit::Neuron(i) => ("neurons", neurons, i),
            Unit::Head(i) => ("heads", heads, i),
        };
        if i as usize >= of {
            return Err(format!(
                "steering {self}: a layer has {kind} 0 to {}",
                of.saturating_sub(1)
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Edit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.unit {
            Unit::Neuron(i) => write!(f, "{}:{i}", self.layer)?,
            Unit::Head(i) => write!(f, "{}:h{i}", self.layer)?,
        }
        match self.setting {
            Setting::Scale(s) => write!(f, "*{s}"),
            Setting::Clamp(v) => write!(f, "={v}"),
        }
    }
}

impl FromStr for Edit {
    type Err = String;

    /// `layer:neuron*scale`, `layer:neuron=value`, `layer:hHEAD*scale`, `layer:hHEAD=norm`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = |why: &str| {
            format!(
                "steering {s:?}: {why} (write layer:neuron*scale, layer:neuron=value, \
                 layer:hHEAD*scale or layer:hHEAD=norm, e.g. 12:4031*0 or 14:h3*2)"
            )
        };
        let (unit, setting) = match (s.split_once('*'), s.split_once('=')) {
            (Some((u, v)), None) => (u, v.trim().parse().map(Setting::Scale)),
            (None, Some((u, v))) => (u, v.trim().parse().map(Setting::Clamp)),
            _ => return Err(bad("one '*' or '=' expected")),
        };
        let setting = setting.map_err(|_| bad("the setting is not a number"))?;
        let at = super::inside::parse_component(unit).map_err(bad)?;
        let (layer, unit) = (at.layer, at.unit);
        Ok(Edit {
            layer,
            unit,
            setting,
        })
    }
}

/// Parses a comma-separated list of edits (empty: none).
pub fn parse_edits(s: &str) -> Result<Vec<Edit>, String> {
    let edits: Vec<Edit> = s
        .split(',')
        .filter(|e| !e.trim().is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    if edits.len() > MAX_EDITS {
        return Err(format!("at most {MAX_EDITS} edits, not {}", edits.len()));
    }
    Ok(edits)
}

/// The edits written as [`parse_edits`] reads them.
pub fn format_edits(edits: &[Edit]) -> String {
    edits
        .iter()
        .map(Edit::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Checks a request's edits against a model (see [`Edit::check`]), and that no unit is
/// edited twice.
pub fn check_edits(
    edits: &[Edit],
    layers: usize,
    neurons: usize,
    heads: usize,
) -> Result<(), String> {
    if edits.len() > MAX_EDITS {
        return Err(format!("at most {MAX_EDITS} edits, not {}", edits.len()));
    }
    for (i, e) in edits.iter().enumerate() {
        e.check(layers, neurons, heads)?;
        if edits[..i]
            .iter()
            .any(|o| (o.layer, o.unit) == (e.layer, e.unit))
        {
            return Err(format!("steering {e}: that unit is edited twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_read_and_write_the_same() {
        let edits = parse_edits("12:4031*0, 14:h3*2,5:7=-1.5,0:h0=8").unwrap();
        assert_eq!(
            edits[0],
            Edit {
                layer: 12,
                unit: Unit::Neuron(4031),
                setting: Setting::Scale(0.0)
            }
        );
        assert_eq!(edits[1].unit, Unit::Head(3));
        assert_eq!(edits[2].setting, Setting::Clamp(-1.5));
        assert_eq!(format_edits(&edits), "12:4031*0,14:h3*2,5:7=-1.5,0:h0=8");
        assert_eq!(parse_edits(&format_edits(&edits)).unwrap(), edits);
        assert!(parse_edits("").unwrap().is_empty());
        let json = serde_json::to_string(&edits[1]).unwrap();
        assert_eq!(
            json,
            r#"{"layer":14,"unit":{"head":3},"setting":{"scale":2.0}}"#
        );
    }

    #[test]
    fn bad_edits_say_what_is_wrong() {
        for (s, says) in [
            ("12:4031", "one '*' or '='"),
            ("12:4031*x", "not a number"),
            ("12-4031*0", "no ':'"),
            ("a:1*0", "layer is not a number"),
            ("1:hx*0", "head is not a number"),
            ("1:2*0=1", "one '*' or '='"),
        ] {
            let err = parse_edits(s).unwrap_err();
            assert!(err.contains(says), "{s}: {err}");
        }
        let check = |s: &str| check_edits(&parse_edits(s).unwrap(), 30, 1536, 9);
        assert!(check("29:1535*10,29:h8=0").is_ok());
        for (s, says) in [
            ("30:1*0", "layers 0 to 29"),
            ("1:1536*0", "neurons 0 to 1535"),
            ("1:h9*0", "heads 0 to 8"),
            ("1:1*11", "a scale between"),
            ("1:1*NaN", "a scale between"),
            ("1:1=1e5", "a clamp between"),
            ("1:h1=-1", "at least 0"),
            ("1:1*0,1:1=2", "edited twice"),
        ] {
            let err = check(s).unwrap_err();
            assert!(err.contains(says), "{s}: {err}");
        }
        let many = vec!["0:1*0"; MAX_EDITS + 1].join(",");
        assert!(parse_edits(&many).unwrap_err().contains("at most"));
    }
}

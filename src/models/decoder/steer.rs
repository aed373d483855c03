//! Steering: a decoder whose chosen MLP neurons and attention heads are scaled or clamped in
//! every pass (see [`crate::types::Edit`]). Each forward applies a layer's edits where the
//! unit's activation is (a neuron: the input of `down_proj`; a head: its slice of `o_proj`'s
//! input), and the explicit backward carries the cotangent through them: a scale multiplies
//! it, a clamped neuron passes none (a constant), a clamped head passes it through the
//! rescaling to its norm (an RMSNorm of the head's output with a constant weight, so the
//! caller's derivatives of a norm apply).

use super::{Decoder, Mixer};
use crate::models::Derivatives;
use crate::types::{check_edits, Edit, Setting, Unit};
use candle_core::{Result, Tensor};

/// `ε` of a clamped head's norm.
const HEAD_EPS: f64 = 1e-12;

/// A layer's edited neurons: `x ⊙ scale + add` over the MLP's hidden units.
#[derive(Debug, Clone)]
pub(super) struct NeuronEdits {
    scale: Vec<f32>,
    add: Vec<f32>,
}

impl NeuronEdits {
    fn vectors(&self, like: &Tensor) -> Result<(Tensor, Tensor)> {
        let (dev, dt, n) = (like.device(), like.dtype(), self.scale.len());
        Ok((
            Tensor::from_slice(&self.scale, n, dev)?.to_dtype(dt)?,
            Tensor::from_slice(&self.add, n, dev)?.to_dtype(dt)?,
        ))
    }

    /// The edited hidden units of `x` `(…, intermediate)`.
    pub(super) fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let (scale, add) = self.vectors(x)?;
        x.broadcast_mul(&scale)?.broadcast_add(&add)
    }

    /// The edits of units `start..start + len`, when any of them is edited.
    pub(super) fn part(&self, start: usize, len: usize) -> Option<NeuronEdits> {
        let scale = self.scale.get(start..start + len)?.to_vec();
        let add = self.add.get(start..start + len)?.to_vec();
        let edited = scale.iter().any(|&s| s != 1.0) || add.iter().any(|&a| a != 0.0);
        edited.then_some(NeuronEdits { scale, add })
    }

    /// The cotangent `d` `(…, intermediate)` of the edited units carried to the unedited.
    pub(super) fn vjp(&self, d: &Tensor) -> Result<Tensor> {
        let (scale, _) = self.vectors(d)?;
        d.broadcast_mul(&scale)
    }
}

/// A layer's edited heads: each head's output scaled, or rescaled to a norm.
#[derive(Debug, Clone)]
pub(super) struct HeadEdits {
    /// Per head (1: untouched; a clamped head's too, its norm set after).
    scale: Vec<f32>,
    /// `(head, norm)`.
    clamp: Vec<(usize, f32)>,
}

impl HeadEdits {
    /// A clamped head's norm weight `(head_dim,)`: RMSNorm's `√head_dim / |o|` times it is
    /// `norm / |o|`.
    fn norm_weight(&self, norm: f32, like: &Tensor) -> Result<Tensor> {
        let hd = like.dim(candle_core::D::Minus1)?;
        let w = vec![norm / (hd as f32).sqrt(); hd];
        Tensor::from_vec(w, hd, like.device())?.to_dtype(like.dtype())
    }

    /// The scales as a `(heads, 1, 1)` tensor.
    fn scales(&self, like: &Tensor) -> Result<Tensor> {
        let n = self.scale.len();
        Tensor::from_slice(&self.scale, (n, 1, 1), like.device())?.to_dtype(like.dtype())
    }

    /// The edited heads' outputs `o`: `(heads, seq, head_dim)`.
    pub(super) fn apply(&self, o: &Tensor, dv: &dyn Derivatives) -> Result<Tensor> {
        let mut o = o.broadcast_mul(&self.scales(o)?)?;
        for &(h, norm) in &self.clamp {
            let w = self.norm_weight(norm, &o)?;
            let head = dv.rms_norm(&o.narrow(0, h, 1)?.contiguous()?, &w, HEAD_EPS)?;
            o = o.slice_assign(&[h..h + 1, 0..o.dim(1)?, 0..o.dim(2)?], &head)?;
        }
        Ok(o)
    }

    /// Whether a head is clamped (its backward reads the unedited outputs).
    pub(super) fn clamps(&self) -> bool {
        !self.clamp.is_empty()
    }

    /// The cotangent `d` `(b, heads, seq, head_dim)` of the edited outputs carried to the
    /// unedited ones `o` `(heads, seq, head_dim)` (read only where a head is clamped).
    pub(super) fn vjp(
        &self,
        o: Option<&Tensor>,
        d: &Tensor,
        dv: &dyn Derivatives,
    ) -> Result<Tensor> {
        let mut d = d.broadcast_mul(&self.scales(d)?.unsqueeze(0)?)?;
        for &(h, norm) in &self.clamp {
            let Some(o) = o else {
                candle_core::bail!("a clamped head's backward needs its outputs");
            };
            let w = self.norm_weight(norm, &d)?;
            let x = o.narrow(0, h, 1)?.contiguous()?;
            let dh = d.narrow(1, h, 1)?.contiguous()?;
            let dx = dv.rms_norm_vjp(&x, &w, HEAD_EPS, &dh)?;
            let (b, _, n, hd) = d.dims4()?;
            d = d.slice_assign(&[0..b, h..h + 1, 0..n, 0..hd], &dx)?;
        }
        Ok(d)
    }
}

impl Decoder {
    /// This decoder with `edits` applied in every pass (the weights shared).
    pub fn steered(&self, edits: &[Edit]) -> crate::Result<Decoder> {
        let cfg = &self.cfg;
        let (layers, heads) = (cfg.num_hidden_layers, cfg.num_attention_heads);
        check_edits(edits, layers, cfg.max_neurons(), heads)
            .map_err(crate::Error::InvalidSetting)?;
        let mut out = self.clone();
        for (l, layer) in out.layers.iter_mut().enumerate() {
            let mine: Vec<&Edit> = edits.iter().filter(|e| e.layer == l).collect();
            let neurons = cfg.neurons(l);
            let mut n = NeuronEdits {
                scale: vec![1.0; neurons],
                add: vec![0.0; neurons],
            };
            let mut h = HeadEdits {
                scale: vec![1.0; heads],
                clamp: Vec::new(),
            };
            let (mut any_n, mut any_h) = (false, false);
            for e in mine {
                if let Unit::Neuron(i) = e.unit {
                    if i as usize >= neurons {
                        return Err(crate::Error::InvalidSetting(format!(
                            "steering {e}: layer {l} has neurons 0 to {}",
                            neurons.saturating_sub(1)
                        )));
                    }
                }
                match (e.unit, e.setting) {
                    (Unit::Neuron(i), Setting::Scale(s)) => n.scale[i as usize] = s,
                    (Unit::Neuron(i), Setting::Clamp(v)) => {
                        (n.scale[i as usize], n.add[i as usize]) = (0.0, v);
                    }
                    (Unit::Head(i), Setting::Scale(s)) => h.scale[i as usize] = s,
                    (Unit::Head(i), Setting::Clamp(v)) => h.clamp.push((i as usize, v)),
                }
                match e.unit {
                    Unit::Neuron(_) => any_n = true,
                    Unit::Head(_) => any_h = true,
                }
            }
            layer.mlp.steer(any_n.then_some(n));
            match &mut layer.mixer {
                Mixer::Attention(a) => a.steer = any_h.then_some(h),
                Mixer::DeltaNet(_) if any_h => {
                    return Err(crate::Error::InvalidSetting(format!(
                        "layer {l} is a Gated DeltaNet layer: it has no attention heads to steer"
                    )));
                }
                Mixer::DeltaNet(_) => {}
            }
        }
        Ok(out)
    }
}

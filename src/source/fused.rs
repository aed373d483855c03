//! Fused matrices read as the decoder's own: a family whose files stack several projections
//! in one tensor (Phi-3's `qkv_proj` and `gate_up_proj`) is served each projection as rows of
//! it, dense, 16-bit or quantized as the file holds it (`Weight::row_range`), so the decoder
//! never learns of the fusion.

use crate::error::Result;
use crate::models::decoder::{Config, WeightSource};
use crate::models::family::{Family, Fused};
use crate::models::weight::Weight;
use candle_core::{DType, Tensor};

/// `inner`, with the family's fused matrices split (or `inner` itself when it has none).
pub(super) fn split(
    inner: Box<dyn WeightSource>,
    family: &dyn Family,
    cfg: &Config,
) -> Box<dyn WeightSource> {
    match family.fused() {
        [] => inner,
        fused => Box::new(Split {
            inner,
            fused,
            cfg: cfg.clone(),
            last: None,
        }),
    }
}

struct Split {
    inner: Box<dyn WeightSource>,
    fused: &'static [Fused],
    cfg: Config,
    /// The fused matrix read last: its parts are asked for one after another.
    last: Option<(String, Weight)>,
}

/// Where a part lies: the fused tensor's name and the part's rows.
struct Place {
    fused: String,
    start: usize,
    len: usize,
    total: usize,
}

impl Split {
    /// The fused tensor that holds `name`, if the file stores it fused.
    fn place(&self, name: &str) -> Option<Place> {
        let rest = name.strip_prefix("model.layers.")?;
        let (layer, tail) = rest.split_once('.')?;
        self.fused.iter().find_map(|f| {
            let fused = format!("model.layers.{layer}.{}", f.stored);
            if !self.inner.contains(&fused) {
                return None;
            }
            let rows: Vec<usize> = f.parts.iter().map(|(_, r)| r.of(&self.cfg)).collect();
            let i = f.parts.iter().position(|(p, _)| *p == tail)?;
            Some(Place {
                fused,
                start: rows[..i].iter().sum(),
                len: rows[i],
                total: rows.iter().sum(),
            })
        })
    }

    fn fused_matrix(&mut self, name: &str) -> Result<Weight> {
        if let Some((n, w)) = &self.last {
            if n == name {
                return Ok(w.clone());
            }
        }
        let w = self.inner.get_matrix(name)?;
        self.last = Some((name.to_string(), w.clone()));
        Ok(w)
    }
}

impl WeightSource for Split {
    fn get(&mut self, name: &str) -> Result<Tensor> {
        match self.place(name) {
            Some(p) => Ok(self
                .inner
                .get(&p.fused)?
                .narrow(0, p.start, p.len)?
                .contiguous()?),
            None => self.inner.get(name),
        }
    }
    fn get_matrix(&mut self, name: &str) -> Result<Weight> {
        match self.place(name) {
            Some(p) => Ok(self.fused_matrix(&p.fused)?.row_range(p.start, p.len)?),
            None => self.inner.get_matrix(name),
        }
    }
    fn contains(&self, name: &str) -> bool {
        self.place(name).is_some() || self.inner.contains(name)
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let Some(p) = self.place(name) else {
            return self.inner.shape(name);
        };
        // A fused tensor of the wrong height is reported as it is, under the part's name.
        match self.inner.shape(&p.fused)?.as_slice() {
            &[rows, cols] if rows == p.total => Some(vec![p.len, cols]),
            other => Some(other.to_vec()),
        }
    }
    fn dense_bytes(&self, dtype: DType) -> u64 {
        self.inner.dense_bytes(dtype)
    }
    fn keep_stored(&mut self) -> Option<(String, u64)> {
        self.inner.keep_stored()
    }
    fn file_name(&self, name: &str) -> String {
        match self.place(name) {
            Some(p) => format!(
                "{} (rows {}..{} of {})",
                self.inner.file_name(&p.fused),
                p.start,
                p.start + p.len,
                p.total
            ),
            None => self.inner.file_name(name),
        }
    }
}

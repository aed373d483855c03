//! Fused matrices read as the decoder's own: a family whose files stack several projections
//! in one tensor (Phi-3's `qkv_proj` and `gate_up_proj`) is served each projection as rows of
//! it, dense, 16-bit or quantized as the file holds it (`Weight::row_range`), so the decoder
//! never learns of the fusion. Sparse experts stored stacked (GGUF's `ffn_{gate,up,down}_exps`,
//! `(experts, rows, columns)`; transformers 5's `experts.gate_up_proj` and `experts.down_proj`)
//! are served the same way, each expert's matrix as its rows of the stack.

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
    match (family.fused(), &cfg.arch.experts) {
        ([], None) => inner,
        (fused, _) => Box::new(Split {
            inner,
            fused,
            cfg: cfg.clone(),
            recent: Vec::new(),
        }),
    }
}

/// Stacked matrices kept while their parts are served: an MLP's three (its experts' parts
/// are asked for expert by expert, gate, up and down in turn).
const RECENT: usize = 3;

struct Split {
    inner: Box<dyn WeightSource>,
    fused: &'static [Fused],
    cfg: Config,
    /// The stacked matrices read last, newest last: their parts are asked for one after
    /// another.
    recent: Vec<(String, Weight)>,
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
        if let Some(p) = self.expert_place(layer, tail) {
            return Some(p);
        }
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

    /// Where expert `e`'s matrix of layer `layer` lies when the file stacks the experts
    /// (`tail`: `mlp.experts.{e}.{gate,up,down}_proj.weight`; Gemma 4's sit beside the MLP,
    /// `experts.{e}.…`).
    fn expert_place(&self, layer: &str, tail: &str) -> Option<Place> {
        let experts = self.cfg.arch.experts.as_ref()?;
        let (group, rest) = ["mlp.experts", "experts"].iter().find_map(|g| {
            let rest = tail.strip_prefix(g)?.strip_prefix('.')?;
            Some((g, rest))
        })?;
        let (e, proj) = rest.split_once('.')?;
        let e: usize = e.parse().ok()?;
        let proj = proj.strip_suffix("_proj.weight")?;
        let p = format!("model.layers.{layer}.{group}");
        let (w, h) = (experts.width, self.cfg.hidden_size);
        let stacked = format!("{p}.{proj}_proj.weight");
        let (fused, offset, len, stride) = if self.inner.contains(&stacked) {
            let len = if proj == "down" { h } else { w };
            (stacked, 0, len, len)
        } else {
            match proj {
                "gate" => (format!("{p}.gate_up_proj"), 0, w, 2 * w),
                "up" => (format!("{p}.gate_up_proj"), w, w, 2 * w),
                "down" => (format!("{p}.down_proj"), 0, h, h),
                _ => return None,
            }
        };
        (e < experts.count && self.inner.contains(&fused)).then(|| Place {
            fused,
            start: e * stride + offset,
            len,
            total: experts.count * stride,
        })
    }

    fn fused_matrix(&mut self, name: &str) -> Result<Weight> {
        if let Some((_, w)) = self.recent.iter().find(|(n, _)| n == name) {
            return Ok(w.clone());
        }
        let w = self.inner.get_matrix(name)?;
        if self.recent.len() == RECENT {
            self.recent.remove(0);
        }
        self.recent.push((name.to_string(), w.clone()));
        Ok(w)
    }
}

impl WeightSource for Split {
    fn get(&mut self, name: &str) -> Result<Tensor> {
        match self.place(name) {
            Some(p) => {
                let t = self.inner.get(&p.fused)?;
                let cols = t.dims().last().copied().unwrap_or(1);
                Ok(t.reshape(((), cols))?
                    .narrow(0, p.start, p.len)?
                    .contiguous()?)
            }
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
        let shape = self.inner.shape(&p.fused)?;
        match shape.split_last() {
            Some((&cols, lead)) if lead.iter().product::<usize>() == p.total => {
                Some(vec![p.len, cols])
            }
            _ => Some(shape),
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

//! Sparse experts (Qwen3-MoE's `Qwen3MoeSparseMoeBlock`): a router `(experts, hidden)` gives
//! each token a softmax (in f32) over the experts; the `per_token` most probable are chosen,
//! their probabilities renormalised to sum to 1 where the model says so, and the block's
//! output is `Σ_chosen w_e · expert_e(x)`, each expert a gated MLP of its own. Only the
//! chosen experts run, each on the rows of the tokens that chose it.
//!
//! The routing weights are differentiated as written (softmax, the choice as a gather, the
//! renormalisation); the product `expert_e(x) · w_e` is a [`Derivatives`] point
//! (`expert_scales`), where a caller may split or stop its gradient.
//!
//! A shared expert (Qwen3.5-MoE) runs on every token beside the routed ones: its output `y`
//! scaled by `σ(shared_expert_gate · x)`, a number per token — an output gate like gated
//! attention's, with the same [`Derivatives`] point (`output_gate_scales`). Its units are
//! the block's last neurons.
//!
//! Gemma 4's router (`Gemma4TextRouter`) reads an input of its own, the un-normed stream,
//! through a weightless RMSNorm times a stored scale and `hidden^-½` (an RMSNorm whose weight
//! is their product), and multiplies each chosen expert's renormalised weight by a stored
//! number of that expert's (`per_expert_scale`, a constant).

use super::ffn::{Mlp, SavedMlp};
use super::steer::NeuronEdits;
use super::watch::{At, Point};
use super::WeightSource;
use crate::kernels::Products;
use crate::models::config::Experts;
use crate::models::gated::sigmoid;
use crate::models::gated::{scale_gradient, Activation};
use crate::models::linear::Linear;
use crate::models::weight::Weight;
use crate::models::{softmax_last_dim, Derivatives, Ordinary};
use candle_core::{DType, Result, Tensor, D};

#[derive(Debug, Clone)]
pub(super) struct Moe {
    /// `(experts, hidden)`.
    router: Linear,
    /// The norm of the router's input `(hidden,)` and its epsilon, where it has one (Gemma 4).
    router_norm: Option<(Tensor, f64)>,
    /// Each expert's weight's factor `(experts,)` in f32, where the model has them (Gemma 4).
    expert_scale: Option<Tensor>,
    experts: Vec<Mlp>,
    per_token: usize,
    normalize: bool,
    width: usize,
    shared: Option<Shared>,
}

/// The experts' part of a backward pass: the cotangents of their input and of the router's
/// (where a gradient reaches the router), and of the hidden units where asked.
pub(super) struct MoeBackward {
    pub(super) dx: Tensor,
    pub(super) d_router: Option<Tensor>,
    /// The hidden units `(rows, neurons)` and their cotangents `(b, rows, neurons)`.
    pub(super) heard: Option<(Tensor, Tensor)>,
}

/// A shared expert and its gate `(1, hidden)`.
#[derive(Debug, Clone)]
struct Shared {
    mlp: Mlp,
    gate: Linear,
}

/// What a shared expert's backward reads.
#[derive(Debug)]
struct SavedShared {
    mlp: SavedMlp,
    /// Its output before the gate, `(rows, hidden)`.
    y: Tensor,
    /// σ of the gate's logits, `(rows, 1)`.
    gate: Tensor,
}

/// The routing of a pass: the chosen experts' weights and which rows each expert takes.
#[derive(Debug)]
struct Routes {
    /// The softmax over the experts, `(rows, experts)` in f32.
    probs: Tensor,
    /// The chosen experts' weights, `(rows · per_token,)` in f32, row-major.
    weights: Tensor,
    /// The chosen experts, `(rows, per_token)`.
    chosen: Tensor,
    /// Each chosen expert, in expert order, with the rows that chose it and the positions of
    /// those choices in `weights`.
    hits: Vec<Hit>,
}

#[derive(Debug)]
struct Hit {
    expert: usize,
    rows: Tensor,
    slots: Tensor,
}

/// What the experts' backward reads.
#[derive(Debug)]
pub(super) struct SavedMoe {
    routes: Routes,
    /// Each hit expert's gate and up projections of its rows.
    experts: Vec<SavedMlp>,
    shared: Option<SavedShared>,
    rows: usize,
    /// The router's input, where it is normed (its own input: Gemma 4).
    router_input: Option<Tensor>,
}

impl Moe {
    pub(super) fn load(
        w: &mut dyn WeightSource,
        p: &str,
        e: &Experts,
        act: Activation,
    ) -> crate::Result<Self> {
        let router = Linear::new(w.get_matrix(&format!("{p}.gate.weight"))?);
        let experts = (0..e.count)
            .map(|x| Mlp::load(w, &format!("{p}.experts.{x}"), act))
            .collect::<crate::Result<Vec<_>>>()?;
        let shared = match e.shared {
            Some(_) => {
                // `(1, hidden)`; llama.cpp stores it as a vector.
                let gate = w.get(&format!("{p}.shared_expert_gate.weight"))?;
                let gate = gate.reshape((1, gate.elem_count()))?;
                Some(Shared {
                    mlp: Mlp::load(w, &format!("{p}.shared_expert"), act)?,
                    gate: Linear::new(Weight::dense(gate)),
                })
            }
            None => None,
        };
        Ok(Moe {
            router,
            router_norm: None,
            expert_scale: None,
            experts,
            per_token: e.per_token,
            normalize: e.normalize,
            width: e.width,
            shared,
        })
    }

    /// Gemma 4's experts of the layer under prefix `p` (`model.layers.3`): the router
    /// (`router.proj`, its input's norm `router.scale · hidden^-½`, `router.per_expert_scale`)
    /// and the experts (`experts.{e}`, served from the stacked tensors).
    pub(super) fn load_gemma4(
        w: &mut dyn WeightSource,
        p: &str,
        e: &Experts,
        act: Activation,
        eps: f64,
    ) -> crate::Result<Self> {
        let scale = w.get(&format!("{p}.router.scale"))?;
        let root = (scale.elem_count() as f64).powf(-0.5);
        let expert_scale = w.get(&format!("{p}.router.per_expert_scale"))?;
        let experts = (0..e.count)
            .map(|x| Mlp::load(w, &format!("{p}.experts.{x}"), act))
            .collect::<crate::Result<Vec<_>>>()?;
        Ok(Moe {
            router: Linear::new(w.get_matrix(&format!("{p}.router.proj.weight"))?),
            router_norm: Some(((scale * root)?, eps)),
            expert_scale: Some(expert_scale.to_dtype(DType::F32)?.flatten_all()?),
            experts,
            per_token: e.per_token,
            normalize: e.normalize,
            width: e.width,
            shared: None,
        })
    }

    /// Routes the rows of `x` (the router's input): the softmax of the router's logits in
    /// f32, the `per_token` largest (the first of equals), renormalised where configured,
    /// times the experts' own factors where the model has them. With a tracked `x` the
    /// weights carry its graph.
    fn route(&self, x: &Tensor, dv: &dyn Derivatives, p: Products) -> Result<Routes> {
        let x = match &self.router_norm {
            Some((w, eps)) => dv.rms_norm(x, &w.to_dtype(x.dtype())?, *eps)?,
            None => x.clone(),
        };
        let logits = self.router.forward(&x, p)?.to_dtype(DType::F32)?;
        let probs = softmax_last_dim(&logits)?;
        let (n, k) = (x.dim(0)?, self.per_token);
        let mut chosen = Vec::with_capacity(n * k);
        let mut by_expert: Vec<(Vec<u32>, Vec<u32>)> = vec![Default::default(); self.experts.len()];
        for (r, row) in probs.detach().to_vec2::<f32>()?.iter().enumerate() {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            for (slot, &e) in order[..k].iter().enumerate() {
                chosen.push(e as u32);
                by_expert[e].0.push(r as u32);
                by_expert[e].1.push((r * k + slot) as u32);
            }
        }
        let dev = x.device();
        let chosen = Tensor::from_vec(chosen, (n, k), dev)?;
        let mut top = probs.gather(&chosen, 1)?;
        if self.normalize {
            top = top.broadcast_div(&top.sum_keepdim(1)?)?;
        }
        if let Some(s) = &self.expert_scale {
            top = top.mul(&s.index_select(&chosen.flatten_all()?, 0)?.reshape((n, k))?)?;
        }
        let hits = by_expert
            .into_iter()
            .enumerate()
            .filter(|(_, (rows, _))| !rows.is_empty())
            .map(|(expert, (rows, slots))| {
                let m = rows.len();
                Ok(Hit {
                    expert,
                    rows: Tensor::from_vec(rows, m, dev)?,
                    slots: Tensor::from_vec(slots, m, dev)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Routes {
            probs,
            weights: top.flatten_all()?,
            chosen,
            hits,
        })
    }

    /// `Σ_chosen w_e · expert_e(x)` for autograd, with `dv`'s derivatives.
    pub(super) fn forward(&self, x: &Tensor, dv: &dyn Derivatives, p: Products) -> Result<Tensor> {
        self.forward_routed(x, x, dv, p)
    }

    /// The same with the router reading `xr` (Gemma 4: the un-normed stream).
    pub(super) fn forward_routed(
        &self,
        x: &Tensor,
        xr: &Tensor,
        dv: &dyn Derivatives,
        p: Products,
    ) -> Result<Tensor> {
        let routes = self.route(xr, dv, p)?;
        let weights = routes.weights.to_dtype(x.dtype())?;
        let [sy, sw] = dv.expert_scales();
        let mut out = x.zeros_like()?;
        for hit in &routes.hits {
            let y = self.experts[hit.expert].forward(&x.index_select(&hit.rows, 0)?, dv, p)?;
            let w = weights.index_select(&hit.slots, 0)?.unsqueeze(1)?;
            let y = scale_gradient(&y, sy)?.broadcast_mul(&scale_gradient(&w, sw)?)?;
            out = out.index_add(&hit.rows, &y, 0)?;
        }
        if let Some(s) = &self.shared {
            let [sy, sg] = dv.output_gate_scales();
            let y = s.mlp.forward(x, dv, p)?;
            let g = sigmoid(&s.gate.forward(x, p)?)?;
            out = (out + scale_gradient(&y, sy)?.broadcast_mul(&scale_gradient(&g, sg)?)?)?;
        }
        Ok(out)
    }

    /// The output of `x` without a graph, and what the backward reads.
    pub(super) fn forward_saved(&self, x: &Tensor, p: Products) -> Result<(Tensor, SavedMoe)> {
        self.forward_saved_routed(x, x, p)
    }

    /// The same with the router reading `xr`.
    pub(super) fn forward_saved_routed(
        &self,
        x: &Tensor,
        xr: &Tensor,
        p: Products,
    ) -> Result<(Tensor, SavedMoe)> {
        let routes = self.route(xr, &Ordinary, p)?;
        let weights = routes.weights.to_dtype(x.dtype())?;
        let mut out = x.zeros_like()?;
        let mut experts = Vec::with_capacity(routes.hits.len());
        for hit in &routes.hits {
            let mlp = &self.experts[hit.expert];
            let (y, s) = mlp.forward_saved(&x.index_select(&hit.rows, 0)?, p)?;
            let w = weights.index_select(&hit.slots, 0)?.unsqueeze(1)?;
            out = out.index_add(&hit.rows, &y.broadcast_mul(&w)?, 0)?;
            experts.push(s);
        }
        let shared = match &self.shared {
            Some(s) => {
                let (y, mlp) = s.mlp.forward_saved(x, p)?;
                let gate = sigmoid(&s.gate.forward(x, p)?)?;
                out = (out + y.broadcast_mul(&gate)?)?;
                Some(SavedShared { mlp, y, gate })
            }
            None => None,
        };
        let rows = x.dim(0)?;
        Ok((
            out,
            SavedMoe {
                routes,
                experts,
                shared,
                rows,
                router_input: self.router_norm.as_ref().map(|_| xr.clone()),
            },
        ))
    }

    /// The hidden units of a saved pass side by side, `(rows, experts · width [+ shared])`:
    /// each expert's on the rows that chose it, 0 elsewhere, then the shared expert's.
    pub(super) fn hidden(&self, s: &SavedMoe) -> Result<Tensor> {
        let hidden = s
            .experts
            .iter()
            .zip(&s.routes.hits)
            .map(|(saved, hit)| Ok((hit, self.experts[hit.expert].hidden(saved)?)))
            .collect::<Result<Vec<_>>>()?;
        let shared = match (&self.shared, &s.shared) {
            (Some(m), Some(saved)) => Some(m.mlp.hidden(&saved.mlp)?),
            _ => None,
        };
        self.with_shared(self.side_by_side(&hidden, &[], s.rows)?, shared)
    }

    /// The routed experts' units followed by the shared expert's, where there is one.
    fn with_shared(&self, routed: Tensor, shared: Option<Tensor>) -> Result<Tensor> {
        match shared {
            Some(t) => Tensor::cat(&[&routed, &t.to_dtype(routed.dtype())?], D::Minus1),
            None => Ok(routed),
        }
    }

    /// Per-expert tensors `(lead…, hit rows, width)` placed side by side over all rows,
    /// `(lead…, rows, experts · width)`, zeros where an expert was not chosen.
    fn side_by_side(
        &self,
        parts: &[(&Hit, Tensor)],
        lead: &[usize],
        rows: usize,
    ) -> Result<Tensor> {
        let Some((_, first)) = parts.first() else {
            candle_core::bail!("a pass over no rows");
        };
        let shape = [lead, &[rows, self.width]].concat();
        let zeros = Tensor::zeros(shape, first.dtype(), first.device())?;
        let dim = lead.len();
        let mut columns = vec![zeros.clone(); self.experts.len()];
        for (hit, t) in parts {
            columns[hit.expert] = zeros.index_add(&hit.rows, t, dim)?;
        }
        Tensor::cat(&columns, dim + 1)
    }

    /// Cotangents `dm: (b, rows, hidden)` of the block's output carried to its input: into
    /// each chosen expert and, through the weights, into the router, and into the shared
    /// expert and its gate. `watch` hears the hidden units.
    pub(super) fn backward(
        &self,
        s: &SavedMoe,
        dm: &Tensor,
        dv: &dyn Derivatives,
        p: Products,
        watch: Option<&mut At<'_>>,
    ) -> Result<Tensor> {
        let hears = watch.as_ref().is_some_and(|w| w.wants(Point::MlpHidden));
        let back = self.backward_parts(s, dm, dv, p, hears)?;
        if let (Some(w), Some((act, cot))) = (watch, back.heard) {
            w.hear(Point::MlpHidden, || Ok(act), &cot)?;
        }
        match back.d_router {
            Some(d) => back.dx + d,
            None => Ok(back.dx),
        }
    }

    /// The backward's parts: the cotangent of the experts' input and, where a gradient
    /// reaches the router, of its input; with `hears`, the hidden units and their
    /// cotangents.
    pub(super) fn backward_parts(
        &self,
        s: &SavedMoe,
        dm: &Tensor,
        dv: &dyn Derivatives,
        p: Products,
        hears: bool,
    ) -> Result<MoeBackward> {
        let [sy, sw] = dv.expert_scales();
        let b = dm.dim(0)?;
        let k = self.per_token;
        let weights = &s.routes.weights;
        let mut dx = dm.zeros_like()?;
        let mut dw = Tensor::zeros((b, s.rows * k), DType::F32, dm.device())?;
        let mut heard = Vec::new();
        for (hit, saved) in s.routes.hits.iter().zip(&s.experts) {
            let mlp = &self.experts[hit.expert];
            // d(w·y)/dy = w (by sy), d(w·y)/dw = y (by sw); y = down(h), so the weight's
            // cotangent is (downᵀ g) · h.
            let g = dm.index_select(&hit.rows, 1)?;
            let dh = mlp.down_proj.vjp(&g, p)?;
            // The expert's hidden units, where the weight's cotangent or the watch reads them.
            let h = (sw != 0.0 || hears)
                .then(|| mlp.hidden(saved))
                .transpose()?;
            if let Some(h) = h.as_ref().filter(|_| sw != 0.0) {
                let d = (dh
                    .to_dtype(DType::F32)?
                    .broadcast_mul(&h.to_dtype(DType::F32)?)?
                    .sum(D::Minus1)?
                    * sw)?;
                dw = dw.index_add(&hit.slots, &d, 1)?;
            }
            let w = weights.index_select(&hit.slots, 0)?.to_dtype(dh.dtype())?;
            let dz = (dh.broadcast_mul(&w.reshape((1, (), 1))?)? * sy)?;
            if let Some(h) = h.filter(|_| hears) {
                heard.push((hit, h, dz.clone()));
            }
            let dxe = mlp.input_vjp(saved, &dz, dv, p)?;
            dx = dx.index_add(&hit.rows, &dxe, 1)?;
        }
        let mut shared_heard = None;
        if let (Some(m), Some(saved)) = (&self.shared, &s.shared) {
            let (dxs, dz) = self.shared_backward(m, saved, dm, dv, p)?;
            dx = (dx + dxs)?;
            if hears {
                shared_heard = Some((m.mlp.hidden(&saved.mlp)?, dz));
            }
        }
        let heard = match hears {
            true => {
                let (acts, cots): (Vec<_>, Vec<_>) =
                    heard.into_iter().map(|(h, a, c)| ((h, a), (h, c))).unzip();
                let (shared_act, shared_cot) = shared_heard.unzip();
                let cot = self.with_shared(self.side_by_side(&cots, &[b], s.rows)?, shared_cot)?;
                let act = self.with_shared(self.side_by_side(&acts, &[], s.rows)?, shared_act)?;
                Some((act, cot))
            }
            false => None,
        };
        let d_router = (sw != 0.0)
            .then(|| {
                let dw = dw.reshape((b, s.rows, k))?;
                self.router_input_vjp(s, &dw, dm.dtype(), dv, p)
            })
            .transpose()?;
        Ok(MoeBackward {
            dx,
            d_router,
            heard,
        })
    }

    /// Cotangents `dw: (b, rows, per_token)` of the chosen weights carried to the router's
    /// input, through its logits and, where it has one, its input's norm.
    fn router_input_vjp(
        &self,
        s: &SavedMoe,
        dw: &Tensor,
        dtype: DType,
        dv: &dyn Derivatives,
        p: Products,
    ) -> Result<Tensor> {
        let dw = match &self.expert_scale {
            Some(scale) => {
                let (b, n, k) = dw.dims3()?;
                let chosen = s.routes.chosen.flatten_all()?;
                let f = scale.index_select(&chosen, 0)?.reshape((1, n, k))?;
                dw.broadcast_mul(&f.broadcast_as((b, n, k))?)?
            }
            None => dw.clone(),
        };
        let dlogits = self.router_vjp(&s.routes, &dw)?;
        let d = self.router.vjp(&dlogits.to_dtype(dtype)?, p)?;
        match (&self.router_norm, &s.router_input) {
            (Some((w, eps)), Some(x)) => dv.rms_norm_vjp(x, &w.to_dtype(x.dtype())?, *eps, &d),
            _ => Ok(d),
        }
    }

    /// The shared expert's part of the block's backward: the cotangent `dm` carried to the
    /// input through `σ(g) ⊙ y`, each factor's share as `dv`'s `output_gate_scales`, and the
    /// cotangent of its hidden units.
    fn shared_backward(
        &self,
        m: &Shared,
        s: &SavedShared,
        dm: &Tensor,
        dv: &dyn Derivatives,
        p: Products,
    ) -> Result<(Tensor, Tensor)> {
        let [to_y, to_gate] = dv.output_gate_scales();
        let dy = (dm.broadcast_mul(&s.gate)? * to_y)?;
        let dz = m.mlp.down_proj.vjp(&dy, p)?;
        let mut dx = m.mlp.input_vjp(&s.mlp, &dz, dv, p)?;
        if to_gate != 0.0 {
            // d/dg of σ(g) · y: ⟨dm, y⟩ σ (1 − σ).
            let slope = s.gate.mul(&s.gate.affine(-1.0, 1.0)?)?;
            let dg = dm
                .broadcast_mul(&s.y)?
                .sum_keepdim(D::Minus1)?
                .broadcast_mul(&slope)?;
            dx = (dx + m.gate.vjp(&(dg * to_gate)?, p)?)?;
        }
        Ok((dx, dz))
    }

    /// Cotangents `dw: (b, rows, per_token)` of the chosen weights carried to the router's
    /// logits, `(b, rows, experts)` in f32: through the renormalisation `w = t / Σt`, the
    /// choice (a gather) and the softmax.
    fn router_vjp(&self, r: &Routes, dw: &Tensor) -> Result<Tensor> {
        let probs = r.probs.unsqueeze(0)?;
        let (b, n, k) = dw.dims3()?;
        let chosen = r
            .chosen
            .unsqueeze(0)?
            .broadcast_as((b, n, k))?
            .contiguous()?;
        let top = probs
            .broadcast_as((b, n, self.experts.len()))?
            .contiguous()?
            .gather(&chosen, 2)?;
        let dt = if self.normalize {
            // dt_j = (dw_j − Σ_i dw_i · w_i) / Σt, with w = t / Σt.
            let sum = top.sum_keepdim(2)?;
            let w = top.broadcast_div(&sum)?;
            let dot = (dw * &w)?.sum_keepdim(2)?;
            dw.broadcast_sub(&dot)?.broadcast_div(&sum)?
        } else {
            dw.clone()
        };
        let dp = Tensor::zeros((b, n, self.experts.len()), DType::F32, dw.device())?
            .scatter_add(&chosen, &dt, 2)?;
        // softmax: dlogits = p ⊙ (dp − Σ p · dp).
        let dot = dp.broadcast_mul(&probs)?.sum_keepdim(2)?;
        dp.broadcast_sub(&dot)?.broadcast_mul(&probs)
    }

    /// Neuron `j` (unit `j mod width` of expert `j / width`; past the routed experts' units,
    /// unit `j − experts · width` of the shared expert): its `down_proj`, its index there, and
    /// that matrix's width.
    pub(super) fn down_column(&self, j: usize) -> Result<(&Linear, usize, usize)> {
        let routed = self.experts.len() * self.width;
        if let (Some(s), true) = (&self.shared, j >= routed) {
            let width = s.mlp.down_proj.dims()?.1;
            if j - routed < width {
                return Ok((&s.mlp.down_proj, j - routed, width));
            }
        }
        match self.experts.get(j / self.width.max(1)) {
            Some(e) if j < routed => Ok((&e.down_proj, j % self.width, self.width)),
            _ => candle_core::bail!("no neuron {j} among {}", self.neurons()?),
        }
    }

    /// All experts' units, the shared expert's last.
    pub(super) fn neurons(&self) -> Result<usize> {
        let shared = match &self.shared {
            Some(s) => s.mlp.down_proj.dims()?.1,
            None => 0,
        };
        Ok(self.experts.len() * self.width + shared)
    }

    /// Sets the edits of its neurons: each expert takes its own part.
    pub(super) fn steer(&mut self, edits: Option<NeuronEdits>) {
        let width = self.width;
        let routed = self.experts.len() * width;
        for (e, mlp) in self.experts.iter_mut().enumerate() {
            mlp.steer = edits.as_ref().and_then(|n| n.part(e * width, width));
        }
        if let Some(s) = self.shared.as_mut() {
            let shared = s.mlp.down_proj.dims().map_or(0, |(_, w)| w);
            s.mlp.steer = edits.as_ref().and_then(|n| n.part(routed, shared));
        }
    }

    /// Bytes a decoding step reads: the router, the chosen experts' matrices (each expert's
    /// as many bytes) and the shared expert's.
    pub(super) fn bytes_read(&self, p: Products) -> u64 {
        let expert = self.experts.first().map_or(0, |e| e.bytes_read(p));
        let shared = self
            .shared
            .as_ref()
            .map_or(0, |s| s.mlp.bytes_read(p) + s.gate.bytes_read(p));
        self.router.bytes_read(p) + self.per_token as u64 * expert + shared
    }
}

//! The gated delta update (Gated DeltaNet, Qwen3.5's linear-attention layers): per value head a
//! state `S` of `(dk, dv)` that each token decays, corrects towards its value and reads:
//!
//! ```text
//! S̃ = exp(g_t) · S_{t-1}          decay
//! m = S̃ᵀ k_t                      what the state recalls at the key
//! δ = β_t · (v_t − m)             the correction, gated
//! S_t = S̃ + k_t δᵀ                 write
//! o_t = S_tᵀ q_t                   read
//! ```
//!
//! as transformers' recurrent form of the layer (q and k already l2-normed, q scaled by
//! `dk^-½`, both per value head; f32). The backward pass carries cotangents of the outputs back
//! to q, k, v, g and β, batched over seeds, with each product's two shares given by [`Scales`]:
//! the ordinary gradient takes both whole; a caller's [`crate::models::Derivatives`] may
//! split or cut them. States are kept every [`CHECKPOINT`] tokens and recomputed in between,
//! so the backward holds `T / 64` states per head rather than `T`.
//!
//! A pass of more than one token runs in the chunked form ([`chunked`]: the same recurrence
//! as matrix products over chunks of 64 tokens), and so does the backward
//! ([`chunk_backward`]); a generation step runs in the recurrent form. The recurrent
//! backward ([`Form::Recurrent`]) stays as the chunked one's check and benchmark.

mod chunk_backward;
mod chunked;

use rayon::prelude::*;
use thiserror::Error;

/// Tokens between kept states in the backward pass: the chunks of the chunked form, whose
/// states before each chunk are the kept ones.
pub const CHECKPOINT: usize = chunked::CHUNK;

/// How a forward pass runs the recurrence (the two agree to rounding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Token by token: four passes over each head's state per token.
    Recurrent,
    /// Chunk by chunk, as matrix products ([`chunked`]).
    Chunked,
}

impl Form {
    /// The form for a pass of `len` tokens: chunked but for a single token.
    pub fn for_len(len: usize) -> Form {
        if len > 1 {
            Form::Chunked
        } else {
            Form::Recurrent
        }
    }
}

/// Shapes that do not fit together.
#[derive(Debug, Error)]
#[error("gated delta update: {0}")]
pub struct ShapeError(String);

/// Heads, tokens and widths of one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Value heads (q and k repeated to them).
    pub heads: usize,
    /// Tokens.
    pub len: usize,
    /// Key width.
    pub dk: usize,
    /// Value width.
    pub dv: usize,
}

/// One pass's inputs, row-major: `q`, `k` `(heads, len, dk)`, `v` `(heads, len, dv)`, `g`
/// (the log decay, ≤ 0) and `beta` `(heads, len)`.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The shapes.
    pub dims: Dims,
    /// Queries (l2-normed, scaled).
    pub q: &'a [f32],
    /// Keys (l2-normed).
    pub k: &'a [f32],
    /// Values.
    pub v: &'a [f32],
    /// Log decays.
    pub g: &'a [f32],
    /// Write strengths.
    pub beta: &'a [f32],
}

/// Each product's two shares of the cotangent, and the decay's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scales {
    /// `o = Sᵀq`: to S, to q.
    pub read: [f32; 2],
    /// `m = S̃ᵀk`: to S̃, to k.
    pub recall: [f32; 2],
    /// `δ = β (v − m)`: to β, to v − m.
    pub gate: [f32; 2],
    /// `k δᵀ`: to k, to δ.
    pub write: [f32; 2],
    /// `exp(g) · S`: to g (the share to S is always whole).
    pub decay: f32,
}

impl Scales {
    /// The ordinary gradient.
    pub const GRADIENT: Scales = Scales {
        read: [1.0, 1.0],
        recall: [1.0, 1.0],
        gate: [1.0, 1.0],
        write: [1.0, 1.0],
        decay: 1.0,
    };
}

/// Cotangents of a pass's inputs, per seed: shapes as [`Inputs`] with the seeds leading.
#[derive(Debug, Clone, PartialEq)]
pub struct Grads {
    /// Of the queries.
    pub q: Vec<f32>,
    /// Of the keys.
    pub k: Vec<f32>,
    /// Of the values.
    pub v: Vec<f32>,
    /// Of the log decays.
    pub g: Vec<f32>,
    /// Of the write strengths.
    pub beta: Vec<f32>,
}

impl Grads {
    /// Zeros for `rows` rows of `len` tokens.
    fn zeros(rows: usize, len: usize, dk: usize, dv: usize) -> Self {
        Grads {
            q: vec![0.0; rows * len * dk],
            k: vec![0.0; rows * len * dk],
            v: vec![0.0; rows * len * dv],
            g: vec![0.0; rows * len],
            beta: vec![0.0; rows * len],
        }
    }
}

impl Inputs<'_> {
    fn check(&self) -> Result<(), ShapeError> {
        let Dims { heads, len, dk, dv } = self.dims;
        let want = [
            ("q", self.q.len(), heads * len * dk),
            ("k", self.k.len(), heads * len * dk),
            ("v", self.v.len(), heads * len * dv),
            ("g", self.g.len(), heads * len),
            ("beta", self.beta.len(), heads * len),
        ];
        for (name, got, n) in want {
            if got != n {
                return Err(ShapeError(format!("{name} has {got} values, not {n}")));
            }
        }
        Ok(())
    }

    /// Head `h`'s token `t`: (q, k, v, g, β).
    fn at(&self, h: usize, t: usize) -> (&[f32], &[f32], &[f32], f32, f32) {
        let Dims { len, dk, dv, .. } = self.dims;
        let r = h * len + t;
        (
            &self.q[r * dk..(r + 1) * dk],
            &self.k[r * dk..(r + 1) * dk],
            &self.v[r * dv..(r + 1) * dv],
            self.g[r],
            self.beta[r],
        )
    }
}

/// One token's step on a state `s` `(dk, dv)`: decays it, writes the correction; returns `m`
/// (the recall before the write) in `m` and the correction in `delta`.
fn step(s: &mut [f32], k: &[f32], v: &[f32], g: f32, beta: f32, m: &mut [f32], delta: &mut [f32]) {
    let dv = v.len();
    let decay = g.exp();
    s.iter_mut().for_each(|x| *x *= decay);
    m.fill(0.0);
    for (row, &ki) in s.chunks_exact(dv).zip(k) {
        for (mj, &sij) in m.iter_mut().zip(row) {
            *mj += sij * ki;
        }
    }
    for ((d, &vj), &mj) in delta.iter_mut().zip(v).zip(m.iter()) {
        *d = beta * (vj - mj);
    }
    for (row, &ki) in s.chunks_exact_mut(dv).zip(k) {
        for (sij, &dj) in row.iter_mut().zip(delta.iter()) {
            *sij += ki * dj;
        }
    }
}

/// `out = Sᵀ q` for a state `s` `(dk, dv)`.
fn read(s: &[f32], q: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for (row, &qi) in s.chunks_exact(out.len()).zip(q) {
        for (o, &sij) in out.iter_mut().zip(row) {
            *o += sij * qi;
        }
    }
}

/// The fewest tokens whose heads run across the cores.
const PARALLEL_FROM: usize = 16;

/// The outputs `(heads, len, dv)` and the final states `(heads, dk, dv)`, from `state`
/// (`(heads, dk, dv)`; zeros when `None`), in the form [`Form::for_len`] picks.
pub fn forward(x: &Inputs, state: Option<&[f32]>) -> Result<(Vec<f32>, Vec<f32>), ShapeError> {
    forward_in(x, state, Form::for_len(x.dims.len))
}

/// [`forward`] in the form `form`.
pub fn forward_in(
    x: &Inputs,
    state: Option<&[f32]>,
    form: Form,
) -> Result<(Vec<f32>, Vec<f32>), ShapeError> {
    x.check()?;
    let Dims { heads, len, dk, dv } = x.dims;
    let mut states = match state {
        Some(s) if s.len() == heads * dk * dv => s.to_vec(),
        Some(s) => {
            return Err(ShapeError(format!(
                "the state has {} values, not {}",
                s.len(),
                heads * dk * dv
            )))
        }
        None => vec![0.0; heads * dk * dv],
    };
    let mut out = vec![0.0; heads * len * dv];
    // The heads are independent: one per task, across the cores, but for a few tokens (a
    // generation step), where a task's start would cost more than its work.
    let per_task = if len < PARALLEL_FROM { heads.max(1) } else { 1 };
    let per_head = states
        .par_chunks_mut((dk * dv).max(1))
        .zip(out.par_chunks_mut((len * dv).max(1)));
    per_head
        .enumerate()
        .with_min_len(per_task)
        .for_each(|(h, (s, out))| match form {
            Form::Recurrent => {
                let (mut m, mut delta) = (vec![0.0; dv], vec![0.0; dv]);
                for t in 0..len {
                    let (q, k, v, g, beta) = x.at(h, t);
                    step(s, k, v, g, beta, &mut m, &mut delta);
                    read(s, q, &mut out[t * dv..(t + 1) * dv]);
                }
            }
            Form::Chunked => chunked_head(x, h, s, out, None),
        });
    Ok((out, states))
}

/// Head `h`'s pass in the chunked form from its state `s`: its outputs into `out`
/// `(len, dv)`, `s` moved to the end; the state before each chunk pushed to `kept`.
fn chunked_head(
    x: &Inputs,
    h: usize,
    s: &mut [f32],
    out: &mut [f32],
    kept: Option<&mut Vec<Vec<f32>>>,
) {
    let Dims { len, dk, dv, .. } = x.dims;
    let mut work = chunked::Work::new(dk, dv);
    let mut kept = kept;
    for t0 in (0..len).step_by(chunked::CHUNK) {
        if let Some(kept) = kept.as_deref_mut() {
            kept.push(s.to_vec());
        }
        let t1 = (t0 + chunked::CHUNK).min(len);
        work.chunk(x, h, (t0, t1), s, &mut out[t0 * dv..t1 * dv]);
    }
}

/// Head `h`'s states before each chunk of the pass from a zero state, by the chunked form
/// (its outputs unused): what a backward pass starts each chunk from.
fn kept_states(x: &Inputs, h: usize) -> Vec<Vec<f32>> {
    let Dims { len, dk, dv, .. } = x.dims;
    let mut kept = Vec::with_capacity(len.div_ceil(CHECKPOINT));
    let (mut s, mut out) = (vec![0.0; dk * dv], vec![0.0; len * dv]);
    chunked_head(x, h, &mut s, &mut out, Some(&mut kept));
    kept
}

/// Cotangents of the inputs from `d_out` `(seeds, heads, len, dv)`, the pass starting from
/// zero states, with the products' shares `sc`, in the chunked form.
pub fn backward(x: &Inputs, d_out: &[f32], sc: &Scales) -> Result<Grads, ShapeError> {
    backward_in(x, d_out, sc, Form::Chunked)
}

/// [`backward`] in the form `form`.
pub fn backward_in(
    x: &Inputs,
    d_out: &[f32],
    sc: &Scales,
    form: Form,
) -> Result<Grads, ShapeError> {
    x.check()?;
    let Dims { heads, len, dk, dv } = x.dims;
    let per_seed = heads * len * dv;
    if per_seed == 0 || !d_out.len().is_multiple_of(per_seed) {
        return Err(ShapeError(format!(
            "{} output cotangents for {per_seed} outputs per seed",
            d_out.len()
        )));
    }
    let seeds = d_out.len() / per_seed;
    // The heads are independent: each its own task, its cotangents `(seeds, len, ·)`, then
    // placed at `(seeds, heads, len, ·)`; as many at once as there are threads, so that the
    // heads' own copies add a few heads' worth of memory, not a second whole.
    let mut gr = Grads::zeros(seeds * heads, len, dk, dv);
    let all: Vec<usize> = (0..heads).collect();
    for batch in all.chunks(rayon::current_num_threads().max(1)) {
        let parts: Vec<(usize, Grads)> = batch
            .par_iter()
            .map(|&h| {
                let part = match form {
                    Form::Recurrent => head_backward(x, h, d_out, sc, seeds),
                    Form::Chunked => chunk_backward::head(x, h, d_out, sc, seeds),
                };
                (h, part)
            })
            .collect();
        for (h, part) in &parts {
            gr.place(part, *h, heads, len, (dk, dv));
        }
    }
    Ok(gr)
}

impl Grads {
    /// Head `h`'s cotangents `part` `(seeds, len, ·)` into their places `(seeds, heads, len, ·)`.
    fn place(
        &mut self,
        part: &Grads,
        h: usize,
        heads: usize,
        len: usize,
        (dk, dv): (usize, usize),
    ) {
        let seeds = part.g.len() / len.max(1);
        for b in 0..seeds {
            let (to, from) = ((b * heads + h) * len, b * len);
            let place = |dst: &mut [f32], src: &[f32], w: usize| {
                dst[to * w..(to + len) * w].copy_from_slice(&src[from * w..(from + len) * w]);
            };
            place(&mut self.q, &part.q, dk);
            place(&mut self.k, &part.k, dk);
            place(&mut self.v, &part.v, dv);
            place(&mut self.g, &part.g, 1);
            place(&mut self.beta, &part.beta, 1);
        }
    }
}

/// Head `h`'s cotangents for every seed, `(seeds, len, ·)`: states kept every
/// [`CHECKPOINT`] tokens on the way forward, each chunk replayed from its state on the way
/// back.
fn head_backward(x: &Inputs, h: usize, d_out: &[f32], sc: &Scales, seeds: usize) -> Grads {
    let Dims { len, dk, dv, .. } = x.dims;
    let n = dk * dv;
    let mut gr = Grads::zeros(seeds, len, dk, dv);
    let kept = kept_states(x, h);
    let mut ds = vec![vec![0.0f32; n]; seeds];
    let mut chunk = Chunk::new(n, dv);
    for (c, start) in kept.iter().enumerate().rev() {
        let t0 = c * CHECKPOINT;
        let t1 = (t0 + CHECKPOINT).min(len);
        chunk.replay(x, h, t0, t1, start);
        for t in (t0..t1).rev() {
            for (b, ds) in ds.iter_mut().enumerate() {
                chunk.back(x, h, t, t0, sc, ds, d_out, b, &mut gr);
            }
        }
    }
    gr
}

/// One chunk's states and corrections, replayed from the state before it.
struct Chunk {
    /// `S_{t-1}` then `S_t` for each token of the chunk: `(tokens + 1, dk, dv)`.
    states: Vec<f32>,
    /// Each token's recall `m` and correction `δ`, `(tokens, dv)`.
    m: Vec<f32>,
    delta: Vec<f32>,
    n: usize,
    dv: usize,
}

impl Chunk {
    fn new(n: usize, dv: usize) -> Self {
        Chunk {
            states: Vec::with_capacity((CHECKPOINT + 1) * n),
            m: vec![0.0; CHECKPOINT * dv],
            delta: vec![0.0; CHECKPOINT * dv],
            n,
            dv,
        }
    }

    fn replay(&mut self, x: &Inputs, h: usize, t0: usize, t1: usize, start: &[f32]) {
        let (n, dv) = (self.n, self.dv);
        self.states.clear();
        self.states.extend_from_slice(start);
        for t in t0..t1 {
            let (_, k, v, g, beta) = x.at(h, t);
            let prev = self.states.len() - n;
            self.states.extend_from_within(prev..);
            let i = t - t0;
            let s = &mut self.states[prev + n..];
            let (m, delta) = (
                &mut self.m[i * dv..(i + 1) * dv],
                &mut self.delta[i * dv..(i + 1) * dv],
            );
            step(s, k, v, g, beta, m, delta);
        }
    }

    /// Token `t`'s step backward for seed `b`: `ds` holds the cotangent of `S_t` on entry
    /// and of `S_{t-1}` on return.
    #[allow(clippy::too_many_arguments)]
    fn back(
        &self,
        x: &Inputs,
        h: usize,
        t: usize,
        t0: usize,
        sc: &Scales,
        ds: &mut [f32],
        d_out: &[f32],
        b: usize,
        gr: &mut Grads,
    ) {
        let Dims { heads, len, dk, dv } = x.dims;
        let n = self.n;
        let i = t - t0;
        let prev = &self.states[i * n..(i + 1) * n];
        let now = &self.states[(i + 1) * n..(i + 2) * n];
        let (m, delta) = (
            &self.m[i * dv..(i + 1) * dv],
            &self.delta[i * dv..(i + 1) * dv],
        );
        let (q, k, v, g, beta) = x.at(h, t);
        let at = (b * heads + h) * len + t;
        let dout = &d_out[at * dv..(at + 1) * dv];
        // This head's cotangents, `(seeds, len, ·)`.
        let row = b * len + t;
        // o = Sᵀq: dS += q doᵀ; dq = S do.
        let dq = &mut gr.q[row * dk..(row + 1) * dk];
        for ((srow, dsrow), (&qi, dqi)) in now
            .chunks_exact(dv)
            .zip(ds.chunks_exact_mut(dv))
            .zip(q.iter().zip(dq.iter_mut()))
        {
            let mut acc = 0.0;
            for ((&sij, dsij), &doj) in srow.iter().zip(dsrow.iter_mut()).zip(dout) {
                acc += sij * doj;
                *dsij += sc.read[0] * qi * doj;
            }
            *dqi = sc.read[1] * acc;
        }
        // S_t = S̃ + k δᵀ: dk = dS δ; dδ = dSᵀ k (dS̃ = dS).
        let dk_row = &mut gr.k[row * dk..(row + 1) * dk];
        let mut ddelta = vec![0.0f32; dv];
        for ((dsrow, &ki), dki) in ds.chunks_exact(dv).zip(k).zip(dk_row.iter_mut()) {
            let mut acc = 0.0;
            for ((&dsij, &dj), ddj) in dsrow.iter().zip(delta).zip(ddelta.iter_mut()) {
                acc += dsij * dj;
                *ddj += dsij * ki;
            }
            *dki = sc.write[0] * acc;
        }
        ddelta.iter_mut().for_each(|d| *d *= sc.write[1]);
        // δ = β (v − m): dβ = dδ·(v − m); d(v − m) = β dδ; dv = d(v − m), dm = −d(v − m).
        let mut dbeta = 0.0;
        let dv_row = &mut gr.v[row * dv..(row + 1) * dv];
        let mut dm = vec![0.0f32; dv];
        for j in 0..dv {
            dbeta += ddelta[j] * (v[j] - m[j]);
            let d = sc.gate[1] * beta * ddelta[j];
            dv_row[j] = d;
            dm[j] = -d;
        }
        gr.beta[row] = sc.gate[0] * dbeta;
        // m = S̃ᵀk: dS̃ += k dmᵀ; dk += S̃ dm. S̃ = exp(g) S_{t-1}.
        let decay = g.exp();
        let mut dg = 0.0;
        for ((prow, dsrow), (&ki, dki)) in prev
            .chunks_exact(dv)
            .zip(ds.chunks_exact_mut(dv))
            .zip(k.iter().zip(dk_row.iter_mut()))
        {
            let mut acc = 0.0;
            for ((&pij, dsij), &dmj) in prow.iter().zip(dsrow.iter_mut()).zip(&dm) {
                let tilde = decay * pij;
                acc += tilde * dmj;
                *dsij += sc.recall[0] * ki * dmj;
                // dg = <dS̃, S̃>; dS_{t-1} = exp(g) dS̃.
                dg += *dsij * tilde;
                *dsij *= decay;
            }
            *dki += sc.recall[1] * acc;
        }
        gr.g[row] = sc.decay * dg;
    }
}

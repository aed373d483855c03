//! The chunked form of the forward pass, for a pass of more than one token (prefill, and the
//! saving forward the backward reads): per chunk of [`CHUNK`] tokens, matrix products in place
//! of the token-by-token recurrence, as transformers' own chunked torch implementation of the
//! layer and the Gated DeltaNet paper's chunkwise form. It is the recurrence unrolled over a
//! chunk: from the state `S₀` before the chunk, with `γ_i = g_0 + … + g_i` the chunk's
//! cumulative log decay,
//!
//! ```text
//! S̃_i = e^{γ_i} S₀ + Σ_{j<i} e^{γ_i−γ_j} k_j δ_jᵀ              the decayed state token i reads
//! δ_i = β_i (v_i − e^{γ_i} S₀ᵀk_i − Σ_{j<i} e^{γ_i−γ_j} (k_i·k_j) δ_j)
//! o_i = e^{γ_i} S₀ᵀq_i + Σ_{j≤i} e^{γ_i−γ_j} (q_i·k_j) δ_j
//! S   = e^{γ_last} S₀ + Σ_j e^{γ_last−γ_j} k_j δ_jᵀ
//! ```
//!
//! The corrections `δ` are the recurrent form's (each row solved after the rows before it:
//! forward substitution through the chunk's `(I + L)`, L strictly lower); every other term
//! is a product of a chunk's rows (`K Kᵀ`, `Q Kᵀ`, `K S₀`, `Q S₀`, `P Δ`, `Kᵀ Δ`). Every
//! `e^{γ_i−γ_j}` has `i ≥ j`, so none exceeds 1. The state is touched once per chunk instead
//! of four times per token.

use super::{Dims, Inputs};
use crate::kernels::small::{product, Mat};

/// Tokens per chunk (transformers' chunk size).
pub const CHUNK: usize = 64;

/// One head's chunk: what its forward computes before the outputs, kept for the backward
/// ([`super::chunk_backward`]), and scratch.
pub(super) struct Work {
    /// Tokens in the chunk.
    pub(super) n: usize,
    /// Cumulative log decays `γ` (summed in f64) and `e^γ`, `(n,)`.
    gamma64: Vec<f64>,
    pub(super) egamma: Vec<f32>,
    /// `K Kᵀ` and `Q Kᵀ`, `(n, n)`.
    pub(super) kk: Vec<f32>,
    pub(super) qk: Vec<f32>,
    /// `K S₀` and `Q S₀`, `(n, dv)`.
    pub(super) ks: Vec<f32>,
    pub(super) qs: Vec<f32>,
    /// `v − m` (the correction before β) and the corrections `δ`, `(n, dv)`.
    pub(super) r: Vec<f32>,
    pub(super) delta: Vec<f32>,
    /// `e^{γ_i − γ_j}` at `(i, j)` for `j ≤ i`, zero above, `(n, n)`.
    dec: Vec<f32>,
    p: Vec<f32>,
    kd: Vec<f32>,
}

impl Work {
    pub(super) fn new(dk: usize, dv: usize) -> Self {
        Work {
            n: 0,
            gamma64: vec![0.0; CHUNK],
            egamma: vec![0.0; CHUNK],
            kk: vec![0.0; CHUNK * CHUNK],
            qk: vec![0.0; CHUNK * CHUNK],
            ks: vec![0.0; CHUNK * dv],
            qs: vec![0.0; CHUNK * dv],
            r: vec![0.0; CHUNK * dv],
            delta: vec![0.0; CHUNK * dv],
            dec: vec![0.0; CHUNK * CHUNK],
            p: vec![0.0; CHUNK * CHUNK],
            kd: vec![0.0; CHUNK * dk],
        }
    }

    /// `e^{γ_later − γ_earlier}`: the decay from token `earlier` to token `later` of the
    /// chunk (`later ≥ earlier`).
    pub(super) fn decay(&self, later: usize, earlier: usize) -> f32 {
        self.dec[later * self.n + earlier]
    }

    /// Head `h`'s tokens `t0..t1` (at most [`CHUNK`]) from the state `s` `(dk, dv)`: the
    /// chunk's `γ`, decays, products and corrections.
    pub(super) fn prepare(&mut self, x: &Inputs, h: usize, (t0, t1): (usize, usize), s: &[f32]) {
        let Dims { len, dk, dv, .. } = x.dims;
        let n = t1 - t0;
        self.n = n;
        let r0 = h * len + t0;
        let q = Mat::new(&x.q[r0 * dk..(r0 + n) * dk], n, dk);
        let k = Mat::new(&x.k[r0 * dk..(r0 + n) * dk], n, dk);
        let v = &x.v[r0 * dv..(r0 + n) * dv];
        let (g, beta) = (&x.g[r0..r0 + n], &x.beta[r0..r0 + n]);
        // γ summed in f64: a pair's decay is a difference of two sums, which in f32 would
        // lose the small steps after a large one (a chunk's γ can reach thousands).
        let mut acc = 0.0f64;
        for ((c64, e), &gi) in self.gamma64[..n]
            .iter_mut()
            .zip(&mut self.egamma[..n])
            .zip(g)
        {
            acc += f64::from(gi);
            (*c64, *e) = (acc, acc.exp() as f32);
        }
        let gamma64 = &self.gamma64[..n];
        let dec = &mut self.dec[..n * n];
        for (i, row) in dec.chunks_exact_mut(n).enumerate() {
            for (j, d) in row.iter_mut().enumerate() {
                *d = match j <= i {
                    true => (gamma64[i] - gamma64[j]).exp() as f32,
                    false => 0.0,
                };
            }
        }
        let dec = &self.dec[..n * n];
        let state = Mat::new(s, dk, dv);
        product(k, k.t(), &mut self.kk, false);
        product(q, k.t(), &mut self.qk, false);
        product(k, state, &mut self.ks, false);
        product(q, state, &mut self.qs, false);
        // δ row by row: each row's sum runs over the rows already solved.
        let delta = &mut self.delta[..n * dv];
        for i in 0..n {
            let (done, rest) = delta.split_at_mut(i * dv);
            let row = &mut rest[..dv];
            let e = self.egamma[i];
            let (vi, ksi) = (&v[i * dv..(i + 1) * dv], &self.ks[i * dv..(i + 1) * dv]);
            for ((d, &vj), &mj) in row.iter_mut().zip(vi).zip(ksi) {
                *d = vj - e * mj;
            }
            for (j, dj) in done.chunks_exact(dv).enumerate() {
                let l = dec[i * n + j] * self.kk[i * n + j];
                for (d, &x) in row.iter_mut().zip(dj) {
                    *d -= l * x;
                }
            }
            self.r[i * dv..(i + 1) * dv].copy_from_slice(row);
            row.iter_mut().for_each(|d| *d *= beta[i]);
        }
    }

    /// Head `h`'s tokens `t0..t1` (at most [`CHUNK`]) from the state `s` `(dk, dv)`: their
    /// outputs into `out` `((t1 − t0), dv)`, and `s` moved past them.
    pub(super) fn chunk(
        &mut self,
        x: &Inputs,
        h: usize,
        (t0, t1): (usize, usize),
        s: &mut [f32],
        out: &mut [f32],
    ) {
        self.prepare(x, h, (t0, t1), s);
        let Dims { len, dk, dv, .. } = x.dims;
        let (n, r0) = (self.n, h * len + t0);
        // o = diag(e^γ) Q S₀ + P Δ, P lower with the diagonal: P_ij = e^{γ_i−γ_j} (q_i·k_j).
        for (i, &e) in self.egamma[..n].iter().enumerate() {
            let (o, qs) = (
                &mut out[i * dv..(i + 1) * dv],
                &self.qs[i * dv..(i + 1) * dv],
            );
            for (o, &x) in o.iter_mut().zip(qs) {
                *o = e * x;
            }
        }
        // (`dec` is zero above the diagonal.)
        for ((p, &d), &qk) in self.p.iter_mut().zip(&self.dec[..n * n]).zip(&self.qk) {
            *p = d * qk;
        }
        let delta = Mat::new(&self.delta, n, dv);
        product(Mat::new(&self.p, n, n), delta, out, true);
        // S = e^{γ_last} S₀ + Σ_j (e^{γ_last−γ_j} k_j) δ_jᵀ.
        let last = n - 1;
        let e = self.egamma[last];
        s.iter_mut().for_each(|x| *x *= e);
        let kd = &mut self.kd[..n * dk];
        for (j, row) in kd.chunks_exact_mut(dk).enumerate() {
            let w = self.dec[last * n + j];
            let kj = &x.k[(r0 + j) * dk..(r0 + j + 1) * dk];
            for (d, &x) in row.iter_mut().zip(kj) {
                *d = w * x;
            }
        }
        product(Mat::new(kd, n, dk).t(), delta, s, true);
    }
}

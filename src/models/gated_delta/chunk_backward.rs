//! The backward pass in the chunked form: per chunk, from the state `S₀` before it (kept by
//! the chunked forward) and the cotangent `D` of the state after it, every token's
//! cotangents as matrix products over the chunk, with each product's shares ([`Scales`]).
//!
//! The recurrent form's step backward (`super::Chunk::back`), read over a chunk: token
//! `i`'s state cotangent (its read's share included) is
//!
//! ```text
//! D_i = e^{γ_L−γ_i} D + r₀ Σ_{j≥i} e^{γ_j−γ_i} q_j do_jᵀ − c₀ Σ_{j>i} e^{γ_j−γ_i} k_j u_jᵀ
//! ```
//!
//! (`L` the chunk's last token, `u_j` token `j`'s cotangent of `v − m`), so that
//!
//! ```text
//! dδ_i = w₁ D_iᵀ k_i, u_i = g₁ β_i dδ_i        backward substitution, the last row first
//! dv_i = u_i,  dβ_i = g₀ dδ_i · (v_i − m_i)
//! dq_i = r₁ S_i do_i                            S_i = e^{γ_i} S₀ + Σ_{j≤i} e^{γ_i−γ_j} k_j δ_jᵀ
//! dk_i = w₀ D_i δ_i − c₁ S̃_i u_i                S̃_i = e^{γ_i} S₀ + Σ_{j<i} e^{γ_i−γ_j} k_j δ_jᵀ
//! dg_i = decay ⟨D_i − c₀ k_i u_iᵀ, S̃_i⟩
//! D₀  = e^{γ_L} D + r₀ Qᵀ diag(e^γ) dO − c₀ Kᵀ diag(e^γ) U    the cotangent of S₀
//! ```
//!
//! with `r`, `w`, `g`, `c` the read's, write's, gate's and recall's shares. Each sum over a
//! chunk is a product of its rows; `dg`'s inner product of two such sums splits into
//! per-token terms and pairs `(a ≥ i > j)`, summed in one sweep.

use super::chunked::{Work, CHUNK};
use super::{Dims, Grads, Inputs, Scales};
use crate::kernels::small::{product, Mat};

/// One head's scratch for a chunk's backward, one seed at a time.
pub(super) struct Back {
    x1: Vec<f32>,
    y: Vec<f32>,
    dd: Vec<f32>,
    u: Vec<f32>,
    /// `dO Δᵀ` and `U Δᵀ`, `(n, n)`.
    g: Vec<f32>,
    f: Vec<f32>,
    m: Vec<f32>,
    /// `(n, dk)` rows.
    b: Vec<f32>,
    /// `(n, dv)` rows, scaled.
    s: Vec<f32>,
}

/// A seed's rows of one chunk: its output cotangents in, its input cotangents out.
pub(super) struct Rows<'a> {
    /// `dO`, `(n, dv)`.
    pub(super) d_out: &'a [f32],
    pub(super) q: &'a mut [f32],
    pub(super) k: &'a mut [f32],
    pub(super) v: &'a mut [f32],
    pub(super) g: &'a mut [f32],
    pub(super) beta: &'a mut [f32],
}

impl Back {
    pub(super) fn new(dk: usize, dv: usize) -> Self {
        let rows = |w: usize| vec![0.0; CHUNK * w];
        Back {
            x1: rows(dv),
            y: rows(dv),
            dd: rows(dv),
            u: rows(dv),
            g: rows(CHUNK),
            f: rows(CHUNK),
            m: rows(CHUNK),
            b: rows(dk),
            s: rows(dv),
        }
    }

    /// One seed through head `h`'s chunk starting at `t0`, prepared in `w` from `s0`: `ds`
    /// holds the cotangent of the state after the chunk on entry and of `s0` on return.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn seed(
        &mut self,
        x: &Inputs,
        (h, t0): (usize, usize),
        w: &Work,
        s0: &[f32],
        sc: &Scales,
        ds: &mut [f32],
        out: Rows<'_>,
    ) {
        let Dims { len, dk, dv, .. } = x.dims;
        let n = w.n;
        let r0 = h * len + t0;
        let q = Mat::new(&x.q[r0 * dk..(r0 + n) * dk], n, dk);
        let k = Mat::new(&x.k[r0 * dk..(r0 + n) * dk], n, dk);
        let beta = &x.beta[r0..r0 + n];
        let eg = &w.egamma[..n];
        let last = n - 1;
        let ([r_0, r_1], [w_0, w_1], [g_0, g_1], [c_0, c_1]) =
            (sc.read, sc.write, sc.gate, sc.recall);
        let d_out = Mat::new(out.d_out, n, dv);
        let delta = Mat::new(&w.delta, n, dv);
        let (state, dend) = (Mat::new(s0, dk, dv), Mat::new(ds, dk, dv));
        let rows = |i: usize, wd: usize| i * wd..(i + 1) * wd;

        // dδ and u, the last row first: X1 = K D, Y_i = Σ_{j≥i} e^{γ_j−γ_i} (q_j·k_i) do_j.
        product(k, dend, &mut self.x1, false);
        fill(&mut self.m, n, |i, j| match j >= i {
            true => w.decay(j, i) * w.qk[j * n + i],
            false => 0.0,
        });
        product(Mat::new(&self.m, n, n), d_out, &mut self.y, false);
        for i in (0..n).rev() {
            let (head, tail) = self.u.split_at_mut((i + 1) * dv);
            let dd = &mut self.dd[rows(i, dv)];
            let el = w.decay(last, i);
            for ((d, &x1), &y) in dd
                .iter_mut()
                .zip(&self.x1[rows(i, dv)])
                .zip(&self.y[rows(i, dv)])
            {
                *d = w_1 * (el * x1 + r_0 * y);
            }
            for (jj, uj) in tail.chunks_exact(dv).take(n - i - 1).enumerate() {
                let j = i + 1 + jj;
                let l = w_1 * c_0 * w.decay(j, i) * w.kk[j * n + i];
                for (d, &x) in dd.iter_mut().zip(uj) {
                    *d -= l * x;
                }
            }
            let ui = &mut head[i * dv..];
            let mut db = 0.0;
            for ((u, &d), &r) in ui.iter_mut().zip(dd.iter()).zip(&w.r[rows(i, dv)]) {
                *u = g_1 * beta[i] * d;
                db += d * r;
            }
            out.beta[i] = g_0 * db;
            out.v[rows(i, dv)].copy_from_slice(ui);
        }
        let u = Mat::new(&self.u, n, dv);
        product(d_out, delta.t(), &mut self.g, false);
        product(u, delta.t(), &mut self.f, false);

        // dq = r₁ [diag(e^γ) dO S₀ᵀ + Lq K], Lq_ij = e^{γ_i−γ_j} (do_i·δ_j) for j ≤ i.
        product(d_out, state.t(), out.q, false);
        for (i, &e) in eg.iter().enumerate() {
            out.q[rows(i, dk)].iter_mut().for_each(|x| *x *= e);
        }
        let g = &self.g;
        fill(&mut self.m, n, |i, j| match j <= i {
            true => w.decay(i, j) * g[i * n + j],
            false => 0.0,
        });
        product(Mat::new(&self.m, n, n), k, out.q, true);
        out.q[..n * dk].iter_mut().for_each(|x| *x *= r_1);

        // dk = w₀ [diag(e^{γ_L−γ}) Δ Dᵀ + r₀ Hq Q] − c₁ diag(e^γ) U S₀ᵀ + (−w₀c₀ Hk − c₁ Lk) K
        // with Hq_ij = e^{γ_j−γ_i} (do_j·δ_i) (j ≥ i), Hk_ij = e^{γ_j−γ_i} (u_j·δ_i) (j > i),
        // Lk_ij = e^{γ_i−γ_j} (u_i·δ_j) (j < i).
        product(delta, dend.t(), out.k, false);
        product(u, state.t(), &mut self.b, false);
        for (i, &e) in eg.iter().enumerate() {
            let (el, e) = (w_0 * w.decay(last, i), c_1 * e);
            let (a, b) = (&mut out.k[rows(i, dk)], &self.b[rows(i, dk)]);
            for (a, &b) in a.iter_mut().zip(b) {
                *a = el * *a - e * b;
            }
        }
        let g = &self.g;
        fill(&mut self.m, n, |i, j| match j >= i {
            true => w_0 * r_0 * w.decay(j, i) * g[j * n + i],
            false => 0.0,
        });
        product(Mat::new(&self.m, n, n), q, out.k, true);
        let f = &self.f;
        fill(&mut self.m, n, |i, j| match j.cmp(&i) {
            std::cmp::Ordering::Greater => -w_0 * c_0 * w.decay(j, i) * f[j * n + i],
            std::cmp::Ordering::Less => -c_1 * w.decay(i, j) * f[i * n + j],
            std::cmp::Ordering::Equal => 0.0,
        });
        product(Mat::new(&self.m, n, n), k, out.k, true);

        // dg_i = decay (e^{γ_L} ⟨D, S₀⟩ + Σ_{j<i} α_j + Σ_{a≥i} ρ_a + T_i).
        if sc.decay != 0.0 {
            self.dg(w, ds, s0, (r_0, c_0), out.d_out, out.g);
            out.g[..n].iter_mut().for_each(|x| *x *= sc.decay);
        } else {
            out.g[..n].fill(0.0);
        }

        // The cotangent of S₀: e^{γ_L} D + r₀ Qᵀ diag(e^γ) dO − c₀ Kᵀ diag(e^γ) U.
        let el = eg[last];
        ds.iter_mut().for_each(|x| *x *= el);
        let scaled = |dst: &mut [f32], src: &[f32], c: f32| {
            for (i, (d, s)) in dst
                .chunks_exact_mut(dv)
                .zip(src.chunks_exact(dv))
                .take(n)
                .enumerate()
            {
                let e = c * eg[i];
                d.iter_mut().zip(s).for_each(|(d, &s)| *d = e * s);
            }
        };
        scaled(&mut self.s, out.d_out, r_0);
        product(q.t(), Mat::new(&self.s, n, dv), ds, true);
        scaled(&mut self.s, &self.u, -c_0);
        product(k.t(), Mat::new(&self.s, n, dv), ds, true);
    }

    /// The decays' cotangents before their share, into `dg` `(n,)`: `ds` is the cotangent
    /// of the state after the chunk, `s0` the state before it.
    fn dg(
        &mut self,
        w: &Work,
        ds: &[f32],
        s0: &[f32],
        (r_0, c_0): (f32, f32),
        d_out: &[f32],
        dg: &mut [f32],
    ) {
        let n = w.n;
        let dv = self.u.len() / CHUNK;
        let eg = &w.egamma[..n];
        let last = n - 1;
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let base = eg[last] * dot(ds, s0);
        // M_aj (a > j) = e^{γ_a−γ_j} (r₀ (q_a·k_j)(do_a·δ_j) − c₀ (k_a·k_j)(u_a·δ_j)).
        let (g, f) = (&self.g, &self.f);
        fill(&mut self.m, n, |a, j| match j < a {
            true => {
                let at = a * n + j;
                w.decay(a, j) * (r_0 * w.qk[at] * g[at] - c_0 * w.kk[at] * f[at])
            }
            false => 0.0,
        });
        fn row(v: &[f32], i: usize, dv: usize) -> &[f32] {
            &v[i * dv..(i + 1) * dv]
        }
        // ρ's suffix sums.
        let mut rho = 0.0;
        for a in (0..n).rev() {
            rho += eg[a]
                * (r_0 * dot(row(&w.qs, a, dv), row(d_out, a, dv))
                    - c_0 * dot(row(&w.ks, a, dv), row(&self.u, a, dv)));
            dg[a] = rho;
        }
        // α's prefix sums and the pairs' sweep.
        let (mut alpha, mut t) = (0.0, 0.0);
        for (i, dg) in dg[..n].iter_mut().enumerate() {
            *dg += base + alpha + t;
            alpha += w.decay(last, i) * dot(row(&self.x1, i, dv), row(&w.delta, i, dv));
            let column: f32 = (i + 1..n).map(|a| self.m[a * n + i]).sum();
            let row_sum: f32 = (0..i).map(|j| self.m[i * n + j]).sum();
            t += column - row_sum;
        }
    }
}

/// `m` `(n, n)` with `f(i, j)` at row `i`, column `j`.
fn fill(m: &mut [f32], n: usize, f: impl Fn(usize, usize) -> f32) {
    for (i, row) in m[..n * n].chunks_exact_mut(n).enumerate() {
        for (j, x) in row.iter_mut().enumerate() {
            *x = f(i, j);
        }
    }
}

/// Head `h`'s cotangents for every seed, `(seeds, len, ·)`, in the chunked form.
pub(super) fn head(x: &Inputs, h: usize, d_out: &[f32], sc: &Scales, seeds: usize) -> Grads {
    let Dims { heads, len, dk, dv } = x.dims;
    let mut gr = Grads::zeros(seeds, len, dk, dv);
    let kept = super::kept_states(x, h);
    let mut ds = vec![vec![0.0f32; dk * dv]; seeds];
    let (mut work, mut back) = (Work::new(dk, dv), Back::new(dk, dv));
    for (c, s0) in kept.iter().enumerate().rev() {
        let t0 = c * CHUNK;
        let t1 = (t0 + CHUNK).min(len);
        work.prepare(x, h, (t0, t1), s0);
        for (b, ds) in ds.iter_mut().enumerate() {
            let at = (b * heads + h) * len;
            let row = b * len;
            let rows = Rows {
                d_out: &d_out[(at + t0) * dv..(at + t1) * dv],
                q: &mut gr.q[(row + t0) * dk..(row + t1) * dk],
                k: &mut gr.k[(row + t0) * dk..(row + t1) * dk],
                v: &mut gr.v[(row + t0) * dv..(row + t1) * dv],
                g: &mut gr.g[row + t0..row + t1],
                beta: &mut gr.beta[row + t0..row + t1],
            };
            back.seed(x, (h, t0), &work, s0, sc, ds, rows);
        }
    }
    gr
}

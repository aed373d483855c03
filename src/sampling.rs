//! Choosing the next token: greedy, or temperature → top-k → top-p sampling in that order
//! (transformers' order), from a seeded ChaCha8 generator so that a seed reproduces an
//! answer on every platform.

use crate::error::{Error, Result};
use crate::types::Sampling;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A sampler with its random state.
#[derive(Debug, Clone)]
pub struct Sampler {
    cfg: Sampling,
    rng: ChaCha8Rng,
}

/// The first index of the largest value (torch's argmax picks the first too).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

impl Sampler {
    /// Checks the settings (top-k against the vocabulary is the engine's check) and seeds
    /// the generator.
    pub fn new(cfg: Sampling) -> Result<Self> {
        cfg.check(usize::MAX).map_err(Error::InvalidSetting)?;
        Ok(Sampler {
            cfg,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
        })
    }

    /// The next token id.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.cfg.is_greedy() {
            return argmax(logits);
        }
        // Only top-k's candidates need ordering (all of them for top-p alone).
        let k = match self.cfg.top_k {
            0 => logits.len(),
            k => k,
        };
        let order: Vec<u32> = crate::select::largest(logits, k)
            .into_iter()
            .map(|i| i as u32)
            .collect();
        let t = self.cfg.temperature as f64;
        let top = logits[order[0] as usize] as f64;
        let mut p: Vec<f64> = order
            .iter()
            .map(|&i| ((logits[i as usize] as f64 - top) / t).exp())
            .collect();
        let z: f64 = p.iter().sum();
        p.iter_mut().for_each(|x| *x /= z);
        // Smallest prefix whose mass reaches top_p (at least one token).
        let mut mass = 0.0;
        let mut keep = p.len();
        for (k, &x) in p.iter().enumerate() {
            mass += x;
            if mass >= self.cfg.top_p as f64 {
                keep = k + 1;
                break;
            }
        }
        let u: f64 = self.rng.random::<f64>() * p[..keep].iter().sum::<f64>();
        let mut acc = 0.0;
        for (k, &x) in p[..keep].iter().enumerate() {
            acc += x;
            if u < acc {
                return order[k];
            }
        }
        order[keep - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_seeded_and_filtered() -> Result<()> {
        let logits = [0.0, 3.0, 2.9, -1.0, 3.0];
        assert_eq!(Sampler::new(Sampling::greedy())?.sample(&logits), 1);
        let cfg = Sampling {
            temperature: 1.0,
            top_k: 3,
            top_p: 1.0,
            seed: 7,
        };
        let draw = |cfg| -> Result<Vec<u32>> {
            let mut s = Sampler::new(cfg)?;
            Ok((0..200).map(|_| s.sample(&logits)).collect())
        };
        let a = draw(cfg)?;
        assert_eq!(a, draw(cfg)?, "same seed, same draws");
        assert!(a.iter().all(|&i| [1, 2, 4].contains(&i)), "top-k keeps 3");
        assert!([1, 2, 4].iter().all(|i| a.contains(i)));
        // top-p 0.5: the two tokens at 3.0 hold ~0.69 of the mass; 2.9 is cut.
        let b = draw(Sampling { top_p: 0.5, ..cfg })?;
        assert!(b.iter().all(|&i| i == 1 || i == 4));
        assert!(Sampler::new(Sampling { top_p: 0.0, ..cfg }).is_err());
        assert!(Sampler::new(Sampling {
            temperature: -1.0,
            ..cfg
        })
        .is_err());
        Ok(())
    }
}

//! Picking the next token from logits: greedy, or seeded temperature / top-k / top-p sampling.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Debug)]
pub struct SamplerConfig {
    /// 0 means greedy (arg-max).
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1.0 = all).
    pub top_p: f32,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            seed: 0,
        }
    }
}

pub struct Sampler {
    cfg: SamplerConfig,
    // ChaCha: the same seed gives the same stream on every platform and crate version.
    rng: ChaCha8Rng,
    candidates: Vec<(f32, u32)>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Sampler {
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        Sampler {
            cfg,
            rng,
            candidates: Vec::new(),
        }
    }

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.cfg.temperature <= 0.0 {
            return argmax(logits);
        }
        let c = &mut self.candidates;
        c.clear();
        c.extend(logits.iter().enumerate().map(|(i, &l)| (l, i as u32)));
        let by_logit = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if self.cfg.top_k > 0 && self.cfg.top_k < c.len() {
            c.select_nth_unstable_by(self.cfg.top_k - 1, by_logit);
            c.truncate(self.cfg.top_k);
        }
        c.sort_unstable_by(by_logit);
        // Softmax with temperature, over what is left.
        let max = c[0].0;
        let mut sum = 0.0;
        for e in c.iter_mut() {
            e.0 = ((e.0 - max) / self.cfg.temperature).exp();
            sum += e.0;
        }
        let mut kept = c.len();
        if self.cfg.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, e) in c.iter().enumerate() {
                acc += e.0 / sum;
                if acc >= self.cfg.top_p {
                    kept = i + 1;
                    break;
                }
            }
        }
        let total: f32 = c[..kept].iter().map(|e| e.0).sum();
        // 24 random bits give a uniform f32 in [0, 1).
        let r = (self.rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32 * total;
        let mut acc = 0.0;
        for e in &c[..kept] {
            acc += e.0;
            if r < acc {
                return e.1;
            }
        }
        c[kept - 1].1
    }
}

/// Index of the largest logit (the first on ties, like llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_maximum() {
        let mut s = Sampler::new(SamplerConfig::default());
        assert_eq!(s.sample(&[0.1, 3.0, 2.0]), 1);
    }

    #[test]
    fn same_seed_same_tokens_and_top_k_one_is_greedy() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 7919) % 101) as f32 / 10.0).collect();
        let cfg = SamplerConfig {
            temperature: 0.8,
            top_k: 20,
            top_p: 0.9,
            seed: 42,
        };
        let a: Vec<u32> = {
            let mut s = Sampler::new(cfg.clone());
            (0..50).map(|_| s.sample(&logits)).collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(cfg.clone());
            (0..50).map(|_| s.sample(&logits)).collect()
        };
        assert_eq!(a, b);
        assert!(
            a.iter().any(|&t| t != a[0]),
            "sampling at temperature 0.8 should vary"
        );
        let mut k1 = Sampler::new(SamplerConfig { top_k: 1, ..cfg });
        assert_eq!(k1.sample(&logits), argmax(&logits));
    }
}

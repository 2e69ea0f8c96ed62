//! Next-token sampling from logits: temperature, top-k, top-p (nucleus), seeded.
//!
//! For logits l (V), temperature tau > 0:
//!
//! ```text
//! p_i  = softmax(l / tau)_i
//! top-k: keep the k most likely tokens (ties broken by lower id)
//! top-p: then keep the smallest most-likely prefix whose probability reaches p
//! draw u ~ U[0, 1) from a SplitMix64 stream seeded by `seed`; pick the first kept token whose
//! renormalised cumulative probability exceeds u
//! ```
//!
//! `temperature = 0` (or `top_k = 1`) is greedy argmax. Sampling runs on the host over one
//! readback of V logits per step; the stream is ours (SplitMix64), so a seed gives the same tokens
//! on every machine and crate version.
//!
//! ```
//! use kiln::models::{Sampler, Sampling};
//! let mut s = Sampler::new(Sampling { temperature: 0.0, ..Sampling::default() });
//! assert_eq!(s.sample(&[0.1, 3.0, -1.0]).unwrap(), 1);
//! ```

use crate::error::{Result, arg_err};

/// How to pick the next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Divides the logits; 0 = greedy.
    pub temperature: f32,
    /// Keep only the k most likely tokens (`None` or 0: all).
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens with probability >= p (`None` or 1: all).
    pub top_p: Option<f32>,
    /// Seed of the random stream.
    pub seed: u64,
}

impl Default for Sampling {
    /// Temperature 1, no truncation, seed 0.
    fn default() -> Self {
        Sampling {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            seed: 0,
        }
    }
}

/// A seeded sampler: [`Sampling`] plus its random stream.
#[derive(Debug, Clone)]
pub struct Sampler {
    cfg: Sampling,
    state: u64,
}

impl Sampler {
    /// A sampler at the start of the stream of `cfg.seed`.
    pub fn new(cfg: Sampling) -> Self {
        Sampler {
            cfg,
            state: cfg.seed,
        }
    }

    /// The settings.
    pub fn config(&self) -> &Sampling {
        &self.cfg
    }

    /// Next uniform in [0, 1) (SplitMix64, top 53 bits).
    pub fn next_uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Pick a token id from `logits` (V). Errors on empty logits or invalid settings.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        let c = self.cfg;
        if logits.is_empty() {
            return arg_err("sample", "no logits to sample from");
        }
        if !(c.temperature.is_finite() && c.temperature >= 0.0) {
            return arg_err(
                "sample",
                format!("temperature must be finite and >= 0, got {}", c.temperature),
            );
        }
        if let Some(p) = c.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return arg_err("sample", format!("top_p must be in (0, 1], got {p}"));
            }
        }
        // Most likely first; ties by lower id (a stable sort of ids).
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        if c.temperature == 0.0 || c.top_k == Some(1) {
            return Ok(order[0] as u32);
        }
        let k = match c.top_k {
            Some(k) if k > 0 => k.min(order.len()),
            _ => order.len(),
        };
        order.truncate(k);
        let tau = c.temperature as f64;
        let m = logits[order[0]] as f64;
        let mut probs: Vec<f64> = order
            .iter()
            .map(|&i| ((logits[i] as f64 - m) / tau).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if let Some(p) = c.top_p {
            let mut cum = 0.0;
            let mut keep = probs.len();
            for (j, &q) in probs.iter().enumerate() {
                cum += q;
                if cum >= p as f64 {
                    keep = j + 1;
                    break;
                }
            }
            probs.truncate(keep);
            order.truncate(keep);
        }
        let total: f64 = probs.iter().sum();
        let u = self.next_uniform() * total;
        let mut cum = 0.0;
        for (j, &q) in probs.iter().enumerate() {
            cum += q;
            if u < cum {
                return Ok(order[j] as u32);
            }
        }
        Ok(order[probs.len() - 1] as u32)
    }
}

//! 8-bit Adam and AdamW (`--optimizer adam8bit|adamw8bit`; Dettmers et al. 2022, 8-bit
//! Optimizers via Block-wise Quantization): [`super::Adam`]'s update with both moments stored in
//! one byte per value instead of four.
//!
//! Each moment of a parameter of `n` values is cut into blocks of 2048 values (the paper's
//! size); a block keeps its absmax (f32) and every value the index of the nearest entry of a
//! 256-value dynamic code book to `value / absmax` (a signed book for m, an unsigned one for v: fine steps near 0, coarse
//! near 1; `kiln_kernels::reference::optim::q8_code`). One fused dispatch per parameter
//! (`optim8bit.wgsl:adam8bit`) dequantises, applies the Adam / AdamW update of
//! [`super::Adam`] in f32 (the parameter moves with the fresh f32 moments) and requantises:
//!
//! ```text
//! m, v = book_s[cm] * absmax_m, book_u[cv] * absmax_v      dequantise (block-wise)
//! (p, m, v) = adam(p, grad, m, v, t)                        f32, as Adam / AdamW
//! absmax_m, absmax_v = max |m|, max v                       over each block of 2048
//! cm, cv = nearest(book_s, m / absmax_m), nearest(book_u, v / absmax_v)
//! ```
//!
//! State per parameter: `2 n` bytes of codes plus `8 n / 2048` bytes of scales, 2.004 bytes per
//! value against Adam's 8 (25.05 %). Parameters smaller than [`Adam8bit::MIN_QUANTISED`] values
//! (biases, norms: as bitsandbytes does) keep f32 moments and take [`super::Adam`]'s kernel,
//! where quantisation would save little and cost accuracy.
//!
//! ```
//! use kiln::optim::{Adam8bit, AdamConfig, Optimizer};
//! use kiln::Tensor;
//! let w = Tensor::from_slice(&vec![0.5f32; 5000], &[5000])?.requires_grad();
//! let mut opt = Adam8bit::new(vec![("w".into(), w.clone())], AdamConfig::adamw(0.1))?;
//! w.square()?.sum()?.backward()?;
//! opt.step()?;                        // the first step still moves each weight by about lr
//! assert!((w.to_vec::<f32>()?[0] - 0.3995).abs() < 1e-3);
//! assert!(opt.state_bytes() < 5000 * 8 / 3);   // vs 40,000 bytes of f32 moments
//! # Ok::<(), kiln::Error>(())
//! ```

use std::collections::BTreeMap;

use kiln_kernels::launch::optim::{self as k, q8_blocks, q8_words};
use kiln_kernels::reference::optim::q8_code;

use super::adam::{EXP_AVG, EXP_AVG_SQ, Moments, STEP, hyper, push_step, read_step};
use super::params::{Slots, Update, load_like, optimizer_common, parse_state_name};
use super::{AdamConfig, Optimizer, OptimizerState};
use crate::error::{Result, arg_err};
use crate::tensor::{DType, Tensor};

const OP: &str = "Adam8bit";
/// Packed u32 codes of the first moment (`exp_avg_q8.<name>`, shape `[ceil(n / 4)]`).
const EXP_AVG_Q8: &str = "exp_avg_q8";
/// Packed u32 codes of the second moment.
const EXP_AVG_SQ_Q8: &str = "exp_avg_sq_q8";
/// Block absmaxes, f32 `[2 ceil(n / 2048)]`: those of m, then those of v.
const ABSMAX_Q8: &str = "absmax_q8";
const KINDS: [&str; 6] = [
    EXP_AVG,
    EXP_AVG_SQ,
    STEP,
    EXP_AVG_Q8,
    EXP_AVG_SQ_Q8,
    ABSMAX_Q8,
];

/// Quantised moments of one parameter.
struct Q8Moments {
    /// (ceil(n / 4)) u32: four 8-bit codes of m per word.
    mq: Tensor,
    /// (ceil(n / 4)) u32: codes of v.
    vq: Tensor,
    /// (2 ceil(n / 2048)) f32: absmax of m per block, then of v.
    scales: Tensor,
    step: u64,
    step_tensor: Tensor,
}

impl Q8Moments {
    fn zeros(p: &Tensor) -> Result<Q8Moments> {
        let (gpu, n) = (p.gpu(), p.numel());
        let words = vec![0u32; q8_words(n)];
        Ok(Q8Moments {
            mq: Tensor::from_slice_on(gpu, &words, &[words.len()])?,
            vq: Tensor::from_slice_on(gpu, &words, &[words.len()])?,
            scales: Tensor::zeros_on(gpu, &[2 * q8_blocks(n)])?,
            step: 0,
            step_tensor: Tensor::zeros_on(gpu, &[])?,
        })
    }
}

/// One parameter's state: f32 moments (small parameters) or quantised ones.
enum State8 {
    F32(Moments),
    Q8(Q8Moments),
}

/// 8-bit Adam or AdamW over named parameters; see the module notes.
pub struct Adam8bit {
    slots: Slots<State8>,
    config: AdamConfig,
    /// Parameters of fewer values keep f32 moments.
    min_quantised: usize,
    /// The two code books (512 f32, `q8_code`), uploaded on the first step.
    code: Option<Tensor>,
}

impl Adam8bit {
    /// Parameters with fewer values than this keep f32 moments (bitsandbytes' default
    /// threshold).
    pub const MIN_QUANTISED: usize = 4096;

    /// 8-bit Adam / AdamW over `params` (names as from a module's `named_parameters`); `config`
    /// as for [`super::Adam`]. Errors on an invalid config, duplicate names, or parameters that
    /// are not contiguous f32.
    pub fn new(params: Vec<(String, Tensor)>, config: AdamConfig) -> Result<Adam8bit> {
        config.validate()?;
        Ok(Adam8bit {
            slots: Slots::new(OP, params)?,
            config,
            min_quantised: Self::MIN_QUANTISED,
            code: None,
        })
    }

    /// Quantise parameters of at least `min` values (default [`Self::MIN_QUANTISED`]; 1 puts
    /// every parameter in 8 bits). Changes only parameters whose state is not yet created.
    pub fn with_min_quantised(mut self, min: usize) -> Self {
        self.min_quantised = min.max(1);
        self
    }

    /// The settings (with the current learning rate).
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    /// One parameter's update, creating its state on the first: f32 moments below the
    /// threshold, quantised ones from it.
    fn update(c: &AdamConfig, min: usize, code: &Tensor, u: Update<'_, State8>) -> Result<()> {
        let (p, g) = (u.p, u.g);
        let s = match u.slot {
            Some(s) => s,
            None if p.numel() < min => u.slot.insert(State8::F32(Moments::zeros(p)?)),
            None => u.slot.insert(State8::Q8(Q8Moments::zeros(p)?)),
        };
        let q = match s {
            State8::F32(m) => return m.update(c, u.lr_scale, (p, g), None),
            State8::Q8(q) => q,
        };
        q.step += 1;
        k::adam8bit(
            p.gpu(),
            &hyper(c, u.lr_scale, q.step),
            p.numel(),
            p.operand(),
            g.operand(),
            k::Q8State {
                mq: q.mq.operand(),
                vq: q.vq.operand(),
                scales: q.scales.operand(),
            },
            code.buffer(),
        )?;
        Ok(())
    }
}

impl Optimizer for Adam8bit {
    fn step(&mut self) -> Result<()> {
        let Some((_, p0)) = self.slots.params.first() else {
            self.slots.step += 1;
            return Ok(());
        };
        let code = match &self.code {
            Some(c) => c.clone(),
            None => {
                let c = Tensor::from_slice_on(p0.gpu(), &q8_code(), &[512])?;
                self.code.insert(c).clone()
            }
        };
        let (c, min) = (self.config, self.min_quantised);
        self.slots.step(OP, |u| Self::update(&c, min, &code, u))
    }

    optimizer_common!(no_step);

    /// The step count and, per parameter with state, either Adam's `exp_avg.<name>`,
    /// `exp_avg_sq.<name>` (f32 moments of a small parameter) or the quantised
    /// `exp_avg_q8.<name>`, `exp_avg_sq_q8.<name>` (u32 words of packed codes) and
    /// `absmax_q8.<name>` (f32 block scales), plus `step.<name>`. Live tensors, as Adam's.
    fn state(&self) -> OptimizerState {
        let mut tensors = Vec::new();
        let sl = &self.slots;
        for ((name, p), s) in sl.params.iter().zip(&sl.state) {
            match s {
                Some(State8::F32(m)) => m.push_state(name, p, &mut tensors),
                Some(State8::Q8(q)) => {
                    tensors.push((format!("{EXP_AVG_Q8}.{name}"), q.mq.clone()));
                    tensors.push((format!("{EXP_AVG_SQ_Q8}.{name}"), q.vq.clone()));
                    tensors.push((format!("{ABSMAX_Q8}.{name}"), q.scales.clone()));
                    push_step(name, p, q.step, &q.step_tensor, &mut tensors);
                }
                None => {}
            }
        }
        OptimizerState {
            step: sl.step,
            tensors,
        }
    }

    /// Replace all state with copies of `state`'s tensors, bit for bit: per parameter either
    /// the f32 pair or the quantised triple of [`Optimizer::state`] (whichever was saved),
    /// `step.<name>` optional. Errors, changing nothing, on unknown names, incomplete or mixed
    /// sets, or mis-shaped tensors.
    fn load_state(&mut self, state: &OptimizerState) -> Result<()> {
        let params = &self.slots.params;
        let mut given: Vec<BTreeMap<&str, &Tensor>> = vec![BTreeMap::new(); params.len()];
        for (full, t) in &state.tensors {
            let (kind, i) = parse_state_name(OP, full, &KINDS, params)?;
            if given[i].insert(kind, t).is_some() {
                return arg_err(OP, format!("state tensor `{full}` is given twice"));
            }
        }
        let mut slots = Vec::with_capacity(params.len());
        for ((name, p), mut g) in params.iter().zip(given) {
            let step = match g.remove(STEP) {
                Some(t) => read_step(&format!("{STEP}.{name}"), t)?,
                None => state.step,
            };
            let step_tensor = Tensor::zeros_on(p.gpu(), &[])?;
            let kinds: Vec<&str> = g.keys().copied().collect();
            let mut take = |kind: &str| g.remove(kind).map(|t| (format!("{kind}.{name}"), t));
            let f32s = (take(EXP_AVG), take(EXP_AVG_SQ));
            let q8s = (take(EXP_AVG_Q8), take(EXP_AVG_SQ_Q8), take(ABSMAX_Q8));
            slots.push(match (f32s, q8s) {
                ((None, None), (None, None, None)) if kinds.is_empty() => None,
                ((Some(m), Some(v)), (None, None, None)) => Some(State8::F32(Moments {
                    exp_avg: load_like(OP, &m.0, m.1, p)?,
                    exp_avg_sq: load_like(OP, &v.0, v.1, p)?,
                    step,
                    step_tensor,
                })),
                ((None, None), (Some(mq), Some(vq), Some(sc))) => {
                    let (words, blocks) = (q8_words(p.numel()), q8_blocks(p.numel()));
                    Some(State8::Q8(Q8Moments {
                        mq: load_exact(&mq.0, mq.1, DType::U32, words)?,
                        vq: load_exact(&vq.0, vq.1, DType::U32, words)?,
                        scales: load_exact(&sc.0, sc.1, DType::F32, 2 * blocks)?,
                        step,
                        step_tensor,
                    }))
                }
                _ => {
                    return arg_err(
                        OP,
                        format!(
                            "state of `{name}` holds {kinds:?} besides its step; expected \
                             either {EXP_AVG} and {EXP_AVG_SQ} (f32 moments) or {EXP_AVG_Q8}, \
                             {EXP_AVG_SQ_Q8} and {ABSMAX_Q8} (8-bit moments)"
                        ),
                    );
                }
            });
        }
        self.slots.state = slots;
        self.slots.step = state.step;
        Ok(())
    }
}

/// Check a loaded quantised state tensor (`dtype`, `len` values, rank 1) and copy it, bits
/// unchanged, into a fresh buffer owned by the optimizer.
fn load_exact(full: &str, t: &Tensor, dtype: DType, len: usize) -> Result<Tensor> {
    if t.dtype() != dtype || t.shape() != [len] {
        return arg_err(
            OP,
            format!(
                "state tensor `{full}` must be {} of shape [{len}], got {:?} of shape {:?}",
                dtype.name(),
                t.dtype(),
                t.shape()
            ),
        );
    }
    t.copy_contiguous()
}

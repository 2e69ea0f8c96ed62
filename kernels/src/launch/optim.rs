//! Launchers for `optim.wgsl` and `optim8bit.wgsl`: fused in-place optimizer updates, one
//! dispatch per parameter; and for `grad_scale.wgsl`, dynamic loss scaling on the device.
//!
//! Every operand is a contiguous run of `n` f32 at an element offset inside its buffer
//! ([`Operand`]); the 8-bit Adam state ([`adam8bit`]) is packed u32 codes and f32 scales.
//! Parameter, gradient and state must live in distinct buffers: a buffer may not be bound both
//! read-only and read-write in one dispatch.
//!
//! See also:
//! - shaders: `shaders/optim.wgsl`, `shaders/optim8bit.wgsl` (the family's second file),
//!   `shaders/grad_scale.wgsl` (the loss scaler: [`unscale`], [`update_scale`])
//! - CPU twin: [`crate::reference::optim`]
//! - optimizers: `src/optim/`
//! - tests: `kernels/tests/kernels/optim.rs` (kernels vs twin), `tests/ops/optim.rs` (optimizers);
//!   benchmark: `benches/train_step.rs`

use crate::buffer_pool::GpuBuffer;
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::grid_1d;
use crate::operand::Operand;
use crate::pipeline::KernelKey;

const WG: u32 = 256;

/// Values per quantisation block of the 8-bit Adam state (one absmax scale per block and moment).
pub const Q8_BLOCK: usize = 2048;
/// 8-bit codes per packed u32 word.
pub const Q8_PER_WORD: usize = 4;
/// Entries of each 8-bit code book.
pub const Q8_CODES: usize = 256;
/// The index of 0.0 in the signed code book (`reference::optim::q8_code`'s first half): the
/// padding code of the first moment.
pub const Q8_SIGNED_ZERO: u32 = 127;

/// u32 words of packed codes for `n` values.
pub fn q8_words(n: usize) -> usize {
    n.div_ceil(Q8_PER_WORD)
}

/// Quantisation blocks for `n` values.
pub fn q8_blocks(n: usize) -> usize {
    n.div_ceil(Q8_BLOCK)
}

crate::kernel_params! {
    /// Params of `optim.wgsl:sgd` and `optim.wgsl:sgd_momentum`.
    pub struct SgdParams in "optim.wgsl" as "SgdParams" {
        /// Elements of p, grad and buf.
        pub n: u32,
        /// Element offset of `p[0]`.
        pub p_off: u32,
        /// Element offset of `grad[0]`.
        pub g_off: u32,
        /// Element offset of `buf[0]` (momentum only).
        pub buf_off: u32,
        /// Learning rate.
        pub lr: f32,
        /// Momentum factor mu.
        pub momentum: f32,
        /// L2 weight decay wd.
        pub weight_decay: f32,
        /// Padding to 16 bytes.
        pub _pad: u32,
    }
}

crate::kernel_params! {
    /// Params of `optim.wgsl:adam` (declared in `common/adam.wgsl`).
    pub struct AdamParams in "optim.wgsl" as "AdamParams" {
        /// Elements of p, grad, m and v.
        pub n: u32,
        /// Element offset of `p[0]`.
        pub p_off: u32,
        /// Element offset of `grad[0]`.
        pub g_off: u32,
        /// Element offset of `m[0]` (exp_avg).
        pub m_off: u32,
        /// Element offset of `v[0]` (exp_avg_sq).
        pub v_off: u32,
        /// Learning rate.
        pub lr: f32,
        /// First-moment decay b1.
        pub beta1: f32,
        /// Second-moment decay b2.
        pub beta2: f32,
        /// Added to the bias-corrected sqrt(v).
        pub eps: f32,
        /// Weight decay (L2 for Adam, decoupled for AdamW).
        pub weight_decay: f32,
        /// Bias correction 1 - b1^t.
        pub bc1: f32,
        /// Bias correction 1 - b2^t.
        pub bc2: f32,
    }
}

crate::kernel_params! {
    /// Params of `optim8bit.wgsl:adam8bit`: Adam's, with the codes' word offsets in
    /// `a.m_off`, `a.v_off`, and the scales' offset.
    pub struct Adam8bitParams in "optim8bit.wgsl" as "Adam8bitParams" {
        /// Adam's hyper-parameters and offsets (`common/adam.wgsl`).
        pub a: AdamParams,
        /// Element offset of the block scales.
        pub s_off: u32,
        /// Padding to 16 bytes.
        pub _pad0: u32,
        /// Padding.
        pub _pad1: u32,
        /// Padding.
        pub _pad2: u32,
    }
}

crate::kernel_params! {
    /// Params of `grad_scale.wgsl:unscale` and `grad_scale.wgsl:update` (the loss scaler).
    pub struct ScaleParams in "grad_scale.wgsl" as "ScaleParams" {
        /// Elements of the gradient (unscale).
        pub n: u32,
        /// Element offset of `grad[0]` (unscale).
        pub g_off: u32,
        /// Good steps between two growths of the scale (update).
        pub interval: u32,
        /// Padding.
        pub _pad: u32,
        /// Growth factor (update).
        pub growth: f32,
        /// Backoff factor (update).
        pub backoff: f32,
        /// Padding.
        pub _pad1: u32,
        /// Padding to 16 bytes.
        pub _pad2: u32,
    }
}

/// Words of a loss scaler's state buffer (`grad_scale.wgsl`): found_inf, good steps, skipped
/// steps, unused.
pub const SCALER_WORDS: usize = 4;

/// How a loss scaler's scale moves (`grad_scale.wgsl:update`), PyTorch's `GradScaler` settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleUpdate {
    /// Multiplies the scale after `interval` good steps in a row (PyTorch: 2).
    pub growth: f32,
    /// Multiplies the scale after a step whose gradients overflowed (PyTorch: 0.5).
    pub backoff: f32,
    /// Good steps between growths (PyTorch: 2000), >= 1.
    pub interval: u32,
}

impl Default for ScaleUpdate {
    /// PyTorch's: growth 2, backoff 0.5, every 2000 good steps.
    fn default() -> Self {
        ScaleUpdate {
            growth: 2.0,
            backoff: 0.5,
            interval: 2000,
        }
    }
}

/// SGD hyper-parameters for one update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdStep {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor mu (0 = plain SGD, no buffer).
    pub momentum: f32,
    /// Nesterov momentum (needs a buffer).
    pub nesterov: bool,
    /// L2 weight decay, added to the gradient.
    pub weight_decay: f32,
}

/// Adam / AdamW hyper-parameters for one update at step `t` (1-based).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay b1.
    pub beta1: f32,
    /// Second-moment decay b2.
    pub beta2: f32,
    /// Added to the bias-corrected sqrt(v).
    pub eps: f32,
    /// Weight decay coefficient.
    pub weight_decay: f32,
    /// True: AdamW (decoupled decay, `p *= 1 - lr wd`); false: Adam (L2, `g += wd p`).
    pub decoupled: bool,
    /// 1 - b1^t.
    pub bc1: f32,
    /// 1 - b2^t.
    pub bc2: f32,
}

impl AdamStep {
    /// The kernel params for `n` elements at `offsets` (of p, grad, m, v).
    fn params(&self, n: usize, offsets: [usize; 4]) -> AdamParams {
        let [p_off, g_off, m_off, v_off] = offsets.map(|o| o as u32);
        AdamParams {
            n: n as u32,
            p_off,
            g_off,
            m_off,
            v_off,
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            bc1: self.bc1,
            bc2: self.bc2,
        }
    }

    /// The bias corrections `(1 - b1^t, 1 - b2^t)` for step `t` (1-based), computed in f64.
    pub fn bias_corrections(beta1: f32, beta2: f32, t: u64) -> (f32, f32) {
        let t = t.min(i32::MAX as u64) as i32;
        (
            (1.0 - (beta1 as f64).powi(t)) as f32,
            (1.0 - (beta2 as f64).powi(t)) as f32,
        )
    }
}

/// Check sizes (`n` 4-byte elements each) and that no buffer is bound twice.
fn check(kernel: &str, n: usize, spans: &[(&str, &Operand<'_>)]) -> Result<()> {
    let sized: Vec<_> = spans.iter().map(|&(name, s)| (name, s, n)).collect();
    check_sized(kernel, &sized)
}

/// [`check`] with a length (in 4-byte elements) per operand.
fn check_sized(kernel: &str, spans: &[(&str, &Operand<'_>, usize)]) -> Result<()> {
    for &(name, s, n) in spans {
        let end = s.offset as u64 + n as u64;
        if end > u32::MAX as u64 {
            return Err(KernelError::launch(
                kernel,
                format!(
                    "{name}: elements {}..{end} exceed the 2^32 index range",
                    s.offset
                ),
            ));
        }
        if end * 4 > s.buf.capacity() {
            return Err(KernelError::launch(
                kernel,
                format!(
                    "{name}: elements {}..{end} overrun its buffer of {} bytes",
                    s.offset,
                    s.buf.capacity()
                ),
            ));
        }
    }
    for (i, (a, sa, _)) in spans.iter().enumerate() {
        for (b, sb, _) in &spans[i + 1..] {
            if std::ptr::eq(sa.buf, sb.buf) {
                return Err(KernelError::launch(
                    kernel,
                    format!("{a} and {b} share a buffer; the update needs distinct buffers"),
                ));
            }
        }
    }
    Ok(())
}

/// Check the operands of one update of `n` elements ([`check`]) and record it, `invocations`
/// of `key`'s entry with the operands bound in order after the params, then `skip` (a guarded
/// entry's flag); nothing when `n` is 0.
fn record<P: bytemuck::Pod>(
    gpu: &Gpu,
    key: &KernelKey,
    (n, invocations): (usize, usize),
    spans: &[(&str, &Operand<'_>)],
    params: P,
    skip: Option<&GpuBuffer>,
) -> Result<()> {
    check(&key.label(), n, spans)?;
    if n > 0 {
        let mut bufs: Vec<&GpuBuffer> = spans.iter().map(|(_, s)| s.buf).collect();
        bufs.extend(skip);
        gpu.dispatch(key, &params, &bufs, grid_1d(invocations, WG));
    }
    Ok(())
}

/// One SGD update of `n` elements in place (optim.wgsl:sgd, or sgd_momentum when `buf` is
/// given; `buf` must be given exactly when `h.momentum != 0`). With `skip` (a loss scaler's
/// state, see [`unscale`]) the `_guarded` entry runs: the update is skipped on the device while
/// the state's word 0 is not 0.
pub fn sgd(
    gpu: &Gpu,
    h: &SgdStep,
    n: usize,
    p: Operand<'_>,           // (n) read-write
    grad: Operand<'_>,        // (n)
    buf: Option<Operand<'_>>, // (n) read-write, zeros before the first step
    skip: Option<&GpuBuffer>, // (4) u32, a loss scaler's state
) -> Result<()> {
    let entry = if buf.is_some() { "sgd_momentum" } else { "sgd" };
    let key =
        KernelKey::new("optim.wgsl", guarded(entry, skip)).with("NESTEROV", h.nesterov as u32);
    let label = key.label();
    if (h.momentum != 0.0) != buf.is_some() || (h.nesterov && buf.is_none()) {
        return Err(KernelError::launch(
            &label,
            format!(
                "momentum {} (nesterov {}) needs a momentum buffer exactly when momentum != 0",
                h.momentum, h.nesterov
            ),
        ));
    }
    let mut spans = vec![("param", &p), ("grad", &grad)];
    if let Some(b) = &buf {
        spans.push(("momentum buffer", b));
    }
    let params = SgdParams {
        n: n as u32,
        p_off: p.offset as u32,
        g_off: grad.offset as u32,
        buf_off: buf.map_or(0, |b| b.offset as u32),
        lr: h.lr,
        momentum: h.momentum,
        weight_decay: h.weight_decay,
        _pad: 0,
    };
    record(gpu, &key, (n, n), &spans, params, skip)
}

/// The entry point's name, its `_guarded` twin when a skip flag is bound.
fn guarded(entry: &'static str, skip: Option<&GpuBuffer>) -> &'static str {
    match (entry, skip.is_some()) {
        ("sgd", true) => "sgd_guarded",
        ("sgd_momentum", true) => "sgd_momentum_guarded",
        ("adam", true) => "adam_guarded",
        ("adam4", true) => "adam4_guarded",
        _ => entry,
    }
}

/// True when the vec4 entry (`adam4`) can run: `n` and every offset are multiples of 4.
pub fn adam_vec4_ok(n: usize, spans: &[&Operand<'_>]) -> bool {
    n.is_multiple_of(4) && spans.iter().all(|s| s.offset.is_multiple_of(4))
}

/// One Adam / AdamW update of `n` elements in place: optim.wgsl:adam4 (4 elements per
/// invocation, 16-byte accesses) when `n` and every offset are multiples of 4, else
/// optim.wgsl:adam. Both give the same values.
pub fn adam(
    gpu: &Gpu,
    h: &AdamStep,
    n: usize,
    p: Operand<'_>,    // (n) read-write
    grad: Operand<'_>, // (n)
    m: Operand<'_>,    // (n) read-write exp_avg, zeros before the first step
    v: Operand<'_>,    // (n) read-write exp_avg_sq, zeros before the first step
) -> Result<()> {
    adam_guarded(gpu, h, n, [p, grad, m, v], None)
}

/// [`adam`] of `[p, grad, m, v]` behind a loss scaler's skip flag (the `*_guarded` entries):
/// with `skip` given, the update is skipped on the device while its word 0 is not 0.
pub fn adam_guarded(
    gpu: &Gpu,
    h: &AdamStep,
    n: usize,
    [p, grad, m, v]: [Operand<'_>; 4], // (n) each: p, m, v read-write
    skip: Option<&GpuBuffer>,          // (4) u32, a loss scaler's state
) -> Result<()> {
    let vec4 = adam_vec4_ok(n, &[&p, &grad, &m, &v]);
    let entry = if vec4 { "adam4" } else { "adam" };
    let key =
        KernelKey::new("optim.wgsl", guarded(entry, skip)).with("DECOUPLED", h.decoupled as u32);
    let params = h.params(n, [p.offset, grad.offset, m.offset, v.offset]);
    let spans = [
        ("param", &p),
        ("grad", &grad),
        ("exp_avg", &m),
        ("exp_avg_sq", &v),
    ];
    let invocations = if vec4 { n / 4 } else { n };
    record(gpu, &key, (n, invocations), &spans, params, skip)
}

/// The 8-bit Adam state of one tensor of `n` values: the packed codes of both moments and the
/// block scales, each at its own offset and read-write (zeros before the first step).
#[derive(Debug, Clone, Copy)]
pub struct Q8State<'a> {
    /// (ceil(n / 4)) u32: four 8-bit codes of exp_avg per word, low byte first.
    pub mq: Operand<'a>,
    /// (ceil(n / 4)) u32: the codes of exp_avg_sq.
    pub vq: Operand<'a>,
    /// (2 ceil(n / 2048)) f32: the absmax of m per block, then of v.
    pub scales: Operand<'a>,
}

/// One 8-bit Adam / AdamW update of `n` values in place (optim8bit.wgsl:adam8bit, one workgroup
/// per block of [`Q8_BLOCK`] values, 8 values per invocation): dequantise the moments, update in
/// f32, requantise. The format, code books and rounding are
/// [`crate::reference::optim::adam8bit`]'s, its CPU twin.
pub fn adam8bit(
    gpu: &Gpu,
    h: &AdamStep,
    n: usize,
    p: Operand<'_>,    // (n) read-write
    grad: Operand<'_>, // (n)
    state: Q8State<'_>,
    code: &GpuBuffer, // (512) the code books of `reference::optim::q8_code`
) -> Result<()> {
    let Q8State { mq, vq, scales } = state;
    let key = KernelKey::new("optim8bit.wgsl", "adam8bit").with("DECOUPLED", h.decoupled as u32);
    let (words, blocks) = (q8_words(n), q8_blocks(n));
    let table = Operand::whole(code);
    let spans = [
        ("param", &p, n),
        ("grad", &grad, n),
        ("exp_avg codes", &mq, words),
        ("exp_avg_sq codes", &vq, words),
        ("block scales", &scales, 2 * blocks),
        ("code book", &table, 2 * Q8_CODES),
    ];
    check_sized(&key.label(), &spans)?;
    if n == 0 {
        return Ok(());
    }
    let params = Adam8bitParams {
        a: h.params(n, [p.offset, grad.offset, mq.offset, vq.offset]),
        s_off: scales.offset as u32,
        ..Default::default()
    };
    let bufs: Vec<&GpuBuffer> = spans.iter().map(|(_, s, _)| s.buf).collect();
    gpu.dispatch(&key, &params, &bufs, grid_1d(blocks * WG as usize, WG));
    Ok(())
}

/// Unscale one gradient of `n` values in place, `g *= 1 / scale`, and set the scaler's
/// found_inf word (state word 0) when a result is inf or NaN (grad_scale.wgsl:unscale).
pub fn unscale(
    gpu: &Gpu,
    n: usize,
    grad: Operand<'_>, // (n) read-write f32
    scale: &GpuBuffer, // (1) f32
    state: &GpuBuffer, // (SCALER_WORDS) u32, read-write
) -> Result<()> {
    let key = KernelKey::new("grad_scale.wgsl", "unscale");
    let (sc, st) = (Operand::whole(scale), Operand::whole(state));
    let spans = [
        ("grad", &grad, n),
        ("scale", &sc, 1),
        ("state", &st, SCALER_WORDS),
    ];
    check_sized(&key.label(), &spans)?;
    if n > 0 {
        let params = ScaleParams {
            n: n as u32,
            g_off: grad.offset as u32,
            ..Default::default()
        };
        gpu.dispatch(&key, &params, &[grad.buf, scale, state], grid_1d(n, WG));
    }
    Ok(())
}

/// After a step: back the scale off on overflow (and count the skipped step), or count a good
/// step and grow the scale every `u.interval` of them; clear found_inf (grad_scale.wgsl:update,
/// one invocation).
pub fn update_scale(
    gpu: &Gpu,
    u: &ScaleUpdate,
    scale: &GpuBuffer, // (1) f32, read-write
    state: &GpuBuffer, // (SCALER_WORDS) u32, read-write
) -> Result<()> {
    let key = KernelKey::new("grad_scale.wgsl", "update");
    let (sc, st) = (Operand::whole(scale), Operand::whole(state));
    check_sized(
        &key.label(),
        &[("scale", &sc, 1), ("state", &st, SCALER_WORDS)],
    )?;
    let params = ScaleParams {
        interval: u.interval.max(1),
        growth: u.growth,
        backoff: u.backoff,
        ..Default::default()
    };
    gpu.dispatch(&key, &params, &[scale, state], [1, 1, 1]);
    Ok(())
}

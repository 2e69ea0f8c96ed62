//! The NF4 kernel configurations: which pass ([`Nf4Pass`]) and which rung with which
//! specialisation ([`Nf4Config`]); labels (the tuner's cache entries), candidates, the loop-limit
//! chunk and the kernel key of each.

use super::{BLOCK_TM_MAX, FORWARD_BLOCK, GRAD_BLOCK, K_CHUNK, Nf4Compute, WG};
use crate::error::{KernelError, Result};
use crate::gpu::Gpu;
use crate::launch::matmul::{MatLayout, MatmulDims};
use crate::pipeline::KernelKey;
use crate::reference::nf4::BLOCK;
use crate::shaders::Elem;

/// Which pass of the NF4 linear layer a kernel computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Nf4Pass {
    /// `y (M, out) = x (M, in) @ W^T + bias`.
    Forward,
    /// `dx (M, in) = dy (M, out) @ W`.
    GradInput,
}

impl Nf4Pass {
    /// `"nf4"` / `"nf4_grad"`, the kernel part of tuning keys.
    pub fn name(self) -> &'static str {
        match self {
            Nf4Pass::Forward => "nf4",
            Nf4Pass::GradInput => "nf4_grad",
        }
    }

    /// The dense product this pass equals once W (out, in) is dequantised to f32: its dims and
    /// W's layout, the input (M, K) being contiguous. Forward: x (M, in) @ W^T, W seen
    /// transposed; grad: dy (M, out) @ W. The input has `M * dims.k` elements, the output
    /// `M * dims.n`.
    pub fn dense(self, m: usize, out_f: usize, in_f: usize) -> (MatmulDims, MatLayout) {
        let (n, k, w) = match self {
            Nf4Pass::Forward => (out_f, in_f, MatLayout::transposed(in_f, out_f)),
            Nf4Pass::GradInput => (in_f, out_f, MatLayout::contiguous(out_f, in_f)),
        };
        (MatmulDims { batch: 1, m, n, k }, w)
    }
}

/// One runnable NF4 kernel configuration: a rung and its specialisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Nf4Config {
    /// `nf4/simple.wgsl` with `elem` f32 or f16 (`f16`): any `in`.
    Simple {
        /// f16 compute (needs `SHADER_F16`).
        f16: bool,
    },
    /// `nf4/block.wgsl` (f32): needs `in % 64 == 0` (and `x_offset % 4 == 0` forward).
    Block {
        /// Rows of x / dy per invocation, 1 ..= 16.
        tm: u32,
        /// Grad-input: packed words (8 columns each) per invocation, 1 or 2 (1 forward).
        tw: u32,
        /// Code-book lookup by a select tree instead of a private-array read.
        select: bool,
    },
    /// `matmul_nf4_tile` in `nf4/block.wgsl` (f32, forward only): the workgroup decodes each
    /// 64-value block of its 32 rows of W once into workgroup memory (two barriers per block)
    /// and every invocation multiplies `tm` rows out of it. Needs what `Block` needs.
    Tile {
        /// Rows of x per invocation, 1 ..= 16.
        tm: u32,
        /// Code-book lookup by a select tree.
        select: bool,
    },
}

impl Nf4Config {
    /// The untuned forward where the block rung applies: 8 rows, select-tree lookups (the
    /// fastest forward measured on lavapipe).
    pub const DEFAULT_BLOCK: Nf4Config = Nf4Config::Block {
        tm: 8,
        tw: 1,
        select: true,
    };
    /// The untuned input gradient where the block rung applies: 4 rows x 16 columns, select
    /// tree (the fastest measured on lavapipe).
    pub const DEFAULT_BLOCK_GRAD: Nf4Config = Nf4Config::Block {
        tm: 4,
        tw: 2,
        select: true,
    };

    /// The untuned choice for `pass` with `in` features, x / dy at element `offset`, `compute`
    /// (`Auto` = f32).
    pub fn default_for(compute: Nf4Compute, in_f: usize, offset: usize, pass: Nf4Pass) -> Self {
        if compute == Nf4Compute::F16 {
            return Nf4Config::Simple { f16: true };
        }
        let d = match pass {
            Nf4Pass::Forward => Self::DEFAULT_BLOCK,
            Nf4Pass::GradInput => Self::DEFAULT_BLOCK_GRAD,
        };
        if d.applies(pass, in_f, offset) {
            d
        } else {
            Nf4Config::Simple { f16: false }
        }
    }

    /// Every configuration the tuner tries for `pass` (f16 ones only where `gpu` has
    /// `SHADER_F16`); the caller keeps those that [`Nf4Config::applies`].
    pub fn candidates(gpu: &Gpu, pass: Nf4Pass) -> Vec<Self> {
        let mut v = Self::every(pass);
        v.retain(|c| !c.is_f16() || gpu.has_f16());
        v
    }

    /// Every configuration for `pass` on any adapter (f16 ones included), in the tuner's order.
    pub fn every(pass: Nf4Pass) -> Vec<Self> {
        let mut v = vec![
            Nf4Config::Simple { f16: false },
            Nf4Config::Simple { f16: true },
        ];
        // Rows of 16 spill registers in the input gradient (4 accumulators per row).
        let (tms, tws): (&[u32], &[u32]) = match pass {
            Nf4Pass::Forward => (&[4, 8, 16], &[1]),
            Nf4Pass::GradInput => (&[4, 8], &[1, 2]),
        };
        for &tm in tms {
            for &tw in tws {
                for select in [false, true] {
                    v.push(Nf4Config::Block { tm, tw, select });
                }
            }
        }
        if pass == Nf4Pass::Forward {
            v.extend([true, false].map(|select| Nf4Config::Tile { tm: 8, select }));
        }
        v
    }

    /// True when this configuration computes with f16 products.
    pub fn is_f16(&self) -> bool {
        matches!(self, Nf4Config::Simple { f16: true })
    }

    /// Whether it can run `pass` with `in` features and x / dy at element `offset`.
    pub fn applies(&self, pass: Nf4Pass, in_f: usize, offset: usize) -> bool {
        match self {
            Nf4Config::Simple { .. } => true,
            Nf4Config::Block { .. } => {
                in_f.is_multiple_of(BLOCK)
                    && (pass == Nf4Pass::GradInput || offset.is_multiple_of(4))
            }
            Nf4Config::Tile { .. } => {
                pass == Nf4Pass::Forward && in_f.is_multiple_of(BLOCK) && offset.is_multiple_of(4)
            }
        }
    }

    /// A short name: `simple-f32`, `simple-f16`, `block-tm8-tw1-lut`, `block-tm16-tw2-sel`.
    pub fn label(&self) -> String {
        match *self {
            Nf4Config::Simple { f16 } => format!("simple-{}", if f16 { "f16" } else { "f32" }),
            Nf4Config::Block { tm, tw, select } => {
                format!("block-tm{tm}-tw{tw}-{}", if select { "sel" } else { "lut" })
            }
            Nf4Config::Tile { tm, select } => {
                format!("tile-tm{tm}-{}", if select { "sel" } else { "lut" })
            }
        }
    }

    /// Read a [`Nf4Config::label`] back (`None` if it is not one this build knows).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "simple-f32" => return Some(Nf4Config::Simple { f16: false }),
            "simple-f16" => return Some(Nf4Config::Simple { f16: true }),
            _ => {}
        }
        if let Some(t) = s.strip_prefix("tile-tm") {
            let (tm, lookup) = t.split_once('-')?;
            let tm: u32 = tm.parse().ok()?;
            let select = match lookup {
                "lut" => false,
                "sel" => true,
                _ => return None,
            };
            return (1..=BLOCK_TM_MAX)
                .contains(&tm)
                .then_some(Nf4Config::Tile { tm, select });
        }
        let mut p = s.strip_prefix("block-tm")?.split('-');
        let tm: u32 = p.next()?.parse().ok()?;
        let tw: u32 = p.next()?.strip_prefix("tw")?.parse().ok()?;
        let select = match p.next()? {
            "lut" => false,
            "sel" => true,
            _ => return None,
        };
        let ok = p.next().is_none() && (1..=BLOCK_TM_MAX).contains(&tm) && (tw == 1 || tw == 2);
        ok.then_some(Nf4Config::Block { tm, tw, select })
    }

    /// Longest chunk of the reduction one dispatch may cover for `pass`: a multiple of 64 that
    /// keeps an invocation under lavapipe's 65,535 loop iterations even when the row loops are
    /// not unrolled (forward: 9 + 8 (TM + 1) per 64 values, tile 21 + 16 TM; grad-input: TM + 2
    /// per step).
    pub fn chunk(&self, pass: Nf4Pass) -> usize {
        const BUDGET: usize = 60_000;
        match (*self, pass) {
            (Nf4Config::Simple { .. }, _) => K_CHUNK,
            (Nf4Config::Block { tm, .. }, Nf4Pass::Forward) => {
                let per_block = 9 + 8 * (tm as usize + 1);
                (BUDGET / per_block * BLOCK).min(K_CHUNK)
            }
            (Nf4Config::Block { tm, .. }, Nf4Pass::GradInput) => {
                (BUDGET / (tm as usize + 2) / BLOCK * BLOCK).min(K_CHUNK)
            }
            (Nf4Config::Tile { tm, .. }, _) => {
                (BUDGET / (21 + 16 * tm as usize) * BLOCK).min(K_CHUNK)
            }
        }
    }

    /// The kernel key of `pass`. `aligned`: the simple rung's whole-word path (`ALIGNED`), or
    /// the block rung's vec4 reads of dy in the input gradient (`DY4`).
    pub fn key(&self, pass: Nf4Pass, aligned: bool) -> KernelKey {
        match *self {
            Nf4Config::Simple { f16 } => {
                let elem = if f16 { Elem::F16 } else { Elem::F32 };
                let entry = match pass {
                    Nf4Pass::Forward => "matmul_nf4",
                    Nf4Pass::GradInput => "matmul_nf4_grad_input",
                };
                KernelKey::new("nf4/simple.wgsl", entry)
                    .typed("elem", elem)
                    .with("WG_X", WG.0)
                    .with("WG_Y", WG.1)
                    .with("ALIGNED", u32::from(aligned))
            }
            Nf4Config::Block { tm, tw, select } => {
                let entry = match pass {
                    Nf4Pass::Forward => "matmul_nf4_block",
                    Nf4Pass::GradInput => "matmul_nf4_grad_input_block",
                };
                KernelKey::new("nf4/block.wgsl", entry)
                    .with("WG_X", WG.0)
                    .with("WG_Y", WG.1)
                    .with("TM", tm)
                    .with("TW", if pass == Nf4Pass::Forward { 1 } else { tw })
                    .with("LUT", u32::from(select))
                    .with("DY4", u32::from(aligned && pass == Nf4Pass::GradInput))
            }
            // Forward only (`applies` refuses the input gradient); the tile is 8 x 4 columns.
            Nf4Config::Tile { tm, select } => KernelKey::new("nf4/block.wgsl", "matmul_nf4_tile")
                .with("WG_X", 8)
                .with("WG_Y", WG.1)
                .with("TM", tm)
                .with("TW", 1)
                .with("LUT", u32::from(select))
                .with("DY4", 0),
        }
    }

    /// Outputs per invocation (rows, columns) for `pass`.
    pub(super) fn block(&self, pass: Nf4Pass) -> (u32, u32) {
        match (*self, pass) {
            (Nf4Config::Simple { .. }, Nf4Pass::Forward) => FORWARD_BLOCK,
            (Nf4Config::Simple { .. }, Nf4Pass::GradInput) => GRAD_BLOCK,
            (Nf4Config::Block { tm, .. }, Nf4Pass::Forward) => (tm, 4),
            (Nf4Config::Block { tm, tw, .. }, Nf4Pass::GradInput) => (tm, 8 * tw),
            (Nf4Config::Tile { tm, .. }, _) => (tm, 4),
        }
    }

    pub(super) fn check(
        &self,
        gpu: &Gpu,
        pass: Nf4Pass,
        in_f: usize,
        offset: usize,
        key: &KernelKey,
    ) -> Result<()> {
        let (tm, tw) = match *self {
            Nf4Config::Simple { .. } => (1, 1),
            Nf4Config::Block { tm, tw, .. } => (tm, tw),
            Nf4Config::Tile { tm, .. } => (tm, 1),
        };
        if !(1..=BLOCK_TM_MAX).contains(&tm) || !(tw == 1 || tw == 2) {
            return Err(KernelError::launch(
                key,
                format!("{}: TM must be 1..=16, TW 1 or 2", self.label()),
            ));
        }
        if !self.applies(pass, in_f, offset) {
            return Err(KernelError::launch(
                key,
                format!(
                    "{} needs in % 64 == 0 (and x offset % 4 == 0), got in = {in_f}, offset {offset}",
                    self.label()
                ),
            ));
        }
        if self.is_f16() && !gpu.has_f16() {
            return Err(KernelError::launch(
                key,
                format!("{} lacks the SHADER_F16 feature", gpu.info().name),
            ));
        }
        Ok(())
    }
}

//! The rungs of the matmul ladder ([`MatmulVariant`]) and their tile configurations
//! ([`MatmulConfig`]), the search space of the autotuner.

use super::{
    COOP_TILE, NAIVE_WG, REGBLOCK_BLOCK, REGBLOCK_WG, SUBGROUP_WG, TILE, VEC4_BLOCK, VEC4_WG,
};
use crate::gpu::Gpu;
use crate::pipeline::KernelKey;
use crate::shaders::Elem;

/// Which rung of the matmul ladder runs. All give the same result up to summation order (and, for
/// the f16 rungs, the rounding of the operands to f16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MatmulVariant {
    /// `matmul/naive.wgsl`: one invocation per output, dot product from global memory.
    Naive,
    /// `matmul/tiled.wgsl`: `TILE x TILE` tiles of A and B staged in workgroup memory.
    Tiled,
    /// `matmul/regblock.wgsl`: a 4 x 4 output block per invocation in registers, barrier-free.
    RegBlock,
    /// `matmul/vec4.wgsl`: a 16 x 16 output block per invocation as mat4x4 accumulators, operands
    /// read as vec4 along a contiguous, 16-byte aligned dim (element by element otherwise).
    ///
    /// The default: fastest measured on lavapipe (llvmpipe, 2 cores) at 128..1024 and batched;
    /// see `benches/kernels.rs` for the numbers behind the choice.
    #[default]
    Vec4,
    /// `matmul/subgroup.wgsl`: a 4 x 4 block per invocation with the A values shared across the
    /// subgroup by `subgroupShuffle` instead of loaded per invocation. Needs `SUBGROUP`.
    Subgroup,
    /// `matmul/regblock.wgsl` with `elem = f16`: f16 operands (f16 buffers), f32 accumulation
    /// and f32 output, 4 x 4 register blocks. Needs `SHADER_F16`.
    F16,
    /// `matmul/coop.wgsl`: f16 operands through 16 x 16 cooperative matrices with an f32
    /// accumulator, f32 output. Needs `SHADER_F16` and wgpu's `EXPERIMENTAL_COOPERATIVE_MATRIX`
    /// with the 16x16x16 f16 -> f32 shape ([`Gpu::has_coop_matrix_f16`]).
    ///
    /// Vulkan and Metal only: naga has no HLSL path for cooperative matrices, so this rung can
    /// never run on DX12 (wgpu's DX12 backend does not report the feature, and
    /// [`available`](MatmulVariant::available) refuses it there). `kernels/tests/backends.rs`
    /// asserts that this is the one shader without an HLSL translation.
    Coop,
}

impl MatmulVariant {
    /// The rungs every adapter runs, f32 operands, in ladder order.
    pub const ALL: [MatmulVariant; 4] = [Self::Naive, Self::Tiled, Self::RegBlock, Self::Vec4];

    /// Every rung, in ladder order, including those that need optional features.
    pub const LADDER: [MatmulVariant; 7] = [
        Self::Naive,
        Self::Tiled,
        Self::RegBlock,
        Self::Vec4,
        Self::Subgroup,
        Self::F16,
        Self::Coop,
    ];

    /// Short name, as used in benchmark ids and the tuning cache.
    pub fn name(self) -> &'static str {
        match self {
            Self::Naive => "naive",
            Self::Tiled => "tiled",
            Self::RegBlock => "regblock",
            Self::Vec4 => "vec4",
            Self::Subgroup => "subgroup",
            Self::F16 => "f16",
            Self::Coop => "coop",
        }
    }

    /// The rung called `name` (see [`MatmulVariant::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::LADDER.into_iter().find(|v| v.name() == name)
    }

    /// True when A and B are f16 buffers (the f16 and coop rungs); the others read f32.
    pub fn f16_operands(self) -> bool {
        matches!(self, Self::F16 | Self::Coop)
    }

    /// `Ok` when `gpu` can run this rung, else the reason it cannot.
    pub fn available(self, gpu: &Gpu) -> std::result::Result<(), String> {
        let adapter = &gpu.info().name;
        match self {
            Self::Subgroup if !gpu.has_subgroups() => {
                Err(format!("{adapter} lacks the SUBGROUP feature"))
            }
            Self::Subgroup if gpu.info().subgroup_max_size > SUBGROUP_WG => Err(format!(
                "{adapter} has subgroups of up to {} invocations, more than the rung's \
                 workgroups of {SUBGROUP_WG}",
                gpu.info().subgroup_max_size
            )),
            Self::F16 if !gpu.has_f16() => Err(format!("{adapter} lacks the SHADER_F16 feature")),
            // No DX12 adapter passes this: coop.wgsl has no HLSL translation (see `Coop`).
            Self::Coop if !gpu.has_coop_matrix_f16() => Err(format!(
                "{adapter} does not report EXPERIMENTAL_COOPERATIVE_MATRIX with 16x16x16 f16 \
                 operands and f32 accumulators"
            )),
            _ => Ok(()),
        }
    }

    /// The kernel key of the rung's default tile configuration, with every specialisation
    /// constant except the vec4 rung's operand modes (see [`vec4_modes`](super::vec4_modes)).
    pub fn key(self) -> KernelKey {
        MatmulConfig::default_for(self).key()
    }

    /// Outputs covered by one workgroup of the default configuration, (rows, columns).
    pub fn workgroup_tile(self) -> (usize, usize) {
        MatmulConfig::default_for(self).workgroup_tile()
    }
}

/// One rung with one tile configuration: the unit the autotuner ([`crate::tune`]) chooses.
///
/// Written as `variant:WGXxWGY` plus `:bmR` for vec4's rows per invocation, e.g. `vec4:8x4:bm16`
/// (see [`MatmulConfig::label`] and [`MatmulConfig::parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatmulConfig {
    /// The rung.
    pub variant: MatmulVariant,
    /// Workgroup size (x along N, y along M). Tiled: x = y = `TILE`; subgroup: y = 1 and x a
    /// multiple of the subgroup size; coop: x = the subgroup size (set by the launcher), y = 1.
    pub wg: (u32, u32),
    /// Rows of C per invocation: 16, 8 or 4 for vec4 (its `BM` override); fixed by the shader
    /// for the other rungs (1 for naive and tiled, 4 for regblock, subgroup, f16; 16 for coop).
    pub rows: u32,
}

/// A rung alone means its default configuration ([`MatmulConfig::default_for`]).
impl From<MatmulVariant> for MatmulConfig {
    fn from(variant: MatmulVariant) -> Self {
        MatmulConfig::default_for(variant)
    }
}

impl MatmulConfig {
    /// The configuration the rung runs with when nothing was tuned.
    pub fn default_for(variant: MatmulVariant) -> Self {
        let (wg, rows) = match variant {
            MatmulVariant::Naive => (NAIVE_WG, 1),
            MatmulVariant::Tiled => ((TILE, TILE), 1),
            MatmulVariant::RegBlock => (REGBLOCK_WG, REGBLOCK_BLOCK.0),
            MatmulVariant::Vec4 => (VEC4_WG, VEC4_BLOCK.0),
            MatmulVariant::Subgroup => ((SUBGROUP_WG, 1), REGBLOCK_BLOCK.0),
            MatmulVariant::F16 => (REGBLOCK_WG, REGBLOCK_BLOCK.0),
            MatmulVariant::Coop => ((32, 1), COOP_TILE),
        };
        MatmulConfig { variant, wg, rows }
    }

    /// The tile configurations the autotuner tries for `variant` (the default first).
    pub fn candidates(variant: MatmulVariant) -> Vec<Self> {
        let d = Self::default_for(variant);
        let with = |wg: (u32, u32), rows: u32| MatmulConfig { variant, wg, rows };
        let mut v = vec![d];
        match variant {
            MatmulVariant::Naive => v.push(with((8, 8), 1)),
            MatmulVariant::Tiled => v.push(with((8, 8), 1)),
            MatmulVariant::RegBlock | MatmulVariant::F16 => {
                v.extend([with((8, 8), 4), with((32, 4), 4), with((8, 32), 4)])
            }
            MatmulVariant::Vec4 => v.extend([
                with((4, 4), 16),
                with((8, 8), 16),
                with((16, 2), 16),
                with((8, 4), 8),
                with((8, 8), 8),
                with((16, 4), 4),
            ]),
            MatmulVariant::Subgroup => v.extend([with((32, 1), 4), with((128, 1), 4)]),
            MatmulVariant::Coop => {}
        }
        v
    }

    /// Short text form, e.g. `vec4:8x4:bm16` or `regblock:16x16`.
    pub fn label(&self) -> String {
        let base = format!("{}:{}x{}", self.variant.name(), self.wg.0, self.wg.1);
        if self.variant == MatmulVariant::Vec4 {
            format!("{base}:bm{}", self.rows)
        } else {
            base
        }
    }

    /// Read a [`MatmulConfig::label`] back (`None` if it is not one this build knows).
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split(':');
        let variant = MatmulVariant::from_name(parts.next()?)?;
        let (x, y) = parts.next()?.split_once('x')?;
        let wg = (x.parse().ok()?, y.parse().ok()?);
        let mut c = MatmulConfig {
            wg,
            ..Self::default_for(variant)
        };
        if let Some(r) = parts.next() {
            c.rows = r.strip_prefix("bm")?.parse().ok()?;
        }
        (parts.next().is_none() && c.check().is_ok()).then_some(c)
    }

    /// `Err` with the reason when the configuration is not one the shaders support.
    pub fn check(&self) -> std::result::Result<(), String> {
        let d = Self::default_for(self.variant);
        let (x, y) = self.wg;
        let ok = x >= 1
            && y >= 1
            && x * y <= 256
            && match self.variant {
                MatmulVariant::Tiled => x == y && x <= 16,
                MatmulVariant::Vec4 => matches!(self.rows, 4 | 8 | 16),
                MatmulVariant::Subgroup | MatmulVariant::Coop => y == 1 && self.rows == d.rows,
                _ => self.rows == d.rows,
            };
        if ok {
            Ok(())
        } else {
            Err(format!("unsupported matmul configuration {}", self.label()))
        }
    }

    /// The kernel key, with every specialisation constant except the vec4 operand modes.
    pub fn key(&self) -> KernelKey {
        let (x, y) = self.wg;
        match self.variant {
            MatmulVariant::Naive => KernelKey::new("matmul/naive.wgsl", "main")
                .with("WG_X", x)
                .with("WG_Y", y),
            MatmulVariant::Tiled => KernelKey::new("matmul/tiled.wgsl", "main").with("TILE", x),
            MatmulVariant::RegBlock => KernelKey::new("matmul/regblock.wgsl", "main")
                .with("WG_X", x)
                .with("WG_Y", y),
            MatmulVariant::Vec4 => {
                let k = KernelKey::new("matmul/vec4.wgsl", "main")
                    .with("WG_X", x)
                    .with("WG_Y", y);
                if self.rows == VEC4_BLOCK.0 {
                    k
                } else {
                    k.with("BM", self.rows)
                }
            }
            MatmulVariant::Subgroup => KernelKey::new("matmul/subgroup.wgsl", "main").with("WG", x),
            MatmulVariant::F16 => KernelKey::new("matmul/regblock.wgsl", "main")
                .typed("elem", Elem::F16)
                .with("WG_X", x)
                .with("WG_Y", y),
            MatmulVariant::Coop => KernelKey::new("matmul/coop.wgsl", "main").with("WG", x),
        }
    }

    /// Outputs covered by one workgroup, (rows, columns).
    pub fn workgroup_tile(&self) -> (usize, usize) {
        let (x, y) = self.wg;
        let (r, c) = match self.variant {
            MatmulVariant::Naive | MatmulVariant::Tiled => (y, x),
            MatmulVariant::RegBlock | MatmulVariant::F16 => {
                (y * REGBLOCK_BLOCK.0, x * REGBLOCK_BLOCK.1)
            }
            MatmulVariant::Vec4 => (y * self.rows, x * VEC4_BLOCK.1),
            MatmulVariant::Subgroup => (REGBLOCK_BLOCK.0, x * REGBLOCK_BLOCK.1),
            MatmulVariant::Coop => (COOP_TILE, COOP_TILE),
        };
        (r as usize, c as usize)
    }
}

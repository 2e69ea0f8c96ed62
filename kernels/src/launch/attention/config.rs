//! The rungs of the attention ladder ([`AttnVariant`]), the tiled rung's tile sizes
//! ([`AttnTiles`]) and a rung with its tiles ([`AttnConfig`]: what the launchers run and the
//! tuner stores, with its text form and the tuner's candidates).

use crate::gpu::Gpu;

/// Which kernels run, forward and backward (the rungs of the ladder; all tested).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AttnVariant {
    /// The tuned choice for this adapter and shape bucket, else
    /// [`crate::tune::attention_default`] (`Panel` when Tq >= 16, else `Block`) where the vec4
    /// kernels apply (D % 4 == 0, 16-byte aligned q, k, v), else `Row`. The op layer resolves it
    /// with [`crate::tune::attention_config`]; a launcher given `Auto` runs `Block`.
    #[default]
    Auto,
    /// `forward.wgsl`, `backward.wgsl`: one invocation per output row, scalar loads; any D up
    /// to [`MAX_D`](super::MAX_D).
    Row,
    /// `forward_block.wgsl`, `backward_block.wgsl`: 4 output rows per invocation, 4 rows of the
    /// other side per step, vec4 loads. Falls back to `Row` when D or an offset is not a
    /// multiple of 4.
    Block,
    /// `forward_tiled.wgsl`, `backward_tiled.wgsl`: flash-attention tiles of the other side
    /// streamed through workgroup memory ([`AttnTiles::DEFAULT`] here; [`forward`](super::forward) takes
    /// others). Falls back like `Block`, and to `Block` when no tile fits the adapter's
    /// workgroup memory.
    Tiled,
    /// `forward_panel.wgsl`, `backward_panel.wgsl`: 16 output rows per invocation, 32 (forward)
    /// or 16 (backward) rows of the other side per step, the score blocks in registers and the
    /// running output / gradients in their output buffers (nothing indexed by a loop variable).
    /// Falls back like `Block`.
    Panel,
}

impl AttnVariant {
    /// Every variant, for tests and benchmarks.
    pub const ALL: [AttnVariant; 5] = [
        AttnVariant::Auto,
        AttnVariant::Row,
        AttnVariant::Block,
        AttnVariant::Tiled,
        AttnVariant::Panel,
    ];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            AttnVariant::Auto => "auto",
            AttnVariant::Row => "row",
            AttnVariant::Block => "block",
            AttnVariant::Tiled => "tiled",
            AttnVariant::Panel => "panel",
        }
    }
}

/// Tile sizes of the [`AttnVariant::Tiled`] kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttnTiles {
    /// Invocations per workgroup (WGSL `WG`); each owns 4 rows, so a workgroup owns Br = 4 wg.
    pub wg: u32,
    /// Rows of the other side per staged tile (WGSL `BC`, a multiple of 4).
    pub bc: u32,
}

impl AttnTiles {
    /// Br = 64 rows per workgroup, tiles of 64 keys (32 KiB of workgroup memory at D = 64).
    pub const DEFAULT: AttnTiles = AttnTiles { wg: 16, bc: 64 };

    /// The tile sizes the tuner tries.
    pub fn candidates() -> Vec<AttnTiles> {
        let mut v = Vec::new();
        for wg in [8, 16, 32] {
            for bc in [32, 64, 128] {
                v.push(AttnTiles { wg, bc });
            }
        }
        v
    }

    /// vec4 per staged tile (WGSL `TILE`): BC rows of D / 4, plus one (L, delta) vec4 per row in
    /// the dK / dV kernel.
    pub fn tile_vec4s(self, d: usize) -> u32 {
        self.bc * (d as u32 / 4 + 1)
    }

    /// Workgroup memory of the tiled kernels: two staged tiles.
    pub fn shared_bytes(self, d: usize) -> u64 {
        2 * 16 * self.tile_vec4s(d) as u64
    }

    /// These tiles if they fit the adapter (workgroup memory and size), else the largest BC
    /// below that does, else `None`.
    pub fn fitted(self, gpu: &Gpu, d: usize) -> Option<AttnTiles> {
        let l = gpu.limits();
        if self.wg > l.max_compute_invocations_per_workgroup
            || self.wg > l.max_compute_workgroup_size_x
        {
            return None;
        }
        let mut t = self;
        while t.bc >= 4 {
            if t.shared_bytes(d) <= l.max_compute_workgroup_storage_size as u64 {
                return Some(t);
            }
            t.bc /= 2;
        }
        None
    }
}

/// A rung with its tile sizes: what [`forward`](super::forward) / [`backward`](super::backward) run and the tuner stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttnConfig {
    /// The rung (`Auto` is resolved before launching).
    pub variant: AttnVariant,
    /// Tile sizes, used by `Tiled` only.
    pub tiles: AttnTiles,
}

impl AttnConfig {
    /// `variant` with the default tiles.
    pub fn of(variant: AttnVariant) -> AttnConfig {
        AttnConfig {
            variant,
            tiles: AttnTiles::DEFAULT,
        }
    }

    /// Text form: `row`, `block`, `tiled:wg16:bc64`.
    pub fn name(&self) -> String {
        match self.variant {
            AttnVariant::Tiled => format!("tiled:wg{}:bc{}", self.tiles.wg, self.tiles.bc),
            v => v.name().to_string(),
        }
    }

    /// Parse [`AttnConfig::name`]'s form.
    pub fn parse(text: &str) -> Option<AttnConfig> {
        let mut parts = text.split(':');
        let variant = match parts.next()? {
            "row" => AttnVariant::Row,
            "block" => AttnVariant::Block,
            "tiled" => AttnVariant::Tiled,
            "panel" => AttnVariant::Panel,
            _ => return None,
        };
        let mut cfg = AttnConfig::of(variant);
        for part in parts {
            if let Some(x) = part.strip_prefix("wg") {
                cfg.tiles.wg = x.parse().ok()?;
            } else if let Some(x) = part.strip_prefix("bc") {
                cfg.tiles.bc = x.parse().ok()?;
            } else {
                return None;
            }
        }
        let t = cfg.tiles;
        let ok = t.wg > 0 && t.bc >= 4 && t.bc.is_multiple_of(4);
        ok.then_some(cfg)
    }

    /// Every candidate the tuner times: `Row`, `Block` and each `Tiled` tiling.
    pub fn candidates() -> Vec<AttnConfig> {
        let mut v = vec![
            AttnConfig::of(AttnVariant::Row),
            AttnConfig::of(AttnVariant::Block),
            AttnConfig::of(AttnVariant::Panel),
        ];
        v.extend(AttnTiles::candidates().into_iter().map(|tiles| AttnConfig {
            variant: AttnVariant::Tiled,
            tiles,
        }));
        v
    }
}

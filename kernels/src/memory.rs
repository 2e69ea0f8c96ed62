//! The memory ledger's vocabulary: what each pooled buffer is for ([`Category`]), the pool's
//! per-category counters ([`MemoryStats`]), the scoped "current category" ([`scope`]), and
//! device-memory sizes as users write them ([`parse_size`], [`format_bytes`]).
//!
//! **How a buffer gets its category.** Every allocation is tagged when the pool hands it out:
//! with the category of the innermost [`scope`] on this thread if there is one, else with the
//! default the caller passes ([`crate::Gpu::alloc`] passes [`Category::Workspace`]; the root
//! crate passes `Activations` while autograd records). A buffer can be retagged later
//! ([`crate::GpuBuffer::set_category`]: a gradient adopted as a `.grad`, a tensor marked as a
//! parameter); retagging moves its bytes between the counters. Counting is a few relaxed atomic
//! adds per allocation, free or retag: no device sync.

use std::cell::Cell;

/// What a pooled buffer holds, for the memory ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Model parameters and buffers (frozen or trainable, NF4-packed bases too).
    Weights,
    /// Accumulated `.grad` of the parameters.
    Gradients,
    /// Optimizer state: momentum, Adam's moments, step counters.
    OptimizerState,
    /// Tensors made while autograd records a graph (kept for backward until it runs).
    Activations,
    /// Everything else: temporaries of forward, backward and the update, inputs, metrics.
    Workspace,
}

impl Category {
    /// Every category, in ledger order.
    pub const ALL: [Category; 5] = [
        Category::Weights,
        Category::Gradients,
        Category::OptimizerState,
        Category::Activations,
        Category::Workspace,
    ];

    /// The ledger's key (`optimizer_state`), as in `memory.json`.
    pub fn name(self) -> &'static str {
        match self {
            Category::Weights => "weights",
            Category::Gradients => "gradients",
            Category::OptimizerState => "optimizer_state",
            Category::Activations => "activations",
            Category::Workspace => "workspace",
        }
    }

    pub(crate) fn from_index(i: u8) -> Category {
        Category::ALL[(i as usize).min(4)]
    }
}

/// A snapshot of the pool's counters, in bytes of size classes (what the device holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryStats {
    /// Live bytes per category, indexed by `Category as usize`.
    pub live: [u64; 5],
    /// Peak of each category's live bytes since the last peak reset.
    pub peak: [u64; 5],
    /// Live bytes in all (the sum of `live`).
    pub live_total: u64,
    /// Peak of `live_total` since the last peak reset.
    pub peak_total: u64,
    /// Bytes parked in the pool's free lists (held from the driver, not live).
    pub cached: u64,
    /// The cap on live plus cached bytes, if one is set.
    pub cap: Option<u64>,
}

impl MemoryStats {
    /// Live bytes of category `c`.
    pub fn live_of(&self, c: Category) -> u64 {
        self.live[c as usize]
    }

    /// Peak bytes of category `c`.
    pub fn peak_of(&self, c: Category) -> u64 {
        self.peak[c as usize]
    }

    /// `weights 1.00 MiB, gradients ..., workspace ...`: the live bytes by category.
    pub fn live_breakdown(&self) -> String {
        Category::ALL
            .iter()
            .map(|&c| format!("{} {}", c.name(), format_bytes(self.live_of(c))))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

thread_local! {
    static CURRENT: Cell<Option<Category>> = const { Cell::new(None) };
}

/// Restores the previous category when dropped; see [`scope`].
#[must_use = "the category applies until the guard drops"]
pub struct CategoryScope {
    prev: Option<Category>,
}

impl Drop for CategoryScope {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.prev));
    }
}

/// Tag every buffer allocated on this thread as `category` until the guard drops
/// (`let _m = memory::scope(Category::Weights);` around building a model). Scopes nest.
pub fn scope(category: Category) -> CategoryScope {
    CategoryScope {
        prev: CURRENT.with(|c| c.replace(Some(category))),
    }
}

/// The category of the innermost [`scope`] on this thread, if any.
pub fn current() -> Option<Category> {
    CURRENT.with(|c| c.get())
}

/// The smallest cap accepted: 4 KiB (sixteen of the pool's smallest buffers).
pub const MIN_CAP: u64 = 4 << 10;
/// The largest cap accepted: 1 PiB (no device has more; a larger value is a typo).
pub const MAX_CAP: u64 = 1 << 50;

/// Parse a device-memory size: bare bytes (`1048576`) or a number with a unit, decimal (`KB`,
/// `MB`, `GB`, `TB`: powers of 1000) or binary (`KiB`, `MiB`, `GiB`, `TiB`, and the short `K`,
/// `M`, `G`, `T`: powers of 1024); case-insensitive, a space allowed (`1.5 GB`). The result must
/// lie in [`MIN_CAP`, `MAX_CAP`]. The error says what was wrong, without the flag's name.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    let value: f64 = num.parse().map_err(|_| {
        format!("{text:?} is not a size; write bytes or a number with a unit, like 512MiB, 2GiB or 1.5GB")
    })?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024f64.powi(2),
        "g" | "gib" => 1024f64.powi(3),
        "t" | "tib" => 1024f64.powi(4),
        "pb" => 1e15,
        "p" | "pib" => 1024f64.powi(5),
        _ => {
            return Err(format!(
                "{text:?} has the unknown unit {unit:?}; use B, KB, MB, GB, TB (powers of 1000) \
                 or KiB, MiB, GiB, TiB (powers of 1024)"
            ));
        }
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes < MIN_CAP as f64 {
        return Err(format!(
            "{text:?} is below the smallest cap of {} ({MIN_CAP} bytes)",
            format_bytes(MIN_CAP)
        ));
    }
    if bytes > MAX_CAP as f64 {
        return Err(format!(
            "{text:?} is more than {} ({MAX_CAP} bytes); no device has that much memory",
            format_bytes(MAX_CAP)
        ));
    }
    Ok(bytes.round() as u64)
}

/// Bytes in binary units with two decimals (`1.50 GiB`, `300 B`).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2} {}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_decimal_and_binary_units() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("1.5 gb"), Ok(1_500_000_000));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size(" 3 MB "), Ok(3_000_000));
    }

    #[test]
    fn absurd_sizes_are_rejected_with_a_reason() {
        for (bad, says) in [
            ("", "not a size"),
            ("-1GiB", "not a size"),
            ("lots", "not a size"),
            ("1.2.3GB", "not a size"),
            ("2 GiBs", "unknown unit"),
            ("0", "below the smallest cap"),
            ("100", "below the smallest cap"),
            ("2PB", "no device has that much"),
            ("99999999999999999999999", "no device has that much"),
        ] {
            let e = parse_size(bad).expect_err(bad);
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn scopes_nest_and_restore() {
        assert_eq!(current(), None);
        {
            let _w = scope(Category::Weights);
            assert_eq!(current(), Some(Category::Weights));
            {
                let _o = scope(Category::OptimizerState);
                assert_eq!(current(), Some(Category::OptimizerState));
            }
            assert_eq!(current(), Some(Category::Weights));
        }
        assert_eq!(current(), None);
    }

    #[test]
    fn bytes_format_in_binary_units() {
        assert_eq!(format_bytes(300), "300 B");
        assert_eq!(format_bytes(1536), "1.50 KiB");
        assert_eq!(format_bytes(2 << 30), "2.00 GiB");
    }
}

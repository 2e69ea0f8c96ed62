//! [`ConvConfig`]: how one convolution runs. Beside the rung ([`ConvVariant`]) it holds the
//! implicit-GEMM rung's register blocking, in quads of 4 channels per invocation for each pass
//! (the WGSL `QUADS`), and how many splits the weight gradient's reduction over N * OH * OW gets
//! (split-K, both rungs). The autotuner searches these per shape bucket (`kiln_kernels::tune`).
//!
//! A field left `None` takes the shape's heuristic ([`forward_quads`](super::forward_quads) for
//! the channel blocks, [`grad_weight_splits`](super::grad_weight_splits) for the splits); a bare
//! variant name, which is what tuning caches held before these fields existed, parses to exactly
//! that. Every value is legal for every shape: quads are 1..=4 (more than the layer's channels
//! only computes lanes that are thrown away) and the split count is clamped at launch so that no
//! split sums more than [`CHUNK_MAX`] terms (lavapipe's loop limit) and none is empty.
//!
//! ```
//! use kiln_kernels::launch::conv::{Conv2dShape, ConvConfig, ConvVariant};
//! let cfg = ConvConfig::parse("implicit_gemm:fq2:iq1:wq4:s8").unwrap();
//! assert_eq!((cfg.fwd_quads, cfg.splits), (Some(2), Some(8)));
//! assert_eq!(cfg.label(), "implicit_gemm:fq2:iq1:wq4:s8");
//! // An old cache entry: the rung alone, the rest from the heuristic.
//! assert_eq!(ConvConfig::parse("direct"), Some(ConvConfig::of(ConvVariant::Direct)));
//! // (2, 3, 9, 9) -> 6 channels: 2 quads cover the 6 output channels, 1 the 3 input channels.
//! let s = Conv2dShape::new(2, 3, 6, (9, 9), (3, 3));
//! let r = ConvConfig::default().resolved(&s);
//! assert_eq!(r.label(), "implicit_gemm:fq2:iq1:wq2:s1");
//! // 10 splits of a reduction over 2 * 7 * 7 = 98 terms: 10 chunks of 10 terms.
//! let ten = ConvConfig { splits: Some(10), ..ConvConfig::default() };
//! assert_eq!(ten.grad_weight_split(&s), (10, 10));
//! ```

use super::{
    BLOCK, CHUNK_MAX, Conv2dShape, ConvVariant, FORWARD_CHANNELS, MAX_GROUPS, TARGET_INVOCATIONS,
};

/// Most quads of 4 channels per invocation (the WGSL `BC / 4`).
pub const MAX_QUADS: usize = FORWARD_CHANNELS / 4;

/// The rung and its tunable blocking for one convolution (see the module notes). `None` fields
/// take the shape's heuristic; [`ConvConfig::default`] is the implicit-GEMM rung with every
/// heuristic, what an untuned shape runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ConvConfig {
    /// The rung, used by all three passes.
    pub variant: ConvVariant,
    /// Forward: quads of 4 output channels per invocation, 1..=4 (implicit GEMM only).
    pub fwd_quads: Option<usize>,
    /// Grad input: quads of 4 input channels per invocation, 1..=4 (implicit GEMM only).
    pub input_quads: Option<usize>,
    /// Grad weight: quads of 4 output channels per invocation, 1..=4 (implicit GEMM only).
    pub weight_quads: Option<usize>,
    /// Grad weight: splits of the reduction over (N, OH, OW), at least 1 (both rungs; clamped
    /// at launch, see [`ConvConfig::grad_weight_split`]).
    pub splits: Option<usize>,
}

impl From<ConvVariant> for ConvConfig {
    fn from(variant: ConvVariant) -> Self {
        ConvConfig::of(variant)
    }
}

/// Quads of 4 channels that cover `channels`, at most [`MAX_QUADS`].
pub(super) fn quads_for(channels: usize) -> usize {
    channels.div_ceil(4).clamp(1, MAX_QUADS)
}

/// The heuristic split count of the weight gradient with `wq` output-channel quads per
/// implicit-GEMM invocation: enough splits that each sums at most [`CHUNK_MAX`] terms, and
/// more while that keeps at least 256 terms per split, until about [`TARGET_INVOCATIONS`]
/// invocations fill the device. Only for valid shapes.
pub(super) fn heuristic_splits(variant: ConvVariant, wq: usize, s: &Conv2dShape) -> usize {
    let [n, _, oh, ow] = s.output_shape();
    let len = n * oh * ow;
    let per_split = match variant {
        ConvVariant::Direct => s.c_out * s.k_len(),
        ConvVariant::ImplicitGemm => {
            s.groups * (s.c_out / s.groups).div_ceil(4 * wq) * s.k_len().div_ceil(BLOCK)
        }
    };
    let want = TARGET_INVOCATIONS
        .div_ceil(per_split.max(1))
        .min(len.div_ceil(256));
    len.div_ceil(CHUNK_MAX).max(want).max(1)
}

/// `(splits, chunk)` for a reduction of `len` terms with about `requested` splits: at least
/// enough that a chunk is at most [`CHUNK_MAX`] terms, at most one split per term and
/// [`MAX_GROUPS`] (one grid dimension), and no empty split.
pub(super) fn legal_splits(requested: usize, len: usize) -> (usize, usize) {
    let len = len.max(1);
    let splits = requested
        .min(len)
        .min(MAX_GROUPS)
        .max(len.div_ceil(CHUNK_MAX))
        .max(1);
    let chunk = len.div_ceil(splits);
    (len.div_ceil(chunk), chunk)
}

impl ConvConfig {
    /// `variant` with every heuristic.
    pub fn of(variant: ConvVariant) -> Self {
        ConvConfig {
            variant,
            fwd_quads: None,
            input_quads: None,
            weight_quads: None,
            splits: None,
        }
    }

    /// Text form, as stored in the tuning cache: the rung's name, then the fields that are set:
    /// `fq` forward quads, `iq` grad-input quads, `wq` grad-weight quads (implicit GEMM only),
    /// `s` grad-weight splits; e.g. `implicit_gemm:fq4:iq1:wq4:s8`, `direct:s2`, `direct`.
    pub fn label(&self) -> String {
        let mut t = self.variant.name().to_string();
        let fields = [
            ("fq", self.fwd_quads),
            ("iq", self.input_quads),
            ("wq", self.weight_quads),
            ("s", self.splits),
        ];
        for (tag, v) in fields {
            let quads = tag != "s";
            if let (Some(v), false) = (v, quads && self.variant == ConvVariant::Direct) {
                t.push_str(&format!(":{tag}{v}"));
            }
        }
        t
    }

    /// Parse [`ConvConfig::label`]'s form; `None` for anything else, or for values out of range
    /// (see [`ConvConfig::problem`]).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split(':');
        let name = parts.next()?;
        let variant = ConvVariant::ALL.into_iter().find(|v| v.name() == name)?;
        let mut cfg = ConvConfig::of(variant);
        for part in parts {
            let (slot, value) = if let Some(x) = part.strip_prefix("fq") {
                (&mut cfg.fwd_quads, x)
            } else if let Some(x) = part.strip_prefix("iq") {
                (&mut cfg.input_quads, x)
            } else if let Some(x) = part.strip_prefix("wq") {
                (&mut cfg.weight_quads, x)
            } else if let Some(x) = part.strip_prefix('s') {
                (&mut cfg.splits, x)
            } else {
                return None;
            };
            *slot = Some(value.parse().ok()?);
        }
        cfg.problem().is_none().then_some(cfg)
    }

    /// Why this configuration cannot run, or `None`: quads must be 1..=4, splits at least 1.
    pub fn problem(&self) -> Option<String> {
        let quads = [
            ("forward", self.fwd_quads),
            ("grad input", self.input_quads),
            ("grad weight", self.weight_quads),
        ];
        for (pass, q) in quads {
            if let Some(q) = q.filter(|q| !(1..=MAX_QUADS).contains(q)) {
                return Some(format!(
                    "{pass} quads {q} outside 1..={MAX_QUADS} (4 channels each, at most \
                     {FORWARD_CHANNELS} per invocation)"
                ));
            }
        }
        (self.splits == Some(0)).then(|| "grad weight splits must be at least 1".to_string())
    }

    /// This configuration with every `None` replaced by `s`'s heuristic (quads stay `None` for
    /// the direct rung, which has none). The splits are the requested count, before the
    /// launch-time clamp of [`ConvConfig::grad_weight_split`]. Only for valid shapes.
    pub fn resolved(&self, s: &Conv2dShape) -> Self {
        let implicit = self.variant == ConvVariant::ImplicitGemm;
        let fill = |q: Option<usize>, channels: usize| {
            implicit.then(|| q.unwrap_or_else(|| quads_for(channels)))
        };
        let cog = s.c_out / s.groups;
        let weight_quads = fill(self.weight_quads, cog);
        ConvConfig {
            variant: self.variant,
            fwd_quads: fill(self.fwd_quads, cog),
            input_quads: fill(self.input_quads, s.c_in / s.groups),
            weight_quads,
            splits: Some(
                self.splits.unwrap_or_else(|| {
                    heuristic_splits(self.variant, weight_quads.unwrap_or(1), s)
                }),
            ),
        }
    }

    /// The weight gradient's `(splits, chunk)` for shape `s`: the requested (or heuristic) split
    /// count, clamped so that each split sums at most [`CHUNK_MAX`] terms of the N * OH * OW
    /// reduction (a tuned count applied to a larger batch of the same bucket stays legal), at
    /// most `MAX_GROUPS` (65,535) splits, and no split is empty. Only for valid shapes.
    pub fn grad_weight_split(&self, s: &Conv2dShape) -> (usize, usize) {
        let [n, _, oh, ow] = s.output_shape();
        let requested = self.resolved(s).splits.unwrap_or(1);
        legal_splits(requested, n * oh * ow)
    }

    /// The split counts the tuner tries for the weight gradient with `weight_quads`: the
    /// heuristic's, a quarter, half, twice and four times it, each after the launch-time clamp,
    /// without repeats (the heuristic's first). Only for valid shapes.
    pub fn split_candidates(&self, s: &Conv2dShape) -> Vec<usize> {
        let [n, _, oh, ow] = s.output_shape();
        let len = n * oh * ow;
        let base = ConvConfig {
            splits: None,
            ..*self
        }
        .resolved(s)
        .splits
        .unwrap_or(1);
        let mut v: Vec<usize> = Vec::new();
        for want in [base, base / 4, base / 2, base * 2, base * 4] {
            let (splits, _) = legal_splits(want.max(1), len);
            if !v.contains(&splits) {
                v.push(splits);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_bad_ones_are_refused() {
        let cfg = ConvConfig {
            variant: ConvVariant::ImplicitGemm,
            fwd_quads: Some(3),
            input_quads: None,
            weight_quads: Some(1),
            splits: Some(17),
        };
        assert_eq!(cfg.label(), "implicit_gemm:fq3:wq1:s17");
        assert_eq!(ConvConfig::parse(&cfg.label()), Some(cfg));
        assert_eq!(
            ConvConfig::parse("implicit_gemm"),
            Some(ConvConfig::default())
        );
        let direct = ConvConfig::parse("direct:s4").unwrap();
        assert_eq!(
            (direct.variant, direct.splits),
            (ConvVariant::Direct, Some(4))
        );
        for bad in [
            "",
            "regblock",
            "implicit_gemm:fq0",
            "implicit_gemm:fq5",
            "implicit_gemm:s0",
            "implicit_gemm:x3",
            "implicit_gemm:wq",
            "direct:s-1",
        ] {
            assert_eq!(ConvConfig::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn splits_stay_legal_for_any_request() {
        for len in [1, 7, 255, 4096, 4097, 80_000, 1 << 20] {
            for req in [1, 2, 3, 64, 1000, 100_000, usize::MAX / 2] {
                let (splits, chunk) = legal_splits(req, len);
                assert!(chunk <= CHUNK_MAX && splits <= MAX_GROUPS, "{len} {req}");
                assert!(
                    splits * chunk >= len && (splits - 1) * chunk < len,
                    "{len} {req}"
                );
            }
        }
        let s = Conv2dShape::new(64, 6, 10, (100, 100), (3, 3));
        let cands = ConvConfig::default().split_candidates(&s);
        let heuristic = ConvConfig::default().grad_weight_split(&s).0;
        assert_eq!(cands[0], heuristic);
        assert!(cands.len() >= 3, "{cands:?}");
    }
}

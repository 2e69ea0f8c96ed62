//! Autotuning: per adapter, the fastest correct kernel variant for each shape bucket, measured
//! once and cached on disk.
//!
//! For a matmul the candidates are every rung of the ladder this adapter can run
//! ([`MatmulVariant::available`]) times its tile configurations ([`MatmulConfig::candidates`]);
//! f32 operands try the f32 rungs, f16 operands the f16 and cooperative-matrix rungs. For a conv
//! they are the rungs with their channel quads per pass and the weight gradient's split count
//! ([`ConvConfig`](crate::launch::conv::ConvConfig)), searched pass by pass over forward + grad
//! input + grad weight (one training step's worth, since the op uses one rung for all three;
//! see `tune/conv.rs`). Nothing is assumed about the
//! adapter: on lavapipe, where workgroup barriers are costly, the barrier-free rungs win because
//! they measure faster, not because of the adapter's name.
//!
//! Timing uses GPU timestamp queries where the adapter has them ([`crate::profile::Profiler`]:
//! the kernels' own time, without the host's recording and sync latency), else wall time
//! around `Gpu::sync` (submit, then wait; lavapipe has no timestamps). A tiny product with the
//! same specialisation first builds the pipeline (compiling takes tenths of a second on
//! lavapipe and must not count), then one warm-up run; each candidate repeats until
//! ~[`Tuner::budget`] has passed and its best repetition counts. A candidate still 4x slower
//! than the best so far after two runs stops there (one whose warm-up alone took seconds is not
//! repeated). The winner is then checked once against the CPU twin on small random operands
//! of the bucket's layout; one that disagrees is discarded and the next fastest checked.
//!
//! Buckets round M, N and K up to powers of two and keep whether there is a batch and whether A
//! and B are transposed (not contiguous along K and N); the entry key is
//! `kernel/bucket/dtype`, e.g. `matmul/m1024n1024k1024:b1:nn/f32`. Choices are stored as JSON in
//! `tune-<adapter>-<driver>.json` under the user cache directory's `kiln/` folder (or under
//! `$KILN_TUNE_CACHE`: a folder, or a file if it ends in `.json`), and the file records the
//! adapter name and driver version it was measured on; a file for another adapter or driver, or
//! one that does not parse, is ignored with a warning on stderr. Files are written atomically
//! (a temporary file renamed over the old one).
//!
//! Lookups ([`matmul_choice`], [`conv_choice`], [`attention_config`], [`nf4_choice`]) read the
//! file once per process and then cost a map lookup; a shape never tuned gets the default at
//! once, and nothing tunes inside a training step. `KILN_TUNE=0` turns lookups off (defaults
//! everywhere).
//!
//! One layer consults the tuner: the ops of the root crate (`src/ops/`), which pass the chosen
//! configuration to the launchers. The launchers never look it up, so this module sits above
//! [`crate::launch`] (it times the launchers) and no import runs the other way
//! (`kernels/tests/layers.rs` fails on a cycle between modules).
//!
//! ```
//! use kiln_kernels::launch::matmul::{MatLayout, MatmulDims};
//! use kiln_kernels::tune::MatmulBucket;
//! let d = MatmulDims { batch: 1, m: 100, n: 17, k: 1024 };
//! let t = MatLayout::transposed(1024, 17); // B seen through swapped strides
//! let b = MatmulBucket::of(d, MatLayout::contiguous(100, 1024), t);
//! assert_eq!(b.key(), "m128n32k1024:b1:nt");
//! ```

mod cache;
mod conv;
mod measure;
mod nf4;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use cache::loaded;
pub use cache::{Choice, TuneCache, default_path, driver_of};
pub use conv::{conv_choice, verify_conv};
pub use measure::{TuneReport, Tuner, verify_attention, verify_matmul};
pub use nf4::{nf4_bucket, nf4_choice, verify_nf4};

use crate::gpu::Gpu;
use crate::launch::attention::{AttnConfig, AttnShape, AttnVariant};
use crate::launch::conv::Conv2dShape;
use crate::launch::matmul::{MatLayout, MatmulConfig, MatmulDims, MatmulVariant};

/// Environment variable: `0` disables cache lookups (every shape uses the defaults).
pub const ENABLE_ENV: &str = "KILN_TUNE";
/// Environment variable: where the cache lives (a folder, or a file ending in `.json`).
pub const CACHE_ENV: &str = "KILN_TUNE_CACHE";

/// The shape bucket of a matmul: M, N, K rounded up to powers of two, batch > 1, transposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatmulBucket {
    /// M rounded up to a power of two.
    pub m: usize,
    /// N rounded up to a power of two.
    pub n: usize,
    /// K rounded up to a power of two.
    pub k: usize,
    /// More than one product.
    pub batched: bool,
    /// A is not contiguous along K (e.g. a transposed view).
    pub a_t: bool,
    /// B is not contiguous along N.
    pub b_t: bool,
}

impl MatmulBucket {
    /// The bucket of a product of `dims` with operands laid out as `a` (batch, M, K) and `b`
    /// (batch, K, N).
    pub fn of(dims: MatmulDims, a: MatLayout, b: MatLayout) -> Self {
        let p2 = |x: usize| x.max(1).next_power_of_two();
        MatmulBucket {
            m: p2(dims.m),
            n: p2(dims.n),
            k: p2(dims.k),
            batched: dims.batch > 1,
            a_t: a.col_stride != 1 && dims.k > 1,
            b_t: b.col_stride != 1 && dims.n > 1,
        }
    }

    /// Text key, e.g. `m1024n1024k1024:b1:nn` (`b8` = batched, `t` = transposed operand).
    pub fn key(&self) -> String {
        let t = |x: bool| if x { 't' } else { 'n' };
        format!(
            "m{}n{}k{}:b{}:{}{}",
            self.m,
            self.n,
            self.k,
            if self.batched { "8" } else { "1" },
            t(self.a_t),
            t(self.b_t)
        )
    }
}

/// The bucket key of a conv: the layer geometry exactly, N and H, W rounded up to powers of two.
pub fn conv_bucket(s: &Conv2dShape) -> String {
    let p2 = |x: usize| x.max(1).next_power_of_two();
    format!(
        "n{}c{}h{}w{}o{}k{}x{}s{}x{}p{}x{}d{}x{}g{}",
        p2(s.n),
        s.c_in,
        p2(s.h),
        p2(s.w),
        s.c_out,
        s.kh,
        s.kw,
        s.stride.0,
        s.stride.1,
        s.padding.0,
        s.padding.1,
        s.dilation.0,
        s.dilation.1,
        s.groups
    )
}

/// The bucket key of an attention call: T (the longer of Tq, Tk) rounded up to a power of two,
/// D exactly, causal or not, e.g. `t128d32c0`.
pub fn attention_bucket(s: &AttnShape) -> String {
    let t = s.tq.max(s.tk).max(1).next_power_of_two();
    format!("t{t}d{}c{}", s.d, u8::from(s.causal))
}

/// The attention configuration used when nothing was tuned for shape `s`: the panel rung
/// (barrier-free, 16 rows per invocation, forward and backward) when there are at least 16
/// queries per head, else the block rung (4 rows per invocation wastes less on
/// short queries, e.g. one-token decoding). The tiled rung has to win a measurement first.
pub fn attention_default(s: &AttnShape) -> AttnConfig {
    if s.tq >= 16 {
        AttnConfig::of(AttnVariant::Panel)
    } else {
        AttnConfig::of(AttnVariant::Block)
    }
}

/// The attention configuration for shape `s`: the cached choice for its bucket when there is
/// one, else [`attention_default`]. Never tunes.
pub fn attention_choice(gpu: &Gpu, s: &AttnShape) -> AttnConfig {
    record(SeenShape::Attention(*s));
    let key = entry_key("attention", &attention_bucket(s), "f32");
    choose(
        gpu,
        &key,
        AttnConfig::parse,
        attention_default(s),
        AttnConfig::name,
    )
}

/// The cached configuration of entry `key` (parsed by `parse`; `None` rejects it), else
/// `fallback`. While a capture runs, notes which and why, e.g. `cached: vec4:... measured 12.3
/// GFLOP/s (default 8.1) for matmul/m64n128k1024:b1:nn/f32` ([`crate::capture::note_choice`]).
pub(crate) fn choose<T>(
    gpu: &Gpu,
    key: &str,
    parse: impl Fn(&str) -> Option<T>,
    fallback: T,
    name: impl Fn(&T) -> String,
) -> T {
    let enabled = lookups_enabled();
    let cached = enabled.then(|| loaded(gpu)).flatten().and_then(|cache| {
        let c = cache.get(key)?;
        Some((parse(&c.config)?, c.gflops, c.default_gflops))
    });
    let family = match key.split('/').next() {
        Some("conv2d") => "conv",
        Some("attention") => "attention",
        _ => "matmul",
    };
    crate::capture::note_choice(family, || match &cached {
        Some((t, g, d)) => format!(
            "cached: {} measured {g:.1} GFLOP/s (default {d:.1}) for {key}",
            name(t)
        ),
        None if !enabled => format!("default: {} ({ENABLE_ENV}=0)", name(&fallback)),
        None => format!("default: {} (nothing tuned for {key})", name(&fallback)),
    });
    cached.map_or(fallback, |c| c.0)
}

/// The configuration `variant` means for shape `s`: [`attention_choice`] for `Auto`, else the
/// rung with its default tiles. What the op layer passes to the attention launchers.
pub fn attention_config(gpu: &Gpu, s: &AttnShape, variant: AttnVariant) -> AttnConfig {
    match variant {
        AttnVariant::Auto => attention_choice(gpu, s),
        v => AttnConfig::of(v),
    }
}

/// The key of one cache entry: `kernel/bucket/dtype`.
pub fn entry_key(kernel: &str, bucket: &str, dtype: &str) -> String {
    format!("{kernel}/{bucket}/{dtype}")
}

/// True unless `KILN_TUNE=0` (or `off` / `false`).
pub fn lookups_enabled() -> bool {
    !matches!(
        std::env::var(ENABLE_ENV).as_deref().map(str::trim),
        Ok("0" | "off" | "false")
    )
}

/// The dtype tag of matmul operands.
fn dtype_tag(f16: bool) -> &'static str {
    if f16 { "f16" } else { "f32" }
}

/// The configuration to use when nothing was tuned: vec4 for f32 operands, the f16 rung for f16.
pub fn matmul_default(f16: bool) -> MatmulConfig {
    MatmulConfig::default_for(if f16 {
        MatmulVariant::F16
    } else {
        MatmulVariant::Vec4
    })
}

/// A kernel shape seen by a lookup while recording (see [`start_recording`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeenShape {
    /// A matmul: its dims, whether A / B are transposed, whether the operands are f16.
    Matmul {
        /// The product's size.
        dims: MatmulDims,
        /// A not contiguous along K.
        a_t: bool,
        /// B not contiguous along N.
        b_t: bool,
        /// f16 operands.
        f16: bool,
    },
    /// A 2-D convolution.
    Conv(Conv2dShape),
    /// A fused attention call (its sizes, scale and causal flag).
    Attention(AttnShape),
}

impl SeenShape {
    /// The cache entry key this shape is tuned under.
    pub fn key(&self) -> String {
        match *self {
            SeenShape::Matmul {
                dims,
                a_t,
                b_t,
                f16,
            } => {
                let (la, lb) = layouts(dims, a_t, b_t);
                entry_key(
                    "matmul",
                    &MatmulBucket::of(dims, la, lb).key(),
                    dtype_tag(f16),
                )
            }
            SeenShape::Conv(s) => entry_key("conv2d", &conv_bucket(&s), "f32"),
            SeenShape::Attention(s) => entry_key("attention", &attention_bucket(&s), "f32"),
        }
    }
}

static RECORDING: AtomicBool = AtomicBool::new(false);
static SEEN: Mutex<Vec<SeenShape>> = Mutex::new(Vec::new());

/// Start recording the shapes that [`matmul_choice`] and [`conv_choice`] are asked about (one
/// forward and backward pass of a model then lists every kernel shape it runs).
pub fn start_recording() {
    if let Ok(mut v) = SEEN.lock() {
        v.clear();
    }
    RECORDING.store(true, Ordering::SeqCst);
}

/// Stop recording and return the shapes seen, one per cache entry key, in first-seen order.
pub fn stop_recording() -> Vec<SeenShape> {
    RECORDING.store(false, Ordering::SeqCst);
    let seen = SEEN
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default();
    let mut keys = std::collections::HashSet::new();
    seen.into_iter().filter(|s| keys.insert(s.key())).collect()
}

fn record(shape: SeenShape) {
    if RECORDING.load(Ordering::Relaxed) {
        if let Ok(mut v) = SEEN.lock() {
            v.push(shape);
        }
    }
}

/// The configuration for a product of `dims` with these layouts: the cached choice for its
/// bucket when there is one (and it runs here), else [`matmul_default`]. Never tunes.
pub fn matmul_choice(
    gpu: &Gpu,
    dims: MatmulDims,
    a: MatLayout,
    b: MatLayout,
    f16: bool,
) -> MatmulConfig {
    let fallback = matmul_default(f16);
    record(SeenShape::Matmul {
        dims,
        a_t: a.col_stride != 1 && dims.k > 1,
        b_t: b.col_stride != 1 && dims.n > 1,
        f16,
    });
    let key = entry_key(
        "matmul",
        &MatmulBucket::of(dims, a, b).key(),
        dtype_tag(f16),
    );
    let parse = |text: &str| {
        MatmulConfig::parse(text)
            .filter(|c| c.variant.f16_operands() == f16 && c.variant.available(gpu).is_ok())
    };
    choose(gpu, &key, parse, fallback, MatmulConfig::label)
}

/// Layouts of A (batch, M, K) and B (batch, K, N), transposed (stored (K, M) / (N, K)) or not.
fn layouts(d: MatmulDims, a_t: bool, b_t: bool) -> (MatLayout, MatLayout) {
    let a = if a_t {
        MatLayout::transposed(d.m, d.k)
    } else {
        MatLayout::contiguous(d.m, d.k)
    };
    let b = if b_t {
        MatLayout::transposed(d.k, d.n)
    } else {
        MatLayout::contiguous(d.k, d.n)
    };
    (a, b)
}

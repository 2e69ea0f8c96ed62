//! One launcher per WGSL entry point.
//!
//! Each kernel family has a file here with its `#[repr(C)]` params struct (declared with
//! [`kernel_params!`](crate::kernel_params), which also records the field offsets) and its launch
//! functions. A test of the shaders (`kernels/tests/shaders.rs`) compares every struct listed in
//! [`all_params`] with the WGSL struct of the same name, as laid out by naga.
//!
//! A family F has one name everywhere: `launch/F.rs` (or `launch/F/`), `shaders/F.wgsl` (or
//! `shaders/F/`), [`crate::reference`]`::F`, the module `F` of kiln-kernels' test binary
//! (`kernels/tests/kernels/F.rs`) and, where one exists, `src/ops/F.rs`, the root crate's
//! `tests/ops/F.rs` and a bench `F.rs`. Each launcher's doc ends with "See also" lines naming them.
//! Where a family departs from the rule it says so there:
//!
//! | family | launcher | CPU twin | op (`src/`) | bench |
//! |---|---|---|---|---|
//! | matmul | `matmul/` | `matmul` | `ops/matmul.rs`, `ops/linear.rs` | `kernels/benches/matmul.rs` |
//! | conv | `conv.rs`, `conv/` | `conv` | `ops/conv.rs` | `kernels/benches/conv.rs` |
//! | attention | `attention.rs`, `attention/` | `attention` | `ops/attention.rs` | `benches/attention.rs` |
//! | nf4 | `nf4/` | `nf4` | `ops/nf4.rs` | `kernels/benches/nf4.rs` |
//! | elementwise | `elementwise.rs` | `elementwise` | `ops/elementwise/` | `kernels/benches/elementwise.rs` |
//! | reduce | `reduce.rs` | `reduce` | `ops/reduce.rs` | `kernels/benches/elementwise.rs` |
//! | softmax | `softmax.rs` | `softmax` | `ops/softmax.rs` | `kernels/benches/elementwise.rs` |
//! | cross_entropy | `cross_entropy.rs` | `cross_entropy` | `ops/cross_entropy.rs` | none |
//! | norm (LayerNorm, RMSNorm) | `norm.rs` | `norm` | `ops/norm.rs` | `benches/norm.rs` |
//! | batch_norm | `batch_norm.rs` | `batch_norm` | `ops/batch_norm.rs` | none |
//! | pool (max / avg pooling) | `pool.rs` | `pool` | `ops/pool.rs` | none |
//! | index | `index.rs` | `index` | `ops/index.rs` | none |
//! | rnn | `rnn.rs` | `rnn` | `ops/rnn.rs` | `benches/rnn.rs` |
//! | bias_gelu | `bias_gelu.rs` | `bias_gelu` | `ops/bias_gelu.rs` | `benches/transformer.rs` |
//! | dropout | `dropout.rs` | `dropout` | `ops/dropout.rs` | none |
//! | optim (shaders `optim.wgsl`, `optim8bit.wgsl`, `grad_scale.wgsl`: the loss scaler) | `optim.rs` | `optim` | none (`optim/`) | `benches/train_step.rs`, `kiln bench` (`cli/bench/optim.rs`) |
//! | cluster (k-means, DBSCAN) | `cluster.rs` | `cluster` | none (`unsupervised/`) | `benches/cluster.rs` |
//! | itemsets (Apriori support counts) | `itemsets.rs` | `itemsets` | none (`unsupervised/apriori.rs`) | `kernels/benches/itemsets.rs` |
//! | outlier (Isolation Forest, k-NN for LOF) | `outlier.rs` | `outlier` | none (`unsupervised/outlier/`) | `benches/outlier.rs` |
//! | pack16 (f32 <-> packed f16 / bf16 words) | `pack16.rs` | `pack16` | none yet | none |
//! | bench (peak probes) | `bench.rs` | none | none (`cli/bench.rs`) | `kiln bench` |
//!
//! The buffer pool is [`crate::buffer_pool`], a different thing from the pooling family.

pub mod attention;
pub mod batch_norm;
pub mod bench;
pub mod bias_gelu;
pub mod cluster;
pub mod conv;
pub mod cost;
pub mod cross_entropy;
pub mod dropout;
pub mod elementwise;
pub mod index;
pub mod itemsets;
pub mod matmul;
pub mod nf4;
pub mod norm;
pub mod optim;
pub mod outlier;
pub mod pack16;
pub mod pool;
pub mod reduce;
pub mod rnn;
pub mod softmax;

/// A params struct mirrored by a WGSL uniform struct.
pub trait KernelParams: bytemuck::Pod {
    /// File under `shaders/` that declares the WGSL struct.
    const SHADER: &'static str;
    /// Name of the WGSL struct.
    const WGSL_STRUCT: &'static str;
    /// `(field name, byte offset)` in declaration order.
    fn fields() -> Vec<(&'static str, usize)>;
}

/// The layout of one params struct, for the layout test.
#[derive(Debug, Clone)]
pub struct ParamsLayout {
    /// Shader file.
    pub shader: &'static str,
    /// WGSL struct name.
    pub wgsl_struct: &'static str,
    /// Size in bytes of the Rust struct.
    pub size: usize,
    /// Field names and offsets of the Rust struct.
    pub fields: Vec<(&'static str, usize)>,
}

/// Layout of `P`.
pub fn layout_of<P: KernelParams>() -> ParamsLayout {
    ParamsLayout {
        shader: P::SHADER,
        wgsl_struct: P::WGSL_STRUCT,
        size: std::mem::size_of::<P>(),
        fields: P::fields(),
    }
}

/// Every params struct in the crate (a family's new struct is added here).
pub fn all_params() -> Vec<ParamsLayout> {
    vec![
        layout_of::<attention::AttnParams>(),
        layout_of::<batch_norm::BatchNormParams>(),
        layout_of::<bench::FmaParams>(),
        layout_of::<bench::CopyParams>(),
        layout_of::<bias_gelu::BiasGeluParams>(),
        layout_of::<cluster::ClusterParams>(),
        layout_of::<conv::ConvParams>(),
        layout_of::<cross_entropy::CrossEntropyParams>(),
        layout_of::<dropout::RandomParams>(),
        layout_of::<elementwise::ElementwiseParams>(),
        layout_of::<index::IndexParams>(),
        layout_of::<itemsets::ItemsetsParams>(),
        layout_of::<matmul::MatmulParams>(),
        layout_of::<nf4::Nf4Params>(),
        layout_of::<norm::NormParams>(),
        layout_of::<optim::SgdParams>(),
        layout_of::<optim::AdamParams>(),
        layout_of::<optim::Adam8bitParams>(),
        layout_of::<optim::ScaleParams>(),
        layout_of::<outlier::OutlierParams>(),
        layout_of::<pack16::Pack16Params>(),
        layout_of::<pool::PoolParams>(),
        layout_of::<reduce::RowsParams>(),
        layout_of::<rnn::RnnParams>(),
    ]
}

/// Declare a params struct: `#[repr(C)]`, `Pod`, and a [`KernelParams`] impl naming its WGSL twin.
#[macro_export]
macro_rules! kernel_params {
    (
        $(#[$meta:meta])*
        pub struct $name:ident in $shader:literal as $wgsl:literal {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty ),*
        }

        impl $crate::launch::KernelParams for $name {
            const SHADER: &'static str = $shader;
            const WGSL_STRUCT: &'static str = $wgsl;
            fn fields() -> Vec<(&'static str, usize)> {
                vec![$( (stringify!($field), std::mem::offset_of!($name, $field)) ),*]
            }
        }
    };
}

/// Workgroup counts for `n` invocations at `wg_size` per group, split over (x, y) so that x stays
/// within WebGPU's 65,535 per dimension. Kernels rebuild the index with `grid_index`.
pub fn grid_1d(n: usize, wg_size: u32) -> [u32; 3] {
    let groups = n.div_ceil(wg_size as usize).max(1);
    if groups <= 65_535 {
        [groups as u32, 1, 1]
    } else {
        let x = 65_535usize;
        [x as u32, groups.div_ceil(x) as u32, 1]
    }
}

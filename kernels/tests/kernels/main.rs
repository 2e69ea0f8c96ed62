//! kiln-kernels' test suite, one binary: each launcher against its naive CPU twin
//! (`kiln_kernels::reference`) on fresh random inputs at awkward sizes, with stated tolerances,
//! and the autotuner. One module per kernel family, named as the family is named in
//! `kernels/src/launch/` and `kernels/src/reference/`. Tests of the ops, autograd and layers built
//! on these kernels are the root crate's tests/.
//!
//! Run: `cargo test -p kiln-kernels --test kernels` (or `-- matmul::` for one family).

mod common;

mod attention;
mod capture;
mod conv;
mod cost;
mod cross_entropy;
mod elementwise;
mod index;
mod itemsets;
mod matmul;
mod memory;
mod nf4;
mod norm;
mod optim;
mod pack16;
mod pool;
mod reduce;
mod rnn;
mod runtime;
mod softmax;
mod tune;

//! The elementwise family: one op per element (or per broadcast pair of elements), launched
//! through `kiln_kernels::launch::elementwise` (`shaders/elementwise/`: `unary.wgsl`, `binary.wgsl`,
//! `where.wgsl`), CPU twin `kiln_kernels::reference::elementwise`, tests `tests/ops/elementwise.rs`,
//! bench `kernels/benches/elementwise.rs`.
//!
//! | module | ops | shapes |
//! | --- | --- | --- |
//! | `unary` | `y = f(x)`: neg exp log sqrt abs relu gelu silu tanh sigmoid clamp powf affine ... | `x (*) -> y (*)` |
//! | `binary` | `out = a (op) b`: add sub mul div pow maximum minimum, in-place axpy | `a (*A), b (*B) -> out broadcast(A, B)` |
//! | `compare` | eq ne lt le gt ge (1.0 / 0.0 masks), where_cond, masked_fill | broadcast of all operands |
//!
//! All of them are methods of [`crate::Tensor`]; the modules are private.

mod binary;
mod compare;
mod unary;

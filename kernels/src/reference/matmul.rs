//! CPU twin of the matmul kernels (being written).

//! CPU twin of the index kernels (being written).

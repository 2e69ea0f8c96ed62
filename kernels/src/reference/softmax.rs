//! CPU twin of the softmax kernels (being written).

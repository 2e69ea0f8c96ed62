//! kiln's error type. Misuse (shapes, dtypes, files) comes back as an [`Error`] naming the op and
//! the shapes involved, never as a panic.

use crate::dtype::DType;

/// An error from a tensor op, autograd, or the GPU runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Shapes that do not fit the op.
    #[error("{op}: {msg}")]
    Shape {
        /// The op, e.g. `matmul`.
        op: &'static str,
        /// What was wrong, naming the shapes.
        msg: String,
    },
    /// A dtype the op does not take.
    #[error("{op}: expected {expected}, got a tensor of dtype {got:?}")]
    DType {
        /// The op.
        op: &'static str,
        /// What it takes.
        expected: &'static str,
        /// What it got.
        got: DType,
    },
    /// Autograd misuse (backward from a non-scalar, no grad to read, ...).
    #[error("autograd: {0}")]
    Autograd(String),
    /// An argument out of range (a dim, an index, a value).
    #[error("{op}: {msg}")]
    Arg {
        /// The op.
        op: &'static str,
        /// What was wrong.
        msg: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {msg}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        msg: String,
    },
    /// A checkpoint is corrupt, truncated, or does not fit the model.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint {
        /// The checkpoint file.
        path: String,
        /// What is wrong with it.
        msg: String,
    },
    /// A bad setting in a configuration (flag or config file).
    #[error("{0}")]
    Config(String),
    /// Training stopped because the loss diverged.
    #[error("{0}")]
    Diverged(String),
    /// A data file or data setting is wrong (names the file, line and column).
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// A collective operation across ranks or devices failed (a peer died, timed out, or the
    /// ranks disagree about a buffer's length); names the operation and the rank.
    #[error("distributed training: {0}")]
    Distributed(String),
    /// The GPU runtime failed.
    #[error(transparent)]
    Kernel(#[from] kiln_kernels::KernelError),
}

/// kiln's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn shape_err<T>(op: &'static str, msg: impl Into<String>) -> Result<T> {
    Err(Error::Shape {
        op,
        msg: msg.into(),
    })
}

pub(crate) fn io_err(path: &std::path::Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    }
}

pub(crate) fn arg_err<T>(op: &'static str, msg: impl Into<String>) -> Result<T> {
    Err(Error::Arg {
        op,
        msg: msg.into(),
    })
}

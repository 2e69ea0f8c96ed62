//! Errors of the GPU runtime.
//!
//! Everything a user can get wrong (no adapter, a bad `KILN_DEVICE`, a buffer larger than the
//! adapter allows) comes back as a [`KernelError`] with a sentence that says what to do.

/// An error from the GPU runtime or a kernel launcher.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// No adapter could be found at all.
    #[error(
        "no GPU adapter found{detail}. kiln needs a Vulkan, Metal, DX12 or OpenGL driver. \
         On Linux without a GPU install Mesa's software driver: `apt-get install -y mesa-vulkan-drivers` \
         (lavapipe); on macOS Metal is built in; on Windows update the GPU driver"
    )]
    NoAdapter {
        /// Extra context, e.g. which backend filter was in force.
        detail: String,
    },
    /// `KILN_DEVICE` / `KILN_BACKEND` named something that does not exist.
    #[error("{var}={value:?} matches no adapter; available adapters:\n{available}")]
    NoMatchingAdapter {
        /// The environment variable or option that was set.
        var: &'static str,
        /// Its value.
        value: String,
        /// One line per adapter that does exist.
        available: String,
    },
    /// `KILN_BACKEND` is not one of the known names.
    #[error("{var}={value:?} is not a backend; use one of vulkan, metal, dx12, gl")]
    BadBackend {
        /// The variable name.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// The adapter refused to create a device.
    #[error("the adapter {adapter:?} could not create a device: {source}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// wgpu's reason.
        source: wgpu::RequestDeviceError,
    },
    /// A buffer larger than the device allows.
    #[error(
        "{what}: {bytes} bytes exceeds the adapter's limit of {limit} bytes for one storage buffer"
    )]
    TooLarge {
        /// What was being allocated.
        what: String,
        /// Requested size.
        bytes: u64,
        /// The adapter's limit.
        limit: u64,
    },
    /// An allocation would take the pool's live bytes over the device-memory cap.
    #[error(
        "out of memory under the cap: allocating {what} needs {}, but {} of the {} cap are live \
         ({breakdown}). The cap comes from --max-memory or KILN_MAX_MEMORY; lower the batch \
         size or the model's size, or raise the cap (`kiln train --dry-run` predicts the need)",
        crate::memory::format_bytes(*bytes),
        crate::memory::format_bytes(*live),
        crate::memory::format_bytes(*cap)
    )]
    OutOfMemory {
        /// What was being allocated (a tensor's shape and dtype, or a kernel's buffer).
        what: String,
        /// Its size (the pool's size class).
        bytes: u64,
        /// The cap.
        cap: u64,
        /// Live bytes when it was asked for.
        live: u64,
        /// Live bytes by category (`weights 1.00 MiB, gradients ...`).
        breakdown: String,
    },
    /// An environment variable holds a size that is not one.
    #[error("{var}: {reason}")]
    BadSize {
        /// The variable name.
        var: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// Opening the default device failed earlier; this is that error's message.
    #[error("{0}")]
    Unavailable(String),
    /// A readback (buffer map) failed.
    #[error("reading results back from the GPU failed: {0}")]
    Readback(String),
    /// The device reported a validation or out-of-memory error.
    #[error("the GPU device reported an error in {context}: {message}")]
    Device {
        /// Which kernel or step.
        context: String,
        /// The driver's message.
        message: String,
    },
    /// The device does not support what a kernel needs (e.g. f16 without `SHADER_F16`).
    #[error("{what} needs the adapter feature {feature}, which {adapter:?} does not have")]
    MissingFeature {
        /// The kernel or dtype.
        what: String,
        /// The wgpu feature name.
        feature: &'static str,
        /// Adapter name.
        adapter: String,
    },
    /// A launcher was called with inconsistent arguments.
    #[error("kernel {kernel}: {message}")]
    Launch {
        /// Kernel key.
        kernel: String,
        /// What was wrong.
        message: String,
    },
}

impl KernelError {
    /// A [`KernelError::Launch`]: `kernel` (a [`KernelKey`](crate::KernelKey), which prints its
    /// label, or a shader name) was called with arguments that do not fit, as `message` says.
    pub fn launch(kernel: impl std::fmt::Display, message: impl Into<String>) -> Self {
        KernelError::Launch {
            kernel: kernel.to_string(),
            message: message.into(),
        }
    }
}

/// Result type of the runtime.
pub type Result<T, E = KernelError> = std::result::Result<T, E>;

//! Element types.

/// Element type of a tensor.
///
/// f32 is the compute type. i32/u32 hold indices and labels. f16 is a storage type: tensors can
/// be converted to and from it where the adapter has `SHADER_F16`; ops compute in f32. bf16 is
/// a storage type on every adapter (WGSL has no bf16: two values are packed in a u32 word and
/// converted in the shader, `pack16.wgsl`); only conversion to and from f32 reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 16-bit float (storage only).
    F16,
    /// bfloat16: f32's exponent, 7 mantissa bits (storage only, packed two to a word).
    BF16,
    /// 32-bit signed integer.
    I32,
    /// 32-bit unsigned integer.
    U32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            _ => 4,
        }
    }

    /// The lowercase name (`f32`, ...), as used in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I32 => "i32",
            DType::U32 => "u32",
        }
    }
}

/// A host type that maps to a [`DType`].
pub trait Element: bytemuck::Pod + Copy + Send + Sync + std::fmt::Debug + 'static {
    /// Its dtype.
    const DTYPE: DType;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
impl Element for i32 {
    const DTYPE: DType = DType::I32;
}
impl Element for u32 {
    const DTYPE: DType = DType::U32;
}
impl Element for half::f16 {
    const DTYPE: DType = DType::F16;
}
impl Element for half::bf16 {
    const DTYPE: DType = DType::BF16;
}

/// The class label that means "no target here": [`crate::Tensor::cross_entropy_masked`] skips
/// it (PyTorch's `ignore_index`; `u32::MAX` here, since labels are unsigned). Chat data marks
/// the targets of non-assistant tokens with it.
pub const IGNORE_INDEX: u32 = u32::MAX;

//! Tensors to and from the host form that files hold ([`HostTensor`]: dtype, shape, bytes).

use std::sync::Arc;

use kiln_kernels::Gpu;

use super::{DType, Tensor};
use crate::error::Result;
use crate::io::HostTensor;

impl Tensor {
    /// Upload a host tensor to `gpu` in its own dtype.
    pub fn from_host_on(gpu: &Arc<Gpu>, h: &HostTensor) -> Result<Tensor> {
        use bytemuck::pod_collect_to_vec as cast;
        match h.dtype {
            DType::F32 => Tensor::from_slice_on(gpu, &cast::<u8, f32>(&h.bytes), &h.shape),
            DType::U32 => Tensor::from_slice_on(gpu, &cast::<u8, u32>(&h.bytes), &h.shape),
            DType::I32 => Tensor::from_slice_on(gpu, &cast::<u8, i32>(&h.bytes), &h.shape),
            DType::F16 => Tensor::from_slice_on(gpu, &cast::<u8, half::f16>(&h.bytes), &h.shape),
            DType::BF16 => Tensor::from_slice_on(gpu, &cast::<u8, half::bf16>(&h.bytes), &h.shape),
        }
    }

    /// Read the tensor back to the host (one device sync).
    pub fn to_host(&self) -> Result<HostTensor> {
        let bytes: Vec<u8> = match self.dtype() {
            DType::F32 => bytemuck::cast_slice(&self.to_vec::<f32>()?).to_vec(),
            DType::F16 => bytemuck::cast_slice(&self.to_vec::<half::f16>()?).to_vec(),
            DType::BF16 => bytemuck::cast_slice(&self.to_vec::<half::bf16>()?).to_vec(),
            DType::I32 => bytemuck::cast_slice(&self.to_vec::<i32>()?).to_vec(),
            DType::U32 => bytemuck::cast_slice(&self.to_vec::<u32>()?).to_vec(),
        };
        Ok(HostTensor {
            dtype: self.dtype(),
            shape: self.shape().to_vec(),
            bytes,
        })
    }
}

//! `Embedding`: a learned table of vectors, looked up by id.
//!
//! For a weight W of shape (V, D) and ids of any shape (u32, each < V):
//! `y[..., :] = W[ids[...], :]`, shape (ids..., D). The gradient scatter-adds each position's
//! gradient into its row, `dW[v] = sum over positions with id v of g[pos]`, deterministically
//! ([`Tensor::embedding`]). Default initialisation (PyTorch's): W ~ N(0, 1).
//!
//! ```
//! use kiln::{Tensor, nn::{Embedding, Module}};
//! let table = Tensor::from_slice(&[0.0f32, 1.0, 10.0, 11.0, 20.0, 21.0], &[3, 2])?;
//! let emb = Embedding::from_weight(table)?;
//! let y = emb.forward(&Tensor::from_slice(&[2u32, 0], &[2])?)?;
//! assert_eq!(y.to_vec::<f32>()?, [20.0, 21.0, 0.0, 1.0]);
//! # Ok::<(), kiln::Error>(())
//! ```

use std::sync::Arc;

use kiln_kernels::Gpu;

use super::Module;
use super::init::Init;
use crate::error::{Result, arg_err};
use crate::tensor::Tensor;

/// A lookup table of `num_embeddings` vectors of size `dim`.
#[derive(Debug, Clone)]
pub struct Embedding {
    /// (num_embeddings, dim).
    pub weight: Tensor,
}

impl Embedding {
    /// A table of `num_embeddings` rows of size `dim`, N(0, 1), on the default device.
    pub fn new(num_embeddings: usize, dim: usize) -> Result<Self> {
        Self::new_on(&crate::device()?, num_embeddings, dim)
    }

    /// [`Embedding::new`] on `gpu`.
    pub fn new_on(gpu: &Arc<Gpu>, num_embeddings: usize, dim: usize) -> Result<Self> {
        Self::normal_on(gpu, num_embeddings, dim, 1.0)
    }

    /// A table of `num_embeddings` rows of size `dim`, N(0, `std`^2), on `gpu` (GPT and BERT
    /// use std 0.02).
    pub fn normal_on(gpu: &Arc<Gpu>, num_embeddings: usize, dim: usize, std: f32) -> Result<Self> {
        if num_embeddings == 0 || dim == 0 {
            return arg_err(
                "Embedding",
                format!("num_embeddings and dim must be positive, got {num_embeddings} and {dim}"),
            );
        }
        let weight = Init::Normal { mean: 0.0, std }
            .tensor_on(gpu, &[num_embeddings, dim])?
            .requires_grad();
        Ok(Embedding { weight })
    }

    /// A layer over the given table (V, D), used as it is.
    pub fn from_weight(weight: Tensor) -> Result<Self> {
        weight.expect_f32("Embedding")?;
        weight.expect_rank("Embedding", "weight", 2, "(V, D)")?;
        Ok(Embedding { weight })
    }

    /// Number of rows V.
    pub fn num_embeddings(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Size D of each vector.
    pub fn dim(&self) -> usize {
        self.weight.shape()[1]
    }
}

impl Module for Embedding {
    /// `ids` (u32, any shape) -> (ids..., D). Ids >= V give zero rows (not checked: that would
    /// wait for the GPU).
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        self.weight.embedding(ids)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![("weight".to_string(), self.weight.clone())]
    }
}

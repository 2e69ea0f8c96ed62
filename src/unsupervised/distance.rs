//! Points on the GPU and their squared Euclidean distances, the one distance mechanism that
//! k-means, DBSCAN, the silhouette score, k-NN (LOF, label spreading) share.
//!
//! `||x - y||^2 = ||x||^2 - 2 x.y + ||y||^2`: the cross term of a block of rows against a set of
//! points is one GEMM (the matmul op), and `cluster.wgsl` adds the squared norms (kept beside
//! the points) and clamps at 0. Large pairwise problems go block by block of rows so the
//! distance matrix never has to fit in memory at once.

use std::sync::Arc;

use kiln_kernels::launch::cluster as ck;

use crate::Gpu;
use crate::error::{Result, arg_err};
use crate::tensor::{DType, Tensor};

/// Bytes of one block of a pairwise distance matrix (rows of the block x all points, f32).
pub const BLOCK_BYTES: usize = 32 << 20;

/// `n` points of `d` features on the GPU, (n, d), with their squared norms, (n).
#[derive(Debug, Clone)]
pub struct Points {
    x: Tensor,
    norms: Tensor,
    n: usize,
    d: usize,
}

/// Check that `x` holds `n * d` finite values with `d > 0`, naming `what` in errors.
pub fn check_matrix(what: &'static str, x: &[f32], d: usize) -> Result<usize> {
    if d == 0 {
        return arg_err(what, "points need at least one feature (d = 0)");
    }
    if x.is_empty() || !x.len().is_multiple_of(d) {
        return arg_err(
            what,
            format!(
                "{} values do not form rows of {d} features (need n >= 1)",
                x.len()
            ),
        );
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return arg_err(
            what,
            format!(
                "row {}, feature {} is {} (not a finite number)",
                i / d,
                i % d,
                x[i]
            ),
        );
    }
    Ok(x.len() / d)
}

impl Points {
    /// Upload row-major `x` (n, d) to the default GPU.
    pub fn new(x: &[f32], d: usize) -> Result<Points> {
        Self::new_on(&crate::device()?, x, d)
    }

    /// Upload row-major `x` (n, d) to `gpu`.
    pub fn new_on(gpu: &Arc<Gpu>, x: &[f32], d: usize) -> Result<Points> {
        let n = check_matrix("points", x, d)?;
        if d > ck::MAX_LOOP {
            return arg_err("points", format!("{d} features exceed {}", ck::MAX_LOOP));
        }
        let x = Tensor::from_slice_on(gpu, x, &[n, d])?;
        let norms = Tensor::empty_on(gpu, &[n], DType::F32)?;
        ck::sq_norms(gpu, x.buffer(), n, d, norms.buffer())?;
        Ok(Points { x, norms, n, d })
    }

    /// Number of points.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Features per point.
    pub fn d(&self) -> usize {
        self.d
    }

    /// The points as a tensor, (n, d).
    pub fn tensor(&self) -> &Tensor {
        &self.x
    }

    /// The squared norms, (n).
    pub fn norms(&self) -> Result<Vec<f32>> {
        self.norms.to_vec()
    }

    fn gpu(&self) -> &Arc<Gpu> {
        self.x.gpu()
    }

    /// `G = X[r0 .. r0 + rows] Y^T`, (rows, m), as a fresh contiguous tensor.
    fn cross(&self, r0: usize, rows: usize, y: &Points) -> Result<Tensor> {
        if y.d != self.d {
            return arg_err(
                "distances",
                format!("points of {} features against points of {}", self.d, y.d),
            );
        }
        let g = self
            .x
            .narrow(0, r0, rows)?
            .matmul(&y.x.t()?)?
            .contiguous()?;
        if g.offset() != 0 {
            return g.copy_contiguous();
        }
        Ok(g)
    }

    /// Squared distances of rows `r0 .. r0 + rows` to every point of `y`: (rows, m), on the GPU.
    pub fn sq_dists_block(&self, r0: usize, rows: usize, y: &Points) -> Result<Tensor> {
        let g = self.cross(r0, rows, y)?;
        ck::sq_dists(
            self.gpu(),
            g.buffer(),
            self.norms.buffer(),
            y.norms.buffer(),
            rows,
            y.n,
            r0,
        )?;
        Ok(g)
    }

    /// Rows per block so that a (rows, m) f32 block stays within [`BLOCK_BYTES`].
    pub fn block_rows(m: usize) -> usize {
        (BLOCK_BYTES / (4 * m.max(1))).max(1)
    }

    /// Call `f(r0, block)` for consecutive blocks of rows, `block` the (rows, y.n()) squared
    /// distances read back to the host, in row order.
    pub fn for_each_block(
        &self,
        y: &Points,
        mut f: impl FnMut(usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        let step = Self::block_rows(y.n);
        for r0 in (0..self.n).step_by(step) {
            let rows = step.min(self.n - r0);
            let block: Vec<f32> = self.sq_dists_block(r0, rows, y)?.to_vec()?;
            f(r0, &block)?;
        }
        Ok(())
    }

    /// Nearest point of `c` to each point (ties: the lower index) and the squared distance:
    /// the fused assignment kernel over `G = X C^T`. Returns tensors (n) u32 and (n) f32.
    pub fn nearest(&self, c: &Points) -> Result<(Tensor, Tensor)> {
        let g = self.cross(0, self.n, c)?;
        let label = Tensor::empty_on(self.gpu(), &[self.n], DType::U32)?;
        let dist = Tensor::empty_on(self.gpu(), &[self.n], DType::F32)?;
        ck::assign(
            self.gpu(),
            g.buffer(),
            self.norms.buffer(),
            c.norms.buffer(),
            self.n,
            c.n,
            label.buffer(),
            dist.buffer(),
        )?;
        Ok((label, dist))
    }

    /// Per cluster the sum of its points and their count, (k, d + 1), from labels (n) u32 in
    /// `0..k` (the segmented-reduction kernel).
    pub fn cluster_sums(&self, label: &Tensor, k: usize) -> Result<Tensor> {
        let sums = Tensor::empty_on(self.gpu(), &[k, self.d + 1], DType::F32)?;
        let len = ck::sums_partial_len(self.n, self.d, k)?;
        let partial = Tensor::empty_on(self.gpu(), &[len], DType::F32)?;
        ck::centroid_sums(
            self.gpu(),
            self.x.buffer(),
            label.buffer(),
            self.n,
            self.d,
            k,
            partial.buffer(),
            sums.buffer(),
        )?;
        Ok(sums)
    }

    /// Number of points within squared radius `eps2` of each row in block `r0 .. r0 + rows`
    /// (the point itself included), with the block's squared distances (rows, n) on the host.
    pub fn neighbours_block(
        &self,
        r0: usize,
        rows: usize,
        eps2: f32,
    ) -> Result<(Vec<u32>, Vec<f32>)> {
        let d2 = self.sq_dists_block(r0, rows, self)?;
        let count = Tensor::empty_on(self.gpu(), &[rows], DType::U32)?;
        ck::count_within(self.gpu(), d2.buffer(), rows, self.n, eps2, count.buffer())?;
        Ok((count.to_vec()?, d2.to_vec()?))
    }

    /// The `k` nearest points of `base` to every point of `self` on the GPU, leaving out the
    /// point itself when `same` (`self` and `base` are one set). Squared distances go by blocks
    /// of rows ([`Points::sq_dists_block`]), `outlier.wgsl:knn` keeps the k smallest of each row
    /// (ascending; ties: the lower index), and only (rows, k) is read back.
    pub fn knn(&self, base: &Points, k: usize, same: bool) -> Result<Knn> {
        const WHAT: &str = "k-nearest neighbours";
        let m = base.n;
        let most = if same { m - 1 } else { m };
        if k == 0 || k > most {
            return arg_err(
                WHAT,
                format!(
                    "k = {k}: need 1 to {most} (the {} rows)",
                    if same { "other" } else { "base" }
                ),
            );
        }
        if m > ck::MAX_LOOP {
            return arg_err(
                WHAT,
                format!("{m} points exceed the {} it can take", ck::MAX_LOOP),
            );
        }
        if self.d != base.d {
            return arg_err(
                WHAT,
                format!("points of {} features against {}", self.d, base.d),
            );
        }
        let step = Self::block_rows(m);
        let n = self.n;
        let (mut dist, mut idx) = (Vec::with_capacity(n * k), Vec::with_capacity(n * k));
        for r0 in (0..n).step_by(step) {
            let rows = step.min(n - r0);
            let d2 = self.sq_dists_block(r0, rows, base)?;
            let nd = Tensor::empty_on(self.gpu(), &[rows, k], DType::F32)?;
            let ni = Tensor::empty_on(self.gpu(), &[rows, k], DType::U32)?;
            let (nb, ib) = (nd.buffer(), ni.buffer());
            kiln_kernels::launch::outlier::knn(
                self.gpu(),
                d2.buffer(),
                rows,
                m,
                k,
                r0,
                same,
                nb,
                ib,
            )?;
            dist.extend(nd.to_vec::<f32>()?.iter().map(|v| v.sqrt()));
            idx.extend(ni.to_vec::<u32>()?);
        }
        Ok(Knn { k, dist, idx })
    }
}

/// The k nearest neighbours of a set of points ([`Points::knn`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Knn {
    /// Neighbours per row.
    pub k: usize,
    /// Euclidean distances, (n, k), ascending per row.
    pub dist: Vec<f32>,
    /// Row indices into the base points, (n, k).
    pub idx: Vec<u32>,
}

//! Problem size and operand layouts of a batched matmul: [`MatmulDims`], [`MatLayout`] (a
//! strided batch of matrices), [`MatRef`] (a layout in a buffer) and [`vec4_modes`] (which
//! operands the vec4 rung can read 16 bytes at a time).

use crate::buffer_pool::GpuBuffer;

/// Problem size: `batch` products of (M, K) @ (K, N).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulDims {
    /// Number of products.
    pub batch: usize,
    /// Rows of A and C.
    pub m: usize,
    /// Columns of B and C.
    pub n: usize,
    /// Columns of A = rows of B.
    pub k: usize,
}

impl MatmulDims {
    /// Floating-point operations of the product (a multiply and an add per term).
    pub fn flops(&self) -> u64 {
        2 * (self.batch * self.m * self.n * self.k) as u64
    }
}

/// Where a batch of matrices sits in a buffer, in elements.
///
/// Element `[z, r, c]` is at `offset + z * batch_stride + r * row_stride + c * col_stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatLayout {
    /// Element offset of `[0, 0, 0]`.
    pub offset: usize,
    /// Elements between consecutive matrices (0 = one matrix broadcast over the batch).
    pub batch_stride: usize,
    /// Elements between consecutive rows.
    pub row_stride: usize,
    /// Elements between consecutive columns.
    pub col_stride: usize,
}

impl MatLayout {
    /// Row-major `(batch, rows, cols)` at offset 0.
    pub fn contiguous(rows: usize, cols: usize) -> Self {
        MatLayout {
            offset: 0,
            batch_stride: rows * cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The `(rows, cols)` transpose of a row-major `(batch, cols, rows)` array: swapped strides.
    pub fn transposed(rows: usize, cols: usize) -> Self {
        MatLayout {
            offset: 0,
            batch_stride: rows * cols,
            row_stride: 1,
            col_stride: rows,
        }
    }

    /// The same layout with batch stride 0 (one matrix repeated over the batch).
    pub fn broadcast(self) -> Self {
        MatLayout {
            batch_stride: 0,
            ..self
        }
    }

    /// The same layout starting `offset` elements in.
    pub fn at(self, offset: usize) -> Self {
        MatLayout { offset, ..self }
    }

    /// Index of element `[z, r, c]`.
    pub fn index(&self, z: usize, r: usize, c: usize) -> usize {
        self.offset + z * self.batch_stride + r * self.row_stride + c * self.col_stride
    }

    /// Index of the last element of a `(batch, rows, cols)` view (`None` on overflow).
    pub fn last_index(&self, batch: usize, rows: usize, cols: usize) -> Option<usize> {
        let span = |n: usize, s: usize| (n.saturating_sub(1)).checked_mul(s);
        self.offset
            .checked_add(span(batch, self.batch_stride)?)?
            .checked_add(span(rows, self.row_stride)?)?
            .checked_add(span(cols, self.col_stride)?)
    }
}

/// A strided batch of matrices in a GPU buffer: A (batch, M, K) or B (batch, K, N).
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    /// The buffer (f32 elements).
    pub buf: &'a GpuBuffer,
    /// Element offset of `[0, 0, 0]`.
    pub offset: usize,
    /// Elements between consecutive matrices (0 = broadcast).
    pub batch_stride: usize,
    /// Elements between consecutive rows.
    pub row_stride: usize,
    /// Elements between consecutive columns.
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// `buf` seen through `layout`.
    pub fn new(buf: &'a GpuBuffer, layout: MatLayout) -> Self {
        MatRef {
            buf,
            offset: layout.offset,
            batch_stride: layout.batch_stride,
            row_stride: layout.row_stride,
            col_stride: layout.col_stride,
        }
    }

    /// The layout without the buffer.
    pub fn layout(&self) -> MatLayout {
        MatLayout {
            offset: self.offset,
            batch_stride: self.batch_stride,
            row_stride: self.row_stride,
            col_stride: self.col_stride,
        }
    }
}

/// How the vec4 rung reads each operand (its `A_MODE`, `B_MODE` constants).
///
/// A: 1 = vec4 along K (unit column stride), 2 = vec4 along M (unit row stride); B: 1 = vec4 along
/// N (unit column stride), 2 = vec4 along K (unit row stride); 0 = element by element. A vec4
/// mode also needs the offset and the operand's other strides to be multiples of 4 (16 bytes),
/// except strides of dims of size 1, which never move the address.
pub fn vec4_modes(a: MatLayout, b: MatLayout, dims: MatmulDims) -> (u32, u32) {
    let MatmulDims { batch, m, n, k } = dims;
    let ok = |stride: usize, size: usize| size == 1 || stride.is_multiple_of(4);
    let mode = |l: MatLayout, rows: usize, cols: usize| {
        if !l.offset.is_multiple_of(4) || !ok(l.batch_stride, batch) {
            0
        } else if l.col_stride == 1 && ok(l.row_stride, rows) {
            1
        } else if l.row_stride == 1 && ok(l.col_stride, cols) {
            2
        } else {
            0
        }
    };
    (mode(a, m, k), mode(b, k, n))
}

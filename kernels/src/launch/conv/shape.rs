//! [`Conv2dShape`]: the sizes and options of one 2-D convolution, the output size, and the
//! params every conv kernel reads.

use super::ConvParams;

/// The shape of one 2-D convolution: input (N, C_in, H, W), weight (C_out, C_in / groups, KH,
/// KW), and the stride, padding and dilation as (height, width).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dShape {
    /// Images.
    pub n: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// (vertical, horizontal) stride, each at least 1.
    pub stride: (usize, usize),
    /// (vertical, horizontal) zero padding on both sides.
    pub padding: (usize, usize),
    /// (vertical, horizontal) dilation, each at least 1.
    pub dilation: (usize, usize),
    /// Channel groups: C_in and C_out are multiples of it.
    pub groups: usize,
}

impl Conv2dShape {
    /// `c_in` -> `c_out` channels with a (KH, KW) `kernel` on `n` images of (H, W) `hw`: stride
    /// 1, no padding, no dilation, one group (set those with [`Conv2dShape::padded`] or struct
    /// update syntax).
    ///
    /// ```
    /// use kiln_kernels::launch::conv::Conv2dShape;
    /// // A ResNet 3 x 3 convolution that keeps the size: (32, 16, 14, 14) -> (32, 32, 14, 14).
    /// let s = Conv2dShape::new(32, 16, 32, (14, 14), (3, 3)).padded((1, 1));
    /// assert_eq!(s.output_shape(), [32, 32, 14, 14]);
    /// assert_eq!(s.flops(), 2 * (32 * 32 * 14 * 14) * (16 * 3 * 3));
    /// ```
    pub fn new(
        n: usize,
        c_in: usize,
        c_out: usize,
        (h, w): (usize, usize),
        (kh, kw): (usize, usize),
    ) -> Self {
        Conv2dShape {
            n,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }

    /// This shape with `padding` zeros on both sides, (vertical, horizontal).
    pub fn padded(self, padding: (usize, usize)) -> Self {
        Conv2dShape { padding, ..self }
    }

    /// Why this shape is not a valid convolution, or `None` when it is.
    pub fn problem(&self) -> Option<String> {
        let s = self;
        if [s.n, s.c_in, s.h, s.w, s.c_out, s.kh, s.kw].contains(&0) {
            return Some(format!("every size must be at least 1, got {s:?}"));
        }
        if s.stride.0 == 0 || s.stride.1 == 0 || s.dilation.0 == 0 || s.dilation.1 == 0 {
            return Some(format!(
                "stride {:?} and dilation {:?} must be at least 1",
                s.stride, s.dilation
            ));
        }
        if s.groups == 0 || !s.c_in.is_multiple_of(s.groups) || !s.c_out.is_multiple_of(s.groups) {
            return Some(format!(
                "groups {} must divide input channels {} and output channels {}",
                s.groups, s.c_in, s.c_out
            ));
        }
        let span = |k: usize, d: usize| d * (k - 1) + 1;
        let (eh, ew) = (span(s.kh, s.dilation.0), span(s.kw, s.dilation.1));
        if s.h + 2 * s.padding.0 < eh || s.w + 2 * s.padding.1 < ew {
            return Some(format!(
                "the kernel spans ({eh}, {ew}) with dilation {:?}, more than the padded input \
                 ({}, {})",
                s.dilation,
                s.h + 2 * s.padding.0,
                s.w + 2 * s.padding.1
            ));
        }
        None
    }

    /// Output (OH, OW): `(H + 2 pad - dil (K - 1) - 1) / stride + 1`. Only for valid shapes.
    pub fn out_hw(&self) -> (usize, usize) {
        let o = |i: usize, p: usize, d: usize, k: usize, s: usize| {
            (i + 2 * p - d * (k - 1) - 1) / s + 1
        };
        (
            o(
                self.h,
                self.padding.0,
                self.dilation.0,
                self.kh,
                self.stride.0,
            ),
            o(
                self.w,
                self.padding.1,
                self.dilation.1,
                self.kw,
                self.stride.1,
            ),
        )
    }

    /// Reduction length of the forward GEMM view: `C_in / groups * KH * KW`.
    pub fn k_len(&self) -> usize {
        self.c_in / self.groups * self.kh * self.kw
    }

    /// x's shape (N, C_in, H, W).
    pub fn input_shape(&self) -> [usize; 4] {
        [self.n, self.c_in, self.h, self.w]
    }

    /// The weight's shape (C_out, C_in / groups, KH, KW).
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.c_out, self.c_in / self.groups, self.kh, self.kw]
    }

    /// The output's shape (N, C_out, OH, OW).
    pub fn output_shape(&self) -> [usize; 4] {
        let (oh, ow) = self.out_hw();
        [self.n, self.c_out, oh, ow]
    }

    /// Floating-point operations of the forward (a multiply and an add per term):
    /// `2 N C_out OH OW (C_in / groups) KH KW`. Each backward pass costs the same.
    pub fn flops(&self) -> u64 {
        let [n, c, oh, ow] = self.output_shape();
        2 * (n * c * oh * ow * self.k_len()) as u64
    }

    pub(super) fn params(&self, total: usize) -> ConvParams {
        let (oh, ow) = self.out_hw();
        ConvParams {
            n: self.n as u32,
            c_in: self.c_in as u32,
            h: self.h as u32,
            w: self.w as u32,
            c_out: self.c_out as u32,
            oh: oh as u32,
            ow: ow as u32,
            groups: self.groups as u32,
            kh: self.kh as u32,
            kw: self.kw as u32,
            stride_h: self.stride.0 as u32,
            stride_w: self.stride.1 as u32,
            pad_h: self.padding.0 as u32,
            pad_w: self.padding.1 as u32,
            dil_h: self.dilation.0 as u32,
            dil_w: self.dilation.1 as u32,
            total: total as u32,
            chunk: 0,
            splits: 1,
            has_bias: 0,
        }
    }
}

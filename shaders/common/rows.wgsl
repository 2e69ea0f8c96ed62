// Params of the row kernels (reduce.wgsl, softmax.wgsl): a strided (rows, len) matrix
// x[offset + r * row_stride + j * col_stride] and where the output starts. Mirrored by
// `launch::reduce::RowsParams`.

struct RowsParams {
    rows: u32,          // number of rows (outputs of a reduction)
    len: u32,           // elements per row
    offset: u32,        // element offset of x[0, 0]
    row_stride: u32,    // elements between rows
    col_stride: u32,    // elements between neighbours in a row
    out_offset: u32,    // element offset of the output's first element
    scale: f32,         // multiplies a sum (reduce: 1/len for mean; softmax: unused)
    _pad: u32,
}

//! [`Operand`]: a buffer and where a tensor starts in it, the one way launchers take a
//! contiguous input or output that may sit at an offset (a slice of a larger tensor, a
//! parameter inside a flat buffer).

use crate::buffer_pool::GpuBuffer;

/// A contiguous run of elements inside a buffer, starting at element `offset`.
///
/// The launcher that takes it says the shape (in its argument comment) and checks that
/// `offset + len` fits the buffer.
#[derive(Debug, Clone, Copy)]
pub struct Operand<'a> {
    /// The buffer.
    pub buf: &'a GpuBuffer,
    /// Element (not byte) offset of the first element.
    pub offset: usize,
}

impl<'a> Operand<'a> {
    /// The run starting at element `offset` of `buf`.
    pub fn new(buf: &'a GpuBuffer, offset: usize) -> Self {
        Operand { buf, offset }
    }

    /// The run starting at element 0 of `buf`.
    pub fn whole(buf: &'a GpuBuffer) -> Self {
        Operand { buf, offset: 0 }
    }
}

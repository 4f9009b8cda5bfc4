//! The geometry of a 2-D convolution, shared by the im2col + GEMM op
//! ([`super::conv`]) and the direct kernels ([`super::direct`]), so that
//! neither imports the other for it.

/// The geometry of one convolution: `[b, cin, h, w]` input, `[cout, cin, k, k]`
/// kernel, stride and zero padding, `[b, cout, ho, wo]` output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub b: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Geometry {
    /// Output height.
    pub fn ho(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Output width.
    pub fn wo(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Rows of an im2col matrix: `cin * k * k`.
    pub(crate) fn rows(&self) -> usize {
        self.cin * self.k * self.k
    }
    /// Columns of an im2col matrix: output pixels of one image.
    pub(crate) fn cols(&self) -> usize {
        self.ho() * self.wo()
    }
}

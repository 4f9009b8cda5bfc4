//! The CPU kernels and candle ops the ResNet runs on, apart from the model:
//! convolution ([`conv`], with the direct 3x3 kernels of [`direct`] and the
//! geometry both share in [`geometry`]), batch norm ([`batchnorm`]), the
//! residual steps ([`residual`]), a residual block as one op ([`block`]),
//! the CUDA convolution's backward ([`conv_cuda`]) and what they share
//! ([`cpu`]: when a tensor takes them, f32/f64 dispatch, parallel builds).
//! Each gives the same values as the layer-by-layer candle ops (tests in
//! `tests/integration/ops.rs`).

pub mod batchnorm;
pub mod block;
pub mod conv;
pub mod conv_cuda;
pub mod cpu;
pub mod direct;
pub mod geometry;
pub mod residual;

pub use geometry::Geometry;

/// How a residual block's input reaches its output when no parameters are
/// involved: the block op ([`block`]) and the image-by-image inference trunk
/// (`model::infer`) take it; a parameterised option-B shortcut (1x1
/// convolution + batch norm) runs layer by layer instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortcut {
    /// `x` itself (same shape as the output).
    Identity,
    /// Option A: `x[:, :, ::2, ::2]` with this many zero channels on each side.
    A(usize),
}

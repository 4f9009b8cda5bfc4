//! The convolution on devices other than the CPU (CUDA): candle's forward
//! convolution (im2col + cuBLAS on CUDA), with a backward of our own built
//! from candle tensor ops:
//! - input gradient: the forward convolution of dy, zero-dilated by the
//!   stride, with the kernel flipped and transposed (a matrix multiply again,
//!   where candle's own backward runs `conv_transpose2d`, a direct loop kernel
//!   on CUDA);
//! - weight gradient: im2col of the padded input as one strided view
//!   (`unfold`) copied once, then a batched matrix multiply
//!   `[b, cout, P] x [b, P, cin*k*k]` summed over the batch (candle's own
//!   runs a convolution with an image-sized kernel).
//!
//! Written as tensor ops rather than CUDA kernels so that the same code runs,
//! and is tested, on the CPU (`tests/integration/ops.rs`); only candle's own
//! kernels differ between devices. The op is a `CustomOp3` over
//! `(x, w, y)` whose forward copies `y`, the detached forward result: the
//! copy is what lets autograd call [`Conv2dGrad::bwd`] instead of candle's
//! backward.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp3, Layout, Shape, Tensor};

/// `conv2d(x, w)` with square kernels, no bias, no dilation, one group, on
/// any device: candle's forward, the backward below.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> candle_core::Result<Tensor> {
    let y = x.detach().conv2d(&w.detach(), pad, stride, 1, 1)?;
    if !x.track_op() && !w.track_op() {
        return Ok(y); // inference: no gradient will be asked for
    }
    x.apply_op3(w, &y, Conv2dGrad { stride, pad })
}

/// The op of [`conv2d`]: forward passes `y` through, backward computes the
/// gradients of `x` and `w` with [`backward_data`] and [`backward_filter`].
#[derive(Clone, Copy, Debug)]
struct Conv2dGrad {
    stride: usize,
    pad: usize,
}

impl CustomOp3 for Conv2dGrad {
    fn name(&self) -> &'static str {
        "misfit-conv2d-any-device"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        y: &CpuStorage,
        yl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        pass_through(y, yl)
    }

    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
        y: &CudaStorage,
        yl: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        pass_through(y, yl)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (xd, wd, dy) = (x.detach(), w.detach(), dy.detach());
        // Only what autograd will use (see `conv::Conv2d::bwd`).
        let dx = if x.track_op() { Some(backward_data(&dy, &wd, xd.dims4()?, self.stride, self.pad)?) } else { None };
        let dw = if w.track_op() { Some(backward_filter(&xd, &dy, wd.dims4()?, self.stride, self.pad)?) } else { None };
        Ok((dx, dw, None))
    }
}

/// A contiguous copy of `y` on any backend: a strided copy (affine 1, 0)
/// whatever y's layout.
fn pass_through<S: BackendStorage>(y: &S, yl: &Layout) -> candle_core::Result<(S, Shape)> {
    Ok((y.affine(yl, 1.0, 0.0)?, yl.shape().clone()))
}

/// Input gradient `[b, cin, h, w]` of a convolution of an input shaped
/// `x_dims` with `w` `[cout, cin, k, k]`, from dy `[b, cout, ho, wo]`.
///
/// dy is dilated (stride - 1 zeros between its pixels), padded by `k - 1`
/// around (plus the rows and columns the forward's stride left unread at the
/// bottom and right) and correlated with the flipped, transposed kernel; the
/// result covers the padded input, whose `pad` border is cut off. When
/// `pad <= k - 1`, padding by `k - 1 - pad` gives the input's size directly.
pub fn backward_data(
    dy: &Tensor,
    w: &Tensor,
    x_dims: (usize, usize, usize, usize),
    stride: usize,
    pad: usize,
) -> candle_core::Result<Tensor> {
    let (b, _, ho, wo) = dy.dims4()?;
    let (_, cin, h, wd) = x_dims;
    let k = w.dim(2)?;
    let dilated = dilate(dy, stride)?;
    // Rows/columns of the padded input below/right of the last window.
    let (extra_h, extra_w) = (h + 2 * pad - k - (ho - 1) * stride, wd + 2 * pad - k - (wo - 1) * stride);
    let lead = (k - 1).saturating_sub(pad);
    let crop = pad.saturating_sub(k - 1);
    let padded = dilated.pad_with_zeros(2, lead, lead + extra_h)?.pad_with_zeros(3, lead, lead + extra_w)?;
    // [cout, cin, k, k] -> [cin, cout, k, k], flipped in both spatial dims.
    let wt = w.flip(&[2, 3])?.transpose(0, 1)?.contiguous()?;
    let dx = padded.conv2d(&wt, 0, 1, 1, 1)?;
    debug_assert_eq!(dx.dims4()?, (b, cin, h + 2 * crop, wd + 2 * crop));
    if crop > 0 {
        dx.narrow(2, crop, h)?.narrow(3, crop, wd)?.contiguous()
    } else {
        Ok(dx)
    }
}

/// `[b, c, h, w]` to `[b, c, (h-1)*s+1, (w-1)*s+1]` with `s - 1` zeros
/// between neighbouring pixels.
fn dilate(t: &Tensor, s: usize) -> candle_core::Result<Tensor> {
    if s == 1 {
        return Ok(t.clone());
    }
    let (b, c, h, w) = t.dims4()?;
    let (dt, dev) = (t.dtype(), t.device());
    let cols = Tensor::cat(&[&t.unsqueeze(4)?, &Tensor::zeros((b, c, h, w, s - 1), dt, dev)?], 4)?
        .reshape((b, c, h, w * s))?
        .narrow(3, 0, (w - 1) * s + 1)?;
    let w1 = (w - 1) * s + 1;
    Tensor::cat(&[&cols.unsqueeze(3)?, &Tensor::zeros((b, c, h, s - 1, w1), dt, dev)?], 3)?
        .reshape((b, c, h * s, w1))?
        .narrow(2, 0, (h - 1) * s + 1)
}

/// Weight gradient `[cout, cin, k, k]` from x `[b, cin, h, w]` and dy
/// `[b, cout, ho, wo]`: the padded input's `k x k` windows at the stride
/// (`unfold` twice: a view `[b, cin, ho, wo, k, k]`), copied once as the
/// patch matrix `[b, cin*k*k, ho*wo]`, then `sum_b dy_b x col_b^T`.
pub fn backward_filter(
    x: &Tensor,
    dy: &Tensor,
    w_dims: (usize, usize, usize, usize),
    stride: usize,
    pad: usize,
) -> candle_core::Result<Tensor> {
    let (cout, cin, k, _) = w_dims;
    let (b, _, ho, wo) = dy.dims4()?;
    let xp = x.pad_with_zeros(2, pad, pad)?.pad_with_zeros(3, pad, pad)?;
    // [b, cin, ho, wo, k, k] (unfold keeps (h + 2 pad - k) / stride + 1 = ho
    // windows) -> [b, cin, k, k, ho, wo]
    let windows = xp.unfold(2, k, stride)?.unfold(3, k, stride)?;
    let col = windows.permute((0, 1, 4, 5, 2, 3))?.contiguous()?.reshape((b, cin * k * k, ho * wo))?;
    let dy = dy.contiguous()?.reshape((b, cout, ho * wo))?;
    dy.matmul(&col.transpose(1, 2)?)?.sum(0)?.reshape((cout, cin, k, k))
}

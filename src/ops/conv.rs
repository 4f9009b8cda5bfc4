//! A 2-D convolution for the CPU with fast forward and backward passes. f32
//! 3x3 convolutions (stride 1 or 2) on CPUs with AVX2 run the direct kernels
//! of [`super::direct`] for the forward pass and the weight gradient;
//! everything else runs as matrix multiplies: im2col + GEMM forward, GEMM
//! over im2col for the weight gradient (the `gemm` crate that candle itself
//! uses). The input gradient is the forward convolution of dy with the
//! flipped kernel (stride 1) or GEMM + col2im (stride 2). Small images are
//! grouped so that one GEMM covers enough output pixels. Written by hand because candle's CPU
//! backward runs the input gradient as a direct `conv_transpose2d` and the
//! weight gradient as a convolution with an image-sized kernel, which
//! dominate a training step; no crate offers this op for candle. It is a
//! candle `CustomOp2`, so autograd, attacks and saliency use it unchanged.
//! Other devices (CUDA) use [`super::conv_cuda`].
//!
//! Determinism: image groups depend on the geometry only and are independent
//! in the forward and input-gradient passes; the weight gradient sums
//! per-chunk partial products in a fixed chunk order, so results do not
//! depend on the number of threads.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

pub use super::geometry::Geometry;
use super::{cpu, direct};

/// Images per partial weight gradient; fixed so that sums do not depend on threads.
const FILTER_CHUNK: usize = 8;

/// `[cin, h, w]` image to its `[cin*k*k, ho*wo]` patch matrix, whose rows
/// start `ld` elements apart in `col` (`ld = ho*wo` for a matrix of its own;
/// larger to place several images' matrices side by side).
fn im2col<T: WithDType>(x: &[T], g: &Geometry, col: &mut [T], ld: usize) {
    let (ho, wo, p) = (g.ho(), g.wo(), g.cols());
    for ci in 0..g.cin {
        let plane = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = &mut col[((ci * g.k + ky) * g.k + kx) * ld..][..p];
                let (lo, hi, first) = valid_columns(g, kx, wo);
                for oy in 0..ho {
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    let dst = &mut row[oy * wo..(oy + 1) * wo];
                    if iy < 0 || iy >= g.h as isize || lo >= hi {
                        dst.fill(T::zero());
                        continue;
                    }
                    let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    dst[..lo].fill(T::zero());
                    dst[hi..].fill(T::zero());
                    if g.stride == 1 {
                        dst[lo..hi].copy_from_slice(&src[first..first + (hi - lo)]);
                    } else {
                        for (d, v) in dst[lo..hi].iter_mut().zip(src[first..].iter().step_by(g.stride)) {
                            *d = *v;
                        }
                    }
                }
            }
        }
    }
}

/// The output columns `lo..hi` whose input column `ox * stride + kx - pad`
/// lies inside the image for kernel column `kx`, and the first such input
/// column. Hoisting the bounds out of the inner loops lets them copy (stride 1)
/// or gather without a branch per element.
fn valid_columns(g: &Geometry, kx: usize, wo: usize) -> (usize, usize, usize) {
    let s = g.stride as isize;
    let a = g.pad as isize - kx as isize;
    let lo = if a > 0 { (a + s - 1) / s } else { 0 };
    let hi = ((g.w as isize + a + s - 1) / s).clamp(0, wo as isize);
    let lo = lo.min(hi);
    let first = (lo * s - a).max(0) as usize;
    (lo as usize, hi as usize, first)
}

/// Adds a `[cin*k*k, ho*wo]` patch-gradient matrix back into a `[cin, h, w]` image gradient.
fn col2im<T: WithDType>(col: &[T], g: &Geometry, dx: &mut [T]) {
    let (ho, wo, p) = (g.ho(), g.wo(), g.cols());
    for ci in 0..g.cin {
        let plane = &mut dx[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = &col[((ci * g.k + ky) * g.k + kx) * p..][..p];
                let (lo, hi, first) = valid_columns(g, kx, wo);
                if lo >= hi {
                    continue;
                }
                for oy in 0..ho {
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let src = &row[oy * wo + lo..oy * wo + hi];
                    for (d, v) in dst[first..].iter_mut().step_by(g.stride).zip(src) {
                        *d += *v;
                    }
                }
            }
        }
    }
}

/// `dst[m, n] = (accumulate ? dst : 0) + lhs[m, k] * rhs[k, n]`, with element
/// strides given as (row stride, column stride) for each operand.
#[allow(clippy::too_many_arguments)]
fn matmul<T: WithDType>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    lhs: &[T],
    lhs_strides: (usize, usize),
    rhs: &[T],
    rhs_strides: (usize, usize),
    accumulate: bool,
) {
    assert!(dst.len() >= m * n);
    assert!(m == 0 || k == 0 || lhs.len() > (m - 1) * lhs_strides.0 + (k - 1) * lhs_strides.1);
    assert!(k == 0 || n == 0 || rhs.len() > (k - 1) * rhs_strides.0 + (n - 1) * rhs_strides.1);
    // SAFETY: the asserts above keep every index the strides reach inside the slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_strides.1 as isize,
            lhs_strides.0 as isize,
            rhs.as_ptr(),
            rhs_strides.1 as isize,
            rhs_strides.0 as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// The patch matrices of images `images` side by side in `col`: image j's
/// `[rows, p]` block starts at column `j * p` of a `[rows, images.len() * p]` matrix.
fn im2col_group<T: WithDType>(x: &[T], g: &Geometry, images: impl ExactSizeIterator<Item = usize>, col: &mut [T]) {
    let (in_len, p) = (g.cin * g.h * g.w, g.cols());
    let ld = images.len() * p;
    for (j, i) in images.enumerate() {
        im2col(&x[i * in_len..(i + 1) * in_len], g, &mut col[j * p..], ld);
    }
}

/// Output pixels one GEMM should cover at least: small images are grouped
/// so that a GEMM has enough columns to run its kernels at speed (a 16x16
/// image has 256 output pixels, an 8x8 one 64).
const GEMM_COLUMNS: usize = 1024;

/// Batches are cut into at least this many groups, so that small images
/// (grouped many to a GEMM) still give every thread work.
const MIN_GROUPS: usize = 8;

/// Images per GEMM for geometry `g` (depends on the geometry only, never on
/// the thread count, so results do not either).
fn images_per_gemm(g: &Geometry) -> usize {
    (GEMM_COLUMNS / g.cols().max(1)).min(g.b / MIN_GROUPS).max(1)
}

/// The convolution's element types: f32 takes the direct kernels of
/// [`direct`] where they apply (3x3, stride 1 or 2, AVX2 and FMA); everything else
/// takes im2col + GEMM.
pub trait Element: WithDType {
    /// Forward pass of `g` (see [`forward`]).
    fn conv_forward(x: &[Self], w: &[Self], g: &Geometry) -> Vec<Self> {
        gemm_forward(x, w, g)
    }
    /// Weight gradient of `g` (see [`backward_filter`]).
    fn conv_filter(x: &[Self], dy: &[Self], g: &Geometry) -> Vec<Self> {
        gemm_backward_filter(x, dy, g)
    }
}

impl Element for f64 {}

impl Element for f32 {
    fn conv_forward(x: &[f32], w: &[f32], g: &Geometry) -> Vec<f32> {
        if direct::supports(g) {
            direct::forward(x, w, g)
        } else {
            gemm_forward(x, w, g)
        }
    }
    fn conv_filter(x: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
        if direct::supports(g) {
            direct::backward_filter(x, dy, g)
        } else {
            gemm_backward_filter(x, dy, g)
        }
    }
}

/// Forward: `[b, cin, h, w]` x and `[cout, cin, k, k]` w to `[b, cout, ho, wo]`.
pub fn forward<T: Element>(x: &[T], w: &[T], g: &Geometry) -> Vec<T> {
    T::conv_forward(x, w, g)
}

/// Weight gradient: x and dy to `[cout, cin, k, k]` dw.
pub fn backward_filter<T: Element>(x: &[T], dy: &[T], g: &Geometry) -> Vec<T> {
    T::conv_filter(x, dy, g)
}

/// The forward pass by im2col + GEMM.
/// Per group of images: their patch matrices side by side `[rows, n*p]`,
/// one GEMM `[cout, rows] x [rows, n*p]`, then each image's block copied out.
fn gemm_forward<T: WithDType>(x: &[T], w: &[T], g: &Geometry) -> Vec<T> {
    let (rows, p) = (g.rows(), g.cols());
    let (m, out_len) = (images_per_gemm(g), g.cout * p);
    let mut out = vec![T::zero(); g.b * out_len];
    out.par_chunks_mut(m * out_len).enumerate().for_each_init(
        || (vec![T::zero(); rows * m * p], vec![T::zero(); if m > 1 { out_len * m } else { 0 }]),
        |(col, tmp), (c, o)| {
            let n = o.len() / out_len;
            let ld = n * p;
            im2col_group(x, g, c * m..c * m + n, col);
            if n == 1 {
                matmul(g.cout, p, rows, o, w, (rows, 1), col, (p, 1), false);
                return;
            }
            matmul(g.cout, ld, rows, tmp, w, (rows, 1), col, (ld, 1), false);
            for co in 0..g.cout {
                for j in 0..n {
                    o[(j * g.cout + co) * p..][..p].copy_from_slice(&tmp[co * ld + j * p..][..p]);
                }
            }
        },
    );
    out
}

/// Input gradient: `[b, cout, ho, wo]` dy and w to `[b, cin, h, w]` dx.
/// With stride 1 it is the forward convolution of dy with the kernel
/// transposed and flipped, padded by `k - 1 - pad` (no scatter-add); with
/// stride 2, GEMM then col2im.
pub fn backward_data<T: Element>(dy: &[T], w: &[T], g: &Geometry) -> Vec<T> {
    let (rows, p) = (g.rows(), g.cols());
    if g.stride == 1 && g.pad < g.k {
        let k = g.k;
        let mut wt = vec![T::zero(); w.len()];
        for co in 0..g.cout {
            for ci in 0..g.cin {
                for ky in 0..k {
                    for kx in 0..k {
                        wt[((ci * g.cout + co) * k + (k - 1 - ky)) * k + (k - 1 - kx)] =
                            w[((co * g.cin + ci) * k + ky) * k + kx];
                    }
                }
            }
        }
        let gt = Geometry { b: g.b, cin: g.cout, h: g.ho(), w: g.wo(), cout: g.cin, k, stride: 1, pad: k - 1 - g.pad };
        return forward(dy, &wt, &gt);
    }
    let mut dx = vec![T::zero(); g.b * g.cin * g.h * g.w];
    dx.par_chunks_mut(g.cin * g.h * g.w).enumerate().for_each_init(
        || vec![T::zero(); rows * p],
        |dcol, (i, d)| {
            // dcol[rows, p] = w^T[rows, cout] * dy_i[cout, p]
            matmul(rows, p, g.cout, dcol, w, (1, rows), &dy[i * g.cout * p..(i + 1) * g.cout * p], (p, 1), false);
            col2im(dcol, g, d);
        },
    );
    dx
}

/// The weight gradient by im2col + GEMM. Partial sums per
/// chunk of images (FILTER_CHUNK, or one GEMM group when larger), added in
/// chunk order. Within a chunk, per group of images (see [`forward`]):
/// `dw^T[rows, cout] += col[rows, n*p] * dy^T[n*p, cout]`. The transposed
/// product runs the GEMM kernels about twice as fast as `dw = dy * col^T`
/// when there are few output channels.
fn gemm_backward_filter<T: WithDType>(x: &[T], dy: &[T], g: &Geometry) -> Vec<T> {
    let (rows, p) = (g.rows(), g.cols());
    let (m, out_len) = (images_per_gemm(g), g.cout * p);
    let chunk = FILTER_CHUNK.max(m);
    let partials: Vec<Vec<T>> = (0..g.b.div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let mut dwt = vec![T::zero(); rows * g.cout];
            let mut col = vec![T::zero(); rows * m * p];
            let mut dyc = vec![T::zero(); if m > 1 { out_len * m } else { 0 }];
            let images: Vec<usize> = (c * chunk..((c + 1) * chunk).min(g.b)).collect();
            for group in images.chunks(m) {
                let ld = group.len() * p;
                im2col_group(x, g, group.iter().copied(), &mut col);
                let dyg = if group.len() == 1 {
                    &dy[group[0] * out_len..(group[0] + 1) * out_len]
                } else {
                    // [n, cout, p] to [cout, n*p]
                    for (j, &i) in group.iter().enumerate() {
                        for co in 0..g.cout {
                            dyc[co * ld + j * p..][..p].copy_from_slice(&dy[i * out_len + co * p..][..p]);
                        }
                    }
                    &dyc[..g.cout * ld]
                };
                matmul(rows, g.cout, ld, &mut dwt, &col, (ld, 1), dyg, (1, ld), true);
            }
            dwt
        })
        .collect();
    let mut dwt = vec![T::zero(); rows * g.cout];
    for part in partials {
        for (d, v) in dwt.iter_mut().zip(part) {
            *d += v;
        }
    }
    let mut dw = vec![T::zero(); g.cout * rows];
    for r in 0..rows {
        for co in 0..g.cout {
            dw[co * rows + r] = dwt[r * g.cout + co];
        }
    }
    dw
}

/// The convolution as a candle op: `x.apply_op2(w, Conv2d { stride, pad })`.
#[derive(Clone, Copy, Debug)]
pub struct Conv2d {
    pub stride: usize,
    pub pad: usize,
}

fn geometry(x: &Layout, w: &Layout, stride: usize, pad: usize) -> candle_core::Result<Geometry> {
    let (b, cin, h, wd) = x.shape().dims4()?;
    let (cout, cin2, k, k2) = w.shape().dims4()?;
    if cin != cin2 || k != k2 || h + 2 * pad < k || wd + 2 * pad < k {
        candle_core::bail!("conv2d: input {:?} and kernel {:?} do not fit", x.shape(), w.shape());
    }
    Ok(Geometry { b, cin, h, w: wd, cout, k, stride, pad })
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "misfit-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = geometry(l1, l2, self.stride, self.pad)?;
        let out = cpu::dispatch2("conv2d", (s1, l1), (s2, l2), |x, w| forward(x, w, &g), |x, w| forward(x, w, &g))?;
        Ok((out, Shape::from((g.b, g.cout, g.ho(), g.wo()))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let g = geometry(x.layout(), w.layout(), self.stride, self.pad)?;
        // Only what autograd will use: no input gradient for the image batch
        // of a training step, no weight gradient for a frozen model (attacks).
        let dx = if x.track_op() { Some(dy.apply_op2_no_bwd(w, &BackwardData(g))?) } else { None };
        let dw = if w.track_op() { Some(x.apply_op2_no_bwd(&dy, &BackwardFilter(g))?) } else { None };
        Ok((dx, dw))
    }
}

/// `dy.apply_op2_no_bwd(w, ..)`: the input gradient.
struct BackwardData(Geometry);

impl CustomOp2 for BackwardData {
    fn name(&self) -> &'static str {
        "misfit-conv2d-backward-data"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        let out = cpu::dispatch2(
            "conv2d backward",
            (s1, l1),
            (s2, l2),
            |dy, w| backward_data(dy, w, &g),
            |dy, w| backward_data(dy, w, &g),
        )?;
        Ok((out, Shape::from((g.b, g.cin, g.h, g.w))))
    }
}

/// `x.apply_op2_no_bwd(dy, ..)`: the weight gradient.
struct BackwardFilter(Geometry);

impl CustomOp2 for BackwardFilter {
    fn name(&self) -> &'static str {
        "misfit-conv2d-backward-filter"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        let out = cpu::dispatch2(
            "conv2d backward",
            (s1, l1),
            (s2, l2),
            |x, dy| backward_filter(x, dy, &g),
            |x, dy| backward_filter(x, dy, &g),
        )?;
        Ok((out, Shape::from((g.cout, g.cin, g.k, g.k))))
    }
}

/// `conv2d(x, w)` with square kernels, no bias, no dilation, one group: the
/// op above on the CPU (f32, f64); elsewhere (CUDA) candle's forward with
/// the matrix-multiply backward of [`super::conv_cuda`].
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, pad: usize) -> candle_core::Result<Tensor> {
    if cpu::takes_cpu_ops(x) {
        x.contiguous()?.apply_op2(&w.contiguous()?, Conv2d { stride, pad })
    } else {
        super::conv_cuda::conv2d(x, w, stride, pad)
    }
}

//! Batch normalisation (optionally fused with ReLU) as candle ops with their
//! own backward, for the CPU: the training-mode op (batch statistics) and the
//! eval-mode op (a per-channel affine map). Written by hand because candle
//! composes it from broadcast and reduction ops, each a pass over memory with
//! an allocation, forward and backward: the largest cost of a training step
//! after the convolutions. Statistics are summed in f64 in a fixed order per
//! channel, so results do not depend on the thread count.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

use super::cpu;
use super::residual::{mask_relu, relu_mask};

/// Lanes of the f64 accumulators: independent partial sums the compiler can
/// vectorise, combined in a fixed order (so sums do not depend on threads).
const LANES: usize = 8;

/// `sum f(v)` over `values`, like [`lane_sum2`].
fn lane_sum<T: WithDType>(values: &[T], f: impl Fn(T) -> f64) -> f64 {
    lane_sum2(values, values, |v, _| f(v))
}

/// `sum f(u, v)` over two slices of one length, in LANES interleaved f64
/// partial sums.
fn lane_sum2<T: WithDType>(us: &[T], vs: &[T], f: impl Fn(T, T) -> f64) -> f64 {
    let mut acc = [0f64; LANES];
    let (cu, cv) = (us.chunks_exact(LANES), vs.chunks_exact(LANES));
    let (tu, tv) = (cu.remainder(), cv.remainder());
    for (a8, b8) in cu.zip(cv) {
        for ((a, &u), &v) in acc.iter_mut().zip(a8).zip(b8) {
            *a += f(u, v);
        }
    }
    for ((a, &u), &v) in acc.iter_mut().zip(tu).zip(tv) {
        *a += f(u, v);
    }
    acc.iter().sum()
}

/// Per-channel batch mean and biased variance of `[b, c, hw]` data (two passes, f64 sums).
pub(super) fn stats<T: WithDType>(x: &[T], b: usize, c: usize, hw: usize) -> Vec<(f64, f64)> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let n = (b * hw) as f64;
            let plane = |i: usize| &x[(i * c + ch) * hw..(i * c + ch + 1) * hw];
            let mean = (0..b).map(|i| lane_sum(plane(i), |v| v.to_f64())).sum::<f64>() / n;
            let var = (0..b).map(|i| lane_sum(plane(i), |v| (v.to_f64() - mean).powi(2))).sum::<f64>() / n;
            (mean, var)
        })
        .collect()
}

/// `y = (x - mean) / sqrt(var + eps) * gamma + beta`, then ReLU if asked; `[b, c, hw]`.
/// The per-element work is one multiply-add in the element type.
pub(super) fn forward<T: WithDType>(
    x: &[T],
    g: &[T],
    bt: &[T],
    dims: (usize, usize, usize),
    eps: f64,
    relu: bool,
    st: &[(f64, f64)],
) -> Vec<T> {
    let (scale, shift) = scale_shift(g, bt, eps, st);
    affine(x, &scale, &shift, dims, relu)
}

/// Per channel the `scale` and `shift` of `y = x * scale + shift` that
/// normalise with batch statistics `st` (mean, biased variance), then
/// apply gamma `g` and beta `bt`; computed in f64, rounded once.
pub(super) fn scale_shift<T: WithDType>(g: &[T], bt: &[T], eps: f64, st: &[(f64, f64)]) -> (Vec<T>, Vec<T>) {
    (0..st.len())
        .map(|ch| {
            let scale = g[ch].to_f64() / (st[ch].1 + eps).sqrt();
            (T::from_f64(scale), T::from_f64(bt[ch].to_f64() - st[ch].0 * scale))
        })
        .unzip()
}

/// The op: `x.apply_op3(gamma, beta, BatchNormTrain { .. })` on `[b, c, h, w]`.
#[derive(Clone, Debug)]
pub struct BatchNormTrain {
    pub eps: f64,
    /// Apply ReLU to the output.
    pub relu: bool,
    /// The batch statistics of the last forward pass, per channel (mean, biased variance).
    pub last_stats: Arc<Mutex<Vec<(f64, f64)>>>,
}

impl BatchNormTrain {
    /// Normalises `[b, c, hw]` x with its batch statistics, which it keeps for the backward pass.
    fn run<T: WithDType>(&self, x: &[T], g: &[T], bt: &[T], dims: (usize, usize, usize)) -> Vec<T> {
        let st = stats(x, dims.0, dims.1, dims.2);
        let y = forward(x, g, bt, dims, self.eps, self.relu, &st);
        *self.last_stats.lock().expect("stats lock") = st;
        y
    }
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "misfit-batch-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l1.shape().dims4()?;
        let dims = (b, c, h * w);
        let out = cpu::dispatch3(
            "batch norm",
            (s1, l1),
            (s2, l2),
            (s3, l3),
            |x, g, bt| self.run(x, g, bt, dims),
            |x, g, bt| self.run(x, g, bt, dims),
        )?;
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        g: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        // Masking by the ReLU output needs the result; pass it as the third operand.
        let dx = x.apply_op3_no_bwd(
            &dy,
            &if self.relu { res.clone() } else { dy.clone() },
            &Backward {
                eps: self.eps,
                relu: self.relu,
                gamma: g.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?,
                stats: self.last_stats.lock().expect("stats lock").clone(),
            },
        )?;
        let c = x.dim(1)?;
        // dx holds [b, c, h, w] followed by dgamma [c] and dbeta [c].
        let n = x.elem_count();
        let flat = dx.flatten_all()?;
        let dxx = flat.narrow(0, 0, n)?.reshape(x.shape())?;
        let dg = flat.narrow(0, n, c)?;
        let db = flat.narrow(0, n + c, c)?;
        Ok((Some(dxx), Some(dg), Some(db)))
    }
}

/// `x.apply_op3_no_bwd(dy, y_or_dy, ..)`: `[dx..., dgamma..., dbeta...]` flattened.
struct Backward {
    eps: f64,
    relu: bool,
    /// Per-channel gamma.
    gamma: Vec<f64>,
    /// The forward pass's batch statistics per channel (mean, biased variance).
    stats: Vec<(f64, f64)>,
}

/// Per channel the sums of dy and of dy * x (f64), then
/// `dx = k (dy - mean(dy)) - k xhat mean(dy xhat)` as one multiply-add chain
/// per element in the element type. `dy` is first masked by the ReLU output
/// when fused, into the output buffer, branch-free (the mask is data, a
/// branch per element would be mispredicted half the time).
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: WithDType>(
    x: &[T],
    dy: &[T],
    y: &[T],
    gamma: &[f64],
    dims: (usize, usize, usize),
    eps: f64,
    relu: bool,
    st: &[(f64, f64)],
) -> Vec<T> {
    let (b, c, hw) = dims;
    let n = (b * hw) as f64;
    // dx <- dy, masked where the ReLU output is 0 (built without zero-filling first).
    // SAFETY: each image's chunk is written whole.
    let mut out = unsafe {
        cpu::par_build_with_capacity(x.len(), x.len() + 2 * c, c * hw, |start, d| {
            let (g, yv) = (&dy[start..][..d.len()], &y[start..][..d.len()]);
            if relu {
                for ((d, &g), &yv) in d.iter_mut().zip(g).zip(yv) {
                    d.write(mask_relu(g, yv));
                }
            } else {
                for (d, &g) in d.iter_mut().zip(g) {
                    d.write(g);
                }
            }
        })
    };
    out.resize(x.len() + 2 * c, T::zero());
    let (dx, rest) = out.split_at_mut(x.len());
    let g: &[T] = dx;
    // Per channel: sum of dy and sum of dy * xhat.
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mean, var) = st[ch];
            let (mut s, mut sxy) = (0.0, 0.0);
            for i in 0..b {
                let plane = (i * c + ch) * hw..(i * c + ch + 1) * hw;
                s += lane_sum(&g[plane.clone()], |v| v.to_f64());
                sxy += lane_sum2(&g[plane.clone()], &x[plane], |u, v| (u * v).to_f64());
            }
            (s, (sxy - mean * s) / (var + eps).sqrt())
        })
        .collect();
    let coef: Vec<(T, T, T, T)> = (0..c)
        .map(|ch| {
            let (mean, var) = st[ch];
            let inv = 1.0 / (var + eps).sqrt();
            let k = gamma[ch] * inv;
            let (s, sx) = sums[ch];
            // dx = k dy + a (x - mean) + b0
            (T::from_f64(k), T::from_f64(-k * inv * sx / n), T::from_f64(mean), T::from_f64(-k * s / n))
        })
        .collect();
    dx.par_chunks_mut(c * hw).zip(x.par_chunks(c * hw)).for_each(|(d, xi)| {
        for ch in 0..c {
            let (k, a, mean, b0) = coef[ch];
            for (o, &xv) in d[ch * hw..(ch + 1) * hw].iter_mut().zip(&xi[ch * hw..(ch + 1) * hw]) {
                *o = k * *o + a * (xv - mean) + b0;
            }
        }
    });
    for ch in 0..c {
        rest[ch] = T::from_f64(sums[ch].1);
        rest[c + ch] = T::from_f64(sums[ch].0);
    }
    out
}

impl CustomOp3 for Backward {
    fn name(&self) -> &'static str {
        "misfit-batch-norm-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l1.shape().dims4()?;
        let dims = (b, c, h * w);
        let (eps, relu, gamma, st) = (self.eps, self.relu, &self.gamma, &self.stats);
        let out = cpu::dispatch3(
            "batch norm backward",
            (s1, l1),
            (s2, l2),
            (s3, l3),
            |x, dy, y| backward(x, dy, y, gamma, dims, eps, relu, st),
            |x, dy, y| backward(x, dy, y, gamma, dims, eps, relu, st),
        )?;
        Ok((out, Shape::from(b * c * h * w + 2 * c)))
    }
}

/// Eval-mode batch norm as one op: `y = x * scale[c] + shift[c]`, then ReLU
/// if asked, on `[b, c, h, w]`; `x.apply_op3(scale, shift, ChannelAffine { relu })`.
/// The caller folds the running statistics into `scale` and `shift` (`[c]`
/// tensors, so gradients reach gamma and beta through candle's own ops).
/// Replaces four composed passes (subtract, multiply, add, ReLU) forward,
/// and their allocating backward, in inference, attacks and saliency.
#[derive(Clone, Copy, Debug)]
pub struct ChannelAffine {
    pub relu: bool,
}

/// `[b, c, hw]` x, `[c]` scale and shift.
pub(super) fn affine<T: WithDType>(
    x: &[T],
    scale: &[T],
    shift: &[T],
    dims: (usize, usize, usize),
    relu: bool,
) -> Vec<T> {
    let (_, c, hw) = dims;
    // SAFETY: each image's chunk is written whole, channel by channel.
    unsafe {
        cpu::par_build(x.len(), c * hw, |start, yi| {
            let xi = &x[start..][..yi.len()];
            for ch in 0..c {
                let (s, t) = (scale[ch], shift[ch]);
                let out = yi[ch * hw..(ch + 1) * hw].iter_mut().zip(&xi[ch * hw..(ch + 1) * hw]);
                if relu {
                    for (o, &v) in out {
                        let r = v * s + t;
                        o.write(if r > T::zero() { r } else { T::zero() });
                    }
                } else {
                    for (o, &v) in out {
                        o.write(v * s + t);
                    }
                }
            }
        })
    }
}

impl CustomOp3 for ChannelAffine {
    fn name(&self) -> &'static str {
        "misfit-channel-affine"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l1.shape().dims4()?;
        if l2.shape().elem_count() != c || l3.shape().elem_count() != c {
            candle_core::bail!("channel affine: {c} channels, scale {:?}, shift {:?}", l2.shape(), l3.shape());
        }
        let (dims, relu) = ((b, c, h * w), self.relu);
        let out = cpu::dispatch3(
            "channel affine",
            (s1, l1),
            (s2, l2),
            (s3, l3),
            |x, s, t| affine(x, s, t, dims, relu),
            |x, s, t| affine(x, s, t, dims, relu),
        )?;
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        shift: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = if self.relu { relu_mask(&dy.contiguous()?, res)? } else { dy.contiguous()? };
        let dx = if x.track_op() {
            // dx = dy * scale per channel: this op with a zero shift.
            Some(g.apply_op3_no_bwd(&scale.detach(), &scale.detach().zeros_like()?, &ChannelAffine { relu: false })?)
        } else {
            None
        };
        let dscale = if scale.track_op() { Some((&g * x)?.sum((0, 2, 3))?) } else { None };
        let dshift = if shift.track_op() { Some(g.sum((0, 2, 3))?) } else { None };
        Ok((dx, dscale, dshift))
    }
}

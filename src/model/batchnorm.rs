//! Training-mode batch normalisation (optionally fused with ReLU) as one
//! candle op with its own backward, for the CPU. Written by hand because
//! candle composes it from broadcast and reduction ops, each a pass over
//! memory with an allocation, forward and backward: the largest cost of a
//! training step after the convolutions. Statistics are summed in f64 in a
//! fixed order per channel, so results do not depend on the thread count.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

use super::conv::Elem;

/// Per-channel batch mean and biased variance of `[b, c, hw]` data.
fn stats<T: Elem + Into<f64>>(x: &[T], b: usize, c: usize, hw: usize) -> Vec<(f64, f64)> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let n = (b * hw) as f64;
            let plane = |i: usize| &x[(i * c + ch) * hw..(i * c + ch + 1) * hw];
            let mean = (0..b).map(|i| plane(i).iter().map(|&v| v.into()).sum::<f64>()).sum::<f64>() / n;
            let var = (0..b).map(|i| plane(i).iter().map(|&v| (v.into() - mean).powi(2)).sum::<f64>()).sum::<f64>() / n;
            (mean, var)
        })
        .collect()
}

/// Conversion back from f64 for the element types used.
pub trait FromF64 {
    fn from_f64(v: f64) -> Self;
}
impl FromF64 for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}
impl FromF64 for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// `y = (x - mean) / sqrt(var + eps) * gamma + beta`, then ReLU if asked; `[b, c, hw]`.
fn forward<T: Elem + Into<f64> + FromF64>(
    x: &[T],
    g: &[T],
    bt: &[T],
    dims: (usize, usize, usize),
    eps: f64,
    relu: bool,
    st: &[(f64, f64)],
) -> Vec<T> {
    let (_, c, hw) = dims;
    let coef: Vec<(f64, f64)> = (0..c)
        .map(|ch| {
            let scale = g[ch].into() / (st[ch].1 + eps).sqrt();
            (scale, bt[ch].into() - st[ch].0 * scale)
        })
        .collect();
    let mut y = vec![T::default(); x.len()];
    y.par_chunks_mut(c * hw).zip(x.par_chunks(c * hw)).for_each(|(yi, xi)| {
        for ch in 0..c {
            let (s, t) = coef[ch];
            for (o, &v) in yi[ch * hw..(ch + 1) * hw].iter_mut().zip(&xi[ch * hw..(ch + 1) * hw]) {
                let r = v.into() * s + t;
                *o = T::from_f64(if relu && r < 0.0 { 0.0 } else { r });
            }
        }
    });
    y
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

fn slice<'a, T>(data: &'a [T], l: &Layout) -> candle_core::Result<&'a [T]> {
    super::conv::contiguous(data, l, "a batch-norm operand")
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
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(g), CpuStorage::F32(bt)) => {
                let x = slice(x, l1)?;
                let st = stats(x, b, c, h * w);
                let y = forward(x, slice(g, l2)?, slice(bt, l3)?, dims, self.eps, self.relu, &st);
                *self.last_stats.lock().expect("stats lock") = st;
                CpuStorage::F32(y)
            }
            (CpuStorage::F64(x), CpuStorage::F64(g), CpuStorage::F64(bt)) => {
                let x = slice(x, l1)?;
                let st = stats(x, b, c, h * w);
                let y = forward(x, slice(g, l2)?, slice(bt, l3)?, dims, self.eps, self.relu, &st);
                *self.last_stats.lock().expect("stats lock") = st;
                CpuStorage::F64(y)
            }
            _ => candle_core::bail!("batch norm: f32 or f64 operands of one type expected"),
        };
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
            &Backward { eps: self.eps, relu: self.relu, gamma: g.clone() },
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
    gamma: Tensor,
}

fn backward<T: Elem + Into<f64> + FromF64>(
    x: &[T],
    dy: &[T],
    y: &[T],
    gamma: &[T],
    dims: (usize, usize, usize),
    eps: f64,
    relu: bool,
) -> Vec<T> {
    let (b, c, hw) = dims;
    let n = (b * hw) as f64;
    let st = stats(x, b, c, hw);
    let g = |i: usize| -> f64 {
        if relu && y[i].into() <= 0.0 {
            0.0
        } else {
            dy[i].into()
        }
    };
    // Per channel: sum of dy and of dy * xhat.
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mean, var) = st[ch];
            let inv = 1.0 / (var + eps).sqrt();
            let (mut s, mut sx) = (0.0, 0.0);
            for i in 0..b {
                let base = (i * c + ch) * hw;
                for j in base..base + hw {
                    let d = g(j);
                    s += d;
                    sx += d * (x[j].into() - mean) * inv;
                }
            }
            (s, sx)
        })
        .collect();
    let mut out = vec![T::default(); x.len() + 2 * c];
    let (dx, rest) = out.split_at_mut(x.len());
    dx.par_chunks_mut(c * hw).enumerate().for_each(|(i, d)| {
        for ch in 0..c {
            let (mean, var) = st[ch];
            let inv = 1.0 / (var + eps).sqrt();
            let k = gamma[ch].into() * inv;
            let (s, sx) = sums[ch];
            let base = (i * c + ch) * hw;
            for j in 0..hw {
                let xhat = (x[base + j].into() - mean) * inv;
                d[ch * hw + j] = T::from_f64(k * (g(base + j) - s / n - xhat * sx / n));
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
        let gamma = self.gamma.contiguous()?;
        let (gs, gl) = gamma.storage_and_layout();
        let out = match (s1, s2, s3, &*gs) {
            (
                CpuStorage::F32(x),
                CpuStorage::F32(dy),
                CpuStorage::F32(y),
                candle_core::Storage::Cpu(CpuStorage::F32(g)),
            ) => CpuStorage::F32(backward(
                slice(x, l1)?,
                slice(dy, l2)?,
                slice(y, l3)?,
                slice(g, gl)?,
                dims,
                self.eps,
                self.relu,
            )),
            (
                CpuStorage::F64(x),
                CpuStorage::F64(dy),
                CpuStorage::F64(y),
                candle_core::Storage::Cpu(CpuStorage::F64(g)),
            ) => CpuStorage::F64(backward(
                slice(x, l1)?,
                slice(dy, l2)?,
                slice(y, l3)?,
                slice(g, gl)?,
                dims,
                self.eps,
                self.relu,
            )),
            _ => candle_core::bail!("batch norm backward: f32 or f64 CPU operands of one type expected"),
        };
        Ok((out, Shape::from(b * c * h * w + 2 * c)))
    }
}

//! A residual block, `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`,
//! as one candle op on the CPU, forward and backward, over the kernels of
//! [`super::conv`], [`super::batchnorm`] and [`super::residual`]: in
//! training ([`BlockTrain`]: batch statistics, every gradient) and in eval
//! mode with frozen weights ([`BlockEval`]: running statistics, the input
//! gradient only, as attacks need). Written by hand because,
//! as five candle ops, autograd stores every gradient between them by
//! zero-filling a tensor and adding the gradient into it (candle's
//! `GradStore::or_insert`): a zero pass and an add pass over each
//! activation of the block, 11 per block, which profiles put at a tenth of
//! a training step. As one op, the gradients inside the block are handed
//! from kernel to kernel; the second batch norm, the residual sum and the
//! ReLU are one pass forward.
//!
//! The arithmetic is the ops' own, in the same order: the same values as
//! the five ops (zeros may differ in sign), and bit for bit the same
//! whatever the number of threads.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::any::Any;
use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use super::conv::{self, Element, Geometry};
pub use super::Shortcut;
use super::{batchnorm, cpu, residual};

/// Per-channel batch statistics (mean, biased variance) of the block's two
/// batch norms in its last forward pass.
pub type Stats = (Vec<(f64, f64)>, Vec<(f64, f64)>);

/// The op: `x.apply_op2(params, BlockTrain::new(..))` on `[b, cin, h, w]` x,
/// where `params` is the 1-D concatenation of conv1's `[cout, cin, 3, 3]`
/// weight, bn1's `[cout]` gamma and beta, conv2's `[cout, cout, 3, 3]`
/// weight, bn2's gamma and beta; `[b, cout, ho, wo]` output.
pub struct BlockTrain {
    spec: Spec,
    eps: f64,
    /// The batch statistics of the last forward pass (the caller updates
    /// the running statistics from them).
    pub stats: Arc<Mutex<Stats>>,
    /// What the backward pass needs from the forward pass (a [`Saved`] of the element type).
    saved: Arc<Mutex<Option<Box<dyn Any + Send>>>>,
}

/// The forward pass's intermediates, kept for the backward pass.
struct Saved<T> {
    w1: Vec<T>,
    w2: Vec<T>,
    gamma1: Vec<f64>,
    gamma2: Vec<f64>,
    /// conv1's output, bn1's output (after ReLU), conv2's output: `[b, cout, ho, wo]`.
    c1: Vec<T>,
    h: Vec<T>,
    c2: Vec<T>,
}

/// What both block ops are built for: `cout` output channels, conv1's
/// `stride` (1, or 2 with option A) and the shortcut.
#[derive(Clone, Copy, Debug)]
struct Spec {
    cout: usize,
    stride: usize,
    shortcut: Shortcut,
}

impl BlockTrain {
    /// A block of `cout` output channels, conv1's `stride` (1, or 2 with
    /// option A), batch-norm epsilon `eps`.
    pub fn new(cout: usize, stride: usize, shortcut: Shortcut, eps: f64) -> BlockTrain {
        BlockTrain {
            spec: Spec { cout, stride, shortcut },
            eps,
            stats: Arc::new(Mutex::new((Vec::new(), Vec::new()))),
            saved: Arc::new(Mutex::new(None)),
        }
    }
}

impl Spec {
    /// Length of the concatenated parameters for `cin` input channels.
    fn params_len(&self, cin: usize) -> usize {
        let c = self.cout;
        c * cin * 9 + 2 * c + c * c * 9 + 2 * c
    }

    /// conv1's and conv2's geometry for `[b, cin, h, w]` input.
    fn geometries(&self, x: &Layout, params: &Layout) -> candle_core::Result<(Geometry, Geometry)> {
        let (b, cin, h, w) = x.shape().dims4()?;
        let c = self.cout;
        let g1 = Geometry { b, cin, h, w, cout: c, k: 3, stride: self.stride, pad: 1 };
        let g2 = Geometry { b, cin: c, h: g1.ho(), w: g1.wo(), cout: c, k: 3, stride: 1, pad: 1 };
        let fits = match self.shortcut {
            Shortcut::Identity => cin == c && self.stride == 1,
            Shortcut::A(pad) => cin + 2 * pad == c && self.stride == 2,
        };
        if !fits || params.shape().elem_count() != self.params_len(cin) || h == 0 || w == 0 {
            candle_core::bail!(
                "residual block: input {:?}, {c} output channels, stride {}, {:?} shortcut, {} parameters (expected {})",
                x.shape(),
                self.stride,
                self.shortcut,
                params.shape().elem_count(),
                self.params_len(cin)
            );
        }
        Ok((g1, g2))
    }
}

impl BlockTrain {
    fn forward<T: Element>(&self, x: &[T], p: &[T], g1: &Geometry, g2: &Geometry) -> Vec<T> {
        let c = self.spec.cout;
        let [w1, gm1, bt1, w2, gm2, bt2] = split_params(p, g1);
        let hw = g2.h * g2.w;
        let dims = (g1.b, c, hw);
        let c1 = conv::forward(x, w1, g1);
        let st1 = batchnorm::stats(&c1, g1.b, c, hw);
        let h = batchnorm::forward(&c1, gm1, bt1, dims, self.eps, true, &st1);
        let c2 = conv::forward(&h, w2, g2);
        let st2 = batchnorm::stats(&c2, g1.b, c, hw);
        let (scale, shift) = batchnorm::scale_shift(gm2, bt2, self.eps, &st2);
        let out = bn_add_relu(&c2, &scale, &shift, x, self.spec.shortcut, g1, g2);
        let f64s = |v: &[T]| v.iter().map(|v| v.to_f64()).collect::<Vec<f64>>();
        let saved = Saved { w1: w1.to_vec(), w2: w2.to_vec(), gamma1: f64s(gm1), gamma2: f64s(gm2), c1, h, c2 };
        *self.saved.lock().expect("block lock") = Some(Box::new(saved));
        *self.stats.lock().expect("block lock") = (st1, st2);
        out
    }
}

impl CustomOp2 for BlockTrain {
    fn name(&self) -> &'static str {
        "misfit-residual-block"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (g1, g2) = self.spec.geometries(l1, l2)?;
        let out = cpu::dispatch2(
            "residual block",
            (s1, l1),
            (s2, l2),
            |x, p| self.forward(x, p, &g1, &g2),
            |x, p| self.forward(x, p, &g1, &g2),
        )?;
        Ok((out, Shape::from((g1.b, self.spec.cout, g2.h, g2.w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (g1, g2) = self.spec.geometries(x.layout(), params.layout())?;
        let stats = self.stats.lock().expect("block lock").clone();
        let op = Backward {
            g1,
            g2,
            shortcut: self.spec.shortcut,
            eps: self.eps,
            dx: x.track_op(),
            saved: self.saved.clone(),
            stats,
            dparams: Mutex::new(None),
        };
        let dx = x.apply_op3_no_bwd(&dy.contiguous()?, res, &op)?;
        let dparams = match (op.dparams.into_inner().expect("block lock"), x.dtype()) {
            (Some(DParams::F32(v)), DType::F32) => Tensor::from_vec(v, params.shape(), x.device())?,
            (Some(DParams::F64(v)), DType::F64) => Tensor::from_vec(v, params.shape(), x.device())?,
            _ => candle_core::bail!("residual block backward: no parameter gradient of {:?}", x.dtype()),
        };
        Ok((op.dx.then_some(dx), params.track_op().then_some(dparams)))
    }
}

/// The parameter gradient, in the layout of the concatenated parameters.
enum DParams {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// `x.apply_op3_no_bwd(dy, y, ..)`: the input gradient (empty when `dx` is
/// false), leaving the parameter gradient in `dparams`.
struct Backward {
    g1: Geometry,
    g2: Geometry,
    shortcut: Shortcut,
    eps: f64,
    dx: bool,
    saved: Arc<Mutex<Option<Box<dyn Any + Send>>>>,
    stats: Stats,
    dparams: Mutex<Option<DParams>>,
}

/// The concatenated parameters `[w1, a1, b1, w2, a2, b2]` of a block whose
/// conv1 is `g1` (a: gamma or scale, b: beta or shift, `[cout]` each).
fn split_params<'a, T>(p: &'a [T], g1: &Geometry) -> [&'a [T]; 6] {
    let c = g1.cout;
    let (w1, p) = p.split_at(c * g1.cin * 9);
    let (a1, p) = p.split_at(c);
    let (b1, p) = p.split_at(c);
    let (w2, p) = p.split_at(c * c * 9);
    let (a2, b2) = p.split_at(c);
    [w1, a1, b1, w2, a2, b2]
}

/// The block's output `relu(c2 * scale + shift + shortcut(x))` per channel
/// of conv2's output `c2`: the batch norm's `v * scale + shift`, then the
/// residual op's sum and ReLU.
fn bn_add_relu<T: Element>(
    c2: &[T],
    scale: &[T],
    shift: &[T],
    x: &[T],
    shortcut: Shortcut,
    g1: &Geometry,
    g2: &Geometry,
) -> Vec<T> {
    let (c, hw) = (g2.cout, g2.h * g2.w);
    let short_a;
    let short: &[T] = match shortcut {
        Shortcut::Identity => x,
        Shortcut::A(pad) => {
            short_a = residual::shortcut_forward(x, (g1.b, g1.cin, g1.h, g1.w, g2.h, g2.w), pad);
            &short_a
        }
    };
    // SAFETY: each image's chunk is written whole, channel by channel.
    unsafe {
        cpu::par_build(c2.len(), c * hw, |start, o| {
            for (ch, o) in o.chunks_exact_mut(hw).enumerate() {
                let (s, t, at) = (scale[ch], shift[ch], start + ch * hw);
                for ((o, &v), &r) in o.iter_mut().zip(&c2[at..at + hw]).zip(&short[at..at + hw]) {
                    o.write(residual::add_relu(v * s + t, r));
                }
            }
        })
    }
}

/// Parallel chunks of the element-wise gradient sum.
const CHUNK: usize = 1 << 15;

/// Adds the shortcut's share of the input gradient into `dx`: `dy` masked
/// by the output `y`'s ReLU, through option A's subsampling where it is one
/// (conv1's geometry `g1`, conv2's `g2`).
fn add_shortcut_gradient<T: Element>(
    dx: &mut [T],
    dy: &[T],
    y: &[T],
    shortcut: Shortcut,
    g1: &Geometry,
    g2: &Geometry,
) {
    match shortcut {
        Shortcut::Identity => {
            dx.par_chunks_mut(CHUNK).zip(dy.par_chunks(CHUNK).zip(y.par_chunks(CHUNK))).for_each(|(d, (g, y))| {
                for ((d, &g), &y) in d.iter_mut().zip(g).zip(y) {
                    *d += residual::mask_relu(g, y);
                }
            })
        }
        Shortcut::A(pad) => {
            let masked: Vec<T> = dy.iter().zip(y).map(|(&g, &y)| residual::mask_relu(g, y)).collect();
            let short = residual::shortcut_backward(&masked, (g1.b, g1.cin, g1.h, g1.w, g2.h, g2.w), pad);
            dx.par_chunks_mut(CHUNK).zip(short.par_chunks(CHUNK)).for_each(|(d, r)| {
                for (d, &r) in d.iter_mut().zip(r) {
                    *d += r;
                }
            })
        }
    }
}

impl Backward {
    /// dy is the gradient of the block's output `y`; returns dx and the parameter gradient.
    fn run<T: Element>(&self, x: &[T], dy: &[T], y: &[T]) -> candle_core::Result<(Vec<T>, Vec<T>)> {
        let guard = self.saved.lock().expect("block lock");
        let Some(s) = guard.as_ref().and_then(|s| s.downcast_ref::<Saved<T>>()) else {
            candle_core::bail!("residual block backward: no forward pass of this element type to go back through");
        };
        let (g1, g2, c) = (&self.g1, &self.g2, self.g2.cout);
        let (n, dims) = (s.c2.len(), (g1.b, c, g2.h * g2.w));
        // bn2's input gradient, from dy masked by the output's ReLU.
        let bn2 = batchnorm::backward(&s.c2, dy, y, &s.gamma2, dims, self.eps, true, &self.stats.1);
        let dc2 = &bn2[..n];
        let dh = conv::backward_data(dc2, &s.w2, g2);
        let dw2 = conv::backward_filter(&s.h, dc2, g2);
        let bn1 = batchnorm::backward(&s.c1, &dh, &s.h, &s.gamma1, dims, self.eps, true, &self.stats.0);
        drop(dh);
        let dc1 = &bn1[..n];
        let dw1 = conv::backward_filter(x, dc1, g1);
        let mut dparams = Vec::with_capacity(dw1.len() + dw2.len() + 4 * c);
        dparams.extend_from_slice(&dw1);
        dparams.extend_from_slice(&bn1[n..]);
        dparams.extend_from_slice(&dw2);
        dparams.extend_from_slice(&bn2[n..]);
        if !self.dx {
            return Ok((Vec::new(), dparams));
        }
        // conv1's input gradient plus the shortcut's.
        let mut dx = conv::backward_data(dc1, &s.w1, g1);
        add_shortcut_gradient(&mut dx, dy, y, self.shortcut, g1, g2);
        Ok((dx, dparams))
    }

    /// [`Backward::run`] on one element type: dx returned, the parameter
    /// gradient stored in `dparams` (wrapped by `wrap`), an error kept in `failed`.
    fn run_into<T: Element>(
        &self,
        (x, dy, y): (&[T], &[T], &[T]),
        wrap: impl Fn(Vec<T>) -> DParams,
        failed: &RefCell<Option<candle_core::Error>>,
    ) -> Vec<T> {
        match self.run(x, dy, y) {
            Ok((dx, dp)) => {
                *self.dparams.lock().expect("block lock") = Some(wrap(dp));
                dx
            }
            Err(e) => {
                *failed.borrow_mut() = Some(e);
                Vec::new()
            }
        }
    }
}

impl CustomOp3 for Backward {
    fn name(&self) -> &'static str {
        "misfit-residual-block-backward"
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
        let failed = RefCell::new(None);
        let out = cpu::dispatch3(
            "residual block backward",
            (s1, l1),
            (s2, l2),
            (s3, l3),
            |x, dy, y| self.run_into((x, dy, y), DParams::F32, &failed),
            |x, dy, y| self.run_into((x, dy, y), DParams::F64, &failed),
        );
        if let Some(e) = failed.into_inner() {
            return Err(e);
        }
        let g = &self.g1;
        let shape = if self.dx { Shape::from((g.b, g.cin, g.h, g.w)) } else { Shape::from(0) };
        Ok((out?, shape))
    }
}

/// The eval-mode block for gradients with respect to the input only (a
/// frozen model in attacks): `x.apply_op2(params, BlockEval::new(..))`,
/// `params` the 1-D concatenation of conv1's weight, bn1's `[cout]` scale
/// and shift (running statistics folded in, as the eval-mode batch-norm op
/// takes them), conv2's weight, bn2's scale and shift. The same arithmetic
/// as the five eval-mode ops, forward and backward; no parameter gradient
/// (callers use it only where no parameter tracks one).
pub struct BlockEval {
    spec: Spec,
    /// bn1's output (after ReLU) and the parameters, of the last forward pass.
    saved: Arc<Mutex<Option<Box<dyn Any + Send>>>>,
}

/// What [`BlockEval`]'s backward pass needs: weights, scales, bn1's output.
struct SavedEval<T> {
    w1: Vec<T>,
    w2: Vec<T>,
    scale1: Vec<T>,
    scale2: Vec<T>,
    h: Vec<T>,
}

impl BlockEval {
    /// As [`BlockTrain::new`].
    pub fn new(cout: usize, stride: usize, shortcut: Shortcut) -> BlockEval {
        BlockEval { spec: Spec { cout, stride, shortcut }, saved: Arc::new(Mutex::new(None)) }
    }

    fn forward<T: Element>(&self, x: &[T], p: &[T], g1: &Geometry, g2: &Geometry) -> Vec<T> {
        let [w1, s1, t1, w2, s2, t2] = split_params(p, g1);
        let dims = (g1.b, self.spec.cout, g2.h * g2.w);
        let h = batchnorm::affine(&conv::forward(x, w1, g1), s1, t1, dims, true);
        let out = bn_add_relu(&conv::forward(&h, w2, g2), s2, t2, x, self.spec.shortcut, g1, g2);
        let saved = SavedEval { w1: w1.to_vec(), w2: w2.to_vec(), scale1: s1.to_vec(), scale2: s2.to_vec(), h };
        *self.saved.lock().expect("block lock") = Some(Box::new(saved));
        out
    }
}

impl CustomOp2 for BlockEval {
    fn name(&self) -> &'static str {
        "misfit-residual-block-eval"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (g1, g2) = self.spec.geometries(l1, l2)?;
        let out = cpu::dispatch2(
            "residual block (eval)",
            (s1, l1),
            (s2, l2),
            |x, p| self.forward(x, p, &g1, &g2),
            |x, p| self.forward(x, p, &g1, &g2),
        )?;
        Ok((out, Shape::from((g1.b, self.spec.cout, g2.h, g2.w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        if params.track_op() {
            candle_core::bail!("residual block (eval): no parameter gradient; use the layer-by-layer ops");
        }
        if !x.track_op() {
            return Ok((None, None));
        }
        let (g1, g2) = self.spec.geometries(x.layout(), params.layout())?;
        let op = BackwardEval { g1, g2, shortcut: self.spec.shortcut, saved: self.saved.clone() };
        Ok((Some(dy.contiguous()?.apply_op2_no_bwd(res, &op)?), None))
    }
}

/// `dy.apply_op2_no_bwd(y, ..)`: [`BlockEval`]'s input gradient.
struct BackwardEval {
    g1: Geometry,
    g2: Geometry,
    shortcut: Shortcut,
    saved: Arc<Mutex<Option<Box<dyn Any + Send>>>>,
}

impl BackwardEval {
    fn run<T: Element>(&self, dy: &[T], y: &[T]) -> candle_core::Result<Vec<T>> {
        let guard = self.saved.lock().expect("block lock");
        let Some(s) = guard.as_ref().and_then(|s| s.downcast_ref::<SavedEval<T>>()) else {
            candle_core::bail!("residual block backward: no forward pass of this element type to go back through");
        };
        let (g1, g2, c) = (&self.g1, &self.g2, self.g2.cout);
        let hw = g2.h * g2.w;
        // The eval-mode batch-norm op's backward: dy masked by its ReLU
        // output where fused, times the scale (plus a zero shift, as it runs).
        let scaled = |g: &mut [T], mask: &[T], scale: &[T]| {
            g.par_chunks_mut(c * hw).zip(mask.par_chunks(c * hw)).for_each(|(g, m)| {
                for ch in 0..c {
                    for (g, &m) in g[ch * hw..(ch + 1) * hw].iter_mut().zip(&m[ch * hw..(ch + 1) * hw]) {
                        *g = residual::mask_relu(*g, m) * scale[ch] + T::zero();
                    }
                }
            })
        };
        // bn2's input gradient: dy masked by the output's ReLU, times bn2's scale.
        let mut dc2 = dy.to_vec();
        scaled(&mut dc2, y, &s.scale2);
        let mut dh = conv::backward_data(&dc2, &s.w2, g2);
        drop(dc2);
        scaled(&mut dh, &s.h, &s.scale1);
        let mut dx = conv::backward_data(&dh, &s.w1, g1);
        add_shortcut_gradient(&mut dx, dy, y, self.shortcut, g1, g2);
        Ok(dx)
    }

    fn run_into<T: Element>(&self, dy: &[T], y: &[T], failed: &RefCell<Option<candle_core::Error>>) -> Vec<T> {
        self.run(dy, y).unwrap_or_else(|e| {
            *failed.borrow_mut() = Some(e);
            Vec::new()
        })
    }
}

impl CustomOp2 for BackwardEval {
    fn name(&self) -> &'static str {
        "misfit-residual-block-eval-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let failed = RefCell::new(None);
        let out = cpu::dispatch2(
            "residual block backward",
            (s1, l1),
            (s2, l2),
            |dy, y| self.run_into(dy, y, &failed),
            |dy, y| self.run_into(dy, y, &failed),
        );
        if let Some(e) = failed.into_inner() {
            return Err(e);
        }
        let g = &self.g1;
        Ok((out?, Shape::from((g.b, g.cin, g.h, g.w))))
    }
}

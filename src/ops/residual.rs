//! The two element-wise steps around a residual block, as candle ops with
//! their own backward for the CPU: the block's output `relu(out + shortcut)`
//! and the parameter-free "option A" shortcut (subsample by 2, zero-pad
//! channels). Written by hand because candle composes them from add, relu,
//! reshape, narrow and pad, and its autograd runs each backward as several
//! allocating passes (relu's alone: zeros, compare, cast, multiply); these are
//! one pass each way. Pure per-element maps, so results do not depend on the
//! thread count.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::cpu::{self, contiguous};

/// Elements per parallel task of the element-wise maps.
const CHUNK: usize = 1 << 15;

/// `f(a[i], b[i])` for every i, in parallel chunks.
fn map2<T: WithDType>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync + Send) -> Vec<T> {
    assert_eq!(a.len(), b.len());
    // SAFETY: each chunk writes every one of its elements.
    unsafe {
        cpu::par_build(a.len(), CHUNK, |start, o| {
            let (a, b) = (&a[start..][..o.len()], &b[start..][..o.len()]);
            for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                o.write(f(a, b));
            }
        })
    }
}

/// A per-element map over two operands of one shape, as a candle op's output.
fn elementwise(
    what: &str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    // Generic (each kernel its own zero-sized fn item), not `fn` pointers:
    // an indirect call per element would keep the loop from vectorising.
    f: impl Fn(f32, f32) -> f32 + Sync,
    g: impl Fn(f64, f64) -> f64 + Sync,
) -> candle_core::Result<(CpuStorage, Shape)> {
    if l1.shape() != l2.shape() {
        candle_core::bail!("{what}: shapes {:?} and {:?} differ", l1.shape(), l2.shape());
    }
    let out = cpu::dispatch2(what, (s1, l1), (s2, l2), |a, b| map2(a, b, &f), |a, b| map2(a, b, &g))?;
    Ok((out, l1.shape().clone()))
}

pub(crate) fn add_relu<T: WithDType>(a: T, b: T) -> T {
    let s = a + b;
    if s > T::zero() {
        s
    } else {
        T::zero()
    }
}

/// `dy` where the ReLU output `y` is positive, else 0.
pub(super) fn mask_relu<T: WithDType>(dy: T, y: T) -> T {
    if y > T::zero() {
        dy
    } else {
        T::zero()
    }
}

/// `a.apply_op2(b, AddRelu)`: `relu(a + b)`, the end of a residual block.
#[derive(Clone, Copy, Debug)]
pub struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "misfit-add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        elementwise("add-relu", (s1, l1), (s2, l2), add_relu, add_relu)
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // Both summands get the same gradient: dy where the output is positive.
        let g = relu_mask(&dy.contiguous()?, res)?;
        Ok((a.track_op().then(|| g.clone()), b.track_op().then_some(g)))
    }
}

/// `dy.apply_op2_no_bwd(y, ReluMask)`: dy where y > 0, else 0.
struct ReluMask;

impl CustomOp2 for ReluMask {
    fn name(&self) -> &'static str {
        "misfit-relu-mask"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        elementwise("relu mask", (s1, l1), (s2, l2), mask_relu, mask_relu)
    }
}

/// `dy` where `y > 0`, else 0 (the backward of a ReLU whose output is `y`), on the CPU.
pub(crate) fn relu_mask(dy: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    dy.apply_op2_no_bwd(y, &ReluMask)
}

/// `relu(a + b)` on any device: the fused op on the CPU, candle's ops elsewhere.
pub fn add_relu_tensors(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    if cpu::takes_cpu_ops(a) {
        a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)
    } else {
        (a + b)?.relu()
    }
}

/// The option-A shortcut on any device: the op below on the CPU, candle's
/// reshape, narrow and pad elsewhere.
pub fn shortcut_a(x: &Tensor, pad: usize) -> candle_core::Result<Tensor> {
    if cpu::takes_cpu_ops(x) {
        return x.contiguous()?.apply_op1(ShortcutA(pad));
    }
    let (n, c, h, w) = x.dims4()?;
    let x = if h % 2 == 1 { x.pad_with_zeros(2, 0, 1)? } else { x.clone() };
    let x = if w % 2 == 1 { x.pad_with_zeros(3, 0, 1)? } else { x };
    let (h2, w2) = (h.div_ceil(2), w.div_ceil(2));
    x.reshape((n, c, h2, 2, w2, 2))?
        .narrow(3, 0, 1)?
        .narrow(5, 0, 1)?
        .reshape((n, c, h2, w2))?
        .pad_with_zeros(1, pad, pad)
}

/// Shape of the option-A shortcut: `[n, c, h, w]` to `[n, c + 2 pad, ceil(h/2), ceil(w/2)]`.
fn shortcut_dims(dims: &[usize], pad: usize) -> candle_core::Result<(usize, usize, usize, usize, usize, usize)> {
    match dims {
        &[n, c, h, w] => Ok((n, c, h, w, h.div_ceil(2), w.div_ceil(2))),
        _ => candle_core::bail!("shortcut A: [n, c, h, w] input expected, got {dims:?} (pad {pad})"),
    }
}

/// `x.apply_op1(ShortcutA(pad))`: `x[:, :, ::2, ::2]` with `pad` zero
/// channels added on each side, `[n, c, h, w]` to `[n, c + 2 pad, ceil(h/2), ceil(w/2)]`.
#[derive(Clone, Copy, Debug)]
pub struct ShortcutA(pub usize);

pub(super) fn shortcut_forward<T: WithDType>(
    x: &[T],
    d: (usize, usize, usize, usize, usize, usize),
    pad: usize,
) -> Vec<T> {
    let (n, c, h, w, h2, w2) = d;
    let co = c + 2 * pad;
    let mut out = vec![T::zero(); n * co * h2 * w2];
    out.par_chunks_mut(co * h2 * w2).enumerate().for_each(|(i, o)| {
        for ch in 0..c {
            let src = &x[(i * c + ch) * h * w..][..h * w];
            let dst = &mut o[(pad + ch) * h2 * w2..][..h2 * w2];
            for y in 0..h2 {
                for (xo, v) in dst[y * w2..(y + 1) * w2].iter_mut().zip(src[2 * y * w..].iter().step_by(2)) {
                    *xo = *v;
                }
            }
        }
    });
    out
}

pub(super) fn shortcut_backward<T: WithDType>(
    dy: &[T],
    d: (usize, usize, usize, usize, usize, usize),
    pad: usize,
) -> Vec<T> {
    let (n, c, h, w, h2, w2) = d;
    let co = c + 2 * pad;
    let mut dx = vec![T::zero(); n * c * h * w];
    dx.par_chunks_mut(c * h * w).enumerate().for_each(|(i, o)| {
        for ch in 0..c {
            let src = &dy[(i * co + pad + ch) * h2 * w2..][..h2 * w2];
            let dst = &mut o[ch * h * w..][..h * w];
            for y in 0..h2 {
                for (xo, v) in dst[2 * y * w..].iter_mut().step_by(2).zip(&src[y * w2..(y + 1) * w2]) {
                    *xo = *v;
                }
            }
        }
    });
    dx
}

impl CustomOp1 for ShortcutA {
    fn name(&self) -> &'static str {
        "misfit-shortcut-a"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = shortcut_dims(l.dims(), self.0)?;
        let out = match s {
            CpuStorage::F32(x) => CpuStorage::F32(shortcut_forward(contiguous(x, l, "shortcut A")?, d, self.0)),
            CpuStorage::F64(x) => CpuStorage::F64(shortcut_forward(contiguous(x, l, "shortcut A")?, d, self.0)),
            _ => candle_core::bail!("shortcut A: f32 or f64 input expected"),
        };
        Ok((out, Shape::from((d.0, d.1 + 2 * self.0, d.4, d.5))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let d = shortcut_dims(x.dims(), self.0)?;
        Ok(Some(dy.contiguous()?.apply_op1_no_bwd(&ShortcutABackward(self.0, d))?))
    }
}

/// `dy.apply_op1_no_bwd(..)`: the gradient of [`ShortcutA`] with respect to its input.
struct ShortcutABackward(usize, (usize, usize, usize, usize, usize, usize));

impl CustomOp1 for ShortcutABackward {
    fn name(&self) -> &'static str {
        "misfit-shortcut-a-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (pad, d) = (self.0, self.1);
        let expected = [d.0, d.1 + 2 * pad, d.4, d.5];
        if l.dims() != expected {
            candle_core::bail!("shortcut A backward: gradient {:?}, expected {expected:?}", l.dims());
        }
        let out = match s {
            CpuStorage::F32(g) => CpuStorage::F32(shortcut_backward(contiguous(g, l, "shortcut A grad")?, d, pad)),
            CpuStorage::F64(g) => CpuStorage::F64(shortcut_backward(contiguous(g, l, "shortcut A grad")?, d, pad)),
            _ => candle_core::bail!("shortcut A backward: f32 or f64 gradient expected"),
        };
        Ok((out, Shape::from((d.0, d.1, d.2, d.3))))
    }
}

//! What misfit's CPU ops (`conv`, `batchnorm`, `residual`) share: when a
//! tensor takes them, its operands as slices, and one kernel run on f32 or
//! f64 storages alike.

use candle_core::{CpuStorage, DType, Layout, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Whether `t` goes through misfit's CPU ops (a CPU tensor of f32 or f64);
/// other devices and types use candle's own ops.
pub fn takes_cpu_ops(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// The elements of a contiguous operand; an error naming `what` otherwise.
pub(crate) fn contiguous<'a, T>(data: &'a [T], l: &Layout, what: &str) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: operand must be contiguous"),
    }
}

/// Runs a kernel on two storages of one float type: `f32s` on f32 data,
/// `f64s` on f64 (one generic function passed twice); `what` names the op in errors.
pub(crate) fn dispatch2(
    what: &str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    f32s: impl Fn(&[f32], &[f32]) -> Vec<f32>,
    f64s: impl Fn(&[f64], &[f64]) -> Vec<f64>,
) -> candle_core::Result<CpuStorage> {
    Ok(match (s1, s2) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => {
            CpuStorage::F32(f32s(contiguous(a, l1, what)?, contiguous(b, l2, what)?))
        }
        (CpuStorage::F64(a), CpuStorage::F64(b)) => {
            CpuStorage::F64(f64s(contiguous(a, l1, what)?, contiguous(b, l2, what)?))
        }
        _ => candle_core::bail!("{what}: f32 or f64 operands of one type expected"),
    })
}

/// [`dispatch2`] for three storages.
pub(crate) fn dispatch3(
    what: &str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    (s3, l3): (&CpuStorage, &Layout),
    f32s: impl Fn(&[f32], &[f32], &[f32]) -> Vec<f32>,
    f64s: impl Fn(&[f64], &[f64], &[f64]) -> Vec<f64>,
) -> candle_core::Result<CpuStorage> {
    Ok(match (s1, s2, s3) {
        (CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(c)) => {
            CpuStorage::F32(f32s(contiguous(a, l1, what)?, contiguous(b, l2, what)?, contiguous(c, l3, what)?))
        }
        (CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(c)) => {
            CpuStorage::F64(f64s(contiguous(a, l1, what)?, contiguous(b, l2, what)?, contiguous(c, l3, what)?))
        }
        _ => candle_core::bail!("{what}: f32 or f64 operands of one type expected"),
    })
}

/// A vector of `len` elements built in parallel chunks of `chunk` elements
/// (the last may be shorter) by `fill(start, out)`, `out` holding elements
/// `start..start + out.len()`, without zeroing it
/// first: zero-filled outputs that the ops then overwrite had cost a libc
/// memset pass over every activation (about 3% of a training step).
///
/// # Safety
/// `fill` must write every element of each `out` it is given.
pub(crate) unsafe fn par_build<T: Send>(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync + Send,
) -> Vec<T> {
    // SAFETY: the caller's contract is this function's.
    unsafe { par_build_with_capacity(len, len, chunk, fill) }
}

/// [`par_build`] into a vector with room for `capacity >= len` elements,
/// for outputs that grow by a few elements afterwards.
///
/// # Safety
/// As [`par_build`].
pub(crate) unsafe fn par_build_with_capacity<T: Send>(
    len: usize,
    capacity: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync + Send,
) -> Vec<T> {
    let chunk = chunk.max(1);
    let mut v: Vec<T> = Vec::with_capacity(capacity.max(len));
    v.spare_capacity_mut()[..len].par_chunks_mut(chunk).enumerate().for_each(|(i, out)| fill(i * chunk, out));
    // SAFETY: the caller's `fill` wrote every element of the `len` above.
    unsafe { v.set_len(len) };
    v
}

//! The smallest budget that flips each image (its robustness radius), by
//! bisection over untargeted PGD: the budget sweep gives each image a bracket
//! (the largest budget that failed, the smallest that succeeded), and each
//! round attacks at the bracket's middle and keeps the half that holds the
//! boundary, until the bracket is narrower than the tolerance. The radius
//! reported is the bracket's upper end: a budget at which an adversarial
//! image was found, so it never exceeds the budget that first flipped it.

use super::pgd::{self, Steps};
use super::Norm;
use crate::model::ResNet;

/// Upper ends of the brackets `[lo[i], hi[i]]` narrowed to `tol`; None where
/// `hi[i]` is None (not flipped within the largest budget). `goals` are the
/// labels (untargeted: success leaves them) or, with `targeted`, the
/// targets (success reaches them).
#[allow(clippy::too_many_arguments)]
pub fn bisect(
    model: &ResNet,
    x0: &[f32],
    shape: (usize, usize, usize),
    goals: &[u32],
    targeted: bool,
    lo: &[f32],
    hi: &[Option<f32>],
    tol: f32,
    norm: Norm,
    how: &Steps,
    seed: u64,
) -> candle_core::Result<Vec<Option<f32>>> {
    let len = shape.0 * shape.1 * shape.2;
    let mut lo = lo.to_vec();
    let mut hi = hi.to_vec();
    for round in 0.. {
        let active: Vec<usize> = (0..goals.len()).filter(|&i| hi[i].is_some_and(|h| h - lo[i] > tol)).collect();
        if active.is_empty() {
            break;
        }
        let mid: Vec<f32> = active.iter().map(|&i| (lo[i] + hi[i].expect("active")) / 2.0).collect();
        let xs: Vec<f32> = active.iter().flat_map(|&i| x0[i * len..(i + 1) * len].iter().copied()).collect();
        let goal: Vec<u32> = active.iter().map(|&i| goals[i]).collect();
        let o =
            pgd::attack(model, &xs, shape, &goal, targeted, &mid, norm, how, crate::seed::radius_round(seed, round))?;
        for (t, &i) in active.iter().enumerate() {
            if o.success[t] {
                hi[i] = Some(mid[t]);
            } else {
                lo[i] = mid[t];
            }
        }
    }
    Ok(hi)
}

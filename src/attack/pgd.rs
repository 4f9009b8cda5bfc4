//! One gradient attack on one batch: FGSM (one step of the budget, no random
//! start) and PGD (random start, `steps` steps, restarts), in the L-infinity
//! or L2 norm, untargeted or towards a target class. Perturbations live in
//! [0, 1] pixel space, before the model's normalisation; every step is
//! projected onto the budget ball and clipped to the pixel range. An image
//! stops being attacked at its first success, and the adversarial image kept
//! is the one that succeeded (success is checked before every step and after
//! the last one).
//!
//! Written here because no Rust crate attacks candle models; the update rule
//! follows Madry et al. 2018 (L-inf) and the usual normalised-gradient L2
//! variant, as torchattacks does.

use candle_core::{DType, Tensor, Var, D};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

use super::Norm;
use crate::model::ResNet;

/// How an attack iterates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Steps {
    /// Gradient steps per restart (1 for FGSM).
    pub steps: usize,
    /// Step size as a multiple of the budget (1 for FGSM; 2.5 / steps by default).
    pub step_ratio: f32,
    /// Random starts; the first success wins.
    pub restarts: usize,
    /// Start from a random point of the budget ball (PGD) or from the image (FGSM).
    pub random_start: bool,
}

/// What the attack did to each image of the batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Whether the prediction left the label (untargeted) or reached the target.
    pub success: Vec<bool>,
    /// Prediction on the adversarial image.
    pub adv_pred: Vec<u32>,
    /// Softmax probability of that prediction.
    pub adv_prob: Vec<f32>,
    /// L-inf and L2 norms of the perturbation used, in [0, 1] pixel units.
    pub linf: Vec<f32>,
    pub l2: Vec<f32>,
    /// Gradient steps taken before success (or all of them, over every restart).
    pub steps: Vec<u32>,
    /// `[n, 3, h, w]` perturbations, row-major.
    pub delta: Vec<f32>,
}

/// Attacks `x0` (`[n, 3, h, w]` in [0, 1], row-major) with per-image budgets
/// `eps`. `goal[i]` is the label (untargeted) or the target class (targeted).
/// `model` should be [`ResNet::frozen`] so that no weight gradient is computed.
#[allow(clippy::too_many_arguments)]
pub fn attack(
    model: &ResNet,
    x0: &[f32],
    shape: (usize, usize, usize),
    goal: &[u32],
    targeted: bool,
    eps: &[f32],
    norm: Norm,
    how: &Steps,
    seed: u64,
) -> candle_core::Result<Outcome> {
    let n = goal.len();
    let (c, h, w) = shape;
    let len = c * h * w;
    let dev = model.device().clone();
    let mut out = Outcome {
        success: vec![false; n],
        adv_pred: vec![0; n],
        adv_prob: vec![0.0; n],
        linf: vec![0.0; n],
        l2: vec![0.0; n],
        steps: vec![0; n],
        delta: vec![0.0; n * len],
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let succeeded = |pred: u32, i: usize| if targeted { pred == goal[i] } else { pred != goal[i] };
    for restart in 0..how.restarts.max(1) {
        // The images still to attack, and their state.
        let mut rows: Vec<usize> = (0..n).filter(|&i| !out.success[i]).collect();
        if rows.is_empty() {
            break;
        }
        let mut delta: Vec<f32> = vec![0.0; rows.len() * len];
        if how.random_start {
            random_start(&mut delta, &rows, eps, len, norm, &mut rng);
            for (j, &i) in rows.iter().enumerate() {
                for (d, &x) in delta[j * len..(j + 1) * len].iter_mut().zip(&x0[i * len..(i + 1) * len]) {
                    *d = (x + *d).clamp(0.0, 1.0) - x;
                }
            }
        }
        let mut step = 0;
        loop {
            let m = rows.len();
            let x0_rows: Vec<f32> = rows.iter().flat_map(|&i| x0[i * len..(i + 1) * len].iter().copied()).collect();
            let x0_t = Tensor::from_vec(x0_rows, (m, c, h, w), &dev)?;
            let d_t = Tensor::from_vec(delta.clone(), (m, c, h, w), &dev)?;
            let x = (&x0_t + &d_t)?;
            let goal_t = Tensor::from_vec(rows.iter().map(|&i| goal[i]).collect::<Vec<u32>>(), m, &dev)?;
            // The last check needs no gradient.
            let (logits, grad) = if step == how.steps {
                (model.forward(&x, false)?.logits, None)
            } else {
                let (logits, _, grad) = input_gradient(model, &x, &goal_t)?;
                (logits, Some(grad))
            };
            let probs: Vec<Vec<f32>> = candle_nn::ops::softmax(&logits, D::Minus1)?.to_vec2()?;
            // Record the state each image is in now; retire the successes.
            let mut keep = Vec::with_capacity(m);
            for (j, &i) in rows.iter().enumerate() {
                let pred = crate::stats::argmax(&probs[j]) as u32;
                let ok = succeeded(pred, i);
                // Later restarts overwrite a failure; a success is final.
                if ok || step == how.steps {
                    let d = &delta[j * len..(j + 1) * len];
                    out.adv_pred[i] = pred;
                    out.adv_prob[i] = probs[j][pred as usize];
                    out.linf[i] = d.iter().fold(0f32, |a, v| a.max(v.abs()));
                    out.l2[i] = d.iter().map(|v| v * v).sum::<f32>().sqrt();
                    out.delta[i * len..(i + 1) * len].copy_from_slice(d);
                }
                out.steps[i] = (restart * how.steps + step) as u32;
                out.success[i] |= ok;
                if !ok {
                    keep.push(j);
                }
            }
            if step == how.steps || keep.is_empty() {
                break;
            }
            // One step for the images still failing.
            let sign = if targeted { -1.0 } else { 1.0 };
            let grad = grad.expect("a gradient before every step");
            let eps_t = Tensor::from_vec(rows.iter().map(|&i| eps[i]).collect::<Vec<f32>>(), (m, 1, 1, 1), &dev)?;
            let alpha = (&eps_t * (how.step_ratio as f64 * sign))?;
            let dir = match norm {
                Norm::Linf => grad.sign()?,
                Norm::L2 => grad.broadcast_div(&(per_image_l2(&grad)? + 1e-12)?)?,
            };
            let mut d_new = (&d_t + dir.broadcast_mul(&alpha)?)?;
            d_new = match norm {
                Norm::Linf => d_new.broadcast_minimum(&eps_t)?.broadcast_maximum(&eps_t.neg()?)?,
                Norm::L2 => {
                    let scale = (&eps_t / (per_image_l2(&d_new)? + 1e-12)?)?.clamp(0f32, 1f32)?;
                    d_new.broadcast_mul(&scale)?
                }
            };
            // Clip to the pixel range: moves each coordinate towards x0, so the
            // projected budget still holds.
            d_new = ((&x0_t + &d_new)?.clamp(0f32, 1f32)? - &x0_t)?;
            let d_new: Vec<f32> = d_new.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
            // Keep only the rows still failing.
            delta = keep.iter().flat_map(|&j| d_new[j * len..(j + 1) * len].iter().copied()).collect();
            rows = keep.iter().map(|&j| rows[j]).collect();
            step += 1;
        }
    }
    Ok(out)
}

/// Logits `[n, classes]`, the summed cross-entropy of `goal` (`[n]` u32) and
/// its gradient with respect to `x` (`[n, 3, h, w]` in [0, 1], before the
/// model's normalisation). Untargeted attacks ascend it (goal = label),
/// targeted ones descend it (goal = target).
pub fn input_gradient(model: &ResNet, x: &Tensor, goal: &Tensor) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let x = Var::from_tensor(x)?;
    let logits = model.forward(x.as_tensor(), false)?.logits;
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let loss = logp.gather(&goal.unsqueeze(1)?, 1)?.neg()?.sum_all()?;
    let grad = loss.backward()?.get(x.as_tensor()).cloned().map_or_else(|| x.as_tensor().zeros_like(), Ok)?;
    Ok((logits, loss, grad))
}

/// `[n, 1, 1, 1]` L2 norm of each image of `[n, c, h, w]`.
fn per_image_l2(t: &Tensor) -> candle_core::Result<Tensor> {
    let n = t.dim(0)?;
    t.sqr()?.flatten_from(1)?.sum(1)?.sqrt()?.reshape((n, 1, 1, 1))
}

/// A uniform point of the L-inf ball, or a random direction scaled to a
/// uniform share of the L2 radius, for each row (budget `eps[rows[j]]`).
fn random_start(delta: &mut [f32], rows: &[usize], eps: &[f32], len: usize, norm: Norm, rng: &mut ChaCha8Rng) {
    let unit = Uniform::new(-1f32, 1f32).expect("valid range");
    let normal = Normal::new(0f32, 1.0).expect("unit normal");
    for (j, &i) in rows.iter().enumerate() {
        let d = &mut delta[j * len..(j + 1) * len];
        match norm {
            Norm::Linf => d.iter_mut().for_each(|v| *v = eps[i] * unit.sample(rng)),
            Norm::L2 => {
                d.iter_mut().for_each(|v| *v = normal.sample(rng));
                let r = eps[i] * (unit.sample(rng) + 1.0) / 2.0;
                let l2 = d.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                d.iter_mut().for_each(|v| *v *= r / l2);
            }
        }
    }
}

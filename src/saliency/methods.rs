//! The attribution methods, on a frozen eval-mode model ([`ResNet::frozen`]):
//! each gives, for every image and a target class, a per-pixel relevance map
//! `[n, h, w]` (non-negative; larger = more relevant) of the target's logit.
//!
//! - vanilla gradient (Simonyan et al. 2014; Captum's `Saliency`): |d logit / d x|;
//! - SmoothGrad (Smilkov et al. 2017; Captum's `NoiseTunnel` over `Saliency`):
//!   the mean |gradient| over copies of the image with Gaussian noise added;
//!   the noise's standard deviation is a share of the [0, 1] pixel range,
//!   applied before the model's normalisation (Captum's `stdevs` is in the
//!   units of the model's input, after any normalisation done outside it);
//!   the noisy copies are not clipped, as in the paper;
//! - Integrated Gradients (Sundararajan et al. 2017): (x - baseline) times
//!   the mean gradient along the straight path, by the midpoint rule
//!   (Captum's `riemann_middle`); with its completeness gap;
//! - Grad-CAM (Selvaraju et al. 2017) on the last convolutional stage: the
//!   ReLU of the activations weighted by the spatial mean of the logit's
//!   gradient, upsampled bilinearly to the image (PyTorch's `interpolate`,
//!   `align_corners=False`).
//!
//! Pixel maps of the gradient methods sum the absolute attribution over the
//! three colour channels. Written here because no Rust crate explains candle
//! models; each follows its paper and Captum's defaults where they differ.

use candle_core::{DType, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::model::ResNet;

/// An attribution method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    Gradient,
    SmoothGrad,
    IntegratedGradients,
    GradCam,
}

impl Method {
    /// Every method, in the order panels show them.
    pub const ALL: [Method; 4] = [Method::Gradient, Method::SmoothGrad, Method::IntegratedGradients, Method::GradCam];

    /// The name used in tables and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Gradient => "gradient",
            Method::SmoothGrad => "smoothgrad",
            Method::IntegratedGradients => "integrated-gradients",
            Method::GradCam => "grad-cam",
        }
    }

    /// Parses a name of [`Method::as_str`].
    pub fn parse(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// What Integrated Gradients integrates from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    /// All pixels 0 (the default, as in the paper).
    Black,
    /// All pixels 1.
    White,
    /// Each pixel the image's blurred copy (the fill of the deletion curves).
    Blur,
}

/// How the methods are run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MethodConfig {
    /// SmoothGrad's noise standard deviation, as a share of the [0, 1] pixel range.
    pub smoothgrad_noise: f32,
    /// SmoothGrad's noisy copies per image.
    pub smoothgrad_samples: usize,
    /// Integrated Gradients' steps along the path.
    pub ig_steps: usize,
    /// Integrated Gradients' baseline.
    pub ig_baseline: Baseline,
    /// Images (or noisy copies, or path points) per forward-backward pass.
    pub batch: usize,
}

impl Default for MethodConfig {
    fn default() -> Self {
        MethodConfig {
            smoothgrad_noise: 0.15,
            smoothgrad_samples: 25,
            ig_steps: 50,
            ig_baseline: Baseline::Black,
            batch: 256,
        }
    }
}

/// Maps of one method for a batch of images.
#[derive(Clone, Debug, Default)]
pub struct Maps {
    /// `[n, h, w]` relevance, row-major, non-negative.
    pub maps: Vec<f32>,
    /// Integrated Gradients only: per image, |sum of attributions - (f(x) -
    /// f(baseline))| / |f(x) - f(baseline)| (the completeness gap, as a
    /// share of the logit difference it should add up to).
    pub completeness_gap: Option<Vec<f32>>,
}

/// The images a method explains: `[n, 3, h, w]` in [0, 1], row-major, and
/// one target class each; `baseline` (same shape) for Integrated Gradients.
pub struct Batch<'a> {
    pub x: &'a [f32],
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub targets: &'a [u32],
    pub baseline: &'a [f32],
}

impl Batch<'_> {
    fn len(&self) -> usize {
        3 * self.h * self.w
    }
}

/// `method`'s maps of `b` under `model` (frozen, eval mode); `seed` draws SmoothGrad's noise.
pub fn explain(model: &ResNet, method: Method, b: &Batch, cfg: &MethodConfig, seed: u64) -> candle_core::Result<Maps> {
    match method {
        Method::Gradient => {
            Ok(Maps { maps: pixel_abs_sum(&gradients(model, b.x, b.targets, b, cfg.batch)?, b), ..Maps::default() })
        }
        Method::SmoothGrad => smoothgrad(model, b, cfg, seed),
        Method::IntegratedGradients => integrated_gradients(model, b, cfg),
        Method::GradCam => Ok(Maps { maps: grad_cam(model, b)?, ..Maps::default() }),
    }
}

/// The gradient of each row's target logit with respect to its input, for
/// rows `x` (`[m, 3, h, w]`, row-major) and their `targets`, `batch` rows
/// per pass: `[m, 3, h, w]`. Rows are independent in eval mode, so the
/// gradient of the summed logits is each row's own.
pub fn gradients(model: &ResNet, x: &[f32], targets: &[u32], b: &Batch, batch: usize) -> candle_core::Result<Vec<f32>> {
    let len = b.len();
    let dtype = model.dtype();
    let mut out = Vec::with_capacity(x.len());
    for (chunk, t) in x.chunks(batch.max(1) * len).zip(targets.chunks(batch.max(1))) {
        let m = chunk.len() / len;
        let v = Var::from_tensor(&Tensor::from_slice(chunk, (m, 3, b.h, b.w), model.device())?.to_dtype(dtype)?)?;
        let logits = model.forward(v.as_tensor(), false)?.logits;
        let goal = Tensor::from_slice(t, m, model.device())?;
        let score = logits.gather(&goal.unsqueeze(1)?, 1)?.sum_all()?;
        let grads = score.backward()?;
        match grads.get(v.as_tensor()) {
            Some(g) => out.extend(g.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?),
            None => out.extend(std::iter::repeat_n(0.0, chunk.len())),
        }
    }
    Ok(out)
}

/// The target logits of rows `x` (`[m, 3, h, w]`).
fn target_logits(model: &ResNet, x: &[f32], targets: &[u32], b: &Batch, batch: usize) -> candle_core::Result<Vec<f32>> {
    let len = b.len();
    let mut out = Vec::with_capacity(targets.len());
    for (chunk, t) in x.chunks(batch.max(1) * len).zip(targets.chunks(batch.max(1))) {
        let m = chunk.len() / len;
        let x = Tensor::from_slice(chunk, (m, 3, b.h, b.w), model.device())?.to_dtype(model.dtype())?;
        let rows = model.forward(&x, false)?.logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        out.extend(rows.iter().zip(t).map(|(r, &c)| r[c as usize]));
    }
    Ok(out)
}

/// `[n, h, w]`: the sum over channels of |a| for `[n, 3, h, w]` attributions.
fn pixel_abs_sum(a: &[f32], b: &Batch) -> Vec<f32> {
    let plane = b.h * b.w;
    let mut out = vec![0f32; b.n * plane];
    for (i, img) in a.chunks_exact(3 * plane).enumerate() {
        let dst = &mut out[i * plane..(i + 1) * plane];
        for c in 0..3 {
            for (d, v) in dst.iter_mut().zip(&img[c * plane..(c + 1) * plane]) {
                *d += v.abs();
            }
        }
    }
    out
}

fn smoothgrad(model: &ResNet, b: &Batch, cfg: &MethodConfig, seed: u64) -> candle_core::Result<Maps> {
    let (len, s) = (b.len(), cfg.smoothgrad_samples.max(1));
    let normal = Normal::new(0f32, cfg.smoothgrad_noise.max(0.0)).expect("finite noise");
    let mut sum = vec![0f32; b.n * b.h * b.w];
    // Image by image, so that each image's noise depends on the seed and its
    // position alone; copies of several images share a pass.
    let per_pass = (cfg.batch.max(1) / s).max(1);
    for start in (0..b.n).step_by(per_pass) {
        let end = (start + per_pass).min(b.n);
        let mut x = Vec::with_capacity((end - start) * s * len);
        let mut t = Vec::with_capacity((end - start) * s);
        for i in start..end {
            let mut rng = ChaCha8Rng::seed_from_u64(crate::seed::derive(seed, &[i as u64]));
            let img = &b.x[i * len..(i + 1) * len];
            for _ in 0..s {
                x.extend(img.iter().map(|v| v + normal.sample(&mut rng)));
                t.push(b.targets[i]);
            }
        }
        let g = gradients(model, &x, &t, b, cfg.batch)?;
        let sub = Batch { x: &x, n: x.len() / len, ..*b };
        let maps = pixel_abs_sum(&g, &sub);
        let plane = b.h * b.w;
        for (j, m) in maps.chunks_exact(plane).enumerate() {
            let i = start + j / s;
            for (d, v) in sum[i * plane..(i + 1) * plane].iter_mut().zip(m) {
                *d += v / s as f32;
            }
        }
    }
    Ok(Maps { maps: sum, ..Maps::default() })
}

fn integrated_gradients(model: &ResNet, b: &Batch, cfg: &MethodConfig) -> candle_core::Result<Maps> {
    let (len, m) = (b.len(), cfg.ig_steps.max(1));
    let mut attr = vec![0f32; b.n * len];
    let per_pass = (cfg.batch.max(1) / m).max(1);
    for start in (0..b.n).step_by(per_pass) {
        let end = (start + per_pass).min(b.n);
        let mut x = Vec::with_capacity((end - start) * m * len);
        let mut t = Vec::with_capacity((end - start) * m);
        for i in start..end {
            let (img, base) = (&b.x[i * len..(i + 1) * len], &b.baseline[i * len..(i + 1) * len]);
            for k in 0..m {
                let alpha = (k as f32 + 0.5) / m as f32;
                x.extend(img.iter().zip(base).map(|(v, z)| z + alpha * (v - z)));
                t.push(b.targets[i]);
            }
        }
        let g = gradients(model, &x, &t, b, cfg.batch)?;
        for (j, gj) in g.chunks_exact(len).enumerate() {
            let i = start + j / m;
            for (a, v) in attr[i * len..(i + 1) * len].iter_mut().zip(gj) {
                *a += v / m as f32;
            }
        }
    }
    for (i, a) in attr.chunks_exact_mut(len).enumerate() {
        let (img, base) = (&b.x[i * len..(i + 1) * len], &b.baseline[i * len..(i + 1) * len]);
        for ((a, v), z) in a.iter_mut().zip(img).zip(base) {
            *a *= v - z;
        }
    }
    let fx = target_logits(model, b.x, b.targets, b, cfg.batch)?;
    let fb = target_logits(model, b.baseline, b.targets, b, cfg.batch)?;
    let gap = attr
        .chunks_exact(len)
        .enumerate()
        .map(|(i, a)| {
            let total: f32 = a.iter().sum();
            let delta = fx[i] - fb[i];
            (total - delta).abs() / delta.abs().max(1e-6)
        })
        .collect();
    Ok(Maps { maps: pixel_abs_sum(&attr, b), completeness_gap: Some(gap) })
}

/// Grad-CAM maps `[n, h, w]`: the gradient of the target logit with respect
/// to the last stage's activations `A` (`[n, c, h', w']`) averaged over
/// space gives each channel's weight; ReLU(sum_c weight_c A_c) is upsampled.
fn grad_cam(model: &ResNet, b: &Batch) -> candle_core::Result<Vec<f32>> {
    let x = Tensor::from_slice(b.x, (b.n, 3, b.h, b.w), model.device())?.to_dtype(model.dtype())?;
    // No gradient reaches the input: the trunk runs as plain inference.
    let a = Var::from_tensor(&model.trunk(&x, false)?)?;
    let (_, c, hh, ww) = a.dims4()?;
    let logits = model.head(&a.as_tensor().mean((2, 3))?)?;
    let goal = Tensor::from_slice(b.targets, b.n, model.device())?;
    let grads = logits.gather(&goal.unsqueeze(1)?, 1)?.sum_all()?.backward()?;
    let g = grads.get(a.as_tensor()).expect("the logits depend on the activations");
    let weights = g.mean((2, 3))?.reshape((b.n, c, 1, 1))?;
    let cam = a.as_tensor().broadcast_mul(&weights)?.sum(1)?.relu()?; // [n, h', w']
    let cam = cam.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let mut out = Vec::with_capacity(b.n * b.h * b.w);
    for m in cam.chunks_exact(hh * ww) {
        out.extend(super::measure::upsample_bilinear(m, hh, ww, b.h, b.w));
    }
    Ok(out)
}

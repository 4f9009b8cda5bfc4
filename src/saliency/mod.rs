//! Explanations: why the model decides as it does on chosen images, with
//! attribution maps ([`methods`]), their numbers ([`measure`]), the checks
//! that the maps mean something ([`sanity`]) and their pictures
//! ([`panels`]). This module runs them over a list of images and targets;
//! which images, and the tables, belong to the explain stage
//! ([`crate::stages::explain`]); the root causes per confused pair are
//! read-side findings ([`crate::findings::causes`]).

pub mod measure;
pub mod methods;
pub mod panels;
pub mod sanity;

use serde::{Deserialize, Serialize};

use crate::attack::{pgd::Steps, radius, Norm};
use crate::error::{Error, Result};
use crate::model::ResNet;
pub use measure::{Curves, Fill, Placement};
pub use methods::{Baseline, Method, MethodConfig};

/// Everything the explain stage is asked to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplainConfig {
    /// The methods, in panel order.
    pub methods: Vec<Method>,
    /// How they run.
    pub method: MethodConfig,
    /// What the deletion and insertion curves fill pixels with.
    pub fill: Fill,
    /// Confused class pairs explained (unordered; most test confusions first).
    pub pairs: usize,
    /// Test confusions (both directions together) a pair needs to be explained.
    pub min_confusions: usize,
    /// Misclassified test images explained per direction of a pair, and as
    /// many correctly classified images of its given class for contrast.
    pub per_pair: usize,
    /// Flagged training images explained (the most suspicious first).
    pub flagged: usize,
    /// Images of the randomisation check.
    pub sanity_images: usize,
    /// Correctly classified test images of A attacked towards B (and
    /// untargeted) per direction of an explained pair.
    pub targeted_per_pair: usize,
    /// Seed of every random choice (images, noise, orders); the run's.
    pub seed: u64,
}

impl Default for ExplainConfig {
    fn default() -> Self {
        ExplainConfig {
            methods: Method::ALL.to_vec(),
            method: MethodConfig::default(),
            fill: Fill::Blur,
            pairs: 6,
            min_confusions: 4,
            per_pair: 8,
            flagged: 12,
            sanity_images: 8,
            targeted_per_pair: 8,
            seed: 0,
        }
    }
}

impl ExplainConfig {
    /// Checks the counts and the noise before any work starts.
    pub fn validate(&self) -> Result<()> {
        let m = &self.method;
        if self.methods.is_empty() {
            return Err(Error::Usage("--explain-methods: name at least one method".into()));
        }
        if !(m.smoothgrad_noise.is_finite() && m.smoothgrad_noise >= 0.0) {
            return Err(Error::Usage(format!(
                "--smoothgrad-noise {}: give a share of the [0, 1] pixel range, at least 0",
                m.smoothgrad_noise
            )));
        }
        for (flag, v) in [
            ("--smoothgrad-samples", m.smoothgrad_samples),
            ("--ig-steps", m.ig_steps),
            ("--explain-batch", m.batch),
            ("--sanity-images", self.sanity_images),
        ] {
            if v == 0 {
                return Err(Error::Usage(format!("{flag} must be at least 1")));
            }
        }
        Ok(())
    }
}

/// One image and the class its maps explain.
#[derive(Clone, Debug, PartialEq)]
pub struct Subject {
    /// `[3, h, w]` in [0, 1].
    pub x: Vec<f32>,
    /// `[h, w, 3]` u8 (for the fill, the ring colour and the panel).
    pub pixels: Vec<u8>,
    pub target: u32,
}

/// What one method says of one subject.
#[derive(Clone, Debug)]
pub struct Explanation {
    pub method: Method,
    /// `[h, w]` relevance.
    pub map: Vec<f32>,
    pub placement: Placement,
    pub curves: Curves,
    /// Integrated Gradients' completeness gap (see [`methods::Maps`]).
    pub completeness_gap: Option<f32>,
}

/// Everything said of one subject.
#[derive(Clone, Debug)]
pub struct Explained {
    /// One per method, in the configuration's order.
    pub by_method: Vec<Explanation>,
    /// The curves of a seeded random pixel order (the reference every
    /// method must beat).
    pub random: Curves,
    /// The target's softmax probability on the clean image.
    pub target_prob: f32,
    /// Mean ring colour, [0, 1] RGB.
    pub ring_colour: [f32; 3],
}

/// The maps of `subjects` (`h x w` images) by every configured method,
/// `[n][method]` of `[h, w]`.
pub fn maps(
    model: &ResNet,
    subjects: &[Subject],
    h: usize,
    w: usize,
    cfg: &ExplainConfig,
) -> Result<Vec<Vec<Vec<f32>>>> {
    Ok(run_methods(model, subjects, h, w, cfg)?.into_iter().map(|per| per.into_iter().map(|m| m.0).collect()).collect())
}

/// One method's `[h, w]` map of one subject, with Integrated Gradients' completeness gap.
type MethodMap = (Vec<f32>, Option<f32>);

/// `[n][method]` of (map, completeness gap).
fn run_methods(
    model: &ResNet,
    subjects: &[Subject],
    h: usize,
    w: usize,
    cfg: &ExplainConfig,
) -> Result<Vec<Vec<MethodMap>>> {
    let model = model.frozen();
    let x: Vec<f32> = subjects.iter().flat_map(|s| s.x.iter().copied()).collect();
    let targets: Vec<u32> = subjects.iter().map(|s| s.target).collect();
    let baseline: Vec<f32> = match cfg.method.ig_baseline {
        Baseline::Black => vec![0.0; x.len()],
        Baseline::White => vec![1.0; x.len()],
        Baseline::Blur => subjects.iter().flat_map(|s| measure::fill(&s.pixels, h, w, Fill::Blur)).collect(),
    };
    let n = subjects.len();
    let batch = methods::Batch { x: &x, n, h, w, targets: &targets, baseline: &baseline };
    let mut out: Vec<Vec<MethodMap>> = vec![Vec::new(); n];
    for (mi, &method) in cfg.methods.iter().enumerate() {
        let seed = crate::seed::derive(cfg.seed, &[0x5a11e0c7, mi as u64]);
        let m = methods::explain(&model, method, &batch, &cfg.method, seed)?;
        for (i, map) in m.maps.chunks_exact(h * w).enumerate() {
            out[i].push((map.to_vec(), m.completeness_gap.as_ref().map(|g| g[i])));
        }
    }
    Ok(out)
}

/// Explains every subject by every configured method, with the numbers of
/// each map and the random-order reference curves.
pub fn explain(
    model: &ResNet,
    subjects: &[Subject],
    h: usize,
    w: usize,
    cfg: &ExplainConfig,
) -> Result<Vec<Explained>> {
    let per = run_methods(model, subjects, h, w, cfg)?;
    let mask = measure::ring_mask(h, w);
    let fills: Vec<Vec<f32>> = subjects.iter().map(|s| measure::fill(&s.pixels, h, w, cfg.fill)).collect();
    let orders: Vec<Vec<Vec<usize>>> = per
        .iter()
        .enumerate()
        .map(|(i, maps)| {
            let mut o: Vec<Vec<usize>> = maps.iter().map(|(m, _)| measure::order_of(m)).collect();
            o.push(measure::random_order(h * w, crate::seed::derive(cfg.seed, &[0x0de1e7e, i as u64])));
            o
        })
        .collect();
    let mut jobs = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        for order in &orders[i] {
            jobs.push(measure::CurveJob { x: &s.x, fill: &fills[i], order, target: s.target });
        }
    }
    let curves = measure::curves(model, &jobs, h, w, cfg.method.batch)?;
    let per_subject = cfg.methods.len() + 1;
    Ok(per
        .into_iter()
        .enumerate()
        .map(|(i, maps)| {
            let c = &curves[i * per_subject..(i + 1) * per_subject];
            let by_method = maps
                .into_iter()
                .zip(&cfg.methods)
                .enumerate()
                .map(|(j, ((map, gap), &method))| Explanation {
                    method,
                    placement: measure::placement(&map, &mask),
                    map,
                    curves: c[j].clone(),
                    completeness_gap: gap,
                })
                .collect();
            Explained {
                by_method,
                random: c[per_subject - 1].clone(),
                target_prob: c[per_subject - 1].clean_prob as f32,
                ring_colour: measure::ring_colour(&subjects[i].pixels, &mask),
            }
        })
        .collect())
}

/// One step of the randomisation check for one method.
#[derive(Clone, Debug, PartialEq)]
pub struct SanityStep {
    pub method: Method,
    /// 0 = the trained model; n = the first n layer groups re-initialised.
    pub step: usize,
    /// The lowest group re-initialised at this step (`trained` at step 0).
    pub randomized_down_to: String,
    /// Mean Spearman rank correlation with the trained model's maps.
    pub spearman: f64,
    /// Its standard deviation over the images.
    pub spearman_sd: f64,
    /// Mean SSIM with the trained model's maps.
    pub ssim: f64,
    pub images: usize,
    /// Whether the method passed: at the last step (every layer random) its
    /// Spearman is below [`sanity::TRUST_THRESHOLD`].
    pub trustworthy: bool,
}

/// The cascading randomisation check on `subjects` (targets fixed: the
/// trained model's maps of those targets are the reference).
pub fn sanity(
    model: &ResNet,
    subjects: &[Subject],
    h: usize,
    w: usize,
    cfg: &ExplainConfig,
) -> Result<Vec<SanityStep>> {
    let reference = maps(model, subjects, h, w, cfg)?;
    let cascade = sanity::Cascade::new(model, crate::seed::derive(cfg.seed, &[0x5a417e]))?;
    let groups = &cascade.groups;
    let mut out = Vec::new();
    for step in 0..=groups.len() {
        let randomized;
        let these = match step {
            0 => &reference,
            _ => {
                randomized = maps(&cascade.model_at(step)?, subjects, h, w, cfg)?;
                &randomized
            }
        };
        for (j, &method) in cfg.methods.iter().enumerate() {
            let rho: Vec<f64> =
                (0..subjects.len()).map(|i| measure::rank_correlation(&reference[i][j], &these[i][j])).collect();
            let ssim: Vec<f64> =
                (0..subjects.len()).map(|i| measure::ssim(&reference[i][j], &these[i][j], h, w)).collect();
            let n = rho.len().max(1) as f64;
            let mean = rho.iter().sum::<f64>() / n;
            let sd = (rho.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
            out.push(SanityStep {
                method,
                step,
                randomized_down_to: if step == 0 { "trained".into() } else { groups[step - 1].0.clone() },
                spearman: mean,
                spearman_sd: sd,
                ssim: ssim.iter().sum::<f64>() / n,
                images: rho.len(),
                trustworthy: false,
            });
        }
    }
    let last = groups.len();
    for &method in &cfg.methods {
        // No image compared (no correctly classified test image): nothing passed.
        let passed = out
            .iter()
            .any(|s| s.method == method && s.step == last && s.images > 0 && s.spearman < sanity::TRUST_THRESHOLD);
        out.iter_mut().filter(|s| s.method == method).for_each(|s| s.trustworthy = passed);
    }
    Ok(out)
}

/// Per image, the smallest L2 budget reaching the target and the smallest
/// leaving the label ([0, 1] pixel units; None: not within the largest budget).
#[derive(Clone, Debug, PartialEq)]
pub struct Radii {
    pub targeted: Vec<Option<f32>>,
    pub untargeted: Vec<Option<f32>>,
}

/// The smallest L2 budget (in [0, 1] pixel units) that takes each image to
/// `targets[i]` (targeted) and away from `labels[i]` (untargeted): a sweep
/// over `budgets` (ascending), then bisection to `tol`. None: not reached
/// within the largest budget.
#[allow(clippy::too_many_arguments)]
pub fn pair_radii(
    model: &ResNet,
    x: &[f32],
    shape: (usize, usize, usize),
    labels: &[u32],
    targets: &[u32],
    budgets: &[f32],
    tol: f32,
    how: &Steps,
    seed: u64,
) -> Result<Radii> {
    let model = model.frozen();
    let n = labels.len();
    let mut out = Vec::new();
    for (targeted, goals) in [(true, targets), (false, labels)] {
        let mut lo = vec![0f32; n];
        let mut hi: Vec<Option<f32>> = vec![None; n];
        for (bi, &b) in budgets.iter().enumerate() {
            let open: Vec<usize> = (0..n).filter(|&i| hi[i].is_none()).collect();
            if open.is_empty() {
                break;
            }
            let len = shape.0 * shape.1 * shape.2;
            let xs: Vec<f32> = open.iter().flat_map(|&i| x[i * len..(i + 1) * len].iter().copied()).collect();
            let g: Vec<u32> = open.iter().map(|&i| goals[i]).collect();
            let eps = vec![b; open.len()];
            let s = crate::seed::derive(seed, &[targeted as u64, bi as u64]);
            let o = crate::attack::pgd::attack(&model, &xs, shape, &g, targeted, &eps, Norm::L2, how, s)?;
            for (t, &i) in open.iter().enumerate() {
                if o.success[t] {
                    hi[i] = Some(b);
                } else {
                    lo[i] = b;
                }
            }
        }
        let s = crate::seed::derive(seed, &[targeted as u64, 0xb15ec7]);
        out.push(radius::bisect(&model, x, shape, goals, targeted, &lo, &hi, tol, Norm::L2, how, s)?);
    }
    let untargeted = out.pop().expect("two sweeps");
    Ok(Radii { targeted: out.pop().expect("two sweeps"), untargeted })
}

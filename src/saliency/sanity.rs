//! Whether the maps depend on what the model learned, and whether the model
//! needs the object at all:
//!
//! - model-parameter randomisation (Adebayo et al. 2018, cascading): the
//!   model's layers are re-initialised from the logits down, one layer group
//!   at a time (the head, then each residual block from the last, then the
//!   stem); at each step every method's maps of the same images and targets
//!   are compared with the trained model's by Spearman's rank correlation of
//!   the absolute maps and by SSIM. A map that stays alike while the weights
//!   behind it are random shows the input, not the model.
//! - occlusion: the model's prediction on each image with its centre filled
//!   with the image's mean colour (background only) and with its ring filled
//!   (object only); the ring is [`super::measure::ring_mask`]'s.

use candle_core::Tensor;

/// A method is trustworthy when, with every layer re-initialised, its maps'
/// mean Spearman correlation with the trained model's is below this. Why
/// 0.5: a map that still shares more than half its pixel ranking with the
/// map of a model that learned nothing shows mostly the input (its edges
/// and contrast), not what the model learned; Adebayo et al. 2018 saw the
/// maps that pass fall near 0, and those that fail (guided back-propagation,
/// gradient times input) stay high.
pub const TRUST_THRESHOLD: f64 = 0.5;
use std::collections::BTreeMap;

use crate::model::{self, Params, ResNet};

/// The layer groups of a model, from the logits down: `linear`, then
/// `layer3.N` ... `layer1.0`, then the stem (`conv1`, `bn1`).
pub fn cascade(model: &ResNet) -> Vec<(String, Vec<String>)> {
    let names: Vec<String> = model::param_specs(&model.config).into_iter().map(|s| s.name).collect();
    let group_of = |name: &str| -> String {
        if name.starts_with("layer") {
            name.split('.').take(2).collect::<Vec<_>>().join(".")
        } else if name.starts_with("linear") {
            "linear".into()
        } else {
            "stem".into()
        }
    };
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for name in names.iter().rev() {
        let g = group_of(name);
        match groups.iter_mut().find(|(n, _)| *n == g) {
            Some((_, members)) => members.push(name.clone()),
            None => groups.push((g, vec![name.clone()])),
        }
    }
    groups
}

/// A trained model and the fresh weights its layers are re-initialised
/// with, step by step.
pub struct Cascade<'a> {
    model: &'a ResNet,
    /// The layer groups, from the logits down ([`cascade`]).
    pub groups: Vec<(String, Vec<String>)>,
    /// Fresh weights from the seed, as before training: Kaiming normal,
    /// batch norm at identity.
    fresh: BTreeMap<String, Tensor>,
}

impl<'a> Cascade<'a> {
    /// The cascade of `model`, its fresh weights drawn from `seed`.
    pub fn new(model: &'a ResNet, seed: u64) -> crate::Result<Self> {
        let fresh = Params::init(&model.config, seed, model.device())?.tensors();
        Ok(Cascade { model, groups: cascade(model), fresh })
    }

    /// The model with its first `steps` groups re-initialised, the rest trained; frozen.
    pub fn model_at(&self, steps: usize) -> crate::Result<ResNet> {
        let mut tensors: BTreeMap<String, Tensor> = self.model.params.tensors();
        for (_, members) in self.groups.iter().take(steps) {
            for name in members {
                tensors.insert(name.clone(), self.fresh[name].clone());
            }
        }
        let config = &self.model.config;
        let params = Params::from_tensors(config, tensors, "the randomised model", self.model.device())?;
        Ok(ResNet::new(config.clone(), params)?.frozen())
    }
}

/// One image with a region filled with its mean colour: `[h, w, 3]` u8.
pub fn occlude(pixels: &[u8], mask: &[bool], fill_ring: bool) -> Vec<u8> {
    let mean = super::measure::mean_colour(pixels);
    let mut out = pixels.to_vec();
    for (px, &in_ring) in out.chunks_exact_mut(3).zip(mask) {
        if in_ring == fill_ring {
            px.copy_from_slice(&mean);
        }
    }
    out
}

/// Predictions on every image of `[n, h, w, 3]` pixels with the centre
/// filled (background only) and with the ring filled (object only).
pub fn occlusion_predictions(
    model: &ResNet,
    pixels: &[u8],
    n: usize,
    h: usize,
    w: usize,
    batch: usize,
) -> crate::Result<(Vec<u32>, Vec<u32>)> {
    let mask = super::measure::ring_mask(h, w);
    let len = h * w * 3;
    let mut out = (Vec::with_capacity(n), Vec::with_capacity(n));
    for fill_ring in [false, true] {
        let filled: Vec<u8> = pixels[..n * len].chunks_exact(len).flat_map(|p| occlude(p, &mask, fill_ring)).collect();
        let p = model::predict(model, &filled, n, h, w, batch)?;
        let preds = (0..n).map(|i| p.predicted(i));
        if fill_ring {
            out.1.extend(preds);
        } else {
            out.0.extend(preds);
        }
    }
    Ok(out)
}

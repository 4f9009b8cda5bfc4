//! Label noise injected on purpose (`--inject-noise RATE --noise KIND`):
//! flipping a seeded share of the training labels before training, so that
//! the self-check can measure every flag against a known set of wrong labels.

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, DatasetSpec};
use crate::error::Result;
use crate::model::{self, checkpoint};
use crate::progress::Overall;
use crate::train::cv;
use crate::train::recipe::{self, ModelOptions};

/// How injected label noise picks the new label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseKind {
    /// Any other class, uniformly.
    Symmetric,
    /// The next class (c to c + 1, the last to the first): one fixed confusion per class.
    Pairwise,
    /// A class drawn in proportion to how often a model trained on the clean
    /// labels mistakes this class for it on the test split (its confusion
    /// matrix): the mistakes a real annotator is likely to make.
    Confusion,
}

/// Flips `rate` of the labels (rows chosen with `seed`); returns which rows
/// were flipped. `confusion[given][predicted]` (test-split counts) is needed
/// by [`NoiseKind::Confusion`]; a class the model never confuses with another
/// falls back to a uniform choice.
pub fn inject_noise(
    labels: &mut [u32],
    k: usize,
    rate: f64,
    kind: NoiseKind,
    seed: u64,
    confusion: Option<&[Vec<usize>]>,
) -> Vec<bool> {
    use rand::distr::{weighted::WeightedIndex, Distribution};
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(crate::seed::noise_injection(seed));
    let n = labels.len();
    let m = ((rate * n as f64).round() as usize).min(n);
    // Off-diagonal confusion weights per class; None where a row has none.
    let weights: Vec<Option<WeightedIndex<usize>>> = (0..k)
        .map(|c| {
            let row = confusion.and_then(|m| m.get(c))?;
            let w: Vec<usize> = (0..k).map(|j| if j == c { 0 } else { row.get(j).copied().unwrap_or(0) }).collect();
            WeightedIndex::new(w).ok()
        })
        .collect();
    let mut flipped = vec![false; n];
    for i in rand::seq::index::sample(&mut rng, n, m).into_vec() {
        let c = labels[i];
        labels[i] = match (kind, &weights[c as usize]) {
            (NoiseKind::Pairwise, _) => (c + 1) % k as u32,
            (NoiseKind::Confusion, Some(w)) => w.sample(&mut rng) as u32,
            _ => (c + rng.random_range(1..k as u32)) % k as u32,
        };
        flipped[i] = true;
    }
    flipped
}

/// The confusion matrix that [`NoiseKind::Confusion`] follows: the imported
/// model's, or that of one model trained with the audit's recipe on the
/// clean labels, on the test split. Returns it with a note of its source.
pub fn probe_confusion(
    ds: &Dataset,
    spec: &DatasetSpec,
    seed: u64,
    opts: &ModelOptions,
    device: &Device,
    progress: bool,
    overall: Option<&Overall>,
) -> Result<(Vec<Vec<usize>>, String)> {
    let (h, w) = (ds.height, ds.width);
    let (model, source) = match &opts.import {
        Some(path) => {
            let import =
                checkpoint::ImportOptions { classes: Some(ds.classes.clone()), mean: opts.mean, std: opts.std };
            (checkpoint::load(path, &import, device)?.0, format!("imported {}", path.display()))
        }
        None => {
            // The fast recipe's probe is the recipe's own, whatever the
            // training options say: the labels it flips are then the same
            // across the levers measured with it (docs/recipe.md). It trains
            // at full size: the recipe's small epochs came after those levers.
            let plan = recipe::recipe(spec, ds.train.len(), device.is_cuda(), opts.recipe, seed).3;
            let fixed =
                ModelOptions { recipe: opts.recipe, device: opts.device, small_epochs: Some(0), ..Default::default() };
            let probe_opts = if plan.recipe == Some(recipe::Recipe::Fast) { &fixed } else { opts };
            let (mcfg, mut t, plan) = recipe::setup(ds, spec, seed, probe_opts, device.is_cuda())?;
            // Only its confusion's shape is read: the recipe's probe epochs
            // (the training's for the demo and the full recipe).
            t.epochs = plan.probe_epochs;
            let source = format!("a probe model trained {} epochs on the clean labels", t.epochs);
            (cv::train_probe(ds, &mcfg, &t, device, progress, overall)?, source)
        }
    };
    let p = model::predict(&model, &ds.test.pixels, ds.test.len(), h, w, 256)?;
    let pred: Vec<u32> = (0..p.len()).map(|i| p.predicted(i)).collect();
    let eval = crate::stages::evaluate::evaluate(&ds.test.labels, &pred, ds.classes.len());
    Ok((eval.confusion, format!("{source}: test accuracy {:.4}", eval.accuracy)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_noise_follows_the_confusion_matrix() {
        // Class 0 is only ever mistaken for class 2; class 1 never is mistaken.
        let confusion = vec![vec![50, 0, 10, 0], vec![0, 60, 0, 0], vec![3, 0, 57, 0], vec![0, 0, 0, 60]];
        let mut labels: Vec<u32> = (0..4000).map(|i| (i % 4) as u32).collect();
        let before = labels.clone();
        let flipped = inject_noise(&mut labels, 4, 0.5, NoiseKind::Confusion, 3, Some(&confusion));
        assert_eq!(flipped.iter().filter(|f| **f).count(), 2000);
        let mut to = vec![vec![0usize; 4]; 4];
        for i in 0..labels.len() {
            assert_eq!(flipped[i], labels[i] != before[i], "row {i}");
            to[before[i] as usize][labels[i] as usize] += flipped[i] as usize;
        }
        // Every flip of class 0 goes to 2, every flip of class 2 to 0.
        assert!(to[0][2] > 400 && to[0][1] + to[0][3] == 0, "{to:?}");
        assert!(to[2][0] > 400 && to[2][1] + to[2][3] == 0, "{to:?}");
        // Classes without off-diagonal counts fall back to a uniform choice.
        assert!((1..4).filter(|&j| j != 1).all(|j| to[1][j] > 100) && to[1][0] > 100, "{to:?}");
        // Same seed, same flips.
        let mut again: Vec<u32> = before.clone();
        inject_noise(&mut again, 4, 0.5, NoiseKind::Confusion, 3, Some(&confusion));
        assert_eq!(again, labels);
    }
}

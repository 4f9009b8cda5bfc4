//! K-fold cross-validation: every training image gets predictions from a
//! model that never saw it (folds stratified by label), then one final model
//! trains on all training images for the test split, attacks and
//! explanations. Each job is resumable from its own state file.

use candle_core::Device;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use std::path::Path;

use super::recipe::Plan;
use super::{train, Dynamics, EpochSummary, Reporter, Resume, Snapshot, TrainConfig, TrainSet};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::{self, ModelConfig, Predictions, ResNet};
use crate::progress::{Overall, INFER_UNITS};

/// Folds used when none are asked for: 5 up to 20,000 training images (each
/// model still sees 80% of them), 4 above (one training run fewer).
pub fn default_folds(n_train: usize) -> usize {
    if n_train <= 20_000 {
        5
    } else {
        4
    }
}

/// Assigns each row a fold in `0..k`: within every class, rows are shuffled
/// (seeded) and dealt round-robin, so each fold has each class's share.
pub fn stratified_folds(labels: &[u32], k: usize, seed: u64) -> Vec<u32> {
    let n_classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold = vec![0u32; labels.len()];
    let mut next = 0usize;
    for c in 0..n_classes {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] as usize == c).collect();
        rows.shuffle(&mut rng);
        for r in rows {
            fold[r] = (next % k) as u32;
            next += 1;
        }
    }
    fold
}

/// What cross-validation produces.
#[derive(Debug)]
pub struct CvOutput {
    /// Number of folds.
    pub folds: usize,
    /// Held-out fold of each training row.
    pub fold_of: Vec<u32>,
    /// Out-of-sample logits of every training row (with the plan's
    /// test-time flips, the log of the mean probability of the image and its
    /// mirror) and the fold model's features.
    pub out_of_sample: Predictions,
    /// The model for the test split, embeddings, attacks and explanations:
    /// the final model trained on every training row, or, without one, the
    /// first fold's model.
    pub model: ResNet,
    /// Every fold's model, in fold order, when there is no final model (the
    /// test split gets their ensemble); empty otherwise.
    pub fold_models: Vec<ResNet>,
    /// Training dynamics of every training row (split order): the final
    /// model's, or, without one, the run of the fold model after the row's
    /// own fold (a model that trained on the row).
    pub dynamics: Dynamics,
    /// Epoch summaries of every job (`fold 1/5`, ..., `final`).
    pub history: Vec<(String, Vec<EpochSummary>)>,
    /// The threshold-sample run, when asked for.
    pub aum_threshold: Option<AumThreshold>,
    /// TracIn's snapshots of the models that serve the later stages: the
    /// final model's, or, without one, every fold model's.
    pub traced: Vec<TracedModel>,
}

/// Snapshots kept of each model that serves the later stages, for TracIn,
/// unless `--tracin-checkpoints` says otherwise: the end of its training
/// only. Summed over 3 snapshots weighted by the learning rate, the
/// flipped labels of a 10,000-image CIFAR-10 subset (10% confusion noise)
/// were 24.7% of the top-10 proponents of its test mistakes, against 44.3%
/// with the end alone (docs/evaluation.md, "Influence"): the early
/// snapshots, weak models at the highest learning rates, outweigh it.
pub const TRACIN_SNAPSHOTS: usize = 1;

/// The epochs after which a training run of `epochs` keeps a TracIn
/// snapshot: `count` evenly spaced, the last one the end.
pub fn tracin_epochs(epochs: usize, count: usize) -> Vec<usize> {
    let mut out: Vec<usize> = (1..=count).map(|j| (epochs * j).div_ceil(count)).collect();
    out.retain(|&e| e >= 1);
    out.dedup();
    out
}

/// One model's TracIn snapshots and the training rows it trained on.
#[derive(Debug)]
pub struct TracedModel {
    /// Which model, in words (`fold 1/2`, `final`).
    pub label: String,
    /// Whether it trained on each training row `[n_train]`.
    pub trained: Vec<bool>,
    /// Its snapshots, in epoch order.
    pub snapshots: Vec<Snapshot>,
}

/// Name of the fake class of the threshold-sample run.
pub const THRESHOLD_CLASS: &str = "__aum_threshold__";

/// The AUM threshold of Pleiss et al. 2020 from a run with threshold samples.
#[derive(Debug)]
pub struct AumThreshold {
    /// 99th percentile of the threshold samples' AUM: images of real classes
    /// whose AUM is below it are as badly fitted as deliberately mislabeled ones.
    pub threshold: f32,
    /// Which training rows were relabelled to the fake class.
    pub is_threshold_sample: Vec<bool>,
    /// Every training row's AUM in that run.
    pub aum: Vec<f32>,
}

impl AumThreshold {
    /// Whether training row `i` is flagged (AUM below the threshold); None
    /// for threshold samples and rows past the training set.
    pub fn flag(&self, i: usize) -> Option<bool> {
        (i < self.aum.len() && !self.is_threshold_sample[i]).then(|| self.aum[i] < self.threshold)
    }
}

/// Training image-steps of a cross-validation with `plan` on `n` training
/// rows (each fold trains on the rows outside it), for the audit's estimate
/// of the time left; each epoch of `cfg.small_epochs` counts at
/// [`crate::progress::SMALL_STEP_UNITS`].
pub fn planned_image_steps(n: usize, cfg: &TrainConfig, plan: &Plan) -> f64 {
    let runs = fold_rows(n, plan.folds) + n * (plan.final_model as usize + plan.aum_threshold as usize);
    runs as f64 * super::epoch_units(cfg, 0, cfg.epochs)
}

/// Images predicted after the training runs of a cross-validation with
/// `plan` (held-out rows, and both splits by the final or first fold model;
/// the test split by every fold model without a final one), counting the
/// mirrored copies of test-time flips.
pub fn planned_predictions(n_train: usize, n_test: usize, plan: &Plan) -> f64 {
    let flips = if plan.flip_predictions { 2 } else { 1 };
    let ensemble = if plan.final_model { 0 } else { plan.folds * n_test * flips };
    (n_train * flips + n_train + n_test + ensemble) as f64
}

/// The training rows of all `folds` fold models together (each trains on
/// the rows outside its fold).
fn fold_rows(n: usize, folds: usize) -> usize {
    let folds = folds.max(1);
    (0..folds).map(|k| n - (n + folds - 1 - k) / folds).sum()
}

/// Training images predicted by TracIn's snapshots (the influence stage):
/// each snapshot of a model that serves the later stages, over the rows it
/// trained on (the test mistakes it also predicts are not counted).
pub fn planned_tracin_predictions(n: usize, epochs: usize, plan: &Plan) -> f64 {
    let snapshots = tracin_epochs(epochs, plan.tracin_checkpoints).len();
    let rows = if plan.final_model { n } else { fold_rows(n, plan.folds) };
    (snapshots * rows) as f64
}

/// Runs K-fold cross-validation on `ds.train` as `plan` says: the folds,
/// then the final model (or none: the fold models serve), then the run with
/// threshold samples for the AUM threshold. With `state_dir`, each job's
/// state is kept there after every epoch, and a later call with the same
/// inputs resumes where it stopped.
#[allow(clippy::too_many_arguments)]
pub fn cross_validate(
    ds: &Dataset,
    mcfg: &ModelConfig,
    tcfg: &TrainConfig,
    plan: &Plan,
    state_dir: Option<&Path>,
    device: &Device,
    progress: bool,
    overall: Option<&Overall>,
) -> Result<CvOutput> {
    let n = ds.train.len();
    let folds = plan.folds;
    if folds < 2 || folds > n {
        return Err(Error::Usage(format!("--folds {folds}: need 2 to {n} folds")));
    }
    let fold_of = stratified_folds(&ds.train.labels, folds, tcfg.seed);
    let keep = tracin_epochs(tcfg.epochs, plan.tracin_checkpoints);
    let key_base = format!(
        "{}|{}|{}|{folds}|tracin {keep:?}",
        serde_json::to_string(mcfg).expect("config serialises"),
        serde_json::to_string(tcfg).expect("config serialises"),
        ds.fingerprint()
    );
    if let Some(dir) = state_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let (h, w) = (ds.height, ds.width);
    let len = h * w * 3;
    let classes = mcfg.classes.len();
    let mut oos = Predictions {
        classes,
        feature_dim: mcfg.feature_dim(),
        logits: vec![0.0; n * classes],
        features: vec![0.0; n * mcfg.feature_dim()],
    };
    let mut history = Vec::new();
    let mut traced = Vec::new();
    let mut run_job = |job: usize,
                       rows: &[usize],
                       labels: &[u32],
                       mcfg: &ModelConfig,
                       label: String,
                       keep: &[usize]|
     -> Result<(ResNet, Dynamics)> {
        let seed = crate::seed::training_job(tcfg.seed, job);
        let model = ResNet::init(mcfg.clone(), seed, device)?;
        let cfg = TrainConfig { seed, ..tcfg.clone() };
        let key = format!("{:x}", Sha256::digest(format!("{key_base}|job {job}").as_bytes()));
        let path = state_dir.map(|d| d.join(format!("job-{job}.safetensors")));
        let resume = path.as_deref().map(|p| Resume { path: p, key });
        let set = TrainSet { pixels: &ds.train.pixels, labels, height: h, width: w, rows };
        let reporter = Reporter { enabled: progress, label: label.clone(), overall: overall.cloned() };
        let done = train(&model, &set, &cfg, resume.as_ref(), &reporter, keep)?;
        if !keep.is_empty() {
            let mut trained = vec![false; n];
            for &i in rows {
                trained[i] = true;
            }
            traced.push(TracedModel { label: label.clone(), trained, snapshots: done.snapshots });
        }
        history.push((label, done.epochs));
        Ok((model, done.dynamics))
    };
    let mut fold_models = Vec::new();
    let mut fold_dynamics = Vec::new();
    for k in 0..folds {
        let train_rows: Vec<usize> = (0..n).filter(|&i| fold_of[i] != k as u32).collect();
        let held: Vec<usize> = (0..n).filter(|&i| fold_of[i] == k as u32).collect();
        let fold_keep = if plan.final_model { &[][..] } else { &keep[..] };
        let label = format!("fold {}/{folds}", k + 1);
        let (model, dynamics) = run_job(k, &train_rows, &ds.train.labels, mcfg, label, fold_keep)?;
        let px: Vec<u8> = held.iter().flat_map(|&i| ds.train.pixels[i * len..(i + 1) * len].iter().copied()).collect();
        let p = model::predict_tta(&model, &px, held.len(), h, w, plan.flip_predictions)?;
        if let Some(o) = overall {
            o.advance(INFER_UNITS * (held.len() * if plan.flip_predictions { 2 } else { 1 }) as f64);
        }
        for (j, &i) in held.iter().enumerate() {
            oos.logits[i * classes..(i + 1) * classes].copy_from_slice(p.logits_of(j));
            let f = p.feature_dim;
            oos.features[i * f..(i + 1) * f].copy_from_slice(&p.features[j * f..(j + 1) * f]);
        }
        if !plan.final_model {
            fold_models.push(model);
            fold_dynamics.push((train_rows, dynamics));
        }
    }
    let all: Vec<usize> = (0..n).collect();
    let (model, dynamics) = if plan.final_model {
        run_job(folds, &all, &ds.train.labels, mcfg, "final".into(), &keep)?
    } else {
        // Each row's dynamics from the next fold's model, which trained on it.
        let epochs = fold_dynamics[0].1.epochs;
        let mut d = Dynamics::new(n);
        let position: Vec<Vec<usize>> = fold_dynamics
            .iter()
            .map(|(rows, _)| {
                let mut at = vec![usize::MAX; n];
                for (j, &i) in rows.iter().enumerate() {
                    at[i] = j;
                }
                at
            })
            .collect();
        for e in 0..epochs {
            let (mut loss, mut margin, mut correct) = (vec![0f32; n], vec![0f32; n], vec![false; n]);
            for i in 0..n {
                let m = (fold_of[i] as usize + 1) % folds;
                let (src, j) = (&fold_dynamics[m].1, position[m][i]);
                loss[i] = src.loss[e * src.n + j];
                margin[i] = src.margin[e * src.n + j];
                correct[i] = src.correct[e * src.n + j];
            }
            d.push_epoch(&loss, &margin, &correct);
        }
        (fold_models[0].clone(), d)
    };
    let aum_threshold = if plan.aum_threshold {
        // Pleiss et al. 2020: relabel N/(c+1) images to an extra, fake class;
        // their AUM shows how low the AUM of a mislabeled image runs.
        let c = mcfg.classes.len() as u32;
        let m = n / (c as usize + 1);
        let mut rng = ChaCha8Rng::seed_from_u64(crate::seed::training_job(tcfg.seed, folds + 1));
        let chosen = rand::seq::index::sample(&mut rng, n, m).into_vec();
        let mut labels = ds.train.labels.clone();
        let mut is_threshold = vec![false; n];
        for &i in &chosen {
            labels[i] = c;
            is_threshold[i] = true;
        }
        let mut fake = mcfg.clone();
        fake.classes.push(THRESHOLD_CLASS.to_string());
        let (_, d) = run_job(folds + 1, &all, &labels, &fake, "AUM threshold".into(), &[])?;
        let aum: Vec<f32> = (0..n).map(|i| d.aum(i)).collect();
        let mut t: Vec<f32> = chosen.iter().map(|&i| aum[i]).collect();
        t.sort_by(f32::total_cmp);
        let threshold =
            t.get(((t.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f32::NEG_INFINITY);
        Some(AumThreshold { threshold, is_threshold_sample: is_threshold, aum })
    } else {
        None
    };
    Ok(CvOutput { folds, fold_of, out_of_sample: oos, model, fold_models, dynamics, history, aum_threshold, traced })
}

/// One model trained on every training image with the recipe, for a look at
/// its mistakes before the audit proper (the confusion that `--noise
/// confusion` follows). Its seed is its own job's; it keeps no state.
pub fn train_probe(
    ds: &Dataset,
    mcfg: &ModelConfig,
    tcfg: &TrainConfig,
    device: &Device,
    progress: bool,
    overall: Option<&Overall>,
) -> Result<ResNet> {
    let seed = crate::seed::training_job(tcfg.seed, PROBE_JOB);
    let model = ResNet::init(mcfg.clone(), seed, device)?;
    let all: Vec<usize> = (0..ds.train.len()).collect();
    let set =
        TrainSet { pixels: &ds.train.pixels, labels: &ds.train.labels, height: ds.height, width: ds.width, rows: &all };
    let cfg = TrainConfig { seed, ..tcfg.clone() };
    let reporter = Reporter { enabled: progress, label: "probe".into(), overall: overall.cloned() };
    train(&model, &set, &cfg, None, &reporter, &[])?;
    Ok(model)
}

/// Job number of [`train_probe`], far from the folds' (0..K), the final
/// model's (K) and the AUM run's (K + 1).
const PROBE_JOB: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_stratified_and_cover_every_row_once() {
        let labels: Vec<u32> = (0..103).map(|i| (i % 3) as u32).collect();
        let f = stratified_folds(&labels, 5, 7);
        for k in 0..5u32 {
            for c in 0..3u32 {
                let n = (0..103).filter(|&i| f[i] == k && labels[i] == c).count();
                assert!((6..=8).contains(&n), "fold {k} class {c}: {n}");
            }
        }
        assert_eq!(f, stratified_folds(&labels, 5, 7));
        assert_ne!(f, stratified_folds(&labels, 5, 8));
    }

    #[test]
    fn tracin_snapshots_are_evenly_spaced_and_end_at_the_last_epoch() {
        assert_eq!(tracin_epochs(20, 3), vec![7, 14, 20]);
        assert_eq!(tracin_epochs(24, 3), vec![8, 16, 24]);
        assert_eq!(tracin_epochs(20, 1), vec![20]);
        assert_eq!(tracin_epochs(2, 3), vec![1, 2]);
        assert_eq!(tracin_epochs(1, 3), vec![1]);
    }
}

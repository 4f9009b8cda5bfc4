//! Training a ResNet: seeded SGD over shuffled, augmented batches, recording
//! every training sample's loss, margin and correctness at every epoch (the
//! training dynamics), with a checkpoint after every epoch that a later run
//! resumes from. [`cv`] runs K-fold cross-validation on top of it.

pub mod augment;
pub mod cv;
pub mod dynamics;
pub mod optim;
pub mod recipe;
pub mod schedule;

use candle_core::{DType, Tensor, D};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

pub use augment::Augment;
pub use dynamics::Dynamics;
pub use optim::{Sgd, SgdConfig};
pub use schedule::Schedule;

use crate::error::{Error, Result};
use crate::model::{self, checkpoint, ResNet};

/// How to train.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per SGD step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Momentum and weight decay.
    pub sgd: SgdConfig,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Augmentation applied to every training batch.
    pub augment: Augment,
    /// Label smoothing of the training loss (0: off).
    pub label_smoothing: f64,
    /// The first epochs trained on images at half their height and width
    /// (each pixel the rounded mean of a 2x2 block, after augmentation): a
    /// quarter of the pixels per step (progressive resizing; 0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub small_epochs: usize,
    /// Seed of the shuffles and augmentations (the caller derives one per fold).
    pub seed: u64,
}

impl TrainConfig {
    /// The CIFAR ResNet recipe (He et al.; akamaster): SGD 0.1, momentum 0.9,
    /// weight decay 1e-4, batch 128, crop with 4-pixel padding and flips.
    pub fn cifar(epochs: usize, seed: u64) -> Self {
        TrainConfig {
            epochs,
            batch_size: 128,
            lr: 0.1,
            sgd: SgdConfig { momentum: 0.9, nesterov: false, weight_decay: 1e-4 },
            schedule: Schedule::OneCycle { warmup: 0.15 },
            augment: Augment { crop_padding: 4, flip: true },
            label_smoothing: 0.0,
            small_epochs: 0,
            seed,
        }
    }
}

/// The images a model trains on: a whole split and the rows of it to use.
#[derive(Clone, Copy, Debug)]
pub struct TrainSet<'a> {
    /// `[n, h, w, 3]` u8 pixels of the split.
    pub pixels: &'a [u8],
    /// Labels of the split.
    pub labels: &'a [u32],
    pub height: usize,
    pub width: usize,
    /// Rows of the split to train on (a fold's complement, or all).
    pub rows: &'a [usize],
}

/// Where and how a training job keeps its resumable state.
#[derive(Clone, Debug)]
pub struct Resume<'a> {
    /// The state file (a safetensors file rewritten after every epoch).
    pub path: &'a Path,
    /// What identifies the job (configuration, data fingerprint, rows): a
    /// state file with another key is not resumed from.
    pub key: String,
}

/// Reports progress: a bar per epoch and a line per epoch on standard error.
#[derive(Clone, Debug)]
pub struct Reporter {
    /// Show bars and epoch lines.
    pub enabled: bool,
    /// What is being trained, e.g. `fold 2/4`.
    pub label: String,
    /// The whole audit's progress, advanced by every image-step.
    pub overall: Option<crate::progress::Overall>,
}

impl Reporter {
    /// A reporter of one training run on its own (no audit around it).
    pub fn alone(enabled: bool, label: &str) -> Reporter {
        Reporter { enabled, label: label.to_string(), overall: None }
    }

    /// ", audit 14%, about 38 min left" when there is an audit around it.
    fn overall_status(&self) -> String {
        self.overall.as_ref().map(|o| format!(", {}", o.status())).unwrap_or_default()
    }
}

/// A model's weights at the end of an epoch, kept for TracIn
/// ([`crate::tracin`]): each stands for the epochs since the one before.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Epochs completed when it was taken (1-based).
    pub epoch: usize,
    /// Its weight in TracIn's sum: the learning rate summed over the steps
    /// of the epochs it stands for, divided by the steps of one epoch (each
    /// image is stepped on once an epoch, so this is the step size its
    /// gradient got over those epochs).
    pub lr_weight: f64,
    /// Every parameter and buffer by name (copies, not the live ones).
    pub tensors: BTreeMap<String, Tensor>,
}

/// What a training run leaves besides the trained model.
#[derive(Debug)]
pub struct Trained {
    /// Per-image loss, margin and correctness of every epoch (rows in the
    /// order of the set's rows).
    pub dynamics: Dynamics,
    /// One summary per epoch run (not those resumed from).
    pub epochs: Vec<EpochSummary>,
    /// The snapshots asked for, in epoch order.
    pub snapshots: Vec<Snapshot>,
}

/// TracIn's weight of a snapshot after epoch `to` standing for the epochs
/// after `from` (see [`Snapshot::lr_weight`]).
pub fn snapshot_weight(cfg: &TrainConfig, steps_per_epoch: usize, from: usize, to: usize) -> f64 {
    let total = steps_per_epoch * cfg.epochs;
    let sum: f64 = (from * steps_per_epoch..to * steps_per_epoch).map(|s| cfg.schedule.lr(cfg.lr, s, total)).sum();
    sum / steps_per_epoch.max(1) as f64
}

/// Tensor-name prefix of the snapshots in a training state file.
const SNAPSHOT_PREFIX: &str = "snapshot.";

/// One epoch's summary.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochSummary {
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub lr: f64,
    pub images_per_s: f64,
}

/// Cross-entropy of `[b, k]` logits against `[b]` u32 labels, with label
/// smoothing `eps`; the mean over the batch.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let nll = logp.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?;
    let per = if eps > 0.0 { ((nll * (1.0 - eps))? + (logp.mean(D::Minus1)?.neg()? * eps)?)? } else { nll };
    per.mean_all()
}

/// Loss, logit margin and correctness of one row of logits against `label`.
pub fn sample_stats(logits: &[f32], label: usize) -> (f32, f32, bool) {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + logits.iter().map(|&v| (v - max).exp()).sum::<f32>().ln();
    let other =
        logits.iter().enumerate().filter(|&(k, _)| k != label).map(|(_, &v)| v).fold(f32::NEG_INFINITY, f32::max);
    let correct = logits[label] > other;
    (lse - logits[label], logits[label] - other, correct)
}

/// Restores params, momentum, dynamics and the snapshots of the epochs in
/// `keep` it had reached from a state file; returns the number of epochs it
/// had completed, or `None` when there is no state, it belongs to another
/// job, or it lacks a snapshot asked for.
fn restore(
    model: &ResNet,
    sgd: &mut Sgd,
    dyn_: &mut Dynamics,
    resume: &Resume,
    keep: &[usize],
    snapshots: &mut Vec<(usize, BTreeMap<String, Tensor>)>,
) -> Result<Option<usize>> {
    if !resume.path.exists() {
        return Ok(None);
    }
    let (mut tensors, meta) = checkpoint::read_tensors(resume.path, model.device())?;
    if meta.get("state_key") != Some(&resume.key) {
        return Ok(None);
    }
    let epochs: usize = meta.get("epoch").and_then(|e| e.parse().ok()).unwrap_or(0);
    let mut kept: BTreeMap<usize, BTreeMap<String, Tensor>> = BTreeMap::new();
    let names: Vec<String> = tensors.keys().filter(|k| k.starts_with(SNAPSHOT_PREFIX)).cloned().collect();
    for key in names {
        let rest = &key[SNAPSHOT_PREFIX.len()..];
        if let Some((e, name)) = rest.split_once('.').and_then(|(e, n)| Some((e.parse::<usize>().ok()?, n))) {
            let t = tensors.remove(&key).expect("listed");
            kept.entry(e).or_default().insert(name.to_string(), t);
        }
    }
    if keep.iter().any(|e| *e <= epochs && !kept.contains_key(e)) {
        return Ok(None);
    }
    for (name, var) in model.params.trainable.iter().chain(&model.params.buffers) {
        let t = tensors.remove(name).ok_or_else(|| {
            crate::error::Problem::entry(
                resume.path,
                format!("tensor {name}"),
                "missing from this training state; delete the file to train that job from the start",
            )
        })?;
        var.set(&t)?;
    }
    for (name, _) in &model.params.trainable {
        if let Some(b) = tensors.remove(&format!("optim.momentum.{name}")) {
            sgd.buffers.insert(name.clone(), b);
        }
    }
    let take = |t: Option<Tensor>| -> Result<Vec<f32>> {
        Ok(match t {
            Some(t) => t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?,
            None => Vec::new(),
        })
    };
    let (loss, margin, correct) = (
        take(tensors.remove("dynamics.loss"))?,
        take(tensors.remove("dynamics.margin"))?,
        take(tensors.remove("dynamics.correct"))?,
    );
    if loss.len() != epochs * dyn_.n || margin.len() != loss.len() || correct.len() != loss.len() {
        return Ok(None);
    }
    dyn_.loss = loss;
    dyn_.margin = margin;
    dyn_.correct = correct.into_iter().map(|c| c != 0.0).collect();
    dyn_.epochs = epochs;
    *snapshots = kept.into_iter().filter(|(e, _)| keep.contains(e) && *e <= epochs).collect();
    Ok(Some(epochs))
}

fn save_state(
    model: &ResNet,
    sgd: &Sgd,
    dyn_: &Dynamics,
    resume: &Resume,
    epoch: usize,
    snapshots: &[(usize, BTreeMap<String, Tensor>)],
) -> Result<()> {
    let device = model.device();
    let mut tensors = model.params.tensors();
    for (e, snap) in snapshots {
        for (name, t) in snap {
            tensors.insert(format!("{SNAPSHOT_PREFIX}{e}.{name}"), t.clone());
        }
    }
    for (name, b) in &sgd.buffers {
        tensors.insert(format!("optim.momentum.{name}"), b.clone());
    }
    let shape = (dyn_.epochs, dyn_.n);
    tensors.insert("dynamics.loss".into(), Tensor::from_slice(&dyn_.loss, shape, device)?);
    tensors.insert("dynamics.margin".into(), Tensor::from_slice(&dyn_.margin, shape, device)?);
    let correct: Vec<f32> = dyn_.correct.iter().map(|&c| c as u8 as f32).collect();
    tensors.insert("dynamics.correct".into(), Tensor::from_slice(&correct, shape, device)?);
    let extra =
        BTreeMap::from([("epoch".to_string(), epoch.to_string()), ("state_key".to_string(), resume.key.clone())]);
    let bytes = checkpoint::to_bytes(&tensors, checkpoint::metadata(&model.config, &extra))?;
    crate::atomic::write(resume.path, &bytes)
}

/// For serde: leave a zero out of the configuration.
fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Whether `h`x`w` images can train at half size: an even height and width
/// of at least 8 (the small epochs of [`TrainConfig::small_epochs`]).
pub fn halvable(h: usize, w: usize) -> bool {
    h % 2 == 0 && w % 2 == 0 && h >= 8 && w >= 8
}

/// Writes `[m, h/2, w/2, 3]` images into `dst`, each pixel the rounded mean
/// of a 2x2 block of `src` (`[m, h, w, 3]`, `h` and `w` even).
pub fn halve(src: &[u8], dst: &mut [u8], m: usize, h: usize, w: usize) {
    let (h2, w2) = (h / 2, w / 2);
    for i in 0..m {
        let (s, d) = (&src[i * h * w * 3..(i + 1) * h * w * 3], &mut dst[i * h2 * w2 * 3..(i + 1) * h2 * w2 * 3]);
        for y in 0..h2 {
            for x in 0..w2 {
                for c in 0..3 {
                    let at = |yy: usize, xx: usize| s[(yy * w + xx) * 3 + c] as u16;
                    let sum = at(2 * y, 2 * x) + at(2 * y, 2 * x + 1) + at(2 * y + 1, 2 * x) + at(2 * y + 1, 2 * x + 1);
                    d[(y * w2 + x) * 3 + c] = ((sum + 2) / 4) as u8;
                }
            }
        }
    }
}

/// Progress units of one image in each epoch from `from` to `to` (0-based,
/// `to` excluded): 1 at full size, [`crate::progress::SMALL_STEP_UNITS`] in
/// the small epochs.
pub fn epoch_units(cfg: &TrainConfig, from: usize, to: usize) -> f64 {
    (from..to).map(|e| if e < cfg.small_epochs { crate::progress::SMALL_STEP_UNITS } else { 1.0 }).sum()
}

/// Trains `model` in place on `set.rows` and returns the training dynamics
/// (rows in the order of `set.rows`), the epochs' summaries and a snapshot
/// of the weights after each epoch in `keep` (1-based). With `resume`, the
/// state after every epoch is saved there (with the snapshots so far), and
/// a matching state found there is resumed from.
pub fn train(
    model: &ResNet,
    set: &TrainSet,
    cfg: &TrainConfig,
    resume: Option<&Resume>,
    report: &Reporter,
    keep: &[usize],
) -> Result<Trained> {
    let n = set.rows.len();
    if n == 0 {
        return Err(Error::Usage("no training images".into()));
    }
    let (h, w) = (set.height, set.width);
    let len = h * w * 3;
    let bs = cfg.batch_size.max(1);
    let steps_per_epoch = n.div_ceil(bs);
    let total_steps = steps_per_epoch * cfg.epochs;
    let mut sgd = Sgd::new(cfg.sgd.clone());
    let mut dynamics = Dynamics::new(n);
    let mut start = 0;
    let mut kept: Vec<(usize, BTreeMap<String, Tensor>)> = Vec::new();
    if let Some(r) = resume {
        if let Some(done) = restore(model, &mut sgd, &mut dynamics, r, keep, &mut kept)? {
            if let Some(o) = &report.overall {
                o.skip(n as f64 * epoch_units(cfg, 0, done));
            }
            if report.enabled {
                eprintln!("{}: resuming after epoch {done} from {}", report.label, r.path.display());
            }
            start = done;
        }
    }
    let mut summaries = Vec::new();
    let mut batch_px = vec![0u8; bs * len];
    if cfg.small_epochs > 0 && !halvable(h, w) {
        return Err(Error::Usage(format!(
            "small epochs train at half size: {h}x{w} images must have an even height and width of at least 8"
        )));
    }
    let mut small_px = vec![0u8; if cfg.small_epochs > 0 { bs * len / 4 } else { 0 }];
    for epoch in start..cfg.epochs {
        let t0 = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        rng.set_stream(epoch as u64 + 1);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let bar = crate::progress::bar(report.enabled, n as u64, "training");
        bar.set_message(format!("{} epoch {}/{}", report.label, epoch + 1, cfg.epochs));
        let (mut loss_sum, mut correct_n) = (0f64, 0usize);
        let (mut ep_loss, mut ep_margin, mut ep_correct) = (vec![0f32; n], vec![0f32; n], vec![false; n]);
        let mut lr = cfg.lr;
        let (small, units) = (epoch < cfg.small_epochs, epoch_units(cfg, epoch, epoch + 1));
        for (b, chunk) in order.chunks(bs).enumerate() {
            let m = chunk.len();
            let mut labels = Vec::with_capacity(m);
            for (j, &k) in chunk.iter().enumerate() {
                let row = set.rows[k];
                augment::augment(
                    &set.pixels[row * len..(row + 1) * len],
                    &mut batch_px[j * len..(j + 1) * len],
                    h,
                    w,
                    &cfg.augment,
                    &mut rng,
                );
                labels.push(set.labels[row]);
            }
            let x = if small {
                halve(&batch_px[..m * len], &mut small_px[..m * len / 4], m, h, w);
                model::images_to_tensor(&small_px[..m * len / 4], m, h / 2, w / 2, model.device())?
            } else {
                model::images_to_tensor(&batch_px[..m * len], m, h, w, model.device())?
            };
            let y = Tensor::from_slice(&labels, m, model.device())?;
            let out = model.forward(&x, true)?;
            let loss = cross_entropy(&out.logits, &y, cfg.label_smoothing)?;
            let loss_v = loss.to_scalar::<f32>()?;
            if !loss_v.is_finite() {
                return Err(Error::Diverged { epoch: epoch + 1, batch: b + 1, loss: loss_v });
            }
            let grads = loss.backward()?;
            lr = cfg.schedule.lr(cfg.lr, epoch * steps_per_epoch + b, total_steps);
            sgd.step(&model.params.trainable, &grads, lr)?;
            let logits: Vec<Vec<f32>> = out.logits.to_vec2()?;
            for (j, &k) in chunk.iter().enumerate() {
                let (l, mg, c) = sample_stats(&logits[j], labels[j] as usize);
                ep_loss[k] = l;
                ep_margin[k] = mg;
                ep_correct[k] = c;
                loss_sum += l as f64;
                correct_n += c as usize;
            }
            bar.inc(m as u64);
            if let Some(o) = &report.overall {
                o.advance(m as f64 * units);
            }
            if report.enabled {
                let seen = (b * bs + m) as f64;
                bar.set_message(format!(
                    "{} epoch {}/{} loss {:.3} acc {:.1}%{}",
                    report.label,
                    epoch + 1,
                    cfg.epochs,
                    loss_sum / seen,
                    100.0 * correct_n as f64 / seen,
                    report.overall_status()
                ));
            }
        }
        bar.finish_and_clear();
        dynamics.push_epoch(&ep_loss, &ep_margin, &ep_correct);
        let secs = t0.elapsed().as_secs_f64();
        let s = EpochSummary {
            epoch: epoch + 1,
            loss: loss_sum / n as f64,
            accuracy: correct_n as f64 / n as f64,
            lr,
            images_per_s: n as f64 / secs,
        };
        if report.enabled {
            eprintln!(
                "{} epoch {:>3}/{}: loss {:.4}  train acc {:.1}%  lr {:.4}  {:.0} img/s{}",
                report.label,
                s.epoch,
                cfg.epochs,
                s.loss,
                100.0 * s.accuracy,
                s.lr,
                s.images_per_s,
                report.overall_status()
            );
        }
        summaries.push(s);
        if keep.contains(&(epoch + 1)) {
            let copies = model.params.tensors().into_iter().map(|(k, t)| Ok((k, t.copy()?))).collect::<Result<_>>()?;
            kept.push((epoch + 1, copies));
        }
        if let Some(r) = resume {
            save_state(model, &sgd, &dynamics, r, epoch + 1, &kept)?;
        }
    }
    let mut from = 0;
    let snapshots = kept
        .into_iter()
        .map(|(epoch, tensors)| {
            let lr_weight = snapshot_weight(cfg, steps_per_epoch, from, epoch);
            from = epoch;
            Snapshot { epoch, lr_weight, tensors }
        })
        .collect();
    Ok(Trained { dynamics, epochs: summaries, snapshots })
}

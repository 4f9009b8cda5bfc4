//! `misfit bench`: throughput of the model's training step and inference on
//! the current device, and, where PyTorch is installed, of the same model in
//! PyTorch on the same machine in the same run, with the ratio.

pub mod copies;
pub mod flags;
pub mod label_noise;
pub mod score;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::model::{ModelConfig, ResNet, Shortcut, IMAGENET_MEAN, IMAGENET_STD};
use crate::train::{cross_entropy, Sgd, SgdConfig};

/// The PyTorch script, run as a reference.
pub const TORCH_SCRIPT: &str = include_str!("torch_resnet.py");

/// What to measure.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchConfig {
    pub depth: usize,
    pub width: usize,
    /// Image side in pixels.
    pub size: usize,
    pub batch: usize,
    /// Timed steps (after `warmup` untimed ones).
    pub steps: usize,
    pub warmup: usize,
}

impl BenchConfig {
    /// "ResNet-20, width 16, 32x32 images, batch 128, 5 timed steps after 1".
    pub fn describe(&self, unit: &str) -> String {
        format!(
            "ResNet-{}, width {}, {s}x{s} images, batch {}, {} timed {unit} after {}",
            self.depth,
            self.width,
            self.batch,
            self.steps,
            self.warmup,
            s = self.size
        )
    }

    /// The benchmarked ResNet: option A shortcuts, 10 classes.
    fn model_config(&self) -> ModelConfig {
        ModelConfig {
            depth: self.depth,
            width: self.width,
            shortcut: Shortcut::A,
            classes: (0..10).map(|i| i.to_string()).collect(),
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }
}

/// Measured throughput.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Throughput {
    /// Seconds per SGD step (forward, backward, update).
    pub train_step_s: f64,
    /// Of which the forward pass.
    pub forward_s: f64,
    /// Of which the backward pass.
    pub backward_s: f64,
    /// Images per second through SGD steps.
    pub train_img_s: f64,
    /// Images per second through eval-mode forward passes.
    pub infer_img_s: f64,
}

/// Measures misfit's ResNet on `device`.
pub fn measure(cfg: &BenchConfig, device: &Device) -> Result<Throughput> {
    let model = ResNet::init(cfg.model_config(), 0, device)?;
    let x = Tensor::rand(0f32, 1f32, (cfg.batch, 3, cfg.size, cfg.size), device)?;
    let y = Tensor::from_vec((0..cfg.batch as u32).map(|i| i % 10).collect::<Vec<_>>(), cfg.batch, device)?;
    let mut sgd = Sgd::new(SgdConfig { momentum: 0.9, nesterov: false, weight_decay: 1e-4 });
    let (mut fwd, mut bwd, mut total) = (0f64, 0f64, 0f64);
    for i in 0..cfg.warmup + cfg.steps {
        let t0 = Instant::now();
        let out = model.forward(&x, true)?;
        let loss = cross_entropy(&out.logits, &y, 0.0)?;
        loss.to_scalar::<f32>()?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        device.synchronize()?;
        let t2 = Instant::now();
        sgd.step(&model.params.trainable, &grads, 0.05)?;
        device.synchronize()?;
        if i >= cfg.warmup {
            fwd += (t1 - t0).as_secs_f64();
            bwd += (t2 - t1).as_secs_f64();
            total += t0.elapsed().as_secs_f64();
        }
    }
    let steps = cfg.steps.max(1) as f64;
    // Inference as `predict` runs it (and PyTorch under `no_grad`): no gradients tracked.
    let frozen = model.frozen();
    let mut infer = 0f64;
    for i in 0..cfg.warmup + cfg.steps {
        let t0 = Instant::now();
        frozen.forward(&x, false)?.logits.to_vec2::<f32>()?;
        if i >= cfg.warmup {
            infer += t0.elapsed().as_secs_f64();
        }
    }
    Ok(Throughput {
        train_step_s: total / steps,
        forward_s: fwd / steps,
        backward_s: bwd / steps,
        train_img_s: cfg.batch as f64 * steps / total,
        infer_img_s: cfg.batch as f64 * steps / infer,
    })
}

/// Median and range of repeated measurements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// Of `values` (not empty; the mean of the middle two for an even count).
    pub fn of(values: &[f64]) -> Spread {
        let median = crate::stats::median(values).expect("values are not empty");
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Spread { median, min, max }
    }
}

/// PyTorch's figures for the same model, from `python` (None when PyTorch
/// is not importable there).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TorchThroughput {
    pub torch: String,
    pub threads: usize,
    pub train_step_s: f64,
    pub train_img_s: f64,
    pub infer_img_s: f64,
    /// Images per second through PGD (when asked for).
    #[serde(default)]
    pub pgd_img_s: Option<f64>,
    /// Training images per second of each configuration measured (`f32
    /// eager` = `train_img_s`, `f32 channels_last`, `bf16 autocast channels_last`).
    #[serde(default)]
    pub train_variants: std::collections::BTreeMap<String, f64>,
}

impl TorchThroughput {
    /// The fastest training configuration measured, and its images per second.
    pub fn fastest_train(&self) -> (String, f64) {
        self.train_variants
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, v)| (k.clone(), *v))
            .unwrap_or_else(|| ("f32 eager".to_string(), self.train_img_s))
    }
}

/// Images per second through a PGD attack of `pgd_steps` steps (L-inf, eval
/// mode, frozen weights) at `cfg.batch`. The budget is 0 and the goal is the
/// model's own prediction, so no image succeeds early: every image takes
/// every step, as in the PyTorch reference loop.
pub fn measure_pgd(cfg: &BenchConfig, pgd_steps: usize, device: &Device) -> Result<f64> {
    use crate::attack::{pgd, Norm};
    let model = ResNet::init(cfg.model_config(), 0, device)?.frozen();
    let x = Tensor::rand(0f32, 1f32, (cfg.batch, 3, cfg.size, cfg.size), device)?;
    let logits: Vec<f32> = model.forward(&x, false)?.logits.flatten_all()?.to_vec1()?;
    let goal: Vec<u32> = logits.chunks(10).map(|r| crate::stats::argmax(r) as u32).collect();
    let x0: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let how = pgd::Steps { steps: pgd_steps, step_ratio: 2.5 / pgd_steps as f32, restarts: 1, random_start: true };
    let eps = vec![0f32; cfg.batch];
    let mut total = 0f64;
    for i in 0..cfg.warmup + cfg.steps {
        let t = Instant::now();
        let o = pgd::attack(&model, &x0, (3, cfg.size, cfg.size), &goal, false, &eps, Norm::Linf, &how, i as u64)?;
        if o.success.iter().any(|s| *s) {
            return Err(Error::Usage("an image succeeded at budget 0: the benchmark would time fewer steps".into()));
        }
        if i >= cfg.warmup {
            total += t.elapsed().as_secs_f64();
        }
    }
    Ok(cfg.batch as f64 * cfg.steps.max(1) as f64 / total)
}

/// Runs the PyTorch reference with `python`; `Ok(None)` when PyTorch is not installed there.
pub fn measure_torch(
    python: &str,
    cfg: &BenchConfig,
    device: &str,
    pgd_steps: usize,
) -> Result<Option<TorchThroughput>> {
    let probe = std::process::Command::new(python).args(["-c", "import torch"]).output();
    match probe {
        Ok(o) if o.status.success() => {}
        _ => return Ok(None),
    }
    let script = std::env::temp_dir().join(format!("misfit-torch-bench-{}.py", std::process::id()));
    std::fs::write(&script, TORCH_SCRIPT).map_err(|e| Error::io(&script, e))?;
    let args: Vec<String> =
        [cfg.depth, cfg.width, cfg.size, cfg.batch, cfg.steps, cfg.warmup].iter().map(|v| v.to_string()).collect();
    let out = std::process::Command::new(python)
        .arg(&script)
        .args(&args)
        .arg(device)
        .arg(pgd_steps.to_string())
        .output()
        .map_err(|e| Error::io(python, e))?;
    let _ = std::fs::remove_file(&script);
    if !out.status.success() {
        return Err(Error::Usage(format!("the PyTorch reference failed: {}", String::from_utf8_lossy(&out.stderr))));
    }
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim())
        .map(Some)
        .map_err(|e| Error::Usage(format!("unreadable PyTorch reference output '{line}': {e}")))
}

#[cfg(test)]
mod tests {
    use super::Spread;

    #[test]
    fn the_spread_of_rounds_is_their_median_and_range_whatever_their_order() {
        assert_eq!(Spread::of(&[1.3, 0.9, 1.1]), Spread { median: 1.1, min: 0.9, max: 1.3 });
        assert_eq!(Spread::of(&[1.0, 2.0, 0.5, 1.5]), Spread { median: 1.25, min: 0.5, max: 2.0 });
        assert_eq!(Spread::of(&[0.7]), Spread { median: 0.7, min: 0.7, max: 0.7 });
    }
}

/// PyTorch's name of the device misfit measures on.
fn torch_device(device: &Device) -> &'static str {
    if device.is_cuda() {
        "cuda"
    } else {
        "cpu"
    }
}

/// `misfit bench train`: misfit then PyTorch `rounds` times in turn,
/// printing each round and the median (range) of the paired ratios.
pub fn report_train(cfg: &BenchConfig, rounds: usize, python: &str, device: &Device) -> Result<()> {
    println!("{}", cfg.describe("steps"));
    let torch_device = torch_device(device);
    let (mut train, mut infer) = (Vec::new(), Vec::new());
    let mut torch = true;
    for _ in 0..rounds.max(1) {
        let ours = measure(cfg, device)?;
        println!(
            "misfit  ({}): train {:>7.1} img/s (step {:.3} s: forward {:.3} s, backward {:.3} s), inference {:>7.1} img/s",
            crate::model::device_name(device),
            ours.train_img_s,
            ours.train_step_s,
            ours.forward_s,
            ours.backward_s,
            ours.infer_img_s
        );
        if !torch {
            continue;
        }
        let Some(t) = measure_torch(python, cfg, torch_device, 0)? else {
            println!("PyTorch: not importable by {python}; no comparison (pass --python PATH)");
            torch = false;
            continue;
        };
        println!(
            "PyTorch {} ({} threads): train {:>7.1} img/s (step {:.3} s), inference {:>7.1} img/s",
            t.torch, t.threads, t.train_img_s, t.train_step_s, t.infer_img_s
        );
        for (name, v) in &t.train_variants {
            println!("PyTorch train, {name}: {v:>7.1} img/s");
        }
        let (best, best_img_s) = t.fastest_train();
        let (rt, ri) = (ours.train_img_s / best_img_s, ours.infer_img_s / t.infer_img_s);
        println!("ratio misfit/PyTorch: train {rt:.2} (against its fastest, {best}), inference {ri:.2}");
        train.push(rt);
        infer.push(ri);
    }
    if train.len() > 1 {
        let (t, i) = (Spread::of(&train), Spread::of(&infer));
        println!(
            "median ratio of {} rounds: train {:.2} ({:.2}-{:.2}), inference {:.2} ({:.2}-{:.2})",
            train.len(),
            t.median,
            t.min,
            t.max,
            i.median,
            i.min,
            i.max
        );
    }
    Ok(())
}

/// `misfit bench attack`: PGD throughput of misfit and of PyTorch, and their ratio.
pub fn report_attack(cfg: &BenchConfig, pgd_steps: usize, python: &str, device: &Device) -> Result<()> {
    println!("PGD-{pgd_steps} (L-inf) on {}", cfg.describe("batches"));
    let ours = measure_pgd(cfg, pgd_steps, device)?;
    println!("misfit  ({}): {ours:>7.1} images/s", crate::model::device_name(device));
    let torch_device = torch_device(device);
    match measure_torch(python, cfg, torch_device, pgd_steps)? {
        Some(t) => {
            let theirs = t.pgd_img_s.unwrap_or(f64::NAN);
            println!("PyTorch {} ({} threads): {theirs:>7.1} images/s", t.torch, t.threads);
            println!("ratio misfit/PyTorch: {:.2}", ours / theirs);
        }
        None => println!("PyTorch: not importable by {python}; no comparison (pass --python PATH)"),
    }
    Ok(())
}

//! `misfit audit`: the whole investigation, stage after stage, into one run
//! folder: load the dataset; train the model with K-fold cross-validation
//! (or import one); evaluate it on the test split; write the tables.

use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::attack;
use crate::data::{self, demo, Dataset, DatasetSpec, LoadOptions, Problems};
use crate::error::{Error, Result};
use crate::evaluate::{self, Evaluation};
use crate::model::{self, checkpoint, DeviceChoice, ModelConfig, ResNet, Shortcut};
use crate::run::ScoresSummary;
use crate::run::{DatasetSummary, RunDir, RunManifest, TableEntry};
use crate::scores::{self, selfcheck, Embeddings, Pixels, ScoreConfig, ScoreInput};
use crate::tables::{self, TableMeta};
use crate::train::{cv, Augment, Dynamics, Schedule, TrainConfig};

/// How to get the model: train one (with cross-validation) or import one.
/// `None` fields take the recipe's value (see [`recipe`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ModelOptions {
    /// Import this trained model (safetensors or PyTorch state dict) instead of training.
    pub import: Option<PathBuf>,
    /// Input normalisation for an imported model whose file has none.
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    pub depth: Option<usize>,
    pub width: Option<usize>,
    pub shortcut: Option<Shortcut>,
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub lr: Option<f64>,
    pub momentum: Option<f64>,
    pub nesterov: bool,
    pub weight_decay: Option<f64>,
    pub schedule: Option<Schedule>,
    pub label_smoothing: Option<f64>,
    /// Train without crop and flip augmentation.
    pub no_augment: bool,
    /// Cross-validation folds (default: [`cv::default_folds`]).
    pub folds: Option<usize>,
    /// Skip the threshold-sample run that sets the AUM threshold.
    pub no_aum_threshold: bool,
    pub device: Option<DeviceChoice>,
}

/// What an audit is asked to do.
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// The dataset.
    pub spec: DatasetSpec,
    /// How to load it.
    pub load: LoadOptions,
    /// Folder that holds run folders (`outputs/`).
    pub outputs: PathBuf,
    /// Name of this run's folder; by default the dataset's name.
    pub run_name: Option<String>,
    /// Seed of every random choice of the run.
    pub seed: u64,
    /// The model stage.
    pub model: ModelOptions,
    /// Progress bars and per-epoch lines on standard error.
    pub progress: bool,
    /// Self-check: flip this share of the training labels before training.
    pub inject_noise: Option<(f64, NoiseKind)>,
    /// The attack stage (None: skipped).
    pub attack: Option<attack::AttackConfig>,
}

/// The built-in recipes: the demo's (small, fast on 2 CPU cores) and the
/// CIFAR ResNet paper's for every other dataset. Returns (depth, width, training).
pub fn recipe(spec: &DatasetSpec, seed: u64) -> (usize, usize, TrainConfig) {
    match spec {
        DatasetSpec::Demo(_) => {
            let mut t = TrainConfig::cifar(DEMO_EPOCHS, seed);
            t.batch_size = 64;
            t.lr = 0.05;
            t.sgd.weight_decay = 5e-4;
            t.augment = Augment { crop_padding: 2, flip: true };
            (20, DEMO_WIDTH, t)
        }
        _ => (20, 16, TrainConfig::cifar(100, seed)),
    }
}

/// Test images attacked per class by default: 40 on the demo (the attack
/// stage then takes about 15 s of its 3 minutes on 2 cores; 20 before the
/// block ops made attacks faster, which left per-class success rates in
/// steps of 5%), 100 elsewhere.
pub fn attack_per_class(spec: &DatasetSpec) -> usize {
    match spec {
        DatasetSpec::Demo(_) => 40,
        _ => 100,
    }
}

/// Epochs of each demo training run (24: the demo audit, attacks included,
/// takes about 2 minutes on 2 cores with the direct convolution kernels; 12
/// and then 18 with slower convolutions, and the outlier ranking was
/// unsteady at 12-16 epochs).
pub const DEMO_EPOCHS: usize = 24;
/// First-stage channels of the demo model.
pub const DEMO_WIDTH: usize = 8;

/// Per-channel mean and standard deviation of `[n, h, w, 3]` pixels in [0, 1].
pub fn channel_stats(pixels: &[u8]) -> ([f32; 3], [f32; 3]) {
    let (mut sum, mut sq) = ([0f64; 3], [0f64; 3]);
    for px in pixels.chunks_exact(3) {
        for c in 0..3 {
            let v = px[c] as f64 / 255.0;
            sum[c] += v;
            sq[c] += v * v;
        }
    }
    let n = (pixels.len() / 3).max(1) as f64;
    let mean = sum.map(|s| s / n);
    let std = [0, 1, 2].map(|c| ((sq[c] / n - mean[c] * mean[c]).max(1e-12)).sqrt() as f32);
    (mean.map(|m| m as f32), std)
}

/// What the model stage produced.
struct ModelStage {
    model: ResNet,
    /// Train logits: out-of-sample when trained here, in-sample when imported.
    train_logits: Vec<f32>,
    test_logits: Vec<f32>,
    /// The final model's pooled features of both splits.
    train_features: Vec<f32>,
    test_features: Vec<f32>,
    fold: Option<Vec<u32>>,
    dynamics: Option<Dynamics>,
    aum_threshold: Option<cv::AumThreshold>,
    summary: serde_json::Value,
}

/// The model and training configuration of a trained audit: the recipe for
/// the dataset, overridden by the options.
fn training_setup(ds: &Dataset, opts: &AuditOptions) -> Result<(ModelConfig, TrainConfig)> {
    let m = &opts.model;
    let (depth, width, mut t) = recipe(&opts.spec, opts.seed);
    t.epochs = m.epochs.unwrap_or(t.epochs);
    t.batch_size = m.batch_size.unwrap_or(t.batch_size);
    t.lr = m.lr.unwrap_or(t.lr);
    t.sgd.momentum = m.momentum.unwrap_or(t.sgd.momentum);
    t.sgd.nesterov = m.nesterov || t.sgd.nesterov;
    t.sgd.weight_decay = m.weight_decay.unwrap_or(t.sgd.weight_decay);
    t.schedule = m.schedule.clone().unwrap_or(t.schedule);
    t.label_smoothing = m.label_smoothing.unwrap_or(t.label_smoothing);
    if m.no_augment {
        t.augment = Augment { crop_padding: 0, flip: false };
    }
    let (mean, std) = channel_stats(&ds.train.pixels);
    let mcfg = ModelConfig {
        depth: m.depth.unwrap_or(depth),
        width: m.width.unwrap_or(width),
        shortcut: m.shortcut.unwrap_or(Shortcut::A),
        classes: ds.classes.clone(),
        mean,
        std,
    };
    mcfg.validate()?;
    if t.epochs == 0 || t.batch_size == 0 {
        return Err(Error::Usage("--epochs and --batch-size must be at least 1".into()));
    }
    Ok((mcfg, t))
}

fn model_stage(ds: &Dataset, opts: &AuditOptions, device: &Device, state_dir: &std::path::Path) -> Result<ModelStage> {
    let m = &opts.model;
    let (h, w) = (ds.height, ds.width);
    let batch = 256;
    if let Some(path) = &m.import {
        let import = checkpoint::ImportOptions { classes: Some(ds.classes.clone()), mean: m.mean, std: m.std };
        let (model, _) = checkpoint::load(path, &import, device)?;
        let train = model::predict(&model, &ds.train.pixels, ds.train.len(), h, w, batch)?;
        let test = model::predict(&model, &ds.test.pixels, ds.test.len(), h, w, batch)?;
        let summary = serde_json::json!({
            "source": format!("imported {}", path.display()),
            "config": model.config,
            "device": model::device_name(device),
            "note": "training-image probabilities are in-sample: the imported model trained on those images",
        });
        return Ok(ModelStage {
            model,
            train_logits: train.logits,
            test_logits: test.logits,
            train_features: train.features,
            test_features: test.features,
            fold: None,
            dynamics: None,
            aum_threshold: None,
            summary,
        });
    }
    let (mcfg, t) = training_setup(ds, opts)?;
    let folds = m.folds.unwrap_or_else(|| cv::default_folds(ds.train.len()));
    let out = cv::cross_validate(ds, &mcfg, &t, folds, Some(state_dir), device, opts.progress, !m.no_aum_threshold)?;
    let test = model::predict(&out.model, &ds.test.pixels, ds.test.len(), h, w, batch)?;
    let train_final = model::predict(&out.model, &ds.train.pixels, ds.train.len(), h, w, batch)?;
    let last: BTreeMap<String, serde_json::Value> = out
        .history
        .iter()
        .filter_map(|(job, epochs)| {
            epochs.last().map(|e| {
                (job.clone(), serde_json::json!({"epoch": e.epoch, "loss": e.loss, "train_accuracy": e.accuracy, "images_per_s": e.images_per_s}))
            })
        })
        .collect();
    let summary = serde_json::json!({
        "source": "trained",
        "config": mcfg,
        "training": t,
        "folds": folds,
        "device": model::device_name(device),
        "last_epoch": last,
        "aum_threshold": out.aum_threshold.as_ref().map(|a| serde_json::json!({
            "threshold": a.threshold,
            "threshold_samples": a.is_threshold_sample.iter().filter(|x| **x).count(),
            "flagged": (0..a.aum.len()).filter(|&i| !a.is_threshold_sample[i] && a.aum[i] < a.threshold).count(),
        })),
    });
    Ok(ModelStage {
        model: out.model,
        train_logits: out.out_of_sample.logits,
        test_logits: test.logits,
        train_features: train_final.features,
        test_features: test.features,
        fold: Some(out.fold_of),
        dynamics: Some(out.dynamics),
        aum_threshold: out.aum_threshold,
        summary,
    })
}

/// The configuration recorded in `run.json` and in every table's metadata.
#[derive(Serialize)]
struct RecordedConfig<'a> {
    dataset: String,
    load: &'a LoadOptions,
    seed: u64,
    model: &'a ModelOptions,
    #[serde(skip_serializing_if = "Option::is_none")]
    demo: Option<&'a demo::DemoConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inject_noise: Option<(f64, NoiseKind)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attack: Option<&'a attack::AttackConfig>,
}

/// Runs an audit and returns its manifest and where the run was written.
pub fn run(opts: &AuditOptions) -> Result<(PathBuf, RunManifest)> {
    let mut timing = BTreeMap::new();
    let t0 = Instant::now();
    let mut problems = Problems::strict();
    let (ds, truth) = match &opts.spec {
        DatasetSpec::Demo(cfg) => {
            let d = demo::generate(cfg);
            let keep_truth = opts.load.labels.is_none();
            if !keep_truth {
                problems.note("a labels file replaced the demo's labels: its planted ground truth is not reported");
            }
            (data::finish(d.dataset, &opts.spec, &opts.load)?, keep_truth.then_some(d.truth))
        }
        spec => (data::load_with(spec, &opts.load, &mut problems)?, None),
    };
    if ds.test.is_empty() {
        return Err(Error::Usage(format!("{}: the audit needs a test split, and this dataset has none", ds.source)));
    }
    // Before any training: a typo in an attack's target should not cost a training run.
    if let Some(a) = &opts.attack {
        a.validate(&ds.classes)?;
    }
    let device = model::select_device(opts.model.device.unwrap_or(DeviceChoice::Auto))?;
    let mut ds = ds;
    let injected = match opts.inject_noise {
        Some((rate, kind)) if (0.0..1.0).contains(&rate) => {
            let confusion = match kind {
                NoiseKind::Confusion => {
                    let (m, source) = probe_confusion(&ds, opts, &device)?;
                    problems.note(format!("--noise confusion follows the test-split confusion of {source}"));
                    Some(m)
                }
                _ => None,
            };
            Some(inject_noise(&mut ds.train.labels, ds.classes.len(), rate, kind, opts.seed, confusion.as_deref()))
        }
        Some((rate, _)) => return Err(Error::Usage(format!("--inject-noise {rate}: give a share from 0 to below 1"))),
        None => None,
    };
    let ds = ds;
    timing.insert("load".to_string(), t0.elapsed().as_secs_f64());

    let run_name = opts.run_name.clone().unwrap_or_else(|| ds.name.clone());
    let run = RunDir::create(&opts.outputs, &run_name)?;
    let state_dir = opts.outputs.join(format!(".{run_name}.train"));
    let demo_cfg = match &opts.spec {
        DatasetSpec::Demo(cfg) => Some(cfg),
        _ => None,
    };
    let config = RecordedConfig {
        dataset: opts.spec.to_string(),
        load: &opts.load,
        seed: opts.seed,
        model: &opts.model,
        demo: demo_cfg,
        inject_noise: opts.inject_noise,
        attack: opts.attack.as_ref(),
    };
    let config = serde_json::to_value(&config).expect("config serialises");
    let meta = TableMeta { config_json: config.to_string(), dataset_fingerprint: ds.fingerprint() };

    let t1 = Instant::now();
    let stage = model_stage(&ds, opts, &device, &state_dir)?;
    timing.insert("model".to_string(), t1.elapsed().as_secs_f64());

    let t2 = Instant::now();
    let k = ds.classes.len();
    let labels: Vec<u32> = ds.train.labels.iter().chain(&ds.test.labels).copied().collect();
    let logits: Vec<f32> = stage.train_logits.iter().chain(&stage.test_logits).copied().collect();
    let outputs = evaluate::sample_outputs(&logits, k, &labels);
    let n_train = ds.train.len();
    let eval: Evaluation = evaluate::evaluate(&ds.test.labels, &outputs.pred[n_train..], k);
    let fold: Vec<Option<i32>> =
        (0..labels.len()).map(|i| stage.fold.as_ref().and_then(|f| f.get(i)).map(|&f| f as i32)).collect();

    timing.insert("evaluate".to_string(), t2.elapsed().as_secs_f64());
    let t3 = Instant::now();
    let dim = stage.model.config.feature_dim();
    let train_emb = scores::neighbors::normalize(&stage.train_features, dim);
    let test_emb = scores::neighbors::normalize(&stage.test_features, dim);
    let aum: Option<Vec<f32>> = stage.dynamics.as_ref().map(|d| (0..d.n).map(|i| d.aum(i)).collect());
    let input = ScoreInput {
        classes: k,
        train_labels: &ds.train.labels,
        probs: &outputs.probs[..n_train * k],
        test_labels: &ds.test.labels,
        embeddings: Some(Embeddings { dim, train: &train_emb, test: &test_emb }),
        pixels: Some(Pixels { image_len: ds.image_len(), train: &ds.train.pixels, test: &ds.test.pixels }),
        aum: aum.as_deref(),
    };
    let score_cfg = ScoreConfig { seed: opts.seed, ..ScoreConfig::default() };
    let sc = scores::score(&input, &score_cfg)?;
    if let Some(r) = &sc.recall {
        if !r.reached_target {
            problems.note(format!(
                "{} recall@{} is {:.3} at ef/nprobe {} (target {}): neighbours may be missing",
                r.index, score_cfg.k, r.recall, r.ef_search, score_cfg.recall_target
            ));
        }
    }
    let mut checks = truth.as_ref().map(|t| {
        let mut c = demo_selfcheck(&ds, t, &sc);
        if let Some(a) = &stage.aum_threshold {
            let planted: std::collections::HashSet<&str> =
                t.problems.iter().filter(|p| p.kind == demo::ProblemKind::LabelFlip).map(|p| p.id.as_str()).collect();
            let flipped: Vec<bool> = ds.train.ids.iter().map(|id| planted.contains(id.as_str())).collect();
            c.push(aum_check("label_flip", &flipped, a));
        }
        c
    });
    if let Some(flipped) = &injected {
        let list = checks.get_or_insert_with(Vec::new);
        list.extend(flip_checks("injected_flip", flipped, &sc, n_train, aum.as_deref()));
        if let Some(a) = &stage.aum_threshold {
            list.push(aum_check("injected_flip", flipped, a));
        }
        if let Some(t) = &truth {
            // With planted flips too, the flags are judged against both sets together.
            let planted: std::collections::HashSet<&str> =
                t.problems.iter().filter(|p| p.kind == demo::ProblemKind::LabelFlip).map(|p| p.id.as_str()).collect();
            let either: Vec<bool> =
                (0..n_train).map(|i| flipped[i] || planted.contains(ds.train.ids[i].as_str())).collect();
            list.extend(flip_checks("planted_or_injected_flip", &either, &sc, n_train, aum.as_deref()));
        }
    }
    timing.insert("scores".to_string(), t3.elapsed().as_secs_f64());
    let t_attack = Instant::now();
    let attacked = match &opts.attack {
        Some(cfg) => {
            let cfg = attack::AttackConfig { seed: opts.seed, ..cfg.clone() };
            let victims = attack::victims(&ds, &stage.test_logits, &stage.train_logits, &cfg);
            Some((attack::run(&stage.model, &ds, victims, &cfg, opts.progress)?, cfg))
        }
        None => None,
    };
    timing.insert("attacks".to_string(), t_attack.elapsed().as_secs_f64());
    let t4 = Instant::now();

    let mut written = Vec::new();
    let mut write = |file: &str, batch: arrow::array::RecordBatch, row: &str| -> Result<()> {
        tables::write(&run.path(file), &batch, &meta)?;
        written.push(TableEntry { file: file.into(), rows: batch.num_rows(), row: row.into() });
        Ok(())
    };
    let samples = tables::model_columns(tables::samples(&ds), &ds.classes, &outputs, &fold, stage.dynamics.as_ref());
    let samples = tables::score_columns(samples, &ds.classes, &sc.images);
    let aum_flag: Vec<Option<bool>> = (0..labels.len())
        .map(|i| {
            stage
                .aum_threshold
                .as_ref()
                .filter(|a| i < a.aum.len() && !a.is_threshold_sample[i])
                .map(|a| a.aum[i] < a.threshold)
        })
        .collect();
    let samples = samples.opt_bool(
        "aum_mislabeled",
        "AUM below the threshold-sample threshold (Pleiss et al.; train only, null for threshold samples)",
        aum_flag.iter().copied(),
    );
    let samples = match &attacked {
        Some((res, _)) => {
            let (mut was, mut linf, mut l2) =
                (vec![false; labels.len()], vec![None; labels.len()], vec![None; labels.len()]);
            for (i, v) in res.victims.iter().enumerate() {
                let row = if v.split == data::Split::Train { v.row } else { n_train + v.row };
                was[row] = true;
                linf[row] = res.radius_linf[i];
                l2[row] = res.radius_l2[i];
            }
            samples
                .bool("attacked", "whether the attack stage attacked this image", was)
                .opt_f32(
                    "radius_linf",
                    "smallest L-inf budget (bisection over PGD) that flips the image, [0, 1] pixel units; null: not attacked or not flipped within the largest budget",
                    linf,
                )
                .opt_f32("radius_l2", "the same in L2", l2)
        }
        None => samples,
    };
    write("samples.parquet", samples.finish(), "one image")?;
    let summary_attacks = attacked.as_ref().map(|(res, cfg)| {
        let miss: Vec<f64> = eval.classes.iter().map(|c| c.miss_rate).collect();
        attack::AttackSummary::new(res, cfg, &miss)
    });
    let radius = summary_attacks.as_ref().map(|a| (&a.median_radius_linf[..], &a.median_radius_l2[..]));
    write("classes.parquet", tables::classes(&ds, &eval, Some(&sc), radius), "one class")?;
    let mut summary_attacks = summary_attacks;
    if let (Some((res, cfg)), Some(sum)) = (&attacked, summary_attacks.as_mut()) {
        write("attacks.parquet", tables::attacks(&ds, res, cfg), "one attacked image under one attack at one budget")?;
        write(
            "attack_classes.parquet",
            tables::attack_classes(&ds.classes, &sum.per_class),
            "one class under one attack at one budget (test victims)",
        )?;
        sum.examples = attack::write_examples(&ds, res, cfg, &run.path("attack_examples"))?
            .into_iter()
            .map(|n| format!("attack_examples/{n}"))
            .collect();
    }
    write("embeddings.parquet", tables::embeddings(&ds, &train_emb, &test_emb, dim), "one image")?;
    if let Some((tr, te)) = &sc.neighbors {
        write("neighbors.parquet", tables::neighbors(&ds, tr, te), "one (image, neighbour rank) pair")?;
    }
    write("duplicates.parquet", tables::duplicates(&ds, &sc.duplicates), "one duplicate pair")?;
    if let Some(c) = &checks {
        write(
            "selfcheck.parquet",
            tables::selfcheck(c),
            "one flag or score checked against planted or injected problems",
        )?;
    }
    write(
        "confusion.parquet",
        tables::confusion(&ds.classes, &eval.confusion),
        "one (given, predicted) class pair of the test split",
    )?;
    if let Some(d) = &stage.dynamics {
        write("dynamics.parquet", tables::dynamics(&ds.train.ids, d), "one training image at one epoch")?;
    }
    let mut planted = None;
    if let Some(truth) = &truth {
        write("planted.parquet", tables::planted(truth), "one planted problem")?;
        let mut counts = BTreeMap::new();
        for p in &truth.problems {
            *counts.entry(p.kind.as_str().to_string()).or_insert(0) += 1;
        }
        planted = Some(counts);
    }
    let extra = BTreeMap::from([("seed".to_string(), opts.seed.to_string())]);
    checkpoint::save(&run.path("model.safetensors"), &stage.model, &extra)?;
    timing.insert("tables".to_string(), t4.elapsed().as_secs_f64());
    timing.insert("total".to_string(), t0.elapsed().as_secs_f64());

    let manifest = RunManifest {
        misfit_version: env!("CARGO_PKG_VERSION").to_string(),
        run_name,
        dataset: DatasetSummary::new(&opts.spec.to_string(), &ds),
        config,
        tables: written,
        notes: problems.notes,
        planted,
        model: Some(stage.summary),
        evaluation: Some(eval),
        scores: Some(ScoresSummary::new(&sc, &score_cfg, checks.unwrap_or_default())),
        attacks: summary_attacks,
        timing_s: timing,
    };
    let dest = run.commit(&manifest)?;
    if state_dir.exists() {
        std::fs::remove_dir_all(&state_dir).map_err(|e| Error::io(&state_dir, e))?;
    }
    Ok((dest, manifest))
}

/// Checks the flags and scores against the demo's planted problems.
pub fn demo_selfcheck(ds: &Dataset, truth: &demo::DemoTruth, sc: &scores::Scores) -> Vec<selfcheck::Check> {
    use demo::ProblemKind;
    use std::collections::{HashMap, HashSet};
    let n_train = ds.train.len();
    let row: HashMap<&str, usize> = ds.train.ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let mut flipped = vec![false; n_train];
    let mut outlier = vec![false; n_train];
    for p in &truth.problems {
        if let Some(&i) = row.get(p.id.as_str()) {
            match p.kind {
                ProblemKind::LabelFlip => flipped[i] = true,
                ProblemKind::Outlier => outlier[i] = true,
                _ => {}
            }
        }
    }
    let train = &sc.images[..n_train];
    let truth_count = |t: &[bool]| t.iter().filter(|x| **x).count();
    let top_by = |v: &[f64], m: usize| -> Vec<bool> {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
        let mut f = vec![false; v.len()];
        for &i in order.iter().take(m) {
            f[i] = true;
        }
        f
    };
    let flag = |f: &dyn Fn(&scores::ImageScores) -> bool| -> Vec<bool> { train.iter().map(f).collect() };
    let value = |f: &dyn Fn(&scores::ImageScores) -> f64| -> Vec<f64> { train.iter().map(f).collect() };
    let mut checks = flip_checks("label_flip", &flipped, sc, n_train, None);
    checks.extend([
        selfcheck::flag_check("outlier", "outlier", &flag(&|s| s.flags.outlier), &outlier),
        selfcheck::flag_check(
            "top 2x by kth_distance",
            "outlier",
            &top_by(&value(&|s| s.kth_distance.unwrap_or(0.0) as f64), 2 * truth_count(&outlier)),
            &outlier,
        ),
        selfcheck::score_check("kth_distance", "outlier", &value(&|s| s.kth_distance.unwrap_or(0.0) as f64), &outlier),
    ]);
    // Duplicates: planted pairs found among the reported pairs.
    let key = |a: &str, b: &str| if a < b { (a.to_string(), b.to_string()) } else { (b.to_string(), a.to_string()) };
    let found: HashSet<(String, String)> = sc
        .duplicates
        .iter()
        .map(|p| key(&ds.train.ids[p.a], if p.b_test { &ds.test.ids[p.b] } else { &ds.train.ids[p.b] }))
        .collect();
    let planted: Vec<(String, String)> = truth
        .problems
        .iter()
        .filter(|p| matches!(p.kind, ProblemKind::DuplicateExact | ProblemKind::DuplicateNear))
        .map(|p| key(&p.id, p.related_id.as_deref().unwrap_or_default()))
        .collect();
    let hit = planted.iter().filter(|k| found.contains(*k)).count();
    let planted_set: HashSet<&(String, String)> = planted.iter().collect();
    let true_found = found.iter().filter(|k| planted_set.contains(k)).count();
    checks.push(selfcheck::Check {
        name: "duplicate pairs".into(),
        target: "duplicate".into(),
        precision: Some(if found.is_empty() { 0.0 } else { true_found as f64 / found.len() as f64 }),
        recall: Some(if planted.is_empty() { 0.0 } else { hit as f64 / planted.len() as f64 }),
        f1: None,
        flagged: Some(found.len()),
        auroc: None,
        positives: planted.len(),
        images: n_train + ds.test.len(),
    });
    checks
}

/// The label-flip checks: every flag and score against a known set of flipped
/// training labels (`target` names the set: planted or injected).
pub fn flip_checks(
    target: &str,
    flipped: &[bool],
    sc: &scores::Scores,
    n_train: usize,
    aum: Option<&[f32]>,
) -> Vec<selfcheck::Check> {
    let train = &sc.images[..n_train];
    let flag = |f: &dyn Fn(&scores::ImageScores) -> bool| -> Vec<bool> { train.iter().map(f).collect() };
    let value = |f: &dyn Fn(&scores::ImageScores) -> f64| -> Vec<f64> { train.iter().map(f).collect() };
    let mut checks = vec![
        selfcheck::flag_check("likely_mislabeled", target, &flag(&|s| s.flags.likely_mislabeled), flipped),
        selfcheck::flag_check("label_issue", target, &flag(&|s| s.label_issue == Some(true)), flipped),
        selfcheck::score_check("issue_score", target, &value(&|s| s.issue_score.unwrap_or(0.0)), flipped),
        selfcheck::score_check(
            "1 - normalized_margin",
            target,
            &value(&|s| 1.0 - s.normalized_margin.unwrap_or(1.0)),
            flipped,
        ),
        selfcheck::score_check(
            "1 - confidence_weighted_entropy",
            target,
            &value(&|s| 1.0 - s.confidence_weighted_entropy.unwrap_or(1.0)),
            flipped,
        ),
        selfcheck::score_check(
            "1 - neighbor_agreement",
            target,
            &value(&|s| 1.0 - s.neighbor_agreement.unwrap_or(1.0)),
            flipped,
        ),
    ];
    if let Some(a) = aum {
        let neg: Vec<f64> = a.iter().map(|&v| -(v as f64)).collect();
        checks.push(selfcheck::score_check("-aum", target, &neg, flipped));
    }
    checks
}

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
fn probe_confusion(ds: &Dataset, opts: &AuditOptions, device: &Device) -> Result<(Vec<Vec<usize>>, String)> {
    let (h, w) = (ds.height, ds.width);
    let (model, source) = match &opts.model.import {
        Some(path) => {
            let import = checkpoint::ImportOptions {
                classes: Some(ds.classes.clone()),
                mean: opts.model.mean,
                std: opts.model.std,
            };
            (checkpoint::load(path, &import, device)?.0, format!("imported {}", path.display()))
        }
        None => {
            let (mcfg, t) = training_setup(ds, opts)?;
            (cv::train_probe(ds, &mcfg, &t, device, opts.progress)?, "a probe model trained on the clean labels".into())
        }
    };
    let p = model::predict(&model, &ds.test.pixels, ds.test.len(), h, w, 256)?;
    let pred: Vec<u32> = (0..p.len()).map(|i| p.predicted(i)).collect();
    let eval = evaluate::evaluate(&ds.test.labels, &pred, ds.classes.len());
    Ok((eval.confusion, format!("{source}: test accuracy {:.4}", eval.accuracy)))
}

/// The AUM-threshold flag against known flips, over the images that were not threshold samples.
fn aum_check(target: &str, flipped: &[bool], a: &cv::AumThreshold) -> selfcheck::Check {
    let rows: Vec<usize> = (0..a.aum.len()).filter(|&i| !a.is_threshold_sample[i]).collect();
    let flag: Vec<bool> = rows.iter().map(|&i| a.aum[i] < a.threshold).collect();
    let truth: Vec<bool> = rows.iter().map(|&i| flipped[i]).collect();
    selfcheck::flag_check("aum_mislabeled", target, &flag, &truth)
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

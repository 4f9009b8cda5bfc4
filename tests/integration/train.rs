//! Training: gradients, checkpoints, divergence, and resuming after a kill.

use candle_core::{DType, Device, Tensor, Var};
use misfit::model::{checkpoint, ModelConfig, Params, ResNet, Shortcut};
use misfit::train::{self, Reporter, TrainConfig, TrainSet};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::tempdir;

use crate::util::{gradient_tolerance, misfit, smooth_difference, uniform};

fn tiny(shortcut: Shortcut) -> ModelConfig {
    ModelConfig {
        depth: 8,
        width: 4,
        shortcut,
        classes: vec!["a".into(), "b".into(), "c".into()],
        mean: [0.5, 0.4, 0.3],
        std: [0.25, 0.2, 0.3],
    }
}

fn loss_of(m: &ResNet, x: &Tensor, y: &Tensor) -> Tensor {
    train::cross_entropy(&m.forward(x, true).unwrap().logits, y, 0.0).unwrap()
}

#[test]
fn gradients_of_the_loss_match_finite_differences() {
    let dev = Device::Cpu;
    for shortcut in [Shortcut::A, Shortcut::B] {
        // In f64, so that finite differences are exact enough to judge.
        let p = ResNet::init(tiny(shortcut), 3, &dev).unwrap().params;
        let f64s = |m: &BTreeMap<String, Var>| -> BTreeMap<String, Var> {
            m.iter()
                .map(|(k, v)| (k.clone(), Var::from_tensor(&v.as_tensor().to_dtype(DType::F64).unwrap()).unwrap()))
                .collect()
        };
        let params = Params { trainable: f64s(&p.trainable), buffers: f64s(&p.buffers) };
        let m = ResNet::new(tiny(shortcut), params).unwrap();
        // A fixed input (the thread's generator once put a ReLU kink within the step's reach).
        let x = Var::from_tensor(&Tensor::from_vec(uniform(4 * 3 * 8 * 8, 11), (4, 3, 8, 8), &dev).unwrap()).unwrap();
        let y = Tensor::new(&[0u32, 1, 2, 1], &dev).unwrap();
        let grads = loss_of(&m, x.as_tensor(), &y).backward().unwrap();
        let mut checked = 0;
        let mut targets: Vec<(String, Var)> = m.params.trainable.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        targets.push(("input".into(), x.clone()));
        for (name, var) in targets {
            let g: Vec<f64> = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            let shape = var.as_tensor().shape().clone();
            // The largest-gradient coordinate and one fixed coordinate of every tensor.
            let big = g.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).unwrap().0;
            for start in [big, base.len() / 2] {
                let at = |i: usize, delta: f64| {
                    let mut v = base.clone();
                    v[i] += delta;
                    var.set(&Tensor::from_vec(v, shape.clone(), &dev).unwrap()).unwrap();
                    loss_of(&m, x.as_tensor(), &y).to_scalar::<f64>().unwrap()
                };
                let (i, numeric) = smooth_difference(at, start, base.len());
                var.set(&Tensor::from_vec(base.clone(), shape.clone(), &dev).unwrap()).unwrap();
                assert!(
                    (numeric - g[i]).abs() <= gradient_tolerance(numeric, g[i]),
                    "{shortcut:?} {name}[{i}]: autograd {} vs finite difference {numeric}",
                    g[i]
                );
                checked += 1;
            }
        }
        assert!(checked > 40);
    }
}

#[test]
fn a_checkpoint_round_trips_weights_statistics_and_metadata() {
    let dev = Device::Cpu;
    let m = ResNet::init(tiny(Shortcut::B), 5, &dev).unwrap();
    let x = Tensor::rand(0f32, 1f32, (6, 3, 8, 8), &dev).unwrap();
    m.forward(&x, true).unwrap(); // moves the batch-norm running statistics
    let dir = tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&path, &m, &BTreeMap::from([("epoch".to_string(), "7".to_string())])).unwrap();
    let (back, meta) = checkpoint::load(&path, &Default::default(), &dev).unwrap();
    assert_eq!(back.config, m.config);
    assert_eq!(meta["epoch"], "7");
    assert_eq!(meta["shortcut"], "B");
    let a: Vec<Vec<f32>> = m.forward(&x, false).unwrap().logits.to_vec2().unwrap();
    let b: Vec<Vec<f32>> = back.forward(&x, false).unwrap().logits.to_vec2().unwrap();
    assert_eq!(a, b);
    // Importing for a dataset with other classes is refused by name.
    let opts =
        checkpoint::ImportOptions { classes: Some(vec!["x".into(), "y".into(), "z".into()]), ..Default::default() };
    let err = checkpoint::load(&path, &opts, &dev).unwrap_err().to_string();
    assert!(err.contains("m.safetensors") && err.contains("classes"), "{err}");
}

#[test]
fn divergence_stops_with_an_error_naming_epoch_and_batch() {
    let dev = Device::Cpu;
    let m = ResNet::init(tiny(Shortcut::A), 1, &dev).unwrap();
    let pixels: Vec<u8> = (0..40 * 8 * 8 * 3).map(|i| (i * 37 % 251) as u8).collect();
    let labels: Vec<u32> = (0..40).map(|i| i % 3).collect();
    let rows: Vec<usize> = (0..40).collect();
    let set = TrainSet { pixels: &pixels, labels: &labels, height: 8, width: 8, rows: &rows };
    let mut cfg = TrainConfig::cifar(3, 0);
    cfg.batch_size = 8;
    cfg.lr = 1e9;
    let err = train::train(&m, &set, &cfg, None, &Reporter::alone(false, "t"), &[]).unwrap_err().to_string();
    assert!(err.contains("diverged at epoch") && err.contains("batch") && err.contains("--lr"), "{err}");
}

const SMALL: [&str; 13] = [
    "audit",
    "synth/demo.tar.gz",
    "--epochs",
    "4",
    "--folds",
    "2",
    "--width",
    "4",
    "--depth",
    "8",
    "--batch-size",
    "32",
    "-q",
];

#[test]
fn a_killed_audit_resumes_from_its_last_epoch_to_the_same_result() {
    let dir = tempdir().unwrap();
    let o =
        misfit(&["data", "synth", "--out", "synth", "--train-per-class", "16", "--test-per-class", "4"], dir.path());
    assert!(o.status.success());
    // Uninterrupted run.
    let o = misfit(&[&SMALL[..], &["--run", "whole"]].concat(), dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The same run, killed once its first job has saved an epoch, then run again.
    let mut child = Command::new(env!("CARGO_BIN_EXE_misfit"))
        .args([&SMALL[..], &["--run", "again"]].concat())
        .current_dir(dir.path())
        .spawn()
        .unwrap();
    let state = dir.path().join("outputs/.again.train/job-0.safetensors");
    let t = Instant::now();
    while !state.exists() && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(state.exists(), "the first epoch's state was written");
    assert!(!dir.path().join("outputs/again").exists(), "a killed run leaves no run folder");
    let o = misfit(&[&SMALL[..], &["--run", "again"]].concat(), dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for table in ["samples.parquet", "dynamics.parquet", "confusion.parquet", "influence.parquet", "model.safetensors"]
    {
        let a = std::fs::read(dir.path().join("outputs/whole").join(table)).unwrap();
        let b = std::fs::read(dir.path().join("outputs/again").join(table)).unwrap();
        assert!(a == b, "{table} differs between the uninterrupted and the resumed run");
    }
    assert!(!dir.path().join("outputs/.again.train").exists(), "training state is removed once the run is complete");
}

#[test]
fn an_imported_model_is_audited_without_training() {
    let dir = tempdir().unwrap();
    let o = misfit(&["data", "synth", "--out", "synth", "--train-per-class", "8", "--test-per-class", "4"], dir.path());
    assert!(o.status.success());
    let mut cfg = tiny(Shortcut::A);
    cfg.classes = misfit::data::demo::CLASSES.iter().map(|s| s.to_string()).collect();
    let m = ResNet::init(cfg, 9, &Device::Cpu).unwrap();
    checkpoint::save(&dir.path().join("m.safetensors"), &m, &BTreeMap::new()).unwrap();
    let o = misfit(&["audit", "synth/demo.tar.gz", "--model", "m.safetensors", "-q"], dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = dir.path().join("outputs/demo");
    assert!(run.join("samples.parquet").exists() && !run.join("dynamics.parquet").exists());
    let manifest = std::fs::read_to_string(run.join("run.json")).unwrap();
    assert!(manifest.contains("imported m.safetensors") && manifest.contains("in-sample"), "{manifest}");
    in_sample_flags_are_a_review_shortlist(dir.path(), &run, &String::from_utf8_lossy(&o.stdout));
}

/// An imported model's training flags never reach `likely-mislabeled`
/// (relabel, warn): they are `likely-mislabeled-in-sample` (info, "review
/// (rank N of M)"); both shortlists are the flags cut at the two-labeller
/// bound, the test split's worded the same way; a ticket of the in-sample
/// rule says review.
/// The terminal summary says so too, and no class is called noisy from
/// in-sample probabilities.
fn in_sample_flags_are_a_review_shortlist(cwd: &std::path::Path, run: &std::path::Path, summary: &str) {
    let r = run.to_str().unwrap();
    let q = |sql: &str| -> Vec<serde_json::Value> {
        let o = misfit(&["query", r, sql, "--format", "json"], cwd);
        assert!(o.status.success(), "{sql}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let flagged = |split: &str| {
        q(&format!("SELECT COUNT(*) AS n FROM samples WHERE split = '{split}' AND likely_mislabeled"))[0]["n"]
            .as_u64()
            .unwrap()
    };
    let bound = q("SELECT CAST(CEIL(SUM(count * share)) AS BIGINT) AS b FROM confusion WHERE given <> predicted")[0]
        ["b"]
        .as_u64()
        .unwrap();
    let train_bound = q("SELECT CAST(CEIL(SUM(f.share * f.share * c.train_images)) AS BIGINT) AS b \
                         FROM confusion f JOIN classes c ON c.class = f.given WHERE f.given <> f.predicted")[0]["b"]
        .as_u64()
        .unwrap();
    let f = q("SELECT rule, severity, message FROM findings");
    let of = |rule: &str| f.iter().filter(|x| x["rule"] == rule).collect::<Vec<_>>();
    assert!(
        of("likely-mislabeled").is_empty(),
        "in-sample flags are not relabel findings: {:?}",
        of("likely-mislabeled")
    );
    let (in_sample, disputed) = (of("likely-mislabeled-in-sample"), flagged("train"));
    assert_eq!(in_sample.len() as u64, disputed.min(train_bound), "{train_bound}");
    for (i, x) in in_sample.iter().enumerate() {
        assert_eq!(x["severity"], "info", "{x}");
        let rank = format!(": review (rank {} of {}; {disputed} disputed", i + 1, in_sample.len());
        assert!(x["message"].as_str().unwrap().contains(&rank), "{x}");
    }
    let test = of("test-likely-mislabeled");
    assert_eq!(test.len() as u64, flagged("test").min(bound), "{bound}");
    for (i, x) in test.iter().enumerate() {
        assert!(x["message"].as_str().unwrap().contains(&format!(": review (rank {} of {}", i + 1, test.len())), "{x}");
    }
    assert!(of("noisy-classes").is_empty(), "{:?}", of("noisy-classes"));
    let train_line = format!(
        "likely_mislabeled, {} outlier (train, in-sample probabilities: weak evidence; {} on the review shortlist)",
        q("SELECT COUNT(*) AS n FROM samples WHERE split = 'train' AND outlier")[0]["n"],
        in_sample.len()
    );
    assert!(summary.contains(&train_line), "{train_line}\n{summary}");
    assert!(summary.contains(&format!(" (test; {} on the review shortlist)", test.len())), "{summary}");
    let o = misfit(&["ticket", r, "--rule", "likely-mislabeled-in-sample"], cwd);
    if !of("likely-mislabeled-in-sample").is_empty() {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let md = std::fs::read_to_string(run.join("tickets/likely-mislabeled-in-sample/ticket.md")).unwrap();
        assert!(md.contains("Review each image by eye") && !md.contains("Relabel each image"), "{md}");
    }
}

/// 48 patterned 8x8 images in 3 classes: their pixels, labels and rows.
fn toy_images() -> (Vec<u8>, Vec<u32>, Vec<usize>) {
    let pixels = (0..48 * 8 * 8 * 3).map(|i| (i * 29 % 251) as u8).collect();
    (pixels, (0..48).map(|i| i % 3).collect(), (0..48).collect())
}

#[test]
fn tracin_snapshots_are_copies_weighted_by_the_learning_rate_and_survive_a_resume() {
    let dev = Device::Cpu;
    let (pixels, labels, rows) = toy_images();
    let set = TrainSet { pixels: &pixels, labels: &labels, height: 8, width: 8, rows: &rows };
    let mut cfg = TrainConfig::cifar(3, 2);
    cfg.batch_size = 16;
    let dir = tempdir().unwrap();
    let path = dir.path().join("job.safetensors");
    let resume = train::Resume { path: &path, key: "k".into() };
    let m = ResNet::init(tiny(Shortcut::A), 3, &dev).unwrap();
    let done = train::train(&m, &set, &cfg, Some(&resume), &Reporter::alone(false, "t"), &[1, 3]).unwrap();
    let epochs: Vec<usize> = done.snapshots.iter().map(|s| s.epoch).collect();
    assert_eq!(epochs, [1, 3]);
    // Epoch 1's snapshot is a copy: training went on without changing it.
    let w = |t: &BTreeMap<String, Tensor>| t["linear.weight"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let live = w(&m.params.tensors());
    assert_eq!(w(&done.snapshots[1].tensors), live, "the last snapshot is the trained model");
    assert_ne!(w(&done.snapshots[0].tensors), live);
    // Weights: the learning rate summed over the steps each stands for, per epoch's steps.
    let steps = 3; // 48 images in batches of 16
    let lr = |from: usize, to: usize| {
        (from * steps..to * steps).map(|s| cfg.schedule.lr(cfg.lr, s, 3 * steps)).sum::<f64>() / steps as f64
    };
    assert!((done.snapshots[0].lr_weight - lr(0, 1)).abs() < 1e-12);
    assert!((done.snapshots[1].lr_weight - lr(1, 3)).abs() < 1e-12);
    assert!(done.snapshots.iter().all(|s| s.lr_weight > 0.0));
    // A second call finds the finished state: no epoch runs, and the
    // snapshots come back from the state file as they were.
    let again = ResNet::init(tiny(Shortcut::A), 3, &dev).unwrap();
    let back = train::train(&again, &set, &cfg, Some(&resume), &Reporter::alone(false, "t"), &[1, 3]).unwrap();
    assert!(back.epochs.is_empty(), "resumed after the last epoch");
    assert_eq!(back.snapshots.len(), 2);
    for (a, b) in done.snapshots.iter().zip(&back.snapshots) {
        assert_eq!((a.epoch, a.lr_weight), (b.epoch, b.lr_weight));
        assert_eq!(a.tensors.keys().collect::<Vec<_>>(), b.tensors.keys().collect::<Vec<_>>());
        assert_eq!(w(&a.tensors), w(&b.tensors));
    }
    // A state without a snapshot now asked for is not resumed from.
    let third = ResNet::init(tiny(Shortcut::A), 3, &dev).unwrap();
    let fresh = train::train(&third, &set, &cfg, Some(&resume), &Reporter::alone(false, "t"), &[2, 3]).unwrap();
    assert_eq!(fresh.epochs.len(), 3, "trained from the start");
    assert_eq!(w(&third.params.tensors()), live, "to the same weights");
}

#[test]
fn the_fast_recipes_noise_probe_ignores_the_training_options() {
    use misfit::audit::noise::probe_confusion;
    use misfit::train::recipe::{ModelOptions, Recipe};
    let dir = tempdir().unwrap();
    let o = misfit(&["data", "synth", "--out", "synth", "--train-per-class", "6", "--test-per-class", "3"], dir.path());
    assert!(o.status.success());
    let path = dir.path().join("synth/demo.tar.gz");
    let spec = misfit::data::DatasetSpec::parse(path.to_str().unwrap()).unwrap();
    let ds = crate::util::load_ok(path.to_str().unwrap(), &Default::default());
    let fast = ModelOptions { recipe: Some(Recipe::Fast), ..Default::default() };
    let lever = ModelOptions { width: Some(4), batch_size: Some(16), label_smoothing: Some(0.1), ..fast.clone() };
    let probe = |m: &ModelOptions| probe_confusion(&ds, &spec, 3, m, &Device::Cpu, false, None).unwrap();
    // Same flips whatever the lever: the probe is the recipe's own.
    assert_eq!(probe(&fast), probe(&lever));
    // The full recipe's probe is the training's own (its epochs included).
    let full = ModelOptions { recipe: Some(Recipe::Full), epochs: Some(1), ..Default::default() };
    let (_, source) = probe(&ModelOptions { width: Some(4), ..full });
    assert!(source.contains("trained 1 epochs"), "{source}");
}

#[test]
fn a_trained_model_predicts_the_same_after_a_save_and_load() {
    let dev = Device::Cpu;
    let m = ResNet::init(tiny(Shortcut::A), 4, &dev).unwrap();
    let pixels: Vec<u8> = (0..64 * 8 * 8 * 3).map(|i| (i * 31 % 253) as u8).collect();
    let labels: Vec<u32> = (0..64).map(|i| i % 3).collect();
    let rows: Vec<usize> = (0..64).collect();
    let set = TrainSet { pixels: &pixels, labels: &labels, height: 8, width: 8, rows: &rows };
    let mut cfg = TrainConfig::cifar(2, 0);
    cfg.batch_size = 16;
    train::train(&m, &set, &cfg, None, &Reporter::alone(false, "t"), &[]).unwrap();
    let before = misfit::model::predict(&m, &pixels, 64, 8, 8, 32).unwrap();
    let dir = tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&path, &m, &BTreeMap::new()).unwrap();
    let (back, _) = checkpoint::load(&path, &Default::default(), &dev).unwrap();
    let after = misfit::model::predict(&back, &pixels, 64, 8, 8, 32).unwrap();
    assert_eq!(before.logits, after.logits);
}

#[test]
fn without_a_final_model_the_folds_score_every_image_and_the_test_split_gets_their_ensemble() {
    use misfit::progress::{Overall, INFER_UNITS};
    use misfit::train::cv;
    use misfit::train::recipe::{Plan, Recipe};
    let dir = tempdir().unwrap();
    let o = misfit(&["data", "synth", "--out", "synth", "--train-per-class", "8", "--test-per-class", "2"], dir.path());
    assert!(o.status.success());
    let spec = dir.path().join("synth/demo.tar.gz");
    let ds = crate::util::load_ok(spec.to_str().unwrap(), &Default::default());
    let (n, h, w, k) = (ds.train.len(), ds.height, ds.width, ds.classes.len());
    let mcfg = ModelConfig { classes: ds.classes.clone(), ..tiny(Shortcut::A) };
    let mut t = TrainConfig::cifar(2, 5);
    t.batch_size = 16;
    let plan = Plan {
        recipe: Some(Recipe::Fast),
        folds: 2,
        final_model: false,
        aum_threshold: false,
        flip_predictions: true,
        probe_epochs: 1,
        tracin_checkpoints: 3,
    };
    // The audit's plan of the work matches what the cross-validation does.
    let overall = Overall::new(cv::planned_image_steps(n, &t, &plan) + INFER_UNITS * (2 * n) as f64);
    let out = cv::cross_validate(&ds, &mcfg, &t, &plan, None, &Device::Cpu, false, Some(&overall)).unwrap();
    assert_eq!(overall.fraction(), 1.0, "planned and done work differ");
    let jobs: Vec<&str> = out.history.iter().map(|(j, _)| j.as_str()).collect();
    assert_eq!(jobs, ["fold 1/2", "fold 2/2"], "no final model, no AUM run");
    assert_eq!(out.fold_models.len(), 2);
    assert!(out.aum_threshold.is_none());
    // TracIn's snapshots: every fold model's, at the end of each epoch
    // (2 epochs), each with the rows it trained on (the other fold's).
    assert_eq!(out.traced.len(), 2);
    for (k, m) in out.traced.iter().enumerate() {
        assert_eq!(m.label, format!("fold {}/2", k + 1));
        assert_eq!(m.snapshots.iter().map(|s| s.epoch).collect::<Vec<_>>(), [1, 2]);
        assert!((0..n).all(|i| m.trained[i] == (out.fold_of[i] != k as u32)));
        let last = m.snapshots[1].tensors["linear.weight"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let model =
            out.fold_models[k].params.tensors()["linear.weight"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(last, model, "the last snapshot is the fold model");
    }
    assert_eq!((out.dynamics.n, out.dynamics.epochs), (n, 2));
    let len = h * w * 3;
    let predict = |m: &ResNet, rows: &[usize], mirror: bool| {
        let px: Vec<u8> = rows.iter().flat_map(|&i| ds.train.pixels[i * len..(i + 1) * len].to_vec()).collect();
        misfit::model::predict_tta(m, &px, rows.len(), h, w, mirror).unwrap()
    };
    for fold in 0..2u32 {
        let held: Vec<usize> = (0..n).filter(|&i| out.fold_of[i] == fold).collect();
        let p = predict(&out.fold_models[fold as usize], &held, true);
        for (j, &i) in held.iter().enumerate() {
            assert_eq!(&out.out_of_sample.logits[i * k..(i + 1) * k], p.logits_of(j), "row {i}: not its fold's model");
        }
        // With the mirror: the probabilities are the mean of the image's and its mirror's.
        let plain = predict(&out.fold_models[fold as usize], &held[..1], false);
        let px = &ds.train.pixels[held[0] * len..(held[0] + 1) * len];
        let mirrored = misfit::model::mirror_images(px, 1, h, w);
        let m = misfit::model::predict(&out.fold_models[fold as usize], &mirrored, 1, h, w, 8).unwrap();
        let (a, b) = (misfit::stats::softmax(plain.logits_of(0)), misfit::stats::softmax(m.logits_of(0)));
        let got = misfit::stats::softmax(p.logits_of(0));
        for c in 0..k {
            assert!((got[c] - (a[c] + b[c]) / 2.0).abs() < 1e-5, "class {c}: {} vs {}", got[c], (a[c] + b[c]) / 2.0);
        }
    }
    // The model that serves attacks and embeddings is the first fold's.
    let all: Vec<usize> = (0..n).collect();
    assert_eq!(predict(&out.model, &all, false).logits, predict(&out.fold_models[0], &all, false).logits);
    assert_eq!(
        misfit::model::mirror_images(&misfit::model::mirror_images(&ds.train.pixels, n, h, w), n, h, w),
        ds.train.pixels
    );
}

#[test]
fn small_epochs_train_on_halved_images_reproducibly_and_end_at_full_size() {
    // halve: each pixel the rounded mean of its 2x2 block.
    let src: Vec<u8> = (0..4 * 4 * 3).map(|i| (i * 7 % 256) as u8).collect();
    let mut dst = vec![0u8; 2 * 2 * 3];
    train::halve(&src, &mut dst, 1, 4, 4);
    let at = |y: usize, x: usize, c: usize| src[(y * 4 + x) * 3 + c] as u16;
    for (y, x, c) in [(0, 0, 0), (1, 1, 2), (0, 1, 1)] {
        let want =
            (at(2 * y, 2 * x, c) + at(2 * y, 2 * x + 1, c) + at(2 * y + 1, 2 * x, c) + at(2 * y + 1, 2 * x + 1, c) + 2)
                / 4;
        assert_eq!(dst[(y * 2 + x) * 3 + c] as u16, want);
    }
    let dev = Device::Cpu;
    let (pixels, labels, rows) = toy_images();
    let set = TrainSet { pixels: &pixels, labels: &labels, height: 8, width: 8, rows: &rows };
    let mut cfg = TrainConfig::cifar(3, 5);
    cfg.batch_size = 16;
    let weights = |cfg: &TrainConfig| {
        let m = ResNet::init(tiny(Shortcut::A), 3, &dev).unwrap();
        train::train(&m, &set, cfg, None, &Reporter::alone(false, "t"), &[]).unwrap();
        m.params.tensors()["linear.weight"].flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let full = weights(&cfg);
    cfg.small_epochs = 2;
    let small = weights(&cfg);
    assert_ne!(small, full, "the first two epochs saw other images");
    assert_eq!(weights(&cfg), small, "bit for bit again");
    // The audit's time left counts a small epoch's image-step at its cost,
    // and a run does the work it was planned at (half of a plan of two).
    let units = train::epoch_units(&cfg, 0, cfg.epochs);
    assert!((units - (2.0 * misfit::progress::SMALL_STEP_UNITS + 1.0)).abs() < 1e-12, "{units}");
    let overall = misfit::progress::Overall::new(2.0 * 48.0 * units);
    let reporter = Reporter { overall: Some(overall.clone()), ..Reporter::alone(false, "t") };
    train::train(&ResNet::init(tiny(Shortcut::A), 3, &dev).unwrap(), &set, &cfg, None, &reporter, &[]).unwrap();
    assert!((overall.fraction() - 0.5).abs() < 1e-9, "planned and done work differ: {}", overall.fraction());
    // The configuration names the lever only when it is used.
    assert!(serde_json::to_string(&cfg).unwrap().contains("\"small_epochs\":2"));
    assert!(!serde_json::to_string(&TrainConfig::cifar(3, 5)).unwrap().contains("small_epochs"));
    // Odd sizes are refused, and so is a run that would never train at full size.
    let odd = TrainSet { pixels: &pixels[..48 * 7 * 7 * 3], labels: &labels, height: 7, width: 7, rows: &rows };
    let m = ResNet::init(tiny(Shortcut::A), 3, &dev).unwrap();
    let err = train::train(&m, &odd, &cfg, None, &Reporter::alone(false, "t"), &[]).err().unwrap().to_string();
    assert!(err.contains("even height and width"), "{err}");
    let dir = tempdir().unwrap();
    let o = misfit(
        &["audit", "--epochs", "2", "--small-epochs", "2", "--folds", "2", "--width", "4", "--depth", "8", "-q"],
        dir.path(),
    );
    assert!(
        !o.status.success() && crate::util::text(&o).contains("--small-epochs 2: must be below the epochs"),
        "{}",
        crate::util::text(&o)
    );
}

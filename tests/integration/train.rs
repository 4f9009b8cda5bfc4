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
    let err =
        train::train(&m, &set, &cfg, None, &Reporter { enabled: false, label: "t".into() }).unwrap_err().to_string();
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
    for table in ["samples.parquet", "dynamics.parquet", "confusion.parquet", "model.safetensors"] {
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
    in_sample_flags_are_a_review_shortlist(dir.path(), &run);
}

/// An imported model's training flags never reach `likely-mislabeled`
/// (relabel, warn): they are `likely-mislabeled-in-sample` (info, "review
/// (rank N of M)"); both shortlists are the flags cut at the two-labeller
/// bound, the test split's worded the same way; a ticket of the in-sample
/// rule says review.
fn in_sample_flags_are_a_review_shortlist(cwd: &std::path::Path, run: &std::path::Path) {
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
    let o = misfit(&["ticket", r, "--rule", "likely-mislabeled-in-sample"], cwd);
    if !of("likely-mislabeled-in-sample").is_empty() {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let md = std::fs::read_to_string(run.join("tickets/likely-mislabeled-in-sample/ticket.md")).unwrap();
        assert!(md.contains("Review each image by eye") && !md.contains("Relabel each image"), "{md}");
    }
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
    train::train(&m, &set, &cfg, None, &Reporter { enabled: false, label: "t".into() }).unwrap();
    let before = misfit::model::predict(&m, &pixels, 64, 8, 8, 32).unwrap();
    let dir = tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&path, &m, &BTreeMap::new()).unwrap();
    let (back, _) = checkpoint::load(&path, &Default::default(), &dev).unwrap();
    let after = misfit::model::predict(&back, &pixels, 64, 8, 8, 32).unwrap();
    assert_eq!(before.logits, after.logits);
}

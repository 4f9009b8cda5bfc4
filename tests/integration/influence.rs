//! Last-layer TracIn against a direct PyTorch computation of the same
//! formula, on 200 test and 2,000 training images of the shared CIFAR-10
//! archive with the shared ResNet-20 (tests/python/influence_reference.py).

use candle_core::{Device, Tensor};
use misfit::data::LoadOptions;
use misfit::model::{self, checkpoint, checkpoint::ImportOptions};
use misfit::tracin::{self, Checkpoint, InfluenceInput};
use std::collections::HashMap;

use crate::util::{load_ok, require_shared};

/// `MISFIT_PYTHON` when it imports torch and safetensors; else why not.
fn python_with_torch() -> Result<String, String> {
    let Ok(python) = std::env::var("MISFIT_PYTHON") else {
        return Err("MISFIT_PYTHON is not set".into());
    };
    let o = std::process::Command::new(&python).args(["-c", "import torch, safetensors"]).output();
    match o {
        Ok(o) if o.status.success() => Ok(python),
        Ok(o) => Err(format!("{python} cannot import torch: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("{python}: {e}")),
    }
}

/// Rows of `ids` named `<split>/<class>/NNNN.<ext>` with NNNN below `per_class`.
fn first_of_each_class(ids: &[String], per_class: usize) -> Vec<usize> {
    (0..ids.len())
        .filter(|&i| {
            let stem = ids[i].rsplit('/').next().unwrap().split('.').next().unwrap();
            stem.parse::<usize>().is_ok_and(|n| n < per_class)
        })
        .collect()
}

#[test]
fn last_layer_tracin_equals_a_direct_pytorch_computation_on_shared_cifar10() {
    let python = match python_with_torch() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED: the PyTorch reference needs MISFIT_PYTHON with torch ({why}): this test did not run");
            return;
        }
    };
    let Some(weights) = require_shared("models/resnet20-akamaster.safetensors") else { return };
    let Some(archive) = require_shared("datasets/cifar10-jpeg.tar.gz") else { return };
    let ds = load_ok(archive.to_str().unwrap(), &LoadOptions::default());
    let opts = ImportOptions { classes: Some(ds.classes.clone()), ..Default::default() };
    let (model, _) = checkpoint::load(&weights, &opts, &Device::Cpu).unwrap();
    let (h, w, len) = (32, 32, 32 * 32 * 3);
    let train = first_of_each_class(&ds.train.ids, 200);
    let test = first_of_each_class(&ds.test.ids, 20);
    assert_eq!((train.len(), test.len()), (2000, 200));
    let pixels = |px: &[u8], rows: &[usize]| -> Vec<u8> {
        rows.iter().flat_map(|&r| px[r * len..(r + 1) * len].iter().copied()).collect()
    };
    let (train_px, test_px) = (pixels(&ds.train.pixels, &train), pixels(&ds.test.pixels, &test));
    let train_labels: Vec<u32> = train.iter().map(|&r| ds.train.labels[r]).collect();
    let tr = model::predict(&model, &train_px, train.len(), h, w, 250).unwrap();
    let te = model::predict(&model, &test_px, test.len(), h, w, 200).unwrap();
    // Every test image's loss at its prediction, as the stage takes a test mistake's.
    let targets: Vec<u32> = (0..test.len()).map(|i| te.predicted(i)).collect();
    let mistakes = (0..test.len()).filter(|&i| targets[i] != ds.test.labels[test[i]]).count();
    let (weight, bias) = misfit::stages::influence::head(&model).unwrap();
    let dim = model.config.feature_dim();
    let cps = [Checkpoint {
        name: "akamaster",
        weight: &weight,
        bias: &bias,
        train_features: &tr.features,
        query_features: &te.features,
        lr: 1.0,
        trained: None,
    }];
    let k = 10;
    let input =
        InfluenceInput { classes: 10, dim, train_labels: &train_labels, query_targets: &targets, checkpoints: &cps, k };
    let ours = tracin::influence(&input).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (dir.path().join("input.safetensors"), dir.path().join("reference.safetensors"));
    let cpu = Device::Cpu;
    let u8s = |v: &[u8], n: usize| Tensor::from_slice(v, (n, h, w, 3), &cpu).unwrap();
    let i64s = |v: &[u32]| Tensor::from_vec(v.iter().map(|&x| x as i64).collect::<Vec<_>>(), v.len(), &cpu).unwrap();
    let tensors: HashMap<String, Tensor> = [
        ("train_images".to_string(), u8s(&train_px, train.len())),
        ("train_labels".to_string(), i64s(&train_labels)),
        ("test_images".to_string(), u8s(&test_px, test.len())),
        ("test_targets".to_string(), i64s(&targets)),
        ("train_features".to_string(), Tensor::from_slice(&tr.features, (train.len(), dim), &cpu).unwrap()),
        ("test_features".to_string(), Tensor::from_slice(&te.features, (test.len(), dim), &cpu).unwrap()),
    ]
    .into();
    candle_core::safetensors::save(&tensors, &inp).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/influence_reference.py");
    let o = std::process::Command::new(&python).arg(script).arg(&weights).arg(&inp).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let r = candle_core::safetensors::load(&out, &cpu).unwrap();
    let n = train.len();
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs();
    // (max relative difference of the self-influences, of the top-k values)
    let compare = |suffix: &str| -> (f64, f64) {
        let reference: Vec<f64> = r[&format!("influence{suffix}")].flatten_all().unwrap().to_vec1().unwrap();
        let self_ref: Vec<f64> = r[&format!("self_influence{suffix}")].to_vec1().unwrap();
        // Self-influences below 1e-12 of the largest (a training image fit
        // to within e^-25, about 1e-22 and less) are zero for any use and
        // sit where the last bits of the logits decide them: compared
        // against that floor.
        let floor = 1e-12 * self_ref.iter().copied().fold(0f64, f64::max);
        let worst_self = ours
            .self_influence
            .iter()
            .zip(&self_ref)
            .map(|(a, &b)| (a - b).abs() / b.abs().max(floor))
            .fold(0f64, f64::max);
        let mut worst = 0f64;
        for q in 0..test.len() {
            let row = &reference[q * n..(q + 1) * n];
            let mut sorted: Vec<f64> = row.to_vec();
            sorted.sort_by(|a, b| b.total_cmp(a));
            for (sign, hits) in [(1.0, &ours.proponents[q]), (-1.0, &ours.opponents[q])] {
                assert_eq!(hits.len(), k, "test image {q}: {} of sign {sign}", hits.len());
                for (rank, hit) in hits.iter().enumerate() {
                    // Each value against the reference's value of the same
                    // pair, and against the reference's value at the same rank.
                    let same_pair = row[hit.train as usize];
                    let same_rank = if sign > 0.0 { sorted[rank] } else { sorted[n - 1 - rank] };
                    assert!(same_pair * sign > 0.0, "test image {q}: sign of training image {}", hit.train);
                    worst = worst.max(rel(hit.influence as f64, same_pair)).max(rel(hit.influence as f64, same_rank));
                }
            }
        }
        (worst_self, worst)
    };
    let features: Vec<f32> = r["train_features"].flatten_all().unwrap().to_vec1().unwrap();
    let feature_diff = tr.features.iter().zip(&features).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let (self_same, top_same) = compare("_given_features");
    let (self_own, top_own) = compare("");
    eprintln!(
        "{} test images ({mistakes} mistakes) x {n} training images, top {k} of each sign: max relative difference \
         to PyTorch on misfit's features {top_same:.2e} (self-influence {self_same:.2e}); with PyTorch's own forward \
         pass (features differ by up to {feature_diff:.1e}) {top_own:.2e} (self-influence {self_own:.2e})",
        test.len()
    );
    assert!(top_same <= 1e-4 && self_same <= 1e-4, "on the same features: {top_same:.2e}, self {self_same:.2e}");
    assert!(top_own <= 1e-4 && self_own <= 1e-4, "with PyTorch's forward pass: {top_own:.2e}, self {self_own:.2e}");
}

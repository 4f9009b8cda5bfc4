//! The ResNet against the PyTorch-trained akamaster model in ../shared.

use candle_core::Device;
use misfit::data::LoadOptions;
use misfit::model::{self, checkpoint, checkpoint::ImportOptions};
use std::time::Instant;

use crate::util::{load_ok, require_shared};

#[test]
fn the_akamaster_import_reproduces_the_reference_logits_and_features() {
    let Some(weights) = require_shared("models/resnet20-akamaster.safetensors") else { return };
    let Some(reference) = require_shared("models/resnet20-akamaster.reference.safetensors") else { return };
    let (model, _) = checkpoint::load(&weights, &ImportOptions::default(), &Device::Cpu).unwrap();
    assert_eq!((model.config.depth, model.config.width, model.config.shortcut), (20, 16, model::Shortcut::A));
    assert_eq!(model.config.classes[3], "cat");
    let r = candle_core::safetensors::load(&reference, &Device::Cpu).unwrap();
    let images: Vec<u8> = r["images"].flatten_all().unwrap().to_vec1().unwrap();
    let p = model::predict(&model, &images, 200, 32, 32, 64).unwrap();
    let max_diff =
        |ours: &[f32], theirs: Vec<f32>| ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let logits = max_diff(&p.logits, r["logits"].flatten_all().unwrap().to_vec1().unwrap());
    let features = max_diff(&p.features, r["features"].flatten_all().unwrap().to_vec1().unwrap());
    eprintln!("akamaster reference: max |logit difference| {logits:.2e}, max |feature difference| {features:.2e}");
    assert!(logits < 1e-3 && features < 1e-3, "logits {logits}, features {features}");
}

#[test]
fn the_akamaster_import_scores_81_percent_on_the_shared_jpeg_test_split() {
    let Some(weights) = require_shared("models/resnet20-akamaster.safetensors") else { return };
    let Some(archive) = require_shared("datasets/cifar10-jpeg.tar.gz") else { return };
    let ds = load_ok(archive.to_str().unwrap(), &LoadOptions::default());
    let opts = ImportOptions { classes: Some(ds.classes.clone()), ..Default::default() };
    let (model, _) = checkpoint::load(&weights, &opts, &Device::Cpu).unwrap();
    let t = Instant::now();
    let p = model::predict(&model, &ds.test.pixels, ds.test.len(), 32, 32, 500).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let correct = (0..ds.test.len()).filter(|&i| p.predicted(i) == ds.test.labels[i]).count();
    let acc = 100.0 * correct as f64 / ds.test.len() as f64;
    eprintln!("akamaster on shared test split: {acc:.2}% ({:.0} images/s)", ds.test.len() as f64 / secs);
    // PyTorch with PIL decoding: 81.03%; the image crate's decoding: 81.10% (models README).
    assert!((acc - 81.03).abs() <= 0.1, "accuracy {acc:.2}%");
}

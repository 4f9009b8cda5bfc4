//! The real CIFAR-10 JPEG archive in ../shared: counts, order, and pixels
//! against the PyTorch reference's decoded images.

use candle_core::{Device, Tensor};
use misfit::data::{cifar_bin, LoadOptions};
use std::time::Instant;

use crate::util::{load_ok, require_shared};

#[test]
fn the_shared_cifar10_jpeg_archive_loads_whole_and_matches_the_reference_pixels() {
    let Some(archive) = require_shared("datasets/cifar10-jpeg.tar.gz") else { return };
    let Some(reference) = require_shared("models/resnet20-akamaster.reference.safetensors") else { return };
    let t = Instant::now();
    let ds = load_ok(archive.to_str().unwrap(), &LoadOptions::default());
    eprintln!("loaded {} + {} images in {:.1} s", ds.train.len(), ds.test.len(), t.elapsed().as_secs_f64());
    assert_eq!(ds.classes, cifar_bin::CLASSES.to_vec());
    assert_eq!((ds.height, ds.width), (32, 32));
    assert_eq!(ds.train.class_counts(10), vec![5000; 10]);
    assert_eq!(ds.test.class_counts(10), vec![1000; 10]);
    assert_eq!(ds.train.ids[0], "train/airplane/0000.jpg");
    assert_eq!(ds.name, "cifar10-jpeg");

    // The reference holds test/<class>/0000..0019.jpg decoded by PIL (HWC, RGB).
    // Decoders differ by a few levels (the models README): allow that, no more.
    let t = candle_core::safetensors::load(&reference, &Device::Cpu).unwrap();
    let images: Vec<u8> = t["images"].flatten_all().unwrap().to_vec1().unwrap();
    let labels: Vec<i64> = t["labels"].to_vec1().unwrap();
    let _: &Tensor = &t["images"];
    let len = 32 * 32 * 3;
    let (mut sum, mut max) = (0u64, 0u8);
    for k in 0..200 {
        let (class, n) = (k / 20, k % 20);
        let id = format!("test/{}/{n:04}.jpg", cifar_bin::CLASSES[class]);
        let i = ds.test.ids.iter().position(|x| *x == id).unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(ds.test.labels[i] as i64, labels[k], "{id}");
        let ours = &ds.test.pixels[i * len..(i + 1) * len];
        for (a, b) in ours.iter().zip(&images[k * len..(k + 1) * len]) {
            let d = a.abs_diff(*b);
            sum += d as u64;
            max = max.max(d);
        }
    }
    let mean = sum as f64 / (200 * len) as f64;
    eprintln!("decoder difference to PIL: mean {mean:.3}, max {max} levels");
    assert!(mean < 1.5 && max <= 16, "mean {mean}, max {max}: pixels or layout disagree with the reference");
}

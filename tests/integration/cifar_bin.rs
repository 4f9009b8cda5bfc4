//! CIFAR-10 binary batches: folders and archives the tests write, and every
//! kind of bad file.

use misfit::data::LoadOptions;
use tempfile::tempdir;

use crate::util::{load_err, load_ok, write_tar};

const REC: usize = 3073;

/// A record: label byte, then planar R, G, B with values that encode
/// (record, channel, pixel) so the HWC conversion can be checked.
fn record(label: u8, r: usize) -> Vec<u8> {
    let mut rec = vec![label];
    for c in 0..3 {
        for p in 0..1024 {
            rec.push(((r * 13 + c * 100 + p) % 251) as u8);
        }
    }
    rec
}

/// `n` records with labels cycling through 0..10.
fn batch(n: usize, offset: usize) -> Vec<u8> {
    (0..n).flat_map(|r| record(((r + offset) % 10) as u8, r + offset)).collect()
}

fn release() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> =
        (1..=5).map(|b| (format!("cifar-10-batches-bin/data_batch_{b}.bin"), batch(20, b * 100))).collect();
    files.push(("cifar-10-batches-bin/test_batch.bin".into(), batch(10, 0)));
    files.push(("cifar-10-batches-bin/readme.html".into(), b"<html></html>".to_vec()));
    files
}

#[test]
fn loads_a_folder_of_batches_with_planar_to_hwc_conversion() {
    let dir = tempdir().unwrap();
    crate::util::write_tree(dir.path(), &release());
    let ds = load_ok(dir.path().to_str().unwrap(), &LoadOptions::default());
    assert!(ds.source.contains("CIFAR-10 binary"), "{}", ds.source);
    assert_eq!((ds.height, ds.width), (32, 32));
    assert_eq!(ds.classes[3], "cat");
    assert_eq!(ds.train.len(), 100);
    assert_eq!(ds.test.len(), 10);
    assert_eq!(ds.train.ids[0], "data_batch_1.bin:00000");
    assert_eq!(ds.train.ids[20], "data_batch_2.bin:00000");
    assert_eq!(ds.test.ids[9], "test_batch.bin:00009");
    // Record 0 of batch 1 has offset 100: label 0, pixel p of channel c = (1300 + 100c + p) % 251.
    assert_eq!(ds.train.labels[0], 0);
    assert_eq!(ds.train.labels[1], 1);
    let img = &ds.train.pixels[..3072];
    for (p, c) in [(0, 0), (0, 2), (5, 1), (1023, 2)] {
        assert_eq!(img[p * 3 + c] as usize, (100 * 13 + c * 100 + p) % 251, "pixel {p} channel {c}");
    }
}

#[test]
fn the_tar_gz_release_loads_like_the_folder() {
    let dir = tempdir().unwrap();
    crate::util::write_tree(&dir.path().join("unpacked"), &release());
    let archive = dir.path().join("cifar-10-binary.tar.gz");
    write_tar(&archive, &release());
    let a = load_ok(archive.to_str().unwrap(), &LoadOptions::default());
    let b = load_ok(dir.path().join("unpacked").to_str().unwrap(), &LoadOptions::default());
    assert_eq!((a.train.clone(), a.test.clone()), (b.train, b.test));
    assert_eq!(a.fingerprint().len(), 64);
}

#[test]
fn class_names_come_from_batches_meta() {
    let dir = tempdir().unwrap();
    let mut files = release();
    let names = "a0\nb1\nc2\nd3\ne4\nf5\ng6\nh7\ni8\nj9\n\n";
    files.push(("cifar-10-batches-bin/batches.meta.txt".into(), names.as_bytes().to_vec()));
    crate::util::write_tree(dir.path(), &files);
    let ds = load_ok(dir.path().to_str().unwrap(), &LoadOptions::default());
    assert_eq!(ds.classes[9], "j9");
    assert_eq!(ds.classes.len(), 10);
}

#[test]
fn a_truncated_batch_names_the_file_and_record() {
    let dir = tempdir().unwrap();
    let mut bytes = batch(20, 0);
    bytes.truncate(REC * 7 + 100);
    std::fs::write(dir.path().join("data_batch_1.bin"), bytes).unwrap();
    let err = load_err(dir.path().to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("data_batch_1.bin"), "{err}");
    assert!(err.contains("record 7"), "{err}");
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn an_oversized_batch_is_refused() {
    let dir = tempdir().unwrap();
    std::fs::write(dir.path().join("data_batch_1.bin"), batch(10_001, 0)).unwrap();
    let err = load_err(dir.path().to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("data_batch_1.bin") && err.contains("oversized") && err.contains("10001"), "{err}");
}

#[test]
fn a_label_outside_the_class_range_names_the_record() {
    let dir = tempdir().unwrap();
    let mut bytes = batch(20, 0);
    bytes[REC * 12] = 10;
    std::fs::write(dir.path().join("data_batch_1.bin"), bytes).unwrap();
    let err = load_err(dir.path().to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("data_batch_1.bin") && err.contains("record 12") && err.contains("label 10"), "{err}");
}

#[test]
fn an_empty_class_is_an_error_naming_it() {
    let dir = tempdir().unwrap();
    // Labels cycle 0..10 except that class 4 never appears.
    let bytes: Vec<u8> = (0..20).flat_map(|r| record(if r % 10 == 4 { 5 } else { (r % 10) as u8 }, r)).collect();
    std::fs::write(dir.path().join("data_batch_1.bin"), bytes).unwrap();
    let err = load_err(dir.path().to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("deer") && err.contains("no training image"), "{err}");
}

#[test]
fn a_truncated_archive_names_the_archive() {
    let dir = tempdir().unwrap();
    let archive = dir.path().join("cifar-10-binary.tar.gz");
    write_tar(&archive, &release());
    let bytes = std::fs::read(&archive).unwrap();
    std::fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(&format!("cifar10-bin:{}", archive.display()), &LoadOptions::default());
    assert!(err.contains("cifar-10-binary.tar.gz") && err.contains("truncated or corrupt"), "{err}");
}

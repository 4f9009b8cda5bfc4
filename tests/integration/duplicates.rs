//! The near-duplicate detector on generated textured images: re-crops,
//! shifts, mirror images, re-encodings and colour changes of training images
//! are found, with the right kind; distinct images are not matched.

use image::RgbImage;
use misfit::bench::copies::{transform, TRANSFORMS};
use misfit::quality::duplicates::{find, DuplicateConfig, Found, Inputs, Kind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A 32x32 photo-like image: a few random blobs and waves of random
/// colours over a gradient, with pixel noise.
fn photo(rng: &mut ChaCha8Rng) -> RgbImage {
    let base: [f32; 3] = std::array::from_fn(|_| rng.random_range(40.0..200.0));
    let waves: Vec<([f32; 3], f32, f32, f32)> = (0..4)
        .map(|_| {
            let c = std::array::from_fn(|_| rng.random_range(-60.0..60.0));
            (c, rng.random_range(0.05..0.3), rng.random_range(0.05..0.3), rng.random_range(0.0..6.3))
        })
        .collect();
    let blobs: Vec<([f32; 3], f32, f32, f32)> = (0..6)
        .map(|_| {
            let c = std::array::from_fn(|_| rng.random_range(-80.0..80.0));
            (c, rng.random_range(4.0..28.0), rng.random_range(4.0..28.0), rng.random_range(2.0..6.0))
        })
        .collect();
    let noise: Vec<f32> = (0..32 * 32 * 3).map(|_| rng.random_range(-4.0..4.0)).collect();
    RgbImage::from_fn(32, 32, |x, y| {
        let (xf, yf) = (x as f32, y as f32);
        image::Rgb(std::array::from_fn(|ch| {
            let mut v = base[ch];
            for (c, fx, fy, ph) in &waves {
                v += c[ch] * (fx * xf + fy * yf + ph).sin() * 0.5;
            }
            for (c, bx, by, r) in &blobs {
                let d2 = (xf - bx).powi(2) + (yf - by).powi(2);
                v += c[ch] * (-d2 / (2.0 * r * r)).exp();
            }
            v += noise[((y * 32 + x) * 3) as usize + ch];
            v.round().clamp(0.0, 255.0) as u8
        }))
    })
}

/// The detector with its defaults on 32x32 training and test images, no embeddings.
fn find_among(train: &[RgbImage], test: &[RgbImage], labels: &[u32], train_pairs: bool) -> Found {
    let flat = |v: &[RgbImage]| -> Vec<u8> { v.iter().flat_map(|i| i.as_raw().iter().copied()).collect() };
    let (train_px, test_px) = (flat(train), flat(test));
    let inputs = Inputs {
        train: &train_px,
        test: &test_px,
        height: 32,
        width: 32,
        neighbors: None,
        embeddings: None,
        train_pairs,
        labels,
        test_labels: &[],
    };
    find(&inputs, &DuplicateConfig::default())
}

#[test]
fn transformed_copies_are_found_and_distinct_images_are_not() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (n_train, copies, fresh) = (240, 36, 24);
    let train: Vec<RgbImage> = (0..n_train).map(|_| photo(&mut rng)).collect();
    let mut test = Vec::new();
    let mut truth = Vec::new();
    for c in 0..copies {
        let kind = TRANSFORMS[c % TRANSFORMS.len()];
        let orig = 7 * c % n_train;
        test.push(transform(&train[orig], kind, &mut rng).unwrap());
        truth.push(Some((orig, kind)));
    }
    for _ in 0..fresh {
        test.push(photo(&mut rng));
        truth.push(None);
    }
    let labels: Vec<u32> = (0..n_train as u32).map(|i| i % 4).collect();
    let found = find_among(&train, &test, &labels, true);
    assert!(found.cuts.aligned, "{:?}", found.cuts);
    // No pair between distinct images: within train, or a fresh test image.
    assert!(
        found.pairs.iter().all(|p| p.b_test),
        "training pairs: {:?}",
        found.pairs.iter().filter(|p| !p.b_test).collect::<Vec<_>>()
    );
    for p in &found.pairs {
        assert_eq!(truth[p.b].map(|t| t.0), Some(p.a), "false match {p:?}");
    }
    // Nearly every copy found (all but 10%), mirror images named as such.
    let mut hits = 0;
    for (b, t) in truth.iter().enumerate() {
        if let Some((orig, kind)) = t {
            let Some(p) = found.pairs.iter().find(|p| p.b == b && p.a == *orig) else { continue };
            hits += 1;
            match *kind {
                "flip" => assert_eq!(p.kind, Kind::Flipped, "{p:?}"),
                "crop" => assert!(matches!(p.kind, Kind::Cropped | Kind::Shifted), "{p:?}"),
                _ => assert_ne!(p.kind, Kind::Flipped, "{p:?}"),
            }
        }
    }
    assert!(hits as f64 >= 0.9 * copies as f64, "{hits} of {copies} copies found; cuts {:?}", found.cuts);
}

#[test]
fn pixel_near_copies_alone_where_every_image_of_a_class_looks_alike() {
    // Flat squares of one colour, at nearly the same place: any two of a
    // class align, so only the pixel-near copy is reported.
    let square = |dx: u32, dy: u32, colour: [u8; 3]| -> RgbImage {
        RgbImage::from_fn(32, 32, |x, y| {
            let inside = (8 + dx..22 + dx).contains(&x) && (8 + dy..22 + dy).contains(&y);
            image::Rgb(if inside { colour } else { [30, 30, 90] })
        })
    };
    let train: Vec<RgbImage> = (0..40).map(|i| square(i % 3, (i / 3) % 3, [200 + (i % 5) as u8, 40, 40])).collect();
    let mut copy = train[5].clone();
    copy.get_pixel_mut(0, 0).0[0] = 60;
    // A green square: aligns with the red ones in grey, differs in pixels.
    let test = [copy, square(2, 1, [60, 200, 40])];
    let found = find_among(&train, &test, &vec![0u32; train.len()], false);
    assert!(!found.cuts.aligned, "{:?}", found.cuts);
    let test_pairs: Vec<(usize, usize)> = found.pairs.iter().map(|p| (p.a, p.b)).collect();
    assert!(test_pairs.contains(&(5, 0)), "{test_pairs:?}");
    assert!(found.pairs.iter().all(|p| p.kind == Kind::Near || p.kind == Kind::Exact));
    assert!(found.pairs.iter().all(|p| p.pixel_distance <= 6.0), "{:?}", found.pairs);
}

/// The verdicts of a person who looked at CIFAR-10 pairs side by side.
const VERDICTS: &str = "tests/fixtures/cifar-duplicate-verdicts.csv";

#[test]
fn on_cifar10_at_least_nine_in_ten_reported_train_test_pairs_looked_at_are_the_same_photograph() {
    use misfit::bench::copies::{read_verdicts, sample_leaks, Verdict, PRECISION_SAMPLE};
    let Some(archive) = crate::util::require_shared("datasets/cifar10-jpeg.tar.gz") else { return };
    let ds = crate::util::load_ok(archive.to_str().unwrap(), &misfit::data::LoadOptions::default());
    let verdicts = read_verdicts(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(VERDICTS)).unwrap();
    let inputs = Inputs {
        train: &ds.train.pixels,
        test: &ds.test.pixels,
        height: ds.height,
        width: ds.width,
        neighbors: None,
        embeddings: None,
        train_pairs: true,
        labels: &ds.train.labels,
        test_labels: &ds.test.labels,
    };
    let found = find(&inputs, &DuplicateConfig::default());
    // The seeded sample `misfit bench duplicates --verdicts` draws (seed 0).
    let sample = sample_leaks(&found.pairs, PRECISION_SAMPLE, 0);
    assert_eq!(sample.len(), PRECISION_SAMPLE);
    let ids = |a: usize, b: usize, test: bool| {
        (ds.train.ids[a].clone(), if test { ds.test.ids[b].clone() } else { ds.train.ids[b].clone() })
    };
    let mut same = 0;
    for &i in &sample {
        let p = &found.pairs[i];
        let key = ids(p.a, p.b, true);
        let v =
            verdicts.get(&key).unwrap_or_else(|| panic!("no verdict for {key:?}: look at it and add it to {VERDICTS}"));
        same += (*v == Verdict::Same) as usize;
    }
    assert!(same * 10 >= 9 * PRECISION_SAMPLE, "{same} of {PRECISION_SAMPLE} the same photograph");
    // The training pairs with different labels looked at (all different
    // photographs, every one reported before the detail cut) stay out.
    let reported: std::collections::HashSet<(String, String)> =
        found.pairs.iter().map(|p| ids(p.a, p.b, p.b_test)).collect();
    let wrong: Vec<_> = verdicts
        .iter()
        .filter(|(k, v)| **v == Verdict::Different && k.1.starts_with("train/") && reported.contains(*k))
        .map(|(k, _)| k)
        .collect();
    assert!(wrong.len() <= 1, "different photographs reported within train: {wrong:?}");
}

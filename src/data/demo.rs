//! The built-in demo dataset: small procedural images in 10 classes, made by
//! a seeded generator, with data problems planted on purpose and their ground
//! truth kept, so that an audit can be scored against what is known to be wrong.
//!
//! Written by hand because it *is* the product's test bench: no crate draws
//! these shapes with these planted faults. What is planted:
//! - label flips: `flip_rate` of the training images carry another class's label;
//! - a look-alike pair: `square` and `notched_square` differ only by a small
//!   notch in one corner (as cat and dog differ in details), and in a share
//!   of both classes' images that corner is smudged (half foreground, half
//!   background), so that those images are ambiguous whatever the model;
//! - a shared background: `cross` and `chevron` sit on sky blue most of the
//!   time (as airplane and bird share the sky), other classes rarely do,
//!   and a share of their images show the shape faintly (as a small bird far
//!   away in the sky, here drawn under the noise), so that the sky is all
//!   the model has to go on;
//! - exact and near duplicates within train and across train and test;
//! - outliers that belong to no class (noise, split-colour images), given a
//!   random label.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Dataset, ImageSet, Split};

/// Class names, in byte order so that an image-folder copy loads the same.
pub const CLASSES: [&str; 10] =
    ["checker", "chevron", "cross", "diamond", "disc", "notched_square", "ring", "square", "stripes", "triangle"];
/// The look-alike pair (class indices): `square` / `notched_square`.
pub const LOOKALIKE: (u32, u32) = (7, 5);
/// The pair that shares a sky-blue background (class indices): `cross` / `chevron`.
pub const SHARED_BACKGROUND: (u32, u32) = (2, 1);

/// How the demo dataset is made. The default is what `misfit audit` runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DemoConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Image side in pixels (square images).
    pub size: usize,
    /// Clean training images per class, before duplicates and outliers are added.
    pub train_per_class: usize,
    /// Test images per class, before duplicates are added.
    pub test_per_class: usize,
    /// Share of training images whose label is flipped to another class.
    pub flip_rate: f64,
    /// Exact copies of training images added to train.
    pub exact_duplicates: usize,
    /// Slightly altered copies of training images added to train.
    pub near_duplicates: usize,
    /// Exact copies of training images added to test (leaks).
    pub cross_exact_duplicates: usize,
    /// Slightly altered copies of training images added to test.
    pub cross_near_duplicates: usize,
    /// Images of no class added to train with a random label.
    pub outliers: usize,
    /// Probability that a `square` or `notched_square` image has its notch
    /// corner smudged, which makes it ambiguous between the two.
    #[serde(default)]
    pub lookalike_ambiguity: f64,
    /// Probability that a `cross` or `chevron` image has the sky background.
    pub sky_rate: f64,
    /// Probability that an image of another class has the sky background.
    pub sky_rate_others: f64,
    /// Probability that a `cross` or `chevron` image shows its shape faintly
    /// (foreground at 0-6% contrast against the background: invisible
    /// under the noise).
    #[serde(default)]
    pub faint_rate: f64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            seed: 20161,
            size: 16,
            train_per_class: 240,
            test_per_class: 100,
            flip_rate: 0.04,
            exact_duplicates: 6,
            near_duplicates: 6,
            cross_exact_duplicates: 6,
            cross_near_duplicates: 4,
            outliers: 10,
            lookalike_ambiguity: 0.12,
            sky_rate: 0.85,
            sky_rate_others: 0.05,
            faint_rate: 0.15,
        }
    }
}

/// The kind of a planted problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The image carries another class's label.
    LabelFlip,
    /// The image is a byte-for-byte copy of `related_id`.
    DuplicateExact,
    /// The image is a slightly altered copy of `related_id`.
    DuplicateNear,
    /// The image belongs to no class.
    Outlier,
}

impl ProblemKind {
    /// The name used in tables and the ground-truth CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::LabelFlip => "label_flip",
            ProblemKind::DuplicateExact => "duplicate_exact",
            ProblemKind::DuplicateNear => "duplicate_near",
            ProblemKind::Outlier => "outlier",
        }
    }
}

/// One planted problem, keyed by image id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlantedProblem {
    /// The image's id.
    pub id: String,
    /// Its split.
    pub split: Split,
    /// What was planted.
    pub kind: ProblemKind,
    /// The label the image carries in the dataset.
    pub given_label: u32,
    /// Its true class (`None` for outliers, which belong to no class).
    pub true_label: Option<u32>,
    /// For duplicates, the id of the image copied.
    pub related_id: Option<String>,
}

/// What was planted in a demo dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DemoTruth {
    /// Every planted per-image problem, in split then id order.
    pub problems: Vec<PlantedProblem>,
    /// The look-alike class pair, by name.
    pub lookalike: (String, String),
    /// The class pair that shares a background, by name.
    pub shared_background: (String, String),
}

/// A generated demo dataset and its ground truth.
#[derive(Clone, Debug)]
pub struct Demo {
    pub dataset: Dataset,
    pub truth: DemoTruth,
}

/// A fresh random stream for one image, independent of generation order.
fn image_rng(seed: u64, split: Split, index: usize) -> ChaCha8Rng {
    let stream = ((split as u64) << 40) ^ index as u64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream + 1);
    rng
}

/// Largest contrast of a faint shape against its background (a share of
/// their difference): at most about 9 levels, under the pixel noise of
/// ±10, so a faint shape cannot be seen and the sky is all there is.
const FAINT_CONTRAST: f32 = 0.06;

/// Foreground colours: saturated, far from every background colour.
const FOREGROUND: [[f32; 3]; 8] = [
    [230.0, 40.0, 40.0],
    [250.0, 200.0, 30.0],
    [240.0, 120.0, 20.0],
    [250.0, 250.0, 250.0],
    [230.0, 60.0, 200.0],
    [60.0, 220.0, 60.0],
    [20.0, 20.0, 20.0],
    [150.0, 240.0, 220.0],
];
/// Background colours: muted.
const BACKGROUND: [[f32; 3]; 6] = [
    [90.0, 90.0, 90.0],
    [170.0, 150.0, 110.0],
    [50.0, 90.0, 50.0],
    [110.0, 70.0, 50.0],
    [80.0, 60.0, 110.0],
    [40.0, 100.0, 110.0],
];
/// The shared sky-blue background.
const SKY: [f32; 3] = [110.0, 170.0, 235.0];

fn jitter(rng: &mut ChaCha8Rng, c: [f32; 3], amount: f32) -> [f32; 3] {
    c.map(|v| v + rng.random_range(-amount..=amount))
}

/// A colour drawn from a palette, jittered.
fn pick(rng: &mut ChaCha8Rng, palette: &[[f32; 3]], amount: f32) -> [f32; 3] {
    let c = palette[rng.random_range(0..palette.len())];
    jitter(rng, c, amount)
}

/// Draws one image of class `class` (or an outlier when `class` is `None`)
/// from random stream `stream` of `cfg.seed`: `[size, size, 3]` RGB, HWC.
/// The same stream draws the same position, colours and noise for every
/// class, so two classes can be compared image for image.
pub fn draw(class: Option<u32>, cfg: &DemoConfig, stream: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(stream);
    render(class, cfg.size, cfg, &mut rng)
}

/// Draws one image of class `class` (or an outlier when `class` is `None`):
/// `[size, size, 3]` RGB, HWC.
fn render(class: Option<u32>, size: usize, cfg: &DemoConfig, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let s = size as f32;
    let sky_p = match class {
        Some(c) if c == SHARED_BACKGROUND.0 || c == SHARED_BACKGROUND.1 => cfg.sky_rate,
        _ => cfg.sky_rate_others,
    };
    let bg = if rng.random_bool(sky_p) { jitter(rng, SKY, 12.0) } else { pick(rng, &BACKGROUND, 15.0) };
    let fg = pick(rng, &FOREGROUND, 20.0);
    // A gentle gradient across the background, in a random direction.
    let angle = rng.random_range(0.0..std::f32::consts::TAU);
    let (gx, gy) = (angle.cos() * 25.0 / s, angle.sin() * 25.0 / s);
    let cx = s / 2.0 + rng.random_range(-s / 8.0..=s / 8.0);
    let cy = s / 2.0 + rng.random_range(-s / 8.0..=s / 8.0);
    // The planted pairs' objects are smaller (0.20-0.25 of the side instead
    // of 0.30-0.40) and so lie inside the centre that the occlusion check
    // fills and that the saliency ring leaves out: with the background
    // alone nothing of a square's or a cross's edges is left, so the
    // background criteria can only be met by the background. Drawn from the
    // same number, so every class's stream stays aligned.
    let u: f32 = rng.random_range(0.30..0.40);
    let small = matches!(class, Some(c) if c == LOOKALIKE.0 || c == LOOKALIKE.1 || c == SHARED_BACKGROUND.0 || c == SHARED_BACKGROUND.1);
    let r = s * if small { 0.20 + (u - 0.30) / 2.0 } else { u };
    let notch_corner = rng.random_range(0..4u8);
    let period = rng.random_range(3.0..5.0f32);
    let phase = rng.random_range(0.0..period);
    let vertical = rng.random_bool(0.5);
    let cell = rng.random_range(2..=4usize) as f32;
    let outlier_kind = rng.random_range(0..2u8);
    let other = pick(rng, &FOREGROUND, 40.0);
    let lookalike = matches!(class, Some(c) if c == LOOKALIKE.0 || c == LOOKALIKE.1);
    let smudged = lookalike && rng.random_bool(cfg.lookalike_ambiguity);
    // Drawn only for the shared-background pair, so that no other class's
    // images change with the faint rate.
    let shared = matches!(class, Some(c) if c == SHARED_BACKGROUND.0 || c == SHARED_BACKGROUND.1);
    let fg = if shared && rng.random_bool(cfg.faint_rate) {
        let contrast = rng.random_range(0.0..FAINT_CONTRAST);
        [0, 1, 2].map(|i| bg[i] + contrast * (fg[i] - bg[i]))
    } else {
        fg
    };
    // The notch corner of the square: the k x k pixels at one corner
    // (k = size / 8, at least 2), whatever the square's size.
    let h_sq = r * 0.85;
    let k = (size / 8).max(2) as f32;
    let (lo_x, hi_x) = ((cx - h_sq - 0.5).ceil(), (cx + h_sq - 0.5).floor());
    let (lo_y, hi_y) = ((cy - h_sq - 0.5).ceil(), (cy + h_sq - 0.5).floor());
    let notch = |x: usize, y: usize| -> bool {
        let (fx, fy) = (x as f32, y as f32);
        let in_x = if notch_corner & 1 == 0 { fx > hi_x - k && fx <= hi_x } else { fx < lo_x + k && fx >= lo_x };
        let in_y = if notch_corner & 2 == 0 { fy > hi_y - k && fy <= hi_y } else { fy < lo_y + k && fy >= lo_y };
        in_x && in_y
    };

    let mut out = vec![0u8; size * size * 3];
    for y in 0..size {
        for x in 0..size {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let (dx, dy) = (px - cx, py - cy);
            // The background's gradient at this pixel.
            let grad = (px - s / 2.0) * gx + (py - s / 2.0) * gy;
            let inside = match class {
                None => match outlier_kind {
                    0 => rng.random_bool(0.5),
                    _ => px + py < s,
                },
                Some(c) => match CLASSES[c as usize] {
                    "checker" => (((px / cell).floor() + (py / cell).floor()) as i64) % 2 == 0,
                    "chevron" => dx.abs() <= r && (dy - (dx.abs() - r / 2.0)).abs() <= r * 0.3,
                    "cross" => {
                        let t = r * 0.3;
                        (dx.abs() <= t && dy.abs() <= r) || (dy.abs() <= t && dx.abs() <= r)
                    }
                    "diamond" => dx.abs() + dy.abs() <= r,
                    "disc" => dx * dx + dy * dy <= r * r,
                    "ring" => {
                        let d2 = dx * dx + dy * dy;
                        let t = (r * 0.38).max(1.5);
                        d2 <= r * r && d2 >= (r - t) * (r - t)
                    }
                    "square" | "notched_square" => {
                        let sq = dx.abs() <= h_sq && dy.abs() <= h_sq;
                        sq && (CLASSES[c as usize] == "square" || !notch(x, y))
                    }
                    "stripes" => {
                        let t = if vertical { px } else { py };
                        ((t + phase) % period) < period / 2.0
                    }
                    "triangle" => dy.abs() <= r * 0.85 && dx.abs() <= (dy + r * 0.85) / 2.0,
                    _ => unreachable!("every class is drawn"),
                },
            };
            let smudge = smudged && notch(x, y);
            let base = match (class, inside) {
                // Halfway between the foreground and the background.
                _ if smudge => [0, 1, 2].map(|i| (fg[i] + bg[i] + grad) / 2.0),
                (None, true) if outlier_kind == 0 => {
                    [rng.random_range(0.0..255.0), rng.random_range(0.0..255.0), rng.random_range(0.0..255.0)]
                }
                (None, true) => other,
                (_, true) => fg,
                (_, false) => bg.map(|v| v + grad),
            };
            for c in 0..3 {
                let v = base[c] + rng.random_range(-10.0..=10.0f32);
                out[(y * size + x) * 3 + c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// A near copy: every channel moved by a few levels, brightness shifted a little.
fn perturb(pixels: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let shift: i16 = rng.random_range(-4..=4);
    pixels.iter().map(|&p| (p as i16 + shift + rng.random_range(-3..=3i16)).clamp(0, 255) as u8).collect()
}

/// Picks `n` distinct indices from `pool` (in place), leaving the rest.
fn take(pool: &mut Vec<usize>, n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    (0..n.min(pool.len())).map(|_| pool.swap_remove(rng.random_range(0..pool.len()))).collect()
}

/// Generates the demo dataset and its ground truth.
pub fn generate(cfg: &DemoConfig) -> Demo {
    let n_classes = CLASSES.len();
    let size = cfg.size;
    let image_len = size * size * 3;
    let base = |split: Split, per_class: usize| -> Vec<(u32, Vec<u8>)> {
        (0..per_class * n_classes)
            .into_par_iter()
            .map(|i| {
                let class = (i % n_classes) as u32;
                let mut rng = image_rng(cfg.seed, split, i);
                (class, render(Some(class), size, cfg, &mut rng))
            })
            .collect()
    };
    let train_base = base(Split::Train, cfg.train_per_class);
    let test_base = base(Split::Test, cfg.test_per_class);

    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(0);
    // (true label, given label, pixels, planted kind, related index)
    struct Item {
        true_label: Option<u32>,
        given: u32,
        pixels: Vec<u8>,
        kind: Option<ProblemKind>,
        related: Option<usize>,
    }
    let mut train: Vec<Item> = train_base
        .into_iter()
        .map(|(c, p)| Item { true_label: Some(c), given: c, pixels: p, kind: None, related: None })
        .collect();
    let mut test: Vec<Item> = test_base
        .into_iter()
        .map(|(c, p)| Item { true_label: Some(c), given: c, pixels: p, kind: None, related: None })
        .collect();

    let mut pool: Vec<usize> = (0..train.len()).collect();
    let n_flips = (cfg.flip_rate * train.len() as f64).round() as usize;
    for i in take(&mut pool, n_flips, &mut rng) {
        let shift = rng.random_range(1..n_classes as u32);
        train[i].given = (train[i].given + shift) % n_classes as u32;
        train[i].kind = Some(ProblemKind::LabelFlip);
    }
    // Duplicates copy clean images, so that each planted image has one problem.
    let n_base = train.len();
    for (count, kind, to_test) in [
        (cfg.exact_duplicates, ProblemKind::DuplicateExact, false),
        (cfg.near_duplicates, ProblemKind::DuplicateNear, false),
        (cfg.cross_exact_duplicates, ProblemKind::DuplicateExact, true),
        (cfg.cross_near_duplicates, ProblemKind::DuplicateNear, true),
    ] {
        for src in take(&mut pool, count, &mut rng) {
            let pixels = match kind {
                ProblemKind::DuplicateNear => perturb(&train[src].pixels, &mut rng),
                _ => train[src].pixels.clone(),
            };
            let c = train[src].true_label;
            let item = Item { true_label: c, given: train[src].given, pixels, kind: Some(kind), related: Some(src) };
            if to_test {
                test.push(item)
            } else {
                train.push(item)
            }
        }
    }
    debug_assert!(train[..n_base].iter().all(|t| t.related.is_none()));
    for k in 0..cfg.outliers {
        let mut orng = image_rng(cfg.seed, Split::Train, usize::MAX / 2 + k);
        let pixels = render(None, size, cfg, &mut orng);
        let given = rng.random_range(0..n_classes as u32);
        train.push(Item { true_label: None, given, pixels, kind: Some(ProblemKind::Outlier), related: None });
    }

    let id = |split: Split, i: usize, label: u32| format!("{split}/{}/{i:05}.png", CLASSES[label as usize]);
    let train_ids: Vec<String> = train.iter().enumerate().map(|(i, t)| id(Split::Train, i, t.given)).collect();
    let mut problems = Vec::new();
    let mut sets = [ImageSet::default(), ImageSet::default()];
    for (split, items) in [(Split::Train, &train), (Split::Test, &test)] {
        for (i, t) in items.iter().enumerate() {
            let this_id = id(split, i, t.given);
            if let Some(kind) = t.kind {
                problems.push(PlantedProblem {
                    id: this_id.clone(),
                    split,
                    kind,
                    given_label: t.given,
                    true_label: t.true_label,
                    related_id: t.related.map(|r| train_ids[r].clone()),
                });
            }
            sets[split as usize].push(this_id, t.given, &t.pixels);
        }
    }
    let [mut train_set, mut test_set] = sets;
    train_set.sort_by_id(image_len);
    test_set.sort_by_id(image_len);
    problems.sort_by(|a, b| (a.split, &a.id).cmp(&(b.split, &b.id)));
    let name = |c: u32| CLASSES[c as usize].to_string();
    Demo {
        dataset: Dataset {
            name: "demo".into(),
            source: format!("built-in demo (seed {})", cfg.seed),
            classes: CLASSES.iter().map(|s| s.to_string()).collect(),
            height: size,
            width: size,
            train: train_set,
            test: test_set,
        },
        truth: DemoTruth {
            problems,
            lookalike: (name(LOOKALIKE.0), name(LOOKALIKE.1)),
            shared_background: (name(SHARED_BACKGROUND.0), name(SHARED_BACKGROUND.1)),
        },
    }
}

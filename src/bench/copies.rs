//! `misfit bench duplicates`: calibration of the near-duplicate detector on
//! a real dataset. Transformed copies of test images (a re-crop, a shift of
//! 1-4 pixels, a mirror image, a re-encoding, a brightness or a colour
//! change, each saved again as JPEG at quality 50-90) are searched among all
//! the dataset's images: the recall is the share of copies whose original is
//! found. Random pairs of distinct same-class test images give the
//! false-match rate. Then the detector runs on the dataset itself, as the
//! audit does (without the embedding neighbours an audit adds as
//! candidates): pairs by kind, train/test leakage, time, and a contact sheet
//! of a seeded sample of the train/test pairs to look at.

use image::{imageops, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::time::Instant;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::quality::duplicates::{self, judge, DuplicateConfig, Inputs, Kind};

/// The transformations a copy gets (then a JPEG re-encoding).
pub const TRANSFORMS: [&str; 6] = ["crop", "shift", "flip", "jpeg", "brightness", "colour"];

fn clamp(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// A copy of `img` under `kind`, re-encoded as JPEG at a quality of 50 to 90.
pub fn transform(img: &RgbImage, kind: &str, rng: &mut ChaCha8Rng) -> Result<RgbImage> {
    let (w, h) = img.dimensions();
    let out = match kind {
        "crop" => {
            let f = rng.random_range(0.75..0.95f32);
            let (cw, ch) = (((w as f32) * f).round().max(1.0) as u32, ((h as f32) * f).round().max(1.0) as u32);
            let (x, y) = (rng.random_range(0..=w - cw), rng.random_range(0..=h - ch));
            imageops::resize(&imageops::crop_imm(img, x, y, cw, ch).to_image(), w, h, imageops::FilterType::Triangle)
        }
        "shift" => {
            let (mut dx, mut dy) = (0i32, 0i32);
            while dx == 0 && dy == 0 {
                dx = rng.random_range(-4..=4);
                dy = rng.random_range(-4..=4);
            }
            let reflect = |v: i32, n: u32| -> u32 {
                let n = n as i32;
                let v = if v < 0 { -v } else { v };
                (if v >= n { 2 * n - 2 - v } else { v }).clamp(0, n - 1) as u32
            };
            RgbImage::from_fn(w, h, |x, y| *img.get_pixel(reflect(x as i32 - dx, w), reflect(y as i32 - dy, h)))
        }
        "flip" => imageops::flip_horizontal(img),
        "jpeg" => img.clone(),
        "brightness" => {
            let f = rng.random_range(0.7..1.3f32);
            RgbImage::from_fn(w, h, |x, y| image::Rgb(img.get_pixel(x, y).0.map(|c| clamp(c as f32 * f))))
        }
        "colour" => {
            let (contrast, sat) = (rng.random_range(0.8..1.2f32), rng.random_range(0.6..1.4f32));
            let mean = img.pixels().flat_map(|p| p.0).map(|c| c as f32).sum::<f32>() / (w * h * 3) as f32;
            RgbImage::from_fn(w, h, |x, y| {
                let p = img.get_pixel(x, y).0.map(|c| mean + (c as f32 - mean) * contrast);
                let g = duplicates::luma(p);
                image::Rgb(p.map(|c| clamp(g + (c - g) * sat)))
            })
        }
        other => return Err(Error::Usage(format!("unknown transformation {other}"))),
    };
    let quality = rng.random_range(50..=90u8);
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(&out)
        .map_err(|e| Error::Usage(format!("JPEG encoding: {e}")))?;
    let back = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
        .map_err(|e| Error::Usage(format!("JPEG decoding: {e}")))?;
    Ok(back.to_rgb8())
}

/// Recall on one transformation.
#[derive(Clone, Debug)]
pub struct KindRecall {
    pub kind: &'static str,
    pub copies: usize,
    /// Copies whose original the detector found among all images.
    pub found: usize,
    /// Copies whose pair with their original passes both thresholds (the
    /// alignment alone, whatever the candidates).
    pub aligned: usize,
    /// Median similarity of copy and original (-1 where the 16x16 gate stopped it).
    pub median_similarity: f32,
    /// Median detail similarity (-1 where not measured).
    pub median_detail: f32,
}

/// What the calibration measured.
#[derive(Clone, Debug)]
pub struct Calibration {
    pub kinds: Vec<KindRecall>,
    /// Random same-class pairs compared, and how many passed both thresholds.
    pub random_pairs: usize,
    pub false_matches: usize,
    /// The detector on the dataset itself: seconds, and pairs by split and kind.
    pub detect_s: f64,
    /// The cuts of the calibration search and of the dataset's own search.
    pub cuts: duplicates::Cuts,
    pub real_cuts: duplicates::Cuts,
    pub pairs: Vec<duplicates::Pair>,
    /// Every candidate pair the dataset's own search judged (with `keep`).
    pub judged: Vec<duplicates::Candidate>,
}

/// Runs the calibration on `ds` with `copies` transformed test images and
/// `random_pairs` same-class pairs (seeded).
pub fn calibrate(
    ds: &Dataset,
    copies: usize,
    random_pairs: usize,
    seed: u64,
    cfg: &DuplicateConfig,
    keep: bool,
) -> Result<Calibration> {
    let (h, w) = (ds.height, ds.width);
    let len = ds.image_len();
    let n_test = ds.test.len();
    if n_test < 2 {
        return Err(Error::Usage("the calibration needs a test split with at least 2 images".into()));
    }
    // The detector on the dataset itself (first: the copies are then judged
    // at its cuts, at least).
    let t = Instant::now();
    let (real, judged) = duplicates::find_judging(
        &Inputs {
            train: &ds.train.pixels,
            test: &ds.test.pixels,
            height: h,
            width: w,
            neighbors: None,
            embeddings: None,
            train_pairs: true,
            labels: &ds.train.labels,
            test_labels: &ds.test.labels,
        },
        cfg,
        keep,
    );
    let detect_s = t.elapsed().as_secs_f64();
    let copy_cfg = DuplicateConfig { min_detail: cfg.min_detail.max(real.cuts.detail), ..cfg.clone() };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let picks = rand::seq::index::sample(&mut rng, n_test, copies.min(n_test)).into_vec();
    let mut copy_px = Vec::with_capacity(picks.len() * len);
    let mut kinds = Vec::with_capacity(picks.len());
    for (c, &i) in picks.iter().enumerate() {
        let kind = TRANSFORMS[c % TRANSFORMS.len()];
        let img = RgbImage::from_raw(w as u32, h as u32, ds.test.pixels[i * len..(i + 1) * len].to_vec())
            .expect("a whole image");
        copy_px.extend(transform(&img, kind, &mut rng)?.into_raw());
        kinds.push(kind);
    }
    // Database: every training image, then every test image (the originals).
    let db: Vec<u8> = [ds.train.pixels.as_slice(), ds.test.pixels.as_slice()].concat();
    let n_train = ds.train.len();
    let labels: Vec<u32> = ds.train.labels.iter().chain(&ds.test.labels).copied().collect();
    // A copy carries the label of its original.
    let copy_labels: Vec<u32> = picks.iter().map(|&i| ds.test.labels[i]).collect();
    let inputs = Inputs {
        train: &db,
        test: &copy_px,
        height: h,
        width: w,
        neighbors: None,
        embeddings: None,
        train_pairs: false,
        labels: &labels,
        test_labels: &copy_labels,
    };
    let found = duplicates::find(&inputs, &copy_cfg);
    let cuts = found.cuts;
    let found = found.pairs;
    let img = |px: &[u8], i: usize| px[i * len..(i + 1) * len].to_vec();
    let mut out = Vec::new();
    for kind in TRANSFORMS {
        let rows: Vec<usize> = (0..picks.len()).filter(|&c| kinds[c] == kind).collect();
        let (mut sims, mut details) = (Vec::new(), Vec::new());
        let (mut hit, mut aligned) = (0, 0);
        for &c in &rows {
            let orig = n_train + picks[c];
            if found.iter().any(|p| p.b_test && p.b == c && p.a == orig) {
                hit += 1;
            }
            let j = judge(&img(&db, orig), &img(&copy_px, c), h, w, &copy_cfg);
            if j.passes(&cuts) && cuts.aligned {
                aligned += 1;
            }
            sims.push(j.similarity);
            details.push(j.detail.unwrap_or(-1.0));
        }
        sims.sort_by(f32::total_cmp);
        details.sort_by(f32::total_cmp);
        out.push(KindRecall {
            kind,
            copies: rows.len(),
            found: hit,
            aligned,
            median_similarity: sims.get(sims.len() / 2).copied().unwrap_or(f32::NAN),
            median_detail: details.get(details.len() / 2).copied().unwrap_or(f32::NAN),
        });
    }
    // Random pairs of distinct same-class test images.
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); ds.classes.len()];
    for (i, &l) in ds.test.labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let usable: Vec<&Vec<usize>> = by_class.iter().filter(|v| v.len() >= 2).collect();
    let mut false_matches = 0;
    let mut compared = 0;
    for _ in 0..random_pairs {
        if usable.is_empty() {
            break;
        }
        let v = usable[rng.random_range(0..usable.len())];
        let i = v[rng.random_range(0..v.len())];
        let j = v[rng.random_range(0..v.len())];
        if i == j {
            continue;
        }
        compared += 1;
        if cuts.aligned && judge(&img(&ds.test.pixels, i), &img(&ds.test.pixels, j), h, w, &copy_cfg).passes(&cuts) {
            false_matches += 1;
        }
    }
    Ok(Calibration {
        kinds: out,
        random_pairs: compared,
        false_matches,
        detect_s,
        cuts,
        real_cuts: real.cuts,
        pairs: real.pairs,
        judged,
    })
}

/// A contact sheet of up to `n` train/test pairs (seeded sample), side by
/// side at 3x, one pair per row of a grid of 4, written to `path`.
pub fn sheet(ds: &Dataset, pairs: &[duplicates::Pair], n: usize, seed: u64, path: &Path) -> Result<usize> {
    let leaks: Vec<&duplicates::Pair> = pairs.iter().filter(|p| p.b_test).collect();
    if leaks.is_empty() {
        return Ok(0);
    }
    let chosen = sample_leaks(pairs, n, seed);
    let (h, w) = (ds.height as u32, ds.width as u32);
    let scale = 3;
    let (tw, th) = (w * scale, h * scale);
    let cols = 4u32;
    let rows = (chosen.len() as u32).div_ceil(cols);
    let gap = 6;
    let mut out = RgbImage::from_pixel(cols * (2 * tw + 3 * gap), rows * (th + gap) + gap, image::Rgb([255, 255, 255]));
    let len = ds.image_len();
    for (k, &c) in chosen.iter().enumerate() {
        let p = &pairs[c];
        let (col, row) = (k as u32 % cols, k as u32 / cols);
        for (slot, px) in [&ds.train.pixels[p.a * len..(p.a + 1) * len], &ds.test.pixels[p.b * len..(p.b + 1) * len]]
            .iter()
            .enumerate()
        {
            let img = RgbImage::from_raw(w, h, px.to_vec()).expect("a whole image");
            let big = imageops::resize(&img, tw, th, imageops::FilterType::Nearest);
            let x = col * (2 * tw + 3 * gap) + gap + slot as u32 * (tw + gap);
            imageops::replace(&mut out, &big, x as i64, (row * (th + gap) + gap) as i64);
        }
    }
    out.save(path).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    Ok(chosen.len())
}

/// A seeded sample of `n` train/test pairs: indices into `pairs`, ascending.
pub fn sample_leaks(pairs: &[duplicates::Pair], n: usize, seed: u64) -> Vec<usize> {
    let leaks: Vec<usize> = (0..pairs.len()).filter(|&i| pairs[i].b_test).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut chosen: Vec<usize> =
        rand::seq::index::sample(&mut rng, leaks.len(), n.min(leaks.len())).into_iter().map(|k| leaks[k]).collect();
    chosen.sort_unstable();
    chosen
}

/// A person's verdict on a pair of images, looked at side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The same photograph, or a transformed copy of it.
    Same,
    /// Two different photographs.
    Different,
    /// Could not tell at 32x32 (counted as not a copy).
    Unsure,
}

/// Verdicts keyed by (training id, other id), from a CSV with columns
/// `id_a,id_b,verdict` (same, different or unsure; more columns are ignored).
pub fn read_verdicts(path: &Path) -> Result<std::collections::HashMap<(String, String), Verdict>> {
    let mut r = csv::Reader::from_path(path).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    let bad = |m: String| Error::Usage(format!("{}: {m}", path.display()));
    let head = r.headers().map_err(|e| bad(e.to_string()))?.clone();
    let col = |name: &str| head.iter().position(|h| h == name).ok_or_else(|| bad(format!("no column {name}")));
    let (ia, ib, iv) = (col("id_a")?, col("id_b")?, col("verdict")?);
    let mut out = std::collections::HashMap::new();
    for (line, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let v = match rec.get(iv).unwrap_or("") {
            "same" => Verdict::Same,
            "different" => Verdict::Different,
            "unsure" => Verdict::Unsure,
            other => return Err(bad(format!("row {}: verdict {other:?} is not same, different or unsure", line + 2))),
        };
        out.insert((rec.get(ia).unwrap_or("").to_string(), rec.get(ib).unwrap_or("").to_string()), v);
    }
    Ok(out)
}

/// The ids of a pair of the dataset's own search.
fn ids(ds: &Dataset, a: usize, b: usize, b_test: bool) -> (String, String) {
    let b_id = if b_test { &ds.test.ids[b] } else { &ds.train.ids[b] };
    (ds.train.ids[a].clone(), b_id.clone())
}

/// Writes every candidate pair judged on the dataset itself as CSV: ids,
/// labels, the measures, whether it was reported, and its place in the
/// precision sample (`sample`, empty when not drawn).
fn write_judged(ds: &Dataset, c: &Calibration, sample: &[usize], path: &Path) -> Result<()> {
    use std::io::Write;
    let reported: std::collections::HashMap<(usize, usize, bool), usize> =
        c.pairs.iter().enumerate().map(|(i, p)| ((p.a, p.b, p.b_test), i)).collect();
    let mut out = String::from(
        "id_a,id_b,split_b,label_a,label_b,pixel_distance,coarse,similarity,detail,reported,kind,sample\n",
    );
    for k in &c.judged {
        let (a, b) = ids(ds, k.a, k.b, k.b_test);
        let lb = if k.b_test { ds.test.labels[k.b] } else { ds.train.labels[k.b] };
        let rep = reported.get(&(k.a, k.b, k.b_test));
        let place = rep.and_then(|i| sample.iter().position(|s| s == i)).map(|p| p.to_string()).unwrap_or_default();
        let opt = |v: Option<f32>| v.map(|x| format!("{x:.4}")).unwrap_or_default();
        out.push_str(&format!(
            "{a},{b},{},{},{},{:.3},{:.4},{:.4},{},{},{},{place}\n",
            if k.b_test { "test" } else { "train" },
            ds.classes[ds.train.labels[k.a] as usize],
            ds.classes[lb as usize],
            k.pixel_distance,
            k.judged.coarse,
            k.judged.similarity,
            opt(k.judged.detail),
            rep.is_some(),
            rep.map(|&i| c.pairs[i].kind.as_str()).unwrap_or(""),
        ));
    }
    std::fs::File::create(path).and_then(|mut f| f.write_all(out.as_bytes())).map_err(|e| Error::io(path, e))
}

/// Pairs in the precision sample.
pub const PRECISION_SAMPLE: usize = 48;

/// Prints the calibration table, the dataset's own pairs, and writes the
/// sheet; with `verdicts`, the precision of a seeded sample of 48 reported
/// train/test pairs against a person's verdicts; with `judged`, every
/// candidate pair judged as CSV.
pub fn report(
    ds: &Dataset,
    copies: usize,
    random_pairs: usize,
    seed: u64,
    sheet_path: Option<&Path>,
    verdicts: Option<&Path>,
    judged: Option<&Path>,
) -> Result<()> {
    let cfg = DuplicateConfig::default();
    let verdicts = verdicts.map(read_verdicts).transpose()?;
    let c = calibrate(ds, copies, random_pairs, seed, &cfg, judged.is_some())?;
    println!(
        "{}: {} training and {} test images; thresholds: 16x16 similarity >= {}, 32x32 similarity >= {}, detail >= {} (raised to what candidate pairs with different labels reach), {} candidates per index variant",
        ds.source,
        ds.train.len(),
        ds.test.len(),
        cfg.coarse_gate,
        cfg.min_similarity,
        cfg.min_detail,
        cfg.candidates
    );
    println!("| copy of a test image | copies | found among all images | alignment alone | median similarity | median detail |");
    println!("|---|---|---|---|---|---|");
    let (mut all, mut hit) = (0, 0);
    for k in &c.kinds {
        all += k.copies;
        hit += k.found;
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
            k.kind,
            k.copies,
            k.found as f64 / k.copies.max(1) as f64,
            k.aligned as f64 / k.copies.max(1) as f64,
            k.median_similarity,
            k.median_detail
        );
    }
    println!(
        "all: recall {:.3} ({hit} of {all}); cuts: similarity {:.3}, detail {:.3} (null sample of {} same-class pairs){}",
        hit as f64 / all.max(1) as f64,
        c.cuts.similarity,
        c.cuts.detail,
        c.cuts.null_pairs,
        if c.cuts.aligned { "" } else { "; images of a class look alike: pixel-near copies only" }
    );
    println!(
        "random same-class pairs: {} of {} pass (false-match rate {:.5})",
        c.false_matches,
        c.random_pairs,
        c.false_matches as f64 / c.random_pairs.max(1) as f64
    );
    let count = |test: bool, kind: Option<Kind>| {
        c.pairs.iter().filter(|p| p.b_test == test && kind.is_none_or(|k| p.kind == k)).count()
    };
    for (test, what) in [(true, "train/test (leakage)"), (false, "within train")] {
        let kinds: Vec<String> = [Kind::Exact, Kind::Flipped, Kind::Cropped, Kind::Shifted, Kind::Near]
            .iter()
            .map(|&k| format!("{} {}", count(test, Some(k)), k.as_str()))
            .collect();
        println!("pairs {what}: {} ({})", count(test, None), kinds.join(", "));
    }
    let test_rows: std::collections::BTreeSet<usize> = c.pairs.iter().filter(|p| p.b_test).map(|p| p.b).collect();
    println!(
        "test images with a training copy: {} of {} ({:.2}%); detector time {:.1} s; cuts similarity {:.3}, detail {:.3} ({} of {} candidate pairs with different labels)",
        test_rows.len(),
        ds.test.len(),
        100.0 * test_rows.len() as f64 / ds.test.len().max(1) as f64,
        c.detect_s,
        c.real_cuts.similarity,
        c.real_cuts.detail,
        if c.real_cuts.cross_pairs > 0 { format!("the {} quantile", cfg.cross_quantile) } else { "the minimum, too few".into() },
        c.real_cuts.cross_pairs
    );
    if let Some(p) = sheet_path {
        let n = sheet(ds, &c.pairs, 12, seed, p)?;
        println!("{n} train/test pairs (seeded sample) side by side, train left: {}", p.display());
    }
    let sample = sample_leaks(&c.pairs, PRECISION_SAMPLE, seed);
    if let Some(path) = judged {
        write_judged(ds, &c, &sample, path)?;
        println!("{} candidate pairs judged: {}", c.judged.len(), path.display());
    }
    if let Some(v) = verdicts {
        let verdict = |p: &duplicates::Pair| v.get(&ids(ds, p.a, p.b, p.b_test)).copied();
        let mut counts = [0usize; 3];
        let mut unseen = Vec::new();
        for &i in &sample {
            match verdict(&c.pairs[i]) {
                Some(Verdict::Same) => counts[0] += 1,
                Some(Verdict::Different) => counts[1] += 1,
                Some(Verdict::Unsure) => counts[2] += 1,
                None => unseen.push(ids(ds, c.pairs[i].a, c.pairs[i].b, true)),
            }
        }
        let looked = counts.iter().sum::<usize>();
        println!(
            "precision sample (seed {seed}): {} reported train/test pairs, {looked} with a verdict: {} the same photograph, {} different, {} unsure: precision {:.3}",
            sample.len(),
            counts[0],
            counts[1],
            counts[2],
            counts[0] as f64 / looked.max(1) as f64
        );
        for (a, b) in &unseen {
            println!("  no verdict yet: {a},{b}");
        }
        // Every pair with a verdict: which the detector reports.
        let reported: std::collections::HashSet<(String, String)> =
            c.pairs.iter().map(|p| ids(ds, p.a, p.b, p.b_test)).collect();
        let (mut same, mut same_hit, mut other, mut other_hit) = (0, 0, 0, 0);
        for (k, val) in v.iter() {
            let hit = reported.contains(k) as usize;
            if *val == Verdict::Same {
                same += 1;
                same_hit += hit;
            } else {
                other += 1;
                other_hit += hit;
            }
        }
        println!(
            "all pairs with a verdict: {same_hit} of {same} the same photograph reported, {other_hit} of {other} different or unsure reported"
        );
    }
    Ok(())
}

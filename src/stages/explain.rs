//! The explain stage: attribution maps of the images a person asks "why?"
//! about, and the numbers the root causes rest on. It chooses the images
//! (the misclassified test images of the most confused pairs, as many
//! correctly classified images of the same given class for contrast, and
//! the most suspicious flagged training images; seeded), explains each by
//! every method ([`crate::saliency`]), checks the methods (cascading
//! randomisation), fills the centre or the ring of every test image
//! (occlusion), attacks each explained pair's images towards the other
//! class, and writes the pictures under `explain/`.
//!
//! It owns `saliency.parquet`, `sanity.parquet`, `pair_radii.parquet`, the
//! ring colour and occlusion columns of `samples.parquet`, the occlusion
//! accuracies of `classes.parquet` and `run.json`'s `explain` section.

use crate::run::columns::explain::{CLASS_OCCLUSION, PAIR_RADII, SALIENCY, SAMPLE_EXPLAIN, SANITY};
use arrow::array::RecordBatch;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::Samples;
use crate::attack::{AttackConfig, Method, Norm};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::ResNet;
use crate::quality::Scores;
use crate::run::schema;
use crate::run::table::{Columns, TableBuilder};
use crate::run::RunWriter;
use crate::saliency::{self, measure, panels, sanity, ExplainConfig, Explained, SanityStep, Subject};
use crate::stats::{wilson, Z95};

/// The run folder's folder of panels and contact sheets.
pub const EXPLAIN_DIR: &str = "explain";

/// `run.json`'s `explain` section.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExplainSummary {
    /// The pairs explained, `A -> B`, both directions of each.
    pub pairs: Vec<String>,
    /// Images explained by role.
    pub images: BTreeMap<String, usize>,
    /// Rows of `saliency.parquet`.
    pub rows: usize,
    /// Images of the randomisation check.
    pub sanity_images: usize,
    /// The ring's width in pixels.
    pub ring_width: usize,
    /// Test images of the occlusion check.
    pub occluded: usize,
}

impl crate::run::Section for ExplainSummary {
    const KEY: &'static str = "explain";
}

/// Why an image is explained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Confused,
    Contrast,
    Flagged,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Confused => "confused",
            Role::Contrast => "contrast",
            Role::Flagged => "flagged",
        }
    }
}

/// One (image, target) to explain.
#[derive(Clone, Debug)]
struct Job {
    /// Sample row (train rows first).
    row: usize,
    role: Role,
    /// The ordered pair (A, B) of a confused or contrast image.
    pair: Option<(u32, u32)>,
    target: u32,
}

/// What the stage made: its tables, and the per-image and per-class
/// numbers that become columns of `samples.parquet` and `classes.parquet`.
pub struct ExplainStage {
    saliency: RecordBatch,
    sanity: RecordBatch,
    pair_radii: RecordBatch,
    /// Ring colour of every sample row, [0, 1] RGB.
    colours: Vec<[f32; 3]>,
    /// Every test image's prediction with the centre filled (background only).
    background_only: Vec<u32>,
    /// The same with the ring filled (object only).
    object_only: Vec<u32>,
    test_labels: Vec<u32>,
    classes: usize,
    /// `run.json`'s section.
    pub summary: ExplainSummary,
}

/// The unordered pairs to explain: at least `min_confusions` test
/// confusions both ways together, most first (ties: class order).
fn chosen_pairs(confusion: &[Vec<usize>], cfg: &ExplainConfig) -> Vec<(u32, u32)> {
    let k = confusion.len();
    let mut pairs: Vec<(usize, u32, u32)> = Vec::new();
    for (a, row) in confusion.iter().enumerate() {
        for b in a + 1..k {
            let n = row[b] + confusion[b][a];
            if n >= cfg.min_confusions.max(1) {
                pairs.push((n, a as u32, b as u32));
            }
        }
    }
    pairs.sort_by(|x, y| y.0.cmp(&x.0).then((x.1, x.2).cmp(&(y.1, y.2))));
    pairs.into_iter().take(cfg.pairs).map(|(_, a, b)| (a, b)).collect()
}

/// A seeded sample of `n` of `rows` (all of them when fewer), in row order.
fn sample(rows: &[usize], n: usize, seed: u64) -> Vec<usize> {
    let mut r = rows.to_vec();
    r.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    r.truncate(n);
    r.sort_unstable();
    r
}

/// Runs the explain stage on `model` (the model whose test predictions are
/// `pred[n_train..]`); `attack` gives the budgets and steps of the pair attacks.
#[allow(clippy::too_many_arguments)]
pub fn run(
    model: &ResNet,
    ds: &Dataset,
    s: &Samples,
    pred: &[u32],
    confusion: &[Vec<usize>],
    sc: &Scores,
    attack: &AttackConfig,
    cfg: &ExplainConfig,
    writer: &RunWriter,
) -> Result<ExplainStage> {
    let (h, w) = (ds.height, ds.width);
    let n_train = s.n_train();
    let pixels_of = |row: usize| {
        let (split, r) = s.locate(row);
        ds.image(split, r)
    };
    let labels = s.labels();
    // Test rows by (given, predicted), in row order.
    let mut outcomes: BTreeMap<(u32, u32), Vec<usize>> = BTreeMap::new();
    for r in n_train..s.len() {
        outcomes.entry((labels[r], pred[r])).or_default().push(r);
    }
    let rows_of = |given: u32, predicted: u32| outcomes.get(&(given, predicted)).map_or(&[][..], Vec::as_slice);

    // Which images, and which targets.
    let mut jobs: Vec<Job> = Vec::new();
    let mut directions = Vec::new();
    for (a, b) in chosen_pairs(confusion, cfg) {
        for (x, y) in [(a, b), (b, a)] {
            directions.push((x, y));
            let seed = crate::seed::derive(cfg.seed, &[0xc0f05ed, x as u64, y as u64]);
            let confused = sample(rows_of(x, y), cfg.per_pair, seed);
            let contrast = sample(rows_of(x, x), confused.len(), seed ^ 1);
            for &row in &confused {
                jobs.push(Job { row, role: Role::Confused, pair: Some((x, y)), target: y });
                jobs.push(Job { row, role: Role::Confused, pair: Some((x, y)), target: x });
            }
            for &row in &contrast {
                jobs.push(Job { row, role: Role::Contrast, pair: Some((x, y)), target: x });
            }
        }
    }
    let mut flagged: Vec<usize> = (0..n_train)
        .filter(|&i| {
            let f = &sc.images[i].flags;
            f.likely_mislabeled || f.ambiguous || f.outlier
        })
        .collect();
    let score = |i: usize| sc.images[i].issue_score.unwrap_or(0.0);
    flagged.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
    for &row in flagged.iter().take(cfg.flagged) {
        jobs.push(Job { row, role: Role::Flagged, pair: None, target: labels[row] });
        let other = sc.images[row].suggested_label.filter(|&c| c != labels[row]).unwrap_or(pred[row]);
        if other != labels[row] {
            jobs.push(Job { row, role: Role::Flagged, pair: None, target: other });
        }
    }

    let subject = |row: usize, target: u32| Subject {
        x: crate::model::images_to_chw(pixels_of(row), 1, h, w),
        pixels: pixels_of(row).to_vec(),
        target,
    };
    let subjects: Vec<Subject> = jobs.iter().map(|j| subject(j.row, j.target)).collect();
    let explained = saliency::explain(model, &subjects, h, w, cfg)?;

    // The randomisation check: correctly classified test images, their label as the target.
    let correct: Vec<usize> = (0..ds.classes.len() as u32).flat_map(|c| rows_of(c, c).iter().copied()).collect();
    let sanity_rows = sample(&correct, cfg.sanity_images, crate::seed::derive(cfg.seed, &[0x5a417e, 1]));
    let sanity_subjects: Vec<Subject> = sanity_rows.iter().map(|&r| subject(r, labels[r])).collect();
    let steps = saliency::sanity(model, &sanity_subjects, h, w, cfg)?;

    // Occlusion of every test image; ring colours of every image.
    let (background_only, object_only) =
        sanity::occlusion_predictions(model, &ds.test.pixels, ds.test.len(), h, w, cfg.method.batch)?;
    let mask = measure::ring_mask(h, w);
    let colours: Vec<[f32; 3]> = (0..s.len()).map(|r| measure::ring_colour(pixels_of(r), &mask)).collect();

    // Pair attacks: correctly classified test images of A, towards B and untargeted.
    let mut radius_rows: Vec<RadiusRow> = Vec::new();
    let budgets = match attack.budgets(Norm::L2) {
        b if b.is_empty() => AttackConfig::default().budgets(Norm::L2),
        b => b,
    };
    let tol = attack.radius_tolerance * budgets.iter().copied().find(|&b| b > 0.0).unwrap_or(1.0);
    for &(a, b) in &directions {
        let seed = crate::seed::derive(cfg.seed, &[0x7a26e7, a as u64, b as u64]);
        let rows = sample(rows_of(a, a), cfg.targeted_per_pair, seed);
        if rows.is_empty() {
            continue;
        }
        let px: Vec<u8> = rows.iter().flat_map(|&r| pixels_of(r).iter().copied()).collect();
        let r = saliency::pair_radii(
            model,
            &crate::model::images_to_chw(&px, rows.len(), h, w),
            (3, h, w),
            &vec![a; rows.len()],
            &vec![b; rows.len()],
            &budgets,
            tol,
            &attack.steps_of(Method::Pgd),
            seed,
        )?;
        radius_rows.extend(rows.iter().enumerate().map(|(i, &row)| (row, a, b, r.targeted[i], r.untargeted[i])));
    }

    let files = write_pictures(&jobs, &subjects, &explained, &ds.classes, h, w, writer)?;
    let saliency = saliency_table(&jobs, &explained, s, pred, &files, cfg);
    let mut images = BTreeMap::new();
    let distinct: std::collections::BTreeSet<_> = jobs.iter().map(|j| (j.row, j.role, j.pair)).collect();
    for (_, role, _) in distinct {
        *images.entry(role.as_str().to_string()).or_insert(0) += 1;
    }
    let summary = ExplainSummary {
        pairs: directions.iter().map(|&(a, b)| pair_name(&ds.classes, a, b)).collect(),
        images,
        rows: saliency.num_rows(),
        sanity_images: sanity_subjects.len(),
        ring_width: measure::ring_width(h, w),
        occluded: ds.test.len(),
    };
    Ok(ExplainStage {
        saliency,
        sanity: sanity_table(&steps),
        pair_radii: radii_table(&radius_rows, s, &ds.classes),
        colours,
        background_only,
        object_only,
        test_labels: ds.test.labels.clone(),
        classes: ds.classes.len(),
        summary,
    })
}

impl ExplainStage {
    /// Writes `saliency.parquet`, `sanity.parquet` and `pair_radii.parquet`.
    pub fn write_tables(&self, writer: &mut RunWriter) -> Result<()> {
        writer.write(&schema::SALIENCY, &self.saliency)?;
        writer.write(&schema::SANITY, &self.sanity)?;
        writer.write(&schema::PAIR_RADII, &self.pair_radii)
    }

    /// `samples.parquet`'s ring colour and occlusion columns (null for training images).
    pub fn sample_columns(&self) -> Columns {
        let n_train = self.colours.len() - self.background_only.len();
        let test = |v: &[u32]| -> Vec<Option<i32>> {
            std::iter::repeat_n(None, n_train).chain(v.iter().map(|&p| Some(p as i32))).collect()
        };
        let c = &self.colours;
        TableBuilder::new(&SAMPLE_EXPLAIN)
            .f64("ring_red", c.iter().map(|c| c[0] as f64))
            .f64("ring_green", c.iter().map(|c| c[1] as f64))
            .f64("ring_blue", c.iter().map(|c| c[2] as f64))
            .opt_i32("pred_background_only", test(&self.background_only))
            .opt_i32("pred_object_only", test(&self.object_only))
            .finish()
    }

    /// `classes.parquet`'s occlusion accuracies with their Wilson intervals.
    pub fn class_columns(&self) -> Columns {
        let acc = |preds: &[u32]| -> Vec<[Option<f64>; 3]> {
            (0..self.classes as u32)
                .map(|c| {
                    let n = self.test_labels.iter().filter(|&&l| l == c).count();
                    let hit = self.test_labels.iter().zip(preds).filter(|(&l, &p)| l == c && p == c).count();
                    let (lo, hi) = wilson(hit, n, Z95);
                    if n > 0 {
                        [Some(hit as f64 / n as f64), Some(lo), Some(hi)]
                    } else {
                        [None; 3]
                    }
                })
                .collect()
        };
        let (b, o) = (acc(&self.background_only), acc(&self.object_only));
        let at = |v: &[[Option<f64>; 3]], j: usize| v.iter().map(|r| r[j]).collect::<Vec<_>>();
        TableBuilder::new(&CLASS_OCCLUSION)
            .opt_f64("background_only_accuracy", at(&b, 0))
            .opt_f64("background_only_accuracy_low", at(&b, 1))
            .opt_f64("background_only_accuracy_high", at(&b, 2))
            .opt_f64("object_only_accuracy", at(&o, 0))
            .opt_f64("object_only_accuracy_low", at(&o, 1))
            .opt_f64("object_only_accuracy_high", at(&o, 2))
            .finish()
    }
}

fn pair_name(classes: &[String], a: u32, b: u32) -> String {
    format!("{} -> {}", classes[a as usize], classes[b as usize])
}

/// Panel file of each job, and contact sheet of each pair direction.
struct Files {
    panel: Vec<String>,
    sheet: BTreeMap<(u32, u32), String>,
}

fn write_pictures(
    jobs: &[Job],
    subjects: &[Subject],
    explained: &[Explained],
    classes: &[String],
    h: usize,
    w: usize,
    writer: &RunWriter,
) -> Result<Files> {
    let dir = writer.path(EXPLAIN_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut files = Files { panel: Vec::new(), sheet: BTreeMap::new() };
    let mut by_pair: BTreeMap<(u32, u32), Vec<(Role, image::RgbImage)>> = BTreeMap::new();
    for ((job, sub), ex) in jobs.iter().zip(subjects).zip(explained) {
        let maps: Vec<&[f32]> = ex.by_method.iter().map(|e| e.map.as_slice()).collect();
        let img = panels::panel(&sub.pixels, h, w, &maps);
        let file = format!("{EXPLAIN_DIR}/{:06}-{}.png", job.row, job.target);
        crate::atomic::write(writer.path(&file), &panels::png(&img))?;
        files.panel.push(file);
        // A pair's sheet: each confused image explained towards its prediction, each contrast image.
        if let Some(p) = job.pair {
            if job.role == Role::Contrast || job.target == p.1 {
                by_pair.entry(p).or_default().push((job.role, img));
            }
        }
    }
    for (p, mut imgs) in by_pair {
        imgs.sort_by_key(|(role, _)| *role);
        let panels: Vec<image::RgbImage> = imgs.into_iter().map(|(_, i)| i).collect();
        if let Some(sheet) = panels::sheet(&panels) {
            let safe = |c: u32| -> String {
                classes[c as usize].chars().map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' }).collect()
            };
            let file = format!("{EXPLAIN_DIR}/pair-{}-{}-{}-{}.png", p.0, safe(p.0), p.1, safe(p.1));
            crate::atomic::write(writer.path(&file), &panels::png(&sheet))?;
            files.sheet.insert(p, file);
        }
    }
    Ok(files)
}

fn saliency_table(
    jobs: &[Job],
    explained: &[Explained],
    s: &Samples,
    pred: &[u32],
    files: &Files,
    cfg: &ExplainConfig,
) -> RecordBatch {
    // One row per (job, method).
    let rows: Vec<(usize, usize)> = (0..jobs.len()).flat_map(|j| (0..cfg.methods.len()).map(move |m| (j, m))).collect();
    let labels = s.labels();
    let name = |c: u32| s.classes[c as usize].as_str();
    let job = |r: &(usize, usize)| &jobs[r.0];
    let ex = |r: &(usize, usize)| &explained[r.0].by_method[r.1];
    let colour = |r: &(usize, usize), c: usize| explained[r.0].ring_colour[c] as f64;
    TableBuilder::new(&SALIENCY)
        .utf8("id", rows.iter().map(|r| s.id(job(r).row)))
        .utf8("split", rows.iter().map(|r| s.locate(job(r).row).0.as_str()))
        .i32("label", rows.iter().map(|r| labels[job(r).row] as i32))
        .utf8("label_name", rows.iter().map(|r| name(labels[job(r).row])))
        .i32("pred", rows.iter().map(|r| pred[job(r).row] as i32))
        .utf8("pred_name", rows.iter().map(|r| name(pred[job(r).row])))
        .utf8("role", rows.iter().map(|r| job(r).role.as_str()))
        .opt_utf8("pair", rows.iter().map(|r| job(r).pair.map(|(a, b)| format!("{} -> {}", name(a), name(b)))))
        .utf8("method", rows.iter().map(|r| ex(r).method.as_str()))
        .i32("target", rows.iter().map(|r| job(r).target as i32))
        .utf8("target_name", rows.iter().map(|r| name(job(r).target)))
        .utf8(
            "target_is",
            rows.iter().map(|r| {
                let j = job(r);
                match (j.target == pred[j.row], j.target == labels[j.row]) {
                    (true, true) => "both",
                    (true, false) => "pred",
                    _ => "label",
                }
            }),
        )
        .f64("target_prob", rows.iter().map(|r| explained[r.0].target_prob as f64))
        .opt_f64("ring_share", rows.iter().map(|r| ex(r).placement.ring_share))
        .opt_f64("ring_ratio", rows.iter().map(|r| ex(r).placement.ring_ratio))
        .opt_f64("concentration", rows.iter().map(|r| ex(r).placement.concentration))
        .f64("ring_red", rows.iter().map(|r| colour(r, 0)))
        .f64("ring_green", rows.iter().map(|r| colour(r, 1)))
        .f64("ring_blue", rows.iter().map(|r| colour(r, 2)))
        .f64("deletion_auc", rows.iter().map(|r| ex(r).curves.deletion_auc))
        .f64("insertion_auc", rows.iter().map(|r| ex(r).curves.insertion_auc))
        .f64("deletion_auc_random", rows.iter().map(|r| explained[r.0].random.deletion_auc))
        .f64("insertion_auc_random", rows.iter().map(|r| explained[r.0].random.insertion_auc))
        .opt_f64("completeness_gap", rows.iter().map(|r| ex(r).completeness_gap.map(|g| g as f64)))
        .utf8("file", rows.iter().map(|r| files.panel[r.0].as_str()))
        .opt_utf8("sheet", rows.iter().map(|r| job(r).pair.and_then(|p| files.sheet.get(&p)).map(String::as_str)))
        .finish_table(&schema::SALIENCY)
}

fn sanity_table(steps: &[SanityStep]) -> RecordBatch {
    TableBuilder::new(&SANITY)
        .utf8("method", steps.iter().map(|s| s.method.as_str()))
        .i32("step", steps.iter().map(|s| s.step as i32))
        .utf8("randomized_down_to", steps.iter().map(|s| s.randomized_down_to.as_str()))
        .f64("spearman", steps.iter().map(|s| s.spearman))
        .f64("spearman_sd", steps.iter().map(|s| s.spearman_sd))
        .f64("ssim", steps.iter().map(|s| s.ssim))
        .i64("images", steps.iter().map(|s| s.images as i64))
        .bool("trustworthy", steps.iter().map(|s| s.trustworthy))
        .finish_table(&schema::SANITY)
}

type RadiusRow = (usize, u32, u32, Option<f32>, Option<f32>);

fn radii_table(rows: &[RadiusRow], s: &Samples, classes: &[String]) -> RecordBatch {
    let name = |c: u32| classes[c as usize].as_str();
    TableBuilder::new(&PAIR_RADII)
        .utf8("id", rows.iter().map(|r| s.id(r.0)))
        .i32("given", rows.iter().map(|r| r.1 as i32))
        .utf8("given_name", rows.iter().map(|r| name(r.1)))
        .i32("target", rows.iter().map(|r| r.2 as i32))
        .utf8("target_name", rows.iter().map(|r| name(r.2)))
        .utf8("pair", rows.iter().map(|r| pair_name(classes, r.1, r.2)))
        .opt_f64("radius_targeted_l2", rows.iter().map(|r| r.3.map(|v| v as f64)))
        .opt_f64("radius_untargeted_l2", rows.iter().map(|r| r.4.map(|v| v as f64)))
        .finish_table(&schema::PAIR_RADII)
}

/// The explain stage: `config` None when the run skips it (`--no-explain`);
/// `attack` gives the pair attacks' budgets and steps (the defaults when
/// the run skips the attacks).
pub struct Explain<'c> {
    pub config: Option<&'c ExplainConfig>,
    pub attack: Option<&'c AttackConfig>,
}

impl super::Stage for Explain<'_> {
    fn name(&self) -> &'static str {
        "explain"
    }

    fn line(&self, _run: &super::RunState) -> Option<&'static str> {
        self.config.map(|_| "saliency maps and root causes")
    }

    fn run(&self, run: &super::RunState, writer: &RunWriter) -> Result<Option<Box<dyn super::Made>>> {
        let Some(config) = self.config else { return Ok(None) };
        let Some(ds) = run.dataset else { return Ok(None) };
        let m = run.get::<super::model::ModelStage>().expect("the model stage runs before the explain stage");
        let eval = run.get::<super::evaluate::Evaluation>().expect("the evaluate stage runs before the explain stage");
        let sc = run.get::<super::scores::Scored>().expect("the scores stage runs before the explain stage");
        let default = AttackConfig::default();
        let stage = self::run(
            &m.model,
            ds,
            &run.samples,
            &run.outputs.pred,
            &eval.confusion,
            &sc.scores,
            self.attack.unwrap_or(&default),
            config,
            writer,
        )?;
        Ok(Some(Box::new(stage)))
    }
}

impl super::Made for ExplainStage {
    fn sample_columns(&self, _run: &super::RunState) -> Vec<Columns> {
        vec![ExplainStage::sample_columns(self)]
    }

    fn class_columns(&self, _run: &super::RunState) -> Vec<Columns> {
        vec![ExplainStage::class_columns(self)]
    }

    fn write(&self, _run: &super::RunState, writer: &mut RunWriter) -> Result<()> {
        self.write_tables(writer)
    }

    fn section(&self, manifest: &mut crate::run::RunManifest) {
        manifest.set(&self.summary);
    }
}

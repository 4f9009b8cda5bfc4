//! `correlations.parquet`: how the run's measurements go together.
//! Across classes, Spearman's and Pearson's correlations of the miss rate
//! with attack success (each attack at each budget), the median robustness
//! radius, the flagged rate of each kind and the estimated noise rate, and
//! of each attack's headline success with the flag and noise rates. Across
//! images, the AUROC with which each label-quality score and the robustness
//! radius predict a miss, and, among attacked images, each attack's success.
//! Every figure comes with a seeded bootstrap 95% interval and a seeded
//! permutation p-value: with 10 classes a correlation is fragile, and the
//! interval says how much.

use crate::run::columns::findings::CORRELATIONS;
use arrow::array::RecordBatch;
use polars::prelude::{col, lit};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::HashMap;

use super::{collect, frame};
use crate::error::Result;
use crate::run::columns::attacks::budget_label;
use crate::run::read::Run;
use crate::run::schema;
use crate::run::table::TableBuilder;
use crate::stats::{auroc, pearson, percentile_interval, spearman};

/// Resampling sizes: classes are few and cheap to resample, images many.
#[derive(Clone, Copy, Debug)]
pub struct Resampling {
    /// Bootstrap resamples for class-level correlations.
    pub class_bootstrap: usize,
    /// Permutations for class-level correlations.
    pub class_permutations: usize,
    /// Bootstrap resamples for image-level AUROCs.
    pub image_bootstrap: usize,
    /// Permutations for image-level AUROCs.
    pub image_permutations: usize,
}

impl Default for Resampling {
    fn default() -> Self {
        Resampling { class_bootstrap: 2000, class_permutations: 2000, image_bootstrap: 200, image_permutations: 1000 }
    }
}

/// One figure with its interval and p-value.
#[derive(Clone, Debug, PartialEq)]
pub struct Tested {
    pub n: usize,
    pub estimate: f64,
    pub ci: Option<(f64, f64)>,
    pub p_value: f64,
    pub resamples: usize,
    pub permutations: usize,
}

/// A correlation (`stat`: Spearman's or Pearson's) of `x` and `y` with a
/// percentile bootstrap 95% interval over `bootstrap` resamples of the
/// pairs and a two-sided permutation p-value over `permutations`
/// shuffles of `y`; None when the correlation is undefined (fewer than 3
/// pairs, or a constant side).
pub fn correlation_test(
    x: &[f64],
    y: &[f64],
    stat: fn(&[f64], &[f64]) -> Option<f64>,
    bootstrap: usize,
    permutations: usize,
    seed: u64,
) -> Option<Tested> {
    let estimate = stat(x, y)?;
    let n = x.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut draws = Vec::with_capacity(bootstrap);
    let (mut bx, mut by) = (vec![0.0; n], vec![0.0; n]);
    for _ in 0..bootstrap {
        for i in 0..n {
            let j = rng.random_range(0..n);
            bx[i] = x[j];
            by[i] = y[j];
        }
        if let Some(r) = stat(&bx, &by) {
            draws.push(r);
        }
    }
    let ci = percentile_interval(&mut draws);
    let mut shuffled = y.to_vec();
    let mut extreme = 0;
    for _ in 0..permutations {
        shuffled.shuffle(&mut rng);
        if stat(x, &shuffled).is_some_and(|r| r.abs() >= estimate.abs() - 1e-12) {
            extreme += 1;
        }
    }
    let p_value = (1 + extreme) as f64 / (1 + permutations) as f64;
    Some(Tested { n, estimate, ci, p_value, resamples: draws.len(), permutations })
}

/// The AUROC of `score` for `truth` (high score = true), with a percentile
/// bootstrap 95% interval and a two-sided permutation p-value against 0.5;
/// None when either side is empty.
pub fn auroc_test(score: &[f64], truth: &[bool], bootstrap: usize, permutations: usize, seed: u64) -> Option<Tested> {
    let n = score.len();
    let pos = truth.iter().filter(|t| **t).count();
    if pos == 0 || pos == n {
        return None;
    }
    let estimate = auroc(score, truth);
    // Sorted once, in runs of equal scores: a resample's AUROC is then one
    // pass over the runs with each image weighted by how often it was drawn
    // (a sort per resample took seconds at 100,000 images).
    let (order, runs) = crate::stats::tie_runs(score);
    // Each resample and permutation chunk draws from its own stream of the
    // seed (seed::resample): the same figures on any number of threads.
    let mut draws: Vec<f64> = (0..bootstrap)
        .into_par_iter()
        .filter_map(|b| {
            let drawn = crate::stats::bootstrap_counts(&mut crate::seed::resample(seed, b as u64), n);
            // Positives above negatives, ties counting half.
            let (mut below, mut wins, mut p, mut q) = (0.0, 0.0, 0.0, 0.0);
            for r in &runs {
                let (mut rp, mut rq) = (0.0, 0.0);
                for &i in &order[r.clone()] {
                    let w = drawn[i] as f64;
                    if truth[i] {
                        rp += w;
                    } else {
                        rq += w;
                    }
                }
                wins += rp * (below + rq / 2.0);
                below += rq;
                p += rp;
                q += rq;
            }
            (p > 0.0 && q > 0.0).then(|| wins / (p * q))
        })
        .collect();
    let ci = percentile_interval(&mut draws);
    // Shuffling the labels leaves the ranks: the AUROC of a shuffle is the
    // rank sum of a random set of `pos` images (drawn as the smaller side).
    let ranks = crate::stats::ranks_of_runs(&order, &runs);
    let (p, q) = (pos as f64, (n - pos) as f64);
    let all: f64 = ranks.iter().sum();
    let side = pos.min(n - pos);
    // Permutations in fixed chunks, each with its own stream and its own
    // buffer of row numbers: a partial shuffle draws `side` rows in O(side).
    const CHUNK: usize = 50;
    let extreme: usize = (0..permutations.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut rng = crate::seed::resample(seed, (bootstrap + c) as u64);
            let mut rows: Vec<u32> = (0..n as u32).collect();
            (c * CHUNK..permutations.min((c + 1) * CHUNK))
                .filter(|_| {
                    let (picked, _) = rows.partial_shuffle(&mut rng, side);
                    let picked: f64 = picked.iter().map(|&i| ranks[i as usize]).sum();
                    let sum = if side == pos { picked } else { all - picked };
                    let a = (sum - p * (p + 1.0) / 2.0) / (p * q);
                    (a - 0.5).abs() >= (estimate - 0.5).abs() - 1e-12
                })
                .count()
        })
        .sum();
    let p_value = (1 + extreme) as f64 / (1 + permutations) as f64;
    Some(Tested { n, estimate, ci, p_value, resamples: draws.len(), permutations })
}

/// The most images an image-level test (AUROC of a score for misses or
/// attacks) resamples; above it, a seeded sample of this many.
pub const IMAGE_TEST_ROWS: usize = 100_000;

/// One row of `correlations.parquet`.
#[derive(Clone, Debug)]
struct Row {
    scope: &'static str,
    x: String,
    y: String,
    method: &'static str,
    direction: Option<&'static str>,
    headline: bool,
    tested: Tested,
    seed: u64,
}

/// A per-class measurement: name and one value per class (None: not defined there).
struct ClassVar {
    name: String,
    values: Vec<Option<f64>>,
}

/// The scores that may predict a miss or an attack's success, and which end of each does.
const IMAGE_SCORES: &[(&str, &str)] = &[
    ("self_confidence", "low"),
    ("margin", "low"),
    ("neighbor_agreement", "low"),
    ("kth_distance", "high"),
    ("outlier_percentile", "high"),
    ("radius_linf", "low"),
    ("radius_l2", "low"),
];

/// The class flag counts whose rate (over the class's training images) is compared.
const FLAG_RATES: &[(&str, &str)] = &[
    ("label_issues", "label_issue_rate"),
    ("likely_mislabeled", "likely_mislabeled_rate"),
    ("ambiguous", "ambiguous_rate"),
    ("outliers", "outlier_rate"),
    ("duplicates", "duplicate_rate"),
];

/// The run's seed (an audit's `--seed`; 0 for a score run).
pub fn run_seed(run: &Run) -> u64 {
    run.manifest_json().get("config").and_then(|c| c.get("seed")).and_then(|s| s.as_u64()).unwrap_or(0)
}

/// `correlations.parquet` of `run`.
pub fn correlations(run: &Run, rs: Resampling) -> Result<RecordBatch> {
    let seed = run_seed(run);
    let classes = collect(run, run.table("classes")?.sort(["class"], Default::default()))?;
    let k = classes.height();
    let mut vars: Vec<ClassVar> = Vec::new();
    for name in ["miss_rate", "median_radius_linf", "median_radius_l2", "estimated_noise_rate"] {
        if frame::has(&classes, name) {
            vars.push(ClassVar { name: name.into(), values: frame::f64s(&classes, name)? });
        }
    }
    if frame::has(&classes, "train_images") {
        let train = frame::f64s(&classes, "train_images")?;
        for (count, rate) in FLAG_RATES {
            if frame::has(&classes, count) {
                let c = frame::f64s(&classes, count)?;
                let values = c.iter().zip(&train).map(|(c, t)| c.zip(t.filter(|t| *t > 0.0)).map(|(c, t)| c / t));
                vars.push(ClassVar { name: rate.to_string(), values: values.collect() });
            }
        }
    }
    // Attack success per class, for each attack and budget, and each attack's headline budget.
    let mut headlines: Vec<(String, f64, String)> = Vec::new();
    if run.has("attack_classes") {
        let df = collect(run, run.table("attack_classes")?)?;
        let (attack, budget, class, rate) = (
            frame::strs(&df, "attack")?,
            frame::f64s(&df, "budget")?,
            frame::i64s(&df, "class")?,
            frame::f64s(&df, "success_rate")?,
        );
        let (attacked, successes) = (frame::i64s(&df, "attacked")?, frame::i64s(&df, "successes")?);
        // Per (attack, budget), in the table's order: class rates and the overall counts.
        let mut order: Vec<(String, f64)> = Vec::new();
        let mut by: HashMap<(String, u64), (Vec<Option<f64>>, i64, i64)> = HashMap::new();
        for i in 0..df.height() {
            let (Some(a), Some(b), Some(c)) = (attack[i].clone(), budget[i], class[i]) else { continue };
            let key = (a.clone(), b.to_bits());
            if !by.contains_key(&key) {
                order.push((a.clone(), b));
            }
            let v = by.entry(key).or_insert_with(|| (vec![None; k], 0, 0));
            if (c as usize) < k {
                v.0[c as usize] = rate[i];
            }
            v.1 += successes[i].unwrap_or(0);
            v.2 += attacked[i].unwrap_or(0);
        }
        for (a, b) in &order {
            let (values, flipped, attacked) = by.remove(&(a.clone(), b.to_bits())).unwrap_or_default();
            let name = format!("attack_success:{a}@{}", budget_label(a, *b as f32));
            // The headline budget: the smallest that flips some but not all
            // victims (the summary's per-class line uses the same).
            if flipped > 0 && flipped < attacked && !headlines.iter().any(|(x, _, _)| x == a) {
                headlines.push((a.clone(), *b, name.clone()));
            }
            vars.push(ClassVar { name, values });
        }
    }
    let mut rows = Vec::new();
    let find = |name: &str| vars.iter().find(|v| v.name == name);
    let mut class_pair = |x: &ClassVar, y: &ClassVar, headline: bool| {
        let (xs, ys): (Vec<f64>, Vec<f64>) = x
            .values
            .iter()
            .zip(&y.values)
            .filter_map(|(a, b)| a.zip(*b))
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .unzip();
        for (method, stat) in [("spearman", spearman as fn(&[f64], &[f64]) -> Option<f64>), ("pearson", pearson)] {
            let s = crate::seed::correlation(seed, &x.name, &y.name, method);
            if let Some(t) = correlation_test(&xs, &ys, stat, rs.class_bootstrap, rs.class_permutations, s) {
                rows.push(Row {
                    scope: "classes",
                    x: x.name.clone(),
                    y: y.name.clone(),
                    method,
                    direction: None,
                    headline: headline && method == "spearman",
                    tested: t,
                    seed: s,
                });
            }
        }
    };
    if let Some(miss) = find("miss_rate") {
        for x in vars.iter().filter(|v| v.name != "miss_rate") {
            let headline = headlines.iter().any(|(_, _, h)| *h == x.name);
            class_pair(x, miss, headline);
        }
    }
    for (_, _, h) in &headlines {
        let y = find(h).expect("headline is a variable");
        for x in vars.iter().filter(|v| v.name.ends_with("_rate") && v.name != "miss_rate") {
            class_pair(x, y, false);
        }
    }
    image_rows(run, seed, rs, &headlines, &mut rows)?;

    let b = TableBuilder::new(&CORRELATIONS)
        .utf8("scope", rows.iter().map(|r| r.scope))
        .utf8("x", rows.iter().map(|r| &r.x))
        .utf8("y", rows.iter().map(|r| &r.y))
        .utf8("method", rows.iter().map(|r| r.method))
        .opt_utf8("x_direction", rows.iter().map(|r| r.direction))
        .bool("headline", rows.iter().map(|r| r.headline))
        .i64("n", rows.iter().map(|r| r.tested.n as i64))
        .f64("estimate", rows.iter().map(|r| r.tested.estimate))
        .opt_f64("ci_low", rows.iter().map(|r| r.tested.ci.map(|c| c.0)))
        .opt_f64("ci_high", rows.iter().map(|r| r.tested.ci.map(|c| c.1)))
        .f64("p_value", rows.iter().map(|r| r.tested.p_value))
        .i64("resamples", rows.iter().map(|r| r.tested.resamples as i64))
        .i64("permutations", rows.iter().map(|r| r.tested.permutations as i64))
        .utf8("seed", rows.iter().map(|r| r.seed.to_string()));
    Ok(b.finish_table(&schema::CORRELATIONS))
}

/// The image-level rows: each score's AUROC for a miss (test images; the
/// training images' out-of-sample predictions when the run has no test
/// split) and, among attacked test images, for each attack's success at its
/// headline budget.
fn image_rows(
    run: &Run,
    seed: u64,
    rs: Resampling,
    headlines: &[(String, f64, String)],
    rows: &mut Vec<Row>,
) -> Result<()> {
    let samples = collect(run, run.table("samples")?)?;
    if !frame::has(&samples, "pred") {
        return Ok(());
    }
    let split = frame::strs(&samples, "split")?;
    let has_test = split.iter().any(|s| s.as_deref() == Some("test"));
    let (scope_split, y) = if has_test { ("test", "test_miss") } else { ("train", "train_miss") };
    let keep: Vec<bool> = split.iter().map(|s| s.as_deref() == Some(scope_split)).collect();
    let (labels, preds) = (frame::i64s(&samples, "label")?, frame::i64s(&samples, "pred")?);
    let miss: Vec<bool> = labels.iter().zip(&preds).map(|(l, p)| l != p).collect();
    let ids = frame::strs(&samples, "id")?;
    let mut scores: Vec<(&str, &str, Vec<Option<f64>>)> = Vec::new();
    for &(name, direction) in IMAGE_SCORES {
        if frame::has(&samples, name) {
            scores.push((name, direction, frame::f64s(&samples, name)?));
        }
    }
    let mut auroc_row = |x: &str, direction: &'static str, y: &str, score: &[f64], truth: &[bool]| {
        let s = crate::seed::correlation(seed, x, y, "auroc");
        // Above IMAGE_TEST_ROWS images, the test runs on a seeded sample of
        // that many (its `n`): the resampling would otherwise take most of a
        // million-row run, and the interval is still a few thousandths wide.
        let picked: Vec<usize> = match score.len() > IMAGE_TEST_ROWS {
            true => {
                let mut r = rand::seq::index::sample(&mut ChaCha8Rng::seed_from_u64(s), score.len(), IMAGE_TEST_ROWS)
                    .into_vec();
                r.sort_unstable();
                r
            }
            false => (0..score.len()).collect(),
        };
        let oriented: Vec<f64> =
            picked.iter().map(|&i| if direction == "low" { -score[i] } else { score[i] }).collect();
        let truth: Vec<bool> = picked.iter().map(|&i| truth[i]).collect();
        if let Some(t) = auroc_test(&oriented, &truth, rs.image_bootstrap, rs.image_permutations, s) {
            rows.push(Row {
                scope: "images",
                x: x.to_string(),
                y: y.to_string(),
                method: "auroc",
                direction: Some(direction),
                headline: false,
                tested: t,
                seed: s,
            });
        }
    };
    for (name, direction, values) in &scores {
        let (s, t): (Vec<f64>, Vec<bool>) = (0..samples.height())
            .filter(|&i| keep[i])
            .filter_map(|i| values[i].filter(|v| v.is_finite()).map(|v| (v, miss[i])))
            .unzip();
        let direction: &'static str = if *direction == "low" { "low" } else { "high" };
        auroc_row(name, direction, y, &s, &t);
    }
    if !run.has("attacks") || headlines.is_empty() {
        return Ok(());
    }
    let row_of: HashMap<&str, usize> = ids.iter().enumerate().filter_map(|(i, id)| Some((id.as_deref()?, i))).collect();
    for (attack, budget, name) in headlines {
        let df = collect(
            run,
            run.table("attacks")?
                .filter(col("attack").eq(lit(attack.as_str())).and(col("split").eq(lit("test"))))
                .filter(col("budget").eq(lit(*budget as f32)))
                .select([col("id"), col("success")]),
        )?;
        let (aid, success) = (frame::strs(&df, "id")?, frame::bools(&df, "success")?);
        for (score, direction, values) in scores.iter().filter(|(n, _, _)| !n.starts_with("radius")) {
            let (s, t): (Vec<f64>, Vec<bool>) = aid
                .iter()
                .zip(&success)
                .filter_map(|(id, ok)| {
                    let i = *row_of.get(id.as_deref()?)?;
                    values[i].filter(|v| v.is_finite()).map(|v| (v, *ok))
                })
                .unzip();
            let direction: &'static str = if *direction == "low" { "low" } else { "high" };
            auroc_row(score, direction, name, &s, &t);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// All 120 orderings of 5 values: the exact two-sided permutation p-value of Spearman's rho.
    fn exact_p(x: &[f64], y: &[f64]) -> f64 {
        fn perms(v: Vec<f64>) -> Vec<Vec<f64>> {
            if v.len() <= 1 {
                return vec![v];
            }
            let mut out = Vec::new();
            for i in 0..v.len() {
                let mut rest = v.clone();
                let head = rest.remove(i);
                for mut p in perms(rest) {
                    p.insert(0, head);
                    out.push(p);
                }
            }
            out
        }
        let r = spearman(x, y).unwrap();
        let all = perms(y.to_vec());
        let extreme = all.iter().filter(|p| spearman(x, p).unwrap().abs() >= r.abs() - 1e-12).count();
        extreme as f64 / all.len() as f64
    }

    #[test]
    fn the_permutation_p_value_approaches_the_exact_one_and_the_interval_is_seeded() {
        // rho = 1 - 6 * 4 / (5 * 24) = 0.8. |rho| >= 0.8 means a sum of
        // squared rank differences of at most 4 (the identity, 4 adjacent
        // swaps, 3 pairs of disjoint adjacent swaps) or, mirrored, at least
        // 36: 16 of the 120 orderings, an exact p-value of 2/15.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [2.0, 1.0, 4.0, 3.0, 5.0];
        let exact = exact_p(&x, &y);
        assert!((exact - 16.0 / 120.0).abs() < 1e-12, "{exact}");
        let t = correlation_test(&x, &y, spearman, 2000, 20000, 7).unwrap();
        assert!((t.estimate - 0.8).abs() < 1e-12);
        assert!((t.p_value - exact).abs() < 0.01, "permutation p {} against exact {exact}", t.p_value);
        let (lo, hi) = t.ci.unwrap();
        assert!(lo <= t.estimate && t.estimate <= hi && hi <= 1.0 && lo >= -1.0, "{lo} {hi}");
        // Same seed, same figures; another seed, other draws.
        assert_eq!(correlation_test(&x, &y, spearman, 2000, 20000, 7), Some(t.clone()));
        assert_ne!(correlation_test(&x, &y, spearman, 2000, 20000, 8).unwrap().p_value, t.p_value);
        // A perfect monotone relation: every defined resample is 1.
        let t = correlation_test(&x, &[1.0, 4.0, 9.0, 16.0, 25.0], spearman, 500, 500, 1).unwrap();
        assert_eq!((t.estimate, t.ci), (1.0, Some((1.0, 1.0))));
        // 2 of the 120 orderings reach |rho| = 1: p about 1/60.
        let t = correlation_test(&x, &[1.0, 4.0, 9.0, 16.0, 25.0], spearman, 10, 20000, 1).unwrap();
        assert!((t.p_value - 2.0 / 120.0).abs() < 0.004, "{}", t.p_value);
        assert_eq!(correlation_test(&x, &[3.0; 5], spearman, 10, 10, 1), None);
    }

    #[test]
    fn the_auroc_test_finds_a_perfect_score_and_not_a_useless_one() {
        let score: Vec<f64> = (0..40).map(|i| i as f64).collect();
        let truth: Vec<bool> = (0..40).map(|i| i >= 30).collect();
        let t = auroc_test(&score, &truth, 200, 1000, 3).unwrap();
        assert_eq!(t.estimate, 1.0);
        assert!(t.p_value < 0.01, "{}", t.p_value);
        let alternating: Vec<bool> = (0..40).map(|i| i % 2 == 0).collect();
        let t = auroc_test(&score, &alternating, 200, 1000, 3).unwrap();
        assert!((t.estimate - 0.475).abs() < 1e-12, "{}", t.estimate);
        assert!(t.p_value > 0.5, "{}", t.p_value);
        let (lo, hi) = t.ci.unwrap();
        assert!(lo < 0.475 && 0.475 < hi);
        assert_eq!(auroc_test(&score, &[true; 40], 10, 10, 3), None);
    }
}

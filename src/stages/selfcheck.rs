//! The self-check stage: every flag and score against known bad images,
//! the demo's planted problems and labels flipped by `--inject-noise`; it
//! owns `selfcheck.parquet` and the self-check list in `run.json`'s `scores`.

use crate::run::columns::selfcheck::SELFCHECK;
use arrow::array::RecordBatch;
use std::collections::HashSet;

use super::data::planted_rows;
use crate::data::demo::{DemoTruth, ProblemKind};
use crate::data::Dataset;
use crate::quality::checks::{flag_check, score_check, Check};
use crate::quality::{ImageScores, Scores};
use crate::run::schema;
use crate::run::table::TableBuilder;
use crate::train::cv::AumThreshold;

/// What is known bad in a run, to check the flags against.
pub struct Known<'a> {
    /// The demo's planted problems.
    pub truth: Option<&'a DemoTruth>,
    /// Training rows whose labels `--inject-noise` flipped.
    pub injected: Option<&'a [bool]>,
}

/// Every check that the known bad images allow (None when nothing is known):
/// the demo's planted problems, the injected flips, and both together.
pub fn run(
    ds: &Dataset,
    known: &Known,
    sc: &Scores,
    aum: Option<&[f32]>,
    threshold: Option<&AumThreshold>,
) -> Option<Vec<Check>> {
    let n_train = ds.train.len();
    let planted = known.truth.map(|t| planted_rows(t, &ds.train.ids, ProblemKind::LabelFlip));
    let mut checks = known.truth.zip(planted.as_deref()).map(|(t, planted)| {
        let mut c = demo_checks(ds, t, planted, sc);
        if let Some(a) = threshold {
            c.push(aum_check("label_flip", planted, a));
        }
        c
    });
    if let Some(flipped) = known.injected {
        let list = checks.get_or_insert_with(Vec::new);
        list.extend(flip_checks("injected_flip", flipped, sc, n_train, aum));
        if let Some(a) = threshold {
            list.push(aum_check("injected_flip", flipped, a));
        }
        if let Some(planted) = &planted {
            // With planted flips too, the flags are judged against both sets together.
            let either: Vec<bool> = (0..n_train).map(|i| flipped[i] || planted[i]).collect();
            list.extend(flip_checks("planted_or_injected_flip", &either, sc, n_train, aum));
        }
    }
    checks
}

/// `selfcheck.parquet`.
pub fn table(checks: &[Check]) -> RecordBatch {
    TableBuilder::new(&SELFCHECK)
        .utf8("name", checks.iter().map(|c| c.name.as_str()))
        .utf8("target", checks.iter().map(|c| c.target.as_str()))
        .opt_f64("precision", checks.iter().map(|c| c.precision))
        .opt_f64("recall", checks.iter().map(|c| c.recall))
        .opt_f64("f1", checks.iter().map(|c| c.f1))
        .opt_i64("flagged", checks.iter().map(|c| c.flagged.map(|f| f as i64)))
        .opt_f64("auroc", checks.iter().map(|c| c.auroc))
        .i64("positives", checks.iter().map(|c| c.positives as i64))
        .i64("images", checks.iter().map(|c| c.images as i64))
        .finish_table(&schema::SELFCHECK)
}

/// Checks the flags and scores against the demo's planted problems
/// (`flipped`: which training rows carry a planted label flip).
pub fn demo_checks(ds: &Dataset, truth: &DemoTruth, flipped: &[bool], sc: &Scores) -> Vec<Check> {
    let n_train = ds.train.len();
    let outlier = planted_rows(truth, &ds.train.ids, ProblemKind::Outlier);
    let train = &sc.images[..n_train];
    let truth_count = |t: &[bool]| t.iter().filter(|x| **x).count();
    let top_by = |v: &[f64], m: usize| -> Vec<bool> {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
        let mut f = vec![false; v.len()];
        for &i in order.iter().take(m) {
            f[i] = true;
        }
        f
    };
    let flag = |f: &dyn Fn(&ImageScores) -> bool| -> Vec<bool> { train.iter().map(f).collect() };
    let value = |f: &dyn Fn(&ImageScores) -> f64| -> Vec<f64> { train.iter().map(f).collect() };
    let mut checks = flip_checks("label_flip", flipped, sc, n_train, None);
    checks.extend([
        flag_check("outlier", "outlier", &flag(&|s| s.flags.outlier), &outlier),
        flag_check(
            "top 2x by kth_distance",
            "outlier",
            &top_by(&value(&|s| s.kth_distance.unwrap_or(0.0) as f64), 2 * truth_count(&outlier)),
            &outlier,
        ),
        score_check("kth_distance", "outlier", &value(&|s| s.kth_distance.unwrap_or(0.0) as f64), &outlier),
    ]);
    // Duplicates: planted pairs found among the reported pairs.
    let key = |a: &str, b: &str| if a < b { (a.to_string(), b.to_string()) } else { (b.to_string(), a.to_string()) };
    let found: HashSet<(String, String)> =
        sc.duplicates.iter().map(|p| key(&ds.train.ids[p.a], &ds.split(p.b_split()).ids[p.b])).collect();
    let planted: Vec<(String, String)> = truth
        .problems
        .iter()
        .filter(|p| matches!(p.kind, ProblemKind::DuplicateExact | ProblemKind::DuplicateNear))
        .map(|p| key(&p.id, p.related_id.as_deref().unwrap_or_default()))
        .collect();
    let hit = planted.iter().filter(|k| found.contains(*k)).count();
    let planted_set: HashSet<&(String, String)> = planted.iter().collect();
    let true_found = found.iter().filter(|k| planted_set.contains(k)).count();
    checks.push(Check {
        name: "duplicate pairs".into(),
        target: "duplicate".into(),
        precision: Some(if found.is_empty() { 0.0 } else { true_found as f64 / found.len() as f64 }),
        recall: Some(if planted.is_empty() { 0.0 } else { hit as f64 / planted.len() as f64 }),
        f1: None,
        flagged: Some(found.len()),
        auroc: None,
        positives: planted.len(),
        images: n_train + ds.test.len(),
    });
    checks
}

/// The label-flip checks: every flag and score against a known set of flipped
/// training labels (`target` names the set: planted or injected).
pub fn flip_checks(target: &str, flipped: &[bool], sc: &Scores, n_train: usize, aum: Option<&[f32]>) -> Vec<Check> {
    let train = &sc.images[..n_train];
    let flag = |f: &dyn Fn(&ImageScores) -> bool| -> Vec<bool> { train.iter().map(f).collect() };
    let value = |f: &dyn Fn(&ImageScores) -> f64| -> Vec<f64> { train.iter().map(f).collect() };
    let mut checks = vec![
        flag_check("likely_mislabeled", target, &flag(&|s| s.flags.likely_mislabeled), flipped),
        flag_check("label_issue", target, &flag(&|s| s.label_issue == Some(true)), flipped),
        score_check("issue_score", target, &value(&|s| s.issue_score.unwrap_or(0.0)), flipped),
        score_check("1 - normalized_margin", target, &value(&|s| 1.0 - s.normalized_margin.unwrap_or(1.0)), flipped),
        score_check(
            "1 - confidence_weighted_entropy",
            target,
            &value(&|s| 1.0 - s.confidence_weighted_entropy.unwrap_or(1.0)),
            flipped,
        ),
        score_check("1 - neighbor_agreement", target, &value(&|s| 1.0 - s.neighbor_agreement.unwrap_or(1.0)), flipped),
    ];
    if let Some(a) = aum {
        let neg: Vec<f64> = a.iter().map(|&v| -(v as f64)).collect();
        checks.push(score_check("-aum", target, &neg, flipped));
    }
    checks
}

/// The AUM-threshold flag against known flips, over the images that were not threshold samples.
fn aum_check(target: &str, flipped: &[bool], a: &AumThreshold) -> Check {
    let (flag, truth): (Vec<bool>, Vec<bool>) =
        (0..a.aum.len()).filter_map(|i| a.flag(i).map(|f| (f, flipped[i]))).unzip();
    flag_check("aum_mislabeled", target, &flag, &truth)
}

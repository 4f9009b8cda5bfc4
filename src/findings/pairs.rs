//! `pairs.parquet`: one row per ordered class pair (given A, other B) with
//! any evidence that A's images go to B: test confusions, attack flips,
//! suggested relabels, the confident joint, cross-label duplicates and
//! neighbourhoods. Read from whatever tables the run has (a `misfit score`
//! run has no test split, attacks or duplicates: those columns are null).
//! The root causes ([`super::causes`]) add their column group where the
//! explain stage ran.

use crate::run::columns::findings::{PAIRS, PAIR_FLIPS, PAIR_FLIP_BUDGETS};
use arrow::array::{ArrayRef, Int64Array, RecordBatch};
use polars::prelude::{col, lit, DataFrame, IntoLazy};
use std::collections::HashMap;
use std::sync::Arc;

use super::{causes, collect, frame};
use crate::error::Result;
use crate::quality::count;
use crate::run::read::Run;
use crate::run::schema;
use crate::run::table::{self, Columns, TableBuilder};
use crate::stats::median;

/// A `k x k` table of one quantity, `[given][other]`.
type Grid<T> = Vec<Vec<T>>;

fn grid<T: Clone>(k: usize, v: T) -> Grid<T> {
    vec![vec![v; k]; k]
}

/// The run's class names, in class order.
pub fn class_names(run: &Run) -> Result<Vec<String>> {
    let df = collect(run, run.table("classes")?.sort(["class"], Default::default()))?;
    Ok(frame::strs(&df, "class_name")?.into_iter().map(Option::unwrap_or_default).collect())
}

/// The evidence per ordered pair, read from the run.
struct Evidence {
    confusion: Option<Grid<i64>>,
    flips: Option<Grid<i64>>,
    flip_budgets: [Grid<Vec<f32>>; 2],
    /// Per untargeted attack (by name): flips and their smallest budgets.
    by_attack: Vec<(String, Grid<i64>, Grid<Vec<f32>>)>,
    targeted: Option<(Grid<i64>, Grid<i64>)>,
    targeted_budgets: [Grid<Vec<f32>>; 2],
    relabels: Option<Grid<i64>>,
    issues_to: Option<Grid<i64>>,
    joint: Option<(Grid<f64>, Grid<f64>)>,
    duplicates: Option<Grid<i64>>,
    neighbors: Option<Grid<f64>>,
}

/// `pairs.parquet` of `run`.
pub fn pairs(run: &Run) -> Result<RecordBatch> {
    let names = class_names(run)?;
    let k = names.len();
    let ev = evidence(run, k)?;
    let mut rows = Vec::new();
    for a in 0..k {
        for b in (0..k).filter(|&b| b != a) {
            let any = ev.confusion.as_ref().is_some_and(|g| g[a][b] > 0)
                || ev.flips.as_ref().is_some_and(|g| g[a][b] > 0)
                || ev.targeted.as_ref().is_some_and(|(_, s)| s[a][b] > 0)
                || ev.relabels.as_ref().is_some_and(|g| g[a][b] > 0)
                || ev.issues_to.as_ref().is_some_and(|g| g[a][b] > 0)
                || ev.joint.as_ref().is_some_and(|(c, _)| c[a][b] > 0.0)
                || ev.duplicates.as_ref().is_some_and(|g| g[a][b] > 0)
                || ev.neighbors.as_ref().is_some_and(|g| g[a][b] > 0.0);
            if any {
                rows.push((a, b));
            }
        }
    }
    let at = |g: &Option<Grid<i64>>, a: usize, b: usize| g.as_ref().map_or(0, |g| g[a][b]);
    rows.sort_by(|&(a, b), &(c, d)| {
        let key = |a: usize, b: usize| {
            (at(&ev.confusion, a, b), at(&ev.flips, a, b), at(&ev.relabels, a, b), at(&ev.issues_to, a, b))
        };
        key(c, d).cmp(&key(a, b)).then(
            ev.joint
                .as_ref()
                .map_or(std::cmp::Ordering::Equal, |(_, q)| q[c][d].total_cmp(&q[a][b]))
                .then((a, b).cmp(&(c, d))),
        )
    });
    let row_sum = |g: &Grid<i64>, a: usize| g[a].iter().sum::<i64>();
    let share = |n: i64, d: i64| (d > 0).then(|| n as f64 / d as f64);
    let opt = |g: &Option<Grid<i64>>, a: usize, b: usize| g.as_ref().map(|g| g[a][b]);
    let med = |v: &[f32], count_failures: bool| -> Option<f64> {
        if v.is_empty() {
            return None;
        }
        let m = median(v)?;
        (!count_failures || m.is_finite()).then_some(m as f64)
    };
    let asymmetry = |a: usize, b: usize| {
        ev.joint.as_ref().and_then(|(_, q)| {
            let s = q[a][b] + q[b][a];
            (s > 0.0).then(|| (q[a][b] - q[b][a]) / s)
        })
    };
    let b = TableBuilder::new(&PAIRS)
        .i32("given", rows.iter().map(|r| r.0 as i32))
        .utf8("given_name", rows.iter().map(|r| &names[r.0]))
        .i32("other", rows.iter().map(|r| r.1 as i32))
        .utf8("other_name", rows.iter().map(|r| &names[r.1]))
        .utf8("pair", rows.iter().map(|r| format!("{} -> {}", names[r.0], names[r.1])))
        .i64("rank", 1..=rows.len() as i64)
        .opt_i64("test_confusions", rows.iter().map(|&(a, b)| opt(&ev.confusion, a, b)))
        .opt_f64(
            "test_share",
            rows.iter().map(|&(a, b)| ev.confusion.as_ref().and_then(|g| share(g[a][b], row_sum(g, a)))),
        )
        .opt_f64(
            "miss_share",
            rows.iter().map(|&(a, b)| ev.confusion.as_ref().and_then(|g| share(g[a][b], row_sum(g, a) - g[a][a]))),
        )
        .opt_i64("attack_flips", rows.iter().map(|&(a, b)| opt(&ev.flips, a, b)))
        .opt_f64("flip_share", rows.iter().map(|&(a, b)| ev.flips.as_ref().and_then(|g| share(g[a][b], row_sum(g, a)))))
        .opt_f64("median_flip_budget_linf", rows.iter().map(|&(a, b)| med(&ev.flip_budgets[0][a][b], false)))
        .opt_f64("median_flip_budget_l2", rows.iter().map(|&(a, b)| med(&ev.flip_budgets[1][a][b], false)))
        .opt_i64("targeted_attacked", rows.iter().map(|&(a, b)| ev.targeted.as_ref().map(|(n, _)| n[a][b])))
        .opt_i64("targeted_successes", rows.iter().map(|&(a, b)| ev.targeted.as_ref().map(|(_, s)| s[a][b])))
        .opt_f64("targeted_median_budget_linf", rows.iter().map(|&(a, b)| med(&ev.targeted_budgets[0][a][b], true)))
        .opt_f64("targeted_median_budget_l2", rows.iter().map(|&(a, b)| med(&ev.targeted_budgets[1][a][b], true)))
        .opt_i64("suggested_relabels", rows.iter().map(|&(a, b)| opt(&ev.relabels, a, b)))
        .opt_i64("label_issues_to", rows.iter().map(|&(a, b)| opt(&ev.issues_to, a, b)))
        .opt_f64("joint_count", rows.iter().map(|&(a, b)| ev.joint.as_ref().map(|(c, _)| c[a][b])))
        .opt_f64("joint_share", rows.iter().map(|&(a, b)| ev.joint.as_ref().map(|(_, q)| q[a][b])))
        .opt_f64("joint_asymmetry", rows.iter().map(|&(a, b)| asymmetry(a, b)))
        .opt_i64("cross_duplicates", rows.iter().map(|&(a, b)| opt(&ev.duplicates, a, b)))
        .opt_f64("neighbor_share", rows.iter().map(|&(a, b)| ev.neighbors.as_ref().map(|g| g[a][b])));
    let mut by_attack = ev.by_attack.iter().collect::<Vec<_>>();
    by_attack.sort_by(|x, y| x.0.cmp(&y.0));
    let flips = by_attack
        .iter()
        .map(|(name, g, _)| {
            let v: ArrayRef = Arc::new(Int64Array::from_iter_values(rows.iter().map(|&(a, b)| g[a][b])));
            (format!("{}{name}", PAIR_FLIPS.prefix), v)
        })
        .collect();
    let budgets = by_attack
        .iter()
        .map(|(name, _, g)| {
            (format!("{}{name}", PAIR_FLIP_BUDGETS.prefix), rows.iter().map(|&(a, b)| med(&g[a][b], false)).collect())
        })
        .collect();
    let joint_images = |a: usize, b: usize| ev.joint.as_ref().map(|(c, _)| c[a][b] + c[b][a]);
    let inputs = causes::PairInputs {
        joint_asymmetry: &asymmetry,
        joint_images: &joint_images,
        neighbor_share: ev.neighbors.as_ref(),
    };
    let mut parts =
        vec![b.finish(), Columns::named(&PAIR_FLIPS, flips), Columns::named_f64(&PAIR_FLIP_BUDGETS, budgets)];
    parts.extend(causes::columns(run, &rows, k, &names, &inputs)?);
    Ok(table::assemble(&schema::PAIRS, parts))
}

/// Whether the training images' probabilities are in sample, as the rules
/// read it (`rules/images.toml`): an audit (it has a test split) whose
/// training rows have no fold, an imported model that trained on those
/// images. Its flags on them witness nothing. A score run has no test
/// split: its probabilities are the user's out-of-sample ones.
pub fn train_in_sample(samples: &DataFrame) -> Result<bool> {
    if !frame::has(samples, "fold") {
        return Ok(false);
    }
    let fold = frame::i64s(samples, "fold")?;
    let split = frame::strs(samples, "split")?;
    let is = |i: usize, s: &str| split[i].as_deref() == Some(s);
    let has_test = (0..samples.height()).any(|i| is(i, "test"));
    let mut train = (0..samples.height()).filter(|&i| is(i, "train")).peekable();
    Ok(has_test && train.peek().is_some() && train.all(|i| fold[i].is_none()))
}

/// Index of a norm in the per-norm grids.
fn norm_index(norm: &str) -> Option<usize> {
    match norm {
        "linf" => Some(0),
        "l2" => Some(1),
        _ => None,
    }
}

fn evidence(run: &Run, k: usize) -> Result<Evidence> {
    let class = |v: Option<i64>| v.filter(|&c| c >= 0 && (c as usize) < k).map(|c| c as usize);
    let mut ev = Evidence {
        confusion: None,
        flips: None,
        flip_budgets: [grid(k, Vec::new()), grid(k, Vec::new())],
        by_attack: Vec::new(),
        targeted: None,
        targeted_budgets: [grid(k, Vec::new()), grid(k, Vec::new())],
        relabels: None,
        issues_to: None,
        joint: None,
        duplicates: None,
        neighbors: None,
    };
    if run.has("confusion") {
        let df = collect(run, run.table("confusion")?)?;
        let mut g = grid(k, 0i64);
        let (given, pred, count) =
            (frame::i64s(&df, "given")?, frame::i64s(&df, "predicted")?, frame::i64s(&df, "count")?);
        for i in 0..df.height() {
            if let (Some(a), Some(b)) = (class(given[i]), class(pred[i])) {
                g[a][b] += count[i].unwrap_or(0);
            }
        }
        ev.confusion = Some(g);
    }
    let samples = collect(run, run.table("samples")?)?;
    let ids = frame::strs(&samples, "id")?;
    let labels = frame::i64s(&samples, "label")?;
    let train: Vec<bool> = frame::strs(&samples, "split")?.iter().map(|s| s.as_deref() == Some("train")).collect();
    let label_of: HashMap<&str, Option<usize>> =
        ids.iter().zip(&labels).filter_map(|(i, &l)| Some((i.as_deref()?, class(l)))).collect();

    if run.has("attacks") && frame::has(&samples, "pred") {
        let preds = frame::i64s(&samples, "pred")?;
        let correct: HashMap<&str, bool> =
            ids.iter().zip(labels.iter().zip(&preds)).filter_map(|(i, (l, p))| Some((i.as_deref()?, l == p))).collect();
        let df = collect(
            run,
            run.table("attacks")?.filter(col("success")).sort(["id", "attack", "budget"], Default::default()),
        )?;
        let (aid, attack, norm) = (frame::strs(&df, "id")?, frame::strs(&df, "attack")?, frame::strs(&df, "norm")?);
        let targeted = frame::bools(&df, "targeted")?;
        let (budget, adv) = (frame::f64s(&df, "budget")?, frame::i64s(&df, "adv_pred")?);
        let label = frame::i64s(&df, "label")?;
        let mut flips = grid(k, 0i64);
        let mut first_success: HashMap<(&str, &str), f32> = HashMap::new();
        for i in 0..df.height() {
            let (Some(id), Some(att)) = (aid[i].as_deref(), attack[i].as_deref()) else { continue };
            if first_success.contains_key(&(id, att)) || !correct.get(id).copied().unwrap_or(false) {
                continue;
            }
            let b = budget[i].unwrap_or(0.0) as f32;
            first_success.insert((id, att), b);
            let (Some(a), Some(p)) = (class(label[i]), class(adv[i])) else { continue };
            if !targeted[i] && a != p {
                flips[a][p] += 1;
                if let Some(n) = norm[i].as_deref().and_then(norm_index) {
                    ev.flip_budgets[n][a][p].push(b);
                }
                let at = match ev.by_attack.iter().position(|(name, ..)| name == att) {
                    Some(at) => at,
                    None => {
                        ev.by_attack.push((att.to_string(), grid(k, 0), grid(k, Vec::new())));
                        ev.by_attack.len() - 1
                    }
                };
                ev.by_attack[at].1[a][p] += 1;
                ev.by_attack[at].2[a][p].push(b);
            }
        }
        ev.flips = Some(flips);
        // Targeted attacks: every (image, attack) pair attempted, with its
        // smallest successful budget or infinity.
        let df = collect(
            run,
            run.table("attacks")?
                .filter(col("targeted").and(col("target").is_not_null()))
                .group_by([col("id"), col("attack"), col("norm"), col("label"), col("target")])
                .agg([col("budget").filter(col("success")).min().alias("first")])
                .sort(["id", "attack"], Default::default()),
        )?;
        let (label, target, norm, first) = (
            frame::i64s(&df, "label")?,
            frame::i64s(&df, "target")?,
            frame::strs(&df, "norm")?,
            frame::f64s(&df, "first")?,
        );
        let (mut attempted, mut reached) = (grid(k, 0i64), grid(k, 0i64));
        for i in 0..df.height() {
            let (Some(a), Some(t)) = (class(label[i]), class(target[i])) else { continue };
            attempted[a][t] += 1;
            reached[a][t] += first[i].is_some() as i64;
            if let Some(n) = norm[i].as_deref().and_then(norm_index) {
                ev.targeted_budgets[n][a][t].push(first[i].map_or(f32::INFINITY, |b| b as f32));
            }
        }
        if df.height() > 0 {
            ev.targeted = Some((attempted, reached));
        }
    }

    let train_idx: Vec<usize> = (0..samples.height()).filter(|&i| train[i]).collect();
    let mut train_count = vec![0i64; k];
    for &i in &train_idx {
        if let Some(a) = class(labels[i]) {
            train_count[a] += 1;
        }
    }
    // An imported model's flags on its own training images are for review
    // only: they are not counted as relabels.
    if frame::has(&samples, "suggested_label") && !train_in_sample(&samples)? {
        let sugg = frame::i64s(&samples, "suggested_label")?;
        for (flag, slot) in [("likely_mislabeled", &mut ev.relabels), ("label_issue", &mut ev.issues_to)] {
            if !frame::has(&samples, flag) {
                continue;
            }
            let flagged = frame::bools(&samples, flag)?;
            let mut g = grid(k, 0i64);
            for &i in train_idx.iter().filter(|&&i| flagged[i]) {
                if let (Some(a), Some(s)) = (class(labels[i]), class(sugg[i])) {
                    if a != s {
                        g[a][s] += 1;
                    }
                }
            }
            *slot = Some(g);
        }
    }
    if frame::has(&samples, "neighbor_label") {
        let nl = frame::i64s(&samples, "neighbor_label")?;
        let mut g = grid(k, 0f64);
        for &i in &train_idx {
            if let (Some(a), Some(n)) = (class(labels[i]), class(nl[i])) {
                if a != n {
                    g[a][n] += 1.0 / train_count[a] as f64;
                }
            }
        }
        ev.neighbors = Some(g);
    }
    if frame::has(&samples, "probs") && !train_idx.is_empty() {
        let tr = collect(run, samples.clone().lazy().filter(col("split").eq(lit("train"))))?;
        let (probs, width) = frame::f32_rows(&tr, "probs")?;
        if width == k {
            let l: Vec<u32> = frame::i64s(&tr, "label")?.iter().map(|l| l.unwrap_or(0) as u32).collect();
            let est = count::estimate(&l, &probs, k);
            ev.joint = Some((est.confident_joint, est.joint));
        }
    }
    if run.has("duplicates") {
        let df = collect(run, run.table("duplicates")?)?;
        let (a, b) = (frame::strs(&df, "id_a")?, frame::strs(&df, "id_b")?);
        let mut g = grid(k, 0i64);
        for (x, y) in a.iter().zip(&b) {
            let l = |id: &Option<String>| id.as_deref().and_then(|i| label_of.get(i).copied().flatten());
            if let (Some(la), Some(lb)) = (l(x), l(y)) {
                if la != lb {
                    g[la][lb] += 1;
                    g[lb][la] += 1;
                }
            }
        }
        ev.duplicates = Some(g);
    }
    Ok(ev)
}

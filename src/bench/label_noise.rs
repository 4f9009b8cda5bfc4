//! `misfit bench label-noise DIR`: the label flags against known wrong
//! labels on real cross-validated probabilities, as a user gets them from
//! `misfit score --probs pred_probs.npy --labels labels.npy` (the same
//! reader and scoring, default settings, no embeddings). DIR holds one folder
//! per benchmark and in it one per model (the layout of
//! `shared/label-noise/`): `pred_probs.npy` `[n, k]` with either
//! `labels.npy` and `label_errors_mask.npy` (the wrong labels found by
//! review) or `noisy_labels.npy` and `true_labels.npy`. For each it prints
//! precision, recall and F1 of `likely_mislabeled` (and which cut made it),
//! of "predicted class != label" and of confident learning's `label_issue`
//! (prune by noise rate), and the AUROC and average precision of
//! `issue_score`.

use std::path::{Path, PathBuf};

use crate::data::probs::{self, ScoreFiles};
use crate::error::{Error, Problem, Result};
use crate::quality::checks::{average_precision, flag_check, Check};
use crate::quality::cut::CutRule;
use crate::quality::{self, ScoreConfig, ScoreInput};
use crate::stats::{argmax, auroc};

/// One model's probabilities on one benchmark, scored.
pub struct Row {
    pub set: String,
    pub model: String,
    pub images: usize,
    pub wrong: usize,
    /// `likely_mislabeled`, "prediction != label", `label_issue`.
    pub ours: Check,
    pub pred_differs: Check,
    pub label_issue: Check,
    pub rule: CutRule,
    /// The noise matrix's gain in log-likelihood of the labels (nats per image), and its standard error.
    pub likelihood_gain: f64,
    pub likelihood_gain_se: f64,
    pub auroc: f64,
    pub average_precision: f64,
}

fn read(path: &Path) -> Result<Vec<f64>> {
    Ok(probs::read_npy(path)?.0)
}

/// The labels file and the wrong labels of one model folder.
fn truth(dir: &Path) -> Result<(PathBuf, Vec<bool>)> {
    let mask = dir.join("label_errors_mask.npy");
    if mask.exists() {
        let wrong = read(&mask)?.into_iter().map(|v| v != 0.0).collect();
        return Ok((dir.join("labels.npy"), wrong));
    }
    let (noisy, clean) = (dir.join("noisy_labels.npy"), dir.join("true_labels.npy"));
    if noisy.exists() && clean.exists() {
        let wrong = read(&noisy)?.iter().zip(read(&clean)?).map(|(a, b)| *a != b).collect();
        return Ok((noisy, wrong));
    }
    Err(Problem::file(
        dir,
        "no known wrong labels: needs labels.npy with label_errors_mask.npy, or noisy_labels.npy with true_labels.npy",
    )
    .into())
}

/// Scores one model folder.
pub fn score_one(dir: &Path, set: &str, model: &str) -> Result<Row> {
    let (labels_file, wrong) = truth(dir)?;
    let files =
        ScoreFiles { probs: dir.join("pred_probs.npy"), labels: Some(labels_file), embeddings: None, classes: None };
    let data = probs::load(&files)?;
    if wrong.len() != data.labels.len() {
        return Err(
            Problem::file(dir, format!("{} known-wrong marks for {} labels", wrong.len(), data.labels.len())).into()
        );
    }
    let source = files.probs.display().to_string();
    let input = ScoreInput {
        source: &source,
        classes: data.classes,
        train_labels: &data.labels,
        probs: &data.probs,
        test_labels: &[],
        test_probs: &[],
        embeddings: None,
        pixels: None,
        aum: None,
        held_out_null: true,
        null_probs: &[],
    };
    let sc = quality::score(&input, &ScoreConfig::default())?;
    let k = data.classes;
    let pred: Vec<bool> = data.probs.chunks_exact(k).zip(&data.labels).map(|(r, &l)| argmax(r) != l as usize).collect();
    let ours: Vec<bool> = sc.images.iter().map(|s| s.flags.likely_mislabeled).collect();
    let issues: Vec<bool> = sc.images.iter().map(|s| s.label_issue == Some(true)).collect();
    let issue_score: Vec<f64> = sc.images.iter().map(|s| s.issue_score.unwrap_or(0.0)).collect();
    Ok(Row {
        set: set.into(),
        model: model.into(),
        images: wrong.len(),
        wrong: wrong.iter().filter(|w| **w).count(),
        ours: flag_check("likely_mislabeled", "wrong", &ours, &wrong),
        pred_differs: flag_check("pred != label", "wrong", &pred, &wrong),
        label_issue: flag_check("label_issue", "wrong", &issues, &wrong),
        rule: sc.cut.rule,
        likelihood_gain: sc.cut.likelihood_gain,
        likelihood_gain_se: sc.cut.likelihood_gain_se,
        auroc: auroc(&issue_score, &wrong),
        average_precision: average_precision(&issue_score, &wrong),
    })
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    Ok(out)
}

fn name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Scores every benchmark/model folder under `root`.
pub fn run(root: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for set in subdirs(root)? {
        for model in subdirs(&set)? {
            if model.join("pred_probs.npy").exists() {
                rows.push(score_one(&model, &name(&set), &name(&model))?);
            }
        }
    }
    if rows.is_empty() {
        return Err(Problem::file(root, "no SET/MODEL/pred_probs.npy under it").into());
    }
    Ok(rows)
}

/// The table of [`run`], Markdown.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| set | model | wrong | cut (gain ± se) | likely_mislabeled P / R / **F1** (flagged) | pred != label P / R / F1 | \
         label_issue P / R / F1 | best baseline | issue_score AUROC / AP |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let prf = |c: &Check| {
        format!("{:.3} / {:.3} / {:.3}", c.precision.unwrap_or(0.0), c.recall.unwrap_or(0.0), c.f1.unwrap_or(0.0))
    };
    for r in rows {
        let rule = match r.rule {
            CutRule::NoisePrior => "prior",
            CutRule::Disagreement => "disagreement",
        };
        let base = r.pred_differs.f1.unwrap_or(0.0).max(r.label_issue.f1.unwrap_or(0.0));
        let ours = r.ours.f1.unwrap_or(0.0);
        s.push_str(&format!(
            "| {} | {} | {} of {} | {rule} ({:+.3} ± {:.3}) | {:.3} / {:.3} / **{ours:.3}** ({}) | {} | {} | {base:.3} ({:+.3}) | {:.3} / {:.3} |\n",
            r.set,
            r.model,
            r.wrong,
            r.images,
            r.likelihood_gain,
            r.likelihood_gain_se,
            r.ours.precision.unwrap_or(0.0),
            r.ours.recall.unwrap_or(0.0),
            r.ours.flagged.unwrap_or(0),
            prf(&r.pred_differs),
            prf(&r.label_issue),
            ours - base,
            r.auroc,
            r.average_precision,
        ));
    }
    s
}

/// Prints the table for `root`.
pub fn report(root: &Path) -> Result<()> {
    let rows = run(root)?;
    print!("{}", table(&rows));
    let worst = rows
        .iter()
        .map(|r| r.ours.f1.unwrap_or(0.0) - r.pred_differs.f1.unwrap_or(0.0).max(r.label_issue.f1.unwrap_or(0.0)))
        .fold(f64::INFINITY, f64::min);
    println!("likely_mislabeled F1 minus the best baseline's, worst of {}: {worst:+.3}", rows.len());
    Ok(())
}

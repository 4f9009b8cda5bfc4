//! `misfit bench flags`: the label flags against known wrong labels on real
//! probabilities. Takes one split of a run (its out-of-sample probabilities,
//! embeddings and labels, the labels taken as the truth), injects label noise
//! shaped like the model's own confusion at each rate, scores the noisy
//! labels with `misfit score` (the same code, from `.npy` files it writes),
//! and reports precision, recall and F1 of `likely_mislabeled`, of confident
//! learning's `label_issue` (prune by noise rate, cleanlab's result) and of
//! the plain rule "predicted class != given label", and the AUROC of the
//! scores, in one table.

use polars::prelude::{col, lit};
use std::collections::HashMap;
use std::path::Path;

use crate::audit::noise::{inject_noise, NoiseKind};
use crate::data::probs::ScoreFiles;
use crate::error::{Error, Result};
use crate::findings::frame;
use crate::quality::checks::{flag_check, score_check, Check};
use crate::quality::ScoreConfig;
use crate::run::read::Run;
use crate::score;
use crate::stats::argmax;

/// One split of a run: labels, probabilities `[n, k]`, embeddings `[n, dim]`.
struct SplitData {
    labels: Vec<u32>,
    probs: Vec<f32>,
    classes: usize,
    embeddings: Vec<f32>,
    dim: usize,
}

/// Reads `split` of the run at `run_dir` through polars.
fn read_split(run_dir: &Path, split: &str) -> Result<SplitData> {
    let run = Run::open(run_dir)?;
    let samples = run
        .require("samples", &["id", "split", "label", "probs"])?
        .filter(col("split").eq(lit(split)))
        .select([col("id"), col("label"), col("probs")])
        .collect()
        .map_err(|e| Error::Usage(format!("{}: samples.parquet: {e}", run_dir.display())))?;
    if samples.height() == 0 {
        return Err(Error::Usage(format!("{}: no {split} images in samples.parquet", run_dir.display())));
    }
    let emb = run
        .require("embeddings", &["id", "split", "vector"])?
        .filter(col("split").eq(lit(split)))
        .select([col("id"), col("vector")])
        .collect()
        .map_err(|e| Error::Usage(format!("{}: embeddings.parquet: {e}", run_dir.display())))?;
    let ids: Vec<String> = frame::strs(&samples, "id")?.into_iter().map(Option::unwrap_or_default).collect();
    let labels: Vec<u32> = frame::i64s(&samples, "label")?.into_iter().map(|l| l.unwrap_or(0) as u32).collect();
    let (probs, classes) = frame::f32_rows(&samples, "probs")?;
    let (vectors, dim) = frame::f32_rows(&emb, "vector")?;
    let row_of: HashMap<String, usize> =
        frame::strs(&emb, "id")?.into_iter().enumerate().map(|(i, id)| (id.unwrap_or_default(), i)).collect();
    let mut embeddings = Vec::with_capacity(ids.len() * dim);
    for id in &ids {
        let r = *row_of.get(id).ok_or_else(|| Error::Usage(format!("{}: {id} has no embedding", run_dir.display())))?;
        embeddings.extend_from_slice(&vectors[r * dim..(r + 1) * dim]);
    }
    Ok(SplitData { labels, probs, classes, embeddings, dim })
}

/// The checks of one noise rate, with the command that scored it.
pub struct RateResult {
    pub rate: f64,
    pub flipped: usize,
    pub checks: Vec<Check>,
    pub command: String,
}

/// Injects `rates` of confusion-shaped noise (seeded) into `split` of the
/// run, scores each noisy copy into `dir`, and checks the flags.
pub fn run(run_dir: &Path, split: &str, rates: &[f64], seed: u64, dir: &Path) -> Result<Vec<RateResult>> {
    let d = read_split(run_dir, split)?;
    let (n, k) = (d.labels.len(), d.classes);
    // The model's confusion on the clean labels: the mistakes an annotator is likely to make.
    let mut confusion = vec![vec![0usize; k]; k];
    for (row, &l) in d.probs.chunks_exact(k).zip(&d.labels) {
        confusion[l as usize][argmax(row)] += 1;
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let probs_file = dir.join("probs.npy");
    let emb_file = dir.join("embeddings.npy");
    super::score::write_npy(&probs_file, &[n as u64, k as u64], d.probs.clone())?;
    super::score::write_npy(&emb_file, &[n as u64, d.dim as u64], d.embeddings.clone())?;
    let mut out = Vec::new();
    for &rate in rates {
        let mut labels = d.labels.clone();
        let truth = inject_noise(&mut labels, k, rate, NoiseKind::Confusion, seed, Some(&confusion));
        let name = format!("noise-{}", (rate * 100.0).round() as usize);
        let labels_file = dir.join(format!("{name}.labels.npy"));
        super::score::write_npy(&labels_file, &[n as u64], labels.iter().map(|&l| l as i64).collect())?;
        let files = ScoreFiles {
            probs: probs_file.clone(),
            labels: Some(labels_file.clone()),
            embeddings: Some(emb_file.clone()),
            classes: None,
        };
        let cfg = ScoreConfig { seed, ..ScoreConfig::default() };
        let (_, _, sc) = score::run(&files, &cfg, dir, &name)?;
        let pred_differs: Vec<bool> =
            d.probs.chunks_exact(k).zip(&labels).map(|(row, &l)| argmax(row) != l as usize).collect();
        let target = "injected_flip";
        let flag = |f: &dyn Fn(&crate::quality::ImageScores) -> bool| sc.images.iter().map(f).collect::<Vec<bool>>();
        let score = |f: &dyn Fn(&crate::quality::ImageScores) -> Option<f64>| {
            sc.images.iter().map(|s| f(s).unwrap_or(0.0)).collect::<Vec<f64>>()
        };
        let checks = vec![
            flag_check("likely_mislabeled", target, &flag(&|s| s.flags.likely_mislabeled), &truth),
            flag_check("label_issue", target, &flag(&|s| s.label_issue == Some(true)), &truth),
            flag_check("pred != given", target, &pred_differs, &truth),
            score_check("issue_score", target, &score(&|s| s.issue_score), &truth),
            score_check("label_error_probability", target, &score(&|s| s.label_error_probability), &truth),
        ];
        let command = format!(
            "misfit score --probs {} --labels {} --embeddings {} --outputs {} --run {name}",
            probs_file.display(),
            labels_file.display(),
            emb_file.display(),
            dir.display()
        );
        out.push(RateResult { rate, flipped: truth.iter().filter(|t| **t).count(), checks, command });
    }
    Ok(out)
}

/// Prints the table of [`run`].
pub fn report(run_dir: &Path, split: &str, rates: &[f64], seed: u64, dir: &Path) -> Result<()> {
    let results = run(run_dir, split, rates, seed, dir)?;
    println!("{split} split of {}, confusion-shaped noise (seed {seed})", run_dir.display());
    println!("| noise | flag or score | precision | recall | F1 | flagged | AUROC |");
    println!("|---|---|---|---|---|---|---|");
    let f = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_default();
    for r in &results {
        for c in &r.checks {
            println!(
                "| {:.0}% ({} of {}) | {} | {} | {} | {} | {} | {} |",
                100.0 * r.rate,
                r.flipped,
                c.images,
                c.name,
                f(c.precision),
                f(c.recall),
                f(c.f1),
                c.flagged.map(|x| x.to_string()).unwrap_or_default(),
                f(c.auroc)
            );
        }
    }
    for r in &results {
        println!("scored with: {}", r.command);
    }
    Ok(())
}

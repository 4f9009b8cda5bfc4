//! A run's output folder, `outputs/<run-name>/`, and its `run.json` manifest.
//!
//! A run is written into `outputs/.<run-name>.partial-<pid>/` and renamed into
//! place when complete, replacing the previous run of that name: a crash
//! leaves the previous run whole.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::data::{Dataset, Split};
use crate::error::{Error, Result};

/// The manifest file's name.
pub const MANIFEST: &str = "run.json";

/// One table a run wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableEntry {
    /// File name inside the run folder.
    pub file: String,
    /// Rows written.
    pub rows: usize,
    /// What one row is.
    pub row: String,
}

/// What the dataset of a run was.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    /// The dataset argument as given (`demo`, a path).
    pub spec: String,
    /// What was loaded, in words.
    pub source: String,
    /// SHA-256 over classes, ids, labels and pixels.
    pub fingerprint: String,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Images per split.
    pub images: BTreeMap<String, usize>,
    /// Images per split and class, in label order.
    pub per_class: BTreeMap<String, Vec<usize>>,
}

impl DatasetSummary {
    pub fn new(spec: &str, ds: &Dataset) -> Self {
        let mut images = BTreeMap::new();
        let mut per_class = BTreeMap::new();
        for split in Split::ALL {
            let set = ds.split(split);
            images.insert(split.as_str().to_string(), set.len());
            per_class.insert(split.as_str().to_string(), set.class_counts(ds.classes.len()));
        }
        DatasetSummary {
            spec: spec.to_string(),
            source: ds.source.clone(),
            fingerprint: ds.fingerprint(),
            classes: ds.classes.clone(),
            height: ds.height,
            width: ds.width,
            images,
            per_class,
        }
    }
}

/// `run.json`: what a run was given, what it wrote, what it noticed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    /// Version of misfit that wrote the run.
    pub misfit_version: String,
    /// The run's name (its folder's name).
    pub run_name: String,
    /// The dataset.
    pub dataset: DatasetSummary,
    /// The run's configuration, as given.
    pub config: serde_json::Value,
    /// Tables written, in order.
    pub tables: Vec<TableEntry>,
    /// Things noticed while loading and auditing (left-out files, missing splits).
    pub notes: Vec<String>,
    /// Demo only: planted problems per kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planted: Option<BTreeMap<String, usize>>,
    /// The model: how it was made (trained or imported), its configuration,
    /// the training recipe and device, the last epoch of every training job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<serde_json::Value>,
    /// Test-split accuracy, per-class miss rates with 95% Wilson intervals, confusion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<crate::evaluate::Evaluation>,
    /// Label-quality scoring: neighbour recall, noise estimate, flag counts, self-check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores: Option<ScoresSummary>,
    /// Attacks: overall and per-class success per attack and budget, radii.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attacks: Option<crate::attack::AttackSummary>,
    /// Wall time of each stage, in seconds.
    pub timing_s: BTreeMap<String, f64>,
}

/// What `run.json` says of the label-quality stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoresSummary {
    pub config: crate::scores::ScoreConfig,
    /// Neighbour-index recall@k against exact search.
    pub recall: Option<crate::scores::RecallReport>,
    /// Confident learning's per-class noise rates, and its noise matrix p(given | true).
    pub noise_rate: Vec<f64>,
    pub noise_matrix: Vec<Vec<f64>>,
    /// Training images with each flag.
    pub flagged: BTreeMap<String, usize>,
    /// Duplicate pairs found.
    pub duplicate_pairs: usize,
    /// Flags and scores against known bad images (the demo's planted problems).
    pub selfcheck: Vec<crate::scores::selfcheck::Check>,
}

impl ScoresSummary {
    pub fn new(
        s: &crate::scores::Scores,
        cfg: &crate::scores::ScoreConfig,
        selfcheck: Vec<crate::scores::selfcheck::Check>,
    ) -> Self {
        let train: Vec<&crate::scores::ImageScores> = s.images.iter().filter(|x| x.label_issue.is_some()).collect();
        let mut flagged = BTreeMap::new();
        flagged.insert("label_issue".into(), train.iter().filter(|x| x.label_issue == Some(true)).count());
        flagged.insert("likely_mislabeled".into(), train.iter().filter(|x| x.flags.likely_mislabeled).count());
        flagged.insert("ambiguous".into(), train.iter().filter(|x| x.flags.ambiguous).count());
        flagged.insert("outlier".into(), train.iter().filter(|x| x.flags.outlier).count());
        flagged.insert("duplicate".into(), s.images.iter().filter(|x| x.flags.duplicate).count());
        ScoresSummary {
            config: cfg.clone(),
            recall: s.recall.clone(),
            noise_rate: s.noise.noise_rate.clone(),
            noise_matrix: s.noise.noise_matrix.clone(),
            flagged,
            duplicate_pairs: s.duplicates.len(),
            selfcheck,
        }
    }
}

/// A run folder being written.
#[derive(Debug)]
pub struct RunDir {
    partial: PathBuf,
    dest: PathBuf,
}

/// Checks that a run name is a plain folder name.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "run name '{name}' must be a plain folder name: letters, digits, '-', '_', '.', '+', not starting with '.'"
        )))
    }
}

impl RunDir {
    /// Starts a run named `name` under `outputs`. A folder of that name that
    /// is not a misfit run (no `run.json`) is never replaced.
    pub fn create(outputs: &Path, name: &str) -> Result<Self> {
        check_name(name)?;
        let dest = outputs.join(name);
        if dest.exists() && !dest.join(MANIFEST).is_file() {
            return Err(Error::Usage(format!(
                "{} exists and is not a misfit run (no {MANIFEST}); choose another --run name",
                dest.display()
            )));
        }
        let partial = outputs.join(format!(".{name}.partial-{}", std::process::id()));
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
        }
        std::fs::create_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
        Ok(RunDir { partial, dest })
    }

    /// Where a file of the run is written while the run is under way.
    pub fn path(&self, file: &str) -> PathBuf {
        self.partial.join(file)
    }

    /// Where the run will be once committed.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Writes `run.json` and moves the run into place, replacing the previous
    /// run of that name.
    pub fn commit(self, manifest: &RunManifest) -> Result<PathBuf> {
        self.commit_json(&serde_json::to_value(manifest).expect("manifest serialises"))
    }

    /// [`RunDir::commit`] with any JSON manifest.
    pub fn commit_json(self, manifest: &serde_json::Value) -> Result<PathBuf> {
        let json = serde_json::to_string_pretty(manifest).expect("manifest serialises");
        crate::atomic::write(self.partial.join(MANIFEST), json.as_bytes())?;
        let old = self.dest.with_file_name(format!(
            ".{}.old-{}",
            self.dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            std::process::id()
        ));
        let had_old = self.dest.exists();
        if had_old {
            std::fs::rename(&self.dest, &old).map_err(|e| Error::io(&self.dest, e))?;
        }
        std::fs::rename(&self.partial, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        if had_old {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        Ok(self.dest.clone())
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        // Still here means the run did not complete: leave no partial run behind.
        if self.partial.exists() {
            let _ = std::fs::remove_dir_all(&self.partial);
        }
    }
}

/// A plain-text summary of a run for the terminal.
pub fn summary(m: &RunManifest) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let d = &m.dataset;
    let _ = writeln!(s, "dataset  {}", d.source);
    let _ = writeln!(
        s,
        "images   {} train, {} test, {}x{} pixels, {} classes",
        d.images.get("train").copied().unwrap_or(0),
        d.images.get("test").copied().unwrap_or(0),
        d.height,
        d.width,
        d.classes.len()
    );
    if let Some(p) = &m.planted {
        let parts: Vec<String> = p.iter().map(|(k, v)| format!("{v} {k}")).collect();
        let _ = writeln!(s, "planted  {}", parts.join(", "));
    }
    for n in &m.notes {
        let _ = writeln!(s, "note     {n}");
    }
    if let Some(e) = &m.evaluation {
        let _ = writeln!(s, "test     accuracy {:.2}%", 100.0 * e.accuracy);
        let mut order: Vec<&crate::evaluate::ClassResult> = e.classes.iter().collect();
        order.sort_by(|a, b| b.miss_rate.total_cmp(&a.miss_rate));
        let parts: Vec<String> = order
            .iter()
            .take(5)
            .map(|c| {
                format!(
                    "{} {:.1}% [{:.1}-{:.1}]",
                    d.classes[c.class as usize],
                    100.0 * c.miss_rate,
                    100.0 * c.miss_rate_low,
                    100.0 * c.miss_rate_high
                )
            })
            .collect();
        let _ = writeln!(s, "missed   most: {}", parts.join(", "));
    }
    if let Some(sc) = &m.scores {
        let f: Vec<String> = sc.flagged.iter().map(|(k, v)| format!("{v} {k}")).collect();
        let _ = writeln!(s, "flagged  {} (train); {} duplicate pairs", f.join(", "), sc.duplicate_pairs);
        if let Some(r) = &sc.recall {
            let _ = writeln!(
                s,
                "index    {} recall@{} {:.3} at ef/nprobe {} ({} queries)",
                r.index, sc.config.k, r.recall, r.ef_search, r.queries
            );
        }
        for c in &sc.selfcheck {
            let line = match (c.precision, c.recall, c.auroc) {
                (Some(p), Some(r), _) => format!("precision {p:.2} recall {r:.2} ({} flagged)", c.flagged.unwrap_or(0)),
                (_, _, Some(a)) => format!("AUROC {a:.3}"),
                _ => String::new(),
            };
            let _ = writeln!(s, "check    {} vs {} ({}): {line}", c.name, c.target, c.positives);
        }
    }
    if let Some(a) = &m.attacks {
        let _ = writeln!(s, "attacked {} images ({:.1} images/s, every attack and budget)", a.victims, a.images_per_s);
        let mut names: Vec<&str> = Vec::new();
        for o in &a.overall {
            if !names.contains(&o.attack.as_str()) {
                names.push(&o.attack);
            }
        }
        for name in names {
            let parts: Vec<String> = a
                .overall
                .iter()
                .filter(|o| o.attack == name)
                .map(|o| {
                    let rho = o.miss_rate_spearman.map(|r| format!(", rho {r:+.2}")).unwrap_or_default();
                    format!("{} {:.0}%{rho}", budget_label(&o.attack, o.budget), 100.0 * o.rate)
                })
                .collect();
            let _ = writeln!(s, "attack   {name}: {}", parts.join("; "));
            // Per class at the smallest budget that flips some but not all.
            let pick = a.overall.iter().filter(|o| o.attack == name).find(|o| o.rate > 0.0 && o.rate < 1.0);
            if let Some(o) = pick {
                let mut rows: Vec<&crate::attack::ClassSuccess> =
                    a.per_class.iter().filter(|c| c.attack == name && c.budget == o.budget && c.attacked > 0).collect();
                rows.sort_by(|x, y| y.rate.total_cmp(&x.rate));
                let parts: Vec<String> = rows
                    .iter()
                    .map(|c| format!("{} {:.0}%", m.dataset.classes[c.class as usize], 100.0 * c.rate))
                    .collect();
                let _ = writeln!(s, "         by class at {}: {}", budget_label(name, o.budget), parts.join(", "));
            }
        }
        let _ =
            writeln!(s, "         rho: Spearman correlation across classes between attack success and test miss rate");
    }
    for t in &m.tables {
        let _ = writeln!(s, "table    {} ({} rows, one row = {})", t.file, t.rows, t.row);
    }
    s
}

/// `2/255` for an L-inf budget that is a whole number of grey levels, the plain number otherwise.
pub fn budget_label(attack: &str, budget: f32) -> String {
    let levels = budget * 255.0;
    if attack.contains(":linf") && (levels - levels.round()).abs() < 1e-3 {
        format!("{}/255", levels.round())
    } else {
        format!("{budget}")
    }
}

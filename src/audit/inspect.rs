//! `misfit data inspect`: what a dataset spec resolves to, and every problem
//! found on the way (instead of stopping at the first, as an audit does).

use std::fmt::Write;

use crate::data::{load_with, Dataset, DatasetSpec, LoadOptions, Problems, Split};
use crate::error::Result;

/// The outcome of inspecting a dataset.
#[derive(Debug)]
pub struct Inspection {
    /// The dataset as loaded, problem entries left out.
    pub dataset: Dataset,
    /// The problems and notes found.
    pub problems: Problems,
}

/// Loads a dataset, collecting problems rather than stopping at the first.
/// Errors that prevent loading at all (unreadable archive, no training
/// images, a labels file that does not match) are still errors.
pub fn inspect(spec: &DatasetSpec, opts: &LoadOptions) -> Result<Inspection> {
    let mut problems = Problems::collecting();
    let dataset = load_with(spec, opts, &mut problems)?;
    // What `misfit audit` with its defaults would refuse is a problem too.
    let defaults = (crate::train::recipe::ModelOptions::default(), crate::quality::ScoreConfig::default());
    for r in super::refusals(spec, &dataset, &defaults.0, &defaults.1) {
        problems.report(crate::error::Problem::file(&dataset.source, r))?;
    }
    Ok(Inspection { dataset, problems })
}

impl Inspection {
    /// A plain-text report for a terminal.
    pub fn report(&self, spec: &DatasetSpec) -> String {
        let ds = &self.dataset;
        let mut s = String::new();
        let _ = writeln!(s, "dataset   {}", ds.source);
        let _ = writeln!(s, "spec      {spec}");
        let _ = writeln!(s, "images    {}x{} RGB (height x width)", ds.height, ds.width);
        let _ = writeln!(s, "classes   {}: {}", ds.classes.len(), ds.classes.join(", "));
        let _ = writeln!(s, "split     images  per class (min..max)");
        for split in Split::ALL {
            let set = ds.split(split);
            let counts = set.class_counts(ds.classes.len());
            let (min, max) = (counts.iter().min().copied().unwrap_or(0), counts.iter().max().copied().unwrap_or(0));
            let _ = writeln!(s, "{:<9} {:>6}  {min}..{max}", split.as_str(), set.len());
        }
        let width = ds.classes.iter().map(|c| c.len()).max().unwrap_or(5).max(5);
        let _ = writeln!(s, "{:<width$}  {:>6}  {:>6}", "class", "train", "test");
        let (train, test) = (ds.train.class_counts(ds.classes.len()), ds.test.class_counts(ds.classes.len()));
        for (i, c) in ds.classes.iter().enumerate() {
            let _ = writeln!(s, "{c:<width$}  {:>6}  {:>6}", train[i], test[i]);
        }
        for split in Split::ALL {
            let set = ds.split(split);
            if !set.is_empty() {
                let ids: Vec<&str> = set.ids.iter().take(3).map(String::as_str).collect();
                let _ = writeln!(
                    s,
                    "{:<9} {}{}",
                    format!("{split} ids"),
                    ids.join(", "),
                    if set.len() > 3 { ", ..." } else { "" }
                );
            }
        }
        let _ = writeln!(s, "fingerprint {}", ds.fingerprint());
        for note in &self.problems.notes {
            let _ = writeln!(s, "note: {note}");
        }
        if self.problems.total == 0 {
            let _ = writeln!(s, "problems: none");
        } else {
            let _ = writeln!(s, "problems: {} (entries with problems are left out above)", self.problems.total);
            for p in &self.problems.list {
                let _ = writeln!(s, "  {p}");
            }
            if self.problems.total > self.problems.list.len() {
                let _ = writeln!(s, "  ... and {} more", self.problems.total - self.problems.list.len());
            }
        }
        crate::escape::terminal(&s)
    }
}

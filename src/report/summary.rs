//! The summary printed at the end of `misfit audit`, `misfit score` and
//! `misfit report`: what each stage of the run recorded in `run.json`, then
//! the ten-second version of the report.

use serde::Serialize;
use std::path::Path;

use super::{findings, ClassRate, Correlation, Rate, ReportData};
use crate::attack::{AttackSummary, ClassSuccess};
use crate::findings::FindingsSummary;
use crate::run::columns::attacks::budget_label;
use crate::run::{RunManifest, SectionError};
use crate::score::ScoreInputs;
use crate::stages::data::DatasetSummary;
use crate::stages::evaluate::{ClassResult, Evaluation};
use crate::stages::model::ModelSummary;
use crate::stages::scores::ScoresSummary;

/// What each stage recorded, a few lines each, from the run's manifest.
fn stages(m: &RunManifest) -> Result<String, SectionError> {
    use std::fmt::Write;
    let mut s = String::new();
    let dataset = m.section::<DatasetSummary>()?;
    let inputs = m.section::<ScoreInputs>()?;
    let classes: Vec<String> = match (&dataset, &inputs) {
        (Some(d), _) => d.classes.clone(),
        (_, Some(i)) => i.classes.clone(),
        _ => Vec::new(),
    };
    let model = m.section::<ModelSummary>()?;
    let findings = m.section::<FindingsSummary>()?;
    // Findings kept by a rule of the run (None when findings did not run or
    // the rule is not among them).
    let shortlist = |rule: &str| findings.as_ref()?.rules.iter().find(|r| r.id == rule).map(|r| r.kept);
    if let Some(d) = &dataset {
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
    }
    if let Some(i) = &inputs {
        let _ = writeln!(s, "samples  {} ({} classes)", i.samples, i.classes.len());
    }
    if let Some(p) = &m.planted {
        let parts: Vec<String> = p.iter().map(|(k, v)| format!("{v} {k}")).collect();
        let _ = writeln!(s, "planted  {}", parts.join(", "));
    }
    for n in &m.notes {
        let _ = writeln!(s, "note     {n}");
    }
    if let Some(e) = m.section::<Evaluation>()? {
        let _ = writeln!(s, "test     accuracy {:.2}%", 100.0 * e.accuracy);
        // Classes without test images have no miss rate and are left out.
        let mut order: Vec<(&ClassResult, f64, f64, f64)> =
            e.classes.iter().filter_map(|c| Some((c, c.miss_rate?, c.miss_rate_low?, c.miss_rate_high?))).collect();
        order.sort_by(|a, b| b.1.total_cmp(&a.1));
        let parts: Vec<String> = order
            .iter()
            .take(5)
            .map(|(c, rate, low, high)| {
                format!("{} {:.1}% [{:.1}-{:.1}]", classes[c.class as usize], 100.0 * rate, 100.0 * low, 100.0 * high)
            })
            .collect();
        let _ = writeln!(s, "missed   most: {}", parts.join(", "));
    }
    if let Some(sc) = m.section::<ScoresSummary>()? {
        let f: Vec<String> = sc.flagged.iter().map(|(k, v)| format!("{v} {k}")).collect();
        // An imported model's training probabilities are in sample: its
        // training flags are weak evidence, and the findings keep a review
        // shortlist of them, as they do of the test split's flags.
        let in_sample = sc.flagged_test.is_some() && model.as_ref().is_some_and(|x| x.folds.is_none());
        let train = match (in_sample, shortlist("likely-mislabeled-in-sample")) {
            (true, Some(n)) => format!("train, in-sample probabilities: weak evidence; {n} on the review shortlist"),
            (true, None) => "train, in-sample probabilities: weak evidence".to_string(),
            (false, _) => match sc.mislabeled_cut.as_ref().and_then(|c| c.held_out.as_ref()) {
                Some(b) => format!(
                    "train; likely_mislabeled bounded by the test labels from {}, estimated precision {}{}",
                    b.unbounded_flagged,
                    b.estimated_precision.map_or("n/a".to_string(), |p| format!("{p:.2}")),
                    b.precision_low.map_or(String::new(), |p| format!(" (at least {p:.2} at 84% confidence)"))
                ),
                None => "train".to_string(),
            },
        };
        let _ = writeln!(s, "flagged  {} ({train}); {} duplicate pairs", f.join(", "), sc.duplicate_pairs);
        if let Some(t) = &sc.flagged_test {
            let f: Vec<String> = t.iter().map(|(k, v)| format!("{v} {k}")).collect();
            let test = match shortlist("test-likely-mislabeled") {
                Some(n) => format!("test; {n} on the review shortlist"),
                None => "test".to_string(),
            };
            let _ = writeln!(s, "         {} ({test})", f.join(", "));
        }
        if let Some(r) = &sc.recall {
            let line = match r.index.as_str() {
                "exact" => format!("exact search, {} neighbours per image", sc.config.k),
                "ivf" => format!(
                    "ivf recall@{} {:.3} at nprobe {} ({} queries checked)",
                    sc.config.k, r.recall, r.ef_search, r.queries
                ),
                other => format!(
                    "{other} recall@{} {:.3} at ef {} ({} queries checked)",
                    sc.config.k, r.recall, r.ef_search, r.queries
                ),
            };
            let _ = writeln!(s, "index    {line}");
            if !r.reached_target {
                let _ = writeln!(
                    s,
                    "         below the recall target {}: neighbours may be missing (--index exact finds them all)",
                    sc.config.recall_target
                );
            }
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
    if !m.timing_s.is_empty() && dataset.is_none() {
        let t: Vec<String> = m.timing_s.iter().map(|(k, v)| format!("{k} {v:.2} s")).collect();
        let _ = writeln!(s, "time     {}", t.join(", "));
    }
    if let Some(a) = m.section::<AttackSummary>()? {
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
                .map(|o| format!("{} {:.0}%", budget_label(&o.attack, o.budget), 100.0 * o.rate))
                .collect();
            let _ = writeln!(s, "attack   {name}: {}", parts.join("; "));
            // Per class at the smallest budget that flips some but not all.
            let pick = a.overall.iter().filter(|o| o.attack == name).find(|o| o.rate > 0.0 && o.rate < 1.0);
            if let Some(o) = pick {
                let mut rows: Vec<&ClassSuccess> =
                    a.per_class.iter().filter(|c| c.attack == name && c.budget == o.budget && c.attacked > 0).collect();
                rows.sort_by(|x, y| y.rate.total_cmp(&x.rate));
                let parts: Vec<String> =
                    rows.iter().map(|c| format!("{} {:.0}%", classes[c.class as usize], 100.0 * c.rate)).collect();
                let _ = writeln!(s, "         by class at {}: {}", budget_label(name, o.budget), parts.join(", "));
            }
        }
    }
    for t in &m.tables {
        let _ = writeln!(s, "table    {} ({} rows, one row = {})", t.file, t.rows, t.row);
    }
    Ok(s)
}

/// The summary of a run: what its stages recorded, and the ten-second
/// version of its report (the latter alone is `--json`'s output).
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// What each stage recorded, a few lines each (not in the JSON).
    #[serde(skip)]
    pub stages: String,
    pub run: String,
    pub accuracy: Option<f64>,
    pub most_missed: Vec<ClassRate>,
    pub most_attacked: Vec<ClassRate>,
    pub correlation: Option<Correlation>,
    pub flagged: Vec<(String, i64)>,
    pub top_findings: Vec<(String, String, usize, String)>,
    pub report: String,
    pub report_markdown: String,
    pub tables: String,
}

impl Summary {
    /// The summary of a rendered report, with what the stages recorded in
    /// `manifest` (a section of another shape, from another misfit, is
    /// named in a note instead).
    pub fn new(manifest: Option<&RunManifest>, data: &ReportData, html: &Path, md: &Path, dir: &Path) -> Summary {
        Summary {
            stages: manifest.map(|m| stages(m).unwrap_or_else(|e| format!("note     {e}\n"))).unwrap_or_default(),
            run: data.run.clone(),
            accuracy: data.accuracy,
            most_missed: data.most_missed.clone(),
            most_attacked: data.most_attacked.clone(),
            correlation: data.correlation.clone(),
            flagged: data.flag_counts.clone(),
            top_findings: data
                .rules
                .iter()
                .filter(|r| r.severity != "info")
                .take(5)
                .map(|r| (r.severity.clone(), r.id.clone(), r.matches, r.messages.first().cloned().unwrap_or_default()))
                .collect(),
            report: html.display().to_string(),
            report_markdown: md.display().to_string(),
            tables: dir.display().to_string(),
        }
    }

    /// As text: what the stages recorded, then the ten-second version.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let pct = |r: &Rate| {
            let ci = match (r.low, r.high) {
                (Some(l), Some(h)) => format!(" [{:.1}-{:.1}]", 100.0 * l, 100.0 * h),
                _ => String::new(),
            };
            format!("{:.1}%{ci}", 100.0 * r.rate)
        };
        let list =
            |v: &[ClassRate]| v.iter().map(|c| format!("{} {}", c.class, pct(&c.rate))).collect::<Vec<_>>().join(", ");
        let mut s = self.stages.clone();
        if !s.is_empty() {
            s.push('\n');
        }
        let _ = writeln!(s, "== {} ==", self.run);
        if let Some(a) = self.accuracy {
            let _ = writeln!(s, "accuracy        {:.2}% on the test split", 100.0 * a);
        }
        if !self.most_missed.is_empty() {
            let _ = writeln!(s, "most missed     {}", list(&self.most_missed));
        }
        if !self.most_attacked.is_empty() {
            let _ = writeln!(s, "most attacked   {} (mean untargeted success)", list(&self.most_attacked));
        }
        if let Some(c) = &self.correlation {
            let _ = writeln!(
                s,
                "correlation     miss rate ~ {}: rho {:.2} [{}, {}], p = {}{}",
                c.measure.trim_start_matches("attack_success:"),
                c.rho,
                c.low.map_or("?".into(), |v| format!("{v:.2}")),
                c.high.map_or("?".into(), |v| format!("{v:.2}")),
                findings::rules::num(c.p_value),
                if c.significant { "" } else { " (not significant)" }
            );
        }
        if !self.flagged.is_empty() {
            let f: Vec<String> = self.flagged.iter().map(|(k, n)| format!("{n} {k}")).collect();
            let _ = writeln!(s, "flagged         {}", f.join(", "));
        }
        for (sev, id, n, msg) in &self.top_findings {
            let short: String = msg.chars().take(150).collect();
            let more = if msg.chars().count() > 150 { "..." } else { "" };
            let _ = writeln!(s, "{sev:<15} {id} ({n}): {short}{more}");
        }
        let _ = writeln!(s, "report          {} (and {})", self.report, self.report_markdown);
        let _ = writeln!(s, "tables          {} (misfit query {} --tables)", self.tables, self.tables);
        crate::escape::terminal(&s)
    }
}

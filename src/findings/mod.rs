//! Findings: the analysis half, on the read side of the run folder. From
//! any run's tables (an audit's, a `misfit score` run's, an older run's) it
//! derives [`pairs`] (`pairs.parquet`: the evidence per ordered class pair)
//! and [`correlations`] (`correlations.parquet`: how misses, attacks and
//! flags go together, with intervals), then runs the [`rules`] (SQL over
//! every table, polars' SQL context) into `findings.parquet`: one row per
//! finding with its rule, severity, subject, message and evidence columns.
//! Everything is computed before anything is written: a rule that fails
//! leaves the run as it was.

pub mod causes;
pub mod correlations;
pub mod frame;
pub mod pairs;
pub mod rules;
pub mod verdict;

use crate::run::columns::findings::FINDINGS;
use arrow::array::RecordBatch;
use polars::prelude::{DataFrame, DataType, IntoLazy, LazyFrame, NamedFrom, ParquetReader, SerReader, Series};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;

use crate::error::{Error, Result};
use crate::run::read::Run;
use crate::run::schema;
use crate::run::table::{self, TableBuilder, TableMeta};
use crate::run::{TableEntry, MANIFEST};
pub use rules::{Rule, RuleSet, Severity, Subject};

/// What one rule did on one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleOutcome {
    /// The rule's id.
    pub id: String,
    /// Its file.
    pub file: String,
    /// Its severity.
    pub severity: String,
    /// Its title.
    pub title: String,
    /// Rows its query returned.
    pub matches: usize,
    /// Findings kept (at most its limit).
    pub kept: usize,
    /// Why it did not run (the run lacks a table it reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// What to do about its findings, in words (a ticket's suggested action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// `run.json`'s `findings` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FindingsSummary {
    /// Findings kept, by severity.
    pub by_severity: BTreeMap<String, usize>,
    /// Every rule, in order.
    pub rules: Vec<RuleOutcome>,
    /// Folders of rules added with `--rules`.
    #[serde(default)]
    pub rules_dirs: Vec<String>,
}

impl crate::run::Section for FindingsSummary {
    const KEY: &'static str = "findings";
}

/// The findings of one run, computed and not yet written.
pub struct Findings {
    /// `pairs.parquet`.
    pub pairs: RecordBatch,
    /// The same, as the rules and the report read it.
    pub pairs_frame: DataFrame,
    /// `correlations.parquet`.
    pub correlations: RecordBatch,
    /// The same, as the rules and the report read it.
    pub correlations_frame: DataFrame,
    /// `findings.parquet`.
    pub findings: RecordBatch,
    /// The same, for printing and filtering.
    pub frame: DataFrame,
    /// What each rule did.
    pub summary: FindingsSummary,
}

/// The findings of a run as the report and tickets read them: its
/// `pairs.parquet`, `correlations.parquet` and `findings.parquet` as
/// frames, and `run.json`'s findings section.
#[derive(Clone)]
pub struct Found {
    /// `pairs.parquet`: one row per ordered class pair.
    pub pairs: DataFrame,
    /// `correlations.parquet`: one row per measure pair.
    pub correlations: DataFrame,
    /// `findings.parquet`: one row per finding.
    pub findings: DataFrame,
    /// What each rule did.
    pub summary: FindingsSummary,
}

impl Findings {
    /// The findings just computed, as the read side uses them.
    pub fn found(&self) -> Found {
        Found {
            pairs: self.pairs_frame.clone(),
            correlations: self.correlations_frame.clone(),
            findings: self.frame.clone(),
            summary: self.summary.clone(),
        }
    }
}

/// The findings `run` holds: its three findings tables and `run.json`'s
/// findings section, as written by `misfit audit`, `misfit score` or
/// `misfit findings`. A run that holds none (written by the library with
/// findings turned off) gets them computed in memory under the shipped
/// rules; nothing is written. A run that holds some but not all of them
/// is refused: its findings cannot be told apart from a broken copy.
pub fn of_run(run: &Run) -> Result<Found> {
    let derived = ["pairs", "correlations", "findings"];
    let present = derived.iter().filter(|t| run.has(t)).count();
    let summary: Option<FindingsSummary> =
        match run.manifest_json().get(<FindingsSummary as crate::run::Section>::KEY) {
            Some(v) => Some(serde_json::from_value(v.clone()).map_err(|e| {
                Error::Usage(format!("{}: its findings section: {e}", run.dir().join(MANIFEST).display()))
            })?),
            None => None,
        };
    match (present, summary) {
        (0, None) => Ok(analyze(run, &RuleSet::load(None)?, &[])?.found()),
        (3, Some(summary)) => Ok(Found {
            pairs: collect(run, run.table("pairs")?)?,
            correlations: collect(run, run.table("correlations")?)?,
            findings: collect(run, run.table("findings")?)?,
            summary,
        }),
        _ => Err(Error::Usage(format!(
            "{}: the run holds part of its findings (pairs.parquet, correlations.parquet, findings.parquet and run.json's \
             findings section go together); run `misfit findings {}` to write them again",
            run.dir().display(),
            run.dir().display()
        ))),
    }
}

/// A lazy frame of `run` collected; a failure names the run folder.
pub(crate) fn collect(run: &Run, lf: LazyFrame) -> Result<DataFrame> {
    lf.collect().map_err(|e| Error::Usage(format!("{}: {e}", run.dir().display())))
}

/// The metadata every table of `run` carries, from its `run.json`.
pub fn table_meta(run: &Run) -> TableMeta {
    let m = run.manifest_json();
    TableMeta {
        config_json: m.get("config").map(|c| c.to_string()).unwrap_or_default(),
        dataset_fingerprint: m
            .get("dataset")
            .and_then(|d| d.get("fingerprint"))
            .and_then(|f| f.as_str())
            .unwrap_or_default()
            .to_string(),
    }
}

fn frame_of(bytes: &[u8]) -> Result<DataFrame> {
    ParquetReader::new(Cursor::new(bytes.to_vec()))
        .finish()
        .map_err(|e| Error::Usage(format!("reading back a table just written: {e}")))
}

/// Computes the pairs, correlations and findings of `run` under `rules`.
pub fn analyze(run: &Run, rules: &RuleSet, rules_dirs: &[String]) -> Result<Findings> {
    let meta = table_meta(run);
    let pairs = pairs::pairs(run)?;
    let correlations = correlations::correlations(run, correlations::Resampling::default())?;
    let bytes = |b: &RecordBatch| table::to_bytes(b, &meta).map_err(|e| Error::Usage(e.to_string()));
    let mut ctx = polars::sql::SQLContext::new();
    let derived = ["pairs", "correlations", "findings"];
    for name in run.tables().into_iter().filter(|n| !derived.contains(n)) {
        ctx.register(name, run.table(name)?);
    }
    let pairs_frame = frame_of(&bytes(&pairs)?)?;
    ctx.register("pairs", pairs_frame.clone().lazy());
    let correlations_frame = frame_of(&bytes(&correlations)?)?;
    ctx.register("correlations", correlations_frame.clone().lazy());
    let available: Vec<String> = ctx.get_tables();
    let env = rules::templates();
    // The run's name from run.json: findings are computed before the run is
    // moved into place (its folder then has a temporary name).
    let run_name = match run.manifest_json().get("run_name").and_then(|n| n.as_str()) {
        Some(name) => name.to_string(),
        None => run.dir().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    };

    let mut outcomes = Vec::new();
    let mut kept: Vec<Kept> = Vec::new();
    for rule in &rules.rules {
        let mut outcome = RuleOutcome {
            id: rule.id.clone(),
            file: rule.file.clone(),
            severity: rule.severity.as_str().into(),
            title: rule.title.clone(),
            matches: 0,
            kept: 0,
            skipped: None,
            action: rule.action.clone(),
        };
        let missing: Vec<&String> = rule.tables.iter().filter(|t| !available.contains(t)).collect();
        if !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            outcome.skipped = Some(format!("the run has no {} table", names.join(", ")));
            outcomes.push(outcome);
            continue;
        }
        let fail = |what: String| Error::Usage(format!("{}: rule '{}': {what}", rule.file, rule.id));
        // Checked on loading too; again here for a rule built in code.
        let names: Vec<&str> = available.iter().map(String::as_str).filter(|n| *n != "findings").collect();
        crate::sql::check(&rule.sql, &names, false).map_err(|e| fail(e.to_string()))?;
        let df = ctx
            .execute(&rule.sql)
            .and_then(|lf| lf.collect())
            .map_err(|e| fail(format!("polars: {e}; the run's tables: {}", available.join(", "))))?;
        let matches = df.height();
        let df = match rule.limit {
            Some(n) if n < matches => df.head(Some(n)),
            _ => df,
        };
        let columns: Vec<String> = df.get_column_names().iter().map(|c| c.to_string()).collect();
        for c in &columns {
            if FINDINGS.names().any(|n| n == c) {
                return Err(fail(format!(
                    "the query returns a column '{c}', a name findings.parquet keeps for itself; rename it (AS ...)"
                )));
            }
        }
        let subjects: Vec<String> = match &rule.subject_column {
            Some(c) if !columns.contains(c) => {
                return Err(fail(format!(
                    "the query returns no column '{c}' to name each finding's {}; it returns: {}",
                    rule.subject.as_str(),
                    columns.join(", ")
                )))
            }
            Some(c) => frame::strs(&df, c)?.into_iter().map(Option::unwrap_or_default).collect(),
            None => vec![run_name.clone(); df.height()],
        };
        let template = env.template_from_str(&rule.message).map_err(|e| fail(e.to_string()))?;
        let mut unknown: Vec<String> =
            template.undeclared_variables(false).into_iter().filter(|v| !columns.contains(v)).collect();
        unknown.sort();
        if !unknown.is_empty() {
            return Err(fail(format!(
                "the message uses {}, which the query does not return; the query returns: {}",
                unknown.join(", "),
                columns.join(", ")
            )));
        }
        let mut messages = Vec::with_capacity(df.height());
        for i in 0..df.height() {
            let row = df.get_row(i).map_err(|e| fail(e.to_string()))?;
            let ctx: BTreeMap<String, minijinja::Value> =
                columns.iter().cloned().zip(row.0.iter().map(|v| template_value(v))).collect();
            let message = template
                .render(&ctx)
                .map_err(|e| fail(format!("the message template: {e}; the query returns: {}", columns.join(", "))))?;
            messages.push(message);
        }
        outcome.matches = matches;
        outcome.kept = df.height();
        outcomes.push(outcome);
        kept.push(Kept { rule, rows: df, subjects, messages, matches });
    }

    // The evidence columns: every column a rule returned, typed alike across rules.
    let mut evidence: Vec<(String, DataType, Vec<String>)> = Vec::new();
    for Kept { rule, rows: df, .. } in &kept {
        for c in df.columns() {
            let t = c.dtype().clone();
            match evidence.iter_mut().find(|(n, ..)| n.as_str() == c.name().as_str()) {
                Some((n, have, by)) => {
                    *have = unify(have, &t).ok_or_else(|| {
                        Error::Usage(format!(
                            "{}: rule '{}' returns column '{n}' as {t}, rule(s) {} as {have}; rename one (AS ...)",
                            rule.file,
                            rule.id,
                            by.join(", ")
                        ))
                    })?;
                    by.push(rule.id.clone());
                }
                None => {
                    if frame::arrow_type(&t).is_none() {
                        return Err(Error::Usage(format!(
                            "{}: rule '{}': column '{}' is of type {t}; a finding's evidence is a number, a flag or text",
                            rule.file,
                            rule.id,
                            c.name()
                        )));
                    }
                    evidence.push((c.name().to_string(), t, vec![rule.id.clone()]));
                }
            }
        }
    }
    let rows: usize = kept.iter().map(|k| k.rows.height()).sum();
    let mut extra = Vec::new();
    for (name, t, by) in &evidence {
        let t = if *t == DataType::Null { DataType::String } else { t.clone() };
        let mut s = Series::full_null(name.as_str().into(), 0, &t);
        for Kept { rows: df, .. } in &kept {
            let part = match df.column(name) {
                Ok(c) => c.as_materialized_series().cast(&t).map_err(|e| Error::Usage(e.to_string()))?,
                Err(_) => Series::full_null(name.as_str().into(), df.height(), &t),
            };
            s.append(&part).map_err(|e| Error::Usage(e.to_string()))?;
        }
        debug_assert_eq!(s.len(), rows);
        let description = format!("evidence returned by rule(s) {}", by.join(", "));
        extra.push(frame::to_arrow(&s.into(), &description).map_err(Error::Usage)?);
    }
    let each = |f: &dyn Fn(&Rule, usize) -> String| -> Vec<String> {
        kept.iter().flat_map(|k| (0..k.rows.height()).map(move |i| f(k.rule, i))).collect()
    };
    let batch = TableBuilder::new(&FINDINGS)
        .utf8("rule", each(&|r, _| r.id.clone()))
        .utf8("title", each(&|r, _| r.title.clone()))
        .utf8("severity", each(&|r, _| r.severity.as_str().to_string()))
        .utf8("subject_kind", each(&|r, _| r.subject.as_str().to_string()))
        .utf8("subject", kept.iter().flat_map(|k| k.subjects.iter()))
        .utf8("message", kept.iter().flat_map(|k| k.messages.iter()))
        .i64("rule_matches", kept.iter().flat_map(|k| std::iter::repeat_n(k.matches as i64, k.rows.height())))
        .i64("rule_row", kept.iter().flat_map(|k| 1..=k.rows.height() as i64))
        .finish_table(&schema::FINDINGS);
    let findings = table::with_columns(batch, extra);
    let frame = frame_of(&bytes(&findings)?)?;
    let mut by_severity = BTreeMap::new();
    for Kept { rule, rows: df, .. } in &kept {
        *by_severity.entry(rule.severity.as_str().to_string()).or_insert(0) += df.height();
    }
    let summary = FindingsSummary { by_severity, rules: outcomes, rules_dirs: rules_dirs.to_vec() };
    Ok(Findings { pairs, pairs_frame, correlations, correlations_frame, findings, frame, summary })
}

/// One rule's findings: the rows its query returned (at most its limit),
/// each row's subject and message, and how many rows matched in all.
struct Kept<'r> {
    rule: &'r Rule,
    rows: DataFrame,
    subjects: Vec<String>,
    messages: Vec<String>,
    matches: usize,
}

/// The common type of an evidence column two rules return.
fn unify(a: &DataType, b: &DataType) -> Option<DataType> {
    match (a, b) {
        _ if a == b => Some(a.clone()),
        (DataType::Null, t) | (t, DataType::Null) => Some(t.clone()),
        (x, y) if x.is_integer() && y.is_integer() => Some(DataType::Int64),
        (x, y) if x.is_primitive_numeric() && y.is_primitive_numeric() => Some(DataType::Float64),
        _ => None,
    }
}

/// A cell as a template value (arrays as lists).
fn template_value(v: &polars::prelude::AnyValue) -> minijinja::Value {
    minijinja::Value::from_serialize(frame::json_value(v))
}

/// Writes the findings' three tables into the run folder (each under a
/// temporary name, renamed into place) and records them in `run.json`.
pub fn write(run: &Run, f: &Findings) -> Result<()> {
    let meta = table_meta(run);
    let written =
        [(&schema::PAIRS, &f.pairs), (&schema::CORRELATIONS, &f.correlations), (&schema::FINDINGS, &f.findings)];
    for (t, batch) in written {
        table::write(&run.dir().join(t.file), batch, &meta)?;
    }
    let path = run.dir().join(MANIFEST);
    let mut manifest = run
        .manifest()
        .ok_or_else(|| Error::Usage(format!("{}: not a manifest this misfit can update", path.display())))?;
    manifest.tables.retain(|t| !written.iter().any(|(s, _)| t.file == s.file));
    for (t, batch) in written {
        manifest.tables.push(TableEntry { file: t.file.into(), rows: batch.num_rows(), row: t.row.into() });
    }
    manifest.set(&f.summary);
    crate::atomic::write(&path, manifest.to_json().as_bytes())
}

/// Analyses the run folder `dir` under `rules` and writes its findings.
pub fn run(dir: &Path, rules: &RuleSet, rules_dirs: &[String]) -> Result<Findings> {
    let run = Run::open(dir)?;
    let f = analyze(&run, rules, rules_dirs)?;
    write(&run, &f)?;
    Ok(f)
}

/// The findings of a run being written (`dir`: where it is until it is
/// moved into place), for [`crate::run::RunWriter::commit_with`]: a rule
/// that fails says that the previous run of that name is left as it was.
pub fn before_commit(dir: &Path, rules: &RuleSet, rules_dirs: &[String]) -> Result<Findings> {
    run(dir, rules, rules_dirs).map_err(|e| {
        Error::Usage(format!(
            "{e}\nthe run was not written (a run of that name from before is left as it was); fix the rule and run again"
        ))
    })
}

/// The findings of `frame` (a `findings.parquet`) at `severity` or above,
/// of the `rules` named (all when empty), about `class` when given (the
/// subject, or any class-name column of the evidence, is the class).
pub fn filter(frame: &DataFrame, severity: Severity, rules: &[String], class: Option<&str>) -> Result<DataFrame> {
    use polars::prelude::{col, lit, Expr};
    let levels: Vec<&str> = [Severity::Info, Severity::Warn, Severity::Error]
        .into_iter()
        .filter(|s| *s >= severity)
        .map(|s| s.as_str())
        .collect();
    let mut keep: Expr = col("severity").is_in(lit(Series::new("".into(), levels)).implode(false), false);
    if !rules.is_empty() {
        keep = keep.and(col("rule").is_in(lit(Series::new("".into(), rules.to_vec())).implode(false), false));
    }
    if let Some(class) = class {
        let mut about = col("subject").eq(lit(class));
        for c in ["class_name", "label_name", "given_name", "other_name", "suggested_label_name", "pred_name"] {
            if frame::has(frame, c) {
                about = about.or(col(c).eq(lit(class)).fill_null(lit(false)));
            }
        }
        keep = keep.and(about);
    }
    frame.clone().lazy().filter(keep).collect().map_err(|e| Error::Usage(e.to_string()))
}

/// The findings as a person reads them: per rule (most severe first), its
/// severity, id, count and title, then up to `show` messages.
pub fn overview(frame: &DataFrame, summary: &FindingsSummary, show: usize) -> Result<String> {
    use std::fmt::Write;
    let (rule, message) = (frame::strs(frame, "rule")?, frame::strs(frame, "message")?);
    let matches = frame::i64s(frame, "rule_matches")?;
    let mut order: Vec<&RuleOutcome> = summary.rules.iter().collect();
    order.sort_by_key(|r| std::cmp::Reverse(Severity::parse(&r.severity)));
    let mut s = String::new();
    for r in order {
        let rows: Vec<usize> = (0..frame.height()).filter(|&i| rule[i].as_deref() == Some(r.id.as_str())).collect();
        if rows.is_empty() {
            continue;
        }
        let total = matches[rows[0]].unwrap_or(0) as usize;
        let kept = if total > rows.len() { format!(" ({} kept)", rows.len()) } else { String::new() };
        let _ = writeln!(
            s,
            "{:<6} {}: {} finding{}{kept}: {}",
            r.severity,
            r.id,
            total,
            if total == 1 { "" } else { "s" },
            r.title
        );
        for &i in rows.iter().take(show) {
            let _ = writeln!(s, "       {}", message[i].as_deref().unwrap_or_default());
        }
        if rows.len() > show {
            let _ = writeln!(s, "       ... {} more", rows.len() - show);
        }
    }
    let quiet: Vec<String> =
        summary.rules.iter().filter(|r| r.skipped.is_none() && r.kept == 0).map(|r| r.id.clone()).collect();
    if !quiet.is_empty() {
        let _ = writeln!(s, "clear  {}", quiet.join(", "));
    }
    for r in summary.rules.iter().filter(|r| r.skipped.is_some()) {
        let _ = writeln!(s, "skip   {}: {}", r.id, r.skipped.as_deref().unwrap_or_default());
    }
    Ok(crate::escape::terminal(&s))
}

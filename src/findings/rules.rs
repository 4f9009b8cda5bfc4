//! Rules: TOML files of SQL queries over a run's tables, each row a query
//! returns being one finding (SodaCL's failed-rows checks), with a
//! severity (Great Expectations' info/warning/error, and its free-form
//! `meta`). The rules shipped with misfit live in `rules/` and are built
//! into the binary; `--rules DIR` adds the `*.toml` files of DIR, and a rule
//! of DIR with a shipped rule's id replaces it.
//!
//! ```toml
//! [[rule]]
//! id = "train-test-duplicates"
//! title = "Test images that copy training images"
//! severity = "error"             # info, warn or error
//! subject = "image"              # image, class, pair or run
//! subject_column = "id_b"        # default: id, class_name, pair, none
//! sql = "SELECT id_a, id_b, kind FROM duplicates WHERE split_b = 'test'"
//! message = "{{ id_b }} (test) is a {{ kind }} copy of {{ id_a }} (train)"
//! limit = 200                    # findings kept; the number of matches is kept too
//! action = "Remove them from the test split."   # a ticket's suggested action
//! [rule.meta]                    # anything; not read by misfit
//! owner = "data-team"
//! ```
//!
//! Everything that can be checked without a run (TOML, fields, the message
//! template, and the SQL as [`crate::sql::check`] checks it: one SELECT
//! query that reads the contract's tables and no file, bounded in size and
//! depth) is checked on loading, so `misfit audit` refuses a bad rule
//! before it trains.

use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::run::schema;

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warn,
    Error,
}

impl Severity {
    /// `info`, `warn` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Error => "error",
        }
    }

    /// Parses `info`, `warn` (or `warning`) or `error`.
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warn" | "warning" => Some(Severity::Warn),
            "error" => Some(Severity::Error),
            _ => None,
        }
    }
}

/// What a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    Image,
    Class,
    Pair,
    Run,
}

impl Subject {
    /// `image`, `class`, `pair` or `run`.
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::Image => "image",
            Subject::Class => "class",
            Subject::Pair => "pair",
            Subject::Run => "run",
        }
    }

    /// The column a finding's subject is read from unless the rule names one.
    fn default_column(self) -> Option<&'static str> {
        match self {
            Subject::Image => Some("id"),
            Subject::Class => Some("class_name"),
            Subject::Pair => Some("pair"),
            Subject::Run => None,
        }
    }
}

/// One rule as written in TOML.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    id: String,
    title: String,
    severity: Severity,
    subject: Subject,
    #[serde(default)]
    subject_column: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    action: Option<String>,
    sql: String,
    message: String,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    meta: Option<toml::Table>,
}

/// A rules file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<RuleToml>,
}

/// One rule, checked.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Unique id (`likely-mislabeled`).
    pub id: String,
    /// A one-line title.
    pub title: String,
    /// Severity of each finding.
    pub severity: Severity,
    /// What each finding is about.
    pub subject: Subject,
    /// The column each finding's subject is read from (None: the run).
    pub subject_column: Option<String>,
    /// What the rule checks and why, in words.
    pub description: Option<String>,
    /// What to do about a finding, in words (a ticket's suggested action).
    pub action: Option<String>,
    /// The query: every row it returns is one finding.
    pub sql: String,
    /// The message template (minijinja), filled from each row's columns.
    pub message: String,
    /// Findings kept (the first rows the query returns); None = all.
    pub limit: Option<usize>,
    /// The contract's tables the query reads: the rule is skipped on a run without one.
    pub tables: Vec<String>,
    /// The file the rule came from (`rules/images.toml` for a shipped rule).
    pub file: String,
    /// Free-form metadata, kept as TOML.
    pub meta: Option<toml::Table>,
}

/// The rules shipped with misfit, built into the binary.
pub const SHIPPED: &[(&str, &str)] = &[
    ("rules/images.toml", include_str!("../../rules/images.toml")),
    ("rules/classes.toml", include_str!("../../rules/classes.toml")),
    ("rules/pairs.toml", include_str!("../../rules/pairs.toml")),
    ("rules/run.toml", include_str!("../../rules/run.toml")),
    ("rules/explain.toml", include_str!("../../rules/explain.toml")),
    ("rules/influence.toml", include_str!("../../rules/influence.toml")),
];

/// A checked set of rules, in file order.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

fn bad(file: &str, id: Option<&str>, what: impl std::fmt::Display) -> Error {
    match id {
        Some(id) => Error::Usage(format!("{file}: rule '{id}': {what}")),
        None => Error::Usage(format!("{file}: {what}")),
    }
}

impl RuleSet {
    /// The shipped rules, then the `*.toml` files of `dir` (in name order)
    /// when given: a rule of `dir` with a shipped rule's id replaces it.
    pub fn load(dir: Option<&Path>) -> Result<RuleSet> {
        let mut set = RuleSet::default();
        for (file, text) in SHIPPED {
            set.add_file(file, text)?;
        }
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(bad(&dir.display().to_string(), None, "no *.toml rule files in this folder"));
            }
            for f in files {
                let text = std::fs::read_to_string(&f).map_err(|e| Error::io(&f, e))?;
                set.add_file(&f.display().to_string(), &text)?;
            }
        }
        Ok(set)
    }

    /// Adds the rules of one file (`file` names it in messages).
    pub fn add_file(&mut self, file: &str, text: &str) -> Result<()> {
        let parsed: RulesFile = toml::from_str(text).map_err(|e| bad(file, None, e.to_string().trim_end()))?;
        if parsed.rule.is_empty() {
            return Err(bad(file, None, "no [[rule]] tables"));
        }
        let mut seen = BTreeSet::new();
        for r in parsed.rule {
            if !seen.insert(r.id.clone()) {
                return Err(bad(file, Some(&r.id), "a second rule with this id in the same file"));
            }
            let rule = check(file, r)?;
            match self.rules.iter_mut().find(|x| x.id == rule.id) {
                Some(old) => *old = rule,
                None => self.rules.push(rule),
            }
        }
        Ok(())
    }
}

/// The tables a rule may read: the contract's.
fn known_tables() -> Vec<&'static str> {
    schema::TABLES.iter().map(|t| t.name).collect()
}

fn check(file: &str, r: RuleToml) -> Result<Rule> {
    let id = r.id.as_str();
    let fail = |what: String| bad(file, Some(id), what);
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(bad(file, None, format!("rule id '{id}': use letters, digits, '-' and '_'")));
    }
    if r.title.trim().is_empty() {
        return Err(fail("empty title".into()));
    }
    if r.limit == Some(0) {
        return Err(fail("limit = 0 would keep no finding; leave it out to keep them all".into()));
    }
    let known = known_tables();
    let checked = crate::sql::check(&r.sql, &known, false).map_err(|e| fail(e.to_string()))?;
    if checked.tables.iter().any(|t| t == "findings") {
        return Err(fail(
            "the query reads 'findings': rules read the run's measurements, not other rules' findings".into(),
        ));
    }
    let tables = checked.tables;
    let mut env = templates();
    env.add_template_owned(id.to_string(), r.message.clone())
        .map_err(|e| fail(format!("the message template does not parse: {e}")))?;
    let subject_column = match (&r.subject_column, r.subject.default_column()) {
        (Some(c), _) => Some(c.clone()),
        (None, d) => d.map(str::to_string),
    };
    Ok(Rule {
        id: r.id.clone(),
        title: r.title,
        severity: r.severity,
        subject: r.subject,
        subject_column,
        description: r.description,
        action: r.action,
        sql: r.sql,
        message: r.message,
        limit: r.limit,
        tables,
        file: file.to_string(),
        meta: r.meta,
    })
}

/// The template environment messages are rendered in: a column the row
/// lacks is an error, not an empty string; filters `pct` (0.079 -> 7.9%)
/// and `num` (3 significant figures, whole numbers as they are).
pub fn templates() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_filter("pct", |v: Option<f64>| match v {
        Some(v) => format!("{:.1}%", 100.0 * v),
        None => "n/a".to_string(),
    });
    env.add_filter("num", |v: Option<f64>| match v {
        Some(v) => num(v),
        None => "n/a".to_string(),
    });
    env
}

/// A number to 3 significant figures, without trailing zeros (whole numbers in full).
pub fn num(v: f64) -> String {
    if (v == v.trunc() && v.abs() < 1e15) || v.abs() >= 100.0 {
        return format!("{v:.0}");
    }
    let digits = (2 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
    let s = format!("{v:.digits$}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> std::result::Result<RuleSet, String> {
        let mut set = RuleSet::default();
        set.add_file("rules/x.toml", text).map(|_| set).map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
[[rule]]
id = "r1"
title = "t"
severity = "warn"
subject = "image"
sql = "SELECT id FROM samples WHERE outlier"
message = "{{ id }} is far"
"#;

    #[test]
    fn the_shipped_rules_load() {
        let set = RuleSet::load(None).unwrap();
        assert!(set.rules.len() >= 9, "{}", set.rules.len());
        assert!(set.rules.iter().all(|r| !r.tables.is_empty()));
    }

    #[test]
    fn a_good_rule_loads_with_its_tables_and_subject_column() {
        let set = one(GOOD).unwrap();
        assert_eq!(set.rules[0].tables, vec!["samples"]);
        assert_eq!(set.rules[0].subject_column.as_deref(), Some("id"));
    }

    #[test]
    fn bad_rules_are_refused_naming_the_file_the_rule_and_what_is_wrong() {
        let cases = [
            (GOOD.replace("severity = \"warn\"", "severity = \"fatal\""), "rules/x.toml: ", "fatal"),
            (GOOD.replace("SELECT id FROM", "SELEC id FROM"), "rules/x.toml: rule 'r1': the SQL does not parse", ""),
            (GOOD.replace("FROM samples", "FROM sample"), "rule 'r1': the query reads 'sample'", "tables: samples"),
            (
                GOOD.replace("SELECT id FROM samples WHERE outlier", "DROP TABLE samples"),
                "rule 'r1': the SQL must be a SELECT query (not DROP TABLE)",
                "",
            ),
            (GOOD.replace("{{ id }}", "{{ id "), "rule 'r1': the message template does not parse", ""),
            (GOOD.replace("id = \"r1\"", "id = \"r1\"\nwhat = 1"), "rules/x.toml: ", "unknown field `what`"),
            (format!("{GOOD}{GOOD}"), "rule 'r1': a second rule with this id", ""),
            (GOOD.replace("message = ", "limit = 0\nmessage = "), "rule 'r1': limit = 0", ""),
            // A CTE named after the table function passed the old check.
            (
                GOOD.replace(
                    "SELECT id FROM samples WHERE outlier",
                    "WITH read_parquet AS (SELECT 1 AS x) SELECT * FROM read_parquet('/etc/secret.parquet')",
                ),
                "rule 'r1': the query defines a CTE named 'read_parquet'",
                "",
            ),
            (
                GOOD.replace(
                    "SELECT id FROM samples WHERE outlier",
                    "SELECT * FROM read_parquet('../*/samples.parquet')",
                ),
                "rule 'r1': the query reads 'read_parquet(...)', a table function",
                "",
            ),
            (
                GOOD.replace(
                    "WHERE outlier",
                    &format!("WHERE {}", (0..1000).map(|i| format!("id = 'x{i}'")).collect::<Vec<_>>().join(" OR ")),
                ),
                "rule 'r1': the SQL nests expressions deeper than 200 levels",
                "",
            ),
        ];
        for (text, start, also) in cases {
            let e = one(&text).unwrap_err();
            assert!(e.contains(start) && e.contains(also), "{e}");
        }
    }

    #[test]
    fn a_cte_is_not_a_missing_table() {
        let text = GOOD.replace(
            "SELECT id FROM samples WHERE outlier",
            "WITH far AS (SELECT id FROM samples WHERE outlier) SELECT id FROM far",
        );
        assert_eq!(one(&text).unwrap().rules[0].tables, vec!["samples"]);
    }

    #[test]
    #[allow(clippy::approx_constant)] // 3.14159 is a number with many digits here, not pi
    fn numbers_read_as_a_person_writes_them() {
        assert_eq!(num(212.0), "212");
        assert_eq!(num(0.078947), "0.0789");
        assert_eq!(num(3.14159), "3.14");
        assert_eq!(num(0.000_499_75), "0.0005");
        assert_eq!(num(12.04), "12");
        assert_eq!(num(123.456), "123");
        let env = templates();
        let s = env.render_str("{{ x | pct }} {{ y | num }}", minijinja::context! { x => 0.0789, y => 0.5 }).unwrap();
        assert_eq!(s, "7.9% 0.5");
    }
}

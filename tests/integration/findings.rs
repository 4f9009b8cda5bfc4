//! Findings, rules and queries on the read side: pairs.parquet,
//! correlations.parquet and findings.parquet from a run folder written
//! without training (the fixture) and from a `misfit score` run; rules that
//! fail; `misfit query` in every format; the tables read by Python Polars.

use polars::prelude::*;
use std::path::{Path, PathBuf};
use tempfile::tempdir;

use misfit::findings::{self, RuleSet};
use misfit::run::read::Run;

use crate::fixture::write_run;
use crate::util::{misfit, text};

fn read_parquet(p: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(p).unwrap()).finish().unwrap()
}

fn write_rules(dir: &Path, name: &str, text: &str) -> PathBuf {
    let rules = dir.join("my-rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join(name), text).unwrap();
    rules
}

const CLASS_RULE: &str = r#"
[[rule]]
id = "every-class"
title = "Every class, with its misses"
severity = "info"
subject = "class"
sql = "SELECT class_name, test_misses, miss_rate, train_images > 0 AS has_train FROM classes ORDER BY class"
message = "{{ class_name }}: {{ test_misses }} misses ({{ miss_rate | pct }})"
limit = 4
[rule.meta]
owner = "tests"
"#;

#[test]
fn findings_of_a_run_are_typed_tables_recorded_in_run_json_and_reproducible() {
    let dir = tempdir().unwrap();
    let (run_dir, _) = write_run(&dir.path().join("outputs"), "fx");
    let rules_dir = write_rules(dir.path(), "mine.toml", CLASS_RULE);
    let rules = RuleSet::load(Some(&rules_dir)).unwrap();
    let dirs = vec![rules_dir.display().to_string()];
    let f = findings::run(&run_dir, &rules, &dirs).unwrap();
    let run = Run::open(&run_dir).unwrap();
    for t in ["pairs", "correlations", "findings"] {
        assert!(run.has(t), "{t}");
        run.table(t).unwrap().collect().unwrap();
    }
    // run.json lists the three tables once and says what each rule did.
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("run.json")).unwrap()).unwrap();
    let files: Vec<&str> = m["tables"].as_array().unwrap().iter().map(|t| t["file"].as_str().unwrap()).collect();
    for t in ["pairs.parquet", "correlations.parquet", "findings.parquet"] {
        assert_eq!(files.iter().filter(|f| **f == t).count(), 1, "{files:?}");
    }
    let outcome = m["findings"]["rules"].as_array().unwrap().iter().find(|r| r["id"] == "every-class").unwrap().clone();
    assert_eq!((outcome["matches"].as_u64(), outcome["kept"].as_u64()), (Some(10), Some(4)));
    assert_eq!(m["findings"]["rules_dirs"][0], rules_dir.display().to_string());

    // Evidence columns keep their types: no JSON text.
    let df = read_parquet(&run_dir.join("findings.parquet"));
    let mine = df.clone().lazy().filter(col("rule").eq(lit("every-class"))).collect().unwrap();
    assert_eq!(mine.height(), 4);
    assert_eq!(mine.column("test_misses").unwrap().dtype(), &DataType::Int64);
    assert_eq!(mine.column("miss_rate").unwrap().dtype(), &DataType::Float64);
    assert_eq!(mine.column("has_train").unwrap().dtype(), &DataType::Boolean);
    assert_eq!(mine.column("rule_matches").unwrap().i64().unwrap().get(0), Some(10));
    let subjects: Vec<Option<&str>> = mine.column("subject").unwrap().str().unwrap().iter().collect();
    assert_eq!(subjects[0], Some("checker"));
    let message = mine.column("message").unwrap().str().unwrap().get(0).unwrap().to_string();
    assert!(message.starts_with("checker: ") && message.ends_with("%)"), "{message}");
    assert_eq!(f.frame.height(), df.height());

    // The pairs table covers the test confusions; the correlations have intervals that hold their estimate.
    let pairs = read_parquet(&run_dir.join("pairs.parquet"));
    let confusion = read_parquet(&run_dir.join("confusion.parquet"));
    let off: i64 = confusion
        .lazy()
        .filter(col("given").neq(col("predicted")))
        .select([col("count").sum()])
        .collect()
        .unwrap()
        .column("count")
        .unwrap()
        .i64()
        .unwrap()
        .get(0)
        .unwrap();
    let in_pairs: i64 = pairs.column("test_confusions").unwrap().i64().unwrap().sum().unwrap();
    assert_eq!(in_pairs, off);
    let corr = read_parquet(&run_dir.join("correlations.parquet"));
    assert!(corr.height() > 0);
    let bad = corr
        .clone()
        .lazy()
        .filter(
            col("ci_low")
                .gt(col("ci_high"))
                .or(col("estimate").lt(lit(-1.0)))
                .or(col("estimate").gt(lit(1.0)))
                .or(col("p_value").lt_eq(lit(0.0)))
                .or(col("p_value").gt(lit(1.0))),
        )
        .collect()
        .unwrap();
    assert_eq!(bad.height(), 0, "{bad}");
    let scopes: Vec<Option<&str>> = corr.column("scope").unwrap().str().unwrap().iter().collect();
    assert!(scopes.contains(&Some("classes")) && scopes.contains(&Some("images")));

    // The same run and rules again: the same bytes.
    let before: Vec<Vec<u8>> = ["pairs", "correlations", "findings"]
        .iter()
        .map(|t| std::fs::read(run_dir.join(format!("{t}.parquet"))).unwrap())
        .collect();
    findings::run(&run_dir, &rules, &dirs).unwrap();
    let after: Vec<Vec<u8>> = ["pairs", "correlations", "findings"]
        .iter()
        .map(|t| std::fs::read(run_dir.join(format!("{t}.parquet"))).unwrap())
        .collect();
    assert!(before == after, "same run, same rules: same bytes");
}

#[test]
fn a_rule_that_fails_names_its_file_and_id_quotes_polars_and_writes_nothing() {
    let dir = tempdir().unwrap();
    let (run_dir, _) = write_run(&dir.path().join("outputs"), "fx");
    let derived = ["run.json", "pairs.parquet", "correlations.parquet", "findings.parquet"];
    let before: Vec<Vec<u8>> = derived.iter().map(|f| std::fs::read(run_dir.join(f)).unwrap()).collect();
    let run = run_dir.to_str().unwrap();
    let cases = [
        (
            CLASS_RULE.replace("SELECT class_name, test_misses", "SELECT class_name, no_such_column"),
            vec!["bad.toml: rule 'every-class': polars:", "no_such_column"],
        ),
        (
            CLASS_RULE.replace("{{ test_misses }}", "{{ test_mises }}"),
            vec!["rule 'every-class': the message uses test_mises", "the query returns: class_name, test_misses"],
        ),
        (
            CLASS_RULE.replace("subject = \"class\"", "subject = \"class\"\nsubject_column = \"name\""),
            vec!["no column 'name'"],
        ),
        (CLASS_RULE.replace("[[rule]]", "[[rule]"), vec!["bad.toml: "]),
        (CLASS_RULE.replace("FROM classes", "FROM klasses"), vec!["rule 'every-class': the query reads 'klasses'"]),
        (CLASS_RULE.replace("test_misses, miss_rate", "test_misses AS rule, miss_rate"), vec!["a column 'rule'"]),
    ];
    for (rule, expect) in cases {
        let rules = write_rules(dir.path(), "bad.toml", &rule);
        let o = misfit(&["findings", run, "--rules", rules.to_str().unwrap()], dir.path());
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.starts_with("error: "), "{err}");
        for e in expect {
            assert!(err.contains(e), "{e} not in: {err}");
        }
        let after: Vec<Vec<u8>> = derived.iter().map(|f| std::fs::read(run_dir.join(f)).unwrap()).collect();
        assert!(before == after, "a failed rule changed the run");
    }
    // An audit with a bad rule stops before it starts.
    let rules =
        write_rules(dir.path(), "bad.toml", &CLASS_RULE.replace("severity = \"info\"", "severity = \"urgent\""));
    let o = misfit(&["audit", "--rules", rules.to_str().unwrap(), "--outputs", "out2"], dir.path());
    assert!(!o.status.success() && text(&o).contains("bad.toml"), "{}", text(&o));
    assert!(!dir.path().join("out2").exists());
}

#[test]
fn findings_filter_by_severity_rule_and_class_and_print_csv_and_json() {
    let dir = tempdir().unwrap();
    let (run_dir, _) = write_run(&dir.path().join("outputs"), "fx");
    let rules = write_rules(dir.path(), "mine.toml", CLASS_RULE);
    let (run, rules) = (run_dir.to_str().unwrap(), rules.to_str().unwrap());
    let o = misfit(&["findings", run, "--rules", rules, "--rule", "every-class"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("info   every-class: 10 findings (4 kept): Every class, with its misses"), "{out}");
    assert!(out.contains("       checker: "), "{out}");
    let o = misfit(&["findings", run, "--rules", rules, "--class", "cross", "--format", "json"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(rows.iter().any(|r| r["rule"] == "every-class" && r["subject"] == "cross"), "{rows:?}");
    assert!(rows.iter().all(|r| {
        ["subject", "class_name", "label_name", "given_name", "other_name", "suggested_label_name", "pred_name"]
            .iter()
            .any(|c| r[c] == "cross")
    }));
    let o = misfit(&["findings", run, "--rules", rules, "--severity", "error", "--format", "csv"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let mut csv = csv::Reader::from_reader(out.as_bytes());
    let header = csv.headers().unwrap().clone();
    let severity = header.iter().position(|h| h == "severity").unwrap();
    assert!(csv.records().all(|r| &r.unwrap()[severity] == "error"), "{out}");
    let o = misfit(&["findings", run, "--severity", "loud"], dir.path());
    assert!(!o.status.success() && text(&o).contains("--severity loud"), "{}", text(&o));
}

#[test]
fn query_prints_a_table_csv_json_or_parquet_and_bad_sql_gets_polars_message_and_the_tables() {
    let dir = tempdir().unwrap();
    let (run_dir, _) = write_run(&dir.path().join("outputs"), "fx");
    let run = run_dir.to_str().unwrap();
    let sql = "SELECT class_name, miss_rate FROM classes ORDER BY miss_rate DESC, class_name LIMIT 3";
    let o = misfit(&["query", run, sql], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("shape: (3, 2)") && out.contains("class_name"), "{out}");
    let o = misfit(&["query", run, sql, "--format", "csv"], dir.path());
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(out.lines().count(), 4, "{out}");
    assert_eq!(out.lines().next(), Some("class_name,miss_rate"));
    let o = misfit(&["query", run, "SELECT id, probs FROM samples LIMIT 2", "--format", "json"], dir.path());
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["probs"].as_array().unwrap().len(), 10);
    let out_file = dir.path().join("top.parquet");
    let o = misfit(
        &[
            "query",
            run,
            "SELECT id, probs FROM samples WHERE split = 'test'",
            "--format",
            "parquet",
            "--out",
            out_file.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let df = read_parquet(&out_file);
    assert_eq!(df.column("probs").unwrap().dtype(), &DataType::Array(Box::new(DataType::Float32), 10));
    let o = misfit(&["query", run, "SELECT * FROM samples", "--format", "parquet"], dir.path());
    assert!(!o.status.success() && text(&o).contains("--out FILE"), "{}", text(&o));

    let o = misfit(&["query", run, "SELECT nope FROM classes"], dir.path());
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nope") && err.contains("the run's tables: samples, classes"), "{err}");
    let o = misfit(&["query", run, "SELEC 1"], dir.path());
    assert!(!o.status.success() && text(&o).contains("the SQL does not parse"), "{}", text(&o));
    let o = misfit(&["query", dir.path().to_str().unwrap(), "SELECT 1"], dir.path());
    assert!(!o.status.success() && text(&o).contains("not a misfit run folder"), "{}", text(&o));

    let o = misfit(&["query", run, "--tables"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("samples (samples.parquet, "), "{out}");
    assert!(out.contains("miss_rate") && out.contains("test misses over test images"), "{out}");
}

/// A `misfit score` run from generated files (4 classes, 10% of labels flipped).
fn score_run(dir: &Path) -> PathBuf {
    misfit::bench::score::generate(dir, 600, 4, 16, 0.1, 5).unwrap();
    let args = ["score", "--probs", "probs.npy", "--labels", "labels.npy", "--embeddings", "embeddings.npy"];
    let o = misfit(&[&args[..], &["--classes", "a,b,c,d"]].concat(), dir);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("report.html"), "{}", text(&o));
    dir.join("outputs/score")
}

#[test]
fn a_score_run_gets_the_findings_that_apply_and_skips_the_rest() {
    let dir = tempdir().unwrap();
    let run_dir = score_run(dir.path());
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("run.json")).unwrap()).unwrap();
    let rules = m["findings"]["rules"].as_array().unwrap();
    let rule = |id: &str| rules.iter().find(|r| r["id"] == id).unwrap().clone();
    assert!(rule("train-test-duplicates")["skipped"].as_str().unwrap().contains("duplicates"));
    assert!(rule("missed-and-attacked")["skipped"].is_string());
    assert!(rule("likely-mislabeled")["matches"].as_u64().unwrap() > 20, "{}", rule("likely-mislabeled"));
    let df = read_parquet(&run_dir.join("findings.parquet"));
    let flagged = df.lazy().filter(col("rule").eq(lit("likely-mislabeled"))).collect().unwrap();
    assert!(flagged.column("suggested_confidence").unwrap().dtype().is_float());
    let pairs = read_parquet(&run_dir.join("pairs.parquet"));
    assert!(pairs.column("test_confusions").unwrap().null_count() == pairs.height());
    assert!(pairs.column("suggested_relabels").unwrap().i64().unwrap().sum().unwrap() > 0);
}

/// A Python with polars: `MISFIT_PYTHON`, or the first `python3` that imports it.
fn python_with_polars() -> Option<String> {
    let candidates: Vec<String> =
        std::env::var("MISFIT_PYTHON").ok().into_iter().chain(["python3".to_string()]).collect();
    candidates.into_iter().find(|p| {
        std::process::Command::new(p).args(["-c", "import polars"]).output().is_ok_and(|o| o.status.success())
    })
}

/// The Python examples of the README and docs/run-folder.md, verbatim, and
/// every table of a demo-dataset run and of a score run read by Python Polars
/// with the types a Polars user relies on.
#[test]
fn python_polars_reads_every_table_and_runs_the_readme_examples() {
    if std::env::var_os("MISFIT_SKIP_PYTHON").is_some() {
        println!("SKIPPED: MISFIT_SKIP_PYTHON is set");
        return;
    }
    let python = python_with_polars().expect(
        "no Python with polars: .ci/run makes one (python3 -m venv .ci/venv && .ci/venv/bin/pip install polars), \
         then set MISFIT_PYTHON=.ci/venv/bin/python; or MISFIT_SKIP_PYTHON=1 to skip this test knowingly",
    );
    let dir = tempdir().unwrap();
    let outputs = dir.path().join("outputs");
    let (demo, _) = write_run(&outputs, "demo");
    score_run(dir.path());
    let docs: Vec<String> = ["README.md", "docs/run-folder.md"]
        .iter()
        .map(|f| std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(f)).unwrap())
        .collect();
    let blocks: Vec<&str> =
        docs.iter().flat_map(|d| d.split("```python\n").skip(1).map(|b| b.split("```").next().unwrap())).collect();
    assert!(blocks.len() >= 2, "the README's and docs/run-folder.md's Python examples");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/read_tables.py");
    std::fs::write(dir.path().join("readme_examples.py"), blocks.join("\n")).unwrap();
    let o = std::process::Command::new(&python)
        .args([script, "outputs/demo", "outputs/score", "readme_examples.py"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let tables = Run::open(&demo).unwrap().tables().len();
    assert!(tables >= 13, "{tables}");
    assert!(out.contains(&format!("read {tables} tables of outputs/demo")), "{out}");
    assert!(out.contains("read 7 tables of outputs/score") && out.contains("ran the README examples"), "{out}");
}

//! The run folder contract: the tables a run writes are the ones
//! `src/run/schema.rs` lists, with its columns, and the read side opens
//! audit runs, score runs and damaged or older runs with errors that name
//! the run folder and the table.

use polars::prelude::*;
use std::collections::BTreeSet;
use tempfile::tempdir;

use crate::fixture;
use misfit::run::read::{ReadError, Run};
use misfit::run::schema::{self, TABLES};

/// The error of a read that must fail.
fn err<T>(r: Result<T, ReadError>) -> ReadError {
    match r {
        Ok(_) => panic!("the read should have failed"),
        Err(e) => e,
    }
}

fn names(df: &DataFrame) -> Vec<String> {
    df.get_column_names().iter().map(|c| c.to_string()).collect()
}

#[test]
fn a_run_written_in_code_reads_back_table_by_table_through_the_read_side() {
    let dir = tempdir().unwrap();
    let (path, manifest) = fixture::write_run(dir.path(), "fixture");
    let run = Run::open(&path).unwrap();
    // Every table of the contract is there (the fixture runs every stage),
    // with exactly the contract's columns in its order and run.json's row count.
    assert_eq!(run.tables(), TABLES.iter().map(|t| t.name).collect::<Vec<_>>());
    for t in TABLES {
        let df = run.table(t.name).unwrap().collect().unwrap();
        // The contract's columns, in order, then columns named at run time
        // (classes: success per attack and budget) or by the rules (findings' evidence).
        let all = names(&df);
        let fixed: Vec<&str> = t.names().collect();
        assert_eq!(&all[..fixed.len()], &fixed[..], "{}", t.file);
        for extra in &all[fixed.len()..] {
            assert!(t.name == "findings" || t.describe(extra).is_some(), "{}: column {extra}", t.file);
        }
        let entry = manifest.tables.iter().find(|e| e.file == t.file).unwrap_or_else(|| panic!("{} unlisted", t.file));
        assert_eq!(df.height(), entry.rows, "{}", t.file);
        assert_eq!(entry.row, t.row);
    }
    // The typed manifest reads back as written.
    assert_eq!(run.manifest().as_ref(), Some(&manifest));
    assert_eq!(run.version(), env!("CARGO_PKG_VERSION"));
    // run.json records the seed the attacks drew from (the run's), not the option's default.
    let config = manifest.section::<misfit::audit::AuditConfig>().unwrap().expect("an audit's config");
    assert_eq!(config.attack.as_ref().map(|a| a.seed), Some(3));
    let attacks = manifest.section::<misfit::attack::AttackSummary>().unwrap();
    assert_eq!(attacks.as_ref().map(|a| a.config.seed), Some(3));
    // Tables join on their keys through Polars SQL.
    let mut ctx = run.sql_context().unwrap();
    let per_class = ctx
        .execute(
            "SELECT c.class_name, c.train_images, COUNT(*) AS n FROM samples s \
             JOIN classes c ON s.label = c.class WHERE s.split = 'train' \
             GROUP BY c.class_name, c.train_images",
        )
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(per_class.height(), 10);
    let a = per_class.column("train_images").unwrap().i64().unwrap();
    let b = per_class.column("n").unwrap().cast(&DataType::Int64).unwrap();
    assert_eq!(a.iter().collect::<Vec<_>>(), b.i64().unwrap().iter().collect::<Vec<_>>());
    // `require` names what a reader needs and the run lacks.
    assert!(run.require("samples", &["id", "issue_score"]).is_ok());
    let e = err(run.require("samples", &["id", "saliency_ring_share"])).to_string();
    assert!(
        e.contains("samples.parquet") && e.contains("saliency_ring_share") && e.contains(&path.display().to_string()),
        "{e}"
    );
}

#[test]
fn a_score_run_reads_back_through_the_read_side_with_the_audit_columns_that_apply() {
    let dir = tempdir().unwrap();
    misfit::bench::score::generate(dir.path(), 400, 4, 8, 0.1, 2).unwrap();
    let files = misfit::data::probs::ScoreFiles {
        probs: dir.path().join("probs.npy"),
        labels: Some(dir.path().join("labels.npy")),
        embeddings: Some(dir.path().join("embeddings.npy")),
        classes: Some(vec!["a".into(), "b".into(), "c".into(), "d".into()]),
    };
    let cfg = misfit::quality::ScoreConfig::default();
    let (path, manifest, _) = misfit::score::run(&files, &cfg, &dir.path().join("outputs"), "byo").unwrap();
    let run = Run::open(&path).unwrap();
    assert_eq!(run.tables(), vec!["samples", "classes", "embeddings", "neighbors"]);
    // samples: the audit's key, model and score columns; no AUM or attack columns.
    let samples = run.table("samples").unwrap().collect().unwrap();
    let want: Vec<&str> = [
        &misfit::run::columns::data::SAMPLE_KEYS,
        &misfit::run::columns::model::SAMPLE_MODEL,
        &misfit::run::columns::scores::SAMPLE_SCORES,
        &misfit::run::columns::scores::SAMPLE_LABEL_ERROR,
    ]
    .iter()
    .flat_map(|g| g.names())
    .collect();
    assert_eq!(names(&samples), want);
    assert_eq!(samples.height(), 400);
    // The model columns come from the given probabilities: loss = -ln p[label].
    let loss = samples.column("loss").unwrap().f32().unwrap();
    let conf = samples.column("self_confidence").unwrap().f32().unwrap();
    for (l, c) in loss.iter().zip(conf.iter()) {
        let (l, c) = (l.unwrap(), c.unwrap());
        assert!((l + c.ln()).abs() < 1e-5, "loss {l} for self-confidence {c}");
    }
    let classes = run.table("classes").unwrap().collect().unwrap();
    assert_eq!(names(&classes)[..4], ["class", "class_name", "train_images", "test_images"]);
    assert!(names(&classes).contains(&"likely_mislabeled".to_string()));
    assert_eq!(run.table("neighbors").unwrap().collect().unwrap().height(), 400 * cfg.k);
    // The typed manifest reads back as written (floats round-trip exactly).
    assert!(run.manifest().is_some_and(|m| m == manifest));
    // A table the score run has no data for is named as missing, with why.
    let e = err(run.table("confusion"));
    assert!(matches!(e, ReadError::Missing { .. }), "{e}");
    let e = e.to_string();
    assert!(e.contains(&path.display().to_string()) && e.contains("confusion") && e.contains("did not run"), "{e}");
}

#[test]
fn damaged_and_older_runs_are_refused_naming_the_run_and_the_table() {
    let dir = tempdir().unwrap();
    let (path, _) = fixture::write_run(dir.path(), "old");
    // An older misfit's samples.parquet: the score columns without issue_score.
    let mut df = Run::open(&path).unwrap().table("samples").unwrap().collect().unwrap();
    df = df.drop("issue_score").unwrap();
    let mut f = std::fs::File::create(path.join("samples.parquet")).unwrap();
    ParquetWriter::new(&mut f).finish(&mut df).unwrap();
    // A table run.json lists whose file is gone.
    std::fs::remove_file(path.join("dynamics.parquet")).unwrap();
    let run = Run::open(&path).unwrap();
    let e = err(run.table("samples"));
    assert!(matches!(e, ReadError::OlderSchema { .. }), "{e}");
    let e = e.to_string();
    assert!(e.contains(&format!("{}/samples.parquet", path.display())) && e.contains("issue_score"), "{e}");
    assert!(e.contains("written by an earlier build of misfit"), "{e}");
    let e = err(run.table("dynamics")).to_string();
    assert!(e.contains("dynamics") && e.contains("file is gone"), "{e}");
    let e = err(run.table("lineage")).to_string();
    assert!(e.contains("no table 'lineage'"), "{e}");
    // The other tables still read.
    assert!(run.table("classes").is_ok());
    // A folder that is not a run.
    let e = Run::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("not a misfit run folder"), "{e}");
}

/// The run-folder doc's table of tables (docs/run-folder.md, which the README
/// links to) lists every table and every column of the contract, and no
/// column the contract lacks.
#[test]
fn the_run_folder_doc_lists_every_table_and_column_of_the_contract() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/run-folder.md")).unwrap();
    for t in TABLES {
        let prefix = format!("| `{}` |", t.file);
        let row = doc
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("docs/run-folder.md has no row for {} (a line starting {prefix})", t.file));
        let cells: Vec<&str> = row.split('|').collect();
        let columns_cell = cells.get(3).unwrap_or_else(|| panic!("{}: no columns cell", t.file));
        let listed: BTreeSet<&str> = columns_cell.split('`').skip(1).step_by(2).collect();
        let contract: BTreeSet<&str> = t.names().chain(t.named.iter().map(|n| n.pattern)).collect();
        let missing: Vec<_> = contract.difference(&listed).collect();
        let extra: Vec<_> = listed.difference(&contract).collect();
        assert!(missing.is_empty(), "docs/run-folder.md's {} row lacks columns {missing:?}", t.file);
        assert!(
            extra.is_empty(),
            "docs/run-folder.md's {} row lists columns the code does not write: {extra:?}",
            t.file
        );
    }
    assert!(schema::table("samples").is_some());
}

/// The modules of the crate that the Rust file `path` (or every Rust file
/// under it) names as `crate::MODULE`, comments and test modules left out:
/// (file, module).
fn crate_imports(path: &std::path::Path) -> Vec<(String, String)> {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        return entries.iter().flat_map(|p| crate_imports(p)).collect();
    }
    if path.extension().is_none_or(|e| e != "rs") {
        return Vec::new();
    }
    let text = std::fs::read_to_string(path).unwrap();
    let code = text.split("#[cfg(test)]").next().unwrap();
    let mut found = Vec::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + "crate::".len()..];
            let module: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            found.push((path.display().to_string(), module));
        }
    }
    found
}

#[test]
fn the_contract_imports_nothing_above_it() {
    // The run folder contract (tables, columns, run.json's frame, the
    // writer and the reader) depends on the error type and atomic writes
    // alone, and the error type on nothing of the crate: neither the write
    // side nor the read side can pull the contract into an import circle.
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let run = crate_imports(&src.join("run"));
    assert!(run.iter().any(|(_, m)| m == "error"), "the scan finds the imports it should");
    let outside: Vec<_> = run.into_iter().filter(|(_, m)| !["run", "error", "atomic"].contains(&m.as_str())).collect();
    assert!(outside.is_empty(), "src/run/ imports {outside:?}");
    for below in ["error.rs", "atomic.rs"] {
        let found: Vec<_> =
            crate_imports(&src.join(below)).into_iter().filter(|(_, m)| m != "error" || below != "atomic.rs").collect();
        assert!(found.is_empty(), "src/{below} imports {found:?}");
    }
}

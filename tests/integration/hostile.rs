//! The read side against hostile input (issue 33): rules and queries that
//! try to read other files or exhaust the machine, a run folder whose
//! gallery names files outside it, and a dataset whose class names are
//! HTML, Markdown, formulas and control characters. A report, a rule or a
//! run folder shared with someone must not be turned against them.

use polars::prelude::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::tempdir;

use crate::fixture::write_run;
use crate::util::{misfit, text};

fn or_chain(n: usize) -> String {
    let terms: Vec<String> = (0..n).map(|i| format!("id = 'x{i}'")).collect();
    format!("SELECT id FROM samples WHERE {}", terms.join(" OR "))
}

/// A Parquet file outside the run that nobody asked misfit to read.
fn secret(dir: &Path) -> PathBuf {
    let path = dir.join("secret.parquet");
    let mut df = df!("secret" => ["hunter2"]).unwrap();
    ParquetWriter::new(std::fs::File::create(&path).unwrap()).finish(&mut df).unwrap();
    path
}

fn write_rule(dir: &Path, sql: &str) -> PathBuf {
    let rules = dir.join("hostile-rules");
    std::fs::create_dir_all(&rules).unwrap();
    let sql = sql.replace('\\', "\\\\").replace('"', "\\\"");
    let rule = format!(
        "[[rule]]\nid = \"sneaky\"\ntitle = \"t\"\nseverity = \"error\"\nsubject = \"run\"\nsql = \"{sql}\"\nmessage = \"{{{{ secret }}}}\"\n"
    );
    std::fs::write(rules.join("sneaky.toml"), rule).unwrap();
    rules
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in walkdir(dir) {
        let bytes = std::fs::read(&entry).unwrap();
        if bytes.windows(needle.len()).any(|w| w == needle) {
            found.push(entry);
        }
    }
    found
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let t = std::fs::symlink_metadata(&p).unwrap().file_type();
        if t.is_dir() {
            out.extend(walkdir(&p));
        } else if t.is_file() {
            out.push(p);
        }
    }
    out
}

#[test]
fn queries_and_rules_read_the_run_s_tables_and_no_other_file() {
    let dir = tempdir().unwrap();
    let (run_dir, _) = write_run(&dir.path().join("outputs"), "fx");
    let run = run_dir.to_str().unwrap();
    let secret = secret(dir.path());
    let s = secret.display();
    for (sql, why) in [
        (format!("SELECT * FROM read_parquet('{s}')"), "'read_parquet(...)', a table function that reads files"),
        ("SELECT * FROM read_parquet('outputs/*/samples.parquet')".into(), "a table function"),
        ("SELECT * FROM read_parquet('../*/*.parquet')".into(), "a table function"),
        (
            format!("WITH read_parquet AS (SELECT 1 AS x) SELECT * FROM read_parquet('{s}')"),
            "a CTE named 'read_parquet'",
        ),
        (format!("SELECT * FROM samples JOIN read_csv('{s}') ON true"), "'read_csv(...)'"),
        (format!("SELECT * FROM \"{s}\""), "which is not one of the run's tables; tables: samples, classes"),
        (format!("CREATE TABLE t AS SELECT * FROM read_parquet('{s}')"), "must be a SELECT query (not CREATE TABLE)"),
    ] {
        let o = misfit(&["query", run, &sql], dir.path());
        let out = text(&o);
        assert!(!o.status.success() && out.contains(why) && !out.contains("hunter2"), "{sql}: {out}");
        assert!(out.contains(&format!("{run}: ")), "the error names the run: {out}");
    }
    // On purpose, the person who runs the query reads another file.
    let sql = format!("SELECT secret FROM read_parquet('{s}')");
    let o = misfit(&["query", run, &sql, "--allow-files", "--format", "csv"], dir.path());
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("hunter2"), "{}", text(&o));
    let o = misfit(&["query", run, "SELECT * FROM secrets", "--allow-files"], dir.path());
    assert!(!o.status.success() && text(&o).contains("reads 'secrets'"), "{}", text(&o));

    // A shared rules folder with the CTE trick: refused on loading, by
    // findings, report and audit alike, and the secret is nowhere.
    let rules =
        write_rule(dir.path(), &format!("WITH read_parquet AS (SELECT 1 AS x) SELECT * FROM read_parquet('{s}')"));
    let r = rules.to_str().unwrap();
    for args in [
        vec!["findings", run, "--rules", r],
        vec!["report", run, "--rules", r],
        vec!["audit", "--rules", r, "--run", "never"],
    ] {
        let o = misfit(&args, dir.path());
        let out = text(&o);
        assert!(!o.status.success(), "{args:?}: {out}");
        assert!(out.contains("sneaky.toml: rule 'sneaky': the query defines a CTE named 'read_parquet'"), "{out}");
    }
    assert_eq!(files_containing(&dir.path().join("outputs"), b"hunter2"), Vec::<PathBuf>::new());
    assert!(!dir.path().join("outputs/never").exists());
}

#[test]
fn long_or_chains_are_refused_quickly_with_a_clear_error_and_no_crash() {
    let dir = tempdir().unwrap();
    let (run_dir, _) = write_run(&dir.path().join("outputs"), "fx");
    let run = run_dir.to_str().unwrap();
    // 1,000 terms took 3.8 GB and 13 s; 9,000 overflowed the stack (exit
    // 134): 9,000 terms as long as these are over the size bound, 9,000
    // short ones are too deep.
    let short = format!("SELECT id FROM samples WHERE {}", vec!["a"; 9_000].join(" OR "));
    for (sql, why) in [
        (or_chain(1_000), "the SQL nests expressions deeper than 200 levels"),
        (or_chain(9_000), "the SQL is 142915 bytes long; at most 65536 are accepted"),
        (short, "the SQL nests expressions deeper than 200 levels"),
    ] {
        // An argument is at most 128 KiB: the longest goes in a rule only.
        if sql.len() < 100_000 {
            let start = Instant::now();
            let o = misfit(&["query", run, &sql], dir.path());
            let took = start.elapsed();
            assert_eq!(o.status.code(), Some(1), "{}", text(&o));
            assert!(text(&o).contains(why), "{}", text(&o));
            assert!(took < Duration::from_secs(5), "{} bytes: {took:?}", sql.len());
        }
        let rules = write_rule(dir.path(), &sql);
        let o = misfit(&["findings", run, "--rules", rules.to_str().unwrap()], dir.path());
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains(&format!("rule 'sneaky': {why}")), "{}", text(&o));
    }
    // Under the bound the query runs.
    let start = Instant::now();
    let o = misfit(&["query", run, &or_chain(150), "--format", "csv"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(start.elapsed() < Duration::from_secs(10), "150 terms: {:?}", start.elapsed());
}

#[test]
fn outputs_do_not_replace_the_run_or_a_ticket_without_force() {
    let dir = tempdir().unwrap();
    let (run_dir, _) = write_run(&dir.path().join("outputs"), "fx");
    let run = run_dir.to_str().unwrap();
    let samples = std::fs::read(run_dir.join("samples.parquet")).unwrap();
    let manifest = std::fs::read(run_dir.join("run.json")).unwrap();
    for out in ["outputs/fx/samples.parquet", "outputs/fx/run.json", "outputs/../outputs/fx/run.json"] {
        let o = misfit(&["query", run, "SELECT 1 AS x", "--format", "parquet", "--out", out], dir.path());
        assert!(!o.status.success() && text(&o).contains("does not write over the run it reads"), "{}", text(&o));
    }
    assert!(std::fs::read(run_dir.join("samples.parquet")).unwrap() == samples);
    assert!(std::fs::read(run_dir.join("run.json")).unwrap() == manifest);
    std::fs::write(run_dir.join("mine.csv"), "old").unwrap();
    let o = misfit(
        &["query", run, "SELECT 1 AS x", "--format", "csv", "--out", "outputs/fx/mine.csv", "--force"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(run_dir.join("mine.csv")).unwrap(), "x\n1\n");

    // A ticket folder is not replaced without --force.
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("t.toml"),
        "[[rule]]\nid = \"three\"\ntitle = \"t\"\nseverity = \"warn\"\nsubject = \"image\"\n\
         sql = \"SELECT id FROM samples WHERE split = 'test' ORDER BY id LIMIT 3\"\nmessage = \"{{ id }}\"\n",
    )
    .unwrap();
    let args = ["ticket", run, "--rule", "three", "--rules", rules.to_str().unwrap(), "--out", "t"];
    let o = misfit(&args, dir.path());
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(dir.path().join("t/ticket.md"), "mine").unwrap();
    let o = misfit(&args, dir.path());
    assert!(!o.status.success() && text(&o).contains("a ticket is already there (ticket.md); --force"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(dir.path().join("t/ticket.md")).unwrap(), "mine");
    let o = misfit(&[&args[..], &["--force"]].concat(), dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::read_to_string(dir.path().join("t/ticket.md")).unwrap().starts_with("# t: rule three"));
}

/// Replaces the first `file` of the run's gallery.parquet with `file`;
/// returns the id it belonged to.
fn craft_gallery(run: &Path, original: &DataFrame, file: &str) -> String {
    let ids: Vec<String> = original.column("id").unwrap().str().unwrap().iter().map(|s| s.unwrap().into()).collect();
    let mut files: Vec<String> =
        original.column("file").unwrap().str().unwrap().iter().map(|s| s.unwrap().into()).collect();
    files[0] = file.to_string();
    let mut df = original.clone();
    df.replace("file", Series::new("file".into(), files).into()).unwrap();
    ParquetWriter::new(std::fs::File::create(run.join("gallery.parquet")).unwrap()).finish(&mut df).unwrap();
    ids[0].clone()
}

#[test]
fn a_crafted_gallery_cannot_make_the_report_or_a_ticket_read_files_outside_the_run() {
    let dir = tempdir().unwrap();
    let (run_dir, _) = write_run(&dir.path().join("outputs"), "fx");
    let run = run_dir.to_str().unwrap();
    let original = ParquetReader::new(std::fs::File::open(run_dir.join("gallery.parquet")).unwrap()).finish().unwrap();
    let first = original.column("file").unwrap().str().unwrap().get(0).unwrap().to_string();
    // A private file that is a valid PNG (so that reading it would embed
    // it), unlike any image of the run.
    let secret = dir.path().join("outputs/private.png");
    let mut img = image::open(run_dir.join(&first)).unwrap().to_rgb8();
    img.put_pixel(0, 0, image::Rgb([1, 2, 3]));
    img.put_pixel(1, 0, image::Rgb([4, 5, 6]));
    img.save(&secret).unwrap();
    let secret_b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(&secret).unwrap())
    };
    std::os::unix::fs::symlink(&secret, run_dir.join("gallery/link.png")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", run_dir.join("gallery/zero.png")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("outputs"), run_dir.join("up")).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(run_dir.join("gallery/fifo.png")).status().unwrap().success());
    let secret_path = secret.display().to_string();
    for (file, why) in [
        (secret_path.as_str(), "an absolute path"),
        ("/dev/zero", "an absolute path"),
        ("../private.png", "a path with '..'"),
        ("gallery/../../private.png", "a path with '..'"),
        ("gallery/link.png", "is a symbolic link"),
        ("gallery/zero.png", "is a symbolic link"),
        ("up/private.png", "is a symbolic link"),
        ("gallery/fifo.png", "not a regular file"),
        ("gallery", "not a regular file"),
    ] {
        let id = craft_gallery(&run_dir, &original, file);
        let start = Instant::now();
        let o = misfit(&["report", run], dir.path());
        let out = text(&o);
        assert!(!o.status.success(), "{file}: {out}");
        assert!(out.contains("gallery.parquet names a file misfit refuses") && out.contains(why), "{file}: {out}");
        assert!(start.elapsed() < Duration::from_secs(30), "{file}: {:?}", start.elapsed());
        // A ticket's contact sheet reads the same files.
        let rules = dir.path().join("gallery-rules");
        std::fs::create_dir_all(&rules).unwrap();
        std::fs::write(
            rules.join("g.toml"),
            format!(
                "[[rule]]\nid = \"one\"\ntitle = \"t\"\nseverity = \"warn\"\nsubject = \"image\"\nsql = \"SELECT id FROM gallery WHERE id = '{id}'\"\nmessage = \"{{{{ id }}}}\"\n"
            ),
        )
        .unwrap();
        let o = misfit(&["ticket", run, "--rule", "one", "--rules", rules.to_str().unwrap(), "--out", "t"], dir.path());
        assert!(!dir.path().join("t/images.csv").exists(), "a refused ticket writes nothing");
        assert!(!o.status.success() && text(&o).contains(why), "{file}: {}", text(&o));
    }
    assert!(files_containing(dir.path(), secret_b64.as_bytes()).is_empty());
    // The gallery as written: the report renders, every image inline.
    craft_gallery(&run_dir, &original, &first);
    let o = misfit(&["report", run], dir.path());
    assert!(o.status.success(), "{}", text(&o));
}

/// Class names a data team did not choose: HTML, Markdown, a formula, a
/// line break, a terminal escape sequence.
const HOSTILE: [&str; 10] = [
    "<img src=x onerror=alert(1)>",
    "a|b",
    "line\nbreak",
    "=2+5",
    "tick`s",
    "*bold*_x_",
    "[link](http://x.test)",
    "\"q' & amp",
    "esc\u{1b}[31mred",
    "-1+cmd",
];

#[test]
fn hostile_class_names_come_out_as_text_in_every_output() {
    let dir = tempdir().unwrap();
    let o =
        misfit(&["data", "synth", "--out", "synth", "--train-per-class", "20", "--test-per-class", "5"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let classes = HOSTILE.join(",");
    let args = ["audit", "synth/demo.tar.gz", "--run", "h", "--epochs", "1", "--folds", "2", "--width", "4"];
    let o = misfit(&[&args[..], &["--depth", "8", "-q", "--classes", &classes]].concat(), dir.path());
    assert!(o.status.success(), "{}", text(&o));
    // The terminal summary: no escape sequence.
    assert!(!text(&o).contains('\u{1b}'), "{}", text(&o));
    let run = dir.path().join("outputs/h");
    let r = run.to_str().unwrap();

    // report.md: no live HTML, every table row keeps its columns, no code
    // span or emphasis opened by a name.
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(!md.contains("<img src=x") && md.contains("&lt;img src=x onerror=alert(1)&gt;"), "{md}");
    assert!(md.contains("a\\|b") && md.contains("line break") && md.contains("tick\\`s"), "{md}");
    assert!(md.contains("\\*bold\\*\\_x\\_") && md.contains("\\[link\\](http://x.test)"), "{md}");
    assert!(!md.contains('\u{1b}') && !md.contains("\"q'"), "{md}");
    let unescaped_pipes = |line: &str| line.match_indices('|').filter(|(i, _)| !line[..*i].ends_with('\\')).count();
    let header = md.lines().find(|l| l.starts_with("| class |")).unwrap();
    let rows: Vec<&str> = md.lines().skip_while(|l| !l.starts_with("| class |")).take(12).collect();
    assert_eq!(rows.len(), 12, "{md}");
    for row in &rows {
        assert_eq!(unescaped_pipes(row), unescaped_pipes(header), "a class name broke the table: {row}");
    }
    // report.html: escaped by its template.
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(!html.contains("<img src=x") && html.contains("&lt;img src=x onerror=alert(1)&gt;"));

    // A ticket: ticket.md as text, images.csv without a formula.
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("all.toml"),
        "[[rule]]\nid = \"all\"\ntitle = \"Every training image of <b>\"\nseverity = \"warn\"\nsubject = \"image\"\n\
         sql = \"SELECT id, label_name FROM samples WHERE split = 'train'\"\nmessage = \"{{ id }} is {{ label_name }}\"\n\
         action = \"Check `them` | all\"\n",
    )
    .unwrap();
    let o = misfit(&["ticket", r, "--rule", "all", "--rules", rules.to_str().unwrap(), "--out", "t"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let ticket = std::fs::read_to_string(dir.path().join("t/ticket.md")).unwrap();
    assert!(ticket.starts_with("# Every training image of &lt;b&gt;: rule all"), "{ticket}");
    assert!(
        !ticket.contains("<img src=x") && !ticket.contains('\u{1b}') && !ticket.contains("line\nbreak"),
        "{ticket}"
    );
    assert!(ticket.contains("Check \\`them\\` | all"), "{ticket}");
    let csv = std::fs::read_to_string(dir.path().join("t/images.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let mut labels = std::collections::BTreeSet::new();
    for record in reader.records() {
        let record = record.unwrap();
        for cell in record.iter().filter(|c| c.parse::<f64>().is_err()) {
            assert!(!cell.starts_with(['=', '+', '-', '@']), "a formula in images.csv: {cell}");
        }
        labels.insert(record[2].to_string());
    }
    assert!(labels.contains("'=2+5") && labels.contains("'-1+cmd"), "{labels:?}");

    // Findings as CSV and the terminal table: the same.
    let o = misfit(&["findings", r, "--format", "csv"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    for record in reader.records() {
        for cell in record.unwrap().iter().filter(|c| c.parse::<f64>().is_err()) {
            assert!(!cell.starts_with(['=', '+', '-', '@']), "a formula in the findings CSV: {cell}");
        }
    }
    for args in [vec!["findings", r], vec!["query", r, "SELECT class_name FROM classes"], vec!["report", r]] {
        let o = misfit(&args, dir.path());
        assert!(o.status.success() && !text(&o).contains('\u{1b}'), "{args:?}: {}", text(&o));
    }
}

#[test]
fn a_rule_that_fails_on_the_run_leaves_the_previous_run_as_it_was() {
    let dir = tempdir().unwrap();
    misfit::bench::score::generate(dir.path(), 300, 4, 8, 0.1, 5).unwrap();
    let args = ["score", "--probs", "probs.npy", "--labels", "labels.npy", "--classes", "a,b,c,d", "--run", "s", "-q"];
    let o = misfit(&args, dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let run = dir.path().join("outputs/s");
    let contents = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<_> = walkdir(dir).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
        files.sort();
        files
    };
    let before = contents(&run);
    assert!(before.iter().any(|(p, _)| p.ends_with("findings.parquet")));
    // Passes every check on loading; Polars finds no such column on the run.
    let rules = write_rule(dir.path(), "SELECT nope AS secret FROM samples");
    let o = misfit(&[&args[..], &["--rules", rules.to_str().unwrap()]].concat(), dir.path());
    let out = text(&o);
    assert!(!o.status.success() && out.contains("rule 'sneaky'") && out.contains("nope"), "{out}");
    assert!(out.contains("the run was not written (a run of that name from before is left as it was)"), "{out}");
    assert!(contents(&run) == before, "the previous run changed");
    let left: Vec<String> = std::fs::read_dir(dir.path().join("outputs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "s" && !n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn read_table(path: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(path).unwrap()).finish().unwrap()
}

#[test]
fn a_class_without_test_images_has_null_rates_not_0_and_is_ranked_nowhere() {
    use crate::util::{pattern, png, write_tree};
    let dir = tempdir().unwrap();
    // gamma has training images only: no test image to miss or to attack.
    let mut files = Vec::new();
    for (c, class) in ["alpha", "beta", "gamma"].iter().enumerate() {
        for i in 0..10 {
            files.push((format!("train/{class}/{i:03}.png"), png(&pattern((c * 40 + i) as u8, 16, 16), 16, 16)));
        }
        if c < 2 {
            for i in 0..4 {
                let px = pattern((c * 40 + 20 + i) as u8, 16, 16);
                files.push((format!("test/{class}/t{i}.png"), png(&px, 16, 16)));
            }
        }
    }
    write_tree(&dir.path().join("set"), &files);
    let args = ["audit", "set", "--epochs", "1", "--folds", "2", "--width", "4", "--depth", "8", "--k", "2"];
    let o = misfit(&[&args[..], &["--attack-per-class", "2", "--no-explain", "-q"]].concat(), dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let missed = text(&o).lines().find(|l| l.starts_with("missed")).unwrap_or_default().to_string();
    assert!(missed.contains("alpha") && !missed.contains("gamma"), "{}", text(&o));
    let run = dir.path().join("outputs/set");

    let classes = read_table(&run.join("classes.parquet")).sort(["class"], Default::default()).unwrap();
    for col in ["miss_rate", "miss_rate_low", "miss_rate_high"] {
        let v: Vec<Option<f64>> = classes.column(col).unwrap().f64().unwrap().iter().collect();
        assert!(v[0].is_some() && v[1].is_some() && v[2].is_none(), "{col}: {v:?}");
    }
    let confusion = read_table(&run.join("confusion.parquet"));
    let given: Vec<Option<&str>> = confusion.column("given_name").unwrap().str().unwrap().iter().collect();
    let share: Vec<Option<f64>> = confusion.column("share").unwrap().f64().unwrap().iter().collect();
    for (g, s) in given.iter().zip(&share) {
        assert_eq!(s.is_none(), *g == Some("gamma"), "{g:?}: {s:?}");
    }
    let attacked = read_table(&run.join("attack_classes.parquet"));
    let names: Vec<Option<&str>> = attacked.column("class_name").unwrap().str().unwrap().iter().collect();
    let n: Vec<Option<i64>> = attacked.column("attacked").unwrap().i64().unwrap().iter().collect();
    for col in ["success_rate", "success_rate_low", "success_rate_high"] {
        let rate: Vec<Option<f64>> = attacked.column(col).unwrap().f64().unwrap().iter().collect();
        for i in 0..rate.len() {
            assert_eq!(rate[i].is_none(), n[i] == Some(0), "{col} of {:?}: {:?}", names[i], rate[i]);
            if names[i] == Some("gamma") {
                assert!(rate[i].is_none(), "gamma was never attacked: {:?}", rate[i]);
            }
        }
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    let eval = &manifest["evaluation"]["classes"];
    assert!(eval[2]["miss_rate"].is_null() && eval[0]["miss_rate"].is_number(), "{eval}");
    // No finding ranks gamma among the most missed or most attacked.
    let o = misfit(&["findings", run.to_str().unwrap(), "--format", "csv"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    for line in String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.contains("missed-and-attacked")) {
        assert!(!line.contains("gamma"), "{line}");
    }
}

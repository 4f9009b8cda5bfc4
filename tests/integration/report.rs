//! The report (report.html, report.md), `misfit report`, `misfit ticket`,
//! and the HTML report seen in headless Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::tempdir;

use misfit::findings::RuleSet;

use crate::fixture::write_run;
use crate::util::{misfit, text};

const SECTIONS: [&str; 9] =
    ["headline", "findings", "classes", "confusion", "suspicious", "duplicates", "influence", "pairs", "reproduce"];

/// The files a Markdown report refers to (`src="..."` and `](...)`).
fn references(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in md.split("src=\"").skip(1) {
        out.push(part.split('"').next().unwrap().to_string());
    }
    for part in md.split("](").skip(1) {
        out.push(part.split(')').next().unwrap().to_string());
    }
    out
}

#[test]
fn the_report_is_one_self_contained_html_file_and_a_markdown_file_under_githubs_limit() {
    let dir = tempdir().unwrap();
    let (run, _) = write_run(&dir.path().join("outputs"), "demo");
    let summary = misfit::report::run(&run, &RuleSet::load(None).unwrap()).unwrap();
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    for s in SECTIONS {
        assert!(html.contains(&format!("<section id=\"{s}\">")), "no section {s}");
    }
    // Self-contained: no script, nothing fetched, every image inline.
    assert!(!html.contains("<script"));
    for fetch in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!html.contains(fetch), "report.html fetches something: {fetch}");
    }
    let images = html.matches("<img ").count();
    assert!(images > 0, "the fixture's gallery shows in the report");
    assert_eq!(html.matches("<img src=\"data:image/png;base64,").count(), images);
    assert!(html.matches("<svg ").count() >= 3, "scatter, budgets and confusion plots inline");
    assert!(html.len() < 4_000_000, "{} bytes", html.len());
    // Markdown: under GitHub's limit, every image a file beside it.
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.chars().count() < misfit::report::MARKDOWN_LIMIT);
    let refs = references(&md);
    assert!(refs.iter().any(|r| r.starts_with("report_files/")) && refs.iter().any(|r| r.starts_with("gallery/")));
    for r in &refs {
        assert!(run.join(r).is_file(), "report.md refers to {r}, which is not there");
    }
    assert!(md.contains("## Top findings") && md.contains("| class | train | test |"), "{md}");
    // The summary names the report and the most missed classes.
    assert!(summary.text().contains("report.html"), "{}", summary.text());
    assert_eq!(summary.report, run.join("report.html").display().to_string());
}

#[test]
fn a_score_run_gets_a_report_whose_missing_sections_say_so() {
    let dir = tempdir().unwrap();
    misfit::bench::score::generate(dir.path(), 600, 4, 16, 0.1, 5).unwrap();
    let args = ["score", "--probs", "probs.npy", "--labels", "labels.npy", "--embeddings", "embeddings.npy", "--json"];
    let o = misfit(&args, dir.path());
    assert!(o.status.success(), "{}", text(&o));
    // --json: the summary alone, as one JSON object.
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(summary["report"].as_str().unwrap().ends_with("report.html"));
    assert!(summary["accuracy"].is_null() && summary["flagged"].as_array().unwrap().len() == 5, "{summary}");
    let md = std::fs::read_to_string(dir.path().join("outputs/score/report.md")).unwrap();
    for line in [
        "No test split in this run: no confusion matrix.",
        "No attacks in this run: no success-against-budget plot.",
        "- **Test accuracy**: no test split",
    ] {
        assert!(md.contains(line), "{line} not in:\n{md}");
    }
    let html = std::fs::read_to_string(dir.path().join("outputs/score/report.html")).unwrap();
    assert!(html.contains("This run has no image gallery"), "ids without thumbnails");
}

const GALLERY_RULE: &str = r#"
[[rule]]
id = "in-the-gallery"
title = "Images of the gallery"
severity = "warn"
subject = "image"
action = "Look at them."
sql = "SELECT g.id, s.label_name FROM gallery g JOIN samples s ON g.id = s.id ORDER BY g.file"
message = "{{ id }} ({{ label_name }})"
"#;

/// A fixture run in `dir/outputs/demo` and a folder `dir/rules` holding [`GALLERY_RULE`].
fn run_with_gallery_rule(dir: &Path) -> (PathBuf, PathBuf) {
    let (run, _) = write_run(&dir.join("outputs"), "demo");
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("g.toml"), GALLERY_RULE).unwrap();
    (run, rules)
}

#[test]
fn a_ticket_holds_markdown_a_csv_of_the_images_and_their_contact_sheet() {
    let dir = tempdir().unwrap();
    let (run, rules) = run_with_gallery_rule(dir.path());
    let (r, d) = (run.to_str().unwrap(), rules.to_str().unwrap());
    let o = misfit(&["ticket", r, "--rule", "in-the-gallery", "--rules", d, "--out", "t1"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let t = dir.path().join("t1");
    let md = std::fs::read_to_string(t.join("ticket.md")).unwrap();
    assert!(md.starts_with("# Images of the gallery: rule in-the-gallery") && md.contains("Look at them."), "{md}");
    let csv = std::fs::read_to_string(t.join("images.csv")).unwrap();
    let gallery = csv.lines().count() - 1;
    assert!(gallery > 0 && csv.starts_with("id,split,label_name"), "{csv}");
    let sheet = image::open(t.join("contact_sheet.png")).unwrap();
    let per_row = gallery.min(12) as u32;
    assert_eq!(sheet.width(), per_row * 68 + 4);
    assert!(text(&o).contains(&format!("{gallery} images")), "{}", text(&o));
    // One finding, by RULE#ROW: one image.
    let o = misfit(&["ticket", r, "--finding", "in-the-gallery#2", "--rules", d, "--out", "t2"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(dir.path().join("t2/images.csv")).unwrap().lines().count(), 2);
    // What cannot be a ticket says why.
    let o = misfit(&["ticket", r, "--finding", "in-the-gallery"], dir.path());
    assert!(!o.status.success() && text(&o).contains("expected RULE#ROW"), "{}", text(&o));
    let o = misfit(&["ticket", r, "--rule", "no-such-rule"], dir.path());
    assert!(!o.status.success() && text(&o).contains("no finding matches"), "{}", text(&o));
    let o = misfit(&["ticket", r], dir.path());
    assert!(!o.status.success(), "one of --finding, --rule, --class is required");
}

#[test]
fn report_and_ticket_read_the_findings_the_run_holds() {
    let dir = tempdir().unwrap();
    let (run, rules) = run_with_gallery_rule(dir.path());
    let (r, d) = (run.to_str().unwrap(), rules.to_str().unwrap());
    // The fixture's findings are the shipped rules': no gallery rule.
    let o = misfit(&["report", r], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(!md.contains("in-the-gallery"), "{md}");
    let o = misfit(&["ticket", r, "--rule", "in-the-gallery", "--out", "t0"], dir.path());
    assert!(!o.status.success() && text(&o).contains("no finding matches"), "{}", text(&o));
    // Written by `misfit findings --rules`: the report and a ticket read them
    // without the rules, the ticket with the rule's own action.
    let o = misfit(&["findings", r, "--rules", d], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let o = misfit(&["report", r], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("in-the-gallery"), "{md}");
    let o = misfit(&["ticket", r, "--rule", "in-the-gallery", "--out", "t1"], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let ticket = std::fs::read_to_string(dir.path().join("t1/ticket.md")).unwrap();
    assert!(ticket.contains("Look at them."), "{ticket}");
    // The same rule's findings computed in memory by the report leave the
    // run's findings.parquet as it was.
    let before = std::fs::read(run.join("findings.parquet")).unwrap();
    let o = misfit(&["report", r, "--rules", d], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(run.join("findings.parquet")).unwrap(), before);
    // Part of the findings gone: refused, with what to run.
    std::fs::remove_file(run.join("findings.parquet")).unwrap();
    let o = misfit(&["report", r], dir.path());
    assert!(!o.status.success() && text(&o).contains("part of its findings"), "{}", text(&o));
    assert!(text(&o).contains("misfit findings"), "{}", text(&o));
}

/// Chromium: `MISFIT_CHROMIUM`, else the first of chromium, chromium-browser, google-chrome on the PATH.
fn chromium() -> Option<String> {
    let candidates: Vec<String> = std::env::var("MISFIT_CHROMIUM")
        .ok()
        .into_iter()
        .chain(["chromium", "chromium-browser", "google-chrome"].map(String::from))
        .collect();
    candidates.into_iter().find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
}

fn headless(browser: &str, args: &[&str], page: &Path) -> std::process::Output {
    let url = format!("file://{}", page.display());
    Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"])
        .args(args)
        .arg(url)
        .output()
        .unwrap()
}

/// The report of a run of the demo dataset in a real browser: every image
/// decodes, every section is there, and a screenshot is kept.
#[test]
fn the_report_renders_in_headless_chromium_with_every_image_loaded() {
    if std::env::var_os("MISFIT_SKIP_BROWSER").is_some() {
        println!("SKIPPED: MISFIT_SKIP_BROWSER is set");
        return;
    }
    let browser = chromium().expect(
        "no Chromium: .ci/run installs Debian's chromium (apt-get install chromium); set MISFIT_CHROMIUM to another, \
         or MISFIT_SKIP_BROWSER=1 to skip this test knowingly",
    );
    let dir = tempdir().unwrap();
    let (run, _) = write_run(&dir.path().join("outputs"), "demo");
    misfit::report::run(&run, &RuleSet::load(None).unwrap()).unwrap();
    // A copy of the report with a check appended (the report itself has no script).
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    let check = r#"<script>
window.addEventListener('load', () => {
const imgs = [...document.images];
const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).length;
const sections = [...document.querySelectorAll('section')].map(s => s.id).join(',');
const svgs = [...document.querySelectorAll('svg')].filter(s => s.getBoundingClientRect().width > 100).length;
document.body.insertAdjacentHTML('beforeend', `<pre id="check">images=${imgs.length} broken=${broken} svgs=${svgs} sections=${sections} </pre>`);
});
</script></body>"#;
    let checked = run.join("check.html");
    std::fs::write(&checked, html.replace("</body>", check)).unwrap();
    let o = headless(&browser, &["--dump-dom"], &checked);
    let dom = String::from_utf8_lossy(&o.stdout);
    // The last match: the first is the script's own text.
    let line = dom
        .rsplit("<pre id=\"check\">")
        .next()
        .filter(|_| dom.matches("<pre id=\"check\">").count() == 2)
        .and_then(|s| s.split("</pre>").next())
        .unwrap_or_else(|| panic!("no check line in Chromium's DOM: {}", String::from_utf8_lossy(&o.stderr)));
    let field = |k: &str| {
        let v = line.split(&format!("{k}=")).nth(1).unwrap_or_else(|| panic!("no {k} in {line}"));
        v.split(' ').next().unwrap().to_string()
    };
    assert!(field("images").parse::<usize>().unwrap_or_else(|_| panic!("{line}")) > 0, "{line}");
    assert_eq!(field("broken"), "0", "{line}");
    assert!(field("svgs").parse::<usize>().unwrap() >= 3, "{line}");
    assert_eq!(field("sections"), SECTIONS.join(","), "{line}");
    // The screenshot, kept for a person to look at.
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("demo-fixture.png");
    let arg = format!("--screenshot={}", shot.display());
    let o = headless(&browser, &[&arg, "--window-size=1200,2400"], &run.join("report.html"));
    assert!(o.status.success(), "{}", text(&o));
    let img = image::open(&shot).unwrap();
    assert_eq!((img.width(), img.height()), (1200, 2400));
    println!("screenshot: {}", shot.display());
}

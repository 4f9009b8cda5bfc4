//! `misfit ticket`: what a data ticket needs about one finding, one rule's
//! findings or one class, small enough to attach: `ticket.md` (what, how
//! many, the evidence, the suggested action), `images.csv` (the affected
//! image ids with given and suggested labels and scores) and
//! `contact_sheet.png` (the images from the run's gallery, in the CSV's
//! order).

use image::{imageops, RgbImage};
use polars::prelude::{col, lit, DataFrame, IntoLazy, NamedFrom, Series};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::findings::{self, frame, RuleSet};
use crate::run::read::Run;

/// What the ticket is about.
#[derive(Clone, Debug)]
pub enum Selection {
    /// One finding: `RULE#ROW` (its rule and 1-based row, as `misfit findings --format csv` shows).
    Finding(String),
    /// Every finding of a rule.
    Rule(String),
    /// Every image finding about a class (given or suggested).
    Class(String),
}

impl Selection {
    /// A folder-name slug: the readable part (letters, digits, `-`, `_`;
    /// any other character as `_`), and where a character was replaced, a
    /// short hash of the whole name beside it, so that names that differ
    /// only in such characters (猫, 犬) get folders of their own.
    pub fn slug(&self) -> String {
        use sha2::Digest;
        let raw = match self {
            Selection::Finding(f) => f.replace('#', "-"),
            Selection::Rule(r) => r.clone(),
            Selection::Class(c) => format!("class-{c}"),
        };
        let readable: String =
            raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        if readable == raw {
            return readable;
        }
        let hash = sha2::Sha256::digest(raw.as_bytes());
        let short: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!("{readable}-{short}")
    }
}

/// Images per row of the contact sheet, and the scale of each thumbnail.
const SHEET_COLUMNS: u32 = 12;
const SHEET_SIDE: u32 = 64;
/// At most this many images on the contact sheet (all are in the CSV).
pub const SHEET_MAX: usize = 240;

/// What a ticket folder holds.
#[derive(Debug)]
pub struct Ticket {
    pub dir: PathBuf,
    pub images: usize,
    pub findings: usize,
    pub on_sheet: usize,
}

/// The files a ticket folder holds.
const TICKET_FILES: [&str; 3] = ["ticket.md", "images.csv", "contact_sheet.png"];

/// Writes the ticket for `sel` of the run `dir` (the findings it holds,
/// see [`findings::of_run`], or with `rules` its findings under them,
/// computed in memory) into `out` (default: `RUN/tickets/<slug>`). A ticket already
/// there is replaced only with `force`.
pub fn write(dir: &Path, rules: Option<&RuleSet>, sel: &Selection, out: Option<&Path>, force: bool) -> Result<Ticket> {
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| dir.join("tickets").join(sel.slug()));
    if let Some(old) = TICKET_FILES.iter().map(|f| out.join(f)).find(|f| f.exists()) {
        if !force {
            return Err(Error::Usage(format!(
                "{}: a ticket is already there ({}); --force replaces it, or give another --out",
                out.display(),
                old.file_name().unwrap_or_default().to_string_lossy()
            )));
        }
    }
    let run = Run::open(dir)?;
    let f = match rules {
        Some(rules) => findings::analyze(&run, rules, &[])?.found(),
        None => findings::of_run(&run)?,
    };
    let err = |e: polars::prelude::PolarsError| Error::Usage(format!("{}: {e}", dir.display()));
    let chosen: DataFrame = match sel {
        Selection::Finding(id) => {
            let (rule, row) = id
                .rsplit_once('#')
                .and_then(|(r, n)| Some((r.to_string(), n.parse::<i64>().ok()?)))
                .ok_or_else(|| Error::Usage(format!("--finding {id}: expected RULE#ROW, e.g. confused-pairs#1")))?;
            f.findings
                .clone()
                .lazy()
                .filter(col("rule").eq(lit(rule.as_str())).and(col("rule_row").eq(lit(row))))
                .collect()
                .map_err(err)?
        }
        Selection::Rule(rule) => {
            f.findings.clone().lazy().filter(col("rule").eq(lit(rule.as_str()))).collect().map_err(err)?
        }
        Selection::Class(class) => findings::filter(&f.findings, findings::Severity::Warn, &[], Some(class))?
            .lazy()
            .filter(col("subject_kind").eq(lit("image")))
            .collect()
            .map_err(err)?,
    };
    if chosen.height() == 0 {
        let known = f.summary.rules.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", ");
        return Err(Error::Usage(format!("{}: no finding matches {sel:?} (rules: {known})", dir.display())));
    }
    // The images: image findings' subjects; for a pair, its confused test
    // images and suggested relabels; for a class, its flagged images.
    let kinds = frame::strs(&chosen, "subject_kind")?;
    let subjects = frame::strs(&chosen, "subject")?;
    let mut ids: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    let samples = findings::collect(&run, run.table("samples")?)?;
    // An imported model's training flags rest on in-sample probabilities: a
    // ticket lists them only through their own rule (likely-mislabeled-in-sample,
    // for review), never as a pair's suggested relabels.
    let in_sample = findings::pairs::train_in_sample(&samples)?;
    for (kind, subject) in kinds.iter().zip(&subjects) {
        let (Some(kind), Some(subject)) = (kind.as_deref(), subject.as_deref()) else { continue };
        let more: Vec<String> = match kind {
            "image" => vec![subject.to_string()],
            "pair" => {
                let Some((a, b)) = subject.split_once(" -> ") else { continue };
                let mut keep =
                    col("label_name").eq(lit(a)).and(col("split").eq(lit("test"))).and(col("pred_name").eq(lit(b)));
                if frame::has(&samples, "suggested_label_name") {
                    let mut flagged = col("likely_mislabeled");
                    if in_sample {
                        flagged = flagged.and(col("split").eq(lit("test")));
                    }
                    keep =
                        keep.or(col("label_name").eq(lit(a)).and(flagged).and(col("suggested_label_name").eq(lit(b))));
                }
                ids_of(samples.clone().lazy().filter(keep).collect().map_err(err)?)?
            }
            "class" if frame::has(&samples, "likely_mislabeled") => {
                let keep = col("label_name").eq(lit(subject)).and(col("likely_mislabeled"));
                ids_of(samples.clone().lazy().filter(keep).collect().map_err(err)?)?
            }
            _ => Vec::new(),
        };
        for id in more {
            if seen.insert(id.clone()) {
                ids.push(id);
            }
        }
    }
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;

    // images.csv: the samples columns a ticket needs, in the order chosen.
    let wanted = [
        "id",
        "split",
        "label_name",
        "pred_name",
        "suggested_label_name",
        "suggested_confidence",
        "self_confidence",
        "issue_score",
        "likely_mislabeled",
        "ambiguous",
        "outlier",
        "duplicate",
    ];
    let columns: Vec<_> = wanted.iter().filter(|c| frame::has(&samples, c)).map(|c| col(*c)).collect();
    let order = Series::new("id".into(), ids.clone());
    let order = DataFrame::new_infer_height(vec![order.into()]).map_err(err)?;
    let mut table = order
        .lazy()
        .join(
            samples.clone().lazy().select(columns),
            [col("id")],
            [col("id")],
            polars::prelude::JoinArgs::new(polars::prelude::JoinType::Left),
        )
        .collect()
        .map_err(err)?;
    // Written once the contact sheet's images are read (all or nothing).

    // contact_sheet.png: the gallery's images, in the same order.
    let gallery: std::collections::HashMap<String, String> = if run.has("gallery") {
        let g = findings::collect(&run, run.table("gallery")?)?;
        frame::strs(&g, "id")?.into_iter().zip(frame::strs(&g, "file")?).filter_map(|(i, f)| Some((i?, f?))).collect()
    } else {
        Default::default()
    };
    let files: Vec<(String, String)> =
        ids.iter().filter_map(|id| gallery.get(id).map(|f| (id.clone(), f.clone()))).take(SHEET_MAX).collect();
    let on_sheet = files.len();
    if on_sheet > 0 {
        let rows = (on_sheet as u32).div_ceil(SHEET_COLUMNS);
        let cols = (on_sheet as u32).min(SHEET_COLUMNS);
        let gap = 4;
        let mut sheet = RgbImage::from_pixel(
            cols * (SHEET_SIDE + gap) + gap,
            rows * (SHEET_SIDE + gap) + gap,
            image::Rgb([255, 255, 255]),
        );
        for (i, (_, file)) in files.iter().enumerate() {
            // Only a regular file inside the run folder (no link, no device).
            let bytes = run.read_file(file)?;
            let img = image::load_from_memory(&bytes)
                .map_err(|e| Error::io(dir.join(file), std::io::Error::other(e)))?
                .to_rgb8();
            let img = imageops::resize(&img, SHEET_SIDE, SHEET_SIDE, imageops::FilterType::Nearest);
            let (x, y) = (
                (i as u32 % SHEET_COLUMNS) * (SHEET_SIDE + gap) + gap,
                (i as u32 / SHEET_COLUMNS) * (SHEET_SIDE + gap) + gap,
            );
            imageops::overlay(&mut sheet, &img, x as i64, y as i64);
        }
        let mut bytes = Vec::new();
        sheet
            .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
            .map_err(|e| Error::io(out.join("contact_sheet.png"), std::io::Error::other(e)))?;
        frame::write(&mut table, frame::Format::Csv, Some(&out.join("images.csv")))?;
        crate::atomic::write(out.join("contact_sheet.png"), &bytes)?;
    } else {
        frame::write(&mut table, frame::Format::Csv, Some(&out.join("images.csv")))?;
        if out.join("contact_sheet.png").exists() {
            // --force over an older ticket: no sheet of other images stays.
            let old = out.join("contact_sheet.png");
            std::fs::remove_file(&old).map_err(|e| Error::io(&old, e))?;
        }
    }

    // ticket.md.
    let rule_ids: BTreeSet<String> = frame::strs(&chosen, "rule")?.into_iter().flatten().collect();
    let titles = frame::strs(&chosen, "title")?;
    let severity = frame::strs(&chosen, "severity")?;
    let messages = frame::strs(&chosen, "message")?;
    let mut md = String::new();
    let what = match sel {
        Selection::Finding(id) => format!("finding {id}"),
        Selection::Rule(r) => format!("rule {r}"),
        Selection::Class(c) => format!("class {c}"),
    };
    // Every text from the run, the rules or the command line through
    // Markdown's escaping: a class name is text, not HTML or a table.
    let (text, code) = (crate::escape::md_text, crate::escape::md_code);
    let _ = writeln!(md, "# {}: {}\n", text(titles[0].as_deref().unwrap_or_default()), text(&what));
    let _ = writeln!(
        md,
        "Run {} (misfit {}). {} finding{} ({} severity), {} image{} affected.\n",
        code(&run.dir().display().to_string()),
        text(run.version()),
        chosen.height(),
        if chosen.height() == 1 { "" } else { "s" },
        text(&severity.iter().flatten().cloned().collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>().join("/")),
        ids.len(),
        if ids.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(md, "## Suggested action\n");
    // A run from before findings recorded each rule's action: the shipped rule's.
    let shipped = RuleSet::load(None)?;
    for r in f.summary.rules.iter().filter(|r| rule_ids.contains(&r.id)) {
        let action = r
            .action
            .as_deref()
            .or_else(|| shipped.rules.iter().find(|s| s.id == r.id).and_then(|s| s.action.as_deref()))
            .unwrap_or("Review the images below.");
        let _ = writeln!(md, "- {}: {}", code(&r.id), text(action));
    }
    let _ = writeln!(md, "\n## Evidence\n");
    for m in messages.iter().flatten().take(20) {
        let _ = writeln!(md, "- {}", text(m));
    }
    if chosen.height() > 20 {
        let _ = writeln!(md, "- and {} more (images.csv lists every image)", chosen.height() - 20);
    }
    let _ = writeln!(md, "\n## Files\n");
    let _ =
        writeln!(md, "- `images.csv`: the {} affected images, with given and suggested labels and scores.", ids.len());
    if on_sheet > 0 {
        let _ = writeln!(
            md,
            "- `contact_sheet.png`: {on_sheet} of them, in the CSV's order, {SHEET_COLUMNS} per row{}.",
            if on_sheet < ids.len() { " (the images in the run's gallery, at most 240)" } else { "" }
        );
    } else {
        let _ = writeln!(md, "- no contact sheet: the run has no images of these ids in its gallery.");
    }
    crate::atomic::write(out.join("ticket.md"), md.as_bytes())?;
    Ok(Ticket { dir: out, images: ids.len(), findings: chosen.height(), on_sheet })
}

fn ids_of(df: DataFrame) -> Result<Vec<String>> {
    Ok(frame::strs(&df, "id")?.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_folders_stay_readable_and_distinct() {
        assert_eq!(Selection::Rule("likely-mislabeled".into()).slug(), "likely-mislabeled");
        assert_eq!(Selection::Finding("confused-pairs#2".into()).slug(), "confused-pairs-2");
        let (cat, dog) = (Selection::Class("猫".into()).slug(), Selection::Class("犬".into()).slug());
        assert!(cat.starts_with("class-_-") && dog.starts_with("class-_-") && cat != dog, "{cat} {dog}");
        let (a, b) = (Selection::Class("a b".into()).slug(), Selection::Class("a/b".into()).slug());
        assert!(a.starts_with("class-a_b-") && a != b, "{a} {b}");
    }
}

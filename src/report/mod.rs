//! The report: `report.html` (one self-contained file: plots inline as SVG,
//! thumbnails inline as PNG data, no script, no network) and `report.md`
//! (the same content under GitHub's 65,536-character limit, its plots in
//! `report_files/` and its thumbnails in `gallery/` beside it), rendered
//! from any run folder on the read side: the run's tables and its findings
//! (computed in memory with the shipped rules when an older run has none).
//! Sections without data say so in one line. [`Summary`] is the ten-second
//! version printed at the end of `misfit audit` and `misfit score`.

pub mod plots;
pub mod summary;
pub mod ticket;

pub use summary::Summary;

use base64::Engine;
use polars::prelude::{col, lit, DataFrame, IntoLazy, NamedFrom};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::findings::{self, frame, RuleSet};
use crate::run::columns::attacks::budget_label;
use crate::run::read::Run;

/// The report's HTML file.
pub const HTML: &str = "report.html";
/// The report's Markdown file.
pub const MARKDOWN: &str = "report.md";
/// The folder of the Markdown report's plots.
pub const FILES_DIR: &str = "report_files";
/// GitHub's limit on an issue or comment body, in characters.
pub const MARKDOWN_LIMIT: usize = 65_536;
/// Suspicious images shown (each with its neighbours).
pub const SHOW_SUSPICIOUS: usize = 24;
/// Duplicate pairs shown.
pub const SHOW_DUPLICATES: usize = 12;
/// Strips of influence-top-proponents findings shown.
pub const SHOW_INFLUENCE: usize = 6;
/// Messages shown per rule.
pub const SHOW_MESSAGES: usize = 5;

/// A rate with its 95% interval.
#[derive(Clone, Debug, Serialize)]
pub struct Rate {
    pub rate: f64,
    pub low: Option<f64>,
    pub high: Option<f64>,
}

/// A class and one rate of it.
#[derive(Clone, Debug, Serialize)]
pub struct ClassRate {
    pub class: String,
    pub rate: Rate,
}

/// One row of the class table.
#[derive(Clone, Debug, Serialize)]
pub struct ClassRow {
    pub class: String,
    pub train_images: Option<i64>,
    pub test_images: Option<i64>,
    pub miss: Option<Rate>,
    pub top_confused: Option<String>,
    pub top_confused_share: Option<f64>,
    pub attack: Option<Rate>,
    pub noise: Option<Rate>,
    pub likely_mislabeled: Option<i64>,
    pub mean_self_confidence: Option<f64>,
}

/// A headline correlation.
#[derive(Clone, Debug, Serialize)]
pub struct Correlation {
    pub measure: String,
    pub rho: f64,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub p_value: f64,
    pub n: i64,
    pub significant: bool,
}

/// A rule's findings as the report shows them.
#[derive(Clone, Debug, Serialize)]
pub struct RuleView {
    pub id: String,
    pub severity: String,
    pub title: String,
    pub matches: usize,
    pub messages: Vec<String>,
}

/// An image shown as a thumbnail.
#[derive(Clone, Debug, Serialize)]
pub struct Thumb {
    pub id: String,
    /// Its PNG, relative to the run folder (None: not in the gallery).
    pub file: Option<String>,
    pub label: String,
}

/// A suspicious training image with the neighbours that support the suggestion.
#[derive(Clone, Debug, Serialize)]
pub struct Suspect {
    pub image: Thumb,
    pub suggested: String,
    pub confidence: Option<f64>,
    pub self_confidence: Option<f64>,
    pub neighbors: Vec<Thumb>,
}

/// One finding of `influence-top-proponents` as a strip: the test mistake
/// its training image pushes hardest, then that mistake's 3 strongest
/// proponents (the finding's image among them, as a rule).
#[derive(Clone, Debug, Serialize)]
pub struct InfluenceStrip {
    /// The finding's message.
    pub message: String,
    /// The training image the finding names.
    pub source: String,
    /// The test mistake, its label; `pred` the wrong prediction.
    pub test: Thumb,
    pub pred: String,
    /// Its proponents, strongest first, with their influence.
    pub proponents: Vec<(Thumb, f64)>,
}

/// A test image that copies a training image.
#[derive(Clone, Debug, Serialize)]
pub struct Leak {
    pub test: Thumb,
    pub train: Thumb,
    pub kind: String,
}

/// Everything the report shows, gathered from a run folder.
#[derive(Clone, Debug, Serialize)]
pub struct ReportData {
    pub run: String,
    /// The run folder, as given.
    pub dir: String,
    pub kind: String,
    pub dataset: Option<String>,
    pub train_images: i64,
    pub test_images: i64,
    pub classes: usize,
    pub accuracy: Option<f64>,
    pub model: Option<String>,
    pub version: String,
    pub fingerprint: Option<String>,
    pub seed: u64,
    pub config: String,
    pub command: String,
    pub by_severity: Vec<(String, usize)>,
    pub rules: Vec<RuleView>,
    pub flag_counts: Vec<(String, i64)>,
    pub most_missed: Vec<ClassRate>,
    pub most_attacked: Vec<ClassRate>,
    pub attack: Option<String>,
    pub correlation: Option<Correlation>,
    pub correlations: Vec<Correlation>,
    pub class_rows: Vec<ClassRow>,
    pub scatter_svg: Option<String>,
    pub confusion_svg: Option<String>,
    pub budget_svg: Option<String>,
    pub suspicious: Vec<Suspect>,
    pub suspicious_total: usize,
    /// The training images' probabilities are in sample (an imported
    /// model): their flags are for review only (likely-mislabeled-in-sample).
    pub train_in_sample: bool,
    pub leaks: Vec<Leak>,
    pub leaks_total: usize,
    /// One strip per top finding of `influence-top-proponents` (at most 6).
    pub influence_strips: Vec<InfluenceStrip>,
    pub has_gallery: bool,
    /// Root causes of the explained pairs (empty: the explain stage did not run).
    pub causes: Vec<CauseView>,
    /// The attribution methods and their checks.
    pub methods: Vec<MethodView>,
    pub caps: Caps,
}

/// One explained pair's root cause.
#[derive(Clone, Debug, Serialize)]
pub struct CauseView {
    pub pair: String,
    /// The hypothesis named, in words.
    pub cause: String,
    /// The numbers it rests on.
    pub text: String,
    pub test_confusions: Option<i64>,
    /// The pair's contact sheet, relative to the run folder.
    pub sheet: Option<String>,
}

/// One attribution method: does it pass the randomisation check, does it beat a random pixel order.
#[derive(Clone, Debug, Serialize)]
pub struct MethodView {
    pub method: String,
    /// Mean Spearman with the trained model's maps, every layer random.
    pub randomized_spearman: Option<f64>,
    pub randomized_ssim: Option<f64>,
    pub trustworthy: bool,
    /// Mean (random order's deletion area - the map's): positive = better than random.
    pub deletion_gain: Option<f64>,
    /// Mean (the map's insertion area - random order's).
    pub insertion_gain: Option<f64>,
    /// Median completeness gap (integrated gradients).
    pub completeness_gap: Option<f64>,
    pub maps: i64,
}

/// How much of each list the report shows.
#[derive(Clone, Debug, Serialize)]
pub struct Caps {
    pub suspicious: usize,
    pub duplicates: usize,
    pub messages: usize,
}

fn polars_err(run: &Run) -> impl Fn(polars::prelude::PolarsError) -> Error + '_ {
    move |e| Error::Usage(format!("{}: {e}", run.dir().display()))
}

/// The headline correlation rows of `correlations`, most significant first.
fn headline_correlations(df: &DataFrame) -> Result<Vec<Correlation>> {
    let (x, est, lo, hi) =
        (frame::strs(df, "x")?, frame::f64s(df, "estimate")?, frame::f64s(df, "ci_low")?, frame::f64s(df, "ci_high")?);
    let (p, n, headline, method) =
        (frame::f64s(df, "p_value")?, frame::i64s(df, "n")?, frame::bools(df, "headline")?, frame::strs(df, "method")?);
    let mut rows: Vec<Correlation> = (0..df.height())
        .filter(|&i| headline[i] && method[i].as_deref() == Some("spearman"))
        .map(|i| Correlation {
            measure: x[i].clone().unwrap_or_default(),
            rho: est[i].unwrap_or(0.0),
            low: lo[i],
            high: hi[i],
            p_value: p[i].unwrap_or(1.0),
            n: n[i].unwrap_or(0),
            significant: p[i].unwrap_or(1.0) < 0.05,
        })
        .collect();
    rows.sort_by(|a, b| a.p_value.total_cmp(&b.p_value).then(b.rho.abs().total_cmp(&a.rho.abs())));
    Ok(rows)
}

/// Gathers the report of `run`, with the findings `f` (the run's own, or computed in memory).
pub fn gather(run: &Run, f: &findings::Found) -> Result<ReportData> {
    let err = polars_err(run);
    let m = run.manifest_json();
    let classes = findings::collect(run, run.table("classes")?.sort(["class"], Default::default()))?;
    let names: Vec<String> = frame::strs(&classes, "class_name")?.into_iter().map(Option::unwrap_or_default).collect();
    let k = names.len();
    let col_f64 = |name: &str| frame::f64s_or_none(&classes, name);
    let col_i64 = |name: &str| frame::i64s_or_none(&classes, name);
    let (train, test) = (col_i64("train_images")?, col_i64("test_images")?);
    let (miss, miss_lo, miss_hi) = (col_f64("miss_rate")?, col_f64("miss_rate_low")?, col_f64("miss_rate_high")?);
    let (noise, noise_lo, noise_hi) =
        (col_f64("estimated_noise_rate")?, col_f64("estimated_noise_rate_low")?, col_f64("estimated_noise_rate_high")?);
    let flagged = col_i64("likely_mislabeled")?;
    let confidence = col_f64("mean_self_confidence")?;
    let (top, top_share) = (frame::strs_or_none(&classes, "top_confused_with_name")?, col_f64("top_confused_share")?);

    // The headline correlation, and the attack and budget it is about.
    let correlations = headline_correlations(&f.correlations)?;
    let headline = correlations.first().cloned();
    let primary: Option<(String, String)> = headline.as_ref().and_then(|c| {
        let rest = c.measure.strip_prefix("attack_success:")?;
        let (attack, budget) = rest.rsplit_once('@')?;
        Some((attack.to_string(), budget.to_string()))
    });

    // Attack success per class: at the headline budget, and per budget for the plot.
    let mut attack_rate: Vec<Option<Rate>> = vec![None; k];
    let mut mean_success: Vec<Option<f64>> = vec![None; k];
    let mut budget_series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut budget_attack = None;
    if run.has("attack_classes") {
        let df = findings::collect(run, run.table("attack_classes")?)?;
        let (cls, attack, budget) =
            (frame::i64s(&df, "class")?, frame::strs(&df, "attack")?, frame::f64s(&df, "budget")?);
        let (rate, lo, hi) = (
            frame::f64s(&df, "success_rate")?,
            frame::f64s(&df, "success_rate_low")?,
            frame::f64s(&df, "success_rate_high")?,
        );
        let attacked = frame::i64s(&df, "attacked")?;
        let (mut sums, mut counts) = (vec![0.0; k], vec![0usize; k]);
        let plot_attack = primary.as_ref().map(|p| p.0.clone()).or_else(|| attack.iter().flatten().next().cloned());
        let mut series: Vec<Vec<(f64, f64)>> = vec![Vec::new(); k];
        for i in 0..df.height() {
            let (Some(c), Some(a), Some(b), Some(r)) = (cls[i], attack[i].as_deref(), budget[i], rate[i]) else {
                continue;
            };
            let c = c as usize;
            if c >= k || attacked[i].unwrap_or(0) == 0 {
                continue;
            }
            if !a.contains(":least-likely") && a.matches(':').count() == 1 {
                sums[c] += r;
                counts[c] += 1;
            }
            if let Some((pa, pb)) = &primary {
                if a == pa && budget_label(a, b as f32) == *pb {
                    attack_rate[c] = Some(Rate { rate: r, low: lo[i], high: hi[i] });
                }
            }
            if plot_attack.as_deref() == Some(a) {
                let x = if a.contains(":linf") { b * 255.0 } else { b };
                series[c].push((x, r));
            }
        }
        for c in 0..k {
            mean_success[c] = (counts[c] > 0).then(|| sums[c] / counts[c] as f64);
        }
        budget_attack = plot_attack;
        budget_series = names.iter().cloned().zip(series).filter(|(_, v)| !v.is_empty()).collect();
    }

    let class_rows: Vec<ClassRow> = (0..k)
        .map(|c| ClassRow {
            class: names[c].clone(),
            train_images: train[c],
            test_images: test[c],
            miss: miss[c].map(|r| Rate { rate: r, low: miss_lo[c], high: miss_hi[c] }),
            top_confused: top[c].clone(),
            top_confused_share: top_share[c],
            attack: attack_rate[c].clone(),
            noise: noise[c].map(|r| Rate { rate: r, low: noise_lo[c], high: noise_hi[c] }),
            likely_mislabeled: flagged[c],
            mean_self_confidence: confidence[c],
        })
        .collect();
    let ranked = |values: &[Option<f64>], lo: &[Option<f64>], hi: &[Option<f64>]| -> Vec<ClassRate> {
        let mut order: Vec<usize> = (0..k).filter(|&c| values[c].is_some()).collect();
        order.sort_by(|&a, &b| values[b].unwrap().total_cmp(&values[a].unwrap()).then(a.cmp(&b)));
        order
            .into_iter()
            .take(3)
            .map(|c| ClassRate {
                class: names[c].clone(),
                rate: Rate { rate: values[c].unwrap(), low: lo[c], high: hi[c] },
            })
            .collect()
    };
    let most_missed =
        if miss.iter().any(|m| m.is_some_and(|v| v > 0.0)) { ranked(&miss, &miss_lo, &miss_hi) } else { Vec::new() };
    let none = vec![None; k];
    let most_attacked = ranked(&mean_success, &none, &none);

    // Plots.
    let scatter_svg = match (&headline, primary.as_ref()) {
        (Some(h), Some((a, b))) if class_rows.iter().any(|r| r.miss.is_some() && r.attack.is_some()) => {
            let points: Vec<plots::ScatterPoint> = class_rows
                .iter()
                .filter_map(|r| {
                    let (m, at) = (r.miss.as_ref()?, r.attack.as_ref()?);
                    Some(plots::ScatterPoint {
                        label: r.class.clone(),
                        x: (m.rate, m.low.unwrap_or(m.rate), m.high.unwrap_or(m.rate)),
                        y: (at.rate, at.low.unwrap_or(at.rate), at.high.unwrap_or(at.rate)),
                    })
                })
                .collect();
            let title = format!(
                "Spearman rho {:.2} (95% CI {} to {}), p = {}",
                h.rho,
                h.low.map_or("?".into(), |v| format!("{v:.2}")),
                h.high.map_or("?".into(), |v| format!("{v:.2}")),
                findings::rules::num(h.p_value)
            );
            Some(plots::scatter(
                &points,
                "test miss rate (95% Wilson interval)",
                &format!("success of {a} at {b}"),
                &title,
            ))
        }
        _ => None,
    };
    let confusion_svg = if run.has("confusion") {
        let df = findings::collect(run, run.table("confusion")?)?;
        let (g, p, n) = (frame::i64s(&df, "given")?, frame::i64s(&df, "predicted")?, frame::i64s(&df, "count")?);
        let mut grid = vec![vec![0i64; k]; k];
        for i in 0..df.height() {
            if let (Some(a), Some(b)) = (g[i], p[i]) {
                if (a as usize) < k && (b as usize) < k {
                    grid[a as usize][b as usize] += n[i].unwrap_or(0);
                }
            }
        }
        Some(plots::confusion(&names, &grid))
    } else {
        None
    };
    let budget_svg = budget_attack.filter(|_| !budget_series.is_empty()).map(|a| {
        let x = if a.contains(":linf") {
            "budget (L-inf, grey levels of 255)"
        } else {
            "budget (L2 norm, [0, 1] pixel units)"
        };
        plots::budgets(&budget_series, x, &format!("{a}: success per class against budget"))
    });

    // Images: the gallery, the suspicious images and their neighbours, the leaks.
    let gallery: HashMap<String, String> = if run.has("gallery") {
        let df = findings::collect(run, run.table("gallery")?)?;
        let named: HashMap<String, String> = frame::strs(&df, "id")?
            .into_iter()
            .zip(frame::strs(&df, "file")?)
            .filter_map(|(i, f)| Some((i?, f?)))
            .collect();
        // Every file it names must be a regular file inside the run folder
        // (one missing is shown without its image).
        for file in named.values() {
            match run.resolve(file) {
                Ok(_) | Err(crate::run::read::ReadError::NoFile { .. }) => {}
                Err(e) => return Err(Error::Usage(format!("gallery.parquet names a file misfit refuses: {e}"))),
            }
        }
        named
    } else {
        HashMap::new()
    };
    let samples = findings::collect(run, run.table("samples")?.select([col("id"), col("label_name")]))?;
    let label_of: HashMap<String, String> = frame::strs(&samples, "id")?
        .into_iter()
        .zip(frame::strs(&samples, "label_name")?)
        .filter_map(|(i, l)| Some((i?, l?)))
        .collect();
    let thumb = |id: &str| Thumb {
        id: id.to_string(),
        file: gallery.get(id).cloned(),
        label: label_of.get(id).cloned().unwrap_or_default(),
    };
    let of_rule = |rule: &str| -> Result<DataFrame> {
        f.findings.clone().lazy().filter(col("rule").eq(lit(rule))).collect().map_err(&err)
    };
    let suspects = of_rule("likely-mislabeled")?;
    let suspicious_total = match suspects.height() {
        0 => 0,
        _ => frame::i64s(&suspects, "rule_matches")?[0].unwrap_or(0) as usize,
    };
    let suspects = suspects.head(Some(SHOW_SUSPICIOUS));
    let neighbors: HashMap<String, Vec<String>> = if run.has("neighbors") && suspects.height() > 0 {
        let ids = frame::strs(&suspects, "subject")?.into_iter().flatten().collect::<Vec<_>>();
        let df = findings::collect(
            run,
            run.table("neighbors")?
                .filter(col("id").is_in(lit(polars::prelude::Series::new("".into(), ids)).implode(false), false))
                .filter(col("rank").lt_eq(lit(3)))
                .sort(["id", "rank"], Default::default()),
        )?;
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (i, n) in frame::strs(&df, "id")?.into_iter().zip(frame::strs(&df, "neighbor_id")?) {
            if let (Some(i), Some(n)) = (i, n) {
                map.entry(i).or_default().push(n);
            }
        }
        map
    } else {
        HashMap::new()
    };
    let (get_f64, get_str) = (frame::f64s_or_none, frame::strs_or_none);
    let (ids, suggested) = (get_str(&suspects, "subject")?, get_str(&suspects, "suggested_label_name")?);
    let (conf, selfc) = (get_f64(&suspects, "suggested_confidence")?, get_f64(&suspects, "self_confidence")?);
    let suspicious: Vec<Suspect> = (0..suspects.height())
        .map(|i| {
            let id = ids[i].clone().unwrap_or_default();
            Suspect {
                neighbors: neighbors.get(&id).map(|v| v.iter().map(|n| thumb(n)).collect()).unwrap_or_default(),
                image: thumb(&id),
                suggested: suggested[i].clone().unwrap_or_default(),
                confidence: conf[i],
                self_confidence: selfc[i],
            }
        })
        .collect();
    let influence_strips = if run.has("influence") {
        let top = of_rule("influence-top-proponents")?.head(Some(SHOW_INFLUENCE));
        let (sources, messages) = (get_str(&top, "subject")?, get_str(&top, "message")?);
        let mut strips = Vec::new();
        for (source, message) in sources.into_iter().zip(messages) {
            let (Some(source), Some(message)) = (source, message) else { continue };
            // The test mistake the image pushes hardest: its best rank, then the largest influence.
            let best = findings::collect(
                run,
                run.table("influence")?
                    .filter(col("sign").eq(lit("proponent")).and(col("train_id").eq(lit(source.as_str()))))
                    .sort_by_exprs(
                        [col("rank"), col("influence"), col("test_id")],
                        polars::prelude::SortMultipleOptions::default()
                            .with_order_descending_multi([false, true, false]),
                    )
                    .limit(1),
            )?;
            let Some(Some(test_id)) = frame::strs(&best, "test_id")?.into_iter().next() else { continue };
            let pred = frame::strs(&best, "test_pred_name")?.into_iter().next().flatten().unwrap_or_default();
            let props = findings::collect(
                run,
                run.table("influence")?
                    .filter(col("sign").eq(lit("proponent")).and(col("test_id").eq(lit(test_id.as_str()))))
                    .filter(col("rank").lt_eq(lit(3)))
                    .sort(["rank"], Default::default()),
            )?;
            let infl = frame::f64s_or_none(&props, "influence")?;
            let proponents = frame::strs(&props, "train_id")?
                .into_iter()
                .zip(infl)
                .filter_map(|(id, v)| Some((thumb(id?.as_str()), v?)))
                .collect();
            strips.push(InfluenceStrip { message, source, test: thumb(&test_id), pred, proponents });
        }
        strips
    } else {
        Vec::new()
    };
    let leaks_df = of_rule("train-test-duplicates")?;
    let leaks_total = leaks_df.height();
    let leaks_df = leaks_df.head(Some(SHOW_DUPLICATES));
    let (test_ids, train_ids, kinds) =
        (get_str(&leaks_df, "subject")?, get_str(&leaks_df, "train_id")?, get_str(&leaks_df, "kind")?);
    let leaks: Vec<Leak> = (0..leaks_df.height())
        .map(|i| Leak {
            test: thumb(test_ids[i].as_deref().unwrap_or_default()),
            train: thumb(train_ids[i].as_deref().unwrap_or_default()),
            kind: kinds[i].clone().unwrap_or_default(),
        })
        .collect();

    // Findings per rule, most severe first.
    let mut rules: Vec<RuleView> = Vec::new();
    let (rule_col, message) = (frame::strs(&f.findings, "rule")?, frame::strs(&f.findings, "message")?);
    let mut outcomes: Vec<&findings::RuleOutcome> = f.summary.rules.iter().filter(|r| r.kept > 0).collect();
    outcomes.sort_by_key(|r| std::cmp::Reverse(findings::Severity::parse(&r.severity)));
    for r in outcomes {
        let messages: Vec<String> = (0..f.findings.height())
            .filter(|&i| rule_col[i].as_deref() == Some(r.id.as_str()))
            .take(SHOW_MESSAGES)
            .filter_map(|i| message[i].clone())
            .collect();
        rules.push(RuleView {
            id: r.id.clone(),
            severity: r.severity.clone(),
            title: r.title.clone(),
            matches: r.matches,
            messages,
        });
    }
    // Findings by severity: every row the rules returned, not only those kept.
    let by_severity: Vec<(String, usize)> = ["error", "warn", "info"]
        .iter()
        .map(|s| (s.to_string(), f.summary.rules.iter().filter(|r| r.severity == *s).map(|r| r.matches).sum()))
        .collect();
    let flag_counts: Vec<(String, i64)> = ["label_issues", "likely_mislabeled", "ambiguous", "outliers", "duplicates"]
        .iter()
        .filter(|c| frame::has(&classes, c))
        .map(|c| Ok((c.replace('_', " "), frame::i64s(&classes, c)?.iter().flatten().sum())))
        .collect::<Result<_>>()?;

    let config = m.get("config").cloned().unwrap_or_default();
    let str_at = |path: &[&str]| -> Option<String> {
        let mut v = m;
        for p in path {
            v = v.get(p)?;
        }
        v.as_str().map(str::to_string)
    };
    let kind = if m.get("inputs").is_some() { "score" } else { "audit" };
    let accuracy = m.get("evaluation").and_then(|e| e.get("accuracy")).and_then(|a| a.as_f64());
    Ok(ReportData {
        run: m.get("run_name").and_then(|r| r.as_str()).unwrap_or_default().to_string(),
        dir: run.dir().display().to_string(),
        kind: kind.into(),
        dataset: str_at(&["dataset", "source"]),
        train_images: train.iter().flatten().sum(),
        test_images: test.iter().flatten().sum(),
        classes: k,
        accuracy,
        model: str_at(&["model", "source"]),
        version: run.version().to_string(),
        fingerprint: str_at(&["dataset", "fingerprint"]),
        seed: findings::correlations::run_seed(run),
        command: command(m),
        config: serde_json::to_string_pretty(&config).unwrap_or_default(),
        by_severity,
        rules,
        flag_counts,
        most_missed,
        most_attacked,
        attack: primary.map(|(a, b)| format!("{a} at {b}")),
        correlation: headline,
        correlations,
        class_rows,
        scatter_svg,
        confusion_svg,
        budget_svg,
        suspicious,
        suspicious_total,
        // An imported model: run.json's model without folds (a score run has no model).
        train_in_sample: m.get("model").is_some_and(|x| x.get("folds").is_none_or(|f| f.is_null())),
        leaks,
        leaks_total,
        influence_strips,
        has_gallery: !gallery.is_empty(),
        causes: causes(run, f)?,
        methods: methods(run)?,
        caps: Caps { suspicious: SHOW_SUSPICIOUS, duplicates: SHOW_DUPLICATES, messages: SHOW_MESSAGES },
    })
}

/// The explained pairs' root causes, by pair rank.
fn causes(run: &Run, f: &findings::Found) -> Result<Vec<CauseView>> {
    let p = &f.pairs;
    if !frame::has(p, "hypothesis") {
        return Ok(Vec::new());
    }
    let sheets: HashMap<String, String> = if run.has("saliency") {
        let df = findings::collect(run, run.table("saliency")?.filter(col("sheet").is_not_null()))?;
        frame::strs(&df, "pair")?
            .into_iter()
            .zip(frame::strs(&df, "sheet")?)
            .filter_map(|(p, s)| Some((p?, s?)))
            .collect()
    } else {
        HashMap::new()
    };
    let (pair, hyp, text) =
        (frame::strs(p, "pair")?, frame::strs(p, "hypothesis")?, frame::strs(p, "hypothesis_text")?);
    let confusions = frame::i64s_or_none(p, "test_confusions")?;
    let explained = frame::bools(p, "explained")?;
    Ok((0..p.height())
        .filter(|&i| explained[i])
        .filter_map(|i| {
            let pair = pair[i].clone()?;
            let text = text[i].clone().unwrap_or_default();
            // The text starts with the cause in words (for an undecided pair,
            // the two leading hypotheses); the view keeps the numbers.
            let (words, text) =
                text.split_once(": ").map_or((None, text.clone()), |(w, rest)| (Some(w), rest.to_string()));
            let cause = match hyp[i].as_deref()? {
                "undecided" => words.unwrap_or("undecided").to_string(),
                h => findings::verdict::words(h).to_string(),
            };
            Some(CauseView { sheet: sheets.get(&pair).cloned(), pair, cause, text, test_confusions: confusions[i] })
        })
        .collect())
}

/// The attribution methods: the randomisation check's last step, and the
/// deletion and insertion areas against the random order's.
fn methods(run: &Run) -> Result<Vec<MethodView>> {
    if !run.has("sanity") || !run.has("saliency") {
        return Ok(Vec::new());
    }
    let sanity = findings::collect(run, run.table("sanity")?.sort(["step"], Default::default()))?;
    let (m, step) = (frame::strs(&sanity, "method")?, frame::i64s(&sanity, "step")?);
    let (rho, ssim, trust) =
        (frame::f64s(&sanity, "spearman")?, frame::f64s(&sanity, "ssim")?, frame::bools(&sanity, "trustworthy")?);
    let last = step.iter().flatten().max().copied().unwrap_or(0);
    let gains = findings::collect(
        run,
        run.table("saliency")?.group_by([col("method")]).agg([
            (col("deletion_auc_random") - col("deletion_auc")).mean().alias("deletion_gain"),
            (col("insertion_auc") - col("insertion_auc_random")).mean().alias("insertion_gain"),
            col("completeness_gap").median().alias("completeness_gap"),
            col("method").count().alias("maps"),
        ]),
    )?;
    let gm = frame::strs(&gains, "method")?;
    let (dg, ig, cg) = (
        frame::f64s(&gains, "deletion_gain")?,
        frame::f64s(&gains, "insertion_gain")?,
        frame::f64s(&gains, "completeness_gap")?,
    );
    let maps = frame::i64s(&gains, "maps")?;
    Ok((0..sanity.height())
        .filter(|&i| step[i] == Some(last))
        .filter_map(|i| {
            let method = m[i].clone()?;
            let g = gm.iter().position(|x| x.as_deref() == Some(method.as_str()));
            Some(MethodView {
                randomized_spearman: rho[i],
                randomized_ssim: ssim[i],
                trustworthy: trust[i],
                deletion_gain: g.and_then(|g| dg[g]),
                insertion_gain: g.and_then(|g| ig[g]),
                completeness_gap: g.and_then(|g| cg[g]),
                maps: g.and_then(|g| maps[g]).unwrap_or(0),
                method,
            })
        })
        .collect())
}

/// The command that reproduces the run, from its configuration.
fn command(m: &serde_json::Value) -> String {
    let c = m.get("config").cloned().unwrap_or_default();
    if m.get("inputs").is_some() {
        let files = c.get("files").cloned().unwrap_or_default();
        let arg = |k: &str, flag: &str| {
            files.get(k).and_then(|v| v.as_str()).map(|v| format!(" {flag} {v}")).unwrap_or_default()
        };
        return format!(
            "misfit score{}{}{}",
            arg("probs", "--probs"),
            arg("labels", "--labels"),
            arg("embeddings", "--embeddings")
        );
    }
    let dataset = m.get("dataset").and_then(|d| d.get("spec")).and_then(|s| s.as_str()).unwrap_or("demo");
    let seed = c.get("seed").and_then(|s| s.as_u64()).unwrap_or(0);
    let model = m
        .get("model")
        .and_then(|d| d.get("source"))
        .and_then(|s| s.as_str())
        .and_then(|s| s.strip_prefix("imported "))
        .map(|p| format!(" --model {p}"))
        .unwrap_or_default();
    let name = m.get("run_name").and_then(|r| r.as_str()).unwrap_or_default();
    format!("misfit audit {dataset} --seed {seed}{model} --run {name}")
}

/// Renders `report.html` and `report.md` (with `report_files/`) into the run folder.
pub fn write(run: &Run, data: &ReportData) -> Result<(PathBuf, PathBuf)> {
    let dir = run.dir();
    let html = render_html(dir, data)?;
    let md = render_markdown(data)?;
    let files = dir.join(FILES_DIR);
    std::fs::create_dir_all(&files).map_err(|e| Error::io(&files, e))?;
    for (name, svg) in
        [("scatter.svg", &data.scatter_svg), ("confusion.svg", &data.confusion_svg), ("budgets.svg", &data.budget_svg)]
    {
        if let Some(svg) = svg {
            crate::atomic::write(files.join(name), svg.as_bytes())?;
        }
    }
    let (h, m) = (dir.join(HTML), dir.join(MARKDOWN));
    crate::atomic::write(&h, html.as_bytes())?;
    crate::atomic::write(&m, md.as_bytes())?;
    Ok((h, m))
}

fn env(dir: Option<&Path>) -> minijinja::Environment<'static> {
    let mut env = findings::rules::templates();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    if let Some(dir) = dir {
        let dir = dir.to_path_buf();
        // Base64 and the data: prefix need no escaping; marked safe so the
        // attribute holds them as they are.
        // Only a regular file inside the run folder is read (gather checked
        // them; again here, as they are read); one missing shows no image.
        env.add_filter(
            "datauri",
            move |file: Option<String>| -> std::result::Result<minijinja::Value, minijinja::Error> {
                let Some(file) = file else { return Ok(minijinja::Value::from("")) };
                match crate::run::read::read_inside(&dir, &file) {
                    Ok(bytes) => Ok(minijinja::Value::from_safe_string(format!(
                        "data:image/png;base64,{}",
                        base64::engine::general_purpose::STANDARD.encode(bytes)
                    ))),
                    Err(crate::run::read::ReadError::NoFile { .. }) => Ok(minijinja::Value::from("")),
                    Err(e) => Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())),
                }
            },
        );
    }
    env
}

fn render_template(env: &minijinja::Environment, name: &str, source: &str, data: &ReportData) -> Result<String> {
    env.template_from_named_str(name, source)
        .and_then(|t| t.render(data))
        .map_err(|e| Error::Usage(format!("{name}: {e:#}")))
}

/// Markdown's escaping ([`crate::escape`]): every text value as a table
/// cell (safe in running text too); `code` makes a code span, `attr` an
/// HTML attribute value (an `<img>`'s), `pystr` a Python string literal.
fn markdown_escaping(env: &mut minijinja::Environment<'static>) {
    use minijinja::value::{Value, ValueKind};
    env.set_formatter(|out, state, value| {
        if value.kind() == ValueKind::String && !value.is_safe() {
            return out.write_str(&crate::escape::md_cell(value.as_str().unwrap_or_default())).map_err(Into::into);
        }
        minijinja::escape_formatter(out, state, value)
    });
    env.add_filter("code", |s: String| Value::from_safe_string(crate::escape::md_code(&s)));
    env.add_filter("attr", |s: String| Value::from_safe_string(crate::escape::md_attr(&s)));
    env.add_filter("pystr", |s: String| Value::from_safe_string(serde_json::Value::from(s).to_string()));
}

/// The HTML report: images inline.
pub fn render_html(dir: &Path, data: &ReportData) -> Result<String> {
    render_template(&env(Some(dir)), "report.html", include_str!("report.html"), data)
}

/// The Markdown report, cut to GitHub's limit: thumbnails and messages go
/// first when it is too long.
pub fn render_markdown(data: &ReportData) -> Result<String> {
    let mut env = env(None);
    markdown_escaping(&mut env);
    let mut d = data.clone();
    loop {
        let md = render_template(&env, "report.md", include_str!("report.md"), &d)?;
        if md.chars().count() < MARKDOWN_LIMIT {
            return Ok(md);
        }
        if d.suspicious.len() > 4 {
            d.suspicious.truncate(d.suspicious.len() / 2);
        } else if d.leaks.len() > 4 {
            d.leaks.truncate(d.leaks.len() / 2);
        } else if d.rules.iter().any(|r| r.messages.len() > 1) {
            d.rules.iter_mut().for_each(|r| r.messages.truncate(1));
        } else {
            let cut: String = md.chars().take(MARKDOWN_LIMIT - 200).collect();
            return Ok(format!("{cut}\n\n(cut at GitHub's limit; report.html has everything)\n"));
        }
    }
}

/// Renders the report of the run folder `dir` from the findings it holds
/// (see [`findings::of_run`]) and returns its summary.
pub fn render(dir: &Path) -> Result<Summary> {
    let run = Run::open(dir)?;
    let f = findings::of_run(&run)?;
    of_findings(&run, &f)
}

/// Renders the report of the run folder `dir` with its findings under
/// `rules` computed in memory (the run's findings tables are left as they
/// are) and returns its summary.
pub fn run(dir: &Path, rules: &RuleSet) -> Result<Summary> {
    let run = Run::open(dir)?;
    let f = findings::analyze(&run, rules, &[])?;
    of_findings(&run, &f.found())
}

/// Renders the report of `run` with the findings `f`.
pub fn of_findings(run: &Run, f: &findings::Found) -> Result<Summary> {
    let data = gather(run, f)?;
    let (h, m) = write(run, &data)?;
    Ok(Summary::new(run.manifest().as_ref(), &data, &h, &m, run.dir()))
}

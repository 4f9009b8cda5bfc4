//! The terminal summary of a run, from its manifest.

use super::RunManifest;

/// A plain-text summary of a run for the terminal.
pub fn summary(m: &RunManifest) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let classes = m.classes();
    if let Some(d) = &m.dataset {
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
    if let Some(i) = &m.inputs {
        let _ = writeln!(s, "samples  {} ({} classes)", i.samples, i.classes.len());
    }
    if let Some(p) = &m.planted {
        let parts: Vec<String> = p.iter().map(|(k, v)| format!("{v} {k}")).collect();
        let _ = writeln!(s, "planted  {}", parts.join(", "));
    }
    for n in &m.notes {
        let _ = writeln!(s, "note     {n}");
    }
    if let Some(e) = &m.evaluation {
        let _ = writeln!(s, "test     accuracy {:.2}%", 100.0 * e.accuracy);
        // Classes without test images have no miss rate and are left out.
        let mut order: Vec<(&crate::stages::evaluate::ClassResult, f64, f64, f64)> =
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
    if let Some(sc) = &m.scores {
        let f: Vec<String> = sc.flagged.iter().map(|(k, v)| format!("{v} {k}")).collect();
        // An imported model's training probabilities are in sample: its
        // training flags are weak evidence, and the findings keep a review
        // shortlist of them, as they do of the test split's flags.
        let in_sample = sc.flagged_test.is_some() && m.model.as_ref().is_some_and(|x| x.folds.is_none());
        let train = match (in_sample, shortlist(m, "likely-mislabeled-in-sample")) {
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
            let test = match shortlist(m, "test-likely-mislabeled") {
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
    if !m.timing_s.is_empty() && m.dataset.is_none() {
        let t: Vec<String> = m.timing_s.iter().map(|(k, v)| format!("{k} {v:.2} s")).collect();
        let _ = writeln!(s, "time     {}", t.join(", "));
    }
    if let Some(a) = &m.attacks {
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
                let mut rows: Vec<&crate::attack::ClassSuccess> =
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
    crate::escape::terminal(&s)
}

/// `2/255` for an L-inf budget that is a whole number of grey levels, the plain number otherwise.
pub fn budget_label(attack: &str, budget: f32) -> String {
    let levels = budget * 255.0;
    if attack.contains(":linf") && (levels - levels.round()).abs() < 1e-3 {
        format!("{}/255", levels.round())
    } else {
        format!("{budget}")
    }
}

/// Findings kept by a rule of the run (None when findings did not run or
/// the rule is not among them).
fn shortlist(m: &RunManifest, rule: &str) -> Option<usize> {
    m.findings.as_ref()?.rules.iter().find(|r| r.id == rule).map(|r| r.kept)
}

//! Root causes per confused pair: `pairs.parquet`'s cause columns, read
//! from the explain stage's tables (`saliency`, `sanity`, `pair_radii`, the
//! ring colour and occlusion columns of `samples`) and the scores. Each of
//! three hypotheses rests on named numbers; a criterion whose numbers a run
//! lacks is not counted.
//!
//! - label noise: (L1) the confident joint is asymmetric towards B
//!   (`joint_asymmetry` >= 0.5); (L2) at least half of A's training images
//!   predicted B (out of sample) are flagged likely mislabeled; (L3) at
//!   least half of them have neighbours whose majority label is B;
//! - look-alike classes: (K1) the confusion goes both ways (the smaller
//!   direction at least a third of the larger, test and out-of-sample
//!   training predictions together); (K2) B is the class A's
//!   neighbourhoods lean to most; (K3) a targeted attack reaches B within
//!   1.25 times the untargeted radius (median; B is as near as any class);
//!   (K4) the maps of the confused images are no more concentrated than
//!   those of correctly classified images of A, and not more on the
//!   background (spread over the object rather than on distinctive parts);
//!   (K5) no background that the pair shares and other classes do not
//!   (B3 not met: the objects, not the scene, are what is alike);
//! - background shortcut: (B1) the confused images' maps lean more on the
//!   ring than correctly classified images of A do (`ring_reliance_gap` >
//!   0, with a bootstrap interval); (B2) with only the background left,
//!   A's test images go to A or B more often than other classes' images do
//!   (the low end of the lift's interval above 0); (B3) a background the
//!   pair shares and other classes do not: the ring colour does not tell A
//!   from B (AUROC <= 0.7) but tells the pair from the other classes
//!   (AUROC >= 0.75).
//!
//! A criterion resting on maps or shares of images needs at least three
//! images to be counted. The call and its uncertainty are
//! [`super::verdict`]'s: a criterion counts only when it holds, or fails,
//! in 95% of seeded bootstrap resamples of the evidence, and a hypothesis
//! is named only when it meets two thirds of its counted criteria and
//! beats every other by a fifth; otherwise the pair is undecided between
//! the two leading hypotheses.
//!
//! The maps used are those of the most trustworthy method: the one that
//! decorrelates most in the randomisation check among those that pass it.

use crate::run::columns::findings::CAUSES;
use polars::prelude::{col, lit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

use super::verdict;
use super::{collect, frame};
use crate::error::Result;
use crate::run::read::Run;

use crate::run::table::{Columns, TableBuilder};
use crate::stats::{median, percentile_interval, wilson, Z95};

/// Inputs from `pairs`: the confident joint's asymmetry and the neighbour
/// shares per ordered pair (`[a][b]`).
pub struct PairInputs<'a> {
    pub joint_asymmetry: &'a dyn Fn(usize, usize) -> Option<f64>,
    /// The calibrated confident joint's counts A -> B plus B -> A.
    pub joint_images: &'a dyn Fn(usize, usize) -> Option<f64>,
    pub neighbor_share: Option<&'a Vec<Vec<f64>>>,
}

/// The cause columns for `rows` (ordered pairs), or None when the run has
/// no explanations.
pub fn columns(
    run: &Run,
    rows: &[(usize, usize)],
    k: usize,
    names: &[String],
    inp: &PairInputs,
) -> Result<Option<Columns>> {
    if !run.has("saliency") || !run.has("sanity") {
        return Ok(None);
    }
    let seed = super::correlations::run_seed(run);
    let class = |v: Option<i64>| v.filter(|&c| c >= 0 && (c as usize) < k).map(|c| c as usize);

    // The most trustworthy method.
    let sanity = collect(run, run.table("sanity")?)?;
    let last = frame::i64s(&sanity, "step")?.into_iter().flatten().max().unwrap_or(0);
    let last_rows = collect(run, run.table("sanity")?.filter(col("step").eq(lit(last)).and(col("trustworthy"))))?;
    let method = {
        let (m, r) = (frame::strs(&last_rows, "method")?, frame::f64s(&last_rows, "spearman")?);
        m.into_iter().zip(r).filter_map(|(m, r)| Some((m?, r?))).min_by(|a, b| a.1.total_cmp(&b.1)).map(|(m, _)| m)
    };

    // Maps of the chosen method: ring reliance and concentration per (pair, role).
    let mut maps: HashMap<(String, String), (Vec<f64>, Vec<f64>)> = HashMap::new();
    let explained_pairs: std::collections::HashSet<String> = {
        let df = collect(run, run.table("saliency")?.filter(col("pair").is_not_null()))?;
        frame::strs(&df, "pair")?.into_iter().flatten().collect()
    };
    if let Some(m) = &method {
        let df = collect(
            run,
            run.table("saliency")?.filter(
                col("method")
                    .eq(lit(m.as_str()))
                    .and(col("pair").is_not_null())
                    .and(col("role").eq(lit("contrast")).or(col("target_is").eq(lit("pred")))),
            ),
        )?;
        let (pair, role) = (frame::strs(&df, "pair")?, frame::strs(&df, "role")?);
        let (ratio, conc) = (frame::f64s(&df, "ring_ratio")?, frame::f64s(&df, "concentration")?);
        for i in 0..df.height() {
            let (Some(p), Some(r)) = (&pair[i], &role[i]) else { continue };
            let e = maps.entry((p.clone(), r.clone())).or_default();
            if let Some(v) = ratio[i] {
                e.0.push(v);
            }
            if let Some(v) = conc[i] {
                e.1.push(v);
            }
        }
    }

    // Samples: out-of-sample training predictions, flags, neighbours, ring colours, occlusion.
    let samples = collect(run, run.table("samples")?)?;
    let labels: Vec<Option<usize>> = frame::i64s(&samples, "label")?.into_iter().map(class).collect();
    let train: Vec<bool> = frame::strs(&samples, "split")?.iter().map(|s| s.as_deref() == Some("train")).collect();
    let pred: Vec<Option<usize>> = frame::i64s_or_none(&samples, "pred")?.into_iter().map(class).collect();
    let flagged: Vec<bool> = if frame::has(&samples, "likely_mislabeled") {
        frame::bools(&samples, "likely_mislabeled")?
    } else {
        vec![false; samples.height()]
    };
    let has_flags = frame::has(&samples, "likely_mislabeled");
    let nlabel: Vec<Option<usize>> = frame::i64s_or_none(&samples, "neighbor_label")?.into_iter().map(class).collect();
    let has_neighbors = frame::has(&samples, "neighbor_label");
    let colour: Option<Vec<[f64; 3]>> = if frame::has(&samples, "ring_red") {
        let (r, g, b) = (
            frame::f64s(&samples, "ring_red")?,
            frame::f64s(&samples, "ring_green")?,
            frame::f64s(&samples, "ring_blue")?,
        );
        Some((0..samples.height()).map(|i| [r[i].unwrap_or(0.0), g[i].unwrap_or(0.0), b[i].unwrap_or(0.0)]).collect())
    } else {
        None
    };
    let bg_only: Vec<Option<usize>> =
        frame::i64s_or_none(&samples, "pred_background_only")?.into_iter().map(class).collect();

    // Where the training images' probabilities are in sample (an imported
    // model trained on them: training rows without a fold), their flags and
    // the confident joint cannot witness label noise, and the test split's
    // cannot either: a test image predicted B is flagged because it is
    // predicted B. Label noise is then "cannot tell", and the confusions
    // pooled for K1 are the test split's alone.
    let in_sample = super::pairs::train_in_sample(&samples)?;
    // Pooled confusions: test + out-of-sample training predictions.
    let mut pooled = vec![vec![0i64; k]; k];
    let mut confused_train = vec![vec![Vec::new(); k]; k];
    for i in 0..samples.height() {
        if let (Some(a), Some(p)) = (labels[i], pred[i]) {
            if a != p && !(train[i] && in_sample) {
                pooled[a][p] += 1;
            }
            if a != p && train[i] {
                confused_train[a][p].push(i);
            }
        }
    }

    // Pair radii.
    let mut ratios: HashMap<(usize, usize), Vec<f64>> = HashMap::new();
    if run.has("pair_radii") {
        let df = collect(run, run.table("pair_radii")?)?;
        let (g, t) = (frame::i64s(&df, "given")?, frame::i64s(&df, "target")?);
        let (rt, ru) = (frame::f64s(&df, "radius_targeted_l2")?, frame::f64s(&df, "radius_untargeted_l2")?);
        for i in 0..df.height() {
            let (Some(a), Some(b)) = (class(g[i]), class(t[i])) else { continue };
            let Some(u) = ru[i].filter(|&u| u > 0.0) else { continue };
            ratios.entry((a, b)).or_default().push(rt[i].map_or(f64::INFINITY, |r| r / u));
        }
    }

    // Sample rows by split (0 train, 1 test) and class, once.
    let mut by_class = [vec![Vec::new(); k], vec![Vec::new(); k]];
    for (i, l) in labels.iter().enumerate() {
        if let Some(c) = *l {
            by_class[!train[i] as usize][c].push(i);
        }
    }
    let of_classes = |split: usize, set: &dyn Fn(usize) -> bool| -> Vec<usize> {
        (0..k).filter(|&c| set(c)).flat_map(|c| by_class[split][c].iter().copied()).collect()
    };
    let (train_of, test_in) =
        (|set: &dyn Fn(usize) -> bool| of_classes(0, set), |set: &dyn Fn(usize) -> bool| of_classes(1, set));
    let test_of = |c: usize| by_class[1][c].as_slice();
    let mean_colour = |rows: &[usize], cs: &[[f64; 3]]| -> Option<[f64; 3]> {
        (!rows.is_empty()).then(|| {
            let mut m = [0.0; 3];
            for &i in rows {
                for c in 0..3 {
                    m[c] += cs[i][c] / rows.len() as f64;
                }
            }
            m
        })
    };
    // Test images' ring colours projected on the direction between two
    // groups' training means.
    let projected = |pos: &[usize], neg: &[usize], pos_train: &[usize], neg_train: &[usize], cs: &[[f64; 3]]| {
        let (mp, mn) = (mean_colour(pos_train, cs)?, mean_colour(neg_train, cs)?);
        let dir = [mp[0] - mn[0], mp[1] - mn[1], mp[2] - mn[2]];
        let score = |rows: &[usize]| rows.iter().map(|&i| (0..3).map(|c| cs[i][c] * dir[c]).sum()).collect();
        Some(verdict::Projected { pos: score(pos), neg: score(neg) })
    };

    let mut out = Out::default();
    for &(a, b) in rows {
        let pair = format!("{} -> {}", names[a], names[b]);
        let explained = explained_pairs.contains(&pair);
        out.explained.push(explained);
        out.method.push(method.clone().filter(|_| explained));
        out.pooled.push(pooled[a][b]);
        let (x, y) = (pooled[a][b], pooled[b][a]);
        let symmetry = (x.max(y) > 0).then(|| x.min(y) as f64 / x.max(y) as f64);
        out.symmetry.push(symmetry);
        let ct = &confused_train[a][b];
        out.confused_train.push(ct.len() as i64);
        let rate = |hit: usize, n: usize| -> [Option<f64>; 3] {
            if n == 0 {
                return [None; 3];
            }
            let (lo, hi) = wilson(hit, n, Z95);
            [Some(hit as f64 / n as f64), Some(lo), Some(hi)]
        };
        let fl = if has_flags { rate(ct.iter().filter(|&&i| flagged[i]).count(), ct.len()) } else { [None; 3] };
        let nb = if has_neighbors {
            rate(ct.iter().filter(|&&i| nlabel[i] == Some(b)).count(), ct.len())
        } else {
            [None; 3]
        };
        out.flagged.push(fl);
        out.neighbor.push(nb);
        // B's place among the classes A's neighbourhoods lean to (last when they never do).
        let rank = inp.neighbor_share.map(|g| match g[a][b] > 0.0 {
            true => 1 + (0..k).filter(|&c| c != a && c != b && g[a][c] > g[a][b]).count() as i64,
            false => k as i64 - 1,
        });
        out.neighbor_rank.push(rank);
        let ratio = ratios.get(&(a, b)).and_then(|v| median(v)).filter(|r| r.is_finite());
        let ratio = ratio.or_else(|| ratios.get(&(a, b)).map(|_| f64::INFINITY)).map(|r| r.min(1e9));
        out.radius_ratio.push(ratio);

        // Maps.
        let empty = (Vec::new(), Vec::new());
        let conf = maps.get(&(pair.clone(), "confused".into())).unwrap_or(&empty);
        let corr = maps.get(&(pair.clone(), "contrast".into())).unwrap_or(&empty);
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let (rc, rk) = (mean(&conf.0), mean(&corr.0));
        let gap = rc.zip(rk).map(|(c, k)| c - k);
        let gap_ci = gap.and_then(|_| {
            let mut rng = ChaCha8Rng::seed_from_u64(crate::seed::derive(seed, &[0xca05e, a as u64, b as u64]));
            let mut draws: Vec<f64> = (0..2000)
                .map(|_| {
                    let pick = |v: &[f64], rng: &mut ChaCha8Rng| {
                        (0..v.len()).map(|_| v[rng.random_range(0..v.len())]).sum::<f64>() / v.len() as f64
                    };
                    pick(&conf.0, &mut rng) - pick(&corr.0, &mut rng)
                })
                .collect();
            percentile_interval(&mut draws)
        });
        out.ring.push([rc, rk, gap, gap_ci.map(|c| c.0), gap_ci.map(|c| c.1)]);
        let (cc, ck) = (median(&conf.1), median(&corr.1));
        out.concentration.push([cc, ck]);

        // Occlusion.
        let in_pair = |p: Option<usize>| p == Some(a) || p == Some(b);
        let (mine, others) = (test_of(a), test_in(&|c| c != a && c != b));
        let occlusion = (bg_only.iter().any(Option::is_some) && !mine.is_empty() && !others.is_empty()).then(|| {
            let h1 = mine.iter().filter(|&&i| in_pair(bg_only[i])).count();
            let h2 = others.iter().filter(|&&i| in_pair(bg_only[i])).count();
            [h1, mine.len(), h2, others.len()]
        });
        let bg = if let Some([h1, _, h2, _]) = occlusion {
            let (p1, p2) = (h1 as f64 / mine.len() as f64, h2 as f64 / others.len() as f64);
            let (l1, u1) = wilson(h1, mine.len(), Z95);
            let (l2, u2) = wilson(h2, others.len(), Z95);
            [Some(p1), Some(p2), Some(p1 - p2), Some(l1 - u2), Some(u1 - l2)]
        } else {
            [None; 5]
        };
        out.background.push(bg);

        // Ring colours.
        let (ta, tb) = (test_of(a), test_of(b));
        let dist = colour.as_ref().and_then(|cs| {
            mean_colour(ta, cs)
                .zip(mean_colour(tb, cs))
                .map(|(x, y)| ((x[0] - y[0]).powi(2) + (x[1] - y[1]).powi(2) + (x[2] - y[2]).powi(2)).sqrt())
        });
        let colour_ab =
            colour.as_ref().and_then(|cs| projected(ta, tb, &train_of(&|c| c == a), &train_of(&|c| c == b), cs));
        let colour_pair = colour.as_ref().and_then(|cs| {
            projected(
                &test_in(&|c| c == a || c == b),
                &test_in(&|c| c != a && c != b),
                &train_of(&|c| c == a || c == b),
                &train_of(&|c| c != a && c != b),
                cs,
            )
        });
        let (auc, pair_auc) =
            (colour_ab.as_ref().and_then(|p| p.auroc()), colour_pair.as_ref().and_then(|p| p.auroc()));
        out.colour.push([dist, auc, pair_auc]);

        // The hypotheses, called only where the evidence clears its uncertainty.
        if !explained {
            out.support.push([None; 3]);
            out.verdict.push(None);
            continue;
        }
        let of_rows = |rows: &[usize], f: &dyn Fn(usize) -> bool| rows.iter().map(|&i| f(i)).collect::<Vec<bool>>();
        let ev = verdict::Evidence {
            joint_asymmetry: (inp.joint_asymmetry)(a, b).filter(|_| !in_sample),
            joint_images: (inp.joint_images)(a, b),
            confused_flagged: (has_flags && !in_sample).then(|| of_rows(ct, &|i| flagged[i])),
            confused_neighbour_b: (has_neighbors && !in_sample).then(|| of_rows(ct, &|i| nlabel[i] == Some(b))),
            pooled: (x, y),
            neighbor_rank: rank,
            radius_ratios: ratios.get(&(a, b)).cloned(),
            ring_confused: conf.0.clone(),
            ring_correct: corr.0.clone(),
            concentration_confused: conf.1.clone(),
            concentration_correct: corr.1.clone(),
            ring_gap_low: gap_ci.map(|c| c.0),
            background_only: occlusion,
            colour_ab,
            colour_pair,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(crate::seed::derive(seed, &[0xca11, a as u64, b as u64]));
        let v = verdict::decide(&ev, &mut rng);
        let [l, kk, bb] = &v.criteria;
        out.support.push([verdict::support(l), verdict::support(kk), verdict::support(bb)]);
        let f = |v: Option<f64>, d: usize| v.map_or("n/a".to_string(), |v| format!("{v:.d$}"));
        let pct = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:.0}%", 100.0 * v));
        let named = match v.hypothesis {
            "undecided" => format!(
                "undecided between {} and {} (the first leads in {} of {} resamples)",
                verdict::words(v.leading.unwrap_or("none")),
                verdict::words(v.runner_up.unwrap_or("none")),
                pct(v.confidence),
                verdict::REPLICATES
            ),
            h => verdict::words(h).to_string(),
        };
        let label_noise = if in_sample {
            "cannot tell (the training images' probabilities are in sample)".to_string()
        } else {
            format!(
                "{} (joint asymmetry {}, {} of A's {} training images predicted B flagged, {} with B-labelled neighbours)",
                verdict::met(l),
                f(ev.joint_asymmetry, 2),
                pct(fl[0]),
                ct.len(),
                pct(nb[0]),
            )
        };
        let text = format!(
            "{named}: label noise {}; look-alike {} (symmetry {}, neighbour rank {}, targeted radius ratio {}, concentration {} vs {}, no shared ring colour); background {} (ring reliance {} vs {}, background-only lift {} [{}, {}], ring colour AUROC A/B {} and pair/rest {})",
            label_noise,
            verdict::met(kk),
            f(symmetry, 2),
            rank.map_or("n/a".into(), |r| r.to_string()),
            f(ratio, 2),
            f(cc, 2),
            f(ck, 2),
            verdict::met(bb),
            f(rc, 2),
            f(rk, 2),
            f(bg[2], 2),
            f(bg[3], 2),
            f(bg[4], 2),
            f(auc, 2),
            f(pair_auc, 2),
        );
        out.verdict.push(Some((v, text)));
    }
    Ok(Some(out.finish()))
}

/// The columns being built, one entry per pair row.
#[derive(Default)]
struct Out {
    explained: Vec<bool>,
    method: Vec<Option<String>>,
    pooled: Vec<i64>,
    symmetry: Vec<Option<f64>>,
    confused_train: Vec<i64>,
    flagged: Vec<[Option<f64>; 3]>,
    neighbor: Vec<[Option<f64>; 3]>,
    neighbor_rank: Vec<Option<i64>>,
    radius_ratio: Vec<Option<f64>>,
    ring: Vec<[Option<f64>; 5]>,
    concentration: Vec<[Option<f64>; 2]>,
    background: Vec<[Option<f64>; 5]>,
    colour: Vec<[Option<f64>; 3]>,
    support: Vec<[Option<f64>; 3]>,
    /// The call and its text, for explained pairs.
    verdict: Vec<Option<(verdict::Verdict, String)>>,
}

impl Out {
    fn finish(self) -> Columns {
        let col3 = |v: &[[Option<f64>; 3]], j: usize| v.iter().map(|r| r[j]).collect::<Vec<_>>();
        let col5 = |v: &[[Option<f64>; 5]], j: usize| v.iter().map(|r| r[j]).collect::<Vec<_>>();
        TableBuilder::new(&CAUSES)
            .bool("explained", self.explained.iter().copied())
            .opt_utf8("explanation_method", self.method.iter().map(|m| m.as_deref()))
            .i64("confusions_pooled", self.pooled.iter().copied())
            .opt_f64("confusion_symmetry", self.symmetry.iter().copied())
            .i64("confused_train", self.confused_train.iter().copied())
            .opt_f64("confused_flagged_share", col3(&self.flagged, 0))
            .opt_f64("confused_flagged_share_low", col3(&self.flagged, 1))
            .opt_f64("confused_flagged_share_high", col3(&self.flagged, 2))
            .opt_f64("confused_neighbor_share", col3(&self.neighbor, 0))
            .opt_f64("confused_neighbor_share_low", col3(&self.neighbor, 1))
            .opt_f64("confused_neighbor_share_high", col3(&self.neighbor, 2))
            .opt_i64("neighbor_rank", self.neighbor_rank.iter().copied())
            .opt_f64("targeted_radius_ratio", self.radius_ratio.iter().copied())
            .opt_f64("ring_reliance_confused", col5(&self.ring, 0))
            .opt_f64("ring_reliance_correct", col5(&self.ring, 1))
            .opt_f64("ring_reliance_gap", col5(&self.ring, 2))
            .opt_f64("ring_reliance_gap_low", col5(&self.ring, 3))
            .opt_f64("ring_reliance_gap_high", col5(&self.ring, 4))
            .opt_f64("concentration_confused", self.concentration.iter().map(|r| r[0]))
            .opt_f64("concentration_correct", self.concentration.iter().map(|r| r[1]))
            .opt_f64("background_only_pair_rate", col5(&self.background, 0))
            .opt_f64("background_only_other_rate", col5(&self.background, 1))
            .opt_f64("background_lift", col5(&self.background, 2))
            .opt_f64("background_lift_low", col5(&self.background, 3))
            .opt_f64("background_lift_high", col5(&self.background, 4))
            .opt_f64("ring_colour_distance", col3(&self.colour, 0))
            .opt_f64("ring_colour_auc", col3(&self.colour, 1))
            .opt_f64("ring_colour_pair_auc", col3(&self.colour, 2))
            .opt_f64("support_label_noise", self.support.iter().map(|r| r[0]))
            .opt_f64("support_look_alike", self.support.iter().map(|r| r[1]))
            .opt_f64("support_background", self.support.iter().map(|r| r[2]))
            .opt_utf8("hypothesis", self.verdict.iter().map(|v| v.as_ref().map(|v| v.0.hypothesis)))
            .opt_utf8("hypothesis_leading", self.verdict.iter().map(|v| v.as_ref().and_then(|v| v.0.leading)))
            .opt_utf8("hypothesis_runner_up", self.verdict.iter().map(|v| v.as_ref().and_then(|v| v.0.runner_up)))
            .opt_f64("hypothesis_confidence", self.verdict.iter().map(|v| v.as_ref().and_then(|v| v.0.confidence)))
            .opt_utf8("hypothesis_text", self.verdict.iter().map(|v| v.as_ref().map(|v| v.1.as_str())))
            .finish()
    }
}

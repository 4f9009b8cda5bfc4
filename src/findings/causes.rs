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
//! - background shortcut: (B1) the confused images' maps lean more on the
//!   ring than correctly classified images of A do (`ring_reliance_gap` >
//!   0, with a bootstrap interval); (B2) with only the background left,
//!   A's test images go to A or B more often than other classes' images do
//!   (the low end of the lift's interval above 0); (B3) a background the
//!   pair shares and other classes do not: the ring colour does not tell A
//!   from B (AUROC <= 0.7) but tells the pair from the other classes
//!   (AUROC >= 0.75).
//!
//! The hypothesis named is the one with the largest share of its criteria
//! met, if that share is at least 2/3 with at least two criteria counted,
//! and no other hypothesis has the same share; otherwise none stands out.
//! The maps used are those of the most trustworthy method: the one that
//! decorrelates most in the randomisation check among those that pass it.

use polars::prelude::{col, lit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

use super::{collect, frame};
use crate::error::Result;
use crate::run::read::Run;
use crate::run::schema::{Column, Group};
use crate::stats::{auroc, median, percentile_interval, wilson, Z95};
use crate::table::{Columns, TableBuilder};

/// `pairs.parquet`'s root-cause columns (runs whose explain stage ran).
pub static CAUSES: Group = Group {
    stage: "findings",
    columns: &[
        Column { name: "explained", description: "whether the explain stage explained this pair (its images have maps)" },
        Column { name: "explanation_method", description: "the method whose maps the cause columns use (the most trustworthy)" },
        Column {
            name: "confusions_pooled",
            description: "images of A predicted B: test images plus training images by their out-of-sample probabilities",
        },
        Column { name: "confusion_symmetry", description: "the smaller of confusions_pooled A->B and B->A over the larger (1 = both ways alike)" },
        Column { name: "confused_train", description: "training images of A predicted B (out of sample)" },
        Column { name: "confused_flagged_share", description: "share of those flagged likely mislabeled" },
        Column { name: "confused_flagged_share_low", description: "95% Wilson interval, low end" },
        Column { name: "confused_flagged_share_high", description: "95% Wilson interval, high end" },
        Column { name: "confused_neighbor_share", description: "share of those whose neighbours' majority label is B" },
        Column { name: "confused_neighbor_share_low", description: "95% Wilson interval, low end" },
        Column { name: "confused_neighbor_share_high", description: "95% Wilson interval, high end" },
        Column { name: "neighbor_rank", description: "1 = B is the class A's training neighbourhoods lean to most (by neighbor_share)" },
        Column {
            name: "targeted_radius_ratio",
            description: "median over A's attacked images of (smallest L2 budget reaching B) / (smallest budget leaving A); 1 = B is the nearest class",
        },
        Column { name: "ring_reliance_confused", description: "mean ring_ratio of the confused images' maps towards B" },
        Column { name: "ring_reliance_correct", description: "mean ring_ratio of correctly classified images of A (maps towards A)" },
        Column { name: "ring_reliance_gap", description: "ring_reliance_confused - ring_reliance_correct" },
        Column { name: "ring_reliance_gap_low", description: "2,000-resample seeded bootstrap 95% interval, low end" },
        Column { name: "ring_reliance_gap_high", description: "high end" },
        Column { name: "concentration_confused", description: "median concentration of the confused images' maps towards B" },
        Column { name: "concentration_correct", description: "median concentration of correctly classified images of A" },
        Column {
            name: "background_only_pair_rate",
            description: "share of A's test images predicted A or B with the centre filled (background only)",
        },
        Column { name: "background_only_other_rate", description: "share of other classes' test images predicted A or B so" },
        Column { name: "background_lift", description: "background_only_pair_rate - background_only_other_rate" },
        Column { name: "background_lift_low", description: "low end: the pair rate's Wilson low minus the other rate's Wilson high" },
        Column { name: "background_lift_high", description: "high end: the pair rate's Wilson high minus the other rate's Wilson low" },
        Column { name: "ring_colour_distance", description: "distance between A's and B's mean ring colours (test images), [0, 1] RGB" },
        Column {
            name: "ring_colour_auc",
            description: "AUROC of ring colour alone for A against B (test images, projected on the training means' difference)",
        },
        Column { name: "ring_colour_pair_auc", description: "the same for A or B against every other class" },
        Column { name: "support_label_noise", description: "share of the label-noise criteria met (L1-L3; null: none could be checked)" },
        Column { name: "support_look_alike", description: "share of the look-alike criteria met (K1-K4)" },
        Column { name: "support_background", description: "share of the background-shortcut criteria met (B1-B3)" },
        Column { name: "hypothesis", description: "label_noise, look_alike, background_shortcut or none (null: not explained)" },
        Column { name: "hypothesis_text", description: "the hypothesis in words, with the numbers it rests on" },
    ],
};

/// What a criterion found: met, not met, or not checkable.
type Check = Option<bool>;

fn share(checks: &[Check]) -> (Option<f64>, usize) {
    let n = checks.iter().flatten().count();
    let met = checks.iter().flatten().filter(|&&b| b).count();
    ((n > 0).then(|| met as f64 / n as f64), n)
}

/// Inputs from `pairs`: the confident joint's asymmetry and the neighbour
/// shares per ordered pair (`[a][b]`).
pub struct PairInputs<'a> {
    pub joint_asymmetry: &'a dyn Fn(usize, usize) -> Option<f64>,
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

    // Pooled confusions: test + out-of-sample training predictions.
    let mut pooled = vec![vec![0i64; k]; k];
    let mut confused_train = vec![vec![Vec::new(); k]; k];
    for i in 0..samples.height() {
        if let (Some(a), Some(p)) = (labels[i], pred[i]) {
            if a != p {
                pooled[a][p] += 1;
                if train[i] {
                    confused_train[a][p].push(i);
                }
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
    let projected_auc = |pos: &[usize], neg: &[usize], pos_train: &[usize], neg_train: &[usize], cs: &[[f64; 3]]| {
        let (mp, mn) = (mean_colour(pos_train, cs)?, mean_colour(neg_train, cs)?);
        let dir = [mp[0] - mn[0], mp[1] - mn[1], mp[2] - mn[2]];
        if pos.is_empty() || neg.is_empty() {
            return None;
        }
        let score: Vec<f64> = pos.iter().chain(neg).map(|&i| (0..3).map(|c| cs[i][c] * dir[c]).sum()).collect();
        let truth: Vec<bool> = pos.iter().map(|_| true).chain(neg.iter().map(|_| false)).collect();
        Some(auroc(&score, &truth))
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
        let bg = if bg_only.iter().any(Option::is_some) && !mine.is_empty() && !others.is_empty() {
            let h1 = mine.iter().filter(|&&i| in_pair(bg_only[i])).count();
            let h2 = others.iter().filter(|&&i| in_pair(bg_only[i])).count();
            let (p1, p2) = (h1 as f64 / mine.len() as f64, h2 as f64 / others.len() as f64);
            let (l1, u1) = wilson(h1, mine.len(), Z95);
            let (l2, u2) = wilson(h2, others.len(), Z95);
            [Some(p1), Some(p2), Some(p1 - p2), Some(l1 - u2), Some(u1 - l2)]
        } else {
            [None; 5]
        };
        out.background.push(bg);

        // Ring colours.
        let colours = colour.as_ref().map(|cs| {
            let (ta, tb) = (test_of(a), test_of(b));
            let dist = mean_colour(ta, cs)
                .zip(mean_colour(tb, cs))
                .map(|(x, y)| ((x[0] - y[0]).powi(2) + (x[1] - y[1]).powi(2) + (x[2] - y[2]).powi(2)).sqrt());
            let auc = projected_auc(ta, tb, &train_of(&|c| c == a), &train_of(&|c| c == b), cs);
            let pair_auc = projected_auc(
                &test_in(&|c| c == a || c == b),
                &test_in(&|c| c != a && c != b),
                &train_of(&|c| c == a || c == b),
                &train_of(&|c| c != a && c != b),
                cs,
            );
            [dist, auc, pair_auc]
        });
        let [dist, auc, pair_auc] = colours.unwrap_or([None; 3]);
        out.colour.push([dist, auc, pair_auc]);

        // The hypotheses.
        let asym = (inp.joint_asymmetry)(a, b);
        let l = [asym.map(|v| v >= 0.5), fl[0].map(|v| v >= 0.5), nb[0].map(|v| v >= 0.5)];
        let spread = cc.zip(ck).map(|(c, k)| c <= k).map(|s| s && gap_ci.is_none_or(|ci| ci.0 <= 0.0));
        let kk = [symmetry.map(|s| s >= 1.0 / 3.0), rank.map(|r| r == 1), ratio.map(|r| r <= 1.25), spread];
        let shared = auc.zip(pair_auc).map(|(ab, rest)| ab <= 0.7 && rest >= 0.75);
        let bb = [gap.map(|g| g > 0.0), bg[3].map(|v| v > 0.0), shared];
        let (sl, nl) = share(&l);
        let (sk, nk) = share(&kk);
        let (sb, nbk) = share(&bb);
        out.support.push([sl, sk, sb]);
        let cands = [("label_noise", sl, nl), ("look_alike", sk, nk), ("background_shortcut", sb, nbk)];
        let best = cands.iter().filter(|c| c.2 >= 2).filter_map(|c| c.1.map(|s| (c.0, s))).fold(
            None,
            |acc: Option<(&str, f64)>, c| match acc {
                Some(a) if a.1 >= c.1 => Some(a),
                _ => Some(c),
            },
        );
        let tied = best.is_some_and(|(n, s)| cands.iter().any(|c| c.0 != n && c.2 >= 2 && c.1 == Some(s)));
        let named = match best {
            Some((n, s)) if s >= 2.0 / 3.0 - 1e-9 && !tied => n,
            _ => "none",
        };
        let f = |v: Option<f64>, d: usize| v.map_or("n/a".to_string(), |v| format!("{v:.d$}"));
        let pct = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:.0}%", 100.0 * v));
        let met =
            |c: &[Check]| format!("{}/{}", c.iter().flatten().filter(|&&b| b).count(), c.iter().flatten().count());
        let text = format!(
            "{}: label noise {} (joint asymmetry {}, {} of A's {} training images predicted B flagged, {} with B-labelled neighbours); look-alike {} (symmetry {}, neighbour rank {}, targeted radius ratio {}, concentration {} vs {}); background {} (ring reliance {} vs {}, background-only lift {} [{}, {}], ring colour AUROC A/B {} and pair/rest {})",
            match named {
                "label_noise" => "label noise",
                "look_alike" => "look-alike classes",
                "background_shortcut" => "background shortcut",
                _ => "no single cause stands out",
            },
            met(&l),
            f(asym, 2),
            pct(fl[0]),
            ct.len(),
            pct(nb[0]),
            met(&kk),
            f(symmetry, 2),
            rank.map_or("n/a".into(), |r| r.to_string()),
            f(ratio, 2),
            f(cc, 2),
            f(ck, 2),
            met(&bb),
            f(rc, 2),
            f(rk, 2),
            f(bg[2], 2),
            f(bg[3], 2),
            f(bg[4], 2),
            f(auc, 2),
            f(pair_auc, 2),
        );
        out.hypothesis.push(explained.then(|| named.to_string()));
        out.text.push(explained.then_some(text));
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
    hypothesis: Vec<Option<String>>,
    text: Vec<Option<String>>,
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
            .opt_utf8("hypothesis", self.hypothesis.iter().map(|h| h.as_deref()))
            .opt_utf8("hypothesis_text", self.text.iter().map(|t| t.as_deref()))
            .finish()
    }
}

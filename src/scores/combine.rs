//! The combined verdict per image. Two witnesses vote on each training
//! image's true class: the out-of-sample model (probabilities `p`) and its
//! nearest training neighbours (distance-weighted label shares `q`). Their
//! average `r = (p + q) / 2` gives the suggested label (its arg-max) and the
//! combined label-issue score `1 - r[given]`. An image is flagged
//! `likely_mislabeled` when the combined vote prefers another class by at
//! least half of the vote (`r[best] - r[given] >= 0.5`: model and
//! neighbours agree on another class); `ambiguous` when, short of that, a
//! second class gets a quarter of the vote or more; `outlier` when its
//! distance to its k-th neighbour is far out (beyond Q3 + 3 IQR) both for its
//! class and over all training images; `duplicate` when it is in a duplicate
//! pair. Confident learning's own flag stays a column of its own: on the
//! demo it misses flips whose true class the model is not confident enough
//! about to count (see the README for the measurements behind each choice).

use super::duplicates::Pair;
use super::neighbors::Neighbors;
use super::{rank, ScoreInput};

/// Weight of a neighbour at distance `d` (unit vectors): nearer counts more.
pub fn neighbor_weight(d: f32) -> f64 {
    1.0 / (0.05 + d as f64)
}

/// How far the combined vote must prefer another class (`r[suggested] - r[given]`)
/// for the image to be flagged as likely mislabeled.
pub const MISLABEL_MARGIN: f64 = 0.5;
/// A vote is split when its second class gets at least this share.
pub const AMBIGUOUS_SECOND: f64 = 0.25;

/// The flags of one image.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Flags {
    pub likely_mislabeled: bool,
    pub ambiguous: bool,
    pub outlier: bool,
    pub duplicate: bool,
}

/// Every score of one image. Confident-learning values are `None` for test images.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageScores {
    /// Flagged by confident learning's filter.
    pub label_issue: Option<bool>,
    pub normalized_margin: Option<f64>,
    pub confidence_weighted_entropy: Option<f64>,
    /// Distance-weighted share of the neighbours that carry the image's label.
    pub neighbor_agreement: Option<f64>,
    /// The neighbours' weighted majority label.
    pub neighbor_label: Option<u32>,
    /// Distance to the k-th neighbour.
    pub kth_distance: Option<f32>,
    /// Share of the training images of the same (given) class with a smaller k-th distance.
    pub outlier_percentile: Option<f64>,
    /// `1 - r[given]`: higher means the label is more likely wrong (train only).
    pub issue_score: Option<f64>,
    /// The class the combined vote prefers, and its share of the vote (train only).
    pub suggested_label: Option<u32>,
    pub suggested_confidence: Option<f64>,
    /// The evidence in words (train only).
    pub evidence: Option<String>,
    pub flags: Flags,
}

/// Weighted label shares of a query's neighbours, `k` classes.
fn neighbor_vote(nb: &Neighbors, q: usize, labels: &[u32], k: usize) -> Vec<f64> {
    let mut v = vec![0f64; k];
    for (&j, &d) in nb.of(q).iter().zip(nb.distances(q)) {
        v[labels[j as usize] as usize] += neighbor_weight(d);
    }
    let s: f64 = v.iter().sum();
    v.iter().map(|x| x / s.max(1e-12)).collect()
}

fn quantile(sorted: &[f32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] as f64 + (sorted[hi] as f64 - sorted[lo] as f64) * (pos - lo as f64)
}

/// Combines the witnesses into per-image scores and flags, train rows then test rows.
pub fn combine(
    input: &ScoreInput,
    issues: &[bool],
    nbrs: Option<&(Neighbors, Neighbors)>,
    dups: &[Pair],
) -> Vec<ImageScores> {
    let k = input.classes;
    let labels = input.train_labels;
    let n_train = labels.len();
    let n_test = input.test_labels.len();
    // Per class: sorted k-th distances of the training images, for percentiles and fences.
    let kth = |nb: &Neighbors, q: usize| nb.distances(q)[nb.k - 1];
    let class_kth: Option<Vec<Vec<f32>>> = nbrs.map(|(tr, _)| {
        let mut per = vec![Vec::new(); k];
        for q in 0..n_train {
            per[labels[q] as usize].push(kth(tr, q));
        }
        for v in &mut per {
            v.sort_by(f32::total_cmp);
        }
        per
    });
    let far_out = |v: &[f32]| -> f64 {
        let (q1, q3) = (quantile(v, 0.25), quantile(v, 0.75));
        q3 + 3.0 * (q3 - q1)
    };
    let global_fence = class_kth.as_ref().map(|per| {
        let mut all: Vec<f32> = per.iter().flatten().copied().collect();
        all.sort_by(f32::total_cmp);
        far_out(&all)
    });
    let fence = |c: usize| -> f64 {
        far_out(&class_kth.as_ref().expect("with neighbours")[c]).max(global_fence.unwrap_or(0.0))
    };
    let mut dup = vec![false; n_train + n_test];
    for p in dups {
        dup[p.a] = true;
        dup[if p.b_test { n_train + p.b } else { p.b }] = true;
    }
    let neighbor_part = |nb: &Neighbors, q: usize, label: u32, s: &mut ImageScores| -> Vec<f64> {
        let vote = neighbor_vote(nb, q, labels, k);
        let d = kth(nb, q);
        let v = &class_kth.as_ref().expect("with neighbours")[label as usize];
        s.neighbor_agreement = Some(vote[label as usize]);
        s.neighbor_label = Some(crate::stats::argmax(&vote.iter().map(|&x| x as f32).collect::<Vec<_>>()) as u32);
        s.kth_distance = Some(d);
        s.outlier_percentile = Some(v.partition_point(|&x| x < d) as f64 / v.len().max(1) as f64);
        s.flags.outlier = d as f64 > fence(label as usize);
        vote
    };
    let mut out = Vec::with_capacity(n_train + n_test);
    for i in 0..n_train {
        let row = &input.probs[i * k..(i + 1) * k];
        let y = labels[i] as usize;
        let mut s = ImageScores {
            label_issue: Some(issues[i]),
            normalized_margin: Some(rank::normalized_margin(row, y)),
            confidence_weighted_entropy: Some(rank::confidence_weighted_entropy(row, y)),
            ..Default::default()
        };
        let vote = nbrs.map(|(tr, _)| neighbor_part(tr, i, y as u32, &mut s));
        let r: Vec<f64> = match &vote {
            Some(q) => row.iter().zip(q).map(|(&p, &q)| (p as f64 + q) / 2.0).collect(),
            None => row.iter().map(|&p| p as f64).collect(),
        };
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| r[b].total_cmp(&r[a]).then(a.cmp(&b)));
        let (best, second) = (order[0], order[1]);
        s.issue_score = Some(1.0 - r[y]);
        s.suggested_label = Some(best as u32);
        s.suggested_confidence = Some(r[best]);
        s.flags.likely_mislabeled = best != y && r[best] - r[y] >= MISLABEL_MARGIN;
        s.flags.ambiguous = !s.flags.likely_mislabeled && r[second] >= AMBIGUOUS_SECOND;
        s.flags.duplicate = dup[i];
        let mut ev = format!("model p={:.2} for the label, p={:.2} for class {best}", row[y], row[best]);
        if let Some(q) = &vote {
            ev.push_str(&format!("; neighbours {:.0}% label, {:.0}% class {best}", 100.0 * q[y], 100.0 * q[best]));
        }
        if issues[i] {
            ev.push_str("; confident-learning issue");
        }
        if let Some(a) = input.aum {
            ev.push_str(&format!("; AUM {:.2}", a[i]));
        }
        s.evidence = Some(ev);
        out.push(s);
    }
    for i in 0..n_test {
        let mut s = ImageScores::default();
        if let Some((_, te)) = nbrs {
            neighbor_part(te, i, input.test_labels[i], &mut s);
        }
        s.flags.duplicate = dup[n_train + i];
        out.push(s);
    }
    out
}

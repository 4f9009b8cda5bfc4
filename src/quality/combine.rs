//! The combined verdict per image. Two witnesses vote on each image's true
//! class: the out-of-sample model (probabilities `p`) and the image's
//! nearest training neighbours (distance-weighted label shares `q`). Taken
//! as independent, they combine into `r` proportional to `p (q + 0.05)`,
//! which gives the suggested label (its arg-max) and the label-issue score
//! `1 - r[given]`, a ranking. Confident learning's counting, run on the votes
//! of the image's split, estimates how often each class's images carry each
//! other label (the noise matrix), and Bayes' rule turns the vote and that
//! prior into the probability that the given label is wrong
//! (`label_error_probability`). Where to cut (`likely_mislabeled`) is
//! [`super::cut`]'s: that posterior at the best expected F1, unless the noise
//! matrix explains the given labels clearly worse than the votes alone (real
//! human errors, which the model's probabilities already follow), then the
//! vote's disagreement with a label it gives under half its class's mean
//! share (see docs/evaluation.md for the measurements). Either way the vote
//! prefers another class. `ambiguous` when, short of that, a second class gets
//! a quarter of the vote or more; `outlier` when its distance to its k-th
//! neighbour is far out (beyond Q3 + 3 IQR) both for its class and over all
//! training images; `duplicate` when it is in a duplicate pair. Confident
//! learning's own flag (`label_issue`, cleanlab's result) stays a column of
//! its own.

use super::cut::{self, Cut, CutRule};
use super::duplicates::Pair;
use super::neighbors::Neighbors;
use super::{count, rank, ScoreInput};

/// Weight of a neighbour at distance `d` (unit vectors): nearer counts more.
pub fn neighbor_weight(d: f32) -> f64 {
    1.0 / (0.05 + d as f64)
}

/// Added to each class's neighbour share before it multiplies the model's
/// probability: ten neighbours resolve shares only to about a tenth, and a
/// class none of them carries is unlikely, not impossible.
pub const NEIGHBOR_FLOOR: f64 = 0.05;
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

/// Every score of one image. The label columns are `None` for the images of
/// a split without out-of-sample probabilities; the neighbour columns without embeddings.
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
    /// `1 - r[given]`: higher means the label is more likely wrong.
    pub issue_score: Option<f64>,
    /// Probability that the given label is wrong: the vote weighed by the
    /// noise confident learning estimates on the image's split.
    pub label_error_probability: Option<f64>,
    /// The class the combined vote prefers, and its share of the vote.
    pub suggested_label: Option<u32>,
    pub suggested_confidence: Option<f64>,
    /// The evidence in words.
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

/// One split's labels, out-of-sample probabilities (`[n, k]`) and
/// confident learning's label issues, for [`combine`].
#[derive(Clone, Copy, Debug)]
pub struct Labelled<'a> {
    pub labels: &'a [u32],
    pub probs: &'a [f32],
    pub issues: &'a [bool],
}

/// Combines the witnesses into per-image scores and flags, train rows then
/// test rows; `test` is `None` when the test split has no out-of-sample
/// probabilities (then its rows get the neighbour columns only). Returns the
/// scores and the `likely_mislabeled` cut of the training split and of the
/// test split.
pub fn combine(
    input: &ScoreInput,
    train: Labelled,
    test: Option<Labelled>,
    nbrs: Option<&(Neighbors, Neighbors)>,
    dups: &[Pair],
) -> (Vec<ImageScores>, Cut, Option<Cut>) {
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
    let mut out = vec![ImageScores::default(); n_train + n_test];
    for p in dups {
        out[p.a].flags.duplicate = true;
        out[if p.b_test { n_train + p.b } else { p.b }].flags.duplicate = true;
    }
    // The neighbour columns of every image, and its neighbours' vote.
    let neighbor_part = |nb: &Neighbors, q: usize, label: u32, s: &mut ImageScores| -> Vec<f64> {
        let vote = neighbor_vote(nb, q, labels, k);
        let d = kth(nb, q);
        let v = &class_kth.as_ref().expect("with neighbours")[label as usize];
        s.neighbor_agreement = Some(vote[label as usize]);
        s.neighbor_label = Some(crate::stats::argmax(&vote) as u32);
        s.kth_distance = Some(d);
        s.outlier_percentile = Some(v.partition_point(|&x| x < d) as f64 / v.len().max(1) as f64);
        s.flags.outlier = d as f64 > fence(label as usize);
        vote
    };
    let (train_rows, test_rows) = out.split_at_mut(n_train);
    let train_votes: Option<Vec<Vec<f64>>> =
        nbrs.map(|(tr, _)| (0..n_train).map(|i| neighbor_part(tr, i, labels[i], &mut train_rows[i])).collect());
    let test_votes: Option<Vec<Vec<f64>>> = nbrs
        .map(|(_, te)| (0..n_test).map(|i| neighbor_part(te, i, input.test_labels[i], &mut test_rows[i])).collect());
    // The test split's labels are the null for the training flags only when
    // both splits' probabilities are out of sample.
    let null = test.filter(|_| input.held_out_null).map(|t| Null {
        labels: t.labels,
        probs: if input.null_probs.is_empty() { t.probs } else { input.null_probs },
        votes: test_votes.as_deref(),
    });
    let train_cut = label_scores(k, train, train_votes.as_deref(), input.aum, train_rows, null);
    let test_cut = test.map(|t| label_scores(k, t, test_votes.as_deref(), None, test_rows, None));
    (out, train_cut, test_cut)
}

/// The held-out images that bound the training flags: their labels, the
/// probabilities of one or more models for them (`[models x n, classes]`,
/// model after model) and their neighbours' votes (`[n]`, the same for every model).
#[derive(Clone, Copy, Debug)]
struct Null<'a> {
    labels: &'a [u32],
    probs: &'a [f32],
    votes: Option<&'a [Vec<f64>]>,
}

/// The combined vote over the true class of one image: the model's
/// probabilities `p` and its neighbours' shares `q` taken as independent
/// witnesses, `r[j]` proportional to `p[j] (q[j] + NEIGHBOR_FLOOR)`.
pub fn combined_vote(p: &[f32], q: &[f64]) -> Vec<f64> {
    let r: Vec<f64> = p.iter().zip(q).map(|(&p, &q)| p as f64 * (q + NEIGHBOR_FLOOR)).collect();
    let s: f64 = r.iter().sum();
    if s > 0.0 {
        r.iter().map(|v| v / s).collect()
    } else {
        p.iter().map(|&p| p as f64).collect()
    }
}

/// The label columns of one split's images: confident learning's scores,
/// the combined vote `r` ([`combined_vote`], or `p` without neighbours), the
/// probability that the label is wrong under the noise that confident
/// learning estimates on the votes, the suggestion and the flags. With a
/// `null`, the held-out images bound the flags ([`cut::held_out_bound`]).
/// Returns the split's `likely_mislabeled` cut.
fn label_scores(
    k: usize,
    split: Labelled,
    votes: Option<&[Vec<f64>]>,
    aum: Option<&[f32]>,
    out: &mut [ImageScores],
    null: Option<Null>,
) -> Cut {
    // Row i's vote; the votes of neighbours repeat every `votes.len()` rows.
    let vote_rows = |probs: &[f32], votes: Option<&[Vec<f64>]>| -> Vec<Vec<f64>> {
        probs
            .chunks_exact(k)
            .enumerate()
            .map(|(i, p)| match votes {
                Some(q) => combined_vote(p, &q[i % q.len()]),
                None => p.iter().map(|&p| p as f64).collect(),
            })
            .collect()
    };
    let rows = vote_rows(split.probs, votes);
    let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
    let noise = count::vote_noise_matrix(split.labels, &flat, k);
    let counted = count::noise_matrix_with(split.labels, &flat, k, 0.0);
    let thresholds = count::thresholds(split.labels, &flat, k);
    let best = |r: &[f64]| {
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| r[b].total_cmp(&r[a]).then(a.cmp(&b)));
        (order[0], order[1])
    };
    let wrong: Vec<f64> =
        rows.iter().zip(split.labels).map(|(r, &y)| rank::label_error_probability(r, y as usize, &noise)).collect();
    let candidates: Vec<bool> = rows.iter().zip(split.labels).map(|(r, &y)| best(r).0 != y as usize).collect();
    let (mut flags, mut cut) = cut::likely_mislabeled(split.labels, &rows, &counted, &wrong, &thresholds, &candidates);
    // With a null: each image's suspicion under the cut's rule (the posterior
    // itself for the posterior cut), and the flags before the bound, for the
    // evidence of the images it unflags.
    let mut bounded: Option<(Vec<f64>, Vec<bool>)> = None;
    if let Some(h) = null {
        let rule = cut.rule;
        let suspicion = |r: &[f64], y: u32| cut::suspicion(rule, r, y as usize, &noise, &thresholds);
        let own: Vec<f64> = match rule {
            CutRule::NoisePrior => wrong.clone(),
            CutRule::Disagreement => rows.iter().zip(split.labels).map(|(r, &y)| suspicion(r, y)).collect(),
        };
        let null_rows = vote_rows(h.probs, h.votes);
        let disputed: Vec<f64> = null_rows
            .iter()
            .zip(h.labels.iter().cycle())
            .filter(|(r, &y)| best(r).0 != y as usize)
            .map(|(r, &y)| suspicion(r, y))
            .collect();
        let unbounded = flags.clone();
        cut::held_out_bound(&mut flags, &own, &disputed, null_rows.len(), &mut cut);
        bounded = Some((own, unbounded));
    }
    for (i, s) in out.iter_mut().enumerate() {
        let (p, r, y) = (&split.probs[i * k..(i + 1) * k], &rows[i], split.labels[i] as usize);
        let (best, second) = best(r);
        s.label_issue = Some(split.issues[i]);
        s.normalized_margin = Some(rank::normalized_margin(p, y));
        s.confidence_weighted_entropy = Some(rank::confidence_weighted_entropy(p, y));
        s.issue_score = Some(1.0 - r[y]);
        s.label_error_probability = Some(wrong[i]);
        s.suggested_label = Some(best as u32);
        s.suggested_confidence = Some(r[best]);
        s.flags.likely_mislabeled = flags[i];
        s.flags.ambiguous = !s.flags.likely_mislabeled && r[second] >= AMBIGUOUS_SECOND;
        let mut ev = format!("model p={:.2} for the label, p={:.2} for class {best}", p[y], p[best]);
        if let Some(q) = votes.map(|v| &v[i]) {
            ev.push_str(&format!("; neighbours {:.0}% label, {:.0}% class {best}", 100.0 * q[y], 100.0 * q[best]));
        }
        ev.push_str(&format!("; label wrong with probability {:.2}", wrong[i]));
        if flags[i] && cut.rule == CutRule::Disagreement {
            ev.push_str(&format!(
                "; the vote gives the label {:.2}, under half of its class's mean {:.2}",
                r[y], thresholds[y]
            ));
        }
        if let (Some((own, unbounded)), Some(b)) = (&bounded, &cut.held_out) {
            if unbounded[i] && !flags[i] {
                ev.push_str(&format!(
                    "; not flagged: its suspicion {:.2} is under the held-out bound{}",
                    own[i],
                    b.min_suspicion.map(|m| format!(" {m:.2}")).unwrap_or_default()
                ));
            }
        }
        if split.issues[i] {
            ev.push_str("; confident-learning issue");
        }
        if let Some(a) = aum {
            ev.push_str(&format!("; AUM {:.2}", a[i]));
        }
        s.evidence = Some(ev);
    }
    cut
}

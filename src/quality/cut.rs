//! Where to cut the label-issue ranking: which images are flagged
//! `likely_mislabeled`. Two views of the votes `r` (the model's out-of-sample
//! probabilities, with the neighbours' shares when there are embeddings)
//! explain the given labels, and the data says which holds:
//!
//! - **class-conditional noise** (confident learning's premise): `r` is the
//!   image's true class and a label is wrong at the rate of the noise matrix
//!   `T[given][true]` estimated by counting. Then Bayes' rule gives each
//!   image's probability of a wrong label (`label_error_probability`), and the
//!   cut is the one that maximises the F1 expected under those probabilities
//!   (it flags an image when its probability is at least about half the
//!   expected F1).
//! - **errors that follow the image** (real human errors: annotators err on
//!   the images that look like another class, where the model hesitates too).
//!   The noise matrix then spreads thin over many cells, Bayes' rule calls
//!   almost every label right (on 372 real errors among 2,831 images it
//!   flagged 29 to 139), and the cut is the model's disagreement: the vote
//!   prefers another class and gives the label less than half of what the
//!   images of that label get on average (confident learning's per-class
//!   threshold).
//!
//! Which view holds is a likelihood test on the given labels: per image, the
//! log probability of its label under the votes passed through the noise
//! matrix as counted (no pseudo-counts), `ln sum_j r[j] T[y][j]`, against
//! under the votes alone, `ln r[y]`. The posterior is the default; the
//! disagreement cut runs only where the data refute it: the mean gain is
//! below 0 by more than [`REFUTED_AT`] standard errors. Measured on
//! `shared/label-noise` (docs/evaluation.md, "Real label errors"): -0.021 to -0.060
//! nats per image (7 to 26 standard errors) on roman-numeral's real errors
//! with all five models, +0.17 to +0.30 on cifar-10s's synthetic noise. A
//! split with clean labels and a calibrated model also shows no gain (a
//! noise matrix cannot explain labels the model already predicts), but no
//! significant loss either on the demo's test split (-0.4 standard errors),
//! which keeps the posterior there.

use serde::{Deserialize, Serialize};

use super::count::Matrix;
use super::rank;

/// Probabilities below this are taken as this in the likelihood test.
const LIKELIHOOD_FLOOR: f64 = 1e-12;

/// A disagreement is flagged when the label's share of the vote is below
/// this fraction of the mean share images of that label get.
pub const DISAGREEMENT_SHARE: f64 = 0.5;

/// The posterior's premise is refuted when the mean likelihood gain is below
/// 0 by more than this many standard errors (one-sided, about 2.3%).
pub const REFUTED_AT: f64 = 2.0;

/// The held-out bound keeps the largest set of flags whose precision,
/// estimated against the held-out labels, is at least this: a flagged label
/// is more likely wrong than right, over the set.
pub const MIN_PRECISION: f64 = 0.5;

/// Which cut made `likely_mislabeled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CutRule {
    /// The noise matrix explains the labels: the posterior cut at the best expected F1.
    NoisePrior,
    /// It does not: the vote's disagreement with a label it gives under half its class's mean.
    Disagreement,
}

/// The cut on one split, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cut {
    pub rule: CutRule,
    /// Mean gain in log-likelihood of the given labels from the noise matrix (nats per image).
    pub likelihood_gain: f64,
    /// Its standard error.
    pub likelihood_gain_se: f64,
    /// The F1 expected under the posterior at the cut (`NoisePrior` only).
    pub expected_f1: Option<f64>,
    /// The posterior at and above which images are flagged (`NoisePrior` only).
    pub min_probability: Option<f64>,
    /// Images flagged (after the held-out bound, when there is one).
    pub flagged: usize,
    /// The held-out bound on the training flags (cross-validated training with a test split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out: Option<HeldOutBound>,
}

/// What the model can tell: the test split's labels as a null for the
/// training flags. The same rule (the training split's noise matrix and
/// class thresholds, the same suspicion) applied to the held-out images,
/// whose labels the training never saw and which are taken as right, flags
/// some of them too: those are the model's own errors read as wrong labels.
/// At their rate, `expected_false` of the training flags are expected to be
/// false; the bound keeps the most suspicious training flags, as many as
/// keep the estimated precision at least [`MIN_PRECISION`]. Held-out labels
/// that are themselves wrong make the bound stricter, never looser.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldOutBound {
    /// Held-out predictions the null was measured on: the test images, once
    /// per fold model when each predicts them alone.
    pub held_out_images: usize,
    /// Images the cut flagged before the bound.
    pub unbounded_flagged: usize,
    /// Their expected false flags: the held-out images the same rule flags,
    /// as a share, times the training images.
    pub unbounded_expected_false: f64,
    /// The least suspicion still flagged (the posterior, or for the
    /// disagreement cut 1 - the label's share / its class mean); None when
    /// no set reaches [`MIN_PRECISION`] and nothing is flagged.
    pub min_suspicion: Option<f64>,
    /// Expected false flags among those kept.
    pub expected_false: f64,
    /// 1 - expected_false / flagged (None when nothing is flagged).
    pub estimated_precision: Option<f64>,
    /// The same with the held-out disputes behind `expected_false` at their
    /// one-sided 84% upper limit ([`poisson_upper`]), at least 0: the
    /// precision the kept flags have at least, at that confidence (None when
    /// nothing is flagged). A coarse null (few held-out disputes) shows here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision_low: Option<f64>,
}

/// The one-sided 84.13% (one standard deviation) upper confidence limit of
/// a Poisson mean from `count` events, Gehrels' approximation (ApJ 303,
/// 1986, eq. 7): `count + sqrt(count + 3/4) + 1`; 1.87 for no event.
pub fn poisson_upper(count: usize) -> f64 {
    let n = count as f64;
    n + (n + 0.75).sqrt() + 1.0
}

impl HeldOutBound {
    /// The estimated precision of the flags before the bound (0 when the null expects more false flags than there are).
    pub fn unbounded_precision(&self) -> Option<f64> {
        (self.unbounded_flagged > 0)
            .then(|| (1.0 - self.unbounded_expected_false / self.unbounded_flagged as f64).max(0.0))
    }
}

/// How suspicious one label is under the cut's rule: the posterior
/// (`NoisePrior`), or how far the vote's share of the label falls short of
/// its class mean, `1 - r[y] / thresholds[y]` (`Disagreement`, which flags
/// from 1 - [`DISAGREEMENT_SHARE`] up).
pub fn suspicion(rule: CutRule, r: &[f64], label: usize, noise: &Matrix, thresholds: &[f64]) -> f64 {
    match rule {
        CutRule::NoisePrior => rank::label_error_probability(r, label, noise),
        CutRule::Disagreement => 1.0 - r[label] / thresholds[label].max(f64::MIN_POSITIVE),
    }
}

/// Whether the cut flags a candidate of the given suspicion (for the
/// held-out images, which the cut itself never saw).
fn passes(cut: &Cut, s: f64) -> bool {
    match cut.rule {
        CutRule::NoisePrior => cut.min_probability.is_some_and(|m| s >= m),
        CutRule::Disagreement => s > 1.0 - DISAGREEMENT_SHARE,
    }
}

/// Bounds the training `flags` (with each image's `suspicion`) by the
/// held-out null: `held_out` holds the suspicion of each held-out image the
/// vote disputes (the candidates), `held_out_images` counts them all. Keeps
/// the flags at and above the lowest suspicion whose set has an estimated
/// precision of at least [`MIN_PRECISION`] (ties stay together); updates
/// `cut.flagged` and `cut.held_out`.
pub fn held_out_bound(flags: &mut [bool], suspicion: &[f64], held_out: &[f64], held_out_images: usize, cut: &mut Cut) {
    if held_out_images == 0 {
        return;
    }
    let n = flags.len() as f64;
    let mut train: Vec<f64> = (0..flags.len()).filter(|&i| flags[i]).map(|i| suspicion[i]).collect();
    train.sort_by(|a, b| b.total_cmp(a));
    let mut null: Vec<f64> = held_out.iter().copied().filter(|&s| passes(cut, s)).collect();
    null.sort_by(|a, b| b.total_cmp(a));
    let false_at = |count: usize| n * count as f64 / held_out_images as f64;
    let (mut best, mut j) = (None, 0);
    for m in 1..=train.len() {
        let tau = train[m - 1];
        if m < train.len() && train[m] == tau {
            continue;
        }
        while j < null.len() && null[j] >= tau {
            j += 1;
        }
        let expected_false = false_at(j);
        if m as f64 - expected_false >= MIN_PRECISION * m as f64 {
            best = Some((tau, m, expected_false, j));
        }
    }
    for (f, &s) in flags.iter_mut().zip(suspicion) {
        *f = *f && best.is_some_and(|(tau, ..)| s >= tau);
    }
    let unbounded = train.len();
    let upper = |j: usize| n * poisson_upper(j) / held_out_images as f64;
    cut.flagged = best.map_or(0, |(_, m, ..)| m);
    cut.held_out = Some(HeldOutBound {
        held_out_images,
        unbounded_flagged: unbounded,
        unbounded_expected_false: false_at(null.len()),
        min_suspicion: best.map(|(tau, ..)| tau),
        expected_false: best.map_or(0.0, |(_, _, e, _)| e),
        estimated_precision: best.map(|(_, m, e, _)| 1.0 - e / m as f64),
        precision_low: best.map(|(_, m, _, j)| (1.0 - upper(j) / m as f64).max(0.0)),
    });
}

/// Mean over images of `ln sum_j r[j] T[y][j] - ln r[y]` (how much better
/// the noise matrix explains the given labels than the votes alone), and its
/// standard error.
pub fn likelihood_gain(labels: &[u32], votes: &[Vec<f64>], t: &Matrix) -> (f64, f64) {
    let n = labels.len() as f64;
    if n < 2.0 {
        return (0.0, 0.0);
    }
    let gains: Vec<f64> = labels
        .iter()
        .zip(votes)
        .map(|(&y, r)| {
            let y = y as usize;
            let through: f64 = r.iter().zip(&t[y]).map(|(a, b)| a * b).sum();
            through.max(LIKELIHOOD_FLOOR).ln() - r[y].max(LIKELIHOOD_FLOOR).ln()
        })
        .collect();
    let mean = gains.iter().sum::<f64>() / n;
    let var = gains.iter().map(|g| (g - mean) * (g - mean)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// The candidates (`candidates[i]`: the vote prefers another class) with the
/// highest posteriors, as many as maximise the expected F1
/// `2 sum(flagged p) / (flagged + sum(all p))`; ties to the lower index.
/// Returns the flags, the expected F1 and the smallest flagged posterior.
pub fn expected_f1_cut(posterior: &[f64], candidates: &[bool]) -> (Vec<bool>, f64, Option<f64>) {
    let expected_errors: f64 = posterior.iter().sum();
    let mut order: Vec<usize> = (0..posterior.len()).filter(|&i| candidates[i]).collect();
    order.sort_by(|&a, &b| posterior[b].total_cmp(&posterior[a]).then(a.cmp(&b)));
    let (mut best, mut best_n, mut sum) = (0.0, 0, 0.0);
    for (m, &i) in order.iter().enumerate() {
        sum += posterior[i];
        let f1 = 2.0 * sum / (m as f64 + 1.0 + expected_errors);
        if f1 > best {
            (best, best_n) = (f1, m + 1);
        }
    }
    let mut flags = vec![false; posterior.len()];
    for &i in &order[..best_n] {
        flags[i] = true;
    }
    (flags, best, best_n.checked_sub(1).map(|m| posterior[order[m]]))
}

/// Flags the candidates whose label gets less than [`DISAGREEMENT_SHARE`] of
/// `thresholds[label]` (the mean share of the images of that label).
pub fn disagreement_cut(labels: &[u32], votes: &[Vec<f64>], thresholds: &[f64], candidates: &[bool]) -> Vec<bool> {
    labels
        .iter()
        .zip(votes)
        .zip(candidates)
        .map(|((&y, r), &c)| c && r[y as usize] < DISAGREEMENT_SHARE * thresholds[y as usize])
        .collect()
}

/// `likely_mislabeled` for one split: `votes` `[n][k]`, the noise matrix as
/// counted on them (`counted`, for the likelihood test), each image's
/// posterior, the per-class thresholds (mean share of the label) and the
/// candidates (vote prefers another class).
pub fn likely_mislabeled(
    labels: &[u32],
    votes: &[Vec<f64>],
    counted: &Matrix,
    posterior: &[f64],
    thresholds: &[f64],
    candidates: &[bool],
) -> (Vec<bool>, Cut) {
    let (gain, se) = likelihood_gain(labels, votes, counted);
    let (flags, rule, expected_f1, min_probability) = if gain + REFUTED_AT * se < 0.0 {
        (disagreement_cut(labels, votes, thresholds, candidates), CutRule::Disagreement, None, None)
    } else {
        let (f, e, m) = expected_f1_cut(posterior, candidates);
        (f, CutRule::NoisePrior, Some(e), m)
    };
    let flagged = flags.iter().filter(|f| **f).count();
    let cut = Cut {
        rule,
        likelihood_gain: gain,
        likelihood_gain_se: se,
        expected_f1,
        min_probability,
        flagged,
        held_out: None,
    };
    (flags, cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expected_f1_cut_flags_while_a_posterior_exceeds_half_the_f1() {
        // Expected errors 0.9 + 0.8 + 0.3 + 0.1 + 0.1 = 2.2. Top 1: 1.8/3.2 = 0.5625; top 2:
        // 3.4/4.2 = 0.810; top 3: 4.0/5.2 = 0.769. The cut keeps two.
        let post = [0.3, 0.9, 0.1, 0.8, 0.1];
        let (f, e, m) = expected_f1_cut(&post, &[true; 5]);
        assert_eq!(f, vec![false, true, false, true, false]);
        assert!((e - 3.4 / 4.2).abs() < 1e-12 && m == Some(0.8), "{e} {m:?}");
        // Only candidates are flagged; none at all gives nothing.
        let (f, _, _) = expected_f1_cut(&post, &[true, false, true, true, true]);
        assert_eq!(f, vec![true, false, false, true, false]);
        assert_eq!(expected_f1_cut(&post, &[false; 5]).0, vec![false; 5]);
    }

    fn prior_cut(flagged: usize, min: f64) -> Cut {
        Cut {
            rule: CutRule::NoisePrior,
            likelihood_gain: 0.1,
            likelihood_gain_se: 0.01,
            expected_f1: Some(0.8),
            min_probability: Some(min),
            flagged,
            held_out: None,
        }
    }

    #[test]
    fn the_held_out_bound_keeps_the_largest_set_the_null_leaves_half_right() {
        // 100 training images, 10 flagged; 50 held-out images, 6 of them disputed.
        let mut suspicion = vec![0.0; 100];
        let top = [0.99, 0.98, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.42];
        suspicion[..10].copy_from_slice(&top);
        let mut flags: Vec<bool> = (0..100).map(|i| i < 10).collect();
        let null = [0.85, 0.75, 0.65, 0.55, 0.5, 0.44, 0.3];
        let mut cut = prior_cut(10, 0.42);
        held_out_bound(&mut flags, &suspicion, &null, 50, &mut cut);
        // At 0.8: one held-out image as suspicious, 100/50 = 2 expected false of 5, precision
        // 0.6; at 0.7: 4 of 6 false, 0.33. The five most suspicious stay.
        assert_eq!(flags, (0..100).map(|i| i < 5).collect::<Vec<_>>());
        let b = cut.held_out.clone().unwrap();
        assert_eq!((cut.flagged, b.unbounded_flagged, b.held_out_images), (5, 10, 50));
        assert_eq!((b.min_suspicion, b.expected_false, b.estimated_precision), (Some(0.8), 2.0, Some(0.6)));
        // One held-out dispute: at most 1 + sqrt(1.75) + 1 = 3.32 at 84%, 6.65 false of 5: no
        // precision can be promised.
        assert_eq!(b.precision_low, Some(0.0));
        // 0.3 is under the cut's own 0.42 and counts for nothing: 6 of 50, 12 expected false.
        assert_eq!((b.unbounded_expected_false, b.unbounded_precision()), (12.0, Some(0.0)));
        // A null that flags nothing keeps every flag; one that flags as much as the training
        // split leaves none.
        let mut all: Vec<bool> = (0..100).map(|i| i < 10).collect();
        let mut cut = prior_cut(10, 0.42);
        held_out_bound(&mut all, &suspicion, &[0.1, 0.2], 50, &mut cut);
        assert_eq!((cut.flagged, cut.held_out.as_ref().unwrap().estimated_precision), (10, Some(1.0)));
        // No held-out dispute: at most 1.87 at 84%, 3.73 false of 10.
        let low = cut.held_out.as_ref().unwrap().precision_low.unwrap();
        assert!((low - (1.0 - 2.0 * (0.75f64.sqrt() + 1.0) / 10.0)).abs() < 1e-12, "{low}");
        let mut cut = prior_cut(10, 0.42);
        held_out_bound(&mut all, &suspicion, &[0.999; 10], 50, &mut cut);
        assert_eq!((cut.flagged, all.iter().filter(|f| **f).count()), (0, 0));
        assert_eq!(cut.held_out.unwrap().min_suspicion, None);
        // No held-out images: no bound.
        let mut cut = prior_cut(10, 0.42);
        let mut some: Vec<bool> = (0..100).map(|i| i < 10).collect();
        held_out_bound(&mut some, &suspicion, &[], 0, &mut cut);
        assert_eq!((cut.flagged, cut.held_out, some.iter().filter(|f| **f).count()), (10, None, 10));
    }

    #[test]
    fn the_disagreement_suspicion_passes_where_the_share_is_under_half_the_mean() {
        let t = vec![vec![0.9, 0.1], vec![0.1, 0.9]];
        let r = [0.7, 0.3];
        assert!((suspicion(CutRule::Disagreement, &r, 1, &t, &[0.5, 0.8]) - (1.0 - 0.3 / 0.8)).abs() < 1e-12);
        let post = suspicion(CutRule::NoisePrior, &r, 1, &t, &[0.5, 0.8]);
        assert!((post - rank::label_error_probability(&r, 1, &t)).abs() < 1e-15);
        let cut = Cut { rule: CutRule::Disagreement, min_probability: None, ..prior_cut(1, 0.0) };
        assert!(passes(&cut, 0.51) && !passes(&cut, 0.5));
    }

    #[test]
    fn the_disagreement_cut_compares_the_label_share_with_half_its_class_mean() {
        let votes = vec![vec![0.2, 0.8], vec![0.3, 0.7], vec![0.6, 0.4]];
        let f = disagreement_cut(&[0, 0, 1], &votes, &[0.5, 0.9], &[true, true, true]);
        // 0.2 < 0.25 flagged; 0.3 is not below 0.25; 0.4 < 0.45 flagged.
        assert_eq!(f, vec![true, false, true]);
        assert_eq!(disagreement_cut(&[0], &votes[..1], &[0.5, 0.9], &[false]), vec![false]);
    }

    #[test]
    fn the_likelihood_test_picks_the_view_the_labels_support() {
        // Two classes; 20% of class 1's images carry label 0.
        let t = vec![vec![0.8, 0.2], vec![0.2, 0.8]];
        // Votes sure of the true class, 2 labels of 8 wrong: the noise matrix explains
        // the wrong labels (0.2 instead of 0.01) and costs the right ones little.
        let sure: Vec<Vec<f64>> =
            (0..8).map(|i| if i % 2 == 0 { vec![0.99, 0.01] } else { vec![0.01, 0.99] }).collect();
        let labels = [0, 1, 0, 1, 0, 1, 1, 0];
        assert!(likelihood_gain(&labels, &sure, &t).0 > 0.0);
        let post: Vec<f64> = labels
            .iter()
            .zip(&sure)
            .map(|(&y, r)| super::super::rank::label_error_probability(r, y as usize, &t))
            .collect();
        let cand: Vec<bool> = (0..8).map(|i| i >= 6).collect();
        let (f, cut) = likely_mislabeled(&labels, &sure, &t, &post, &[0.5, 0.5], &cand);
        assert_eq!((f, cut.rule), (cand.clone(), CutRule::NoisePrior));
        // Votes that already follow the labels (the model learnt them): the matrix only
        // blurs them, by the same amount on every image that agrees, a clear loss.
        let follow: Vec<Vec<f64>> = (0..8)
            .map(|i| match i {
                6 => vec![0.55, 0.45],
                7 => vec![0.45, 0.55],
                _ if i % 2 == 0 => vec![0.9, 0.1],
                _ => vec![0.1, 0.9],
            })
            .collect();
        let (gain, se) = likelihood_gain(&labels, &follow, &t);
        assert!(gain + REFUTED_AT * se < 0.0, "{gain} {se}");
        // 0.45 is under half of 0.95: both disagreements are flagged, whatever their posterior.
        let (f, cut) = likely_mislabeled(&labels, &follow, &t, &[0.0; 8], &[0.95, 0.95], &cand);
        assert_eq!((f, cut.rule, cut.flagged), (cand.clone(), CutRule::Disagreement, 2));
        // A loss within two standard errors keeps the posterior: 17 labels the votes
        // follow (-0.196 each), one wrong label the votes are sure of (+3.03).
        let labels: Vec<u32> = (0..18).map(|i| i % 2).collect();
        let mixed: Vec<Vec<f64>> =
            (0..18).map(|i| if i % 2 == 0 || i == 17 { vec![0.9, 0.1] } else { vec![0.1, 0.9] }).collect();
        let mixed: Vec<Vec<f64>> =
            mixed.into_iter().enumerate().map(|(i, r)| if i == 17 { vec![0.99, 0.01] } else { r }).collect();
        let (gain, se) = likelihood_gain(&labels, &mixed, &t);
        assert!(gain < 0.0 && gain + REFUTED_AT * se >= 0.0, "{gain} {se}");
    }
}

//! The label flags on generated data with a known set of wrong labels: the
//! `likely_mislabeled` cut follows the noise rate (it beats both "predicted
//! class != label" and confident learning's prune-by-noise-rate in F1 at low
//! and at high noise), and the test split gets every label column.

use misfit::quality::{self, checks::flag_check, cut::CutRule, Embeddings, ScoreConfig, ScoreInput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

const K: usize = 6;

/// `n` images: a true class each, a model that confuses class c with its
/// look-alike c ^ 1 (about 15% of its predictions are wrong), embeddings
/// near a centre per true class (the same centres whatever the seed), and labels of which `noise` are wrong,
/// mostly towards the look-alike (as an annotator errs). Returns (given
/// labels, probabilities `[n, K]`, embeddings `[n, 16]`, wrong).
fn generate(n: usize, noise: f64, seed: u64) -> (Vec<u32>, Vec<f32>, Vec<f32>, Vec<bool>) {
    generate_with(n, noise, seed, 3.0)
}

/// [`generate`] with the true class's mean logit `strength` (3.0 there; the
/// look-alike's is 1.5): lower makes a weaker model.
fn generate_with(n: usize, noise: f64, seed: u64, strength: f32) -> (Vec<u32>, Vec<f32>, Vec<f32>, Vec<bool>) {
    const DIM: usize = 16;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0f32, 1.0).unwrap();
    // The same class centres for every seed, so that splits drawn apart share them.
    let mut centre_rng = ChaCha8Rng::seed_from_u64(0);
    let centres: Vec<f32> = (0..K * DIM).map(|_| normal.sample(&mut centre_rng)).collect();
    let (mut labels, mut probs, mut emb, mut wrong) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let t = rng.random_range(0..K);
        let look_alike = t ^ 1;
        let logits: Vec<f32> = (0..K)
            .map(|j| {
                let mean = if j == t {
                    strength
                } else if j == look_alike {
                    1.5
                } else {
                    0.0
                };
                mean + 1.0 * normal.sample(&mut rng)
            })
            .collect();
        let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = logits.iter().map(|v| (v - m).exp()).collect();
        let s: f32 = e.iter().sum();
        probs.extend(e.iter().map(|v| v / s));
        let flip = rng.random_bool(noise);
        let y = match (flip, rng.random_bool(0.7)) {
            (false, _) => t,
            (true, true) => look_alike,
            (true, false) => (t + rng.random_range(1..K)) % K,
        };
        labels.push(y as u32);
        wrong.push(y != t);
        emb.extend((0..DIM).map(|d| centres[t * DIM + d] + 0.6 * normal.sample(&mut rng)));
    }
    (labels, probs, emb, wrong)
}

fn f1(flag: &[bool], truth: &[bool]) -> f64 {
    flag_check("f", "t", flag, truth).f1.unwrap()
}

#[test]
fn the_mislabeled_cut_follows_the_noise_rate_and_beats_both_baselines() {
    for (noise, min_f1) in [(0.05, 0.75), (0.4, 0.85)] {
        let (labels, probs, emb, wrong) = generate(4000, noise, 7);
        let emb = quality::neighbors::normalize(&emb, 16);
        let input = ScoreInput {
            source: "generated",
            classes: K,
            train_labels: &labels,
            probs: &probs,
            test_labels: &[],
            test_probs: &[],
            embeddings: Some(Embeddings { dim: 16, train: &emb, test: &[] }),
            pixels: None,
            aum: None,
            held_out_null: true,
            null_probs: &[],
        };
        let sc = quality::score(&input, &ScoreConfig::default()).unwrap();
        let ours: Vec<bool> = sc.images.iter().map(|s| s.flags.likely_mislabeled).collect();
        let cl: Vec<bool> = sc.images.iter().map(|s| s.label_issue == Some(true)).collect();
        let pred: Vec<bool> =
            probs.chunks_exact(K).zip(&labels).map(|(r, &l)| misfit::stats::argmax(r) != l as usize).collect();
        let (a, b, c) = (f1(&ours, &wrong), f1(&cl, &wrong), f1(&pred, &wrong));
        assert!(
            a > b && a > c && a >= min_f1,
            "noise {noise}: F1 ours {a:.3}, label_issue {b:.3}, pred != label {c:.3}"
        );
        // The number flagged follows the noise: within a third of the wrong labels.
        let (flagged, truth) =
            (ours.iter().filter(|f| **f).count() as f64, wrong.iter().filter(|w| **w).count() as f64);
        assert!((flagged / truth - 1.0).abs() < 0.34, "noise {noise}: {flagged} flagged for {truth} wrong labels");
        // Noise drawn per class (class-conditional): the noise matrix explains the labels,
        // and its posterior makes the cut. Every flagged image has a probability of at
        // least the cut's and a suggestion other than its label.
        assert_eq!(sc.cut.rule, CutRule::NoisePrior, "noise {noise}: {:?}", sc.cut);
        let min = sc.cut.min_probability.unwrap();
        for (s, &l) in sc.images.iter().zip(&labels) {
            if s.flags.likely_mislabeled {
                assert!(s.label_error_probability.unwrap() >= min && s.suggested_label != Some(l));
            }
        }
    }
}

#[test]
fn the_test_split_gets_every_label_column_from_its_own_probabilities() {
    // Train and test drawn alike; 10% of the test labels wrong.
    let (tr_labels, tr_probs, tr_emb, _) = generate(3000, 0.0, 11);
    let (te_labels, te_probs, te_emb, te_wrong) = generate(1500, 0.1, 12);
    let (tr_emb, te_emb) = (quality::neighbors::normalize(&tr_emb, 16), quality::neighbors::normalize(&te_emb, 16));
    let mut input = ScoreInput {
        source: "generated",
        classes: K,
        train_labels: &tr_labels,
        probs: &tr_probs,
        test_labels: &te_labels,
        test_probs: &te_probs,
        embeddings: Some(Embeddings { dim: 16, train: &tr_emb, test: &te_emb }),
        pixels: None,
        aum: None,
        held_out_null: true,
        null_probs: &[],
    };
    let sc = quality::score(&input, &ScoreConfig::default()).unwrap();
    let test = &sc.images[3000..];
    assert!(test.iter().all(|s| s.label_issue.is_some()
        && s.issue_score.is_some()
        && s.label_error_probability.is_some()
        && s.suggested_label.is_some()
        && s.evidence.is_some()
        && s.neighbor_agreement.is_some()));
    assert!(sc.test_noise.is_some());
    let flags: Vec<bool> = test.iter().map(|s| s.flags.likely_mislabeled).collect();
    let c = flag_check("likely_mislabeled", "wrong", &flags, &te_wrong);
    assert!(c.precision.unwrap() >= 0.8 && c.recall.unwrap() >= 0.7, "{c:?}");
    // The training split is clean: few of its images are flagged.
    let train_flags = sc.images[..3000].iter().filter(|s| s.flags.likely_mislabeled).count();
    assert!(train_flags < 60, "{train_flags} clean training images flagged");
    // Without test probabilities, test rows keep only their neighbour columns.
    input.test_probs = &[];
    let sc = quality::score(&input, &ScoreConfig::default()).unwrap();
    assert!(sc.images[3000..].iter().all(|s| s.label_issue.is_none() && s.neighbor_agreement.is_some()));
    assert!(sc.test_noise.is_none());
    // Test probabilities of the wrong size are refused, naming them.
    input.test_probs = &te_probs[..te_probs.len() - K];
    let e = quality::score(&input, &ScoreConfig::default()).unwrap_err().to_string();
    assert!(e.contains("test probabilities hold"), "{e}");
}

/// The held-out bound on a weak model (the true class's mean logit 2.5
/// against the look-alike's 1.5, no neighbours to help): the training split has 10% wrong labels,
/// the test split none. The posterior cut flags many of the model's own
/// errors; the bound, measured on the clean test labels, keeps a set whose
/// precision is at least about its estimate, higher than before, and the
/// same with the null given once per fold model.
#[test]
fn the_held_out_bound_keeps_the_flags_the_clean_test_labels_cannot_explain() {
    let (tr_labels, tr_probs, _, wrong) = generate_with(4000, 0.1, 21, 2.5);
    let (te_labels, te_probs, _, _) = generate_with(2000, 0.0, 22, 2.5);
    let twice: Vec<f32> = te_probs.iter().chain(&te_probs).copied().collect();
    let input = |bound: bool, null: &'static str| ScoreInput {
        source: "generated",
        classes: K,
        train_labels: &tr_labels,
        probs: &tr_probs,
        test_labels: &te_labels,
        test_probs: &te_probs,
        embeddings: None,
        pixels: None,
        aum: None,
        held_out_null: bound,
        null_probs: if null == "twice" { &twice[..] } else { &[] },
    };
    let flags =
        |sc: &quality::Scores| -> Vec<bool> { sc.images[..4000].iter().map(|s| s.flags.likely_mislabeled).collect() };
    let before = quality::score(&input(false, ""), &ScoreConfig::default()).unwrap();
    let after = quality::score(&input(true, ""), &ScoreConfig::default()).unwrap();
    assert!(before.cut.held_out.is_none());
    let b = after.cut.held_out.clone().expect("a bound with a test split");
    let (cb, ca) = (flag_check("f", "t", &flags(&before), &wrong), flag_check("f", "t", &flags(&after), &wrong));
    assert_eq!(b.unbounded_flagged, before.cut.flagged);
    assert!(after.cut.flagged < before.cut.flagged, "{b:?}");
    let estimated = b.estimated_precision.expect("something flagged");
    assert!(estimated >= 0.5, "{b:?}");
    assert!(ca.precision.unwrap() >= estimated - 0.1, "{ca:?} {b:?}");
    // The precision promised at 84% confidence is below the estimate, and holds.
    let low = b.precision_low.expect("something flagged");
    assert!(low < estimated && ca.precision.unwrap() >= low, "{ca:?} {b:?}");
    assert!(ca.precision.unwrap() > cb.precision.unwrap() + 0.1, "{cb:?} {ca:?}");
    // The bound's unflagged images say why.
    let unflagged =
        (0..4000).find(|&i| before.images[i].flags.likely_mislabeled && !after.images[i].flags.likely_mislabeled);
    let ev = after.images[unflagged.expect("the bound unflagged some")].evidence.clone().unwrap();
    assert!(ev.contains("under the held-out bound"), "{ev}");
    // The null given once per model (here the same model twice) bounds alike.
    let per_model = quality::score(&input(true, "twice"), &ScoreConfig::default()).unwrap();
    assert_eq!(flags(&per_model), flags(&after));
    assert_eq!(per_model.cut.held_out.as_ref().unwrap().held_out_images, 4000);
    // A null of the wrong length is refused.
    let mut bad = input(true, "");
    bad.null_probs = &te_probs[..K];
    let e = quality::score(&bad, &ScoreConfig::default()).unwrap_err().to_string();
    assert!(e.contains("fold models' test probabilities"), "{e}");
}

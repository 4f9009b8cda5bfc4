//! The root-cause call of one explained pair, with its uncertainty: the
//! criteria of each hypothesis (see [`super::causes`]) are checked on
//! [`REPLICATES`] seeded bootstrap resamples of the pair's evidence. A
//! criterion counts only where its evidence clears its uncertainty: met
//! when it holds in at least [`LEVEL`] of the resamples, not met when it
//! holds in at most 1 - [`LEVEL`], uncertain (not counted, shown as such)
//! in between: an uncertain criterion is evidence for nothing. A
//! hypothesis is named only when it meets at least [`MIN_SHARE`] of its
//! counted criteria (two at least) and beats every other hypothesis with
//! two counted criteria by at least [`MARGIN`]; otherwise the pair is
//! `undecided` between the two leading hypotheses (on the evidence as it
//! stands), or `none` when no hypothesis meets [`MIN_SHARE`] even on the
//! evidence as it stands.
//!
//! What a resample redraws: the images behind each criterion (confused
//! training images for L2 and L3, pooled confusions for K1, attacked images
//! for K3, the maps for K4 and B1, the occluded test images for B2, the
//! test images' ring colours for B3), each with replacement; the confident
//! joint's images behind the asymmetry (L1) are redrawn as a binomial of
//! their count. The neighbour rank (K2), which summarises every training
//! image's neighbourhood, is kept as it stands.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Binomial, Distribution};

use crate::stats::{auroc, median, wilson, Z95};

/// Bootstrap resamples behind each call.
pub const REPLICATES: usize = 500;
/// Share of resamples in which a criterion must hold (or fail) to count as
/// met (or not met).
pub const LEVEL: f64 = 0.95;
/// Share of its criteria a hypothesis must meet to be named.
pub const MIN_SHARE: f64 = 2.0 / 3.0;
/// How far the named hypothesis's share of criteria met must stay above
/// every other's: one criterion of five (look-alike has five, the others
/// three), so that 3 of 4 against 2 of 3 (a near-tie) is never a verdict.
pub const MARGIN: f64 = 0.2;
/// Images a criterion resting on a sample of images needs to be counted
/// (a resample of one or two images cannot show how much they vary).
pub const MIN_IMAGES: usize = 3;
/// Slack of the share comparisons (shares are ratios of small counts).
const EPS: f64 = 1e-9;

/// What a criterion found: met, not met, or not checkable.
pub type Check = Option<bool>;

/// The hypotheses, in the order of their criteria and columns.
pub const HYPOTHESES: [&str; 3] = ["label_noise", "look_alike", "background_shortcut"];

/// A hypothesis in words.
pub fn words(h: &str) -> &'static str {
    match h {
        "label_noise" => "label noise",
        "look_alike" => "look-alike classes",
        "background_shortcut" => "background shortcut",
        "undecided" => "undecided",
        _ => "no single cause stands out",
    }
}

/// Test images' ring colours projected on a direction that separates two
/// groups (the training images' mean colours): one score per image.
#[derive(Clone, Debug, Default)]
pub struct Projected {
    /// Scores of the first group's test images.
    pub pos: Vec<f64>,
    /// Scores of the second group's test images.
    pub neg: Vec<f64>,
}

impl Projected {
    /// AUROC of the scores for the first group against the second (None when either is empty).
    pub fn auroc(&self) -> Option<f64> {
        if self.pos.is_empty() || self.neg.is_empty() {
            return None;
        }
        let truth: Vec<bool> = self.pos.iter().map(|_| true).chain(self.neg.iter().map(|_| false)).collect();
        Some(auroc(&[self.pos.as_slice(), self.neg.as_slice()].concat(), &truth))
    }
}

/// One pair's evidence (given class A, other class B), as the criteria read it.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// L1: the confident joint's asymmetry towards B.
    pub joint_asymmetry: Option<f64>,
    /// L1: the confident joint's counts A -> B plus B -> A (the images the
    /// asymmetry rests on; a resample redraws them).
    pub joint_images: Option<f64>,
    /// L2: per training image of A predicted B (out of sample), whether it
    /// is flagged likely mislabeled (None: the run has no flags).
    pub confused_flagged: Option<Vec<bool>>,
    /// L3: per such image, whether its neighbours' majority label is B.
    pub confused_neighbour_b: Option<Vec<bool>>,
    /// K1: pooled confusions A -> B and B -> A (test plus out-of-sample training).
    pub pooled: (i64, i64),
    /// K2: B's rank among the classes A's neighbourhoods lean to (1 = first).
    pub neighbor_rank: Option<i64>,
    /// K3: per attacked image of A, smallest L2 radius reaching B over the
    /// smallest leaving A (infinite when B was never reached; None: no attack).
    pub radius_ratios: Option<Vec<f64>>,
    /// B1, K4: ring_ratio of the confused images' maps towards B.
    pub ring_confused: Vec<f64>,
    /// B1, K4: ring_ratio of correctly classified images of A.
    pub ring_correct: Vec<f64>,
    /// K4: concentration of the confused images' maps.
    pub concentration_confused: Vec<f64>,
    /// K4: concentration of the correctly classified images' maps.
    pub concentration_correct: Vec<f64>,
    /// K4: the low end of the ring-reliance gap's bootstrap interval.
    pub ring_gap_low: Option<f64>,
    /// B2 and K5: background only, (A's test images sent to A or B, A's
    /// test images, other classes' test images sent to A or B, their count).
    pub background_only: Option<[usize; 4]>,
    /// B3: ring colour, A's test images against B's.
    pub colour_ab: Option<Projected>,
    /// B3: ring colour, the pair's test images against the other classes'.
    pub colour_pair: Option<Projected>,
}

/// Draws the rows a resample uses: the rows themselves, or as many drawn
/// with replacement.
struct Draw<'a> {
    rng: Option<&'a mut ChaCha8Rng>,
}

impl Draw<'_> {
    fn rows<T: Copy>(&mut self, v: &[T]) -> Vec<T> {
        match self.rng.as_deref_mut() {
            Some(rng) if !v.is_empty() => (0..v.len()).map(|_| v[rng.random_range(0..v.len())]).collect(),
            _ => v.to_vec(),
        }
    }

    /// Successes among `n` new draws of a rate seen as `hit` of `n`: the
    /// rate drawn from its Jeffreys posterior Beta(hit + 1/2, n - hit + 1/2),
    /// then the count from it, so that 2 of 2 is not certainty (a plain
    /// resample of 2 of 2 always draws 2 of 2).
    fn count(&mut self, hit: usize, n: usize) -> usize {
        match self.rng.as_deref_mut() {
            Some(rng) if n > 0 => {
                let p = Beta::new(hit as f64 + 0.5, (n - hit) as f64 + 0.5).map_or(0.5, |b| b.sample(rng));
                Binomial::new(n as u64, p).map_or(hit, |b| b.sample(rng) as usize)
            }
            _ => hit,
        }
    }
}

/// The criteria of each hypothesis (in [`HYPOTHESES`] order) on the
/// evidence as it stands (`rng` None) or on one resample of it.
pub fn criteria(ev: &Evidence, rng: Option<&mut ChaCha8Rng>) -> [Vec<Check>; 3] {
    let mut d = Draw { rng };
    let enough = |n: usize| n >= MIN_IMAGES;
    let half = |v: &Option<Vec<bool>>, d: &mut Draw| -> Check {
        let v = v.as_ref().filter(|v| enough(v.len()))?;
        let hit = d.count(v.iter().filter(|&&b| b).count(), v.len());
        Some(hit as f64 >= 0.5 * v.len() as f64)
    };
    // The asymmetry (p - q) / (p + q) is 2x - 1 for the share x of the
    // pair's confident-joint images that go A -> B.
    let asymmetry = ev.joint_asymmetry.map(|a| match ev.joint_images.map(|n| n.round() as usize) {
        Some(n) if n > 0 => {
            let x = d.count(((1.0 + a) / 2.0 * n as f64).round() as usize, n);
            2.0 * x as f64 / n as f64 - 1.0
        }
        _ => a,
    });
    let l =
        vec![asymmetry.map(|a| a >= 0.5), half(&ev.confused_flagged, &mut d), half(&ev.confused_neighbour_b, &mut d)];

    let (x, y) = ev.pooled;
    let total = (x + y) as usize;
    let xs = d.count(x as usize, total) as i64;
    let ys = total as i64 - xs;
    let symmetry = (xs.max(ys) > 0).then(|| xs.min(ys) as f64 / xs.max(ys) as f64);
    let ratio = ev.radius_ratios.as_ref().filter(|v| !v.is_empty()).and_then(|v| median(&d.rows(v)));
    let maps = enough(ev.ring_confused.len()) && enough(ev.ring_correct.len());
    let conc = enough(ev.concentration_confused.len()) && enough(ev.concentration_correct.len());
    let spread = conc.then(|| {
        let (c, k) = (median(&d.rows(&ev.concentration_confused)), median(&d.rows(&ev.concentration_correct)));
        c.zip(k).is_some_and(|(c, k)| c <= k) && ev.ring_gap_low.is_none_or(|g| g <= 0.0)
    });
    let lift_low = ev.background_only.map(|[h1, n1, h2, n2]| {
        let (l1, _) = wilson(d.count(h1, n1), n1, Z95);
        let (_, u2) = wilson(d.count(h2, n2), n2, Z95);
        l1 - u2
    });
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let gap = maps.then(|| mean(&d.rows(&ev.ring_confused)) - mean(&d.rows(&ev.ring_correct)));
    let mut auc =
        |p: &Option<Projected>| p.as_ref().and_then(|p| Projected { pos: d.rows(&p.pos), neg: d.rows(&p.neg) }.auroc());
    let (ab, rest) = (auc(&ev.colour_ab), auc(&ev.colour_pair));
    let shared_background = ab.zip(rest).map(|(ab, r)| ab <= 0.7 && r >= 0.75);
    let k = vec![
        symmetry.map(|s| s >= 1.0 / 3.0),
        ev.neighbor_rank.map(|r| r == 1),
        ratio.map(|r| r <= 1.25),
        spread,
        // K5: no background that the pair shares and other classes do not
        // (B3 not met): the objects, not the scene, are what is alike.
        shared_background.map(|s| !s),
    ];
    let b = vec![gap.map(|g| g > 0.0), lift_low.map(|v| v > 0.0), shared_background];
    [l, k, b]
}

/// Share of `checks` met and how many could be checked.
pub fn share(checks: &[Check]) -> (Option<f64>, usize) {
    let n = checks.iter().flatten().count();
    let met = checks.iter().flatten().filter(|&&b| b).count();
    ((n > 0).then(|| met as f64 / n as f64), n)
}

/// "met/counted" of a hypothesis's criteria, with the uncertain ones.
pub fn met(checks: &[Criterion]) -> String {
    let counted: Vec<bool> = checks.iter().filter_map(|c| c.counted()).collect();
    let uncertain = checks.iter().filter(|c| matches!(c, Criterion::Uncertain(_))).count();
    let base = format!("{}/{}", counted.iter().filter(|&&b| b).count(), counted.len());
    match uncertain {
        0 => base,
        n => format!("{base}, {n} uncertain"),
    }
}

/// Share of a hypothesis's counted criteria that are met (None: none counts).
pub fn support(checks: &[Criterion]) -> Option<f64> {
    share(&checks.iter().map(|c| c.counted()).collect::<Vec<_>>()).0
}

/// A criterion after the bootstrap.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Criterion {
    /// The run lacks its numbers.
    Unavailable,
    /// Held in at least [`LEVEL`] of the resamples.
    Met,
    /// Held in at most 1 - [`LEVEL`] of them.
    NotMet,
    /// In between: the share of resamples in which it held.
    Uncertain(f64),
}

impl Criterion {
    /// Met or not, where it counts.
    pub fn counted(self) -> Check {
        match self {
            Criterion::Met => Some(true),
            Criterion::NotMet => Some(false),
            _ => None,
        }
    }
}

/// The share of criteria met per hypothesis, None where fewer than two
/// criteria count (such a hypothesis takes no part).
fn shares(c: &[Vec<Check>; 3]) -> [Option<f64>; 3] {
    c.each_ref().map(|c| match share(c) {
        (Some(s), n) if n >= 2 => Some(s),
        _ => None,
    })
}

/// A pair's call: the hypothesis named, the two leading ones and how often
/// the leader led.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// One of [`HYPOTHESES`], `undecided` or `none`.
    pub hypothesis: &'static str,
    /// The hypothesis with the largest share of its counted criteria met
    /// (None: none has two criteria that count).
    pub leading: Option<&'static str>,
    /// The next one.
    pub runner_up: Option<&'static str>,
    /// Share of the resamples in which the leader met the largest share of
    /// its criteria, ahead of every other hypothesis.
    pub confidence: Option<f64>,
    /// The criteria after the bootstrap, per hypothesis.
    pub criteria: [Vec<Criterion>; 3],
}

/// Leader and runner-up by share (the first in [`HYPOTHESES`] order on ties).
fn ranked(s: &[Option<f64>; 3]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..3).filter(|&h| s[h].is_some()).collect();
    order.sort_by(|&a, &b| s[b].unwrap().total_cmp(&s[a].unwrap()));
    order
}

/// The call for one pair; `rng` is the pair's own seeded stream.
pub fn decide(ev: &Evidence, rng: &mut ChaCha8Rng) -> Verdict {
    let point = criteria(ev, None);
    let resamples: Vec<[Vec<Check>; 3]> = (0..REPLICATES).map(|_| criteria(ev, Some(rng))).collect();
    let criteria: [Vec<Criterion>; 3] = std::array::from_fn(|h| {
        (0..point[h].len())
            .map(|j| {
                if point[h][j].is_none() {
                    return Criterion::Unavailable;
                }
                let held = resamples.iter().filter(|r| r[h][j] == Some(true)).count() as f64 / REPLICATES as f64;
                match held {
                    x if x >= LEVEL => Criterion::Met,
                    x if x <= 1.0 - LEVEL => Criterion::NotMet,
                    x => Criterion::Uncertain(x),
                }
            })
            .collect()
    });
    let counted: [Vec<Check>; 3] = criteria.each_ref().map(|c| c.iter().map(|c| c.counted()).collect());
    let s = shares(&counted);
    // The leading two on the evidence as it stands.
    let as_stands = shares(&point);
    let order = ranked(&as_stands);
    let (leading, runner_up) = (order.first().copied(), order.get(1).copied());
    let named = (0..3).find(|&h| {
        s[h].is_some_and(|sh| {
            sh >= MIN_SHARE - EPS && (0..3).filter(|&o| o != h).all(|o| s[o].is_none_or(|so| sh - so >= MARGIN - EPS))
        })
    });
    let leading = named.or(leading);
    let runner_up = if named.is_some() && named == runner_up { order.first().copied() } else { runner_up };
    let confidence = leading.map(|h| {
        let led = resamples.iter().filter(|r| ranked(&shares(r)).first() == Some(&h)).count();
        led as f64 / REPLICATES as f64
    });
    let stands_out = as_stands.iter().flatten().any(|&p| p >= MIN_SHARE - EPS);
    let hypothesis = match named {
        Some(h) => HYPOTHESES[h],
        None if stands_out => "undecided",
        None => "none",
    };
    Verdict {
        hypothesis,
        leading: leading.map(|h| HYPOTHESES[h]),
        runner_up: runner_up.map(|h| HYPOTHESES[h]),
        confidence,
        criteria,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(7)
    }

    /// A shared-background pair: clear background evidence on many images,
    /// the confusion both ways.
    fn background() -> Evidence {
        Evidence {
            pooled: (20, 18),
            neighbor_rank: Some(1),
            radius_ratios: Some(vec![1.0; 8]),
            ring_confused: (0..12).map(|i| 1.4 + 0.01 * i as f64).collect(),
            ring_correct: (0..8).map(|i| 0.6 + 0.01 * i as f64).collect(),
            concentration_confused: vec![0.2; 12],
            concentration_correct: vec![0.4; 8],
            ring_gap_low: Some(0.7),
            background_only: Some([55, 100, 100, 800]),
            colour_ab: Some(Projected {
                pos: (0..100).map(|i| i as f64).collect(),
                neg: (0..100).map(|i| i as f64 + 0.5).collect(),
            }),
            colour_pair: Some(Projected {
                pos: (0..200).map(|i| 100.0 + i as f64).collect(),
                neg: (0..800).map(|i| i as f64 / 10.0).collect(),
            }),
            ..Evidence::default()
        }
    }

    #[test]
    fn clear_evidence_is_called_and_a_near_tie_is_undecided() {
        let v = decide(&background(), &mut rng());
        assert_eq!(v.hypothesis, "background_shortcut", "{v:?}");
        assert_eq!(met(&v.criteria[2]), "3/3");
        assert_eq!(v.runner_up, Some("look_alike"));
        assert!(v.confidence.unwrap() >= 0.95);
        // Maps that no longer lean on the ring: background 2/3, look-alike
        // 3/5 (confusion both ways, neighbours, radius): a near-tie.
        let mut near = background();
        near.ring_confused = vec![0.5; 12];
        let v = decide(&near, &mut rng());
        assert_eq!((met(&v.criteria[2]).as_str(), met(&v.criteria[1]).as_str()), ("2/3", "3/5"));
        assert_eq!(
            (v.hypothesis, v.leading, v.runner_up),
            ("undecided", Some("background_shortcut"), Some("look_alike"))
        );
    }

    #[test]
    fn a_criterion_that_rests_on_a_few_varied_maps_does_not_count() {
        // The ring gap is positive on the maps as they stand but not in many resamples.
        let mut ev = background();
        ev.ring_confused = vec![3.0, 0.1, 0.2, 0.3];
        ev.ring_correct = vec![0.8, 0.9, 0.7, 0.8, 0.75];
        assert_eq!(criteria(&ev, None)[2][0], Some(true));
        let v = decide(&ev, &mut rng());
        assert!(matches!(v.criteria[2][0], Criterion::Uncertain(x) if x > 0.5 && x < 0.95), "{v:?}");
        assert_eq!(met(&v.criteria[2]), "2/2, 1 uncertain");
        // Two maps are not counted at all.
        ev.ring_confused = vec![3.0, 2.0];
        ev.concentration_confused = vec![0.2; 2];
        assert_eq!(criteria(&ev, None)[2][0], None);
    }

    #[test]
    fn look_alike_objects_are_told_from_a_shared_background() {
        let mut ev = background();
        ev.background_only = Some([20, 100, 200, 800]);
        ev.ring_confused = vec![0.5, 0.55, 0.6, 0.52, 0.56];
        ev.ring_gap_low = Some(-0.1);
        ev.concentration_confused = vec![0.3; 5];
        ev.colour_pair = Some(Projected {
            pos: (0..200).map(|i| i as f64).collect(),
            neg: (0..800).map(|i| i as f64 / 4.0).collect(),
        });
        let v = decide(&ev, &mut rng());
        assert_eq!(v.hypothesis, "look_alike", "{v:?}");
        assert_eq!(met(&v.criteria[1]), "5/5");
        assert_eq!(support(&v.criteria[2]), Some(0.0));
    }

    #[test]
    fn uncertain_criteria_are_evidence_for_nothing() {
        // Background: B3 met, B1 and B2 uncertain: one criterion counts, too
        // few to weigh; look-alike meets 4 of 5 and is named. With B1 and B2
        // met instead, the background would lead.
        let mut ev = background();
        ev.ring_confused = ev.ring_correct.clone();
        ev.ring_gap_low = None;
        ev.background_only = Some([30, 100, 150, 800]);
        let v = decide(&ev, &mut rng());
        assert_eq!(met(&v.criteria[2]), "1/1, 2 uncertain", "{v:?}");
        assert_eq!(met(&v.criteria[1]), "4/5", "{v:?}");
        assert_eq!(v.hypothesis, "look_alike", "{v:?}");
    }

    #[test]
    fn an_asymmetry_of_few_images_does_not_count() {
        let mut ev = Evidence { joint_asymmetry: Some(1.0), joint_images: Some(2.0), ..Evidence::default() };
        // 2 of 2 images one way is no certainty; 40 of 40 is.
        assert!(matches!(decide(&ev, &mut rng()).criteria[0][0], Criterion::Uncertain(_)));
        ev.joint_images = Some(40.0);
        assert_eq!(decide(&ev, &mut rng()).criteria[0][0], Criterion::Met);
        ev.joint_asymmetry = Some(0.6);
        ev.joint_images = Some(5.0);
        assert!(matches!(decide(&ev, &mut rng()).criteria[0][0], Criterion::Uncertain(_)));
        ev.joint_images = Some(500.0);
        assert_eq!(decide(&ev, &mut rng()).criteria[0][0], Criterion::Met);
    }

    #[test]
    fn no_hypothesis_at_two_thirds_is_none_and_the_call_is_seeded() {
        let ev =
            Evidence { pooled: (10, 0), neighbor_rank: Some(4), joint_asymmetry: Some(0.1), ..Evidence::default() };
        let v = decide(&ev, &mut rng());
        assert_eq!(v.hypothesis, "none", "{v:?}");
        let (a, b) = (decide(&background(), &mut rng()), decide(&background(), &mut rng()));
        assert_eq!(a, b);
    }
}

//! Influence of training images on test predictions by TracIn restricted to
//! the last layer (Pruthi et al. 2020, "TracInCP" over the linear head).
//!
//! For cross-entropy over a linear head `z = W h + b`, the gradient of one
//! image's loss with respect to `(W, b)` is `(p - y) [h, 1]^T`, with `p` the
//! softmax probabilities `[classes]`, `y` the one-hot target and `h` the
//! pooled features `[dim]`. The dot product of two such gradients factors:
//!
//! `influence(a, b) = sum_c w_c * ((p_a - y_a) . (p_b - y_b)) * (h_a . h_b + 1)`
//!
//! summed over the checkpoints `c` with weight `w_c` (the learning rate
//! there; 1 for a single checkpoint). A positive influence means a gradient
//! step on training image `a` lowers the loss of query `b`'s target: `a` is a
//! proponent of that target; a negative one, an opponent. Self-influence is
//! `influence(a, a)` with the image's own label as target, a known signal of
//! mislabeled training images.
//!
//! The all-pairs products are two matrix products per checkpoint (of the
//! `[dim + 1]` augmented features and of the `[classes]` residuals), done
//! in blocks of queries x training images so memory stays at a few MiB, with
//! the blocks of queries in parallel. Block sizes are fixed, so the same
//! inputs give the same bits on any number of threads.

use rayon::prelude::*;

use crate::error::{Error, Result};

/// Queries per parallel block.
const QUERY_BLOCK: usize = 64;
/// Training images per block of the products.
const TRAIN_BLOCK: usize = 2048;

/// One checkpoint: its last layer and the pooled features it gives both
/// sets of images.
#[derive(Clone, Copy, Debug)]
pub struct Checkpoint<'a> {
    /// What the checkpoint is, in words (for the run's summary).
    pub name: &'a str,
    /// The head's weight `[classes, dim]`, row-major.
    pub weight: &'a [f32],
    /// The head's bias `[classes]`.
    pub bias: &'a [f32],
    /// Pooled features of the training images `[n_train, dim]`: exactly the
    /// input of the head.
    pub train_features: &'a [f32],
    /// Pooled features of the queries `[n_query, dim]`.
    pub query_features: &'a [f32],
    /// The checkpoint's weight in the sum (the learning rate at it; > 0).
    pub lr: f32,
    /// Which training images this checkpoint's model trained on `[n_train]`
    /// (None: all). The others' gradients were never applied by it, so
    /// they take no part in its products (their features are not read).
    pub trained: Option<&'a [bool]>,
}

/// What to compute.
#[derive(Clone, Debug)]
pub struct InfluenceInput<'a> {
    pub classes: usize,
    /// Length of the pooled features.
    pub dim: usize,
    /// Given label of every training image `[n_train]` (its loss's target).
    pub train_labels: &'a [u32],
    /// The class each query's loss is taken at `[n_query]` (for a test
    /// mistake: the wrong prediction, so proponents push towards it).
    pub query_targets: &'a [u32],
    /// One or more checkpoints, summed.
    pub checkpoints: &'a [Checkpoint<'a>],
    /// Proponents and opponents kept per query.
    pub k: usize,
}

/// One training image's influence on one query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// Row of the training image.
    pub train: u32,
    /// Its influence (sum over the checkpoints; dimensionless gradient product).
    pub influence: f32,
}

/// The result.
#[derive(Clone, Debug, PartialEq)]
pub struct Influence {
    /// Per query, up to `k` training images with positive influence, the
    /// largest first (ties: lower row first).
    pub proponents: Vec<Vec<Hit>>,
    /// Per query, up to `k` with negative influence, the most negative first.
    pub opponents: Vec<Vec<Hit>>,
    /// Self-influence of every training image `[n_train]` (>= 0; f64: a
    /// well-fit image's is far below f32's range).
    pub self_influence: Vec<f64>,
}

/// Per-image gradient factors of one checkpoint: residuals `p - y`
/// `[n, classes]` and augmented features `[h, 1]` `[n, dim + 1]`.
struct Factors {
    residual: Vec<f32>,
    augmented: Vec<f32>,
    /// `|p - y|^2 (|h|^2 + 1)` per image, from the f64 residuals (the f32
    /// ones of a very well-fit image can be subnormal).
    self_product: Vec<f64>,
}

fn factors(features: &[f32], targets: &[u32], weight: &[f32], bias: &[f32], classes: usize, dim: usize) -> Factors {
    let n = targets.len();
    let mut residual = vec![0f32; n * classes];
    let mut augmented = vec![0f32; n * (dim + 1)];
    let mut e = vec![0f64; classes];
    let mut self_product = vec![0f64; n];
    for i in 0..n {
        let h = &features[i * dim..(i + 1) * dim];
        // Logits and softmax in f64; the target's residual p_t - 1 as minus
        // the other classes' share, so a well-fit image's small residual
        // keeps its relative precision (1 - p_t in f32 would not).
        for (c, z) in e.iter_mut().enumerate() {
            let w = &weight[c * dim..(c + 1) * dim];
            *z = bias[c] as f64 + h.iter().zip(w).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>();
        }
        let max = e.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        for z in e.iter_mut() {
            *z = (*z - max).exp();
        }
        let sum: f64 = e.iter().sum();
        let t = targets[i] as usize;
        let others: f64 = e.iter().enumerate().filter(|&(c, _)| c != t).map(|(_, v)| v).sum();
        let r = &mut residual[i * classes..(i + 1) * classes];
        let mut rr = 0f64;
        for c in 0..classes {
            let v = if c == t { -(others / sum) } else { e[c] / sum };
            rr += v * v;
            r[c] = v as f32;
        }
        self_product[i] = rr * (1.0 + h.iter().map(|&x| x as f64 * x as f64).sum::<f64>());
        let a = &mut augmented[i * (dim + 1)..(i + 1) * (dim + 1)];
        a[..dim].copy_from_slice(h);
        a[dim] = 1.0;
    }
    Factors { residual, augmented, self_product }
}

fn check(input: &InfluenceInput) -> Result<()> {
    let (k, d) = (input.classes, input.dim);
    let bad = |what: String| Err(Error::Usage(format!("influence: {what}")));
    if k == 0 || d == 0 {
        return bad(format!("{k} classes of {d} features: nothing to compute"));
    }
    if input.checkpoints.is_empty() {
        return bad("no checkpoint".into());
    }
    if let Some(&l) = input.train_labels.iter().chain(input.query_targets).find(|&&l| l as usize >= k) {
        return bad(format!("label {l} is not one of the {k} classes"));
    }
    let (n, m) = (input.train_labels.len(), input.query_targets.len());
    for c in input.checkpoints {
        let sizes = [
            ("head weight", c.weight.len(), k * d),
            ("head bias", c.bias.len(), k),
            ("training features", c.train_features.len(), n * d),
            ("query features", c.query_features.len(), m * d),
        ];
        for (what, got, want) in sizes {
            if got != want {
                return bad(format!("checkpoint {}: {what} has {got} values, expected {want}", c.name));
            }
        }
        if let Some(t) = c.trained.filter(|t| t.len() != n) {
            return bad(format!("checkpoint {}: {} trained flags for {n} training images", c.name, t.len()));
        }
        if !(c.lr.is_finite() && c.lr > 0.0) {
            return bad(format!("checkpoint {}: weight {} is not a positive number", c.name, c.lr));
        }
        let all = [c.weight, c.bias, c.train_features, c.query_features];
        if let Some(p) = all.iter().flat_map(|s| s.iter()).position(|v| !v.is_finite()) {
            return bad(format!("checkpoint {}: value {p} of its head or features is not finite", c.name));
        }
    }
    Ok(())
}

/// Keeps the `k` largest `(value, row)` by value, ties by lower row (rows
/// arrive in increasing order).
fn offer(top: &mut Vec<Hit>, k: usize, v: f32, row: u32) {
    if top.len() == k && v <= top[k - 1].influence {
        return;
    }
    let at = top.partition_point(|h| h.influence >= v);
    top.insert(at, Hit { train: row, influence: v });
    top.truncate(k);
}

/// Every query's top-`k` proponents and opponents among the training
/// images, and every training image's self-influence.
pub fn influence(input: &InfluenceInput) -> Result<Influence> {
    check(input)?;
    let (classes, dim, k) = (input.classes, input.dim, input.k);
    let n = input.train_labels.len();
    let m = input.query_targets.len();
    let train: Vec<Factors> = input
        .checkpoints
        .iter()
        .map(|c| {
            let mut f = factors(c.train_features, input.train_labels, c.weight, c.bias, classes, dim);
            for (i, _) in c.trained.iter().flat_map(|t| t.iter().enumerate()).filter(|(_, &t)| !t) {
                f.residual[i * classes..(i + 1) * classes].fill(0.0);
                f.self_product[i] = 0.0;
            }
            f
        })
        .collect();
    let query: Vec<Factors> = input
        .checkpoints
        .iter()
        .map(|c| factors(c.query_features, input.query_targets, c.weight, c.bias, classes, dim))
        .collect();
    let mut self_influence = vec![0f64; n];
    for (c, f) in input.checkpoints.iter().zip(&train) {
        for (si, p) in self_influence.iter_mut().zip(&f.self_product) {
            *si += c.lr as f64 * p;
        }
    }
    let d1 = dim + 1;
    let blocks: Vec<(Vec<Vec<Hit>>, Vec<Vec<Hit>>)> = (0..m.div_ceil(QUERY_BLOCK))
        .into_par_iter()
        .map(|b| {
            let q0 = b * QUERY_BLOCK;
            let q1 = (q0 + QUERY_BLOCK).min(m);
            let mut pro: Vec<Vec<Hit>> = vec![Vec::with_capacity(k + 1); q1 - q0];
            let mut opp: Vec<Vec<Hit>> = vec![Vec::with_capacity(k + 1); q1 - q0];
            if k == 0 {
                return (pro, opp);
            }
            let mut acc = vec![0f32; (q1 - q0) * TRAIN_BLOCK];
            for t0 in (0..n).step_by(TRAIN_BLOCK) {
                let t1 = (t0 + TRAIN_BLOCK).min(n);
                let w = t1 - t0;
                let acc = &mut acc[..(q1 - q0) * w];
                acc.fill(0.0);
                for ((c, tf), qf) in input.checkpoints.iter().zip(&train).zip(&query) {
                    let g = dots(&qf.augmented[q0 * d1..q1 * d1], &tf.augmented[t0 * d1..t1 * d1], d1);
                    let e = dots(
                        &qf.residual[q0 * classes..q1 * classes],
                        &tf.residual[t0 * classes..t1 * classes],
                        classes,
                    );
                    for ((a, g), e) in acc.iter_mut().zip(&g).zip(&e) {
                        *a += c.lr * (g * e);
                    }
                }
                for q in 0..q1 - q0 {
                    let row = &acc[q * w..(q + 1) * w];
                    for (j, &v) in row.iter().enumerate() {
                        let t = (t0 + j) as u32;
                        if v > 0.0 {
                            offer(&mut pro[q], k, v, t);
                        } else if v < 0.0 {
                            offer(&mut opp[q], k, -v, t);
                        }
                    }
                }
            }
            for o in &mut opp {
                for h in o.iter_mut() {
                    h.influence = -h.influence;
                }
            }
            (pro, opp)
        })
        .collect();
    let (mut proponents, mut opponents) = (Vec::with_capacity(m), Vec::with_capacity(m));
    for (p, o) in blocks {
        proponents.extend(p);
        opponents.extend(o);
    }
    Ok(Influence { proponents, opponents, self_influence })
}

/// `out[m, n] = a[m, dim] * b[n, dim]^T`.
fn dots(a: &[f32], b: &[f32], dim: usize) -> Vec<f32> {
    crate::quality::neighbors::dots(a, b, dim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// The formula, pair by pair, in f64.
    fn direct(classes: usize, dim: usize, w: &[f32], b: &[f32], h: &[f32], y: u32) -> (Vec<f64>, Vec<f64>) {
        let z: Vec<f64> =
            (0..classes).map(|c| b[c] as f64 + (0..dim).map(|j| (w[c * dim + j] * h[j]) as f64).sum::<f64>()).collect();
        let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = z.iter().map(|v| (v - max).exp()).sum();
        let r = (0..classes).map(|c| (z[c] - max).exp() / s - if c == y as usize { 1.0 } else { 0.0 }).collect();
        let a = h.iter().map(|&v| v as f64).chain([1.0]).collect();
        (r, a)
    }

    #[test]
    fn top_k_and_self_influence_match_the_formula_pair_by_pair() {
        let (classes, dim, n, m, k) = (4, 5, 3000, 70, 6);
        let w = random(classes * dim, 1);
        let b = random(classes, 2);
        let tf = random(n * dim, 3);
        let qf = random(m * dim, 4);
        let tl: Vec<u32> = (0..n as u32).map(|i| i % classes as u32).collect();
        let qt: Vec<u32> = (0..m as u32).map(|i| (i * 7) % classes as u32).collect();
        // Checkpoint b's model trained on two in three images only.
        let mask: Vec<bool> = (0..n).map(|i| i % 3 != 0).collect();
        let cps = [
            Checkpoint {
                name: "a",
                weight: &w,
                bias: &b,
                train_features: &tf,
                query_features: &qf,
                lr: 1.0,
                trained: None,
            },
            Checkpoint {
                name: "b",
                weight: &b.repeat(dim),
                bias: &b,
                train_features: &qf.repeat(43)[..n * dim],
                query_features: &qf,
                lr: 0.5,
                trained: Some(&mask),
            },
        ];
        let input = InfluenceInput { classes, dim, train_labels: &tl, query_targets: &qt, checkpoints: &cps, k };
        let got = influence(&input).unwrap();
        let mut all = vec![vec![0f64; n]; m];
        let mut selfs = vec![0f64; n];
        for c in &cps {
            let t: Vec<_> = (0..n)
                .map(|i| direct(classes, dim, c.weight, c.bias, &c.train_features[i * dim..(i + 1) * dim], tl[i]))
                .collect();
            let counts = |i: usize| c.trained.is_none_or(|t| t[i]);
            for (i, (r, a)) in t.iter().enumerate().filter(|(i, _)| counts(*i)) {
                selfs[i] += c.lr as f64 * r.iter().map(|x| x * x).sum::<f64>() * a.iter().map(|x| x * x).sum::<f64>();
            }
            for q in 0..m {
                let (rq, aq) = direct(classes, dim, c.weight, c.bias, &c.query_features[q * dim..(q + 1) * dim], qt[q]);
                for (i, (r, a)) in t.iter().enumerate().filter(|(i, _)| counts(*i)) {
                    let e: f64 = r.iter().zip(&rq).map(|(x, y)| x * y).sum();
                    let g: f64 = a.iter().zip(&aq).map(|(x, y)| x * y).sum();
                    all[q][i] += c.lr as f64 * e * g;
                }
            }
        }
        for (i, s) in selfs.iter().enumerate() {
            assert!((got.self_influence[i] - s).abs() <= 1e-4 * s.abs().max(1e-3), "self {i}");
        }
        for q in 0..m {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&x, &y| all[q][y].total_cmp(&all[q][x]));
            assert_eq!(got.proponents[q].len(), k);
            for (r, h) in got.proponents[q].iter().enumerate() {
                let want = all[q][order[r]];
                assert!(want > 0.0);
                assert!((h.influence as f64 - want).abs() <= 1e-4 * want.abs(), "query {q} rank {r}: {h:?} vs {want}");
                let exact = all[q][h.train as usize];
                assert!((h.influence as f64 - exact).abs() <= 1e-4 * exact.abs(), "query {q}: row {}", h.train);
            }
            for (r, h) in got.opponents[q].iter().enumerate() {
                let want = all[q][order[n - 1 - r]];
                assert!(want < 0.0);
                assert!((h.influence as f64 - want).abs() <= 1e-4 * want.abs(), "query {q} opponent rank {r}");
            }
        }
    }

    #[test]
    fn same_inputs_same_bits_and_bad_inputs_are_refused() {
        let (classes, dim, n, m) = (3, 4, 5000, 130);
        let w = random(classes * dim, 5);
        let b = random(classes, 6);
        let tf = random(n * dim, 7);
        let qf = random(m * dim, 8);
        let tl: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
        let qt: Vec<u32> = (0..m as u32).map(|i| (i + 1) % 3).collect();
        let cps = [Checkpoint {
            name: "final",
            weight: &w,
            bias: &b,
            train_features: &tf,
            query_features: &qf,
            lr: 1.0,
            trained: None,
        }];
        let input = InfluenceInput { classes, dim, train_labels: &tl, query_targets: &qt, checkpoints: &cps, k: 10 };
        let one =
            rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| influence(&input).unwrap());
        let many =
            rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap().install(|| influence(&input).unwrap());
        assert_eq!(one, many);
        let bad_label = [7u32; 130];
        let e = influence(&InfluenceInput { query_targets: &bad_label, ..input.clone() }).unwrap_err().to_string();
        assert!(e.contains("label 7"), "{e}");
        let short = [Checkpoint { train_features: &tf[1..], ..cps[0] }];
        let e = influence(&InfluenceInput { checkpoints: &short, ..input.clone() }).unwrap_err().to_string();
        assert!(e.contains("training features has 19999 values, expected 20000"), "{e}");
        let few = [true; 3];
        let short = [Checkpoint { trained: Some(&few), ..cps[0] }];
        let e = influence(&InfluenceInput { checkpoints: &short, ..input.clone() }).unwrap_err().to_string();
        assert!(e.contains("3 trained flags for 5000 training images"), "{e}");
        let mut nan = tf.clone();
        nan[17] = f32::NAN;
        let bad = [Checkpoint { train_features: &nan, ..cps[0] }];
        assert!(influence(&InfluenceInput { checkpoints: &bad, ..input })
            .unwrap_err()
            .to_string()
            .contains("not finite"));
    }
}

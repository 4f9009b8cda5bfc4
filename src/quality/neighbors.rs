//! Nearest training neighbours of every image in embedding space: an HNSW
//! index (hnsw_rs) over the L2-normalised training embeddings, checked on
//! every run against exact search (one matrix multiply per block of queries).

use hnsw_rs::prelude::{DistL2, Hnsw};
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Neighbours of a set of queries: `k` per query, nearest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Neighbors {
    /// Neighbours per query.
    pub k: usize,
    /// `[queries, k]` row indices into the training embeddings.
    pub index: Vec<u32>,
    /// `[queries, k]` Euclidean distances between unit vectors (0 to 2).
    pub distance: Vec<f32>,
}

impl Neighbors {
    /// Neighbour rows of query `q`.
    pub fn of(&self, q: usize) -> &[u32] {
        &self.index[q * self.k..(q + 1) * self.k]
    }
    /// Distances of query `q`'s neighbours.
    pub fn distances(&self, q: usize) -> &[f32] {
        &self.distance[q * self.k..(q + 1) * self.k]
    }
}

/// Scales every `dim`-long row to unit length (zero rows stay zero), without
/// under- or overflow: a row whose largest absolute value is outside
/// [`SAFE_MAGNITUDE`] is first divided by that value (the sum of squares of
/// values of 1e-25 is 0 in `f32`, of 1e25 infinite). Other rows take the
/// plain formula, so their results do not change by a rounding.
pub fn normalize(v: &[f32], dim: usize) -> Vec<f32> {
    v.chunks_exact(dim)
        .flat_map(|row| {
            let m = row.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            // Divided, not multiplied by 1/m: 1/m of a subnormal m is infinite.
            let by = if m > 0.0 && !SAFE_MAGNITUDE.contains(&m) { m } else { 1.0 };
            let n = row.iter().map(|x| (x / by) * (x / by)).sum::<f32>().sqrt();
            row.iter().map(move |x| if n > 0.0 { x / by / n } else { 0.0 }).collect::<Vec<_>>()
        })
        .collect()
}

/// Largest absolute values of a row whose squares sum in `f32` without
/// under- or overflow (up to 10^8 dimensions).
pub const SAFE_MAGNITUDE: std::ops::RangeInclusive<f32> = 1e-15..=1e15;

/// The `k` nearest rows seen so far of one query, nearest first, ties by
/// row: (Euclidean distance between unit vectors, row). Rows are offered with
/// their dot product with the query; the distance's square root is taken only
/// for a row that may enter (most fail one comparison).
pub(crate) struct TopK {
    k: usize,
    /// (distance, row), sorted by distance then row.
    pub items: Vec<(f32, u32)>,
    /// A squared distance (`2 - 2 dot`) beyond which no row can enter, once full.
    worst: f32,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK { k, items: Vec::with_capacity(k + 1), worst: f32::INFINITY }
    }

    /// An empty top k that takes no row beyond squared distance `bound`
    /// (another top k's [`TopK::bound`]: rows it would turn away anyway).
    pub fn within(k: usize, bound: f32) -> Self {
        TopK { k, items: Vec::new(), worst: bound }
    }

    /// The squared distance beyond which no row can enter (infinite until full).
    pub fn bound(&self) -> f32 {
        self.worst
    }

    /// Offers `row` at dot product `dot`; the same result as sorting every
    /// row offered by (distance, row) and keeping the first k.
    #[inline]
    pub fn offer(&mut self, dot: f32, row: u32) {
        let sq = (2.0 - 2.0 * dot).max(0.0);
        if sq > self.worst {
            return;
        }
        self.insert((sq.sqrt(), row));
    }

    /// Inserts a (distance, row) candidate if it is among the k best so far.
    pub fn insert(&mut self, cand: (f32, u32)) {
        let less = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).is_lt();
        if self.items.len() == self.k && !less(&cand, &self.items[self.k - 1]) {
            return;
        }
        let at = self.items.partition_point(|x| less(x, &cand));
        self.items.insert(at, cand);
        if self.items.len() > self.k {
            self.items.pop();
        }
        if self.items.len() == self.k {
            let d = self.items[self.k - 1].0;
            // Above this squared distance, the rounded root exceeds d: a
            // relative margin of 4e-6 is 30 times f32's rounding.
            self.worst = self.worst.min(d * d * (1.0 + 4e-6));
        }
    }
}

/// Queries per block of the exact search: the block's dot products
/// (`[block, n]` f32) stay near 16 MB.
fn exact_block(n: usize) -> usize {
    ((1 << 22) / n.max(1)).clamp(8, 256)
}

/// Exact `k` nearest training rows of each query (unit vectors), leaving out
/// training row `self_row[q]` for query q when given (the query itself).
/// One matrix multiply per block of queries, then one pass over each row of
/// dot products.
pub fn exact(train: &[f32], queries: &[f32], dim: usize, k: usize, self_row: &[Option<u32>]) -> Neighbors {
    let n = train.len() / dim;
    let nq = queries.len() / dim;
    let block = exact_block(n);
    let rows: Vec<Vec<(f32, u32)>> = (0..nq.div_ceil(block))
        .into_par_iter()
        .flat_map_iter(|b| {
            let q0 = b * block;
            let m = block.min(nq - q0);
            let dots = dots(&queries[q0 * dim..(q0 + m) * dim], train, dim);
            (0..m)
                .map(|i| {
                    let skip = self_row[q0 + i];
                    let mut top = TopK::new(k);
                    for (j, &d) in dots[i * n..(i + 1) * n].iter().enumerate() {
                        if Some(j as u32) != skip {
                            top.offer(d, j as u32);
                        }
                    }
                    top.items
                })
                .collect::<Vec<_>>()
        })
        .collect();
    collect(rows, k)
}

/// Neighbours from each query's top k, (distance, row) nearest first.
fn collect(rows: Vec<Vec<(f32, u32)>>, k: usize) -> Neighbors {
    let mut out =
        Neighbors { k, index: Vec::with_capacity(rows.len() * k), distance: Vec::with_capacity(rows.len() * k) };
    for r in rows {
        assert_eq!(r.len(), k, "fewer candidates than neighbours asked for");
        for (d, i) in r {
            out.index.push(i);
            out.distance.push(d);
        }
    }
    out
}

/// HNSW settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HnswConfig {
    /// Links per node (M).
    pub max_connections: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
    /// Candidate list size while searching (raised until recall reaches the target).
    pub ef_search: usize,
}

impl Default for HnswConfig {
    fn default() -> Self {
        HnswConfig { max_connections: 16, ef_construction: 200, ef_search: 64 }
    }
}

/// An HNSW index over unit training vectors. Points are inserted one by one
/// in row order, so the same embeddings always give the same graph.
pub struct Index<'a> {
    hnsw: Hnsw<'a, f32, DistL2>,
}

impl<'a> Index<'a> {
    /// Builds the index.
    pub fn build(train: &'a [f32], dim: usize, cfg: &HnswConfig) -> Self {
        let n = train.len() / dim;
        let layers = 16.min((n.max(2) as f64).ln().ceil() as usize).max(1);
        let mut hnsw = Hnsw::new(cfg.max_connections, n, layers, cfg.ef_construction, DistL2 {});
        for (i, row) in train.chunks_exact(dim).enumerate() {
            hnsw.insert_slice((row, i));
        }
        hnsw.set_searching_mode(true);
        Index { hnsw }
    }

    /// The `k` nearest training rows of each query, leaving out `self_row[q]`.
    pub fn search(&self, queries: &[f32], dim: usize, k: usize, ef: usize, self_row: &[Option<u32>]) -> Neighbors {
        let rows: Vec<Vec<(f32, u32)>> = queries
            .par_chunks_exact(dim)
            .enumerate()
            .map(|(q, v)| {
                let mut top = TopK::new(k);
                for n in self.hnsw.search(v, k + 1, ef.max(k + 1)) {
                    if Some(n.d_id as u32) != self_row[q] {
                        top.insert((n.distance, n.d_id as u32));
                    }
                }
                top.items
            })
            .collect();
        collect(rows, k)
    }
}

/// Mean share of the exact `k` neighbours that the approximate search found,
/// over the queries given by `rows` (indices into both neighbour sets).
pub fn recall(approx: &Neighbors, exact: &Neighbors, rows: &[usize]) -> f64 {
    let k = approx.k;
    let hits: usize = rows
        .iter()
        .enumerate()
        .map(|(e, &q)| {
            let truth = exact.of(e);
            approx.of(q).iter().filter(|i| truth.contains(i)).count()
        })
        .sum();
    hits as f64 / (rows.len() * k).max(1) as f64
}

/// A seeded sample of `m` query rows out of `n`, sorted.
pub fn sample_rows(n: usize, m: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = sample(&mut rng, n, m.min(n)).into_vec();
    rows.sort_unstable();
    rows
}

/// `out[m, n] = a[m, dim] * b[n, dim]^T` (dot products of rows).
pub(crate) fn dots(a: &[f32], b: &[f32], dim: usize) -> Vec<f32> {
    let (m, n) = (a.len() / dim, b.len() / dim);
    let mut out = vec![0f32; m * n];
    if m == 0 || n == 0 {
        return out;
    }
    // SAFETY: the strides address a[m, dim], b[n, dim] and out[m, n] in bounds.
    unsafe {
        gemm::gemm(
            m,
            n,
            dim,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            dim as isize,
            b.as_ptr(),
            dim as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        normalize(&(0..n * dim).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>(), dim)
    }

    #[test]
    fn normalize_neither_underflows_nor_overflows() {
        let base = [3.0f32, -4.0, 0.0, 1.0];
        let want = normalize(&base, 4);
        for scale in [1e-30f32, 1e-37, 1e-25, 1e25, 1e30, 3e38 / 4.0, 1.0] {
            let row: Vec<f32> = base.iter().map(|x| x * scale).collect();
            let got = normalize(&row, 4);
            let len = got.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((len - 1.0).abs() < 1e-6, "scale {scale}: {got:?}");
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-6, "scale {scale}: {got:?} vs {want:?}");
            }
        }
        // Zero rows stay zero; ordinary rows keep the plain formula's bits.
        assert_eq!(normalize(&[0.0; 3], 3), vec![0.0; 3]);
        assert_eq!(normalize(&[3.0, 4.0], 2), vec![3.0 / 5.0, 4.0 / 5.0]);
    }

    #[test]
    fn exact_search_finds_the_brute_force_neighbours_without_the_query_itself() {
        let dim = 8;
        let train = points(300, dim, 1);
        let self_rows: Vec<Option<u32>> = (0..300).map(|i| Some(i as u32)).collect();
        let nb = exact(&train, &train, dim, 5, &self_rows);
        for q in [0usize, 17, 299] {
            let mut all: Vec<(u32, f32)> = (0..300u32)
                .filter(|&j| j as usize != q)
                .map(|j| {
                    let d: f32 = (0..dim)
                        .map(|t| (train[q * dim + t] - train[j as usize * dim + t]).powi(2))
                        .sum::<f32>()
                        .sqrt();
                    (j, d)
                })
                .collect();
            all.sort_by(|a, b| a.1.total_cmp(&b.1));
            let want: Vec<u32> = all[..5].iter().map(|x| x.0).collect();
            assert_eq!(nb.of(q), want.as_slice(), "query {q}");
            assert!((nb.distances(q)[0] - all[0].1).abs() < 1e-4);
        }
    }

    #[test]
    fn hnsw_neighbours_agree_with_exact_search() {
        let dim = 16;
        let train = points(3000, dim, 2);
        let queries = points(200, dim, 3);
        let none = vec![None; 200];
        let idx = Index::build(&train, dim, &HnswConfig::default());
        let approx = idx.search(&queries, dim, 10, 64, &none);
        let truth = exact(&train, &queries, dim, 10, &none);
        let all: Vec<usize> = (0..200).collect();
        let r = recall(&approx, &truth, &all);
        assert!(r > 0.95, "recall@10 {r}");
        // Same inputs, same graph, same answers.
        let again = Index::build(&train, dim, &HnswConfig::default()).search(&queries, dim, 10, 64, &none);
        assert_eq!(approx, again);
    }
}

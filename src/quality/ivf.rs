//! An inverted-file index for large sets of unit vectors, where building an
//! HNSW graph one point at a time is too slow: spherical k-means splits the
//! training vectors into about 2 sqrt(n) lists; each query is compared with
//! every member of the `nprobe` lists nearest to it, list by list, as one
//! matrix multiply per list. Deterministic (seeded sample, fixed order).
//! Written here because the vector-search crates at hand offer graphs, not
//! this GEMM-shaped search.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::neighbors::{dots, Neighbors, TopK};

/// Nearest centroid of every row, computed in parallel blocks.
fn assign(rows: &[f32], centroids: &[f32], dim: usize) -> Vec<u32> {
    rows.par_chunks(1024 * dim)
        .flat_map_iter(|block| {
            let d = dots(block, centroids, dim);
            let c = centroids.len() / dim;
            d.chunks(c).map(|r| crate::stats::argmax(r) as u32).collect::<Vec<_>>()
        })
        .collect()
}

/// The index: centroids and the training rows of each list.
pub struct Ivf {
    dim: usize,
    centroids: Vec<f32>,
    lists: Vec<Vec<u32>>,
}

impl Ivf {
    /// Builds the index over unit training vectors.
    pub fn build(train: &[f32], dim: usize, seed: u64) -> Self {
        let n = train.len() / dim;
        let nlist = ((2.0 * (n as f64).sqrt()).round() as usize).clamp(1, n.max(1));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let sample: Vec<usize> = {
            let mut s = rand::seq::index::sample(&mut rng, n, (40 * nlist).min(n)).into_vec();
            s.sort_unstable();
            s
        };
        let sample_rows: Vec<f32> =
            sample.iter().flat_map(|&i| train[i * dim..(i + 1) * dim].iter().copied()).collect();
        let mut centroids: Vec<f32> = sample_rows[..nlist * dim].to_vec();
        for _ in 0..8 {
            let a = assign(&sample_rows, &centroids, dim);
            let mut sums = vec![0f64; nlist * dim];
            for (r, &c) in a.iter().enumerate() {
                for d in 0..dim {
                    sums[c as usize * dim + d] += sample_rows[r * dim + d] as f64;
                }
            }
            for c in 0..nlist {
                let s = &sums[c * dim..(c + 1) * dim];
                let norm = s.iter().map(|v| v * v).sum::<f64>().sqrt();
                if norm > 0.0 {
                    for d in 0..dim {
                        centroids[c * dim + d] = (s[d] / norm) as f32;
                    }
                }
            }
        }
        let mut lists = vec![Vec::new(); nlist];
        for (i, c) in assign(train, &centroids, dim).into_iter().enumerate() {
            lists[c as usize].push(i as u32);
        }
        Ivf { dim, centroids, lists }
    }

    /// Number of lists.
    pub fn lists(&self) -> usize {
        self.lists.len()
    }

    /// The `nprobe` lists whose centroids are nearest to each query, nearest
    /// first, `[queries, nprobe]`.
    fn probes(&self, queries: &[f32], nprobe: usize) -> Vec<u32> {
        let (dim, nlist) = (self.dim, self.lists.len());
        queries
            .par_chunks(1024 * dim)
            .flat_map_iter(|block| {
                let d = dots(block, &self.centroids, dim);
                d.chunks(nlist)
                    .flat_map(|row| {
                        let mut order: Vec<u32> = (0..nlist as u32).collect();
                        let cmp = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
                        if nprobe < nlist {
                            order.select_nth_unstable_by(nprobe - 1, cmp);
                        }
                        order.truncate(nprobe);
                        order.sort_unstable_by(cmp);
                        order
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Training rows compared per query on average when `queries` probe
    /// `nprobe` lists (the members of their lists, plus every centroid).
    pub fn rows_per_query(&self, queries: &[f32], nprobe: usize) -> f64 {
        let nprobe = nprobe.clamp(1, self.lists.len());
        let nq = queries.len() / self.dim;
        let members: usize = self.probes(queries, nprobe).iter().map(|&l| self.lists[l as usize].len()).sum();
        self.lists.len() as f64 + members as f64 / nq.max(1) as f64
    }

    /// The work of building the index, in row comparisons: eight k-means
    /// rounds over the sample, then every training row against every centroid.
    pub fn build_rows(&self, n_train: usize) -> f64 {
        let nlist = self.lists.len() as f64;
        8.0 * (40.0 * nlist).min(n_train as f64) * nlist + n_train as f64 * nlist
    }

    /// The `k` nearest training rows of each query among the members of the
    /// `nprobe` lists whose centroids are nearest to the query, leaving out
    /// `self_row[q]`. Two passes: every query's nearest list first, then all
    /// its other lists with the distance to beat that the first pass set, so
    /// that most rows fail one comparison. Each pass scans list by list
    /// (every query that probes a list is compared with its members in one
    /// matrix multiply). The result is the exact top k of the probed lists,
    /// whatever the order they are scanned in.
    pub fn search(
        &self,
        train: &[f32],
        queries: &[f32],
        k: usize,
        nprobe: usize,
        self_row: &[Option<u32>],
    ) -> Neighbors {
        let dim = self.dim;
        let nlist = self.lists.len();
        let nq = queries.len() / dim;
        let nprobe = nprobe.clamp(1, nlist);
        let probes = self.probes(queries, nprobe);
        let mut best: Vec<TopK> = (0..nq).map(|_| TopK::new(k)).collect();
        for pass in [0..1, 1..nprobe] {
            let mut by_list: Vec<Vec<u32>> = vec![Vec::new(); nlist];
            for (q, p) in probes.chunks(nprobe).enumerate() {
                for &l in &p[pass.clone()] {
                    by_list[l as usize].push(q as u32);
                }
            }
            let bounds: Vec<f32> = best.iter().map(TopK::bound).collect();
            let found: Vec<Vec<(u32, f32, u32)>> = (0..nlist)
                .into_par_iter()
                .filter(|&l| !by_list[l].is_empty() && !self.lists[l].is_empty())
                .map(|l| self.scan(train, queries, l, &by_list[l], &bounds, k, self_row))
                .collect();
            for (q, d, row) in found.into_iter().flatten() {
                best[q as usize].insert((d, row));
            }
        }
        let mut out = Neighbors { k, index: Vec::with_capacity(nq * k), distance: Vec::with_capacity(nq * k) };
        for top in &best {
            // A query whose probed lists hold fewer than k rows repeats its
            // last neighbour (the recall check sees it).
            let last = top.items.last().copied().unwrap_or((2.0, 0));
            for j in 0..k {
                let (d, i) = top.items.get(j).copied().unwrap_or(last);
                out.index.push(i);
                out.distance.push(d);
            }
        }
        out
    }

    /// The members of list `l` that may enter the top k of each query `qs`
    /// (those within its bound): (query, distance, row).
    #[allow(clippy::too_many_arguments)]
    fn scan(
        &self,
        train: &[f32],
        queries: &[f32],
        l: usize,
        qs: &[u32],
        bounds: &[f32],
        k: usize,
        self_row: &[Option<u32>],
    ) -> Vec<(u32, f32, u32)> {
        let dim = self.dim;
        let members = &self.lists[l];
        let rows: Vec<f32> =
            members.iter().flat_map(|&i| train[i as usize * dim..(i as usize + 1) * dim].iter().copied()).collect();
        let mut out = Vec::new();
        for chunk in qs.chunks(2048) {
            let q_rows: Vec<f32> =
                chunk.iter().flat_map(|&q| queries[q as usize * dim..(q as usize + 1) * dim].iter().copied()).collect();
            let d = dots(&q_rows, &rows, dim);
            let nm = members.len();
            for (j, &q) in chunk.iter().enumerate() {
                let mut top = TopK::within(k, bounds[q as usize]);
                for (t, &dot) in d[j * nm..(j + 1) * nm].iter().enumerate() {
                    if Some(members[t]) != self_row[q as usize] {
                        top.offer(dot, members[t]);
                    }
                }
                out.extend(top.items.into_iter().map(|(dist, row)| (q, dist, row)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ivf_neighbours_agree_with_exact_search_and_are_deterministic() {
        use rand::Rng;
        let dim = 16;
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        // Clustered data, as embeddings of a classifier are.
        let centres: Vec<f32> = (0..10 * dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let raw: Vec<f32> = (0..5000)
            .flat_map(|i| {
                (0..dim).map(|d| centres[(i % 10) * dim + d] + 0.3 * rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>()
            })
            .collect();
        let train = super::super::neighbors::normalize(&raw, dim);
        let selves: Vec<Option<u32>> = (0..5000).map(|i| Some(i as u32)).collect();
        let ivf = Ivf::build(&train, dim, 0);
        let got = ivf.search(&train, &train, 10, 8, &selves);
        let truth = super::super::neighbors::exact(&train, &train, dim, 10, &selves);
        let rows: Vec<usize> = (0..5000).step_by(7).collect();
        let sub = Neighbors {
            k: 10,
            index: rows.iter().flat_map(|&q| truth.of(q).to_vec()).collect(),
            distance: rows.iter().flat_map(|&q| truth.distances(q).to_vec()).collect(),
        };
        let r = super::super::neighbors::recall(&got, &sub, &rows);
        assert!(r > 0.9, "recall@10 {r}");
        assert_eq!(got, Ivf::build(&train, dim, 0).search(&train, &train, 10, 8, &selves));
        // Probing every list is exact search: the same k distances per query
        // (the dot products of other matrix shapes may differ in the last bits).
        let all = ivf.search(&train, &train, 10, ivf.lists(), &selves);
        for (x, y) in all.distance.iter().zip(&truth.distance) {
            assert!((x - y).abs() < 1e-5, "{x} against exact {y}");
        }
    }
}

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

use super::neighbors::{dots, Neighbors};

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

    /// The `k` nearest training rows of each query among the members of the
    /// `nprobe` lists whose centroids are nearest to the query, leaving out
    /// `self_row[q]`. Scanned list by list (every query that probes a list is
    /// compared with its members in one matrix multiply), a batch of lists at a
    /// time, each batch's candidates merged into every query's running top k.
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
        // The nprobe nearest centroids of every query.
        let probes: Vec<u32> = queries
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
                        order
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut by_list: Vec<Vec<u32>> = vec![Vec::new(); nlist];
        for (q, p) in probes.chunks(nprobe).enumerate() {
            for &l in p {
                by_list[l as usize].push(q as u32);
            }
        }
        // Running top k of every query: (distance, row), best first.
        let mut best: Vec<(f32, u32)> = vec![(f32::INFINITY, u32::MAX); nq * k];
        let less = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).is_lt();
        let lists: Vec<usize> = (0..nlist).filter(|&l| !by_list[l].is_empty() && !self.lists[l].is_empty()).collect();
        for batch in lists.chunks(rayon::current_num_threads() * 4) {
            let found: Vec<(u32, Vec<(f32, u32)>)> = batch
                .par_iter()
                .flat_map_iter(|&l| {
                    let members = &self.lists[l];
                    let rows: Vec<f32> = members
                        .iter()
                        .flat_map(|&i| train[i as usize * dim..(i as usize + 1) * dim].iter().copied())
                        .collect();
                    by_list[l].chunks(2048).flat_map(move |qs| {
                        let q_rows: Vec<f32> = qs
                            .iter()
                            .flat_map(|&q| queries[q as usize * dim..(q as usize + 1) * dim].iter().copied())
                            .collect();
                        let d = dots(&q_rows, &rows, dim);
                        let nm = members.len();
                        qs.iter()
                            .enumerate()
                            .map(|(j, &q)| {
                                // Top k by insertion: most members fail the first comparison.
                                let mut c: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
                                let row = &d[j * nm..(j + 1) * nm];
                                for (t, &dot) in row.iter().enumerate() {
                                    if Some(members[t]) == self_row[q as usize] {
                                        continue;
                                    }
                                    let cand = ((2.0 - 2.0 * dot).max(0.0).sqrt(), members[t]);
                                    if c.len() == k && !less(&cand, &c[k - 1]) {
                                        continue;
                                    }
                                    let at = c.partition_point(|x| less(x, &cand));
                                    c.insert(at, cand);
                                    c.truncate(k);
                                }
                                (q, c)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for (q, c) in found {
                let top = &mut best[q as usize * k..(q as usize + 1) * k];
                let mut merged: Vec<(f32, u32)> = top.iter().chain(&c).copied().collect();
                merged.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                top.copy_from_slice(&merged[..k]);
            }
        }
        let mut out = Neighbors { k, index: Vec::with_capacity(nq * k), distance: Vec::with_capacity(nq * k) };
        for top in best.chunks(k) {
            // A query whose probed lists hold fewer than k rows repeats its
            // last neighbour (the recall check sees it).
            let last = top.iter().rev().find(|c| c.1 != u32::MAX).copied().unwrap_or((2.0, 0));
            for &c in top {
                let (d, i) = if c.1 == u32::MAX { last } else { c };
                out.index.push(i);
                out.distance.push(d);
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
    }
}

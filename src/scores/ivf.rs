//! An inverted-file index for large sets of unit vectors, where building an
//! HNSW graph one point at a time is too slow: spherical k-means splits the
//! training vectors into about sqrt(n) lists; the queries of each list are
//! compared with every member of the `nprobe` lists nearest to it, as one
//! matrix multiply per list. Deterministic (seeded sample, fixed order).
//! Written here because the vector-search crates at hand offer graphs, not
//! this GEMM-shaped search.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::neighbors::Neighbors;

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

/// Nearest centroid of every row, computed in parallel blocks.
fn assign(rows: &[f32], centroids: &[f32], dim: usize) -> Vec<u32> {
    rows.par_chunks(1024 * dim)
        .flat_map_iter(|block| {
            let d = dots(block, centroids, dim);
            let c = centroids.len() / dim;
            d.chunks(c).map(|r| super::count::argmax(r) as u32).collect::<Vec<_>>()
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
        let nlist = ((n as f64).sqrt().round() as usize).clamp(1, n.max(1));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let sample: Vec<usize> = {
            let mut s = rand::seq::index::sample(&mut rng, n, (64 * nlist).min(n)).into_vec();
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
    /// `nprobe` lists nearest to the query's own list, leaving out `self_row[q]`.
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
        let home = assign(queries, &self.centroids, dim);
        let mut by_list = vec![Vec::new(); nlist];
        for (q, &c) in home.iter().enumerate() {
            by_list[c as usize].push(q);
        }
        let cc = dots(&self.centroids, &self.centroids, dim);
        let nprobe = nprobe.clamp(1, nlist);
        let results: Vec<(usize, Vec<(u32, f32)>)> = (0..nlist)
            .into_par_iter()
            .filter(|&l| !by_list[l].is_empty())
            .flat_map_iter(|l| {
                let row = &cc[l * nlist..(l + 1) * nlist];
                let mut order: Vec<usize> = (0..nlist).collect();
                order.select_nth_unstable_by(nprobe - 1, |&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                let mut cand: Vec<u32> = order[..nprobe].iter().flat_map(|&p| self.lists[p].iter().copied()).collect();
                cand.sort_unstable();
                let cand_rows: Vec<f32> = cand
                    .iter()
                    .flat_map(|&i| train[i as usize * dim..(i as usize + 1) * dim].iter().copied())
                    .collect();
                let q_rows: Vec<f32> =
                    by_list[l].iter().flat_map(|&q| queries[q * dim..(q + 1) * dim].iter().copied()).collect();
                let d = dots(&q_rows, &cand_rows, dim);
                let nc = cand.len();
                by_list[l]
                    .iter()
                    .enumerate()
                    .map(|(j, &q)| {
                        let mut c: Vec<(u32, f32)> = (0..nc)
                            .filter(|&t| Some(cand[t]) != self_row[q])
                            .map(|t| (cand[t], (2.0 - 2.0 * d[j * nc + t]).max(0.0).sqrt()))
                            .collect();
                        let cmp = |a: &(u32, f32), b: &(u32, f32)| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0));
                        if c.len() > k {
                            c.select_nth_unstable_by(k, cmp);
                            // A fresh vector: truncating would keep the candidates' allocation.
                            c = c[..k].to_vec();
                        }
                        c.sort_by(cmp);
                        (q, c)
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut rows = vec![Vec::new(); nq];
        for (q, c) in results {
            rows[q] = c;
        }
        let mut out = Neighbors { k, index: Vec::with_capacity(nq * k), distance: Vec::with_capacity(nq * k) };
        for r in rows {
            // Pad a short candidate list with its last neighbour (only when a
            // probe holds fewer than k points; the recall check sees it).
            for t in 0..k {
                let (i, d) = r.get(t).or(r.last()).copied().unwrap_or((0, 2.0));
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

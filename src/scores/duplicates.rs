//! Duplicates: pairs of images close in embedding space (neighbour pairs
//! under a distance threshold), confirmed in pixel space: `exact` when the
//! pixels are identical, `near` when their mean absolute difference is small.

use serde::{Deserialize, Serialize};

/// How pairs are judged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DuplicateConfig {
    /// Largest embedding distance (unit vectors, 0 to 2) of a candidate pair.
    pub max_embedding_distance: f32,
    /// Largest mean absolute pixel difference (grey levels of 255) of a near duplicate.
    pub max_pixel_distance: f32,
}

impl Default for DuplicateConfig {
    fn default() -> Self {
        DuplicateConfig { max_embedding_distance: 0.25, max_pixel_distance: 6.0 }
    }
}

/// One duplicate pair. `a` is always a training row; `b` is a training row
/// (`b_test` false) or a test row.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub a: usize,
    pub b: usize,
    pub b_test: bool,
    pub embedding_distance: f32,
    /// Mean absolute pixel difference, grey levels.
    pub pixel_distance: f32,
    pub exact: bool,
}

impl Pair {
    /// The split of image `b` (image `a` is a training image).
    pub fn b_split(&self) -> crate::data::Split {
        if self.b_test {
            crate::data::Split::Test
        } else {
            crate::data::Split::Train
        }
    }
}

/// Mean absolute difference of two equal-length pixel buffers.
pub fn pixel_distance(a: &[u8], b: &[u8]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as u64).sum::<u64>() as f32 / a.len().max(1) as f32
}

/// Finds duplicate pairs among neighbour pairs: for each query (train rows
/// first, then test rows) and each of its training neighbours.
pub fn find(
    train_px: &[u8],
    test_px: &[u8],
    image_len: usize,
    train_nb: &super::neighbors::Neighbors,
    test_nb: &super::neighbors::Neighbors,
    cfg: &DuplicateConfig,
) -> Vec<Pair> {
    let mut pairs = Vec::new();
    fn px(rows: &[u8], i: usize, len: usize) -> &[u8] {
        &rows[i * len..(i + 1) * len]
    }
    let n_train = train_nb.index.len() / train_nb.k.max(1);
    for q in 0..n_train {
        for (&j, &d) in train_nb.of(q).iter().zip(train_nb.distances(q)) {
            let j = j as usize;
            // Each train-train pair once, from its lower row.
            if j <= q && train_nb.of(j).contains(&(q as u32)) {
                continue;
            }
            if d <= cfg.max_embedding_distance {
                let p = pixel_distance(px(train_px, q, image_len), px(train_px, j, image_len));
                if p <= cfg.max_pixel_distance {
                    pairs.push(Pair {
                        a: q.min(j),
                        b: q.max(j),
                        b_test: false,
                        embedding_distance: d,
                        pixel_distance: p,
                        exact: p == 0.0,
                    });
                }
            }
        }
    }
    let n_test = test_nb.index.len() / test_nb.k.max(1);
    for q in 0..n_test {
        for (&j, &d) in test_nb.of(q).iter().zip(test_nb.distances(q)) {
            if d <= cfg.max_embedding_distance {
                let p = pixel_distance(px(train_px, j as usize, image_len), px(test_px, q, image_len));
                if p <= cfg.max_pixel_distance {
                    pairs.push(Pair {
                        a: j as usize,
                        b: q,
                        b_test: true,
                        embedding_distance: d,
                        pixel_distance: p,
                        exact: p == 0.0,
                    });
                }
            }
        }
    }
    pairs.sort_by(|x, y| (x.b_test, x.a, x.b).cmp(&(y.b_test, y.a, y.b)));
    pairs.dedup_by(|x, y| (x.b_test, x.a, x.b) == (y.b_test, y.a, y.b));
    pairs
}

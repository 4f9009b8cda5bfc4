//! Numbers of one relevance map: where it lies (the image's outer ring
//! against its centre), how concentrated it is, whether removing or adding
//! pixels in its order changes the model's mind (deletion and insertion
//! curves), and how alike two maps are (Spearman, SSIM).
//!
//! The ring: every pixel within `max(1, round(side / 8))` pixels of the
//! image's border, where side is the shorter side (4 pixels of a 32x32
//! image, 2 of a 16x16 one: 43.75% of the area); the centre is the rest.
//! A CIFAR object usually fills the centre; the ring is mostly background.

use candle_core::Tensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::model::ResNet;

/// Width in pixels of the outer ring of an `h x w` image.
pub fn ring_width(h: usize, w: usize) -> usize {
    ((h.min(w) as f32 / 8.0).round() as usize).max(1)
}

/// `[h, w]`: whether each pixel is in the outer ring.
pub fn ring_mask(h: usize, w: usize) -> Vec<bool> {
    let r = ring_width(h, w);
    (0..h * w)
        .map(|p| {
            let (y, x) = (p / w, p % w);
            y < r || x < r || y + r >= h || x + r >= w
        })
        .collect()
}

/// Where a map's relevance lies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placement {
    /// Share of the map's total in the ring (None: an all-zero map).
    pub ring_share: Option<f64>,
    /// Mean relevance per ring pixel over mean per centre pixel (1: no
    /// preference; above 1: the background draws more than the object).
    pub ring_ratio: Option<f64>,
    /// Share of the total in the 10% most relevant pixels (0.1: uniform).
    pub concentration: Option<f64>,
}

/// The placement of `map` (`[h, w]`, non-negative) given the ring `mask`.
pub fn placement(map: &[f32], mask: &[bool]) -> Placement {
    let total: f64 = map.iter().map(|&v| v as f64).sum();
    if total <= 0.0 || !total.is_finite() {
        return Placement { ring_share: None, ring_ratio: None, concentration: None };
    }
    let ring: f64 = map.iter().zip(mask).filter(|(_, &m)| m).map(|(&v, _)| v as f64).sum();
    let n_ring = mask.iter().filter(|&&m| m).count();
    let n_centre = mask.len() - n_ring;
    let centre = total - ring;
    let ring_ratio =
        (n_ring > 0 && n_centre > 0 && centre > 0.0).then(|| (ring / n_ring as f64) / (centre / n_centre as f64));
    let mut sorted: Vec<f32> = map.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let top = ((map.len() as f64 * 0.1).ceil() as usize).max(1);
    let concentration = sorted[..top].iter().map(|&v| v as f64).sum::<f64>() / total;
    Placement { ring_share: Some(ring / total), ring_ratio, concentration: Some(concentration) }
}

/// Mean colour of the ring of `[h, w, 3]` u8 pixels, in [0, 1] RGB.
pub fn ring_colour(pixels: &[u8], mask: &[bool]) -> [f32; 3] {
    let mut sum = [0f64; 3];
    let mut n = 0usize;
    for (px, _) in pixels.chunks_exact(3).zip(mask).filter(|(_, &m)| m) {
        for c in 0..3 {
            sum[c] += px[c] as f64;
        }
        n += 1;
    }
    sum.map(|s| (s / (n.max(1) as f64 * 255.0)) as f32)
}

/// Bilinear upsampling of a `[hi, wi]` map to `[ho, wo]`, as PyTorch's
/// `interpolate(mode="bilinear", align_corners=False)`: output pixel
/// centres mapped onto the input grid, clamped at the edges. Written here
/// because Grad-CAM's map is a small float array, not an image, and its
/// edges must match the published implementation's.
pub fn upsample_bilinear(map: &[f32], hi: usize, wi: usize, ho: usize, wo: usize) -> Vec<f32> {
    let src = |o: usize, n_in: usize, n_out: usize| -> (usize, usize, f32) {
        let s = ((o as f32 + 0.5) * n_in as f32 / n_out as f32 - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        (i0, i1, s - i0 as f32)
    };
    let mut out = Vec::with_capacity(ho * wo);
    for y in 0..ho {
        let (y0, y1, fy) = src(y, hi, ho);
        for x in 0..wo {
            let (x0, x1, fx) = src(x, wi, wo);
            let top = map[y0 * wi + x0] * (1.0 - fx) + map[y0 * wi + x1] * fx;
            let bottom = map[y1 * wi + x0] * (1.0 - fx) + map[y1 * wi + x1] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// What removed pixels are replaced by (and inserted pixels start from).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fill {
    /// The image blurred (Gaussian, sigma = side / 8 pixels), as Petsiuk et
    /// al. 2018 start insertion from.
    Blur,
    /// The image's mean colour.
    Mean,
}

/// The fill of `[h, w, 3]` u8 pixels as `[3, h, w]` in [0, 1].
pub fn fill(pixels: &[u8], h: usize, w: usize, how: Fill) -> Vec<f32> {
    let hwc: Vec<u8> = match how {
        Fill::Blur => {
            let img = image::RgbImage::from_raw(w as u32, h as u32, pixels.to_vec()).expect("whole image");
            image::imageops::blur(&img, h.min(w) as f32 / 8.0).into_raw()
        }
        Fill::Mean => mean_colour(pixels).iter().copied().cycle().take(h * w * 3).collect(),
    };
    crate::model::images_to_chw(&hwc, 1, h, w)
}

/// The mean colour of `[h, w, 3]` u8 pixels, rounded.
pub fn mean_colour(pixels: &[u8]) -> [u8; 3] {
    let mut sum = [0u64; 3];
    for px in pixels.chunks_exact(3) {
        for c in 0..3 {
            sum[c] += px[c] as u64;
        }
    }
    let n = (pixels.len() / 3).max(1) as f64;
    sum.map(|s| (s as f64 / n).round() as u8)
}

/// Points of a deletion or insertion curve (fractions 0, 1/S, ..., 1 of the pixels).
pub const CURVE_STEPS: usize = 16;

/// One image's deletion and insertion curves for one pixel order.
#[derive(Clone, Debug, PartialEq)]
pub struct Curves {
    /// Area under the target's probability as the most relevant pixels are
    /// replaced by the fill (lower is better: the map found what mattered).
    pub deletion_auc: f64,
    /// Area under it as they are put back into the fill (higher is better).
    pub insertion_auc: f64,
    /// The target's probability on the clean image (the deletion curve's first point).
    pub clean_prob: f64,
}

/// The pixel order of a map: most relevant first (ties by position).
pub fn order_of(map: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..map.len()).collect();
    order.sort_by(|&a, &b| map[b].total_cmp(&map[a]).then(a.cmp(&b)));
    order
}

/// A seeded random pixel order of `n` pixels (the curves' reference).
pub fn random_order(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order
}

/// One deletion-and-insertion job: an image (`[3, h, w]` in [0, 1]), its
/// fill, a pixel order and the target class.
pub struct CurveJob<'a> {
    pub x: &'a [f32],
    pub fill: &'a [f32],
    pub order: &'a [usize],
    pub target: u32,
}

/// The curves of every job, `batch` images per forward pass (eval mode, no gradient).
pub fn curves(model: &ResNet, jobs: &[CurveJob], h: usize, w: usize, batch: usize) -> candle_core::Result<Vec<Curves>> {
    let (plane, points) = (h * w, CURVE_STEPS + 1);
    // Every job's images: deletion points then insertion points.
    let per_job = 2 * points;
    let mut probs: Vec<f32> = Vec::with_capacity(jobs.len() * per_job);
    let jobs_per_pass = (batch.max(1) / per_job).max(1);
    let model = model.frozen();
    for chunk in jobs.chunks(jobs_per_pass) {
        let mut x = Vec::with_capacity(chunk.len() * per_job * 3 * plane);
        for job in chunk {
            for insert in [false, true] {
                for t in 0..points {
                    let k = (t * plane + CURVE_STEPS / 2) / CURVE_STEPS;
                    let (base, top) = if insert { (job.fill, job.x) } else { (job.x, job.fill) };
                    let mut img = base.to_vec();
                    for &p in &job.order[..k] {
                        for c in 0..3 {
                            img[c * plane + p] = top[c * plane + p];
                        }
                    }
                    x.extend(img);
                }
            }
        }
        let m = chunk.len() * per_job;
        let logits = model.forward(&Tensor::from_vec(x, (m, 3, h, w), model.device())?, false)?.logits;
        let p = candle_nn::ops::softmax_last_dim(&logits)?.to_vec2::<f32>()?;
        for (j, job) in chunk.iter().enumerate() {
            probs.extend((0..per_job).map(|r| p[j * per_job + r][job.target as usize]));
        }
    }
    let auc = |v: &[f32]| -> f64 {
        // Trapezoids over [0, 1] in equal steps.
        let s: f64 = v.windows(2).map(|w| (w[0] as f64 + w[1] as f64) / 2.0).sum();
        s / (v.len() - 1) as f64
    };
    Ok(probs
        .chunks_exact(per_job)
        .map(|c| Curves { deletion_auc: auc(&c[..points]), insertion_auc: auc(&c[points..]), clean_prob: c[0] as f64 })
        .collect())
}

/// Spearman's rank correlation of two maps. A constant map ranks nothing:
/// 1 against an identical map, 0 against any other.
pub fn rank_correlation(a: &[f32], b: &[f32]) -> f64 {
    let (x, y): (Vec<f64>, Vec<f64>) = a.iter().zip(b).map(|(&u, &v)| (u as f64, v as f64)).unzip();
    crate::stats::spearman(&x, &y).unwrap_or(if a == b { 1.0 } else { 0.0 })
}

/// Structural similarity of two `[h, w]` maps, each scaled to [0, 1] by its
/// maximum: the mean SSIM over every 7x7 window (scikit-image's defaults:
/// uniform window, K1 = 0.01, K2 = 0.03, data range 1, sample covariance).
/// Written here because the SSIM crates compare 8-bit images, and these
/// are float maps.
pub fn ssim(a: &[f32], b: &[f32], h: usize, w: usize) -> f64 {
    let scale = |m: &[f32]| -> Vec<f64> {
        let max = m.iter().copied().fold(0f32, f32::max);
        m.iter().map(|&v| if max > 0.0 { (v / max) as f64 } else { 0.0 }).collect()
    };
    let (a, b) = (scale(a), scale(b));
    let win = 7.min(h).min(w);
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let np = (win * win) as f64;
    let cov_norm = np / (np - 1.0).max(1.0);
    let mut total = 0.0;
    let mut count = 0usize;
    for y in 0..=h - win {
        for x in 0..=w - win {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for dy in 0..win {
                for dx in 0..win {
                    let p = (y + dy) * w + x + dx;
                    sa += a[p];
                    sb += b[p];
                    saa += a[p] * a[p];
                    sbb += b[p] * b[p];
                    sab += a[p] * b[p];
                }
            }
            let (ma, mb) = (sa / np, sb / np);
            let va = cov_norm * (saa / np - ma * ma);
            let vb = cov_norm * (sbb / np - mb * mb);
            let cab = cov_norm * (sab / np - ma * mb);
            total += ((2.0 * ma * mb + c1) * (2.0 * cab + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            count += 1;
        }
    }
    total / count.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_is_the_border_band_and_placement_adds_up() {
        let mask = ring_mask(16, 16);
        assert_eq!(ring_width(16, 16), 2);
        assert_eq!(mask.iter().filter(|&&m| m).count(), 256 - 144);
        assert!(mask[0] && mask[17] && !mask[2 * 16 + 2]);
        // All relevance in the centre: no ring share, ratio 0.
        let map: Vec<f32> = mask.iter().map(|&m| if m { 0.0 } else { 1.0 }).collect();
        let p = placement(&map, &mask);
        assert_eq!(p.ring_share, Some(0.0));
        assert_eq!(p.ring_ratio, Some(0.0));
        // A uniform map: the ring's area share, ratio 1, concentration 0.1 or just above.
        let p = placement(&[1.0; 256], &mask);
        assert!((p.ring_share.unwrap() - 112.0 / 256.0).abs() < 1e-12);
        assert!((p.ring_ratio.unwrap() - 1.0).abs() < 1e-12);
        assert!((p.concentration.unwrap() - 26.0 / 256.0).abs() < 1e-12);
        assert_eq!(placement(&[0.0; 256], &mask).ring_share, None);
    }

    #[test]
    fn bilinear_upsampling_matches_pytorch_on_a_2x2_map() {
        // torch.nn.functional.interpolate(torch.tensor([[[[0., 1.], [2., 3.]]]]),
        // size=(4, 4), mode="bilinear", align_corners=False)
        let up = upsample_bilinear(&[0.0, 1.0, 2.0, 3.0], 2, 2, 4, 4);
        let want = [0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0];
        for (u, w) in up.iter().zip(want) {
            assert!((u - w).abs() < 1e-6, "{up:?}");
        }
    }

    #[test]
    fn ssim_is_one_for_equal_maps_and_low_for_unrelated_ones() {
        let a: Vec<f32> = (0..256).map(|i| ((i * 37) % 101) as f32).collect();
        assert!((ssim(&a, &a, 16, 16) - 1.0).abs() < 1e-9);
        let b: Vec<f32> = (0..256).map(|i| ((i * 53 + 7) % 89) as f32).collect();
        assert!(ssim(&a, &b, 16, 16) < 0.3);
        assert!((rank_correlation(&a, &a) - 1.0).abs() < 1e-12);
        assert_eq!(rank_correlation(&a, &[1.0; 256]), 0.0);
    }
}

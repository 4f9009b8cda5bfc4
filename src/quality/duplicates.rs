//! Duplicates: pairs of images that show the same picture, also when one is a
//! re-crop, a shift of a few pixels, a mirror image, a re-encoding or a
//! colour change of the other (what real datasets hold: published audits of
//! CIFAR-10 found about 3% of its test images to be such copies of training
//! images, 8 to 63 grey levels apart).
//!
//! Every image is first brought to a canonical grey 32x32 (luma, resized
//! with a triangle filter). Candidates for each image among the training
//! images come from two indexes: its embedding neighbours (when there are
//! embeddings) and a pixel index, the nearest images by a Fourier
//! descriptor (log magnitudes of the 17x9 lowest frequencies of the
//! canonical image: unchanged by shifts, and by mirroring after reversing
//! one axis; centre crops of every training image at zoom 1.15 and 1.3 are
//! indexed too, for re-crops). Each candidate pair is then aligned: the
//! centre of one image is slid over the other, mirrored or not, zoomed by
//! 1 to 1.33, and the best normalised cross-correlation (NCC, -1 to 1) is the
//! pair's `similarity`, first on 16x16 images (a cheap gate), then on the
//! 32x32 ones. A pair is a duplicate when its similarity reaches
//! [`DuplicateConfig::min_similarity`]; its `kind` says how the copy differs
//! (exact, flipped, cropped, shifted, or near: same geometry, other pixel
//! values). Its fine detail must agree too: the detail cut is raised to what
//! the candidate pairs with different labels reach ([`detail_cut`]), the
//! look-alikes the detector actually judges. Measured with `misfit bench
//! duplicates` on transformed copies of CIFAR-10 test images and on pairs
//! looked at by eye (docs/evaluation.md, "Duplicates a person can act on"). The two small DFTs, the alignment
//! search and the NCC are written here: no crate does alignment-tolerant
//! image matching.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::neighbors::{dots, Neighbors};

/// How pairs are found and judged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DuplicateConfig {
    /// Nearest training images per image and per pixel-index variant (plain,
    /// mirrored, re-cropped) taken as candidates.
    pub candidates: usize,
    /// The nearest `candidates` embedding neighbours within this distance
    /// (unit vectors, 0 to 2) are candidates too.
    pub max_embedding_distance: f32,
    /// Smallest 16x16 similarity for a pair to be aligned at 32x32.
    pub coarse_gate: f32,
    /// Smallest 32x32 similarity (grey and colour) of a duplicate pair.
    pub min_similarity: f32,
    /// Smallest similarity of the fine detail of a duplicate pair (the
    /// floor of the calibrated cut, [`detail_cut`]).
    pub min_detail: f32,
    /// Quantile of the detail similarity of candidate pairs with different
    /// labels (look-alikes, nearly all different photographs) a duplicate
    /// must reach.
    pub cross_quantile: f64,
    /// Fewest such pairs for that quantile to count (else `min_detail` alone).
    pub min_cross_pairs: usize,
    /// Largest mean absolute pixel difference (grey levels of 255, no
    /// alignment) of a pixel-near copy, a duplicate whatever the similarity.
    pub max_pixel_distance: f32,
    /// Where the null sample's similarity quantile reaches this, images of a
    /// class look alike: only pixel-near copies are reported.
    pub max_null_similarity: f32,
    /// Random same-class training pairs whose similarities raise the cuts ([`null_cuts`]).
    pub null_pairs: usize,
    /// Quantile of those pairs' similarities a duplicate must exceed.
    pub null_quantile: f64,
    /// Seed of the null sample.
    pub seed: u64,
}

impl Default for DuplicateConfig {
    fn default() -> Self {
        DuplicateConfig {
            candidates: 4,
            max_embedding_distance: 0.5,
            coarse_gate: 0.8,
            min_similarity: 0.9,
            min_detail: 0.3,
            cross_quantile: 0.995,
            min_cross_pairs: 200,
            max_pixel_distance: 6.0,
            max_null_similarity: 0.95,
            null_pairs: 2000,
            null_quantile: 0.995,
            seed: 0,
        }
    }
}

/// How a copy differs from its original, from the best alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The same pixels.
    Exact,
    /// Mirrored left to right.
    Flipped,
    /// One is a zoomed-in crop of the other.
    Cropped,
    /// Shifted by a pixel or more.
    Shifted,
    /// Same geometry, other pixel values (re-encoding, colour, noise).
    Near,
}

impl Kind {
    /// The kind of a pair: exact when the pixels are identical, near when
    /// only pixel-near (not `aligned`), else what the alignment undid.
    fn of(exact: bool, aligned: bool, at: &Alignment) -> Kind {
        match () {
            _ if exact => Kind::Exact,
            _ if !aligned => Kind::Near,
            _ if at.flipped => Kind::Flipped,
            _ if at.zoom > 0 => Kind::Cropped,
            _ if at.shift != (0, 0) => Kind::Shifted,
            _ => Kind::Near,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Exact => "exact",
            Kind::Flipped => "flipped",
            Kind::Cropped => "cropped",
            Kind::Shifted => "shifted",
            Kind::Near => "near",
        }
    }
}

/// One duplicate pair. `a` is always a training row; `b` is a training row
/// (`b_test` false) or a test row.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub a: usize,
    pub b: usize,
    pub b_test: bool,
    /// Distance between the unit embeddings, when there are embeddings.
    pub embedding_distance: Option<f32>,
    /// Mean absolute pixel difference as stored (no alignment), grey levels.
    pub pixel_distance: f32,
    /// Best grey NCC over the alignments tried at 32x32, or the colour NCC
    /// there when lower (-1 to 1).
    pub similarity: f32,
    /// NCC of the fine detail (image less its blur) at that alignment.
    pub detail: f32,
    pub kind: Kind,
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

/// Side of the canonical images.
pub const SIDE: usize = 32;
/// Zooms tried when aligning (the container image enlarged by each).
const ZOOMS: [f32; 4] = [1.0, 1.1, 1.2, 1.33];
/// Zooms of the centre crops in the pixel index.
const INDEX_ZOOMS: [f32; 2] = [1.15, 1.3];
/// Highest frequency kept per axis by the descriptor.
const KEEP: usize = 8;
/// Descriptor length: u in -KEEP..=KEEP, v in 0..=KEEP.
pub const DESCRIPTOR_DIM: usize = (2 * KEEP + 1) * (KEEP + 1);

/// A `w x h` plane of values in [0, 1] resized to `t x t` (triangle filter;
/// the image crate clamps floats to [0, 1]).
fn resize_plane(v: Vec<f32>, w: usize, h: usize, t: usize) -> Vec<f32> {
    if w == t && h == t {
        return v;
    }
    let img = image::ImageBuffer::<image::Luma<f32>, Vec<f32>>::from_raw(w as u32, h as u32, v).expect("a whole image");
    image::imageops::resize(&img, t as u32, t as u32, image::imageops::FilterType::Triangle).into_raw()
}

/// An `s x s` grey image resized to `t x t`.
fn resize(g: &[f32], s: usize, t: usize) -> Vec<f32> {
    resize_plane(g.to_vec(), s, s, t)
}

/// Luma of an RGB triple (ITU-R BT.601 weights).
pub fn luma(c: [f32; 3]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

/// Canonical grey images `[n, 32, 32]` (luma in [0, 1]: the image crate's
/// resizing clamps floats to that range) from `[n, h, w, 3]` pixels.
pub fn canonical(pixels: &[u8], h: usize, w: usize) -> Vec<f32> {
    let len = h * w * 3;
    let n = pixels.len().checked_div(len).unwrap_or(0);
    (0..n)
        .into_par_iter()
        .flat_map_iter(|i| {
            let px = &pixels[i * len..(i + 1) * len];
            let grey = px.chunks_exact(3).map(|c| luma([c[0] as f32, c[1] as f32, c[2] as f32]) / 255.0).collect();
            resize_plane(grey, w, h, SIDE)
        })
        .collect()
}

/// The centre `round(s / z)` square of an `s x s` image, resized back to `s x s`.
fn centre_zoom(g: &[f32], s: usize, z: f32) -> Vec<f32> {
    let c = ((s as f32 / z).round() as usize).clamp(1, s);
    let o = (s - c) / 2;
    let crop: Vec<f32> = (0..c).flat_map(|y| g[(o + y) * s + o..(o + y) * s + o + c].iter().copied()).collect();
    resize(&crop, c, s)
}

/// The Fourier descriptor of a canonical image: `log(1 + |F(u, v)|)` for
/// u in -KEEP..=KEEP, v in 0..=KEEP of the mean-free image, centred and
/// scaled to unit length. Two small DFTs (rows, then columns) over the kept
/// frequencies only.
pub fn descriptor(g: &[f32]) -> Vec<f32> {
    let n = SIDE;
    let mean = g.iter().sum::<f32>() / (n * n) as f32;
    let table: Vec<(f64, f64)> = (0..n)
        .map(|k| {
            let a = -2.0 * std::f64::consts::PI * k as f64 / n as f64;
            (a.cos(), a.sin())
        })
        .collect();
    let tw = |k: usize| table[k % n];
    // Rows: r[y][v] = sum_x g[y][x] e^(-2 pi i v x / n), v in 0..=KEEP.
    let mut r = vec![(0f64, 0f64); n * (KEEP + 1)];
    for y in 0..n {
        for v in 0..=KEEP {
            let (mut re, mut im) = (0f64, 0f64);
            for x in 0..n {
                let (c, s) = tw(v * x);
                let p = (g[y * n + x] - mean) as f64;
                re += p * c;
                im += p * s;
            }
            r[y * (KEEP + 1) + v] = (re, im);
        }
    }
    let mut d = Vec::with_capacity(DESCRIPTOR_DIM);
    for ui in 0..=2 * KEEP {
        let u = (ui + n - KEEP) % n;
        for v in 0..=KEEP {
            let (mut re, mut im) = (0f64, 0f64);
            for y in 0..n {
                let (c, s) = tw(u * y);
                let (a, b) = r[y * (KEEP + 1) + v];
                re += a * c - b * s;
                im += a * s + b * c;
            }
            d.push(((re * re + im * im).sqrt().ln_1p()) as f32);
        }
    }
    let m = d.iter().sum::<f32>() / d.len() as f32;
    d.iter_mut().for_each(|x| *x -= m);
    let norm = d.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    d.iter_mut().for_each(|x| *x /= norm);
    d
}

/// The descriptor of the mirrored image: |F(u, -v)| = |F(-u, v)| for a real
/// image, so the u axis reversed.
fn mirrored(d: &[f32]) -> Vec<f32> {
    (0..=2 * KEEP).rev().flat_map(|ui| d[ui * (KEEP + 1)..(ui + 1) * (KEEP + 1)].iter().copied()).collect()
}

/// Where the best alignment of a pair was found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Alignment {
    /// The patch was mirrored.
    pub flipped: bool,
    /// Index into the zooms tried (0: no zoom).
    pub zoom: usize,
    /// Offset of the patch from its centred position, pixels.
    pub shift: (i32, i32),
    /// The second image's patch sits in the first image's container (else the other way).
    pub into_first: bool,
    /// Top-left corner of the patch in the container, (row, column).
    pub pos: (usize, usize),
}

/// A square grey image with its integral images (sums of values and squares).
struct Container {
    side: usize,
    px: Vec<f32>,
    sum: Vec<f64>,
    sq: Vec<f64>,
}

impl Container {
    fn new(px: Vec<f32>, side: usize) -> Self {
        let w = side + 1;
        let (mut sum, mut sq) = (vec![0f64; w * w], vec![0f64; w * w]);
        for y in 0..side {
            for x in 0..side {
                let v = px[y * side + x] as f64;
                sum[(y + 1) * w + x + 1] = v + sum[y * w + x + 1] + sum[(y + 1) * w + x] - sum[y * w + x];
                sq[(y + 1) * w + x + 1] = v * v + sq[y * w + x + 1] + sq[(y + 1) * w + x] - sq[y * w + x];
            }
        }
        Container { side, px, sum, sq }
    }

    /// The NCC of a zero-mean, unit-norm `p x p` patch with the window at
    /// (y, x); None where the window is flat.
    fn ncc(&self, patch: &[f32], p: usize, y: usize, x: usize) -> Option<f32> {
        let w = self.side + 1;
        let at = |t: &[f64], a: usize, b: usize| t[a * w + b];
        let s = at(&self.sum, y + p, x + p) - at(&self.sum, y, x + p) - at(&self.sum, y + p, x) + at(&self.sum, y, x);
        let q = at(&self.sq, y + p, x + p) - at(&self.sq, y, x + p) - at(&self.sq, y + p, x) + at(&self.sq, y, x);
        let var = q - s * s / (p * p) as f64;
        if var <= 1e-9 {
            return None;
        }
        let mut dot = 0f32;
        for r in 0..p {
            let row = &self.px[(y + r) * self.side + x..(y + r) * self.side + x + p];
            dot += row.iter().zip(&patch[r * p..(r + 1) * p]).map(|(u, v)| u * v).sum::<f32>();
        }
        Some((dot as f64 / var.sqrt()) as f32)
    }
}

/// The centre patch of a `side x side` image leaving `border` pixels, plain
/// or mirrored, zero mean and unit norm (all zero when flat: it then matches nothing).
fn patch(g: &[f32], side: usize, border: usize, flip: bool) -> Vec<f32> {
    let p = side - 2 * border;
    let mut v: Vec<f32> = (0..p)
        .flat_map(|y| {
            (0..p).map(move |x| {
                let xx = if flip { side - 1 - (border + x) } else { border + x };
                g[(border + y) * side + xx]
            })
        })
        .collect();
    let m = v.iter().sum::<f32>() / v.len() as f32;
    v.iter_mut().for_each(|x| *x -= m);
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x = if norm > 1e-4 { *x / norm } else { 0.0 });
    v
}

/// The container of a `side x side` image at zoom index `z`.
fn container(g: &[f32], side: usize, z: usize) -> Container {
    let t = (side as f32 * ZOOMS[z]).round() as usize;
    Container::new(resize(g, side, t), t)
}

/// One image prepared for alignment at one resolution: its containers (the
/// image zoomed by each of [`ZOOMS`]) and its centre patch, plain and mirrored.
struct Prepared {
    containers: Vec<Container>,
    patches: [Vec<f32>; 2],
    patch: usize,
}

impl Prepared {
    /// `g`: a `side x side` image; the patch leaves `border` pixels on each side.
    fn new(g: &[f32], side: usize, border: usize) -> Self {
        let containers = (0..ZOOMS.len()).map(|z| container(g, side, z)).collect();
        Prepared {
            containers,
            patches: [patch(g, side, border, false), patch(g, side, border, true)],
            patch: side - 2 * border,
        }
    }
}

/// The best NCC of `b`'s patch (plain or mirrored) in `a`'s containers.
fn best_into(a: &Prepared, b: &Prepared, into_first: bool) -> (f32, Alignment) {
    let p = b.patch;
    let mut best = (-1f32, Alignment { flipped: false, zoom: 0, shift: (0, 0), into_first, pos: (0, 0) });
    for (zi, c) in a.containers.iter().enumerate() {
        if c.side < p {
            continue;
        }
        let span = c.side - p;
        for (fi, pt) in b.patches.iter().enumerate() {
            for y in 0..=span {
                for x in 0..=span {
                    if let Some(v) = c.ncc(pt, p, y, x) {
                        if v > best.0 {
                            let centre = span as i32 / 2;
                            let shift = (y as i32 - centre, x as i32 - centre);
                            best = (v, Alignment { flipped: fi == 1, zoom: zi, shift, into_first, pos: (y, x) });
                        }
                    }
                }
            }
        }
    }
    best
}

/// The alignment-tolerant similarity of two prepared images: the better of
/// each one's patch inside the other.
fn similarity(a: &Prepared, b: &Prepared) -> (f32, Alignment) {
    let (s1, a1) = best_into(a, b, true);
    let (s2, a2) = best_into(b, a, false);
    if s2 > s1 {
        (s2, a2)
    } else {
        (s1, a1)
    }
}

/// The 16x16 version of a canonical image (2x2 means).
fn half(g: &[f32]) -> Vec<f32> {
    let h = SIDE / 2;
    (0..h)
        .flat_map(|y| {
            (0..h).map(move |x| {
                (g[2 * y * SIDE + 2 * x]
                    + g[2 * y * SIDE + 2 * x + 1]
                    + g[(2 * y + 1) * SIDE + 2 * x]
                    + g[(2 * y + 1) * SIDE + 2 * x + 1])
                    / 4.0
            })
        })
        .collect()
}

/// Border of the patch at 16x16 and at 32x32.
const COARSE_BORDER: usize = 2;
const FINE_BORDER: usize = 4;

/// The grey similarity of two canonical images: at 16x16 everywhere (the
/// gate), then at 32x32 near the best 16x16 alignment (its position doubled,
/// within 3 pixels). Returns (16x16 similarity, 32x32 similarity, alignment);
/// the 32x32 search is skipped (similarity -1) below `gate`.
fn grey_similarity(a: &[f32], b: &[f32], a16: &Prepared, b16: &Prepared, gate: f32) -> (f32, f32, Alignment) {
    let (coarse, at) = similarity(a16, b16);
    if coarse < gate {
        return (coarse, -1.0, at);
    }
    // Only the 16x16 alignment's zoom and mirroring, around its corner doubled
    // (less the extra border of the 32x32 patch), within 3 pixels.
    let (outer, inner) = if at.into_first { (a, b) } else { (b, a) };
    let c = container(outer, SIDE, at.zoom);
    let p = SIDE - 2 * FINE_BORDER;
    let pt = patch(inner, SIDE, FINE_BORDER, at.flipped);
    let span = c.side.saturating_sub(p);
    let around = |v: usize| {
        let centre = (2 * v + 2 * COARSE_BORDER).saturating_sub(FINE_BORDER);
        centre.saturating_sub(3)..=(centre + 3).min(span)
    };
    let mut best = (-1f32, at);
    for y in around(at.pos.0) {
        for x in around(at.pos.1) {
            if let Some(v) = c.ncc(&pt, p, y, x).filter(|&v| v > best.0) {
                let centre = span as i32 / 2;
                best = (v, Alignment { shift: (y as i32 - centre, x as i32 - centre), pos: (y, x), ..at });
            }
        }
    }
    (coarse, best.0, best.1)
}

/// The colour agreement of two images at a grey alignment: the mean over
/// the RGB channels of the NCC of the patch with its window (channels flat in
/// the patch are left out; all flat: the grey similarity stands). Grey
/// structure alone matches a red cross with a black one.
fn colour_similarity(a: &[[f32; SIDE * SIDE]; 3], b: &[[f32; SIDE * SIDE]; 3], at: &Alignment) -> Option<f32> {
    let (outer, inner) = if at.into_first { (a, b) } else { (b, a) };
    let mut sum = 0f32;
    let mut n = 0;
    for ch in 0..3 {
        let pt = patch(&inner[ch], SIDE, FINE_BORDER, at.flipped);
        if pt.iter().all(|v| *v == 0.0) {
            continue;
        }
        let c = container(&outer[ch], SIDE, at.zoom);
        sum += c.ncc(&pt, SIDE - 2 * FINE_BORDER, at.pos.0, at.pos.1).unwrap_or(0.0);
        n += 1;
    }
    (n > 0).then(|| sum / n as f32)
}

/// The three canonical colour planes of one `[h, w, 3]` image, each 32x32 in [0, 1].
fn colour_planes(px: &[u8], h: usize, w: usize) -> [[f32; SIDE * SIDE]; 3] {
    let mut out = [[0f32; SIDE * SIDE]; 3];
    for (ch, plane) in out.iter_mut().enumerate() {
        let v: Vec<f32> = px.chunks_exact(3).map(|c| c[ch] as f32 / 255.0).collect();
        plane.copy_from_slice(&resize_plane(v, w, h, SIDE));
    }
    out
}

/// How the detector judges one pair of images (`[h, w, 3]` pixels).
pub fn judge(pa: &[u8], pb: &[u8], h: usize, w: usize, cfg: &DuplicateConfig) -> Judged {
    let (ga, gb) = (canonical(pa, h, w), canonical(pb, h, w));
    judge_canonical(&ga, &gb, pa, pb, h, w, cfg)
}

fn judge_canonical(ga: &[f32], gb: &[f32], pa: &[u8], pb: &[u8], h: usize, w: usize, cfg: &DuplicateConfig) -> Judged {
    let h16 = SIDE / 2;
    let (pa16, pb16) = (Prepared::new(&half(ga), h16, COARSE_BORDER), Prepared::new(&half(gb), h16, COARSE_BORDER));
    judge_prepared(ga, gb, &pa16, &pb16, pa, pb, h, w, cfg)
}

/// [`judge_canonical`] with the 16x16 preparations given.
#[allow(clippy::too_many_arguments)]
fn judge_prepared(
    ga: &[f32],
    gb: &[f32],
    pa16: &Prepared,
    pb16: &Prepared,
    pa: &[u8],
    pb: &[u8],
    h: usize,
    w: usize,
    cfg: &DuplicateConfig,
) -> Judged {
    let (coarse, fine, at) = grey_similarity(ga, gb, pa16, pb16, cfg.coarse_gate);
    let mut j = Judged { coarse, similarity: fine, detail: None, at };
    if fine < cfg.min_similarity {
        return j;
    }
    let colour = colour_similarity(&colour_planes(pa, h, w), &colour_planes(pb, h, w), &at).unwrap_or(fine);
    j.similarity = fine.min(colour);
    j.detail = Some(detail_similarity(ga, gb, &at));
    j
}

/// What the detector found about one pair.
#[derive(Clone, Copy, Debug)]
pub struct Judged {
    /// 16x16 grey similarity (the gate).
    pub coarse: f32,
    /// The lower of the 32x32 grey and the colour similarity (-1 when the gate stopped it).
    pub similarity: f32,
    /// NCC of the fine detail at the alignment (when the similarity was high enough to look).
    pub detail: Option<f32>,
    pub at: Alignment,
}

impl Judged {
    /// Whether the pair is a duplicate under `cuts`.
    pub fn passes(&self, cuts: &Cuts) -> bool {
        self.similarity >= cuts.similarity && self.detail.is_some_and(|d| d >= cuts.detail)
    }
}

/// The fine detail of a square image: itself less its Gaussian blur (sigma 1 pixel).
fn detail(g: &[f32], side: usize) -> Vec<f32> {
    let img = image::ImageBuffer::<image::Luma<f32>, Vec<f32>>::from_raw(side as u32, side as u32, g.to_vec())
        .expect("a whole image");
    let b = image::imageops::blur(&img, 1.0).into_raw();
    g.iter().zip(&b).map(|(x, y)| x - y).collect()
}

/// The NCC of the two images' fine detail at a grey alignment: copies share
/// their texture and noise, two pictures of one shape do not (on the
/// built-in demo every square aligns with every other square in grey).
fn detail_similarity(a: &[f32], b: &[f32], at: &Alignment) -> f32 {
    let (outer, inner) = if at.into_first { (a, b) } else { (b, a) };
    let t = (SIDE as f32 * ZOOMS[at.zoom]).round() as usize;
    let zoomed = resize(outer, SIDE, t);
    let c = Container::new(detail(&zoomed, t), t);
    let pt = patch(&detail(inner, SIDE), SIDE, FINE_BORDER, at.flipped);
    c.ncc(&pt, SIDE - 2 * FINE_BORDER, at.pos.0, at.pos.1).unwrap_or(0.0)
}

/// The `m` most similar database images of each query by descriptor, as
/// database image indices (a database of several blocks of `n` rows maps
/// row r to image r % n), leaving out `skip(q)`: one matrix product per
/// block of 256 queries, then one pass over each row keeping the best `m`.
fn top_matches(
    db: &[f32],
    n: usize,
    queries: &[f32],
    m: usize,
    skip: impl Fn(usize) -> Option<usize> + Sync,
) -> Vec<Vec<u32>> {
    let dim = DESCRIPTOR_DIM;
    let nq = queries.len() / dim;
    let rows = db.len() / dim;
    const BLOCK: usize = 256;
    (0..nq.div_ceil(BLOCK))
        .into_par_iter()
        .flat_map_iter(|blk| {
            let q0 = blk * BLOCK;
            let len = BLOCK.min(nq - q0);
            let d = dots(&queries[q0 * dim..(q0 + len) * dim], db, dim);
            (0..len)
                .map(|i| {
                    let own = skip(q0 + i);
                    // The best m (similarity, image), best first; an image once.
                    let mut best: Vec<(f32, u32)> = Vec::with_capacity(m + 1);
                    for (r, &v) in d[i * rows..(i + 1) * rows].iter().enumerate() {
                        if best.len() == m && v <= best[m - 1].0 {
                            continue;
                        }
                        let img = (r % n) as u32;
                        if Some(img as usize) == own {
                            continue;
                        }
                        if let Some(k) = best.iter().position(|b| b.1 == img) {
                            if best[k].0 >= v {
                                continue;
                            }
                            best.remove(k);
                        }
                        let at = best.iter().position(|b| v > b.0).unwrap_or(best.len());
                        best.insert(at, (v, img));
                        best.truncate(m);
                    }
                    best.into_iter().map(|(_, j)| j).collect()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// What the detector is given.
pub struct Inputs<'a> {
    /// `[n_train, h, w, 3]` and `[n_test, h, w, 3]` RGB pixels.
    pub train: &'a [u8],
    pub test: &'a [u8],
    pub height: usize,
    pub width: usize,
    /// Embedding neighbours of the training and test images among the training images.
    pub neighbors: Option<(&'a Neighbors, &'a Neighbors)>,
    /// Unit embeddings `[n, dim]` of both splits, for the pairs' embedding distance.
    pub embeddings: Option<(&'a [f32], &'a [f32], usize)>,
    /// Whether to look for pairs within the training images too (else test against train only).
    pub train_pairs: bool,
    /// Labels of the training images, for the null sample's same-class pairs (empty: any pairs).
    pub labels: &'a [u32],
    /// Labels of the test images (empty: unknown), with `labels` for the
    /// detail cut's candidate pairs with different labels.
    pub test_labels: &'a [u32],
}

/// Finds the duplicate pairs: within the training images, and between each
/// test image and the training images. Sorted by (b_test, a, b).
pub fn find(inp: &Inputs, cfg: &DuplicateConfig) -> Found {
    find_judging(inp, cfg, false).0
}

/// A candidate pair as the detector judged it (`a` a training row, `b` a
/// training or test row).
#[derive(Clone, Debug)]
pub struct Candidate {
    pub a: usize,
    pub b: usize,
    pub b_test: bool,
    pub pixel_distance: f32,
    pub judged: Judged,
}

/// [`find`], and with `keep` every candidate pair judged (past the 16x16
/// gate or pixel-near), reported or not: what calibration looks at.
pub fn find_judging(inp: &Inputs, cfg: &DuplicateConfig, keep: bool) -> (Found, Vec<Candidate>) {
    let len = inp.height * inp.width * 3;
    let cuts =
        Cuts { similarity: cfg.min_similarity, null_pairs: 0, detail: cfg.min_detail, cross_pairs: 0, aligned: true };
    let none = Found { pairs: Vec::new(), cuts };
    if len == 0 || inp.train.len() / len < 2 {
        return (none, Vec::new());
    }
    let (n_train, n_test) = (inp.train.len() / len, inp.test.len() / len);
    let g_train = canonical(inp.train, inp.height, inp.width);
    let g_test = canonical(inp.test, inp.height, inp.width);
    let img = |test: bool, i: usize| -> &[f32] {
        let g = if test { &g_test } else { &g_train };
        &g[i * SIDE * SIDE..(i + 1) * SIDE * SIDE]
    };
    let dim = DESCRIPTOR_DIM;
    let describe = |g: &[f32], n: usize, zoom: Option<f32>| -> Vec<f32> {
        (0..n)
            .into_par_iter()
            .flat_map_iter(|i| {
                let im = &g[i * SIDE * SIDE..(i + 1) * SIDE * SIDE];
                match zoom {
                    Some(z) => descriptor(&centre_zoom(im, SIDE, z)),
                    None => descriptor(im),
                }
            })
            .collect()
    };
    // The pixel index: every training image plain, and its centre crops.
    let plain = describe(&g_train, n_train, None);
    let mut zoomed = Vec::with_capacity(INDEX_ZOOMS.len() * n_train * dim);
    for &z in &INDEX_ZOOMS {
        zoomed.extend(describe(&g_train, n_train, Some(z)));
    }
    let m = cfg.candidates.min(n_train - 1);
    // Candidates of each query: (training queries first, then test queries).
    let mut cands: Vec<Vec<u32>> = vec![Vec::new(); n_train + n_test];
    let mut add = |offset: usize, lists: Vec<Vec<u32>>| {
        for (q, l) in lists.into_iter().enumerate() {
            let c = &mut cands[offset + q];
            for j in l {
                if !c.contains(&j) {
                    c.push(j);
                }
            }
        }
    };
    if m > 0 {
        for (split_test, g, n) in [(false, &g_train, n_train), (true, &g_test, n_test)] {
            if n == 0 || (!split_test && !inp.train_pairs) {
                continue;
            }
            let offset = if split_test { n_train } else { 0 };
            let skip = |q: usize| (!split_test).then_some(q);
            let q_plain = if split_test { describe(g, n, None) } else { plain.clone() };
            let q_mirror: Vec<f32> = q_plain.chunks_exact(dim).flat_map(mirrored).collect();
            add(offset, top_matches(&plain, n_train, &q_plain, m, skip));
            add(offset, top_matches(&plain, n_train, &q_mirror, m, skip));
            add(offset, top_matches(&zoomed, n_train, &q_plain, m, skip));
            if split_test {
                add(offset, top_matches(&zoomed, n_train, &q_mirror, m, skip));
            }
            // A query that is the wider view of a training image's crop: the query zoomed in.
            if split_test {
                for &z in &INDEX_ZOOMS {
                    add(offset, top_matches(&plain, n_train, &describe(g, n, Some(z)), m, skip));
                }
            }
        }
    }
    if let Some((tr, te)) = inp.neighbors {
        for (offset, nb, n) in [(0, tr, n_train), (n_train, te, n_test)] {
            if offset == 0 && !inp.train_pairs {
                continue;
            }
            let lists = (0..n)
                .map(|q| {
                    nb.of(q)
                        .iter()
                        .zip(nb.distances(q))
                        .filter(|(_, &d)| d <= cfg.max_embedding_distance)
                        .take(cfg.candidates)
                        .map(|(&j, _)| j)
                        .collect()
                })
                .collect();
            add(offset, lists);
        }
    }
    let px = |test: bool, i: usize| -> &[u8] {
        let p = if test { inp.test } else { inp.train };
        &p[i * len..(i + 1) * len]
    };
    let mut cuts = null_cuts(inp, cfg, &g_train);
    // Every candidate pair past the gate (or pixel-near), judged: each
    // training pair once (from its higher row), every test pair; the query's
    // 16x16 preparation is shared by its candidates.
    let (h, w) = (inp.height, inp.width);
    let mut seen: Vec<Candidate> = cands
        .par_iter()
        .enumerate()
        .flat_map_iter(|(q, c)| {
            let b_test = q >= n_train;
            let b = if b_test { q - n_train } else { q };
            let gb = img(b_test, b);
            let prep_b = Prepared::new(&half(gb), SIDE / 2, COARSE_BORDER);
            let mut seen = Vec::new();
            for a in c.iter().map(|&j| j as usize).filter(|&j| b_test || j < b) {
                let (pa, pb) = (px(false, a), px(b_test, b));
                let pixel_distance = pixel_distance(pa, pb);
                let near = pixel_distance <= cfg.max_pixel_distance;
                if !near && !cuts.aligned {
                    continue;
                }
                let ga = img(false, a);
                let prep_a = Prepared::new(&half(ga), SIDE / 2, COARSE_BORDER);
                let judged = judge_prepared(ga, gb, &prep_a, &prep_b, pa, pb, h, w, cfg);
                if near || judged.similarity > -1.0 {
                    seen.push(Candidate { a, b, b_test, pixel_distance, judged });
                }
            }
            seen
        })
        .collect();
    // A training pair found from both of its rows is judged once.
    seen.sort_by_key(|p| (p.b_test, p.a, p.b));
    seen.dedup_by(|x, y| (x.b_test, x.a, x.b) == (y.b_test, y.a, y.b));
    if cuts.aligned {
        let label = |test: bool, i: usize| if test { inp.test_labels.get(i) } else { inp.labels.get(i) };
        let cross: Vec<f32> = seen
            .iter()
            .filter(|c| c.judged.similarity >= cuts.similarity)
            .filter(|c| matches!((label(false, c.a), label(c.b_test, c.b)), (Some(x), Some(y)) if x != y))
            .filter_map(|c| c.judged.detail)
            .collect();
        (cuts.detail, cuts.cross_pairs) = detail_cut(cross, cfg);
    }
    let pairs = seen
        .iter()
        .filter_map(|c| {
            let (pa, pb) = (px(false, c.a), px(c.b_test, c.b));
            let aligned = cuts.aligned && c.judged.passes(&cuts);
            if !aligned && c.pixel_distance > cfg.max_pixel_distance {
                return None;
            }
            // Pixel-near only: the alignment of two near-identical pictures says nothing.
            let kind = Kind::of(pa == pb, aligned, &c.judged.at);
            let embedding_distance = inp.embeddings.map(|(tr, te, d)| {
                let ea = &tr[c.a * d..(c.a + 1) * d];
                let eb = if c.b_test { &te[c.b * d..(c.b + 1) * d] } else { &tr[c.b * d..(c.b + 1) * d] };
                ea.iter().zip(eb).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
            });
            Some(Pair {
                a: c.a,
                b: c.b,
                b_test: c.b_test,
                embedding_distance,
                pixel_distance: c.pixel_distance,
                similarity: c.judged.similarity,
                detail: c.judged.detail.unwrap_or(0.0),
                kind,
            })
        })
        .collect();
    if !keep {
        seen.clear();
    }
    (Found { pairs, cuts }, seen)
}

/// The detail cut and how many pairs it rests on: the
/// [`DuplicateConfig::cross_quantile`] of the detail similarity of the
/// candidate pairs with different labels that pass the similarity cut, or
/// [`DuplicateConfig::min_detail`] when higher or when there are fewer than
/// [`DuplicateConfig::min_cross_pairs`] of them. Those pairs are the
/// detector's nearest candidates, where different photographs of one layout
/// (a ship on a grey sea, an aircraft against the sky) look alike; nearly
/// all of them are different photographs. Random pairs of one class,
/// calibrated on before, rarely look alike and left the cut too low: on
/// CIFAR-10 most reported pairs of different photographs had a detail
/// similarity of 0.3 to 0.5.
pub fn detail_cut(mut cross: Vec<f32>, cfg: &DuplicateConfig) -> (f32, usize) {
    if cross.len() < cfg.min_cross_pairs.max(1) {
        return (cfg.min_detail, 0);
    }
    cross.sort_by(f32::total_cmp);
    let q = cross[((cross.len() - 1) as f64 * cfg.cross_quantile).round() as usize];
    (cfg.min_detail.max(q), cross.len())
}

/// The thresholds a run used.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cuts {
    /// Smallest similarity of a duplicate pair: the configured minimum, or
    /// the null sample's quantile when higher.
    pub similarity: f32,
    /// Random same-class training pairs in the null sample.
    pub null_pairs: usize,
    /// Smallest detail similarity of a duplicate pair: the configured
    /// minimum, or the detail that candidate pairs with different labels
    /// reach ([`detail_cut`]) when higher.
    #[serde(default)]
    pub detail: f32,
    /// Candidate pairs with different labels that cut was taken from (0: the minimum alone).
    #[serde(default)]
    pub cross_pairs: usize,
    /// Whether aligned copies are looked for: not where random same-class
    /// pairs already reach [`DuplicateConfig::max_null_similarity`] (only
    /// pixel-near copies are then reported).
    pub aligned: bool,
}

/// What the detector found.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub pairs: Vec<Pair>,
    pub cuts: Cuts,
}

/// The cuts, raised to what random pairs of distinct same-class training
/// images reach ([`DuplicateConfig::null_quantile`] of
/// [`DuplicateConfig::null_pairs`] seeded pairs): where every picture of a
/// class looks alike (the built-in demo's flat shapes) only closer copies count.
fn null_cuts(inp: &Inputs, cfg: &DuplicateConfig, g_train: &[f32]) -> Cuts {
    use rand::{Rng, SeedableRng};
    let len = inp.height * inp.width * 3;
    let n = inp.train.len() / len;
    let mut by_class: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
    for i in 0..n {
        by_class.entry(inp.labels.get(i).copied().unwrap_or(0)).or_default().push(i);
    }
    let usable: Vec<&Vec<usize>> = by_class.values().filter(|v| v.len() >= 2).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(crate::seed::derive(cfg.seed, &[0x6475_7073]));
    let mut draws = Vec::with_capacity(cfg.null_pairs);
    while draws.len() < cfg.null_pairs && !usable.is_empty() {
        let v = usable[rng.random_range(0..usable.len())];
        let (i, j) = (v[rng.random_range(0..v.len())], v[rng.random_range(0..v.len())]);
        if i != j {
            draws.push((i, j));
        }
    }
    let open = DuplicateConfig { coarse_gate: -1.0, min_similarity: -1.0, ..cfg.clone() };
    let g = |i: usize| &g_train[i * SIDE * SIDE..(i + 1) * SIDE * SIDE];
    let px = |i: usize| &inp.train[i * len..(i + 1) * len];
    let judged: Vec<Judged> = draws
        .par_iter()
        .map(|&(i, j)| judge_canonical(g(i), g(j), px(i), px(j), inp.height, inp.width, &open))
        .collect();
    let q = |mut v: Vec<f32>| -> f32 {
        if v.is_empty() {
            return f32::NEG_INFINITY;
        }
        v.sort_by(f32::total_cmp);
        v[((v.len() - 1) as f64 * cfg.null_quantile).round() as usize]
    };
    let null_similarity = q(judged.iter().map(|j| j.similarity).collect());
    Cuts {
        aligned: null_similarity < cfg.max_null_similarity,
        similarity: cfg.min_similarity.max(null_similarity),
        null_pairs: draws.len(),
        detail: cfg.min_detail,
        cross_pairs: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A textured 32x32 test image.
    fn texture(seed: u32) -> Vec<f32> {
        (0..SIDE * SIDE)
            .map(|i| {
                let (y, x) = ((i / SIDE) as f32, (i % SIDE) as f32);
                let s = seed as f32;
                0.5 + 0.24 * ((x * 0.4 + s).sin() * (y * 0.3 - s).cos())
                    + 0.16 * ((x + y) * 0.17 * (1.0 + s * 0.1)).sin()
            })
            .collect()
    }

    #[test]
    fn the_descriptor_ignores_shifts_and_mirrors_by_reversing_one_axis() {
        let g = texture(1);
        // A circular shift keeps every Fourier magnitude.
        let shifted: Vec<f32> = (0..SIDE * SIDE).map(|i| g[(i / SIDE) * SIDE + (i % SIDE + 3) % SIDE]).collect();
        let (d, ds) = (descriptor(&g), descriptor(&shifted));
        assert!(d.iter().zip(&ds).all(|(a, b)| (a - b).abs() < 1e-4));
        let flipped: Vec<f32> = (0..SIDE * SIDE).map(|i| g[(i / SIDE) * SIDE + SIDE - 1 - i % SIDE]).collect();
        let df = descriptor(&flipped);
        assert!(mirrored(&d).iter().zip(&df).all(|(a, b)| (a - b).abs() < 1e-4));
        assert!((d.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
    }

    /// A grey image as `[32, 32, 3]` pixels.
    fn rgb(g: &[f32]) -> Vec<u8> {
        g.iter().flat_map(|&v| [(v * 255.0).round() as u8; 3]).collect()
    }

    fn pair_similarity(a: &[f32], b: &[f32]) -> (f32, f32, Alignment) {
        let cfg = DuplicateConfig { coarse_gate: -1.0, min_similarity: -1.0, ..Default::default() };
        let j = judge(&rgb(a), &rgb(b), SIDE, SIDE, &cfg);
        (j.detail.unwrap(), j.similarity, j.at)
    }

    #[test]
    fn the_detail_cut_is_the_quantile_of_look_alikes_with_other_labels_never_below_the_minimum() {
        let cfg = DuplicateConfig { min_cross_pairs: 10, ..Default::default() };
        // Too few pairs with different labels: the minimum alone.
        assert_eq!(detail_cut(vec![0.9; 9], &cfg), (cfg.min_detail, 0));
        // 1,000 look-alikes at 0.000 to 0.999: the 0.995 quantile.
        let cross: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        let (cut, n) = detail_cut(cross, &cfg);
        assert_eq!(n, 1000);
        assert!((cut - 0.994).abs() < 1e-6, "{cut}");
        // Look-alikes far apart: the minimum stands.
        assert_eq!(detail_cut(vec![0.1; 50], &cfg), (cfg.min_detail, 50));
    }

    #[test]
    fn the_rules_call_a_pair_certain_at_the_detectors_pixel_near_distance() {
        // rules/images.toml says "one label is wrong" only for exact or
        // pixel-near pairs; its SQL spells the distance out.
        let rules = include_str!("../../rules/images.toml");
        let spelled = format!("pixel_distance <= {}", DuplicateConfig::default().max_pixel_distance);
        assert_eq!(rules.matches(&spelled).count(), 2, "both duplicate rules use {spelled}");
    }

    #[test]
    fn alignment_finds_mirrors_and_shifts_and_tells_images_apart() {
        let g = texture(2);
        let flipped: Vec<f32> = (0..SIDE * SIDE).map(|i| g[(i / SIDE) * SIDE + SIDE - 1 - i % SIDE]).collect();
        let (d, s, at) = pair_similarity(&g, &flipped);
        assert!(s > 0.99 && d > 0.9 && at.flipped, "{s} {d} {at:?}");
        // Shifted by 2 rows down (the top rows repeated).
        let shifted: Vec<f32> = (0..SIDE * SIDE).map(|i| g[((i / SIDE).saturating_sub(2)) * SIDE + i % SIDE]).collect();
        let (_, s, at) = pair_similarity(&g, &shifted);
        assert!(s > 0.99 && !at.flipped && at.shift.0.abs() == 2, "{s} {at:?}");
        let (_, s, _) = pair_similarity(&g, &texture(7));
        assert!(s < 0.9, "{s}");
    }
}

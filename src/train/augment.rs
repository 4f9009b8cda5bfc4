//! On-the-fly augmentation of `[h, w, 3]` u8 images: random crop with zero
//! padding (PyTorch's `RandomCrop(size, padding)`) and horizontal flip, with
//! every draw taken from the caller's seeded generator.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Which augmentations to apply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Zero padding around the image before a crop back to its size, in pixels (0: no crop).
    pub crop_padding: usize,
    /// Flip left-right with probability 1/2.
    pub flip: bool,
}

/// Writes an augmented copy of `src` (`[h, w, 3]`) into `dst`.
pub fn augment(src: &[u8], dst: &mut [u8], h: usize, w: usize, aug: &Augment, rng: &mut ChaCha8Rng) {
    // Offsets are drawn as i64 so that the draws are the same on every platform.
    let p = aug.crop_padding as i64;
    let (dy, dx) = if p > 0 { (rng.random_range(-p..=p) as isize, rng.random_range(-p..=p) as isize) } else { (0, 0) };
    let flip = aug.flip && rng.random_bool(0.5);
    for y in 0..h {
        let sy = y as isize + dy;
        for x in 0..w {
            let xx = if flip { w - 1 - x } else { x };
            let sx = xx as isize + dx;
            let d = (y * w + x) * 3;
            if sy < 0 || sx < 0 || sy >= h as isize || sx >= w as isize {
                dst[d..d + 3].fill(0);
            } else {
                let s = (sy as usize * w + sx as usize) * 3;
                dst[d..d + 3].copy_from_slice(&src[s..s + 3]);
            }
        }
    }
}

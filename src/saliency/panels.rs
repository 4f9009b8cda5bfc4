//! Pictures of the maps: one panel per image and target (the image, then
//! each method's map laid over a grey copy of it, in the viridis colour
//! map: dark = irrelevant, yellow = most relevant), and contact sheets that
//! stack panels. Images are scaled up by whole pixels (nearest), so a pixel
//! of the map is a block of the picture.

use image::{Rgb, RgbImage};
use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};

/// Side in pixels of one tile of a panel (at least the image's side).
pub fn tile_scale(h: usize, w: usize) -> u32 {
    (96 / h.max(w)).max(1) as u32
}

/// Gap between tiles, in pixels.
const GAP: u32 = 2;

/// A panel: `[h, w, 3]` u8 `pixels`, then one overlay per `[h, w]` map.
pub fn panel(pixels: &[u8], h: usize, w: usize, maps: &[&[f32]]) -> RgbImage {
    let s = tile_scale(h, w);
    let (tw, th) = (w as u32 * s, h as u32 * s);
    let tiles = 1 + maps.len() as u32;
    let mut out = RgbImage::from_pixel(tiles * tw + (tiles - 1) * GAP, th, Rgb([255, 255, 255]));
    let px = |x: usize, y: usize| -> [u8; 3] {
        let i = (y * w + x) * 3;
        [pixels[i], pixels[i + 1], pixels[i + 2]]
    };
    for (t, map) in std::iter::once(None).chain(maps.iter().map(Some)).enumerate() {
        let max = map.map_or(0.0, |m| m.iter().copied().fold(0f32, f32::max));
        let x0 = t as u32 * (tw + GAP);
        for y in 0..h {
            for x in 0..w {
                let c = px(x, y);
                let colour = match map {
                    None => c,
                    Some(m) => {
                        let v = if max > 0.0 { (m[y * w + x] / max).clamp(0.0, 1.0) } else { 0.0 };
                        let heat = ViridisRGB.get_color(v);
                        let grey = (0.299 * c[0] as f32 + 0.587 * c[1] as f32 + 0.114 * c[2] as f32) * 0.5;
                        // The heat dominates where the map is high, the image shows through elsewhere.
                        let a = 0.35 + 0.65 * v;
                        [heat.0, heat.1, heat.2].map(|h| (a * h as f32 + (1.0 - a) * grey).round() as u8)
                    }
                };
                for dy in 0..s {
                    for dx in 0..s {
                        out.put_pixel(x0 + x as u32 * s + dx, y as u32 * s + dy, Rgb(colour));
                    }
                }
            }
        }
    }
    out
}

/// Panels stacked top to bottom (each row a panel), with a gap between
/// them; `None` when there is nothing to stack.
pub fn sheet(panels: &[RgbImage]) -> Option<RgbImage> {
    let width = panels.iter().map(|p| p.width()).max()?;
    let height: u32 = panels.iter().map(|p| p.height()).sum::<u32>() + GAP * panels.len().saturating_sub(1) as u32;
    let mut out = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let mut y = 0;
    for p in panels {
        image::imageops::replace(&mut out, p, 0, y as i64);
        y += p.height() + GAP;
    }
    Some(out)
}

/// PNG bytes of an image.
pub fn png(img: &RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).expect("PNG encodes to memory");
    bytes
}

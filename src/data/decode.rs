//! Image decoding with limits, and resizing: shared by every loader that reads
//! encoded images (PNG, JPEG) rather than raw pixels.

use image::imageops::FilterType;
use image::{ImageReader, Limits, RgbImage};
use rayon::prelude::*;
use std::io::Cursor;

use super::{Dataset, ImageSet, Problems, Split};
use crate::error::{Problem, Result};

/// Largest width or height an image header may claim, in pixels. Larger
/// claims are refused before any pixel is decoded (decompression bombs).
pub const MAX_SIDE: u32 = 8192;
/// Most memory one decode may allocate, in bytes.
pub const MAX_ALLOC: u64 = 512 << 20;

/// Decodes a PNG or JPEG (the format is read from the bytes, not the name) to
/// 8-bit RGB. Grey images are expanded and alpha is dropped. The error is a
/// message for a [`Problem`].
pub fn decode_rgb(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read the image: {e}"))?;
    match reader.format() {
        Some(image::ImageFormat::Png) | Some(image::ImageFormat::Jpeg) => {}
        Some(other) => return Err(format!("{other:?} images are not supported (PNG and JPEG are)")),
        None => return Err("not a PNG or JPEG image (unrecognised bytes)".to_string()),
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    match reader.decode() {
        Ok(img) => Ok(img.to_rgb8()),
        Err(image::ImageError::Limits(e)) => {
            Err(format!("the image is too large to decode ({e}); misfit accepts at most {MAX_SIDE}x{MAX_SIDE} pixels"))
        }
        Err(e) => Err(format!("corrupt image: {e}")),
    }
}

/// Resizes an RGB image to `height x width` with a triangle (bilinear) filter.
pub fn resize(img: &RgbImage, height: usize, width: usize) -> RgbImage {
    image::imageops::resize(img, width as u32, height as u32, FilterType::Triangle)
}

/// Resizes every image of a dataset to `height x width`.
pub fn resize_dataset(ds: &mut Dataset, height: usize, width: usize) {
    let (h0, w0) = (ds.height, ds.width);
    for split in Split::ALL {
        let set = ds.split_mut(split);
        let pixels: Vec<u8> = set
            .pixels
            .par_chunks(h0 * w0 * 3)
            .flat_map_iter(|px| {
                let img =
                    RgbImage::from_raw(w0 as u32, h0 as u32, px.to_vec()).expect("image buffer of the dataset's size");
                resize(&img, height, width).into_raw()
            })
            .collect();
        set.pixels = pixels;
    }
    ds.height = height;
    ds.width = width;
}

/// One encoded image waiting to be decoded, with where it came from.
#[derive(Debug)]
pub struct Encoded {
    /// The image's id in the dataset.
    pub id: String,
    /// Its split.
    pub split: Split,
    /// Its label, as a class index.
    pub label: u32,
    /// The file it was read from (a path, an archive, a Parquet file), for errors.
    pub file: String,
    /// The entry inside that file (archive member, row), for errors.
    pub entry: String,
    /// The encoded bytes.
    pub bytes: Vec<u8>,
}

/// Decodes images in parallel and gathers them into a train and a test set of
/// one size: `resize` when given, else the size of the first image. Problems
/// (corrupt files, other sizes) are reported in input order.
pub fn decode_all(
    encoded: Vec<Encoded>,
    resize_to: Option<(usize, usize)>,
    problems: &mut Problems,
) -> Result<(usize, usize, ImageSet, ImageSet)> {
    let decoded: Vec<std::result::Result<RgbImage, String>> = encoded
        .par_iter()
        .map(|e| {
            let img = decode_rgb(&e.bytes)?;
            Ok(match resize_to {
                Some((h, w)) if (img.height() as usize, img.width() as usize) != (h, w) => resize(&img, h, w),
                _ => img,
            })
        })
        .collect();
    let mut size: Option<(usize, usize, usize)> = resize_to.map(|(h, w)| (h, w, usize::MAX));
    let (mut train, mut test) = (ImageSet::default(), ImageSet::default());
    for (i, (e, img)) in encoded.iter().zip(decoded).enumerate() {
        let img = match img {
            Ok(img) => img,
            Err(what) => {
                problems.report(Problem::entry(&e.file, &e.entry, what))?;
                continue;
            }
        };
        let (h, w) = (img.height() as usize, img.width() as usize);
        match size {
            None => size = Some((h, w, i)),
            Some((h0, w0, first)) if (h, w) != (h0, w0) => {
                problems.report(Problem::entry(
                    &e.file,
                    &e.entry,
                    format!(
                        "image is {h}x{w} pixels (height x width) but {} is {h0}x{w0}; images must share one size (or pass --resize {h0}x{w0})",
                        encoded[first].entry
                    ),
                ))?;
                continue;
            }
            Some(_) => {}
        }
        let set = if e.split == Split::Train { &mut train } else { &mut test };
        set.push(e.id.clone(), e.label, img.as_raw());
    }
    let (h, w) = size.map(|(h, w, _)| (h, w)).unwrap_or((0, 0));
    Ok((h, w, train, test))
}

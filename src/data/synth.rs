//! `misfit data synth`: writes the demo dataset as an image-folder archive
//! (`demo.tar.gz`, PNG, loadable like any dataset) with its ground truth
//! (`ground_truth.csv`: one row per planted problem; `planted_pairs.csv`:
//! the planted class pairs).

use flate2::write::GzEncoder;
use image::codecs::png::PngEncoder;
use image::ImageEncoder;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

use super::demo::{self, DemoConfig};
use super::Split;
use crate::atomic::AtomicFile;
use crate::error::{Error, Result};

/// The files `synth` wrote.
#[derive(Debug)]
pub struct SynthOutput {
    pub archive: PathBuf,
    pub ground_truth: PathBuf,
    pub pairs: PathBuf,
    /// Images written (train + test).
    pub images: usize,
    /// Planted per-image problems.
    pub problems: usize,
}

impl std::fmt::Display for SynthOutput {
    /// What `misfit data synth` tells the user it wrote.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wrote {} ({} images), {} ({} planted problems) and {}",
            self.archive.display(),
            self.images,
            self.ground_truth.display(),
            self.problems,
            self.pairs.display()
        )
    }
}

/// Encodes `[h, w, 3]` RGB pixels as PNG.
pub fn png(pixels: &[u8], height: usize, width: usize) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(pixels, width as u32, height as u32, image::ExtendedColorType::Rgb8)
        .expect("encoding a well-sized RGB buffer to memory cannot fail");
    out
}

/// Writes the demo dataset made with `cfg` into `out_dir`.
pub fn write(cfg: &DemoConfig, out_dir: &Path) -> Result<SynthOutput> {
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let demo = demo::generate(cfg);
    let ds = &demo.dataset;
    let image_len = ds.image_len();

    let archive = out_dir.join("demo.tar.gz");
    let mut file = AtomicFile::create(&archive)?;
    {
        let gz = GzEncoder::new(file.writer(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let io = |e: std::io::Error| Error::io(&archive, e);
        for split in Split::ALL {
            let set = ds.split(split);
            let pngs: Vec<Vec<u8>> = set.pixels.par_chunks(image_len).map(|px| png(px, ds.height, ds.width)).collect();
            for (id, bytes) in set.ids.iter().zip(pngs) {
                let mut header = tar::Header::new_gnu();
                header.set_size(bytes.len() as u64);
                header.set_mode(0o644);
                header.set_mtime(0);
                header.set_cksum();
                tar.append_data(&mut header, id, bytes.as_slice()).map_err(io)?;
            }
        }
        tar.into_inner().map_err(io)?.finish().map_err(io)?;
    }
    file.commit()?;

    let ground_truth = out_dir.join("ground_truth.csv");
    let mut csv = String::from("id,split,problem,given_label,true_label,related_id\n");
    for p in &demo.truth.problems {
        let name = |l: u32| ds.classes[l as usize].clone();
        csv.push_str(&format!(
            "{},{},{},{},{},{}\n",
            p.id,
            p.split,
            p.kind.as_str(),
            name(p.given_label),
            p.true_label.map(name).unwrap_or_default(),
            p.related_id.clone().unwrap_or_default()
        ));
    }
    crate::atomic::write(&ground_truth, csv.as_bytes())?;

    let pairs = out_dir.join("planted_pairs.csv");
    let mut text = String::from("kind,class_a,class_b\n");
    let t = &demo.truth;
    text.push_str(&format!("lookalike,{},{}\n", t.lookalike.0, t.lookalike.1));
    text.push_str(&format!("shared_background,{},{}\n", t.shared_background.0, t.shared_background.1));
    crate::atomic::write(&pairs, text.as_bytes())?;

    Ok(SynthOutput { archive, ground_truth, pairs, images: ds.train.len() + ds.test.len(), problems: t.problems.len() })
}

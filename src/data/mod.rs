//! Datasets: the in-memory labelled image set and its loaders.
//!
//! Every loader produces a [`Dataset`]: RGB images of one size as `u8`, a class
//! list, a label and a stable string id per image, split into train and test.
//! Loaders for each on-disk format live in their own file:
//! [`cifar_bin`] (CIFAR-10 binary), [`folder`] (image folders in a directory or
//! tar archive), [`hf_parquet`] (Hugging Face image Parquet), [`demo`] (the
//! built-in procedural dataset); [`labels`] replaces labels from a file.

pub mod archive;
pub mod cifar_bin;
pub mod decode;
pub mod demo;
pub mod fetch;
pub mod folder;
pub mod hf_parquet;
pub mod labels;
pub mod probs;
pub mod spec;
pub mod synth;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::PathBuf;

use crate::error::{Error, Problem, Result};
pub use spec::DatasetSpec;

/// Which part of a dataset an image belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    /// Both splits, train first.
    pub const ALL: [Split; 2] = [Split::Train, Split::Test];

    /// The split's name as it appears in paths and tables: `train` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }

    /// Parses a split name (`train` or `test`), as used for folder names.
    pub fn from_name(name: &str) -> Option<Split> {
        match name {
            "train" => Some(Split::Train),
            "test" => Some(Split::Test),
            _ => None,
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The images of one split, with their ids and labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageSet {
    /// Stable id per image, unique in the dataset, e.g. its path inside the
    /// archive (`train/cat/0001.jpg`) or its file and record (`data_batch_1.bin:00042`).
    pub ids: Vec<String>,
    /// Class index per image, into [`Dataset::classes`].
    pub labels: Vec<u32>,
    /// Pixels as `u8` RGB, image after image, each row-major and interleaved
    /// (HWC): shape `[n, height, width, 3]`.
    pub pixels: Vec<u8>,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Appends one image; `pixels` must be `[height, width, 3]` of the dataset.
    pub fn push(&mut self, id: String, label: u32, pixels: &[u8]) {
        self.ids.push(id);
        self.labels.push(label);
        self.pixels.extend_from_slice(pixels);
    }

    /// Reorders the images by id (byte order), so that loaders that meet files
    /// in arbitrary order (archives, directories) give one order.
    pub fn sort_by_id(&mut self, image_len: usize) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by(|&a, &b| self.ids[a].cmp(&self.ids[b]));
        let mut sorted = ImageSet::default();
        sorted.pixels.reserve(self.pixels.len());
        for i in order {
            let px = &self.pixels[i * image_len..(i + 1) * image_len];
            sorted.push(std::mem::take(&mut self.ids[i]), self.labels[i], px);
        }
        *self = sorted;
    }

    /// Number of images per class, for `n_classes` classes.
    pub fn class_counts(&self, n_classes: usize) -> Vec<usize> {
        let mut counts = vec![0; n_classes];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }
}

/// A labelled image dataset: class names, one image size, a train and a test split.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Short name, used as the default run name (`demo`, `cifar10-jpeg`).
    pub name: String,
    /// What was loaded, in words: a path and its format.
    pub source: String,
    /// Class names; a label is an index into this list.
    pub classes: Vec<String>,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// The training images.
    pub train: ImageSet,
    /// The test images (may be empty when the source has no test split).
    pub test: ImageSet,
}

impl Dataset {
    /// Bytes per image: `height * width * 3`.
    pub fn image_len(&self) -> usize {
        self.height * self.width * 3
    }

    /// The split's images.
    pub fn split(&self, split: Split) -> &ImageSet {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        }
    }

    /// Image `i` of `split`: `[h, w, 3]` u8 RGB.
    pub fn image(&self, split: Split, i: usize) -> &[u8] {
        let len = self.image_len();
        &self.split(split).pixels[i * len..(i + 1) * len]
    }

    /// The split's images, mutable.
    pub fn split_mut(&mut self, split: Split) -> &mut ImageSet {
        match split {
            Split::Train => &mut self.train,
            Split::Test => &mut self.test,
        }
    }

    /// Checks the invariants every later stage relies on: ids unique across
    /// both splits, labels inside the class range, pixel buffers of the right
    /// length, at least one training image in every class.
    pub fn validate(&self) -> Result<()> {
        if self.classes.is_empty() {
            return Err(Problem::file(&self.source, "the dataset has no classes").into());
        }
        let mut seen_classes = HashSet::new();
        for c in &self.classes {
            if !seen_classes.insert(c.as_str()) {
                return Err(Problem::file(&self.source, format!("class name '{c}' appears twice")).into());
            }
        }
        let mut seen = HashSet::with_capacity(self.train.len() + self.test.len());
        for split in Split::ALL {
            let set = self.split(split);
            if set.labels.len() != set.ids.len() || set.pixels.len() != set.ids.len() * self.image_len() {
                return Err(Error::Usage(format!(
                    "{}: {split} split is inconsistent: {} ids, {} labels, {} pixel bytes for {}x{} images",
                    self.source,
                    set.ids.len(),
                    set.labels.len(),
                    set.pixels.len(),
                    self.height,
                    self.width
                )));
            }
            for (id, &label) in set.ids.iter().zip(&set.labels) {
                if !seen.insert(id.as_str()) {
                    return Err(Problem::entry(&self.source, id, "this image id appears twice").into());
                }
                if label as usize >= self.classes.len() {
                    return Err(Problem::entry(
                        &self.source,
                        id,
                        format!("label {label} is outside the class range 0..{}", self.classes.len() - 1),
                    )
                    .into());
                }
            }
        }
        if self.train.is_empty() {
            return Err(Problem::file(&self.source, "no training images found").into());
        }
        let counts = self.train.class_counts(self.classes.len());
        let empty: Vec<&str> =
            counts.iter().zip(&self.classes).filter(|(n, _)| **n == 0).map(|(_, c)| c.as_str()).collect();
        if !empty.is_empty() {
            return Err(Problem::file(
                &self.source,
                format!(
                    "class{} with no training image: {}",
                    if empty.len() > 1 { "es" } else { "" },
                    empty.join(", ")
                ),
            )
            .into());
        }
        Ok(())
    }

    /// A SHA-256 over class names, image size, and every split's ids, labels
    /// and pixels: two datasets with the same fingerprint are the same data.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for c in &self.classes {
            h.update((c.len() as u64).to_le_bytes());
            h.update(c.as_bytes());
        }
        h.update((self.height as u64).to_le_bytes());
        h.update((self.width as u64).to_le_bytes());
        for split in Split::ALL {
            let set = self.split(split);
            h.update((set.len() as u64).to_le_bytes());
            for (id, label) in set.ids.iter().zip(&set.labels) {
                h.update((id.len() as u64).to_le_bytes());
                h.update(id.as_bytes());
                h.update(label.to_le_bytes());
            }
            h.update(&set.pixels);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// How to load a dataset, beyond where it is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadOptions {
    /// Resize every image to `(height, width)` pixels instead of requiring all
    /// images to share one size.
    pub resize: Option<(usize, usize)>,
    /// Class names, for sources that do not carry them (Parquet without
    /// Hugging Face metadata); overrides names found in the source.
    pub classes: Option<Vec<String>>,
    /// A labels file (CSV or Parquet, columns `id,label`) whose labels replace
    /// the dataset's own.
    pub labels: Option<PathBuf>,
    /// Show progress bars on a terminal.
    #[serde(skip)]
    pub progress: bool,
}

/// Where loaders send the problems they find in single entries.
///
/// In strict mode (audits) the first problem becomes the error; in collecting
/// mode (`misfit data inspect`) problems are kept, the entry is left out, and
/// loading goes on so that one run lists them all.
#[derive(Debug)]
pub struct Problems {
    strict: bool,
    /// The problems found, up to [`Problems::KEEP`].
    pub list: Vec<Problem>,
    /// How many problems were found in all.
    pub total: usize,
    /// Things worth knowing that are not problems: entries left out on
    /// purpose (files outside the split folders), a missing test split.
    pub notes: Vec<String>,
}

impl Problems {
    /// How many problems a collecting sink keeps word for word.
    pub const KEEP: usize = 200;

    /// A sink that turns the first problem into an error.
    pub fn strict() -> Self {
        Problems { strict: true, list: Vec::new(), total: 0, notes: Vec::new() }
    }

    /// A sink that records problems and lets loading go on.
    pub fn collecting() -> Self {
        Problems { strict: false, list: Vec::new(), total: 0, notes: Vec::new() }
    }

    /// Reports a problem: an error in strict mode, a record otherwise (the
    /// caller then leaves the entry out).
    pub fn report(&mut self, p: Problem) -> Result<()> {
        if self.strict {
            return Err(p.into());
        }
        self.total += 1;
        if self.list.len() < Self::KEEP {
            self.list.push(p);
        }
        Ok(())
    }

    /// Records a note (not a problem).
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }
}

/// A short dataset name from a path: its file name without archive or
/// Parquet extensions (`cifar10-jpeg.tar.gz` gives `cifar10-jpeg`).
pub fn name_from_path(path: &std::path::Path) -> String {
    let name = path
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "dataset".to_string());
    let lower = name.to_lowercase();
    for ext in [".tar.gz", ".tgz", ".tar", ".parquet"] {
        if lower.ends_with(ext) {
            return name[..name.len() - ext.len()].to_string();
        }
    }
    name
}

/// Loads a dataset from a spec, stopping at the first problem.
pub fn load(spec: &DatasetSpec, opts: &LoadOptions) -> Result<Dataset> {
    load_with(spec, opts, &mut Problems::strict())
}

/// Loads a dataset from a spec, sending entry problems to `problems`.
pub fn load_with(spec: &DatasetSpec, opts: &LoadOptions, problems: &mut Problems) -> Result<Dataset> {
    let ds = match spec {
        DatasetSpec::Demo(cfg) => demo::generate(cfg).dataset,
        DatasetSpec::CifarBinary(path) => cifar_bin::load(path, problems)?,
        DatasetSpec::ImageFolder(path) => folder::load(path, opts, problems)?,
        DatasetSpec::Parquet(path) => hf_parquet::load(path, opts, problems)?,
    };
    finish(ds, spec, opts)
}

/// What every loader's output goes through: class names from `--classes`,
/// resizing, a labels file, and [`Dataset::validate`].
pub fn finish(mut ds: Dataset, spec: &DatasetSpec, opts: &LoadOptions) -> Result<Dataset> {
    if let Some(classes) = &opts.classes {
        // Parquet loaders take the names themselves (the file may have none).
        if !matches!(spec, DatasetSpec::Parquet(_)) {
            if classes.len() != ds.classes.len() {
                return Err(Error::Usage(format!(
                    "--classes names {} classes but {} has {}",
                    classes.len(),
                    ds.source,
                    ds.classes.len()
                )));
            }
            ds.classes = classes.clone();
        }
    }
    if let Some((h, w)) = opts.resize {
        if (h, w) != (ds.height, ds.width) {
            decode::resize_dataset(&mut ds, h, w);
        }
    }
    if let Some(path) = &opts.labels {
        labels::apply(&mut ds, path)?;
    }
    ds.validate()?;
    Ok(ds)
}

//! The gallery stage: the images a person looks at, as small PNG files in
//! the run folder (`gallery/`), so that the report and `misfit ticket` show
//! them without reloading the dataset: every flagged image (likely
//! mislabeled, ambiguous, outlier, duplicate; the most suspicious first, at
//! most [`MAX_IMAGES`]), the nearest training neighbours of the most
//! suspicious, and both images of every duplicate pair. It owns
//! `gallery.parquet` (which file shows which image id).

use crate::run::columns::gallery::GALLERY;
use arrow::array::RecordBatch;
use std::collections::BTreeMap;

use super::Samples;
use crate::data::{Dataset, Split};
use crate::error::{Error, Result};
use crate::quality::Scores;
use crate::run::schema;
use crate::run::table::TableBuilder;
use crate::run::RunWriter;

/// The folder of the run that holds the images.
pub const GALLERY_DIR: &str = "gallery";

/// At most this many images (the most suspicious flagged images first):
/// 2,000 images of 32x32 are about 4 MB.
pub const MAX_IMAGES: usize = 2000;

/// The most suspicious images whose neighbours are kept too.
pub const WITH_NEIGHBORS: usize = 48;

/// Neighbours kept per suspicious image.
pub const NEIGHBORS: usize = 3;

/// Misclassified test images kept per (given, predicted) pair: a confused
/// pair's ticket shows them.
pub const MISSES_PER_PAIR: usize = 24;

/// The sample rows of the gallery, with why each is there, in row order;
/// `test_pred` is the model's prediction for each test image.
pub fn select(s: &Samples, sc: &Scores, test_pred: &[u32]) -> BTreeMap<usize, &'static str> {
    let n_train = s.n_train();
    let mut chosen: BTreeMap<usize, &'static str> = BTreeMap::new();
    // Flagged training images, most suspicious first.
    let mut flagged: Vec<usize> = (0..sc.images.len())
        .filter(|&i| {
            let f = &sc.images[i].flags;
            f.likely_mislabeled || f.ambiguous || f.outlier || f.duplicate
        })
        .collect();
    let score = |i: usize| sc.images[i].issue_score.unwrap_or(0.0);
    flagged.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
    for (rank, &i) in flagged.iter().enumerate() {
        if chosen.len() >= MAX_IMAGES {
            break;
        }
        chosen.insert(i, "flagged");
        if rank < WITH_NEIGHBORS && i < n_train {
            if let Some((train_nb, _)) = &sc.neighbors {
                for &j in train_nb.of(i).iter().take(NEIGHBORS) {
                    chosen.entry(j as usize).or_insert("neighbor");
                }
            }
        }
    }
    for p in &sc.duplicates {
        chosen.insert(p.a, "duplicate");
        chosen.insert(s.row(p.b_split(), p.b), "duplicate");
    }
    let mut per_pair: BTreeMap<(u32, u32), usize> = BTreeMap::new();
    for (i, (&label, &pred)) in s.test_labels.iter().zip(test_pred).enumerate() {
        let n = per_pair.entry((label, pred)).or_insert(0);
        if label != pred && *n < MISSES_PER_PAIR {
            *n += 1;
            chosen.entry(s.row(Split::Test, i)).or_insert("missed");
        }
    }
    chosen
}

/// Writes the chosen images as PNGs under the run's [`GALLERY_DIR`] and returns `gallery.parquet`.
pub fn write(
    ds: &Dataset,
    s: &Samples,
    chosen: &BTreeMap<usize, &'static str>,
    writer: &RunWriter,
) -> Result<RecordBatch> {
    let dir = writer.path(GALLERY_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let (h, w) = (ds.height, ds.width);
    let mut ids = Vec::new();
    let mut files = Vec::new();
    let mut reasons = Vec::new();
    for (&row, &reason) in chosen {
        let (split, r) = s.locate(row);
        let img = image::RgbImage::from_raw(w as u32, h as u32, ds.image(split, r).to_vec()).expect("whole image");
        let file = format!("{GALLERY_DIR}/{row:06}.png");
        let path = writer.path(&file);
        let mut bytes = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
            .map_err(|e| Error::io(&path, std::io::Error::other(e)))?;
        crate::atomic::write(&path, &bytes)?;
        ids.push(s.id(row));
        files.push(file);
        reasons.push(reason);
    }
    Ok(TableBuilder::new(&GALLERY)
        .utf8("id", ids)
        .utf8("file", files)
        .utf8("reason", reasons)
        .finish_table(&schema::GALLERY))
}

/// The gallery stage: chooses the images (flagged by the scores, behind
/// test mistakes by influence) and writes them.
pub struct Gallery;

/// What the gallery stage made: `gallery.parquet`, its images already written.
pub struct Shown(pub RecordBatch);

impl super::Stage for Gallery {
    fn name(&self) -> &'static str {
        "gallery"
    }

    fn run(&self, run: &super::RunState, writer: &RunWriter) -> Result<Option<Box<dyn super::Made>>> {
        let Some(ds) = run.dataset else { return Ok(None) };
        let sc = run.get::<super::scores::Scored>().expect("the scores stage runs before the gallery");
        let mut chosen = select(&run.samples, &sc.scores, &run.outputs.pred[run.samples.n_train()..]);
        if let Some(i) = run.get::<super::influence::InfluenceStage>() {
            for row in i.gallery_rows() {
                chosen.entry(row).or_insert("influence");
            }
        }
        Ok(Some(Box::new(Shown(write(ds, &run.samples, &chosen, writer)?))))
    }
}

impl super::Made for Shown {
    fn write(&self, _run: &super::RunState, writer: &mut RunWriter) -> Result<()> {
        writer.write(&schema::GALLERY, &self.0)
    }
}

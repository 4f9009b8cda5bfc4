//! The influence stage: which training images make the model miss. For
//! every misclassified test image (which includes every confused image the
//! explain stage explains), its top-k training proponents and opponents by
//! TracIn restricted to the last layer ([`crate::tracin`]), with the test
//! image's loss taken at its (wrong) prediction: a proponent is a training
//! image whose gradient step pushes the test image towards the wrong class.
//! Also every training image's self-influence, and how many test mistakes
//! it is a top proponent of.
//!
//! It owns `influence.parquet`, `samples.parquet`'s `test_mistakes_supported`
//! and `self_influence`, and `run.json`'s `influence` section.

use crate::run::columns::influence::{INFLUENCE, SAMPLE_INFLUENCE};
use arrow::array::RecordBatch;
use candle_core::DType;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

use super::model::ModelStage;
use super::Samples;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::{Params, ResNet};
use crate::progress::{Overall, INFER_UNITS};
use crate::quality::Scores;
use crate::run::schema;
use crate::run::table::{Columns, TableBuilder};
use crate::tracin::{self, Checkpoint, Hit, InfluenceInput};

/// Proponents and opponents kept per test mistake.
pub const TOP_K: usize = 10;

/// Training images behind the most test mistakes whose strips the gallery keeps.
pub const GALLERY_SOURCES: usize = 20;

/// `run.json`'s `influence` section.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InfluenceSummary {
    /// The checkpoints summed, in words, with their weights.
    pub checkpoints: Vec<CheckpointSummary>,
    /// What a reader must know of them ("one checkpoint: ...").
    pub note: String,
    /// Misclassified test images ranked against the training images.
    pub test_mistakes: usize,
    /// Training images ranked.
    pub train_images: usize,
    /// Proponents and opponents kept per test mistake.
    pub k: usize,
    /// Training images that are a top proponent of at least one test mistake.
    pub supporting_train_images: usize,
    /// Wall time of the products and ranking, seconds.
    pub seconds: f64,
}

impl crate::run::Section for InfluenceSummary {
    const KEY: &'static str = "influence";
}

/// One checkpoint of the sum.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointSummary {
    /// Which model, in words.
    pub model: String,
    /// Its weight in the sum (the learning rate there; 1 for one checkpoint).
    pub weight: f32,
}

/// What the stage made.
pub struct InfluenceStage {
    /// Test row of each test mistake (queries).
    mistakes: Vec<usize>,
    proponents: Vec<Vec<Hit>>,
    opponents: Vec<Vec<Hit>>,
    /// Per training image `[n_train]`.
    self_influence: Vec<f64>,
    /// Per training image: test mistakes it is a top proponent of.
    supported: Vec<u32>,
    pub summary: InfluenceSummary,
}

/// The head's weight `[classes, dim]` and bias `[classes]` of `model`, f32.
pub fn head(model: &ResNet) -> Result<(Vec<f32>, Vec<f32>)> {
    let t = model.params.tensors();
    let get = |name: &str| -> Result<Vec<f32>> {
        let v = t.get(name).ok_or_else(|| Error::Usage(format!("influence: the model has no {name}")))?;
        Ok(v.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?)
    };
    Ok((get("linear.weight")?, get("linear.bias")?))
}

/// A checkpoint's head, features and weight (see [`Checkpoint`]): made
/// here, or borrowed from the model stage.
struct Owned<'a> {
    name: String,
    weight: Vec<f32>,
    bias: Vec<f32>,
    /// `[n_train, dim]`; zeros for the rows its model did not train on.
    train_features: Cow<'a, [f32]>,
    /// `[mistakes, dim]`.
    query_features: Vec<f32>,
    lr: f32,
    trained: Option<&'a [bool]>,
}

/// Runs the stage over the run's model stage: TracIn summed over the
/// snapshots of the models trained here (each training image over those of
/// the models that trained on it), or, for an imported model, its one
/// checkpoint. `pred` is the run's prediction of every sample (train rows
/// first); `overall` is advanced by the snapshots' predictions.
pub fn run(
    stage: &ModelStage,
    ds: &Dataset,
    s: &Samples,
    pred: &[u32],
    overall: Option<&Overall>,
) -> Result<InfluenceStage> {
    let started = std::time::Instant::now();
    let model = &stage.model;
    let dim = model.config.feature_dim();
    let n_train = s.n_train();
    let mistakes: Vec<usize> =
        (0..s.test_ids.len()).filter(|&r| pred[s.row(crate::data::Split::Test, r)] != s.test_labels[r]).collect();
    let targets: Vec<u32> = mistakes.iter().map(|&r| pred[n_train + r]).collect();
    let (h, w) = (ds.height, ds.width);
    let len = h * w * 3;
    let mut owned = Vec::new();
    if stage.traced.is_empty() {
        let what = stage.summary.checkpoint_name();
        let (weight, bias) = head(model)?;
        owned.push(Owned {
            name: what,
            weight,
            bias,
            train_features: Cow::Borrowed(&stage.train_features),
            query_features: mistakes
                .iter()
                .flat_map(|&r| stage.test_features[r * dim..(r + 1) * dim].iter().copied())
                .collect(),
            lr: 1.0,
            trained: None,
        });
    } else {
        let query_px: Vec<u8> =
            mistakes.iter().flat_map(|&r| ds.test.pixels[r * len..(r + 1) * len].iter().copied()).collect();
        for m in &stage.traced {
            let rows: Vec<usize> = (0..n_train).filter(|&i| m.trained[i]).collect();
            let px: Vec<u8> =
                rows.iter().flat_map(|&i| ds.train.pixels[i * len..(i + 1) * len].iter().copied()).collect();
            for snap in &m.snapshots {
                let name = format!("{}, epoch {}", m.label, snap.epoch);
                let params = Params::from_tensors(&model.config, snap.tensors.clone(), &name, model.device())?;
                let net = ResNet::new(model.config.clone(), params)?;
                let tr = crate::model::predict(&net, &px, rows.len(), h, w, 256)?;
                let mut train_features = vec![0f32; n_train * dim];
                for (j, &i) in rows.iter().enumerate() {
                    train_features[i * dim..(i + 1) * dim].copy_from_slice(&tr.features[j * dim..(j + 1) * dim]);
                }
                let q = crate::model::predict(&net, &query_px, mistakes.len(), h, w, 256)?;
                if let Some(o) = overall {
                    o.advance(INFER_UNITS * (rows.len() + mistakes.len()) as f64);
                }
                let (weight, bias) = head(&net)?;
                owned.push(Owned {
                    name,
                    weight,
                    bias,
                    train_features: Cow::Owned(train_features),
                    query_features: q.features,
                    lr: snap.lr_weight as f32,
                    trained: Some(&m.trained),
                });
            }
        }
    }
    let cps: Vec<Checkpoint> = owned
        .iter()
        .map(|o| Checkpoint {
            name: &o.name,
            weight: &o.weight,
            bias: &o.bias,
            train_features: &o.train_features,
            query_features: &o.query_features,
            lr: o.lr,
            trained: o.trained,
        })
        .collect();
    let input = InfluenceInput {
        classes: s.classes.len(),
        dim,
        train_labels: s.train_labels,
        query_targets: &targets,
        checkpoints: &cps,
        k: TOP_K,
    };
    let out = tracin::influence(&input)?;
    let mut supported = vec![0u32; n_train];
    for h in out.proponents.iter().flatten() {
        supported[h.train as usize] += 1;
    }
    let note = if stage.traced.is_empty() {
        format!(
            "one checkpoint, {}: influence is the gradient product at the model as it ended, not summed over \
             training (TracInCP with one checkpoint); the test image's loss is taken at its wrong prediction",
            owned[0].name
        )
    } else {
        let models: Vec<&str> = stage.traced.iter().map(|m| m.label.as_str()).collect();
        let epochs: Vec<String> = stage.traced[0].snapshots.iter().map(|s| s.epoch.to_string()).collect();
        let sum = if epochs.len() == 1 {
            format!("one checkpoint per model, at the end of its training (epoch {})", epochs[0])
        } else {
            format!(
                "TracInCP over the checkpoints after epochs {} of each model, each weighted by the learning rate \
                 summed over the epochs it stands for",
                epochs.join(", ")
            )
        };
        format!(
            "{sum} ({}); a training image's influence comes only from the models that trained on it, and the test \
             image's loss is taken at its wrong prediction",
            models.join(", ")
        )
    };
    let summary = InfluenceSummary {
        checkpoints: owned.iter().map(|o| CheckpointSummary { model: o.name.clone(), weight: o.lr }).collect(),
        note,
        test_mistakes: mistakes.len(),
        train_images: n_train,
        k: TOP_K,
        supporting_train_images: supported.iter().filter(|&&c| c > 0).count(),
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(InfluenceStage {
        mistakes,
        proponents: out.proponents,
        opponents: out.opponents,
        self_influence: out.self_influence,
        supported,
        summary,
    })
}

impl InfluenceStage {
    /// `influence.parquet`: proponents then opponents of each test mistake, by rank.
    pub fn table(&self, s: &Samples, pred: &[u32], sc: &Scores) -> RecordBatch {
        let n_train = s.n_train();
        // (query, sign, rank, hit)
        let mut rows: Vec<(usize, &'static str, usize, Hit)> = Vec::new();
        for q in 0..self.mistakes.len() {
            for (sign, hits) in [("proponent", &self.proponents[q]), ("opponent", &self.opponents[q])] {
                rows.extend(hits.iter().enumerate().map(|(r, &h)| (q, sign, r + 1, h)));
            }
        }
        let name = |c: u32| s.classes[c as usize].as_str();
        let test_row = |q: usize| self.mistakes[q];
        let given = |q: usize| s.test_labels[test_row(q)];
        let predicted = |q: usize| pred[n_train + test_row(q)];
        let img = |h: &Hit| &sc.images[h.train as usize];
        TableBuilder::new(&INFLUENCE)
            .utf8("test_id", rows.iter().map(|r| s.test_ids[test_row(r.0)].as_str()))
            .utf8("test_label_name", rows.iter().map(|r| name(given(r.0))))
            .utf8("test_pred_name", rows.iter().map(|r| name(predicted(r.0))))
            .utf8("pair", rows.iter().map(|r| format!("{} -> {}", name(given(r.0)), name(predicted(r.0)))))
            .utf8("sign", rows.iter().map(|r| r.1))
            .i32("rank", rows.iter().map(|r| r.2 as i32))
            .utf8("train_id", rows.iter().map(|r| s.train_ids[r.3.train as usize].as_str()))
            .utf8("train_label_name", rows.iter().map(|r| name(s.train_labels[r.3.train as usize])))
            .f64("influence", rows.iter().map(|r| r.3.influence as f64))
            .bool("likely_mislabeled", rows.iter().map(|r| img(&r.3).flags.likely_mislabeled))
            .bool("ambiguous", rows.iter().map(|r| img(&r.3).flags.ambiguous))
            .bool("outlier", rows.iter().map(|r| img(&r.3).flags.outlier))
            .bool("duplicate", rows.iter().map(|r| img(&r.3).flags.duplicate))
            .opt_utf8("suggested_label_name", rows.iter().map(|r| img(&r.3).suggested_label.map(name)))
            .finish_table(&schema::INFLUENCE)
    }

    /// `samples.parquet`'s influence columns for `n` samples (train rows first; null for test rows).
    pub fn sample_columns(&self, n: usize) -> Columns {
        let n_train = self.self_influence.len();
        TableBuilder::new(&SAMPLE_INFLUENCE)
            .opt_i32("test_mistakes_supported", (0..n).map(|i| (i < n_train).then(|| self.supported[i] as i32)))
            .opt_f64("self_influence", (0..n).map(|i| (i < n_train).then(|| self.self_influence[i])))
            .finish()
    }

    /// Sample rows (train first) the gallery keeps for the report's strips
    /// and the tickets: the [`GALLERY_SOURCES`] training images behind the
    /// most test mistakes (at least 2), and for each the test mistake it
    /// pushes hardest with that mistake's 3 strongest proponents.
    pub fn gallery_rows(&self) -> Vec<usize> {
        let n_train = self.supported.len();
        let mut sources: Vec<usize> = (0..n_train).filter(|&i| self.supported[i] >= 2).collect();
        sources.sort_by(|&a, &b| self.supported[b].cmp(&self.supported[a]).then(a.cmp(&b)));
        sources.truncate(GALLERY_SOURCES);
        let mut rows = Vec::new();
        for &i in &sources {
            rows.push(i);
            // (rank, -influence, query) of the mistakes it is a proponent of: the best one.
            let best = (0..self.mistakes.len())
                .filter_map(|q| {
                    let r = self.proponents[q].iter().position(|h| h.train as usize == i)?;
                    Some((r, -self.proponents[q][r].influence, q))
                })
                .min_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
            if let Some((_, _, q)) = best {
                rows.push(n_train + self.mistakes[q]);
                rows.extend(self.proponents[q].iter().take(3).map(|h| h.train as usize));
            }
        }
        rows
    }

    /// Per training image `[n_train]`: self-influence.
    pub fn self_influence(&self) -> &[f64] {
        &self.self_influence
    }
}

/// The influence stage: TracIn over the model stage's checkpoints.
pub struct Influence;

impl super::Stage for Influence {
    fn name(&self) -> &'static str {
        "influence"
    }

    fn line(&self, _run: &super::RunState) -> Option<&'static str> {
        Some("influence of training images on test mistakes")
    }

    fn run(&self, run: &super::RunState, _writer: &crate::run::RunWriter) -> Result<Option<Box<dyn super::Made>>> {
        let Some(ds) = run.dataset else { return Ok(None) };
        let m = run.get::<ModelStage>().expect("the model stage runs before the influence stage");
        let stage = self::run(m, ds, &run.samples, &run.outputs.pred, run.overall)?;
        Ok(Some(Box::new(stage)))
    }
}

impl super::Made for InfluenceStage {
    fn sample_columns(&self, run: &super::RunState) -> Vec<Columns> {
        vec![InfluenceStage::sample_columns(self, run.samples.len())]
    }

    fn write(&self, run: &super::RunState, writer: &mut crate::run::RunWriter) -> Result<()> {
        let sc = run.get::<super::scores::Scored>().expect("the scores stage runs before the influence table");
        writer.write(&schema::INFLUENCE, &self.table(&run.samples, &run.outputs.pred, &sc.scores))
    }

    fn section(&self, manifest: &mut crate::run::RunManifest) {
        manifest.set(&self.summary);
    }
}

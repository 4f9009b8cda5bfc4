//! `misfit audit`: the whole investigation into one run folder, as a list of
//! stages ([`crate::stages`]): data (load), model (train with K-fold
//! cross-validation, or import), evaluate (the test split), scores (label
//! quality, embeddings, neighbours, duplicates), attacks, and the self-check
//! against planted or injected problems; each stage's tables go to the one
//! run writer ([`RunWriter`]) and its section into `run.json`.

pub mod noise;

use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

pub use noise::NoiseKind;

use crate::attack::AttackConfig;
use crate::data::demo::{DemoConfig, DemoTruth};
use crate::data::{Dataset, DatasetSpec, LoadOptions, Problems};
use crate::error::{Error, Problem, Result};
use crate::findings::{self, Findings, RuleSet};
use crate::model::{self, DeviceChoice};
use crate::progress::{Overall, ATTACK_STEP_UNITS, INFER_UNITS, SCORE_UNITS};
use crate::quality::{self, neighbors, Embeddings, Pixels, ScoreConfig, ScoreInput};
use crate::run::{schema, RunConfig, RunManifest, RunWriter};
use crate::saliency::ExplainConfig;
use crate::stages::model::ModelStage;
use crate::stages::{self, data, evaluate, scores as score_stage, selfcheck, Samples};
use crate::table::{self, TableMeta};
use crate::train::recipe::ModelOptions;

/// What an audit is asked to do.
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// The dataset.
    pub spec: DatasetSpec,
    /// How to load it.
    pub load: LoadOptions,
    /// Folder that holds run folders (`outputs/`).
    pub outputs: PathBuf,
    /// Name of this run's folder; by default the dataset's name.
    pub run_name: Option<String>,
    /// Seed of every random choice of the run.
    pub seed: u64,
    /// The model stage.
    pub model: ModelOptions,
    /// Progress bars and per-epoch lines on standard error.
    pub progress: bool,
    /// Self-check: flip this share of the training labels before training.
    pub inject_noise: Option<(f64, NoiseKind)>,
    /// The attack stage (None: skipped).
    pub attack: Option<AttackConfig>,
    /// The explain stage (None: skipped).
    pub explain: Option<ExplainConfig>,
    /// The scores stage: neighbours per image and the index (its seed is the run's).
    pub scores: ScoreConfig,
}

/// An audit's configuration as recorded in `run.json` and in every table's
/// metadata (`misfit.config`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditConfig {
    /// The dataset argument as given.
    pub dataset: String,
    pub load: LoadOptions,
    pub seed: u64,
    pub model: ModelOptions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demo: Option<DemoConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_noise: Option<(f64, NoiseKind)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack: Option<AttackConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<ExplainConfig>,
}

/// Runs an audit and returns where the run was written and its manifest.
pub fn run(opts: &AuditOptions) -> Result<(PathBuf, RunManifest)> {
    run_with_findings(opts, None).map(|(dest, manifest, _)| (dest, manifest))
}

/// [`run`], with the findings under `rules` (and the folders they came
/// from) computed before the run is moved into place: a rule that fails
/// leaves the previous run of that name as it was.
pub fn run_with_findings(
    opts: &AuditOptions,
    rules: Option<(&RuleSet, &[String])>,
) -> Result<(PathBuf, RunManifest, Option<Findings>)> {
    let audit = Audit::start(opts)?;
    let t = Instant::now();
    let stage = stages::model::run(
        &audit.dataset,
        &opts.spec,
        opts.seed,
        &opts.model,
        &audit.device,
        &audit.state_dir,
        opts.progress,
        Some(&audit.overall),
    )?;
    audit.finish_with(stage, t.elapsed().as_secs_f64(), rules)
}

/// What an audit with these options would refuse about this dataset, each
/// in words (the caller names the dataset): a missing test split, fewer training images
/// than folds (training runs only), no more training images than neighbours
/// per image. Checked before any training, and listed by
/// `misfit data inspect` (with the default options).
pub fn refusals(spec: &DatasetSpec, ds: &Dataset, model: &ModelOptions, scores: &ScoreConfig) -> Vec<String> {
    let mut out = Vec::new();
    if ds.test.is_empty() {
        out.push("the audit needs a test split, and this dataset has none (misfit score needs none)".to_string());
    }
    let n = ds.train.len();
    if model.import.is_none() {
        let on_gpu = model.device == Some(DeviceChoice::Cuda);
        let plan = crate::train::recipe::recipe(spec, n, on_gpu, model.recipe, 0).3;
        let folds = model.folds.unwrap_or(plan.folds);
        if folds > n {
            let given = match model.folds {
                Some(_) => format!("--folds {folds}"),
                None => format!("the default of {folds} folds (--folds)"),
            };
            out.push(format!("{given} needs at least {folds} training images, and there are {n}"));
        }
    }
    if scores.k >= n {
        out.push(format!(
            "--k {} neighbours per image need more training images than that, and there are {n} (give a smaller --k)",
            scores.k
        ));
    }
    out
}

/// An audit under way: the data stage done (noise injected where asked), the
/// run folder started; [`Audit::finish`] runs every stage after the model.
pub struct Audit<'a> {
    opts: &'a AuditOptions,
    started: Instant,
    timing: BTreeMap<String, f64>,
    problems: Problems,
    /// The dataset, with injected noise when asked for.
    pub dataset: Dataset,
    truth: Option<DemoTruth>,
    injected: Option<Vec<bool>>,
    /// The device the model stage and the attacks run on.
    pub device: Device,
    run_name: String,
    config: AuditConfig,
    /// The dataset's fingerprint (after noise injection).
    fingerprint: String,
    writer: RunWriter,
    /// Where the training jobs keep their per-epoch state.
    pub state_dir: PathBuf,
    /// The whole audit's progress and time left.
    pub overall: Overall,
}

/// The audit's work in [`Overall`]'s units (training image-steps): the
/// probe of `--noise confusion`, the training runs, the predictions, the
/// scores and the attacks, each from the options and the dataset's size.
fn planned_units(opts: &AuditOptions, ds: &Dataset, device: &Device) -> Result<f64> {
    let (n_train, n_test) = (ds.train.len(), ds.test.len());
    let mut units = SCORE_UNITS * (n_train + n_test) as f64;
    if opts.model.import.is_none() {
        let (_, t, plan) = crate::train::recipe::setup(ds, &opts.spec, opts.seed, &opts.model, device.is_cuda())?;
        units += crate::train::cv::planned_image_steps(n_train, t.epochs, &plan);
        units += INFER_UNITS * crate::train::cv::planned_predictions(n_train, n_test, &plan);
        units += INFER_UNITS * crate::train::cv::planned_tracin_predictions(n_train, t.epochs, &plan);
        if matches!(opts.inject_noise, Some((_, NoiseKind::Confusion))) {
            units += (n_train * plan.probe_epochs) as f64 + INFER_UNITS * n_test as f64;
        }
    } else {
        units += INFER_UNITS * (n_train + n_test) as f64;
    }
    if let Some(a) = &opts.attack {
        let k = ds.classes.len().max(1);
        let victims = a.per_class.map_or(n_test, |m| (m * k).min(n_test)) + a.train_per_class * k;
        // Every attack at every budget of its norm, each restart's steps;
        // the radius bisection about as much again.
        let per_budget = |s: &crate::attack::AttackSpec| match s.method {
            crate::attack::Method::Fgsm => 1,
            crate::attack::Method::Pgd => a.steps * a.restarts,
        };
        let steps: usize = a.attacks.iter().map(|s| a.budgets(s.norm).len() * per_budget(s)).sum();
        units += ATTACK_STEP_UNITS * (victims * steps * if a.radius { 2 } else { 1 }) as f64;
    }
    Ok(units)
}

impl<'a> Audit<'a> {
    /// Loads the dataset, injects noise where asked, checks the options that
    /// would otherwise fail after training, and starts the run folder.
    pub fn start(opts: &'a AuditOptions) -> Result<Self> {
        let started = Instant::now();
        // Options first, then the dataset against them: nothing that can be
        // known now may fail after an hour of training.
        opts.model.validate()?;
        opts.scores.validate_options()?;
        if let Some(a) = &opts.attack {
            a.validate_options()?;
        }
        if let Some(e) = &opts.explain {
            e.validate()?;
        }
        let mut problems = Problems::strict();
        let data::DataStage { dataset: mut ds, truth } = data::load(&opts.spec, &opts.load, &mut problems)?;
        if let Some(first) = refusals(&opts.spec, &ds, &opts.model, &opts.scores).into_iter().next() {
            return Err(Problem::file(&ds.source, first).into());
        }
        // Before any training: a typo in an attack's target should not cost a training run.
        if let Some(a) = &opts.attack {
            a.validate(&ds.classes)?;
        }
        let device = model::select_device(opts.model.device.unwrap_or(DeviceChoice::Auto))?;
        let overall = Overall::new(planned_units(opts, &ds, &device)?);
        let injected = match opts.inject_noise {
            Some((rate, kind)) if (0.0..1.0).contains(&rate) => {
                let confusion = match kind {
                    NoiseKind::Confusion => {
                        let (m, source) = noise::probe_confusion(
                            &ds,
                            &opts.spec,
                            opts.seed,
                            &opts.model,
                            &device,
                            opts.progress,
                            Some(&overall),
                        )?;
                        problems.note(format!("--noise confusion follows the test-split confusion of {source}"));
                        Some(m)
                    }
                    _ => None,
                };
                let k = ds.classes.len();
                Some(noise::inject_noise(&mut ds.train.labels, k, rate, kind, opts.seed, confusion.as_deref()))
            }
            Some((rate, _)) => {
                return Err(Error::Usage(format!("--inject-noise {rate}: give a share from 0 to below 1")))
            }
            None => None,
        };
        let mut timing = BTreeMap::new();
        timing.insert("load".to_string(), started.elapsed().as_secs_f64());
        let run_name = opts.run_name.clone().unwrap_or_else(|| ds.name.clone());
        let config = AuditConfig {
            dataset: opts.spec.to_string(),
            load: opts.load.clone(),
            seed: opts.seed,
            model: opts.model.clone(),
            demo: match &opts.spec {
                DatasetSpec::Demo(cfg) => Some(cfg.clone()),
                _ => None,
            },
            inject_noise: opts.inject_noise,
            // The attacks draw from the run's seed: record the seed they use.
            attack: opts.attack.clone().map(|a| AttackConfig { seed: opts.seed, ..a }),
            explain: opts.explain.clone().map(|e| ExplainConfig { seed: opts.seed, ..e }),
        };
        let config_json = serde_json::to_value(&config).expect("config serialises").to_string();
        let meta = TableMeta { config_json, dataset_fingerprint: ds.fingerprint() };
        let fingerprint = meta.dataset_fingerprint.clone();
        let writer = RunWriter::create(&opts.outputs, &run_name, meta)?;
        let state_dir = opts.outputs.join(format!(".{run_name}.train"));
        Ok(Audit {
            opts,
            started,
            timing,
            problems,
            dataset: ds,
            truth,
            injected,
            device,
            run_name,
            config,
            fingerprint,
            writer,
            state_dir,
            overall,
        })
    }

    /// Runs the stages after the model (`model_s`: the model stage's wall
    /// time): evaluate, scores, attacks, self-check; writes every table and
    /// `run.json` and moves the run into place.
    pub fn finish(self, stage: ModelStage, model_s: f64) -> Result<(PathBuf, RunManifest)> {
        self.finish_with(stage, model_s, None).map(|(dest, manifest, _)| (dest, manifest))
    }

    /// [`Audit::finish`], with the findings under `rules` computed before
    /// the run is moved into place (see [`run_with_findings`]).
    pub fn finish_with(
        self,
        stage: ModelStage,
        model_s: f64,
        rules: Option<(&RuleSet, &[String])>,
    ) -> Result<(PathBuf, RunManifest, Option<Findings>)> {
        let Audit {
            opts,
            started,
            mut timing,
            mut problems,
            dataset: ds,
            truth,
            injected,
            run_name,
            config,
            fingerprint,
            mut writer,
            state_dir,
            overall,
            ..
        } = self;
        timing.insert("model".to_string(), model_s);
        // "scores ... (audit 83%, about 4 min left)" before each later stage.
        let stage_line = |what: &str| {
            if opts.progress {
                eprintln!("{what} ({})", overall.status());
            }
        };
        let t2 = Instant::now();
        let k = ds.classes.len();
        let samples = Samples::of(&ds);
        let n_train = ds.train.len();
        let outputs = evaluate::sample_outputs(&stage.logits(), k, &samples.labels());
        let eval = evaluate::evaluate(&ds.test.labels, &outputs.pred[n_train..], k);
        timing.insert("evaluate".to_string(), t2.elapsed().as_secs_f64());

        let t3 = Instant::now();
        stage_line("scores (neighbours, duplicates, confident learning)");
        let dim = stage.model.config.feature_dim();
        let train_emb = neighbors::normalize(&stage.train_features, dim);
        let test_emb = neighbors::normalize(&stage.test_features, dim);
        let aum = stage.aum();
        let null_probs: Vec<f32> = stage
            .fold_test_logits
            .iter()
            .flat_map(|l| l.chunks_exact(k).flat_map(crate::stats::softmax))
            .map(|p| p as f32)
            .collect();
        let input = ScoreInput {
            source: "the model's probabilities",
            classes: k,
            train_labels: &ds.train.labels,
            probs: &outputs.probs[..n_train * k],
            test_labels: &ds.test.labels,
            test_probs: &outputs.probs[n_train * k..],
            embeddings: Some(Embeddings { dim, train: &train_emb, test: &test_emb }),
            pixels: Some(Pixels { height: ds.height, width: ds.width, train: &ds.train.pixels, test: &ds.test.pixels }),
            aum: aum.as_deref(),
            held_out_null: stage.fold.is_some() && opts.scores.held_out_bound,
            null_probs: &null_probs,
        };
        let score_cfg = ScoreConfig { seed: opts.seed, ..opts.scores.clone() };
        for note in quality::small_class_notes(&ds.train.labels, &ds.classes, score_cfg.k) {
            problems.note(note);
        }
        let sc = quality::score(&input, &score_cfg)?;
        if let Some(r) = &sc.recall {
            if !r.reached_target {
                problems.note(format!(
                    "{} recall@{} is {:.3} at ef/nprobe {} (target {}): neighbours may be missing",
                    r.index, score_cfg.k, r.recall, r.ef_search, score_cfg.recall_target
                ));
            }
        }
        if stage.fold.is_none() && !ds.test.labels.is_empty() {
            problems.note(
                "training-image probabilities are in sample (imported model): their flags are weak evidence; \
                 the test split's flags, from out-of-sample probabilities, are the primary label audit",
            );
        }
        let known = selfcheck::Known { truth: truth.as_ref(), injected: injected.as_deref() };
        let checks = selfcheck::run(&ds, &known, &sc, aum.as_deref(), stage.aum_threshold.as_ref());
        timing.insert("scores".to_string(), t3.elapsed().as_secs_f64());
        overall.advance(SCORE_UNITS * samples.len() as f64);

        let t_attack = Instant::now();
        if config.attack.is_some() {
            stage_line("attacks");
        }
        let mut attacked = match &config.attack {
            Some(cfg) => Some(stages::attacks::run(
                &stage.model,
                &ds,
                &stage.train_logits,
                &stage.model_test_logits,
                cfg,
                opts.progress,
            )?),
            None => None,
        };
        timing.insert("attacks".to_string(), t_attack.elapsed().as_secs_f64());
        if config.explain.is_some() {
            stage_line("saliency maps and root causes");
        }

        let t_explain = Instant::now();
        let explained = match &config.explain {
            Some(cfg) => Some(stages::explain::run(
                &stage.model,
                &ds,
                &samples,
                &outputs.pred,
                &eval.confusion,
                &sc,
                config.attack.as_ref().unwrap_or(&AttackConfig::default()),
                cfg,
                &writer,
            )?),
            None => None,
        };
        timing.insert("explain".to_string(), t_explain.elapsed().as_secs_f64());

        let t_influence = Instant::now();
        stage_line("influence of training images on test mistakes");
        let influenced = stages::influence::run(&stage, &ds, &samples, &outputs.pred, Some(&overall))?;
        timing.insert("influence".to_string(), t_influence.elapsed().as_secs_f64());

        let t4 = Instant::now();
        let n = samples.len();
        let mut parts = vec![
            data::sample_keys(&samples),
            stages::model::sample_columns(&ds.classes, &outputs, &stage.folds(n), stage.dynamics.as_ref()),
            score_stage::sample_columns(&ds.classes, &sc.images),
            score_stage::label_error_columns(&sc.images),
            stage.aum_flag(n),
        ];
        parts.extend(attacked.as_ref().map(|a| a.sample_columns(&samples)));
        parts.extend(explained.as_ref().map(|e| e.sample_columns()));
        parts.push(influenced.sample_columns(n));
        writer.write(&schema::SAMPLES, &table::assemble(&schema::SAMPLES, parts))?;
        let mut parts = vec![
            data::class_counts(&samples),
            eval.class_columns(),
            eval.confused_columns(&ds.classes),
            stages::model::class_confidence(&samples, &outputs),
            score_stage::class_columns(&sc, &ds.train.labels, k),
            score_stage::noise_interval_columns(&ds.train.labels, &outputs.probs[..n_train * k], k, score_cfg.seed),
        ];
        parts.extend(score_stage::test_class_columns(&sc, n_train, &ds.test.labels, k));
        parts.extend(attacked.iter().flat_map(|a| a.class_columns(k)));
        parts.extend(explained.as_ref().map(|e| e.class_columns()));
        writer.write(&schema::CLASSES, &table::assemble(&schema::CLASSES, parts))?;
        if let Some(e) = &explained {
            e.write_tables(&mut writer)?;
        }
        writer.write(&schema::INFLUENCE, &influenced.table(&samples, &outputs.pred, &sc))?;
        if let Some(a) = attacked.as_mut() {
            writer.write(&schema::ATTACKS, &a.attacks_table(&ds))?;
            writer.write(&schema::ATTACK_CLASSES, &a.classes_table(&ds.classes))?;
            a.write_examples(&ds, &writer)?;
        }
        writer.write(&schema::EMBEDDINGS, &score_stage::embeddings(&samples, &train_emb, &test_emb, dim))?;
        if let Some((tr, te)) = &sc.neighbors {
            writer.write(&schema::NEIGHBORS, &score_stage::neighbors(&samples, tr, te))?;
        }
        writer.write(&schema::DUPLICATES, &score_stage::duplicates(&samples, &sc.duplicates))?;
        if let Some(c) = &checks {
            writer.write(&schema::SELFCHECK, &selfcheck::table(c))?;
        }
        writer.write(&schema::CONFUSION, &eval.confusion_table(&ds.classes))?;
        if let Some(d) = &stage.dynamics {
            writer.write(&schema::DYNAMICS, &stages::model::dynamics(&ds.train.ids, d))?;
        }
        if let Some(t) = &truth {
            writer.write(&schema::PLANTED, &data::planted(t))?;
        }
        let mut chosen = stages::gallery::select(&samples, &sc, &outputs.pred[n_train..]);
        for row in influenced.gallery_rows() {
            chosen.entry(row).or_insert("influence");
        }
        writer.write(&schema::GALLERY, &stages::gallery::write(&ds, &samples, &chosen, &writer)?)?;
        stage.save(&writer.path("model.safetensors"), opts.seed)?;
        timing.insert("tables".to_string(), t4.elapsed().as_secs_f64());
        timing.insert("total".to_string(), started.elapsed().as_secs_f64());

        let mut manifest = RunManifest::new(&run_name, RunConfig::Audit(config));
        manifest.dataset = Some(data::DatasetSummary::new(&opts.spec.to_string(), &ds, fingerprint));
        manifest.notes = problems.notes;
        manifest.planted = truth.as_ref().map(data::planted_counts);
        manifest.scores = Some(score_stage::ScoresSummary::new(&sc, &score_cfg, n_train, checks.unwrap_or_default()));
        manifest.model = Some(stage.summary);
        manifest.evaluation = Some(eval);
        manifest.attacks = attacked.map(|a| a.summary);
        manifest.explain = explained.map(|e| e.summary);
        manifest.influence = Some(influenced.summary);
        manifest.timing_s = timing;
        let (dest, found) = writer.commit_with(&mut manifest, |dir| {
            rules.map(|(rules, dirs)| findings::before_commit(dir, rules, dirs)).transpose()
        })?;
        // The manifest returned is what run.json holds, findings included.
        manifest.findings = found.as_ref().map(|f| f.summary.clone());
        if state_dir.exists() {
            std::fs::remove_dir_all(&state_dir).map_err(|e| Error::io(&state_dir, e))?;
        }
        Ok((dest, manifest, found))
    }
}

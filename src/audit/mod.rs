//! `misfit audit`: the whole investigation into one run folder, as a list of
//! stages ([`crate::stages`]): data (load), model (train with K-fold
//! cross-validation, or import), evaluate (the test split), scores (label
//! quality, embeddings, neighbours, duplicates), attacks, and the self-check
//! against planted or injected problems; each stage's tables go to the one
//! run writer ([`RunWriter`]) and its section into `run.json`.

pub mod inspect;
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
use crate::quality::ScoreConfig;
use crate::run::table::TableMeta;
use crate::run::{RunManifest, RunWriter};
use crate::saliency::ExplainConfig;
use crate::stages::model::ModelStage;
use crate::stages::{self, data, evaluate, scores as score_stage, RunState, Samples, Stage};
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

impl crate::run::Section for AuditConfig {
    const KEY: &'static str = "config";
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
        units += crate::train::cv::planned_image_steps(n_train, &t, &plan);
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
            problems,
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
        let outputs = evaluate::sample_outputs(&stage.logits(), ds.classes.len(), &Samples::of(&ds).labels());
        let loaded = data::Loaded {
            truth,
            injected,
            summary: data::DatasetSummary::new(&opts.spec.to_string(), &ds, fingerprint),
            notes: problems.notes,
        };
        let made: Vec<Box<dyn stages::Made>> = vec![Box::new(loaded), Box::new(stage)];
        let mut run =
            RunState::new(Samples::of(&ds), Some(&ds), outputs, opts.seed, opts.progress, Some(&overall), made);
        // The stages after the model, in order; each reads what the earlier made.
        let list: [&dyn Stage; 6] = [
            &evaluate::Evaluate,
            &score_stage::Score { config: &opts.scores },
            &stages::attacks::Attack(config.attack.as_ref()),
            &stages::explain::Explain { config: config.explain.as_ref(), attack: config.attack.as_ref() },
            &stages::influence::Influence,
            &stages::gallery::Gallery,
        ];
        for (name, seconds) in run.run_all(&list, &writer)? {
            timing.insert(name.to_string(), seconds);
        }

        let t_tables = Instant::now();
        let mut manifest = RunManifest::new(&run_name, &config);
        run.write(&mut writer, &mut manifest)?;
        manifest.notes = run.notes();
        timing.insert("tables".to_string(), t_tables.elapsed().as_secs_f64());
        timing.insert("total".to_string(), started.elapsed().as_secs_f64());
        manifest.timing_s = timing;
        let (dest, found) = writer.commit_with(&mut manifest, |dir| {
            rules.map(|(rules, dirs)| findings::before_commit(dir, rules, dirs)).transpose()
        })?;
        // The manifest returned is what run.json holds, findings included.
        manifest.set_some(found.as_ref().map(|f| &f.summary));
        if state_dir.exists() {
            std::fs::remove_dir_all(&state_dir).map_err(|e| Error::io(&state_dir, e))?;
        }
        Ok((dest, manifest, found))
    }
}

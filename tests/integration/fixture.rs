//! A small run folder written in code, without training: a tiny demo
//! dataset, an untrained ResNet standing in for the model stage (with folds
//! and two epochs of made-up training dynamics), then every stage after the
//! model and the findings as `misfit audit` runs them. For tests of the read side (and of
//! whatever reads runs: findings, queries, reports) that must not wait for
//! a training run.

use std::path::{Path, PathBuf};

use misfit::attack::AttackConfig;
use misfit::audit::{Audit, AuditOptions};
use misfit::data::demo::DemoConfig;
use misfit::data::{DatasetSpec, LoadOptions};
use misfit::model::{ModelConfig, ResNet, Shortcut};
use misfit::quality::ScoreConfig;
use misfit::run::RunManifest;
use misfit::saliency::{ExplainConfig, MethodConfig};
use misfit::train::recipe::{channel_stats, ModelOptions};
use misfit::train::Dynamics;

/// The fixture's dataset: 10 classes of 8x8 images, 14 clean training and
/// 3 test images per class, with every kind of planted problem.
pub fn demo() -> DemoConfig {
    DemoConfig {
        size: 8,
        train_per_class: 14,
        test_per_class: 3,
        flip_rate: 0.1,
        exact_duplicates: 2,
        near_duplicates: 1,
        cross_exact_duplicates: 2,
        cross_near_duplicates: 1,
        outliers: 2,
        ..DemoConfig::default()
    }
}

/// The fixture's explain stage: every method, few samples and steps, every
/// confused pair (an untrained model confuses many).
pub fn explain() -> ExplainConfig {
    ExplainConfig {
        method: MethodConfig { smoothgrad_samples: 2, ig_steps: 4, ..MethodConfig::default() },
        pairs: 2,
        min_confusions: 1,
        per_pair: 2,
        flagged: 2,
        sanity_images: 2,
        targeted_per_pair: 2,
        ..ExplainConfig::default()
    }
}

/// Writes the fixture run `name` under `outputs`; returns its folder and manifest.
pub fn write_run(outputs: &Path, name: &str) -> (PathBuf, RunManifest) {
    let attack = AttackConfig {
        eps_linf: vec![2.0 / 255.0, 8.0 / 255.0],
        eps_l2: vec![0.25],
        steps: 2,
        per_class: Some(2),
        include_misclassified: true,
        ..AttackConfig::default()
    };
    let opts = AuditOptions {
        spec: DatasetSpec::Demo(demo()),
        load: LoadOptions::default(),
        outputs: outputs.to_path_buf(),
        run_name: Some(name.to_string()),
        seed: 3,
        model: ModelOptions::default(),
        progress: false,
        inject_noise: None,
        attack: Some(attack),
        explain: Some(explain()),
        scores: ScoreConfig::default(),
    };
    let audit = Audit::start(&opts).expect("fixture audit starts");
    let ds = &audit.dataset;
    let (mean, std) = channel_stats(&ds.train.pixels);
    let cfg = ModelConfig { depth: 8, width: 4, shortcut: Shortcut::A, classes: ds.classes.clone(), mean, std };
    let model = ResNet::init(cfg, 3, &audit.device).expect("model");
    let mut stage =
        misfit::stages::model::from_model(ds, model, "an untrained model (test fixture)".into(), &audit.device)
            .expect("predictions");
    let n = ds.train.len();
    stage.fold = Some((0..n as u32).map(|i| i % 2).collect());
    let mut dynamics = Dynamics::new(n);
    for epoch in 0..2 {
        let loss: Vec<f32> = (0..n).map(|i| ((i + epoch) % 7) as f32 / 3.0).collect();
        let margin: Vec<f32> = loss.iter().map(|l| 1.0 - l).collect();
        let correct: Vec<bool> = margin.iter().map(|m| *m > 0.0).collect();
        dynamics.push_epoch(&loss, &margin, &correct);
    }
    stage.dynamics = Some(dynamics);
    let (dir, _) = audit.finish(stage, 0.0).expect("fixture run written");
    // The findings, as `misfit audit` adds them once the run is in place.
    let rules = misfit::findings::RuleSet::load(None).expect("shipped rules");
    misfit::findings::run(&dir, &rules, &[]).expect("fixture findings");
    let manifest = misfit::run::read::Run::open(&dir).unwrap().manifest().expect("typed run.json");
    (dir, manifest)
}

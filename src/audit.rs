//! `misfit audit`: the whole investigation, stage after stage, into one run
//! folder. Today: load the dataset and write `samples.parquet` (and, for the
//! demo, `planted.parquet`) with `run.json`.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::data::{self, demo, DatasetSpec, LoadOptions, Problems};
use crate::error::Result;
use crate::run::{DatasetSummary, RunDir, RunManifest, TableEntry};
use crate::tables::{self, TableMeta};

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
}

/// The configuration recorded in `run.json` and in every table's metadata.
#[derive(Serialize)]
struct RecordedConfig<'a> {
    dataset: String,
    load: &'a LoadOptions,
    seed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    demo: Option<&'a demo::DemoConfig>,
}

/// Runs an audit and returns its manifest and where the run was written.
pub fn run(opts: &AuditOptions) -> Result<(PathBuf, RunManifest)> {
    let mut timing = BTreeMap::new();
    let t0 = Instant::now();
    let mut problems = Problems::strict();
    let (ds, truth) = match &opts.spec {
        DatasetSpec::Demo(cfg) => {
            let d = demo::generate(cfg);
            let keep_truth = opts.load.labels.is_none();
            if !keep_truth {
                problems.note("a labels file replaced the demo's labels: its planted ground truth is not reported");
            }
            (data::finish(d.dataset, &opts.spec, &opts.load)?, keep_truth.then_some(d.truth))
        }
        spec => (data::load_with(spec, &opts.load, &mut problems)?, None),
    };
    timing.insert("load".to_string(), t0.elapsed().as_secs_f64());

    let run_name = opts.run_name.clone().unwrap_or_else(|| ds.name.clone());
    let run = RunDir::create(&opts.outputs, &run_name)?;
    let demo_cfg = match &opts.spec {
        DatasetSpec::Demo(cfg) => Some(cfg),
        _ => None,
    };
    let config = RecordedConfig { dataset: opts.spec.to_string(), load: &opts.load, seed: opts.seed, demo: demo_cfg };
    let config = serde_json::to_value(&config).expect("config serialises");
    let meta = TableMeta { config_json: config.to_string(), dataset_fingerprint: ds.fingerprint() };

    let t1 = Instant::now();
    let mut written = Vec::new();
    let samples = tables::samples(&ds);
    tables::write(&run.path("samples.parquet"), &samples, &meta)?;
    written.push(TableEntry { file: "samples.parquet".into(), rows: samples.num_rows(), row: "one image".into() });
    let mut planted = None;
    if let Some(truth) = &truth {
        let batch = tables::planted(truth);
        tables::write(&run.path("planted.parquet"), &batch, &meta)?;
        written.push(TableEntry {
            file: "planted.parquet".into(),
            rows: batch.num_rows(),
            row: "one planted problem".into(),
        });
        let mut counts = BTreeMap::new();
        for p in &truth.problems {
            *counts.entry(p.kind.as_str().to_string()).or_insert(0) += 1;
        }
        planted = Some(counts);
    }
    timing.insert("tables".to_string(), t1.elapsed().as_secs_f64());

    let manifest = RunManifest {
        misfit_version: env!("CARGO_PKG_VERSION").to_string(),
        run_name,
        dataset: DatasetSummary::new(&opts.spec.to_string(), &ds),
        config,
        tables: written,
        notes: problems.notes,
        planted,
        timing_s: timing,
    };
    let dest = run.commit(&manifest)?;
    Ok((dest, manifest))
}

//! `misfit data`: look at, make or download datasets.

use anyhow::{bail, Result};
use clap::Subcommand;
use misfit::audit::inspect;
use misfit::data::demo::DemoConfig;
use misfit::data::{fetch, synth, DatasetSpec, LoadOptions};
use std::path::PathBuf;
use std::process::ExitCode;

use super::load::LoadArgs;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Print what a dataset resolves to: splits, classes, sizes, ids, and every
    /// problem found. Exits non-zero when there are problems.
    Inspect {
        /// Dataset, as for `misfit audit`.
        dataset: String,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Write the built-in demo dataset as an image-folder archive (demo.tar.gz)
    /// with its ground truth (ground_truth.csv, planted_pairs.csv).
    Synth {
        /// Folder to write into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Generator seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Image side in pixels.
        #[arg(long)]
        size: Option<usize>,
        /// Clean training images per class.
        #[arg(long)]
        train_per_class: Option<usize>,
        /// Test images per class.
        #[arg(long)]
        test_per_class: Option<usize>,
    },
    /// Download a public dataset into a folder and check its checksum.
    Fetch {
        /// Which dataset (cifar10: the official CIFAR-10 binary release).
        name: String,
        /// Folder to download into.
        #[arg(long, default_value = "data", value_name = "DIR")]
        dir: PathBuf,
    },
}

pub fn run(command: DataCommand) -> Result<ExitCode> {
    match command {
        DataCommand::Inspect { dataset, load } => {
            let spec = DatasetSpec::parse(&dataset)?;
            let found = inspect::inspect(&spec, &LoadOptions::try_from(&load)?)?;
            print!("{}", found.report(&spec));
            Ok(if found.problems.total == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        DataCommand::Synth { out, seed, size, train_per_class, test_per_class } => {
            let mut cfg = DemoConfig::default();
            cfg.seed = seed.unwrap_or(cfg.seed);
            cfg.size = size.unwrap_or(cfg.size);
            cfg.train_per_class = train_per_class.unwrap_or(cfg.train_per_class);
            cfg.test_per_class = test_per_class.unwrap_or(cfg.test_per_class);
            if !(8..=256).contains(&cfg.size) || cfg.train_per_class == 0 {
                bail!("--size must be 8 to 256 pixels and --train-per-class at least 1");
            }
            println!("{}", synth::write(&cfg, &out)?);
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Fetch { name, dir } => {
            let r = fetch::remote(&name)?;
            match fetch::fetch(r.url, r.md5, &dir, r.file, true)? {
                fetch::Fetched::AlreadyPresent(p) => println!("{} is already there, checksum verified", p.display()),
                fetch::Fetched::Downloaded(p) => println!("downloaded {} (MD5 {} verified)", p.display(), r.md5),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

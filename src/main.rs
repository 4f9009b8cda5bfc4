//! The `misfit` command line: parses arguments and calls the library.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use misfit::audit::{self, AuditOptions};
use misfit::data::demo::DemoConfig;
use misfit::data::{fetch, inspect, synth, DatasetSpec, LoadOptions};

/// Audit an image-classification dataset and its model: likely mislabeled
/// images, most-missed classes, most-attacked classes, and how they connect.
#[derive(Parser)]
#[command(name = "misfit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the audit on a dataset (the built-in demo when none is given).
    Audit(AuditArgs),
    /// Look at, make or download datasets.
    #[command(subcommand)]
    Data(DataCommand),
}

/// How to read a dataset.
#[derive(Args, Clone)]
struct LoadArgs {
    /// Replace the labels with those of a CSV or Parquet file (columns id,label;
    /// label as class name or index).
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// Resize every image to HxW pixels (or NxN with one number) instead of
    /// requiring one size.
    #[arg(long, value_name = "HxW")]
    resize: Option<String>,
    /// Class names in label order, comma-separated (for Parquet files without
    /// Hugging Face metadata, or to rename classes).
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    classes: Option<Vec<String>>,
}

#[derive(Args)]
struct AuditArgs {
    /// Dataset: `demo`, a folder, a .tar/.tar.gz archive, a .parquet file, or
    /// one of those with a format prefix (cifar10-bin:, folder:, parquet:).
    #[arg(default_value = "demo")]
    dataset: String,
    #[command(flatten)]
    load: LoadArgs,
    /// Folder that holds run folders.
    #[arg(long, default_value = "outputs", value_name = "DIR")]
    outputs: PathBuf,
    /// Name of the run folder (default: the dataset's name).
    #[arg(long, value_name = "NAME")]
    run: Option<String>,
    /// Seed of every random choice of the run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Subcommand)]
enum DataCommand {
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

fn parse_size(s: &str) -> Result<(usize, usize)> {
    let parse = |t: &str| t.trim().parse::<usize>().ok().filter(|&n| (1..=8192).contains(&n));
    let size = match s.split_once(['x', 'X']) {
        Some((h, w)) => parse(h).zip(parse(w)),
        None => parse(s).map(|n| (n, n)),
    };
    size.with_context(|| format!("--resize {s}: expected HxW or N, sides from 1 to 8192 pixels"))
}

fn load_options(args: &LoadArgs) -> Result<LoadOptions> {
    Ok(LoadOptions {
        resize: args.resize.as_deref().map(parse_size).transpose()?,
        classes: args.classes.clone(),
        labels: args.labels.clone(),
        progress: true,
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Audit(args) => {
            let opts = AuditOptions {
                spec: DatasetSpec::parse(&args.dataset)?,
                load: load_options(&args.load)?,
                outputs: args.outputs,
                run_name: args.run,
                seed: args.seed,
            };
            let (dest, manifest) = audit::run(&opts)?;
            print!("{}", misfit::run::summary(&manifest));
            println!("run written to {}", dest.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Data(DataCommand::Inspect { dataset, load }) => {
            let spec = DatasetSpec::parse(&dataset)?;
            let found = inspect::inspect(&spec, &load_options(&load)?)?;
            print!("{}", found.report(&spec));
            Ok(if found.problems.total == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Data(DataCommand::Synth { out, seed, size, train_per_class, test_per_class }) => {
            let mut cfg = DemoConfig::default();
            cfg.seed = seed.unwrap_or(cfg.seed);
            cfg.size = size.unwrap_or(cfg.size);
            cfg.train_per_class = train_per_class.unwrap_or(cfg.train_per_class);
            cfg.test_per_class = test_per_class.unwrap_or(cfg.test_per_class);
            if !(8..=256).contains(&cfg.size) || cfg.train_per_class == 0 {
                bail!("--size must be 8 to 256 pixels and --train-per-class at least 1");
            }
            let o = synth::write(&cfg, &out)?;
            println!(
                "wrote {} ({} images), {} ({} planted problems) and {}",
                o.archive.display(),
                o.images,
                o.ground_truth.display(),
                o.problems,
                o.pairs.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Data(DataCommand::Fetch { name, dir }) => {
            let r = fetch::remote(&name)?;
            match fetch::fetch(r.url, r.md5, &dir, r.file, true)? {
                fetch::Fetched::AlreadyPresent(p) => println!("{} is already there, checksum verified", p.display()),
                fetch::Fetched::Downloaded(p) => println!("downloaded {} (MD5 {} verified)", p.display(), r.md5),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

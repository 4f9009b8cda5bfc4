//! What a dataset argument names: `demo`, or a path whose format is told by
//! its name and contents, or a path with an explicit format prefix
//! (`cifar10-bin:`, `folder:`, `parquet:`).

use std::path::{Path, PathBuf};

use super::archive::{self, EntryKind};
use super::demo::DemoConfig;
use super::{cifar_bin, folder, hf_parquet};
use crate::error::{Error, Problem, Result};

/// A dataset to load and the format to read it in.
#[derive(Clone, Debug, PartialEq)]
pub enum DatasetSpec {
    /// The built-in procedural dataset.
    Demo(DemoConfig),
    /// CIFAR-10 binary batches: a folder or `cifar-10-binary.tar.gz`.
    CifarBinary(PathBuf),
    /// `ROOT/{train,test}/<class>/<image>`: a folder, `.tar` or `.tar.gz`.
    ImageFolder(PathBuf),
    /// Hugging Face image Parquet: a file or a folder of them.
    Parquet(PathBuf),
}

impl std::fmt::Display for DatasetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatasetSpec::Demo(_) => write!(f, "demo"),
            DatasetSpec::CifarBinary(p) => write!(f, "cifar10-bin:{}", p.display()),
            DatasetSpec::ImageFolder(p) => write!(f, "folder:{}", p.display()),
            DatasetSpec::Parquet(p) => write!(f, "parquet:{}", p.display()),
        }
    }
}

impl DatasetSpec {
    /// Reads a dataset argument. Without a prefix the format is detected:
    /// `.parquet` files and folders of them are Parquet; folders and archives
    /// holding `data_batch_*.bin` are CIFAR-10 binary; other folders and
    /// archives are image folders.
    pub fn parse(arg: &str) -> Result<Self> {
        if arg == "demo" {
            return Ok(DatasetSpec::Demo(DemoConfig::default()));
        }
        let explicit = [("cifar10-bin:", 0), ("folder:", 1), ("parquet:", 2)];
        for (prefix, kind) in explicit {
            if let Some(rest) = arg.strip_prefix(prefix) {
                let path = existing(rest)?;
                return Ok(match kind {
                    0 => DatasetSpec::CifarBinary(path),
                    1 => DatasetSpec::ImageFolder(path),
                    _ => DatasetSpec::Parquet(path),
                });
            }
        }
        let path = existing(arg)?;
        if path.is_dir() {
            if cifar_bin::looks_like_dir(&path) {
                return Ok(DatasetSpec::CifarBinary(path));
            }
            let has_split_dirs = ["train", "test"].iter().any(|s| path.join(s).is_dir());
            if !has_split_dirs && !hf_parquet::find_files(&path)?.is_empty() {
                return Ok(DatasetSpec::Parquet(path));
            }
            return Ok(DatasetSpec::ImageFolder(path));
        }
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) {
            return Ok(DatasetSpec::Parquet(path));
        }
        if archive::is_tar_name(&path) {
            return sniff_archive(&path);
        }
        Err(Problem::file(
            &path,
            "cannot tell the dataset format: expected a folder, a .tar/.tar.gz/.tgz archive or a .parquet file \
             (or prefix the path with cifar10-bin:, folder: or parquet:)",
        )
        .into())
    }
}

fn existing(arg: &str) -> Result<PathBuf> {
    let path = PathBuf::from(arg);
    if !path.exists() {
        return Err(Error::Usage(format!(
            "{arg}: no such file or folder (datasets are 'demo', a folder, an archive or a .parquet file)"
        )));
    }
    Ok(path)
}

/// Reads archive entries until the first batch file or image tells the format.
fn sniff_archive(path: &Path) -> Result<DatasetSpec> {
    let mut found = None;
    let stop = "format found";
    let res = archive::for_each_entry(path, |name, kind, _, _| {
        if kind == EntryKind::File {
            if cifar_bin::is_member_name(name) {
                found = Some(DatasetSpec::CifarBinary(path.to_path_buf()));
            } else if folder::is_image_name(name) {
                found = Some(DatasetSpec::ImageFolder(path.to_path_buf()));
            }
        }
        if found.is_some() {
            Err(Error::Usage(stop.into()))
        } else {
            Ok(())
        }
    });
    match (found, res) {
        (Some(spec), _) => Ok(spec),
        (None, Err(e)) => Err(e),
        (None, Ok(())) => Err(Problem::file(path, "the archive holds neither CIFAR-10 batch files nor images").into()),
    }
}

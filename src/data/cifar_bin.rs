//! The CIFAR-10 binary format: `data_batch_1.bin` .. `data_batch_5.bin` (train)
//! and `test_batch.bin` (test), each a run of 3073-byte records (one label
//! byte, then 1024 red, 1024 green and 1024 blue bytes, row-major), read from
//! a folder or from the official `cifar-10-binary.tar.gz`. Class names come
//! from `batches.meta.txt` when present.

use std::path::Path;

use super::archive::{self, EntryKind};
use super::{name_from_path, Dataset, ImageSet, Problems};
use crate::error::{Error, Problem, Result};

/// Image side in pixels.
pub const SIDE: usize = 32;
/// Bytes per record: one label byte and `3 * 32 * 32` pixel bytes.
pub const RECORD_BYTES: usize = 1 + 3 * SIDE * SIDE;
/// Records in one batch file of the official release, the most a file may hold.
pub const MAX_RECORDS: usize = 10_000;
/// CIFAR-10's class names in label order.
pub const CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// What a file of the release is, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Member {
    /// `data_batch_<n>.bin`.
    Train(u32),
    /// `test_batch.bin`.
    Test,
    /// `batches.meta.txt`.
    Meta,
}

fn member(file_name: &str) -> Option<Member> {
    if file_name == "test_batch.bin" {
        return Some(Member::Test);
    }
    if file_name == "batches.meta.txt" {
        return Some(Member::Meta);
    }
    let n = file_name.strip_prefix("data_batch_")?.strip_suffix(".bin")?;
    n.parse().ok().map(Member::Train)
}

/// Whether a folder holds CIFAR-10 batch files (itself or its
/// `cifar-10-batches-bin` subfolder).
pub fn looks_like_dir(dir: &Path) -> bool {
    [dir.to_path_buf(), dir.join("cifar-10-batches-bin")].iter().any(|d| {
        std::fs::read_dir(d)
            .map(|rd| rd.flatten().any(|e| member(&e.file_name().to_string_lossy()).is_some()))
            .unwrap_or(false)
    })
}

/// Whether an archive member name is a CIFAR-10 batch file.
pub fn is_member_name(name: &str) -> bool {
    matches!(member(name.rsplit('/').next().unwrap_or(name)), Some(Member::Train(_) | Member::Test))
}

/// One file of the release, read into memory: (kind, where for errors, bytes).
struct File {
    member: Member,
    file: String,
    entry: Option<String>,
    bytes: Vec<u8>,
}

/// Loads CIFAR-10 binary batches from a folder or a tar(.gz) archive.
pub fn load(path: &Path, problems: &mut Problems) -> Result<Dataset> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mut files = Vec::new();
    if meta.is_dir() {
        let inner = path.join("cifar-10-batches-bin");
        let dir = if inner.is_dir() { inner } else { path.to_path_buf() };
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| member(&e.file_name().to_string_lossy()).map(|m| (m, e.path())))
            .collect();
        names.sort();
        for (member, p) in names {
            let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            files.push(File { member, file: p.display().to_string(), entry: None, bytes });
        }
    } else {
        archive::for_each_entry(path, |name, kind, size, reader| {
            let base = name.rsplit('/').next().unwrap_or(name);
            if let (EntryKind::File, Some(m)) = (kind, member(base)) {
                let bytes = archive::read_entry(path, name, size, reader)?;
                files.push(File { member: m, file: path.display().to_string(), entry: Some(name.to_string()), bytes });
            }
            Ok(())
        })?;
        files.sort_by_key(|f| f.member);
    }
    if !files.iter().any(|f| matches!(f.member, Member::Train(_))) {
        return Err(Problem::file(path, "no CIFAR-10 training batch (data_batch_<n>.bin) found").into());
    }

    let mut classes: Vec<String> = CLASSES.iter().map(|s| s.to_string()).collect();
    if let Some(f) = files.iter().find(|f| f.member == Member::Meta) {
        let text = std::str::from_utf8(&f.bytes).map_err(|_| Problem {
            file: f.file.clone(),
            entry: f.entry.clone(),
            what: "batches.meta.txt is not UTF-8 text".into(),
        })?;
        classes = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
        if classes.is_empty() || classes.len() > 256 {
            return Err(Problem {
                file: f.file.clone(),
                entry: f.entry.clone(),
                what: format!("batches.meta.txt names {} classes; a label byte allows 1 to 256", classes.len()),
            }
            .into());
        }
    }

    let (mut train, mut test) = (ImageSet::default(), ImageSet::default());
    for f in &files {
        let set = match f.member {
            Member::Train(_) => &mut train,
            Member::Test => &mut test,
            Member::Meta => continue,
        };
        parse_batch(f, classes.len(), set, problems)?;
    }
    if test.is_empty() {
        problems.note("no test_batch.bin: the test split is empty");
    }
    Ok(Dataset {
        name: name_from_path(path),
        source: format!("{} (CIFAR-10 binary)", path.display()),
        classes,
        height: SIDE,
        width: SIDE,
        train,
        test,
    })
}

fn parse_batch(f: &File, n_classes: usize, set: &mut ImageSet, problems: &mut Problems) -> Result<()> {
    let base = f.entry.as_deref().unwrap_or(&f.file);
    let base = base.rsplit(['/', '\\']).next().unwrap_or(base).to_string();
    let at = |what: String, record: Option<usize>| {
        let entry = match (&f.entry, record) {
            (Some(e), Some(r)) => Some(format!("{e}: record {r}")),
            (Some(e), None) => Some(e.clone()),
            (None, Some(r)) => Some(format!("record {r}")),
            (None, None) => None,
        };
        Problem { file: f.file.clone(), entry, what }
    };
    let len = f.bytes.len();
    let whole = len / RECORD_BYTES;
    if len == 0 {
        return problems.report(at("empty file: a batch holds 3073-byte records".into(), None));
    }
    if len % RECORD_BYTES != 0 {
        problems.report(at(
            format!(
                "truncated record: {} of {RECORD_BYTES} bytes (the file is {len} bytes, not a whole number of records)",
                len % RECORD_BYTES
            ),
            Some(whole),
        ))?;
    }
    if whole > MAX_RECORDS {
        return problems.report(at(
            format!("oversized: {whole} records; a CIFAR-10 batch file holds at most {MAX_RECORDS} (is this another format, such as CIFAR-100?)"),
            None,
        ));
    }
    let plane = SIDE * SIDE;
    let mut hwc = vec![0u8; 3 * plane];
    for (r, rec) in f.bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let label = rec[0] as usize;
        if label >= n_classes {
            problems.report(at(format!("label {label} is outside the class range 0..{}", n_classes - 1), Some(r)))?;
            continue;
        }
        // Planar (all red, all green, all blue) to interleaved HWC.
        for p in 0..plane {
            for c in 0..3 {
                hwc[p * 3 + c] = rec[1 + c * plane + p];
            }
        }
        set.push(format!("{base}:{r:05}"), label as u32, &hwc);
    }
    Ok(())
}

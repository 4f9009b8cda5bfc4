//! Reading tar archives (plain or gzip-compressed) entry by entry, straight
//! from the file, refusing entries whose paths could escape the archive.

use flate2::read::GzDecoder;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{Error, Problem, Result};

/// Largest archive member misfit reads into memory, in bytes.
pub const MAX_ENTRY_BYTES: u64 = 256 << 20;

/// What kind of member an archive entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
}

/// Whether a file name looks like a tar archive misfit can read (`.tar`,
/// `.tar.gz`, `.tgz`).
pub fn is_tar_name(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    name.ends_with(".tar") || name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

fn open(path: &Path) -> Result<Box<dyn Read>> {
    // Opening a named pipe would block until someone writes to it.
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Problem::file(
            path,
            format!(
                "is {}, not a regular file; an archive must be one",
                super::folder::special_kind(&meta.file_type())
            ),
        )
        .into());
    }
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(|e| Error::io(path, e))?;
    file.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
    let reader = BufReader::with_capacity(1 << 20, file);
    Ok(if n == 2 && magic == [0x1f, 0x8b] { Box::new(GzDecoder::new(reader)) } else { Box::new(reader) })
}

/// Checks and normalises an entry's path: relative, `/`-separated, no `..`,
/// without a leading `./`.
pub fn clean_entry_path(archive: &Path, raw: &[u8]) -> Result<String> {
    let name = std::str::from_utf8(raw)
        .map_err(|_| Problem::entry(archive, String::from_utf8_lossy(raw), "entry name is not valid UTF-8"))?;
    if name.starts_with('/') || name.starts_with('\\') || name.as_bytes().get(1) == Some(&b':') {
        return Err(Problem::entry(
            archive,
            name,
            "absolute path in archive: refusing an entry that could escape the archive",
        )
        .into());
    }
    let mut parts = Vec::new();
    for part in name.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                return Err(Problem::entry(
                    archive,
                    name,
                    "'..' in archive path: refusing an entry that could escape the archive",
                )
                .into())
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Calls `f(path, kind, size, reader)` for every file and directory entry of
/// a tar archive, in archive order. Links and special files are refused, as
/// are files over [`MAX_ENTRY_BYTES`].
pub fn for_each_entry(path: &Path, mut f: impl FnMut(&str, EntryKind, u64, &mut dyn Read) -> Result<()>) -> Result<()> {
    let mut archive = tar::Archive::new(open(path)?);
    let corrupt = |e: std::io::Error| -> Error {
        Problem::file(path, format!("cannot read the archive (truncated or corrupt?): {e}")).into()
    };
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let name = clean_entry_path(path, &entry.path_bytes())?;
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            other => {
                return Err(Problem::entry(
                    path,
                    name,
                    format!("unsupported archive entry type {other:?} (links and devices are refused)"),
                )
                .into())
            }
        };
        let size = entry.size();
        if size > MAX_ENTRY_BYTES {
            return Err(Problem::entry(
                path,
                name,
                format!("entry is {size} bytes; misfit reads members of at most {MAX_ENTRY_BYTES} bytes"),
            )
            .into());
        }
        f(&name, kind, size, &mut entry)?;
    }
    Ok(())
}

/// Reads the rest of an entry into memory, naming the archive and entry on failure.
pub fn read_entry(archive: &Path, name: &str, size: u64, reader: &mut dyn Read) -> Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(size as usize);
    reader.read_to_end(&mut bytes).map_err(|e| {
        Problem::entry(archive, name, format!("cannot read the entry (archive truncated or corrupt?): {e}"))
    })?;
    Ok(bytes)
}

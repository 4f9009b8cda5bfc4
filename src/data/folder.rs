//! Image folders: `ROOT/{train,test}/<class>/<file>.{png,jpg,jpeg}`, from a
//! directory or straight from a `.tar` / `.tar.gz` archive (never unpacked to
//! disk). Classes are the class folder names in byte order, as torchvision's
//! `ImageFolder` does (CIFAR-10's own label order is alphabetical too).
//! `ROOT` may be the archive's top level or one folder inside it. Symbolic
//! links below `ROOT` are refused, in folders as in archives (`ROOT` itself
//! may be one), as are named pipes, devices and sockets (never opened) and
//! names that are not valid UTF-8.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use super::archive::{self, EntryKind};
use super::decode::{self, Encoded};
use super::{name_from_path, Dataset, LoadOptions, Problems, Split};
use crate::error::{Error, Problem, Result};

/// File name endings read as images.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Deepest folder level walked in a directory dataset.
const MAX_DEPTH: usize = 8;

/// Whether a name ends in one of [`IMAGE_EXTENSIONS`] (any case).
pub fn is_image_name(name: &str) -> bool {
    match name.rsplit_once('.') {
        Some((_, ext)) => IMAGE_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)),
        None => false,
    }
}

/// Gathers entries of an image-folder layout, wherever they come from.
struct Layout<'a> {
    source: &'a Path,
    /// Folders before the split folder, fixed by the first image met.
    root: Option<Vec<String>>,
    encoded: Vec<Encoded>,
    /// (split, class) folders seen, with or without images.
    class_dirs: BTreeSet<(Split, String)>,
    ignored: Vec<String>,
}

/// Where an entry sits in the layout.
enum Place<'a> {
    /// `<root>/<split>/<class>/<file>`.
    Image { root: &'a [&'a str], split: Split, class: &'a str, file: &'a str },
    /// `<root>/<split>/<class>` as a folder.
    ClassDir { split: Split, class: &'a str },
    /// Under a split folder, but not as `<split>/<class>/<file>`.
    Misplaced(&'static str),
    /// Outside any split folder.
    Outside,
}

fn place<'a>(parts: &'a [&'a str], kind: EntryKind) -> Place<'a> {
    let Some(k) = parts.iter().position(|p| Split::from_name(p).is_some()) else { return Place::Outside };
    let split = Split::from_name(parts[k]).expect("checked above");
    let rest = &parts[k + 1..];
    match (kind, rest.len()) {
        (EntryKind::Dir, 0) => Place::Outside,
        (EntryKind::Dir, 1) => Place::ClassDir { split, class: rest[0] },
        (EntryKind::Dir, _) => Place::Misplaced("folder nested inside a class folder; expected <split>/<class>/<file>"),
        (EntryKind::File, 2) => Place::Image { root: &parts[..k], split, class: rest[0], file: rest[1] },
        (EntryKind::File, 1) => Place::Misplaced("file directly in a split folder; expected <split>/<class>/<file>"),
        (EntryKind::File, _) => Place::Misplaced("file nested below a class folder; expected <split>/<class>/<file>"),
    }
}

impl<'a> Layout<'a> {
    fn new(source: &'a Path) -> Self {
        Layout { source, root: None, encoded: Vec::new(), class_dirs: BTreeSet::new(), ignored: Vec::new() }
    }

    /// Takes one entry (`path` relative to the directory or archive). Reads its
    /// bytes through `read` only when it is an image of the layout.
    fn add(
        &mut self,
        path: &str,
        kind: EntryKind,
        problems: &mut Problems,
        read: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<()> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        // Hidden files and folders (.DS_Store, ._* from macOS tar, .git) are not data.
        if parts.iter().any(|p| p.starts_with('.')) {
            self.ignored.push(path.to_string());
            return Ok(());
        }
        match place(&parts, kind) {
            Place::Outside => {
                if kind == EntryKind::File {
                    self.ignored.push(path.to_string());
                }
            }
            Place::Misplaced(what) => problems.report(Problem::entry(self.source, path, what))?,
            Place::ClassDir { split, class } => {
                self.class_dirs.insert((split, class.to_string()));
            }
            Place::Image { root, split, class, file } => {
                let root: Vec<String> = root.iter().map(|s| s.to_string()).collect();
                match &self.root {
                    None => self.root = Some(root),
                    Some(r) if *r != root => {
                        return problems.report(Problem::entry(
                            self.source,
                            path,
                            format!(
                            "image outside the dataset root '{}' set by the first image; one archive holds one dataset",
                            r.join("/")
                        ),
                        ))
                    }
                    Some(_) => {}
                }
                if !is_image_name(file) {
                    return problems.report(Problem::entry(
                        self.source,
                        path,
                        "not an image file: misfit reads .png, .jpg and .jpeg in class folders",
                    ));
                }
                self.class_dirs.insert((split, class.to_string()));
                let id = format!("{split}/{class}/{file}");
                // The label is fixed once every class is known; keep the class name for now.
                self.encoded.push(Encoded {
                    id,
                    split,
                    label: u32::MAX,
                    file: self.source.display().to_string(),
                    entry: path.to_string(),
                    bytes: read()?,
                });
            }
        }
        Ok(())
    }
}

/// Loads an image-folder dataset from a directory or a tar archive.
pub fn load(path: &Path, opts: &LoadOptions, problems: &mut Problems) -> Result<Dataset> {
    let mut layout = Layout::new(path);
    let bar = crate::progress::counter(opts.progress, "reading images");
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_dir() && !meta.is_file() {
        return Err(Problem::file(
            path,
            format!("is {}; a dataset is a folder or an archive file", special_kind(&meta.file_type())),
        )
        .into());
    }
    if meta.is_dir() {
        walk_dir(path, path, 0, &mut layout, problems, &bar)?;
    } else {
        archive::for_each_entry(path, |name, kind, size, reader: &mut dyn Read| {
            bar.inc(1);
            layout.add(name, kind, problems, || archive::read_entry(path, name, size, reader))
        })?;
    }
    bar.finish_and_clear();
    if layout.encoded.is_empty() && problems.total == 0 {
        return Err(Problem::file(
            path,
            "no images found: expected <root>/train/<class>/<file>.png|jpg (and test/ likewise)",
        )
        .into());
    }
    let classes: Vec<String> =
        layout.class_dirs.iter().map(|(_, c)| c.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    for e in &mut layout.encoded {
        let class = e.id.split('/').nth(1).expect("id is split/class/file");
        e.label = classes.binary_search_by(|c| c.as_str().cmp(class)).expect("class collected above") as u32;
    }
    if !layout.ignored.is_empty() {
        problems.note(format!(
            "{} file(s) outside <split>/<class>/ left out, e.g. {}",
            layout.ignored.len(),
            layout.ignored.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let (height, width, mut train, mut test) = decode::decode_all(layout.encoded, opts.resize, problems)?;
    let image_len = height * width * 3;
    train.sort_by_id(image_len);
    test.sort_by_id(image_len);
    if test.is_empty() {
        problems.note("no test/ folder: the test split is empty");
    }
    let format = if meta.is_dir() { "image folders in a directory" } else { "image folders in a tar archive" };
    Ok(Dataset {
        name: name_from_path(path),
        source: format!("{} ({format})", path.display()),
        classes,
        height,
        width,
        train,
        test,
    })
}

fn walk_dir(
    root: &Path,
    dir: &Path,
    depth: usize,
    layout: &mut Layout,
    problems: &mut Problems,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Problem::file(dir, format!("folders nested deeper than {MAX_DEPTH} levels")).into());
    }
    let mut entries: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| Error::io(dir, e)))
        .collect::<Result<_>>()?;
    entries.sort();
    for path in entries {
        // Names are compared and stored as UTF-8 text (class names go into
        // every table); one that is not would be converted lossily, and two
        // such class folders would become one class.
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            let raw = path.file_name().unwrap_or_default();
            problems.report(Problem::file(
                &path,
                format!("name {raw:?} is not valid UTF-8; misfit needs class and file names as text (rename it)"),
            ))?;
            continue;
        };
        let rel = path.strip_prefix(root).expect("walked below root").to_string_lossy().replace('\\', "/");
        if name.starts_with('.') {
            layout.ignored.push(rel);
            continue;
        }
        // Never follows a link nor opens the entry: a named pipe would block
        // the read forever.
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
        // Links are refused, as in archives: a link to another class's image
        // would be a second, differently labelled copy, and one leading out
        // of the dataset would read files the dataset does not hold.
        if meta.file_type().is_symlink() {
            problems.report(Problem::file(
                &path,
                "is a symbolic link; misfit reads regular files and folders only (copy the file instead)",
            ))?;
            continue;
        }
        if meta.is_dir() {
            layout.add(&rel, EntryKind::Dir, problems, || Ok(Vec::new()))?;
            walk_dir(root, &path, depth + 1, layout, problems, bar)?;
        } else if !meta.is_file() {
            problems.report(Problem::file(
                &path,
                format!(
                    "is {}, not a regular file; misfit reads regular files and folders only",
                    special_kind(&meta.file_type())
                ),
            ))?;
        } else {
            bar.inc(1);
            if meta.len() > archive::MAX_ENTRY_BYTES {
                problems.report(Problem::file(
                    &path,
                    format!(
                        "file is {} bytes; misfit reads images of at most {} bytes",
                        meta.len(),
                        archive::MAX_ENTRY_BYTES
                    ),
                ))?;
                continue;
            }
            layout.add(&rel, EntryKind::File, problems, || std::fs::read(&path).map_err(|e| Error::io(&path, e)))?;
        }
    }
    Ok(())
}

/// What a file that is neither a regular file, a folder nor a link is, in words.
pub(crate) fn special_kind(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
    }
    let _ = t;
    "a special file"
}

//! Image folders from a directory, a .tar and a .tar.gz, and every kind of
//! bad entry.

use misfit::audit::inspect;
use misfit::data::{DatasetSpec, LoadOptions};
use tempfile::tempdir;

use crate::util::{load_err, load_ok, pattern, png, small_folder, write_tar, write_tar_raw_name, write_tree};

#[test]
fn a_directory_loads_with_sorted_classes_ids_and_pixels() {
    let dir = tempdir().unwrap();
    write_tree(dir.path(), &small_folder(""));
    let ds = load_ok(dir.path().to_str().unwrap(), &LoadOptions::default());
    assert_eq!(ds.classes, vec!["cat", "dog"]);
    assert_eq!((ds.height, ds.width), (8, 6));
    assert_eq!(
        ds.train.ids,
        vec![
            "train/cat/000.png",
            "train/cat/001.png",
            "train/cat/002.png",
            "train/dog/000.png",
            "train/dog/001.png",
            "train/dog/002.jpg"
        ]
    );
    assert_eq!(ds.train.labels, vec![0, 0, 0, 1, 1, 1]);
    assert_eq!(ds.test.ids, vec!["test/cat/t0.png", "test/dog/t0.png"]);
    // PNG is lossless: the first image's pixels come back exactly.
    assert_eq!(&ds.train.pixels[..8 * 6 * 3], pattern(0, 8, 6).as_slice());
}

#[test]
fn tar_and_tar_gz_load_exactly_like_the_directory() {
    let dir = tempdir().unwrap();
    write_tree(&dir.path().join("d"), &small_folder(""));
    let tar = dir.path().join("set.tar");
    let tgz = dir.path().join("set.tar.gz");
    write_tar(&tar, &small_folder("myset/"));
    write_tar(&tgz, &small_folder(""));
    let d = load_ok(dir.path().join("d").to_str().unwrap(), &LoadOptions::default());
    for archive in [&tar, &tgz] {
        let a = load_ok(archive.to_str().unwrap(), &LoadOptions::default());
        assert_eq!((&a.classes, &a.train, &a.test), (&d.classes, &d.train, &d.test), "{}", archive.display());
        assert_eq!(a.name, "set");
    }
}

#[test]
fn a_corrupt_image_is_named() {
    let dir = tempdir().unwrap();
    let mut files = small_folder("");
    files.push(("train/cat/broken.png".into(), b"\x89PNG\r\n\x1a\nthis is not a png".to_vec()));
    write_tree(dir.path(), &files);
    let err = load_err(dir.path().to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("train/cat/broken.png") && err.contains("corrupt"), "{err}");
}

#[test]
fn a_non_image_file_in_a_class_folder_is_named() {
    let dir = tempdir().unwrap();
    let mut files = small_folder("");
    files.push(("train/dog/notes.txt".into(), b"hello".to_vec()));
    write_tree(dir.path(), &files);
    let err = load_err(dir.path().to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("train/dog/notes.txt") && err.contains("not an image"), "{err}");
    // A .png that holds text is caught by its bytes, not its name.
    let dir = tempdir().unwrap();
    let mut files = small_folder("");
    files.push(("train/dog/fake.png".into(), b"just text".to_vec()));
    write_tree(dir.path(), &files);
    let err = load_err(dir.path().to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("train/dog/fake.png") && err.contains("not a PNG or JPEG"), "{err}");
}

#[test]
fn mixed_sizes_are_an_error_unless_resized() {
    let dir = tempdir().unwrap();
    let mut files = small_folder("");
    files.push(("train/dog/big.png".into(), png(&pattern(9, 10, 12), 10, 12)));
    write_tree(dir.path(), &files);
    let err = load_err(dir.path().to_str().unwrap(), &LoadOptions::default());
    assert!(
        err.contains("train/dog/big.png: image is 10x12 pixels (height x width)") && err.contains("--resize"),
        "{err}"
    );
    let opts = LoadOptions { resize: Some((4, 5)), ..Default::default() };
    let ds = load_ok(dir.path().to_str().unwrap(), &opts);
    assert_eq!((ds.height, ds.width, ds.train.len()), (4, 5, 7));
    assert_eq!(ds.train.pixels.len(), 7 * 4 * 5 * 3);
}

#[test]
fn an_empty_class_folder_is_named() {
    let dir = tempdir().unwrap();
    write_tree(dir.path(), &small_folder(""));
    std::fs::create_dir_all(dir.path().join("train/horse")).unwrap();
    let err = load_err(dir.path().to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("horse") && err.contains("no training image"), "{err}");
}

#[test]
fn archive_entries_that_escape_are_refused() {
    let dir = tempdir().unwrap();
    for (name, raw) in [("dotdot.tar", "train/cat/../../../etc/x.png"), ("abs.tar", "/train/cat/x.png")] {
        let tar = dir.path().join(name);
        write_tar_raw_name(&tar, raw, &png(&pattern(1, 4, 4), 4, 4));
        let err = load_err(&format!("folder:{}", tar.display()), &LoadOptions::default());
        assert!(err.contains(name) && err.contains(raw), "{err}");
        assert!(err.contains("escape"), "{err}");
    }
}

/// A PNG whose header claims 100000 x 100000 pixels (a decompression bomb).
fn bomb_png() -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(b"IHDR");
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut crc = flate2::Crc::new();
    crc.update(&ihdr);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc.sum().to_be_bytes());
    png
}

#[test]
fn a_decompression_bomb_is_refused_before_decoding() {
    let dir = tempdir().unwrap();
    let mut files = small_folder("");
    files.push(("train/cat/bomb.png".into(), bomb_png()));
    write_tree(dir.path(), &files);
    let err = load_err(dir.path().to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("train/cat/bomb.png") && err.contains("too large"), "{err}");
}

#[test]
fn inspect_lists_every_problem_and_keeps_the_good_images() {
    let dir = tempdir().unwrap();
    let mut files = small_folder("");
    files.push(("train/cat/broken.png".into(), b"garbage".to_vec()));
    files.push(("train/dog/big.png".into(), png(&pattern(9, 10, 12), 10, 12)));
    files.push(("README.txt".into(), b"about".to_vec()));
    write_tree(dir.path(), &files);
    let spec = DatasetSpec::parse(dir.path().to_str().unwrap()).unwrap();
    let found = inspect::inspect(&spec, &LoadOptions::default()).unwrap();
    // The two bad images, and what the audit's defaults refuse of the 6 good ones (--k 10).
    assert_eq!(found.problems.total, 3);
    assert_eq!(found.dataset.train.len(), 6);
    let report = found.report(&spec);
    assert!(report.contains("train/cat/broken.png") && report.contains("train/dog/big.png"), "{report}");
    assert!(report.contains("--k 10 neighbours per image need more training images"), "{report}");
    assert!(report.contains("README.txt"), "left-out files are noted: {report}");
}

#[test]
fn symbolic_links_below_the_root_are_refused_as_in_archives_and_the_root_may_be_one() {
    let dir = tempdir().unwrap();
    let root = dir.path().join("set");
    write_tree(&root, &small_folder(""));
    // The root itself through a link loads.
    std::os::unix::fs::symlink(&root, dir.path().join("alias")).unwrap();
    assert_eq!(load_ok(dir.path().join("alias").to_str().unwrap(), &LoadOptions::default()).train.len(), 6);
    // A link to another class's image would be a second copy with another label.
    std::os::unix::fs::symlink(root.join("train/dog/000.png"), root.join("train/cat/009.png")).unwrap();
    let err = load_err(root.to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("train/cat/009.png: is a symbolic link"), "{err}");
    // A size mismatch is told height x width, as everywhere else.
    std::fs::remove_file(root.join("train/cat/009.png")).unwrap();
    std::fs::write(root.join("train/cat/010.png"), png(&pattern(3, 4, 5), 4, 5)).unwrap();
    let err = load_err(root.to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("010.png: image is 4x5 pixels (height x width) but ") && err.contains(" is 8x6;"), "{err}");
}

/// Runs `misfit args` in `cwd`, killed after `secs`: (finished in time, output).
fn misfit_within(args: &[&str], cwd: &std::path::Path, secs: u64) -> (bool, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_misfit"))
        .args(args)
        .current_dir(cwd)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let finished = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if start.elapsed() > std::time::Duration::from_secs(secs) {
            child.kill().unwrap();
            child.wait().unwrap();
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut out).unwrap();
    (finished, out)
}

fn mkfifo(path: &std::path::Path) {
    let st = std::process::Command::new("mkfifo").arg(path).status().unwrap();
    assert!(st.success(), "mkfifo {}", path.display());
}

#[test]
fn a_named_pipe_in_an_image_folder_is_refused_by_name_and_never_opened() {
    let dir = tempdir().unwrap();
    let root = dir.path().join("set");
    write_tree(&root, &small_folder(""));
    mkfifo(&root.join("train/cat/pipe.png"));
    // Opening the pipe for reading would block the load forever: run it in a
    // thread and give it a bound.
    let spec = root.to_str().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(load_err(&spec, &LoadOptions::default())).unwrap());
    let err = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the load hung on a named pipe");
    assert!(err.contains("train/cat/pipe.png: is a named pipe (FIFO), not a regular file"), "{err}");
    // `data inspect` names it among the problems and keeps the good images;
    // `audit` refuses it before any training.
    let (done, out) = misfit_within(&["data", "inspect", "set"], dir.path(), 60);
    assert!(done, "data inspect hung on a named pipe: {out}");
    assert!(out.contains("pipe.png: is a named pipe (FIFO)") && out.contains("classes   2: cat, dog"), "{out}");
    let (done, out) = misfit_within(&["audit", "set"], dir.path(), 60);
    assert!(done, "audit hung on a named pipe: {out}");
    assert!(out.contains("pipe.png: is a named pipe (FIFO)") && !out.contains("fold 1/"), "{out}");
    assert!(!dir.path().join("outputs/set").exists(), "nothing was written: {out}");
    // A pipe given as the dataset (an "archive") is refused without opening it.
    mkfifo(&dir.path().join("pipe.tar"));
    let (done, out) = misfit_within(&["data", "inspect", "pipe.tar"], dir.path(), 60);
    assert!(done, "data inspect hung on a named pipe given as the dataset: {out}");
    assert!(out.contains("pipe.tar: is a named pipe (FIFO)"), "{out}");
}

#[test]
fn class_folders_whose_names_are_not_utf8_are_problems_named_not_merged() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempdir().unwrap();
    let root = dir.path().join("set");
    write_tree(&root, &small_folder(""));
    // Two different invalid names: lossy conversion would make both one class "\u{fffd}".
    for raw in [&b"caf\xe9"[..], &b"caf\xe8"[..]] {
        let class = root.join("train").join(std::ffi::OsStr::from_bytes(raw));
        std::fs::create_dir_all(&class).unwrap();
        std::fs::write(class.join("000.png"), png(&pattern(50, 8, 6), 8, 6)).unwrap();
    }
    let err = load_err(root.to_str().unwrap(), &LoadOptions::default());
    assert!(err.contains("\"caf\\xE8\" is not valid UTF-8"), "{err}");
    let spec = DatasetSpec::parse(root.to_str().unwrap()).unwrap();
    let found = inspect::inspect(&spec, &LoadOptions::default()).unwrap();
    assert_eq!(found.dataset.classes, vec!["cat", "dog"]);
    let report = found.report(&spec);
    assert!(
        report.contains("\"caf\\xE8\" is not valid UTF-8") && report.contains("\"caf\\xE9\" is not valid UTF-8"),
        "{report}"
    );
}

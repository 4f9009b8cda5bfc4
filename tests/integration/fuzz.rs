//! Fuzzing the loaders: mutated copies of valid files, and random bytes, in
//! every input format misfit reads: CIFAR-10 binary batches, image folders in
//! a directory and in `.tar` / `.tar.gz` archives, Hugging Face image Parquet,
//! a labels CSV, and the `.npy` files of `misfit score`.
//!
//! Each case damages one file of a valid input (bytes flipped, the file cut
//! short, a run of bytes inserted or deleted, a span overwritten, the whole
//! file replaced by random bytes; for text files also lines replaced, removed
//! or repeated, fields changed, NUL bytes, invalid UTF-8), loads the input
//! in-process on a thread of its own, and checks that the loader
//!
//! 1. never panics (the load runs inside `catch_unwind`),
//! 2. never hangs (a case still running after [`CASE_LIMIT`] fails the test),
//! 3. when it refuses the input, names the damaged file, or the archive
//!    holding it, or the member inside it. Where a damaged file is itself a
//!    valid file of another content and the loader rightly reports the
//!    consequence elsewhere, the format's judge says so and why.
//!
//! Loading is allowed to succeed: a mutation may leave a file valid. Cases
//! come from a generator seeded per format, so every run is the same. Each
//! test prints how many cases ran and how they ended (`-- --nocapture`):
//! 28,500 cases in all.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use misfit::data::probs::{self, ScoreFiles};
use misfit::data::{self, DatasetSpec, LoadOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tempfile::tempdir;

use crate::util::{small_folder, write_tar, write_tree};

/// Longest a single case may take before it counts as a hang.
const CASE_LIMIT: Duration = Duration::from_secs(10);

/// Stack of the thread a case runs on: that of the CLI's main thread.
const CASE_STACK: usize = 8 << 20;

/// How many formats report a tally (one test each), for the total line.
const FORMATS: usize = 6;

/// A loader under test: loads the whole input once, giving the error as the
/// user would read it on failure.
type Loader = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A mutation: damaged bytes made from valid ones, and what was done, in words.
type Mutator = fn(&mut ChaCha8Rng, &[u8]) -> (Vec<u8>, String);

/// A loader of a dataset spec with options, as `misfit audit` loads it.
fn dataset_loader(spec: String, opts: LoadOptions) -> Loader {
    Arc::new(move || {
        DatasetSpec::parse(&spec).and_then(|s| data::load(&s, &opts)).map(|_| ()).map_err(|e| e.to_string())
    })
}

/// A loader of `misfit score`'s input files.
fn score_loader(files: ScoreFiles) -> Loader {
    Arc::new(move || probs::load(&files).map(|_| ()).map_err(|e| e.to_string()))
}

/// What one load did.
enum Outcome {
    /// The input loaded.
    Loaded,
    /// The input was refused with this message.
    Refused(String),
    /// The loader panicked with this message.
    Panicked(String),
}

/// The message of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".to_string())
}

/// Runs `load` once on a thread of its own, catching a panic; `None` when it
/// has not finished within [`CASE_LIMIT`] (the thread is then left behind and
/// the caller fails the test).
fn run_once(load: &Loader) -> Option<(Outcome, Duration)> {
    let (tx, rx) = mpsc::channel();
    let load = Arc::clone(load);
    let start = Instant::now();
    std::thread::Builder::new()
        .name("fuzz case".into())
        .stack_size(CASE_STACK)
        .spawn(move || {
            let outcome = match catch_unwind(AssertUnwindSafe(|| (*load)())) {
                Ok(Ok(())) => Outcome::Loaded,
                Ok(Err(e)) => Outcome::Refused(e),
                Err(payload) => Outcome::Panicked(panic_message(&*payload)),
            };
            // The receiver is gone only when the case was already judged a hang.
            let _ = tx.send(outcome);
        })
        .unwrap();
    match rx.recv_timeout(CASE_LIMIT) {
        Ok(outcome) => Some((outcome, start.elapsed())),
        Err(mpsc::RecvTimeoutError::Timeout) => None,
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Some((Outcome::Panicked("the case's thread ended without a result".into()), start.elapsed()))
        }
    }
}

/// How a refusal stands against what it must name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// It names the damaged file (or the archive holding it, or the member).
    Named,
    /// It names another file, for a reason the format's judge documents.
    Excused,
    /// It does not name the file at fault.
    Unnamed,
}

/// [`Verdict::Named`] when `err` contains any of `names`, else [`Verdict::Unnamed`].
fn naming(err: &str, names: &[&str]) -> Verdict {
    if names.iter().any(|n| err.contains(n)) {
        Verdict::Named
    } else {
        Verdict::Unnamed
    }
}

/// How the cases of one format ended.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    cases: usize,
    ok: usize,
    errors: usize,
    /// Errors that named another file for a documented reason (counted in `errors` too).
    excused: usize,
    slowest: Duration,
}

impl Tally {
    /// Adds another tally's counts to this one.
    fn add(&mut self, other: Tally) {
        self.cases += other.cases;
        self.ok += other.ok;
        self.errors += other.errors;
        self.excused += other.excused;
        self.slowest = self.slowest.max(other.slowest);
    }
}

/// The tallies of the formats that have finished, for the total line.
static DONE: Mutex<Vec<(String, Tally)>> = Mutex::new(Vec::new());

/// Prints one format's line; after the last of the [`FORMATS`], the total too.
fn report(format: &str, tally: Tally) {
    let excused = match tally.excused {
        0 => String::new(),
        n => format!(", {n} of them naming another file for a documented reason"),
    };
    eprintln!(
        "fuzz: {format}: {} cases ({} ok, {} errors{excused}), slowest case {} ms",
        tally.cases,
        tally.ok,
        tally.errors,
        tally.slowest.as_millis()
    );
    let mut done = DONE.lock().unwrap_or_else(PoisonError::into_inner);
    done.push((format.to_string(), tally));
    if done.len() == FORMATS {
        let mut total = Tally::default();
        for (_, t) in done.iter() {
            total.add(*t);
        }
        eprintln!(
            "fuzz: total {} cases over {FORMATS} formats ({} ok, {} errors): no panic, no hang, no unnamed file",
            total.cases, total.ok, total.errors
        );
    }
}

/// Damages `target` `cases` times with `mutate`, loading the input after each,
/// and checks every outcome; `judge` decides whether a refusal names the
/// damaged file (it gets the damaged bytes and the message). First checks
/// that the valid input loads, so that the test cannot pass vacuously, and
/// at the end that some case was refused, so that the damage reached the
/// loader; the valid file is restored afterwards. Fails the test on a panic,
/// a hang or an error that does not name the file, naming the case.
fn fuzz(
    format: &str,
    target: &Path,
    cases: usize,
    rng: &mut ChaCha8Rng,
    mutate: Mutator,
    load: &Loader,
    judge: &dyn Fn(&[u8], &str) -> Verdict,
) -> Tally {
    let valid = std::fs::read(target).unwrap();
    let file = target.file_name().unwrap().to_string_lossy().into_owned();
    match run_once(load) {
        Some((Outcome::Loaded, _)) => {}
        Some((Outcome::Refused(e), _)) => panic!("{format}: the valid input does not load: {e}"),
        Some((Outcome::Panicked(m), _)) => panic!("{format}: the valid input panics: {m}"),
        None => panic!("{format}: the valid input is still loading after {CASE_LIMIT:?}"),
    }
    let mut tally = Tally::default();
    for case in 0..cases {
        let (bytes, what) = mutate(rng, &valid);
        std::fs::write(target, &bytes).unwrap();
        let at = format!("{format}: case {case} ({file}: {what})");
        let Some((outcome, took)) = run_once(load) else {
            panic!("{at}: still loading after {CASE_LIMIT:?}: the loader hangs");
        };
        tally.cases += 1;
        tally.slowest = tally.slowest.max(took);
        match outcome {
            Outcome::Loaded => tally.ok += 1,
            Outcome::Panicked(m) => panic!("{at}: the loader panicked: {m}"),
            Outcome::Refused(e) => {
                tally.errors += 1;
                match judge(&bytes, &e) {
                    Verdict::Named => {}
                    Verdict::Excused => tally.excused += 1,
                    Verdict::Unnamed => panic!("{at}: the error does not name {file}: {e}"),
                }
            }
        }
    }
    std::fs::write(target, &valid).unwrap();
    assert!(tally.errors > 0, "{format}: no damaged {file} was refused in {cases} cases: the damage missed the loader");
    tally
}

/// `n` random bytes.
fn random_bytes(rng: &mut ChaCha8Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.random::<u8>()).collect()
}

/// A position in a file of `len > 0` bytes to damage: in the first or the last
/// 256 bytes (where magic numbers, headers, footers and metadata are) two
/// times in three, anywhere otherwise.
fn position(rng: &mut ChaCha8Rng, len: usize) -> usize {
    let edge = len.min(256);
    match rng.random_range(0..3) {
        0 => rng.random_range(0..edge),
        1 => len - edge + rng.random_range(0..edge),
        _ => rng.random_range(0..len),
    }
}

/// Byte-level damage of a non-empty file, one of six kinds drawn evenly:
/// 1 to 8 bytes flipped, the file truncated to a shorter length, a run of 1 to
/// 64 random bytes inserted, a run of 1 to 64 bytes deleted, a span of up to
/// 256 bytes overwritten with random bytes, or the whole file replaced by
/// random bytes of a length from 0 to twice its own.
fn mutate_bytes(rng: &mut ChaCha8Rng, valid: &[u8]) -> (Vec<u8>, String) {
    let len = valid.len();
    assert!(len > 0, "the valid file to damage is empty");
    let mut b = valid.to_vec();
    match rng.random_range(0..6) {
        0 => {
            let n: usize = rng.random_range(1..=8);
            let mut at = Vec::with_capacity(n);
            for _ in 0..n {
                let i = position(rng, len);
                b[i] ^= rng.random_range(1..=255u8);
                at.push(i);
            }
            (b, format!("{n} byte(s) flipped at {at:?}"))
        }
        1 => {
            let keep = rng.random_range(0..len);
            b.truncate(keep);
            (b, format!("truncated to {keep} of {len} bytes"))
        }
        2 => {
            let i = if rng.random_bool(0.1) { len } else { position(rng, len) };
            let n: usize = rng.random_range(1..=64);
            let tail = b.split_off(i);
            b.extend(random_bytes(rng, n));
            b.extend(tail);
            (b, format!("{n} random bytes inserted at {i}"))
        }
        3 => {
            let n = rng.random_range(1..=len.min(64));
            let i = position(rng, len).min(len - n);
            let tail = b.split_off(i + n);
            b.truncate(i);
            b.extend(tail);
            (b, format!("{n} bytes deleted at {i}"))
        }
        4 => {
            let n = rng.random_range(1..=len.min(256));
            let i = position(rng, len).min(len - n);
            for x in &mut b[i..i + n] {
                *x = rng.random::<u8>();
            }
            (b, format!("{n} bytes at {i} overwritten with random bytes"))
        }
        _ => {
            let n = rng.random_range(0..=2 * len);
            (random_bytes(rng, n), format!("replaced by {n} random bytes"))
        }
    }
}

/// Tokens a CSV field or a line of a text file may be replaced by: class
/// names, indices in and out of range, numbers that are not indices, quotes,
/// an extra field, an unknown name.
const TOKENS: [&str; 15] =
    ["", "cat", "dog", "0", "1", "2", "-1", "4294967296", " 1 ", "1.0", "\"", "\"dog\"", "a,b", "horse", "id"];

/// Byte sequences that are not UTF-8: a byte that never occurs, a lead byte
/// without its continuation, a lone continuation byte, an encoded surrogate,
/// a four-byte sequence cut short.
const BAD_UTF8: [&[u8]; 5] = [b"\xff", b"\xc3", b"\x80", b"\xed\xa0\x80", b"\xf0\x9f"];

/// A random line of CSV-ish characters (separators, quotes, CR, tabs), 0 to 39 long.
fn random_line(rng: &mut ChaCha8Rng) -> String {
    const CHARS: &[u8] = b"abcdgot/.,\"' 0123456789\t\r;-_";
    let n = rng.random_range(0..40);
    (0..n).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect()
}

/// Damage of a valid, non-empty UTF-8 text file (a CSV, a list of names),
/// half of it text-aware: a line replaced by a random one, a line removed, a
/// line repeated, the file emptied, a comma-separated field of a line (the
/// whole line when it has no comma; the header on line 1) replaced by one of
/// [`TOKENS`], NUL bytes inserted, a sequence that is not UTF-8 inserted; the
/// other half byte-level, as [`mutate_bytes`].
fn mutate_text(rng: &mut ChaCha8Rng, valid: &[u8]) -> (Vec<u8>, String) {
    let text = std::str::from_utf8(valid).expect("the valid text file is UTF-8");
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    assert!(!lines.is_empty(), "the valid text file has no line");
    fn join(lines: &[String]) -> Vec<u8> {
        lines.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes()
    }
    let i = rng.random_range(0..lines.len());
    match rng.random_range(0..14) {
        0 => {
            lines[i] = random_line(rng);
            (join(&lines), format!("line {} replaced by {:?}", i + 1, lines[i]))
        }
        1 => {
            lines.remove(i);
            (join(&lines), format!("line {} removed", i + 1))
        }
        2 => {
            let line = lines[i].clone();
            lines.insert(i, line);
            (join(&lines), format!("line {} repeated", i + 1))
        }
        3 => (Vec::new(), "emptied".to_string()),
        4 => {
            let mut fields: Vec<String> = lines[i].split(',').map(String::from).collect();
            let f = rng.random_range(0..fields.len());
            let token = TOKENS[rng.random_range(0..TOKENS.len())];
            fields[f] = token.to_string();
            lines[i] = fields.join(",");
            (join(&lines), format!("line {} field {} replaced by {token:?}", i + 1, f + 1))
        }
        5 => {
            let mut b = valid.to_vec();
            let n: usize = rng.random_range(1..=4);
            for _ in 0..n {
                let at = rng.random_range(0..=b.len());
                b.insert(at, 0);
            }
            (b, format!("{n} NUL byte(s) inserted"))
        }
        6 => {
            let seq = BAD_UTF8[rng.random_range(0..BAD_UTF8.len())];
            let at = rng.random_range(0..=valid.len());
            let mut b = valid[..at].to_vec();
            b.extend_from_slice(seq);
            b.extend_from_slice(&valid[at..]);
            (b, format!("invalid UTF-8 {seq:02x?} inserted at byte {at}"))
        }
        _ => mutate_bytes(rng, valid),
    }
}

/// A CIFAR-10 batch of `n` records whose labels cycle through 0..10 from `first`.
fn cifar_batch(n: usize, first: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|r| {
            let mut rec = vec![((first + r) % 10) as u8];
            rec.extend((0..3072).map(|p| ((r * 13 + p) % 251) as u8));
            rec
        })
        .collect()
}

/// Whether `batches.meta.txt` bytes are a valid meta file by the loader's own
/// rule: UTF-8 naming 1 to 256 classes, one non-blank line each.
fn meta_is_valid(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes)
        .is_ok_and(|t| (1..=256).contains(&t.lines().map(str::trim).filter(|l| !l.is_empty()).count()))
}

/// What a refused CIFAR-10 release must name when `batches.meta.txt` was damaged.
///
/// A damaged meta file that is still valid ([`meta_is_valid`]) is another
/// list of class names, not a broken file: the loader takes it, and the
/// consequence shows elsewhere and is reported there. A label byte outside
/// the new class range names the batch file and its record; a class with no
/// training image, or a name given twice, names the dataset (the folder,
/// "(CIFAR-10 binary)"). Those are excused. Any other error, and every error
/// for a meta file that is not valid, must name `batches.meta.txt`.
fn judge_meta(bytes: &[u8], err: &str) -> Verdict {
    if err.contains("batches.meta.txt") {
        return Verdict::Named;
    }
    let in_a_batch = err.contains("outside the class range")
        && ["data_batch_1.bin", "data_batch_2.bin", "test_batch.bin"].iter().any(|f| err.contains(f));
    let in_the_dataset =
        err.contains("(CIFAR-10 binary)") && (err.contains("no training image") || err.contains("appears twice"));
    if meta_is_valid(bytes) && (in_a_batch || in_the_dataset) {
        Verdict::Excused
    } else {
        Verdict::Unnamed
    }
}

/// CIFAR-10 binary, a folder: `data_batch_1.bin` (20 records, 3000 cases) and
/// `batches.meta.txt` (2000 cases) damaged. `data_batch_2.bin` holds every
/// class, so no damage to batch 1 can leave a class empty: each refusal must
/// name `data_batch_1.bin`.
#[test]
fn damaged_cifar_batches_never_panic_or_hang_and_errors_name_the_file() {
    let dir = tempdir().unwrap();
    let names = misfit::data::cifar_bin::CLASSES.join("\n") + "\n";
    write_tree(
        dir.path(),
        &[
            ("data_batch_1.bin".to_string(), cifar_batch(20, 0)),
            ("data_batch_2.bin".to_string(), cifar_batch(10, 0)),
            ("test_batch.bin".to_string(), cifar_batch(10, 3)),
            ("batches.meta.txt".to_string(), names.into_bytes()),
        ],
    );
    let load = dataset_loader(format!("cifar10-bin:{}", dir.path().display()), LoadOptions::default());
    let mut rng = ChaCha8Rng::seed_from_u64(0xC1FA_0001);
    let batch = dir.path().join("data_batch_1.bin");
    let mut tally = fuzz("cifar10-bin", &batch, 3000, &mut rng, mutate_bytes, &load, &|_: &[u8], e: &str| {
        naming(e, &["data_batch_1.bin"])
    });
    let meta = dir.path().join("batches.meta.txt");
    tally.add(fuzz("cifar10-bin", &meta, 2000, &mut rng, mutate_text, &load, &judge_meta));
    report("cifar10-bin (folder)", tally);
}

/// Image folders in a directory: one PNG (`train/cat/000.png`) and one JPEG
/// (`train/dog/002.jpg`) damaged, 3000 cases each. A refusal must name the
/// image by its path in the dataset (a size mismatch names both images).
#[test]
fn damaged_images_in_a_folder_never_panic_or_hang_and_errors_name_the_image() {
    let dir = tempdir().unwrap();
    let root = dir.path().join("ds");
    write_tree(&root, &small_folder(""));
    let load = dataset_loader(format!("folder:{}", root.display()), LoadOptions::default());
    let mut rng = ChaCha8Rng::seed_from_u64(0xF01D_0002);
    let mut tally = Tally::default();
    for member in ["train/cat/000.png", "train/dog/002.jpg"] {
        let judge = move |_: &[u8], e: &str| naming(e, &[member]);
        tally.add(fuzz("folder", &root.join(member), 3000, &mut rng, mutate_bytes, &load, &judge));
    }
    report("image folder (directory, PNG and JPEG)", tally);
}

/// Image folders in archives: the bytes of a `.tar` (3000 cases) and of a
/// `.tar.gz` (1500 cases) damaged; every refusal must name the archive.
#[test]
fn damaged_tar_and_tar_gz_archives_never_panic_or_hang_and_errors_name_the_archive() {
    let dir = tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0x7A2_0003);
    let mut tally = Tally::default();
    // Names that do not contain each other, so that naming one never passes for the other.
    for (name, cases) in [("plain.tar", 3000), ("packed.tar.gz", 1500)] {
        let archive = dir.path().join(name);
        write_tar(&archive, &small_folder("ds/"));
        let load = dataset_loader(format!("folder:{}", archive.display()), LoadOptions::default());
        let judge = move |_: &[u8], e: &str| naming(e, &[name]);
        tally.add(fuzz("folder archive", &archive, cases, &mut rng, mutate_bytes, &load, &judge));
    }
    report("image folder (.tar and .tar.gz)", tally);
}

/// Hugging Face image Parquet: `train.parquet` (6 rows of 4x4 PNGs, class
/// names in its metadata) damaged, 3000 cases, a third of the damage aimed at
/// its footer; every refusal must name `train.parquet`.
#[test]
fn damaged_hugging_face_parquet_never_panics_or_hangs_and_errors_name_the_file() {
    let dir = tempdir().unwrap();
    let file = dir.path().join("train.parquet");
    crate::hf_parquet::write_hf(&file, &crate::hf_parquet::good_rows(6, 0), true);
    let load = dataset_loader(format!("parquet:{}", file.display()), LoadOptions::default());
    let mut rng = ChaCha8Rng::seed_from_u64(0x9A2_0004);
    let tally =
        fuzz("parquet", &file, 3000, &mut rng, mutate_bytes, &load, &|_: &[u8], e: &str| naming(e, &["train.parquet"]));
    report("hugging face parquet", tally);
}

/// What a refused dataset must name when its labels CSV was damaged.
///
/// A damaged CSV that still gives every image exactly one valid label is a
/// valid labels file, only with other labels. Should those leave a class with
/// no training image, what is wrong is the dataset as relabelled, and the
/// check that follows relabelling names the dataset ("(image folders in a
/// directory)"): excused. Every other error must name `labels.csv`.
fn judge_labels(_: &[u8], err: &str) -> Verdict {
    if err.contains("labels.csv") {
        Verdict::Named
    } else if err.contains("(image folders in a directory)") && err.contains("no training image") {
        Verdict::Excused
    } else {
        Verdict::Unnamed
    }
}

/// A labels CSV (`LoadOptions::labels`) over a valid image folder: `labels.csv`
/// damaged, 4000 cases, half of them text-aware (random lines, an empty file,
/// a wrong header, NUL bytes, invalid UTF-8, labels out of range).
#[test]
fn a_damaged_labels_csv_never_panics_or_hangs_and_errors_name_the_file() {
    let dir = tempdir().unwrap();
    let root = dir.path().join("ds");
    write_tree(&root, &small_folder(""));
    // Every image with its own class, by name or by index (cat 0, dog 1).
    let mut body = String::from("id,label\n");
    for (i, (id, _)) in small_folder("").iter().enumerate() {
        let (name, index) = if id.contains("/cat/") { ("cat", "0") } else { ("dog", "1") };
        body.push_str(&format!("{id},{}\n", if i % 2 == 0 { name } else { index }));
    }
    let csv = dir.path().join("labels.csv");
    std::fs::write(&csv, body).unwrap();
    let opts = LoadOptions { labels: Some(csv.clone()), ..Default::default() };
    let load = dataset_loader(format!("folder:{}", root.display()), opts);
    let mut rng = ChaCha8Rng::seed_from_u64(0xC5F_0005);
    let tally = fuzz("labels csv", &csv, 4000, &mut rng, mutate_text, &load, &judge_labels);
    report("labels csv", tally);
}

/// What a refused score input must name when `probs.npy` was damaged.
///
/// A damaged `probs.npy` that is still a readable 2-D array, of another shape
/// (`[10, 3]`, `[20, 2]`), is a valid file on its own. The loader takes it and
/// then finds that the files read after it disagree, and names the file it
/// was reading: `labels.npy` ("20 labels for 10 rows of probabilities",
/// "label 2 is outside 0..1") or `embeddings.npy` ("embeddings must be
/// [10, dim]"). Those are excused; every other error must name `probs.npy`.
fn judge_probs(_: &[u8], err: &str) -> Verdict {
    if err.contains("probs.npy") {
        return Verdict::Named;
    }
    let labels = err.contains("labels.npy") && (err.contains(" labels for ") || err.contains(" is outside 0.."));
    let embeddings = err.contains("embeddings.npy") && err.contains("embeddings must be [");
    if labels || embeddings {
        Verdict::Excused
    } else {
        Verdict::Unnamed
    }
}

/// `misfit score`'s `.npy` inputs (20 rows, 3 classes, 4-d embeddings):
/// `probs.npy`, `labels.npy` and `embeddings.npy` damaged one at a time, 2000
/// cases each, a third of the damage aimed at the NPY header.
#[test]
fn damaged_npy_score_files_never_panic_or_hang_and_errors_name_the_file() {
    let dir = tempdir().unwrap();
    misfit::bench::score::generate(dir.path(), 20, 3, 4, 0.1, 7).unwrap();
    let files = ScoreFiles {
        probs: dir.path().join("probs.npy"),
        labels: Some(dir.path().join("labels.npy")),
        embeddings: Some(dir.path().join("embeddings.npy")),
        classes: None,
    };
    let load = score_loader(files.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(0x4E9_0006);
    let mut tally = fuzz("npy", &files.probs, 2000, &mut rng, mutate_bytes, &load, &judge_probs);
    for name in ["labels.npy", "embeddings.npy"] {
        let judge = move |_: &[u8], e: &str| naming(e, &[name]);
        tally.add(fuzz("npy", &dir.path().join(name), 2000, &mut rng, mutate_bytes, &load, &judge));
    }
    report("npy (misfit score)", tally);
}

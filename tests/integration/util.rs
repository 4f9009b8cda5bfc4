//! Helpers shared by the tests: writers of small datasets in every format.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use misfit::data::{self, Dataset, DatasetSpec, LoadOptions};

/// `../shared` beside the repository.
pub fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("shared")
}

/// A file under `../shared`, or `None` (with a plain message) when it is
/// absent and `MISFIT_SKIP_SHARED=1` allows skipping. Absent without that
/// variable, the test fails: it never passes silently.
pub fn require_shared(rel: &str) -> Option<PathBuf> {
    let p = shared_dir().join(rel);
    if p.exists() {
        return Some(p);
    }
    if std::env::var("MISFIT_SKIP_SHARED").as_deref() == Ok("1") {
        eprintln!("SKIPPED: {} is absent (MISFIT_SKIP_SHARED=1): this test did not run", p.display());
        return None;
    }
    panic!(
        "{} is absent: this test needs ../shared beside the repository. Set MISFIT_SKIP_SHARED=1 to skip it knowingly.",
        p.display()
    );
}

/// The error message of a failed load, as the user would see it.
pub fn load_err(spec: &str, opts: &LoadOptions) -> String {
    match DatasetSpec::parse(spec).and_then(|s| data::load(&s, opts)) {
        Ok(ds) => panic!("loading {spec} should fail but gave {} train images", ds.train.len()),
        Err(e) => e.to_string(),
    }
}

/// Loads a dataset or fails the test with the error.
pub fn load_ok(spec: &str, opts: &LoadOptions) -> Dataset {
    let spec = DatasetSpec::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
    data::load(&spec, opts).unwrap_or_else(|e| panic!("{spec}: {e}"))
}

/// A deterministic `[h, w, 3]` image whose pixels encode `seed`.
pub fn pattern(seed: u8, h: usize, w: usize) -> Vec<u8> {
    (0..h * w * 3).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed.wrapping_mul(31))).collect()
}

/// PNG bytes of an RGB image.
pub fn png(pixels: &[u8], h: usize, w: usize) -> Vec<u8> {
    misfit::data::synth::png(pixels, h, w)
}

/// JPEG bytes of an RGB image.
pub fn jpeg(pixels: &[u8], h: usize, w: usize) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
        .encode(pixels, w as u32, h as u32, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// A tar header for a regular file of `size` bytes.
fn header(size: usize) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h
}

/// Writes a tar (gzip-compressed when the name ends in .gz) of (path, bytes).
pub fn write_tar(dest: &Path, files: &[(String, Vec<u8>)]) {
    let file = std::fs::File::create(dest).unwrap();
    let w: Box<dyn Write> = if dest.to_string_lossy().ends_with(".gz") {
        Box::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()))
    } else {
        Box::new(file)
    };
    let mut b = tar::Builder::new(w);
    for (path, bytes) in files {
        let mut h = header(bytes.len());
        b.append_data(&mut h, path, bytes.as_slice()).unwrap();
    }
    b.into_inner().unwrap().flush().unwrap();
}

/// Writes a plain tar with one entry whose name is written raw, bypassing the
/// tar crate's own path checks (to plant `..` and absolute paths).
pub fn write_tar_raw_name(dest: &Path, raw_name: &str, bytes: &[u8]) {
    let mut h = header(bytes.len());
    let name = &mut h.as_old_mut().name;
    name[..raw_name.len()].copy_from_slice(raw_name.as_bytes());
    h.set_cksum();
    let mut b = tar::Builder::new(std::fs::File::create(dest).unwrap());
    b.append(&h, bytes).unwrap();
    b.finish().unwrap();
}

/// Writes files under a folder, creating parents.
pub fn write_tree(root: &Path, files: &[(String, Vec<u8>)]) {
    for (rel, bytes) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

/// A small image-folder dataset: 2 classes (`cat`, `dog`), 3 train and 1 test
/// image each, 8x6 pixels, PNG except one JPEG; returns (path, bytes) pairs.
pub fn small_folder(prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for (c, class) in ["cat", "dog"].iter().enumerate() {
        for i in 0..3 {
            let px = pattern((c * 10 + i) as u8, 8, 6);
            let bytes = if c == 1 && i == 2 { jpeg(&px, 8, 6) } else { png(&px, 8, 6) };
            let ext = if c == 1 && i == 2 { "jpg" } else { "png" };
            files.push((format!("{prefix}train/{class}/{i:03}.{ext}"), bytes));
        }
        files.push((format!("{prefix}test/{class}/t0.png"), png(&pattern(100 + c as u8, 8, 6), 8, 6)));
    }
    files
}

/// Runs the `misfit` binary in `cwd`.
pub fn misfit(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_misfit")).args(args).current_dir(cwd).output().unwrap()
}

/// Standard output and error of a run, together.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A tiny ResNet configuration (depth 8, width 4) for `classes` classes,
/// with a non-trivial input normalisation.
pub fn tiny_model(classes: usize) -> misfit::model::ModelConfig {
    misfit::model::ModelConfig {
        depth: 8,
        width: 4,
        shortcut: misfit::model::Shortcut::A,
        classes: (0..classes).map(|c| format!("c{c}")).collect(),
        mean: [0.5, 0.4, 0.3],
        std: [0.25, 0.2, 0.3],
    }
}

/// A freshly initialised [`tiny_model`] of 3 classes in f64, with
/// non-trivial batch-norm running statistics, frozen: finite differences
/// on it are exact enough to judge a gradient.
pub fn tiny_f64(seed: u64) -> misfit::model::ResNet {
    use candle_core::{DType, Var};
    use misfit::model::{Params, ResNet};
    use std::collections::BTreeMap;
    let p = ResNet::init(tiny_model(3), seed, &candle_core::Device::Cpu).unwrap().params;
    let f64s = |m: &BTreeMap<String, Var>| -> BTreeMap<String, Var> {
        m.iter()
            .map(|(k, v)| {
                let t = v.as_tensor().to_dtype(DType::F64).unwrap();
                let t = if k.ends_with("running_var") { (t * 1.7).unwrap() } else { t };
                let t = if k.ends_with("running_mean") { (t + 0.1).unwrap() } else { t };
                (k.clone(), Var::from_tensor(&t).unwrap())
            })
            .collect()
    };
    let params = Params { trainable: f64s(&p.trainable), buffers: f64s(&p.buffers) };
    ResNet::new(tiny_model(3), params).unwrap().frozen()
}

/// `n` numbers uniform in [0, 1) from a fixed seed: test inputs that are the
/// same on every run (the thread's generator made gradient checks flaky).
pub fn uniform(n: usize, seed: u64) -> Vec<f64> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<f64>()).collect()
}

/// A central finite difference of `f` along coordinate `i` that can judge a
/// gradient: `f(i, delta)` is the loss with coordinate `i` moved by `delta`.
/// The losses checked are piecewise smooth (ReLU); where steps of 1e-6 and
/// 1e-5 disagree, a kink lies within reach, and the next coordinate (of up to
/// eight) is taken instead. Returns the coordinate and its difference. A wrong
/// gradient still fails: both steps agree with each other, not with autograd.
pub fn smooth_difference(f: impl Fn(usize, f64) -> f64, start: usize, len: usize) -> (usize, f64) {
    let numeric = |i: usize, eps: f64| (f(i, eps) - f(i, -eps)) / (2.0 * eps);
    (0..8)
        .map(|k| (start + k) % len)
        .map(|i| (i, numeric(i, 1e-6), numeric(i, 1e-5)))
        .find(|&(_, a, b)| (a - b).abs() <= gradient_tolerance(a, b))
        .map(|(i, a, _)| (i, a))
        .unwrap_or_else(|| panic!("no smooth coordinate among the eight from {start}"))
}

/// How far autograd and a finite difference may differ in f64.
pub fn gradient_tolerance(a: f64, b: f64) -> f64 {
    1e-7 + 1e-4 * a.abs().max(b.abs())
}

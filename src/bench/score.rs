//! `misfit bench score`: the bring-your-own scoring path at scale, on
//! generated data, against cleanlab's `find_label_issues` on the same
//! probabilities in the same run: speed ratio and agreement (Jaccard).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use crate::byo::{self, ScoreFiles};
use crate::error::{Error, Result};
use crate::scores::{PruneMethod, ScoreConfig};
use npyz::WriterBuilder;

/// The cleanlab script, run as a reference.
pub const CLEANLAB_SCRIPT: &str = include_str!("cleanlab_reference.py");

/// Generated data: labels with `noise` of them flipped (symmetric),
/// probabilities from noisy logits of the true class, and embeddings shaped
/// like a classifier's pooled features: per true class a centre, 100 modes
/// spread along a 16-d class subspace, each image near its mode along an 8-d
/// subspace plus isotropic noise, and ReLU'd (non-negative). Measured against
/// the shared ResNet-20's CIFAR-10 features at 50,000 images, this is no
/// easier for the IVF index (README, "Speed").
pub fn generate(dir: &Path, n: usize, k: usize, dim: usize, noise: f64, seed: u64) -> Result<()> {
    const MODES: usize = 100;
    const MODE_DIM: usize = 16;
    const LOCAL_DIM: usize = 8;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0f32, 1.0).expect("unit normal");
    let mut draw = |len: usize, scale: f32| -> Vec<f32> { (0..len).map(|_| scale * normal.sample(&mut rng)).collect() };
    let centres = draw(k * dim, 1.0);
    let class_basis = draw(k * MODE_DIM * dim, 1.0 / (MODE_DIM as f32).sqrt());
    let local_basis = draw(k * MODES * LOCAL_DIM * dim, 1.0 / (LOCAL_DIM as f32).sqrt());
    let mut modes = vec![0f32; k * MODES * dim];
    for c in 0..k {
        for m in 0..MODES {
            let z = draw(MODE_DIM, 1.0);
            let row = &mut modes[(c * MODES + m) * dim..(c * MODES + m + 1) * dim];
            for d in 0..dim {
                row[d] = centres[c * dim + d]
                    + (0..MODE_DIM).map(|r| z[r] * class_basis[(c * MODE_DIM + r) * dim + d]).sum::<f32>();
            }
        }
    }
    let (mut probs, mut labels, mut emb) =
        (Vec::with_capacity(n * k), Vec::with_capacity(n), Vec::with_capacity(n * dim));
    for _ in 0..n {
        let t = rng.random_range(0..k);
        let y = if rng.random_bool(noise) { (t + rng.random_range(1..k)) % k } else { t };
        let logits: Vec<f32> = (0..k).map(|j| if j == t { 2.5 } else { 0.0 } + 1.2 * normal.sample(&mut rng)).collect();
        let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = logits.iter().map(|v| (v - m).exp()).collect();
        let s: f32 = e.iter().sum();
        probs.extend(e.iter().map(|v| v / s));
        labels.push(y as i64);
        let mode = t * MODES + rng.random_range(0..MODES);
        let z: Vec<f32> = (0..LOCAL_DIM).map(|_| 1.2 * normal.sample(&mut rng)).collect();
        emb.extend((0..dim).map(|d| {
            let local: f32 = (0..LOCAL_DIM).map(|r| z[r] * local_basis[(mode * LOCAL_DIM + r) * dim + d]).sum();
            (modes[mode * dim + d] + local + 0.35 * normal.sample(&mut rng)).max(0.0)
        }));
    }
    write_npy(&dir.join("probs.npy"), &[n as u64, k as u64], probs)?;
    write_npy(&dir.join("labels.npy"), &[n as u64], labels)?;
    write_npy(&dir.join("embeddings.npy"), &[n as u64, dim as u64], emb)
}

pub(crate) fn write_npy<T: npyz::Serialize + npyz::AutoSerialize>(
    path: &Path,
    shape: &[u64],
    values: Vec<T>,
) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(|e| Error::io(path, e))?;
    w.extend(values).map_err(|e| Error::io(path, e))?;
    w.finish().map_err(|e| Error::io(path, e))
}

/// What the benchmark measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScoreBench {
    pub samples: usize,
    /// misfit: reading the files and confident learning (what cleanlab does).
    pub misfit_cl_s: f64,
    /// misfit: confident learning alone (what cleanlab's timing covers).
    pub misfit_cl_compute_s: f64,
    /// misfit: the same plus embeddings, neighbours and every flag.
    pub misfit_full_s: Option<f64>,
    pub misfit_flagged: usize,
    pub cleanlab: Option<String>,
    pub cleanlab_s: Option<f64>,
    pub cleanlab_flagged: Option<usize>,
    /// |misfit ∩ cleanlab| / |misfit ∪ cleanlab| of the flagged rows.
    pub jaccard: Option<f64>,
}

/// Runs the benchmark in `dir` (which it fills with the generated files).
pub fn run(dir: &Path, n: usize, k: usize, dim: usize, with_embeddings: bool, python: &str) -> Result<ScoreBench> {
    generate(dir, n, k, dim, 0.1, 0)?;
    let cfg = ScoreConfig { prune: PruneMethod::PruneByNoiseRate, ..ScoreConfig::default() };
    let files = ScoreFiles {
        probs: dir.join("probs.npy"),
        labels: Some(dir.join("labels.npy")),
        embeddings: None,
        classes: None,
    };
    let t = Instant::now();
    let (_, manifest, sc) = byo::run(&files, &cfg, &dir.join("outputs"), "cl")?;
    let misfit_cl_s = t.elapsed().as_secs_f64();
    let misfit_cl_compute_s = manifest.timing_s["score"];
    let ours: HashSet<usize> =
        sc.images.iter().enumerate().filter(|(_, s)| s.label_issue == Some(true)).map(|(i, _)| i).collect();
    let misfit_full_s = if with_embeddings {
        let files = ScoreFiles { embeddings: Some(dir.join("embeddings.npy")), ..files.clone() };
        let t = Instant::now();
        byo::run(&files, &cfg, &dir.join("outputs"), "full")?;
        Some(t.elapsed().as_secs_f64())
    } else {
        None
    };
    let mut out = ScoreBench {
        samples: n,
        misfit_cl_s,
        misfit_cl_compute_s,
        misfit_full_s,
        misfit_flagged: ours.len(),
        cleanlab: None,
        cleanlab_s: None,
        cleanlab_flagged: None,
        jaccard: None,
    };
    let probe = std::process::Command::new(python).args(["-c", "import cleanlab"]).output();
    if !matches!(probe, Ok(o) if o.status.success()) {
        return Ok(out);
    }
    let script = dir.join("cleanlab_reference.py");
    std::fs::write(&script, CLEANLAB_SCRIPT).map_err(|e| Error::io(&script, e))?;
    let flagged = dir.join("cleanlab_issues.npy");
    let o = std::process::Command::new(python)
        .arg(&script)
        .arg(dir.join("probs.npy"))
        .arg(dir.join("labels.npy"))
        .arg(&flagged)
        .arg("prune_by_noise_rate")
        .output()
        .map_err(|e| Error::io(python, e))?;
    if !o.status.success() {
        return Err(Error::Usage(format!("the cleanlab reference failed: {}", String::from_utf8_lossy(&o.stderr))));
    }
    let line = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim().lines().last().unwrap_or_default())
        .map_err(|e| Error::Usage(format!("unreadable cleanlab output '{line}': {e}")))?;
    let bytes = std::fs::read(&flagged).map_err(|e| Error::io(&flagged, e))?;
    let theirs: HashSet<usize> = npyz::NpyFile::new(&bytes[..])
        .and_then(|f| f.into_vec::<i64>())
        .map_err(|e| Error::io(&flagged, e))?
        .into_iter()
        .map(|i| i as usize)
        .collect();
    let inter = ours.intersection(&theirs).count() as f64;
    let union = ours.union(&theirs).count().max(1) as f64;
    out.cleanlab = v["cleanlab"].as_str().map(String::from);
    out.cleanlab_s = v["seconds"].as_f64();
    out.cleanlab_flagged = Some(theirs.len());
    out.jaccard = Some(inter / union);
    Ok(out)
}

/// `misfit bench score`: generates the data in `dir`, runs both, prints the figures and the ratio.
pub fn report(dir: &Path, n: usize, classes: usize, dim: usize, embeddings: bool, python: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| crate::error::Error::io(dir, e))?;
    let b = run(dir, n, classes, dim, embeddings, python)?;
    println!(
        "{n} samples x {classes} classes{}",
        if embeddings { format!(", {dim}-d embeddings") } else { String::new() }
    );
    println!(
        "misfit   confident learning: {:.2} s of compute ({:.2} s with reading the files and writing the tables), {} flagged",
        b.misfit_cl_compute_s, b.misfit_cl_s, b.misfit_flagged
    );
    if let Some(s) = b.misfit_full_s {
        println!("misfit   everything with embeddings and neighbours: {s:.2} s");
    }
    match (b.cleanlab_s, &b.cleanlab, b.cleanlab_flagged, b.jaccard) {
        (Some(s), Some(v), Some(f), Some(j)) => {
            println!("cleanlab {v} find_label_issues (prune_by_noise_rate): {s:.2} s, {f} flagged");
            println!(
                "ratio    cleanlab time / misfit time: {:.2} (compute), {:.2} (end to end); Jaccard of flagged sets {j:.6}",
                s / b.misfit_cl_compute_s,
                s / b.misfit_cl_s
            );
        }
        _ => println!("cleanlab: not importable by {python}; no comparison (pass --python PATH)"),
    }
    Ok(())
}

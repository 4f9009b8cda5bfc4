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

use crate::data::probs::{self, ScoreFiles};
use crate::error::{Error, Result};
use crate::quality::{PruneMethod, ScoreConfig};
use crate::score;
use npyz::WriterBuilder;

/// The cleanlab script, run as a reference.
pub const CLEANLAB_SCRIPT: &str = include_str!("cleanlab_reference.py");

/// The Datalab script (label, outlier and near-duplicate issues from the same
/// probabilities and embeddings), run as a reference.
pub const DATALAB_SCRIPT: &str = include_str!("datalab_reference.py");

/// Generated data: labels with `noise` of them flipped (symmetric),
/// probabilities from noisy logits of the true class, and embeddings shaped
/// like a classifier's pooled features: per true class a centre, 100 modes
/// spread along a 16-d class subspace, each image near its mode along an 8-d
/// subspace plus isotropic noise, and ReLU'd (non-negative). Measured against
/// the shared ResNet-20's CIFAR-10 features at 50,000 images, this is no
/// easier for the IVF index (docs/evaluation.md, "Bring-your-own scoring speed").
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
    /// Each neighbour search of every row among all rows, timed (with embeddings).
    pub searches: Vec<SearchTime>,
    /// Datalab (label, outlier, near_duplicate issue types) on the same files, seconds.
    pub datalab_s: Option<f64>,
    /// Datalab's issue counts: label, outlier, near_duplicate.
    pub datalab_counts: Option<[usize; 3]>,
}

/// One neighbour search of every row among all rows (k = 10), timed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SearchTime {
    /// `exact`, `ivf` or `hnsw`.
    pub index: String,
    /// Building the index (0 for exact search), seconds.
    pub build_s: f64,
    /// Searching every row at the tuned ef or nprobe, seconds.
    pub search_s: f64,
    /// Recall@10 on the sample `misfit score` checks.
    pub recall: f64,
    /// Training rows compared per query (exact: all; IVF: centroids and probed lists).
    pub rows_per_query: f64,
}

/// Times exact search, IVF and (when `hnsw`) HNSW on `emb` (unit rows): each
/// tuned as `misfit score` tunes it, then built and searched again under the
/// clock. Exact search runs up to 200,000 rows (it grows with the square).
fn time_searches(emb: &[f32], dim: usize, hnsw: bool) -> Vec<SearchTime> {
    use crate::quality::{ivf::Ivf, neighbors, search_neighbors, Embeddings, IndexChoice};
    let n = emb.len() / dim;
    let selves: Vec<Option<u32>> = (0..n as u32).map(Some).collect();
    let e = Embeddings { dim, train: emb, test: &[] };
    let mut out = Vec::new();
    if n <= 200_000 {
        let t = Instant::now();
        neighbors::exact(emb, emb, dim, 10, &selves);
        let search_s = t.elapsed().as_secs_f64();
        out.push(SearchTime { index: "exact".into(), build_s: 0.0, search_s, recall: 1.0, rows_per_query: n as f64 });
    }
    let cfg = ScoreConfig { index: IndexChoice::Ivf, ..ScoreConfig::default() };
    let (_, _, r) = search_neighbors(&e, &cfg);
    let t = Instant::now();
    let ivf = Ivf::build(emb, dim, cfg.seed);
    let build_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    ivf.search(emb, emb, 10, r.ef_search, &selves);
    let search_s = t.elapsed().as_secs_f64();
    out.push(SearchTime {
        index: "ivf".into(),
        build_s,
        search_s,
        recall: r.recall,
        rows_per_query: r.rows_per_query.unwrap_or(f64::NAN),
    });
    if hnsw {
        let cfg = ScoreConfig { index: IndexChoice::Hnsw, ..ScoreConfig::default() };
        let (_, _, r) = search_neighbors(&e, &cfg);
        let t = Instant::now();
        let h = neighbors::Index::build(emb, dim, &cfg.hnsw);
        let build_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        h.search(emb, dim, 10, r.ef_search, &selves);
        let search_s = t.elapsed().as_secs_f64();
        out.push(SearchTime { index: "hnsw".into(), build_s, search_s, recall: r.recall, rows_per_query: f64::NAN });
    }
    out
}

/// Reads a `.npy` of row indices the reference scripts write.
fn read_rows(path: &Path) -> Result<HashSet<usize>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(npyz::NpyFile::new(&bytes[..])
        .and_then(|f| f.into_vec::<i64>())
        .map_err(|e| Error::io(path, e))?
        .into_iter()
        .map(|i| i as usize)
        .collect())
}

/// Runs a reference script with `python`; returns its last stdout line as JSON.
fn run_script(python: &str, script: &Path, args: &[&Path]) -> Result<serde_json::Value> {
    let o = std::process::Command::new(python).arg(script).args(args).output().map_err(|e| Error::io(python, e))?;
    if !o.status.success() {
        return Err(Error::Usage(format!(
            "the reference {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&o.stderr)
        )));
    }
    let line = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(line.trim().lines().last().unwrap_or_default())
        .map_err(|e| Error::Usage(format!("unreadable output of {} '{line}': {e}", script.display())))
}

/// Runs the benchmark in `dir` (which it fills with the generated files).
pub fn run(
    dir: &Path,
    n: usize,
    k: usize,
    dim: usize,
    with_embeddings: bool,
    hnsw: bool,
    python: &str,
) -> Result<ScoreBench> {
    generate(dir, n, k, dim, 0.1, 0)?;
    let cfg = ScoreConfig { prune: PruneMethod::PruneByNoiseRate, ..ScoreConfig::default() };
    let files = ScoreFiles {
        probs: dir.join("probs.npy"),
        labels: Some(dir.join("labels.npy")),
        embeddings: None,
        classes: None,
    };
    let t = Instant::now();
    let (_, manifest, sc) = score::run(&files, &cfg, &dir.join("outputs"), "cl")?;
    let misfit_cl_s = t.elapsed().as_secs_f64();
    let misfit_cl_compute_s = manifest.timing_s["scores"];
    let ours: HashSet<usize> =
        sc.images.iter().enumerate().filter(|(_, s)| s.label_issue == Some(true)).map(|(i, _)| i).collect();
    let misfit_full_s = if with_embeddings {
        let files = ScoreFiles { embeddings: Some(dir.join("embeddings.npy")), ..files.clone() };
        let t = Instant::now();
        score::run(&files, &cfg, &dir.join("outputs"), "full")?;
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
        searches: Vec::new(),
        datalab_s: None,
        datalab_counts: None,
    };
    if with_embeddings {
        let raw: Vec<f32> = probs::read_npy(&dir.join("embeddings.npy"))?.0.into_iter().map(|x| x as f32).collect();
        out.searches = time_searches(&crate::quality::neighbors::normalize(&raw, dim), dim, hnsw);
    }
    let probe = std::process::Command::new(python).args(["-c", "import cleanlab"]).output();
    if !matches!(probe, Ok(o) if o.status.success()) {
        return Ok(out);
    }
    let script = dir.join("cleanlab_reference.py");
    std::fs::write(&script, CLEANLAB_SCRIPT).map_err(|e| Error::io(&script, e))?;
    let flagged = dir.join("cleanlab_issues.npy");
    let (probs, labels) = (dir.join("probs.npy"), dir.join("labels.npy"));
    let v = run_script(python, &script, &[&probs, &labels, &flagged, Path::new("prune_by_noise_rate")])?;
    let theirs = read_rows(&flagged)?;
    // Datalab's neighbour search grows too slow to wait for above 200,000 rows.
    if with_embeddings && n <= 200_000 {
        let script = dir.join("datalab_reference.py");
        std::fs::write(&script, DATALAB_SCRIPT).map_err(|e| Error::io(&script, e))?;
        let prefix = dir.join("datalab");
        let d = run_script(python, &script, &[&probs, &labels, &dir.join("embeddings.npy"), &prefix])?;
        out.datalab_s = d["seconds"].as_f64();
        let count = |key: &str| d[key].as_u64().unwrap_or(0) as usize;
        out.datalab_counts = Some([count("label"), count("outlier"), count("near_duplicate")]);
    }
    let inter = ours.intersection(&theirs).count() as f64;
    let union = ours.union(&theirs).count().max(1) as f64;
    out.cleanlab = v["cleanlab"].as_str().map(String::from);
    out.cleanlab_s = v["seconds"].as_f64();
    out.cleanlab_flagged = Some(theirs.len());
    out.jaccard = Some(inter / union);
    Ok(out)
}

/// `misfit bench score`: generates the data in `dir`, runs both, prints the figures and the ratio.
pub fn report(
    dir: &Path,
    n: usize,
    classes: usize,
    dim: usize,
    embeddings: bool,
    hnsw: bool,
    python: &str,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| crate::error::Error::io(dir, e))?;
    let b = run(dir, n, classes, dim, embeddings, hnsw, python)?;
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
    for t in &b.searches {
        println!(
            "search   {:<5} build {:>7.2} s, search {:>7.2} s, recall@10 {:.3}, {:.0} rows compared per query{}",
            t.index,
            t.build_s,
            t.search_s,
            t.recall,
            t.rows_per_query,
            match t.index.as_str() {
                "hnsw" => String::new(),
                _ => format!(", {:.2} ns per row", 1e9 * t.search_s / (n as f64 * t.rows_per_query)),
            }
        );
    }
    if let (Some(e), Some(i)) =
        (b.searches.iter().find(|t| t.index == "exact"), b.searches.iter().find(|t| t.index == "ivf"))
    {
        let per_row = |t: &SearchTime| t.search_s / (n as f64 * t.rows_per_query);
        println!(
            "cost     an IVF row costs {:.2} exact rows (misfit uses IVF_ROW_COST = {}); measured: exact {:.2} s, ivf {:.2} s",
            per_row(i) / per_row(e),
            crate::quality::IVF_ROW_COST,
            e.search_s,
            i.build_s + i.search_s
        );
    }
    if let (Some(d), Some([l, o, nd])) = (b.datalab_s, b.datalab_counts) {
        println!(
            "datalab  label + outlier + near_duplicate: {d:.2} s ({l} label, {o} outlier, {nd} near-duplicate issues)"
        );
        if let Some(m) = b.misfit_full_s {
            println!("ratio    datalab time / misfit time (everything, end to end): {:.1}", d / m);
        }
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

//! `misfit score`: bring-your-own probabilities, labels and embeddings from
//! .npy and Parquet, and the bad inputs it must refuse.

use tempfile::tempdir;

use crate::util::{misfit, text};

#[test]
fn generated_npy_files_score_like_cleanlab_would_and_write_tables() {
    let dir = tempdir().unwrap();
    misfit::bench::score::generate(dir.path(), 3000, 4, 64, 0.1, 5).unwrap();
    let o = misfit(
        &[
            "score",
            "--probs",
            "probs.npy",
            "--labels",
            "labels.npy",
            "--embeddings",
            "embeddings.npy",
            "--classes",
            "a,b,c,d",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    use polars::prelude::SerReader;
    let df = polars::prelude::ParquetReader::new(
        std::fs::File::open(dir.path().join("outputs/score/samples.parquet")).unwrap(),
    )
    .finish()
    .unwrap();
    assert_eq!(df.height(), 3000);
    let flagged = df.column("likely_mislabeled").unwrap().bool().unwrap().sum().unwrap();
    // 10% of 3,000 labels were flipped; the flags find about that many.
    assert!((200..=400).contains(&flagged), "{flagged} flagged");
    // The neighbour search chosen by the work each would do, and why, in run.json.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("outputs/score/run.json")).unwrap()).unwrap();
    let choice = manifest["scores"]["recall"]["choice"].as_str().unwrap();
    assert!(choice.starts_with("auto: ") && choice.contains("exact comparisons per query"), "{choice}");
    let index = manifest["scores"]["recall"]["index"].as_str().unwrap();
    assert!(text(&o).contains(&format!("index    {index}")), "{}", text(&o));
    // Each search on request; a run of any of them reads back (HNSW records no rows per query).
    for index in ["exact", "hnsw"] {
        let args = ["score", "--probs", "probs.npy", "--labels", "labels.npy", "--embeddings", "embeddings.npy"];
        let o = misfit(&[&args[..], &["--index", index, "--run", index]].concat(), dir.path());
        assert!(o.status.success() && text(&o).contains(&format!("index    {index}")), "{}", text(&o));
        let o = misfit(&["report", &format!("outputs/{index}")], dir.path());
        assert!(o.status.success(), "{index}: {}", text(&o));
    }
}

#[test]
fn bad_inputs_are_refused_naming_the_problem_and_row() {
    let dir = tempdir().unwrap();
    misfit::bench::score::generate(dir.path(), 200, 3, 4, 0.1, 1).unwrap();
    let write = |name: &str, shape: &[u64], v: Vec<f32>| {
        use npyz::WriterBuilder;
        let f = std::fs::File::create(dir.path().join(name)).unwrap();
        let mut w = npyz::WriteOptions::<f32>::new().default_dtype().shape(shape).writer(f).begin_nd().unwrap();
        w.extend(v).unwrap();
        w.finish().unwrap();
    };
    let good: Vec<f32> = (0..200).flat_map(|i| if i % 3 == 0 { [0.8, 0.1, 0.1] } else { [0.1, 0.1, 0.8] }).collect();
    let mut bad_sum = good.clone();
    bad_sum[3 * 17] = 0.5;
    write("sum.npy", &[200, 3], bad_sum);
    let mut nan = good.clone();
    nan[3 * 5 + 1] = f32::NAN;
    write("nan.npy", &[200, 3], nan);
    write("short.npy", &[199, 3], good[..597].to_vec());
    for (file, want) in [("sum.npy", "sum.npy: row 17"), ("nan.npy", "nan.npy: row 5"), ("short.npy", "199 rows")] {
        let o = misfit(&["score", "--probs", file, "--labels", "labels.npy"], dir.path());
        assert!(!o.status.success());
        let t = text(&o);
        assert!(t.contains(want), "{file}: {t}");
    }
    let o = misfit(
        &["score", "--probs", "probs.npy", "--labels", "labels.npy", "--embeddings", "embeddings.npy", "--k", "200"],
        dir.path(),
    );
    assert!(!o.status.success() && text(&o).contains("k = 200"), "{}", text(&o));
    assert!(!dir.path().join("outputs/score").exists(), "nothing written after an error");
}

/// Writes `[n, dim]` f32 rows as .npy.
fn npy(path: &std::path::Path, shape: &[u64], v: Vec<f32>) {
    use npyz::WriterBuilder;
    let f = std::fs::File::create(path).unwrap();
    let mut w = npyz::WriteOptions::<f32>::new().default_dtype().shape(shape).writer(f).begin_nd().unwrap();
    w.extend(v).unwrap();
    w.finish().unwrap();
}

/// Writes a Parquet file of `probs` (list of f64) and a `label` column.
fn parquet_with_labels(path: &std::path::Path, probs: &[[f64; 3]], label: arrow::array::ArrayRef) {
    use arrow::array::{ArrayRef, Float64Builder, ListBuilder, RecordBatch};
    let mut b = ListBuilder::new(Float64Builder::new());
    for p in probs {
        b.values().append_slice(p);
        b.append(true);
    }
    let batch =
        RecordBatch::try_from_iter([("probs", std::sync::Arc::new(b.finish()) as ArrayRef), ("label", label)]).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn every_bad_input_or_option_is_an_error_naming_it_before_any_work() {
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use std::sync::Arc;
    let dir = tempdir().unwrap();
    let d = dir.path();
    misfit::bench::score::generate(d, 200, 3, 4, 0.1, 1).unwrap();
    let emb: Vec<f32> = (0..200 * 4).map(|i| ((i * 37 % 101) as f32) / 101.0 + 0.01).collect();
    let with = |row: usize, col: usize, v: f32| {
        let mut e = emb.clone();
        e[row * 4 + col] = v;
        e
    };
    npy(&d.join("emb_inf.npy"), &[200, 4], with(7, 2, f32::INFINITY));
    npy(&d.join("emb_nan.npy"), &[200, 4], with(9, 0, f32::NAN));
    npy(&d.join("emb_zero.npy"), &[200, 4], vec![0.0; 200 * 4]);
    npy(&d.join("emb_same.npy"), &[200, 4], (0..200).flat_map(|_| [0.5f32, 0.1, 0.2, 0.3]).collect());
    // Multiples of one vector (either sign, one zero row): every normalised
    // row is one of two points.
    let line = (0..200).flat_map(|i| [0.5f32, 0.1, 0.2, 0.3].map(|x| x * (i as f32 - 100.0))).collect();
    npy(&d.join("emb_line.npy"), &[200, 4], line);
    npy(&d.join("empty.npy"), &[0, 3], Vec::new());
    let probs: Vec<[f64; 3]> = (0..4).map(|_| [0.2, 0.3, 0.5]).collect();
    parquet_with_labels(
        &d.join("null_label.parquet"),
        &probs,
        Arc::new(Int64Array::from(vec![Some(0), Some(1), None, Some(2)])) as ArrayRef,
    );
    parquet_with_labels(
        &d.join("text_label.parquet"),
        &probs,
        Arc::new(StringArray::from(vec!["cat", "dog", "cat", "bird"])) as ArrayRef,
    );
    let base = ["score", "--probs", "probs.npy", "--labels", "labels.npy"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--embeddings", "embeddings.npy", "--k", "0"], "--k 0: the neighbour vote needs at least 1"),
        (vec!["--embeddings", "emb_inf.npy"], "emb_inf.npy: row 7: embedding value 2 is inf"),
        (vec!["--embeddings", "emb_nan.npy"], "emb_nan.npy: row 9: embedding value 0 is NaN"),
        (vec!["--embeddings", "emb_zero.npy"], "emb_zero.npy: every embedding is all zeros"),
        (vec!["--embeddings", "emb_same.npy"], "emb_same.npy: every embedding is the same vector"),
        (vec!["--embeddings", "emb_line.npy"], "emb_line.npy: every embedding is a multiple of one vector"),
    ];
    for (extra, want) in cases {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let o = misfit(&args, d);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success() && err.contains(want), "{extra:?}: {err}");
        assert!(!err.contains("panicked"), "{extra:?}: {err}");
    }
    for (args, want) in [
        (vec!["score", "--probs", "null_label.parquet"], "null_label.parquet: row 2: label is null"),
        (vec!["score", "--probs", "text_label.parquet"], "text_label.parquet: column 'label' holds Utf8, not class"),
        (vec!["score", "--probs", "empty.npy", "--labels", "labels.npy"], "empty.npy: no rows"),
    ] {
        let o = misfit(&args, d);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success() && err.contains(want), "{args:?}: {err}");
    }
    // An OS error is told once, after the path.
    let o = misfit(&["score", "--probs", "missing.npy", "--labels", "labels.npy"], d);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.contains("missing.npy: No such file or directory"), "{err}");
    assert!(!d.join("outputs/score").exists(), "nothing written after an error");
}

#[test]
fn a_run_in_use_is_refused_and_what_killed_runs_left_is_removed() {
    let dir = tempdir().unwrap();
    let d = dir.path();
    misfit::bench::score::generate(d, 200, 3, 4, 0.1, 1).unwrap();
    let args = ["score", "--probs", "probs.npy", "--labels", "labels.npy", "--run", "x"];
    // Another process writing run x holds its lock (here: this test).
    let lock = misfit::run::RunLock::take(&d.join("outputs"), "x").unwrap();
    let o = misfit(&args, d);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success() && err.contains("run 'x' is being written by another misfit process"), "{err}");
    drop(lock);
    // A killed run's unfinished folders (and a lock file left behind) go at the next run of that name.
    std::fs::create_dir_all(d.join("outputs/.x.partial-999999/sub")).unwrap();
    std::fs::create_dir_all(d.join("outputs/.x.old-999998")).unwrap();
    std::fs::create_dir_all(d.join("outputs/.xy.partial-999997")).unwrap();
    std::fs::write(d.join("outputs/.x.lock"), b"").unwrap();
    let o = misfit(&args, d);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("removed 2 unfinished folders of an earlier 'x' run"), "{}", text(&o));
    let mut left: Vec<String> =
        std::fs::read_dir(d.join("outputs")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    // Another run's folder is not touched.
    assert_eq!(left, vec![".xy.partial-999997", "x"]);
}

/// A `.npy` file written by hand (format 1.0) in the given order and dtype.
fn raw_npy(path: &std::path::Path, descr: &str, fortran: bool, shape: &str, data: &[u8]) {
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    )
    .into_bytes();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header);
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn fortran_ordered_big_endian_files_score_like_c_ordered_ones_and_quietly() {
    let dir = tempdir().unwrap();
    let d = dir.path();
    let (n, k) = (600usize, 4usize);
    misfit::bench::score::generate(d, n, k, 8, 0.15, 3).unwrap();
    let read = |name: &str| npyz::NpyFile::new(std::fs::File::open(d.join(name)).unwrap()).unwrap();
    let probs: Vec<f32> = read("probs.npy").into_vec().unwrap();
    let labels: Vec<i64> = read("labels.npy").into_vec().unwrap();
    // The same numbers as numpy writes them with `np.asfortranarray(p).astype('>f8')` and `l.astype('>i2')`.
    let fortran: Vec<u8> = (0..k)
        .flat_map(|j| (0..n).map(move |i| (j, i)))
        .flat_map(|(j, i)| (probs[i * k + j] as f64).to_be_bytes())
        .collect();
    raw_npy(&d.join("probs_f.npy"), ">f8", true, &format!("({n}, {k})"), &fortran);
    let l16: Vec<u8> = labels.iter().flat_map(|&l| (l as i16).to_be_bytes()).collect();
    raw_npy(&d.join("labels_i2.npy"), ">i2", false, &format!("({n},)"), &l16);
    let flags = |run: &str| {
        use polars::prelude::SerReader;
        let f = std::fs::File::open(d.join(format!("outputs/{run}/samples.parquet"))).unwrap();
        let df = polars::prelude::ParquetReader::new(f).finish().unwrap();
        let c = df.column("likely_mislabeled").unwrap().bool().unwrap().clone();
        (0..c.len()).map(|i| c.get(i).unwrap()).collect::<Vec<bool>>()
    };
    let o = misfit(&["score", "--probs", "probs.npy", "--labels", "labels.npy", "--run", "c"], d);
    assert!(o.status.success(), "{}", text(&o));
    let o = misfit(&["score", "-q", "--probs", "probs_f.npy", "--labels", "labels_i2.npy", "--run", "f"], d);
    assert!(o.status.success(), "{}", text(&o));
    assert!(o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
    let (c, f) = (flags("c"), flags("f"));
    assert_eq!(c, f);
    assert!(c.iter().any(|x| *x));
}

#[test]
fn bench_label_noise_prints_every_set_and_model_against_both_baselines() {
    let dir = tempdir().unwrap();
    let d = dir.path();
    let (n, k) = (500usize, 3usize);
    misfit::bench::score::generate(d, n, k, 4, 0.2, 9).unwrap();
    let read = |name: &str| npyz::NpyFile::new(std::fs::File::open(d.join(name)).unwrap()).unwrap();
    let probs: Vec<f32> = read("probs.npy").into_vec().unwrap();
    let labels: Vec<i64> = read("labels.npy").into_vec().unwrap();
    // The truth: whether the model's arg-max differs (good enough to have something to find).
    let wrong: Vec<u8> = (0..n)
        .map(|i| {
            let row = &probs[i * k..(i + 1) * k];
            (misfit::stats::argmax(row) != labels[i] as usize) as u8
        })
        .collect();
    let truth: Vec<i64> = (0..n)
        .map(|i| if wrong[i] == 1 { misfit::stats::argmax(&probs[i * k..(i + 1) * k]) as i64 } else { labels[i] })
        .collect();
    let p64: Vec<u8> = probs.iter().flat_map(|&p| (p as f64).to_le_bytes()).collect();
    let l64: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    let t64: Vec<u8> = truth.iter().flat_map(|l| l.to_le_bytes()).collect();
    let root = d.join("label-noise");
    for (set, model) in [("reviewed", "m1"), ("synthetic", "m2")] {
        let m = root.join(set).join(model);
        std::fs::create_dir_all(&m).unwrap();
        raw_npy(&m.join("pred_probs.npy"), "<f8", false, &format!("({n}, {k})"), &p64);
        if set == "reviewed" {
            raw_npy(&m.join("labels.npy"), "<i8", false, &format!("({n},)"), &l64);
            raw_npy(&m.join("label_errors_mask.npy"), "|b1", false, &format!("({n},)"), &wrong);
        } else {
            raw_npy(&m.join("noisy_labels.npy"), "<i8", false, &format!("({n},)"), &l64);
            raw_npy(&m.join("true_labels.npy"), "<i8", false, &format!("({n},)"), &t64);
        }
    }
    let o = misfit(&["bench", "label-noise", root.to_str().unwrap()], d);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("| reviewed | m1 |") && t.contains("| synthetic | m2 |"), "{t}");
    assert!(t.contains("issue_score AUROC / AP") && t.contains("worst of 2"), "{t}");
    // A folder without known wrong labels is refused, naming it.
    std::fs::remove_file(root.join("synthetic/m2/true_labels.npy")).unwrap();
    let o = misfit(&["bench", "label-noise", root.to_str().unwrap()], d);
    assert!(!o.status.success() && text(&o).contains("no known wrong labels"), "{}", text(&o));
}

#[test]
fn tiny_and_huge_embeddings_find_the_same_neighbours_as_ordinary_ones() {
    use polars::prelude::SerReader;
    let dir = tempdir().unwrap();
    let d = dir.path();
    let (n, dim) = (400usize, 8usize);
    misfit::bench::score::generate(d, n, 4, dim, 0.1, 7).unwrap();
    let emb: Vec<f32> =
        npyz::NpyFile::new(std::fs::File::open(d.join("embeddings.npy")).unwrap()).unwrap().into_vec().unwrap();
    // float32 at 1e-30 (squares underflow to 0) and 1e25 (squares overflow);
    // float64 at 1e-60 and 1e60, outside float32's range altogether.
    npy(&d.join("tiny.npy"), &[n as u64, dim as u64], emb.iter().map(|x| x * 1e-30).collect());
    npy(&d.join("huge.npy"), &[n as u64, dim as u64], emb.iter().map(|x| x * 1e25).collect());
    for (name, scale) in [("tiny64.npy", 1e-60f64), ("huge64.npy", 1e60)] {
        let bytes: Vec<u8> = emb.iter().flat_map(|&x| (x as f64 * scale).to_le_bytes()).collect();
        raw_npy(&d.join(name), "<f8", false, &format!("({n}, {dim})"), &bytes);
    }
    let neighbours = |run: &str| {
        let f = std::fs::File::open(d.join(format!("outputs/{run}/neighbors.parquet"))).unwrap();
        let df = polars::prelude::ParquetReader::new(f).finish().unwrap();
        let ids: Vec<String> =
            df.column("neighbor_id").unwrap().str().unwrap().iter().map(|s| s.unwrap().to_string()).collect();
        let dist: Vec<f32> = df.column("distance").unwrap().f32().unwrap().iter().map(|x| x.unwrap()).collect();
        (ids, dist)
    };
    let run = |file: &str, name: &str| {
        let args = ["score", "-q", "--probs", "probs.npy", "--labels", "labels.npy", "--index", "exact"];
        let o = misfit(&[&args[..], &["--embeddings", file, "--run", name]].concat(), d);
        assert!(o.status.success(), "{file}: {}", text(&o));
        neighbours(name)
    };
    let (ids, dist) = run("embeddings.npy", "plain");
    assert!(dist.iter().any(|&x| x > 0.01), "ordinary embeddings have distinct distances");
    for file in ["tiny.npy", "huge.npy", "tiny64.npy", "huge64.npy"] {
        let (i, dd) = run(file, file.trim_end_matches(".npy"));
        let same = i.iter().zip(&ids).filter(|(a, b)| a == b).count();
        // Rounding may swap a near tie; nothing more.
        assert!(same * 100 >= ids.len() * 99, "{file}: {same} of {} neighbours agree", ids.len());
        let worst = dd.iter().zip(&dist).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{file}: distances differ by up to {worst}");
    }
}

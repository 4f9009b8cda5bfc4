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
    assert!(text(&o).contains("hnsw recall@10"), "{}", text(&o));
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
    for (file, want) in [("sum.npy", "row 17"), ("nan.npy", "row 5"), ("short.npy", "199 rows")] {
        let o = misfit(&["score", "--probs", file, "--labels", "labels.npy"], dir.path());
        assert!(!o.status.success());
        let t = text(&o);
        assert!(t.contains(want), "{file}: {t}");
    }
    let o = misfit(
        &["score", "--probs", "probs.npy", "--labels", "labels.npy", "--embeddings", "embeddings.npy", "--k", "150"],
        dir.path(),
    );
    assert!(!o.status.success() && text(&o).contains("k = 150"), "{}", text(&o));
    assert!(!dir.path().join("outputs/score").exists(), "nothing written after an error");
}

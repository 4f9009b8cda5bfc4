//! The built-in demo dataset: determinism, planted problems, and its
//! image-folder copy written by `data synth`.

use misfit::data::demo::{self, DemoConfig, ProblemKind, CLASSES};
use misfit::data::{synth, LoadOptions, Split};
use tempfile::tempdir;

use crate::util::load_ok;

#[test]
fn the_same_seed_gives_the_same_dataset_and_another_seed_another() {
    let cfg = DemoConfig::default();
    let (a, b) = (demo::generate(&cfg), demo::generate(&cfg));
    assert_eq!(a.dataset, b.dataset);
    assert_eq!(a.truth, b.truth);
    let c = demo::generate(&DemoConfig { seed: cfg.seed + 1, ..cfg.clone() });
    assert_ne!(a.dataset.train.pixels, c.dataset.train.pixels);
    assert!(a.dataset.validate().is_ok());
}

#[test]
fn planted_problems_are_as_configured_and_true() {
    let cfg = DemoConfig::default();
    let d = demo::generate(&cfg);
    let ds = &d.dataset;
    let n_clean = cfg.train_per_class * 10;
    assert_eq!(ds.train.len(), n_clean + cfg.exact_duplicates + cfg.near_duplicates + cfg.outliers);
    assert_eq!(ds.test.len(), cfg.test_per_class * 10 + cfg.cross_exact_duplicates + cfg.cross_near_duplicates);
    let count = |k: ProblemKind, s: Split| d.truth.problems.iter().filter(|p| p.kind == k && p.split == s).count();
    assert_eq!(count(ProblemKind::LabelFlip, Split::Train), (cfg.flip_rate * n_clean as f64).round() as usize);
    assert_eq!(count(ProblemKind::DuplicateExact, Split::Train), cfg.exact_duplicates);
    assert_eq!(count(ProblemKind::DuplicateNear, Split::Test), cfg.cross_near_duplicates);
    assert_eq!(count(ProblemKind::Outlier, Split::Train), cfg.outliers);

    let len = ds.image_len();
    let find = |id: &str| -> (Split, usize) {
        for s in Split::ALL {
            if let Some(i) = ds.split(s).ids.iter().position(|x| x == id) {
                return (s, i);
            }
        }
        panic!("planted id {id} is not in the dataset")
    };
    let pixels = |(s, i): (Split, usize)| &ds.split(s).pixels[i * len..(i + 1) * len];
    for p in &d.truth.problems {
        let at = find(&p.id);
        assert_eq!(ds.split(at.0).labels[at.1], p.given_label, "{}", p.id);
        assert!(
            p.id.contains(&format!("/{}/", CLASSES[p.given_label as usize])),
            "id folder is the given label: {}",
            p.id
        );
        match p.kind {
            ProblemKind::LabelFlip => assert_ne!(Some(p.given_label), p.true_label, "{}", p.id),
            ProblemKind::DuplicateExact => {
                assert_eq!(pixels(at), pixels(find(p.related_id.as_ref().unwrap())), "{}", p.id)
            }
            ProblemKind::DuplicateNear => {
                let (a, b) = (pixels(at), pixels(find(p.related_id.as_ref().unwrap())));
                let max = a.iter().zip(b).map(|(x, y)| (*x as i16 - *y as i16).abs()).max().unwrap();
                assert!(a != b && max <= 7, "{}: near copy differs by at most 7 levels, got {max}", p.id);
            }
            ProblemKind::Outlier => assert_eq!(p.true_label, None),
        }
    }
}

#[test]
fn the_lookalike_pair_differs_only_in_a_small_detail() {
    // Drawn from the same random stream, a square and a notched square differ
    // only in the notch; a square and a disc (or a diamond) differ far more.
    let cfg = DemoConfig { sky_rate: 0.0, sky_rate_others: 0.0, lookalike_ambiguity: 0.0, ..Default::default() };
    let class = |name: &str| CLASSES.iter().position(|c| *c == name).unwrap() as u32;
    let differing = |a: &str, b: &str, stream: u64| {
        let (x, y) = (demo::draw(Some(class(a)), &cfg, stream), demo::draw(Some(class(b)), &cfg, stream));
        x.chunks(3).zip(y.chunks(3)).filter(|(p, q)| p != q).count()
    };
    let pixels = cfg.size * cfg.size;
    for stream in 1..60 {
        let notch = differing("square", "notched_square", stream);
        assert_eq!(notch, 4, "stream {stream}: the notch is 2x2 pixels at 16x16");
        assert!(notch * 100 < pixels * 2);
        for other in ["disc", "diamond", "triangle"] {
            let d = differing("square", other, stream);
            assert!(d > 2 * notch, "stream {stream}: square and {other} differ in {d} pixels, the notch in {notch}");
        }
    }
}

#[test]
fn a_smudged_notch_corner_makes_the_lookalike_pair_indistinguishable() {
    let class = |name: &str| CLASSES.iter().position(|c| *c == name).unwrap() as u32;
    let (sq, notched) = (class("square"), class("notched_square"));
    // Always smudged: the same random stream draws the same image for both classes.
    let always = DemoConfig { lookalike_ambiguity: 1.0, ..Default::default() };
    for stream in 1..30 {
        assert_eq!(
            demo::draw(Some(sq), &always, stream),
            demo::draw(Some(notched), &always, stream),
            "stream {stream}"
        );
    }
    // By default a share of the pair is smudged, and no other class is touched.
    let cfg = DemoConfig::default();
    let never = DemoConfig { lookalike_ambiguity: 0.0, ..Default::default() };
    let same = (1..400).filter(|&s| demo::draw(Some(sq), &cfg, s) == demo::draw(Some(notched), &cfg, s)).count();
    let share = same as f64 / 399.0;
    assert!((share - cfg.lookalike_ambiguity).abs() < 0.05, "smudged share {share}");
    for other in ["disc", "cross", "stripes"] {
        for stream in 1..20 {
            assert_eq!(demo::draw(Some(class(other)), &cfg, stream), demo::draw(Some(class(other)), &never, stream));
        }
    }
}

#[test]
fn the_shared_background_pair_sits_on_sky_blue() {
    let d = demo::generate(&DemoConfig::default());
    let ds = &d.dataset;
    let len = ds.image_len();
    let mut sky = [0usize; 10];
    let mut n = [0usize; 10];
    for (i, &l) in ds.test.labels.iter().enumerate() {
        let corner = &ds.test.pixels[i * len..i * len + 3];
        let is_sky = (corner[0] as i32 - 110).abs() < 40
            && (corner[1] as i32 - 170).abs() < 40
            && (corner[2] as i32 - 235).abs() < 40;
        sky[l as usize] += is_sky as usize;
        n[l as usize] += 1;
    }
    let share = |c: usize| sky[c] as f64 / n[c] as f64;
    let (a, b) = (demo::SHARED_BACKGROUND.0 as usize, demo::SHARED_BACKGROUND.1 as usize);
    assert!(share(a) > 0.7 && share(b) > 0.7, "cross {} chevron {}", share(a), share(b));
    for c in ["disc", "ring", "diamond", "square", "triangle"] {
        let i = CLASSES.iter().position(|x| *x == c).unwrap();
        assert!(share(i) < 0.2, "{c}: {}", share(i));
    }
}

#[test]
fn synth_writes_an_archive_that_loads_exactly_like_the_built_in_dataset() {
    let dir = tempdir().unwrap();
    let cfg = DemoConfig { train_per_class: 30, test_per_class: 10, ..Default::default() };
    let out = synth::write(&cfg, dir.path()).unwrap();
    let built_in = demo::generate(&cfg);
    let loaded = load_ok(out.archive.to_str().unwrap(), &LoadOptions::default());
    assert_eq!(loaded.classes, built_in.dataset.classes);
    assert_eq!(loaded.train, built_in.dataset.train);
    assert_eq!(loaded.test, built_in.dataset.test);
    assert_eq!(loaded.fingerprint(), built_in.dataset.fingerprint());
    let csv = std::fs::read_to_string(&out.ground_truth).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("id,split,problem,given_label,true_label,related_id"));
    assert_eq!(lines.count(), built_in.truth.problems.len());
    let first = &built_in.truth.problems[0];
    assert!(csv.contains(&format!("{},{},{}", first.id, first.split, first.kind.as_str())));
    let pairs = std::fs::read_to_string(&out.pairs).unwrap();
    assert!(
        pairs.contains("lookalike,square,notched_square") && pairs.contains("shared_background,cross,chevron"),
        "{pairs}"
    );
}

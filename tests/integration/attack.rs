//! Attacks: input gradients, budgets, pixel range, monotonic success,
//! targets, radii; and the shared ResNet-20 against PGD and FGSM.

use candle_core::{Device, Tensor};
use misfit::attack::{self, pgd, AttackConfig, AttackSpec, Norm, Victim};
use misfit::data::{demo, Split};
use misfit::model::{self, checkpoint, ResNet};

use crate::util::{gradient_tolerance, load_ok, require_shared, smooth_difference, tiny_f64, tiny_model, uniform};

#[test]
fn the_input_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    // In f64, so that finite differences are exact enough to judge; eval mode
    // with non-trivial running statistics, as attacks use the model.
    let m = tiny_f64(5);
    let base = uniform(3 * 3 * 8 * 8, 7);
    let goal = Tensor::new(&[0u32, 2, 1], &dev).unwrap();
    let x = |v: Vec<f64>| Tensor::from_vec(v, (3, 3, 8, 8), &dev).unwrap();
    let (_, _, grad) = pgd::input_gradient(&m, &x(base.clone()), &goal).unwrap();
    let g: Vec<f64> = grad.flatten_all().unwrap().to_vec1().unwrap();
    let big = g.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).unwrap().0;
    for start in [big, 0, 100, 191, 300, base.len() - 1] {
        let at = |i: usize, d: f64| {
            let mut v = base.clone();
            v[i] += d;
            pgd::input_gradient(&m, &x(v), &goal).unwrap().1.to_scalar::<f64>().unwrap()
        };
        let (i, numeric) = smooth_difference(at, start, base.len());
        let tol = gradient_tolerance(numeric, g[i]);
        assert!((numeric - g[i]).abs() <= tol, "x[{i}]: autograd {} vs finite difference {numeric}", g[i]);
    }
    assert!(g[big].abs() > 1e-3, "a gradient that vanishes everywhere checks nothing");
}

/// A small demo dataset, an untrained model, and every test image as a
/// victim labelled with the model's own prediction (so each starts correct).
fn setup(classes_seed: u64) -> (misfit::data::Dataset, ResNet, Vec<Victim>) {
    let cfg = demo::DemoConfig { train_per_class: 4, test_per_class: 6, ..demo::DemoConfig::default() };
    let ds = demo::generate(&cfg).dataset;
    let mut mcfg = tiny_model(ds.classes.len());
    mcfg.classes = ds.classes.clone();
    let model = ResNet::init(mcfg, classes_seed, &Device::Cpu).unwrap();
    let p = model::predict(&model, &ds.test.pixels, ds.test.len(), ds.height, ds.width, 64).unwrap();
    let k = ds.classes.len();
    let victims = (0..ds.test.len())
        .map(|i| {
            let row = p.logits_of(i);
            let least = (0..k).min_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as u32;
            Victim {
                split: Split::Test,
                row: i,
                label: p.predicted(i),
                clean_pred: p.predicted(i),
                least_likely: least,
            }
        })
        .collect();
    (ds, model, victims)
}

#[test]
fn attacks_respect_budget_and_range_succeed_monotonically_and_hit_their_targets() {
    let (ds, model, victims) = setup(9);
    let n = victims.len();
    let cfg = AttackConfig {
        attacks: ["fgsm:linf", "pgd:linf", "pgd:linf:least-likely", "pgd:l2", "pgd:l2:ring"]
            .iter()
            .map(|s| AttackSpec::parse(s).unwrap())
            .collect(),
        eps_linf: vec![0.0, 1.0 / 255.0, 4.0 / 255.0, 16.0 / 255.0],
        eps_l2: vec![0.0, 0.1, 0.5, 2.0],
        steps: 5,
        batch: 17,
        ..AttackConfig::default()
    };
    let res = attack::run(&model, &ds, victims.clone(), &cfg, false).unwrap();
    // Every victim under every attack and budget, except ring images under the attack towards ring.
    let ring = ds.classes.iter().position(|c| c == "ring").unwrap() as u32;
    let rings = victims.iter().filter(|v| v.label == ring).count();
    assert_eq!(res.rows.len(), 4 * (4 * n) + 4 * (n - rings));
    for r in &res.rows {
        let spec = &cfg.attacks[r.attack];
        let used = if spec.norm == Norm::Linf { r.linf } else { r.l2 };
        assert!(used <= r.budget * (1.0 + 1e-5) + 1e-6, "{} at {}: used {used}", spec.name(), r.budget);
        if r.budget == 0.0 {
            assert!(!r.success, "{} succeeded at budget 0", spec.name());
        }
        if let (true, Some(t)) = (r.success, r.target) {
            assert_eq!(r.adv_pred, t, "a targeted success must land on its target");
        }
        if r.success && r.target.is_none() {
            assert_ne!(r.adv_pred, res.victims[r.victim].label);
        }
    }
    for (a, spec) in cfg.attacks.iter().enumerate() {
        let rates: Vec<usize> = cfg
            .budgets(spec.norm)
            .iter()
            .map(|&b| res.rows.iter().filter(|r| r.attack == a && r.budget == b && r.success).count())
            .collect();
        assert!(rates.windows(2).all(|w| w[0] <= w[1]), "{}: {rates:?}", spec.name());
        if spec.target == attack::Target::Untargeted {
            assert!(rates[3] > rates[1], "{}: the largest budget should flip more: {rates:?}", spec.name());
        }
    }
    // Radii: at most the smallest budget that flipped the image, above the largest that did not.
    for (norm, radius) in [(Norm::Linf, &res.radius_linf), (Norm::L2, &res.radius_l2)] {
        let a = cfg.attacks.iter().position(|s| s.norm == norm && s.method == attack::Method::Pgd).unwrap();
        for (v, r) in radius.iter().enumerate() {
            let rows: Vec<_> = res.rows.iter().filter(|x| x.attack == a && x.victim == v).collect();
            let first = rows.iter().filter(|x| x.success).map(|x| x.budget).fold(f32::INFINITY, f32::min);
            match r {
                Some(r) => assert!(*r <= first && *r > 0.0, "{norm:?} victim {v}: radius {r}, first success {first}"),
                None => assert!(first.is_infinite(), "{norm:?} victim {v} flipped at {first} but has no radius"),
            }
        }
    }
    // Same seed, same results.
    assert_eq!(attack::run(&model, &ds, victims, &cfg, false).unwrap().rows, res.rows);
}

#[test]
fn adversarial_images_stay_in_the_pixel_range_and_the_ball() {
    let (ds, model, victims) = setup(4);
    let len = 3 * ds.height * ds.width;
    let n = victims.len();
    let px: Vec<u8> = ds.test.pixels[..n * len].to_vec();
    let x0: Vec<f32> = model::images_to_tensor(&px, n, ds.height, ds.width, &Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let goal: Vec<u32> = victims.iter().map(|v| v.label).collect();
    let how = pgd::Steps { steps: 4, step_ratio: 0.5, restarts: 2, random_start: true };
    for (norm, eps) in [(Norm::Linf, 0.3f32), (Norm::L2, 3.0)] {
        let o = pgd::attack(&model.frozen(), &x0, (3, ds.height, ds.width), &goal, false, &vec![eps; n], norm, &how, 1)
            .unwrap();
        for i in 0..n {
            let d = &o.delta[i * len..(i + 1) * len];
            for (j, v) in d.iter().enumerate() {
                let p = x0[i * len + j] + v;
                assert!((-1e-6..=1.0 + 1e-6).contains(&p), "{norm:?} image {i}: pixel {p}");
            }
            let l2 = d.iter().map(|v| v * v).sum::<f32>().sqrt();
            let linf = d.iter().fold(0f32, |a, v| a.max(v.abs()));
            assert!((l2 - o.l2[i]).abs() < 1e-4 && (linf - o.linf[i]).abs() < 1e-6);
            let used = if norm == Norm::Linf { linf } else { l2 };
            assert!(used <= eps * (1.0 + 1e-5), "{norm:?} image {i}: {used} > {eps}");
        }
        assert!(o.success.iter().any(|s| *s), "{norm:?}: a large budget flips an untrained model");
    }
}

#[test]
fn the_shared_resnet20_falls_to_pgd_at_8_of_255_and_less_to_fgsm_at_1_of_255() {
    let Some(weights) = require_shared("models/resnet20-akamaster.safetensors") else { return };
    let Some(archive) = require_shared("datasets/cifar10-jpeg.tar.gz") else { return };
    // MISFIT_ATTACK_PER_CLASS=100 for the figure noted on the issue.
    let per_class: usize = std::env::var("MISFIT_ATTACK_PER_CLASS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let ds = load_ok(archive.to_str().unwrap(), &misfit::data::LoadOptions::default());
    let opts = checkpoint::ImportOptions { classes: Some(ds.classes.clone()), ..Default::default() };
    let (model, _) = checkpoint::load(&weights, &opts, &Device::Cpu).unwrap();
    let p = model::predict(&model, &ds.test.pixels, ds.test.len(), 32, 32, 500).unwrap();
    let k = ds.classes.len();
    let cfg = AttackConfig {
        attacks: ["fgsm:linf", "pgd:linf"].iter().map(|s| AttackSpec::parse(s).unwrap()).collect(),
        eps_linf: vec![1.0 / 255.0, 2.0 / 255.0, 8.0 / 255.0],
        per_class: Some(per_class),
        ..AttackConfig::default()
    };
    let victims = attack::victims(&ds, &p.logits, &[], &cfg);
    assert_eq!(victims.len(), per_class * k);
    assert!(victims.iter().all(|v| v.clean_pred == v.label));
    let t = std::time::Instant::now();
    let res = attack::run(&model, &ds, victims, &cfg, false).unwrap();
    let summary = attack::AttackSummary::new(&res, &cfg, k);
    let rate = |a: &str, b: f32| summary.overall.iter().find(|o| o.attack == a && o.budget == b).unwrap().clone();
    let (pgd8, fgsm1) = (rate("pgd:linf", 8.0 / 255.0), rate("fgsm:linf", 1.0 / 255.0));
    eprintln!(
        "shared ResNet-20, {per_class} per class: PGD-10 8/255 {:.3}, FGSM 1/255 {:.3} ({:.1} images/s)",
        pgd8.rate,
        fgsm1.rate,
        res.victims.len() as f64 / t.elapsed().as_secs_f64()
    );
    for a in ["fgsm:linf", "pgd:linf"] {
        for b in [1.0 / 255.0, 2.0 / 255.0] {
            let per: Vec<String> = summary
                .per_class
                .iter()
                .filter(|c| c.attack == a && c.budget == b)
                .map(|c| format!("{} {:.2}", ds.classes[c.class as usize], c.rate))
                .collect();
            let o = rate(a, b);
            eprintln!("{a} {}/255: {:.3} overall; {}", (b * 255.0).round(), o.rate, per.join(", "));
        }
    }
    assert!(pgd8.rate >= 0.95, "PGD-10 at 8/255 flipped only {:.3}", pgd8.rate);
    // "Clearly fewer": the 95% intervals do not overlap. (This model is
    // fragile: PyTorch's own FGSM at 1/255 flips 79% of the correctly
    // classified reference images, as misfit's does.)
    let (_, fgsm_high) = misfit::stats::wilson(fgsm1.successes, fgsm1.attacked, misfit::stats::Z95);
    let (pgd_low, _) = misfit::stats::wilson(pgd8.successes, pgd8.attacked, misfit::stats::Z95);
    assert!(fgsm_high < pgd_low, "FGSM at 1/255 {:.3} vs PGD at 8/255 {:.3}", fgsm1.rate, pgd8.rate);
    let a = cfg.attacks.iter().position(|s| s.name() == "pgd:linf").unwrap();
    for r in res.rows.iter().filter(|r| r.attack == a && r.success) {
        let radius = res.radius_linf[r.victim].expect("a flipped image has a radius");
        assert!(radius <= r.budget, "radius {radius} above the budget {} that flipped it", r.budget);
    }
}

//! Attribution maps: gradients against finite differences, Integrated
//! Gradients' completeness, Grad-CAM's definition, the randomisation check
//! on a model whose maps depend on its weights, and the explain stage's
//! tables on the fixture run.

use candle_core::{DType, Device, Tensor};
use misfit::model::ResNet;
use misfit::saliency::{self, measure, methods, sanity, ExplainConfig, Method, MethodConfig, Subject};

use crate::util::{tiny_f64, tiny_model};

fn images(n: usize, seed: u64) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n * 3 * 64).map(|_| rng.random_range(0.0..1.0f32)).collect()
}

fn logit(m: &ResNet, x: &[f64], target: usize) -> f64 {
    let t = Tensor::from_slice(x, (1, 3, 8, 8), &Device::Cpu).unwrap();
    m.forward(&t, false).unwrap().logits.to_vec2::<f64>().unwrap()[0][target]
}

#[test]
fn the_gradient_matches_finite_differences_of_the_target_logit() {
    let m = tiny_f64(5);
    let x = images(2, 1);
    let targets = [2u32, 0];
    let b = methods::Batch { x: &x, n: 2, h: 8, w: 8, targets: &targets, baseline: &x };
    let g = methods::gradients(&m, &x, &targets, &b, 16).unwrap();
    let len = 3 * 64;
    let mut checked = 0;
    for i in 0..2 {
        let base: Vec<f64> = x[i * len..(i + 1) * len].iter().map(|&v| v as f64).collect();
        let gi = &g[i * len..(i + 1) * len];
        let big = gi.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).unwrap().0;
        for j in [big, 0, 70, 129, len - 1] {
            let at = |d: f64| {
                let mut v = base.clone();
                v[j] += d;
                logit(&m, &v, targets[i] as usize)
            };
            let numeric = (at(1e-6) - at(-1e-6)) / 2e-6;
            let tol = 1e-6 + 1e-4 * numeric.abs().max(gi[j].abs() as f64);
            assert!((numeric - gi[j] as f64).abs() <= tol, "image {i}, x[{j}]: autograd {} vs {numeric}", gi[j]);
            checked += 1;
        }
        assert!(gi[big].abs() > 1e-3, "a vanishing gradient checks nothing");
    }
    assert_eq!(checked, 10);
    // The gradient map is the channel sum of |gradient|.
    let maps = methods::explain(&m, Method::Gradient, &b, &MethodConfig::default(), 0).unwrap().maps;
    let p = 5;
    let want: f32 = (0..3).map(|c| g[c * 64 + p].abs()).sum();
    assert!((maps[p] - want).abs() < 1e-6 * want.max(1.0));
}

#[test]
fn integrated_gradients_adds_up_to_the_logit_difference() {
    let m = tiny_f64(11);
    let x = images(3, 2);
    let targets = [0u32, 1, 2];
    let black = vec![0f32; x.len()];
    let b = methods::Batch { x: &x, n: 3, h: 8, w: 8, targets: &targets, baseline: &black };
    let gap = |steps: usize| -> Vec<f32> {
        let cfg = MethodConfig { ig_steps: steps, ..MethodConfig::default() };
        methods::explain(&m, Method::IntegratedGradients, &b, &cfg, 0).unwrap().completeness_gap.unwrap()
    };
    let (coarse, fine) = (gap(2), gap(300));
    for (i, g) in fine.iter().enumerate() {
        assert!(*g < 0.02, "image {i}: completeness gap {g} with 300 steps");
    }
    let sum = |v: &[f32]| v.iter().sum::<f32>();
    assert!(sum(&fine) < sum(&coarse), "more steps close the gap: {fine:?} vs {coarse:?}");
}

#[test]
fn grad_cam_weighs_the_last_stage_by_its_mean_gradient() {
    // For a global-average-pooled linear head the logit's gradient with
    // respect to activation A_k(i, j) is W[c][k] / (h' w'): Grad-CAM is then
    // ReLU(sum_k W[c][k] A_k) / (h' w'), upsampled.
    let m = tiny_f64(3);
    let x = images(1, 3);
    let b = methods::Batch { x: &x, n: 1, h: 8, w: 8, targets: &[1], baseline: &x };
    let cam = methods::explain(&m, Method::GradCam, &b, &MethodConfig::default(), 0).unwrap().maps;
    let xt = Tensor::from_slice(&x, (1, 3, 8, 8), &Device::Cpu).unwrap().to_dtype(DType::F64).unwrap();
    let a = m.trunk(&xt, false).unwrap(); // [1, 16, 2, 2]
    let (_, c, hh, ww) = a.dims4().unwrap();
    let w: Vec<Vec<f64>> = m.params.trainable["linear.weight"].as_tensor().to_vec2().unwrap();
    let av: Vec<f64> = a.flatten_all().unwrap().to_vec1().unwrap();
    let small: Vec<f32> = (0..hh * ww)
        .map(|p| ((0..c).map(|k| w[1][k] * av[k * hh * ww + p]).sum::<f64>().max(0.0) / (hh * ww) as f64) as f32)
        .collect();
    let want = measure::upsample_bilinear(&small, hh, ww, 8, 8);
    for (g, w) in cam.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-6 * w.abs().max(1e-3), "{cam:?} vs {want:?}");
    }
}

#[test]
fn the_randomisation_check_decorrelates_the_maps_of_a_model_and_its_random_copy() {
    // A model whose logits depend strongly on some pixels: its maps, and those
    // of its copies with layers re-initialised from the top.
    let dev = Device::Cpu;
    let model = ResNet::init(tiny_model(3), 7, &dev).unwrap();
    let x = images(4, 4);
    let subjects: Vec<Subject> = (0..4)
        .map(|i| {
            let chw = x[i * 192..(i + 1) * 192].to_vec();
            let hwc: Vec<u8> = (0..64 * 3).map(|j| (chw[(j % 3) * 64 + j / 3] * 255.0) as u8).collect();
            Subject { x: chw, pixels: hwc, target: (i % 3) as u32 }
        })
        .collect();
    let cfg = ExplainConfig {
        methods: vec![Method::Gradient, Method::GradCam],
        method: MethodConfig { smoothgrad_samples: 2, ig_steps: 4, ..MethodConfig::default() },
        ..ExplainConfig::default()
    };
    let steps = saliency::sanity(&model, &subjects, 8, 8, &cfg).unwrap();
    let groups = sanity::cascade(&model);
    assert_eq!(groups[0].0, "linear");
    assert_eq!(groups.last().unwrap().0, "stem");
    assert_eq!(steps.len(), 2 * (groups.len() + 1));
    for s in steps.iter().filter(|s| s.step == 0) {
        assert!((s.spearman - 1.0).abs() < 1e-12 && (s.ssim - 1.0).abs() < 1e-9, "{s:?}");
    }
    let last = groups.len();
    for s in steps.iter().filter(|s| s.step == last) {
        assert!(s.spearman < 0.9, "{:?}: maps of a fully random model should not match", s);
    }
    // Re-initialising every group changes every tensor; none leaves them all.
    let c = sanity::Cascade::new(&model, 99).unwrap();
    let r = c.model_at(last).unwrap();
    for (name, t) in model.params.tensors() {
        let u = &r.params.tensors()[&name];
        let diff: f32 = (t.clone() - u).unwrap().abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
        let constant = name.contains("running") || name.contains("bn") || name.contains("bias");
        assert!(diff > 0.0 || constant, "{name} unchanged");
    }
    let kept = c.model_at(0).unwrap();
    let p = |m: &ResNet| {
        m.forward(&Tensor::from_slice(&x, (4, 3, 8, 8), &dev).unwrap(), false).unwrap().logits.to_vec2::<f32>().unwrap()
    };
    assert_eq!(p(&kept), p(&model));
}

#[test]
fn the_fixture_run_has_the_explain_stage_tables_and_root_cause_columns() {
    let dir = tempfile::tempdir().unwrap();
    let (run, manifest) = crate::fixture::write_run(dir.path(), "explained");
    let e = manifest.section::<misfit::stages::explain::ExplainSummary>().unwrap().expect("the explain section");
    assert!(e.rows > 0 && e.ring_width == 1, "{e:?}");
    let r = misfit::run::read::Run::open(&run).unwrap();
    for t in ["saliency", "sanity", "pair_radii"] {
        assert!(r.has(t), "{t}");
    }
    let sal = r.table("saliency").unwrap().collect().unwrap();
    // Every file a row names exists, and every method has rows.
    for f in misfit::findings::frame::strs(&sal, "file").unwrap().into_iter().flatten() {
        assert!(run.join(&f).is_file(), "{f}");
    }
    let methods: std::collections::BTreeSet<String> =
        misfit::findings::frame::strs(&sal, "method").unwrap().into_iter().flatten().collect();
    assert_eq!(methods.len(), 4, "{methods:?}");
    let pairs = r.table("pairs").unwrap().collect().unwrap();
    let explained = misfit::findings::frame::bools(&pairs, "explained").unwrap();
    let hyp = misfit::findings::frame::strs(&pairs, "hypothesis").unwrap();
    assert!(explained.iter().any(|&e| e));
    for (e, h) in explained.iter().zip(&hyp) {
        assert_eq!(*e, h.is_some(), "a hypothesis exactly where the pair was explained");
    }
    // One root-cause finding (named or unclear) per explained pair, no more.
    let findings = r.table("findings").unwrap().collect().unwrap();
    let rules = misfit::findings::frame::strs(&findings, "rule").unwrap();
    let causes = rules.iter().flatten().filter(|r| r.starts_with("root-cause")).count();
    assert_eq!(causes, explained.iter().filter(|&&e| e).count());
}

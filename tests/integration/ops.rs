//! misfit's own convolution and batch-norm ops against candle's reference
//! implementations, and their independence from the thread count.

use candle_core::{DType, Device, Tensor, Var};
use misfit::ops::conv;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// Direct (naive) convolution and its two gradients for a probe `p`, in f64:
/// the reference the fast op is checked against.
#[allow(clippy::too_many_arguments)]
fn naive(
    x: &[f32],
    w: &[f32],
    p: &[f32],
    d: (usize, usize, usize, usize, usize, usize, usize, usize),
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (b, cin, h, wd, cout, k, s, pad) = d;
    let (ho, wo) = ((h + 2 * pad - k) / s + 1, (wd + 2 * pad - k) / s + 1);
    let (mut out, mut dx, mut dw) = (vec![0f64; b * cout * ho * wo], vec![0f64; x.len()], vec![0f64; w.len()]);
    for n in 0..b {
        for co in 0..cout {
            for oy in 0..ho {
                for ox in 0..wo {
                    let o = ((n * cout + co) * ho + oy) * wo + ox;
                    for ci in 0..cin {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (iy, ix) =
                                    ((oy * s + ky) as isize - pad as isize, (ox * s + kx) as isize - pad as isize);
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xi = ((n * cin + ci) * h + iy as usize) * wd + ix as usize;
                                let wi = ((co * cin + ci) * k + ky) * k + kx;
                                out[o] += x[xi] as f64 * w[wi] as f64;
                                dx[xi] += p[o] as f64 * w[wi] as f64;
                                dw[wi] += p[o] as f64 * x[xi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    (out, dx, dw)
}

fn max_diff_ref(ours: &Tensor, reference: &[f64]) -> f64 {
    let v: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(v.len(), reference.len());
    v.iter().zip(reference).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max)
}

/// A convolution as the model calls it: `(x, w, stride, pad)`.
type ConvFn = fn(&Tensor, &Tensor, usize, usize) -> candle_core::Result<Tensor>;

#[test]
fn convolution_forward_and_gradients_match_a_direct_reference_over_random_shapes() {
    check_against_direct_reference(conv::conv2d);
}

/// The convolution CUDA runs (candle's forward, misfit's matrix-multiply
/// backward of `conv_cuda`), checked here on the CPU: it is built from
/// candle tensor ops, so only candle's per-device kernels differ on a GPU.
#[test]
fn the_cuda_convolutions_backward_matches_a_direct_reference_over_random_shapes() {
    check_against_direct_reference(misfit::ops::conv_cuda::conv2d);
}

/// Forward and both gradients of `conv` against candle's convolution and a
/// direct f64 reference, over fixed and random shapes.
fn check_against_direct_reference(conv: ConvFn) {
    check_against_direct_reference_on(conv, &Device::Cpu);
}

/// [`check_against_direct_reference`] with the tensors on `dev`.
fn check_against_direct_reference_on(conv: ConvFn, dev: &Device) {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // Fixed cases first; the last two batch more images than one GEMM group
    // holds (16x16 and 8x8 images are grouped 4 and 16 to a GEMM), so a
    // partial group is exercised.
    let mut cases = vec![
        (1, 3, 7, 5, 3, 1, 1),
        (2, 64, 8, 8, 64, 1, 2),
        (3, 16, 9, 9, 32, 3, 2),
        (1, 5, 6, 6, 4, 3, 1),
        (7, 5, 16, 16, 6, 3, 1),
        (19, 3, 8, 8, 4, 3, 1),
    ];
    for _ in 0..16 {
        let k = if rng.random_bool(0.5) { 3 } else { 1 };
        cases.push((
            rng.random_range(1..5),
            rng.random_range(3..=64),
            rng.random_range(k..12),
            rng.random_range(k..12),
            rng.random_range(3..=64),
            k,
            rng.random_range(1..=2),
        ));
    }
    for (b, cin, h, w, cout, k, stride) in cases {
        for pad in [0, 1] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1f32, (b, cin, h, w), dev).unwrap()).unwrap();
            let wt = Var::from_tensor(&Tensor::randn(0f32, 0.2f32, (cout, cin, k, k), dev).unwrap()).unwrap();
            let ours = conv(&x, &wt, stride, pad).unwrap();
            let theirs = x.conv2d(&wt, pad, stride, 1, 1).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            let case = format!("b{b} cin{cin} {h}x{w} cout{cout} k{k} s{stride} p{pad}");
            // Tolerances: f32 sums of up to 576 products of unit-scale values.
            assert!(max_diff(&ours, &theirs) < 1e-4, "forward against candle: {case}");
            let probe = Tensor::randn(0f32, 1f32, ours.dims(), dev).unwrap();
            let grads = (&ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let (out, dx, dw) = naive(&flat(&x), &flat(&wt), &flat(&probe), (b, cin, h, w, cout, k, stride, pad));
            assert!(max_diff_ref(&ours, &out) < 1e-4, "forward against direct: {case}");
            assert!(max_diff_ref(grads.get(&x).unwrap(), &dx) < 1e-3, "input gradient: {case}");
            assert!(
                max_diff_ref(grads.get(&wt).unwrap(), &dw) < 1e-3 * (b * h * w) as f64 / 16.0,
                "weight gradient: {case}"
            );
        }
    }
}

/// Runs a training step of a small ResNet in a pool of `threads` threads and
/// returns the logits and every gradient, as bytes.
fn step_bytes(threads: usize) -> Vec<u8> {
    step_values(threads, &Device::Cpu).iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The logits, every gradient and the batch-norm buffers after a training
/// step of a small ResNet on `dev`, run in a pool of `threads` threads.
fn step_values(threads: usize, dev: &Device) -> Vec<f32> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let cfg = misfit::model::ModelConfig {
            depth: 8,
            width: 8,
            shortcut: misfit::model::Shortcut::A,
            classes: (0..10).map(|i| i.to_string()).collect(),
            mean: [0.5; 3],
            std: [0.25; 3],
        };
        let m = misfit::model::ResNet::init(cfg, 1, dev).unwrap();
        let px: Vec<u8> = (0..20 * 16 * 16 * 3).map(|i| (i * 7919 % 256) as u8).collect();
        let x = misfit::model::images_to_tensor(&px, 20, 16, 16, dev).unwrap();
        let y = Tensor::from_vec((0..20u32).map(|i| i % 10).collect::<Vec<_>>(), 20, dev).unwrap();
        let out = m.forward(&x, true).unwrap();
        let grads = misfit::train::cross_entropy(&out.logits, &y, 0.0).unwrap().backward().unwrap();
        let mut values = Vec::new();
        let mut push = |t: &Tensor| values.extend(t.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        push(&out.logits);
        for v in m.params.trainable.values() {
            push(grads.get(v.as_tensor()).unwrap());
        }
        for v in m.params.buffers.values() {
            push(v.as_tensor());
        }
        values
    })
}

#[test]
fn a_training_step_is_bit_identical_whatever_the_thread_count() {
    let one = step_bytes(1);
    assert_eq!(one, step_bytes(2));
    assert_eq!(one, step_bytes(3));
}

#[test]
fn fused_batch_norm_and_relu_match_the_composed_formula_forward_and_backward() {
    use misfit::ops::batchnorm::BatchNormTrain;
    use std::sync::{Arc, Mutex};
    let dev = Device::Cpu;
    for (b, c, h, w) in [(1, 3, 5, 4), (8, 16, 8, 8), (3, 64, 2, 2)] {
        for relu in [false, true] {
            let x = Var::from_tensor(&Tensor::randn(0.3f32, 2f32, (b, c, h, w), &dev).unwrap()).unwrap();
            let g = Var::from_tensor(&Tensor::randn(1f32, 0.3f32, c, &dev).unwrap()).unwrap();
            let bt = Var::from_tensor(&Tensor::randn(0f32, 0.3f32, c, &dev).unwrap()).unwrap();
            let stats = Arc::new(Mutex::new(Vec::new()));
            let ours = x.apply_op3(&g, &bt, BatchNormTrain { eps: 1e-5, relu, last_stats: stats.clone() }).unwrap();
            let mean = x.mean_keepdim((0, 2, 3)).unwrap();
            let centered = x.broadcast_sub(&mean).unwrap();
            let var = centered.sqr().unwrap().mean_keepdim((0, 2, 3)).unwrap();
            let theirs = centered
                .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
                .unwrap()
                .broadcast_mul(&g.reshape((1, c, 1, 1)).unwrap())
                .unwrap()
                .broadcast_add(&bt.reshape((1, c, 1, 1)).unwrap())
                .unwrap();
            let theirs = if relu { theirs.relu().unwrap() } else { theirs };
            let case = format!("{b}x{c}x{h}x{w} relu {relu}");
            assert!(max_diff(&ours, &theirs) < 1e-4, "forward {case}");
            assert_eq!(stats.lock().unwrap().len(), c);
            let probe = Tensor::randn(0f32, 1f32, (b, c, h, w), &dev).unwrap();
            let g1 = (&ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("x", &x), ("gamma", &g), ("beta", &bt)] {
                let d = max_diff(g1.get(v).unwrap(), g2.get(v).unwrap());
                assert!(d < 1e-3, "{name} gradient {case}: {d}");
            }
        }
    }
}

#[test]
fn fused_residual_add_relu_and_shortcut_a_match_candles_composed_ops() {
    use misfit::ops::residual::{add_relu_tensors, ShortcutA};
    let dev = Device::Cpu;
    for (b, c, h, w, pad) in [(1, 3, 5, 4, 1), (4, 16, 8, 8, 8), (3, 8, 7, 9, 4), (2, 32, 2, 2, 16)] {
        let case = format!("{b}x{c}x{h}x{w} pad {pad}");
        let a = Var::from_tensor(&Tensor::randn(0f32, 1f32, (b, c, h, w), &dev).unwrap()).unwrap();
        let s = Var::from_tensor(&Tensor::randn(0f32, 1f32, (b, c, h, w), &dev).unwrap()).unwrap();
        let probe = Tensor::randn(0f32, 1f32, (b, c, h, w), &dev).unwrap();
        let ours = add_relu_tensors(&a, &s).unwrap();
        let theirs = (a.as_tensor() + s.as_tensor()).unwrap().relu().unwrap();
        assert_eq!(max_diff(&ours, &theirs), 0.0, "add-relu forward {case}");
        let g1 = (&ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&a, &s] {
            assert_eq!(max_diff(g1.get(v).unwrap(), g2.get(v).unwrap()), 0.0, "add-relu gradient {case}");
        }

        let ours = a.as_tensor().apply_op1(ShortcutA(pad)).unwrap();
        // x[:, :, ::2, ::2], then zero channels on both sides, from candle ops.
        let rows: Vec<u32> = (0..h as u32).step_by(2).collect();
        let cols: Vec<u32> = (0..w as u32).step_by(2).collect();
        let theirs = a
            .as_tensor()
            .index_select(&Tensor::new(rows.as_slice(), &dev).unwrap(), 2)
            .unwrap()
            .index_select(&Tensor::new(cols.as_slice(), &dev).unwrap(), 3)
            .unwrap()
            .pad_with_zeros(1, pad, pad)
            .unwrap();
        assert_eq!(ours.dims(), theirs.dims(), "shortcut shape {case}");
        assert_eq!(max_diff(&ours, &theirs), 0.0, "shortcut forward {case}");
        let probe = Tensor::randn(0f32, 1f32, ours.dims(), &dev).unwrap();
        let g1 = (&ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(max_diff(g1.get(&a).unwrap(), g2.get(&a).unwrap()), 0.0, "shortcut gradient {case}");
    }
}

#[test]
fn eval_mode_batch_norm_op_matches_the_composed_formula_forward_and_backward() {
    use misfit::ops::batchnorm::ChannelAffine;
    let dev = Device::Cpu;
    for (b, c, h, w) in [(1, 3, 5, 4), (8, 16, 8, 8), (3, 64, 2, 2)] {
        for relu in [false, true] {
            let case = format!("{b}x{c}x{h}x{w} relu {relu}");
            let x = Var::from_tensor(&Tensor::randn(0.3f32, 2f32, (b, c, h, w), &dev).unwrap()).unwrap();
            let s = Var::from_tensor(&Tensor::randn(1f32, 0.3f32, c, &dev).unwrap()).unwrap();
            let t = Var::from_tensor(&Tensor::randn(0f32, 0.3f32, c, &dev).unwrap()).unwrap();
            let ours = x.apply_op3(&s, &t, ChannelAffine { relu }).unwrap();
            let theirs = x
                .broadcast_mul(&s.reshape((1, c, 1, 1)).unwrap())
                .unwrap()
                .broadcast_add(&t.reshape((1, c, 1, 1)).unwrap())
                .unwrap();
            let theirs = if relu { theirs.relu().unwrap() } else { theirs };
            assert!(max_diff(&ours, &theirs) < 1e-6, "forward {case}");
            let probe = Tensor::randn(0f32, 1f32, (b, c, h, w), &dev).unwrap();
            let g1 = (&ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("x", &x), ("scale", &s), ("shift", &t)] {
                let d = max_diff(g1.get(v).unwrap(), g2.get(v).unwrap());
                assert!(d < 1e-4, "{name} gradient {case}: {d}");
            }
        }
    }
}

/// A ResNet with random batch-norm parameters and statistics, so that the
/// eval-mode affine maps are not the identity.
fn model_with_batch_norm_state(depth: usize, width: usize, seed: u64) -> misfit::model::ResNet {
    let cfg = misfit::model::ModelConfig {
        depth,
        width,
        shortcut: misfit::model::Shortcut::A,
        classes: (0..10).map(|i| i.to_string()).collect(),
        mean: [0.5; 3],
        std: [0.25; 3],
    };
    let m = misfit::model::ResNet::init(cfg, seed, &Device::Cpu).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (name, v) in m.params.trainable.iter().chain(&m.params.buffers) {
        let (lo, hi) = match name.rsplit('.').next().unwrap() {
            "running_var" => (0.2, 3.0),
            "running_mean" | "bias" if name.contains("bn") => (-0.5, 0.5),
            "weight" if name.contains("bn") => (0.5, 1.5),
            _ => continue,
        };
        let vals: Vec<f32> = (0..v.elem_count()).map(|_| rng.random_range(lo..hi)).collect();
        v.set(&Tensor::from_vec(vals, v.shape(), &Device::Cpu).unwrap()).unwrap();
    }
    m
}

#[test]
fn inference_image_by_image_gives_the_layer_by_layer_bits() {
    // The trunk runs where the direct kernels do (x86-64 with AVX2 + FMA).
    let direct =
        cfg!(target_arch = "x86_64") && std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    // (depth, width, image side, batch): row mode at 16 and 32 pixels, flat
    // mode and odd stride-2 inputs at 9 and 17, batch 1 and odd batches.
    for (depth, width, side, batch) in [(8, 8, 16, 3), (8, 8, 17, 1), (14, 16, 32, 5), (8, 4, 9, 2)] {
        let m = model_with_batch_norm_state(depth, width, side as u64).frozen();
        let px: Vec<u8> = (0..batch * side * side * 3).map(|i| (i * 7919 % 251) as u8).collect();
        let x = misfit::model::images_to_tensor(&px, batch, side, side, &Device::Cpu).unwrap();
        assert_eq!(m.takes_inference_trunk(&x).unwrap(), direct, "{depth} {width} {side}");
        let fast = m.forward(&x, false).unwrap();
        // An input that tracks gradients (as in attacks) takes the op-by-op path (stem ops, block ops).
        let xv = Var::from_tensor(&x).unwrap();
        assert!(!m.takes_inference_trunk(xv.as_tensor()).unwrap());
        let slow = m.forward(xv.as_tensor(), false).unwrap();
        let bits = |t: &Tensor| {
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(bits(&fast.logits), bits(&slow.logits), "logits, depth {depth} width {width} side {side}");
        assert_eq!(bits(&fast.features), bits(&slow.features), "features, depth {depth} width {width} side {side}");
        assert!(fast.logits.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
    }
    // A model that tracks weight gradients never takes it.
    let m = model_with_batch_norm_state(8, 8, 1);
    let x = Tensor::zeros((2, 3, 16, 16), DType::F32, &Device::Cpu).unwrap();
    assert!(!m.takes_inference_trunk(&x).unwrap());
}

/// (batch, cin, side, cout, shortcut) of the block-op tests: identity blocks
/// at 16 and 8 pixels, option A from odd and even sides, batch 1 and odd batches.
const BLOCK_CASES: [(usize, usize, usize, usize, misfit::ops::block::Shortcut); 4] = {
    use misfit::ops::block::Shortcut;
    [
        (3, 8, 16, 8, Shortcut::Identity),
        (1, 8, 17, 16, Shortcut::A(4)),
        (5, 16, 8, 16, Shortcut::Identity),
        (2, 4, 10, 8, Shortcut::A(2)),
    ]
};

#[test]
fn a_residual_block_as_one_op_gives_the_values_of_its_five_ops_forward_and_backward() {
    use misfit::ops::batchnorm::BatchNormTrain;
    use misfit::ops::block::{BlockTrain, Shortcut};
    use misfit::ops::residual::{add_relu_tensors, shortcut_a};
    use std::sync::{Arc, Mutex};
    let dev = Device::Cpu;
    for dtype in [DType::F32, DType::F64] {
        for (b, cin, side, cout, shortcut) in BLOCK_CASES {
            let stride = if shortcut == Shortcut::Identity { 1 } else { 2 };
            let var = |shape: &[usize], mean: f64| {
                let t = Tensor::randn(mean, 0.5, shape, &dev).unwrap().to_dtype(dtype).unwrap();
                Var::from_tensor(&t).unwrap()
            };
            let x = var(&[b, cin, side, side], 0.2);
            let (w1, g1, b1) = (var(&[cout, cin, 3, 3], 0.0), var(&[cout], 1.0), var(&[cout], 0.0));
            let (w2, g2, b2) = (var(&[cout, cout, 3, 3], 0.0), var(&[cout], 1.0), var(&[cout], 0.0));
            let params =
                Tensor::cat(&[&w1.flatten_all().unwrap(), &g1, &b1, &w2.flatten_all().unwrap(), &g2, &b2], 0).unwrap();
            let op = BlockTrain::new(cout, stride, shortcut, 1e-5);
            let stats = op.stats.clone();
            let ours = x.apply_op2(&params, op).unwrap();
            // The same block as five ops.
            let (s1, s2) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
            let bn = |relu: bool, last_stats: &Arc<Mutex<Vec<(f64, f64)>>>| BatchNormTrain {
                eps: 1e-5,
                relu,
                last_stats: last_stats.clone(),
            };
            let h = conv::conv2d(&x, &w1, stride, 1).unwrap().apply_op3(&g1, &b1, bn(true, &s1)).unwrap();
            let o = conv::conv2d(&h, &w2, 1, 1).unwrap().apply_op3(&g2, &b2, bn(false, &s2)).unwrap();
            let short = match shortcut {
                Shortcut::Identity => x.as_tensor().clone(),
                Shortcut::A(pad) => shortcut_a(&x, pad).unwrap(),
            };
            let theirs = add_relu_tensors(&o, &short).unwrap();
            let case = format!("{dtype:?} {b}x{cin}x{side} to {cout} {shortcut:?}");
            assert_eq!(ours.dims(), theirs.dims(), "{case}");
            assert_eq!(max_diff(&ours, &theirs), 0.0, "forward {case}");
            assert_eq!(*stats.lock().unwrap(), (s1.lock().unwrap().clone(), s2.lock().unwrap().clone()), "{case}");
            let probe = Tensor::randn(0f64, 1f64, ours.dims(), &dev).unwrap().to_dtype(dtype).unwrap();
            let ga = (&ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (&theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("x", &x), ("w1", &w1), ("g1", &g1), ("b1", &b1), ("w2", &w2), ("g2", &g2), ("b2", &b2)] {
                let (a, t) = (ga.get(v).unwrap(), gb.get(v).unwrap());
                assert!(
                    t.abs().unwrap().sum_all().unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap() > 0.0
                );
                assert_eq!(max_diff(a, t), 0.0, "{name} gradient {case}");
            }
        }
    }
}

#[test]
fn a_frozen_eval_mode_block_as_one_op_gives_the_values_of_its_five_ops_and_their_input_gradient() {
    use misfit::ops::batchnorm::ChannelAffine;
    use misfit::ops::block::{BlockEval, Shortcut};
    use misfit::ops::residual::{add_relu_tensors, shortcut_a};
    let dev = Device::Cpu;
    for dtype in [DType::F32, DType::F64] {
        for (b, cin, side, cout, shortcut) in BLOCK_CASES {
            let stride = if shortcut == Shortcut::Identity { 1 } else { 2 };
            let t =
                |shape: &[usize], mean: f64| Tensor::randn(mean, 0.5, shape, &dev).unwrap().to_dtype(dtype).unwrap();
            let x = Var::from_tensor(&t(&[b, cin, side, side], 0.2)).unwrap();
            let (w1, s1, t1) = (t(&[cout, cin, 3, 3], 0.0), t(&[cout], 1.0), t(&[cout], 0.0));
            let (w2, s2, t2) = (t(&[cout, cout, 3, 3], 0.0), t(&[cout], 1.0), t(&[cout], 0.0));
            let params =
                Tensor::cat(&[&w1.flatten_all().unwrap(), &s1, &t1, &w2.flatten_all().unwrap(), &s2, &t2], 0).unwrap();
            let ours = x.apply_op2(&params, BlockEval::new(cout, stride, shortcut)).unwrap();
            let h =
                conv::conv2d(&x, &w1, stride, 1).unwrap().apply_op3(&s1, &t1, ChannelAffine { relu: true }).unwrap();
            let o = conv::conv2d(&h, &w2, 1, 1).unwrap().apply_op3(&s2, &t2, ChannelAffine { relu: false }).unwrap();
            let short = match shortcut {
                Shortcut::Identity => x.as_tensor().clone(),
                Shortcut::A(pad) => shortcut_a(&x, pad).unwrap(),
            };
            let theirs = add_relu_tensors(&o, &short).unwrap();
            let case = format!("{dtype:?} {b}x{cin}x{side} to {cout} {shortcut:?}");
            assert_eq!(ours.dims(), theirs.dims(), "{case}");
            assert_eq!(max_diff(&ours, &theirs), 0.0, "forward {case}");
            let probe = Tensor::randn(0f64, 1f64, ours.dims(), &dev).unwrap().to_dtype(dtype).unwrap();
            let ga = (&ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (&theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let (a, t) = (ga.get(&x).unwrap(), gb.get(&x).unwrap());
            assert!(
                t.abs().unwrap().sum_all().unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap() > 0.0
            );
            assert_eq!(max_diff(a, t), 0.0, "input gradient {case}");
        }
    }
}

/// The ops on a CUDA GPU (built with `--features cuda`; ignored by default,
/// since CI has no GPU): run them with
/// `cargo test --release --features cuda --test integration on_a_cuda_gpu -- --ignored`.
#[cfg(feature = "cuda")]
mod on_a_cuda_gpu {
    use super::*;

    fn gpu() -> Device {
        Device::new_cuda(0).expect("a CUDA GPU (device 0)")
    }

    /// The convolution CUDA runs (candle's forward, the matrix-multiply
    /// backward of `conv_cuda`) on CUDA tensors, against the direct reference.
    #[test]
    #[ignore = "needs a CUDA GPU"]
    fn convolution_forward_and_gradients_match_a_direct_reference() {
        check_against_direct_reference_on(misfit::ops::conv::conv2d, &gpu());
    }

    /// A whole training step (forward, loss, every gradient, the batch-norm
    /// buffers) on the GPU against the same step through misfit's CPU ops.
    #[test]
    #[ignore = "needs a CUDA GPU"]
    fn a_training_step_matches_the_cpu_step() {
        let (cpu, cuda) = (step_values(2, &Device::Cpu), step_values(2, &gpu()));
        assert_eq!(cpu.len(), cuda.len());
        let scale = cpu.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = cpu.iter().zip(&cuda).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(cuda.iter().all(|v| v.is_finite()), "non-finite value on the GPU");
        assert!(worst <= 1e-3 * scale.max(1.0), "largest difference {worst} (largest value {scale})");
    }
}

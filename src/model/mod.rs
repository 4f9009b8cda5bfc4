//! The CIFAR ResNet of He et al. 2016 (depth 6n+2: 20, 32, 44, 56), in candle.
//!
//! A 3x3 convolution, three stages of n basic blocks (width, 2x width, 4x
//! width channels; stride 2 at the start of stages 2 and 3), global average
//! pooling and a linear head. Shortcuts where the shape changes are option A
//! (subsample `x[:, :, ::2, ::2]` and zero-pad channels; no parameters) or
//! option B (1x1 convolution + batch norm). Parameter names are PyTorch's
//! (`conv1.weight`, `layer1.0.bn1.running_mean`, `linear.weight`, ...), so
//! checkpoints load in PyTorch and PyTorch-trained models load here.
//!
//! Input: RGB in [0, 1], `[n, 3, h, w]`; the model normalises it with its
//! configured per-channel mean and std. Output: logits `[n, classes]` and the
//! pooled features `[n, 4 * width]` that enter the head.

pub mod checkpoint;
pub mod infer;

use crate::ops::{self, batchnorm, block, conv, cpu, direct, residual};

/// Which device to compute on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when this build has it and a GPU answers, else CPU.
    Auto,
    Cpu,
    Cuda,
}

/// Opens the chosen device.
pub fn select_device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda if !cfg!(feature = "cuda") => Err(Error::Usage(
            "this misfit was built without CUDA: rebuild with `cargo build --release --features cuda`".into(),
        )),
        DeviceChoice::Cuda => Device::new_cuda(0).map_err(|e| Error::Usage(format!("cannot open CUDA device 0: {e}"))),
        DeviceChoice::Auto if cfg!(feature = "cuda") => Ok(Device::cuda_if_available(0).unwrap_or(Device::Cpu)),
        DeviceChoice::Auto => Ok(Device::Cpu),
    }
}

/// A short name of a device for logs and run.json.
pub fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", rayon::current_num_threads()),
        Device::Cuda(_) => "cuda:0".to_string(),
        Device::Metal(_) => "metal".to_string(),
    }
}

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Batch-norm epsilon (PyTorch's default).
pub const BN_EPS: f64 = 1e-5;
/// Batch-norm running-statistics momentum (PyTorch's default).
pub const BN_MOMENTUM: f64 = 0.1;
/// ImageNet channel means, the usual CIFAR normalisation of PyTorch models.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How a block's shortcut adapts the input where the shape changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Shortcut {
    /// Subsample and zero-pad channels: no parameters (the paper's CIFAR choice).
    A,
    /// 1x1 convolution with stride, then batch norm.
    B,
}

/// Everything that defines a model apart from its weights; saved in every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Depth 6n+2: 20, 32, 44, 56, ... (n blocks per stage).
    pub depth: usize,
    /// Channels of the first stage (16 in the paper); stages have width,
    /// 2x width and 4x width channels. 8 is a half-width model.
    pub width: usize,
    /// Shortcut option.
    pub shortcut: Shortcut,
    /// Class names; the head has one output per class.
    pub classes: Vec<String>,
    /// Per-channel mean subtracted from [0, 1] RGB input.
    pub mean: [f32; 3],
    /// Per-channel standard deviation the input is divided by.
    pub std: [f32; 3],
}

impl ModelConfig {
    /// Blocks per stage, n of depth 6n+2.
    pub fn blocks_per_stage(&self) -> usize {
        (self.depth - 2) / 6
    }

    /// Length of the feature vector (channels of the last stage).
    pub fn feature_dim(&self) -> usize {
        4 * self.width
    }

    /// Checks depth and width.
    pub fn validate(&self) -> Result<()> {
        if self.depth < 8 || (self.depth - 2) % 6 != 0 {
            return Err(Error::Usage(format!("ResNet depth {} is not 6n+2 (20, 32, 44, 56, ...)", self.depth)));
        }
        if self.width < 4 || self.width % 4 != 0 {
            return Err(Error::Usage(format!("ResNet width {} must be a multiple of 4, at least 4", self.width)));
        }
        if self.classes.len() < 2 {
            return Err(Error::Usage("a classifier needs at least 2 classes".into()));
        }
        Ok(())
    }
}

/// How a parameter starts before training.
#[derive(Clone, Copy, Debug)]
enum Init {
    /// Kaiming normal, fan-in, ReLU gain: std sqrt(2 / fan_in).
    Kaiming,
    /// Uniform in +-1/sqrt(fan_in) (PyTorch's linear bias).
    LinearBias(usize),
    Const(f32),
}

/// One tensor of the model: name, shape, whether it is trained or a
/// batch-norm statistic, and its initialisation.
#[derive(Clone, Debug)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    /// False for batch-norm running statistics (buffers).
    pub trainable: bool,
    init: Init,
}

/// Every tensor a model of `cfg` has, in a fixed order.
pub fn param_specs(cfg: &ModelConfig) -> Vec<ParamSpec> {
    let mut specs = Vec::new();
    let conv = |specs: &mut Vec<ParamSpec>, name: String, out: usize, inp: usize, k: usize| {
        specs.push(ParamSpec {
            name: format!("{name}.weight"),
            shape: vec![out, inp, k, k],
            trainable: true,
            init: Init::Kaiming,
        });
    };
    let bn = |specs: &mut Vec<ParamSpec>, name: String, c: usize| {
        for (field, trainable, v) in
            [("weight", true, 1.0), ("bias", true, 0.0), ("running_mean", false, 0.0), ("running_var", false, 1.0)]
        {
            specs.push(ParamSpec { name: format!("{name}.{field}"), shape: vec![c], trainable, init: Init::Const(v) });
        }
    };
    let w = cfg.width;
    conv(&mut specs, "conv1".into(), w, 3, 3);
    bn(&mut specs, "bn1".into(), w);
    let mut inp = w;
    for stage in 0..3 {
        let out = w << stage;
        for b in 0..cfg.blocks_per_stage() {
            let p = format!("layer{}.{b}", stage + 1);
            let block_in = if b == 0 { inp } else { out };
            conv(&mut specs, format!("{p}.conv1"), out, block_in, 3);
            bn(&mut specs, format!("{p}.bn1"), out);
            conv(&mut specs, format!("{p}.conv2"), out, out, 3);
            bn(&mut specs, format!("{p}.bn2"), out);
            if b == 0 && stage > 0 && cfg.shortcut == Shortcut::B {
                conv(&mut specs, format!("{p}.shortcut.0"), out, block_in, 1);
                bn(&mut specs, format!("{p}.shortcut.1"), out);
            }
        }
        inp = out;
    }
    let f = cfg.feature_dim();
    specs.push(ParamSpec {
        name: "linear.weight".into(),
        shape: vec![cfg.classes.len(), f],
        trainable: true,
        init: Init::Kaiming,
    });
    specs.push(ParamSpec {
        name: "linear.bias".into(),
        shape: vec![cfg.classes.len()],
        trainable: true,
        init: Init::LinearBias(f),
    });
    specs
}

/// A model's tensors by PyTorch name: trained parameters and batch-norm
/// buffers, each a candle `Var` so that training updates them in place.
#[derive(Clone, Debug)]
pub struct Params {
    /// Parameters the optimiser updates.
    pub trainable: BTreeMap<String, Var>,
    /// Batch-norm running statistics, updated by training forward passes.
    pub buffers: BTreeMap<String, Var>,
}

impl Params {
    /// Fresh parameters for `cfg`, initialised from `seed` (same seed, same weights).
    pub fn init(cfg: &ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut params = Params { trainable: BTreeMap::new(), buffers: BTreeMap::new() };
        for spec in param_specs(cfg) {
            let n: usize = spec.shape.iter().product();
            let values: Vec<f32> = match spec.init {
                Init::Const(v) => vec![v; n],
                Init::Kaiming => {
                    let fan_in: usize = spec.shape[1..].iter().product();
                    let normal = Normal::new(0.0f32, (2.0 / fan_in as f32).sqrt()).expect("finite std");
                    (0..n).map(|_| normal.sample(&mut rng)).collect()
                }
                Init::LinearBias(fan_in) => {
                    let b = 1.0 / (fan_in as f32).sqrt();
                    let u = Uniform::new(-b, b).expect("finite bound");
                    (0..n).map(|_| u.sample(&mut rng)).collect()
                }
            };
            let var = Var::from_tensor(&Tensor::from_vec(values, spec.shape.as_slice(), device)?)?;
            if spec.trainable { &mut params.trainable } else { &mut params.buffers }.insert(spec.name, var);
        }
        Ok(params)
    }

    /// Parameters from named tensors (a checkpoint), checked against `cfg`:
    /// every tensor present with its shape, nothing unknown (PyTorch's
    /// `num_batches_tracked` counters are ignored).
    pub fn from_tensors(
        cfg: &ModelConfig,
        mut tensors: BTreeMap<String, Tensor>,
        source: &str,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let mut params = Params { trainable: BTreeMap::new(), buffers: BTreeMap::new() };
        for spec in param_specs(cfg) {
            let t = tensors.remove(&spec.name).ok_or_else(|| {
                Error::Input(crate::Problem::entry(source, &spec.name, "tensor missing for this architecture"))
            })?;
            if t.dims() != spec.shape.as_slice() {
                return Err(Error::Input(crate::Problem::entry(
                    source,
                    &spec.name,
                    format!("shape {:?}, expected {:?}", t.dims(), spec.shape),
                )));
            }
            let var = Var::from_tensor(&t.to_dtype(DType::F32)?.to_device(device)?)?;
            if spec.trainable { &mut params.trainable } else { &mut params.buffers }.insert(spec.name, var);
        }
        tensors.retain(|k, _| !k.ends_with("num_batches_tracked"));
        if let Some(extra) = tensors.keys().next() {
            return Err(Error::Input(crate::Problem::entry(
                source,
                extra,
                format!(
                    "unexpected tensor for a ResNet-{} (width {}, shortcut {:?})",
                    cfg.depth, cfg.width, cfg.shortcut
                ),
            )));
        }
        Ok(params)
    }

    /// Every tensor by name (parameters and buffers), for saving.
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.trainable.iter().chain(&self.buffers).map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
    }

    fn get(&self, name: &str) -> Tensor {
        self.trainable.get(name).or_else(|| self.buffers.get(name)).expect("specs and params agree").as_tensor().clone()
    }

    fn buffer(&self, name: &str) -> Var {
        self.buffers.get(name).expect("specs and params agree").clone()
    }
}

/// Batch normalisation over `[n, c, h, w]` with PyTorch's semantics: batch
/// statistics (biased variance) in training, which also update the running
/// statistics (unbiased variance, momentum 0.1); running statistics in eval.
#[derive(Clone, Debug)]
struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
}

impl BatchNorm {
    fn frozen(&self) -> Self {
        BatchNorm { weight: self.weight.detach(), bias: self.bias.detach(), ..self.clone() }
    }

    fn new(p: &Params, name: &str) -> Self {
        BatchNorm {
            weight: p.get(&format!("{name}.weight")),
            bias: p.get(&format!("{name}.bias")),
            running_mean: p.buffer(&format!("{name}.running_mean")),
            running_var: p.buffer(&format!("{name}.running_var")),
        }
    }

    /// Normalises `x`, then applies ReLU when `relu`.
    fn forward(&self, x: &Tensor, train: bool, relu: bool) -> candle_core::Result<Tensor> {
        let c = self.weight.dim(0)?;
        let shape = (1, c, 1, 1);
        if train && cpu::takes_cpu_ops(x) {
            return self.forward_train_cpu(x, relu);
        }
        if !train && cpu::takes_cpu_ops(x) {
            let (scale, shift) = self.eval_scale_shift()?;
            return x.contiguous()?.apply_op3(&scale, &shift, batchnorm::ChannelAffine { relu });
        }
        let (centered, var) = if train {
            let mean = x.mean_keepdim((0, 2, 3))?;
            let centered = x.broadcast_sub(&mean)?;
            let var = centered.sqr()?.mean_keepdim((0, 2, 3))?;
            let n = (x.elem_count() / c) as f64;
            let m = BN_MOMENTUM;
            let rm = ((self.running_mean.as_tensor() * (1.0 - m))? + (mean.detach().flatten_all()? * m)?)?;
            let rv = ((self.running_var.as_tensor() * (1.0 - m))?
                + (var.detach().flatten_all()? * (m * n / (n - 1.0).max(1.0)))?)?;
            self.running_mean.set(&rm)?;
            self.running_var.set(&rv)?;
            (centered, var)
        } else {
            let mean = self.running_mean.as_tensor().detach().reshape(shape)?;
            (x.broadcast_sub(&mean)?, self.running_var.as_tensor().detach().reshape(shape)?)
        };
        let scale = (var + BN_EPS)?.sqrt()?.recip()?.broadcast_mul(&self.weight.reshape(shape)?)?;
        let y = centered.broadcast_mul(&scale)?.broadcast_add(&self.bias.reshape(shape)?)?;
        if relu {
            y.relu()
        } else {
            Ok(y)
        }
    }

    /// Eval mode as `y = x * scale + shift` per channel: `[c]` scale and
    /// shift with the running statistics folded in (gradients reach the
    /// weight and bias through them).
    fn eval_scale_shift(&self) -> candle_core::Result<(Tensor, Tensor)> {
        let rm = self.running_mean.as_tensor().detach();
        let rv = self.running_var.as_tensor().detach();
        let scale = (&self.weight / (rv + BN_EPS)?.sqrt()?)?;
        let shift = (&self.bias - (rm * &scale)?)?;
        Ok((scale, shift))
    }

    /// Training mode on the CPU: the fused op of [`batchnorm`], then the
    /// running statistics updated from the batch statistics it measured.
    fn forward_train_cpu(&self, x: &Tensor, relu: bool) -> candle_core::Result<Tensor> {
        let stats = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let op = batchnorm::BatchNormTrain { eps: BN_EPS, relu, last_stats: stats.clone() };
        let y = x.contiguous()?.apply_op3(&self.weight, &self.bias, op)?;
        let st = stats.lock().expect("stats lock").clone();
        self.update_running(&st, x.elem_count() / self.weight.dim(0)?, x.device())?;
        Ok(y)
    }

    /// The running statistics after a training pass over `n` values per
    /// channel whose batch statistics (mean, biased variance) were `st`:
    /// momentum 0.1, unbiased variance, as PyTorch.
    fn update_running(&self, st: &[(f64, f64)], n: usize, dev: &Device) -> candle_core::Result<()> {
        let n = n as f64;
        let m = BN_MOMENTUM;
        let rm: Vec<f64> = self.running_mean.as_tensor().to_dtype(DType::F64)?.to_vec1()?;
        let rv: Vec<f64> = self.running_var.as_tensor().to_dtype(DType::F64)?.to_vec1()?;
        let new_rm: Vec<f64> = rm.iter().zip(st).map(|(r, s)| (1.0 - m) * r + m * s.0).collect();
        let new_rv: Vec<f64> =
            rv.iter().zip(st).map(|(r, s)| (1.0 - m) * r + m * s.1 * n / (n - 1.0).max(1.0)).collect();
        let dtype = self.running_mean.dtype();
        self.running_mean.set(&Tensor::from_vec(new_rm, st.len(), dev)?.to_dtype(dtype)?)?;
        self.running_var.set(&Tensor::from_vec(new_rv, st.len(), dev)?.to_dtype(dtype)?)?;
        Ok(())
    }
}

/// A convolution without bias.
#[derive(Clone, Debug)]
struct Conv {
    weight: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv {
    fn frozen(&self) -> Self {
        Conv { weight: self.weight.detach(), ..self.clone() }
    }

    fn new(p: &Params, name: &str, stride: usize) -> Self {
        let weight = p.get(&format!("{name}.weight"));
        let k = weight.dims()[2];
        Conv { weight, stride, padding: k / 2 }
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        conv::conv2d(x, &self.weight, self.stride, self.padding)
    }
}

#[derive(Clone, Debug)]
enum ShortcutPath {
    /// Identity or option A: no parameters, the block ops take it.
    Free(ops::Shortcut),
    /// Option B: 1x1 convolution with stride 2, then batch norm.
    B(Conv, BatchNorm),
}

#[derive(Clone, Debug)]
struct Block {
    conv1: Conv,
    bn1: BatchNorm,
    conv2: Conv,
    bn2: BatchNorm,
    shortcut: ShortcutPath,
}

impl Block {
    fn frozen(&self) -> Self {
        Block {
            conv1: self.conv1.frozen(),
            bn1: self.bn1.frozen(),
            conv2: self.conv2.frozen(),
            bn2: self.bn2.frozen(),
            shortcut: match &self.shortcut {
                ShortcutPath::B(c, b) => ShortcutPath::B(c.frozen(), b.frozen()),
                other => other.clone(),
            },
        }
    }

    fn forward(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let shortcut = match self.shortcut {
            ShortcutPath::Free(s) => Some(s),
            ShortcutPath::B(..) => None,
        };
        if let (Some(shortcut), true) = (shortcut, cpu::takes_cpu_ops(x)) {
            if train {
                return self.forward_train_cpu(x, shortcut);
            }
            if self.tensors().iter().all(|t| !t.track_op()) {
                return self.forward_eval_cpu(x, shortcut);
            }
        }
        let out = self.bn1.forward(&self.conv1.forward(x)?, train, true)?;
        let out = self.bn2.forward(&self.conv2.forward(&out)?, train, false)?;
        let short = match &self.shortcut {
            ShortcutPath::Free(ops::Shortcut::Identity) => x.clone(),
            ShortcutPath::Free(ops::Shortcut::A(pad)) => residual::shortcut_a(x, *pad)?,
            ShortcutPath::B(conv, bn) => bn.forward(&conv.forward(x)?, train, false)?,
        };
        residual::add_relu_tensors(&out, &short)
    }

    /// The trained tensors in the block ops' parameter order: conv1's
    /// weight, bn1's weight and bias, conv2's weight, bn2's weight and bias.
    fn tensors(&self) -> [&Tensor; 6] {
        let (c1, n1, c2, n2) = (&self.conv1, &self.bn1, &self.conv2, &self.bn2);
        [&c1.weight, &n1.weight, &n1.bias, &c2.weight, &n2.weight, &n2.bias]
    }

    /// Training mode on the CPU: the block as one op ([`block::BlockTrain`]),
    /// then both batch norms' running statistics updated from the batch
    /// statistics it measured.
    fn forward_train_cpu(&self, x: &Tensor, shortcut: ops::Shortcut) -> candle_core::Result<Tensor> {
        let (cout, stride) = (self.conv1.weight.dim(0)?, self.conv1.stride);
        let flat = self.tensors().map(|t| t.flatten_all());
        let params = Tensor::cat(&flat.into_iter().collect::<candle_core::Result<Vec<_>>>()?, 0)?;
        let op = block::BlockTrain::new(cout, stride, shortcut, BN_EPS);
        let stats = op.stats.clone();
        let y = x.contiguous()?.apply_op2(&params, op)?;
        let (st1, st2) = stats.lock().expect("stats lock").clone();
        let n = y.elem_count() / cout;
        self.bn1.update_running(&st1, n, x.device())?;
        self.bn2.update_running(&st2, n, x.device())?;
        Ok(y)
    }

    /// Eval mode on the CPU with frozen weights (gradients reach the input
    /// only, as in attacks): the block as one op ([`block::BlockEval`]).
    fn forward_eval_cpu(&self, x: &Tensor, shortcut: ops::Shortcut) -> candle_core::Result<Tensor> {
        let (s1, t1) = self.bn1.eval_scale_shift()?;
        let (s2, t2) = self.bn2.eval_scale_shift()?;
        let params = Tensor::cat(
            &[&self.conv1.weight.flatten_all()?, &s1, &t1, &self.conv2.weight.flatten_all()?, &s2, &t2],
            0,
        )?;
        let op = block::BlockEval::new(self.conv1.weight.dim(0)?, self.conv1.stride, shortcut);
        x.contiguous()?.apply_op2(&params, op)
    }
}

/// A CIFAR ResNet built over a [`Params`] store.
#[derive(Clone, Debug)]
pub struct ResNet {
    /// The configuration the model was built for.
    pub config: ModelConfig,
    /// Its tensors (shared with the layers below: updating a `Var` updates the model).
    pub params: Params,
    conv1: Conv,
    bn1: BatchNorm,
    blocks: Vec<Block>,
    linear_w: Tensor,
    linear_b: Tensor,
    /// `[1, 3, 1, 1]` input mean and std.
    mean: Tensor,
    std: Tensor,
}

/// What one forward pass gives.
#[derive(Debug)]
pub struct Output {
    /// `[n, classes]` logits.
    pub logits: Tensor,
    /// `[n, 4 * width]` pooled features (input of the head).
    pub features: Tensor,
}

impl ResNet {
    /// Builds the model over `params` (which must match `config`).
    pub fn new(config: ModelConfig, params: Params) -> Result<Self> {
        config.validate()?;
        let p = &params;
        let mut blocks = Vec::new();
        for stage in 0..3 {
            for b in 0..config.blocks_per_stage() {
                let name = format!("layer{}.{b}", stage + 1);
                let stride = if b == 0 && stage > 0 { 2 } else { 1 };
                let shortcut = match (stride, config.shortcut) {
                    (1, _) => ShortcutPath::Free(ops::Shortcut::Identity),
                    (_, Shortcut::A) => ShortcutPath::Free(ops::Shortcut::A((config.width << stage) / 4)),
                    (_, Shortcut::B) => ShortcutPath::B(
                        Conv::new(p, &format!("{name}.shortcut.0"), 2),
                        BatchNorm::new(p, &format!("{name}.shortcut.1")),
                    ),
                };
                blocks.push(Block {
                    conv1: Conv::new(p, &format!("{name}.conv1"), stride),
                    bn1: BatchNorm::new(p, &format!("{name}.bn1")),
                    conv2: Conv::new(p, &format!("{name}.conv2"), 1),
                    bn2: BatchNorm::new(p, &format!("{name}.bn2")),
                    shortcut,
                });
            }
        }
        let first = p.get("conv1.weight");
        let (device, dtype) = (first.device().clone(), first.dtype());
        let mean = Tensor::from_slice(&config.mean, (1, 3, 1, 1), &device)?.to_dtype(dtype)?;
        let std = Tensor::from_slice(&config.std, (1, 3, 1, 1), &device)?.to_dtype(dtype)?;
        Ok(ResNet {
            conv1: Conv::new(p, "conv1", 1),
            bn1: BatchNorm::new(p, "bn1"),
            blocks,
            linear_w: p.get("linear.weight"),
            linear_b: p.get("linear.bias"),
            mean,
            std,
            config,
            params,
        })
    }

    /// A freshly initialised model.
    pub fn init(config: ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        let params = Params::init(&config, seed, device)?;
        ResNet::new(config, params)
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        self.mean.device()
    }

    /// The float type of the weights.
    pub fn dtype(&self) -> DType {
        self.mean.dtype()
    }

    /// Forward pass of `[n, 3, h, w]` RGB in [0, 1]. `train` uses batch
    /// statistics and updates the running ones.
    pub fn forward(&self, x: &Tensor, train: bool) -> candle_core::Result<Output> {
        let out = self.trunk(x, train)?;
        let features = out.mean((2, 3))?;
        let logits = self.head(&features)?;
        Ok(Output { logits, features })
    }

    /// The last convolutional stage's activations of `[n, 3, h, w]` RGB in
    /// [0, 1]: `[n, 4 * width, h / 4, w / 4]` after the last block's ReLU
    /// (what Grad-CAM weighs).
    pub fn trunk(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let x = x.broadcast_sub(&self.mean)?.broadcast_div(&self.std)?;
        if let Some(out) = self.inference_trunk(&x, train)? {
            return Ok(out);
        }
        let mut out = self.bn1.forward(&self.conv1.forward(&x)?, train, true)?;
        for block in &self.blocks {
            out = block.forward(&out, train)?;
        }
        Ok(out)
    }

    /// Logits `[n, classes]` of pooled features `[n, 4 * width]`.
    pub fn head(&self, features: &Tensor) -> candle_core::Result<Tensor> {
        features.matmul(&self.linear_w.t()?)?.broadcast_add(&self.linear_b)
    }

    /// The convolutional trunk of an eval-mode pass by [`infer::trunk`],
    /// where it applies: normalised f32 `x` on the CPU, nothing tracking
    /// gradients (a [`ResNet::frozen`] model and a plain input), direct
    /// kernels for every convolution, no option-B shortcut. `None` otherwise.
    fn inference_trunk(&self, x: &Tensor, train: bool) -> candle_core::Result<Option<Tensor>> {
        let Some((stem, blocks, (b, c, h, w))) = self.inference_plan(x, train)? else { return Ok(None) };
        let out = infer::trunk(&x.flatten_all()?.to_vec1::<f32>()?, b, &stem, &blocks);
        Ok(Some(Tensor::from_vec(out, (b, c, h, w), x.device())?))
    }

    /// Whether an eval-mode pass of `x` runs the trunk by [`infer::trunk`]
    /// (see [`ResNet::forward`]) rather than layer by layer.
    pub fn takes_inference_trunk(&self, x: &Tensor) -> candle_core::Result<bool> {
        Ok(self.inference_plan(x, false)?.is_some())
    }

    /// The layers of [`infer::trunk`] for `x` and the `[b, c, h, w]` shape
    /// of its output, where it applies.
    #[allow(clippy::type_complexity)]
    fn inference_plan(
        &self,
        x: &Tensor,
        train: bool,
    ) -> candle_core::Result<Option<(infer::Layer, Vec<infer::Block>, (usize, usize, usize, usize))>> {
        let stem = [&self.conv1.weight, &self.bn1.weight, &self.bn1.bias];
        let tracks =
            x.track_op() || stem.into_iter().chain(self.blocks.iter().flat_map(Block::tensors)).any(|t| t.track_op());
        let option_b = self.blocks.iter().any(|b| matches!(b.shortcut, ShortcutPath::B(..)));
        if train || tracks || option_b || x.dtype() != DType::F32 || !x.device().is_cpu() {
            return Ok(None);
        }
        let (b, _, mut h, mut w) = x.dims4()?;
        let layer = |conv: &Conv, bn: &BatchNorm, h: &mut usize, w: &mut usize| {
            let (cout, cin, k, _) = conv.weight.dims4()?;
            let g = conv::Geometry { b, cin, h: *h, w: *w, cout, k, stride: conv.stride, pad: conv.padding };
            if !direct::supports(&g) || g.pad != 1 {
                return Ok(None);
            }
            (*h, *w) = (g.ho(), g.wo());
            let (scale, shift) = bn.eval_scale_shift()?;
            let conv = direct::Prepared::new(&conv.weight.flatten_all()?.to_vec1::<f32>()?, &g);
            candle_core::Result::Ok(Some(infer::Layer { conv, scale: scale.to_vec1()?, shift: shift.to_vec1()? }))
        };
        let Some(stem) = layer(&self.conv1, &self.bn1, &mut h, &mut w)? else { return Ok(None) };
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for bl in &self.blocks {
            let (c, hin, win) = (bl.conv1.weight.dim(1)?, h, w);
            let Some(conv1) = layer(&bl.conv1, &bl.bn1, &mut h, &mut w)? else { return Ok(None) };
            let Some(conv2) = layer(&bl.conv2, &bl.bn2, &mut h, &mut w)? else { return Ok(None) };
            let shortcut = match bl.shortcut {
                ShortcutPath::Free(s) => s,
                ShortcutPath::B(..) => unreachable!("option-B models leave the trunk above"),
            };
            blocks.push(infer::Block { conv1, conv2, shortcut, input: [c, hin, win] });
        }
        let c = blocks.last().map_or(stem.conv.out_len(), |bl| bl.conv2.conv.out_len()) / (h * w);
        Ok(Some((stem, blocks, (b, c, h, w))))
    }

    /// The same model with its weights cut off from autograd: gradients flow
    /// to the input only (attacks and saliency), and no weight gradient is
    /// computed. Shares the weights' storage; meant for eval mode.
    pub fn frozen(&self) -> ResNet {
        ResNet {
            conv1: self.conv1.frozen(),
            bn1: self.bn1.frozen(),
            blocks: self.blocks.iter().map(Block::frozen).collect(),
            linear_w: self.linear_w.detach(),
            linear_b: self.linear_b.detach(),
            ..self.clone()
        }
    }
}

/// `[n, h, w, 3]` u8 RGB pixels to a `[n, 3, h, w]` f32 tensor in [0, 1].
pub fn images_to_tensor(pixels: &[u8], n: usize, h: usize, w: usize, device: &Device) -> candle_core::Result<Tensor> {
    Tensor::from_vec(images_to_chw(pixels, n, h, w), (n, 3, h, w), device)
}

/// `[n, h, w, 3]` u8 RGB pixels to `[n, 3, h, w]` f32 values in [0, 1], row-major.
pub fn images_to_chw(pixels: &[u8], n: usize, h: usize, w: usize) -> Vec<f32> {
    let plane = h * w;
    let mut out = vec![0f32; n * 3 * plane];
    for (i, img) in pixels.chunks_exact(plane * 3).enumerate().take(n) {
        let dst = &mut out[i * 3 * plane..(i + 1) * 3 * plane];
        for (p, px) in img.chunks_exact(3).enumerate() {
            for c in 0..3 {
                dst[c * plane + p] = px[c] as f32 / 255.0;
            }
        }
    }
    out
}

/// Logits and features of a whole split, from eval-mode forward passes.
#[derive(Clone, Debug, Default)]
pub struct Predictions {
    /// Number of classes (row length of `logits`).
    pub classes: usize,
    /// Feature length (row length of `features`).
    pub feature_dim: usize,
    /// `[n, classes]` row-major logits.
    pub logits: Vec<f32>,
    /// `[n, feature_dim]` row-major pooled features.
    pub features: Vec<f32>,
}

impl Predictions {
    /// Number of images predicted.
    pub fn len(&self) -> usize {
        self.logits.len() / self.classes.max(1)
    }

    /// Whether nothing was predicted.
    pub fn is_empty(&self) -> bool {
        self.logits.is_empty()
    }

    /// Logits of image `i`.
    pub fn logits_of(&self, i: usize) -> &[f32] {
        &self.logits[i * self.classes..(i + 1) * self.classes]
    }

    /// The arg-max class of image `i` (the first on ties).
    pub fn predicted(&self, i: usize) -> u32 {
        crate::stats::argmax(self.logits_of(i)) as u32
    }
}

/// Runs the model in eval mode over `[n, h, w, 3]` pixels, `batch` images at a time.
pub fn predict(model: &ResNet, pixels: &[u8], n: usize, h: usize, w: usize, batch: usize) -> Result<Predictions> {
    let len = h * w * 3;
    let mut out = Predictions {
        classes: model.config.classes.len(),
        feature_dim: model.config.feature_dim(),
        ..Default::default()
    };
    out.logits.reserve(n * out.classes);
    out.features.reserve(n * out.feature_dim);
    // Nothing needs gradients: the frozen model takes the inference trunk.
    let model = model.frozen();
    for start in (0..n).step_by(batch.max(1)) {
        let m = batch.min(n - start);
        let x = images_to_tensor(&pixels[start * len..(start + m) * len], m, h, w, model.device())?;
        let o = model.forward(&x, false)?;
        out.logits.extend(o.logits.flatten_all()?.to_vec1::<f32>()?);
        out.features.extend(o.features.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// The left-right mirror of `[n, h, w, 3]` images.
pub fn mirror_images(pixels: &[u8], n: usize, h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0u8; n * h * w * 3];
    for (src_row, dst_row) in pixels.chunks_exact(w * 3).zip(out.chunks_exact_mut(w * 3)) {
        for x in 0..w {
            dst_row[(w - 1 - x) * 3..(w - x) * 3].copy_from_slice(&src_row[x * 3..x * 3 + 3]);
        }
    }
    out
}

/// Log-probabilities `[n, classes]` of an ensemble: the mean of the
/// softmax of every member's logits (each `[n, classes]`). The log of a
/// distribution is a valid set of logits (its softmax is the distribution),
/// so the result goes wherever logits do.
pub fn ensemble_logits(members: &[&[f32]], classes: usize) -> Vec<f32> {
    let n = members.first().map_or(0, |m| m.len() / classes.max(1));
    let mut out = Vec::with_capacity(n * classes);
    for i in 0..n {
        let mut mean = vec![0f64; classes];
        for m in members {
            for (acc, p) in mean.iter_mut().zip(crate::stats::softmax(&m[i * classes..(i + 1) * classes])) {
                *acc += p / members.len() as f64;
            }
        }
        // A probability that underflowed stays finite: ln of the smallest f32.
        out.extend(mean.iter().map(|&p| (p.max(f32::MIN_POSITIVE as f64)).ln() as f32));
    }
    out
}

/// Logits of `[n, h, w, 3]` images as [`predict`] gives them, or, with
/// `mirror`, the ensemble of each image and its mirror (test-time flips);
/// features always of the images as given.
pub fn predict_tta(model: &ResNet, pixels: &[u8], n: usize, h: usize, w: usize, mirror: bool) -> Result<Predictions> {
    let mut p = predict(model, pixels, n, h, w, 256)?;
    if mirror {
        let flipped = mirror_images(pixels, n, h, w);
        let q = predict(model, &flipped, n, h, w, 256)?;
        p.logits = ensemble_logits(&[&p.logits, &q.logits], p.classes);
    }
    Ok(p)
}

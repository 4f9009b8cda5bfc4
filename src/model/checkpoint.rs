//! Checkpoints: safetensors files with PyTorch state_dict names and metadata
//! (architecture, depth, width, shortcut, normalisation, class names, and
//! whatever the caller adds: epoch, seed). The same metadata keys as the
//! shared akamaster file (`mean`, `std`, `shortcut`, `classes`,
//! comma-separated), so either loads the other's files. PyTorch `.pt`/`.pth`
//! state dicts are read through candle's pickle reader.

use candle_core::{Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::{ModelConfig, Params, ResNet, Shortcut};
use crate::error::{Error, Problem, Result};

/// What an import may fill in or must agree with.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Class names the model must have (the dataset's): checked against the
    /// file's metadata, used where the file has none.
    pub classes: Option<Vec<String>>,
    /// Input normalisation where the file has none.
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
}

fn list3(s: &str) -> Option<[f32; 3]> {
    let v: Vec<f32> = s.split(',').map(|x| x.trim().parse().ok()).collect::<Option<_>>()?;
    v.try_into().ok()
}

fn join3(v: &[f32; 3]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
}

/// The metadata written for a model (plus `extra`).
pub fn metadata(cfg: &ModelConfig, extra: &BTreeMap<String, String>) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = extra.clone().into_iter().collect();
    m.insert("arch".into(), "resnet".into());
    m.insert("depth".into(), cfg.depth.to_string());
    m.insert("width".into(), cfg.width.to_string());
    m.insert("shortcut".into(), format!("{:?}", cfg.shortcut));
    m.insert("mean".into(), join3(&cfg.mean));
    m.insert("std".into(), join3(&cfg.std));
    m.insert("classes".into(), cfg.classes.join(","));
    if cfg.classes.iter().any(|c| c.contains(',')) {
        m.insert("classes_json".into(), serde_json::to_string(&cfg.classes).expect("strings serialise"));
    }
    m.insert("misfit.version".into(), env!("CARGO_PKG_VERSION").into());
    m
}

/// Serialises named tensors with metadata to safetensors bytes.
pub fn to_bytes(tensors: &BTreeMap<String, Tensor>, meta: HashMap<String, String>) -> Result<Vec<u8>> {
    let cpu: Vec<(String, Tensor)> =
        tensors.iter().map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?))).collect::<Result<_>>()?;
    let bytes = safetensors::tensor::serialize(cpu.iter().map(|(k, t)| (k.as_str(), t)), Some(meta))
        .map_err(|e| Error::Usage(format!("cannot serialise tensors: {e}")))?;
    Ok(canonical_header(bytes))
}

/// Rewrites a safetensors header with its JSON keys sorted. The crate
/// serialises the metadata from a `HashMap`, whose order changes from run to
/// run; sorted keys make the same model give the same bytes. The header
/// keeps its length (padded with spaces, as the format allows), so the
/// tensor offsets stay valid.
fn canonical_header(mut bytes: Vec<u8>) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8-byte length")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).expect("the crate wrote valid JSON");
    let sorted = serde_json::to_vec(&header).expect("JSON serialises");
    if sorted.len() <= n {
        bytes[8..8 + sorted.len()].copy_from_slice(&sorted);
        bytes[8 + sorted.len()..8 + n].fill(b' ');
    }
    bytes
}

/// Saves a model (and `extra` metadata) to `path`, atomically.
pub fn save(path: &Path, model: &ResNet, extra: &BTreeMap<String, String>) -> Result<()> {
    let bytes = to_bytes(&model.params.tensors(), metadata(&model.config, extra))?;
    crate::atomic::write(path, &bytes)
}

/// Named tensors and metadata of a safetensors or PyTorch file.
pub fn read_tensors(path: &Path, device: &Device) -> Result<(BTreeMap<String, Tensor>, HashMap<String, String>)> {
    let bad =
        |e: &dyn std::fmt::Display| -> Error { Problem::file(path, format!("cannot read model weights: {e}")).into() };
    let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
    if ext == "pt" || ext == "pth" || ext == "th" {
        let mut tensors = candle_core::pickle::read_all(path).map_err(|e| bad(&e))?;
        if !tensors.iter().any(|(k, _)| k.ends_with("conv1.weight")) {
            tensors = candle_core::pickle::read_all_with_key(path, Some("state_dict")).map_err(|e| bad(&e))?;
        }
        let map = tensors
            .into_iter()
            .map(|(k, t)| Ok((k.strip_prefix("module.").unwrap_or(&k).to_string(), t.to_device(device)?)))
            .collect::<Result<_>>()?;
        return Ok((map, HashMap::new()));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, st_meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(&e))?;
    let meta = st_meta.metadata().clone().unwrap_or_default();
    let tensors = candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| bad(&e))?;
    Ok((tensors.into_iter().collect(), meta))
}

/// Loads a ResNet from a checkpoint or a PyTorch-trained file, inferring
/// depth, width and shortcut from the tensors, and class names and
/// normalisation from the metadata or `opts`. Returns the model and the
/// file's metadata.
pub fn load(path: &Path, opts: &ImportOptions, device: &Device) -> Result<(ResNet, HashMap<String, String>)> {
    let (tensors, meta) = read_tensors(path, device)?;
    let source = path.display().to_string();
    let conv1 = tensors
        .get("conv1.weight")
        .ok_or_else(|| Problem::file(path, "no conv1.weight: not a CIFAR ResNet state dict"))?;
    let width = conv1.dims()[0];
    let blocks = (0..).take_while(|b| tensors.contains_key(&format!("layer1.{b}.conv1.weight"))).count();
    let shortcut = match meta.get("shortcut").map(String::as_str) {
        Some("A") => Shortcut::A,
        Some("B") => Shortcut::B,
        Some(other) => {
            return Err(Problem::entry(path, "metadata shortcut", format!("'{other}' is neither A nor B")).into())
        }
        None if tensors.keys().any(|k| k.contains(".shortcut.")) => Shortcut::B,
        None => Shortcut::A,
    };
    let n_out = tensors
        .get("linear.weight")
        .map(|t| t.dims()[0])
        .ok_or_else(|| Problem::file(path, "no linear.weight: not a CIFAR ResNet state dict"))?;
    let file_classes: Option<Vec<String>> = match (meta.get("classes_json"), meta.get("classes")) {
        (Some(j), _) => serde_json::from_str(j).ok(),
        (None, Some(c)) => Some(c.split(',').map(String::from).collect()),
        (None, None) => None,
    };
    let classes = match (&opts.classes, file_classes) {
        (Some(want), Some(have)) if *want != have => {
            return Err(Problem::file(
                path,
                format!("the model's classes {have:?} are not the dataset's {want:?} (same names, same order)"),
            )
            .into())
        }
        (Some(c), _) => c.clone(),
        (None, Some(c)) => c,
        (None, None) => {
            return Err(Problem::file(path, "no class names in the file's metadata; give the dataset's").into())
        }
    };
    if classes.len() != n_out {
        return Err(Problem::file(
            path,
            format!("the head has {n_out} outputs but there are {} classes", classes.len()),
        )
        .into());
    }
    let norm = |key: &str, given: Option<[f32; 3]>| -> Result<[f32; 3]> {
        match meta.get(key) {
            Some(s) => list3(s).ok_or_else(|| {
                Problem::entry(path, format!("metadata {key}"), format!("'{s}' is not 3 numbers")).into()
            }),
            None => given.ok_or_else(|| {
                Problem::file(
                    path,
                    format!("no input normalisation ({key}) in the file's metadata; pass --mean and --std"),
                )
                .into()
            }),
        }
    };
    let config = ModelConfig {
        depth: 6 * blocks + 2,
        width,
        shortcut,
        classes,
        mean: norm("mean", opts.mean)?,
        std: norm("std", opts.std)?,
    };
    let params = Params::from_tensors(&config, tensors, &source, device)?;
    Ok((ResNet::new(config, params)?, meta))
}

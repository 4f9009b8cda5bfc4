//! SGD with momentum (optionally Nesterov) and weight decay, with PyTorch's
//! update rule, so that hyper-parameters carry over from PyTorch recipes:
//! `g = grad + wd * p; buf = momentum * buf + g (buf = g at the first step);
//! step = nesterov ? g + momentum * buf : buf; p -= lr * step`.
//! candle-nn's SGD has no momentum, hence this file.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use std::collections::BTreeMap;

use crate::error::Result;

/// Optimiser settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SgdConfig {
    /// Momentum factor (0 for plain SGD).
    pub momentum: f64,
    /// Use Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f64,
}

/// SGD state: the momentum buffer of every parameter, by name.
#[derive(Debug, Default)]
pub struct Sgd {
    pub config: Option<SgdConfig>,
    /// Momentum buffers by parameter name (absent before the first step).
    pub buffers: BTreeMap<String, Tensor>,
}

impl Sgd {
    /// A fresh optimiser.
    pub fn new(config: SgdConfig) -> Self {
        Sgd { config: Some(config), buffers: BTreeMap::new() }
    }

    /// One update of every parameter in `vars` that has a gradient in `grads`.
    pub fn step(&mut self, vars: &BTreeMap<String, Var>, grads: &GradStore, lr: f64) -> Result<()> {
        let cfg = self.config.clone().expect("configured optimiser");
        for (name, var) in vars {
            let Some(grad) = grads.get(var.as_tensor()) else { continue };
            let p = var.as_tensor();
            let mut g = if cfg.weight_decay != 0.0 { (grad + (p.detach() * cfg.weight_decay)?)? } else { grad.clone() };
            if cfg.momentum != 0.0 {
                let buf = match self.buffers.get(name) {
                    Some(b) => ((b * cfg.momentum)? + &g)?,
                    None => g.clone(),
                };
                g = if cfg.nesterov { (&g + (&buf * cfg.momentum)?)? } else { buf.clone() };
                self.buffers.insert(name.clone(), buf);
            }
            var.set(&(p.detach() - (g * lr)?)?)?;
        }
        Ok(())
    }
}

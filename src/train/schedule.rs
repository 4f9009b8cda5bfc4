//! Learning-rate schedules, evaluated at every step.

use serde::{Deserialize, Serialize};

/// How the learning rate moves over training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Schedule {
    /// Multiply by `gamma` at each milestone, given as fractions of training
    /// (the ResNet paper's 0.5 and 0.75 with gamma 0.1).
    Step { milestones: Vec<f64>, gamma: f64 },
    /// Cosine decay from the peak to zero.
    Cosine,
    /// Linear warm-up from `peak / 25` over `warmup` of training, then cosine to zero.
    OneCycle { warmup: f64 },
}

impl Schedule {
    /// Parses `step`, `cosine` or `onecycle`.
    pub fn parse(s: &str) -> Option<Schedule> {
        match s {
            "step" => Some(Schedule::Step { milestones: vec![0.5, 0.75], gamma: 0.1 }),
            "cosine" => Some(Schedule::Cosine),
            "onecycle" => Some(Schedule::OneCycle { warmup: 0.15 }),
            _ => None,
        }
    }

    /// The learning rate at step `step` of `total`, for peak rate `peak`.
    pub fn lr(&self, peak: f64, step: usize, total: usize) -> f64 {
        let t = step as f64 / total.max(1) as f64;
        let cosine = |t: f64| 0.5 * (1.0 + (std::f64::consts::PI * t.clamp(0.0, 1.0)).cos());
        match self {
            Schedule::Step { milestones, gamma } => {
                peak * gamma.powi(milestones.iter().filter(|&&m| t >= m).count() as i32)
            }
            Schedule::Cosine => peak * cosine(t),
            Schedule::OneCycle { warmup } => {
                if t < *warmup {
                    let start = peak / 25.0;
                    start + (peak - start) * t / warmup
                } else {
                    peak * cosine((t - warmup) / (1.0 - warmup).max(1e-9))
                }
            }
        }
    }
}

//! Progress bars on standard error (indicatif), shown only on a terminal and
//! only when asked for, so that logs and tests stay clean.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A counter of items with no known total ("reading images: 12000").
pub fn counter(enabled: bool, message: &'static str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}: {pos} ({per_sec}, {elapsed})").expect("valid template"),
    );
    bar.set_message(message);
    bar
}

/// A bar over `total` items with throughput.
pub fn bar(enabled: bool, total: u64, message: &'static str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

/// The whole audit's progress, for the time left: work counted in units of
/// one training image-step (one image through one training step), every
/// other stage converted by what it costs against that ([`INFER_UNITS`],
/// [`SCORE_UNITS`], [`ATTACK_STEP_UNITS`]). Training is nearly all of a
/// trained audit, so the estimate follows the measured training rate.
/// Shared by clones; work resumed from a saved state counts as done but not
/// in the rate.
#[derive(Clone, Debug)]
pub struct Overall {
    inner: std::sync::Arc<std::sync::Mutex<OverallState>>,
}

#[derive(Debug)]
struct OverallState {
    total: f64,
    done: f64,
    /// Units done without time spent here (resumed epochs).
    skipped: f64,
    started: std::time::Instant,
}

/// Units of one image through inference (a forward pass without the
/// backward: about a quarter of a training step, `misfit bench train`).
pub const INFER_UNITS: f64 = 0.25;
/// Units per image of the scores stage (neighbours, duplicates, confident
/// learning: 73.6 s for CIFAR-10's 60,000 images, about 0.5 image-steps each
/// at 400 training images per second).
pub const SCORE_UNITS: f64 = 0.5;
/// Units of one training image-step on half-size images (the small epochs
/// of `--small-epochs`: a quarter of the pixels; a train step 2.7-3.1x as
/// fast as at full size, `misfit bench train --size 32|16`, docs/recipe.md).
pub const SMALL_STEP_UNITS: f64 = 0.35;
/// Units of one attack gradient step on one image (forward and an input
/// gradient, no weight gradients).
pub const ATTACK_STEP_UNITS: f64 = 0.7;

impl Overall {
    /// A tracker of `total` units, started now.
    pub fn new(total: f64) -> Overall {
        let state = OverallState { total, done: 0.0, skipped: 0.0, started: std::time::Instant::now() };
        Overall { inner: std::sync::Arc::new(std::sync::Mutex::new(state)) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut OverallState) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// `units` of work done.
    pub fn advance(&self, units: f64) {
        self.with(|s| s.done += units);
    }

    /// `units` found done (resumed), which took no time here.
    pub fn skip(&self, units: f64) {
        self.with(|s| {
            s.done += units;
            s.skipped += units;
        });
    }

    /// Share done, 0 to 1.
    pub fn fraction(&self) -> f64 {
        self.with(|s| if s.total > 0.0 { (s.done / s.total).clamp(0.0, 1.0) } else { 0.0 })
    }

    /// Seconds left at the rate measured so far (None before any work).
    pub fn seconds_left(&self) -> Option<f64> {
        self.with(|s| {
            let worked = s.done - s.skipped;
            let secs = s.started.elapsed().as_secs_f64();
            (worked > 0.0 && secs > 1.0).then(|| (s.total - s.done).max(0.0) * secs / worked)
        })
    }

    /// "audit 14%, about 38 min left".
    pub fn status(&self) -> String {
        let pct = 100.0 * self.fraction();
        match self.seconds_left() {
            Some(s) => format!("audit {pct:.0}%, about {} left", duration(s)),
            None => format!("audit {pct:.0}%"),
        }
    }
}

/// A duration for a person: "45 s", "12 min", "1 h 05 min".
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min", (s + 30) / 60)
    } else {
        let m = (s + 30) / 60;
        format!("{} h {:02} min", m / 60, m % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(duration(42.4), "42 s");
        assert_eq!(duration(12.0 * 60.0 + 20.0), "12 min");
        assert_eq!(duration(3600.0 + 5.0 * 60.0), "1 h 05 min");
    }

    #[test]
    fn resumed_work_counts_as_done_but_not_in_the_rate() {
        let o = Overall::new(100.0);
        o.skip(50.0);
        assert_eq!(o.fraction(), 0.5);
        assert!(o.seconds_left().is_none(), "no work done here yet, no rate");
        o.advance(200.0);
        assert_eq!(o.fraction(), 1.0);
    }
}

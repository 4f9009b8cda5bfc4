//! Training dynamics: every training sample's loss, logit margin and
//! correctness at every epoch, and what the audit derives from them: area
//! under the margin (AUM, Pleiss et al. 2020), forgetting events (Toneva et
//! al. 2019) and the first epoch a sample was learned.

/// Per-sample, per-epoch records, `[epochs, n]` row-major.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dynamics {
    /// Epochs recorded.
    pub epochs: usize,
    /// Samples per epoch.
    pub n: usize,
    /// Cross-entropy of the given label, from the training forward pass.
    pub loss: Vec<f32>,
    /// Logit of the given label minus the largest other logit.
    pub margin: Vec<f32>,
    /// Whether the given label had the largest logit.
    pub correct: Vec<bool>,
}

impl Dynamics {
    /// Empty records for `n` samples.
    pub fn new(n: usize) -> Self {
        Dynamics { epochs: 0, n, ..Default::default() }
    }

    /// Appends one epoch (each slice has `n` values).
    pub fn push_epoch(&mut self, loss: &[f32], margin: &[f32], correct: &[bool]) {
        self.loss.extend_from_slice(loss);
        self.margin.extend_from_slice(margin);
        self.correct.extend_from_slice(correct);
        self.epochs += 1;
    }

    fn at(&self, epoch: usize, i: usize) -> usize {
        epoch * self.n + i
    }

    /// Area under the margin: the mean logit margin over all epochs.
    pub fn aum(&self, i: usize) -> f32 {
        (0..self.epochs).map(|e| self.margin[self.at(e, i)]).sum::<f32>() / self.epochs.max(1) as f32
    }

    /// Times the sample went from correct at one epoch to wrong at the next.
    pub fn forgetting_events(&self, i: usize) -> u32 {
        (1..self.epochs).filter(|&e| self.correct[self.at(e - 1, i)] && !self.correct[self.at(e, i)]).count() as u32
    }

    /// The first epoch (1-based) at which the sample was classified correctly.
    pub fn first_learned(&self, i: usize) -> Option<u32> {
        (0..self.epochs).find(|&e| self.correct[self.at(e, i)]).map(|e| e as u32 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aum_forgetting_and_first_learned_follow_their_definitions() {
        let mut d = Dynamics::new(2);
        d.push_epoch(&[1.0, 1.0], &[-1.0, 2.0], &[false, true]);
        d.push_epoch(&[0.5, 1.0], &[1.0, -1.0], &[true, false]);
        d.push_epoch(&[0.4, 1.0], &[3.0, 2.0], &[true, true]);
        d.push_epoch(&[0.4, 1.0], &[-3.0, -4.0], &[false, false]);
        assert_eq!(d.aum(0), 0.0);
        assert_eq!(d.aum(1), -0.25);
        assert_eq!(d.forgetting_events(0), 1);
        assert_eq!(d.forgetting_events(1), 2);
        assert_eq!(d.first_learned(0), Some(2));
        assert_eq!(d.first_learned(1), Some(1));
        assert_eq!(Dynamics::new(1).first_learned(0), None);
    }
}

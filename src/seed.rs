//! The seed streams: every random choice of a run draws from a ChaCha8
//! generator seeded by one of these functions of the run's `--seed`, so that
//! each choice has its own stream and adding a draw to one stage does not
//! shift another's. They are listed here, in one place, with the formula
//! each has used since its stage was written: changing a formula would
//! change every table a seed produces, so a new stream takes [`derive`] and
//! the older ones keep theirs.

/// A stream for a new purpose: `seed` mixed with the purpose's tag and
/// indices (FNV-style multiply and rotate per part). The attack batches'
/// seeds ([`attack_batch`]) are this scheme with the default tag.
pub fn derive(seed: u64, parts: &[u64]) -> u64 {
    let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
    for &v in parts {
        h = (h ^ v).wrapping_mul(0x1000_0000_01b3).rotate_left(29);
    }
    h
}

/// One attack on one batch of victims at one budget (`attack` = the attack's
/// index, or `usize::MAX - n` for the n-th radius bisection).
pub fn attack_batch(seed: u64, batch: usize, attack: usize, budget: usize) -> u64 {
    derive(seed, &[batch as u64, attack as u64, budget as u64])
}

/// The n-th bisection round of a robustness-radius search, from its batch's seed.
pub fn radius_round(batch_seed: u64, round: u64) -> u64 {
    batch_seed.wrapping_add(round)
}

/// Training job `job` (folds 0..K-1, the final model K, the AUM threshold
/// run K+1, the noise probe): its initial weights, shuffles and augmentation.
pub fn training_job(seed: u64, job: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(job as u64 + 1)
}

/// Which training rows `--inject-noise` flips, and to what.
pub fn noise_injection(seed: u64) -> u64 {
    seed ^ 0x6e6f_6973_65
}

/// One resampling test of the findings' correlations (bootstrap interval and
/// permutation p-value of `x` against `y` by `method`), from the run's seed:
/// the same run gives the same intervals, whichever other rows the table has.
pub fn correlation(seed: u64, x: &str, y: &str, method: &str) -> u64 {
    derive(seed, &[text(x), text(y), text(method)])
}

/// The bootstrap of confident learning's per-class noise rate.
pub fn noise_rate_bootstrap(seed: u64) -> u64 {
    derive(seed, &[text("noise_rate_bootstrap")])
}

/// The generator of resample `index` of a resampling test or interval whose
/// seed is `seed` (one of the streams above): the seed's ChaCha8 generator
/// on its own stream, so that each resample draws the same on any thread.
pub fn resample(seed: u64, index: u64) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1 + index);
    rng
}

/// FNV-1a of a text, to mix names into a seed.
fn text(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x1000_0000_01b3))
}

/// The seeded sample of attack victims.
pub fn attack_victims(seed: u64) -> u64 {
    seed ^ 0x6174_7461_636b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_from_each_other_and_from_the_seed() {
        let s = 7;
        let all = [
            s,
            derive(s, &[1]),
            attack_batch(s, 0, 0, 0),
            attack_batch(s, 0, 0, 1),
            training_job(s, 0),
            training_job(s, 1),
            noise_injection(s),
            attack_victims(s),
        ];
        for i in 0..all.len() {
            for j in 0..i {
                assert_ne!(all[i], all[j], "streams {i} and {j}");
            }
        }
    }
}

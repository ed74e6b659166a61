//! Repeat-copy (the DNC reference's `repeat_copy.py`): a random binary pattern, then a flag with the number
//! of repeats; target = the pattern repeated that many times, then an end marker.
//!
//! Per sequence: pattern length `L ~ U{min_length..=max_length}`, repeats `R' ~ U{min_repeats..=max_repeats}`,
//! fair-coin bits. Observation channels: `num_bits` pattern bits, then the start flag (channel `num_bits`),
//! then the repeat count `R' / norm_max` (channel `num_bits + 1`). Target channels: `num_bits` bits, then the
//! end marker (channel `num_bits`). A sequence lasts `L·(R' + 1) + 3` steps: start flag at `t = 0`, pattern at
//! `t = 1..=L`, repeat flag at `t = L + 1`; the target is zero for the first `L + 2` steps, then holds the
//! pattern `R'` times and the end marker. The mask is 1 on those last `L·R' + 1` steps. Every sample is a pure
//! function of `(seed, index)`.

use crate::error::{Result, config_err};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// Stream tag of repeat-copy samples ("COPY").
const STREAM: u64 = 0x434f_5059;

/// Settings of the task; the default is the reference training script's (`train.py`). As a
/// config table, every field but `norm_max` (default 10) is required.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RepeatCopyConfig {
    /// Bits per pattern vector.
    pub num_bits: usize,
    /// Shortest pattern.
    pub min_length: usize,
    /// Longest pattern.
    pub max_length: usize,
    /// Fewest repeats.
    pub min_repeats: usize,
    /// Most repeats.
    pub max_repeats: usize,
    /// The repeat count is presented as `R' / norm_max`.
    #[serde(default = "default_norm_max")]
    pub norm_max: f32,
}

fn default_norm_max() -> f32 {
    10.0
}

impl Default for RepeatCopyConfig {
    fn default() -> Self {
        Self {
            num_bits: 4,
            min_length: 1,
            max_length: 2,
            min_repeats: 1,
            max_repeats: 2,
            norm_max: 10.0,
        }
    }
}

/// One repeat-copy sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct RepeatCopySample {
    /// `length × num_bits` bits, row-major.
    pub pattern: Vec<f32>,
    /// Pattern length `L`.
    pub length: usize,
    /// Repeats `R'`.
    pub repeats: usize,
}

impl RepeatCopySample {
    /// Steps of the sequence before padding: `L·(R' + 1) + 3`.
    pub fn steps(&self) -> usize {
        self.length * (self.repeats + 1) + 3
    }
}

/// A batch, time-major and zero-padded to the longest sequence: value `(t, b, c)` sits at
/// `(t·batch_size + b)·width + c`.
#[derive(Clone, Debug, PartialEq)]
pub struct RepeatCopyBatch {
    /// Observations `[steps, batch_size, num_bits + 2]`.
    pub observations: Vec<f32>,
    /// Targets `[steps, batch_size, num_bits + 1]`.
    pub targets: Vec<f32>,
    /// Loss mask `[steps, batch_size]`: 1 where the target is scored.
    pub mask: Vec<f32>,
    /// Time steps (the longest sequence of the batch).
    pub steps: usize,
    /// Sequences.
    pub batch_size: usize,
}

impl RepeatCopyBatch {
    /// Sequences `rows` as a batch of their own, keeping this batch's time steps.
    ///
    /// # Panics
    /// If `rows` reaches past the batch.
    pub fn rows(&self, rows: std::ops::Range<usize>) -> Self {
        assert!(
            rows.end <= self.batch_size,
            "rows {rows:?} of {}",
            self.batch_size
        );
        let part = |v: &[f32]| -> Vec<f32> {
            let width = v.len() / (self.steps * self.batch_size).max(1);
            (0..self.steps)
                .flat_map(|t| {
                    &v[(t * self.batch_size + rows.start) * width..][..rows.len() * width]
                })
                .copied()
                .collect()
        };
        Self {
            observations: part(&self.observations),
            targets: part(&self.targets),
            mask: part(&self.mask),
            steps: self.steps,
            batch_size: rows.len(),
        }
    }
}

impl RepeatCopyConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.num_bits == 0 {
            return Err(config_err("repeat-copy", "num_bits 0; expected >= 1"));
        }
        if self.min_length == 0 || self.min_length > self.max_length {
            return Err(config_err(
                "repeat-copy",
                format!(
                    "min_length {} max_length {}; expected 1 <= min_length <= max_length",
                    self.min_length, self.max_length
                ),
            ));
        }
        if self.min_repeats == 0 || self.min_repeats > self.max_repeats {
            return Err(config_err(
                "repeat-copy",
                format!(
                    "min_repeats {} max_repeats {}; expected 1 <= min_repeats <= max_repeats",
                    self.min_repeats, self.max_repeats
                ),
            ));
        }
        if !(self.norm_max > 0.0 && self.norm_max.is_finite()) {
            return Err(config_err(
                "repeat-copy",
                format!("norm_max {}; expected a finite value > 0", self.norm_max),
            ));
        }
        Ok(())
    }

    /// Observation width `num_bits + 2`.
    pub fn observation_size(&self) -> usize {
        self.num_bits + 2
    }

    /// Target width `num_bits + 1`.
    pub fn target_size(&self) -> usize {
        self.num_bits + 1
    }

    /// Sample `index` of `seed`.
    pub fn sample(&self, seed: u64, index: u64) -> RepeatCopySample {
        let mut rng = Rng::keyed(&[seed, STREAM, index]);
        let length = rng.range_inclusive(self.min_length as i64, self.max_length as i64) as usize;
        let repeats =
            rng.range_inclusive(self.min_repeats as i64, self.max_repeats as i64) as usize;
        let pattern = (0..length * self.num_bits)
            .map(|_| if rng.coin() { 1.0 } else { 0.0 })
            .collect();
        RepeatCopySample {
            pattern,
            length,
            repeats,
        }
    }

    /// Batch `batch_index` of `seed`: samples `batch_index·batch_size + b`.
    pub fn batch(&self, seed: u64, batch_index: u64, batch_size: usize) -> RepeatCopyBatch {
        let samples: Vec<RepeatCopySample> = (0..batch_size as u64)
            .map(|b| self.sample(seed, batch_index * batch_size as u64 + b))
            .collect();
        self.collate(&samples)
    }

    /// Lays samples out time-major, padded to the longest.
    pub fn collate(&self, samples: &[RepeatCopySample]) -> RepeatCopyBatch {
        let batch_size = samples.len();
        let steps = samples.iter().map(|s| s.steps()).max().unwrap_or(0);
        let (bits, d_obs, d_target) = (self.num_bits, self.observation_size(), self.target_size());
        let mut observations = vec![0.0; steps * batch_size * d_obs];
        let mut targets = vec![0.0; steps * batch_size * d_target];
        let mut mask = vec![0.0; steps * batch_size];
        for (b, s) in samples.iter().enumerate() {
            let row = |t: usize| t * batch_size + b;
            let l = s.length;
            observations[row(0) * d_obs + bits] = 1.0;
            for i in 0..l {
                let vector = &s.pattern[i * bits..(i + 1) * bits];
                observations[row(1 + i) * d_obs..][..bits].copy_from_slice(vector);
                for r in 0..s.repeats {
                    let t = l + 2 + r * l + i;
                    targets[row(t) * d_target..][..bits].copy_from_slice(vector);
                }
            }
            observations[row(l + 1) * d_obs + bits + 1] = s.repeats as f32 / self.norm_max;
            targets[row(s.steps() - 1) * d_target + bits] = 1.0;
            for t in l + 2..s.steps() {
                mask[row(t)] = 1.0;
            }
        }
        RepeatCopyBatch {
            observations,
            targets,
            mask,
            steps,
            batch_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of a batch are the same sequences, step by step, padded to the whole batch.
    #[test]
    fn rows_of_a_batch_are_its_sequences() {
        let config = RepeatCopyConfig {
            max_length: 3,
            max_repeats: 3,
            ..RepeatCopyConfig::default()
        };
        let whole = config.batch(5, 0, 4);
        let part = whole.rows(1..3);
        assert_eq!((part.steps, part.batch_size), (whole.steps, 2));
        let (x, y) = (config.observation_size(), config.target_size());
        for t in 0..whole.steps {
            for r in 0..2 {
                let (a, b) = (t * 2 + r, t * 4 + 1 + r);
                assert_eq!(
                    part.observations[a * x..][..x],
                    whole.observations[b * x..][..x]
                );
                assert_eq!(part.targets[a * y..][..y], whole.targets[b * y..][..y]);
                assert_eq!(part.mask[a], whole.mask[b]);
            }
        }
    }

    /// The specification's example: L = 2, R' = 1 gives 7 steps, mask 0,0,0,0,1,1,1, the
    /// repeat flag 0.1 at t = 3 and the end marker at t = 6.
    #[test]
    fn single_repeat_of_a_two_step_pattern() {
        let cfg = RepeatCopyConfig {
            num_bits: 3,
            min_length: 2,
            max_length: 2,
            min_repeats: 1,
            max_repeats: 1,
            ..Default::default()
        };
        cfg.validate().unwrap();
        let sample = RepeatCopySample {
            pattern: vec![1.0, 0.0, 1.0, 0.0, 1.0, 1.0],
            length: 2,
            repeats: 1,
        };
        let batch = cfg.collate(std::slice::from_ref(&sample));
        assert_eq!(batch.steps, 7);
        assert_eq!(batch.mask, [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        let obs: Vec<&[f32]> = batch.observations.chunks(5).collect();
        assert_eq!(obs[0], [0.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(obs[1], [1.0, 0.0, 1.0, 0.0, 0.0]);
        assert_eq!(obs[2], [0.0, 1.0, 1.0, 0.0, 0.0]);
        assert_eq!(obs[3], [0.0, 0.0, 0.0, 0.0, 0.1]);
        assert!(obs[4..].iter().all(|o| *o == [0.0; 5]));
        let target: Vec<&[f32]> = batch.targets.chunks(4).collect();
        assert!(target[..4].iter().all(|o| *o == [0.0; 4]));
        assert_eq!(target[4], [1.0, 0.0, 1.0, 0.0]);
        assert_eq!(target[5], [0.0, 1.0, 1.0, 0.0]);
        assert_eq!(target[6], [0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn batches_are_padded_time_major_and_reproducible() {
        let cfg = RepeatCopyConfig::default();
        let batch = cfg.batch(7, 3, 16);
        assert_eq!(batch, cfg.batch(7, 3, 16));
        assert_ne!(batch, cfg.batch(8, 3, 16));
        let samples: Vec<_> = (0..16).map(|b| cfg.sample(7, 48 + b)).collect();
        assert_eq!(
            batch.steps,
            samples.iter().map(|s| s.steps()).max().unwrap()
        );
        assert_eq!(batch.observations.len(), batch.steps * 16 * 6);
        assert_eq!(batch.targets.len(), batch.steps * 16 * 5);
        for (b, s) in samples.iter().enumerate() {
            assert!((1..=2).contains(&s.length) && (1..=2).contains(&s.repeats));
            let mask: Vec<f32> = (0..batch.steps).map(|t| batch.mask[t * 16 + b]).collect();
            let on = s.length * s.repeats + 1;
            let off = s.length + 2;
            assert!(mask[..off].iter().all(|&m| m == 0.0));
            assert!(mask[off..off + on].iter().all(|&m| m == 1.0));
            assert!(mask[off + on..].iter().all(|&m| m == 0.0));
            // The last repeat's vectors equal the pattern.
            for i in 0..s.length {
                let t = s.steps() - 1 - s.length + i;
                let row = &batch.targets[(t * 16 + b) * 5..][..4];
                assert_eq!(row, &s.pattern[i * 4..(i + 1) * 4]);
            }
            let flag = batch.observations[((s.length + 1) * 16 + b) * 6 + 5];
            assert_eq!(flag, s.repeats as f32 / 10.0);
        }
        assert!(batch.observations.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn validation_names_the_setting() {
        let ok = RepeatCopyConfig::default();
        assert!(ok.validate().is_ok());
        for (bad, word) in [
            (RepeatCopyConfig { num_bits: 0, ..ok }, "num_bits"),
            (
                RepeatCopyConfig {
                    min_length: 0,
                    ..ok
                },
                "min_length",
            ),
            (
                RepeatCopyConfig {
                    min_length: 3,
                    ..ok
                },
                "max_length",
            ),
            (
                RepeatCopyConfig {
                    min_repeats: 3,
                    ..ok
                },
                "max_repeats",
            ),
            (
                RepeatCopyConfig {
                    norm_max: 0.0,
                    ..ok
                },
                "norm_max",
            ),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(word), "{err}");
        }
    }
}

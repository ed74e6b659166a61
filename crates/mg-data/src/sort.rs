//! Priority sort (paper 4.3): N random 9-dim binary vectors with priorities; target = the vectors in priority
//! order. MNIST variant: N images; target = their classes in increasing order.
//!
//! Vectors have independent fair-coin 0/1 elements; priorities are uniform in [−1, 1). The target lists the
//! vectors by **decreasing** priority (ties keep input order). Every sample is a pure function of
//! `(seed, index)`.

use crate::error::{Result, config_err};
use crate::mnist::MnistSplit;
use crate::rng::{Rng, stream};

/// Settings of the vector task: `len` 20 (or 50), `dim` 9.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortConfig {
    /// Sequence length N.
    pub len: usize,
    /// Vector size.
    pub dim: usize,
}

impl Default for SortConfig {
    fn default() -> Self {
        Self { len: 20, dim: 9 }
    }
}

/// One priority-sort sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct SortSample {
    /// `len × dim` values, row-major.
    pub vectors: Vec<f32>,
    /// One priority per vector.
    pub priorities: Vec<f32>,
    /// Input indices by decreasing priority.
    pub order: Vec<usize>,
}

impl SortConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.len == 0 || self.dim == 0 {
            return Err(config_err(
                "sort",
                format!("len {} dim {}; expected both >= 1", self.len, self.dim),
            ));
        }
        Ok(())
    }

    /// Sample `index` of `seed`.
    pub fn sample(&self, seed: u64, index: u64) -> SortSample {
        let mut rng = Rng::keyed(&[seed, stream::SORT, index]);
        let vectors = (0..self.len * self.dim)
            .map(|_| if rng.coin() { 1.0 } else { 0.0 })
            .collect();
        let priorities: Vec<f32> = (0..self.len).map(|_| rng.unit_f32() * 2.0 - 1.0).collect();
        let mut order: Vec<usize> = (0..self.len).collect();
        order.sort_by(|&a, &b| priorities[b].total_cmp(&priorities[a]));
        SortSample {
            vectors,
            priorities,
            order,
        }
    }
}

impl SortSample {
    /// Vector `i`.
    pub fn vector(&self, i: usize) -> &[f32] {
        let dim = self.vectors.len() / self.priorities.len();
        &self.vectors[i * dim..(i + 1) * dim]
    }

    /// Input step `t`: vector `t` followed by its priority (`dim + 1` values).
    pub fn input(&self, t: usize) -> Vec<f32> {
        let mut v = self.vector(t).to_vec();
        v.push(self.priorities[t]);
        v
    }

    /// The target: the vectors by decreasing priority, `len × dim` row-major.
    pub fn target(&self) -> Vec<f32> {
        self.order
            .iter()
            .flat_map(|&i| self.vector(i).iter().copied())
            .collect()
    }
}

/// One MNIST sort sequence: image indices into a split and the sorted classes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MnistSortSample {
    /// Image indices (uniform, with replacement).
    pub indices: Vec<usize>,
    /// Their labels.
    pub labels: Vec<u8>,
    /// The labels in increasing order.
    pub target: Vec<u8>,
}

/// MNIST sort sample `index` of `seed`: `len` (20) images of `split`.
pub fn mnist_sort_sample(split: &MnistSplit, len: usize, seed: u64, index: u64) -> MnistSortSample {
    assert!(!split.is_empty(), "mnist_sort_sample: empty split");
    let mut rng = Rng::keyed(&[seed, stream::SORT, 1, index]);
    let indices: Vec<usize> = (0..len).map(|_| rng.index(split.len())).collect();
    let labels: Vec<u8> = indices.iter().map(|&i| split.label(i)).collect();
    let mut target = labels.clone();
    target.sort_unstable();
    MnistSortSample {
        indices,
        labels,
        target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_sorted_by_priority() {
        let cfg = SortConfig::default();
        for i in 0..50 {
            let s = cfg.sample(1, i);
            assert_eq!(s.vectors.len(), 180);
            let t = s.target();
            for k in 0..20 {
                assert_eq!(&t[k * 9..(k + 1) * 9], s.vector(s.order[k]));
                if k > 0 {
                    assert!(s.priorities[s.order[k - 1]] >= s.priorities[s.order[k]]);
                }
            }
            let mut o = s.order.clone();
            o.sort_unstable();
            assert_eq!(o, (0..20).collect::<Vec<_>>());
            assert!(s.vectors.iter().all(|&v| v == 0.0 || v == 1.0));
            assert_eq!(s.input(3)[9], s.priorities[3]);
        }
        assert_eq!(SortConfig { len: 50, dim: 9 }.sample(0, 0).order.len(), 50);
        assert_eq!(cfg.sample(5, 5), cfg.sample(5, 5));
        assert_ne!(cfg.sample(5, 5), cfg.sample(6, 5));
        assert!(SortConfig { len: 0, dim: 9 }.validate().is_err());
    }

    #[test]
    fn mnist_sort_targets() {
        let labels: Vec<u8> = (0..100).map(|i| (i * 7 % 10) as u8).collect();
        let split = MnistSplit::from_parts(vec![0; 100 * 784], labels);
        let s = mnist_sort_sample(&split, 20, 3, 4);
        assert_eq!(s.indices.len(), 20);
        assert!(s.target.windows(2).all(|w| w[0] <= w[1]));
        let mut l = s.labels.clone();
        l.sort_unstable();
        assert_eq!(l, s.target);
        assert_eq!(s, mnist_sort_sample(&split, 20, 3, 4));
        assert_ne!(s, mnist_sort_sample(&split, 20, 4, 4));
    }
}

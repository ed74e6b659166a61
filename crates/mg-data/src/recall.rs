//! Associative recall (paper 4.3): N random 9-element binary vectors, then a query equal to one of the first
//! N−1; target = the item that followed it. MNIST variant (reference `mnist_recall`): 10 images, the query is
//! the very image at step q ∈ 0..=8, the target is the class of image q+1.
//!
//! Items are distinct (redrawn on collision) so the answer is unambiguous; MNIST image indices are distinct
//! too, drawn uniformly (the reference streams the file in order; here every sample is a pure function of
//! `(seed, index)`). The query index is per sample, or shared by a batch ([`QueryPer`]).

use crate::error::{Result, config_err};
use crate::mapping::QueryPer;
use crate::mnist::MnistSplit;
use crate::rng::{Rng, stream};

/// Settings of the vector task: `len` 10 (or 20), `dim` 9.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecallConfig {
    /// Number of items N.
    pub len: usize,
    /// Item size.
    pub dim: usize,
}

impl Default for RecallConfig {
    fn default() -> Self {
        Self { len: 10, dim: 9 }
    }
}

/// One recall sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct RecallSample {
    /// `len × dim` values, row-major.
    pub items: Vec<f32>,
    /// Item size.
    pub dim: usize,
    /// Query = item `query_index` (in `0..len−1`); target = item `query_index + 1`.
    pub query_index: usize,
}

impl RecallConfig {
    /// Checks the settings (`len >= 2`, and enough distinct binary vectors).
    pub fn validate(&self) -> Result<()> {
        if self.len < 2 || self.dim == 0 || (self.dim < 64 && (1u64 << self.dim) < self.len as u64)
        {
            return Err(config_err(
                "recall",
                format!(
                    "len {} dim {}; expected len >= 2 and 2^dim >= len",
                    self.len, self.dim
                ),
            ));
        }
        Ok(())
    }

    /// Sample `index` of `seed` with its own query index.
    pub fn sample(&self, seed: u64, index: u64) -> RecallSample {
        let mut rng = Rng::keyed(&[seed, stream::RECALL, index]);
        let mut items: Vec<f32> = Vec::with_capacity(self.len * self.dim);
        while items.len() < self.len * self.dim {
            let v: Vec<f32> = (0..self.dim)
                .map(|_| if rng.coin() { 1.0 } else { 0.0 })
                .collect();
            if !items.chunks(self.dim).any(|c| c == v.as_slice()) {
                items.extend(v);
            }
        }
        let query_index = rng.index(self.len - 1);
        RecallSample {
            items,
            dim: self.dim,
            query_index,
        }
    }

    /// Batch `batch_index` of `seed`: samples `batch_index·batch_size + b`, with query indices per sample or
    /// shared by the batch.
    pub fn batch(
        &self,
        seed: u64,
        batch_index: u64,
        batch_size: usize,
        per: QueryPer,
    ) -> Vec<RecallSample> {
        let shared = batch_query(seed, batch_index, self.len);
        (0..batch_size as u64)
            .map(|b| {
                let mut s = self.sample(seed, batch_index * batch_size as u64 + b);
                if per == QueryPer::Batch {
                    s.query_index = shared;
                }
                s
            })
            .collect()
    }
}

/// The query index shared by batch `batch_index`: uniform in `0..len−1`.
pub fn batch_query(seed: u64, batch_index: u64, len: usize) -> usize {
    Rng::keyed(&[seed, stream::BATCH_QUERY, stream::RECALL, batch_index]).index(len - 1)
}

impl RecallSample {
    /// Item `i`.
    pub fn item(&self, i: usize) -> &[f32] {
        &self.items[i * self.dim..(i + 1) * self.dim]
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len() / self.dim
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The query (a copy of item `query_index`).
    pub fn query(&self) -> &[f32] {
        self.item(self.query_index)
    }

    /// The target (item `query_index + 1`).
    pub fn target(&self) -> &[f32] {
        self.item(self.query_index + 1)
    }
}

/// One MNIST recall sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MnistRecallSample {
    /// Distinct image indices into the split.
    pub indices: Vec<usize>,
    /// Their labels.
    pub labels: Vec<u8>,
    /// The query is image `query_index` (0..=len−2).
    pub query_index: usize,
}

impl MnistRecallSample {
    /// The class of the image after the query.
    pub fn target(&self) -> u8 {
        self.labels[self.query_index + 1]
    }

    /// The split index of the query image.
    pub fn query_image(&self) -> usize {
        self.indices[self.query_index]
    }
}

/// MNIST recall sample `index` of `seed`: `len` (10) distinct images of `split`.
pub fn mnist_recall_sample(
    split: &MnistSplit,
    len: usize,
    seed: u64,
    index: u64,
) -> MnistRecallSample {
    assert!(
        len >= 2 && split.len() >= len,
        "mnist_recall_sample: len {len} with {} images",
        split.len()
    );
    let mut rng = Rng::keyed(&[seed, stream::RECALL, 1, index]);
    let mut indices: Vec<usize> = Vec::with_capacity(len);
    while indices.len() < len {
        let i = rng.index(split.len());
        if !indices.contains(&i) {
            indices.push(i);
        }
    }
    let labels = indices.iter().map(|&i| split.label(i)).collect();
    let query_index = rng.index(len - 1);
    MnistRecallSample {
        indices,
        labels,
        query_index,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_targets_follow_the_query() {
        let cfg = RecallConfig::default();
        for i in 0..100 {
            let s = cfg.sample(9, i);
            assert_eq!(s.items.len(), 90);
            assert!(s.query_index < 9);
            assert_eq!(
                s.query(),
                &s.items[s.query_index * 9..s.query_index * 9 + 9]
            );
            assert_eq!(
                s.target(),
                &s.items[(s.query_index + 1) * 9..(s.query_index + 2) * 9]
            );
            // The query matches exactly one item among the first N−1.
            assert_eq!((0..9).filter(|&k| s.item(k) == s.query()).count(), 1);
        }
        assert_eq!(
            RecallConfig { len: 20, dim: 9 }.sample(0, 0).items.len(),
            180
        );
        assert_eq!(cfg.sample(1, 2), cfg.sample(1, 2));
        assert_ne!(cfg.sample(1, 2), cfg.sample(2, 2));
        let b = cfg.batch(1, 0, 8, QueryPer::Batch);
        assert!(b.iter().all(|s| s.query_index == b[0].query_index));
        assert!(RecallConfig { len: 1, dim: 9 }.validate().is_err());
        assert!(RecallConfig { len: 10, dim: 3 }.validate().is_err());
    }

    #[test]
    fn mnist_recall_targets() {
        let labels: Vec<u8> = (0..50).map(|i| (i % 10) as u8).collect();
        let split = MnistSplit::from_parts(vec![0; 50 * 784], labels);
        for i in 0..50 {
            let s = mnist_recall_sample(&split, 10, 1, i);
            assert!(s.query_index <= 8);
            assert_eq!(s.target(), split.label(s.indices[s.query_index + 1]));
            let mut d = s.indices.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), 10);
        }
    }
}

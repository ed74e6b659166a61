//! Time-major rows (`t·batch + b`), as the tasks lay out their batches: the rows of a shard
//! of consecutive sequences, and a window's rows as a tensor.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use mg_layers::MgBackend;

/// Rows `start..start + count` of every one of `groups` consecutive groups of `batch` rows
/// (time- or answer-major data, `[groups·batch, …]`); the row width follows from the length.
pub fn rows_of<T: Clone>(
    v: &[T],
    groups: usize,
    batch: usize,
    start: usize,
    count: usize,
) -> Vec<T> {
    if v.is_empty() {
        return Vec::new();
    }
    let width = v.len() / (groups * batch);
    (0..groups)
        .flat_map(|g| &v[(g * batch + start) * width..(g * batch + start + count) * width])
        .cloned()
        .collect()
}

/// Rows `rows` of a `[_, width]` row-major matrix as a `[rows, width]` tensor.
pub fn matrix<B: MgBackend>(
    v: &[f32],
    rows: std::ops::Range<usize>,
    width: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    let data = v[rows.start * width..rows.end * width].to_vec();
    Tensor::from_data(TensorData::new(data, [rows.len(), width]), device)
}

/// A tensor's values brought to the host as `f32`, row-major.
pub trait Host {
    /// The values (empty if the backend cannot read them back).
    fn host(self) -> Vec<f32>;
}

impl<B: Backend, const D: usize> Host for Tensor<B, D> {
    fn host(self) -> Vec<f32> {
        self.into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_keeps_its_rows_of_every_group() {
        // Two time steps of three sequences, two values per row.
        let v: Vec<u32> = (0..12).collect();
        assert_eq!(rows_of(&v, 2, 3, 1, 2), [2, 3, 4, 5, 8, 9, 10, 11]);
        assert_eq!(rows_of(&v, 2, 3, 0, 1), [0, 1, 6, 7]);
        assert!(rows_of::<u32>(&[], 2, 3, 0, 1).is_empty());
        let m = matrix::<burn::backend::Flex>(
            &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            1..3,
            2,
            &Default::default(),
        );
        assert_eq!(m.dims(), [2, 2]);
        assert_eq!(m.into_data().to_vec::<f32>().unwrap(), [2.0, 3.0, 4.0, 5.0]);
    }
}

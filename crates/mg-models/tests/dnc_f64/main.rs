//! DNC tests in f64 on the Flex backend: golden values of the addressing equations and
//! finite-difference gradient checks. The default float type is set per process, so these
//! tests have their own binary.

mod golden;
mod gradcheck;

use burn::tensor::{DType, Device, Tensor, TensorData};

/// The backend of the value tests.
pub type TestBackend = burn::backend::Flex;
/// The backend of the gradient checks.
pub type TestAutodiffBackend = burn::backend::Autodiff<TestBackend>;

/// The default device, set to f64 (only the first call can set it; later calls find it
/// already set).
pub fn device() -> Device<TestBackend> {
    let device = Default::default();
    let _ = burn::tensor::set_default_dtypes::<TestBackend>(&device, DType::F64, DType::I32);
    device
}

/// A tensor of `values` with `shape` on the f64 device.
pub fn tensor<B: burn::tensor::backend::Backend<Device = Device<TestBackend>>, const D: usize>(
    values: Vec<f64>,
    shape: [usize; D],
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, shape), &device())
}

/// The values of a tensor as f64.
pub fn values<B: burn::tensor::backend::Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec().unwrap()
}

/// Uniform values in `[0, 1)` from a seeded xorshift generator, independent of the backend.
pub fn uniform(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect()
}

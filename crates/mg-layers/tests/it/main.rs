//! Integration tests of mg-layers, run in f64 on the Flex backend (or a GPU backend through
//! the `test-wgpu` / `test-cuda` features).

mod backend_ops;
mod extension;
mod gradcheck;
mod memory;
mod routing;

use burn::tensor::{DType, Device};

/// The backend every test runs on.
#[cfg(not(any(feature = "test-wgpu", feature = "test-cuda")))]
pub type TestBackend = burn::backend::Flex;
/// The backend every test runs on.
#[cfg(feature = "test-wgpu")]
pub type TestBackend = mg_layers::backend::PlainWgpu;
/// The backend every test runs on.
#[cfg(all(feature = "test-cuda", not(feature = "test-wgpu")))]
pub type TestBackend = burn::backend::Cuda;
/// The backend of the gradient checks.
pub type TestAutodiffBackend = burn::backend::Autodiff<TestBackend>;

/// The default device, set to f64 when the backend supports it (every test of this binary
/// goes through here, so the whole binary uses one float type).
pub fn device() -> Device<TestBackend> {
    let device = Default::default();
    if f64_supported() {
        // Only the first call can set it; later calls find it already set to f64.
        let _ = burn::tensor::set_default_dtypes::<TestBackend>(&device, DType::F64, DType::I32);
    }
    device
}

/// Whether tests run in f64 (and can use tight tolerances).
pub fn f64_supported() -> bool {
    cfg!(not(any(feature = "test-wgpu", feature = "test-cuda")))
}

/// `n` values in [−1, 1) from a small xorshift generator: test data independent of any
/// backend's random generator.
pub fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

//! Element-wise losses the tasks share.

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;
use mg_layers::MgBackend;

/// Sigmoid cross-entropy of logits against 0/1 targets, per element:
/// `max(x, 0) − x·y + ln(1 + e^(−|x|))` (stable for large `|x|`).
pub fn sigmoid_cross_entropy<B: MgBackend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 2>,
) -> Tensor<B, 2> {
    logits.clone().clamp_min(0.0) - logits.clone() * targets + logits.abs().neg().exp().log1p()
}

/// Softmax cross-entropy of `[rows, classes]` logits against one-hot targets, per row.
pub fn softmax_cross_entropy<B: MgBackend>(
    logits: Tensor<B, 2>,
    onehot: Tensor<B, 2>,
) -> Tensor<B, 2> {
    (log_softmax(logits, 1) * onehot).sum_dim(1).neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    fn t(v: Vec<f32>, shape: [usize; 2]) -> Tensor<Flex, 2> {
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }

    /// Against −y·ln σ(x) − (1 − y)·ln(1 − σ(x)) computed directly, and finite at |x| = 100.
    #[test]
    fn sigmoid_cross_entropy_matches_the_definition() {
        let x = [-3.0f32, -0.5, 0.0, 2.0, 100.0, -100.0];
        let y = [1.0f32, 0.0, 1.0, 1.0, 0.0, 0.0];
        let got: Vec<f32> = sigmoid_cross_entropy(t(x.to_vec(), [1, 6]), t(y.to_vec(), [1, 6]))
            .into_data()
            .to_vec()
            .unwrap();
        for i in 0..4 {
            let s = 1.0 / (1.0 + (-x[i] as f64).exp());
            let want = -(y[i] as f64) * s.ln() - (1.0 - y[i] as f64) * (1.0 - s).ln();
            assert!(
                (got[i] as f64 - want).abs() < 1e-6,
                "{i}: {} vs {want}",
                got[i]
            );
        }
        assert!(
            (got[4] - 100.0).abs() < 1e-4 && got[5].abs() < 1e-6,
            "{got:?}"
        );
    }

    /// ln(Σ e^x) − x_y for two rows.
    #[test]
    fn softmax_cross_entropy_matches_the_definition() {
        let x = t(vec![1.0, 2.0, 3.0, 0.0, 0.0, 0.0], [2, 3]);
        let y = t(vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0], [2, 3]);
        let got: Vec<f32> = softmax_cross_entropy(x, y).into_data().to_vec().unwrap();
        let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        assert!((got[0] as f64 - (lse - 3.0)).abs() < 1e-6);
        assert!((got[1] as f64 - 3f64.ln()).abs() < 1e-6);
    }
}

//! Batch normalisation with explicit statistics modes.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Tensor, backend::Backend};

/// Where a [`MgNorm`] takes its statistics from.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum NormMode {
    /// Batch statistics while training (autodiff backend), running statistics otherwise,
    /// which are updated with the momentum (burn's `BatchNorm`).
    Running,
    /// Always the current statistics, per time step: each step of a window is normalised
    /// over its own `B` rows, so the window and step paths agree.
    BatchPerStep,
    /// Always the current statistics, pooled over every row of the call: over `T·B` rows on
    /// the window path. This is the reference MNIST model (its writer's statistics are pooled
    /// over time and batch); step `t`'s output then depends on the other steps of the window.
    BatchPooled,
}

/// Configuration of a [`MgNorm`].
#[derive(Config, Debug)]
pub struct MgNormConfig {
    /// Channels to normalise.
    pub d_features: usize,
    /// Statistics mode.
    #[config(default = "NormMode::Running")]
    pub mode: NormMode,
    /// Added to the variance (the reference uses 1e-3).
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// Weight of the current batch in the running statistics (`Running` mode only).
    #[config(default = 0.1)]
    pub momentum: f64,
}

/// Per-channel batch normalisation `γ·(x − μ)/sqrt(σ² + ε) + β` over `(rows, H, W)`.
#[derive(Module, Debug)]
pub struct MgNorm<B: Backend> {
    /// Scale, shift and running statistics.
    pub inner: BatchNorm<B>,
    mode: NormMode,
}

impl MgNormConfig {
    /// Builds the normalisation, `γ = 1` and `β = 0`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> MgNorm<B> {
        let inner = BatchNormConfig::new(self.d_features)
            .with_epsilon(self.epsilon)
            .with_momentum(self.momentum)
            .init(device);
        MgNorm {
            inner,
            mode: self.mode,
        }
    }
}

impl<B: Backend> MgNorm<B> {
    /// Normalises `x`, whose rows are `steps` time steps of equal size, time-major.
    ///
    /// # Shapes
    /// - `x`: `[steps·batch, d_features, h, w]`
    /// - returns the same shape
    pub fn forward(&self, x: Tensor<B, 4>, steps: usize) -> Tensor<B, 4> {
        match self.mode {
            NormMode::Running => self.inner.forward(x),
            NormMode::BatchPooled => self.batch_stats(x, 1),
            NormMode::BatchPerStep => self.batch_stats(x, steps),
        }
    }

    fn batch_stats(&self, x: Tensor<B, 4>, steps: usize) -> Tensor<B, 4> {
        let [n, c, h, w] = x.dims();
        assert!(
            steps > 0 && n % steps == 0,
            "MgNorm: {n} rows do not split into {steps} time steps"
        );
        let x = x.reshape([steps, n / steps, c, h, w]);
        let mean = x.clone().mean_dims(&[1, 3, 4]);
        let centred = x - mean;
        let var = centred.clone().square().mean_dims(&[1, 3, 4]);
        let scale = self.inner.gamma.val().reshape([1, 1, c, 1, 1]);
        let shift = self.inner.beta.val().reshape([1, 1, c, 1, 1]);
        let y = centred / (var + self.inner.epsilon).sqrt() * scale + shift;
        y.reshape([n, c, h, w])
    }
}

/// One normalisation per level of `levels` (none without a mode).
pub(crate) fn level_norms<B: Backend>(
    mode: Option<NormMode>,
    d_features: usize,
    epsilon: f64,
    levels: crate::LevelSpan,
    device: &B::Device,
) -> Vec<MgNorm<B>> {
    let Some(mode) = mode else {
        return Vec::new();
    };
    levels
        .range()
        .map(|_| {
            MgNormConfig::new(d_features)
                .with_mode(mode)
                .with_epsilon(epsilon)
                .init(device)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use burn::tensor::TensorData;

    /// One channel, rows [0, 2] at step 0 and [4, 8] at step 1 (1×1 grids), ε = 0.
    /// Per step: means 1 and 6, variances 1 and 4, so all outputs are ±1.
    /// Pooled: mean 3.5, variance (12.25 + 2.25 + 0.25 + 20.25)/4 = 8.75.
    #[test]
    fn per_step_and_pooled_statistics() {
        let device = Default::default();
        let x = Tensor::<TestBackend, 4>::from_data(
            TensorData::new(vec![0.0f32, 2., 4., 8.], [4, 1, 1, 1]),
            &device,
        );
        let norm = |mode| {
            MgNormConfig::new(1)
                .with_mode(mode)
                .with_epsilon(0.0)
                .init(&device)
        };
        let per_step = norm(NormMode::BatchPerStep).forward(x.clone(), 2);
        let v: Vec<f32> = per_step.into_data().to_vec().unwrap();
        assert_eq!(v, [-1., 1., -1., 1.]);
        let pooled = norm(NormMode::BatchPooled).forward(x, 2);
        let v: Vec<f32> = pooled.into_data().to_vec().unwrap();
        let sd = 8.75f32.sqrt();
        for (got, want) in v.iter().zip([-3.5 / sd, -1.5 / sd, 0.5 / sd, 4.5 / sd]) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
    }
}

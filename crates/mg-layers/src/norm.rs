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

    /// Statistics over the rows and pixels of each step, in shapes that Flex broadcasts with
    /// its SIMD paths: every per-channel factor is repeated to one value per row of
    /// `[steps·rows·c, pixels]` (a `[1, 1, c, 1, 1]` broadcast walks element by element).
    fn batch_stats(&self, x: Tensor<B, 4>, steps: usize) -> Tensor<B, 4> {
        let [n, c, h, w] = x.dims();
        assert!(
            steps > 0 && n % steps == 0,
            "MgNorm: {n} rows do not split into {steps} time steps"
        );
        let (rows, count) = (n / steps, (n / steps * h * w) as f64);
        let x = x.reshape([steps, rows, c, h * w]);
        // `[steps, rows, c, pixels]` to the mean over rows and pixels, `[steps, 1, c, 1]`.
        let mean_of = |t: Tensor<B, 4>| t.sum_dim(3).sum_dim(1).div_scalar(count);
        let centred = x.clone() - mean_of(x).repeat_dim(1, rows);
        let var = mean_of(centred.clone().square());
        let gamma = self.inner.gamma.val().reshape([1, 1, c, 1]);
        let beta = self.inner.beta.val().reshape([1, 1, c, 1]);
        let factor = gamma / (var + self.inner.epsilon).sqrt();
        let shift = beta.repeat_dim(0, steps).repeat_dim(1, rows);
        let y = centred * factor.repeat_dim(1, rows) + shift;
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

    /// The statistics in their repeated shapes equal the textbook broadcast formula, outputs
    /// and the gradients of a weighted sum with respect to the input, γ and β, for both modes.
    #[test]
    fn statistics_equal_the_broadcast_formula() {
        type AB = burn::backend::Autodiff<TestBackend>;
        let device = Default::default();
        let values = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 250.0 - 2.0)
                .collect()
        };
        let (steps, rows, c, h, w) = (2, 3, 4, 2, 3);
        let n = steps * rows;
        let x = Tensor::<AB, 4>::from_data(
            TensorData::new(values(n * c * h * w, 1), [n, c, h, w]),
            &device,
        );
        let weights = Tensor::<AB, 4>::from_data(
            TensorData::new(values(n * c * h * w, 2), [n, c, h, w]),
            &device,
        );
        let mut norm = MgNormConfig::new(c).with_epsilon(1e-3).init::<AB>(&device);
        norm.inner.gamma =
            burn::module::Param::from_data(TensorData::new(values(c, 3), [c]), &device);
        norm.inner.beta =
            burn::module::Param::from_data(TensorData::new(values(c, 4), [c]), &device);
        for (mode, groups) in [(NormMode::BatchPerStep, steps), (NormMode::BatchPooled, 1)] {
            norm.mode = mode;
            let grads_of = |y: Tensor<AB, 4>, x: &Tensor<AB, 4>| {
                let grads = (y.clone() * weights.clone()).sum().backward();
                let of = |t: Tensor<
                    <AB as burn::tensor::backend::AutodiffBackend>::InnerBackend,
                    1,
                >|
                 -> Vec<f32> { t.into_data().to_vec().unwrap() };
                let dx: Vec<f32> = x.grad(&grads).unwrap().into_data().to_vec().unwrap();
                let dgamma = of(norm.inner.gamma.val().grad(&grads).unwrap());
                let dbeta = of(norm.inner.beta.val().grad(&grads).unwrap());
                let y: Vec<f32> = y.into_data().to_vec().unwrap();
                [y, dx, dgamma, dbeta]
            };
            let x1 = x.clone().require_grad();
            let got = grads_of(norm.forward(x1.clone(), steps), &x1);
            let x2 = x.clone().require_grad();
            let x5 = x2.clone().reshape([groups, n / groups, c, h, w]);
            let mean = x5.clone().mean_dims(&[1, 3, 4]);
            let centred = x5 - mean;
            let var = centred.clone().square().mean_dims(&[1, 3, 4]);
            let gamma = norm.inner.gamma.val().reshape([1, 1, c, 1, 1]);
            let beta = norm.inner.beta.val().reshape([1, 1, c, 1, 1]);
            let y = centred / (var + 1e-3).sqrt() * gamma + beta;
            let want = grads_of(y.reshape([n, c, h, w]), &x2);
            for (part, (got, want)) in ["y", "dx", "dgamma", "dbeta"]
                .iter()
                .zip(got.iter().zip(&want))
            {
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(want) {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{mode:?} {part}: {g} vs {w}"
                    );
                }
            }
        }
    }

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

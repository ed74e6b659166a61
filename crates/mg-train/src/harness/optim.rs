//! The optimizers (TensorFlow's `ApplyRMSProp` as both references use it, Adam), global-norm
//! clipping and the linear learning-rate schedule.

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use std::path::PathBuf;

use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{Adam, AdamConfig, GradientsParams, Optimizer, SimpleOptimizer};
use burn::record::{FileRecorder, Record, RecorderError};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};

/// TensorFlow's RMSProp: `ms ← ρ·ms + (1−ρ)·g²`, `mom ← μ·mom + lr·g/sqrt(ms + ε)`,
/// `θ ← θ − mom`, with the mean square initialised to `initial_mean_square` (1 in TensorFlow).
///
/// burn's own `RmsProp` differs: ε outside the square root, mean square starting at 0.
#[derive(Clone, Debug)]
pub struct TfRmsProp {
    /// Decay ρ of the mean square.
    pub decay: f32,
    /// ε, added inside the square root.
    pub epsilon: f32,
    /// Momentum μ.
    pub momentum: f32,
    /// Initial mean square.
    pub initial_mean_square: f32,
}

/// Per-parameter state of [`TfRmsProp`].
#[derive(Record, Clone, Debug)]
pub struct TfRmsPropState<B: Backend, const D: usize> {
    /// Mean square of the gradient.
    pub mean_square: Tensor<B, D>,
    /// Momentum buffer (absent without momentum).
    pub momentum: Option<Tensor<B, D>>,
}

impl<B: Backend> SimpleOptimizer<B> for TfRmsProp {
    type State<const D: usize> = TfRmsPropState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let (ms, mom) = match state {
            Some(s) => (s.mean_square, s.momentum),
            None => (grad.ones_like() * self.initial_mean_square, None),
        };
        let ms = ms.clone() + (grad.clone().square() - ms) * (1.0 - self.decay);
        let update = grad * lr / (ms.clone() + self.epsilon).sqrt();
        let (update, mom) = match (self.momentum, mom) {
            (0.0, _) => (update, None),
            (m, Some(prev)) => {
                let next = prev * m + update;
                (next.clone(), Some(next))
            }
            (_, None) => (update.clone(), Some(update)),
        };
        (
            tensor - update,
            Some(TfRmsPropState {
                mean_square: ms,
                momentum: mom,
            }),
        )
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        TfRmsPropState {
            mean_square: state.mean_square.to_device(device),
            momentum: state.momentum.map(|m| m.to_device(device)),
        }
    }
}

impl TfRmsProp {
    /// Without momentum, the mean square starting at 1, as TensorFlow 1 has it.
    pub fn new(decay: f64, epsilon: f64) -> Self {
        Self {
            decay: decay as f32,
            epsilon: epsilon as f32,
            momentum: 0.0,
            initial_mean_square: 1.0,
        }
    }
}

/// The optimizer a config names, chosen at run time, so that one training loop serves every
/// optimizer.
#[derive(Clone)]
pub enum Optim<M: AutodiffModule<B>, B: AutodiffBackend> {
    /// TensorFlow's RMSProp ([`TfRmsProp`]; also the DeepMind variant's settings).
    TfRmsProp(OptimizerAdaptor<TfRmsProp, M, B>),
    /// Adam.
    Adam(OptimizerAdaptor<Adam, M, B>),
}

/// The state of an [`Optim`]: the chosen optimizer's own record. A checkpoint's `optim.bin`
/// holds that record alone, without a tag: the run's config says which optimizer reads it.
pub enum OptimRecord<M: AutodiffModule<B>, B: AutodiffBackend> {
    /// TensorFlow's RMSProp state.
    TfRmsProp(<OptimizerAdaptor<TfRmsProp, M, B> as Optimizer<M, B>>::Record),
    /// Adam's state.
    Adam(<OptimizerAdaptor<Adam, M, B> as Optimizer<M, B>>::Record),
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> Optim<M, B> {
    /// The optimizer of `train`, in its initial state.
    pub fn new(train: &super::TrainConfig) -> Self {
        use super::OptimizerKind;
        match train.optimizer {
            OptimizerKind::TfRmsprop | OptimizerKind::DeepmindRmsprop => {
                let (decay, epsilon) = train.rmsprop();
                Self::TfRmsProp(OptimizerAdaptor::from(TfRmsProp::new(decay, epsilon)))
            }
            OptimizerKind::Adam => Self::Adam(AdamConfig::new().init::<B, M>()),
        }
    }

    /// One update of `module` with learning rate `lr`.
    pub fn step(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        match self {
            Self::TfRmsProp(o) => o.step(lr, module, grads),
            Self::Adam(o) => o.step(lr, module, grads),
        }
    }

    /// The optimizer's state.
    pub fn to_record(&self) -> OptimRecord<M, B> {
        match self {
            Self::TfRmsProp(o) => OptimRecord::TfRmsProp(o.to_record()),
            Self::Adam(o) => OptimRecord::Adam(o.to_record()),
        }
    }

    /// The optimizer with the state [`OptimRecord::save`] wrote at `path`.
    pub fn load<R: FileRecorder<B>>(
        self,
        recorder: &R,
        path: PathBuf,
        device: &B::Device,
    ) -> Result<Self, RecorderError> {
        Ok(match self {
            Self::TfRmsProp(o) => Self::TfRmsProp(o.load_record(recorder.load(path, device)?)),
            Self::Adam(o) => Self::Adam(o.load_record(recorder.load(path, device)?)),
        })
    }
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> OptimRecord<M, B> {
    /// Writes the state to `path` (the recorder adds the extension).
    pub fn save<R: FileRecorder<B>>(
        self,
        recorder: &R,
        path: PathBuf,
    ) -> Result<(), RecorderError> {
        match self {
            Self::TfRmsProp(r) => recorder.record(r, path),
            Self::Adam(r) => recorder.record(r, path),
        }
    }
}

/// `lr(t) = start + (end − start)·t/decay_steps` for `t < decay_steps`, then `end`.
pub fn linear_lr(start: f64, end: f64, decay_steps: u64, t: u64) -> f64 {
    if decay_steps == 0 || t >= decay_steps {
        end
    } else {
        start + (end - start) * t as f64 / decay_steps as f64
    }
}

struct ParamIds(Vec<(ParamId, usize)>);

impl<B: Backend> ModuleVisitor<B> for ParamIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push((param.id, D));
    }
}

fn scale_grad<B: Backend, const D: usize>(
    grads: &mut GradientsParams,
    id: ParamId,
    scale: &Tensor<B, 1>,
) {
    if let Some(g) = grads.remove::<B, D>(id) {
        grads.register(id, g * scale.clone().unsqueeze());
    }
}

/// Multiplies every gradient of `module`'s parameters in `grads` by `factor`.
pub fn scale_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    factor: f64,
) {
    let mut ids = ParamIds(Vec::new());
    module.visit(&mut ids);
    for &(id, rank) in &ids.0 {
        match rank {
            1 => scale_grad_by::<B::InnerBackend, 1>(grads, id, factor),
            2 => scale_grad_by::<B::InnerBackend, 2>(grads, id, factor),
            3 => scale_grad_by::<B::InnerBackend, 3>(grads, id, factor),
            4 => scale_grad_by::<B::InnerBackend, 4>(grads, id, factor),
            other => panic!("scale_grads: parameters of rank {other} are not supported"),
        }
    }
}

fn scale_grad_by<B: Backend, const D: usize>(
    grads: &mut GradientsParams,
    id: ParamId,
    factor: f64,
) {
    if let Some(g) = grads.remove::<B, D>(id) {
        grads.register(id, g.mul_scalar(factor));
    }
}

fn sq_norm<B: Backend, const D: usize>(
    grads: &GradientsParams,
    id: ParamId,
) -> Option<Tensor<B, 1>> {
    grads.get::<B, D>(id).map(|g| g.square().sum())
}

/// Scales every gradient by `clip / max(‖g‖, clip)` (TensorFlow's `clip_by_global_norm`) and
/// returns the global norm `‖g‖` before clipping, read back to the host.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    clip: f64,
) -> f64 {
    let mut ids = ParamIds(Vec::new());
    module.visit(&mut ids);
    let squares: Vec<Tensor<B::InnerBackend, 1>> = ids
        .0
        .iter()
        .filter_map(|&(id, rank)| match rank {
            1 => sq_norm::<B::InnerBackend, 1>(grads, id),
            2 => sq_norm::<B::InnerBackend, 2>(grads, id),
            3 => sq_norm::<B::InnerBackend, 3>(grads, id),
            4 => sq_norm::<B::InnerBackend, 4>(grads, id),
            other => panic!("clip_global_norm: parameters of rank {other} are not supported"),
        })
        .collect();
    let Some(total) = squares.into_iter().reduce(|a, b| a + b) else {
        return 0.0;
    };
    let norm = total.sqrt();
    let value: f64 = norm.clone().into_scalar().elem();
    if value > clip && value.is_finite() {
        let scale = norm.ones_like() * (clip / value);
        for &(id, rank) in &ids.0 {
            match rank {
                1 => scale_grad::<B::InnerBackend, 1>(grads, id, &scale),
                2 => scale_grad::<B::InnerBackend, 2>(grads, id, &scale),
                3 => scale_grad::<B::InnerBackend, 3>(grads, id, &scale),
                _ => scale_grad::<B::InnerBackend, 4>(grads, id, &scale),
            }
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// One step from the initial state with g = 2, lr = 0.1, ρ = 0.99, ε = 0.1:
    /// ms = 1 + (4 − 1)·0.01 = 1.03, update = 0.1·2/sqrt(1.13) = 0.188144, θ = 1 − 0.188144.
    #[test]
    fn tf_rmsprop_matches_the_reference_update() {
        let device = Default::default();
        let optim = TfRmsProp::new(0.99, 0.1);
        let theta = Tensor::<Flex, 1>::from_data([1.0f32], &device);
        let grad = Tensor::<Flex, 1>::from_data([2.0f32], &device);
        let (theta, state) = optim.step(0.1, theta, grad.clone(), None);
        let got: f32 = theta.clone().into_scalar();
        assert!((got - (1.0 - 0.2 / 1.13f32.sqrt())).abs() < 1e-6, "{got}");
        // Second step: ms = 1.03 + (4 − 1.03)·0.01 = 1.0597.
        let (theta, _) = optim.step(0.1, theta, grad, state);
        let want = got - 0.2 / (1.0597f32 + 0.1).sqrt();
        assert!((theta.into_scalar() - want).abs() < 1e-6);
    }

    /// Each optimizer saved after one update and loaded into a fresh one makes the same second
    /// update as the one that never stopped (Adam's and RMSProp's state both matter there).
    #[test]
    fn a_saved_optimizer_continues_exactly() {
        use super::super::{OptimizerKind, TrainConfig};
        use burn::backend::Autodiff;
        use burn::nn::{Linear, LinearConfig};
        use burn::record::{BinFileRecorder, FullPrecisionSettings};
        type B = Autodiff<Flex>;
        let device = Default::default();
        let dir = std::env::temp_dir().join(format!("mg-optim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
        let grads = |model: &Linear<B>| {
            let x = Tensor::<B, 2>::from_data([[1.0f32, -2.0], [0.5, 3.0]], &device);
            GradientsParams::from_grads(model.forward(x).square().sum().backward(), model)
        };
        let weights =
            |model: Linear<B>| -> Vec<f32> { model.weight.val().into_data().to_vec().unwrap() };
        for kind in [OptimizerKind::TfRmsprop, OptimizerKind::Adam] {
            let config = TrainConfig {
                optimizer: kind,
                ..TrainConfig::default()
            };
            let model = LinearConfig::new(2, 3).init::<B>(&device);
            let mut optim = Optim::<Linear<B>, B>::new(&config);
            let g = grads(&model);
            let model = optim.step(1e-2, model, g);
            let path = dir.join(format!("{kind:?}"));
            optim.to_record().save(&recorder, path.clone()).unwrap();
            let mut loaded = Optim::<Linear<B>, B>::new(&config)
                .load(&recorder, path, &device)
                .unwrap();
            let g = grads(&model);
            let straight = optim.step(1e-2, model.clone(), g);
            let g = grads(&model);
            let resumed = loaded.step(1e-2, model.clone(), g);
            let mut fresh = Optim::<Linear<B>, B>::new(&config);
            let g = grads(&model);
            let restarted = fresh.step(1e-2, model, g);
            let (straight, resumed) = (weights(straight), weights(resumed));
            assert_eq!(straight, resumed, "{kind:?}");
            assert_ne!(
                straight,
                weights(restarted),
                "{kind:?}: the state changed nothing"
            );
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn lr_decays_linearly_then_stays() {
        assert_eq!(linear_lr(1e-3, 1e-4, 1_000_000, 0), 1e-3);
        assert!((linear_lr(1e-3, 1e-4, 1_000_000, 500_000) - 5.5e-4).abs() < 1e-12);
        assert_eq!(linear_lr(1e-3, 1e-4, 1_000_000, 2_000_000), 1e-4);
    }
}

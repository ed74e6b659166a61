//! The cross-check case shared by the `torch_golden` test and the `torch_crosscheck` example:
//! the reference mapping model with weights and inputs drawn from a counter-based hash (no
//! RNG, so any language can be fed the same numbers through the file the example writes),
//! one training window's logits, summed sigmoid cross-entropy and gradients.

#![allow(dead_code)]

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData, activation::relu, backend::AutodiffBackend};
use mg_models::{MappingModel, MappingModelConfig, interop::TorchLayout};

pub type B = Autodiff<Flex>;

/// Time steps and batch rows of the window.
pub const STEPS: usize = 3;
pub const BATCH: usize = 2;

/// splitmix64 of `(stream, index)`, as a float in `[-1, 1)`.
pub fn hash_unit(stream: u64, index: u64) -> f64 {
    let mut z = stream
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// FNV-1a of a name: the hash stream of one tensor.
pub fn stream_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// A tensor of hashed values: `scale·u` with `u` uniform in `[-1, 1)`.
fn hashed<const D: usize>(name: &str, shape: [usize; D], scale: f64) -> TensorData {
    let n: usize = shape.iter().product();
    let stream = stream_of(name);
    let values: Vec<f32> = (0..n as u64)
        .map(|i| (scale * hash_unit(stream, i)) as f32)
        .collect();
    TensorData::new(values, shape)
}

/// A 0/1 tensor: 1 where the hashed value is above `1 − 2p` (probability `p`).
fn bits<const D: usize>(name: &str, shape: [usize; D], p: f64) -> TensorData {
    let n: usize = shape.iter().product();
    let stream = stream_of(name);
    let values: Vec<f32> = (0..n as u64)
        .map(|i| f32::from(hash_unit(stream, i) > 1.0 - 2.0 * p))
        .collect();
    TensorData::new(values, shape)
}

/// Sets every parameter from its PyTorch name: kernels `[o, i, k, k]` uniform in
/// `±√(3 / (i·k²))` (unit-variance pre-activations), biases in `±0.1`.
struct Fill<'a> {
    layout: &'a TorchLayout,
    path: Vec<String>,
}

impl ModuleMapper<B> for Fill<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let path = self.path.join(".");
        let name = self
            .layout
            .torch_name(&path)
            .unwrap_or_else(|| panic!("no PyTorch name for {path}"));
        let shape = param.val().dims();
        let scale = if D == 4 {
            (3.0 / (shape[1] * shape[2] * shape[3]) as f64).sqrt()
        } else {
            0.1
        };
        let device = param.val().device();
        let id = param.id;
        Param::initialized(
            id,
            Tensor::from_data(hashed(&name, shape, scale), &device).require_grad(),
        )
    }
}

/// The reference model with hashed weights.
pub fn model() -> (MappingModel<B>, TorchLayout) {
    let config = MappingModelConfig::reference();
    let layout = TorchLayout::of(&config).expect("the reference has the PyTorch layout");
    let model = config.init::<B>(&Default::default());
    let model = model.map(&mut Fill {
        layout: &layout,
        path: Vec::new(),
    });
    (model, layout)
}

/// The window's inputs: observations and queries `[T·B, 4, 3, 3]` (time-major rows) and
/// targets `[T·B, 48·48]`, all 0/1.
pub fn inputs() -> [TensorData; 3] {
    let rows = STEPS * BATCH;
    [
        bits("input.observation", [rows, 4, 3, 3], 0.4),
        bits("input.query", [rows, 4, 3, 3], 0.4),
        bits("input.target", [rows, 48 * 48], 0.1),
    ]
}

/// What one window gives: logits `[T·B, 2304]`, the summed loss, and every gradient by
/// PyTorch name (with its shape), in the model's parameter order.
pub struct Outcome {
    pub logits: TensorData,
    pub loss: f64,
    pub grads: Vec<(String, Vec<usize>, Vec<f32>)>,
}

struct Grads<'a> {
    layout: &'a TorchLayout,
    grads: &'a <B as AutodiffBackend>::Gradients,
    path: Vec<String>,
    out: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl ModuleVisitor<B> for Grads<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let name = self.layout.torch_name(&self.path.join(".")).expect("named");
        let tensor = param.val();
        let grad = tensor
            .grad(self.grads)
            .expect("every parameter has a gradient");
        let data = grad.into_data();
        let shape = data.shape.to_vec();
        self.out
            .push((name, shape, data.to_vec::<f32>().expect("f32")));
    }
}

/// Runs the window: the writer over `STEPS` steps from the zero state, the reader over all
/// rows, `Σ max(x, 0) − x·y + log(1 + e^{−|x|})`, backward.
pub fn run(model: &MappingModel<B>, layout: &TorchLayout) -> Outcome {
    let device = Default::default();
    let [obs, query, target] = inputs();
    let obs = Tensor::<B, 4>::from_data(obs, &device);
    let query = Tensor::<B, 4>::from_data(query, &device);
    let target = Tensor::<B, 2>::from_data(target, &device);
    let (logits, _) = model.forward_window(obs, &[query], STEPS, None);
    let x = logits.into_iter().next().expect("one reader");
    let loss = (relu(x.clone()) - x.clone() * target + x.clone().abs().neg().exp().log1p()).sum();
    let loss_value = f64::from(loss.clone().into_scalar());
    let grads = loss.backward();
    let mut visitor = Grads {
        layout,
        grads: &grads,
        path: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut visitor);
    Outcome {
        logits: x.inner().into_data(),
        loss: loss_value,
        grads: visitor.out,
    }
}

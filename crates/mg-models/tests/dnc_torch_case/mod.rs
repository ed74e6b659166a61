//! The DNC cross-check case shared by the `dnc_torch_golden` test and the `dnc_crosscheck`
//! example: a small DNC with two write heads, weights, inputs and a valid initial state drawn
//! from the counter-based hash of `torch_case` (no RNG, so any language can be fed the same
//! numbers through the file the example writes), one training window's logits, summed sigmoid
//! cross-entropy, parameter gradients, gradients of the initial state and the final state.
//!
//! Tensors are named by our module paths (`controller.weight`, `interface.read_keys.bias`, …)
//! and have our layouts: a `Linear` weight is `[d_in, d_out]`, the controller weight
//! `[X + R·W + C, 4C]` with rows `[x; r_{t−1}; h_{t−1}]` and columns `(i, j, f, o)`.

#![allow(dead_code)]

#[path = "../torch_case/mod.rs"]
mod torch_case;

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData, activation::relu, backend::AutodiffBackend};
use mg_models::{Dnc, DncConfig, DncState};

pub use torch_case::{hash_unit, stream_of};

pub type B = Autodiff<Flex>;

/// Time steps and batch rows of the window.
pub const STEPS: usize = 5;
pub const BATCH: usize = 2;
/// Input `X`, output `Y`, controller `C`, slots `N`, word `W`, read heads `R`, write heads `K`.
pub const SIZES: [usize; 7] = [6, 5, 16, 12, 5, 3, 2];
/// Forward clamp of `h`, `c` and `y`: low enough that some of each are clamped.
pub const CLIP: f64 = 0.3;
/// Scale of the hashed biases (weights: `±√(3 / d_in)`).
const BIAS_SCALE: f64 = 0.5;

/// The case's configuration (softplus strengths, the reference's read-mode order).
pub fn config() -> DncConfig {
    let [x, y, c, n, w, r, k] = SIZES;
    DncConfig::new(x, y, c, n, w)
        .with_read_heads(r)
        .with_write_heads(k)
        .with_clip_value(CLIP)
}

/// `scale·u` with `u` uniform in `[-1, 1)`, hashed from the stream of `name`.
fn hashed(name: &str, n: usize, scale: f64) -> Vec<f64> {
    let stream = stream_of(name);
    (0..n as u64)
        .map(|i| scale * hash_unit(stream, i))
        .collect()
}

fn data(values: Vec<f64>, shape: Vec<usize>) -> TensorData {
    let values: Vec<f32> = values.into_iter().map(|v| v as f32).collect();
    TensorData::new(values, shape)
}

/// Sets every parameter from the hash of its module path: weights uniform in
/// `±√(3 / d_in)`, biases in `±BIAS_SCALE`.
struct Fill(Vec<String>);

impl ModuleMapper<B> for Fill {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.0.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.0.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let name = self.0.join(".");
        let shape = param.val().dims();
        let scale = match D {
            1 => BIAS_SCALE,
            _ => (3.0 / shape[0] as f64).sqrt(),
        };
        let n = shape.iter().product();
        let device = param.val().device();
        let values = data(hashed(&name, n, scale), shape.to_vec());
        Param::initialized(param.id, Tensor::from_data(values, &device).require_grad())
    }
}

/// The case's DNC with hashed weights.
pub fn model() -> Dnc<B> {
    config()
        .init::<B>(&Default::default())
        .map(&mut Fill(Vec::new()))
}

/// Every parameter by module path, with its shape and values, in the model's order.
pub fn parameters(model: &Dnc<B>) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    struct Collect(Vec<String>, Vec<(String, Vec<usize>, Vec<f32>)>);
    impl ModuleVisitor<B> for Collect {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let data = param.val().into_data();
            let shape = data.shape.to_vec();
            self.1
                .push((self.0.join("."), shape, data.to_vec().expect("f32")));
        }
    }
    let mut visitor = Collect(Vec::new(), Vec::new());
    model.visit(&mut visitor);
    visitor.1
}

/// The window's inputs: `x` `[T·B, X]` uniform in `±1` and 0/1 targets `[T·B, Y]`, rows
/// time-major (`row = t·B + b`).
pub fn inputs() -> [TensorData; 2] {
    let [x, y, ..] = SIZES;
    let rows = STEPS * BATCH;
    let target = hashed("input.target", rows * y, 1.0)
        .into_iter()
        .map(|u| f64::from(u8::from(u > 0.0)))
        .collect();
    [
        data(hashed("input.x", rows * x, 1.0), vec![rows, x]),
        data(target, vec![rows, y]),
    ]
}

/// Names of the state tensors, in [`DncState::into_tensors`]'s order.
pub const STATE_NAMES: [&str; 9] = [
    "read_words",
    "memory",
    "read_weights",
    "write_weights",
    "link",
    "precedence",
    "usage",
    "hidden",
    "cell",
];

/// Positive hashed values in `[0.05, 1.05)`, each run of `n` scaled to sum to `total`.
fn weighting(name: &str, rows: usize, n: usize, total: f64) -> Vec<f64> {
    let raw: Vec<f64> = hashed(name, rows * n, 0.5)
        .into_iter()
        .map(|u| u + 0.55)
        .collect();
    raw.chunks(n)
        .flat_map(|row| {
            let sum: f64 = row.iter().sum();
            row.iter().map(move |v| v * total / sum)
        })
        .collect()
}

/// The initial state, a valid non-trivial one (every slot distinct, so that the allocation's
/// sort order is far from ties at every step): memory in `±1`, usage in `[0, 1)`, read
/// weights summing to 0.9, write weights to 0.8, precedence to 0.7, link entries in
/// `[0, 0.9/(N−1))` with a zero diagonal, `h` in `±0.5`, `c` in `±1`, read words in `±1`.
/// Named `state.FIELD`, shapes as [`DncState`]'s, in [`STATE_NAMES`] order.
pub fn initial_state() -> Vec<Entry> {
    let [_, _, c, n, w, r, k] = SIZES;
    let b = BATCH;
    let name = |s: &str| format!("state.{s}");
    let link: Vec<f64> = hashed(&name("link"), b * k * n * n, 0.5)
        .into_iter()
        .enumerate()
        .map(|(i, u)| {
            let (row, col) = ((i / n) % n, i % n);
            if row == col {
                0.0
            } else {
                (u + 0.5) * 0.9 / (n - 1) as f64
            }
        })
        .collect();
    let tensors: [(Vec<usize>, Vec<f64>); 9] = [
        (vec![b, r, w], hashed(&name("read_words"), b * r * w, 1.0)),
        (vec![b, n, w], hashed(&name("memory"), b * n * w, 1.0)),
        (
            vec![b, r, n],
            weighting(&name("read_weights"), b * r, n, 0.9),
        ),
        (
            vec![b, k, n],
            weighting(&name("write_weights"), b * k, n, 0.8),
        ),
        (vec![b, k, n, n], link),
        (vec![b, k, n], weighting(&name("precedence"), b * k, n, 0.7)),
        (
            vec![b, n],
            hashed(&name("usage"), b * n, 0.5)
                .into_iter()
                .map(|u| u + 0.5)
                .collect(),
        ),
        (vec![b, c], hashed(&name("hidden"), b * c, 0.5)),
        (vec![b, c], hashed(&name("cell"), b * c, 1.0)),
    ];
    STATE_NAMES
        .iter()
        .zip(tensors)
        .map(|(s, (shape, values))| {
            (
                name(s),
                shape,
                values.into_iter().map(|v| v as f32).collect(),
            )
        })
        .collect()
}

/// A named tensor: name, shape, f32 values.
pub type Entry = (String, Vec<usize>, Vec<f32>);

/// What one window gives: logits `[T·B, Y]`, the summed loss, every parameter's gradient by
/// module path (`grad.NAME`), the initial state's gradients (`grad.state.FIELD`; zeros where
/// there is none, as for the previous write weights behind the usage stop-gradient) and the
/// final state (`final.FIELD`).
pub struct Outcome {
    pub logits: TensorData,
    pub loss: f64,
    pub tensors: Vec<Entry>,
}

fn values<const D: usize>(t: Tensor<Flex, D>) -> (Vec<usize>, Vec<f32>) {
    let data = t.into_data();
    (data.shape.to_vec(), data.to_vec().expect("f32"))
}

/// Runs the window: `STEPS` steps from [`initial_state`], `Σ max(x, 0) − x·y + log(1 + e^{−|x|})`
/// over all logits, backward.
pub fn run(model: &Dnc<B>) -> Outcome {
    let device = Default::default();
    let [x, target] = inputs();
    let x = Tensor::<B, 2>::from_data(x, &device);
    let target = Tensor::<B, 2>::from_data(target, &device);
    let start: Vec<Tensor<B, 4>> = initial_state()
        .into_iter()
        .map(|(_, mut shape, values)| {
            shape.resize(4, 1);
            Tensor::<B, 4>::from_data(TensorData::new(values, shape), &device).require_grad()
        })
        .collect();
    let state = DncState::from_tensors(start.clone()).expect("a DNC state");
    let (logits, last) = model.forward_window(x, STEPS, Some(state));
    let loss = (relu(logits.clone()) - logits.clone() * target
        + logits.clone().abs().neg().exp().log1p())
    .sum();
    let loss_value = f64::from(loss.clone().into_scalar());
    let grads: <B as AutodiffBackend>::Gradients = loss.backward();

    let mut tensors = Vec::new();
    for (name, _, _) in parameters(model) {
        tensors.push((format!("grad.{name}"), Vec::new(), Vec::new()));
    }
    struct Grads<'a>(&'a <B as AutodiffBackend>::Gradients, Vec<Entry>);
    impl ModuleVisitor<B> for Grads<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let grad = param
                .val()
                .grad(self.0)
                .expect("every parameter has a gradient");
            let (shape, v) = values(grad);
            self.1.push((String::new(), shape, v));
        }
    }
    let mut visitor = Grads(&grads, Vec::new());
    model.visit(&mut visitor);
    for (entry, (_, shape, v)) in tensors.iter_mut().zip(visitor.1) {
        entry.1 = shape;
        entry.2 = v;
    }

    let shapes: Vec<Vec<usize>> = initial_state().into_iter().map(|s| s.1).collect();
    for ((name, shape), t) in STATE_NAMES.iter().zip(&shapes).zip(&start) {
        let v = match t.grad(&grads) {
            Some(g) => values(g).1,
            None => vec![0.0; shape.iter().product()],
        };
        tensors.push((format!("grad.state.{name}"), shape.clone(), v));
    }
    for ((name, shape), t) in STATE_NAMES.iter().zip(&shapes).zip(last.into_tensors()) {
        tensors.push((format!("final.{name}"), shape.clone(), values(t.inner()).1));
    }
    Outcome {
        logits: logits.inner().into_data(),
        loss: loss_value,
        tensors,
    }
}

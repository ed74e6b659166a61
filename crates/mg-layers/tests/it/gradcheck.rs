//! Finite-difference gradient checks of `MgConv` and `MgConvLstm` over 3 time steps.
//!
//! The loss is `Σ output ⊙ R` with a fixed random `R` per output level, so every output
//! element carries its own weight. Central differences with `h = 1e-6` in f64 have a
//! truncation error of order `h²·f'''` and a rounding error of order `ε·|L|/h ≈ 1e-10·|L|`;
//! a relative tolerance of 1e-5 leaves a wide margin for both and still catches any wrong
//! term (which shows up at order 1).

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use mg_layers::{Activation, MgConvConfig, MgConvLstmConfig, NormMode, levels};

use crate::{TestAutodiffBackend as AB, device, f64_supported};

const STEPS: usize = 3;
const BATCH: usize = 2;

fn random(shape: [usize; 4], seed: u64) -> Tensor<AB, 4> {
    let values = crate::values(shape.iter().product(), seed);
    Tensor::from_data(TensorData::new(values, shape), &device())
}

fn tolerance() -> f64 {
    if f64_supported() { 1e-5 } else { 2e-2 }
}

fn step_h() -> f64 {
    if f64_supported() { 1e-6 } else { 1e-2 }
}

fn scalar(t: Tensor<AB, 1>) -> f64 {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap()[0]
}

fn weighted_sum(outputs: &[Tensor<AB, 4>], seed: u64) -> Tensor<AB, 1> {
    outputs
        .iter()
        .enumerate()
        .map(|(k, o)| (o.clone() * random(o.dims(), seed + k as u64)).sum())
        .reduce(|a, b| a + b)
        .expect("at least one output")
}

/// Compares the analytic gradient `grad` of `loss(p)` at `p0` with central differences on
/// a spread of entries.
///
/// A ReLU or max-pool switch can lie within `±h` of an entry: the loss is not smooth there
/// and the central difference mixes the slopes of both sides. Such an entry shows as one-sided
/// differences that disagree; the analytic gradient must then equal one side's slope (in f32,
/// lie within half the two slopes' spread of the central difference, as the loss's rounding
/// also splits them), and at most a third of the entries may be such kinks. In f32 (GPU
/// backends) the step must be large (`h = 1e-2`) to rise above rounding, so kinks are
/// common; in f64 (`h = 1e-6`) they are rare but do occur (measured: a ReLU pre-activation
/// within 1e-6 of zero, one-sided slopes −4.896 and −4.790, analytic −4.790).
fn check(name: &str, p0: &Tensor<AB, 4>, grad: TensorData, loss: impl Fn(Tensor<AB, 4>) -> f64) {
    let grad: Vec<f64> = grad.convert::<f64>().to_vec().unwrap();
    let base: Vec<f64> = p0.to_data().convert::<f64>().to_vec().unwrap();
    let shape = p0.dims();
    let h = step_h();
    let n = base.len();
    let picks: Vec<usize> = (0..n).step_by((n / 12).max(1)).chain([n - 1]).collect();
    let mut max_grad = 0.0f64;
    let mut kinks = 0;
    for &i in &picks {
        let at = |delta: f64| {
            let mut v = base.clone();
            v[i] += delta;
            loss(Tensor::from_data(TensorData::new(v, shape), &device()))
        };
        let (below, here, above) = (at(-h), at(0.0), at(h));
        let numeric = (above - below) / (2.0 * h);
        let (left, right) = ((here - below) / h, (above - here) / h);
        let scale = grad[i].abs().max(numeric.abs()).max(1e-2);
        let close = |v: f64| (grad[i] - v).abs() <= tolerance() * scale;
        max_grad = max_grad.max(grad[i].abs());
        if close(numeric) {
            continue;
        }
        let kink = (left - right).abs() > 2.0 * tolerance() * scale;
        // In f32 the loss is rounded, and on some backends not reproducible between two
        // evaluations: an entry whose one-sided slopes disagree is then known only to within
        // half their spread (measured on lavapipe, one run in three: `weight 1
        // (Some(BatchPerStep))[107]`, one-sided 0.00019 and 0.0067, central 0.0034, analytic
        // 0.0036). A kink, where the analytic gradient is one side's slope, lies within it too.
        let within_spread = !f64_supported()
            && (grad[i] - numeric).abs() <= (left - right).abs() / 2.0 + tolerance() * scale;
        assert!(
            kink && (close(left) || close(right) || within_spread),
            "{name}[{i}]: analytic {} vs numeric {numeric} (one-sided {left} and {right}; loss {here})",
            grad[i]
        );
        kinks += 1;
    }
    assert!(
        3 * kinks <= picks.len(),
        "{name}: {kinks} of {} entries sit at a kink; the step is too large for this check",
        picks.len()
    );
    assert!(max_grad > 0.0, "{name}: all checked gradients are zero");
}

/// In f32 the layer runs without its ReLU: pre-activations are small next to the step
/// (reference init), so with `h = 1e-2` several ReLUs switch inside `±h` of most weights and
/// no finite difference is sound (measured on lavapipe, every run: `weight 2 (None)[0]`
/// analytic 1.2234, central 1.0576, one-sided 1.2850 and 0.8303). The ReLU layer's gradients
/// on GPU backends are checked against the CPU backend's, which this test verifies in f64, in
/// `backend_ops::mg_conv_gradients_match_the_cpu_backend`.
#[test]
fn mg_conv_gradients_match_finite_differences() {
    let device = device();
    let activation = if f64_supported() {
        Activation::Relu
    } else {
        Activation::Identity
    };
    for norm in [None, Some(NormMode::BatchPerStep)] {
        let config = MgConvConfig::new(2, 3, levels(0, 2), levels(0, 3))
            .with_norm(norm)
            .with_activation(activation);
        let mut layer = config.init::<AB>(&device);
        // Fixed weights (the backend's generator is not seeded): a failure reproduces.
        for (k, w) in layer.weights.iter_mut().enumerate() {
            *w = Param::from_tensor(random(w.val().dims(), 10 + k as u64) * 0.5);
        }
        let input = [
            random([STEPS * BATCH, 2, 2, 2], 1),
            random([STEPS * BATCH, 2, 4, 4], 2),
        ];
        let loss_with = |layer: &mg_layers::MgConv<AB>, input: &[Tensor<AB, 4>]| {
            weighted_sum(&layer.forward_window(input, STEPS), 100)
        };

        let x0 = input[1].clone().require_grad();
        let grads = loss_with(&layer, &[input[0].clone(), x0.clone()]).backward();
        for k in 0..3 {
            let g = layer.weights[k].grad(&grads).unwrap().into_data();
            let w0 = layer.weights[k].val();
            check(&format!("weight {k} ({norm:?})"), &w0, g, |w| {
                let mut l = layer.clone();
                l.weights[k] = Param::from_tensor(w);
                scalar(loss_with(&l, &input))
            });
        }
        let g = x0.grad(&grads).unwrap().into_data();
        check(&format!("input level 1 ({norm:?})"), &input[1], g, |x| {
            scalar(loss_with(&layer, &[input[0].clone(), x]))
        });
    }
}

#[test]
fn mg_conv_lstm_gradients_match_finite_differences() {
    let device = device();
    for peephole in [false, true] {
        let config = MgConvLstmConfig::new(2, 2, levels(0, 2), levels(0, 3))
            .with_base_size(2)
            .with_peephole(peephole);
        let layer = config.init::<AB>(&device);
        let input = [
            random([STEPS * BATCH, 2, 2, 2], 3),
            random([STEPS * BATCH, 2, 4, 4], 4),
        ];
        // The loss reads every step's output and the final cell state.
        let loss_with = |layer: &mg_layers::MgConvLstm<AB>, input: &[Tensor<AB, 4>]| {
            let out = layer.forward_window(input, STEPS, None);
            let cells: Vec<_> = out.state.levels().iter().map(|s| s.cell.clone()).collect();
            weighted_sum(&out.outputs, 200) + weighted_sum(&cells, 300)
        };

        let x0 = input[0].clone().require_grad();
        let grads = loss_with(&layer, &[x0.clone(), input[1].clone()]).backward();
        for k in 0..3 {
            let cell = &layer.cells[k];
            let g = cell.weight.grad(&grads).unwrap().into_data();
            check(&format!("cell {k} weight"), &cell.weight.val(), g, |w| {
                let mut l = layer.clone();
                l.cells[k].weight = Param::from_tensor(w);
                scalar(loss_with(&l, &input))
            });
            if let Some(p) = &cell.peephole {
                let g = p.grad(&grads).unwrap().into_data();
                check(&format!("cell {k} peephole"), &p.val(), g, |w| {
                    let mut l = layer.clone();
                    l.cells[k].peephole = Some(Param::from_tensor(w));
                    scalar(loss_with(&l, &input))
                });
            }
        }
        let g = x0.grad(&grads).unwrap().into_data();
        check("input level 0", &input[0], g, |x| {
            scalar(loss_with(&layer, &[x, input[1].clone()]))
        });
    }
}

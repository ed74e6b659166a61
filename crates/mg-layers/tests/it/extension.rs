//! `MgBackend`, the backend extension: on the test backend its ops against burn's own
//! (`Backend::conv2d` and its backward halves, the LSTM update written with tensor ops, the
//! resampling as burn's reshape and pooling), on odd shapes, and its autodiff nodes against
//! finite differences. On Flex this checks the project's CPU kernels; on a GPU backend, the
//! autodiff nodes over burn's ops.

use burn::tensor::activation::sigmoid;
use burn::tensor::backend::Backend;
use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use mg_layers::MgBackend;
use mg_layers::backend::{conv2d, lstm_step};

use crate::{TestAutodiffBackend as AB, TestBackend as B, device, f64_supported};

fn random(shape: [usize; 4], seed: u64) -> Tensor<AB, 4> {
    let values = crate::values(shape.iter().product(), seed);
    Tensor::from_data(TensorData::new(values, shape), &device())
}

fn random_inner(shape: [usize; 4], seed: u64) -> Tensor<B, 4> {
    random(shape, seed).inner()
}

fn tol() -> f64 {
    if f64_supported() { 1e-11 } else { 2e-5 }
}

/// Largest `|a − b|` relative to the largest `|b|`.
fn rel_diff<const D: usize, BK: Backend>(a: Tensor<BK, D>, b: Tensor<BK, D>) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let a: Vec<f64> = a.into_data().convert::<f64>().to_vec().unwrap();
    let b: Vec<f64> = b.into_data().convert::<f64>().to_vec().unwrap();
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    a.iter()
        .zip(&b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

fn prim(t: Tensor<B, 4>) -> burn::tensor::ops::FloatTensor<B> {
    t.into_primitive().tensor()
}

fn tensor(p: burn::tensor::ops::FloatTensor<B>) -> Tensor<B, 4> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// `(n, c_in, h, w, c_out, kh, kw, ph, pw)`: 1×1 images, batch 1, one channel, non-square
/// images and kernels, valid (unpadded) and same padding, 1D rows.
const CONV_CASES: [[usize; 9]; 7] = [
    [1, 1, 1, 1, 1, 3, 3, 1, 1],
    [2, 3, 5, 4, 2, 3, 3, 1, 1],
    [3, 2, 4, 6, 5, 1, 3, 0, 1],
    [1, 4, 3, 3, 3, 3, 3, 0, 0],
    [5, 1, 2, 7, 1, 3, 1, 1, 0],
    [2, 2, 1, 9, 3, 1, 3, 0, 1],
    [6, 8, 12, 12, 16, 3, 3, 1, 1],
];

#[test]
fn conv2d_and_its_backward_halves_match_burn() {
    device();
    for (k, [n, ci, h, w, co, kh, kw, ph, pw]) in CONV_CASES.into_iter().enumerate() {
        let seed = 10 * k as u64;
        let x = random_inner([n, ci, h, w], seed);
        let weight = random_inner([co, ci, kh, kw], seed + 1);
        let bias: Tensor<B, 1> = random_inner([1, 1, 1, co], seed + 2).reshape([co]);
        let options = ConvOptions::new([1, 1], [ph, pw], [1, 1], 1);
        let ours = conv2d(
            x.clone(),
            weight.clone(),
            Some(bias.clone()),
            options.clone(),
        );
        let burn = burn_conv2d(x.clone(), weight.clone(), Some(bias), options.clone());
        let grad = random_inner(burn.dims(), seed + 3);
        let case = format!("case {k} {:?}", CONV_CASES[k]);
        let d = rel_diff(ours, burn);
        assert!(d <= tol(), "{case}: forward differs by {d:e}");

        let dx = B::mg_conv2d_x_backward(
            prim(x.clone()),
            prim(weight.clone()),
            prim(grad.clone()),
            options.clone(),
        );
        let dx_burn = <B as burn::tensor::ops::ModuleOps<B>>::conv2d_x_backward(
            prim(x.clone()),
            prim(weight.clone()),
            prim(grad.clone()),
            options.clone(),
        );
        let d = rel_diff(tensor(dx), tensor(dx_burn));
        assert!(d <= tol(), "{case}: input gradient differs by {d:e}");

        let dw = B::mg_conv2d_weight_backward(
            prim(x.clone()),
            prim(weight.clone()),
            prim(grad.clone()),
            options.clone(),
        );
        let dw_burn = <B as burn::tensor::ops::ModuleOps<B>>::conv2d_weight_backward(
            prim(x),
            prim(weight),
            prim(grad),
            options,
        );
        let d = rel_diff(tensor(dw), tensor(dw_burn));
        assert!(d <= tol(), "{case}: weight gradient differs by {d:e}");
    }
}

/// The LSTM update written with burn's tensor ops, as the layer had it before the extension.
fn reference_lstm(
    gates: Tensor<AB, 4>,
    cell: Tensor<AB, 4>,
    forget_bias: f64,
) -> (Tensor<AB, 4>, Tensor<AB, 4>) {
    let c = cell.dims()[1];
    let part = |k: usize| gates.clone().narrow(1, k * c, c);
    let cell = sigmoid(part(2).add_scalar(forget_bias)) * cell + sigmoid(part(0)) * part(1).tanh();
    let hidden = sigmoid(part(3)) * cell.clone().tanh();
    (cell, hidden)
}

/// `(n, c, h, w)`: one value per gate, batch 1, non-square, and a batch large enough to run
/// in parallel.
const LSTM_CASES: [[usize; 4]; 4] = [[1, 1, 1, 1], [1, 3, 2, 5], [4, 2, 3, 1], [16, 8, 12, 12]];

/// The forget bias of each case: none, the layers' default, a negative one.
const FORGET_BIASES: [f64; 4] = [0.0, 1.0, -0.7, 1.0];

/// Forward values and the gradients of `Σ c ⊙ R₁ + Σ h ⊙ R₂` (and of each term alone, so
/// that one of `lstm_step`'s outputs gets no gradient) against the reference.
#[test]
fn lstm_ops_match_burn_ops_forward_and_backward() {
    device();
    for (k, [n, c, h, w]) in LSTM_CASES.into_iter().enumerate() {
        let seed = 100 + 10 * k as u64;
        let fb = FORGET_BIASES[k];
        // Pre-activations up to ±3: every nonlinearity away from its linear range.
        let gates = (random([n, 4 * c, h, w], seed) * 3.0).require_grad();
        let cell = random([n, c, h, w], seed + 1).require_grad();
        let (r1, r2) = (
            random([n, c, h, w], seed + 2),
            random([n, c, h, w], seed + 3),
        );
        let run = |fused: bool, [use_cell, use_hidden]: [bool; 2]| {
            let (c_new, h_new) = if fused {
                lstm_step(gates.clone(), cell.clone(), fb)
            } else {
                reference_lstm(gates.clone(), cell.clone(), fb)
            };
            let loss = match (use_cell, use_hidden) {
                (true, true) => {
                    (c_new.clone() * r1.clone()).sum() + (h_new.clone() * r2.clone()).sum()
                }
                (true, false) => (c_new.clone() * r1.clone()).sum(),
                _ => (h_new.clone() * r2.clone()).sum(),
            };
            let grads = loss.backward();
            (
                c_new.inner(),
                h_new.inner(),
                gates.grad(&grads).unwrap(),
                cell.grad(&grads).unwrap(),
            )
        };
        for terms in [[true, true], [true, false], [false, true]] {
            let reference = run(false, terms);
            {
                let ours = run(true, terms);
                let case = format!("case {k} {:?}, terms {terms:?}", LSTM_CASES[k]);
                for (what, d) in [
                    ("cell", rel_diff(ours.0, reference.0.clone())),
                    ("hidden", rel_diff(ours.1, reference.1.clone())),
                    ("gate gradient", rel_diff(ours.2, reference.2.clone())),
                    ("cell gradient", rel_diff(ours.3, reference.3.clone())),
                ] {
                    assert!(d <= tol(), "{case}: {what} differs by {d:e}");
                }
            }
        }
    }
}

/// Central differences of `Σ h₂ ⊙ R` (h₂ after two updates from one set of gates, so the first
/// update's hidden state gets no gradient), and of `Σ h₂ ⊙ R + Σ h₁ ⊙ R`, with respect to
/// every gate pre-activation and cell value of a small case, in f64.
#[test]
fn lstm_ops_gradients_match_finite_differences() {
    if !f64_supported() {
        return; // f32 differences are checked through the layers' gradient checks.
    }
    device();
    for both in [false, true] {
        lstm_finite_differences(both);
    }
}

fn lstm_finite_differences(both: bool) {
    let shape = [2, 2, 1, 3];
    let gates0: Vec<f64> = crate::values(2 * 8 * 3, 7)
        .iter()
        .map(|v| 2.0 * v)
        .collect();
    let cell0 = crate::values(2 * 2 * 3, 8);
    let r = random(shape, 9);
    let loss = |gates: Vec<f64>, cell: Vec<f64>| {
        let g = Tensor::<AB, 4>::from_data(TensorData::new(gates, [2, 8, 1, 3]), &device())
            .require_grad();
        let c = Tensor::<AB, 4>::from_data(TensorData::new(cell, shape), &device()).require_grad();
        // A forget bias of 1 (the layers' default) in the first update, none in the second.
        let (c1, h1) = lstm_step(g.clone(), c.clone(), 1.0);
        let (_, h2) = lstm_step(g.clone(), c1, 0.0);
        let l = if both {
            (h2 * r.clone()).sum() + (h1 * r.clone()).sum()
        } else {
            (h2 * r.clone()).sum()
        };
        let value = l
            .clone()
            .into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .unwrap()[0];
        let grads = l.backward();
        let v = |t: Tensor<B, 4>| t.into_data().convert::<f64>().to_vec::<f64>().unwrap();
        (
            value,
            v(g.grad(&grads).unwrap()),
            v(c.grad(&grads).unwrap()),
        )
    };
    let (_, d_gates, d_cell) = loss(gates0.clone(), cell0.clone());
    let h = 1e-6;
    for i in 0..gates0.len() {
        let at = |delta: f64| {
            let mut g = gates0.clone();
            g[i] += delta;
            loss(g, cell0.clone()).0
        };
        let numeric = (at(h) - at(-h)) / (2.0 * h);
        assert!(
            (numeric - d_gates[i]).abs() <= 1e-7 * numeric.abs().max(1.0),
            "both {both}, gate {i}: analytic {} vs numeric {numeric}",
            d_gates[i]
        );
    }
    for i in 0..cell0.len() {
        let at = |delta: f64| {
            let mut c = cell0.clone();
            c[i] += delta;
            loss(gates0.clone(), c).0
        };
        let numeric = (at(h) - at(-h)) / (2.0 * h);
        assert!(
            (numeric - d_cell[i]).abs() <= 1e-7 * numeric.abs().max(1.0),
            "both {both}, cell {i}: analytic {} vs numeric {numeric}",
            d_cell[i]
        );
    }
}

/// Central differences of `Σ conv2d(x, w, b) ⊙ R` through the autodiff node, in f64, for a
/// 1D kernel and a square one.
#[test]
fn conv2d_gradients_match_finite_differences() {
    if !f64_supported() {
        return; // f32 differences are checked through the layers' gradient checks.
    }
    device();
    for (k, [n, ci, hh, ww, co, kh, kw, ph, pw]) in
        [CONV_CASES[2], CONV_CASES[1]].into_iter().enumerate()
    {
        let options = ConvOptions::new([1, 1], [ph, pw], [1, 1], 1);
        let seed = 200 + 10 * k as u64;
        let x0 = crate::values(n * ci * hh * ww, seed);
        let w0 = crate::values(co * ci * kh * kw, seed + 1);
        let b0 = crate::values(co, seed + 2);
        let out = [n, co, hh + 2 * ph + 1 - kh, ww + 2 * pw + 1 - kw];
        let r = random(out, seed + 3);
        let loss = |x: Vec<f64>, w: Vec<f64>, b: Vec<f64>| {
            let d = device();
            let x =
                Tensor::<AB, 4>::from_data(TensorData::new(x, [n, ci, hh, ww]), &d).require_grad();
            let w =
                Tensor::<AB, 4>::from_data(TensorData::new(w, [co, ci, kh, kw]), &d).require_grad();
            let b = Tensor::<AB, 1>::from_data(TensorData::new(b, [co]), &d).require_grad();
            let l =
                (conv2d(x.clone(), w.clone(), Some(b.clone()), options.clone()) * r.clone()).sum();
            let value = l
                .clone()
                .into_data()
                .convert::<f64>()
                .to_vec::<f64>()
                .unwrap()[0];
            let grads = l.backward();
            let v = |t: TensorData| t.convert::<f64>().to_vec::<f64>().unwrap();
            (
                value,
                [
                    v(x.grad(&grads).unwrap().into_data()),
                    v(w.grad(&grads).unwrap().into_data()),
                    v(b.grad(&grads).unwrap().into_data()),
                ],
            )
        };
        let (_, analytic) = loss(x0.clone(), w0.clone(), b0.clone());
        let params = [x0, w0, b0];
        for (p, name) in ["x", "weight", "bias"].into_iter().enumerate() {
            for i in 0..params[p].len() {
                let at = |delta: f64| {
                    let mut args = params.clone();
                    args[p][i] += delta;
                    let [x, w, b] = args;
                    loss(x, w, b).0
                };
                let numeric = (at(1e-6) - at(-1e-6)) / 2e-6;
                assert!(
                    (numeric - analytic[p][i]).abs() <= 1e-7 * numeric.abs().max(1.0),
                    "case {k} {name}[{i}]: analytic {} vs numeric {numeric}",
                    analytic[p][i]
                );
            }
        }
    }
}

/// The gather's autodiff node (one op, `B`'s fused gather) against the ops it is made of
/// (upsampling, max-pooling, concatenation, each its own node): outputs and the gradients of
/// `Σ gather ⊙ R` with respect to every part, for every combination of two or three parts,
/// in 2D and 1D.
/// A tie is its input, value and gradient; the anchor gets a zero gradient (and a backward
/// pass that reaches the anchor through the tie alone does not fail for want of one).
#[test]
fn tie_passes_values_and_gradients_to_its_input() {
    use mg_layers::backend::tie;
    let x = random([2, 3, 1, 2], 700).require_grad();
    let r = random([2, 3, 1, 2], 701);
    let a = Tensor::<AB, 1>::from_floats([0.5], &device()).require_grad();
    for anchor_in_loss in [false, true] {
        let anchor = a.clone().mul_scalar(2.0);
        let y = tie(x.clone(), anchor.clone());
        assert!(rel_diff(y.clone().inner(), x.clone().inner()) == 0.0);
        let mut loss = (y * r.clone()).sum();
        if anchor_in_loss {
            loss = loss + anchor.mul_scalar(3.0).sum();
        }
        let grads = loss.backward();
        let dx = x.grad(&grads).expect("a gradient for x");
        assert!(rel_diff(dx, r.clone().inner()) == 0.0);
        let da: Vec<f32> = a
            .grad(&grads)
            .expect("a gradient for the anchor")
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap();
        assert_eq!(da, vec![if anchor_in_loss { 6.0 } else { 0.0 }]);
    }
}

#[test]
fn gather_node_matches_its_ops() {
    use mg_layers::backend::{cat_channels, gather, maxpool, upsample};
    device();
    for (k, (n, [h, w], f)) in [(2, [2, 4], [2, 2]), (3, [1, 4], [1, 2])]
        .into_iter()
        .enumerate()
    {
        let inputs = [
            random([n, 3, h / f[0], w / f[1]], 500 + k as u64),
            random([n, 2, h, w], 510 + k as u64),
            random([n, 4, h * f[0], w * f[1]], 520 + k as u64),
        ];
        for mask in [0b011, 0b101, 0b110, 0b111] {
            let run = |fused: bool| {
                let xs = inputs
                    .clone()
                    .map(|x| Tensor::<AB, 4>::from_data(x.into_data(), &device()).require_grad());
                let pick = |i: usize| (mask & (1 << i) != 0).then(|| xs[i].clone());
                let y = match fused {
                    true => gather(pick(0), pick(1), pick(2), f),
                    false => {
                        let parts = [
                            pick(0).map(|x| upsample(x, f)),
                            pick(1),
                            pick(2).map(|x| maxpool(x, f)),
                        ];
                        cat_channels(parts.into_iter().flatten().collect())
                    }
                };
                let r = random(y.dims(), 530 + k as u64);
                let grads = (y.clone() * r).sum().backward();
                let dx: Vec<_> = (0..3)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| xs[i].grad(&grads).expect("a gradient"))
                    .collect();
                (y.inner(), dx)
            };
            let ((y, dx), (y_ops, dx_ops)) = (run(true), run(false));
            assert!(
                rel_diff(y, y_ops) <= tol(),
                "case {k}, parts {mask:03b}: output"
            );
            for (i, (got, want)) in dx.into_iter().zip(dx_ops).enumerate() {
                assert!(
                    rel_diff(got, want) <= tol(),
                    "case {k}, parts {mask:03b}: gradient {i}"
                );
            }
        }
    }
}

/// Upsampling and max-pooling through their autodiff nodes: forward against burn's ops, and
/// the gradients of `Σ op(x) ⊙ R` against central differences in f64 (distinct values, so no
/// ties in the pooling), on odd shapes and factors.
#[test]
fn resampling_ops_match_burn_and_finite_differences() {
    use burn::tensor::module::max_pool2d;
    use mg_layers::backend::{maxpool, upsample};
    device();
    let cases = [
        ([2, 3, 1, 3], [2, 2]),
        ([1, 2, 3, 1], [1, 3]),
        ([2, 2, 4, 6], [2, 2]),
        ([1, 1, 2, 6], [1, 2]),
    ];
    for (k, (shape, f)) in cases.into_iter().enumerate() {
        let [n, c, h, w] = shape;
        let x0 = crate::values(n * c * h * w, 300 + k as u64);
        let x = Tensor::<B, 4>::from_data(TensorData::new(x0.clone(), shape), &device());
        let up = upsample(x.clone(), f);
        let want = x
            .clone()
            .reshape([n, c, h, 1, w, 1])
            .expand([n, c, h, f[0], w, f[1]])
            .reshape([n, c, h * f[0], w * f[1]]);
        assert!(rel_diff(up, want) <= tol(), "upsample case {k}");
        let pooled = (h % f[0] == 0 && w % f[1] == 0).then(|| {
            let got = maxpool(x.clone(), f);
            let want = max_pool2d(x.clone(), f, f, [0, 0], [1, 1], false);
            assert!(rel_diff(got, want) <= tol(), "maxpool case {k}");
        });
        if !f64_supported() {
            continue;
        }
        for pool in [false, true]
            .into_iter()
            .filter(|&p| !p || pooled.is_some())
        {
            let out = match pool {
                false => [n, c, h * f[0], w * f[1]],
                true => [n, c, h / f[0], w / f[1]],
            };
            let r = random(out, 400 + k as u64);
            let loss = |x: Vec<f64>| {
                let x =
                    Tensor::<AB, 4>::from_data(TensorData::new(x, shape), &device()).require_grad();
                let y = match pool {
                    false => upsample(x.clone(), f),
                    true => maxpool(x.clone(), f),
                };
                let l = (y * r.clone()).sum();
                let value = l
                    .clone()
                    .into_data()
                    .convert::<f64>()
                    .to_vec::<f64>()
                    .unwrap()[0];
                let grad = x.grad(&l.backward()).unwrap().into_data();
                (value, grad.convert::<f64>().to_vec::<f64>().unwrap())
            };
            let (_, analytic) = loss(x0.clone());
            for i in 0..x0.len() {
                let at = |delta: f64| {
                    let mut x = x0.clone();
                    x[i] += delta;
                    loss(x).0
                };
                let numeric = (at(1e-6) - at(-1e-6)) / 2e-6;
                assert!(
                    (numeric - analytic[i]).abs() <= 1e-7 * numeric.abs().max(1.0),
                    "case {k}, pooling {pool}, x[{i}]: analytic {} vs numeric {numeric}",
                    analytic[i]
                );
            }
        }
    }
}

/// `split_steps` against burn's slices: the same steps forward (tracked and untracked, rank 4
/// and 2), and the same gradient through a non-leaf tensor that is also used whole, with one
/// step the loss never reaches (its rows get zero from the split) and one step used twice.
#[test]
fn split_steps_matches_slices_forward_and_backward() {
    use mg_layers::backend::split_steps;
    let (steps, b) = (4, 2);
    let shape = [steps * b, 3, 2, 5];
    let x = random(shape, 500).require_grad();
    let r = random(shape, 501);
    let run = |split: bool| {
        let y = x.clone().mul_scalar(0.5).exp();
        let parts: Vec<Tensor<AB, 4>> = match split {
            true => split_steps(y.clone(), steps),
            false => (0..steps).map(|t| y.clone().narrow(0, t * b, b)).collect(),
        };
        let mut loss = (y * r.clone()).sum();
        for (t, p) in parts.iter().enumerate().filter(|(t, _)| *t != 2) {
            loss = loss + p.clone().powf_scalar(2.0).mul_scalar(t as f64 + 1.0).sum();
        }
        loss = loss + parts[3].clone().sin().sum();
        let grad = x.grad(&loss.backward()).unwrap();
        (
            parts.into_iter().map(|p| p.inner()).collect::<Vec<_>>(),
            grad,
        )
    };
    let (split_parts, split_grad) = run(true);
    let (slice_parts, slice_grad) = run(false);
    for (t, (a, b)) in split_parts.into_iter().zip(slice_parts).enumerate() {
        assert_eq!(a.dims(), [2, 3, 2, 5]);
        assert!(rel_diff(a, b) == 0.0, "step {t}");
    }
    assert!(rel_diff(split_grad, slice_grad) <= tol());

    // Untracked (inference) and rank 2.
    let plain = random_inner(shape, 502);
    for (t, part) in split_steps(plain.clone(), steps).into_iter().enumerate() {
        assert!(rel_diff(part, plain.clone().narrow(0, t * b, b)) == 0.0);
    }
    let flat: Tensor<AB, 2> = random([6, 5, 1, 1], 503).reshape([6, 5]).require_grad();
    let parts = split_steps(flat.clone(), 3);
    assert_eq!(
        parts.iter().map(|p| p.dims()).collect::<Vec<_>>(),
        [[2, 5]; 3]
    );
    let loss = parts[0].clone().sum() + parts[2].clone().mul_scalar(3.0).sum();
    let grad: Vec<f64> = flat
        .grad(&loss.backward())
        .unwrap()
        .into_data()
        .convert::<f64>()
        .to_vec()
        .unwrap();
    let want: Vec<f64> = [1.0; 10]
        .into_iter()
        .chain([0.0; 10])
        .chain([3.0; 10])
        .collect();
    assert_eq!(grad, want);
}

/// A split into a number of steps that does not divide the rows is refused with the sizes.
#[test]
#[should_panic(expected = "7 rows do not split into 2 time steps")]
fn split_steps_refuses_uneven_rows() {
    mg_layers::backend::split_steps(random_inner([7, 1, 1, 1], 1), 2);
}

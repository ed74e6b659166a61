//! The burn ops the layers are built from, forward and backward, on the test backend against
//! burn's Flex CPU backend for the same inputs. On Flex itself this is trivially equal; on a
//! GPU backend it pins a wrong gradient to the op that makes it.

use burn::backend::{Autodiff, Flex};
use burn::tensor::activation::relu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData};
use mg_layers::{Geometry, maxpool2x, upsample2x};

use crate::TestBackend;

fn values(n: usize, seed: u64) -> Vec<f32> {
    crate::values(n, seed)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// Gradients of `Σ conv2d(x, w, b) ⊙ r` w.r.t. x, w and b, as f32 vectors.
fn conv_grads<B: mg_layers::MgBackend>(
    x: [usize; 4],
    w: [usize; 4],
    padding: usize,
    prepare: Prepare,
) -> [Vec<f32>; 3] {
    let device = Default::default();
    let t = |shape: [usize; 4], seed| {
        let n = shape.iter().product();
        Tensor::<Autodiff<B>, 4>::from_data(TensorData::new(values(n, seed), shape), &device)
            .require_grad()
    };
    let (xt, wt) = (t(x, 1), t(w, 2));
    let bt = Tensor::<Autodiff<B>, 1>::from_data(TensorData::new(values(w[0], 3), [w[0]]), &device)
        .require_grad();
    let options = ConvOptions::new([1, 1], [padding, padding], [1, 1], 1);
    let input = match prepare {
        Prepare::Plain => xt.clone(),
        Prepare::Upsampled => upsample2x(xt.clone(), Geometry::Grid2d),
        Prepare::Pooled => maxpool2x(xt.clone(), Geometry::Grid2d),
        Prepare::Gathered => {
            let up = upsample2x(xt.clone(), Geometry::Grid2d);
            Tensor::cat(vec![up.clone(), up.mul_scalar(0.5)], 1)
        }
        Prepare::Relu => relu(xt.clone()),
    };
    let y = conv2d(input, wt.clone(), Some(bt.clone()), options);
    let r = Tensor::from_data(
        TensorData::new(values(y.dims().iter().product(), 4), y.dims()),
        &device,
    );
    let grads = (y * r).sum().backward();
    let v = |d: TensorData| d.convert::<f32>().to_vec::<f32>().unwrap();
    [
        v(xt.grad(&grads).unwrap().into_data()),
        v(wt.grad(&grads).unwrap().into_data()),
        v(bt.grad(&grads).unwrap().into_data()),
    ]
}

/// How the conv's input is made from `x`.
#[derive(Clone, Copy, Debug)]
enum Prepare {
    Plain,
    Upsampled,
    Pooled,
    Gathered,
    Relu,
}

/// conv2d's gradients at the shapes of the gradient check's layers (grids 2×2 to 8×8, 2 to 6
/// input channels, 3×3 kernels, padding 1) and a few odd ones.
#[test]
fn conv2d_gradients_match_the_cpu_backend() {
    for (x, w) in [
        ([6, 2, 2, 2], [3, 2, 3, 3]),
        ([6, 4, 4, 4], [3, 4, 3, 3]),
        ([6, 6, 4, 4], [3, 6, 3, 3]),
        ([6, 2, 8, 8], [3, 2, 3, 3]),
        ([1, 1, 5, 3], [2, 1, 3, 3]),
        ([2, 7, 6, 6], [5, 7, 3, 3]),
    ] {
        compare(x, w, Prepare::Plain);
    }
}

fn compare(x: [usize; 4], w: [usize; 4], prepare: Prepare) {
    // The binary's float type is set by the first `device()` call; make it before any tensor.
    crate::device();
    {
        let ours = conv_grads::<TestBackend>(x, w, 1, prepare);
        let cpu = conv_grads::<Flex>(x, w, 1, prepare);
        for (name, (a, b)) in ["input", "weight", "bias"]
            .iter()
            .zip(ours.iter().zip(&cpu))
        {
            let worst = a
                .iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs() / q.abs().max(1.0))
                .fold(0.0f32, f32::max);
            assert!(
                worst < 1e-4,
                "conv2d {name} gradient, x {x:?}, w {w:?}, {prepare:?}: relative difference {worst}"
            );
        }
    }
}

/// The same through the ops that build a layer's input: upsampling (a broadcast view),
/// max-pooling, concatenation, ReLU.
#[test]
fn gradients_through_resampling_match_the_cpu_backend() {
    compare([6, 2, 2, 2], [3, 2, 3, 3], Prepare::Upsampled);
    compare([6, 2, 4, 4], [3, 2, 3, 3], Prepare::Upsampled);
    compare([6, 2, 8, 8], [3, 2, 3, 3], Prepare::Pooled);
    compare([6, 2, 4, 4], [3, 4, 3, 3], Prepare::Gathered);
    compare([6, 3, 4, 4], [3, 3, 3, 3], Prepare::Relu);
}

/// A whole `MgConv` (3 output levels from 2 input levels, ReLU) with the same weights on both
/// backends: its weight gradients agree (the f32 finite-difference check cannot test the
/// ReLU layer, see `gradcheck`).
#[test]
fn mg_conv_gradients_match_the_cpu_backend() {
    use burn::module::Param;
    use mg_layers::{MgConv, MgConvConfig, levels};
    fn grads<B: mg_layers::MgBackend>(weights: &[Vec<f32>], biases: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let device = Default::default();
        let config = MgConvConfig::new(2, 3, levels(0, 2), levels(0, 3));
        let mut layer: MgConv<Autodiff<B>> = config.init(&device);
        for k in 0..3 {
            let shape = layer.weights[k].val().dims();
            layer.weights[k] = Param::from_tensor(Tensor::from_data(
                TensorData::new(weights[k].clone(), shape),
                &device,
            ));
            layer.biases[k] = Param::from_tensor(Tensor::from_data(
                TensorData::new(biases[k].clone(), [3]),
                &device,
            ));
        }
        let input: Vec<Tensor<Autodiff<B>, 4>> = [[6, 2, 2, 2], [6, 2, 4, 4]]
            .iter()
            .enumerate()
            .map(|(i, &shape)| {
                let n = shape.iter().product();
                Tensor::from_data(TensorData::new(values(n, 10 + i as u64), shape), &device)
            })
            .collect();
        let out = layer.forward_window(&input, 3);
        let loss = out
            .iter()
            .enumerate()
            .map(|(k, o)| {
                let r = values(o.dims().iter().product(), 100 + k as u64);
                (o.clone() * Tensor::from_data(TensorData::new(r, o.dims()), &device)).sum()
            })
            .reduce(|a, b| a + b)
            .unwrap();
        let g = loss.backward();
        (0..3)
            .map(|k| {
                layer.weights[k]
                    .grad(&g)
                    .unwrap()
                    .into_data()
                    .convert::<f32>()
                    .to_vec()
                    .unwrap()
            })
            .collect()
    }
    let shapes = [[3, 4, 3, 3], [3, 4, 3, 3], [3, 2, 3, 3]];
    let weights: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(k, s)| values(s.iter().product(), 20 + k as u64))
        .collect();
    let biases: Vec<Vec<f32>> = (0..3).map(|k| values(3, 30 + k as u64)).collect();
    crate::device();
    let ours = grads::<TestBackend>(&weights, &biases);
    let cpu = grads::<Flex>(&weights, &biases);
    for k in 0..3 {
        let worst = ours[k]
            .iter()
            .zip(&cpu[k])
            .map(|(p, q)| (p - q).abs() / q.abs().max(1.0))
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "weight {k}: relative difference {worst}");
    }
}

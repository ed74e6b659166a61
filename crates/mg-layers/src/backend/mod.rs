//! The backend extension: the few ops the layers spend their time in, with burn's own ops as
//! the default implementation on every backend and faster ones where the project has them.
//!
//! - [`MgBackend::mg_conv2d`] and its backward (input and weight, apart or together; bias):
//!   the layers' convolutions.
//! - [`MgBackend::lstm_step`] and its backward: the conv-LSTM update from the gate
//!   pre-activations (the constant forget bias added inside), the new cell and hidden states
//!   in one pass and both gradients in one pass.
//! - [`MgBackend::mg_cat_channels`] and its backward [`MgBackend::mg_split_channels`]: the
//!   channel concatenations of the gather and of `[x, h]`, whose gradients burn's autodiff
//!   hands on as strided views (every later op then walks them through a strided iterator).
//! - [`MgBackend::mg_split_steps`]: a tensor of time-major rows cut into its time steps, whose
//!   backward is one concatenation (burn's slices each register a full-size gradient, zeros
//!   but for their rows, so cutting `T` steps costs `T` full-size fills and additions).
//! - [`MgBackend::mg_upsample`], [`MgBackend::mg_maxpool`] and their backwards: the
//!   pyramid's resampling, one pass each (burn's upsampling by broadcast and reshape copies
//!   through a strided iterator).
//! - [`MgBackend::mg_tie`]: a tensor tied into another's autodiff graph without a copy, so that
//!   a window's parameter copies start one graph ([`crate::window_view`]).
//! - [`MgBackend::mg_dnc_allocation`] and [`MgBackend::mg_dnc_link`] with their backwards:
//!   the DNC baseline's allocation (a sort of the usages) and temporal link update with the
//!   moves along the links, one pass each over the `[n, n]` link matrices (burn's broadcasts
//!   walk them element by element).
//!
//! `Autodiff<B>` implements the trait with custom backward nodes that call `B`'s backward ops,
//! so a backend that overrides them (Flex, in `flex.rs`) is fast in training too. The GPU
//! backends (wgpu, CUDA) and ndarray use the defaults; CubeCL kernels would go there.

mod autodiff;
#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
mod kernels;
#[cfg(feature = "flex")]
mod matmul;
mod memory;
#[cfg(feature = "flex")]
mod memory_kernels;
#[cfg(feature = "flex")]
mod winograd;

pub use memory::{DncLink, dnc_allocation, dnc_link};

use burn::backend::Autodiff;
use burn::tensor::ops::{ConvOptions, FloatTensor};
use burn::tensor::{Tensor, TensorPrimitive, backend::Backend};

/// A burn backend the multigrid layers run on: burn's [`Backend`] plus the ops of this module.
///
/// Every method has a default built from burn's ops; a backend overrides what it does faster.
/// Shapes: `x [n, c_in, h, w]`, `weight [c_out, c_in, kh, kw]`, `gates [n, 4·c, h, w]` split
/// `(i, g, f, o)` with the forget bias already added, `cell [n, c, h, w]`.
pub trait MgBackend: Backend {
    /// A 2D convolution (`burn::tensor::module::conv2d`).
    fn mg_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, bias, options)
    }

    /// The gradient of [`Self::mg_conv2d`] with respect to `x`.
    fn mg_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, output_grad, options)
    }

    /// The gradient of [`Self::mg_conv2d`] with respect to `weight`.
    fn mg_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(x, weight, output_grad, options)
    }

    /// Both gradients of [`Self::mg_conv2d`], `(∂x, ∂weight)`, each only where `need` (`[x,
    /// weight]`) asks for it: one call, so that a backend can share work between them.
    fn mg_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
        [need_x, need_w]: [bool; 2],
    ) -> (Option<FloatTensor<Self>>, Option<FloatTensor<Self>>) {
        let dw = need_w.then(|| {
            Self::mg_conv2d_weight_backward(
                x.clone(),
                weight.clone(),
                output_grad.clone(),
                options.clone(),
            )
        });
        let dx = need_x.then(|| Self::mg_conv2d_x_backward(x, weight, output_grad, options));
        (dx, dw)
    }

    /// The gradient of [`Self::mg_conv2d`] with respect to its bias: `output_grad`
    /// (`[n, c, h, w]`) summed over the batch and the grid, `[c]`.
    fn mg_conv2d_bias_backward(output_grad: FloatTensor<Self>) -> FloatTensor<Self> {
        defaults::bias_backward::<Self>(output_grad)
    }

    /// Concatenation along channels: parts `[n, c_i, h, w]` to `[n, Σ c_i, h, w]`.
    fn mg_cat_channels(parts: Vec<FloatTensor<Self>>) -> FloatTensor<Self> {
        Self::float_cat(parts, 1)
    }

    /// The multigrid gather of one level: `[upsample(up), same, maxpool(down)]` by `factors`,
    /// concatenated on channels, a part left out where it is `None` (at least two are given).
    /// `up` is `[n, c_u, h/fh, w/fw]`, `same` `[n, c_s, h, w]`, `down` `[n, c_d, fh·h, fw·w]`;
    /// returns `[n, c_u + c_s + c_d, h, w]`. Its gradient is that of the three ops it is made
    /// of (split, then [`Self::mg_upsample_backward`] and [`Self::mg_maxpool_backward`]).
    fn mg_gather(
        up: Option<FloatTensor<Self>>,
        same: Option<FloatTensor<Self>>,
        down: Option<FloatTensor<Self>>,
        factors: [usize; 2],
    ) -> FloatTensor<Self> {
        defaults::gather::<Self>(up, same, down, factors)
    }

    /// The gradient of [`Self::mg_cat_channels`]: `grad` (`[n, Σ c_i, h, w]`) split along
    /// channels into one `[n, c_i, h, w]` tensor per entry of `sizes`.
    fn mg_split_channels(grad: FloatTensor<Self>, sizes: &[usize]) -> Vec<FloatTensor<Self>> {
        defaults::split_channels::<Self>(grad, sizes)
    }

    /// `x` itself, as a tensor that on an autodiff backend is a node with two parents, `x` and
    /// `anchor` (any shapes): it joins `anchor`'s autodiff graph ([`crate::window_view`]).
    /// Its gradient goes to `x` unchanged; `anchor`'s is zero. No values are copied; on a
    /// backend without autodiff, `x`.
    fn mg_tie(x: FloatTensor<Self>, anchor: FloatTensor<Self>) -> FloatTensor<Self> {
        drop(anchor);
        x
    }

    /// `x` (`[steps·b, …]`, any rank, time-major rows) cut along its first dimension into
    /// `steps` parts `[b, …]`, in time order. Its gradient is the parts' gradients
    /// concatenated (zeros for a part the loss does not reach).
    fn mg_split_steps(x: FloatTensor<Self>, steps: usize) -> Vec<FloatTensor<Self>> {
        defaults::split_steps::<Self>(x, steps)
    }

    /// Nearest upsampling by `factors = [fh, fw]`: `[n, c, h, w]` to `[n, c, fh·h, fw·w]`,
    /// `out[y, x] = x[⌊y/fh⌋, ⌊x/fw⌋]`.
    fn mg_upsample(x: FloatTensor<Self>, factors: [usize; 2]) -> FloatTensor<Self> {
        defaults::upsample::<Self>(x, factors)
    }

    /// The gradient of [`Self::mg_upsample`]: the sum of each `fh × fw` block of `grad`,
    /// `[n, c, fh·h, fw·w]` to `[n, c, h, w]`.
    fn mg_upsample_backward(grad: FloatTensor<Self>, factors: [usize; 2]) -> FloatTensor<Self> {
        defaults::upsample_backward::<Self>(grad, factors)
    }

    /// Max-pooling over non-overlapping `factors = [fh, fw]` blocks (stride = kernel, no
    /// padding): `[n, c, h, w]` to `[n, c, h/fh, w/fw]`.
    fn mg_maxpool(x: FloatTensor<Self>, factors: [usize; 2]) -> FloatTensor<Self> {
        defaults::maxpool::<Self>(x, factors)
    }

    /// The gradient of [`Self::mg_maxpool`]: each entry of `grad` goes to the first maximum
    /// (row-major) of its block of `x`, the rest of `x` gets zero.
    fn mg_maxpool_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        factors: [usize; 2],
    ) -> FloatTensor<Self> {
        defaults::maxpool_backward::<Self>(x, grad, factors)
    }

    /// The whole update in one pass: `(cell', hidden')`, `cell' = σ(f + forget_bias)·cell +
    /// σ(i)·tanh(g)` and `hidden' = σ(o)·tanh(cell')`, each `[n, c, h, w]`.
    fn lstm_step(
        gates: FloatTensor<Self>,
        cell: FloatTensor<Self>,
        forget_bias: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        defaults::lstm_step::<Self>(gates, cell, forget_bias)
    }

    /// The gradients of [`Self::lstm_step`] with respect to `gates` and `cell`, from those of
    /// `cell'` and `hidden'` (`None`: zero).
    fn lstm_step_backward(
        gates: FloatTensor<Self>,
        cell: FloatTensor<Self>,
        forget_bias: f64,
        grad_cell: Option<FloatTensor<Self>>,
        grad_hidden: Option<FloatTensor<Self>>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        defaults::lstm_step_backward::<Self>(gates, cell, forget_bias, grad_cell, grad_hidden)
    }

    /// The DNC's allocation weighting of usages `[b, n]` ([`dnc_allocation`]), `[b, n]`.
    fn mg_dnc_allocation(usage: FloatTensor<Self>, epsilon: f64) -> FloatTensor<Self> {
        memory::defaults::allocation::<Self>(usage, epsilon)
    }

    /// The gradient of [`Self::mg_dnc_allocation`] with respect to the usages, from that of
    /// the weighting (`grad`, `[b, n]`).
    fn mg_dnc_allocation_backward(
        usage: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        memory::defaults::allocation_backward::<Self>(usage, grad, epsilon)
    }

    /// The DNC's link update with the moves along the links ([`dnc_link`]): `[link, forward,
    /// backward]`.
    fn mg_dnc_link(
        prev_link: FloatTensor<Self>,
        prev_precedence: FloatTensor<Self>,
        write_weights: FloatTensor<Self>,
        prev_read_weights: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        memory::defaults::link::<Self>(prev_link, prev_precedence, write_weights, prev_read_weights)
    }

    /// The gradients of [`Self::mg_dnc_link`] with respect to its inputs `[prev_link,
    /// prev_precedence, write_weights, prev_read_weights]`, each where `need` asks for it, from
    /// those of its outputs `[link, forward, backward]` (`None`: zero).
    fn mg_dnc_link_backward(
        inputs: [FloatTensor<Self>; 4],
        grads: [Option<FloatTensor<Self>>; 3],
        need: [bool; 4],
    ) -> [Option<FloatTensor<Self>>; 4] {
        memory::defaults::link_backward::<Self>(inputs, grads, need)
    }
}

/// burn's ops for the LSTM update: the trait's defaults, callable from a backend that
/// overrides them for some float types only.
pub(crate) mod defaults {
    use super::float;
    use burn::tensor::activation::sigmoid;
    use burn::tensor::ops::FloatTensor;
    use burn::tensor::{Shape, Slice, Tensor, TensorMetadata, backend::Backend};

    /// The bias gradient of a convolution: `[n, c, h, w]` summed to `[c]`.
    pub(crate) fn bias_backward<B: Backend>(grad: FloatTensor<B>) -> FloatTensor<B> {
        let [n, c, h, w] = grad.shape().dims();
        let g = B::float_swap_dims(grad, 0, 1);
        let g = B::float_reshape(g, Shape::new([c, n * h * w]));
        B::float_reshape(B::float_sum_dim(g, 1), Shape::new([c]))
    }

    /// [`MgBackend::mg_gather`] as the three ops it is made of.
    pub(crate) fn gather<B: super::MgBackend>(
        up: Option<FloatTensor<B>>,
        same: Option<FloatTensor<B>>,
        down: Option<FloatTensor<B>>,
        factors: [usize; 2],
    ) -> FloatTensor<B> {
        let parts: Vec<_> = [
            up.map(|x| B::mg_upsample(x, factors)),
            same,
            down.map(|x| B::mg_maxpool(x, factors)),
        ]
        .into_iter()
        .flatten()
        .collect();
        B::mg_cat_channels(parts)
    }

    /// Channel slices of `x` (`[n, Σ c_i, h, w]`), burn's views.
    pub(crate) fn split_channels<B: Backend>(
        x: FloatTensor<B>,
        sizes: &[usize],
    ) -> Vec<FloatTensor<B>> {
        let x = float::<B>(x);
        let mut start = 0;
        sizes
            .iter()
            .map(|&c| {
                let part = x.clone().narrow(1, start, c);
                start += c;
                part.into_primitive().tensor()
            })
            .collect()
    }

    /// Time steps of `x` (`[steps·b, …]`) as burn's slices along the first dimension.
    pub(crate) fn split_steps<B: Backend>(x: FloatTensor<B>, steps: usize) -> Vec<FloatTensor<B>> {
        (0..steps)
            .map(|t| B::float_slice(x.clone(), &step_slices(&x.shape(), steps, t)))
            .collect()
    }

    /// The slices that select time step `t` of `steps` from a tensor of `shape`.
    fn step_slices(shape: &Shape, steps: usize, t: usize) -> Vec<Slice> {
        let b = shape[0] / steps;
        let mut slices: Vec<Slice> = shape.iter().map(|&n| Slice::from(0..n)).collect();
        slices[0] = Slice::from(t * b..(t + 1) * b);
        slices
    }

    /// Block max-pooling through burn's pooling (stride = kernel, no padding).
    pub(crate) fn maxpool<B: Backend>(x: FloatTensor<B>, factors: [usize; 2]) -> FloatTensor<B> {
        B::max_pool2d(x, factors, factors, [0, 0], [1, 1], false)
    }

    /// The gradient of block max-pooling through burn's pooling with indices.
    pub(crate) fn maxpool_backward<B: Backend>(
        x: FloatTensor<B>,
        grad: FloatTensor<B>,
        factors: [usize; 2],
    ) -> FloatTensor<B> {
        let (kernel, padding, dilation) = (factors, [0, 0], [1, 1]);
        let indices =
            B::max_pool2d_with_indices(x.clone(), kernel, kernel, padding, dilation, false).indices;
        B::max_pool2d_with_indices_backward(
            x, kernel, kernel, padding, dilation, false, grad, indices,
        )
        .x_grad
    }

    /// Nearest upsampling: `[n, c, h, w]` to `[n, c, fh·h, fw·w]` by a broadcast.
    pub(crate) fn upsample<B: Backend>(x: FloatTensor<B>, [fh, fw]: [usize; 2]) -> FloatTensor<B> {
        let x = float::<B>(x);
        let [n, c, h, w] = x.dims();
        x.reshape([n, c, h, 1, w, 1])
            .expand([n, c, h, fh, w, fw])
            .reshape([n, c, h * fh, w * fw])
            .into_primitive()
            .tensor()
    }

    /// The gradient of [`upsample`]: `[n, c, fh·h, fw·w]` to `[n, c, h, w]` by block sums.
    pub(crate) fn upsample_backward<B: Backend>(
        grad: FloatTensor<B>,
        [fh, fw]: [usize; 2],
    ) -> FloatTensor<B> {
        let grad = float::<B>(grad);
        let [n, c, hh, ww] = grad.dims();
        let (h, w) = (hh / fh, ww / fw);
        let blocks: Tensor<B, 6> = grad.reshape([n, c, h, fh, w, fw]);
        blocks
            .sum_dim(5)
            .sum_dim(3)
            .reshape([n, c, h, w])
            .into_primitive()
            .tensor()
    }

    /// The new cell state `c = σ(f + forget_bias)·cell + σ(i)·tanh(g)`, `[n, c, h, w]`.
    pub(crate) fn lstm_cell<B: Backend>(
        gates: FloatTensor<B>,
        cell: FloatTensor<B>,
        forget_bias: f64,
    ) -> FloatTensor<B> {
        let (gates, cell) = (float::<B>(gates), float::<B>(cell));
        let c = cell.dims()[1];
        let i = sigmoid(gates.clone().narrow(1, 0, c));
        let g = gates.clone().narrow(1, c, c).tanh();
        let f = forget_gate(gates, c, forget_bias);
        (f * cell + i * g).into_primitive().tensor()
    }

    /// The gradients of [`lstm_cell`] with respect to `gates` (zero for `o`) and `cell`.
    pub(crate) fn lstm_cell_backward<B: Backend>(
        gates: FloatTensor<B>,
        cell: FloatTensor<B>,
        forget_bias: f64,
        grad: FloatTensor<B>,
    ) -> (FloatTensor<B>, FloatTensor<B>) {
        let (gates, cell, grad) = (float::<B>(gates), float::<B>(cell), float(grad));
        let c = cell.dims()[1];
        let i = sigmoid(gates.clone().narrow(1, 0, c));
        let g = gates.clone().narrow(1, c, c).tanh();
        let f = forget_gate(gates, c, forget_bias);
        let d_i = grad.clone() * g.clone() * i.clone() * (i.clone().neg() + 1.0);
        let d_g = grad.clone() * i * (g.clone() * g).neg().add_scalar(1.0);
        let d_f = grad.clone() * cell * f.clone() * (f.clone().neg() + 1.0);
        let d_o = d_i.zeros_like();
        let d_cell = grad * f;
        (
            Tensor::cat(vec![d_i, d_g, d_f, d_o], 1)
                .into_primitive()
                .tensor(),
            d_cell.into_primitive().tensor(),
        )
    }

    /// [`super::MgBackend::lstm_step`] as its two halves, [`lstm_cell`] and [`lstm_hidden`].
    pub(crate) fn lstm_step<B: super::MgBackend>(
        gates: FloatTensor<B>,
        cell: FloatTensor<B>,
        forget_bias: f64,
    ) -> (FloatTensor<B>, FloatTensor<B>) {
        let new_cell = lstm_cell::<B>(gates.clone(), cell, forget_bias);
        let hidden = lstm_hidden::<B>(gates, new_cell.clone());
        (new_cell, hidden)
    }

    /// [`super::MgBackend::lstm_step_backward`] through the halves' backwards: the hidden
    /// state's gradient reaches the new cell state, which is recomputed.
    pub(crate) fn lstm_step_backward<B: super::MgBackend>(
        gates: FloatTensor<B>,
        cell: FloatTensor<B>,
        forget_bias: f64,
        grad_cell: Option<FloatTensor<B>>,
        grad_hidden: Option<FloatTensor<B>>,
    ) -> (FloatTensor<B>, FloatTensor<B>) {
        let (d_gates_hidden, grad_cell) = match grad_hidden {
            Some(grad) => {
                let new_cell = lstm_cell::<B>(gates.clone(), cell.clone(), forget_bias);
                let (d_gates, d_cell) = lstm_hidden_backward::<B>(gates.clone(), new_cell, grad);
                let grad_cell = match grad_cell {
                    Some(g) => B::float_add(g, d_cell),
                    None => d_cell,
                };
                (Some(d_gates), grad_cell)
            }
            None => {
                let zeros =
                    || B::float_zeros(cell.shape(), &B::float_device(&cell), cell.dtype().into());
                (None, grad_cell.unwrap_or_else(zeros))
            }
        };
        let (d_gates, d_cell) = lstm_cell_backward::<B>(gates, cell, forget_bias, grad_cell);
        let d_gates = match d_gates_hidden {
            Some(d) => B::float_add(d_gates, d),
            None => d_gates,
        };
        (d_gates, d_cell)
    }

    /// The forget gate `σ(f + forget_bias)` of gates `[n, 4·c, h, w]`.
    fn forget_gate<B: Backend>(gates: Tensor<B, 4>, c: usize, forget_bias: f64) -> Tensor<B, 4> {
        let f = gates.narrow(1, 2 * c, c);
        sigmoid(if forget_bias == 0.0 {
            f
        } else {
            f.add_scalar(forget_bias)
        })
    }

    /// The hidden state `h = σ(o)·tanh(cell)`, `[n, c, h, w]`, from the new cell state.
    pub(crate) fn lstm_hidden<B: Backend>(
        gates: FloatTensor<B>,
        cell: FloatTensor<B>,
    ) -> FloatTensor<B> {
        let (gates, cell) = (float::<B>(gates), float::<B>(cell));
        let c = cell.dims()[1];
        let o = sigmoid(gates.narrow(1, 3 * c, c));
        (o * cell.tanh()).into_primitive().tensor()
    }

    /// The gradients of [`lstm_hidden`] with respect to `gates` (zero but for `o`) and `cell`.
    pub(crate) fn lstm_hidden_backward<B: Backend>(
        gates: FloatTensor<B>,
        cell: FloatTensor<B>,
        grad: FloatTensor<B>,
    ) -> (FloatTensor<B>, FloatTensor<B>) {
        let (gates, cell, grad) = (float::<B>(gates), float::<B>(cell), float(grad));
        let c = cell.dims()[1];
        let o = sigmoid(gates.narrow(1, 3 * c, c));
        let t = cell.tanh();
        let d_o = grad.clone() * t.clone() * o.clone() * (o.clone().neg() + 1.0);
        let d_cell = grad * o * (t.clone() * t).neg().add_scalar(1.0);
        let zeros = d_o.zeros_like();
        (
            Tensor::cat(vec![zeros.clone(), zeros.clone(), zeros, d_o], 1)
                .into_primitive()
                .tensor(),
            d_cell.into_primitive().tensor(),
        )
    }
}

fn float<B: Backend>(x: FloatTensor<B>) -> Tensor<B, 4> {
    Tensor::from_primitive(TensorPrimitive::Float(x))
}

/// [`MgBackend::mg_conv2d`] on tensors.
///
/// # Shapes
/// - `x`: `[n, c_in, h, w]`, `weight`: `[c_out, c_in, kh, kw]`, `bias`: `[c_out]`
/// - returns `[n, c_out, h_out, w_out]`
pub fn conv2d<B: MgBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: ConvOptions<2>,
) -> Tensor<B, 4> {
    Tensor::from_primitive(TensorPrimitive::Float(B::mg_conv2d(
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        bias.map(|b| b.into_primitive().tensor()),
        options,
    )))
}

/// [`MgBackend::mg_cat_channels`] on tensors: concatenation along channels (dimension 1),
/// whose backward gives each part its gradient as one contiguous tensor.
///
/// # Shapes
/// - `parts[i]`: `[n, c_i, h, w]`
/// - returns `[n, Σ c_i, h, w]`
///
/// # Panics
/// If `parts` is empty or the parts differ in batch or grid size.
pub fn cat_channels<B: MgBackend>(parts: Vec<Tensor<B, 4>>) -> Tensor<B, 4> {
    let first = parts.first().map(|p| p.dims());
    let Some([n, _, h, w]) = first else {
        panic!("cat_channels: no parts to concatenate");
    };
    for part in &parts {
        let [pn, _, ph, pw] = part.dims();
        assert!(
            [pn, ph, pw] == [n, h, w],
            "cat_channels: part {:?} does not fit {:?} (same batch and grid expected)",
            part.dims(),
            first.expect("a first part")
        );
    }
    if parts.len() == 1 {
        return parts.into_iter().next().expect("one part");
    }
    float(B::mg_cat_channels(
        parts
            .into_iter()
            .map(|p| p.into_primitive().tensor())
            .collect(),
    ))
}

/// [`MgBackend::mg_tie`] on tensors: `x`'s values, joined to `anchor`'s autodiff graph, with
/// `x`'s gradient passed on unchanged and a zero one for `anchor`.
///
/// # Shapes
/// - `x`: any; `anchor`: any
/// - returns `x`'s shape
pub fn tie<B: MgBackend, const D: usize, const E: usize>(
    x: Tensor<B, D>,
    anchor: Tensor<B, E>,
) -> Tensor<B, D> {
    let tied = B::mg_tie(
        x.into_primitive().tensor(),
        anchor.into_primitive().tensor(),
    );
    Tensor::from_primitive(TensorPrimitive::Float(tied))
}

/// [`MgBackend::mg_split_steps`] on tensors: time-major rows cut into their `steps` time
/// steps, with a backward that concatenates the steps' gradients once.
///
/// # Shapes
/// - `x`: `[steps·b, …]`
/// - returns `steps` tensors `[b, …]`, in time order
///
/// # Panics
/// If `steps` is 0 or does not divide the first dimension.
pub fn split_steps<B: MgBackend, const D: usize>(
    x: Tensor<B, D>,
    steps: usize,
) -> Vec<Tensor<B, D>> {
    let n = x.dims()[0];
    assert!(
        steps > 0 && n.is_multiple_of(steps),
        "split_steps: {n} rows do not split into {steps} time steps"
    );
    B::mg_split_steps(x.into_primitive().tensor(), steps)
        .into_iter()
        .map(|p| Tensor::from_primitive(TensorPrimitive::Float(p)))
        .collect()
}

/// [`MgBackend::mg_upsample`] on tensors: nearest upsampling by `factors = [fh, fw]`.
///
/// # Shapes
/// - `x`: `[n, c, h, w]`
/// - returns `[n, c, fh·h, fw·w]`
///
/// # Panics
/// If a factor is 0.
pub fn upsample<B: MgBackend>(x: Tensor<B, 4>, factors: [usize; 2]) -> Tensor<B, 4> {
    assert!(
        factors.iter().all(|&f| f > 0),
        "upsample: factors {factors:?} must be at least 1"
    );
    float(B::mg_upsample(x.into_primitive().tensor(), factors))
}

/// [`MgBackend::mg_maxpool`] on tensors: max-pooling over `factors = [fh, fw]` blocks.
///
/// # Shapes
/// - `x`: `[n, c, h, w]`, `h` and `w` multiples of the factors
/// - returns `[n, c, h/fh, w/fw]`
///
/// # Panics
/// If a factor is 0 or does not divide its side.
pub fn maxpool<B: MgBackend>(x: Tensor<B, 4>, factors: [usize; 2]) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    assert!(
        factors[0] > 0 && factors[1] > 0 && h % factors[0] == 0 && w % factors[1] == 0,
        "maxpool: factors {factors:?} must be at least 1 and divide the grid {h}×{w}"
    );
    float(B::mg_maxpool(x.into_primitive().tensor(), factors))
}

/// [`MgBackend::mg_gather`] on tensors: `[upsample(up), same, maxpool(down)]` by `factors`,
/// concatenated on channels, each part optional.
///
/// # Shapes
/// - `up`: `[n, c_u, h/fh, w/fw]`, `same`: `[n, c_s, h, w]`, `down`: `[n, c_d, fh·h, fw·w]`
/// - returns `[n, c_u + c_s + c_d, h, w]`
///
/// # Panics
/// If no part is given, a factor is 0 or does not divide `down`'s grid, or the parts' batch
/// or grid sizes do not fit together.
pub fn gather<B: MgBackend>(
    up: Option<Tensor<B, 4>>,
    same: Option<Tensor<B, 4>>,
    down: Option<Tensor<B, 4>>,
    [fh, fw]: [usize; 2],
) -> Tensor<B, 4> {
    assert!(
        fh > 0 && fw > 0,
        "gather: factors {:?} must be at least 1",
        [fh, fw]
    );
    let sizes = [
        up.as_ref().map(|x| {
            let [n, _, h, w] = x.dims();
            [n, h * fh, w * fw]
        }),
        same.as_ref().map(|x| {
            let [n, _, h, w] = x.dims();
            [n, h, w]
        }),
        down.as_ref().map(|x| {
            let [n, _, h, w] = x.dims();
            assert!(
                h % fh == 0 && w % fw == 0,
                "gather: factors {:?} must divide the finer grid {h}×{w}",
                [fh, fw]
            );
            [n, h / fh, w / fw]
        }),
    ];
    let mut given = sizes.iter().flatten();
    let first = *given.next().expect("gather: no parts to concatenate");
    assert!(
        given.all(|size| *size == first),
        "gather: the parts' [batch, height, width] at the output level, {sizes:?}, differ"
    );
    match (up, same, down) {
        (Some(up), None, None) => upsample(up, [fh, fw]),
        (None, Some(same), None) => same,
        (None, None, Some(down)) => maxpool(down, [fh, fw]),
        (up, same, down) => {
            let part = |x: Option<Tensor<B, 4>>| x.map(|x| x.into_primitive().tensor());
            float(B::mg_gather(part(up), part(same), part(down), [fh, fw]))
        }
    }
}

/// [`MgBackend::lstm_step`] on tensors: the new cell state `σ(f + forget_bias)·cell +
/// σ(i)·tanh(g)` and the hidden state `σ(o)·tanh(cell')` in one pass, with one backward for
/// both.
///
/// The forget bias is a constant of the update rather than part of the gates' bias: a bias
/// shifted in the forward pass would be a new tensor derived from a parameter at every step,
/// and burn's autodiff merges each such tensor's graph into the window's (a cost that grows
/// with the graph, so with the window's length).
///
/// # Shapes
/// - `gates`: `[n, 4·c, h, w]` split `(i, g, f, o)`, `cell`: `[n, c, h, w]`
/// - returns `(cell', hidden')`, each `[n, c, h, w]`
pub fn lstm_step<B: MgBackend>(
    gates: Tensor<B, 4>,
    cell: Tensor<B, 4>,
    forget_bias: f64,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    check_gates("lstm_step", &gates, &cell);
    let (cell, hidden) = B::lstm_step(
        gates.into_primitive().tensor(),
        cell.into_primitive().tensor(),
        forget_bias,
    );
    (float(cell), float(hidden))
}

fn check_gates<B: Backend>(name: &str, gates: &Tensor<B, 4>, cell: &Tensor<B, 4>) {
    let [n, g, h, w] = gates.dims();
    let [cn, c, ch, cw] = cell.dims();
    assert!(
        g == 4 * c && [n, h, w] == [cn, ch, cw],
        "{name}: gates {:?} do not fit the cell state {:?} (expected [n, 4·c, h, w])",
        gates.dims(),
        cell.dims()
    );
}

/// The instruction set the project's own CPU kernel loops run with on this machine, chosen at
/// run time: `x86-64-v4` (AVX-512), `x86-64-v3` (AVX2 and FMA) or `x86-64` on x86-64, the
/// architecture's name elsewhere; `None` without the `flex` feature, which has the kernels.
/// (The `gemm` crate's matrix products choose their own microkernels.)
pub fn cpu_kernel_isa() -> Option<&'static str> {
    #[cfg(feature = "flex")]
    {
        Some(kernels::simd_level())
    }
    #[cfg(not(feature = "flex"))]
    {
        None
    }
}

/// Whether the project's CPU kernels are used where a backend has them (default: yes).
///
/// Off, every backend runs burn's own ops; used to compare the two in tests and benchmarks.
pub fn cpu_kernels_enabled() -> bool {
    !KERNELS_OFF.load(std::sync::atomic::Ordering::Relaxed)
}

/// Turns the project's CPU kernels on or off for the whole process (see
/// [`cpu_kernels_enabled`]).
pub fn set_cpu_kernels(enabled: bool) {
    KERNELS_OFF.store(!enabled, std::sync::atomic::Ordering::Relaxed);
}

static KERNELS_OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

thread_local! {
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the CPU kernels it calls kept on the calling thread (none of their work is
/// split over the kernels' thread pool). For callers that already run one `f` per core, such
/// as data-parallel training: their threads would otherwise queue for the same pool.
pub fn with_serial_kernels<R>(f: impl FnOnce() -> R) -> R {
    /// Puts the thread's setting back when `f` returns or unwinds.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SERIAL.with(|s| s.replace(true)));
    f()
}

/// Whether the calling thread runs inside [`with_serial_kernels`].
#[cfg_attr(not(feature = "flex"), allow(dead_code))]
pub(crate) fn serial_kernels() -> bool {
    SERIAL.with(|s| s.get())
}

#[cfg(feature = "ndarray")]
impl MgBackend for burn::backend::NdArray {}

#[cfg(feature = "wgpu")]
impl MgBackend for burn::backend::Wgpu {}

/// With burn's fusion on, `burn::backend::Wgpu` is the fused backend; the plain CubeCL one
/// (what the GPU test suites run) is this.
#[cfg(all(feature = "wgpu", feature = "fusion"))]
impl MgBackend for PlainWgpu {}

/// The wgpu backend without fusion.
#[cfg(feature = "wgpu")]
pub type PlainWgpu =
    burn::backend::wgpu::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;

#[cfg(feature = "cuda")]
impl MgBackend for burn::backend::Cuda {}

/// An `Autodiff` backend over an [`MgBackend`] (the training backend).
pub trait MgAutodiffBackend:
    burn::tensor::backend::AutodiffBackend<InnerBackend: MgBackend> + MgBackend
{
}

impl<B: MgBackend> MgAutodiffBackend for Autodiff<B> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The setting holds inside the closure, nests, and is put back on return and on a panic.
    #[test]
    fn serial_kernels_are_scoped() {
        assert!(!serial_kernels());
        with_serial_kernels(|| {
            assert!(serial_kernels());
            with_serial_kernels(|| assert!(serial_kernels()));
            assert!(serial_kernels());
        });
        assert!(!serial_kernels());
        let panicked = std::panic::catch_unwind(|| with_serial_kernels(|| panic!("inside")));
        assert!(panicked.is_err());
        assert!(!serial_kernels());
    }
}

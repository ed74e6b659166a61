//! [`MgBackend`] for `Autodiff<B>`: custom backward nodes that call `B`'s backward ops.
//!
//! Each op keeps the primitives its backward needs (inputs, not outputs) and computes only
//! the gradients of parents that require one.

use burn::backend::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use std::sync::{Arc, Mutex, PoisonError};

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::{ConvOptions, FloatTensor, FloatTensorOps};
use burn::tensor::{DType, Shape, TensorMetadata};

use super::MgBackend;

type Primitive<B> = FloatTensor<B>;

/// The ids of the parents that need a gradient (their node type is private to burn).
macro_rules! ids {
    ($parents:expr) => {
        $parents.map(|parent| parent.map(|node| node.id))
    };
}

#[derive(Debug)]
struct Conv2d;

#[derive(Debug)]
struct Conv2dBias;

type ConvState<B> = (Primitive<B>, Primitive<B>, ConvOptions<2>);

/// Registers the input and weight gradients of a convolution.
fn conv_backward<B: MgBackend>(
    [node_x, node_w]: [Option<NodeId>; 2],
    grad: Primitive<B>,
    (x, weight, options): ConvState<B>,
    grads: &mut Gradients,
) {
    let need = [node_x.is_some(), node_w.is_some()];
    if need == [false, false] {
        return;
    }
    let (dx, dw) = B::mg_conv2d_backward(x, weight, grad, options, need);
    if let (Some(node), Some(g)) = (node_w, dw) {
        grads.register::<B>(node, g);
    }
    if let (Some(node), Some(g)) = (node_x, dx) {
        grads.register::<B>(node, g);
    }
}

impl<B: MgBackend> Backward<B, 2> for Conv2d {
    type State = ConvState<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        conv_backward::<B>(ids!(ops.parents), grad, ops.state, grads);
    }
}

impl<B: MgBackend> Backward<B, 3> for Conv2dBias {
    type State = ConvState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ids!(ops.parents);
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node_b {
            grads.register::<B>(node, B::mg_conv2d_bias_backward(grad.clone()));
        }
        conv_backward::<B>([node_x, node_w], grad, ops.state, grads);
    }
}

fn register_pair<B: MgBackend>(
    [node_a, node_b]: [Option<NodeId>; 2],
    grad_a: Primitive<B>,
    grad_b: Primitive<B>,
    grads: &mut Gradients,
) {
    if let Some(node) = node_a {
        grads.register::<B>(node, grad_a);
    }
    if let Some(node) = node_b {
        grads.register::<B>(node, grad_b);
    }
}

/// A channel concatenation of `N` parts; its state is the parts' channel counts.
#[derive(Debug)]
struct CatChannels;

impl<B: MgBackend, const N: usize> Backward<B, N> for CatChannels {
    type State = Vec<usize>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let parts = B::mg_split_channels(grad, &ops.state);
        for (node, part) in ids!(ops.parents).into_iter().zip(parts) {
            if let Some(node) = node {
                grads.register::<B>(node, part);
            }
        }
    }
}

/// The autodiff node of a channel concatenation of `N` parts.
fn cat_channels<B: MgBackend, C: CheckpointStrategy, const N: usize>(
    parts: Vec<FloatTensor<Autodiff<B, C>>>,
) -> FloatTensor<Autodiff<B, C>> {
    let nodes: [_; N] = parts
        .iter()
        .map(|p| p.node.clone())
        .collect::<Vec<_>>()
        .try_into()
        .expect("N parts");
    let sizes: Vec<usize> = parts.iter().map(|p| p.primitive.shape()[1]).collect();
    let primitives = parts.into_iter().map(|p| p.primitive).collect();
    match CatChannels.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(sizes, B::mg_cat_channels(primitives)),
        OpsKind::UnTracked(prep) => prep.finish(B::mg_cat_channels(primitives)),
    }
}

/// The gradients of the outputs of one multi-output node, one slot per output: filled by the
/// outputs' [`Output`] nodes, taken by the node.
///
/// burn's autodiff gives a node one output, so a node with several is built as a node of its
/// own (holding the inputs as parents) with one [`Output`] node per output below it. Its
/// backward runs after all of theirs (a node's backward runs after those of every node deeper
/// in the graph) and finds their gradients in the slots. Nothing is registered on the node
/// itself, and it consumes nothing.
type Slots<B> = Arc<Mutex<Vec<Option<Primitive<B>>>>>;

/// Output `k` of a multi-output node: its backward files its gradient in slot `k`.
#[derive(Debug)]
struct Output;

impl<B: MgBackend> Backward<B, 1> for Output {
    type State = (Slots<B>, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (slots, k) = ops.state;
        slots.lock().unwrap_or_else(PoisonError::into_inner)[k] = Some(grad);
    }
}

/// Empty slots for `n` outputs.
fn slots<B: MgBackend>(n: usize) -> Slots<B> {
    Arc::new(Mutex::new(vec![None; n]))
}

/// The gradients the outputs filed (`None` for an output the loss does not reach).
fn take_slots<B: MgBackend>(slots: &Slots<B>) -> Vec<Option<Primitive<B>>> {
    std::mem::take(&mut *slots.lock().unwrap_or_else(PoisonError::into_inner))
}

/// The outputs of the multi-output node `node`: one [`Output`] node per primitive.
fn outputs<B: MgBackend, C: CheckpointStrategy>(
    node: &FloatTensor<Autodiff<B, C>>,
    primitives: Vec<Primitive<B>>,
    slots: &Slots<B>,
) -> Vec<FloatTensor<Autodiff<B, C>>> {
    primitives
        .into_iter()
        .enumerate()
        .map(|(k, primitive)| {
            match Output
                .prepare::<C>([node.node.clone()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => prep.finish((slots.clone(), k), primitive),
                OpsKind::UnTracked(prep) => prep.finish(primitive),
            }
        })
        .collect()
}

/// A cut into time steps ([`MgBackend::mg_split_steps`]): its backward registers the steps'
/// gradients on the tensor as one concatenation.
#[derive(Debug)]
struct SplitSteps;

/// `(slots, shape of one step, device, dtype)`.
type SplitState<B> = (Slots<B>, Shape, burn::tensor::Device<B>, DType);

impl<B: MgBackend> Backward<B, 1> for SplitSteps {
    type State = SplitState<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (slots, part_shape, device, dtype) = ops.state;
        let parts = take_slots::<B>(&slots);
        if let [Some(node)] = ids!(ops.parents) {
            let zeros = || B::float_zeros(part_shape.clone(), &device, dtype.into());
            let parts = parts.into_iter().map(|g| g.unwrap_or_else(zeros)).collect();
            grads.register::<B>(node, B::float_cat(parts, 0));
        }
    }
}

/// The LSTM update with both outputs ([`MgBackend::lstm_step`]); its state is the inputs and
/// the forget bias.
#[derive(Debug)]
struct LstmStep;

impl<B: MgBackend> Backward<B, 2> for LstmStep {
    type State = (Slots<B>, Primitive<B>, Primitive<B>, f64);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (slots, gates, cell, forget_bias) = ops.state;
        let mut taken = take_slots::<B>(&slots).into_iter();
        let (grad_cell, grad_hidden) = (taken.next().flatten(), taken.next().flatten());
        if grad_cell.is_none() && grad_hidden.is_none() {
            return;
        }
        let (d_gates, d_cell) =
            B::lstm_step_backward(gates, cell, forget_bias, grad_cell, grad_hidden);
        register_pair::<B>(ids!(ops.parents), d_gates, d_cell, grads);
    }
}

/// The DNC allocation ([`MgBackend::mg_dnc_allocation`]); its state is the usages and `ε`.
#[derive(Debug)]
struct DncAllocation;

impl<B: MgBackend> Backward<B, 1> for DncAllocation {
    type State = (Primitive<B>, f64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        if let [Some(node)] = ids!(ops.parents) {
            let (usage, epsilon) = ops.state;
            let d_usage = B::mg_dnc_allocation_backward(usage, grad, epsilon);
            grads.register::<B>(node, d_usage);
        }
    }
}

/// The DNC link update with its moves ([`MgBackend::mg_dnc_link`], three outputs); its state
/// is the four inputs.
#[derive(Debug)]
struct DncLinkStep;

impl<B: MgBackend> Backward<B, 4> for DncLinkStep {
    type State = (Slots<B>, [Primitive<B>; 4]);

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (slots, inputs) = ops.state;
        let mut taken = take_slots::<B>(&slots).into_iter();
        let output_grads: [Option<Primitive<B>>; 3] =
            std::array::from_fn(|_| taken.next().flatten());
        let parents = ids!(ops.parents);
        let need = parents.map(|p| p.is_some());
        if output_grads.iter().all(Option::is_none) || !need.contains(&true) {
            return;
        }
        let d_inputs = B::mg_dnc_link_backward(inputs, output_grads, need);
        for (parent, d) in parents.into_iter().zip(d_inputs) {
            if let (Some(node), Some(d)) = (parent, d) {
                grads.register::<B>(node, d);
            }
        }
    }
}

#[derive(Debug)]
struct Tie;

impl<B: MgBackend> Backward<B, 2> for Tie {
    /// The anchor's shape and dtype, for its zero gradient.
    type State = (Shape, DType);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_anchor] = ids!(ops.parents);
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node_anchor {
            // Registered, not left out: the anchor's own backward step reads a gradient.
            let (shape, dtype) = ops.state;
            let zero = B::float_zeros(shape, &B::float_device(&grad), dtype.into());
            grads.register::<B>(node, zero);
        }
        if let Some(node) = node_x {
            grads.register::<B>(node, grad);
        }
    }
}

#[derive(Debug)]
struct Upsample;

impl<B: MgBackend> Backward<B, 1> for Upsample {
    type State = [usize; 2];

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        if let [Some(node)] = ids!(ops.parents) {
            grads.register::<B>(node, B::mg_upsample_backward(grad, ops.state));
        }
    }
}

#[derive(Debug)]
struct Maxpool;

impl<B: MgBackend> Backward<B, 1> for Maxpool {
    type State = (Primitive<B>, [usize; 2]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        if let [Some(node)] = ids!(ops.parents) {
            let (x, factors) = ops.state;
            grads.register::<B>(node, B::mg_maxpool_backward(x, grad, factors));
        }
    }
}

/// A multigrid gather of `N` parts: each present part's kind and channel count, the factors,
/// and the finer level's values for max-pooling's gradient.
#[derive(Debug)]
struct Gather;

/// Which neighbour of the output level a gathered part comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Part {
    Coarser,
    Same,
    Finer,
}

type GatherState<B> = (Vec<(Part, usize)>, [usize; 2], Option<Primitive<B>>);

impl<B: MgBackend, const N: usize> Backward<B, N> for Gather {
    type State = GatherState<B>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (parts, factors, mut finer) = ops.state;
        let sizes: Vec<usize> = parts.iter().map(|&(_, c)| c).collect();
        let split = B::mg_split_channels(grad, &sizes);
        for ((node, grad), (part, _)) in ids!(ops.parents).into_iter().zip(split).zip(parts) {
            let Some(node) = node else { continue };
            let grad = match part {
                Part::Coarser => B::mg_upsample_backward(grad, factors),
                Part::Same => grad,
                Part::Finer => {
                    let x = finer.take().expect("the finer level's values");
                    B::mg_maxpool_backward(x, grad, factors)
                }
            };
            grads.register::<B>(node, grad);
        }
    }
}

/// The autodiff node of a gather of `N` parts, computed by `B`'s fused gather.
fn gather<B: MgBackend, C: CheckpointStrategy, const N: usize>(
    parts: Vec<(Part, FloatTensor<Autodiff<B, C>>)>,
    factors: [usize; 2],
) -> FloatTensor<Autodiff<B, C>> {
    let nodes: [_; N] = parts
        .iter()
        .map(|(_, p)| p.node.clone())
        .collect::<Vec<_>>()
        .try_into()
        .expect("N parts");
    let kinds = parts
        .iter()
        .map(|(part, p)| (*part, p.primitive.shape()[1]))
        .collect();
    let mut inner: [Option<Primitive<B>>; 3] = [None, None, None];
    for (part, p) in parts {
        inner[part as usize] = Some(p.primitive);
    }
    let finer = inner[Part::Finer as usize].clone();
    let [coarser, same, fine] = inner;
    let out = B::mg_gather(coarser, same, fine, factors);
    match Gather.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((kinds, factors, finer), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

impl<B: MgBackend, C: CheckpointStrategy> MgBackend for Autodiff<B, C> {
    fn mg_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match bias {
            Some(bias) => match Conv2dBias
                .prepare::<C>([x.node.clone(), weight.node.clone(), bias.node.clone()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let state = (
                        x.primitive.clone(),
                        weight.primitive.clone(),
                        options.clone(),
                    );
                    let out =
                        B::mg_conv2d(x.primitive, weight.primitive, Some(bias.primitive), options);
                    prep.finish(state, out)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::mg_conv2d(
                    x.primitive,
                    weight.primitive,
                    Some(bias.primitive),
                    options,
                )),
            },
            None => match Conv2d
                .prepare::<C>([x.node.clone(), weight.node.clone()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let state = (
                        x.primitive.clone(),
                        weight.primitive.clone(),
                        options.clone(),
                    );
                    prep.finish(
                        state,
                        B::mg_conv2d(x.primitive, weight.primitive, None, options),
                    )
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(B::mg_conv2d(x.primitive, weight.primitive, None, options))
                }
            },
        }
    }

    fn mg_cat_channels(parts: Vec<FloatTensor<Self>>) -> FloatTensor<Self> {
        match parts.len() {
            2 => cat_channels::<B, C, 2>(parts),
            3 => cat_channels::<B, C, 3>(parts),
            4 => cat_channels::<B, C, 4>(parts),
            _ => Self::float_cat(parts, 1),
        }
    }

    fn mg_gather(
        up: Option<FloatTensor<Self>>,
        same: Option<FloatTensor<Self>>,
        down: Option<FloatTensor<Self>>,
        factors: [usize; 2],
    ) -> FloatTensor<Self> {
        // One part or none: the op it is, no gather node.
        if [&up, &same, &down].into_iter().flatten().count() < 2 {
            return super::defaults::gather::<Self>(up, same, down, factors);
        }
        let parts: Vec<_> = [(Part::Coarser, up), (Part::Same, same), (Part::Finer, down)]
            .into_iter()
            .filter_map(|(part, x)| x.map(|x| (part, x)))
            .collect();
        match parts.len() {
            2 => gather::<B, C, 2>(parts, factors),
            _ => gather::<B, C, 3>(parts, factors),
        }
    }

    fn mg_split_steps(x: FloatTensor<Self>, steps: usize) -> Vec<FloatTensor<Self>> {
        let parts = B::mg_split_steps(x.primitive.clone(), steps);
        let prep = match SplitSteps
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep,
            OpsKind::UnTracked(_) => return parts.into_iter().map(Self::from_inner).collect(),
        };
        let slots = slots::<B>(steps);
        let device = B::float_device(&x.primitive);
        let part_shape = parts[0].shape();
        let state = (slots.clone(), part_shape, device, x.primitive.dtype());
        let node: FloatTensor<Self> = prep.finish(state, x.primitive);
        outputs::<B, C>(&node, parts, &slots)
    }

    fn lstm_step(
        gates: FloatTensor<Self>,
        cell: FloatTensor<Self>,
        forget_bias: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (new_cell, hidden) =
            B::lstm_step(gates.primitive.clone(), cell.primitive.clone(), forget_bias);
        let prep = match LstmStep
            .prepare::<C>([gates.node.clone(), cell.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep,
            OpsKind::UnTracked(_) => return (Self::from_inner(new_cell), Self::from_inner(hidden)),
        };
        let slots = slots::<B>(2);
        // The node's own value is never read (its outputs are the two below it).
        let state = (slots.clone(), gates.primitive, cell.primitive, forget_bias);
        let node: FloatTensor<Self> = prep.finish(state, new_cell.clone());
        let mut out = outputs::<B, C>(&node, vec![new_cell, hidden], &slots).into_iter();
        let new_cell = out.next().expect("the cell state");
        (new_cell, out.next().expect("the hidden state"))
    }

    fn mg_dnc_allocation(usage: FloatTensor<Self>, epsilon: f64) -> FloatTensor<Self> {
        match DncAllocation
            .prepare::<C>([usage.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (usage.primitive.clone(), epsilon);
                prep.finish(state, B::mg_dnc_allocation(usage.primitive, epsilon))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::mg_dnc_allocation(usage.primitive, epsilon)),
        }
    }

    fn mg_dnc_link(
        prev_link: FloatTensor<Self>,
        prev_precedence: FloatTensor<Self>,
        write_weights: FloatTensor<Self>,
        prev_read_weights: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        let inputs = [prev_link, prev_precedence, write_weights, prev_read_weights];
        let prep = match DncLinkStep
            .prepare::<C>(inputs.each_ref().map(|t| t.node.clone()))
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep,
            OpsKind::UnTracked(_) => {
                // The primitives move on, so that the backend may update a link no one else
                // holds in place.
                let [a, b, c, d] = inputs.map(|t| t.primitive);
                return B::mg_dnc_link(a, b, c, d).map(Self::from_inner);
            }
        };
        let [a, b, c, d] = inputs.each_ref().map(|t| t.primitive.clone());
        let results = B::mg_dnc_link(a, b, c, d);
        let slots = slots::<B>(3);
        // The node's own value is never read (its outputs are the three below it).
        let state = (slots.clone(), inputs.map(|t| t.primitive));
        let node: FloatTensor<Self> = prep.finish(state, results[0].clone());
        outputs::<B, C>(&node, results.into(), &slots)
            .try_into()
            .unwrap_or_else(|_| unreachable!("three outputs"))
    }

    fn mg_tie(x: FloatTensor<Self>, anchor: FloatTensor<Self>) -> FloatTensor<Self> {
        match Tie
            .prepare::<C>([x.node.clone(), anchor.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (anchor.primitive.shape(), anchor.primitive.dtype());
                prep.finish(state, x.primitive)
            }
            OpsKind::UnTracked(prep) => prep.finish(x.primitive),
        }
    }

    fn mg_upsample(x: FloatTensor<Self>, factors: [usize; 2]) -> FloatTensor<Self> {
        match Upsample
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(factors, B::mg_upsample(x.primitive, factors)),
            OpsKind::UnTracked(prep) => prep.finish(B::mg_upsample(x.primitive, factors)),
        }
    }

    fn mg_maxpool(x: FloatTensor<Self>, factors: [usize; 2]) -> FloatTensor<Self> {
        match Maxpool
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = (x.primitive.clone(), factors);
                prep.finish(state, B::mg_maxpool(x.primitive, factors))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::mg_maxpool(x.primitive, factors)),
        }
    }
}

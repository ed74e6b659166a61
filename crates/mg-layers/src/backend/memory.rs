//! The two memory-addressing ops of the DNC baseline that dominate its cost at the paper's
//! sizes (`N = 500` slots): the allocation weighting (a sort of the usages) and the temporal
//! link update with the moves along the links. Defaults on burn's ops for every backend; the
//! Flex kernels are in `memory_kernels.rs`.
//!
//! Shapes: `b` batch rows, `n` memory slots, `k` write heads, `r` read heads.

use burn::tensor::ops::FloatTensor;
use burn::tensor::{Int, Tensor, TensorPrimitive, backend::Backend};

use super::MgBackend;

fn tensor<B: Backend, const D: usize>(x: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(x))
}

fn primitive<B: Backend, const D: usize>(x: Tensor<B, D>) -> FloatTensor<B> {
    x.into_primitive().tensor()
}

/// The DNC's allocation weighting (free list) of usages `[b, n]`, `[b, n]`: with
/// `ũ = ε + (1 − ε)·u` and the slots in descending order of `1 − ũ` (ties: lower slot first),
/// `a[φ_j] = (1 − ũ[φ_j]) · Π_{m<j} ũ[φ_m]`. Its gradient flows through the usages, never
/// through the order (DeepMind's `top_k` and exclusive cumulative product).
///
/// # Panics
/// If `epsilon` is not in `(0, 1)`.
pub fn dnc_allocation<B: MgBackend>(usage: Tensor<B, 2>, epsilon: f64) -> Tensor<B, 2> {
    assert!(
        epsilon > 0.0 && epsilon < 1.0,
        "dnc_allocation: epsilon {epsilon} must be in (0, 1)"
    );
    tensor(B::mg_dnc_allocation(primitive(usage), epsilon))
}

/// The outputs of [`dnc_link`].
#[derive(Clone, Debug)]
pub struct DncLink<B: Backend> {
    /// The new link matrices `L_t`, `[b, k, n, n]`.
    pub link: Tensor<B, 4>,
    /// Moves forward along each write head's new links from each read head's previous
    /// weighting, `f[n] = Σ_m L_t[n, m]·w[m]`, `[b, r, k, n]`.
    pub forward: Tensor<B, 4>,
    /// Moves backward, `b[m] = Σ_n L_t[n, m]·w[n]`, `[b, r, k, n]`.
    pub backward: Tensor<B, 4>,
}

/// The DNC's temporal link update with the directional read weights, in one op: per write
/// head, `L_t[i, j] = (1 − w[i] − w[j])·L_{t−1}[i, j] + w[i]·p_{t−1}[j]` with the diagonal
/// set to 0, then [`DncLink::forward`] and [`DncLink::backward`] from the previous read
/// weights.
///
/// # Shapes
/// - `prev_link`: `[b, k, n, n]`
/// - `prev_precedence`, `write_weights`: `[b, k, n]`
/// - `prev_read_weights`: `[b, r, n]`
///
/// # Panics
/// If the shapes do not fit together.
pub fn dnc_link<B: MgBackend>(
    prev_link: Tensor<B, 4>,
    prev_precedence: Tensor<B, 3>,
    write_weights: Tensor<B, 3>,
    prev_read_weights: Tensor<B, 3>,
) -> DncLink<B> {
    let [b, k, n, n2] = prev_link.dims();
    let [rb, _, rn] = prev_read_weights.dims();
    assert!(
        n == n2
            && prev_precedence.dims() == [b, k, n]
            && write_weights.dims() == [b, k, n]
            && [rb, rn] == [b, n],
        "dnc_link: link {:?}, precedence {:?}, write weights {:?} and read weights {:?} do \
         not fit [b, k, n, n], [b, k, n], [b, k, n] and [b, r, n]",
        prev_link.dims(),
        prev_precedence.dims(),
        write_weights.dims(),
        prev_read_weights.dims()
    );
    let [link, forward, backward] = B::mg_dnc_link(
        primitive(prev_link),
        primitive(prev_precedence),
        primitive(write_weights),
        primitive(prev_read_weights),
    );
    DncLink {
        link: tensor(link),
        forward: tensor(forward),
        backward: tensor(backward),
    }
}

/// burn's ops for the memory ops: the trait's defaults.
pub(crate) mod defaults {
    use super::*;

    /// `before[b, j, m] = 1` where slot `m` comes before slot `j` in the allocation order
    /// (`1 − ũ[m] > 1 − ũ[j]`, or equal and `m < j`), `[b, n, n]`; and `ũ` `[b, n]`.
    fn order<B: Backend>(usage: FloatTensor<B>, epsilon: f64) -> (Tensor<B, 3>, Tensor<B, 2>) {
        let usage: Tensor<B, 2> = tensor(usage);
        let [batch, n] = usage.dims();
        let device = usage.device();
        let usage = usage.mul_scalar(1.0 - epsilon).add_scalar(epsilon);
        let key = usage.clone().neg().add_scalar(1.0);
        let key_j = key.clone().reshape([batch, n, 1]).expand([batch, n, n]);
        let key_m = key.reshape([batch, 1, n]).expand([batch, n, n]);
        let index = Tensor::<B, 1, Int>::arange(0..n as i64, &device);
        let lower_index = index
            .clone()
            .reshape([1, 1, n])
            .lower(index.reshape([1, n, 1]))
            .expand([batch, n, n]);
        let before = key_m
            .clone()
            .greater(key_j.clone())
            .bool_or(key_m.equal(key_j).bool_and(lower_index))
            .float();
        (before, usage)
    }

    /// The allocation weighting as a mask: `a[j] = (1 − ũ[j])·exp(Σ_{m before j} ln ũ[m])`,
    /// one batched `[n, n]` product (`ũ ≥ ε` keeps the logarithm finite).
    pub(crate) fn allocation<B: Backend>(usage: FloatTensor<B>, epsilon: f64) -> FloatTensor<B> {
        let (before, usage) = order::<B>(usage, epsilon);
        let [batch, n] = usage.dims();
        let log_product = before.matmul(usage.clone().log().reshape([batch, n, 1]));
        let free = usage.neg().add_scalar(1.0);
        primitive(free * log_product.reshape([batch, n]).exp())
    }

    /// The gradient of [`allocation`]: with `E[j] = exp(Σ_{m before j} ln ũ[m])` and
    /// `a = (1 − ũ)·E`, `∂ũ[m] = −g[m]·E[m] + Σ_{j after m} g[j]·a[j] / ũ[m]`, times `1 − ε`.
    pub(crate) fn allocation_backward<B: Backend>(
        usage: FloatTensor<B>,
        grad: FloatTensor<B>,
        epsilon: f64,
    ) -> FloatTensor<B> {
        let (before, usage) = order::<B>(usage, epsilon);
        let grad: Tensor<B, 2> = tensor(grad);
        let [batch, n] = usage.dims();
        let product = before
            .clone()
            .matmul(usage.clone().log().reshape([batch, n, 1]))
            .reshape([batch, n])
            .exp();
        let weights = usage.clone().neg().add_scalar(1.0) * product.clone();
        let after = before
            .swap_dims(1, 2)
            .matmul((grad.clone() * weights).reshape([batch, n, 1]))
            .reshape([batch, n]);
        primitive((after / usage - grad * product).mul_scalar(1.0 - epsilon))
    }

    /// `L_t` from the inputs, diagonal 0.
    fn new_link<B: Backend>(
        link: Tensor<B, 4>,
        precedence: Tensor<B, 3>,
        write: Tensor<B, 3>,
    ) -> Tensor<B, 4> {
        let n = write.dims()[2];
        let device = link.device();
        let w_i = write.clone().unsqueeze_dim::<4>(3);
        let w_j = write.unsqueeze_dim::<4>(2);
        let p_j = precedence.unsqueeze_dim::<4>(2);
        let link = (w_i.clone().neg().add_scalar(1.0) - w_j) * link + w_i * p_j;
        link * off_diagonal::<B>(n, &device)
    }

    /// `1 − I`, `[1, 1, n, n]`.
    fn off_diagonal<B: Backend>(n: usize, device: &B::Device) -> Tensor<B, 4> {
        Tensor::<B, 2>::eye(n, device)
            .neg()
            .add_scalar(1.0)
            .reshape([1, 1, n, n])
    }

    /// The read weights `[b, r, n]` repeated for each of `k` write heads, `[b, k, r, n]`.
    fn per_head<B: Backend>(read: Tensor<B, 3>, k: usize) -> Tensor<B, 4> {
        let [b, r, n] = read.dims();
        read.unsqueeze_dim::<4>(1).expand([b, k, r, n])
    }

    /// [`super::dnc_link`] on burn's ops.
    pub(crate) fn link<B: Backend>(
        prev_link: FloatTensor<B>,
        prev_precedence: FloatTensor<B>,
        write_weights: FloatTensor<B>,
        prev_read_weights: FloatTensor<B>,
    ) -> [FloatTensor<B>; 3] {
        let link = new_link::<B>(
            tensor(prev_link),
            tensor(prev_precedence),
            tensor(write_weights),
        );
        let k = link.dims()[1];
        let read = per_head::<B>(tensor(prev_read_weights), k);
        // [b, k, r, n] × [b, k, n, n], then heads after reads: [b, r, k, n].
        let forward = read.clone().matmul(link.clone().swap_dims(2, 3));
        let backward = read.matmul(link.clone());
        [
            primitive(link),
            primitive(forward.swap_dims(1, 2)),
            primitive(backward.swap_dims(1, 2)),
        ]
    }

    /// The gradients of [`link`] with respect to `[prev_link, prev_precedence, write_weights,
    /// prev_read_weights]` (each where `need` asks), from those of `[link, forward,
    /// backward]` (`None`: zero).
    pub(crate) fn link_backward<B: Backend>(
        [prev_link, prev_precedence, write_weights, prev_read_weights]: [FloatTensor<B>; 4],
        [grad_link, grad_forward, grad_backward]: [Option<FloatTensor<B>>; 3],
        need: [bool; 4],
    ) -> [Option<FloatTensor<B>>; 4] {
        let prev_link: Tensor<B, 4> = tensor(prev_link);
        let precedence: Tensor<B, 3> = tensor(prev_precedence);
        let write: Tensor<B, 3> = tensor(write_weights);
        let read: Tensor<B, 3> = tensor(prev_read_weights);
        let link = new_link::<B>(prev_link.clone(), precedence.clone(), write.clone());
        let [b, k, n, _] = link.dims();
        let device = link.device();
        let read_k = per_head::<B>(read.clone(), k);
        let mut total = match grad_link {
            Some(g) => tensor(g),
            None => Tensor::<B, 4>::zeros([b, k, n, n], &device),
        };
        let mut d_read = Tensor::<B, 3>::zeros(read.dims(), &device);
        let summed = |t: Tensor<B, 4>| t.sum_dim(1).squeeze_dim::<3>(1);
        if let Some(g) = grad_forward {
            let g = tensor::<B, 4>(g).swap_dims(1, 2); // [b, k, r, n]
            total = total + g.clone().swap_dims(2, 3).matmul(read_k.clone());
            d_read = d_read + summed(g.matmul(link.clone()));
        }
        if let Some(g) = grad_backward {
            let g = tensor::<B, 4>(g).swap_dims(1, 2); // [b, k, r, m]
            total = total + read_k.swap_dims(2, 3).matmul(g.clone());
            d_read = d_read + summed(g.matmul(link.swap_dims(2, 3)));
        }
        let total = total * off_diagonal::<B>(n, &device);
        let w_i = write.clone().unsqueeze_dim::<4>(3);
        let w_j = write.unsqueeze_dim::<4>(2);
        let p_j = precedence.unsqueeze_dim::<4>(2);
        let [need_link, need_precedence, need_write, need_read] = need;
        let d_link =
            need_link.then(|| primitive(total.clone() * (w_i.clone().neg().add_scalar(1.0) - w_j)));
        let d_precedence = need_precedence
            .then(|| primitive((total.clone() * w_i).sum_dim(2).squeeze_dim::<3>(2)));
        let d_write = need_write.then(|| {
            let rows = (total.clone() * (p_j - prev_link.clone()))
                .sum_dim(3)
                .squeeze_dim::<3>(3);
            let columns = (total * prev_link).sum_dim(2).squeeze_dim::<3>(2);
            primitive(rows - columns)
        });
        [
            d_link,
            d_precedence,
            d_write,
            need_read.then(|| primitive(d_read)),
        ]
    }
}

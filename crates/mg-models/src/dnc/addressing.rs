//! DNC memory addressing: content lookup, usage, allocation, write weighting and temporal
//! links, as pure tensor functions of a batch.

use burn::config::Config;
use burn::tensor::activation::softmax;
use burn::tensor::{Tensor, backend::Backend};
use mg_layers::MgBackend;
use mg_layers::backend::{dnc_allocation, dnc_link};

/// The reference's ε: inside the vector norms and the similarity denominator of content
/// lookup, and in the usage rescaling of the allocation.
pub const EPSILON: f64 = 1e-6;

/// Above this input, [`softplus`] returns its input: `ln(1 + eˣ) − x < e⁻³⁰ ≈ 1e-13`.
const SOFTPLUS_LINEAR: f64 = 30.0;

/// The map from a raw strength `β̂` to the key strength `β` of content lookup.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum StrengthOp {
    /// `β = ln(1 + e^β̂) ∈ (0, ∞)`, as in the reference code.
    Softplus,
    /// `β = 1 + ln(1 + e^β̂) ∈ [1, ∞)`, as in the Nature paper.
    Oneplus,
}

impl StrengthOp {
    /// Applies the map elementwise.
    pub fn apply<B: Backend, const D: usize>(&self, raw: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            StrengthOp::Softplus => softplus(raw),
            StrengthOp::Oneplus => softplus(raw) + 1.0,
        }
    }
}

/// `ln(1 + eˣ)` without overflow for large `x` (it returns `x` above 30) and with the exact
/// gradient `σ(x)` everywhere else, including at 0.
pub fn softplus<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let linear = x.clone().greater_elem(SOFTPLUS_LINEAR);
    let smooth = x.clone().clamp_max(SOFTPLUS_LINEAR).exp().log1p();
    smooth.mask_where(linear, x)
}

// Broadcast products keep the whole tensor on the left and the broadcast one on the right:
// Flex has a fast path for that order only (the other walks the result element by element).

/// The product over axis 1 of a `[batch, heads, n]` tensor, as `[batch, n]`. Explicit
/// multiplications (not `exp Σ ln`) keep values and gradients exact when a factor is 0.
fn product_over_heads<B: Backend>(t: Tensor<B, 3>) -> Tensor<B, 2> {
    let [batch, heads, n] = t.dims();
    (0..heads)
        .map(|k| t.clone().narrow(1, k, 1).reshape([batch, n]))
        .reduce(|a, b| a * b)
        .expect("at least one head")
}

/// Cosine similarity of each key with each memory row, with the reference's regularisation:
/// `D[h, n] = ⟨k_h, M_n⟩ / (‖k_h‖·‖M_n‖ + ε)` where `‖v‖ = √(Σv² + ε)`. A zero row has
/// similarity exactly 0 and finite gradients.
///
/// # Shapes
/// - `memory`: `[batch, N, W]`
/// - `keys`: `[batch, heads, W]`
/// - returns `[batch, heads, N]`
pub fn cosine_similarity<B: Backend>(memory: Tensor<B, 3>, keys: Tensor<B, 3>) -> Tensor<B, 3> {
    let [batch, slots, _] = memory.dims();
    let [_, heads, width] = keys.dims();
    // One product `M·k_h` per head, the memory on the left: its gradient comes out of the
    // products contiguous. (`k·Mᵀ` would hand back a transposed view of it, which the CPU adds
    // to the memory's other gradients element by element.)
    let dot = Tensor::cat(
        (0..heads)
            .map(|h| {
                let key = keys.clone().narrow(1, h, 1).reshape([batch, width, 1]);
                memory.clone().matmul(key).reshape([batch, 1, slots])
            })
            .collect(),
        1,
    );
    let norm = |v: Tensor<B, 3>| (v.clone() * v).sum_dim(2).add_scalar(EPSILON).sqrt();
    let memory_norms = norm(memory).reshape([batch, 1, slots]);
    let key_norms = norm(keys); // [batch, heads, 1]
    // The outer product of the norms as a matrix product (contiguous, see `erase_and_write`).
    dot / key_norms.matmul(memory_norms).add_scalar(EPSILON)
}

/// `softmax_n(β_h · scores[h, n])`.
///
/// # Shapes
/// - `scores`: `[batch, heads, N]`
/// - `strengths` (the transformed `β`): `[batch, heads]`
/// - returns `[batch, heads, N]`
pub fn weighted_softmax<B: Backend>(scores: Tensor<B, 3>, strengths: Tensor<B, 2>) -> Tensor<B, 3> {
    softmax(scores * strengths.unsqueeze_dim(2), 2)
}

/// Content weighting `softmax_n(op(β̂_h) · D[h, n])` ([`cosine_similarity`]). An all-zero
/// memory gives the uniform weighting `1/N`.
///
/// # Shapes
/// - `memory`: `[batch, N, W]`
/// - `keys`: `[batch, heads, W]`
/// - `raw_strengths` (`β̂`, before `op`): `[batch, heads]`
/// - returns `[batch, heads, N]`
pub fn content_weights<B: Backend>(
    memory: Tensor<B, 3>,
    keys: Tensor<B, 3>,
    raw_strengths: Tensor<B, 2>,
    op: StrengthOp,
) -> Tensor<B, 3> {
    weighted_softmax(cosine_similarity(memory, keys), op.apply(raw_strengths))
}

/// The usage update (`Freeness`): with `ω = 1 − Π_k (1 − w^w_{t−1,k})`,
/// `u' = u_{t−1} + (1 − u_{t−1})·ω` and `u_t = u' · Π_i (1 − f_i·w^r_{t−1,i})`.
/// The previous write weights enter through a stop-gradient (`detach`); free gates and read
/// weights are differentiated.
///
/// # Shapes
/// - `prev_usage`: `[batch, N]`
/// - `prev_write_weights`: `[batch, K, N]`
/// - `free_gates`: `[batch, R]`
/// - `prev_read_weights`: `[batch, R, N]`
/// - returns `[batch, N]`
pub fn usage_update<B: Backend>(
    prev_usage: Tensor<B, 2>,
    prev_write_weights: Tensor<B, 3>,
    free_gates: Tensor<B, 2>,
    prev_read_weights: Tensor<B, 3>,
) -> Tensor<B, 2> {
    let kept = product_over_heads(prev_write_weights.detach().neg().add_scalar(1.0));
    let written = kept.neg().add_scalar(1.0);
    let usage = prev_usage.clone() + prev_usage.neg().add_scalar(1.0) * written;
    let freed = prev_read_weights * free_gates.unsqueeze_dim::<3>(2);
    usage * product_over_heads(freed.neg().add_scalar(1.0))
}

/// The allocation weighting (free list) of a usage vector: with `ũ = ε + (1 − ε)·u` and the
/// slots sorted by increasing `ũ` (the reference's descending order of `1 − ũ`, ties: lower
/// slot first), `a[φ_j] = (1 − ũ[φ_j]) · Π_{m<j} ũ[φ_m]`.
///
/// One backend op ([`mg_layers::backend::dnc_allocation`]): a sort and a running product per
/// row on the CPU kernels, a mask and one batched `[N, N]` product on burn's ops. Gradients
/// flow through the usage values, never through the order, as in the reference (`top_k`
/// and an exclusive cumulative product). The reference multiplies `1 − (1 − ũ)` (its sort
/// key, turned back) rather than `ũ`; the two are equal in exact arithmetic and differ only
/// by float rounding of tiny usages.
///
/// # Shapes
/// - `usage`: `[batch, N]`
/// - returns `[batch, N]`
pub fn allocation<B: MgBackend>(usage: Tensor<B, 2>) -> Tensor<B, 2> {
    dnc_allocation(usage, EPSILON)
}

/// Allocation weights of `K` write heads, computed sequentially on a local copy of the
/// usage: head `k` allocates from `u`, then `u ← u + (1 − u)·g_k·a_k`. The state usage is not
/// changed.
///
/// # Shapes
/// - `usage`: `[batch, N]`
/// - `write_gates` (allocation gate × write gate per head): `[batch, K]`
/// - returns `[batch, K, N]`
pub fn write_allocation_weights<B: MgBackend>(
    usage: Tensor<B, 2>,
    write_gates: Tensor<B, 2>,
) -> Tensor<B, 3> {
    let [_, heads] = write_gates.dims();
    let mut usage = usage;
    let mut weights = Vec::with_capacity(heads);
    for k in 0..heads {
        let a = allocation(usage.clone());
        if k + 1 < heads {
            let gate = write_gates.clone().narrow(1, k, 1);
            usage = usage.clone() + usage.neg().add_scalar(1.0) * gate * a.clone();
        }
        weights.push(a.unsqueeze_dim(1));
    }
    Tensor::cat(weights, 1)
}

/// Write weighting per head: `w^w_k = g^w_k · (g^a_k · a_k + (1 − g^a_k) · c^w_k)`.
///
/// # Shapes
/// - `allocation_weights`, `content_weights`: `[batch, K, N]`
/// - `allocation_gates`, `write_gates`: `[batch, K]`
/// - returns `[batch, K, N]`
pub fn write_weights<B: Backend>(
    allocation_weights: Tensor<B, 3>,
    content_weights: Tensor<B, 3>,
    allocation_gates: Tensor<B, 2>,
    write_gates: Tensor<B, 2>,
) -> Tensor<B, 3> {
    let ga = allocation_gates.unsqueeze_dim::<3>(2);
    let gw = write_gates.unsqueeze_dim::<3>(2);
    (allocation_weights * ga.clone() + content_weights * ga.neg().add_scalar(1.0)) * gw
}

/// The write weighting of a step from the updated usage: [`write_allocation_weights`] with
/// gates `g^a·g^w`, then [`write_weights`].
///
/// # Shapes
/// - `usage`: `[batch, N]`
/// - `content_weights`: `[batch, K, N]`
/// - `allocation_gates`, `write_gates`: `[batch, K]`
/// - returns `[batch, K, N]`
pub fn write_weighting<B: MgBackend>(
    usage: Tensor<B, 2>,
    content_weights: Tensor<B, 3>,
    allocation_gates: Tensor<B, 2>,
    write_gates: Tensor<B, 2>,
) -> Tensor<B, 3> {
    let gates = allocation_gates.clone() * write_gates.clone();
    let allocation = write_allocation_weights(usage, gates);
    write_weights(allocation, content_weights, allocation_gates, write_gates)
}

/// Erase then add: `M' = M ⊙ Π_k (1 − w_k ⊗ e_k)`, `M_t = M' + Σ_k w_k ⊗ a_k`.
///
/// # Shapes
/// - `memory`: `[batch, N, W]`
/// - `write_weights`: `[batch, K, N]`
/// - `erase_vectors`, `write_vectors`: `[batch, K, W]`
/// - returns `[batch, N, W]`
pub fn erase_and_write<B: Backend>(
    memory: Tensor<B, 3>,
    write_weights: Tensor<B, 3>,
    erase_vectors: Tensor<B, 3>,
    write_vectors: Tensor<B, 3>,
) -> Tensor<B, 3> {
    let [_, heads, _] = write_weights.dims();
    // Outer products as matrix products `[batch, N, 1] × [batch, 1, W]`: contiguous results
    // (a broadcast product of two expanded views is walked element by element on the CPU).
    let slots = write_weights.clone().swap_dims(1, 2); // [batch, N, K]
    let keep = (0..heads)
        .map(|k| {
            let w = slots.clone().narrow(2, k, 1); // [batch, N, 1]
            let e = erase_vectors.clone().narrow(1, k, 1); // [batch, 1, W]
            w.matmul(e).neg().add_scalar(1.0)
        })
        .reduce(|a, b| a * b)
        .expect("at least one write head");
    memory * keep + slots.matmul(write_vectors)
}

/// The temporal link update per write head `k` (`w = w^w_{t,k}`, `p = p_{t−1,k}`):
/// `L[i, j] = (1 − w[i] − w[j])·L_{t−1}[i, j] + w[i]·p[j]`, diagonal set to 0.
/// `L[i, j]` means "slot `i` was written right after slot `j`". The link output of
/// [`dnc_link`], which [`access_step`](super::access_step) calls once per step for the link
/// and the moves along it.
///
/// # Shapes
/// - `prev_link`: `[batch, K, N, N]`
/// - `prev_precedence`: `[batch, K, N]`
/// - `write_weights`: `[batch, K, N]`
/// - returns `[batch, K, N, N]`
pub fn link_update<B: MgBackend>(
    prev_link: Tensor<B, 4>,
    prev_precedence: Tensor<B, 3>,
    write_weights: Tensor<B, 3>,
) -> Tensor<B, 4> {
    let [batch, _, n] = write_weights.dims();
    let no_reads = Tensor::zeros([batch, 1, n], &write_weights.device());
    dnc_link(prev_link, prev_precedence, write_weights, no_reads).link
}

/// The precedence update per write head: `p_t = (1 − Σ_n w[n])·p_{t−1} + w`.
///
/// # Shapes
/// - `prev_precedence`, `write_weights`: `[batch, K, N]`
/// - returns `[batch, K, N]`
pub fn precedence_update<B: Backend>(
    prev_precedence: Tensor<B, 3>,
    write_weights: Tensor<B, 3>,
) -> Tensor<B, 3> {
    let total = write_weights.clone().sum_dim(2);
    prev_precedence * total.neg().add_scalar(1.0) + write_weights
}

/// Weights one step along the links of each write head from each read head's previous
/// weighting: forward `f[n] = Σ_m L[n, m]·w[m]`, backward `b[m] = Σ_n L[n, m]·w[n]`.
/// [`dnc_link`] with no write (zero weights and precedence), which leaves a link matrix (zero
/// diagonal) as it is.
///
/// # Shapes
/// - `link`: `[batch, K, N, N]`
/// - `prev_read_weights`: `[batch, R, N]`
/// - returns `[batch, R, K, N]`
pub fn directional_read_weights<B: MgBackend>(
    link: Tensor<B, 4>,
    prev_read_weights: Tensor<B, 3>,
    forward: bool,
) -> Tensor<B, 4> {
    let [batch, heads, n, _] = link.dims();
    let none = Tensor::zeros([batch, heads, n], &link.device());
    let moves = dnc_link(link, none.clone(), none, prev_read_weights);
    if forward {
        moves.forward
    } else {
        moves.backward
    }
}

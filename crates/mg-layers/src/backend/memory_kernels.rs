//! The CPU kernels of the DNC's memory ops (`memory.rs`) for one batch row, on plain slices of
//! row-major data. No tensor types here: what is tested is what runs.

use std::mem::MaybeUninit;

use super::kernels::{Real, simd};

/// `Σ a[i]·b[i]` with eight partial sums, so that the loop vectorises.
#[inline(always)]
fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let (a8, a_rest) = a.as_chunks::<8>();
    let (b8, b_rest) = b.as_chunks::<8>();
    let mut acc = [T::ZERO; 8];
    for (x, y) in a8.iter().zip(b8) {
        for l in 0..8 {
            acc[l] = acc[l] + x[l] * y[l];
        }
    }
    let mut sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in a_rest.iter().zip(b_rest) {
        sum = sum + *x * *y;
    }
    sum
}

/// `y += a·x`.
#[inline(always)]
fn axpy<T: Real>(y: &mut [T], a: T, x: &[T]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y = *y + a * *x;
    }
}

/// The rescaled usages `ũ = ε + (1 − ε)·u` of one row, in `T`'s arithmetic as burn's
/// `mul_scalar(1 − ε).add_scalar(ε)`.
#[inline(always)]
fn rescaled<T: Real>(u: T, keep: T, epsilon: T) -> T {
    u * keep + epsilon
}

/// The allocation order of one row into `order`: slot indices in descending order of the free
/// values `1 − ũ` (kept in `free`), stable, so that ties keep the lower slot first. Returns
/// `(1 − ε, ε)` in `T`.
fn allocation_order<T: Real + Into<f64>>(
    usage: &[T],
    epsilon: f64,
    free: &mut Vec<f64>,
    order: &mut Vec<usize>,
) -> (T, T) {
    let (keep, eps) = (T::from_f64(1.0 - epsilon), T::from_f64(epsilon));
    free.clear();
    free.extend(
        usage
            .iter()
            .map(|&u| (T::ONE - rescaled(u, keep, eps)).into()),
    );
    order.clear();
    order.extend(0..free.len());
    order.sort_by(|&a, &b| free[b].total_cmp(&free[a]));
    (keep, eps)
}

/// The allocation weighting of one row of usages into `out` (see `memory::dnc_allocation`):
/// sorted by the free values `1 − ũ`, descending, then an exclusive running product of `ũ`.
/// `free` and `order` are scratch space of the row's length.
pub(crate) fn dnc_allocation<T: Real + Into<f64>>(
    usage: &[T],
    epsilon: f64,
    free: &mut Vec<f64>,
    order: &mut Vec<usize>,
    out: &mut [T],
) {
    let (keep, eps) = allocation_order(usage, epsilon, free, order);
    let mut product = T::ONE;
    for &j in order.iter() {
        let u = rescaled(usage[j], keep, eps);
        out[j] = (T::ONE - u) * product;
        product = product * u;
    }
}

/// The gradient of [`dnc_allocation`] for one row: with `P_j` the product of `ũ` over the
/// slots before `j` and `R_j = Σ_{i after j} g_i·(1 − ũ_i)·Π_{j<m<i} ũ_m` (a running sum from
/// the last slot), `∂u_j = (1 − ε)·P_j·(R_j − g_j)`: no division by `ũ`.
pub(crate) fn dnc_allocation_backward<T: Real + Into<f64>>(
    usage: &[T],
    grad: &[T],
    epsilon: f64,
    free: &mut Vec<f64>,
    order: &mut Vec<usize>,
    prefix: &mut [T],
    d_usage: &mut [T],
) {
    let (keep, eps) = allocation_order(usage, epsilon, free, order);
    let mut product = T::ONE;
    for &j in order.iter() {
        prefix[j] = product;
        product = product * rescaled(usage[j], keep, eps);
    }
    let mut after = T::ZERO;
    for &j in order.iter().rev() {
        let u = rescaled(usage[j], keep, eps);
        d_usage[j] = keep * (prefix[j] * (after - grad[j]));
        after = grad[j] * (T::ONE - u) + u * after;
    }
}

/// Sizes of one batch row of the DNC link op.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinkShape {
    /// Memory slots `n`.
    pub slots: usize,
    /// Write heads `k`.
    pub write_heads: usize,
    /// Read heads `r`.
    pub read_heads: usize,
}

/// Row `i` of the new link matrix of one head into `out`: `((1 − w_i) − w_j)·L[i, j] +
/// w_i·p_j`, 0 on the diagonal (the arithmetic of burn's ops in `memory::defaults`).
#[inline(always)]
fn new_link_row<T: Real>(i: usize, row: &[T], precedence: &[T], write: &[T], out: &mut [T]) {
    let w_i = write[i];
    let keep = T::ONE - w_i;
    for ((o, &l), (&w, &p)) in out.iter_mut().zip(row).zip(write.iter().zip(precedence)) {
        *o = (keep - w) * l + w_i * p;
    }
    out[i] = T::ZERO;
}

/// Row `i` of the new link matrix of one head in place, from the previous row in `out`.
#[inline(always)]
fn new_link_row_in_place<T: Real>(i: usize, precedence: &[T], write: &[T], out: &mut [T]) {
    let w_i = write[i];
    let keep = T::ONE - w_i;
    for (o, (&w, &p)) in out.iter_mut().zip(write.iter().zip(precedence)) {
        *o = (keep - w) * *o + w_i * p;
    }
    out[i] = T::ZERO;
}

/// Where [`dnc_link`] writes the new link matrices of one batch row (`[k, n, n]`).
pub(crate) enum LinkOut<'a, T> {
    /// Over the previous ones, which the slice holds on entry (a row of `L_t` needs only the
    /// same row of `L_{t−1}`).
    InPlace(&'a mut [T]),
    /// Into memory not yet written, from `previous`: every element is written once, so the
    /// buffer needs no zeroing first.
    Fresh {
        /// `L_{t−1}`.
        previous: &'a [T],
        /// `L_t`'s buffer.
        out: &'a mut [MaybeUninit<T>],
    },
}

/// The link update of one batch row with the moves along the new links (see
/// `memory::dnc_link`), one pass over each head's matrix: row `i` of `L_t` is made, then
/// `forward[r, k, i] = ⟨L_t[i, ·], w_r⟩` and `backward[r, k, ·] += w_r[i]·L_t[i, ·]`. A fresh
/// row is made in `scratch` (`n` values) and copied out.
///
/// Slices: `precedence`, `write` `[k, n]`; `read` `[r, n]`; `forward`, `backward`
/// `[r, k, n]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dnc_link<T: Real>(
    s: LinkShape,
    mut link: LinkOut<'_, T>,
    precedence: &[T],
    write: &[T],
    read: &[T],
    forward: &mut [T],
    backward: &mut [T],
    scratch: &mut [T],
) {
    let (n, heads, reads) = (s.slots, s.write_heads, s.read_heads);
    simd(
        #[inline(always)]
        || {
            let scratch = &mut scratch[..n];
            backward[..reads * heads * n].fill(T::ZERO);
            for k in 0..heads {
                let (p, w) = (&precedence[k * n..][..n], &write[k * n..][..n]);
                for i in 0..n {
                    let at = (k * n + i) * n;
                    let row: &[T] = match &mut link {
                        LinkOut::InPlace(link) => {
                            let row = &mut link[at..][..n];
                            new_link_row_in_place(i, p, w, row);
                            row
                        }
                        LinkOut::Fresh { previous, out } => {
                            new_link_row(i, &previous[at..][..n], p, w, scratch);
                            out[at..][..n].write_copy_of_slice(scratch);
                            scratch
                        }
                    };
                    for r in 0..reads {
                        let w_r = &read[r * n..][..n];
                        let head = (r * heads + k) * n;
                        forward[head + i] = dot(row, w_r);
                        axpy(&mut backward[head..][..n], w_r[i], row);
                    }
                }
            }
        },
    );
}

/// The gradients of [`dnc_link`] for one batch row, from those of its outputs (`None`:
/// zero): `d_link` (where asked), `d_precedence`, `d_write` and `d_read`. Row by row: the
/// row of `L_t` is made again, its whole gradient `G` gathered (the link's own and the two
/// moves'), then `∂L = G·((1 − w_i) − w_j)`, `∂w_i += Σ_j G[i, j]·(p_j − L[i, j])`,
/// `∂w_j −= Σ_i G[i, j]·L[i, j]`, `∂p_j += Σ_i G[i, j]·w_i`. `scratch` holds `3·n` values.
/// With `link_grad_in_place`, `d_link` holds the link's own gradient on entry (`grad_link`
/// is then not read) and each of its rows is replaced by `∂L`'s once read.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dnc_link_backward<T: Real>(
    s: LinkShape,
    [link, precedence, write, read]: [&[T]; 4],
    [grad_link, grad_forward, grad_backward]: [Option<&[T]>; 3],
    link_grad_in_place: bool,
    mut d_link: Option<&mut [T]>,
    d_precedence: &mut [T],
    d_write: &mut [T],
    d_read: &mut [T],
    scratch: &mut [T],
) {
    let (n, heads, reads) = (s.slots, s.write_heads, s.read_heads);
    simd(
        #[inline(always)]
        || {
            let (row, rest) = scratch.split_at_mut(n);
            let (total, columns) = rest.split_at_mut(n);
            let columns = &mut columns[..n];
            d_precedence[..heads * n].fill(T::ZERO);
            d_write[..heads * n].fill(T::ZERO);
            d_read[..reads * n].fill(T::ZERO);
            for k in 0..heads {
                let (p, w) = (&precedence[k * n..][..n], &write[k * n..][..n]);
                let d_p = &mut d_precedence[k * n..][..n];
                columns.fill(T::ZERO);
                for i in 0..n {
                    let at = (k * n + i) * n;
                    let prev = &link[at..][..n];
                    new_link_row(i, prev, p, w, row);
                    match (&d_link, grad_link) {
                        (Some(d), _) if link_grad_in_place => total.copy_from_slice(&d[at..][..n]),
                        (_, Some(g)) => total.copy_from_slice(&g[at..][..n]),
                        _ => total.fill(T::ZERO),
                    }
                    for r in 0..reads {
                        let head = (r * heads + k) * n;
                        let (w_r, d_r) = (&read[r * n..][..n], &mut d_read[r * n..][..n]);
                        if let Some(g) = grad_forward {
                            // forward[r, i] = ⟨L_t[i, ·], w_r⟩
                            let g_i = g[head + i];
                            axpy(total, g_i, w_r);
                            axpy(d_r, g_i, row);
                        }
                        if let Some(g) = grad_backward {
                            // backward[r, j] = Σ_i L_t[i, j]·w_r[i]
                            let g_r = &g[head..][..n];
                            axpy(total, w_r[i], g_r);
                            d_r[i] = d_r[i] + dot(row, g_r);
                        }
                    }
                    total[i] = T::ZERO;
                    let w_i = w[i];
                    let keep = T::ONE - w_i;
                    if let Some(d_link) = d_link.as_deref_mut() {
                        let out = &mut d_link[at..][..n];
                        for ((o, &g), &w_j) in out.iter_mut().zip(total.iter()).zip(w) {
                            *o = g * (keep - w_j);
                        }
                    }
                    let mut d_w_i = T::ZERO;
                    for j in 0..n {
                        let g = total[j];
                        d_w_i = d_w_i + g * (p[j] - prev[j]);
                        columns[j] = columns[j] + g * prev[j];
                        d_p[j] = d_p[j] + g * w_i;
                    }
                    d_write[k * n + i] = d_write[k * n + i] + d_w_i;
                }
                for (d, &c) in d_write[k * n..][..n].iter_mut().zip(columns.iter()) {
                    *d = *d - c;
                }
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The allocation gradient against central differences in f64 (distinct usages, so the
    /// order is locally constant).
    #[test]
    fn allocation_gradient_matches_differences() {
        let u = [0.31, 0.02, 0.77, 0.45, 0.0, 0.93];
        let g = [0.3, -1.2, 0.7, 2.0, -0.4, 0.9];
        let loss = |u: &[f64]| {
            let mut out = vec![0.0; u.len()];
            dnc_allocation(u, 1e-6, &mut Vec::new(), &mut Vec::new(), &mut out);
            out.iter().zip(&g).map(|(a, g)| a * g).sum::<f64>()
        };
        let mut d = [0.0; 6];
        let mut prefix = [0.0; 6];
        dnc_allocation_backward(
            &u,
            &g,
            1e-6,
            &mut Vec::new(),
            &mut Vec::new(),
            &mut prefix,
            &mut d,
        );
        for j in 0..u.len() {
            let h = 1e-6;
            let (mut up, mut down) = (u, u);
            up[j] += h;
            down[j] -= h;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * h);
            assert!(
                (numeric - d[j]).abs() < 1e-7 * numeric.abs().max(1.0),
                "slot {j}: analytic {} vs numeric {numeric}",
                d[j]
            );
        }
    }
}

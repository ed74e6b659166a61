//! The DNC's memory ops on Flex: the kernels of `memory_kernels.rs` over the batch rows, split
//! over the threads when the link matrices are large. f32 and f64; other float types and
//! `set_cpu_kernels(false)` use the defaults.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Element, TensorMetadata};

use super::super::kernels::Real;
use super::super::memory::defaults;
use super::super::memory_kernels::{self, LinkOut, LinkShape};
use super::super::{cpu_kernels_enabled, kernels::with_scratch};
use super::{PARALLEL_WORK, map_items, slice, tensor};

/// The float type the kernels run on, or `None` for the defaults.
fn kernel_dtype(x: &FlexTensor) -> Option<DType> {
    let dtype = x.dtype();
    (cpu_kernels_enabled() && matches!(dtype, DType::F32 | DType::F64)).then_some(dtype)
}

pub(super) fn allocation(usage: FlexTensor, epsilon: f64) -> FlexTensor {
    let usage = usage.to_contiguous();
    match kernel_dtype(&usage) {
        Some(DType::F32) => allocation_rows::<f32>(&usage, None, epsilon),
        Some(_) => allocation_rows::<f64>(&usage, None, epsilon),
        None => defaults::allocation::<Flex>(usage, epsilon),
    }
}

pub(super) fn allocation_backward(usage: FlexTensor, grad: FlexTensor, epsilon: f64) -> FlexTensor {
    let (usage, grad) = (usage.to_contiguous(), grad.to_contiguous());
    match kernel_dtype(&usage) {
        Some(DType::F32) => allocation_rows::<f32>(&usage, Some(&grad), epsilon),
        Some(_) => allocation_rows::<f64>(&usage, Some(&grad), epsilon),
        None => defaults::allocation_backward::<Flex>(usage, grad, epsilon),
    }
}

/// The allocation (or with `grad`, its gradient) of every row of `usage` (`[b, n]`), one row
/// after the other (a row is a sort of `n` values).
fn allocation_rows<E: Element + Real + Into<f64>>(
    usage: &FlexTensor,
    grad: Option<&FlexTensor>,
    epsilon: f64,
) -> FlexTensor {
    let [_, n] = usage.shape().dims::<2>();
    let u = slice::<E>(usage);
    let mut out = vec![E::ZERO; u.len()];
    let (mut free, mut order, mut prefix) = (Vec::new(), Vec::new(), vec![E::ZERO; n]);
    let rows = u.chunks(n.max(1)).zip(out.chunks_mut(n.max(1)));
    match grad {
        None => rows.for_each(|(u, out)| {
            memory_kernels::dnc_allocation(u, epsilon, &mut free, &mut order, out)
        }),
        Some(grad) => {
            let g = slice::<E>(grad);
            for ((u, out), g) in rows.zip(g.chunks(n.max(1))) {
                memory_kernels::dnc_allocation_backward(
                    u,
                    g,
                    epsilon,
                    &mut free,
                    &mut order,
                    &mut prefix,
                    out,
                );
            }
        }
    }
    tensor(out, usage.shape())
}

/// The sizes of a link op: `(b, shape)` from the link `[b, k, n, n]` and the read weights
/// `[b, r, n]`.
fn link_shape(link: &FlexTensor, read: &FlexTensor) -> (usize, LinkShape) {
    let [b, k, n, _] = link.shape().dims::<4>();
    let [_, r, _] = read.shape().dims::<3>();
    let shape = LinkShape {
        slots: n,
        write_heads: k,
        read_heads: r,
    };
    (b, shape)
}

/// Whether `b` rows of a link op are split over the threads.
fn parallel(b: usize, s: LinkShape) -> bool {
    b > 1 && b * s.write_heads * s.slots * s.slots * (2 * s.read_heads + 3) >= PARALLEL_WORK
}

pub(super) fn link(inputs: [FlexTensor; 4]) -> [FlexTensor; 3] {
    let inputs = inputs.map(|t| t.to_contiguous());
    match kernel_dtype(&inputs[0]) {
        Some(DType::F32) => link_rows::<f32>(inputs),
        Some(_) => link_rows::<f64>(inputs),
        None => {
            let [l, p, w, r] = inputs;
            defaults::link::<Flex>(l, p, w, r)
        }
    }
}

/// The link op over the batch rows. A previous link no one else holds (inference, where the
/// state is passed on) is updated in place: no new `[b, k, n, n]` buffer to fault in. A new
/// one is not zeroed first: the kernel writes each of its elements once.
#[allow(unsafe_code)]
fn link_rows<E: Element + Real>(inputs: [FlexTensor; 4]) -> [FlexTensor; 3] {
    let (b, s) = link_shape(&inputs[0], &inputs[3]);
    let (n, k, r) = (s.slots, s.write_heads, s.read_heads);
    let [mut link, precedence, write, read] = inputs;
    let (precedence, write, read) = (
        slice::<E>(&precedence),
        slice::<E>(&write),
        slice::<E>(&read),
    );
    let len = b * k * n * n;
    let in_place = link.is_unique() && link.storage::<E>().len() == len;
    let mut fresh: Vec<E> = Vec::new();
    let outs: Vec<LinkOut<'_, E>> = if in_place {
        link.storage_mut::<E>()
            .chunks_mut(k * n * n)
            .map(LinkOut::InPlace)
            .collect()
    } else {
        fresh.reserve_exact(len);
        slice::<E>(&link)
            .chunks(k * n * n)
            .zip(fresh.spare_capacity_mut()[..len].chunks_mut(k * n * n))
            .map(|(previous, out)| LinkOut::Fresh { previous, out })
            .collect()
    };
    let mut forward = vec![E::ZERO; b * r * k * n];
    let mut backward = vec![E::ZERO; b * r * k * n];
    let items: Vec<_> = outs
        .into_iter()
        .zip(forward.chunks_mut(r * k * n))
        .zip(backward.chunks_mut(r * k * n))
        .enumerate()
        .collect();
    map_items(
        items,
        parallel(b, s),
        |(row, ((link, forward), backward))| {
            with_scratch::<E, _>(n, |scratch| {
                memory_kernels::dnc_link(
                    s,
                    link,
                    &precedence[row * k * n..][..k * n],
                    &write[row * k * n..][..k * n],
                    &read[row * r * n..][..r * n],
                    forward,
                    backward,
                    scratch,
                )
            })
        },
    );
    let new_link = if in_place {
        link
    } else {
        // SAFETY: `reserve_exact` gave `fresh` room for `len` elements, and every one of them
        // has been written: the `b` chunks of `k·n·n` cover the `len` elements, and
        // `dnc_link` writes each chunk whole (rows `0..n` of each of the `k` heads, each row
        // all `n` elements, through `LinkOut::Fresh`).
        unsafe { fresh.set_len(len) };
        tensor(fresh, [b, k, n, n])
    };
    [
        new_link,
        tensor(forward, [b, r, k, n]),
        tensor(backward, [b, r, k, n]),
    ]
}

pub(super) fn link_backward(
    inputs: [FlexTensor; 4],
    grads: [Option<FlexTensor>; 3],
    need: [bool; 4],
) -> [Option<FlexTensor>; 4] {
    let inputs = inputs.map(|t| t.to_contiguous());
    let grads = grads.map(|g| g.map(|g| g.to_contiguous()));
    match kernel_dtype(&inputs[0]) {
        Some(DType::F32) => link_backward_rows::<f32>(&inputs, grads, need),
        Some(_) => link_backward_rows::<f64>(&inputs, grads, need),
        None => defaults::link_backward::<Flex>(inputs, grads, need),
    }
}

fn link_backward_rows<E: Element + Real>(
    inputs: &[FlexTensor; 4],
    mut grads: [Option<FlexTensor>; 3],
    need: [bool; 4],
) -> [Option<FlexTensor>; 4] {
    let (b, s) = link_shape(&inputs[0], &inputs[3]);
    let (n, k, r) = (s.slots, s.write_heads, s.read_heads);
    let [link, precedence, write, read] = inputs.each_ref().map(slice::<E>);
    let len = b * k * n * n;
    // The link's gradient, when no one else holds it, becomes the link input's gradient in
    // place (row by row, each read before it is written).
    let mut d_link_tensor = match &grads[0] {
        Some(g) if need[0] && g.is_unique() && g.storage::<E>().len() == len => grads[0].take(),
        _ => None,
    };
    let in_place = d_link_tensor.is_some();
    let [g_link, g_forward, g_backward] = grads.each_ref().map(|g| g.as_ref().map(slice::<E>));
    let mut fresh = vec![E::ZERO; if need[0] && !in_place { len } else { 0 }];
    let mut d_precedence = vec![E::ZERO; b * k * n];
    let mut d_write = vec![E::ZERO; b * k * n];
    let mut d_read = vec![E::ZERO; b * r * n];
    let d_link: &mut [E] = match d_link_tensor.as_mut() {
        Some(t) => t.storage_mut::<E>(),
        None => &mut fresh,
    };
    let mut d_link_rows: Vec<Option<&mut [E]>> = match need[0] {
        true => d_link.chunks_mut(k * n * n).map(Some).collect(),
        false => (0..b).map(|_| None).collect(),
    };
    let items: Vec<_> = d_link_rows
        .iter_mut()
        .map(Option::take)
        .zip(d_precedence.chunks_mut(k * n))
        .zip(d_write.chunks_mut(k * n))
        .zip(d_read.chunks_mut(r * n))
        .enumerate()
        .collect();
    let link_rows = |row: usize| row * k * n * n..(row + 1) * k * n * n;
    let head_rows = |row: usize| row * k * n..(row + 1) * k * n;
    let move_rows = |row: usize| row * r * k * n..(row + 1) * r * k * n;
    map_items(
        items,
        parallel(b, s),
        |(row, (((d_link, d_precedence), d_write), d_read))| {
            with_scratch::<E, _>(3 * n, |scratch| {
                memory_kernels::dnc_link_backward(
                    s,
                    [
                        &link[link_rows(row)],
                        &precedence[head_rows(row)],
                        &write[head_rows(row)],
                        &read[row * r * n..][..r * n],
                    ],
                    [
                        g_link.map(|g| &g[link_rows(row)]),
                        g_forward.map(|g| &g[move_rows(row)]),
                        g_backward.map(|g| &g[move_rows(row)]),
                    ],
                    in_place,
                    d_link,
                    d_precedence,
                    d_write,
                    d_read,
                    scratch,
                )
            })
        },
    );
    let [need_link, need_precedence, need_write, need_read] = need;
    let d_link = match d_link_tensor {
        Some(t) => Some(t),
        None => need_link.then(|| tensor(fresh, [b, k, n, n])),
    };
    [
        d_link,
        need_precedence.then(|| tensor(d_precedence, [b, k, n])),
        need_write.then(|| tensor(d_write, [b, k, n])),
        need_read.then(|| tensor(d_read, [b, r, n])),
    ]
}

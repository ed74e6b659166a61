//! The DNC's memory ops (`dnc_allocation`, `dnc_link`) against their formulas written with
//! burn's tensor ops (the DNC's implementation before the ops existed), values and gradients,
//! including ties in the usages and outputs the loss does not reach. On Flex this checks the
//! CPU kernels; on a GPU backend, the defaults and the autodiff nodes.

use burn::tensor::{Int, Tensor, TensorData};
use mg_layers::backend::{dnc_allocation, dnc_link};

use crate::{TestAutodiffBackend as AB, TestBackend as B, device, f64_supported};

const EPSILON: f64 = 1e-6;

fn random<const D: usize>(shape: [usize; D], seed: u64, low: f64, high: f64) -> Tensor<AB, D> {
    let n = shape.iter().product();
    let values: Vec<f64> = crate::values(n, seed)
        .into_iter()
        .map(|v| low + (high - low) * (v + 1.0) / 2.0)
        .collect();
    Tensor::from_data(TensorData::new(values, shape), &device())
}

fn to_vec<const D: usize>(t: Tensor<AB, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec().unwrap()
}

/// The gradient of `t`, zeros where the loss does not reach it.
fn grad_vec<const D: usize>(
    t: &Tensor<AB, D>,
    grads: &<AB as burn::tensor::backend::AutodiffBackend>::Gradients,
) -> Vec<f64> {
    match t.grad(grads) {
        Some(g) => g.into_data().convert::<f64>().to_vec().unwrap(),
        None => vec![0.0; t.dims().iter().product()],
    }
}

/// Largest `|a − b|` relative to the largest `|b|`.
fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

fn tol() -> f64 {
    if f64_supported() { 1e-12 } else { 2e-5 }
}

/// The allocation as a mask and one batched product (ties to the lower slot).
fn reference_allocation(usage: Tensor<AB, 2>) -> Tensor<AB, 2> {
    let [batch, n] = usage.dims();
    let usage = usage.mul_scalar(1.0 - EPSILON).add_scalar(EPSILON);
    let free = usage.clone().neg().add_scalar(1.0);
    let key = free.clone().detach();
    let key_j = key.clone().reshape([batch, n, 1]).expand([batch, n, n]);
    let key_m = key.reshape([batch, 1, n]).expand([batch, n, n]);
    let index = Tensor::<AB, 1, Int>::arange(0..n as i64, &device());
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
    let log_product = before.matmul(usage.log().reshape([batch, n, 1]));
    free * log_product.reshape([batch, n]).exp()
}

/// Random usages in [0, 1] with ties: repeated values, exact zeros and ones.
fn usages_with_ties(batch: usize, n: usize, seed: u64) -> Tensor<AB, 2> {
    let raw = crate::values(batch * n, seed);
    let values: Vec<f64> = raw
        .iter()
        .enumerate()
        .map(|(i, v)| match i % 7 {
            0 => 0.0,
            3 => 1.0,
            5 => 0.25,
            _ => (v + 1.0) / 2.0,
        })
        .collect();
    Tensor::from_data(TensorData::new(values, [batch, n]), &device())
}

#[test]
fn dnc_allocation_matches_the_mask_form_with_ties() {
    for (k, (batch, n)) in [(1, 1), (2, 4), (3, 9), (4, 40)].into_iter().enumerate() {
        let seed = 100 + k as u64;
        for usage in [
            usages_with_ties(batch, n, seed),
            random([batch, n], seed, 0.0, 1.0),
        ] {
            let usage = usage.require_grad();
            let weights = random([batch, n], seed + 7, -1.0, 1.0);
            let ours = dnc_allocation(usage.clone(), EPSILON);
            let theirs = reference_allocation(usage.clone());
            let (ours_v, theirs_v) = (to_vec(ours.clone()), to_vec(theirs.clone()));
            let d = rel_diff(&ours_v, &theirs_v);
            assert!(d < 10.0 * tol(), "[{batch}, {n}] values: {d:e}");
            let g_ours = grad_vec(&usage, &(ours * weights.clone()).sum().backward());
            let g_theirs = grad_vec(&usage, &(theirs * weights).sum().backward());
            let d = rel_diff(&g_ours, &g_theirs);
            assert!(d < 1e3 * tol(), "[{batch}, {n}] gradients: {d:e}");
        }
    }
}

/// The spec's golden values (ε = 1e-6): ties at t = 1 go to the lowest slot.
#[test]
fn dnc_allocation_golden_values() {
    let cases: [(&[f64], &[f64]); 3] = [
        (
            &[0.4, 0.1, 0.7, 0.0],
            &[6.00005e-8, 8.99999e-7, 1.20001e-8, 0.999999],
        ),
        (&[0.0; 4], &[0.999999, 9.99999e-7, 9.99999e-13, 9.99999e-19]),
        (&[0.5, 0.5, 0.5], &[0.5, 0.25, 0.125]),
    ];
    for (u, want) in cases {
        let usage =
            Tensor::<AB, 2>::from_data(TensorData::new(u.to_vec(), [1, u.len()]), &device());
        let got = to_vec(dnc_allocation(usage, EPSILON));
        for (g, w) in got.iter().zip(want) {
            assert!((g / w - 1.0).abs() < 1e-5, "{u:?}: {got:?} vs {want:?}");
        }
    }
}

/// The link update and the moves along it with burn's broadcasts and products.
fn reference_link(
    link: Tensor<AB, 4>,
    precedence: Tensor<AB, 3>,
    write: Tensor<AB, 3>,
    read: Tensor<AB, 3>,
) -> [Tensor<AB, 4>; 3] {
    let [batch, heads, n, _] = link.dims();
    let [_, reads, _] = read.dims();
    let w_i = write.clone().unsqueeze_dim::<4>(3);
    let w_j = write.unsqueeze_dim::<4>(2);
    let p_j = precedence.unsqueeze_dim::<4>(2);
    let off_diagonal = Tensor::<AB, 2>::eye(n, &device())
        .neg()
        .add_scalar(1.0)
        .reshape([1, 1, n, n]);
    let link = ((w_i.clone().neg().add_scalar(1.0) - w_j) * link + w_i * p_j) * off_diagonal;
    let w = read.unsqueeze_dim::<4>(1).expand([batch, heads, reads, n]);
    let forward = w
        .clone()
        .matmul(link.clone().swap_dims(2, 3))
        .swap_dims(1, 2);
    let backward = w.matmul(link.clone()).swap_dims(1, 2);
    [link, forward, backward]
}

#[test]
fn dnc_link_matches_burn_ops_forward_and_backward() {
    // (batch, write heads, slots, read heads); which outputs reach the loss; whether the
    // previous link is tracked (the zero initial state is not).
    let cases = [
        ((1, 1, 1, 1), [true, true, true], true),
        ((2, 1, 5, 4), [true, true, true], true),
        ((3, 2, 7, 3), [true, true, true], false),
        ((2, 3, 6, 2), [false, true, false], true),
        ((2, 2, 4, 1), [true, false, false], true),
        ((1, 2, 9, 2), [false, false, true], true),
        ((2, 1, 33, 3), [true, true, true], true),
    ];
    for (k, ((batch, heads, n, reads), used, link_tracked)) in cases.into_iter().enumerate() {
        let seed = 10 * k as u64;
        let link = random([batch, heads, n, n], seed, 0.0, 0.3);
        let link = if link_tracked {
            link.require_grad()
        } else {
            link
        };
        let precedence = random([batch, heads, n], seed + 1, 0.0, 0.5).require_grad();
        let write = random([batch, heads, n], seed + 2, 0.0, 0.5).require_grad();
        let read = random([batch, reads, n], seed + 3, 0.0, 1.0).require_grad();
        let inputs = || {
            (
                link.clone(),
                precedence.clone(),
                write.clone(),
                read.clone(),
            )
        };
        let weights: [Tensor<AB, 4>; 3] = [
            random([batch, heads, n, n], seed + 4, -1.0, 1.0),
            random([batch, reads, heads, n], seed + 5, -1.0, 1.0),
            random([batch, reads, heads, n], seed + 6, -1.0, 1.0),
        ];
        let loss = |outputs: [Tensor<AB, 4>; 3]| {
            outputs
                .into_iter()
                .zip(weights.clone())
                .zip(used)
                .filter(|(_, used)| *used)
                .map(|((o, w), _)| (o * w).sum())
                .reduce(|a, b| a + b)
                .expect("an output in the loss")
        };
        let (l, p, w, r) = inputs();
        let moves = dnc_link(l, p, w, r);
        let ours = [moves.link, moves.forward, moves.backward];
        let (l, p, w, r) = inputs();
        let theirs = reference_link(l, p, w, r);
        let case = format!("case {k}");
        for (name, (a, b)) in ["link", "forward", "backward"]
            .into_iter()
            .zip(ours.iter().zip(&theirs))
        {
            let d = rel_diff(&to_vec(a.clone()), &to_vec(b.clone()));
            assert!(d < 10.0 * tol(), "{case} {name}: {d:e}");
        }
        // Without autodiff, a link no one else holds is updated in place.
        let fresh = |t: &Tensor<AB, 3>| Tensor::<B, 3>::from_data(t.to_data(), &device());
        let own_link = Tensor::<B, 4>::from_data(link.to_data(), &device());
        let inner = dnc_link(own_link, fresh(&precedence), fresh(&write), fresh(&read));
        let inner = [inner.link, inner.forward, inner.backward];
        for (name, (a, b)) in ["link", "forward", "backward"]
            .into_iter()
            .zip(inner.iter().zip(&theirs))
        {
            let a: Vec<f64> = a.to_data().convert::<f64>().to_vec().unwrap();
            let d = rel_diff(&a, &to_vec(b.clone()));
            assert!(d < 10.0 * tol(), "{case} {name} without autodiff: {d:e}");
        }
        let g_ours = loss(ours).backward();
        let g_theirs = loss(theirs).backward();
        let grads = |g| {
            let mut out = vec![
                grad_vec(&precedence, g),
                grad_vec(&write, g),
                grad_vec(&read, g),
            ];
            if link_tracked {
                out.push(grad_vec(&link, g));
            }
            out
        };
        for (name, (a, b)) in ["precedence", "write", "read", "link"]
            .into_iter()
            .zip(grads(&g_ours).iter().zip(&grads(&g_theirs)))
        {
            let d = rel_diff(a, b);
            assert!(d < 100.0 * tol(), "{case} ∂{name}: {d:e}");
        }
    }
}

#[test]
#[should_panic(expected = "do not fit")]
fn dnc_link_refuses_mismatched_shapes() {
    let link = random([2, 1, 5, 5], 1, 0.0, 1.0);
    let precedence = random([2, 1, 5], 2, 0.0, 1.0);
    let write = random([2, 1, 4], 3, 0.0, 1.0);
    let read = random([2, 3, 5], 4, 0.0, 1.0);
    let _ = dnc_link(link, precedence, write, read);
}

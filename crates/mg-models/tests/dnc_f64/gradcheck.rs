//! Finite-difference gradient checks in f64: allocation, multi-head allocation, and a whole
//! few-step DNC unroll with respect to its input, parameters and initial state.
//!
//! Losses are `Σ output ⊙ R` with fixed random `R`, so every output element carries its own
//! weight. Central differences with `h = 1e-6` have a truncation error of order `h²·f'''`
//! and a rounding error of order `1e-16·|L|/h`; a relative tolerance of 1e-5 (against
//! `max(|analytic|, |numeric|, 1e-2)`) is far tighter than the reference's 0.01–0.1 and still
//! far above both errors. Inputs are random and continuous, so no two usages tie and the
//! allocation order is locally constant, as the gradient assumes; where two usages come within
//! a step of each other, [`check`] steps down (see there).

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use mg_models::dnc::{allocation, write_allocation_weights};
use mg_models::{Dnc, DncConfig, DncState};

use crate::{TestAutodiffBackend as AB, device, tensor, uniform, values};

const H: f64 = 1e-6;
const TOLERANCE: f64 = 1e-5;

fn random<const D: usize>(shape: [usize; D], seed: u64) -> Tensor<AB, D> {
    let n = shape.iter().product();
    tensor(uniform(n, seed), shape)
}

fn scalar(t: Tensor<AB, 1>) -> f64 {
    values(t)[0]
}

fn weighted<const D: usize>(t: Tensor<AB, D>, seed: u64) -> Tensor<AB, 1> {
    let weights = random(t.dims(), seed).sub_scalar(0.5);
    (t * weights).sum()
}

/// Compares the analytic gradient `grad` of `loss(p)` at `p0` with central differences on
/// a spread of entries.
///
/// A central difference across a point where the loss is not smooth (two usages swapping
/// places in the allocation order within `±h`) is no reference, so an entry that disagrees
/// at `h = H` is tried again at `H/10` and `H/100`, but only when its forward and backward
/// differences disagree by more than the mismatch itself (a loss that is smooth there and an
/// analytic gradient that is wrong fail at once). Rounding of the loss (`ε·|L|/h`) is added
/// to the tolerance at the smaller steps. The loss must give the same value twice for the
/// same input.
fn check<const D: usize>(
    name: &str,
    p0: &Tensor<AB, D>,
    grad: Option<Tensor<burn::backend::Flex, D>>,
    loss: impl Fn(Tensor<AB, D>) -> f64,
) {
    let grad = values(grad.unwrap_or_else(|| panic!("{name}: no gradient")));
    let base = values(p0.clone());
    let shape = p0.dims();
    let n = base.len();
    let picks: Vec<usize> = (0..n).step_by((n / 12).max(1)).chain([n - 1]).collect();
    let at = |i: usize, delta: f64| {
        let mut v = base.clone();
        v[i] += delta;
        loss(Tensor::from_data(TensorData::new(v, shape), &device()))
    };
    let l0 = at(0, 0.0);
    let mut max_grad = 0.0f64;
    for &i in &picks {
        let analytic = grad[i];
        max_grad = max_grad.max(analytic.abs());
        let mut tried = Vec::new();
        for h in [H, H / 10.0, H / 100.0] {
            let (plus, minus) = (at(i, h), at(i, -h));
            let numeric = (plus - minus) / (2.0 * h);
            let scale = analytic.abs().max(numeric.abs()).max(1e-2);
            let rounding = match h < H {
                true => 8.0 * f64::EPSILON * l0.abs().max(1.0) / h,
                false => 0.0,
            };
            let mismatch = (analytic - numeric).abs();
            if mismatch <= TOLERANCE * scale + rounding {
                break;
            }
            assert_eq!(
                at(i, h).to_bits(),
                plus.to_bits(),
                "{name}[{i}]: the loss differs between two evaluations at the same input"
            );
            let (forward, backward) = ((plus - l0) / h, (l0 - minus) / h);
            tried.push(format!(
                "h = {h:e}: central {numeric}, forward {forward}, backward {backward}"
            ));
            assert!(
                (forward - backward).abs() > mismatch && h > H / 100.0,
                "{name}[{i}]: analytic {analytic} vs numeric ({})",
                tried.join("; ")
            );
        }
    }
    assert!(max_grad > 0.0, "{name}: all checked gradients are zero");
}

/// The check fails on a gradient that is off by 0.1 %.
#[test]
#[should_panic(expected = "analytic")]
fn a_wrong_gradient_fails_the_check() {
    let usage = random([3, 7], 1).require_grad();
    let loss = |u: Tensor<AB, 2>| weighted(allocation(u), 2);
    let grads = loss(usage.clone()).backward();
    let wrong = usage.grad(&grads).map(|g| g.mul_scalar(1.001));
    check("usage", &usage, wrong, |u| scalar(loss(u)));
}

/// A loss with a jump inside `±H` at one entry: the check steps down and passes there, with
/// the gradient of the smooth part.
#[test]
fn a_jump_within_the_step_is_stepped_over() {
    let x = random([13], 9).require_grad();
    let jump_at = values(x.clone())[0] + 0.3 * H;
    let smooth = |x: Tensor<AB, 1>| (x.clone() * x).sum();
    let grads = smooth(x.clone()).backward();
    check("x", &x, x.grad(&grads), |x| {
        let jump = if values(x.clone())[0] > jump_at {
            1e-4
        } else {
            0.0
        };
        scalar(smooth(x)) + jump
    });
}

#[test]
fn allocation_gradient_matches_finite_differences() {
    let usage = random([3, 7], 1).require_grad();
    let loss = |u: Tensor<AB, 2>| weighted(allocation(u), 2);
    let grads = loss(usage.clone()).backward();
    check("usage", &usage, usage.grad(&grads), |u| scalar(loss(u)));
}

#[test]
fn multi_head_allocation_gradient_matches_finite_differences() {
    let usage = random([2, 9], 3).require_grad();
    let gates = random([2, 4], 4).require_grad();
    let loss = |u: Tensor<AB, 2>, g: Tensor<AB, 2>| weighted(write_allocation_weights(u, g), 5);
    let grads = loss(usage.clone(), gates.clone()).backward();
    check("usage", &usage, usage.grad(&grads), |u| {
        scalar(loss(u, gates.clone()))
    });
    check("write gates", &gates, gates.grad(&grads), |g| {
        scalar(loss(usage.clone(), g))
    });
}

const STEPS: usize = 4;
const BATCH: usize = 2;

/// A random but valid state: weightings sum below 1, link entries in `[0, 1/N)` with a
/// zero diagonal, usage in `[0, 1)`.
fn random_state(model: &Dnc<AB>, seed: u64) -> DncState<AB> {
    let s = model.initial_state(BATCH, &device());
    let normalised = |t: Tensor<AB, 3>| t.clone() / (t.sum_dim(2) + 0.5);
    let [_, k, n, _] = s.link.dims();
    let off_diagonal = Tensor::<AB, 2>::eye(n, &device()).neg().add_scalar(1.0);
    DncState {
        read_words: random(s.read_words.dims(), seed).sub_scalar(0.5),
        memory: random(s.memory.dims(), seed + 1)
            .sub_scalar(0.5)
            .mul_scalar(4.0),
        read_weights: normalised(random(s.read_weights.dims(), seed + 2)),
        write_weights: normalised(random(s.write_weights.dims(), seed + 3)),
        link: random([BATCH, k, n, n], seed + 4).div_scalar(n as f64)
            * off_diagonal.reshape([1, 1, n, n]),
        precedence: normalised(random(s.precedence.dims(), seed + 5)),
        usage: random(s.usage.dims(), seed + 6),
        hidden: random(s.hidden.dims(), seed + 7).sub_scalar(0.5),
        cell: random(s.cell.dims(), seed + 8).sub_scalar(0.5),
    }
}

/// The loss reads every step's output and the final memory, read weights and link.
fn loss_of(y: Tensor<AB, 2>, last: DncState<AB>) -> Tensor<AB, 1> {
    weighted(y, 100)
        + weighted(last.memory, 101)
        + weighted(last.read_weights, 102)
        + weighted(last.link, 103)
}

/// The same unroll step by step, with the previous write weights that enter each step (used
/// only by the usage update, behind a stop-gradient) replaced by the constants `frozen`:
/// at `frozen` = the values of the unperturbed run, its value equals the windowed loss and
/// its exact derivative is the one autodiff computes with the stop-gradient.
fn frozen_loss(
    model: &Dnc<AB>,
    x: Tensor<AB, 2>,
    state: DncState<AB>,
    frozen: &[Tensor<AB, 3>],
) -> f64 {
    let mut state = state;
    let mut ys = Vec::new();
    for (t, w) in frozen.iter().enumerate() {
        state.write_weights = w.clone();
        let (y, next) = model.step(x.clone().narrow(0, t * BATCH, BATCH), state);
        ys.push(y);
        state = next;
    }
    scalar(loss_of(Tensor::cat(ys, 0), state))
}

fn check_unroll(config: DncConfig, seed: u64) {
    let model = config.init::<AB>(&device());
    let x = random([STEPS * BATCH, config.input_size], seed)
        .sub_scalar(0.5)
        .mul_scalar(4.0)
        .require_grad();
    let s0 = random_state(&model, seed + 10);
    let s0 = DncState {
        memory: s0.memory.require_grad(),
        read_weights: s0.read_weights.require_grad(),
        precedence: s0.precedence.require_grad(),
        link: s0.link.require_grad(),
        ..s0
    };
    let (y, last) = model.forward_window(x.clone(), STEPS, Some(s0.clone()));
    let grads = loss_of(y, last).backward();

    let mut frozen = vec![s0.write_weights.clone()];
    let mut state = s0.clone();
    for t in 0..STEPS - 1 {
        state = model.step(x.clone().narrow(0, t * BATCH, BATCH), state).1;
        frozen.push(state.write_weights.clone().detach());
    }
    let loss = |m: &Dnc<AB>, x: Tensor<AB, 2>, s: DncState<AB>| frozen_loss(m, x, s, &frozen);

    check("input", &x, x.grad(&grads), |x| loss(&model, x, s0.clone()));
    check("memory", &s0.memory, s0.memory.grad(&grads), |m| {
        loss(
            &model,
            x.clone(),
            DncState {
                memory: m,
                ..s0.clone()
            },
        )
    });
    check(
        "read weights",
        &s0.read_weights,
        s0.read_weights.grad(&grads),
        |w| {
            loss(
                &model,
                x.clone(),
                DncState {
                    read_weights: w,
                    ..s0.clone()
                },
            )
        },
    );
    check(
        "precedence",
        &s0.precedence,
        s0.precedence.grad(&grads),
        |p| {
            loss(
                &model,
                x.clone(),
                DncState {
                    precedence: p,
                    ..s0.clone()
                },
            )
        },
    );
    check("link", &s0.link, s0.link.grad(&grads), |l| {
        loss(
            &model,
            x.clone(),
            DncState {
                link: l,
                ..s0.clone()
            },
        )
    });

    let w = model.controller.weight.val();
    check(
        "controller weight",
        &w,
        model.controller.weight.grad(&grads),
        |w| {
            let mut m = model.clone();
            m.controller.weight = Param::from_tensor(w);
            loss(&m, x.clone(), s0.clone())
        },
    );
    let w = model.interface.read_mode.weight.val();
    let g = model.interface.read_mode.weight.grad(&grads);
    check("read-mode weight", &w, g, |w| {
        let mut m = model.clone();
        m.interface.read_mode.weight = Param::from_tensor(w);
        loss(&m, x.clone(), s0.clone())
    });
    let w = model.interface.free_gate.weight.val();
    let g = model.interface.free_gate.weight.grad(&grads);
    check("free-gate weight", &w, g, |w| {
        let mut m = model.clone();
        m.interface.free_gate.weight = Param::from_tensor(w);
        loss(&m, x.clone(), s0.clone())
    });
    let w = model.interface.write_strengths.weight.val();
    let g = model.interface.write_strengths.weight.grad(&grads);
    check("write-strength weight", &w, g, |w| {
        let mut m = model.clone();
        m.interface.write_strengths.weight = Param::from_tensor(w);
        loss(&m, x.clone(), s0.clone())
    });
    let w = model.output.weight.val();
    check("output weight", &w, model.output.weight.grad(&grads), |w| {
        let mut m = model.clone();
        m.output.weight = Param::from_tensor(w);
        loss(&m, x.clone(), s0.clone())
    });
}

/// One write head, value clipping on (not reached), the reference's repeat-copy shape in
/// small.
#[test]
fn dnc_unroll_gradients_match_finite_differences() {
    check_unroll(
        DncConfig::new(3, 2, 6, 5, 3)
            .with_read_heads(2)
            .with_clip_value(20.0),
        20,
    );
}

/// The reference `access_test` sizes: N = 20, W = 6, R = 2, K = 3; oneplus strengths.
#[test]
fn multi_head_dnc_unroll_gradients_match_finite_differences() {
    check_unroll(
        DncConfig::new(3, 2, 6, 20, 6)
            .with_read_heads(2)
            .with_write_heads(3)
            .with_strength(mg_models::StrengthOp::Oneplus),
        40,
    );
}

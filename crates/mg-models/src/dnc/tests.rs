//! Unit tests of the DNC in f32 (on Flex, or on a GPU with `test-wgpu` / `test-cuda`): the
//! properties the reference's `addressing_test`, `access_test` and `util_test` check, the
//! dataflow order, configuration checks and parameter counts. Golden values and gradient
//! checks run in f64 (`tests/dnc_f64`).
//!
//! `util_test` (batched gather, inverse permutation) has no counterpart: allocation needs
//! neither, since it sums `ln ũ` over a mask of "sorted before" slots instead of sorting.

use burn::backend::Autodiff;
use burn::module::{Module, Param};
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Tensor, TensorData};

use super::*;
use crate::TestBackend;

type B = TestBackend;
type AB = Autodiff<TestBackend>;

/// Uniform values in `[0, 1)` from a seeded xorshift generator, independent of the backend.
fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

fn rand<const D: usize>(shape: [usize; D], seed: u64) -> Tensor<B, D> {
    let n = shape.iter().product();
    Tensor::from_data(
        TensorData::new(uniform(n, seed), shape),
        &Default::default(),
    )
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

fn assert_close(got: &[f32], want: &[f32], atol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= atol,
            "{what}[{i}]: {g} vs {w} (atol {atol})"
        );
    }
}

fn in_unit_interval(v: &[f32], what: &str) {
    assert!(
        v.iter().all(|x| (0.0..=1.0).contains(x)),
        "{what}: values outside [0, 1]: {v:?}"
    );
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

fn argmin(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] < v[best] { i } else { best })
}

fn one_hot(n: usize, i: usize) -> Vec<f32> {
    (0..n).map(|j| if j == i { 1.0 } else { 0.0 }).collect()
}

// ---- addressing_test ----

#[test]
fn weighted_softmax_with_unit_strengths_is_softmax() {
    let scores = rand([3, 2, 5], 1).mul_scalar(4.0);
    let got = weighted_softmax(scores.clone(), Tensor::ones([3, 2], &Default::default()));
    assert_close(&values(got), &values(softmax(scores, 2)), 1e-6, "softmax");
}

/// The reference's check: random memory, keys and strengths against a host computation
/// with softplus strengths.
#[test]
fn content_weights_match_hand_computation() {
    let (batch, heads, n, w) = (2, 3, 5, 4);
    let memory = rand([batch, n, w], 2).sub_scalar(0.5);
    let keys = rand([batch, heads, w], 3).sub_scalar(0.5);
    let strengths = rand([batch, heads], 4).mul_scalar(4.0).sub_scalar(2.0);
    let got = content_weights(
        memory.clone(),
        keys.clone(),
        strengths.clone(),
        StrengthOp::Softplus,
    );
    assert_eq!(got.dims(), [batch, heads, n]);
    let (m, k, s) = (values(memory), values(keys), values(strengths));
    let norm = |v: &[f32]| (v.iter().map(|x| x * x).sum::<f32>() + 1e-6).sqrt();
    let mut want = Vec::new();
    for b in 0..batch {
        for h in 0..heads {
            let key = &k[(b * heads + h) * w..][..w];
            let beta = (1.0 + s[b * heads + h].exp()).ln();
            let logits: Vec<f32> = (0..n)
                .map(|j| {
                    let row = &m[(b * n + j) * w..][..w];
                    let dot: f32 = key.iter().zip(row).map(|(a, c)| a * c).sum();
                    beta * dot / (norm(key) * norm(row) + 1e-6)
                })
                .collect();
            let total: f32 = logits.iter().map(|l| l.exp()).sum();
            want.extend(logits.iter().map(|l| l.exp() / total));
        }
    }
    assert_close(&values(got), &want, 1e-4, "content weights");
}

#[test]
fn content_weights_of_zero_rows_have_finite_values_and_gradients() {
    let device = Default::default();
    let (n, w) = (4, 3);
    let mut m = vec![0.0f32; n * w];
    m[..w].copy_from_slice(&[0.5, -1.0, 2.0]);
    let memory = Tensor::<AB, 3>::from_data(TensorData::new(m, [1, n, w]), &device).require_grad();
    let keys =
        Tensor::<AB, 3>::from_data(TensorData::new(vec![0.3f32, 0.1, -0.2], [1, 1, w]), &device)
            .require_grad();
    let strengths = Tensor::<AB, 2>::from_data([[0.7f32]], &device).require_grad();
    let weights = content_weights(
        memory.clone(),
        keys.clone(),
        strengths.clone(),
        StrengthOp::Softplus,
    );
    let out: Vec<f32> = weights.to_data().to_vec().unwrap();
    assert!(out.iter().all(|v| v.is_finite()), "{out:?}");
    let grads = (weights * Tensor::from_data([[[1.0f32, 2.0, 3.0, 4.0]]], &device))
        .sum()
        .backward();
    for (name, g) in [
        ("memory", memory.grad(&grads).unwrap().into_data()),
        ("keys", keys.grad(&grads).unwrap().into_data()),
        ("strengths", strengths.grad(&grads).unwrap().into_data()),
    ] {
        let g: Vec<f32> = g.to_vec().unwrap();
        assert!(g.iter().all(|v| v.is_finite()), "{name}: {g:?}");
    }
}

#[test]
fn all_zero_memory_gives_uniform_content_weights() {
    let memory = Tensor::<B, 3>::zeros([2, 5, 3], &Default::default());
    let got = content_weights(
        memory,
        rand([2, 2, 3], 5),
        rand([2, 2], 6),
        StrengthOp::Oneplus,
    );
    assert_close(&values(got), &[0.2; 20], 1e-7, "uniform");
}

/// The reference's `testLinkage`: 5 random steps (write weights normalised to sum < 1),
/// the last two one-hot (head 0: slot 0 then slot 1; head 1: slot 3 then slot 2).
#[test]
fn temporal_links_follow_the_writes() {
    let (batch, heads, n, reads) = (3, 2, 4, 2);
    let device = Default::default();
    let mut link = Tensor::<B, 4>::zeros([batch, heads, n, n], &device);
    let mut precedence = Tensor::<B, 3>::zeros([batch, heads, n], &device);
    for step in 0..5u64 {
        let write = if step < 3 {
            let w = rand([batch, heads, n], 10 + step);
            w.clone() / (w.sum_dim(2) + 1.0)
        } else {
            let (slot0, slot1) = if step == 3 { (0, 3) } else { (1, 2) };
            let mut v = Vec::new();
            for _ in 0..batch {
                v.extend(one_hot(n, slot0));
                v.extend(one_hot(n, slot1));
            }
            tensor(v, [batch, heads, n])
        };
        link = link_update(link, precedence.clone(), write.clone());
        precedence = precedence_update(precedence, write);
        let l = values(link.clone());
        in_unit_interval(&l, "link");
        in_unit_interval(&values(precedence.clone()), "precedence");
        for bk in 0..batch * heads {
            let m = &l[bk * n * n..][..n * n];
            for i in 0..n {
                assert_eq!(m[i * n + i], 0.0, "diagonal");
                let row: f32 = (0..n).map(|j| m[i * n + j]).sum();
                let col: f32 = (0..n).map(|j| m[j * n + i]).sum();
                assert!(
                    row <= 1.0 + 1e-6 && col <= 1.0 + 1e-6,
                    "row {row} col {col}"
                );
            }
        }
    }
    let l = values(link.clone());
    for b in 0..batch {
        let head = |k: usize| &l[(b * heads + k) * n * n..][..n * n];
        // Column 0 of head 0 is one-hot at row 1; column 3 of head 1 at row 2.
        let col = |m: &[f32], j: usize| (0..n).map(|i| m[i * n + j]).collect::<Vec<_>>();
        assert_close(&col(head(0), 0), &one_hot(n, 1), 1e-6, "L[head 0][:, 0]");
        assert_close(&col(head(1), 3), &one_hot(n, 2), 1e-6, "L[head 1][:, 3]");
    }
    // Read heads: head 0 at slot 0, head 1 at slot 2.
    let mut prev = Vec::new();
    for _ in 0..batch {
        prev.extend(one_hot(n, 0));
        prev.extend(one_hot(n, 2));
    }
    let prev = tensor(prev, [batch, reads, n]);
    let forward = values(directional_read_weights(link.clone(), prev.clone(), true));
    let backward = values(directional_read_weights(link, prev, false));
    for b in 0..batch {
        // [batch, R, K, N]: read head 0 through write head 0, read head 1 through write head 1.
        let at =
            |v: &[f32], r: usize, k: usize| v[((b * reads + r) * heads + k) * n..][..n].to_vec();
        assert_close(&at(&forward, 0, 0), &one_hot(n, 1), 1e-6, "forward");
        assert_close(&at(&backward, 1, 1), &one_hot(n, 3), 1e-6, "backward");
    }
}

#[test]
fn precedence_stays_in_unit_interval_and_follows_full_writes() {
    let prev = rand([2, 3, 6], 20);
    let prev = prev.clone() / prev.sum_dim(2).add_scalar(0.5);
    let zero = Tensor::<B, 3>::zeros([2, 3, 6], &Default::default());
    assert_close(
        &values(precedence_update(prev.clone(), zero)),
        &values(prev.clone()),
        0.0,
        "no write",
    );
    let w = rand([2, 3, 6], 21);
    let full = w.clone() / w.sum_dim(2);
    let got = precedence_update(prev.clone(), full.clone());
    assert_close(&values(got), &values(full), 1e-6, "full write");
    let partial = rand([2, 3, 6], 22).mul_scalar(0.15);
    in_unit_interval(&values(precedence_update(prev, partial)), "precedence");
}

#[test]
fn usage_is_one_after_a_full_write_and_zero_after_a_full_free_read() {
    let (batch, k, r, n) = (2, 2, 3, 5);
    let prev_usage = rand([batch, n], 30);
    let mut ww = values(rand([batch, k, n], 31).mul_scalar(0.3));
    let mut wr = values(rand([batch, r, n], 32).mul_scalar(0.3));
    let mut free = values(rand([batch, r], 33));
    // Batch 0: head 1 writes slot 2 fully, nothing frees slot 2.
    ww[n + 2] = 1.0;
    for i in 0..r {
        wr[i * n + 2] = 0.0;
    }
    // Batch 1: read head 0 reads slot 4 fully with free gate 1.
    wr[r * n + 4] = 1.0;
    free[r] = 1.0;
    let usage = values(usage_update(
        prev_usage,
        tensor(ww, [batch, k, n]),
        tensor(free, [batch, r]),
        tensor(wr, [batch, r, n]),
    ));
    in_unit_interval(&usage, "usage");
    assert_eq!(usage[2], 1.0, "full write");
    assert_eq!(usage[n + 4], 0.0, "full free read");
}

#[test]
fn usage_ignores_the_gradient_of_previous_write_weights() {
    let device = Default::default();
    let ww = Tensor::<AB, 3>::full([1, 1, 3], 0.5, &device).require_grad();
    let free = Tensor::<AB, 2>::full([1, 1], 0.5, &device).require_grad();
    let usage = usage_update(
        Tensor::full([1, 3], 0.2, &device),
        ww.clone(),
        free.clone(),
        Tensor::full([1, 1, 3], 0.3, &device),
    );
    let grads = usage.sum().backward();
    assert!(
        ww.grad(&grads).is_none(),
        "write weights must not get a gradient"
    );
    assert!(free.grad(&grads).is_some());
}

/// The reference's `testWriteAllocationWeights`: K = 5, N = 23.
#[test]
fn write_allocation_of_several_heads() {
    let (batch, k, n) = (2, 5, 23);
    let usage = rand([batch, n], 40);
    let gates = rand([batch, k], 41);
    let weights = values(write_allocation_weights(usage.clone(), gates.clone()));
    in_unit_interval(&weights, "allocation");
    for head in weights.chunks(n) {
        let sum: f32 = head.iter().sum();
        assert!((sum - 1.0).abs() < 1e-3, "sum {sum}");
    }

    // A zero gate on head 0 leaves the usage unchanged, so head 1 allocates the same.
    let mut g = values(gates);
    g[0] = 0.0;
    g[k] = 0.0;
    let weights = values(write_allocation_weights(usage, tensor(g, [batch, k])));
    for b in 0..batch {
        let head = |i: usize| &weights[(b * k + i) * n..][..n];
        assert_close(head(0), head(1), 0.0, "heads 0 and 1");
    }

    // Usage 0 at slot 4 and 1e-4 at slot 3, all others >= 0.1: head 0 takes slot 4,
    // head 1 slot 3.
    let mut u: Vec<f32> = uniform(batch * n, 42)
        .iter()
        .map(|v| 0.1 + 0.9 * v)
        .collect();
    for b in 0..batch {
        u[b * n + 4] = 0.0;
        u[b * n + 3] = 1e-4;
    }
    let ones = Tensor::ones([batch, k], &Default::default());
    let weights = values(write_allocation_weights(tensor(u, [batch, n]), ones));
    for b in 0..batch {
        assert_eq!(argmax(&weights[b * k * n..][..n]), 4);
        assert_eq!(argmax(&weights[(b * k + 1) * n..][..n]), 3);
    }
}

#[test]
fn allocation_prefers_the_least_used_slot() {
    let (batch, n) = (7, 13);
    let usage = rand([batch, n], 50);
    let alloc = values(allocation(usage.clone()));
    let usage = values(usage);
    for b in 0..batch {
        let (u, a) = (&usage[b * n..][..n], &alloc[b * n..][..n]);
        assert_eq!(argmin(u), argmax(a));
        assert_eq!(argmax(u), argmin(a));
        let sum: f32 = a.iter().sum();
        assert!((sum - 1.0).abs() < 0.01, "sum {sum}");
    }
}

#[test]
fn allocation_breaks_ties_by_slot_index() {
    let alloc = values(allocation(tensor(vec![0.5, 0.2, 0.5, 0.2, 0.5], [1, 5])));
    // Order: slot 1, 3, 0, 2, 4.
    let order = [1, 3, 0, 2, 4];
    for pair in order.windows(2) {
        assert!(alloc[pair[0]] > alloc[pair[1]], "{alloc:?}");
    }
}

// ---- access_test (N = 20, W = 6, R = 2, K = 3) ----

fn access_config() -> DncConfig {
    DncConfig::new(3, 2, 8, 20, 6)
        .with_read_heads(2)
        .with_write_heads(3)
}

#[test]
fn access_builds_and_takes_an_sgd_step() {
    let device = Default::default();
    let model = access_config().init::<AB>(&device);
    let x =
        Tensor::<AB, 2>::from_data(TensorData::new(uniform(4 * 2 * 3, 60), [4 * 2, 3]), &device);
    let (y, state) = model.forward_window(x, 4, None);
    assert_eq!(y.dims(), [8, 2]);
    assert_eq!(state.link.dims(), [2, 3, 20, 20]);
    let loss = y.powi_scalar(2).sum() + state.memory.sum();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let before = model.interface.read_keys.weight.val().into_data();
    let mut optim = SgdConfig::new().init();
    let model = optim.step(0.1, model, grads);
    let after = model.interface.read_keys.weight.val().into_data();
    assert_ne!(before, after, "the SGD step changed nothing");
}

#[test]
fn read_modes_are_distributions() {
    let model = access_config().init::<B>(&Default::default());
    let xi = rand([3, access_config().interface_size()], 61)
        .mul_scalar(6.0)
        .sub_scalar(3.0);
    let modes = model.interface.parse(xi).read_modes;
    assert_eq!(modes.backward.dims(), [3, 2, 3]);
    let total = modes.backward.sum_dim(2).squeeze_dim::<2>(2)
        + modes.forward.sum_dim(2).squeeze_dim::<2>(2)
        + modes.content;
    assert_close(&values(total), &[1.0; 6], 1e-6, "mode sums");
}

#[test]
fn write_weights_sum_to_the_write_gate_and_allocate_free_slots() {
    let (batch, k, n, w) = (2, 3, 20, 6);
    let memory = rand([batch, n, w], 70).sub_scalar(0.5).mul_scalar(10.0);
    let mut usage = values(rand([batch, n], 71));
    let mut ga = values(rand([batch, k], 72));
    let mut gw = values(rand([batch, k], 73));
    for b in 0..batch {
        usage[b * n + 3] = 0.0;
        ga[b * k] = 1.0;
        gw[b * k] = 1.0;
    }
    let keys = rand([batch, k, w], 74);
    let strengths = rand([batch, k], 75);
    let content = content_weights(memory, keys, strengths, StrengthOp::Softplus);
    let weights = values(write_weighting(
        tensor(usage, [batch, n]),
        content,
        tensor(ga, [batch, k]),
        tensor(gw.clone(), [batch, k]),
    ));
    for (i, head) in weights.chunks(n).enumerate() {
        let sum: f32 = head.iter().sum();
        assert!((sum - gw[i]).abs() < 5e-2, "sum {sum} vs gate {}", gw[i]);
    }
    for b in 0..batch {
        assert_close(&weights[b * k * n..][..n], &one_hot(n, 3), 1e-3, "head 0");
    }
}

#[test]
fn pure_content_read_finds_its_key() {
    let (batch, r, k, n, w) = (2, 2, 3, 20, 6);
    let memory = rand([batch, n, w], 80).sub_scalar(0.5).mul_scalar(10.0);
    let m = values(memory.clone());
    let mut keys = values(rand([batch, r, w], 81));
    keys[w..2 * w].copy_from_slice(&m[3 * w..4 * w]); // batch 0, head 1 = row 3
    let mut strengths = values(rand([batch, r], 82));
    strengths[1] = 100.0;
    let content = content_weights(
        memory,
        tensor(keys, [batch, r, w]),
        tensor(strengths, [batch, r]),
        StrengthOp::Softplus,
    );
    let prev = rand([batch, r, n], 83);
    let prev = prev.clone() / prev.sum_dim(2);
    let link = rand([batch, k, n, n], 84).div_scalar(n as f32);
    let mut mode = values(rand([batch, r, 1 + 2 * k], 85));
    mode[(1 + 2 * k)..2 * (1 + 2 * k)].copy_from_slice(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
    let mode = softmax(tensor(mode, [batch, r, 1 + 2 * k]).mul_scalar(30.0), 2);
    let modes = ReadModes {
        backward: mode.clone().narrow(2, 0, k),
        forward: mode.clone().narrow(2, k, k),
        content: mode.narrow(2, 2 * k, 1).reshape([batch, r]),
    };
    let forward = directional_read_weights(link.clone(), prev.clone(), true);
    let backward = directional_read_weights(link, prev, false);
    let weights = values(read_weights(&modes, content, forward, backward));
    assert_close(&weights[n..2 * n], &one_hot(n, 3), 1e-3, "read head 1");
}

// ---- dataflow order ----

fn controls(
    batch: usize,
    n_reads: usize,
    word: Vec<f32>,
    allocation_gate: f32,
    read_strength: f32,
) -> Controls<B> {
    let w = word.len();
    let device = Default::default();
    let key: Vec<f32> = (0..batch * n_reads).flat_map(|_| word.clone()).collect();
    let full = |shape: [usize; 2], v: f32| Tensor::<B, 2>::full(shape, v, &device);
    let mut modes = vec![0.0f32; batch * n_reads * 3];
    for m in modes.chunks_mut(3) {
        m[2] = 1.0;
    }
    let modes = tensor(modes, [batch, n_reads, 3]);
    Controls {
        write_vectors: tensor(word.repeat(batch), [batch, 1, w]),
        erase_vectors: Tensor::zeros([batch, 1, w], &device),
        free_gates: full([batch, n_reads], 0.0),
        allocation_gates: full([batch, 1], allocation_gate),
        write_gates: full([batch, 1], 1.0),
        read_modes: ReadModes {
            backward: modes.clone().narrow(2, 0, 1),
            forward: modes.clone().narrow(2, 1, 1),
            content: modes.narrow(2, 2, 1).reshape([batch, n_reads]),
        },
        write_keys: tensor(key.clone(), [batch, n_reads, w]).narrow(1, 0, 1),
        write_strengths: full([batch, 1], 5.0),
        read_keys: tensor(key, [batch, n_reads, w]),
        read_strengths: full([batch, n_reads], read_strength),
    }
}

/// A read sees the word written in the same step: the first write goes to slot 0
/// (allocation, ties to the lowest slot), and a content read for that word finds it.
#[test]
fn reads_see_the_write_of_the_same_step() {
    let (n, w) = (6, 3);
    let model = DncConfig::new(1, 1, 4, n, w)
        .with_read_heads(2)
        .init::<B>(&Default::default());
    let state = model.initial_state(2, &Default::default());
    let word = vec![0.5, -1.0, 2.0];
    let next = access_step(
        controls(2, 2, word.clone(), 1.0, 100.0),
        state,
        StrengthOp::Softplus,
    );
    let ww = values(next.write_weights);
    assert!(
        ww[0] > 0.999 && ww[1..n].iter().all(|&v| v < 1e-5),
        "{ww:?}"
    );
    let read = values(next.read_words);
    for head in read.chunks(w) {
        assert_close(head, &word, 1e-3, "read word");
    }
}

/// The write's content lookup sees the previous memory: on an all-zero memory a pure
/// content write is uniform whatever its key.
#[test]
fn write_content_lookup_uses_the_previous_memory() {
    let n = 5;
    let model = DncConfig::new(1, 1, 4, n, 3)
        .with_read_heads(1)
        .init::<B>(&Default::default());
    let state = model.initial_state(1, &Default::default());
    let next = access_step(
        controls(1, 1, vec![1.0, 2.0, 3.0], 0.0, 1.0),
        state,
        StrengthOp::Softplus,
    );
    assert_close(
        &values(next.write_weights),
        &[0.2; 5],
        1e-6,
        "uniform write",
    );
}

#[test]
fn read_mode_orders_differ_only_in_layout() {
    let config = DncConfig::new(2, 2, 4, 5, 3).with_read_heads(1);
    let device = Default::default();
    let code = config.init::<B>(&device);
    let paper = config
        .clone()
        .with_read_mode_order(ReadModeOrder::Paper)
        .init::<B>(&device);
    let i = config.interface_size();
    let mut xi = vec![0.0f32; i];
    // Read-mode logits sit after 2·W + 3 values (K = 1, R = 1).
    xi[2 * 3 + 3..2 * 3 + 6].copy_from_slice(&[1.0, 2.0, 3.0]);
    let p = values(softmax(tensor(vec![1.0, 2.0, 3.0], [1, 3]), 1));
    let code = code.interface.parse(tensor(xi.clone(), [1, i])).read_modes;
    let paper = paper.interface.parse(tensor(xi, [1, i])).read_modes;
    assert_close(&values(code.backward), &p[0..1], 1e-6, "code backward");
    assert_close(&values(code.forward), &p[1..2], 1e-6, "code forward");
    assert_close(&values(code.content), &p[2..3], 1e-6, "code content");
    assert_close(&values(paper.backward), &p[0..1], 1e-6, "paper backward");
    assert_close(&values(paper.content), &p[1..2], 1e-6, "paper content");
    assert_close(&values(paper.forward), &p[2..3], 1e-6, "paper forward");
}

// ---- the whole model ----

#[test]
fn window_equals_steps_and_keeps_row_order() {
    let device = Default::default();
    let model = DncConfig::new(3, 2, 8, 6, 4)
        .with_read_heads(2)
        .with_clip_value(20.0)
        .init::<B>(&device);
    let (steps, batch) = (4, 3);
    let x = rand([steps * batch, 3], 90).sub_scalar(0.5).mul_scalar(4.0);
    let (y, last) = model.forward_window(x.clone(), steps, None);
    let mut state = model.initial_state(batch, &device);
    let mut ys = Vec::new();
    for t in 0..steps {
        let (y_t, next) = model.step(x.clone().narrow(0, t * batch, batch), state);
        ys.push(y_t);
        state = next;
    }
    assert_close(&values(y), &values(Tensor::cat(ys, 0)), 1e-6, "outputs");
    assert_close(
        &values(last.memory.clone()),
        &values(state.memory),
        1e-6,
        "memory",
    );
    assert_close(
        &values(last.link.clone()),
        &values(state.link),
        1e-6,
        "link",
    );

    // The window continues from a given state.
    let (y2, _) = model.forward_window(x.clone(), steps, Some(last.detach()));
    assert_eq!(y2.dims(), [steps * batch, 2]);
}

#[test]
fn clipping_bounds_outputs_and_controller_state() {
    let device = Default::default();
    let mut model = DncConfig::new(3, 2, 8, 6, 4)
        .with_clip_value(0.01)
        .init::<B>(&device);
    // A bias of ±1 pushes both outputs past the clip.
    model.output.bias = Some(Param::from_tensor(tensor(vec![1.0, -1.0], [2])));
    let x = rand([6, 3], 91).mul_scalar(10.0);
    let (y, state) = model.forward_window(x, 3, None);
    for (name, v) in [
        ("y", values(y)),
        ("h", values(state.hidden)),
        ("c", values(state.cell)),
    ] {
        assert!(v.iter().all(|x| x.abs() <= 0.01), "{name}: {v:?}");
        assert!(
            v.iter().any(|x| x.abs() > 0.009),
            "{name} never reaches the clip"
        );
    }
}

#[test]
fn initial_state_is_zero_with_the_table_shapes() {
    let model = DncConfig::new(3, 2, 8, 6, 4)
        .with_write_heads(2)
        .init::<B>(&Default::default());
    let s = model.initial_state(5, &Default::default());
    assert_eq!(s.read_words.dims(), [5, 4, 4]);
    assert_eq!(s.memory.dims(), [5, 6, 4]);
    assert_eq!(s.read_weights.dims(), [5, 4, 6]);
    assert_eq!(s.write_weights.dims(), [5, 2, 6]);
    assert_eq!(s.link.dims(), [5, 2, 6, 6]);
    assert_eq!(s.precedence.dims(), [5, 2, 6]);
    assert_eq!(s.usage.dims(), [5, 6]);
    assert_eq!(s.hidden.dims(), [5, 8]);
    assert_eq!(s.cell.dims(), [5, 8]);
    assert_eq!(s.link.abs().sum().into_scalar(), 0.0);
}

#[test]
fn parameter_counts_match_the_reference() {
    let device = Default::default();
    // DNC1 bAbI: X = Y = 159, C = 256, N×W = 256×64, R = 4, K = 1.
    let babi = DncConfig::new(159, 159, 256, 256, 64);
    assert_eq!(babi.num_params(), 890_742);
    assert_eq!(babi.interface_size(), 471);
    assert_eq!(babi.memory_size(), 16_384);
    assert_eq!(babi.init::<B>(&device).num_params(), 890_742);
    // Repeat-copy defaults of train.py: X = 6, Y = 5, C = 64, N = W = 16, R = 4, K = 1.
    let copy = DncConfig::new(6, 5, 64, 16, 16);
    assert_eq!(copy.num_params(), 43_980);
    assert_eq!(copy.init::<B>(&device).num_params(), 43_980);
    // Several write heads.
    let multi = access_config();
    assert_eq!(multi.init::<B>(&device).num_params(), multi.num_params());
}

#[test]
fn validate_names_the_bad_field() {
    let good = DncConfig::new(6, 5, 64, 16, 16);
    assert_eq!(good.validate(), Ok(()));
    let cases = [
        (good.clone().with_read_heads(0), "read_heads"),
        (good.clone().with_write_heads(0), "write_heads"),
        (DncConfig::new(6, 5, 64, 16, 0), "word_size"),
        (DncConfig::new(6, 5, 64, 0, 16), "memory_slots"),
        (DncConfig::new(6, 5, 0, 16, 16), "controller_size"),
        (DncConfig::new(0, 5, 64, 16, 16), "input_size"),
        (DncConfig::new(6, 0, 64, 16, 16), "output_size"),
        (good.clone().with_clip_value(-1.0), "clip_value"),
        (good.clone().with_clip_value(f64::NAN), "clip_value"),
        (
            good.clone()
                .with_write_heads(2)
                .with_read_mode_order(ReadModeOrder::Paper),
            "write_heads",
        ),
    ];
    for (config, field) in cases {
        let err = config.validate().expect_err(field);
        assert_eq!(err.field(), Some(field), "{err} does not name {field}");
    }
    assert_eq!(
        good.with_read_mode_order(ReadModeOrder::Paper).validate(),
        Ok(())
    );
}

#[test]
#[should_panic(expected = "word_size")]
fn init_panics_with_the_bad_field() {
    DncConfig::new(6, 5, 64, 16, 0).init::<B>(&Default::default());
}

#[test]
fn softplus_is_stable_and_oneplus_adds_one() {
    let x = tensor(vec![-100.0, -1.0, 0.0, 1.0, 50.0, 1000.0], [6]);
    let want: Vec<f32> = [-100.0f64, -1.0, 0.0, 1.0, 50.0, 1000.0]
        .iter()
        .map(|&v: &f64| if v > 30.0 { v } else { v.exp().ln_1p() } as f32)
        .collect();
    assert_close(&values(softplus(x.clone())), &want, 1e-6, "softplus");
    let plus: Vec<f32> = want.iter().map(|v| v + 1.0).collect();
    assert_close(
        &values(StrengthOp::Oneplus.apply(x)),
        &plus,
        1e-6,
        "oneplus",
    );
}

//! Golden values of the addressing equations (dnc-spec.md §15, from an independent
//! pure-Python evaluation with ε = 1e-6). The goldens have six significant digits, so values
//! are compared with a relative tolerance of 1e-5; tiny values such as 1e-19 are compared
//! relative to themselves, exact zeros with an absolute tolerance of 1e-12.

use mg_models::dnc::{
    StrengthOp, allocation, content_weights, cosine_similarity, directional_read_weights,
    link_update, precedence_update, usage_update, write_allocation_weights,
};

use crate::{TestBackend as B, tensor, values};

fn assert_golden(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs() + 1e-12,
            "{what}[{i}]: {g:e} vs golden {w:e}\n  got {got:?}"
        );
    }
}

fn alloc(usage: Vec<f64>) -> Vec<f64> {
    let n = usage.len();
    values(allocation(tensor::<B, 2>(usage, [1, n])))
}

#[test]
fn allocation_golden_values() {
    assert_golden(
        &alloc(vec![0.4, 0.1, 0.7, 0.0]),
        &[6.00005e-8, 8.99999e-7, 1.20001e-8, 0.999999],
        "u = [0.4, 0.1, 0.7, 0]",
    );
    // At t = 1 every usage ties; the lowest slot comes first.
    assert_golden(
        &alloc(vec![0.0; 4]),
        &[0.999999, 9.99999e-7, 9.99999e-13, 9.99999e-19],
        "u = 0",
    );
    assert_golden(&alloc(vec![1.0; 4]), &[0.0; 4], "u = 1");
    assert_golden(&alloc(vec![0.5; 3]), &[0.5, 0.25, 0.125], "u = 0.5");
}

#[test]
fn two_head_allocation_golden_values() {
    let got = values(write_allocation_weights(
        tensor::<B, 2>(vec![0.3, 0.0, 0.6], [1, 3]),
        tensor::<B, 2>(vec![1.0, 1.0], [1, 2]),
    ));
    assert_golden(&got[..3], &[7.0e-7, 0.999999, 1.2e-7], "head 1");
    assert_golden(&got[3..], &[0.699999, 1.8e-7, 0.12], "head 2");
}

#[test]
fn cosine_golden_values() {
    let memory = || tensor::<B, 3>(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0, 0.0], [1, 4, 2]);
    let key = || tensor::<B, 3>(vec![1.0, 2.0], [1, 1, 2]);
    let zero = || tensor::<B, 2>(vec![0.0], [1, 1]);
    assert_golden(
        &values(cosine_similarity(memory(), key())),
        &[1.0, 0.98387, 0.973417, 0.0],
        "similarity",
    );
    assert_golden(
        &values(content_weights(
            memory(),
            key(),
            zero(),
            StrengthOp::Softplus,
        )),
        &[0.288133, 0.284929, 0.282872, 0.144066],
        "softplus weights",
    );
    assert_golden(
        &values(content_weights(
            memory(),
            key(),
            zero(),
            StrengthOp::Oneplus,
        )),
        &[0.321235, 0.31258, 0.307097, 0.0590879],
        "oneplus weights",
    );
    let blank = tensor::<B, 3>(vec![0.0; 8], [1, 4, 2]);
    assert_golden(
        &values(content_weights(blank, key(), zero(), StrengthOp::Softplus)),
        &[0.25; 4],
        "all-zero memory",
    );
}

#[test]
fn usage_golden_values() {
    let got = usage_update(
        tensor::<B, 2>(vec![0.2, 0.5, 0.0], [1, 3]),
        tensor::<B, 3>(vec![0.5, 0.0, 1.0], [1, 1, 3]),
        tensor::<B, 2>(vec![1.0, 0.5], [1, 2]),
        tensor::<B, 3>(vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0], [1, 2, 3]),
    );
    assert_golden(&values(got), &[0.3, 0.0, 1.0], "usage");
}

fn one_hot(n: usize, i: usize) -> Vec<f64> {
    (0..n).map(|j| if j == i { 1.0 } else { 0.0 }).collect()
}

#[test]
fn link_golden_values_for_one_hot_writes() {
    let n = 4;
    let mut link = tensor::<B, 4>(vec![0.0; n * n], [1, 1, n, n]);
    let mut precedence = tensor::<B, 3>(vec![0.0; n], [1, 1, n]);
    for slot in 0..3 {
        let w = tensor::<B, 3>(one_hot(n, slot), [1, 1, n]);
        link = link_update(link, precedence.clone(), w.clone());
        precedence = precedence_update(precedence, w);
    }
    let mut want = vec![0.0; n * n];
    want[n] = 1.0; // L[1, 0]
    want[2 * n + 1] = 1.0; // L[2, 1]
    assert_golden(&values(link.clone()), &want, "link");
    assert_golden(&values(precedence), &one_hot(n, 2), "precedence");
    let from = |slot| tensor::<B, 3>(one_hot(n, slot), [1, 1, n]);
    assert_golden(
        &values(directional_read_weights(link.clone(), from(0), true)),
        &one_hot(n, 1),
        "forward from slot 0",
    );
    assert_golden(
        &values(directional_read_weights(link, from(2), false)),
        &one_hot(n, 1),
        "backward from slot 2",
    );
}

#[test]
fn link_golden_values_for_soft_writes() {
    let mut link = tensor::<B, 4>(vec![0.0; 9], [1, 1, 3, 3]);
    let mut precedence = tensor::<B, 3>(vec![0.0; 3], [1, 1, 3]);
    for w in [vec![0.5, 0.25, 0.0], vec![0.0, 0.5, 0.5]] {
        let w = tensor::<B, 3>(w, [1, 1, 3]);
        link = link_update(link, precedence.clone(), w.clone());
        precedence = precedence_update(precedence, w);
    }
    assert_golden(
        &values(link),
        &[0.0, 0.0, 0.0, 0.25, 0.0, 0.0, 0.25, 0.125, 0.0],
        "link",
    );
    assert_golden(&values(precedence), &[0.0, 0.5, 0.5], "precedence");
}

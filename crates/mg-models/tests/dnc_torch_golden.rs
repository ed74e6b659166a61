//! The DNC against golden values from the independent PyTorch implementation
//! (`scripts/dnc-torch.py`, written from ../shared/docs/dnc-spec.md).
//!
//! `fixtures/dnc-torch-golden.json` holds PyTorch's float64 results for the `dnc_torch_case`
//! window (hashed weights, inputs and initial state; X = 6, Y = 5, C = 16, N = 12, W = 5,
//! R = 3, K = 2, clamp 0.3; 5 steps × 2 rows): the loss, and for the logits, every parameter
//! gradient, every gradient of the initial state and every tensor of the final state, the sum
//! of squares and sampled entries (eight spread ones and the largest, or all of a small
//! tensor), in our layouts. `scripts/dnc-torch.py --crosscheck` made it from the file the
//! `dnc_crosscheck` example writes, and printed the errors the tolerances below are set from.

mod dnc_torch_case;

use serde_json::Value;

/// Our f32 loss against PyTorch's float64: measured 2.4e-10 relative (PyTorch's own f32 run:
/// 1.1e-7), allowed 1e-6.
const LOSS_TOL: f64 = 1e-6;
/// Entries against PyTorch's float64, relative to the tensor's RMS (over every entry of every
/// tensor): measured at most 5.5e-7 for the logits, 1.9e-6 for the parameter gradients, 1.1e-6
/// for the gradients of the initial state and 6.4e-7 for the final state; PyTorch's own f32
/// run is up to 1.7e-6 from its float64 one. Allowed 10× the worst. A wrong gate, field or read-mode
/// order, a missing stop-gradient or a step taken out of order is off by order 1; the window
/// stays 5e-4 away from every clamp boundary and 7e-5 away from any tie in the allocation's
/// sort order, far above f32 rounding.
const ENTRY_TOL: f64 = 2e-5;

fn fixture() -> Value {
    let text = include_str!("fixtures/dnc-torch-golden.json");
    serde_json::from_str(text).expect("the fixture is JSON")
}

/// Checks one tensor against its digest `[n, Σx², i, x_i, …]`; returns the worst sampled
/// entry's error relative to the RMS. A tensor that is all zero in PyTorch must be exactly
/// zero here.
fn check(name: &str, values: &[f32], digest: &Value) -> f64 {
    let d: Vec<f64> = digest
        .as_array()
        .unwrap_or_else(|| panic!("{name}: a digest is an array"))
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect();
    let n = values.len();
    assert_eq!(
        n, d[0] as usize,
        "{name}: {n} values, the fixture has {}",
        d[0]
    );
    let sumsq = d[1];
    if sumsq == 0.0 {
        assert!(
            values.iter().all(|&v| v == 0.0),
            "{name}: PyTorch's is all zero, ours is not"
        );
        return 0.0;
    }
    let rms = (sumsq / n as f64).sqrt();
    let ours: f64 = values.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    assert!(
        (ours / sumsq - 1.0).abs() < 2.0 * ENTRY_TOL,
        "{name}: sum of squares {ours} vs PyTorch {sumsq}"
    );
    let mut worst: f64 = 0.0;
    for pair in d[2..].chunks(2) {
        let (i, theirs) = (pair[0] as usize, pair[1]);
        let err = (f64::from(values[i]) - theirs).abs() / rms;
        assert!(
            err < ENTRY_TOL,
            "{name}[{i}]: ours {} vs PyTorch {theirs} ({err:.1e} of the RMS {rms:.3e})",
            values[i]
        );
        worst = worst.max(err);
    }
    worst
}

#[test]
fn dnc_matches_pytorch() {
    let golden = fixture();
    let [x, y, c, n, w, r, k] = dnc_torch_case::SIZES;
    let config = &golden["config"];
    for (field, value) in [
        ("input", x),
        ("output", y),
        ("controller", c),
        ("slots", n),
        ("word", w),
        ("reads", r),
        ("writes", k),
    ] {
        assert_eq!(config[field], value, "config.{field}");
    }
    assert_eq!(config["clip"], dnc_torch_case::CLIP);
    assert_eq!(golden["steps"], dnc_torch_case::STEPS);
    assert_eq!(golden["batch"], dnc_torch_case::BATCH);

    let model = dnc_torch_case::model();
    let outcome = dnc_torch_case::run(&model);

    let loss = golden["loss"].as_f64().expect("loss");
    let rel = (outcome.loss - loss).abs() / loss.abs();
    assert!(
        rel < LOSS_TOL,
        "loss {} vs PyTorch {loss} ({rel:.1e})",
        outcome.loss
    );

    let logits = outcome.logits.to_vec::<f32>().expect("f32");
    let mut worst = check("logits", &logits, &golden["logits"]);
    let mut checked = 0;
    for (group, prefix) in [
        ("grads", "grad."),
        ("state_grads", "grad.state."),
        ("final", "final."),
    ] {
        let digests = golden[group].as_object().expect("a table of digests");
        let ours: Vec<_> = outcome
            .tensors
            .iter()
            .filter(|(name, _, _)| {
                name.starts_with(prefix) && (group != "grads" || !name.starts_with("grad.state."))
            })
            .collect();
        assert_eq!(ours.len(), digests.len(), "{group}: tensor count");
        for (name, _, values) in ours {
            let short = &name[prefix.len()..];
            let digest = digests
                .get(short)
                .unwrap_or_else(|| panic!("{group}: the fixture has no {short}"));
            worst = worst.max(check(name, values, digest));
            checked += 1;
        }
    }
    eprintln!(
        "loss {rel:.1e} relative; logits and {checked} tensors, worst sampled entry {worst:.1e} \
         of its RMS"
    );
}

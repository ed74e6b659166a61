//! The reference mapping model against golden values from the independent PyTorch model.
//!
//! `fixtures/torch-golden.json` holds PyTorch's float64 results for the `torch_case` window
//! (hashed weights and inputs, 3 steps × 2 rows): the loss, and for the logits and every
//! gradient their sum of squares and sampled entries. `scripts/torch-crosscheck.py` made it
//! from the file the `torch_crosscheck` example writes, and printed the errors the
//! tolerances below are set from.

mod torch_case;

use serde_json::Value;

/// Our f32 loss against PyTorch's float64: measured 3.0e-6 relative (a sum of 13,824 f32
/// terms), allowed 10×.
const LOSS_TOL: f64 = 3e-5;
/// Entries against PyTorch's float64, relative to the tensor's RMS: measured at most 2.3e-6
/// for the logits and 1.4e-5 for the gradients (over every entry of every tensor), allowed
/// 10× the latter. PyTorch's own f32 run is 1.6e-3 from its float64 one on its worst
/// gradient; a wrong gate order, input order, residual or loss term is off by order 1.
const ENTRY_TOL: f64 = 1.5e-4;

fn fixture() -> Value {
    let text = include_str!("fixtures/torch-golden.json");
    serde_json::from_str(text).expect("the fixture is JSON")
}

/// Checks one tensor against its digest `[n, Σx², i, x_i, …]`; returns the worst sampled
/// entry's error relative to the RMS.
fn check(name: &str, values: &[f32], digest: &Value) -> f64 {
    let d: Vec<f64> = digest
        .as_array()
        .expect("a digest is an array")
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
fn reference_model_matches_pytorch() {
    let golden = fixture();
    let (model, layout) = torch_case::model();
    let outcome = torch_case::run(&model, &layout);
    assert_eq!(golden["steps"], torch_case::STEPS);
    assert_eq!(golden["batch"], torch_case::BATCH);

    let loss = golden["loss"].as_f64().expect("loss");
    let rel = (outcome.loss - loss).abs() / loss.abs();
    assert!(
        rel < LOSS_TOL,
        "loss {} vs PyTorch {loss} ({rel:.1e})",
        outcome.loss
    );

    let logits = outcome.logits.to_vec::<f32>().expect("f32");
    let mut worst = check("logits", &logits, &golden["logits"]);

    let grads = golden["grads"].as_object().expect("grads");
    assert_eq!(grads.len(), outcome.grads.len(), "gradient count");
    for (name, _, values) in &outcome.grads {
        let digest = grads
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not a PyTorch parameter"));
        worst = worst.max(check(name, values, digest));
    }
    eprintln!("loss {rel:.1e} relative, worst sampled entry {worst:.1e} of its RMS");
}

/// The hash the weights and inputs come from: its first values, as any implementation of
/// splitmix64 gives them, so that the case can be rebuilt without this code.
#[test]
fn case_hash_is_splitmix64() {
    let u = torch_case::hash_unit(0, 0);
    // splitmix64's first output for state 0 is 0xE220A8397B1DCDAF.
    let expected = (0xE220_A839_7B1D_CDAFu64 >> 11) as f64 / (1u64 << 52) as f64 - 1.0;
    assert_eq!(u, expected);
    assert_eq!(torch_case::stream_of(""), 0xcbf2_9ce4_8422_2325);
}

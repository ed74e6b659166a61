//! The whole reference model with and without the project's CPU kernels (`mg_layers::backend`):
//! forward, loss and every gradient of one window (the `torch_case` window, hashed weights,
//! 3 steps × 2 rows, window path) agree up to f32 rounding.
//!
//! Its own test binary: the switch is process-wide.

mod torch_case;

/// Relative to the largest entry of each tensor. The two paths sum in different orders
/// (gemm over unfolded chunks against burn's convolution and transposed convolution), so
/// they differ by f32 rounding: measured at most 5.9e-5 (a reader weight gradient, a sum
/// over 2,304 pixels × 6 rows), loss and logits below 1e-6; allowed about 10×. A wrong
/// kernel is off by order 1; accuracy against float64 is `torch_golden`'s test.
const TOL: f64 = 5e-4;

fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs() as f64))
        .max(1e-30);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs() as f64))
        / scale
}

#[test]
fn reference_window_is_the_same_with_and_without_kernels() {
    let (model, layout) = torch_case::model();
    mg_layers::backend::set_cpu_kernels(true);
    let ours = torch_case::run(&model, &layout);
    mg_layers::backend::set_cpu_kernels(false);
    let burn = torch_case::run(&model, &layout);
    mg_layers::backend::set_cpu_kernels(true);

    let loss = (ours.loss - burn.loss).abs() / burn.loss.abs();
    assert!(loss <= TOL, "loss {} vs {}", ours.loss, burn.loss);
    let logits = |o: &torch_case::Outcome| o.logits.to_vec::<f32>().unwrap();
    let d = rel_diff(&logits(&ours), &logits(&burn));
    assert!(d <= TOL, "logits differ by {d:e}");
    assert_eq!(ours.grads.len(), burn.grads.len());
    for ((name, shape, a), (_, burn_shape, b)) in ours.grads.iter().zip(&burn.grads) {
        assert_eq!(shape, burn_shape, "{name}");
        let d = rel_diff(a, b);
        assert!(d <= TOL, "gradient of {name} differs by {d:e}");
    }
}

//! Writes the DNC's PyTorch cross-check case: the hashed weights of a small DNC with two write
//! heads (named by module path, in our layouts), one window's inputs and initial state, and
//! our logits, loss, gradients and final state, as one safetensors file for
//! `scripts/dnc-torch.py --crosscheck`.
//!
//! ```sh
//! cargo run --release -p mg-models --example dnc_crosscheck -- /tmp/dnc-crosscheck.safetensors
//! python3 scripts/dnc-torch.py --crosscheck /tmp/dnc-crosscheck.safetensors \
//!     --golden crates/mg-models/tests/fixtures/dnc-torch-golden.json
//! ```

#[path = "../tests/dnc_torch_case/mod.rs"]
mod dnc_torch_case;

use std::io::Write;

use dnc_torch_case::Entry;

/// Writes `entries` as safetensors (little-endian F32) with string metadata.
fn write_safetensors(
    path: &str,
    entries: &[Entry],
    metadata: &[(&str, String)],
) -> std::io::Result<()> {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut fields = vec![format!(
        "\"__metadata__\": {{{}}}",
        metadata
            .iter()
            .map(|(k, v)| format!("{}: {}", quote(k), quote(v)))
            .collect::<Vec<_>>()
            .join(", ")
    )];
    let mut offset = 0;
    for (name, shape, values) in entries {
        let end = offset + 4 * values.len();
        fields.push(format!(
            "{}: {{\"dtype\": \"F32\", \"shape\": {shape:?}, \"data_offsets\": [{offset}, {end}]}}",
            quote(name)
        ));
        offset = end;
    }
    let mut header = format!("{{{}}}", fields.join(", "));
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    file.write_all(&(header.len() as u64).to_le_bytes())?;
    file.write_all(header.as_bytes())?;
    for (_, _, values) in entries {
        for v in values {
            file.write_all(&v.to_le_bytes())?;
        }
    }
    file.flush()
}

fn main() -> std::io::Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "dnc-crosscheck.safetensors".into());
    let model = dnc_torch_case::model();
    let mut entries = dnc_torch_case::parameters(&model);
    for (name, data) in ["input.x", "input.target"]
        .iter()
        .zip(dnc_torch_case::inputs())
    {
        entries.push((
            name.to_string(),
            data.shape.to_vec(),
            data.to_vec().expect("f32"),
        ));
    }
    entries.extend(dnc_torch_case::initial_state());
    let outcome = dnc_torch_case::run(&model);
    entries.push((
        "ours.logits".into(),
        outcome.logits.shape.to_vec(),
        outcome.logits.to_vec().expect("f32"),
    ));
    entries.push(("ours.loss".into(), vec![1], vec![outcome.loss as f32]));
    for (name, shape, values) in outcome.tensors {
        entries.push((format!("ours.{name}"), shape, values));
    }
    let [x, y, c, n, w, r, k] = dnc_torch_case::SIZES;
    let config = format!(
        "{{\"input\": {x}, \"output\": {y}, \"controller\": {c}, \"slots\": {n}, \"word\": {w}, \
         \"reads\": {r}, \"writes\": {k}, \"clip\": {}, \"strength\": \"softplus\"}}",
        dnc_torch_case::CLIP
    );
    let metadata = [
        ("config", config),
        ("steps", dnc_torch_case::STEPS.to_string()),
        ("batch", dnc_torch_case::BATCH.to_string()),
        ("loss_f64", format!("{:.17e}", outcome.loss)),
    ];
    write_safetensors(&out, &entries, &metadata)?;
    eprintln!(
        "wrote {} tensors to {out} (loss {})",
        entries.len(),
        outcome.loss
    );
    Ok(())
}

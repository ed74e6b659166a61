//! Writes the PyTorch cross-check case: the reference mapping model's hashed weights (under
//! the PyTorch model's names), one window's inputs, and our logits, loss and gradients, as one
//! safetensors file for `scripts/torch-crosscheck.py`.
//!
//! ```sh
//! cargo run --release -p mg-models --example torch_crosscheck -- crosscheck.safetensors
//! python3 scripts/torch-crosscheck.py crosscheck.safetensors --torch-model PATH/torch_mgmem.py
//! ```

#[path = "../tests/torch_case/mod.rs"]
mod torch_case;

use std::io::Write;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// One tensor of the file: name, shape, f32 values.
type Entry = (String, Vec<usize>, Vec<f32>);

struct Weights<'a>(&'a mg_models::interop::TorchLayout, Vec<String>, Vec<Entry>);

impl ModuleVisitor<torch_case::B> for Weights<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.1.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.1.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<torch_case::B, D>>) {
        let name = self.0.torch_name(&self.1.join(".")).expect("named");
        let data = param.val().to_data();
        self.2
            .push((name, data.shape.to_vec(), data.to_vec().expect("f32")));
    }
}

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
        .unwrap_or_else(|| "torch-crosscheck.safetensors".into());
    let (model, layout) = torch_case::model();
    let mut weights = Weights(&layout, Vec::new(), Vec::new());
    model.visit(&mut weights);
    let mut entries = weights.2;
    let names = ["input.observation", "input.query", "input.target"];
    for (name, data) in names.iter().zip(torch_case::inputs()) {
        entries.push((
            name.to_string(),
            data.shape.to_vec(),
            data.to_vec().expect("f32"),
        ));
    }
    let outcome = torch_case::run(&model, &layout);
    entries.push((
        "ours.logits".into(),
        outcome.logits.shape.to_vec(),
        outcome.logits.to_vec().expect("f32"),
    ));
    entries.push(("ours.loss".into(), vec![1], vec![outcome.loss as f32]));
    for (name, shape, values) in outcome.grads {
        entries.push((format!("ours.grad.{name}"), shape, values));
    }
    let metadata = [
        ("variant", layout.variant_json()),
        ("steps", torch_case::STEPS.to_string()),
        ("batch", torch_case::BATCH.to_string()),
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

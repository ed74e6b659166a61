//! Parameter names of an independent PyTorch implementation of the mapping model.
//!
//! `torch_mgmem.py` (the PyTorch model the project's speed figures are measured against) builds
//! the reference architecture of paper Figure 9 from a *variant*: per writer layer its levels
//! and channels, the reader's forward widths and its reverse (narrowing) layers. Its modules
//! hold the same tensors as ours, in the same layout (`[out, in, 3, 3]` kernels over
//! `[upsampled, same, pooled]` inputs, gates `(i, g, f, o)` over `[x, h]`), only under other
//! names. [`TorchLayout`] is that correspondence, written once.

use crate::{MappingModelConfig, MappingWidths, ModelError};
use mg_layers::Residual;

/// The levels of the reference writer layers (and of the reader's forward layers), the only
/// layout the PyTorch model builds.
pub const TORCH_LEVELS: [usize; 7] = [2, 2, 3, 3, 4, 4, 5];

/// Levels of the PyTorch model's six reverse (narrowing) reader layers.
const TORCH_REVERSE_LEVELS: [usize; 6] = [4, 4, 3, 3, 2, 2];

/// The PyTorch model's residual connections inside the reader, as our reader numbers its
/// layers: forward layers 1 → 3 and 3 → 5 (1-based), reverse layers 2 → 4 and 4 → 6.
const TORCH_READER_RESIDUALS: [(usize, usize); 4] = [(0, 2), (2, 4), (8, 10), (10, 12)];

/// A mapping model in the PyTorch model's layout: its variant and the name of every tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorchLayout {
    /// `(levels, channels)` of each writer layer.
    pub writer: Vec<(usize, usize)>,
    /// Output channels of the reader's seven forward layers.
    pub reader_fwd: Vec<usize>,
    /// `(levels, channels)` of the reader's six reverse layers.
    pub reader_rev: Vec<(usize, usize)>,
}

impl TorchLayout {
    /// The layout of `config`, or why the PyTorch model cannot express it: one 3×3 reader, the
    /// reference's levels (2,2,3,3,4,4,5) and residual plan, no batch norm or peepholes.
    pub fn of(config: &MappingModelConfig) -> Result<Self, ModelError> {
        let mismatch = |what: String| {
            ModelError::invalid(
                "model",
                format!(
                    "{what}; the PyTorch model has one 3×3 reader and the reference layout \
                     (levels {TORCH_LEVELS:?}, residuals 1→3, 3→5, 5→7, no batch norm)"
                ),
            )
        };
        let layers = &config.writer.stack.layers;
        if layers.len() != TORCH_LEVELS.len() {
            return Err(mismatch(format!("has {} writer layers", layers.len())));
        }
        if config.readers.len() != 1 || config.query_sizes != [3] || config.obs_size != 3 {
            return Err(mismatch(format!(
                "has {} readers for query sizes {:?} and {}×{} observations",
                config.readers.len(),
                config.query_sizes,
                config.obs_size,
                config.obs_size
            )));
        }
        let channels: Vec<usize> = layers.iter().map(|l| l.d_hidden).collect();
        let tail_channels = config.readers[0]
            .layers
            .get(TORCH_LEVELS.len())
            .map_or(0, |l| l.d_output);
        let widths = MappingWidths::new(TORCH_LEVELS.to_vec(), channels.clone(), tail_channels);
        if widths.validate().is_err()
            || *config != MappingModelConfig::from_widths(&widths, 3, &[3])
        {
            return Err(mismatch("has layers of other levels or widths".into()));
        }
        let writer_residuals = &config.writer.stack.residuals;
        let reader_residuals: Vec<(usize, usize)> = config.readers[0]
            .residuals
            .iter()
            .map(|&Residual { from, to }| (from, to))
            .collect();
        if writer_residuals.len() != 3 || reader_residuals != TORCH_READER_RESIDUALS {
            return Err(mismatch(format!(
                "has other residual connections (channels {channels:?}, tail {tail_channels})"
            )));
        }
        Ok(Self {
            writer: TORCH_LEVELS.iter().copied().zip(channels.clone()).collect(),
            reader_fwd: channels,
            reader_rev: TORCH_REVERSE_LEVELS
                .iter()
                .map(|&levels| (levels, tail_channels))
                .collect(),
        })
    }

    /// The variant as the PyTorch model's `VARIANTS` entries spell it (JSON):
    /// `{"writer": [[2, 4], …], "reader_fwd": [4, …], "reader_rev": [[4, 16], …]}`.
    pub fn variant_json(&self) -> String {
        let pairs = |v: &[(usize, usize)]| {
            v.iter()
                .map(|(a, b)| format!("[{a}, {b}]"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let fwd = self
            .reader_fwd
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{{\"writer\": [{}], \"reader_fwd\": [{fwd}], \"reader_rev\": [{}]}}",
            pairs(&self.writer),
            pairs(&self.reader_rev)
        )
    }

    /// The PyTorch name of one of our tensors, given by its module path without enum variant
    /// names (as `mg-train export` writes them):
    ///
    /// | ours | PyTorch |
    /// |---|---|
    /// | `writer.stack.layers.K.cells.J.weight` / `.bias` | `writer.layers.K.J.conv.weight` / `.bias` |
    /// | `readers.0.layers.K.weights.J` / `biases.J`, `K < 7` | `reader.fwd.K.convs.J.weight` / `.bias` |
    /// | the same, `7 ≤ K < 13` | `reader.rev.(K−7).convs.J.…` |
    /// | the same, `K = 13` | `reader.final.convs.0.…` |
    ///
    /// `None` for a path that is not one of the model's tensors.
    pub fn torch_name(&self, path: &str) -> Option<String> {
        let parts: Vec<&str> = path.split('.').collect();
        let index = |s: &str| s.parse::<usize>().ok();
        match parts.as_slice() {
            [
                "writer",
                "stack",
                "layers",
                k,
                "cells",
                j,
                kind @ ("weight" | "bias"),
            ] => {
                let (k, j) = (index(k)?, index(j)?);
                (j < self.writer.get(k)?.0).then(|| format!("writer.layers.{k}.{j}.conv.{kind}"))
            }
            [
                "readers",
                "0",
                "layers",
                k,
                list @ ("weights" | "biases"),
                j,
            ] => {
                let (k, j) = (index(k)?, index(j)?);
                let kind = if *list == "weights" { "weight" } else { "bias" };
                let (fwd, rev) = (self.reader_fwd.len(), self.reader_rev.len());
                let (module, levels) = if k < fwd {
                    (format!("fwd.{k}"), self.writer[k].0)
                } else if k < fwd + rev {
                    (format!("rev.{}", k - fwd), self.reader_rev[k - fwd].0)
                } else if k == fwd + rev {
                    ("final".to_string(), 1)
                } else {
                    return None;
                };
                (j < levels).then(|| format!("reader.{module}.convs.{j}.{kind}"))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestBackend;
    use burn::module::Module;

    #[test]
    fn every_reference_tensor_has_one_torch_name() {
        let config = MappingModelConfig::reference();
        let layout = TorchLayout::of(&config).unwrap();
        assert_eq!(
            layout.variant_json(),
            "{\"writer\": [[2, 4], [2, 4], [3, 8], [3, 8], [4, 16], [4, 16], [5, 16]], \
             \"reader_fwd\": [4, 4, 8, 8, 16, 16, 16], \
             \"reader_rev\": [[4, 16], [4, 16], [3, 16], [3, 16], [2, 16], [2, 16]]}"
        );
        let model = config.init::<TestBackend>(&Default::default());
        let mut names = Vec::new();
        model.visit(&mut Paths(&mut names, Vec::new()));
        // 23 writer cells and 7·… reader convolutions, two tensors each.
        let writer_cells: usize = TORCH_LEVELS.iter().sum();
        let reader_convs = writer_cells + TORCH_REVERSE_LEVELS.iter().sum::<usize>() + 1;
        assert_eq!(names.len(), 2 * (writer_cells + reader_convs));
        let mut torch: Vec<String> = names
            .iter()
            .map(|n| {
                layout
                    .torch_name(n)
                    .unwrap_or_else(|| panic!("no name for {n}"))
            })
            .collect();
        assert!(torch.contains(&"writer.layers.6.4.conv.weight".to_string()));
        assert!(torch.contains(&"reader.fwd.0.convs.1.bias".to_string()));
        assert!(torch.contains(&"reader.rev.5.convs.1.weight".to_string()));
        assert!(torch.contains(&"reader.final.convs.0.weight".to_string()));
        torch.sort();
        torch.dedup();
        assert_eq!(torch.len(), names.len(), "two tensors share a name");
        assert_eq!(layout.torch_name("readers.0.layers.14.weights.0"), None);
        assert_eq!(
            layout.torch_name("writer.stack.layers.0.cells.2.weight"),
            None
        );
    }

    #[test]
    fn models_outside_the_torch_layout_are_refused() {
        let mut widths = MappingWidths::reference();
        widths.levels = vec![2, 2, 3, 3, 4, 4, 4];
        let err = TorchLayout::of(&MappingModelConfig::from_widths(&widths, 3, &[3])).unwrap_err();
        assert!(err.to_string().contains("other levels"), "{err}");
        let two_readers = MappingModelConfig::from_widths(&MappingWidths::reference(), 3, &[3, 9]);
        assert!(TorchLayout::of(&two_readers).is_err());
        // Narrower later layers drop a writer residual the PyTorch model always adds.
        let mut narrow = MappingWidths::reference();
        narrow.channels = vec![4, 4, 2, 2, 16, 16, 16];
        let err = TorchLayout::of(&MappingModelConfig::from_widths(&narrow, 3, &[3])).unwrap_err();
        assert!(err.to_string().contains("other residual"), "{err}");
    }

    /// Collects parameter paths, the way burn-store names them (no enum variants here).
    struct Paths<'a>(&'a mut Vec<String>, Vec<String>);

    impl<B: burn::tensor::backend::Backend> burn::module::ModuleVisitor<B> for Paths<'_> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.1.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.1.pop();
        }
        fn visit_float<const D: usize>(
            &mut self,
            _param: &burn::module::Param<burn::Tensor<B, D>>,
        ) {
            self.0.push(self.1.join("."));
        }
    }
}

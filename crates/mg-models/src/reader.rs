//! The multigrid reader: a multigrid CNN that reads the memory mesh layer by layer.

use crate::ModelError;
use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Tensor, backend::Backend};
use mg_layers::MgBackend;
use mg_layers::backend::cat_channels;
use mg_layers::{
    Activation, LevelSpan, MgConv, MgConvConfig, Residual, levels, num_trainable_params,
    residual_add,
};

/// Configuration of a [`MgReader`].
#[derive(Config, Debug, PartialEq)]
pub struct MgReaderConfig {
    /// The layers, query first. Layer `k + 1` takes layer `k`'s features.
    pub layers: Vec<MgConvConfig>,
    /// Residual connections: layer `to`'s output += layer `from`'s features, on shared levels.
    #[config(default = "Vec::new()")]
    pub residuals: Vec<Residual>,
    /// Channels of the writer's layers that the first layers read, one entry per reading
    /// layer: after reader layer `k` (`k < memory.len()`), each level becomes
    /// `[reader, writer layer k]` on channels.
    #[config(default = "Vec::new()")]
    pub memory: Vec<usize>,
}

/// A multigrid reader (paper Figure 2, top): a multigrid CNN whose first layers concatenate
/// the writer's hidden state of the same layer and level, `[reader, writer]`.
#[derive(Module, Debug)]
pub struct MgReader<B: Backend> {
    /// The convolution layers, query first.
    pub layers: Vec<MgConv<B>>,
    residuals: Vec<Residual>,
    memory: Vec<usize>,
}

impl MgReaderConfig {
    /// The reader of the reference mapping model (reference-implementation.md §2.4):
    /// 14 layers, the first 7 reading writer layers 1–7, then narrowing to one 48×48 logit
    /// map; 257,457 parameters. `d_query` is the query's channel count (4 in the reference).
    pub fn mapping_reference(d_query: usize) -> Self {
        let relu = |d_in, d_out, input: LevelSpan, output: LevelSpan| {
            MgConvConfig::new(d_in, d_out, input, output)
        };
        let layers = vec![
            relu(d_query, 4, levels(0, 1), levels(0, 2)),
            relu(8, 4, levels(0, 2), levels(0, 2)),
            relu(8, 8, levels(0, 2), levels(0, 3)),
            relu(16, 8, levels(0, 3), levels(0, 3)),
            relu(16, 16, levels(0, 3), levels(0, 4)),
            relu(32, 16, levels(0, 4), levels(0, 4)),
            relu(32, 16, levels(0, 4), levels(0, 5)),
            relu(32, 16, levels(0, 5), levels(1, 4)),
            relu(16, 16, levels(1, 4), levels(1, 4)),
            relu(16, 16, levels(1, 4), levels(2, 3)),
            relu(16, 16, levels(2, 3), levels(2, 3)),
            relu(16, 16, levels(2, 3), levels(3, 2)),
            relu(16, 16, levels(3, 2), levels(3, 2)),
            relu(16, 1, levels(3, 2), levels(4, 1)).with_activation(Activation::Identity),
        ];
        let residual = |from, to| Residual { from, to };
        Self {
            layers,
            residuals: vec![
                residual(0, 2),
                residual(2, 4),
                residual(8, 10),
                residual(10, 12),
            ],
            memory: vec![4, 4, 8, 8, 16, 16, 16],
        }
    }

    /// Trainable parameters.
    pub fn num_params(&self) -> usize {
        self.layers.iter().map(MgConvConfig::num_params).sum()
    }

    /// Channels of the features layer `k` passes on.
    fn d_features(&self, k: usize) -> usize {
        self.layers[k].d_output + self.memory.get(k).copied().unwrap_or(0)
    }

    /// Checks that consecutive layers fit, naming the layers and values that do not.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.layers.is_empty() {
            return Err(ModelError::invalid(
                "layers",
                "is empty; a reader needs at least one layer",
            ));
        }
        if self.memory.len() > self.layers.len() {
            return Err(ModelError::invalid(
                "memory",
                format!(
                    "has {} entries; {} layers cannot read more writer layers than they are",
                    self.memory.len(),
                    self.layers.len()
                ),
            ));
        }
        for k in 1..self.layers.len() {
            let (prev, next) = (&self.layers[k - 1], &self.layers[k]);
            let passed = (self.d_features(k - 1), prev.output_levels);
            if passed != (next.d_input, next.input_levels) {
                return Err(ModelError::invalid(
                    "layers",
                    format!(
                        "layer {} passes on (channels, levels) {passed:?} but layer {k} expects {:?}",
                        k - 1,
                        (next.d_input, next.input_levels)
                    ),
                ));
            }
        }
        for r in &self.residuals {
            if !(r.from < r.to && r.to < self.layers.len()) {
                return Err(ModelError::invalid(
                    "residuals",
                    format!(
                        "{r:?} must go from an earlier to a later layer of {}",
                        self.layers.len()
                    ),
                ));
            }
            if self.d_features(r.from) > self.layers[r.to].d_output {
                return Err(ModelError::invalid(
                    "residuals",
                    format!(
                        "{r:?} would widen layer {} beyond {} channels",
                        r.to, self.layers[r.to].d_output
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Builds the reader.
    ///
    /// # Panics
    /// If [`Self::validate`] fails; the message names the problem.
    pub fn init<B: MgBackend>(&self, device: &B::Device) -> MgReader<B> {
        if let Err(e) = self.validate() {
            panic!("MgReader: {e}");
        }
        MgReader {
            layers: self.layers.iter().map(|l| l.init(device)).collect(),
            residuals: self.residuals.clone(),
            memory: self.memory.clone(),
        }
    }
}

impl<B: MgBackend> MgReader<B> {
    /// Trainable parameters.
    pub fn num_params(&self) -> usize {
        num_trainable_params(self)
    }

    /// Number of writer layers the reader reads.
    pub fn memory_layers(&self) -> usize {
        self.memory.len()
    }

    /// Reads `steps` time steps of memory at once (the reader is not recurrent, so all rows
    /// run in one pass).
    ///
    /// # Shapes
    /// - `query[i]`: `[rows, d_query, h_i, w_i]` for the first layer's input levels
    /// - `memory[k][l]`: writer layer `k`'s output at level `l` of reader layer `k`,
    ///   `[rows, C_k, h_l, w_l]`, for `k < memory_layers()`
    /// - returns the last layer's output pyramid
    pub fn forward_window(
        &self,
        query: &[Tensor<B, 4>],
        memory: &[Vec<Tensor<B, 4>>],
        steps: usize,
    ) -> Vec<Tensor<B, 4>> {
        assert!(
            memory.len() >= self.memory.len(),
            "MgReader: reads {} writer layers but got {}",
            self.memory.len(),
            memory.len()
        );
        let mut features: Vec<Vec<Tensor<B, 4>>> = Vec::with_capacity(self.layers.len());
        for (k, layer) in self.layers.iter().enumerate() {
            let x = features.last().map_or(query, |f| f.as_slice());
            let mut out = layer.forward_window(x, steps);
            for r in self.residuals.iter().filter(|r| r.to == k) {
                let source_levels = self.layers[r.from].output_levels();
                out = residual_add(out, layer.output_levels(), &features[r.from], source_levels);
            }
            if k < self.memory.len() {
                assert_eq!(
                    memory[k].len(),
                    out.len(),
                    "MgReader: writer layer {k} has {} levels, reader layer {k} has {}",
                    memory[k].len(),
                    out.len()
                );
                out = out
                    .into_iter()
                    .zip(&memory[k])
                    .map(|(r, w)| cat_channels(vec![r, w.clone()]))
                    .collect();
            }
            features.push(out);
        }
        features.pop().expect("at least one layer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryMeshConfig, TestBackend};

    #[test]
    fn mapping_reference_counts() {
        let config = MgReaderConfig::mapping_reference(4);
        let per_layer: Vec<usize> = config.layers.iter().map(|l| l.num_params()).collect();
        assert_eq!(
            per_layer,
            [
                296, 1_160, 2_904, 8_088, 18_496, 46_144, 50_768, 50_752, 23_104, 18_480, 16_176,
                11_552, 9_248, 289
            ]
        );
        assert_eq!(config.num_params(), 257_457);
        let writer = MemoryMeshConfig::mapping_reference();
        assert_eq!(config.num_params() + writer.num_params(), 650_225);
        let reader = config.init::<TestBackend>(&Default::default());
        assert_eq!(reader.num_params(), 257_457);
    }

    /// One step of the reference writer and reader: a 48×48 logit map per row.
    #[test]
    fn mapping_reference_reads_the_writer() {
        let device = Default::default();
        let writer = MemoryMeshConfig::mapping_reference().init::<TestBackend>(&device);
        let reader = MgReaderConfig::mapping_reference(4).init::<TestBackend>(&device);
        let (steps, batch) = (2, 3);
        let obs = Tensor::<TestBackend, 4>::ones([steps * batch, 4, 3, 3], &device);
        let memory = writer
            .forward_window(std::slice::from_ref(&obs), steps, None)
            .outputs;
        let logits = reader.forward_window(&[obs], &memory, steps);
        assert_eq!(logits.len(), 1);
        assert_eq!(logits[0].dims(), [steps * batch, 1, 48, 48]);
    }
}

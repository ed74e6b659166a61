//! The exploration policy (paper §4.2): a multigrid reader over the mapping writer's memory
//! and the current observation, narrowed to the coarsest 3×3 grid, with an actor head (one
//! logit per move) and a critic head (the state's value).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Tensor, backend::Backend};
use mg_layers::{LevelSpan, MgBackend, MgConvConfig, levels};

use crate::{Localizer, MappingModel, MappingWidths, MgReader, MgReaderConfig, ModelError};

/// Configuration of a [`PolicyNet`].
#[derive(Config, Debug, PartialEq)]
pub struct PolicyNetConfig {
    /// The reader: the mapping reader's layers that read the writer, then layers that narrow
    /// to one 3×3 grid.
    pub reader: MgReaderConfig,
    /// Channels of the reader's last (3×3) layer.
    pub head_channels: usize,
    /// Number of actions (4: up, down, left, right).
    #[config(default = 4)]
    pub actions: usize,
}

/// Cells of the coarsest grid.
const BASE_CELLS: usize = 9;

impl PolicyNetConfig {
    /// The policy for a writer of `widths` and `d_obs`-channel observations: the mapping
    /// reader's first `widths.channels.len()` layers (each reading the writer layer of the same
    /// index), then `head_channels`-wide layers that drop the finest level one at a time (or
    /// step one level coarser, for a single-level layer) down to level 0 alone.
    pub fn from_widths(widths: &MappingWidths, d_obs: usize, head_channels: usize) -> Self {
        let full = widths.reader(d_obs);
        let depth = widths.channels.len();
        let mut layers: Vec<MgConvConfig> = full.layers[..depth].to_vec();
        let residuals = full
            .residuals
            .iter()
            .filter(|r| r.to < depth)
            .cloned()
            .collect();
        let mut span = widths.span(depth - 1);
        let mut d_in = 2 * widths.channels[depth - 1];
        while span != levels(0, 1) {
            let next = narrower(span);
            layers.push(MgConvConfig::new(d_in, head_channels, span, next));
            (d_in, span) = (head_channels, next);
        }
        if layers.len() == depth {
            // The writer's last layer is already the 3×3 grid alone: one layer to the head.
            layers.push(MgConvConfig::new(d_in, head_channels, span, span));
        }
        Self {
            reader: MgReaderConfig::new(layers)
                .with_residuals(residuals)
                .with_memory(widths.channels.clone()),
            head_channels,
            actions: 4,
        }
    }

    /// Trainable parameters.
    pub fn num_params(&self) -> usize {
        let d = self.head_channels * BASE_CELLS;
        self.reader.num_params() + (d + 1) * self.actions + d + 1
    }

    /// Checks the reader and the head, naming the first problem.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.reader.validate()?;
        let last = self.reader.layers.last().expect("validate checked layers");
        if last.output_levels != levels(0, 1) || last.d_output != self.head_channels {
            return Err(ModelError::invalid(
                "reader.layers",
                format!(
                    "end on levels {:?} with {} channels; the heads read the 3×3 grid (level 0 \
                     alone) with head_channels = {}",
                    last.output_levels, last.d_output, self.head_channels
                ),
            ));
        }
        if self.actions == 0 || self.head_channels == 0 {
            return Err(ModelError::invalid(
                "actions / head_channels",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// Builds the policy.
    ///
    /// # Panics
    /// If [`Self::validate`] fails; the message names the problem.
    pub fn init<B: MgBackend>(&self, device: &B::Device) -> PolicyNet<B> {
        if let Err(e) = self.validate() {
            panic!("PolicyNet: {e}");
        }
        let d = self.head_channels * BASE_CELLS;
        PolicyNet {
            reader: self.reader.init(device),
            actor: LinearConfig::new(d, self.actions).init(device),
            critic: LinearConfig::new(d, 1).init(device),
        }
    }
}

/// The span one narrowing layer leaves: the finest level dropped, or one level coarser.
fn narrower(span: LevelSpan) -> LevelSpan {
    if span.count > 1 {
        levels(span.first, span.count - 1)
    } else {
        levels(span.first - 1, 1)
    }
}

/// An actor–critic policy that reads a multigrid memory.
#[derive(Module, Debug)]
pub struct PolicyNet<B: Backend> {
    /// The multigrid reader.
    pub reader: MgReader<B>,
    /// Action logits from the flattened 3×3 features.
    pub actor: Linear<B>,
    /// The value from the same features.
    pub critic: Linear<B>,
}

impl<B: MgBackend> PolicyNet<B> {
    /// Trainable parameters.
    pub fn num_params(&self) -> usize {
        mg_layers::num_trainable_params(self)
    }

    /// Action logits and values of `steps` time steps (time-major rows).
    ///
    /// # Shapes
    /// - `input[i]`: `[rows, d_obs, h_i, w_i]`, the encoded observation at the reader's input
    ///   levels
    /// - `memory[k][l]`: writer layer `k`'s output at its level `l`, `[rows, C_k, h_l, w_l]`
    /// - returns logits `[rows, actions]` and values `[rows]`
    pub fn forward(
        &self,
        input: &[Tensor<B, 4>],
        memory: &[Vec<Tensor<B, 4>>],
        steps: usize,
    ) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let out = self.reader.forward_window(input, memory, steps);
        let features = out
            .into_iter()
            .next()
            .expect("the reader ends on one level")
            .flatten::<2>(1, 3);
        let logits = self.actor.forward(features.clone());
        let value = self.critic.forward(features).flatten::<1>(0, 1);
        (logits, value)
    }
}

/// The exploration model: a mapping model (writer and query reader), frozen by whoever builds
/// it, and the policy that reads its writer's memory.
#[derive(Module, Debug)]
pub struct ExploreNet<B: Backend> {
    /// The pre-trained mapping model; a multigrid one.
    pub localizer: Localizer<B>,
    /// The policy.
    pub policy: PolicyNet<B>,
}

impl<B: MgBackend> ExploreNet<B> {
    /// The multigrid mapping model.
    ///
    /// # Panics
    /// If the localizer is a DNC (the policy reads a multigrid writer).
    pub fn mapping(&self) -> &MappingModel<B> {
        match &self.localizer {
            Localizer::Multigrid(m) => m,
            Localizer::Dnc(_) => {
                panic!("ExploreNet: the policy reads a multigrid writer, not a DNC")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MappingModelConfig, TestBackend, folded_channels};

    /// The policy mirrors the mapping reader's front, narrows to 3×3, and its count is exact.
    #[test]
    fn policy_reads_the_writer_and_counts_its_parameters() {
        let widths = MappingWidths::new(vec![2, 2, 3, 3], vec![4, 4, 8, 8], 8);
        let config = PolicyNetConfig::from_widths(&widths, folded_channels(3), 6);
        config.validate().unwrap();
        // Four reading layers, then 3 levels → 2 → 1.
        assert_eq!(config.reader.layers.len(), 6);
        let device = Default::default();
        let policy = config.init::<TestBackend>(&device);
        assert_eq!(policy.num_params(), config.num_params());
        let mapping =
            MappingModelConfig::from_widths(&widths, 3, &[3]).init::<TestBackend>(&device);
        let (steps, batch) = (2, 3);
        let obs = Tensor::<TestBackend, 4>::ones([steps * batch, 4, 3, 3], &device);
        let encoded = mapping.encode(obs.clone());
        let memory = mapping
            .writer
            .forward_window(std::slice::from_ref(&encoded), steps, None);
        let (logits, value) = policy.forward(&[encoded], &memory.outputs, steps);
        assert_eq!(logits.dims(), [steps * batch, 4]);
        assert_eq!(value.dims(), [steps * batch]);
    }

    /// The paper's policy on the reference writer (Table 1's last row): 7 reading layers, then
    /// 5 → 1 levels; its count is that of the built module.
    #[test]
    fn reference_policy_builds() {
        let config = PolicyNetConfig::from_widths(&MappingWidths::reference(), 4, 16);
        config.validate().unwrap();
        assert_eq!(config.reader.layers.len(), 11);
        let policy = config.init::<TestBackend>(&Default::default());
        assert_eq!(policy.num_params(), config.num_params());
    }

    /// A single-level (Ablated MG) writer is narrowed one level at a time.
    #[test]
    fn single_level_writers_step_down_to_the_coarsest_grid() {
        let widths = MappingWidths::new(vec![2, 2, 3], vec![4, 4, 8], 8).with_finest_only(true);
        let config = PolicyNetConfig::from_widths(&widths, folded_channels(3), 4);
        config.validate().unwrap();
        let spans: Vec<_> = config.reader.layers[3..]
            .iter()
            .map(|l| l.output_levels)
            .collect();
        assert_eq!(spans, [levels(1, 1), levels(0, 1)]);
    }
}

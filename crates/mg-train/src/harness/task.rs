//! The [`Task`] trait: everything an experiment family owns, so that the harness can train,
//! resume, evaluate, draw, describe and benchmark it without knowing what it is.

use mg_layers::MgBackend;
use std::fmt::Debug;
use std::ops::Range;
use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use burn::tensor::Tensor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::experiment::{Experiment, LossReduction};

/// How a recurrent model runs a window of time steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardPath {
    /// The whole window at once: input-to-gate work batched over the window's time steps.
    Window,
    /// One time step after the other.
    Step,
}

impl ForwardPath {
    /// The name used in configs and benchmark records.
    pub fn name(self) -> &'static str {
        match self {
            Self::Window => "window",
            Self::Step => "step",
        }
    }
}

/// A model's size, as `mg-train info` prints it.
#[derive(Clone, Debug, Default)]
pub struct ModelInfo {
    /// Trainable parameters.
    pub params: usize,
    /// Memory cells (LSTM cells of a multigrid memory, N·W of a DNC).
    pub memory_cells: usize,
    /// Indented description lines for the terminal.
    pub lines: Vec<String>,
    /// The same facts as JSON fields, merged into `info --json`.
    pub json: serde_json::Map<String, serde_json::Value>,
}

/// The loss of one training window.
pub struct WindowLoss<B: MgBackend> {
    /// The scalar that is differentiated.
    pub loss: Tensor<B, 1>,
    /// Units the loss is summed over (pixels, bits, answer words), for the per-unit loss that
    /// `metrics.jsonl` reports; 0 when the window scores nothing.
    pub units: f64,
    /// Task-specific figures of the window (name, value), averaged over each log interval
    /// into `metrics.jsonl`'s `task` table and drawn as curves of their own.
    pub metrics: Vec<(&'static str, f64)>,
}

impl<B: MgBackend> WindowLoss<B> {
    /// A loss over `units` units, without task metrics.
    pub fn new(loss: Tensor<B, 1>, units: f64) -> Self {
        Self {
            loss,
            units,
            metrics: Vec::new(),
        }
    }
}

/// A timed training window in a task's own terms, and the size of a training epoch, for
/// `bench`'s throughput figures.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochSize {
    /// Words (the task's input tokens, padding left out) the window reads.
    pub words: usize,
    /// Time steps of the batches of one training epoch at the window's batch size, summed (a
    /// batch runs as many steps as its longest sequence).
    pub steps: u64,
}

/// What an evaluation is asked to do.
#[derive(Clone, Debug)]
pub struct EvalRequest {
    /// Test sequences.
    pub sequences: usize,
    /// Time step of the evaluated checkpoint.
    pub time_step: u64,
    /// Show a progress bar (a terminal and not `--json`).
    pub show_progress: bool,
}

/// The recurrent state a model carries from one training window to the next.
pub trait CarriedState<B: MgBackend>: Clone + Send + Sized {
    /// The state cut from the autodiff graph (truncated backpropagation through time).
    fn detach(self) -> Self;

    /// Every tensor of the state, in a fixed order, for checkpoints.
    fn into_tensors(self) -> Vec<Tensor<B, 4>>;
}

/// A model that rebuilds the state it carries, `S`, from a checkpoint's tensors.
pub trait RestoreState<B: MgBackend, S> {
    /// Rebuilds a state from [`CarriedState::into_tensors`]'s list; the error says what the
    /// list holds and what the model needs.
    fn state_from_tensors(&self, tensors: Vec<Tensor<B, 4>>) -> anyhow::Result<S>;
}

/// A model that carries nothing between windows restores nothing, from an empty list.
impl<B: MgBackend, M> RestoreState<B, ()> for M {
    fn state_from_tensors(&self, tensors: Vec<Tensor<B, 4>>) -> anyhow::Result<()> {
        anyhow::ensure!(
            tensors.is_empty(),
            "this model carries no state between windows, but the saved state holds {} tensors",
            tensors.len()
        );
        Ok(())
    }
}

/// The state of a model that carries nothing between windows.
impl<B: MgBackend> CarriedState<B> for () {
    fn detach(self) {}

    fn into_tensors(self) -> Vec<Tensor<B, 4>> {
        Vec::new()
    }
}

/// The model items of a [`Task`] impl that every task writes alike: `Model<B>` and
/// `TrainModel<B>` (the same model on `Autodiff<B>`), `init` and `init_train` (both built by
/// the given expression of the task and the device) and `as_model`.
///
/// ```ignore
/// impl Task for Copy {
///     task_model!(Dnc, |task, device| task.dnc.init(device));
///     // …
/// }
/// ```
macro_rules! task_model {
    ($model:ident, |$task:ident, $device:ident| $init:expr) => {
        type Model<B: MgBackend> = $model<B>;
        type TrainModel<B: MgBackend> = $model<burn::backend::Autodiff<B>>;

        fn init<B: MgBackend>(&self, device: &B::Device) -> $model<B> {
            let ($task, $device) = (self, device);
            $init
        }

        fn init_train<B: MgBackend>(
            &self,
            device: &B::Device,
        ) -> $model<burn::backend::Autodiff<B>> {
            let ($task, $device) = (self, device);
            $init
        }

        fn as_model<B: MgBackend>(
            model: &$model<burn::backend::Autodiff<B>>,
        ) -> &$model<burn::backend::Autodiff<B>> {
            model
        }
    };
}
pub(crate) use task_model;

/// A task's evaluation report: `eval.json` and the lines `mg-train eval` prints.
pub trait Report: Serialize {
    /// The report for a terminal.
    fn lines(&self) -> Vec<String>;
}

/// An experiment family: its config, models, data, loss, evaluation and pictures.
///
/// The harness calls, per training window: [`Task::batch`] (once per batch of sequences),
/// [`Task::window`], [`Task::forward`] on the autodiff backend, [`Task::loss`]; between windows
/// it detaches and carries [`Task::State`]; at a sequence's end ([`Task::sequence_len`]) it drops
/// the state and starts the next batch.
pub trait Task: Sized + Send + Sync + 'static {
    /// `[task] kind` of this family's configs.
    const KIND: &'static str;
    /// The per-unit word of the reported loss ("pixel", "bit").
    const UNIT: &'static str;
    /// The `[task]` table (including its `kind` field).
    type Settings: Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + Sync;
    /// The `[model]` table.
    type ModelSettings: Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + Sync;
    /// The model for inference on `B`; it restores [`Task::State`] from checkpoints.
    type Model<B: MgBackend>: Module<B> + RestoreState<B, Self::State<B>>;
    /// The same model for training on `Autodiff<B>`; [`AutodiffModule::valid`] gives
    /// [`Task::Model`]: `Self::Model<Autodiff<B>>`, as `task_model!` writes it.
    type TrainModel<B: MgBackend>: AutodiffModule<Autodiff<B>, InnerModule = Self::Model<B>>;
    /// Recurrent state carried between windows.
    type State<B: MgBackend>: CarriedState<B>;
    /// Tensors of one window (inputs and targets) on `B`.
    type Window<B: MgBackend>: Send + Sync;
    /// What the model produces for a window.
    type Output<B: MgBackend>: Send;
    /// Host-side data of one batch of sequences.
    type Batch: Send;
    /// The evaluation report, written to `eval.json`.
    type Report: Report;

    /// Checks an experiment and prepares the task; errors name the field.
    fn new(config: &Experiment<Self::Settings, Self::ModelSettings>) -> anyhow::Result<Self>;

    /// The task for `mg-train info`, which counts and never trains (default: [`Task::new`]); a
    /// task whose construction reads a run's files (exploration's mapping run) may count from
    /// configs alone here.
    fn for_info(config: &Experiment<Self::Settings, Self::ModelSettings>) -> anyhow::Result<Self> {
        Self::new(config)
    }

    /// Parameter and memory counts with a description of the model.
    fn info(&self) -> ModelInfo;

    /// Floats the autodiff graph keeps per sequence and time step of a training window, for
    /// the memory estimate (measured on Flex: about 50 per conv-LSTM memory cell, which is
    /// the default, and 4 per element of a DNC's link matrix).
    fn floats_per_step(&self) -> f64 {
        64.0 * self.info().memory_cells as f64
    }

    /// Builds the model (seed the backend first for reproducible weights).
    fn init<B: MgBackend>(&self, device: &B::Device) -> Self::Model<B>;

    /// Builds the training model.
    fn init_train<B: MgBackend>(&self, device: &B::Device) -> Self::TrainModel<B>;

    /// The training model seen as the task's model on the autodiff backend (the identity:
    /// `TrainModel<B>` is `Model<Autodiff<B>>`).
    fn as_model<B: MgBackend>(model: &Self::TrainModel<B>) -> &Self::Model<Autodiff<B>>;

    /// The forward paths this model has (the first is the default).
    fn paths(&self) -> &'static [ForwardPath] {
        &[ForwardPath::Window]
    }

    /// Batch `index` of `size` sequences drawn with `seed`: a pure function of its arguments.
    fn batch(&self, seed: u64, index: u64, size: usize) -> anyhow::Result<Self::Batch>;

    /// The batch cut into batches of consecutive sequences, in order, one of each of `sizes`
    /// (which sum to the batch's size), for training on one thread each (`[train] threads`);
    /// `None` when the task trains on one thread only.
    ///
    /// A task that splits promises that its windows, losses and states split with the batch:
    /// every tensor of [`CarriedState::into_tensors`] has the batch as its first dimension, and a
    /// window's summed loss (or, with a mean loss, its units-weighted mean) over the parts is the
    /// loss of the whole batch. A part keeps the whole batch's [`Task::sequence_len`], so that
    /// the parts' windows and carried states stay in step. [`shard_ranges`] gives the parts'
    /// rows.
    fn split_batch(&self, _batch: &Self::Batch, _sizes: &[usize]) -> Option<Vec<Self::Batch>> {
        None
    }

    /// Whether a shard's loss depends on the other shards' outputs (a figure of the whole
    /// batch, such as a normalisation), so that [`Task::shard_losses`] must see every shard's
    /// output at once. False by default: each shard is scored alone, on its own thread.
    fn couples_shards(&self) -> bool {
        false
    }

    /// For a task whose [`Task::couples_shards`] is true: the figures of the whole batch its
    /// losses need, as sums over `outputs` (e.g. count, sum and sum of squares), so that the
    /// sums of shards in other threads and processes add up to the whole batch's. Empty by
    /// default.
    fn batch_sums<B: MgBackend>(&self, _outputs: &[Self::Output<B>]) -> Vec<f64> {
        Vec::new()
    }

    /// The losses of a window's shards, one per output and window, in batch order, given the
    /// whole batch's [`Task::batch_sums`]. The default scores each shard alone with
    /// [`Task::loss`]; a task whose [`Task::couples_shards`] is true uses `sums`, so that the
    /// shards' losses add up (as [`Task::split_batch`] describes) to the whole batch's.
    fn shard_losses<B: MgBackend>(
        &self,
        outputs: Vec<Self::Output<B>>,
        windows: &[&Self::Window<B>],
        reduction: LossReduction,
        _sums: &[f64],
    ) -> Vec<WindowLoss<B>> {
        outputs
            .into_iter()
            .zip(windows)
            .map(|(output, window)| self.loss(output, window, reduction))
            .collect()
    }

    /// For `bench`: the words of time steps `0..steps` of `batch`, and one training epoch in
    /// batches of `batch`'s size drawn with `seed`; `None` for a task without epochs (data
    /// drawn afresh for every batch).
    fn epoch_size(
        &self,
        _batch: &Self::Batch,
        _steps: usize,
        _seed: u64,
    ) -> anyhow::Result<Option<EpochSize>> {
        Ok(None)
    }

    /// Time steps of a batch; when a window reaches it, the sequences end.
    fn sequence_len(&self, batch: &Self::Batch) -> usize;

    /// Time steps a window asked for `steps` steps really holds: at most the sequence; a
    /// task whose models read whole sequences returns the sequence's length.
    fn window_len(&self, batch: &Self::Batch, steps: usize) -> usize {
        steps.min(self.sequence_len(batch))
    }

    /// The tensors of time steps `steps` of a batch.
    fn window<B: MgBackend>(
        &self,
        batch: &Self::Batch,
        steps: Range<usize>,
        device: &B::Device,
    ) -> Self::Window<B>;

    /// Runs the model over a window with carried state; an error when the state does not fit
    /// the model (another kind of model's).
    fn forward<B: MgBackend>(
        &self,
        model: &Self::Model<B>,
        window: &Self::Window<B>,
        state: Option<Self::State<B>>,
        path: ForwardPath,
    ) -> anyhow::Result<(Self::Output<B>, Self::State<B>)>;

    /// The loss of a window's output.
    fn loss<B: MgBackend>(
        &self,
        output: Self::Output<B>,
        window: &Self::Window<B>,
        reduction: LossReduction,
    ) -> WindowLoss<B>;

    /// Evaluates the model on the fixed test set.
    fn evaluate<B: MgBackend>(
        &self,
        model: &Self::Model<B>,
        request: &EvalRequest,
        device: &B::Device,
    ) -> anyhow::Result<Self::Report>;

    /// The error on held-out training data (lower is better), computed after every checkpoint
    /// to keep the best one (`checkpoints/best`); `None` for tasks without a validation set.
    fn validate<B: MgBackend>(
        &self,
        _model: &Self::Model<B>,
        _device: &B::Device,
    ) -> anyhow::Result<Option<f64>> {
        Ok(None)
    }

    /// Draws test sequence `index` into the folder `out`, which exists; returns the files
    /// written.
    fn draw<B: MgBackend>(
        &self,
        model: &Self::Model<B>,
        index: usize,
        out: &Path,
        device: &B::Device,
    ) -> anyhow::Result<Vec<PathBuf>>;

    /// The model's tensor names in the independent PyTorch mapping model (`mg-train export
    /// --names torch`), or why it has none.
    fn torch_names(&self) -> anyhow::Result<ForeignNames> {
        anyhow::bail!(
            "`{}` models have no PyTorch counterpart; `--names torch` is for multigrid mapping \
             models in the reference layout",
            Self::KIND
        )
    }
}

/// The other name of a tensor, given its module path without enum variants.
pub type Rename = Box<dyn Fn(&str) -> Option<String>>;

/// Tensor names of a model in another implementation.
pub struct ForeignNames {
    /// The other name of each tensor.
    pub rename: Rename,
    /// Metadata the other implementation needs to build the model, as `(key, value)`.
    pub metadata: Vec<(String, String)>,
}

/// The consecutive rows of a batch that [`Task::split_batch`]'s `sizes` stand for, in order.
pub fn shard_ranges(sizes: &[usize]) -> impl Iterator<Item = Range<usize>> + '_ {
    sizes.iter().scan(0, |start, &len| {
        let rows = *start..*start + len;
        *start += len;
        Some(rows)
    })
}

#[cfg(test)]
mod tests {
    use super::RestoreState;
    use burn::backend::Flex;
    use burn::tensor::Tensor;

    /// A model without carried state restores from an empty list and refuses anything else.
    #[test]
    fn a_stateless_model_restores_only_nothing() {
        struct Stateless;
        let restore = |tensors| RestoreState::<Flex, ()>::state_from_tensors(&Stateless, tensors);
        assert!(restore(Vec::new()).is_ok());
        let one = Tensor::<Flex, 4>::zeros([1, 1, 1, 1], &Default::default());
        let error = restore(vec![one]).unwrap_err().to_string();
        assert!(error.contains("holds 1 tensors"), "{error}");
    }
}

//! Checks every task's test suite shares: training a run on Flex to a time step, and a run
//! stopped mid-episode and resumed against a straight one.

use std::path::Path;

use burn::backend::Flex;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::checkpoint::{Progress, RunDir};
use super::task::Task;
use super::train::{ExperimentOf, TrainOptions, load_model, train};

/// Every float parameter of `module`, in visiting order.
pub fn float_params<B: Backend, M: Module<B>>(module: &M) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0
                .push(param.val().into_data().convert::<f32>().to_vec().unwrap());
        }
    }
    let mut collect = Collect(Vec::new());
    module.visit(&mut collect);
    collect.0
}

/// Trains (or resumes) `run` on Flex to `total_steps`, holding the backend-seed lock.
pub fn train_to<T: Task>(
    task: &T,
    config: &ExperimentOf<T>,
    run: &RunDir,
    total_steps: u64,
    resume: bool,
) {
    let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let options = TrainOptions {
        total_steps,
        resume,
        from: None,
        max_seconds: None,
        on_cpu: true,
        show_progress: false,
    };
    train::<T, Flex>(Default::default(), task, config, run, &options).unwrap();
}

/// The newest checkpoint's model of `run` on Flex, and its progress.
pub fn trained<T: Task>(task: &T, run: &RunDir) -> (T::Model<Flex>, Progress) {
    let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    load_model::<T, Flex>(task, run, None, &Default::default()).unwrap()
}

/// Trains `root/straight` to `total` steps, and `root/split` to `stop` steps (where it must
/// stand at `mid`), then resumes it to `total`: both must end at the same position with the
/// same weights and the same metrics lines' time steps, the wall time being cumulative.
/// Returns the straight run's model.
pub fn assert_resume_is_exact<T: Task>(
    task: &T,
    config: &ExperimentOf<T>,
    root: &Path,
    stop: u64,
    total: u64,
    mid: Progress,
) -> T::Model<Flex> {
    let straight = RunDir::new(root.join("straight"));
    let split = RunDir::new(root.join("split"));
    train_to(task, config, &straight, total, false);
    train_to(task, config, &split, stop, false);
    let (_, at_stop) = trained(task, &split);
    assert!(at_stop.same_position(&mid), "{at_stop:?} is not {mid:?}");
    train_to(task, config, &split, total, true);
    let (a, pa) = trained(task, &straight);
    let (b, pb) = trained(task, &split);
    assert!(pa.same_position(&pb));
    assert!(pb.elapsed_s >= at_stop.elapsed_s, "wall time is cumulative");
    assert_eq!(
        float_params(&a),
        float_params(&b),
        "resumed weights differ from the straight run"
    );
    let steps = |run: &RunDir| -> Vec<u64> {
        super::metrics::read_metrics(&run.metrics())
            .unwrap()
            .iter()
            .map(|m| m.time_step)
            .collect()
    };
    assert_eq!(steps(&straight), steps(&split));
    a
}

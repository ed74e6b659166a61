//! Checks every task's test suite shares: training a run on Flex to a time step, a run
//! stopped mid-episode and resumed against a straight one, and a batch trained in shards
//! against the whole batch.

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::{Backend, Device as _, DeviceId};

use super::checkpoint::{Progress, RunDir};
use super::experiment::{LossReduction, resolve_path};
use super::task::{CarriedState, Task};
use super::train::{
    ExperimentOf, Spread, TrainOptions, WindowGradients, load_model, merge_states, split_state,
    train, window_gradients,
};

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
    train_on_devices(task, config, run, total_steps, resume, &[]);
}

/// [`train_to`] with one shard per device index (`TrainOptions::devices`; Flex has one
/// device, which every index names).
pub fn train_on_devices<T: Task>(
    task: &T,
    config: &ExperimentOf<T>,
    run: &RunDir,
    total_steps: u64,
    resume: bool,
    devices: &[u16],
) {
    let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let flex: burn::tensor::Device<Flex> = Default::default();
    let options = TrainOptions {
        total_steps,
        resume,
        from: None,
        max_seconds: None,
        on_cpu: true,
        show_progress: false,
        nodes: None,
        devices: devices
            .iter()
            .map(|&i| DeviceId::new(flex.to_id().type_id, i))
            .collect(),
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

/// The gradient of every float parameter of `model` in `grads`, in visiting order (empty for
/// a parameter without one).
pub fn grad_values<M: Module<Autodiff<Flex>>>(model: &M, grads: &GradientsParams) -> Vec<Vec<f32>> {
    struct Collect<'a>(&'a GradientsParams, Vec<Vec<f32>>);
    impl ModuleVisitor<Autodiff<Flex>> for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Autodiff<Flex>, D>>) {
            let grad = self.0.get::<Flex, D>(param.id);
            self.1.push(grad.map_or(Vec::new(), |g| {
                g.into_data().convert::<f32>().to_vec().unwrap()
            }));
        }
    }
    let mut collect = Collect(grads, Vec::new());
    model.visit(&mut collect);
    collect.1
}

/// Largest absolute value.
fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// Runs `batches` batches of `config.train.batch` sequences (the config's seed) window by
/// window ([`window_gradients`], on the configured forward path) from the same initial weights
/// twice: whole, and cut into shards of `sizes` ([`Task::split_batch`]) with the carried state
/// split before each window and merged after it, as training does. Every window's loss, units,
/// task figures and gradients, and the merged state, must equal the whole batch's within
/// float tolerance. Returns the windows compared and how many of them started from a carried
/// state.
pub fn assert_shards_match<T: Task>(
    task: &T,
    config: &ExperimentOf<T>,
    sizes: &[usize],
    batches: u64,
) -> (usize, usize) {
    let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let t = &config.train;
    let reduction: LossReduction = t.loss;
    let device = Default::default();
    Flex::seed(&device, t.seed);
    let model = task.init_train::<Flex>(&device);
    let path = resolve_path(t.path, true, task.paths());
    let (mut windows, mut carried) = (0, 0);
    for index in 0..batches {
        let whole = task.batch(t.seed, index, t.batch).unwrap();
        let parts = task
            .split_batch(&whole, sizes)
            .expect("the task splits batches");
        assert_eq!(parts.len(), sizes.len());
        let len = task.sequence_len(&whole);
        for part in &parts {
            assert_eq!(
                task.sequence_len(part),
                len,
                "a shard keeps the batch's length"
            );
        }
        let mut state = None;
        let mut states: Option<Vec<_>> = None;
        let mut t0 = 0;
        while t0 < len {
            let t1 = (t0 + t.window).min(len);
            let window = task.window::<Autodiff<Flex>>(&whole, t0..t1, &device);
            // The whole batch first: its forward pass initialises the weights (burn draws them
            // on first use), which the shards' copies then share.
            let one = window_gradients(
                task,
                &model,
                vec![(&window, state.take())],
                path,
                reduction,
                Spread::here(),
            )
            .unwrap();
            let shard_windows: Vec<_> = parts
                .iter()
                .map(|p| task.window::<Autodiff<Flex>>(p, t0..t1, &device))
                .collect();
            let shard_states = match states.take() {
                Some(s) => s.into_iter().map(Some).collect(),
                None => vec![None; parts.len()],
            };
            carried += usize::from(t0 > 0);
            let many = window_gradients(
                task,
                &model,
                shard_windows.iter().zip(shard_states).collect(),
                path,
                reduction,
                Spread::here(),
            )
            .unwrap();
            let at = format!("{} batch {index}, steps {t0}..{t1}", T::KIND);
            compare_windows(&model, &one, &many, &at);
            let mut one_states = one.states;
            let whole_state = one_states.pop().expect("one state").detach();
            let detached: Vec<_> = many.states.into_iter().map(CarriedState::detach).collect();
            let merged = merge_states::<T, _>(T::as_model(&model), detached).unwrap();
            let (a, b) = (
                whole_state.clone().into_tensors(),
                merged.clone().into_tensors(),
            );
            assert_eq!(a.len(), b.len(), "{at}: state tensors");
            for (x, y) in a.into_iter().zip(b) {
                assert_eq!(x.dims(), y.dims(), "{at}: state shapes");
                let (x, y) = (flat(x), flat(y));
                let scale = max_abs(&x).max(1.0);
                for (p, q) in x.iter().zip(&y) {
                    assert!((p - q).abs() <= 1e-4 * scale, "{at}: state {p} vs {q}");
                }
            }
            states = Some(split_state::<T, _>(T::as_model(&model), merged, sizes).unwrap());
            state = Some(whole_state);
            windows += 1;
            t0 = t1;
        }
    }
    (windows, carried)
}

fn flat<const D: usize>(t: Tensor<Autodiff<Flex>, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// Loss, units, figures and gradients of a window run whole (`one`) and in shards (`many`).
fn compare_windows<M: Module<Autodiff<Flex>>, S>(
    model: &M,
    one: &WindowGradients<S>,
    many: &WindowGradients<S>,
    at: &str,
) {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * a.abs().max(1.0);
    assert!(
        close(one.loss, many.loss),
        "{at}: loss {} vs {}",
        one.loss,
        many.loss
    );
    assert!(
        close(one.units, many.units),
        "{at}: units {} vs {}",
        one.units,
        many.units
    );
    assert_eq!(one.metrics.len(), many.metrics.len(), "{at}: figures");
    for ((name, a), (other, b)) in one.metrics.iter().zip(&many.metrics) {
        assert_eq!(name, other);
        assert!(close(*a, *b), "{at}: {name} {a} vs {b}");
    }
    let (a, b) = (
        grad_values(model, &one.grads),
        grad_values(model, &many.grads),
    );
    let largest = a.iter().map(|g| max_abs(g)).fold(0.0, f32::max);
    assert!(
        largest > 0.0 || one.units == 0.0,
        "{at}: every gradient is 0"
    );
    for (k, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(
            x.len(),
            y.len(),
            "{at}: parameter {k} has a gradient in one run only"
        );
        let tolerance = 1e-4 * max_abs(x) + 1e-6 * largest;
        for (p, q) in x.iter().zip(y) {
            assert!(
                (p - q).abs() <= tolerance,
                "{at}: parameter {k}: gradient {p} vs {q}"
            );
        }
    }
}

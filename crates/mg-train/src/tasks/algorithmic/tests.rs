use std::path::Path;

use super::*;

fn info<T: Task>(path: &str) -> ModelInfo {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs")
        .join(path);
    let text = std::fs::read_to_string(&path).unwrap();
    let config = ExperimentOf::<T>::parse(&text).unwrap();
    T::new(&config).unwrap().info()
}

/// Table 2's rows: (parameters, memory cells) of every shipped paper-size config; the
/// reference MNIST recall model is the authors' code exactly (211,408 / 7,560).
#[test]
fn table_2_counts() {
    let sort = [
        ("sort/paper-20.toml", (123_825, 8_001)),
        ("sort/paper-mnist-20.toml", (290_338, 7_560)),
        ("sort/paper-50.toml", (888_641, 76_968)),
        ("sort/dnc-20.toml", (759_060, 8_000)),
        ("sort/dnc-mnist-20.toml", (1_049_339, 8_000)),
    ];
    for (path, counts) in sort {
        let i = info::<Sort>(path);
        assert_eq!((i.params, i.memory_cells), counts, "{path}");
    }
    let recall = [
        ("recall/reference-mnist.toml", (211_408, 7_560)),
        ("recall/paper-10.toml", (131_742, 8_001)),
        ("recall/paper-20.toml", (649_145, 76_968)),
        ("recall/dnc-10.toml", (761_040, 8_000)),
        ("recall/dnc-mnist-10.toml", (900_799, 8_000)),
    ];
    for (path, counts) in recall {
        let i = info::<Recall>(path);
        assert_eq!((i.params, i.memory_cells), counts, "{path}");
    }
}

fn task<T: Task>(text: &str) -> T {
    T::new(&ExperimentOf::<T>::parse(text).unwrap()).unwrap()
}

const TINY: &str = "[model]\nlevels = [1, 2]\nchannels = [2, 2]\ntail_channels = 2\n\
    [train]\nwindow = 12\n";

/// The sum loss of a vector batch equals the sigmoid cross-entropy summed over every
/// answer bit, computed on the host from the same logits.
#[test]
fn the_bit_loss_sums_every_answer_bit() {
    let _guard = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let t: Recall = task(&format!(
        "[task]\nkind = \"recall\"\nlen = 3\ndim = 4\n{TINY}"
    ));
    let device = Default::default();
    let model = t.init::<burn::backend::Flex>(&device);
    let batch = t.batch(3, 0, 5).unwrap();
    let window = t.window::<burn::backend::Flex>(&batch, 0..4, &device);
    let (logits, ()) = t
        .forward(&model, &window, None, ForwardPath::Window)
        .unwrap();
    assert_eq!(logits.dims(), [5, 4]);
    let host: Vec<f32> = logits.clone().into_data().to_vec().unwrap();
    let want: f64 = host
        .iter()
        .zip(&batch.bits)
        .map(|(&x, &y)| {
            let p = 1.0 / (1.0 + (-x as f64).exp());
            -(y as f64) * p.ln() - (1.0 - y as f64) * (1.0 - p).ln()
        })
        .sum();
    let loss = t.loss(logits, &window, LossReduction::Sum);
    assert_eq!(loss.units, 20.0);
    let got = loss.loss.into_scalar() as f64;
    assert!((got - want).abs() < 1e-4 * want, "{got} vs {want}");
}

/// A shared query index is the same for every sequence of a batch and differs between batches.
#[test]
fn batch_queries_vary_between_batches() {
    let t: Recall = task(&format!(
        "[task]\nkind = \"recall\"\nlen = 8\nquery = \"batch\"\n{TINY}"
    ));
    let queries: Vec<usize> = (0..20)
        .map(|i| {
            let b = t.batch(1, i, 4).unwrap();
            assert!(
                b.meta
                    .iter()
                    .all(|m| m.query_index == b.meta[0].query_index)
            );
            b.meta[0].query_index
        })
        .collect();
    assert!(queries.iter().any(|&q| q != queries[0]), "{queries:?}");
}

/// Trains `text`'s model through the harness and returns its test error.
fn train_and_eval<T: Task<Report = ErrorReport>>(text: &str, name: &str, steps: u64) -> f64 {
    use crate::harness::train::{load_model, train};
    use crate::harness::{RunDir, TrainOptions};
    let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let config = ExperimentOf::<T>::parse(text).unwrap();
    let task = T::new(&config).unwrap();
    let root = std::env::temp_dir().join(format!("mg-algo-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&root).ok();
    let run = RunDir::new(&root);
    let options = TrainOptions {
        total_steps: steps,
        resume: false,
        from: None,
        max_seconds: None,
        on_cpu: true,
        show_progress: false,
        nodes: None,
        devices: Vec::new(),
    };
    let device = Default::default();
    train::<T, burn::backend::Flex>(device, &task, &config, &run, &options).unwrap();
    let (model, _) = load_model::<T, burn::backend::Flex>(&task, &run, None, &device).unwrap();
    let request = EvalRequest {
        sequences: 64,
        time_step: steps,
        show_progress: false,
    };
    let report = task.evaluate(&model, &request, &device).unwrap();
    std::fs::remove_dir_all(&root).ok();
    report.error
}

const LEARN: &str = "[train]\nbatch = 16\nwindow = 8\nseed = 2\noptimizer = \"adam\"\n\
    lr_start = 1e-2\nlr_end = 1e-2\nclip_norm = 100.0\nloss = \"mean\"\n\
    checkpoint_every = 100000\nlog_every = 100000\n[eval]\nbatch = 16\n";

/// The models learn: recall of 3 items of 3 bits and sort of 2 items of 3 bits, far below
/// the 0.5 bit error of chance after a few hundred updates (a broken memory transfer,
/// reader input or loss stays near chance).
#[test]
fn tiny_models_learn_recall_and_sort() {
    let mg = "[model]\nlevels = [1, 2]\nchannels = [8, 8]\ntail_channels = 8\n";
    let recall = format!("[task]\nkind = \"recall\"\nlen = 3\ndim = 3\n{mg}{LEARN}");
    let error = train_and_eval::<Recall>(&recall, "recall", 4 * 300);
    assert!(error < 0.15, "recall bit error {error}");
    let sort = format!("[task]\nkind = \"sort\"\nlen = 2\ndim = 3\n{mg}{LEARN}");
    let error = train_and_eval::<Sort>(&sort, "sort", 4 * 300);
    assert!(error < 0.15, "sort bit error {error}");
}

/// The MNIST fixture of mg-data (a few images of each split).
fn mnist_fixture() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mg-data/tests/fixtures/mnist");
    format!("{:?}", dir.display().to_string())
}

/// Sort and recall, on vectors and on MNIST digits, by a multigrid model and a DNC, with a
/// summed and a mean loss: a batch of 3 cut into shards of 2 and 1 gives the loss and
/// gradients of the whole batch.
#[test]
fn shards_give_the_whole_batch_s_gradients() {
    use crate::harness::testing::assert_shards_match;
    let mg = "[model]\nlevels = [1, 2]\nchannels = [2, 2]\ntail_channels = 2\n";
    let dnc = "[model]\nkind = \"dnc\"\ncontroller = 4\nmemory_slots = 3\nword_size = 2\n\
               read_heads = 1\n";
    let mnist = format!(
        "items = \"mnist\"\nscales = [3]\npixels = \"unit\"\nmnist_dir = {}\n",
        mnist_fixture()
    );
    fn check<T: Task>(text: &str) {
        let config = ExperimentOf::<T>::parse(text).unwrap();
        let task = T::new(&config).unwrap_or_else(|e| panic!("{e:#}\n{text}"));
        assert_eq!(assert_shards_match(&task, &config, &[2, 1], 1).0, 1);
    }
    for items in ["dim = 3\n", &mnist] {
        for model in [mg, dnc] {
            for loss in ["sum", "mean"] {
                let train = format!("[train]\nbatch = 3\nwindow = 6\nloss = \"{loss}\"\n");
                check::<Sort>(&format!(
                    "[task]\nkind = \"sort\"\nlen = 2\n{items}{model}{train}"
                ));
                check::<Recall>(&format!(
                    "[task]\nkind = \"recall\"\nlen = 3\n{items}{model}{train}"
                ));
            }
        }
    }
}

/// A model with batch norm normalises with the whole batch's statistics, so it refuses
/// `train.threads` above 1, naming the settings.
#[test]
fn batch_norm_refuses_threads() {
    let text = format!(
        "[task]\nkind = \"recall\"\nlen = 3\ndim = 4\n{}norm = \"batch-pooled\"\n\
         [train]\nwindow = 12\nbatch = 4\nthreads = 2\n",
        TINY.replace("[train]\nwindow = 12\n", "")
    );
    let config = ExperimentOf::<Recall>::parse(&text).unwrap();
    let message = format!("{:#}", Recall::new(&config).unwrap_err());
    assert!(
        message.contains("train.threads: 2")
            && message.contains("model.norm = \"batch-pooled\"")
            && message.contains("set train.threads = 1"),
        "{message}"
    );
    let one = text.replace("threads = 2", "threads = 1");
    Recall::new(&ExperimentOf::<Recall>::parse(&one).unwrap()).unwrap();
}

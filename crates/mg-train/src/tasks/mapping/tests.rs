use mg_layers::MgBackend;
use std::fs;
use std::path::Path;

use burn::backend::Flex;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use mg_data::mapping::MappingConfig;

use super::*;
use crate::harness::testing::{assert_resume_is_exact, float_params};
use crate::harness::train::load_model;
use crate::harness::{Progress, RunDir};

const MINIMAL: &str = "[task]\nkind = \"mapping\"\nmap_size = 25\n[model]\n\
                       levels = [2, 2, 3, 3, 4, 4, 5]\n\
                       channels = [4, 4, 8, 8, 16, 16, 16]\ntail_channels = 16\n";

fn parse(text: &str) -> anyhow::Result<(ExperimentOf<Mapping>, Mapping)> {
    let config = ExperimentOf::<Mapping>::parse(text)?;
    let task = Mapping::new(&config)?;
    Ok((config, task))
}

#[test]
fn minimal_config_is_the_reference() {
    let (config, task) = parse(MINIMAL).unwrap();
    assert_eq!(task.info().params, 650_225);
    assert_eq!(task.info().memory_cells, 76_968);
    assert_eq!(task.mapping(3), MappingConfig::default());
    assert_eq!(config.train.batch, 32);
    // The resolved TOML round-trips.
    assert_eq!(parse(&config.to_toml()).unwrap().0, config);
    // The bench's built-in reference is the same model.
    assert_eq!(parse(crate::commands::REFERENCE).unwrap().0, config);
}

#[test]
fn errors_name_the_field() {
    let err = |text: String| format!("{:#}", parse(&text).unwrap_err());
    assert!(err(format!("{MINIMAL}[train]\nbatch = 0\n")).contains("train.batch: 0"));
    assert!(err(format!("{MINIMAL}[train]\nbacth = 4\n")).contains("unknown field `bacth`"));
    assert!(
        err(MINIMAL.replace("map_size = 25", "map_size = 25\nquery_sizes = [27]"))
            .contains("query_size: 27; expected an odd size between 1 and map_size 25")
    );
    assert!(err(MINIMAL.replace("map_size = 25", "map_size = 3")).contains("map_size"));
    assert!(
        err(MINIMAL.replace("map_size = 25", "map_size = 25\nmask_size = 96"))
            .contains("task.mask_size: 96; the model's finest grid is 48×48")
    );
    assert!(err(MINIMAL.replace("tail_channels = 16", "")).contains("tail_channels"));
    assert!(
        err(format!(
            "{MINIMAL}[train]\noptimizer = \"adam\"\nrmsprop_decay = 0.9\n"
        ))
        .contains("train.optimizer is \"adam\"")
    );
}

/// The old form (`[world]`) and unknown task kinds are explained.
#[test]
fn configs_name_their_task() {
    use crate::harness::experiment::task_kind;
    let old = MINIMAL.replace("[task]\nkind = \"mapping\"", "[world]");
    assert!(format!("{:#}", task_kind(&old).unwrap_err()).contains("rename [world] to [task]"));
    assert_eq!(task_kind(MINIMAL).unwrap(), "mapping");
    let err = crate::tasks::visit("sort-of", Nothing).unwrap_err();
    assert!(
        format!("{err}").contains("expected one of \"mapping\", \"copy\""),
        "{err}"
    );
}

pub(crate) struct Nothing;

impl crate::tasks::TaskVisitor for Nothing {
    type Output = ();
    fn visit<T: Task>(self) {}
}

/// Every shipped config loads through the registry, and Table 1's counts hold.
#[test]
fn shipped_configs_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut count = 0;
    for family in fs::read_dir(&root).unwrap() {
        let family = family.unwrap().path();
        for entry in fs::read_dir(&family).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = fs::read_to_string(&path).unwrap();
                let kind = crate::harness::experiment::task_kind(&text).unwrap();
                crate::tasks::visit(&kind, Load(&path, &text))
                    .unwrap()
                    .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                count += 1;
            }
        }
    }
    assert!(count >= 21, "only {count} configs under {}", root.display());
    let dir = root.join("mapping");
    let load = |name: &str| {
        let text = fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap();
        parse(&text).unwrap().1.info()
    };
    // Table 1's baselines: (parameters, memory cells).
    for (name, counts) in [
        ("ablated-mg", (1_400_753, 265_536)),
        ("convlstm-deep", (376_181, 626_688)),
        ("convlstm-thick", (1_400_753, 626_688)),
        ("dnc-spiral-15", (751_650, 8_000)),
        ("dnc-spiral-25", (679_587, 8_000)),
        ("reference", (650_225, 76_968)),
    ] {
        let info = load(name);
        assert_eq!((info.params, info.memory_cells), counts, "{name}");
    }
}

struct Load<'a>(&'a Path, &'a str);

impl crate::tasks::TaskVisitor for Load<'_> {
    type Output = anyhow::Result<()>;
    fn visit<T: Task>(self) -> anyhow::Result<()> {
        if T::KIND == crate::tasks::Explore::KIND {
            // An exploration config needs its mapping run trained first: it must parse, and
            // building the task must ask for that run.
            ExperimentOf::<T>::parse(self.1)?;
            let err = crate::harness::experiment::load_config::<T>(self.0, self.1)
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            assert!(
                err.contains("task.mapping_run") && err.contains("train a mapping config first"),
                "{}: {err}",
                self.0.display()
            );
            return Ok(());
        }
        let (_, task) = crate::harness::experiment::load_config::<T>(self.0, self.1)?;
        assert!(task.info().params > 0);
        Ok(())
    }
}

/// A 5×5 maze (9-step episodes: windows of 4, 4 and 1 steps), so that runs stop and resume
/// in the middle of an episode, with carried LSTM state.
const TINY: &str = "[task]\nkind = \"mapping\"\nmap_size = 5\nmask_size = 6\nmask_origin = 2\n\
    location = \"normalized\"\nquery_per = \"sample\"\n\
    [model]\nlevels = [1, 2]\nchannels = [2, 2]\ntail_channels = 2\n\
    [train]\nbatch = 2\nwindow = 4\ncheckpoint_every = 4\nlog_every = 4\n";

struct Collect(Vec<Vec<f32>>);

impl<B: MgBackend> ModuleVisitor<B> for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0
            .push(param.val().into_data().convert::<f32>().to_vec().unwrap());
    }
}

fn weights(task: &Mapping, run: &RunDir) -> (Vec<Vec<f32>>, Progress) {
    let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let (model, progress) =
        load_model::<Mapping, Flex>(task, run, None, &Default::default()).unwrap();
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    (collect.0, progress)
}

/// A run of a `TINY`-sized task trained straight to 26 time steps (windows end at 4, 8, 9, 13,
/// 17, 18, 22, 26) and one stopped at 13, 4 steps into its second batch, then resumed: the same
/// weights ([`assert_resume_is_exact`]). Returns the straight run's model.
fn assert_resumes_at_13_of_26(task: &Mapping, root: &Path) -> Localizer<Flex> {
    let mid = Progress {
        time_step: 13,
        updates: 4,
        batch_index: 1,
        episode_t: 4,
        elapsed_s: 0.0,
    };
    assert_resume_is_exact(task, task.config(), root, 13, 26, mid)
}

#[test]
fn resume_continues_exactly() {
    let root = std::env::temp_dir().join(format!("mg-resume-{}", std::process::id()));
    fs::remove_dir_all(&root).ok();
    let (_, task) = parse(TINY).unwrap();
    let a = assert_resumes_at_13_of_26(&task, &root);
    // And training did change the weights.
    let fresh = {
        let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
        Flex::seed(&Default::default(), task.config().train.seed);
        float_params(&task.init::<Flex>(&Default::default()))
    };
    assert_ne!(fresh, float_params(&a));
    fs::remove_dir_all(&root).ok();
}

/// The window and step paths train to the same weights within float rounding.
#[test]
fn window_and_step_paths_train_alike() {
    let root = std::env::temp_dir().join(format!("mg-paths-{}", std::process::id()));
    fs::remove_dir_all(&root).ok();
    let mut results = Vec::new();
    for path in ["window", "step"] {
        let text = format!("{TINY}path = \"{path}\"\n");
        let (_, task) = parse(&text).unwrap();
        let run = RunDir::new(root.join(path));
        crate::harness::testing::train_to(&task, task.config(), &run, 9, false);
        results.push(weights(&task, &run).0);
    }
    for (a, b) in results[0].iter().zip(&results[1]) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
    }
    fs::remove_dir_all(&root).ok();
}

/// Two threads, each on a shard of the batch (2 + 1 sequences), train to the weights and
/// losses of one thread within float rounding, through a sequence's end and carried state that
/// is split and merged at every window; with a summed and with a mean loss. Two shards on
/// `devices` train as two threads do.
#[test]
fn two_threads_train_like_one() {
    let root = std::env::temp_dir().join(format!("mg-threads-{}", std::process::id()));
    fs::remove_dir_all(&root).ok();
    let tiny = TINY.replace("batch = 2", "batch = 3");
    for loss in ["sum", "mean"] {
        let mut results = Vec::new();
        for threads in [1, 2] {
            let text = format!("{tiny}loss = \"{loss}\"\nthreads = {threads}\n");
            let (_, task) = parse(&text).unwrap();
            let run = RunDir::new(root.join(format!("{loss}-{threads}")));
            crate::harness::testing::train_to(&task, task.config(), &run, 9, false);
            let losses: Vec<f64> = crate::harness::metrics::read_metrics(&run.metrics())
                .unwrap()
                .iter()
                .map(|m| m.loss)
                .collect();
            results.push((weights(&task, &run).0, losses));
        }
        // Two shards through the several-devices path (both on Flex's one device): the thread
        // shards' run exactly.
        let text = format!("{tiny}loss = \"{loss}\"\n");
        let (_, task) = parse(&text).unwrap();
        let run = RunDir::new(root.join(format!("{loss}-devices")));
        crate::harness::testing::train_on_devices(&task, task.config(), &run, 9, false, &[0, 0]);
        let losses: Vec<f64> = crate::harness::metrics::read_metrics(&run.metrics())
            .unwrap()
            .iter()
            .map(|m| m.loss)
            .collect();
        assert_eq!(
            losses, results[1].1,
            "{loss}: two devices against two threads"
        );
        assert_eq!(weights(&task, &run).0, results[1].0);
        let ((w1, l1), (w2, l2)) = (&results[0], &results[1]);
        assert_eq!(l1.len(), l2.len());
        for (a, b) in l1.iter().zip(l2) {
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                "{loss}: loss {a} vs {b}"
            );
        }
        let mut changed = false;
        for (a, b) in w1.iter().zip(w2) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() < 1e-4, "{loss}: weight {x} vs {y}");
                changed |= x != y;
            }
        }
        // Rounding differs (the threads sum in another order), so the runs are not bitwise equal
        // by accident of both ignoring the setting.
        assert!(
            changed,
            "{loss}: two threads gave bitwise the weights of one"
        );
    }
    fs::remove_dir_all(&root).ok();
}

/// With two threads, a run stopped mid-sequence (its carried state saved merged) resumes to
/// exactly the weights of a run that never stopped.
#[test]
fn two_threads_resume_exactly() {
    let root = std::env::temp_dir().join(format!("mg-threads-resume-{}", std::process::id()));
    fs::remove_dir_all(&root).ok();
    let (_, task) = parse(&format!("{TINY}threads = 2\n")).unwrap();
    assert_resumes_at_13_of_26(&task, &root);
    fs::remove_dir_all(&root).ok();
}

#[test]
fn thread_counts_are_checked() {
    let err = |text: String| format!("{:#}", parse(&text).unwrap_err());
    assert!(err(format!("{TINY}threads = 0\n")).contains("train.threads: 0"));
    assert!(
        err(format!("{TINY}threads = 3\n"))
            .contains("train.threads: 3; expected at most train.batch (2)")
    );
}

/// Scoring on several threads (batches of test maps at once) gives the counts of one thread,
/// also when the last round has fewer batches than threads.
#[test]
fn scores_do_not_depend_on_threads() {
    let (config, task) = parse(TINY).unwrap();
    let model = {
        let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
        Flex::seed(&Default::default(), config.train.seed);
        // Weights drawn now, as a loaded checkpoint's are: a copy of a not yet initialised
        // parameter would draw its own.
        let model = task.init::<Flex>(&Default::default());
        model.clone().load_record(model.into_record())
    };
    let score = |threads: usize| {
        let source = |range| task.test_episodes(range);
        let sizes = &config.task.query_sizes;
        score_episodes(
            &model,
            sizes,
            5,
            2,
            threads,
            source,
            &Default::default(),
            false,
        )
        .unwrap()
    };
    let one = score(1);
    assert!(one[0].true_positives + one[0].false_negatives > 0);
    assert_eq!(score(2), one);
    assert_eq!(score(4), one);
}

/// The harness's shard check on a DNC localizer and on the multigrid model: a batch of 3 cut
/// into shards of 2 and 1 gives the loss and gradients of the whole batch, window by window
/// with the state (the DNC's memory, links and controller; the conv-LSTM cells) split and
/// merged, with a summed and a mean loss.
#[test]
fn shards_give_the_whole_batch_s_gradients() {
    use crate::harness::testing::assert_shards_match;
    let dnc = "[model]\nkind = \"dnc\"\ncontroller = 4\nmemory_slots = 3\nword_size = 2\n\
               read_heads = 1\n";
    let multigrid = "[model]\nlevels = [1, 2]\nchannels = [2, 2]\ntail_channels = 2\n";
    for model in [dnc, multigrid] {
        for loss in ["sum", "mean"] {
            let text = TINY
                .replace(multigrid, model)
                .replace("batch = 2", &format!("batch = 3\nloss = \"{loss}\""));
            let (config, task) = parse(&text).unwrap();
            let (windows, carried) = assert_shards_match(&task, &config, &[2, 1], 1);
            assert_eq!((windows, carried), (3, 2));
        }
    }
}

use std::fs;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use mg_data::mapping::{MappingConfig, Motion};

use super::*;
use crate::harness::Progress;
use crate::harness::checkpoint::write_atomic;
use crate::harness::testing::{assert_resume_is_exact, assert_shards_match};
use crate::harness::train::start_from_weights;

/// A 5×5 maze mapping model (the mapping tests' tiny one, on random walks).
const TINY_MAPPING: &str = "[task]\nkind = \"mapping\"\nmap_size = 5\nmask_size = 6\n\
    mask_origin = 2\nlocation = \"normalized\"\nquery_per = \"sample\"\nmotion = \"random-walk\"\n\
    walk_length = 9\n[model]\nlevels = [1, 2]\nchannels = [2, 2]\ntail_channels = 2\n\
    [train]\nbatch = 2\nwindow = 4\n";

fn temp(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("mg-explore-{name}-{}", std::process::id()));
    fs::remove_dir_all(&root).ok();
    fs::create_dir_all(&root).unwrap();
    root
}

/// A mapping run at time step 0 from seeded initial weights.
fn mapping_run(root: &Path) -> PathBuf {
    let dir = root.join("mapping");
    let config = ExperimentOf::<Mapping>::parse(TINY_MAPPING).unwrap();
    let task = Mapping::new(&config).unwrap();
    let run = RunDir::new(&dir);
    fs::create_dir_all(&dir).unwrap();
    write_atomic(&run.config(), config.to_toml().as_bytes()).unwrap();
    let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    Flex::seed(&Default::default(), 7);
    let model = task.init_train::<Flex>(&Default::default());
    start_from_weights::<Mapping, Flex>(&task, &config, &run, model).unwrap();
    dir
}

/// An exploration config on `mapping`: 9-step episodes, windows of 4, 4 and 1 steps.
fn explore_text(mapping: &Path) -> String {
    format!(
        "[task]\nkind = \"explore\"\nmapping_run = {:?}\nepisode_len = 9\neval_steps = 12\n\
         [model]\nhead_channels = 2\n\
         [train]\nbatch = 2\nwindow = 4\ncheckpoint_every = 4\nlog_every = 4\n\
         optimizer = \"adam\"\nlr_start = 1e-2\nlr_end = 1e-2\nloss = \"mean\"\n\
         [eval]\nsequences = 3\nbatch = 2\n",
        mapping.display().to_string()
    )
}

/// The task of `text`, built holding the backend-seed lock: building it loads the mapping
/// model, whose initialisation draws from the generator other tests seed.
fn parse(text: &str) -> anyhow::Result<Explore> {
    let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    Explore::new(&ExperimentOf::<Explore>::parse(text)?)
}

struct Collect(Vec<Vec<f32>>, Vec<bool>);

impl<B: Backend> ModuleVisitor<B> for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0
            .push(param.val().into_data().convert::<f32>().to_vec().unwrap());
        self.1.push(param.is_require_grad());
    }
}

fn collect<B: Backend, M: Module<B>>(module: &M) -> Collect {
    let mut c = Collect(Vec::new(), Vec::new());
    module.visit(&mut c);
    c
}

/// Policy training leaves the frozen writer and reader exactly as the mapping run saved them
/// (their parameters require no gradient, on resume too), changes the policy, resumes in the
/// middle of an episode to the same weights as a straight run, and logs the task's figures.
#[test]
fn policy_training_freezes_the_mapping_model_and_resumes_exactly() {
    let root = temp("train");
    let mapping = mapping_run(&root);
    let task = parse(&explore_text(&mapping)).unwrap();
    let frozen = {
        let (m, _) = {
            let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
            load_model::<Mapping, Flex>(
                task.mapping(),
                &RunDir::open(&mapping).unwrap(),
                None,
                &Default::default(),
            )
            .unwrap()
        };
        collect(&m).0
    };
    let fresh = {
        let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
        Flex::seed(&Default::default(), task.config().train.seed);
        let model = task.init_train::<Flex>(&Default::default());
        let localizer = collect(&model.localizer);
        assert_eq!(
            localizer.0, frozen,
            "the policy starts from the mapping weights"
        );
        assert!(
            localizer.1.iter().all(|&g| !g),
            "frozen parameters require no gradient"
        );
        assert!(collect(&model.policy).1.iter().all(|&g| g));
        collect(&model.policy).0
    };
    let mid = Progress {
        time_step: 13,
        updates: 4,
        batch_index: 1,
        episode_t: 4,
        elapsed_s: 0.0,
    };
    let a = assert_resume_is_exact(&task, task.config(), &root, 13, 22, mid);
    let straight = RunDir::new(root.join("straight"));
    let split = RunDir::new(root.join("split"));
    assert_eq!(
        collect(&a.localizer).0,
        frozen,
        "training moved the frozen model"
    );
    assert_ne!(
        collect(&a.policy).0,
        fresh,
        "training did not move the policy"
    );
    // The resumed run's frozen parameters still require no gradient.
    {
        let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
        let model = task.init_train::<Flex>(&Default::default());
        let dir = split.latest().unwrap().unwrap();
        let model = model
            .load_file(
                dir.join("model"),
                &crate::harness::train::Rec::new(),
                &Default::default(),
            )
            .unwrap();
        assert!(collect(&model.localizer).1.iter().all(|&g| !g));
    }
    let lines = crate::harness::metrics::read_metrics(&straight.metrics()).unwrap();
    for name in [
        "reward_per_step",
        "reader_loss_per_pixel",
        "wall_hits_per_step",
    ] {
        assert!(lines.iter().all(|l| l.task.contains_key(name)), "{name}");
    }
    assert!(
        straight
            .root
            .join("learning_curve_reward_per_step.png")
            .is_file()
    );
    fs::remove_dir_all(&root).ok();
}

/// +1 for a new cell, 0 for a cell visited before, −1 for a move the border blocks; a replay
/// of the same actions gives the same world.
#[test]
fn rewards_follow_the_rules() {
    let config = MappingConfig {
        map_size: 7,
        open_map: true,
        motion: Motion::Policy,
        mask_size: 12,
        mask_origin: 6,
        ..MappingConfig::default()
    };
    let rewards = Rewards {
        new_cell: 1.0,
        wall: -1.0,
    };
    let mut world = World::start(&config, 1, 0).unwrap();
    assert_eq!(world.episode.position(), (3, 3));
    assert_eq!(world.free_cells, 25);
    let got: Vec<f32> = [0u8, 1, 0, 0, 0, 3]
        .iter()
        .map(|&a| world.act(a, rewards).reward)
        .collect();
    // Up to (2,3) new; down to the start, seen; up (seen), up to (1,3) new; up: the border;
    // right to (1,4) new.
    assert_eq!(got, [1.0, 0.0, 0.0, 1.0, -1.0, 1.0]);
    assert_eq!((world.covered, world.wall_hits), (4, 1));
    assert!((world.coverage() - 4.0 / 25.0).abs() < 1e-12);
    let mut again = World::start(&config, 1, 0).unwrap();
    again.replay(&world.actions, rewards).unwrap();
    assert_eq!(again.episode.positions(), world.episode.positions());
    assert_eq!(again.visited, world.visited);
    assert!(again.replay(&[5], rewards).is_err());
}

/// GAE against values worked by hand, per maze of a time-major batch.
#[test]
fn advantages_match_hand_values() {
    // One maze: r = [1, 0], V = [0.5, 0.2], V_2 = 0.4, γ = 0.9, λ = 0.5.
    // δ_1 = 0 + 0.9·0.4 − 0.2 = 0.16 = A_1; δ_0 = 1 + 0.9·0.2 − 0.5 = 0.68,
    // A_0 = 0.68 + 0.45·0.16 = 0.752.
    let (adv, ret) = advantages(&[1.0, 0.0], &[0.5, 0.2], &[0.4], 0.9, 0.5);
    for (x, y) in adv.iter().zip([0.752, 0.16]) {
        assert!((x - y).abs() < 1e-6, "{adv:?}");
    }
    for (x, y) in ret.iter().zip([1.252, 0.36]) {
        assert!((x - y).abs() < 1e-6, "{ret:?}");
    }
    // Two mazes interleaved (rows t·2 + b); the second ends its episode (bootstrap 0), and
    // λ = 1 gives the discounted return minus the value.
    let (adv, _) = advantages(
        &[1.0, 0.0, 0.0, 2.0],
        &[0.5, 0.0, 0.2, 0.0],
        &[0.4, 0.0],
        0.9,
        1.0,
    );
    assert!((adv[1] - 1.8).abs() < 1e-6, "{adv:?}");
    assert!((adv[3] - 2.0).abs() < 1e-6, "{adv:?}");
    // λ = 1: A_0 = 1 + 0.9·0 + 0.81·0.4 − 0.5.
    assert!((adv[0] - (1.0 + 0.81 * 0.4 - 0.5)).abs() < 1e-6, "{adv:?}");
    // Normalised: [1, 2, 3] → [−√1.5, 0, √1.5]; a constant only loses its mean.
    let z = normalized(vec![1.0, 2.0, 3.0]);
    for (x, y) in z.iter().zip([-1.224_744_9, 0.0, 1.224_744_9]) {
        assert!((x - y).abs() < 1e-6, "{z:?}");
    }
    assert_eq!(normalized(vec![2.0, 2.0]), [0.0, 0.0]);
}

/// Action draws follow the probabilities and are a pure function of their key.
#[test]
fn actions_are_drawn_from_the_policy() {
    let probs = [0.1, 0.2, 0.3, 0.4];
    let mut counts = [0usize; 4];
    for t in 0..20_000 {
        counts[sample_action(&probs, 3, 1, t) as usize] += 1;
    }
    for (c, p) in counts.iter().zip(probs) {
        let f = *c as f32 / 20_000.0;
        assert!((f - p).abs() < 0.015, "{counts:?}");
    }
    assert_eq!(
        sample_action(&probs, 3, 1, 5),
        sample_action(&probs, 3, 1, 5)
    );
    assert_eq!(greedy_action(&probs), 3);
    assert_eq!(greedy_action(&[0.5, 0.5, 0.0, 0.0]), 0);
}

/// Bad settings and mapping runs that do not fit are named, never a panic.
#[test]
fn bad_input_is_named() {
    let root = temp("bad");
    let mapping = mapping_run(&root);
    let good = explore_text(&mapping);
    let err = |text: String| format!("{:#}", parse(&text).map(|_| ()).unwrap_err());
    assert!(
        err(good.replace("episode_len = 9", "episode_len = 9\ngamma = 1.5"))
            .contains("task.gamma: 1.5")
    );
    assert!(
        err(good.replace("episode_len = 9", "episode_len = 9\ngae_lambda = -0.1"))
            .contains("task.gae_lambda: -0.1")
    );
    assert!(
        err(good.replace("episode_len = 9", "episode_len = 0")).contains("task.episode_len: 0")
    );
    assert!(err(good.replace("batch = 2\nwindow", "batch = 0\nwindow")).contains("train.batch: 0"));
    assert!(
        err(good.replace("episode_len = 9", "episode_len = 9\nmap_size = 15"))
            .contains("task.map_size: 15, but task.mapping_run")
    );
    assert!(
        err(good.replace("head_channels = 2", "head_channels = 0")).contains("head_channels: 0")
    );
    let missing = root.join("nowhere");
    let text = explore_text(&missing);
    let e = err(text);
    assert!(
        e.contains("task.mapping_run") && e.contains("does not exist"),
        "{e}"
    );
    // A DNC mapping run.
    let dnc = root.join("dnc");
    fs::create_dir_all(&dnc).unwrap();
    let dnc_config = "[task]\nkind = \"mapping\"\nmap_size = 5\nmask_size = 6\nmask_origin = 2\n\
        [model]\nkind = \"dnc\"\ncontroller = 8\nmemory_slots = 4\nword_size = 3\nread_heads = 1\n";
    fs::write(dnc.join("config.toml"), dnc_config).unwrap();
    assert!(err(explore_text(&dnc)).contains("trains a DNC"));
    // A run of another task.
    let other = root.join("other");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("config.toml"), "[task]\nkind = \"sort\"\n").unwrap();
    assert!(err(explore_text(&other)).contains("is a `sort` config"));
    // A mapping run without a checkpoint.
    let empty = root.join("empty");
    fs::create_dir_all(&empty).unwrap();
    fs::copy(mapping.join("config.toml"), empty.join("config.toml")).unwrap();
    assert!(err(explore_text(&empty)).contains("no checkpoint"));
    fs::remove_dir_all(&root).ok();
}

/// The carried state (writer memory and paths) survives a checkpoint; bad paths are named.
#[test]
fn states_round_trip_through_tensors() {
    let root = temp("state");
    let task = parse(&explore_text(&mapping_run(&root))).unwrap();
    // The policy draws its weights from the backend's generator, which other tests seed.
    let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    let model = task.init::<Flex>(&device);
    let worlds = task.batch(4, 0, 2).unwrap();
    let (_, state) = task.rollout(
        &model,
        &worlds,
        0..3,
        None,
        Choice::Sample,
        true,
        false,
        &device,
    );
    let tensors = state.clone().into_tensors();
    let back: ExploreState<_> = model.state_from_tensors(tensors.clone()).unwrap();
    assert_eq!(back.actions, state.actions);
    assert_eq!(back.actions[0].len(), 3);
    let mut bad = tensors;
    let last = bad.pop().unwrap();
    bad.push(last.clone().add_scalar(7.0));
    let e = format!(
        "{:#}",
        RestoreState::<_, ExploreState<_>>::state_from_tensors(&model, bad).unwrap_err()
    );
    assert!(e.contains("saved paths"), "{e}");
    fs::remove_dir_all(&root).ok();
}

/// Evaluation reports the policy (sampled and greedy), a random walk and the spiral, whose
/// full path visits every free cell; the random walk never hits a wall.
#[test]
fn evaluation_compares_the_motions() {
    let root = temp("eval");
    let task = parse(&explore_text(&mapping_run(&root))).unwrap();
    let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    let model = task.init::<Flex>(&device);
    let request = EvalRequest {
        sequences: 3,
        time_step: 0,
        show_progress: false,
    };
    let report = task.evaluate(&model, &request, &device).unwrap();
    let names: Vec<_> = report.motions.iter().map(|m| m.motion.as_str()).collect();
    assert_eq!(names, ["policy", "policy-greedy", "random-walk", "spiral"]);
    let spiral = &report.motions[3];
    assert_eq!(spiral.steps, 8, "a 5×5 spiral moves 8 times");
    assert!((spiral.coverage - 1.0).abs() < 1e-12);
    assert_eq!(spiral.reached_90, 3);
    let random = &report.motions[2];
    assert_eq!(random.wall_hits, 0.0);
    for m in &report.motions {
        assert!(m.coverage > 0.0 && m.coverage <= 1.0, "{m:?}");
        assert_eq!(m.coverage_curve.len(), m.steps / report.curve_every + 1);
        let l = &m.localization;
        assert!(l.true_positives + l.false_negatives > 0, "{m:?}");
    }
    // A policy trajectory has eval_steps moves and the world's bookkeeping agrees with the
    // report's recount.
    let episodes = eval::policy_episodes(&task, &model, 0..2, 12, Choice::Sample, &device).unwrap();
    assert!(episodes.iter().all(|e| e.len() == 13));
    let lines = report.lines();
    assert_eq!(lines.len(), 6);
    let out = root.join("viz");
    let files = task.draw(&model, 0, &out, &device).unwrap();
    assert!(files.iter().all(|f| f.is_file()), "{files:?}");
    fs::remove_dir_all(&root).ok();
}

/// With `mask_walls`, blocked moves are never drawn: no wall hits, every move changes the
/// position; without it an untrained policy bumps into walls.
#[test]
fn masked_policies_never_hit_walls() {
    let root = temp("mask");
    let mapping = mapping_run(&root);
    let device = Default::default();
    let mut hits = Vec::new();
    for mask in [false, true] {
        let text = explore_text(&mapping).replace(
            "episode_len = 9",
            &format!("episode_len = 9\nmask_walls = {mask}"),
        );
        let task = parse(&text).unwrap();
        let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
        let model = task.init::<Flex>(&device);
        let worlds = task.batch(5, 0, 8).unwrap();
        let (rollout, _) = task.rollout(
            &model,
            &worlds,
            0..40,
            None,
            Choice::Sample,
            false,
            false,
            &device,
        );
        let entropy: Vec<f32> = rollout.entropy.into_data().to_vec().unwrap();
        assert!(entropy.iter().all(|e| e.is_finite() && *e >= 0.0));
        let worlds = worlds.worlds.lock().unwrap();
        if mask {
            for w in worlds.iter() {
                let p = w.episode.positions();
                assert!(
                    p.windows(2).all(|s| s[0] != s[1]),
                    "a masked agent stood still"
                );
            }
        }
        hits.push(rollout.wall_hits);
    }
    assert!(hits[0] > 0, "{hits:?}");
    assert_eq!(hits[1], 0);
    fs::remove_dir_all(&root).ok();
}

/// `explore_text` with 3 mazes in lockstep and `train` added to the `[train]` table.
fn three_mazes(mapping: &Path, task: &str, train: &str) -> String {
    explore_text(mapping)
        .replace("episode_len = 9\n", &format!("episode_len = 9\n{task}"))
        .replace(
            "batch = 2\nwindow = 4",
            &format!("batch = 3\nwindow = 4\n{train}"),
        )
}

/// Mazes cut into shards of 2 and 1, each stepped on its own copy of its mazes, give the loss,
/// figures and gradients of the whole batch, window by window with the writer's state and the
/// paths carried: with the advantages normalised over the whole batch (not per shard) and
/// without, with a summed and a mean loss.
#[test]
fn shards_give_the_whole_batch_s_gradients() {
    let root = temp("shards");
    let mapping = mapping_run(&root);
    for normalize in [true, false] {
        for loss in ["sum", "mean"] {
            let text = three_mazes(
                &mapping,
                &format!("normalize_advantages = {normalize}\n"),
                "",
            )
            .replace("loss = \"mean\"", &format!("loss = \"{loss}\""));
            let task = parse(&text).unwrap();
            assert_eq!(task.couples_shards(), normalize);
            let (windows, carried) = assert_shards_match(&task, task.config(), &[2, 1], 1);
            assert_eq!((windows, carried), (3, 2));
        }
    }
    fs::remove_dir_all(&root).ok();
}

/// On two threads (shards of 2 and 1 mazes), a run stopped in the middle of an episode, whose
/// checkpoint holds the merged state, resumes to exactly the weights of a straight run.
#[test]
fn two_threads_resume_exactly() {
    let root = temp("threads-resume");
    let mapping = mapping_run(&root);
    let task = parse(&three_mazes(&mapping, "", "threads = 2\n")).unwrap();
    assert_eq!(task.config().train.threads, 2);
    let mid = Progress {
        time_step: 13,
        updates: 4,
        batch_index: 1,
        episode_t: 4,
        elapsed_s: 0.0,
    };
    assert_resume_is_exact(&task, task.config(), &root, 13, 22, mid);
    fs::remove_dir_all(&root).ok();
}

/// Paths saved by earlier versions, `[1, 1, mazes, 1 + steps]`, still load.
#[test]
fn paths_of_the_earlier_layout_load() {
    let root = temp("old-paths");
    let task = parse(&explore_text(&mapping_run(&root))).unwrap();
    // The policy draws its weights from the backend's generator, which other tests seed.
    let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    let model = task.init::<Flex>(&device);
    let worlds = task.batch(4, 0, 2).unwrap();
    let (_, state) = task.rollout(
        &model,
        &worlds,
        0..3,
        None,
        Choice::Sample,
        true,
        false,
        &device,
    );
    let mut tensors = state.clone().into_tensors();
    let paths = tensors.pop().unwrap();
    assert_eq!(paths.dims(), [2, 1, 1, 4]);
    tensors.push(paths.reshape([1, 1, 2, 4]));
    let back: ExploreState<_> = model.state_from_tensors(tensors).unwrap();
    assert_eq!(back.actions, state.actions);
    fs::remove_dir_all(&root).ok();
}

//! The harness from the command line: a second task (repeat copy) through the same commands,
//! and run directories that never lose work (lock, new-or-resumable, damaged checkpoints,
//! bounded input).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{BIN, TINY, fails, json, ok, run, temp_dir};

/// Repeat copy with a small DNC: sequences of at most 2·(2+1)+3 = 9 steps, window 4, so that
/// checkpoints fall inside sequences and carry the DNC's state.
const COPY: &str = r#"
[task]
kind = "copy"
num_bits = 3
min_length = 1
max_length = 2
min_repeats = 1
max_repeats = 2

[model]
kind = "dnc"
controller = 8
memory_slots = 4
word_size = 4
read_heads = 2

[train]
batch = 2
window = 4
time_steps = 40
optimizer = "adam"
lr_start = 3e-3
lr_end = 3e-3
checkpoint_every = 4
log_every = 4

[eval]
sequences = 6
batch = 4
"#;

/// Writes a config file into `dir`; returns its path.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn the_copy_task_trains_resumes_evaluates_draws_and_benchmarks() {
    let dir = temp_dir("copy");
    let c = write(&dir, "copy.toml", COPY);
    let r = dir.join("run");
    let r = r.to_str().unwrap();
    let info = json(&ok(&["info", &c, "--json"]));
    assert_eq!(info["task"], "copy");
    assert_eq!(info["memory_cells"], 16);
    assert_eq!(info["dnc"]["input_size"], 5);
    assert_eq!(info["dnc"]["output_size"], 4);
    ok(&["train", &c, "--run-dir", r, "--steps", "14"]);
    ok(&["resume", r]);
    let metrics = std::fs::read_to_string(Path::new(r).join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| json(l)["time_step"].as_u64().unwrap())
        .collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    assert!(*steps.last().unwrap() >= 40);
    let report = json(&ok(&["eval", r, "--json"]));
    let bit_error = report["bit_error"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&bit_error));
    assert!(report["sequence_error"].as_f64().unwrap() >= bit_error);
    assert_eq!(report["sequences"], 6);
    let out = dir.join("viz");
    ok(&["viz", r, "--out", out.to_str().unwrap()]);
    assert!(out.join("sequence.png").exists());
    let bench = ok(&[
        "bench",
        &c,
        "--json",
        "--steps",
        "3",
        "--batch",
        "2",
        "--repeats",
        "1",
    ]);
    let names: Vec<String> = bench
        .lines()
        .map(|l| json(l)["bench"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["train_window", "inference_step", "inference_step"]);
    let inference = ok(&[
        "bench",
        &c,
        "--json",
        "--batch",
        "2",
        "--repeats",
        "1",
        "--inference-only",
    ]);
    let batches: Vec<(String, u64)> = inference
        .lines()
        .map(|l| {
            let v = json(l);
            (
                v["bench"].as_str().unwrap().into(),
                v["batch"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        batches,
        [("inference_step".into(), 2), ("inference_step".into(), 1)]
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn copy_configs_are_checked() {
    let dir = temp_dir("copy-bad");
    for (text, expected) in [
        (COPY.replace("num_bits = 3", "num_bits = 0"), "num_bits"),
        (
            COPY.replace("min_length = 1", "min_length = 3"),
            "min_length 3 max_length 2",
        ),
        (
            COPY.replace(
                "kind = \"dnc\"\ncontroller = 8\nmemory_slots = 4\nword_size = 4\nread_heads = 2",
                "levels = [1, 2]\nchannels = [2, 2]",
            ),
            "the copy task has a DNC model only",
        ),
        (
            COPY.replace("kind = \"dnc\"", "kind = \"multigrid\""),
            "model.controller: not a field of a multigrid model",
        ),
        (
            COPY.replace("kind = \"copy\"", "kind = \"kopy\""),
            "`kopy` is not a task",
        ),
        (
            COPY.replace("[eval]", "[eval]\nbatchh = 3"),
            "unknown field `batchh`",
        ),
    ] {
        let c = write(&dir, "bad.toml", &text);
        let err = fails(&["info", &c]);
        assert!(err.contains(expected), "expected `{expected}` in:\n{err}");
        assert!(err.contains("bad.toml"), "{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A config that names no task lists every task there is.
#[test]
fn a_config_without_a_task_lists_every_task() {
    let dir = temp_dir("no-task");
    for text in ["", "[task]\nmap_size = 5\n"] {
        let c = write(&dir, "empty.toml", text);
        let err = fails(&["info", &c]);
        for kind in ["mapping", "copy", "sort", "recall", "babi", "explore"] {
            assert!(err.contains(&format!("\"{kind}\"")), "{kind} not in {err}");
        }
        assert!(err.contains("empty.toml"), "{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Two writers on one run directory: the second refuses, naming the first; readers work
/// beside it.
#[test]
fn a_second_writer_is_refused() {
    let dir = temp_dir("lock");
    let c = write(
        &dir,
        "long.toml",
        // Checkpoints far enough apart that the one a reader loads is not pruned under it.
        &TINY
            .replace("time_steps = 26", "time_steps = 1000000")
            .replace("checkpoint_every = 4", "checkpoint_every = 2000"),
    );
    let other = write(
        &dir,
        "other.toml",
        &TINY.replace("channels = [2, 2]", "channels = [2, 3]"),
    );
    let r = dir.join("run");
    let rs = r.to_str().unwrap();
    let mut first = Command::new(BIN)
        .args(["train", &c, "--run-dir", rs])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !r.join("checkpoints/latest").exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = fails(&["train", &other, "--run-dir", rs, "--steps", "8"]);
    assert!(err.contains("in use by another mg-train process"), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    assert!(err.contains("long.toml"), "{err}");
    let err = fails(&["resume", rs]);
    assert!(err.contains("in use by another mg-train process"), "{err}");
    // The lock is on the folder: deleting the note that names the holder lets nobody in.
    std::fs::remove_file(r.join("writer.txt")).unwrap();
    let err = fails(&["train", &other, "--run-dir", rs, "--steps", "8", "--force"]);
    assert!(err.contains("in use by another mg-train process"), "{err}");
    let err = fails(&["resume", rs]);
    assert!(err.contains("in use by another mg-train process"), "{err}");
    // A reader works while training goes on.
    let report = json(&ok(&["eval", rs, "--json", "--sequences", "2"]));
    assert!(report["readers"][0]["f"].is_number());
    first.kill().unwrap();
    first.wait().unwrap();
    // The config is still the first run's, and the run resumes.
    let config = std::fs::read_to_string(r.join("config.toml")).unwrap();
    assert!(config.contains("channels = [2, 2]"), "{config}");
    let latest = std::fs::read_to_string(r.join("checkpoints/latest")).unwrap();
    let step: u64 = latest.trim().trim_start_matches("step-").parse().unwrap();
    ok(&["resume", rs, "--steps", &(step + 4).to_string()]);
    // A writer that ends takes its note with it.
    assert!(!r.join("writer.txt").exists());
    std::fs::remove_dir_all(&dir).ok();
}

/// SIGTERM (as Ctrl-C's SIGINT) stops training with a checkpoint of where it stopped,
/// written atomically, from which the run resumes.
#[test]
fn a_terminated_training_saves_a_checkpoint() {
    let dir = temp_dir("sigterm");
    let c = write(
        &dir,
        "long.toml",
        // No periodic checkpoint: the one there is comes from the signal.
        &TINY
            .replace("time_steps = 26", "time_steps = 1000000")
            .replace("checkpoint_every = 4", "checkpoint_every = 1000000"),
    );
    let r = dir.join("run");
    let rs = r.to_str().unwrap();
    let first = Command::new(BIN)
        .args(["train", &c, "--run-dir", rs])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let metrics = r.join("metrics.jsonl");
    while std::fs::read_to_string(&metrics).map_or(true, |m| m.lines().count() < 2)
        && start.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!r.join("checkpoints").exists());
    let term = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("interrupted at time step"), "{stderr}");
    let latest = std::fs::read_to_string(r.join("checkpoints/latest")).unwrap();
    let step: u64 = latest.trim().trim_start_matches("step-").parse().unwrap();
    assert!(step >= 8, "{latest}");
    assert!(!r.join("writer.txt").exists());
    ok(&["resume", rs, "--steps", &(step + 4).to_string()]);
    std::fs::remove_dir_all(&dir).ok();
}

/// A folder with any earlier run files (here metrics without a checkpoint) is not written
/// over; `--force` moves them aside.
#[test]
fn a_run_directory_is_new_or_resumable() {
    let dir = temp_dir("fresh");
    let c = write(&dir, "tiny.toml", TINY);
    let r = dir.join("run");
    let rs = r.to_str().unwrap();
    std::fs::create_dir_all(&r).unwrap();
    std::fs::write(r.join("metrics.jsonl"), "{}\n").unwrap();
    let err = fails(&["train", &c, "--run-dir", rs, "--steps", "4"]);
    assert!(err.contains("already holds a run (metrics.jsonl)"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(!r.join("config.toml").exists());
    ok(&["train", &c, "--run-dir", rs, "--steps", "4", "--force"]);
    assert_eq!(
        std::fs::read_to_string(r.join("previous-1/metrics.jsonl")).unwrap(),
        "{}\n"
    );
    let metrics = std::fs::read_to_string(r.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 1, "{metrics}");
    // `--steps 0` is refused instead of claiming files it never wrote.
    let err = fails(&[
        "train",
        &c,
        "--run-dir",
        dir.join("zero").to_str().unwrap(),
        "--steps",
        "0",
    ]);
    assert!(err.contains("--steps 0"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Every file a run writes counts as an earlier run, and `--force` moves every one of them
/// aside: the SVG curve, task-metric curves, exported weights; other files stay.
#[test]
fn force_moves_every_run_file_aside() {
    let dir = temp_dir("force-all");
    let c = write(&dir, "tiny.toml", TINY);
    let r = dir.join("run");
    let rs = r.to_str().unwrap();
    std::fs::create_dir_all(&r).unwrap();
    std::fs::write(r.join("learning_curve.svg"), "<svg/>").unwrap();
    let err = fails(&["train", &c, "--run-dir", rs, "--steps", "4"]);
    assert!(
        err.contains("already holds a run (learning_curve.svg)"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(r.join("learning_curve.svg")).unwrap(),
        "<svg/>"
    );
    let earlier = [
        "learning_curve.svg",
        "learning_curve_reward.png",
        "learning_curve_reward.svg",
        "model.safetensors",
        "eval.json",
    ];
    for f in earlier {
        std::fs::write(r.join(f), f).unwrap();
    }
    std::fs::write(r.join("notes.txt"), "mine").unwrap();
    ok(&["train", &c, "--run-dir", rs, "--steps", "4", "--force"]);
    for f in earlier {
        assert_eq!(
            std::fs::read_to_string(r.join("previous-1").join(f)).unwrap(),
            f,
            "{f} was not moved aside"
        );
    }
    assert_eq!(
        std::fs::read_to_string(r.join("notes.txt")).unwrap(),
        "mine"
    );
    assert!(!r.join("eval.json").exists() && !r.join("model.safetensors").exists());
    assert!(r.join("learning_curve.svg").exists(), "the new run's curve");
    std::fs::remove_dir_all(&dir).ok();
}

/// The newest checkpoint of `run`'s `latest`.
fn latest(run: &Path) -> String {
    std::fs::read_to_string(run.join("checkpoints/latest"))
        .unwrap()
        .trim()
        .to_string()
}

/// A newest checkpoint with an empty `progress.json`, or whose folder was deleted, is skipped
/// by every command for the newest intact one, and `--from` picks an older one.
#[test]
fn a_damaged_or_deleted_newest_checkpoint_is_skipped() {
    let dir = temp_dir("newest");
    let c = write(&dir, "tiny.toml", TINY);
    let r = dir.join("run");
    let rs = r.to_str().unwrap();
    ok(&["train", &c, "--run-dir", rs, "--steps", "8"]);
    assert_eq!(latest(&r), "step-8");
    // An empty progress.json in the checkpoint `latest` names.
    std::fs::write(r.join("checkpoints/step-8/progress.json"), "").unwrap();
    let report = json(&ok(&["eval", rs, "--json", "--sequences", "2"]));
    assert_eq!(report["time_step"], 4);
    ok(&["resume", rs, "--from", "step-4", "--steps", "9"]);
    assert_eq!(latest(&r), "step-9");
    std::fs::write(r.join("checkpoints/step-9/progress.json"), "{").unwrap();
    let out = run(&["resume", rs, "--steps", "13"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("skipping a damaged checkpoint"), "{stderr}");
    assert_eq!(latest(&r), "step-13");
    // The folder `latest` names deleted.
    std::fs::remove_dir_all(r.join("checkpoints/step-13")).unwrap();
    let out = run(&["eval", rs, "--json", "--sequences", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("step-13, which does not exist"), "{stderr}");
    // step-9 is still the damaged one, so step-8 it is.
    assert_eq!(json(&String::from_utf8_lossy(&out.stdout))["time_step"], 8);
    let pictures = dir.join("viz");
    ok(&["viz", rs, "--out", pictures.to_str().unwrap()]);
    let weights = dir.join("w.safetensors");
    ok(&["export", rs, "--out", weights.to_str().unwrap()]);
    ok(&["resume", rs, "--from", "step-8", "--steps", "17"]);
    assert_eq!(latest(&r), "step-17");
    std::fs::remove_dir_all(r.join("checkpoints/step-17")).unwrap();
    ok(&["resume", rs, "--steps", "18"]);
    assert_eq!(latest(&r), "step-18");
    std::fs::remove_dir_all(&dir).ok();
}

/// A `train` refused before its first checkpoint leaves no run folder behind, and errors
/// name the user's config.
#[test]
fn a_train_that_fails_early_leaves_nothing_behind() {
    let dir = temp_dir("early");
    let r = dir.join("run");
    let rs = r.to_str().unwrap();
    // A device not compiled in.
    let c = write(&dir, "tiny.toml", TINY);
    let err = fails(&["train", &c, "--run-dir", rs, "--device", "cuda"]);
    assert!(err.contains("not compiled into this binary"), "{err}");
    assert!(!r.exists(), "a refused run must not create its folder");
    // Data that is missing only shows when training starts: the folder goes again.
    let babi = write(
        &dir,
        "babi.toml",
        &format!(
            "[task]\nkind = \"babi\"\ntasks = [1]\ndata_dir = \"{}\"\n\n[model]\n\
             levels = [2, 3]\nchannels = [2, 2]\nhead_channels = [2]\n",
            dir.join("no-babi-here").display()
        ),
    );
    let err = fails(&["train", &babi, "--run-dir", rs, "--steps", "4"]);
    assert!(err.contains("no-babi-here"), "{err}");
    assert!(
        !r.exists(),
        "{:?}",
        std::fs::read_dir(&r).map(|d| d.count())
    );
    // An existing folder stays, emptied of what the failed run wrote.
    std::fs::create_dir_all(&r).unwrap();
    std::fs::write(r.join("notes.txt"), "mine").unwrap();
    fails(&["train", &babi, "--run-dir", rs, "--steps", "4"]);
    let left: Vec<String> = std::fs::read_dir(&r)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["notes.txt"]);
    // The next `train` is not refused.
    ok(&["train", &c, "--run-dir", rs, "--steps", "4"]);
    // A config's time_steps = 0 is named as such, not as a flag.
    let zero = write(
        &dir,
        "zero.toml",
        &TINY.replace("time_steps = 26", "time_steps = 0"),
    );
    let err = fails(&["train", &zero, "--run-dir", dir.join("z").to_str().unwrap()]);
    assert!(err.contains("train.time_steps: 0 in config"), "{err}");
    assert!(!err.contains("--steps"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A truncated or random `model.bin` is named as such, and the intact older checkpoint is
/// used instead.
#[test]
fn damaged_checkpoints_fall_back_to_an_intact_one() {
    let dir = temp_dir("damaged");
    let c = write(&dir, "tiny.toml", TINY);
    let r = dir.join("run");
    let rs = r.to_str().unwrap();
    ok(&["train", &c, "--run-dir", rs, "--steps", "8"]);
    let model = r.join("checkpoints/step-8/model.bin");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    let out = run(&["eval", rs, "--json"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("model.bin is truncated"), "{stderr}");
    assert!(stderr.contains("step-4"), "{stderr}");
    assert_eq!(json(&String::from_utf8_lossy(&out.stdout))["time_step"], 4);
    let err = fails(&["eval", rs, "--from", "step-8"]);
    assert!(err.contains("truncated"), "{err}");
    // Random bytes of the right length: corrupt.
    std::fs::write(&model, vec![7u8; bytes.len()]).unwrap();
    let err = fails(&["resume", rs, "--from", "step-8"]);
    assert!(err.contains("model.bin is corrupt"), "{err}");
    ok(&["resume", rs, "--steps", "13"]);
    // `latest` naming a folder outside the run is refused.
    std::fs::write(r.join("checkpoints/latest"), "../../elsewhere").unwrap();
    let err = fails(&["eval", rs]);
    assert!(err.contains("expected a checkpoint folder"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn out_of_range_requests_are_errors() {
    let dir = temp_dir("range");
    let c = write(&dir, "tiny.toml", TINY);
    let r = dir.join("run");
    let rs = r.to_str().unwrap();
    ok(&["train", &c, "--run-dir", rs, "--steps", "4"]);
    let err = fails(&["viz", rs, "--episode", "18446744073709551615"]);
    assert!(err.contains("the test set has 4 sequences"), "{err}");
    let err = fails(&["bench", &c, "--batch", "1000000000"]);
    assert!(err.contains("--batch 1000000000: expected 1 to"), "{err}");
    let err = fails(&["info", "/dev/zero"]);
    assert!(err.contains("not a regular file"), "{err}");
    // A file where a run directory is expected is named as such.
    for command in ["eval", "viz", "resume", "export"] {
        let err = fails(&[command, &c]);
        assert!(err.contains("is not a directory"), "{command}: {err}");
    }
    // Sizes past their bounds are refused before anything is allocated.
    for (text, expected) in [
        (
            TINY.replace("channels = [2, 2]", "channels = [2, 4000000000]"),
            "model.channels: 4000000000; expected at most 4096",
        ),
        (
            TINY.replace("batch = 2\nwindow", "batch = 1000000000\nwindow"),
            "train.batch: 1000000000; expected at most",
        ),
        (
            COPY.replace("memory_slots = 4", "memory_slots = 1000000000"),
            "model.memory_slots: 1000000000; expected at most",
        ),
    ] {
        let bad = write(&dir, "bad.toml", &text);
        let err = fails(&["info", &bad]);
        assert!(err.contains(expected), "expected `{expected}` in:\n{err}");
    }
    // A config within bounds that does not fit the memory allowed: the estimate is named.
    let big = write(
        &dir,
        "big.toml",
        &TINY.replace("batch = 2\nwindow", "batch = 60000\nwindow"),
    );
    let fresh = dir.join("never");
    let f = fresh.to_str().unwrap();
    let err = fails(&["train", &big, "--run-dir", f, "--max-memory", "0.5"]);
    assert!(err.contains("needs about") && err.contains("GiB"), "{err}");
    assert!(!fresh.exists(), "a refused run must not create its folder");
    let err = fails(&["bench", &c, "--batch", "4000", "--max-memory", "0.01"]);
    assert!(err.contains("needs about"), "{err}");
    for flag in [
        "--max-memory=-1",
        "--max-memory=nan",
        "--max-memory=inf",
        "--max-memory=0",
    ] {
        let err = fails(&["train", &c, "--run-dir", f, flag]);
        assert!(err.contains("expected a positive number of GiB"), "{err}");
        assert!(!fresh.exists(), "a refused run must not create its folder");
        let err = fails(&["resume", rs, flag]);
        assert!(err.contains("expected a positive number of GiB"), "{err}");
    }
    // --sequences has the bound eval.sequences has.
    let err = fails(&["eval", rs, "--sequences", "18446744073709551615"]);
    assert!(err.contains("expected 1 to 67108864"), "{err}");
    // compare writes PNG, so it names no other kind of file.
    let jpg = dir.join("x.jpg");
    let err = fails(&["compare", rs, "--out", jpg.to_str().unwrap()]);
    assert!(err.contains("expected a .png file"), "{err}");
    assert!(!jpg.exists());
    std::fs::remove_dir_all(&dir).ok();
}

/// `eval` on a read-only run prints its report before failing to save it.
#[test]
fn eval_prints_the_report_even_when_it_cannot_save_it() {
    let dir = temp_dir("readonly");
    let c = write(&dir, "tiny.toml", TINY);
    let r = dir.join("run");
    let rs = r.to_str().unwrap();
    ok(&["train", &c, "--run-dir", rs, "--steps", "4"]);
    // A folder where eval.json should go makes the write fail even for root.
    std::fs::create_dir_all(r.join("eval.json")).unwrap();
    let out = run(&["eval", rs]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("precision"), "{stdout}");
    assert!(
        stderr.contains("the report above was not saved"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Without a terminal, training prints a plain progress line per log interval.
#[test]
fn progress_lines_without_a_terminal() {
    let dir = temp_dir("plain");
    let c = write(&dir, "tiny.toml", TINY);
    let r = dir.join("run");
    let out = run(&[
        "train",
        &c,
        "--run-dir",
        r.to_str().unwrap(),
        "--steps",
        "13",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines = stderr.lines().filter(|l| l.contains("loss/pixel")).count();
    // Lines at time steps 4, 8 and 13 (the 9-step episode ends a window early).
    assert_eq!(lines, 3, "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A 5×5 maze mapping model on random walks, and an exploration policy on its run.
const EXPLORE_MAPPING: &str = "[task]\nkind = \"mapping\"\nmap_size = 5\nmask_size = 6\n\
    mask_origin = 2\nlocation = \"normalized\"\nquery_per = \"sample\"\nmotion = \"random-walk\"\n\
    walk_length = 9\n[model]\nlevels = [1, 2]\nchannels = [2, 2]\ntail_channels = 2\n\
    [train]\nbatch = 2\nwindow = 4\n";
const EXPLORE_POLICY: &str = "[task]\nkind = \"explore\"\nmapping_run = \"MAPPING_RUN\"\n\
    MAPPING_CONFIG\nepisode_len = 9\neval_steps = 12\n[model]\nhead_channels = 2\n\
    [train]\nbatch = 2\nwindow = 4\n";

/// `info` counts an exploration config from its mapping config before the mapping run
/// exists, the same counts as from the trained run; without `mapping_config` it names both
/// fields.
#[test]
fn explore_info_counts_from_configs_alone() {
    let dir = temp_dir("explore-info");
    let mapping = dir.join("mapping.toml");
    std::fs::write(&mapping, EXPLORE_MAPPING).unwrap();
    let run = dir.join("mapping-run");
    let explore = |with_config: bool| {
        let path = dir.join(format!("explore-{with_config}.toml"));
        let config_line = if with_config {
            format!("mapping_config = {:?}\n", mapping.to_str().unwrap())
        } else {
            String::new()
        };
        let text = EXPLORE_POLICY
            .replace("MAPPING_RUN", run.to_str().unwrap())
            .replace("MAPPING_CONFIG\n", &config_line);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (with, without) = (explore(true), explore(false));
    let counts = |out: &str| {
        let v: serde_json::Value = serde_json::from_str(out).unwrap();
        (
            v["params"].clone(),
            v["memory_cells"].clone(),
            v["frozen_params"].clone(),
        )
    };
    let before = counts(&ok(&["info", with.to_str().unwrap(), "--json"]));
    assert!(
        before.0.as_u64().unwrap() > 0 && before.2.as_u64().unwrap() > 0,
        "{before:?}"
    );
    let text = ok(&["info", with.to_str().unwrap()]);
    assert!(text.contains("not trained yet"), "{text}");
    let err = fails(&["info", without.to_str().unwrap()]);
    assert!(
        err.contains("task.mapping_run") && err.contains("task.mapping_config"),
        "{err}"
    );

    ok(&[
        "train",
        mapping.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--steps",
        "4",
    ]);
    let after = counts(&ok(&["info", with.to_str().unwrap(), "--json"]));
    assert_eq!(before, after);
    assert_eq!(
        counts(&ok(&["info", without.to_str().unwrap(), "--json"])),
        after
    );
    std::fs::remove_dir_all(&dir).ok();
}

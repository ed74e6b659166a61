//! End-to-end tests of `mg-train train | resume | eval | info | viz` on a tiny world.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{BIN, TINY, fails, ok, temp_dir, write_config};

#[test]
fn train_eval_viz_and_info() {
    let dir = temp_dir("flow");
    let config = write_config(&dir, TINY);
    let run_dir = dir.join("run");
    let (c, r) = (config.to_str().unwrap(), run_dir.to_str().unwrap());
    ok(&["train", c, "--run-dir", r, "--steps", "9"]);
    for file in [
        "config.toml",
        "metrics.jsonl",
        "learning_curve.png",
        "learning_curve.svg",
        "checkpoints/latest",
    ] {
        assert!(run_dir.join(file).exists(), "{file} missing");
    }
    // A second `train` into the same folder refuses to overwrite it.
    assert!(fails(&["train", c, "--run-dir", r]).contains("already holds a run"));

    let report: serde_json::Value = serde_json::from_str(&ok(&["eval", r, "--json"])).unwrap();
    let scores = &report["readers"][0];
    let f = scores["f"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&f));
    let (tp, fp) = (
        scores["true_positives"].as_f64().unwrap(),
        scores["false_positives"].as_f64().unwrap(),
    );
    if tp + fp > 0.0 {
        assert!((scores["precision"].as_f64().unwrap() - tp / (tp + fp)).abs() < 1e-12);
    }
    assert!(run_dir.join("eval.json").exists());

    let out = dir.join("viz");
    ok(&["viz", r, "--out", out.to_str().unwrap()]);
    assert!(out.join("frame-0000.png").exists() && out.join("frame-0008.png").exists());
    assert!(out.join("episode.gif").exists());

    let info: serde_json::Value = serde_json::from_str(&ok(&["info", c, "--json"])).unwrap();
    assert_eq!(info["episode_len"], 9);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = temp_dir("bad");
    let check = |text: String, expected: &str| {
        let config = write_config(&dir, &text);
        let err = fails(&["info", config.to_str().unwrap()]);
        assert!(err.contains(expected), "expected `{expected}` in:\n{err}");
        assert!(
            err.contains("tiny.toml"),
            "the error should name the file:\n{err}"
        );
    };
    check(
        TINY.replace("batch = 2\nwindow", "batch = 0\nwindow"),
        "train.batch: 0",
    );
    check(
        TINY.replace("[train]", "[train]\nbacth = 3"),
        "unknown field `bacth`",
    );
    check(
        TINY.replace("map_size = 5", "map_size = 5\nquery_sizes = [9]"),
        "query_size: 9",
    );
    check(
        TINY.replace("levels = [1, 2]", "levels = [1, 3]"),
        "levels may stay or grow by one",
    );
    check("[world\n".into(), "tiny.toml");
    assert!(fails(&["info", "/nonexistent/x.toml"]).contains("/nonexistent/x.toml"));
    assert!(fails(&["eval", "/nonexistent/run"]).contains("does not exist"));
    assert!(fails(&["resume", dir.to_str().unwrap()]).contains("is not a run directory"));
    assert!(fails(&["train", "x.toml", "--device", "cuda"]).contains("x.toml"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn divergence_stops_training_and_keeps_the_checkpoint() {
    let dir = temp_dir("nan");
    let config = write_config(
        &dir,
        // A sane first update, then a learning rate that blows the weights up.
        &TINY.replace(
            "[train]",
            "[train]\nlr_start = 1e-3\nlr_end = 1e30\nlr_decay_steps = 8",
        ),
    );
    let run_dir = dir.join("run");
    let err = fails(&[
        "train",
        config.to_str().unwrap(),
        "--run-dir",
        run_dir.to_str().unwrap(),
    ]);
    assert!(err.contains("training diverged at time step"), "{err}");
    assert!(err.contains("the last good checkpoint is"), "{err}");
    assert!(err.contains("step-4;"), "{err}");
    assert!(run_dir.join("checkpoints/latest").exists());
    // Every checkpoint holds weights whose loss was checked: with a sane learning rate in the
    // run's config, training continues from the one named.
    let saved = std::fs::read_to_string(run_dir.join("config.toml")).unwrap();
    let mut table: toml::Table = saved.parse().unwrap();
    let train = table["train"].as_table_mut().unwrap();
    train.insert("lr_start".into(), 1e-3.into());
    train.insert("lr_end".into(), 1e-4.into());
    std::fs::write(run_dir.join("config.toml"), table.to_string()).unwrap();
    let r = run_dir.to_str().unwrap();
    ok(&["resume", r, "--steps", "30"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_killed_run_resumes_from_its_last_checkpoint() {
    let dir = temp_dir("kill");
    let config = write_config(
        &dir,
        &TINY.replace("time_steps = 26", "time_steps = 100000"),
    );
    let run_dir = dir.join("run");
    let mut child = Command::new(BIN)
        .args([
            "train",
            config.to_str().unwrap(),
            "--run-dir",
            run_dir.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let latest = run_dir.join("checkpoints/latest");
    let start = Instant::now();
    while !latest.exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let name = std::fs::read_to_string(&latest).unwrap();
    let step: u64 = name.trim().trim_start_matches("step-").parse().unwrap();
    let target = (step + 10).to_string();
    let stderr = String::from_utf8(
        Command::new(BIN)
            .args(["resume", run_dir.to_str().unwrap(), "--steps", &target])
            .output()
            .unwrap()
            .stderr,
    )
    .unwrap();
    assert!(stderr.contains(&format!("(time step {step})")), "{stderr}");
    let name = std::fs::read_to_string(&latest).unwrap();
    let resumed: u64 = name.trim().trim_start_matches("step-").parse().unwrap();
    assert!(
        resumed >= step + 10,
        "resumed to {resumed}, expected at least {}",
        step + 10
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `TINY`'s world with a small DNC: 3×3 observation and query in (72 values), the 6×6 map
/// out.
fn tiny_dnc() -> String {
    TINY.replace(
        "levels = [1, 2]\nchannels = [2, 2]\ntail_channels = 2",
        "kind = \"dnc\"\ncontroller = 8\nmemory_slots = 6\nword_size = 4\nread_heads = 2",
    )
}

#[test]
fn a_dnc_trains_resumes_evaluates_and_draws_its_memory() {
    let dir = temp_dir("dnc");
    let config = write_config(&dir, &tiny_dnc());
    let run_dir = dir.join("run");
    let (c, r) = (config.to_str().unwrap(), run_dir.to_str().unwrap());
    let info: serde_json::Value = serde_json::from_str(&ok(&["info", c, "--json"])).unwrap();
    assert_eq!(info["kind"], "dnc");
    assert_eq!(info["memory_cells"], 24);
    assert_eq!(info["dnc"]["input_size"], 72);
    assert_eq!(info["dnc"]["output_size"], 36);
    // Stops mid-episode (window 4 of a 9-step episode), so the carried DNC state is saved.
    ok(&["train", c, "--run-dir", r, "--steps", "13"]);
    ok(&["resume", r, "--steps", "22"]);
    let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    assert!(metrics.lines().count() >= 4, "{metrics}");
    let report: serde_json::Value = serde_json::from_str(&ok(&["eval", r, "--json"])).unwrap();
    assert_eq!(report["time_step"], 22);
    let out = dir.join("viz");
    ok(&["viz", r, "--out", out.to_str().unwrap()]);
    assert!(out.join("episode.gif").exists());
    assert!(out.join("dnc-memory.png").exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_dnc_configs_give_clear_errors() {
    let dir = temp_dir("bad-dnc");
    let check = |text: String, expected: &str| {
        let config = write_config(&dir, &text);
        let err = fails(&["info", config.to_str().unwrap()]);
        assert!(err.contains(expected), "expected `{expected}` in:\n{err}");
        assert!(
            err.contains("tiny.toml"),
            "the error should name the file:\n{err}"
        );
    };
    let dnc = tiny_dnc();
    check(
        dnc.replace("read_heads = 2", "read_heads = 0"),
        "read_heads",
    );
    check(dnc.replace("word_size = 4", "word_size = 0"), "word_size");
    check(
        dnc.replace("memory_slots = 6", "memory_slots = 0"),
        "memory_slots",
    );
    check(
        dnc.replace("controller = 8\n", ""),
        "model.controller: missing",
    );
    check(
        dnc.replace("read_heads = 2", "read_heads = 2\nlevels = [1]"),
        "model.levels: not a field of a dnc model",
    );
    check(
        dnc.replace("read_heads = 2", "read_heads = 2\nclip_value = -1"),
        "model.clip_value: -1",
    );
    check(
        TINY.replace("tail_channels = 2", "tail_channels = 2\nmemory_slots = 4"),
        "model.memory_slots: not a field of a multigrid model",
    );
    check(
        TINY.replace("[model]", "[model]\nkind = \"transformer\""),
        "unknown variant `transformer`",
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn finest_only_baselines_train_and_compare() {
    let dir = temp_dir("baselines");
    // ConvLSTM-thick in miniature: two layers on the 6×6 grid only.
    let thick = TINY.replace("levels = [1, 2]", "levels = [2, 2]\nfinest_only = true");
    let config = write_config(&dir, &thick);
    let run_dir = dir.join("thick");
    let (c, r) = (config.to_str().unwrap(), run_dir.to_str().unwrap());
    ok(&["train", c, "--run-dir", r, "--steps", "8"]);
    let dnc_config = dir.join("dnc.toml");
    std::fs::write(&dnc_config, tiny_dnc()).unwrap();
    let dnc_run = dir.join("dnc");
    let d = dnc_run.to_str().unwrap();
    ok(&[
        "train",
        dnc_config.to_str().unwrap(),
        "--run-dir",
        d,
        "--minutes",
        "0.001",
    ]);
    // A wall-time limit stops after the first window, with a checkpoint.
    let progress = std::fs::read_to_string(dnc_run.join("checkpoints/latest")).unwrap();
    assert!(!progress.trim().is_empty());
    let png = dir.join("compare.png");
    ok(&["compare", r, d, "--out", png.to_str().unwrap()]);
    assert!(png.exists() && png.with_extension("svg").exists());
    let p = png.to_str().unwrap();
    ok(&["compare", r, d, "--out", p, "--smooth", "0.9"]);
    assert!(fails(&["compare", r, d, "--out", p, "--smooth", "1"]).contains("--smooth 1"));
    ok(&[
        "compare", r, d, "--out", p, "--x", "steps", "--x-max", "shortest",
    ]);
    assert!(fails(&["compare", r, d, "--out", p, "--x-max=-1"]).contains("--x-max -1"));
    assert!(fails(&["compare", r, d, "--out", p, "--x-max", "1e-9"]).contains("no point"));
    assert!(fails(&["compare", dir.to_str().unwrap()]).contains("not a run directory"));
    let fresh = dir.join("never");
    let f = fresh.to_str().unwrap();
    assert!(fails(&["train", c, "--run-dir", f, "--minutes", "0"]).contains("--minutes 0"));
    assert!(!fresh.exists(), "a refused run must not create its folder");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bench_times_every_kind_and_the_scaling_family() {
    let dir = temp_dir("bench");
    let config = write_config(&dir, &tiny_dnc());
    let c = config.to_str().unwrap();
    let bench = [
        "bench",
        c,
        "--json",
        "--steps",
        "2",
        "--batch",
        "2",
        "--repeats",
        "1",
    ];
    let lines = ok(&bench);
    let benches: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // A DNC has one training path, then two inference batch sizes.
    assert_eq!(benches.len(), 3, "{lines}");
    assert_eq!(benches[0]["bench"], "train_window");
    assert_eq!(benches[0]["memory"], 24);
    // Every record names the machine; the project's kernels ran on the default CPU backend.
    for b in &benches {
        assert!(b["cpu"].as_str().is_some_and(|c| !c.is_empty()), "{b}");
        assert!(b["isa"].is_string() && b["kernels"].is_string(), "{b}");
    }
    // `--set` changes the config for the benchmark (and for `info`); a bad one names itself.
    let set = ["--set", "model.memory_slots=10"];
    let line = ok(&[&bench[..], &set].concat());
    let first: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(first["memory"], 40, "{line}");
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["info", c, "--json", "--set", "model.word_size=5"])).unwrap();
    assert_eq!(info["memory_cells"], 30);
    let err = fails(&[&bench[..], &["--set", "model.memory_slots"]].concat());
    assert!(err.contains("--set model.memory_slots"), "{err}");

    let out = dir.join("scaling");
    let o = out.to_str().unwrap();
    let args = [
        "bench",
        "--scaling",
        "--max-level",
        "3",
        "--max-slots",
        "128",
    ];
    ok(&[
        &args[..],
        &["--repeats", "1", "--steps", "2", "--batch", "1", "--out", o],
    ]
    .concat());
    let jsonl = std::fs::read_to_string(out.join("scaling.jsonl")).unwrap();
    let models: Vec<String> = jsonl
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["model"].to_string())
        .collect();
    assert_eq!(models, ["\"multigrid-L3\"", "\"dnc-N128\""]);
    assert!(out.join("scaling.png").exists());
    assert!(fails(&["bench", "--scaling", "--max-level", "9"]).contains("--max-level 9"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_checkpoint_that_does_not_fit_the_config_is_an_error() {
    let dir = temp_dir("misfit");
    let config = write_config(&dir, TINY);
    let run_dir = dir.join("run");
    let (c, r) = (config.to_str().unwrap(), run_dir.to_str().unwrap());
    ok(&["train", c, "--run-dir", r, "--steps", "4"]);
    // Another model kind, then other widths, in the run's config.
    for other in [
        tiny_dnc(),
        TINY.replace("channels = [2, 2]", "channels = [2, 3]"),
    ] {
        std::fs::write(run_dir.join("config.toml"), other).unwrap();
        for command in ["eval", "resume"] {
            let err = fails(&[command, r, "--steps", "8"][..if command == "eval" { 2 } else { 4 }]);
            assert!(
                err.contains("model.bin does not fit the model"),
                "{command}: {err}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `export --names torch` writes the PyTorch model's parameter names for a model in the
/// reference layout, and refuses any other model with the reason.
#[test]
fn export_names_tensors_as_the_pytorch_model_does() {
    let dir = temp_dir("torch-names");
    let reference_layout = TINY
        .replace(
            "mask_size = 6\nmask_origin = 2",
            "mask_size = 48\nmask_origin = 24",
        )
        .replace("levels = [1, 2]", "levels = [2, 2, 3, 3, 4, 4, 5]")
        .replace("channels = [2, 2]", "channels = [1, 1, 2, 2, 4, 4, 4]")
        .replace("tail_channels = 2", "tail_channels = 1")
        .replace("batch = 2\nwindow = 4", "batch = 1\nwindow = 2");
    let config = write_config(&dir, &reference_layout);
    let run = dir.join("run");
    let r = run.to_str().unwrap();
    ok(&[
        "train",
        config.to_str().unwrap(),
        "--run-dir",
        r,
        "--steps",
        "2",
    ]);
    let file = dir.join("torch.safetensors");
    let f = file.to_str().unwrap();
    let list = ok(&["export", r, "--names", "torch", "--out", f, "--list"]);
    for name in [
        "writer.layers.0.0.conv.weight\t[4, 5, 3, 3]",
        "writer.layers.6.4.conv.bias\t[16]",
        "reader.fwd.6.convs.4.weight",
        "reader.rev.0.convs.3.weight",
        "reader.final.convs.0.weight\t[1, 2, 3, 3]",
    ] {
        assert!(list.contains(name), "{name} missing from\n{list}");
    }
    assert!(!list.contains("stack"), "{list}");
    let bytes = std::fs::read(&file).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + header_len]).unwrap();
    assert!(header.contains("\"reader.rev.5.convs.1.bias\""), "{header}");
    assert!(header.contains("torch_mgmem_variant"), "{header}");

    let small = write_config(&dir, TINY);
    let small_run = dir.join("small");
    let s = small_run.to_str().unwrap();
    ok(&[
        "train",
        small.to_str().unwrap(),
        "--run-dir",
        s,
        "--steps",
        "4",
    ]);
    let err = fails(&["export", s, "--names", "torch", "--out", f]);
    assert!(err.contains("has 2 writer layers"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `bench` splits its training windows and its batched inference step as the config's
/// `[train] threads` says (at most the batch), `--threads` overrides it, the records say how
/// many threads timed each call, and the split inference step has the loss of the whole batch.
#[test]
fn bench_follows_the_configs_threads() {
    let dir = temp_dir("bench-threads");
    let config = write_config(
        &dir,
        &TINY.replace("batch = 2\nwindow", "batch = 2\nthreads = 2\nwindow"),
    );
    let c = config.to_str().unwrap();
    let base = [
        "bench",
        c,
        "--json",
        "--steps",
        "2",
        "--repeats",
        "1",
        "--no-step-path",
    ];
    // (bench, batch, threads, loss) of every record.
    let records = |extra: &[&str]| -> Vec<(String, u64, Option<u64>, f64)> {
        ok(&[&base[..], extra].concat())
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|j| {
                let bench = j["bench"].as_str().unwrap().to_string();
                let batch = j["batch"].as_u64().unwrap();
                (
                    bench,
                    batch,
                    j["threads"].as_u64(),
                    j["loss"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let threads = |records: &[(String, u64, Option<u64>, f64)]| -> Vec<Option<u64>> {
        records.iter().map(|r| r.2).collect()
    };
    let split = records(&["--batch", "2"]);
    let names: Vec<&str> = split.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "train_window_window_path",
            "inference_step",
            "inference_step"
        ]
    );
    assert_eq!(
        threads(&split),
        [Some(2), Some(2), None],
        "batch 1 is not split"
    );
    assert_eq!(
        threads(&records(&["--batch", "1"])),
        [None, None, None],
        "at most the batch; one is not printed"
    );
    let whole = records(&["--batch", "2", "--threads", "1"]);
    assert_eq!(threads(&whole), [None, None, None]);
    let (a, b) = (split[1].3, whole[1].3);
    assert!(
        (a - b).abs() <= 1e-5 * b.abs(),
        "inference loss on two threads {a} vs one {b}"
    );
    assert!(
        fails(&[&base[..], &["--batch", "2", "--threads", "3"]].concat()).contains("--threads 3")
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `ask` needs no data files (the vocabulary is built in), answers every question of a story
/// in order, and refuses a question without a story.
#[test]
fn ask_answers_each_question_without_the_data_files() {
    let dir = temp_dir("ask");
    let data = dir.join("tasks_1-20_v1-2");
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../mg-data/tests/fixtures/babi/tasks_1-20_v1-2");
    let copy = std::process::Command::new("cp")
        .args(["-r", fixtures.to_str().unwrap(), data.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copy.success());
    let config = dir.join("babi.toml");
    std::fs::write(
        &config,
        format!(
            "[task]\nkind = \"babi\"\nvariant = \"en\"\ntasks = [1]\ndata_dir = \"{}\"\n\n\
             [model]\nlevels = [2, 3]\nchannels = [2, 2]\nhead_channels = [2]\n\n\
             [train]\nbatch = 2\nwindow = 8\n",
            data.display()
        ),
    )
    .unwrap();
    let r = dir.join("run");
    let rs = r.to_str().unwrap();
    ok(&[
        "train",
        config.to_str().unwrap(),
        "--run-dir",
        rs,
        "--steps",
        "8",
    ]);
    std::fs::remove_dir_all(&data).unwrap();
    let ask = |story: &str| {
        let mut child = std::process::Command::new(BIN)
            .args(["ask", rs])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(story.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = ask(
        "Mary went to the kitchen.\nWhere is Mary?\nJohn went to the garden.\nWhere is John?\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let out = ask("Where is Mary?\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("a question with no story before it"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `--seed` and `--set` train exactly what a config with those values trains, and the run's
/// config.toml records them; malformed or unknown overrides are refused before training.
#[test]
fn seed_and_set_override_the_config() {
    let dir = temp_dir("overrides");
    let edited = TINY.replace(
        "batch = 2\nwindow = 4",
        "batch = 2\nwindow = 4\nseed = 7\nlr_start = 5e-4",
    );
    assert_ne!(edited, TINY);
    let explicit = dir.join("explicit.toml");
    std::fs::write(&explicit, &edited).unwrap();
    let config = write_config(&dir, TINY);
    let (a, b) = (dir.join("a"), dir.join("b"));
    ok(&[
        "train",
        explicit.to_str().unwrap(),
        "--run-dir",
        a.to_str().unwrap(),
        "--steps",
        "8",
    ]);
    ok(&[
        "train",
        config.to_str().unwrap(),
        "--run-dir",
        b.to_str().unwrap(),
        "--steps",
        "8",
        "--seed",
        "7",
        "--set",
        "train.lr_start=5e-4",
    ]);
    let losses = |run: &std::path::Path| -> Vec<f64> {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                    .as_f64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(losses(&a), losses(&b));
    assert!(!losses(&a).is_empty());
    let recorded: toml::Table =
        toml::from_str(&std::fs::read_to_string(b.join("config.toml")).unwrap()).unwrap();
    assert_eq!(recorded["train"]["seed"].as_integer(), Some(7));
    assert_eq!(recorded["train"]["lr_start"].as_float(), Some(5e-4));
    // A different seed trains differently.
    let c = dir.join("c");
    ok(&[
        "train",
        config.to_str().unwrap(),
        "--run-dir",
        c.to_str().unwrap(),
        "--steps",
        "8",
        "--seed",
        "8",
    ]);
    assert_ne!(losses(&a), losses(&c));

    let c = config.to_str().unwrap();
    for (set, expected) in [
        ("train.seed", "expected KEY=VALUE"),
        ("train.no_such_field=1", "no_such_field"),
        ("train.batch=\"two\"", "batch"),
    ] {
        let r = dir.join("refused");
        let err = fails(&["train", c, "--run-dir", r.to_str().unwrap(), "--set", set]);
        assert!(
            err.contains(expected) && err.contains("tiny.toml"),
            "--set {set}:\n{err}"
        );
        assert!(!r.exists(), "--set {set} left a run folder");
    }
    std::fs::remove_dir_all(&dir).ok();
}

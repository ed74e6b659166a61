//! Sort and recall through the CLI: train, eval, viz and table on tiny models, MNIST from the
//! fixture data root, and bad settings refused with the field named.

mod common;

use std::path::{Path, PathBuf};

use common::{fails, json, ok, temp_dir};

fn fixture_mnist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../mg-data/tests/fixtures/mnist")
}

const TRAIN: &str = r#"
[train]
batch = 4
window = 12
time_steps = 48
seed = 5
optimizer = "adam"
lr_start = 3e-3
lr_end = 3e-3
clip_norm = 100.0
loss = "mean"
checkpoint_every = 24
log_every = 12

[eval]
sequences = 6
batch = 3
"#;

fn config(dir: &Path, name: &str, task: &str, model: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    // A long sequence needs a window that holds it.
    let train = if task.contains("len = 250") {
        TRAIN.replace("window = 12", "window = 251")
    } else {
        TRAIN.to_string()
    };
    let text = format!("[task]\n{task}\n[model]\n{model}\n{train}");
    std::fs::write(&path, text).unwrap();
    path
}

const MG: &str = "levels = [1, 2]\nchannels = [3, 3]\ntail_channels = 3\n";
const DNC: &str =
    "kind = \"dnc\"\ncontroller = 8\nmemory_slots = 6\nword_size = 4\nread_heads = 1\n";

/// Trains, evaluates and draws one config; returns the eval report.
fn train_eval_viz(dir: &Path, config: &Path) -> serde_json::Value {
    let run = dir.join(config.file_stem().unwrap());
    let run_s = run.to_str().unwrap();
    ok(&["train", config.to_str().unwrap(), "--run-dir", run_s]);
    assert!(run.join("metrics.jsonl").is_file());
    let report = json(&ok(&["eval", run_s, "--json"]));
    assert_eq!(report["sequences"], 6);
    let error = report["error"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&error), "{report}");
    let seq = report["sequence_error"].as_f64().unwrap();
    assert!(seq >= error.min(1.0) * 0.0 && seq <= 1.0);
    let out = dir.join(format!(
        "{}-viz",
        config.file_stem().unwrap().to_string_lossy()
    ));
    ok(&[
        "viz",
        run_s,
        "--out",
        out.to_str().unwrap(),
        "--sequence",
        "4",
    ]);
    let pngs: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert_eq!(pngs.len(), 1, "one picture in {}", out.display());
    report
}

#[test]
fn vector_sort_and_recall_train_with_both_models() {
    let dir = temp_dir("algo-vectors");
    let sort = "kind = \"sort\"\nlen = 4\ndim = 5\n";
    let recall = "kind = \"recall\"\nlen = 5\ndim = 9\n";
    for (name, task, model) in [
        ("sort-mg", sort, MG),
        ("sort-dnc", sort, DNC),
        ("recall-mg", recall, MG),
        ("recall-dnc", recall, DNC),
    ] {
        let report = train_eval_viz(&dir, &config(&dir, name, task, model));
        assert!(report["bit_error"].is_number(), "{name}: {report}");
        assert_eq!(report["chance_error"], 0.5);
    }
    // A benchmark times whole sequences and says so: recall of 5 items is 6 steps.
    let recall_config = dir.join("recall-mg.toml");
    let lines = ok(&[
        "bench",
        recall_config.to_str().unwrap(),
        "--repeats",
        "1",
        "--batch",
        "2",
        "--json",
    ]);
    for line in lines.lines() {
        assert_eq!(json(line)["steps"], 6, "{line}");
    }
    // Two seeds of one config aggregate into mean ± σ, also where one config leaves out a
    // default the other spells out (`[model] kind`, written by newer versions).
    let (first, second) = (dir.join("sort-mg"), dir.join("sort-mg-seed2"));
    std::fs::create_dir_all(&second).unwrap();
    std::fs::copy(first.join("eval.json"), second.join("eval.json")).unwrap();
    let text = std::fs::read_to_string(first.join("config.toml")).unwrap();
    assert!(text.contains("kind = \"multigrid\"\n"), "{text}");
    assert!(text.contains("\nseed = 5\n"), "{text}");
    let text =
        text.replacen("kind = \"multigrid\"\n", "", 1)
            .replacen("\nseed = 5\n", "\nseed = 6\n", 1);
    std::fs::write(second.join("config.toml"), text).unwrap();
    let table = dir.join("table.json");
    let out = ok(&[
        "table",
        first.to_str().unwrap(),
        dir.join("sort-dnc").to_str().unwrap(),
        dir.join("recall-mg").to_str().unwrap(),
        second.to_str().unwrap(),
        "--out",
        table.to_str().unwrap(),
    ]);
    assert!(out.contains("sort-mg (2 runs)"), "{out}");
    let rows = json(&std::fs::read_to_string(&table).unwrap());
    assert_eq!(rows.as_array().unwrap().len(), 3, "{rows}");
    // A run whose config no longer reads is named, with the field.
    let text = std::fs::read_to_string(second.join("config.toml")).unwrap();
    let bad = text.replacen("\nseed = 6\n", "\nseed = \"six\"\n", 1);
    std::fs::write(second.join("config.toml"), bad).unwrap();
    let err = fails(&["table", second.to_str().unwrap()]);
    assert!(
        err.contains("sort-mg-seed2/config.toml") && err.contains("seed"),
        "{err}"
    );
}

#[test]
fn mnist_recall_and_sort_train_from_the_fixture() {
    let dir = temp_dir("algo-mnist");
    let mnist = fixture_mnist();
    let mnist = mnist.to_str().unwrap();
    let recall = format!(
        "kind = \"recall\"\nitems = \"mnist\"\nlen = 4\nscales = [3, 6]\npixels = \"unit\"\nmnist_dir = \"{mnist}\"\n"
    );
    let sort = format!("kind = \"sort\"\nitems = \"mnist\"\nlen = 3\nmnist_dir = \"{mnist}\"\n");
    let mg = "levels = [2, 2]\nchannels = [2, 2]\ntail_channels = 2\nnorm = \"batch-pooled\"\n";
    let sort_mg = "levels = [3, 3]\nchannels = [2, 2]\ntail_channels = 2\ntail_same = 1\n";
    // The paper's five-scale pyramid, 3×3 to 48×48 (appendix B.2.1).
    let sort5 = format!(
        "kind = \"sort\"\nitems = \"mnist\"\nlen = 2\nscales = [3, 6, 12, 24, 48]\nmnist_dir = \"{mnist}\"\n"
    );
    let five = "levels = [5]\nchannels = [2]\ntail_channels = 2\n";
    for (name, task, model) in [
        ("mnist-recall-mg", recall.as_str(), mg),
        ("mnist-recall-dnc", recall.as_str(), DNC),
        ("mnist-sort-mg", sort.as_str(), sort_mg),
        ("mnist-sort-five-scales", sort5.as_str(), five),
    ] {
        let report = train_eval_viz(&dir, &config(&dir, name, task, model));
        assert!(report["class_error"].is_number(), "{name}: {report}");
        assert_eq!(report["chance_error"], 0.9);
    }
}

#[test]
fn impossible_settings_name_the_field() {
    let dir = temp_dir("algo-bad");
    let mnist = fixture_mnist();
    let cases: [(&str, String, &str, &str); 8] = [
        ("len0", "kind = \"sort\"\nlen = 0\n".into(), MG, "task.len"),
        (
            "dim10",
            "kind = \"recall\"\nlen = 4\ndim = 10\n".into(),
            MG,
            "task.dim",
        ),
        (
            "recall1",
            "kind = \"recall\"\nlen = 1\n".into(),
            MG,
            "task.len",
        ),
        (
            "window",
            "kind = \"sort\"\nlen = 7\n".into(),
            MG,
            "train.window",
        ),
        (
            "scales",
            "kind = \"recall\"\nitems = \"mnist\"\nlen = 4\nscales = [3, 5]\n".into(),
            MG,
            "task.scales",
        ),
        (
            "dimmnist",
            "kind = \"recall\"\nitems = \"mnist\"\nlen = 4\ndim = 9\n".into(),
            MG,
            "task.dim",
        ),
        (
            "nodata",
            "kind = \"recall\"\nitems = \"mnist\"\nlen = 4\nmnist_dir = \"/nonexistent/mnist\"\n"
                .into(),
            "levels = [3, 3]\nchannels = [2, 2]\ntail_channels = 2\n",
            "/nonexistent/mnist",
        ),
        (
            "toolong",
            format!(
                "kind = \"recall\"\nitems = \"mnist\"\nlen = 250\nmnist_dir = \"{}\"\n",
                mnist.display()
            ),
            DNC,
            "task.len",
        ),
    ];
    for (name, task, model, field) in cases {
        let path = config(&dir, name, &task, model);
        let p = path.to_str().unwrap();
        let run = dir.join(format!("run-{name}"));
        let err = fails(&["train", p, "--run-dir", run.to_str().unwrap()]);
        assert!(err.contains(field), "{name}: expected `{field}` in:\n{err}");
        assert!(
            err.contains(name),
            "{name}: the error names the file:\n{err}"
        );
    }
    // Batch norm's statistics are the whole batch's: shards are refused, naming the file.
    let norm = format!("{MG}norm = \"batch-pooled\"\n");
    let path = config(&dir, "bnthreads", "kind = \"sort\"\nlen = 3\n", &norm);
    let run = dir.join("run-bnthreads");
    let err = fails(&[
        "train",
        path.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
        "--set",
        "train.threads=2",
    ]);
    for needle in ["train.threads: 2", "whole batch, which", "bnthreads.toml"] {
        assert!(err.contains(needle), "expected `{needle}` in:\n{err}");
    }
    assert!(!run.exists(), "a refused config leaves no run folder");
}

/// Export to safetensors and import into a new run: the same test error; a file of another
/// model or a truncated file is refused with a message, never a panic.
#[test]
fn weights_round_trip_through_safetensors() {
    let dir = temp_dir("algo-weights");
    let sort = config(&dir, "sort", "kind = \"sort\"\nlen = 3\ndim = 4\n", MG);
    let recall = config(&dir, "recall", "kind = \"recall\"\nlen = 3\ndim = 4\n", MG);
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    ok(&["train", sort.to_str().unwrap(), "--run-dir", run_s]);
    let file = dir.join("sort.safetensors");
    // --list alone lists and writes nothing.
    let listed = ok(&["export", run_s, "--list"]);
    assert!(!run.join("model.safetensors").exists());
    let names = ok(&["export", run_s, "--out", file.to_str().unwrap(), "--list"]);
    assert_eq!(listed, names);
    assert!(
        names.contains("writer.stack.layers.0.cells.0.weight"),
        "{names}"
    );
    let imported = dir.join("imported");
    let imported_s = imported.to_str().unwrap();
    ok(&[
        "import",
        sort.to_str().unwrap(),
        file.to_str().unwrap(),
        "--run-dir",
        imported_s,
    ]);
    let a = json(&ok(&["eval", run_s, "--json"]));
    let b = json(&ok(&["eval", imported_s, "--json"]));
    assert_eq!(a["error"], b["error"], "{a} vs {b}");
    assert_eq!(b["time_step"], 0);
    // Training goes on from the imported weights.
    ok(&["resume", imported_s, "--steps", "12"]);
    let err = fails(&[
        "import",
        recall.to_str().unwrap(),
        file.to_str().unwrap(),
        "--run-dir",
        dir.join("wrong").to_str().unwrap(),
    ]);
    assert!(err.contains("sort.safetensors"), "{err}");
    // The file's metadata says which task and model wrote it; no advice meant for Rust code.
    assert!(err.contains("holds the weights of a `sort` model"), "{err}");
    assert!(err.contains("levels = [1, 2]"), "{err}");
    assert!(err.contains("a `recall` model"), "{err}");
    assert!(
        !err.contains("skip_enum_variants") && !err.contains("PytorchStore"),
        "{err}"
    );
    assert!(
        !dir.join("wrong").exists(),
        "a refused import must not create its folder"
    );
    // A NaN in a tensor is refused, naming the tensor.
    let mut bytes = std::fs::read(&file).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = json(std::str::from_utf8(&bytes[8..8 + len]).unwrap());
    let (name, entry) = header
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, v)| *k != "__metadata__" && v["dtype"] == "F32")
        .unwrap();
    let at = 8 + len + entry["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let nan = dir.join("nan.safetensors");
    std::fs::write(&nan, &bytes).unwrap();
    let nan_run = dir.join("nan");
    let err = fails(&[
        "import",
        sort.to_str().unwrap(),
        nan.to_str().unwrap(),
        "--run-dir",
        nan_run.to_str().unwrap(),
    ]);
    assert!(err.contains(&format!("tensor `{name}` holds NaN")), "{err}");
    assert!(
        !nan_run.exists(),
        "a refused import must not create its folder"
    );
    // A folder where the file should be is named as such.
    let err = fails(&["import", sort.to_str().unwrap(), dir.to_str().unwrap()]);
    assert!(err.contains("is not a file"), "{err}");
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = fails(&[
        "import",
        sort.to_str().unwrap(),
        cut.to_str().unwrap(),
        "--run-dir",
        dir.join("cut").to_str().unwrap(),
    ]);
    assert!(err.contains("cut.safetensors"), "{err}");
    // Shapes that fit a model of other settings: imported, with a warning naming both models;
    // the same model imports without one.
    let task = "kind = \"sort\"\nlen = 3\ndim = 4\n";
    let dnc = config(&dir, "dnc", task, DNC);
    let clipped = config(&dir, "clipped", task, &format!("{DNC}clip_value = 10.0\n"));
    let dnc_run = dir.join("dnc-run");
    ok(&[
        "train",
        dnc.to_str().unwrap(),
        "--run-dir",
        dnc_run.to_str().unwrap(),
    ]);
    let dnc_file = dir.join("dnc.safetensors");
    ok(&[
        "export",
        dnc_run.to_str().unwrap(),
        "--out",
        dnc_file.to_str().unwrap(),
    ]);
    let import = |config: &Path, name: &str| {
        let out = common::run(&[
            "import",
            config.to_str().unwrap(),
            dnc_file.to_str().unwrap(),
            "--run-dir",
            dir.join(name).to_str().unwrap(),
        ]);
        assert!(out.status.success(), "import into {name} failed");
        String::from_utf8(out.stderr).unwrap()
    };
    let warned = import(&clipped, "into-clipped");
    for needle in [
        "warning:",
        "holds the weights of a `sort` model",
        "clip_value = 10",
        "clipped.toml",
    ] {
        assert!(warned.contains(needle), "expected `{needle}` in:\n{warned}");
    }
    let same = import(&dnc, "into-same");
    assert!(!same.contains("warning"), "{same}");
}

//! `mg-train data`: each dataset validates with `--json` (MNIST and bAbI on the committed fixtures, and on
//! the full data sets when present); the data folder lookup order; bad input fails with a non-zero exit
//! naming the file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mg_data::locate::{self, BABI_DIR, MNIST_DIR};
use serde_json::Value;

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn fixtures() -> PathBuf {
    workspace().join("crates/mg-data/tests/fixtures")
}

/// `mg-train ARGS` run from the workspace root, with `MG_DATA_DIR` unset.
fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mg-train"));
    c.args(args)
        .current_dir(workspace())
        .env_remove(locate::DATA_DIR_ENV);
    c
}

fn output(mut c: Command) -> Output {
    c.output().expect("running mg-train")
}

fn run(args: &[&str]) -> Output {
    output(command(args))
}

fn json_of(c: Command, what: &str) -> Value {
    let out = output(c);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: bad JSON: {e}"))
}

fn json(args: &[&str]) -> Value {
    json_of(command(args), &format!("{args:?}"))
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mg-train-data-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn fails_naming_with(c: Command, what: &str, needles: &[&str]) {
    let out = output(c);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{what}: `{n}` not in {stderr}");
    }
}

fn fails_naming(args: &[&str], needles: &[&str]) {
    fails_naming_with(command(args), &format!("{args:?}"), needles);
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_dataset_summarises_as_json() {
    let root = fixtures();
    let root = root.to_str().unwrap();
    let e = expected();
    let m = json(&["data", "mnist", "--json", "--data-dir", root]);
    assert_eq!(m["splits"]["train"]["count"], 200);
    assert_eq!(m["splits"]["test"]["count"], 100);
    assert_eq!(
        m["splits"]["test"]["class_histogram"],
        e["mnist"]["test"]["class_counts"]
    );
    assert_eq!(
        m["splits"]["train"]["first_labels"],
        e["mnist"]["train"]["first_labels"]
    );
    assert_eq!(
        m["splits"]["train"]["pixel_range"],
        serde_json::json!([0, 255])
    );

    let b = json(&["data", "babi", "--json", "--data-dir", root]);
    let words = |v: &str| e["babi"][v]["vocabulary"].as_array().unwrap().len();
    assert_eq!(b["word_count"], words("en-10k"));
    assert_eq!(b["vocab_size"], words("en-10k") + 3);
    assert_eq!(b["variants"]["en"]["vocab_size"], words("en") + 3);
    let questions = |v: &str, name: &str| &e["babi"][v]["files"][name]["questions"];
    assert_eq!(
        b["variants"]["en"]["tasks"][7]["train"],
        *questions("en", "qa8_lists-sets_train.txt")
    );
    assert_eq!(
        b["variants"]["en-10k"]["tasks"][0]["train"],
        *questions("en-10k", "qa1_single-supporting-fact_train.txt")
    );
    // en-10k qa3 train is missing: en's is used, with a warning.
    assert_eq!(
        b["variants"]["en-10k"]["tasks"][2]["train"],
        *questions("en", "qa3_three-supporting-facts_train.txt")
    );
    let warnings = b["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("qa3_three-supporting-facts_train.txt")
    );
    assert_eq!(b["variants"]["en"]["stories_without_questions"], 0);
    assert_eq!(
        b["variants"]["en"]["tasks"][0]["stories_without_questions"],
        0
    );

    let map = json(&["data", "mapping", "--json", "--samples", "2"]);
    assert_eq!(map["episode_len"], 529);
    assert_eq!(map["shapes"]["target"], serde_json::json!([640, 2304]));
    assert_eq!(map["samples"].as_array().unwrap().len(), 2);
    assert_eq!(
        map["samples"][0]["first_positions"][1],
        serde_json::json!([12, 13])
    );
    let s = json(&["data", "sort", "--json", "--seed", "3"]);
    assert_eq!(s["variants"][1]["len"], 50);
    let r = json(&["data", "recall", "--json"]);
    assert_eq!(
        r["mnist_variant"]["resize_tables"][1]["indices"],
        serde_json::json!([0, 4, 9, 14, 18, 23])
    );
    // Plain text works too.
    assert!(run(&["data", "sort"]).status.success());
    assert!(run(&["data", "babi", "--data-dir", root]).status.success());
}

/// The full data sets, when present (see `mg_data::locate::real_data`).
#[test]
fn real_data_summaries() {
    let Some(mnist) = locate::real_data(workspace(), MNIST_DIR).dir_or_skip("real mnist") else {
        return;
    };
    let m = json(&[
        "data",
        "mnist",
        "--json",
        "--data-dir",
        mnist.to_str().unwrap(),
    ]);
    assert_eq!(m["splits"]["train"]["count"], 60_000);
    assert_eq!(m["splits"]["test"]["class_histogram"][1], 1135);
    let Some(babi) = locate::real_data(workspace(), BABI_DIR).dir_or_skip("real babi") else {
        return;
    };
    let b = json(&[
        "data",
        "babi",
        "--json",
        "--data-dir",
        babi.to_str().unwrap(),
    ]);
    assert_eq!(b["vocab_size"], 159);
    assert_eq!(b["variants"]["en"]["tasks"][7]["train"], 1000);
    assert_eq!(b["variants"]["en"]["stories_without_questions"], 0);
    let qa3 = &b["variants"]["en-10k"]["tasks"][2]["train"];
    let warnings = b["warnings"].as_array().unwrap().len();
    assert!(
        (qa3 == 1000 && warnings == 1) || (qa3 == 10_000 && warnings == 0),
        "{qa3} {warnings}"
    );
}

/// Without `--data-dir`: `MG_DATA_DIR`, then `../shared/data`, then `./data`, from the current folder.
#[test]
fn default_data_folder_lookup_order() {
    let t = temp_dir("lookup");
    let cwd = t.join("checkout");
    copy_tree(&fixtures().join(MNIST_DIR), &cwd.join("data/mnist"));
    let in_cwd = |args: &[&str], env: Option<&Path>| {
        let mut c = command(args);
        c.current_dir(&cwd);
        if let Some(e) = env {
            c.env(locate::DATA_DIR_ENV, e);
        }
        c
    };
    let dir_of = |c: Command| {
        json_of(c, "data mnist")["data_dir"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let args = ["data", "mnist", "--json"];
    // ./data.
    assert_eq!(dir_of(in_cwd(&args, None)), "data/mnist");
    // ../shared/data comes first.
    copy_tree(&fixtures().join(MNIST_DIR), &t.join("shared/data/mnist"));
    assert_eq!(dir_of(in_cwd(&args, None)), "../shared/data/mnist");
    // MG_DATA_DIR comes before both.
    let env_root = fixtures();
    assert_eq!(
        dir_of(in_cwd(&args, Some(&env_root))),
        env_root.join("mnist").display().to_string()
    );
    // --data-dir comes before everything; it may name the root or the dataset folder.
    for dir in ["data", "data/mnist"] {
        let with_dir = ["data", "mnist", "--json", "--data-dir", dir];
        let c = in_cwd(&with_dir, Some(Path::new("/nonexistent")));
        assert_eq!(dir_of(c), "data/mnist");
    }
    // MG_DATA_DIR naming a folder without the data is an error naming it and the way out.
    fails_naming_with(
        in_cwd(&args, Some(Path::new("/nonexistent/root"))),
        "MG_DATA_DIR=/nonexistent/root",
        &[
            "/nonexistent/root/mnist",
            "--data-dir",
            "mg-train data download mnist",
        ],
    );
    std::fs::remove_dir_all(t.join("shared")).unwrap();
    std::fs::remove_dir_all(cwd.join("data")).unwrap();
    fails_naming_with(
        in_cwd(&["data", "babi"], None),
        "no data",
        &[
            "data/babi/tasks_1-20_v1-2",
            "MG_DATA_DIR",
            "mg-train data download babi",
        ],
    );
    let _ = std::fs::remove_dir_all(&t);
}

/// `--samples` is bounded like every other size: huge counts fail at once instead of
/// exhausting memory.
#[test]
fn samples_are_bounded() {
    for dataset in ["mapping", "sort", "recall"] {
        fails_naming(
            &["data", dataset, "--samples", "100000000", "--json"],
            &["--samples 100000000", "expected at most 1000"],
        );
    }
    let summary = json(&["data", "sort", "--samples", "1000", "--json"]);
    assert_eq!(summary["samples"].as_array().unwrap().len(), 1000);
}

/// A word outside bAbI v1.2's vocabulary is named with its file and line, cut and with its
/// control characters escaped, by `data babi` and `train` alike.
#[test]
fn a_word_outside_the_vocabulary_is_named_where_it_is() {
    let d = temp_dir("babi-word");
    let root = d.join("tasks_1-20_v1-2");
    copy_tree(&fixtures().join("babi/tasks_1-20_v1-2"), &root);
    let file = root.join("en/qa2_two-supporting-facts_test.txt");
    let mut text = std::fs::read_to_string(&file).unwrap();
    let line = text.lines().count() + 2;
    let word = format!("zz\u{0}\u{1b}[31m{}", "y".repeat(100_000));
    text.push_str(&format!(
        "1 Mary went to the kitchen.\n2 Mary took the {word}.\n"
    ));
    std::fs::write(&file, text).unwrap();
    let where_ = format!("qa2_two-supporting-facts_test.txt:{line}:");
    let needles = [
        where_.as_str(),
        "zz\\u{0}\\u{1b}[31myyy",
        "(100008 characters)",
        "not in bAbI v1.2's vocabulary",
    ];
    let r = root.to_str().unwrap();
    // `data babi` summarises the files and warns of what `train` refuses.
    let out = run(&["data", "babi", "--json", "--data-dir", r]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for n in needles
        .iter()
        .chain(&["`mg-train train` refuses these files"])
    {
        assert!(stderr.contains(n), "`{n}` not in {stderr}");
    }
    assert!(out.stderr.len() < 2000, "{} bytes", out.stderr.len());
    assert!(!out.stderr.contains(&0u8) && !out.stderr.contains(&0x1b));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = summary["warnings"].to_string();
    assert!(warnings.contains(&where_), "{warnings}");
    let config = d.join("babi.toml");
    std::fs::write(
        &config,
        format!(
            "[task]\nkind = \"babi\"\nvariant = \"en\"\ntasks = [1]\ndata_dir = \"{r}\"\n\n\
             [model]\nlevels = [2, 3]\nchannels = [2, 2]\nhead_channels = [2]\n\n\
             [train]\nbatch = 2\nwindow = 4\n"
        ),
    )
    .unwrap();
    let run_dir = d.join("run");
    fails_naming(
        &[
            "train",
            config.to_str().unwrap(),
            "--run-dir",
            run_dir.to_str().unwrap(),
            "--steps",
            "4",
        ],
        &needles,
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn bad_input_fails_naming_the_file() {
    fails_naming(
        &["data", "mnist", "--data-dir", "/nonexistent/mnist-dir"],
        &["/nonexistent/mnist-dir", "expected"],
    );
    fails_naming(
        &["data", "babi", "--data-dir", "/nonexistent/babi-dir"],
        &["/nonexistent/babi-dir", "expected"],
    );

    let d = temp_dir("mnist");
    std::fs::write(
        d.join("train-labels-idx1-ubyte"),
        [0, 0, 8, 1, 0, 0, 0, 1, 0],
    )
    .unwrap();
    // A truncated gzip stream.
    std::fs::write(
        d.join("train-images-idx3-ubyte.gz"),
        [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 1, 2, 3],
    )
    .unwrap();
    let dir = d.to_str().unwrap();
    fails_naming(
        &["data", "mnist", "--data-dir", dir],
        &["train-images-idx3-ubyte.gz", "gzip"],
    );
    // Wrong magic number, raw file.
    std::fs::remove_file(d.join("train-images-idx3-ubyte.gz")).unwrap();
    let mut bytes = vec![0, 0, 8, 1, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28];
    bytes.extend([0; 784]);
    std::fs::write(d.join("train-images-idx3-ubyte"), &bytes).unwrap();
    fails_naming(
        &["data", "mnist", "--data-dir", dir],
        &["train-images-idx3-ubyte", "magic", "expected 0x00000803"],
    );
    // Wrong dimensions.
    bytes[3] = 3;
    bytes[11] = 27;
    std::fs::write(d.join("train-images-idx3-ubyte"), &bytes).unwrap();
    fails_naming(
        &["data", "mnist", "--data-dir", dir],
        &["train-images-idx3-ubyte", "rows: found 27, expected 28"],
    );
    let _ = std::fs::remove_dir_all(&d);

    let b = temp_dir("babi");
    std::fs::create_dir_all(b.join("en")).unwrap();
    let qa1 = b.join("en/qa1_single-supporting-fact_train.txt");
    let dir = b.to_str().unwrap();
    std::fs::write(&qa1, "1 Mary went home.\n2 Where is Mary?\thome\n").unwrap();
    fails_naming(
        &["data", "babi", "--data-dir", dir],
        &[
            "qa1_single-supporting-fact_train.txt:2",
            "expected 1 (statement) or 3",
        ],
    );
    // A question without its tab-separated answer.
    std::fs::write(&qa1, "1 Mary went home.\n2 John left.\n3 Where is Mary?\n").unwrap();
    fails_naming(
        &["data", "babi", "--data-dir", dir],
        &[
            "qa1_single-supporting-fact_train.txt:3",
            "no tab-separated answer",
        ],
    );
    // An empty task file.
    std::fs::write(&qa1, "").unwrap();
    fails_naming(
        &["data", "babi", "--data-dir", dir],
        &[
            "qa1_single-supporting-fact_train.txt",
            "empty bAbI task file",
        ],
    );
    let _ = std::fs::remove_dir_all(&b);

    let out = run(&["data", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mapping, sort, recall, mnist, babi"));
    let out = run(&["data"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("<DATASET>"));
    let out = run(&["data", "download", "sort"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mnist, babi"));
}

/// A story without a question is accepted, counted per task and per variant.
#[test]
fn stories_without_questions_are_reported() {
    let t = temp_dir("questionless");
    copy_tree(&fixtures().join(BABI_DIR), &t);
    let qa5 = t.join("en/qa5_three-arg-relations_test.txt");
    let mut text = std::fs::read_to_string(&qa5).unwrap();
    text.push_str("1 Mary went home.\n2 John went to the garden.\n");
    std::fs::write(&qa5, text).unwrap();
    let b = json(&["data", "babi", "--json", "--data-dir", t.to_str().unwrap()]);
    let en = &b["variants"]["en"];
    assert_eq!(en["tasks"][4]["stories_without_questions"], 1);
    assert_eq!(en["tasks"][3]["stories_without_questions"], 0);
    assert_eq!(en["stories_without_questions"], 1);
    assert_eq!(b["variants"]["en-10k"]["stories_without_questions"], 0);
    // `home` is no word of bAbI v1.2: a warning names where it is.
    let warnings = b["warnings"].to_string();
    assert!(
        warnings.contains("qa5_three-arg-relations_test.txt:") && warnings.contains("`home`"),
        "{warnings}"
    );
    let _ = std::fs::remove_dir_all(&t);
}

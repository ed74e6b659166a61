//! `mg-train data`: each dataset validates with `--json`; bad input fails with a non-zero exit naming the file.

use std::path::PathBuf;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mg-train"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("running mg-train")
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: bad JSON: {e}"))
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mg-train-data-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fails_naming(args: &[&str], needles: &[&str]) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{args:?}: `{n}` not in {stderr}");
    }
}

#[test]
fn every_dataset_summarises_as_json() {
    let m = json(&["data", "mnist", "--json"]);
    assert_eq!(m["splits"]["train"]["count"], 60_000);
    assert_eq!(m["splits"]["test"]["class_histogram"][1], 1135);
    let b = json(&["data", "babi", "--json"]);
    assert_eq!(b["vocab_size"], 159);
    assert_eq!(b["variants"]["en"]["tasks"][7]["train"], 1000);
    assert_eq!(b["variants"]["en-10k"]["tasks"][2]["train"], 1000);
    assert_eq!(b["warnings"].as_array().unwrap().len(), 1);
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
    std::fs::write(
        b.join("en/qa1_single-supporting-fact_train.txt"),
        "1 Mary went home.\n2 Where is Mary?\thome\n",
    )
    .unwrap();
    fails_naming(
        &["data", "babi", "--data-dir", b.to_str().unwrap()],
        &[
            "qa1_single-supporting-fact_train.txt:2",
            "expected 1 (statement) or 3",
        ],
    );
    let _ = std::fs::remove_dir_all(&b);

    let out = run(&["data", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mapping, sort, recall, mnist, babi"));
}

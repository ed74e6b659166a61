//! Data-parallel training over processes (`--nodes`), on 127.0.0.1: two processes train as one
//! process does with two shards, their checkpoint resumes in one process, a node that dies
//! stops the other with an error naming it, and bad settings are refused.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use common::{BIN, TINY, fails, ok, temp_dir, write_config};

/// The command-line tests' tiny mapping experiment with a batch of 4 (two sequences per node),
/// whose episodes (9 steps) span windows of 4, so that the carried state crosses windows and
/// checkpoints.
fn config() -> String {
    let mut text = TINY.to_string();
    for (from, to) in [
        ("batch = 2\nwindow", "batch = 4\nwindow"),
        ("time_steps = 26", "time_steps = 1000000"),
        ("checkpoint_every = 4", "checkpoint_every = 8"),
    ] {
        assert!(text.contains(from), "{from}");
        text = text.replace(from, to);
    }
    text
}

/// A temporary folder named for `name` holding [`config`]'s file, and that file's path.
fn setup(name: &str) -> (PathBuf, String) {
    let dir = temp_dir(name);
    let config = write_config(&dir, &config());
    (dir, config.to_str().unwrap().to_string())
}

/// A coordinator port whose next two ports (the nodes' data services) are free too.
fn free_ports() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 2_000) as u16 * 16;
    loop {
        let port = base + NEXT.fetch_add(4, Ordering::Relaxed);
        if (port..port + 3).all(|p| TcpListener::bind(("0.0.0.0", p)).is_ok()) {
            return port;
        }
    }
}

fn node(args: &[&str], rank: usize, nodes: usize, port: u16, timeout: &str) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .args([
            "--nodes",
            &nodes.to_string(),
            "--node-rank",
            &rank.to_string(),
        ])
        .args(["--coordinator", &format!("127.0.0.1:{port}")])
        .args(["--node-timeout", timeout])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Runs `args` as ranks 0 and 1 of a two-node run, both of which must succeed; rank 1's
/// errors.
fn two_nodes(args: &[&str]) -> String {
    let port = free_ports();
    let one = node(args, 1, 2, port, "60").spawn().unwrap();
    let zero = node(args, 0, 2, port, "60").output().unwrap();
    let one = one.wait_with_output().unwrap();
    succeeded(&zero, &format!("rank 0 of {args:?}"));
    succeeded(&one, &format!("rank 1 of {args:?}"));
    String::from_utf8_lossy(&one.stderr).into_owned()
}

fn succeeded(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `(time_step, loss)` of every line of a run's metrics.
fn losses(run: &Path) -> Vec<(u64, f64)> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                v["time_step"].as_u64().unwrap(),
                v["loss"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// The same time steps, and losses equal up to float summation order: one process sums its
/// shards' gradients in `f64` weights and burn's accumulator, the nodes in one all-reduce.
fn assert_same_losses(a: &[(u64, f64)], b: &[(u64, f64)]) {
    assert_eq!(a.len(), b.len(), "{a:?}\n{b:?}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.0, y.0);
        let rel = (x.1 - y.1).abs() / y.1.abs().max(1e-12);
        assert!(
            rel < 1e-5,
            "time step {}: loss {} against {}",
            x.0,
            x.1,
            y.1
        );
    }
}

#[test]
fn two_nodes_train_as_one_process_with_two_shards_and_resume_in_one_process() {
    let (dir, config) = setup("nodes-same");
    let config = config.as_str();
    let one = dir.join("one");
    let two = dir.join("two");
    let (one_s, two_s) = (one.to_str().unwrap(), two.to_str().unwrap());
    ok(&[
        "train",
        config,
        "--run-dir",
        one_s,
        "--steps",
        "24",
        "--set",
        "train.threads=2",
    ]);
    let stderr = two_nodes(&[
        "train",
        config,
        "--run-dir",
        two_s,
        "--steps",
        "24",
        "--set",
        "train.threads=1",
    ]);
    assert!(stderr.contains("node 1: trained to time step"), "{stderr}");
    assert_same_losses(&losses(&two), &losses(&one));
    assert!(losses(&two).len() >= 5);

    // The nodes' checkpoint holds the whole batch's carried state (step 24 is inside an
    // episode): one process resumes it and continues as the one-process run does.
    ok(&["resume", one_s, "--steps", "40"]);
    ok(&["resume", two_s, "--steps", "40"]);
    assert_same_losses(&losses(&two), &losses(&one));
    assert!(losses(&two).iter().any(|&(t, _)| t >= 40));

    // And two nodes resume a one-process checkpoint.
    ok(&["resume", one_s, "--steps", "48"]);
    two_nodes(&["resume", two_s, "--steps", "48"]);
    assert_same_losses(&losses(&two), &losses(&one));
    std::fs::remove_dir_all(&dir).ok();
}

/// Two nodes stopped mid-episode and resumed log exactly the losses of two nodes that never
/// stopped (with two nodes the sum of their gradients does not depend on arrival order).
#[test]
fn two_nodes_resume_bit_for_bit() {
    let (dir, config) = setup("nodes-resume");
    let config = config.as_str();
    let straight = dir.join("straight");
    let stopped = dir.join("stopped");
    for (run, steps) in [(&straight, "48"), (&stopped, "24")] {
        two_nodes(&[
            "train",
            config,
            "--run-dir",
            run.to_str().unwrap(),
            "--steps",
            steps,
            "--set",
            "train.threads=1",
        ]);
    }
    two_nodes(&["resume", stopped.to_str().unwrap(), "--steps", "48"]);
    assert_eq!(losses(&stopped), losses(&straight));
    std::fs::remove_dir_all(&dir).ok();
}

/// Exploration normalises its advantages over the whole batch: the nodes sum those figures
/// too, and two nodes train as two threads.
#[test]
fn exploration_on_two_nodes_trains_as_on_two_threads() {
    let dir = temp_dir("nodes-explore");
    let mapping = dir.join("mapping.toml");
    std::fs::write(
        &mapping,
        config()
            .replace("time_steps = 1000000", "time_steps = 8")
            .replace(
                "query_per = \"sample\"",
                "query_per = \"sample\"\nmotion = \"random-walk\"\nwalk_length = 9",
            ),
    )
    .unwrap();
    let mapping_run = dir.join("mapping");
    ok(&[
        "train",
        mapping.to_str().unwrap(),
        "--run-dir",
        mapping_run.to_str().unwrap(),
    ]);
    let explore = dir.join("explore.toml");
    std::fs::write(
        &explore,
        format!(
            "[task]\nkind = \"explore\"\nmapping_run = {:?}\nepisode_len = 9\neval_steps = 12\n\
             [model]\nhead_channels = 2\n\
             [train]\nbatch = 4\nwindow = 4\ncheckpoint_every = 4\nlog_every = 4\n\
             optimizer = \"adam\"\nlr_start = 1e-2\nlr_end = 1e-2\nloss = \"mean\"\n\
             [eval]\nsequences = 3\nbatch = 2\n",
            mapping_run.display().to_string()
        ),
    )
    .unwrap();
    let explore = explore.to_str().unwrap();
    let one = dir.join("one");
    let two = dir.join("two");
    let args = |run: &Path, threads: &str| -> Vec<String> {
        let run = run.to_str().unwrap();
        let threads = format!("train.threads={threads}");
        [
            "train",
            explore,
            "--run-dir",
            run,
            "--steps",
            "18",
            "--set",
            &threads,
        ]
        .map(String::from)
        .to_vec()
    };
    ok(&strs(&args(&one, "2")));
    two_nodes(&strs(&args(&two, "1")));
    assert_same_losses(&losses(&two), &losses(&one));
    std::fs::remove_dir_all(&dir).ok();
}

/// Fails, with the node's errors, if `child` has ended.
fn still_running(child: &mut Child) {
    if let Some(status) = child.try_wait().unwrap() {
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            std::io::Read::read_to_string(&mut pipe, &mut stderr).ok();
        }
        panic!("a node ended early ({status}):\n{stderr}");
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Waits for `child` at most `limit`; its output, or `None` (and the child killed).
fn wait_at_most(mut child: Child, limit: Duration) -> Option<Output> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().ok();
    None
}

#[test]
fn a_node_that_dies_stops_the_other_naming_it_and_the_run_resumes() {
    let dir = temp_dir("nodes-kill");
    let config = write_config(&dir, &config());
    let run = dir.join("run");
    let args = [
        "train",
        config.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
    ];
    for victim in [1usize, 0] {
        let port = free_ports();
        std::fs::remove_dir_all(&run).ok();
        let mut children: Vec<Option<Child>> = (0..2)
            .map(|rank| Some(node(&args, rank, 2, port, "10").spawn().unwrap()))
            .collect();
        // Killed once rank 0 has written two checkpoints.
        let start = Instant::now();
        while std::fs::read_dir(run.join("checkpoints"))
            .map(|d| d.count() < 3)
            .unwrap_or(true)
        {
            assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint");
            for child in children.iter_mut().flatten() {
                still_running(child);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut dead = children[victim].take().unwrap();
        dead.kill().unwrap();
        dead.wait().unwrap();
        let survivor = children[1 - victim].take().unwrap();
        let out = wait_at_most(survivor, Duration::from_secs(30))
            .expect("the surviving node stops within its timeout");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("error: node {}: rank {victim}", 1 - victim)),
            "{stderr}"
        );
        assert!(!stderr.contains("stack backtrace"), "{stderr}");
        // The checkpoint written before stays intact: one process continues from it.
        ok(&["resume", run.to_str().unwrap(), "--steps", "1000"]);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// SIGTERM to rank 1 stops both nodes after the same window; rank 0 writes the checkpoint.
#[test]
fn a_stop_on_one_node_stops_every_node_with_a_checkpoint() {
    let dir = temp_dir("nodes-stop");
    let config = write_config(
        &dir,
        &config().replace("checkpoint_every = 8", "checkpoint_every = 1000000"),
    );
    let run = dir.join("run");
    let args = [
        "train",
        config.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
    ];
    let port = free_ports();
    let mut one = node(&args, 1, 2, port, "30").spawn().unwrap();
    let mut zero = node(&args, 0, 2, port, "30").spawn().unwrap();
    let start = Instant::now();
    while std::fs::read_to_string(run.join("metrics.jsonl")).map_or(true, |m| m.lines().count() < 2)
    {
        assert!(start.elapsed() < Duration::from_secs(120), "no metrics");
        still_running(&mut one);
        still_running(&mut zero);
        std::thread::sleep(Duration::from_millis(20));
    }
    let term = Command::new("kill")
        .args(["-TERM", &one.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let one = wait_at_most(one, Duration::from_secs(60)).expect("rank 1 stops");
    let zero = wait_at_most(zero, Duration::from_secs(60)).expect("rank 0 stops");
    let e1 = String::from_utf8_lossy(&one.stderr);
    assert!(!one.status.success(), "{e1}");
    assert!(e1.contains("node 1: interrupted at time step"), "{e1}");
    succeeded(&zero, "rank 0");
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    let step: u64 = latest.trim().trim_start_matches("step-").parse().unwrap();
    assert!(e1.contains(&format!("time step {step};")), "{e1}\n{latest}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_node_settings_are_refused() {
    let (dir, config) = setup("nodes-bad");
    let config = config.as_str();
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    let base = ["train", config, "--run-dir", run_s];
    let with = |extra: &[&str]| -> String {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        fails(&args)
    };
    let e = with(&[
        "--nodes",
        "2",
        "--node-rank",
        "2",
        "--coordinator",
        "127.0.0.1:7000",
    ]);
    assert!(e.contains("--node-rank 2: expected 0 to 1"), "{e}");
    let e = with(&["--nodes", "0", "--coordinator", "127.0.0.1:7000"]);
    assert!(e.contains("--nodes 0"), "{e}");
    let e = with(&["--nodes", "2"]);
    assert!(e.contains("give --coordinator"), "{e}");
    for timeout in ["0", "-1", "nan", "1e30"] {
        let e = with(&[
            "--nodes",
            "2",
            "--coordinator",
            "127.0.0.1:7000",
            &format!("--node-timeout={timeout}"),
        ]);
        assert!(e.contains("--node-timeout"), "{timeout}: {e}");
    }
    let e = with(&["--nodes", "2", "--coordinator", "localhost"]);
    assert!(e.contains("expected HOST:PORT"), "{e}");
    let e = with(&["--nodes", "5", "--coordinator", "127.0.0.1:7000"]);
    assert!(e.contains("at most the batch (4)"), "{e}");
    let e = with(&["--devices", "0,1"]);
    assert!(e.contains("need --device cuda or wgpu"), "{e}");
    assert!(!run.exists(), "a refused run leaves nothing behind");

    // Batch norm's statistics are the whole batch's: cutting it between nodes is refused as
    // threads are, before anyone listens.
    let norm = dir.join("norm.toml");
    std::fs::write(
        &norm,
        "[task]\nkind = \"recall\"\nlen = 3\ndim = 4\n\
         [model]\nlevels = [1, 2]\nchannels = [2, 2]\ntail_channels = 2\nnorm = \"batch-pooled\"\n\
         [train]\nwindow = 12\nbatch = 4\n",
    )
    .unwrap();
    let e = fails(&[
        "train",
        norm.to_str().unwrap(),
        "--run-dir",
        run_s,
        "--nodes",
        "2",
        "--coordinator",
        "127.0.0.1:7000",
    ]);
    assert!(e.contains("--nodes 2") && e.contains("batch-pooled"), "{e}");
    assert!(!run.exists());

    // Nobody runs rank 0: the coordinator cannot be reached.
    let port = free_ports();
    let out = node(&base, 1, 2, port, "2").output().unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(e.contains("not every node joined within 2 s"), "{e}");

    // Ranks that train different configs both stop, naming the other.
    let port = free_ports();
    let mut args = base.to_vec();
    args.extend_from_slice(&["--set", "train.lr_start=0.5"]);
    let one = node(&args, 1, 2, port, "20").spawn().unwrap();
    let zero = node(&base, 0, 2, port, "20").output().unwrap();
    let one = one.wait_with_output().unwrap();
    for (out, other) in [(zero, 1), (one, 0)] {
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{e}");
        assert!(
            e.contains(&format!("rank {other} trains another config")),
            "{e}"
        );
    }
    assert!(!run.exists(), "no checkpoint was written: nothing is left");
    std::fs::remove_dir_all(&dir).ok();
}

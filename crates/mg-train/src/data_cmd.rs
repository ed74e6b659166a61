//! `mg-train data`: validate a dataset and print a summary (text, or stable JSON with `--json`);
//! `mg-train data download` fetches MNIST or bAbI ([`crate::download`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use mg_data::babi::{self, BabiCorpus, Split, Variant};
use mg_data::locate::{self, BABI_DIR, MNIST_DIR};
use mg_data::mapping::{Episode, MappingConfig, Motion, generate_batch};
use mg_data::recall::RecallConfig;
use mg_data::sort::SortConfig;
use serde_json::{Value, json};

use crate::download::{self, DownloadArgs};

/// Most samples `--samples` shows: each is decoded and printed whole, so the summary's memory
/// and length grow with it.
const MAX_SAMPLES: usize = 1000;

/// The datasets `mg-train data` knows.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetName {
    /// Mapping & localization world (synthetic mazes).
    Mapping,
    /// Priority sort (synthetic vectors).
    Sort,
    /// Associative recall (synthetic vectors).
    Recall,
    /// MNIST IDX files.
    Mnist,
    /// bAbI QA v1.2, en and en-10k.
    Babi,
}

/// Arguments of `mg-train data`: `mg-train data <dataset>` checks a dataset, `mg-train data download
/// <mnist|babi>` fetches one.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct DataArgs {
    /// `download`, or none to check a dataset.
    #[command(subcommand)]
    pub command: Option<DataCommand>,
    /// Which dataset to check.
    #[arg(value_enum, required = true)]
    pub dataset: Option<DatasetName>,
    /// Data directory: the data root holding mnist/ and babi/, or the dataset's own folder (for babi the
    /// one holding en/ and en-10k/). Default: $MG_DATA_DIR if set, else ../shared/data if it exists, else
    /// ./data. Ignored by the synthetic datasets.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Seed of the synthetic samples shown.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of decoded samples shown (synthetic datasets), at most 1000.
    #[arg(long, default_value_t = 3)]
    pub samples: usize,
}

/// The subcommands of `mg-train data`.
#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Download MNIST or bAbI from its public location, verified by checksum (resumable).
    Download(DownloadArgs),
}

/// Runs `mg-train data`.
pub fn run(args: &DataArgs) -> anyhow::Result<()> {
    if let Some(DataCommand::Download(d)) = &args.command {
        return download::run(d);
    }
    let dataset = args
        .dataset
        .context("name a dataset: mapping, sort, recall, mnist or babi")?;
    if args.samples > MAX_SAMPLES {
        anyhow::bail!(
            "--samples {}: expected at most {MAX_SAMPLES} (each is printed in full)",
            args.samples
        );
    }
    let summary = match dataset {
        DatasetName::Mapping => mapping_summary(args)?,
        DatasetName::Sort => sort_summary(args),
        DatasetName::Recall => recall_summary(args),
        DatasetName::Mnist => mnist_summary(&data_dir(args, MNIST_DIR)?)?,
        DatasetName::Babi => babi_summary(&data_dir(args, BABI_DIR)?)?,
    };
    let mut text = String::new();
    if args.json {
        text = serde_json::to_string_pretty(&summary)?;
        text.push('\n');
    } else {
        render_text(&summary, 0, &mut text);
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing the summary to stdout"),
    }
}

/// The folder of a real dataset: `--data-dir` (a data root or the dataset's folder), else the lookup of
/// [`mg_data::locate::data_root`] from the current folder. A missing folder is an error saying how to
/// get the data.
fn data_dir(args: &DataArgs, dataset: &str) -> anyhow::Result<PathBuf> {
    let dir = match &args.data_dir {
        Some(d) => locate::dataset_dir(d, dataset),
        None => locate::data_root(Path::new("")).join(dataset),
    };
    if !dir.is_dir() {
        let name = if dataset == MNIST_DIR {
            "mnist"
        } else {
            "babi"
        };
        anyhow::bail!(
            "{}: directory not found (expected the {name} files there); pass --data-dir DIR or set {} \
             to a folder holding {dataset}/, or fetch it with `mg-train data download {name} --data-dir DIR`",
            dir.display(),
            locate::DATA_DIR_ENV
        );
    }
    Ok(dir)
}

/// Plain-text rendering of the JSON summary: one `key: value` per line, nested objects indented.
fn render_text(v: &Value, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    if let Value::Object(map) = v {
        for (k, val) in map {
            match val {
                Value::Object(_) => {
                    let _ = writeln!(out, "{pad}{k}:");
                    render_text(val, indent + 1, out);
                }
                Value::Array(items) if items.iter().any(|i| i.is_object()) => {
                    let _ = writeln!(out, "{pad}{k}:");
                    for (i, item) in items.iter().enumerate() {
                        let _ = writeln!(out, "{pad}  [{i}]");
                        render_text(item, indent + 2, out);
                    }
                }
                Value::Array(items) if items.iter().all(|i| i.is_string()) && !items.is_empty() => {
                    let _ = writeln!(out, "{pad}{k}:");
                    for item in items {
                        let _ = writeln!(out, "{pad}  {}", item.as_str().unwrap_or_default());
                    }
                }
                _ => {
                    let _ = writeln!(out, "{pad}{k}: {val}");
                }
            }
        }
    }
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn mapping_config_json(c: &MappingConfig) -> Value {
    let motion = match c.motion {
        Motion::Spiral => json!({"kind": "spiral"}),
        Motion::RandomWalk { len } => json!({"kind": "random_walk", "len": len}),
        Motion::Policy => json!({"kind": "policy"}),
    };
    json!({
        "map_size": c.map_size, "complexity": c.complexity, "density": c.density, "open_map": c.open_map,
        "motion": motion, "obs_size": c.obs_size, "query_size": c.query_size, "mask_size": c.mask_size,
        "mask_origin": c.mask_origin, "location": format!("{:?}", c.location).to_lowercase(),
        "lookahead": c.lookahead, "query_per": format!("{:?}", c.query_per).to_lowercase(),
    })
}

fn mapping_summary(args: &DataArgs) -> anyhow::Result<Value> {
    let cfg = MappingConfig::default();
    let (batch, window) = (32usize, 20usize);
    let rows = batch * window;
    // The variants of the paper's Table 1: episode lengths and validity.
    let variants = [
        ("maze15_spiral_3x3", MappingConfig::small()),
        ("maze25_spiral_3x3", MappingConfig::default()),
        (
            "maze25_random500_3x3",
            MappingConfig {
                motion: Motion::RandomWalk { len: 500 },
                ..cfg.clone()
            },
        ),
        (
            "maze25_random1500_3x3",
            MappingConfig {
                motion: Motion::RandomWalk { len: 1500 },
                ..cfg.clone()
            },
        ),
        (
            "maze25_random500_9x9",
            MappingConfig {
                motion: Motion::RandomWalk { len: 500 },
                obs_size: 9,
                query_size: 9,
                ..cfg.clone()
            },
        ),
        (
            "open25_spiral_3x3",
            MappingConfig {
                open_map: true,
                ..cfg.clone()
            },
        ),
    ];
    let mut variant_json = Vec::new();
    for (name, c) in &variants {
        let e = Episode::generate(c, args.seed, 0)
            .with_context(|| format!("mapping variant {name}"))?;
        let positives: Vec<f64> = (0..e.len())
            .map(|t| e.target_indices(t).len() as f64)
            .collect();
        variant_json.push(json!({
            "name": name, "episode_len": e.len(), "obs_size": c.obs_size, "query_size": c.query_size,
            "mean_mask_positives": round3(mean(&positives)),
        }));
    }
    let n = args.samples.max(1);
    let episodes = generate_batch(&cfg, args.seed, 0, n)?;
    let mut samples = Vec::new();
    let (mut walls, mut positives) = (Vec::new(), Vec::new());
    for (i, e) in episodes.iter().enumerate() {
        walls.push(e.map().wall_fraction());
        let pos: Vec<f64> = (0..e.len())
            .map(|t| e.target_indices(t).len() as f64)
            .collect();
        positives.extend_from_slice(&pos);
        let t = e.len() / 2;
        let q = e.query_step(t);
        let fp = |t: usize| {
            let (r, c) = e.frame_position(t);
            json!([r, c])
        };
        samples.push(json!({
            "index": i,
            "map": e.map().to_ascii(),
            "wall_fraction": round3(e.map().wall_fraction()),
            "start": [e.start_position().0, e.start_position().1],
            "first_positions": e.positions()[..10.min(e.len())].iter().map(|p| json!([p.0, p.1])).collect::<Vec<_>>(),
            "last_position": [e.position().0, e.position().1],
            "step": {
                "t": t,
                "observation": e.observation(t),
                "location": e.location(t),
                "query_step": q,
                "query_frame_position": fp(q),
                "query": e.query(t),
                "target_frame_positions": e.target_indices(t).iter().map(|&i| json!([i / cfg.mask_size, i % cfg.mask_size])).collect::<Vec<_>>(),
            },
        }));
    }
    Ok(json!({
        "dataset": "mapping",
        "seed": args.seed,
        "config": mapping_config_json(&cfg),
        "episode_len": cfg.episode_len(),
        "window": {"batch": batch, "steps": window},
        "shapes": {
            "input": [rows, 4, cfg.obs_size, cfg.obs_size],
            "query": [rows, 4, cfg.query_size, cfg.query_size],
            "target": [rows, cfg.mask_size * cfg.mask_size],
        },
        "test_set": {"seed": mg_data::mapping::TEST_SEED, "maps": mg_data::mapping::TEST_SET_SIZE},
        "variants": variant_json,
        "stats": {
            "episodes": episodes.len(),
            "wall_fraction_mean": round3(mean(&walls)),
            "mask_positives_mean": round3(mean(&positives)),
            "mask_positives_max": positives.iter().copied().fold(0.0, f64::max),
        },
        "samples": samples,
    }))
}

fn bits(v: &[f32]) -> String {
    v.iter().map(|&x| if x > 0.5 { '1' } else { '0' }).collect()
}

fn sort_summary(args: &DataArgs) -> Value {
    let mut variants = Vec::new();
    for len in [20usize, 50] {
        let cfg = SortConfig { len, dim: 9 };
        let n = 1000u64;
        let mut ones = 0.0;
        let mut sorted_ok = true;
        for i in 0..n {
            let s = cfg.sample(args.seed, i);
            ones += s.vectors.iter().sum::<f32>() as f64 / s.vectors.len() as f64;
            sorted_ok &= s
                .order
                .windows(2)
                .all(|w| s.priorities[w[0]] >= s.priorities[w[1]]);
        }
        variants.push(json!({
            "len": len, "dim": 9,
            "shapes": {"input": [len, "B", 10], "target": [len, "B", 9]},
            "stats": {"samples": n, "mean_bit": round3(ones / n as f64), "targets_sorted": sorted_ok},
        }));
    }
    let cfg = SortConfig::default();
    let samples: Vec<Value> = (0..args.samples as u64)
        .map(|i| {
            let s = cfg.sample(args.seed, i);
            let input: Vec<String> = (0..s.order.len())
                .map(|t| format!("{} p={:+.3}", bits(s.vector(t)), s.priorities[t]))
                .collect();
            let target: Vec<String> = s.order.iter().map(|&k| bits(s.vector(k))).collect();
            json!({"index": i, "input": input, "order": s.order, "target": target})
        })
        .collect();
    json!({
        "dataset": "sort",
        "seed": args.seed,
        "order": "decreasing priority",
        "variants": variants,
        "mnist_variant": {"len": 20, "target": "classes in increasing order", "data": "mg-train data mnist"},
        "samples": samples,
    })
}

fn recall_summary(args: &DataArgs) -> Value {
    let mut variants = Vec::new();
    for len in [10usize, 20] {
        let cfg = RecallConfig { len, dim: 9 };
        let n = 1000u64;
        let mut hist = vec![0usize; len - 1];
        let mut ok = true;
        for i in 0..n {
            let s = cfg.sample(args.seed, i);
            hist[s.query_index] += 1;
            ok &= (0..len - 1).filter(|&k| s.item(k) == s.query()).count() == 1;
        }
        variants.push(json!({
            "len": len, "dim": 9,
            "shapes": {"input": [len + 1, "B", 9], "target": ["B", 9]},
            "stats": {"samples": n, "query_index_histogram": hist, "unique_queries": ok},
        }));
    }
    let cfg = RecallConfig::default();
    let samples: Vec<Value> = (0..args.samples as u64)
        .map(|i| {
            let s = cfg.sample(args.seed, i);
            let items: Vec<String> = (0..s.len()).map(|k| bits(s.item(k))).collect();
            json!({"index": i, "items": items, "query_index": s.query_index, "query": bits(s.query()), "target": bits(s.target())})
        })
        .collect();
    let scales: Vec<Value> = [3usize, 6, 12, 24, 48]
        .iter()
        .map(|&k| json!({"size": k, "indices": mg_data::mnist::nearest_indices(28, k)}))
        .collect();
    json!({
        "dataset": "recall",
        "seed": args.seed,
        "variants": variants,
        "mnist_variant": {"len": 10, "query": "the image at step q in 0..=8", "target": "class of image q+1", "resize_tables": scales},
        "samples": samples,
    })
}

fn mnist_summary(dir: &Path) -> anyhow::Result<Value> {
    let m = mg_data::mnist::load_dir(dir)
        .with_context(|| format!("loading MNIST from {}", dir.display()))?;
    let split = |s: &mg_data::mnist::MnistSplit| {
        let (mut lo, mut hi) = (255u8, 0u8);
        for i in 0..s.len() {
            for &p in s.image(i) {
                lo = lo.min(p);
                hi = hi.max(p);
            }
        }
        json!({
            "count": s.len(),
            "shape": [28, 28],
            "class_histogram": s.class_counts(),
            "first_labels": &s.labels()[..10.min(s.len())],
            "pixel_range": [lo, hi],
        })
    };
    Ok(json!({
        "dataset": "mnist",
        "data_dir": dir.display().to_string(),
        "splits": {"train": split(&m.train), "test": split(&m.test)},
    }))
}

fn babi_summary(root: &Path) -> anyhow::Result<Value> {
    let mut variants = serde_json::Map::new();
    let mut vocab_size = 0;
    let mut word_count = 0;
    let mut all_warnings = Vec::new();
    for variant in [Variant::En, Variant::En10k] {
        let c = BabiCorpus::load(root, variant)
            .with_context(|| format!("loading bAbI from {}", root.display()))?;
        // What `train` would refuse: a word its models have no input for.
        if let Err(e) = c.check_vocab(root, &babi::Vocab::v12()) {
            let refused = format!("{e}; `mg-train train` refuses these files");
            eprintln!("warning: {refused}");
            all_warnings.push(refused);
        }
        for w in &c.warnings {
            eprintln!("warning: {w}");
        }
        all_warnings.extend(c.warnings.iter().cloned());
        let mut tasks = Vec::new();
        let mut answers: BTreeMap<String, usize> = BTreeMap::new();
        let (mut max_ctx, mut max_len) = (0usize, 0usize);
        let mut stories_without_questions = 0;
        for t in 1..=20u8 {
            let data = c.task(t);
            for s in data.train.iter().chain(&data.test) {
                for q in &s.questions {
                    max_ctx = max_ctx.max(q.context_len);
                    let n: usize = s.statements[..q.context_len]
                        .iter()
                        .map(Vec::len)
                        .sum::<usize>()
                        + q.question.len()
                        + q.answer.len();
                    max_len = max_len.max(n);
                }
            }
            for s in &data.train {
                for q in &s.questions {
                    *answers
                        .entry(c.vocab.decode(&q.answer).replace(' ', ","))
                        .or_default() += 1;
                }
            }
            let questionless = babi::stories_without_questions(&data.train)
                + babi::stories_without_questions(&data.test);
            stories_without_questions += questionless;
            tasks.push(json!({
                "task": t,
                "name": babi::TASKS[t as usize - 1],
                "train": babi::question_count(&data.train),
                "test": babi::question_count(&data.test),
                "stories_without_questions": questionless,
                "train_file": data.train_path.display().to_string(),
            }));
        }
        let train_total: usize = (1..=20)
            .map(|t| babi::question_count(c.stories(t, Split::Train)))
            .sum();
        let test_total: usize = (1..=20)
            .map(|t| babi::question_count(c.stories(t, Split::Test)))
            .sum();
        vocab_size = vocab_size.max(c.vocab.len());
        word_count = word_count.max(c.vocab.word_count());
        variants.insert(
            variant.dir_name().to_string(),
            json!({
                "tasks": tasks,
                "train_total": train_total,
                "test_total": test_total,
                "vocab_size": c.vocab.len(),
                "max_context_statements": max_ctx,
                "max_sequence_len": max_len,
                "stories_without_questions": stories_without_questions,
                "answer_histogram": answers,
                "warnings": c.warnings,
            }),
        );
    }
    Ok(json!({
        "dataset": "babi",
        "data_dir": root.display().to_string(),
        "vocab_size": vocab_size,
        "word_count": word_count,
        "tokens": "lower-case words; '.' and '?' split off as tokens; list answers split on ','; ids 0 <pad>, 1 '.', 2 '?', then sorted words",
        "variants": variants,
        "warnings": all_warnings,
    }))
}

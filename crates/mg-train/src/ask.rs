//! `mg-train ask`: a bAbI run answers a story typed or piped on stdin.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use mg_layers::MgBackend;

use crate::backend::{DeviceKind, Job, dispatch};
use crate::commands::load_config;
use crate::harness::experiment::{read_config_text, task_kind};
use crate::harness::train::load_model;
use crate::harness::{RunDir, Task};
use crate::tasks::Babi;

/// Arguments of `mg-train ask`.
#[derive(Args, Debug)]
pub struct AskArgs {
    /// Run directory of a bAbI run.
    pub run_dir: PathBuf,
    /// Device to run on.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// The checkpoint to answer with, e.g. step-2000 or best [default: best if the run has
    /// one, else the newest intact one].
    #[arg(long)]
    pub from: Option<String>,
    /// Answer words to produce (2 for lists of two items or path finding), each fed back in.
    #[arg(long, default_value_t = 1)]
    pub words: usize,
}

/// Largest story read from stdin, bytes.
const MAX_STORY_BYTES: u64 = 1 << 20;

/// Runs `mg-train ask`.
pub fn run_ask(args: &AskArgs) -> anyhow::Result<()> {
    let run = RunDir::open(&args.run_dir)?;
    let text = read_config_text(&run.config())?;
    let kind = task_kind(&text).with_context(|| format!("in {}", run.config().display()))?;
    if kind != Babi::KIND {
        bail!(
            "{} is a `{kind}` run; `ask` answers bAbI questions (task.kind = \"babi\")",
            run.root.display()
        );
    }
    if args.words == 0 || args.words > 16 {
        bail!("--words {}: expected 1 to 16", args.words);
    }
    let (_, task) = load_config::<Babi>(&run.config(), &text)?;
    let mut story = String::new();
    std::io::stdin()
        .take(MAX_STORY_BYTES)
        .read_to_string(&mut story)
        .context("reading the story from stdin")?;
    let from = args.from.clone().or_else(|| {
        let best = run
            .root
            .join("checkpoints")
            .join(crate::harness::checkpoint::BEST);
        best.is_dir()
            .then(|| crate::harness::checkpoint::BEST.to_string())
    });
    dispatch(
        args.device,
        AskJob {
            task,
            run,
            from,
            story,
            words: args.words,
        },
    )
}

struct AskJob {
    task: Babi,
    run: RunDir,
    from: Option<String>,
    story: String,
    words: usize,
}

impl Job for AskJob {
    fn run<B: MgBackend>(self, device: B::Device) -> anyhow::Result<()> {
        let (model, progress) =
            load_model::<Babi, B>(&self.task, &self.run, self.from.as_deref(), &device)?;
        let answer = self
            .task
            .answer(&model, &self.story, self.words, &device)
            .context("in the story read from stdin")?;
        let words: Vec<&str> = answer.iter().map(|(w, _)| w.as_str()).collect();
        let probs: Vec<String> = answer.iter().map(|(_, p)| format!("{p:.3}")).collect();
        println!("{}", words.join(" "));
        eprintln!(
            "probability {} (checkpoint at time step {})",
            probs.join(", "),
            progress.time_step
        );
        Ok(())
    }
}

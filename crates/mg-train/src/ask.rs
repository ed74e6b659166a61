//! `mg-train ask`: a bAbI run answers a story typed or piped on stdin.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use mg_layers::MgBackend;

use crate::backend::{DeviceKind, Job, dispatch};
use crate::harness::experiment::load_config;
use crate::harness::experiment::{read_config_text, task_kind};
use crate::harness::train::load_model;
use crate::harness::{RunDir, Task};
use crate::tasks::Babi;
use mg_data::babi::{Vocab, words_of};

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
    let questions = questions(&story).context("in the story read from stdin")?;
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
            questions,
            words: args.words,
        },
    )
}

/// One question with its story: the statements before it (since the last line ID 1, where
/// a pasted bAbI file starts a new story) and the question line last.
#[derive(Debug, Clone, PartialEq)]
struct Question {
    /// Line of the question in the text read, from 1.
    line: usize,
    /// The statements and the question, one per line.
    text: String,
}

/// The questions of `story`, each with the statements before it; an error for a question
/// with no statement before it, for no question at all, for statements after the last
/// question and for a word outside the vocabulary, naming the line.
fn questions(story: &str) -> anyhow::Result<Vec<Question>> {
    let vocab = Vocab::v12();
    let mut statements: Vec<&str> = Vec::new();
    let mut questions = Vec::new();
    let mut after_last = None;
    for (i, raw) in story.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        // A pasted question line carries `\tanswer\tsupport`: the question is before the tab.
        let text = raw.split('\t').next().unwrap_or("");
        let id = text.trim_start().split(' ').next().unwrap_or("");
        let words = text.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ');
        vocab
            .encode(words)
            .map_err(|e| anyhow::anyhow!("line {line}: {e}"))?;
        if id == "1" {
            statements.clear();
        }
        if words_of(words).last().is_some_and(|w| w == "?") {
            if statements.is_empty() {
                bail!(
                    "line {line}: a question with no story before it; expected statements, one \
                     per line, before the question"
                );
            }
            let mut text = statements.join("\n");
            text.push('\n');
            text.push_str(raw);
            questions.push(Question { line, text });
            after_last = None;
        } else {
            statements.push(raw);
            after_last = after_last.or(Some(line));
        }
    }
    if questions.is_empty() {
        bail!("no question: expected statements, one per line, then a question ending in `?`");
    }
    if let Some(line) = after_last {
        bail!("line {line}: a statement after the last question; end the story with a question");
    }
    Ok(questions)
}

struct AskJob {
    task: Babi,
    run: RunDir,
    from: Option<String>,
    questions: Vec<Question>,
    words: usize,
}

impl Job for AskJob {
    type Output = ();

    fn run<B: MgBackend>(self, device: B::Device) -> anyhow::Result<()> {
        let (model, progress) =
            load_model::<Babi, B>(&self.task, &self.run, self.from.as_deref(), &device)?;
        // One answer line per question, in order.
        for question in &self.questions {
            let answer = self
                .task
                .answer(&model, &question.text, self.words, &device)
                .with_context(|| {
                    format!(
                        "in the story of the question on line {} of stdin",
                        question.line
                    )
                })?;
            let words: Vec<&str> = answer.iter().map(|(w, _)| w.as_str()).collect();
            let probs: Vec<String> = answer.iter().map(|(_, p)| format!("{p:.3}")).collect();
            println!("{}", words.join(" "));
            eprintln!(
                "line {}: probability {} (checkpoint at time step {})",
                question.line,
                probs.join(", "),
                progress.time_step
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_question_gets_the_statements_before_it() {
        let story = "1 Mary went to the kitchen.\n2 Where is Mary?\tkitchen\t1\n\n\
                     3 John went to the garden.\n4 Where is John?\n\
                     1 Sandra went to the office.\n2 Where is Sandra?\n";
        let q = questions(story).unwrap();
        let lines: Vec<usize> = q.iter().map(|q| q.line).collect();
        assert_eq!(lines, [2, 5, 7]);
        assert_eq!(
            q[1].text,
            "1 Mary went to the kitchen.\n3 John went to the garden.\n4 Where is John?"
        );
        assert_eq!(
            q[2].text,
            "1 Sandra went to the office.\n2 Where is Sandra?"
        );
    }

    #[test]
    fn a_story_without_a_question_or_a_question_without_a_story_is_refused() {
        let err = |s: &str| format!("{:#}", questions(s).unwrap_err());
        assert!(err("Where is Mary?\n").contains("line 1: a question with no story"));
        assert!(err("").contains("no question"));
        assert!(err("Mary went to the kitchen.\n").contains("no question"));
        let e = err("Mary went to the kitchen.\nWhere is Mary?\nJohn left.\n");
        assert!(
            e.contains("line 3: a statement after the last question"),
            "{e}"
        );
        let e = err("Mary went to the kitchen.\nWhere is Bob?\n");
        assert!(e.contains("line 2") && e.contains("`bob`"), "{e}");
    }
}

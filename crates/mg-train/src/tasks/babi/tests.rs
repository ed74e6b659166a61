use std::path::PathBuf;

use super::*;
use burn::backend::Flex;

/// The fixture copy of bAbI in mg-data (the first stories of every task file).
fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../mg-data/tests/fixtures/babi/tasks_1-20_v1-2")
}

const TINY: &str = "[model]\nlevels = [2, 3]\nchannels = [4, 4]\nhead_channels = [4]\n";

fn config(task: &str, rest: &str) -> anyhow::Result<ExperimentOf<Babi>> {
    let text = format!(
        "[task]\nkind = \"babi\"\ndata_dir = {:?}\n{task}\n{rest}",
        fixtures().display().to_string()
    );
    ExperimentOf::<Babi>::parse(&text)
}

fn babi(task: &str, rest: &str) -> anyhow::Result<Babi> {
    Babi::new(&config(task, rest)?)
}

fn error_of(task: &str, rest: &str) -> String {
    format!("{:#}", babi(task, rest).unwrap_err())
}

/// The shipped configs' counts: the paper's 1.00M / 2.86K multigrid model and the DNC of
/// 890,742 parameters and 16,384 memory.
#[test]
fn paper_configs_have_the_paper_counts() {
    for (name, counts) in [
        ("paper.toml", (998_068, 2_861)),
        ("dnc.toml", (890_742, 16_384)),
    ] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../configs/babi")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        let info = Babi::new(&ExperimentOf::<Babi>::parse(&text).unwrap())
            .unwrap()
            .info();
        assert_eq!((info.params, info.memory_cells), counts, "{name}");
    }
}

#[test]
fn bad_settings_name_the_field() {
    assert!(error_of("tasks = [0]", TINY).contains("task.tasks: 0"));
    assert!(error_of("tasks = [2, 2]", TINY).contains("listed twice"));
    assert!(error_of("validation = 1.0", TINY).contains("task.validation: 1"));
    assert!(error_of("max_len = 1", TINY).contains("task.max_len"));
    let e = error_of("", "[model]\nlevels = [2, 3]\nchannels = [4, 4]\n");
    assert!(e.contains("model.head_channels: missing"), "{e}");
    let e = error_of(
        "",
        "[model]\nlevels = [2, 3]\nchannels = [4, 4]\nhead_channels = [4, 4]\n",
    );
    assert!(
        e.contains("head_channels") && e.contains("2 entries"),
        "{e}"
    );
    let e = error_of(
        "",
        "[model]\nkind = \"dnc\"\ncontroller = 8\nmemory_slots = 4\nword_size = 4\nembedding = 3\n",
    );
    assert!(
        e.contains("model.embedding: not a field of a dnc model"),
        "{e}"
    );
    let e = error_of("reading = \"page\"", TINY);
    assert!(
        e.contains("reading") && e.contains("`question`") && e.contains("`story`"),
        "{e}"
    );
}

/// In story reading a sequence is a whole story: its statements and several questions, each
/// answer right after its question and scored there, the input at an answer word `<pad>`, and
/// padding only after a row's last scored step. The stories hold the same questions as the
/// question sequences.
#[test]
fn story_sequences_hold_every_question_in_place() {
    let by_story = babi("tasks = [1, 2]\nreading = \"story\"", TINY).unwrap();
    let by_question = babi("tasks = [1, 2]", TINY).unwrap();
    let (s, q) = (by_story.corpus().unwrap(), by_question.corpus().unwrap());
    assert_eq!(s.reading, Reading::Story);
    assert!(
        s.test.iter().all(|x| questions(x) > 1),
        "a story per sequence"
    );
    assert!(q.test.iter().all(|x| questions(x) == 1));
    // The same test questions, in the same order, with the same answers.
    let story_answers: Vec<Vec<u32>> = s.test.iter().flat_map(answers).collect();
    let question_answers: Vec<Vec<u32>> = q.test.iter().map(answer).collect();
    assert_eq!(story_answers, question_answers);
    // Each question sequence is the story up to that question with the earlier answers left
    // out: its context ends where the story's does.
    let first = &s.test[0];
    let spans = answer_spans(&first.answer_mask);
    // The words of each earlier question and its answer, which a replayed question leaves out.
    let dot = s.vocab.id(".").unwrap();
    let asked: Vec<std::ops::Range<usize>> = spans
        .iter()
        .enumerate()
        .map(|(j, r)| {
            let after_dot = first.tokens[..r.start]
                .iter()
                .rposition(|&w| w == dot)
                .map_or(0, |i| i + 1);
            let after_answer = if j > 0 { spans[j - 1].end } else { 0 };
            after_dot.max(after_answer)..r.end
        })
        .collect();
    for (k, span) in spans.iter().enumerate() {
        let story_words: Vec<u32> = (0..span.end)
            .filter(|&i| !asked[..k].iter().any(|r| r.contains(&i)))
            .map(|i| first.tokens[i])
            .collect();
        assert_eq!(story_words, q.test[k].tokens, "question {k}");
    }
    let c = &s;
    let rows = [
        c.train.iter().min_by_key(|x| x.tokens.len()).unwrap(),
        c.train.iter().max_by_key(|x| x.tokens.len()).unwrap(),
    ];
    let batch = by_story.batch_of(rows);
    assert_eq!(batch.size(), 2);
    for (row, seq) in rows.into_iter().enumerate() {
        let n = seq.tokens.len() - 1;
        assert_eq!(batch.inputs[row].len(), n);
        let steps = answer_spans(&batch.scored[row]);
        assert_eq!(steps.len(), questions(seq));
        for (r, span) in steps.iter().zip(answer_spans(&seq.answer_mask)) {
            // Step t predicts word t + 1.
            assert_eq!(r.start + 1..r.end + 1, span);
            assert_eq!(batch.targets[row][r.clone()], seq.tokens[span.clone()]);
            assert_eq!(batch.inputs[row][r.start], s.vocab.id("?").unwrap());
            for t in r.start + 1..=r.end.min(n - 1) {
                assert_eq!(
                    batch.inputs[row][t],
                    mg_data::babi::PAD,
                    "answer read at {t}"
                );
            }
        }
        assert!(
            steps.last().unwrap().end == n,
            "the last answer ends the row"
        );
    }
    // Padding after the shorter row's last scored step only: zero input rows there.
    let short = (0..2).min_by_key(|&r| batch.inputs[r].len()).unwrap();
    let end = batch.inputs[short].len();
    assert!(end < batch.len && batch.scored[short][..end].iter().any(|&m| m));
    let x = batch.one_hot(0, batch.len);
    for t in 0..batch.len {
        let row = &x[(t * 2 + short) * VOCAB..(t * 2 + short + 1) * VOCAB];
        assert_eq!(
            row.iter().sum::<f32>(),
            f32::from(u8::from(t < end)),
            "step {t}"
        );
    }
    let (rows, _) = batch.scored_rows(0, batch.len);
    assert!(
        rows.iter()
            .all(|&r| (r as usize / 2) < end || r as usize % 2 != short)
    );
}

/// In story reading the loss counts exactly the answer words of every question of the batch,
/// equals the host's cross-entropy on them, is unchanged by padding, and carries the state
/// across truncated windows.
#[test]
fn story_loss_counts_exactly_the_answer_words() {
    let _guard = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let t = babi("tasks = [1, 2]\nreading = \"story\"", TINY).unwrap();
    let c = t.corpus().unwrap();
    let device = Default::default();
    let model = t.init::<Flex>(&device);
    let short = c.train.iter().min_by_key(|s| s.tokens.len()).unwrap();
    let long = c.train.iter().max_by_key(|s| s.tokens.len()).unwrap();
    assert!(long.tokens.len() > short.tokens.len());
    let loss_of = |batch: &QaBatch| {
        let w = t.window::<Flex>(batch, 0..batch.len, &device);
        let (logits, _) = t.forward(&model, &w, None, ForwardPath::Window).unwrap();
        let l = t.loss(logits, &w, LossReduction::Sum);
        (l.loss.into_scalar() as f64, l.units)
    };
    let alone = t.batch_of([short]);
    let (a, units) = loss_of(&alone);
    assert_eq!(units, answer(short).len() as f64);
    assert!(questions(short) > 1);
    let (both, units) = loss_of(&t.batch_of([short, long]));
    assert_eq!(units, (answer(short).len() + answer(long).len()) as f64);
    let (long_alone, _) = loss_of(&t.batch_of([long]));
    assert!(
        (both - a - long_alone).abs() < 1e-4 * both.abs().max(1.0),
        "{both} vs {a} + {long_alone}"
    );
    let logits = t.infer(&model, &alone, &device).unwrap();
    let mut want = 0.0;
    for steps in answer_spans(&alone.scored[0]) {
        for step in steps {
            let row = &logits[step * VOCAB..(step + 1) * VOCAB];
            let max = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&v| (v as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            want += lse - row[alone.targets[0][step] as usize] as f64;
        }
    }
    assert!((a - want).abs() < 1e-4 * want, "{a} vs {want}");
    // Windows cut between two questions of the story, the state carried.
    let batch = t.batch_of([long]);
    let whole = t.infer(&model, &batch, &device).unwrap();
    let cut = answer_spans(&batch.scored[0])[1].start - 2;
    let w1 = t.window::<Flex>(&batch, 0..cut, &device);
    let (l1, state) = t.forward(&model, &w1, None, ForwardPath::Step).unwrap();
    let w2 = t.window::<Flex>(&batch, cut..batch.len, &device);
    assert!(w1.scored > 0 && w2.scored > 0);
    let (l2, _) = t
        .forward(&model, &w2, Some(state), ForwardPath::Window)
        .unwrap();
    let parts: Vec<f32> = Tensor::cat(vec![l1, l2], 0).into_data().to_vec().unwrap();
    let worst = parts
        .iter()
        .zip(&whole)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-4, "carried state differs by {worst}");
}

/// Story reading evaluates every test question once, per task: the counts and the majority
/// baseline are those of question reading, and `eval.sequences` cuts a task's last story at
/// the count. Validation scores the held-out questions of whole stories.
#[test]
fn story_evaluation_scores_every_question_once() {
    let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let by_story = babi("tasks = [1, 6]\nreading = \"story\"", TINY).unwrap();
    let by_question = babi("tasks = [1, 6]", TINY).unwrap();
    let device = Default::default();
    let model = by_story.init::<Flex>(&device);
    for sequences in [1000, 7] {
        let request = EvalRequest {
            sequences,
            time_step: 0,
            show_progress: false,
        };
        let s = by_story.evaluate(&model, &request, &device).unwrap();
        let q = by_question.evaluate(&model, &request, &device).unwrap();
        assert_eq!(s.sequences, q.sequences);
        assert_eq!(s.tasks.len(), 2);
        for (a, b) in s.tasks.iter().zip(&q.tasks) {
            assert_eq!((a.task, a.questions), (b.task, b.questions));
            assert_eq!(a.majority_error, b.majority_error);
            assert!((0.0..=1.0).contains(&a.error));
        }
    }
    let c = by_question.corpus().unwrap();
    let s = by_story
        .evaluate(
            &model,
            &EvalRequest {
                sequences: 7,
                time_step: 0,
                show_progress: false,
            },
            &device,
        )
        .unwrap();
    assert_eq!(s.sequences, 14);
    assert!(c.test.len() > 14);
    // Validation: whole held-out stories, at most the configured questions per task.
    let v = babi(
        "tasks = [1, 6]\nreading = \"story\"\nvalidation = 0.5\nvalidation_questions = 8",
        TINY,
    )
    .unwrap();
    let vc = v.corpus().unwrap();
    for task in [1, 6] {
        let held: usize = vc
            .valid
            .iter()
            .filter(|x| x.task == task)
            .map(questions)
            .sum();
        assert_eq!(held, 4, "task {task}");
    }
    let error = v.validate(&model, &device).unwrap().unwrap();
    assert!((0.0..=1.0).contains(&error));
}

/// A missing folder or task file is an error naming it, raised when the data is first read.
#[test]
fn missing_data_is_named() {
    let dir = std::env::temp_dir().join(format!("mg-babi-missing-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(dir.join("en")).unwrap();
    for f in std::fs::read_dir(fixtures().join("en")).unwrap() {
        let f = f.unwrap();
        if !f.file_name().to_string_lossy().starts_with("qa7_") {
            std::fs::copy(f.path(), dir.join("en").join(f.file_name())).unwrap();
        }
    }
    let text = format!(
        "[task]\nkind = \"babi\"\nvariant = \"en\"\ndata_dir = {:?}\n{TINY}",
        dir.display().to_string()
    );
    let t = Babi::new(&ExperimentOf::<Babi>::parse(&text).unwrap()).unwrap();
    let e = format!("{:#}", t.batch(1, 0, 2).unwrap_err());
    assert!(e.contains("qa7_counting_train.txt"), "{e}");
    // A malformed line names its file and line.
    let bad = dir.join("en/qa7_counting_train.txt");
    std::fs::write(&bad, "1 Mary went home.\nnot a line\n").unwrap();
    let t = Babi::new(&ExperimentOf::<Babi>::parse(&text).unwrap()).unwrap();
    let e = format!("{:#}", t.batch(1, 0, 2).unwrap_err());
    assert!(
        e.contains("qa7_counting_train.txt") && e.contains('2'),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The split holds out the configured share, sequences longer than `max_len` are counted
/// out, and batches are a pure function of (seed, index) that visit every training
/// question once per epoch.
#[test]
fn splits_and_batches() {
    let t = babi(
        "tasks = [1, 2]\nvalidation = 0.25\nvalidation_questions = 100",
        TINY,
    )
    .unwrap();
    let c = t.corpus().unwrap();
    assert_eq!(c.vocab.len(), VOCAB);
    let all = c.train.len() + c.valid.len();
    assert!(
        c.valid.len() >= all / 5 && c.valid.len() <= all / 3,
        "{} of {all}",
        c.valid.len()
    );
    assert!(c.test.iter().all(|s| s.task == 1 || s.task == 2));
    let size = 2;
    let per_epoch = c.train.len() / size;
    let mut seen: Vec<u32> = (0..per_epoch as u64)
        .flat_map(|i| c.batch_indices(5, i, size).unwrap())
        .collect();
    assert_eq!(
        c.batch_indices(5, 3, size).unwrap(),
        c.batch_indices(5, 3, size).unwrap()
    );
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), per_epoch * size, "an epoch repeats a question");
    assert_ne!(
        c.batch_indices(5, 0, size).unwrap(),
        c.batch_indices(5, per_epoch as u64, size).unwrap(),
        "the next epoch is reshuffled"
    );
    let short = babi("tasks = [2]\nmax_len = 40", TINY).unwrap();
    let s = short.corpus().unwrap();
    assert!(s.skipped_train > 0 && s.train.iter().all(|q| q.tokens.len() <= 40));
}

/// Padding reaches neither the loss nor the state: a question's loss is the same alone and
/// in a batch with a longer one, and equals the cross-entropy of its answer words computed
/// on the host.
#[test]
fn padding_changes_nothing() {
    let _guard = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let t = babi("tasks = [1, 2]", TINY).unwrap();
    let c = t.corpus().unwrap();
    let device = Default::default();
    let model = t.init::<Flex>(&device);
    let short = c.train.iter().min_by_key(|s| s.tokens.len()).unwrap();
    let long = c.train.iter().max_by_key(|s| s.tokens.len()).unwrap();
    assert!(long.tokens.len() > short.tokens.len());
    let loss_of = |batch: &QaBatch| {
        let w = t.window::<Flex>(batch, 0..batch.len, &device);
        let (logits, _) = t.forward(&model, &w, None, ForwardPath::Window).unwrap();
        let l = t.loss(logits, &w, LossReduction::Sum);
        (l.loss.into_scalar() as f64, l.units)
    };
    let alone = QaBatch::new([short]);
    let (a, units) = loss_of(&alone);
    assert_eq!(units, answer(short).len() as f64);
    let (both, _) = loss_of(&QaBatch::new([short, long]));
    let (long_alone, _) = loss_of(&QaBatch::new([long]));
    assert!(
        (both - a - long_alone).abs() < 1e-4 * both.abs().max(1.0),
        "{both} vs {a} + {long_alone}"
    );
    // Against the host: −log softmax at the answer steps.
    let logits = t.infer(&model, &alone, &device).unwrap();
    let mut want = 0.0;
    for (step, &scored) in alone.scored[0].iter().enumerate() {
        if scored {
            let row = &logits[step * VOCAB..(step + 1) * VOCAB];
            let max = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&v| (v as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            want += lse - row[alone.targets[0][step] as usize] as f64;
        }
    }
    assert!((a - want).abs() < 1e-4 * want, "{a} vs {want}");
    // Truncated windows with the state carried give the same logits as the whole sequence.
    let batch = QaBatch::new([long]);
    let whole = t.infer(&model, &batch, &device).unwrap();
    let cut = batch.len / 2;
    let w1 = t.window::<Flex>(&batch, 0..cut, &device);
    let (l1, s) = t.forward(&model, &w1, None, ForwardPath::Step).unwrap();
    let w2 = t.window::<Flex>(&batch, cut..batch.len, &device);
    let (l2, _) = t
        .forward(&model, &w2, Some(s), ForwardPath::Window)
        .unwrap();
    let parts: Vec<f32> = Tensor::cat(vec![l1, l2], 0).into_data().to_vec().unwrap();
    let worst = parts
        .iter()
        .zip(&whole)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-4, "carried state differs by {worst}");
}

/// Evaluation counts every test question of the chosen tasks, the majority baseline is an
/// error in [0, 1], and `answer` reads a story as a user types it.
#[test]
fn evaluation_and_answers() {
    let t = babi("tasks = [1, 6]", TINY).unwrap();
    let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    let model = t.init::<Flex>(&device);
    let request = EvalRequest {
        sequences: 1000,
        time_step: 0,
        show_progress: false,
    };
    let report = t.evaluate(&model, &request, &device).unwrap();
    let c = t.corpus().unwrap();
    assert_eq!(report.sequences, c.test.len());
    assert_eq!(
        report.tasks.iter().map(|r| r.task).collect::<Vec<_>>(),
        vec![1, 6]
    );
    for r in &report.tasks {
        assert!((0.0..=1.0).contains(&r.error) && (0.0..=1.0).contains(&r.majority_error));
        assert_eq!(
            r.questions,
            c.test.iter().filter(|s| s.task == r.task).count()
        );
    }
    assert!(report.lines().iter().any(|l| l.contains("failed tasks")));
    let story = "1 Mary moved to the bathroom.\n2 John went to the hallway.\n3 Where is Mary?\tbathroom\t1\n";
    let words = t.answer(&model, story, 2, &device).unwrap();
    assert_eq!(words.len(), 2);
    assert!(
        words
            .iter()
            .all(|(w, p)| c.vocab.id(w).is_some() && *p > 0.0 && *p <= 1.0)
    );
    let e = format!(
        "{:#}",
        t.answer(&model, "Mary moved to Paris.\nWhere is Mary?", 1, &device)
            .unwrap_err()
    );
    assert!(e.contains("line 1") && e.contains("`paris`"), "{e}");
    let e = format!(
        "{:#}",
        t.answer(&model, "Mary moved to the kitchen.", 1, &device)
            .unwrap_err()
    );
    assert!(e.contains("question"), "{e}");
}

/// Training through the harness logs a validation error per checkpoint and keeps the best
/// checkpoint, which `--from best` loads; the loss goes down on one task.
#[test]
fn training_keeps_the_best_checkpoint() {
    use crate::harness::train::{load_model, train};
    use crate::harness::{RunDir, TrainOptions};
    let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let config = config(
        "tasks = [1]\nvariant = \"en\"\nvalidation = 0.3\nvalidation_questions = 20",
        &format!(
            "{TINY}[train]\nbatch = 4\nwindow = 40\noptimizer = \"adam\"\nlr_start = 1e-2\n\
             lr_end = 1e-2\nloss = \"mean\"\ncheckpoint_every = 200\nlog_every = 100\n"
        ),
    )
    .unwrap();
    let task = Babi::new(&config).unwrap();
    let root = std::env::temp_dir().join(format!("mg-babi-train-{}", std::process::id()));
    std::fs::remove_dir_all(&root).ok();
    let run = RunDir::new(&root);
    let options = TrainOptions {
        total_steps: 600,
        resume: false,
        from: None,
        max_seconds: None,
        on_cpu: true,
        show_progress: false,
        nodes: None,
        devices: Vec::new(),
    };
    let device = Default::default();
    train::<Babi, Flex>(device, &task, &config, &run, &options).unwrap();
    let log = std::fs::read_to_string(run.validation()).unwrap();
    assert!(log.lines().count() >= 2, "{log}");
    assert!(
        log.lines().next().unwrap().contains("\"best\":true"),
        "{log}"
    );
    let (_, progress) = load_model::<Babi, Flex>(&task, &run, Some("best"), &device).unwrap();
    assert!(progress.time_step > 0);
    let metrics = std::fs::read_to_string(run.metrics()).unwrap();
    let losses: Vec<f64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss_per_unit"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert!(losses.last() < losses.first(), "{losses:?}");
    std::fs::remove_dir_all(&root).ok();
}

/// A batch of 3 questions (or stories) cut into shards of 2 and 1 (each padded to the batch's length) gives
/// the loss and gradients of the whole batch, window by window with the state carried, for
/// the multigrid model and the DNC, with a summed and a mean loss.
#[test]
fn shards_give_the_whole_batch_s_gradients() {
    use crate::harness::testing::assert_shards_match;
    let dnc = "[model]\nkind = \"dnc\"\ncontroller = 4\nmemory_slots = 3\nword_size = 2\n\
               read_heads = 1\n";
    for model in [TINY, dnc] {
        for loss in ["sum", "mean"] {
            for reading in ["question", "story"] {
                let config = config(
                    &format!("tasks = [1, 2]\nvariant = \"en\"\nreading = \"{reading}\""),
                    &format!("{model}[train]\nbatch = 3\nwindow = 4\nloss = \"{loss}\"\n"),
                )
                .unwrap();
                let task = Babi::new(&config).unwrap();
                let (windows, carried) = assert_shards_match(&task, &config, &[2, 1], 1);
                assert!(carried > 0 && windows > carried, "{windows} windows");
            }
        }
    }
}

/// `bench` on a bAbI config reports the words a training window reads per second and the
/// time of one training epoch: the epoch's batches' steps at the window's time per step.
#[test]
fn bench_reports_words_per_second_and_the_epoch() {
    use crate::harness::bench::{BenchOptions, bench};
    let config = config(
        "tasks = [1, 2]\nvariant = \"en\"",
        &format!("{TINY}[train]\nbatch = 2\nwindow = 8\n"),
    )
    .unwrap();
    let task = Babi::new(&config).unwrap();
    let options = BenchOptions {
        name: "tiny".into(),
        device: "cpu".into(),
        on_cpu: true,
        kernels: Some("x86-64-v3"),
        steps: 6,
        batch: 2,
        repeats: 1,
        threads: None,
        training: true,
        all_paths: false,
        inference: true,
        weights: None,
        save_weights: None,
    };
    let records = {
        let _turn = crate::SEEDED.lock().unwrap_or_else(|e| e.into_inner());
        bench::<Babi, Flex>(&task, &config, &options, Default::default()).unwrap()
    };
    let window = &records[0];
    assert!(window.bench.starts_with("train_window"), "{}", window.bench);
    // Every record names the machine and the kernels' instruction set.
    assert!(records.iter().all(|r| r.cpu.is_some()
        && r.isa.as_deref() == Some(crate::harness::machine::isa_level())
        && r.kernels.as_deref() == Some("x86-64-v3")));
    let seconds = window.median_ms / 1e3;
    let seed = config.train.seed;
    let batch = task.batch(seed, 0, 2).unwrap();
    let words = window.words_per_s.unwrap() * seconds;
    let read = batch.words(window.steps);
    assert!((words - read as f64).abs() < 1e-6 * words);
    assert!(read > 0 && read <= 2 * window.steps);
    // The epoch: every batch of the training split at the window's time per step.
    let per_epoch = task.corpus().unwrap().train.len() / 2;
    let steps: usize = (0..per_epoch as u64)
        .map(|i| task.sequence_len(&task.batch(seed, i, 2).unwrap()))
        .sum();
    let expected = seconds * steps as f64 / window.steps as f64;
    let epoch_s = window.epoch_s.unwrap();
    assert!(
        epoch_s > 0.0 && (epoch_s - expected).abs() < 1e-9 * expected,
        "{epoch_s} vs {expected}"
    );
    let json = serde_json::to_value(window).unwrap();
    assert!(
        json["words_per_s"].is_number() && json["epoch_s"].is_number(),
        "{json}"
    );
    assert!(window.throughput_text().contains("words/s, epoch"));
    // Inference steps have no epoch.
    let step = records
        .iter()
        .find(|r| r.bench == "inference_step")
        .unwrap();
    assert!(step.words_per_s.is_none() && step.epoch_s.is_none());
    assert!(!serde_json::to_string(step).unwrap().contains("epoch_s"));
}

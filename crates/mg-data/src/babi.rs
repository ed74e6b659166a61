//! bAbI QA v1.2 (20 tasks; `en` and `en-10k`): parser, vocabulary and word-level sequences for joint training.
//!
//! **Format.** `ID text` lines; IDs restart at 1 for each story. Question lines are
//! `ID question<TAB>answer<TAB>supporting IDs`. A question's context is every statement before it in its story.
//! A line ending in `?` without the tab-separated fields, an empty file and any other malformed line are
//! errors naming the file and line; a story without a question is accepted ([`stories_without_questions`]
//! counts them).
//!
//! **Tokens.** Text is lower-cased and split on whitespace. A trailing `.` or `?` is split off as its own token
//! (kept, so the model sees sentence and question ends). Answers are split on `,` (qa8 `apple,milk`, qa19
//! `n,w`) into one token per item; the commas are dropped.
//!
//! **Vocabulary.** Id 0 is `<pad>`, 1 is `.`, 2 is `?`, then every word of the loaded files (train and test of
//! all 20 tasks), sorted. The v1.2 files have 156 words, so [`Vocab::len`] is 159 (the paper's |V| = 159).
//!
//! **Joint sequences** (paper B.3: one word per step, loss on answer words only). A question becomes
//! `[context statements, each with its '.'] [question words] ? [answer words]`, with `answer_mask[i]` true
//! exactly on the answer tokens. At step i the model reads `tokens[i]` and predicts `tokens[i + 1]`; the loss
//! counts the steps where `answer_mask[i + 1]` holds ([`Sequence::shifted`]).
//!
//! **Story sequences** ([`encode_story`], the DNC paper's protocol): a story is read once, its statements
//! and questions in file order, each question followed by its answer words, so one sequence holds every
//! question of the story; its answers are the runs of `answer_mask` ([`answer_spans`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// The 20 task file stems, task `i` at index `i − 1`.
pub const TASKS: [&str; 20] = [
    "qa1_single-supporting-fact",
    "qa2_two-supporting-facts",
    "qa3_three-supporting-facts",
    "qa4_two-arg-relations",
    "qa5_three-arg-relations",
    "qa6_yes-no-questions",
    "qa7_counting",
    "qa8_lists-sets",
    "qa9_simple-negation",
    "qa10_indefinite-knowledge",
    "qa11_basic-coreference",
    "qa12_conjunction",
    "qa13_compound-coreference",
    "qa14_time-reasoning",
    "qa15_basic-deduction",
    "qa16_basic-induction",
    "qa17_positional-reasoning",
    "qa18_size-reasoning",
    "qa19_path-finding",
    "qa20_agents-motivations",
];

/// The task number (1..=20) for `3`, `qa3` or `qa3_three-supporting-facts`.
pub fn task_by_name(name: &str) -> Result<u8> {
    let n = name.trim().to_ascii_lowercase();
    let num = n.strip_prefix("qa").unwrap_or(&n);
    if let Ok(i) = num.parse::<u8>()
        && (1..=20).contains(&i)
    {
        return Ok(i);
    }
    TASKS
        .iter()
        .position(|&t| t == n)
        .map(|i| i as u8 + 1)
        .ok_or_else(|| DataError::UnknownTask {
            name: name.to_string(),
        })
}

/// The two English sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// 1,000 training questions per task (`en/`).
    En,
    /// 10,000 training questions per task (`en-10k/`).
    En10k,
}

impl Variant {
    /// The folder name.
    pub fn dir_name(self) -> &'static str {
        match self {
            Variant::En => "en",
            Variant::En10k => "en-10k",
        }
    }
}

/// Train or test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// `_train.txt`.
    Train,
    /// `_test.txt`.
    Test,
}

impl Split {
    fn suffix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// The path of a task file: `root/<variant>/qaN_name_<split>.txt`.
pub fn task_path(root: &Path, variant: Variant, task: u8, split: Split) -> PathBuf {
    root.join(variant.dir_name()).join(format!(
        "{}_{}.txt",
        TASKS[task as usize - 1],
        split.suffix()
    ))
}

/// A question of a story; tokens are ids (see [`Story`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// Number of statements of the story before this question (its context).
    pub context_len: usize,
    /// Question tokens, `?` included.
    pub question: Vec<u32>,
    /// Answer tokens (several for list answers).
    pub answer: Vec<u32>,
    /// Supporting statement line IDs, as in the file.
    pub supporting: Vec<u32>,
    /// 1-based line number in the file.
    pub line: usize,
}

/// A story: its statements (tokens with the final `.`) and its questions. Token ids index the corpus'
/// [`Vocab`] (or, straight out of [`parse`], the interner passed to it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Story {
    /// Statements in order.
    pub statements: Vec<Vec<u32>>,
    /// Questions in order.
    pub questions: Vec<Question>,
}

/// The 156 words of the v1.2 files (`en` and `en-10k`, training and test, answers included),
/// sorted: [`Vocab::v12`] is the vocabulary of a corpus with every file, whichever subset of
/// files is read.
pub const WORDS_V12: [&str; 156] = [
    "a",
    "above",
    "afraid",
    "after",
    "afternoon",
    "afterwards",
    "and",
    "antoine",
    "apple",
    "are",
    "back",
    "bathroom",
    "bedroom",
    "before",
    "below",
    "bernhard",
    "bigger",
    "bill",
    "blue",
    "bored",
    "box",
    "brian",
    "carrying",
    "cat",
    "cats",
    "chest",
    "chocolate",
    "chocolates",
    "cinema",
    "color",
    "container",
    "daniel",
    "did",
    "discarded",
    "do",
    "does",
    "down",
    "dropped",
    "e",
    "east",
    "either",
    "emily",
    "evening",
    "fit",
    "fits",
    "following",
    "football",
    "fred",
    "frog",
    "from",
    "garden",
    "gave",
    "gertrude",
    "get",
    "give",
    "go",
    "got",
    "grabbed",
    "gray",
    "green",
    "greg",
    "hallway",
    "handed",
    "he",
    "how",
    "hungry",
    "in",
    "inside",
    "is",
    "jason",
    "jeff",
    "jessica",
    "john",
    "journeyed",
    "julie",
    "julius",
    "kitchen",
    "left",
    "lily",
    "lion",
    "longer",
    "many",
    "mary",
    "maybe",
    "mice",
    "milk",
    "morning",
    "mouse",
    "moved",
    "n",
    "no",
    "none",
    "north",
    "not",
    "nothing",
    "objects",
    "of",
    "office",
    "one",
    "or",
    "pajamas",
    "park",
    "passed",
    "picked",
    "pink",
    "put",
    "received",
    "rectangle",
    "red",
    "rhino",
    "right",
    "s",
    "sandra",
    "school",
    "she",
    "sheep",
    "south",
    "sphere",
    "square",
    "suitcase",
    "sumit",
    "swan",
    "than",
    "that",
    "the",
    "then",
    "there",
    "they",
    "thirsty",
    "this",
    "three",
    "tired",
    "to",
    "took",
    "travelled",
    "triangle",
    "two",
    "up",
    "w",
    "was",
    "went",
    "west",
    "what",
    "where",
    "white",
    "who",
    "why",
    "will",
    "winona",
    "wolf",
    "wolves",
    "yann",
    "yellow",
    "yes",
    "yesterday",
    "you",
];

/// The vocabulary: id ↔ word.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vocab {
    words: Vec<String>,
    ids: HashMap<String, u32>,
}

/// Padding token id.
pub const PAD: u32 = 0;
/// Words of the vocabulary before the sorted corpus words.
pub const SPECIALS: [&str; 3] = ["<pad>", ".", "?"];

impl Vocab {
    /// An interner holding only [`SPECIALS`].
    pub fn new() -> Self {
        let mut v = Self::default();
        for s in SPECIALS {
            v.intern(s);
        }
        v
    }

    /// The v1.2 vocabulary: the specials, then [`WORDS_V12`] (159 entries), the ids of a
    /// corpus loaded from the complete files.
    pub fn v12() -> Self {
        let mut v = Self::new();
        for w in WORDS_V12 {
            v.intern(w);
        }
        v
    }

    /// The id of `word`, adding it if new.
    pub fn intern(&mut self, word: &str) -> u32 {
        if let Some(&id) = self.ids.get(word) {
            return id;
        }
        let id = self.words.len() as u32;
        self.words.push(word.to_string());
        self.ids.insert(word.to_string(), id);
        id
    }

    /// The id of `word`.
    pub fn id(&self, word: &str) -> Option<u32> {
        self.ids.get(word).copied()
    }

    /// The word of `id`.
    pub fn word(&self, id: u32) -> &str {
        &self.words[id as usize]
    }

    /// Number of ids, specials included.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether empty (never, after [`Vocab::new`]).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Number of corpus words (without the specials).
    pub fn word_count(&self) -> usize {
        self.words.len().saturating_sub(SPECIALS.len())
    }

    /// All words by id.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Words joined by spaces.
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .map(|&i| self.word(i))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The same words with the specials first and the rest sorted, and the map old id → new id.
    fn sorted(&self) -> (Vocab, Vec<u32>) {
        let mut rest: Vec<&String> = self
            .words
            .iter()
            .filter(|w| !SPECIALS.contains(&w.as_str()))
            .collect();
        rest.sort();
        let mut v = Vocab::new();
        for w in rest {
            v.intern(w);
        }
        let map = self.words.iter().map(|w| v.ids[w]).collect();
        (v, map)
    }
}

/// The tokens of `text` as the files are read: lower-cased, split on whitespace, a trailing `.`
/// or `?` as its own token.
pub fn words_of(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for raw in text.split_whitespace() {
        let w = raw.to_lowercase();
        let (word, punct) = match w.strip_suffix('.') {
            Some(s) => (s, Some(".")),
            None => match w.strip_suffix('?') {
                Some(s) => (s, Some("?")),
                None => (w.as_str(), None),
            },
        };
        if !word.is_empty() {
            out.push(word.to_string());
        }
        if let Some(p) = punct {
            out.push(p.to_string());
        }
    }
    out
}

fn tokenize(text: &str, vocab: &mut Vocab, out: &mut Vec<u32>) {
    out.extend(words_of(text).iter().map(|w| vocab.intern(w)));
}

impl Vocab {
    /// The ids of `text`'s tokens ([`words_of`]); a word outside the vocabulary is an error
    /// naming it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        words_of(text)
            .into_iter()
            .map(|w| {
                self.id(&w).ok_or(DataError::UnknownWord {
                    size: self.len(),
                    word: w,
                })
            })
            .collect()
    }
}

/// Parses one file's text into stories, interning tokens into `vocab`. `path` names the file in errors.
pub fn parse(text: &str, path: &Path, vocab: &mut Vocab) -> Result<Vec<Story>> {
    let err = |line: usize, message: String| DataError::BabiLine {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut stories: Vec<Story> = Vec::new();
    let mut prev_id = 0u32;
    // Per story: line ID → statement index (None for questions).
    let mut kinds: Vec<Option<usize>> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        let (id_str, rest) = l
            .split_once(' ')
            .ok_or_else(|| err(line, format!("expected `ID text`, found {:?}", truncate(l))))?;
        let id: u32 = id_str.parse().map_err(|_| {
            err(
                line,
                format!("expected a positive line ID, found {:?}", truncate(id_str)),
            )
        })?;
        if id == 1 {
            stories.push(Story::default());
            kinds.clear();
        } else if stories.is_empty() {
            return Err(err(
                line,
                format!("line ID {id}, expected 1 (a file starts with a new story)"),
            ));
        } else if id != prev_id + 1 {
            return Err(err(
                line,
                format!("line ID {id}, expected {} or 1 (a new story)", prev_id + 1),
            ));
        }
        prev_id = id;
        let story = stories.last_mut().expect("a story was started");
        let fields: Vec<&str> = rest.split('\t').collect();
        match fields.len() {
            1 if rest.trim_end().ends_with('?') => {
                return Err(err(
                    line,
                    format!(
                        "question {:?} has no tab-separated answer, expected `question<TAB>answer<TAB>supporting IDs`",
                        truncate(rest)
                    ),
                ));
            }
            1 => {
                let mut toks = Vec::new();
                tokenize(rest, vocab, &mut toks);
                if toks.is_empty() {
                    return Err(err(line, "empty statement, expected words".into()));
                }
                kinds.push(Some(story.statements.len()));
                story.statements.push(toks);
            }
            3 => {
                let mut question = Vec::new();
                tokenize(fields[0], vocab, &mut question);
                let answer: Vec<u32> = fields[1]
                    .split(',')
                    .map(|a| a.trim().to_lowercase())
                    .filter(|a| !a.is_empty())
                    .map(|a| vocab.intern(&a))
                    .collect();
                if question.is_empty() || answer.is_empty() {
                    return Err(err(
                        line,
                        "expected a question and a non-empty answer".into(),
                    ));
                }
                let mut supporting = Vec::new();
                for s in fields[2].split_whitespace() {
                    let sid: u32 = s.parse().map_err(|_| {
                        err(line, format!("supporting fact {s:?}, expected a line ID"))
                    })?;
                    if sid == 0
                        || sid >= id
                        || kinds.get(sid as usize - 1).copied().flatten().is_none()
                    {
                        return Err(err(
                            line,
                            format!("supporting fact {sid}, expected an earlier statement ID"),
                        ));
                    }
                    supporting.push(sid);
                }
                kinds.push(None);
                story.questions.push(Question {
                    context_len: story.statements.len(),
                    question,
                    answer,
                    supporting,
                    line,
                });
            }
            n => {
                return Err(err(
                    line,
                    format!(
                        "{n} tab-separated fields, expected 1 (statement) or 3 (question, answer, supporting IDs)"
                    ),
                ));
            }
        }
    }
    if stories.is_empty() {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(stories)
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Longest part of a word an error message shows, characters.
const SHOWN_WORD_CHARS: usize = 40;

/// A word as error messages show it: control characters escaped (`\0`, `\u{1b}`), and cut
/// after 40 characters with the full length named, so that a hostile file cannot flood or
/// garble the terminal.
pub fn quote_word(word: &str) -> String {
    let mut out = String::new();
    for c in word.chars().take(SHOWN_WORD_CHARS) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    let len = word.chars().count();
    if len > SHOWN_WORD_CHARS {
        out.push_str(&format!("… ({len} characters)"));
    }
    out
}

/// The tokens of one line of a bAbI file as [`parse`] reads them (the line ID and supporting
/// IDs left out); empty for a line that does not parse.
fn line_words(line: &str) -> Vec<String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let Some((_, rest)) = line.split_once(' ') else {
        return Vec::new();
    };
    let fields: Vec<&str> = rest.split('\t').collect();
    let mut words = words_of(fields[0]);
    if let Some(answer) = fields.get(1) {
        words.extend(
            answer
                .split(',')
                .map(|a| a.trim().to_lowercase())
                .filter(|a| !a.is_empty()),
        );
    }
    words
}

/// Parses one file's bytes ([`parse`] after checking they are UTF-8). `path` names the file in errors.
pub fn parse_bytes(bytes: &[u8], path: &Path, vocab: &mut Vocab) -> Result<Vec<Story>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        DataError::BabiLine {
            path: path.to_path_buf(),
            line,
            message: "invalid UTF-8, expected ASCII text".into(),
        }
    })?;
    parse(text, path, vocab)
}

/// Reads and parses one file.
pub fn load_file(path: &Path, vocab: &mut Vocab) -> Result<Vec<Story>> {
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::MissingFile {
                path: path.to_path_buf(),
                expected: "a bAbI task file".into(),
            }
        } else {
            DataError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    parse_bytes(&bytes, path, vocab)
}

/// Number of questions in `stories`.
pub fn question_count(stories: &[Story]) -> usize {
    stories.iter().map(|s| s.questions.len()).sum()
}

/// Number of stories without a question (they give no training sequence).
pub fn stories_without_questions(stories: &[Story]) -> usize {
    stories.iter().filter(|s| s.questions.is_empty()).count()
}

/// One task's train and test stories.
#[derive(Clone, Debug)]
pub struct TaskData {
    /// Task number 1..=20.
    pub task: u8,
    /// Training stories.
    pub train: Vec<Story>,
    /// Test stories.
    pub test: Vec<Story>,
    /// The file the training stories came from (differs from the expected one after a fallback).
    pub train_path: PathBuf,
}

/// All 20 tasks of one variant, with one vocabulary.
#[derive(Clone, Debug)]
pub struct BabiCorpus {
    /// Which set.
    pub variant: Variant,
    /// Tasks 1..=20 in order.
    pub tasks: Vec<TaskData>,
    /// The sorted vocabulary; every token id in `tasks` indexes it.
    pub vocab: Vocab,
    /// Visible warnings, e.g. the en-10k qa3 fallback; callers should print them.
    pub warnings: Vec<String>,
}

/// A word sequence for joint training.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequence {
    /// Task number 1..=20.
    pub task: u8,
    /// Context, question and answer tokens.
    pub tokens: Vec<u32>,
    /// True on answer tokens.
    pub answer_mask: Vec<bool>,
}

impl Sequence {
    /// `(inputs, targets, loss_mask)`: `tokens[..n−1]`, `tokens[1..]` and `answer_mask[1..]`.
    pub fn shifted(&self) -> (&[u32], &[u32], &[bool]) {
        let n = self.tokens.len();
        (
            &self.tokens[..n - 1],
            &self.tokens[1..],
            &self.answer_mask[1..],
        )
    }
}

impl BabiCorpus {
    /// Loads `root/<variant>/` (root is the `tasks_1-20_v1-2` folder). A missing en-10k training file falls
    /// back to the `en` one (1,000 questions) with a warning in [`BabiCorpus::warnings`]; a complete copy is
    /// used when present.
    pub fn load(root: &Path, variant: Variant) -> Result<Self> {
        let dir = root.join(variant.dir_name());
        if !dir.is_dir() {
            return Err(DataError::MissingDir {
                path: dir,
                expected: "the bAbI tasks_1-20_v1-2 folder with en/ and en-10k/ inside".into(),
            });
        }
        let mut vocab = Vocab::new();
        let mut tasks = Vec::with_capacity(20);
        let mut warnings = Vec::new();
        for task in 1..=20u8 {
            let mut train_path = task_path(root, variant, task, Split::Train);
            if variant == Variant::En10k && !train_path.exists() {
                let fallback = task_path(root, Variant::En, task, Split::Train);
                if fallback.exists() {
                    warnings.push(format!(
                        "{} is missing; using {} instead (1,000 training questions instead of 10,000)",
                        train_path.display(),
                        fallback.display()
                    ));
                    train_path = fallback;
                }
            }
            let train = load_file(&train_path, &mut vocab)?;
            let test = load_file(&task_path(root, variant, task, Split::Test), &mut vocab)?;
            tasks.push(TaskData {
                task,
                train,
                test,
                train_path,
            });
        }
        let (sorted, map) = vocab.sorted();
        for t in &mut tasks {
            for s in t.train.iter_mut().chain(t.test.iter_mut()) {
                for st in &mut s.statements {
                    st.iter_mut().for_each(|x| *x = map[*x as usize]);
                }
                for q in &mut s.questions {
                    q.question
                        .iter_mut()
                        .chain(q.answer.iter_mut())
                        .for_each(|x| *x = map[*x as usize]);
                }
            }
        }
        Ok(Self {
            variant,
            tasks,
            vocab: sorted,
            warnings,
        })
    }

    /// Checks that every word of the corpus is in `vocab` (e.g. [`Vocab::v12`], which the
    /// models are built for); the error names the first file and line holding a word outside
    /// it. `root` is the folder the corpus was loaded from.
    pub fn check_vocab(&self, root: &Path, vocab: &Vocab) -> Result<()> {
        let Some(word) = self.vocab.words().iter().find(|w| vocab.id(w).is_none()) else {
            return Ok(());
        };
        for t in &self.tasks {
            let test = task_path(root, self.variant, t.task, Split::Test);
            for path in [&t.train_path, &test] {
                let text = std::fs::read(path).map_err(|source| DataError::Io {
                    path: path.clone(),
                    source,
                })?;
                let text = String::from_utf8_lossy(&text);
                if let Some(line) = text.lines().position(|l| line_words(l).contains(word)) {
                    return Err(DataError::WordOutsideVocabulary {
                        path: path.clone(),
                        line: line + 1,
                        word: word.clone(),
                        size: vocab.len(),
                    });
                }
            }
        }
        Err(DataError::UnknownWord {
            word: word.clone(),
            size: vocab.len(),
        })
    }

    /// Task `task` (1..=20).
    pub fn task(&self, task: u8) -> &TaskData {
        &self.tasks[task as usize - 1]
    }

    /// The stories of a task and split.
    pub fn stories(&self, task: u8, split: Split) -> &[Story] {
        let t = self.task(task);
        match split {
            Split::Train => &t.train,
            Split::Test => &t.test,
        }
    }

    /// The joint-training sequences of one task and split, one per question, in file order.
    pub fn sequences(&self, task: u8, split: Split) -> Vec<Sequence> {
        self.stories(task, split)
            .iter()
            .flat_map(|s| s.questions.iter().map(move |q| encode(task, s, q)))
            .collect()
    }

    /// The story sequences of one task and split, one per story with a question, in file order
    /// ([`encode_story`]).
    pub fn story_sequences(&self, task: u8, split: Split) -> Vec<Sequence> {
        self.stories(task, split)
            .iter()
            .filter(|s| !s.questions.is_empty())
            .map(|s| encode_story(task, s))
            .collect()
    }

    /// All tasks' sequences of a split, task by task (shuffling is the training loop's business).
    pub fn joint_sequences(&self, split: Split) -> Vec<Sequence> {
        (1..=20).flat_map(|t| self.sequences(t, split)).collect()
    }
}

/// Encodes one question of a story as a [`Sequence`].
pub fn encode(task: u8, story: &Story, q: &Question) -> Sequence {
    let mut tokens: Vec<u32> = story.statements[..q.context_len]
        .iter()
        .flatten()
        .copied()
        .collect();
    tokens.extend_from_slice(&q.question);
    let n = tokens.len();
    tokens.extend_from_slice(&q.answer);
    let mut answer_mask = vec![false; tokens.len()];
    answer_mask[n..].iter_mut().for_each(|m| *m = true);
    Sequence {
        task,
        tokens,
        answer_mask,
    }
}

/// Encodes a whole story as one [`Sequence`]: its statements and questions in file order, each
/// question followed by its answer words (`answer_mask` true on them); statements after the last
/// question are left out.
pub fn encode_story(task: u8, story: &Story) -> Sequence {
    let (mut tokens, mut answer_mask) = (Vec::new(), Vec::new());
    let mut read = 0;
    for q in &story.questions {
        for st in &story.statements[read..q.context_len] {
            tokens.extend_from_slice(st);
        }
        read = read.max(q.context_len);
        tokens.extend_from_slice(&q.question);
        answer_mask.resize(tokens.len(), false);
        tokens.extend_from_slice(&q.answer);
        answer_mask.resize(tokens.len(), true);
    }
    Sequence {
        task,
        tokens,
        answer_mask,
    }
}

/// The token ranges of a sequence's answers: its maximal runs of `answer_mask` (one per question,
/// as a question's words stand between two answers).
pub fn answer_spans(mask: &[bool]) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, &m) in mask.iter().chain([&false]).enumerate() {
        match (m, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                spans.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "1 Mary moved to the bathroom.\n2 John went to the hallway.\n3 Where is Mary? \tbathroom\t1\n\
                          1 Sandra got the apple.\n2 What is Sandra carrying?\tapple,milk\t1\n";

    #[test]
    fn the_v12_vocabulary_is_sorted_and_complete() {
        let v = Vocab::v12();
        assert_eq!(v.len(), 159);
        assert!(WORDS_V12.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(v.id("<pad>"), Some(PAD));
        assert_eq!(v.word(3), "a");
    }

    #[test]
    fn parse_and_encode() {
        let mut v = Vocab::new();
        let stories = parse(SAMPLE, Path::new("t.txt"), &mut v).unwrap();
        assert_eq!(stories.len(), 2);
        assert_eq!(question_count(&stories), 2);
        let q = &stories[0].questions[0];
        assert_eq!(v.decode(&q.question), "where is mary ?");
        assert_eq!(
            v.decode(&stories[0].statements[0]),
            "mary moved to the bathroom ."
        );
        assert_eq!(
            (q.context_len, q.supporting.clone(), q.line),
            (2, vec![1], 3)
        );
        assert_eq!(
            v.encode("Where is Mary?").unwrap(),
            q.question,
            "encode reads text as the parser does"
        );
        let e = v.encode("where is bob ?").unwrap_err().to_string();
        assert!(e.contains("`bob`"), "{e}");
        let q2 = &stories[1].questions[0];
        assert_eq!(v.decode(&q2.answer), "apple milk");
        let s = encode(2, &stories[1], q2);
        assert_eq!(
            v.decode(&s.tokens),
            "sandra got the apple . what is sandra carrying ? apple milk"
        );
        assert_eq!(s.answer_mask.iter().filter(|&&m| m).count(), 2);
        assert!(s.answer_mask[s.tokens.len() - 2] && !s.answer_mask[s.tokens.len() - 3]);
        let (i, t, m) = s.shifted();
        assert_eq!(
            (i.len(), t.len(), m.len()),
            (s.tokens.len() - 1, s.tokens.len() - 1, s.tokens.len() - 1)
        );
        let (sorted, _) = v.sorted();
        assert_eq!(&sorted.words()[..4], ["<pad>", ".", "?", "apple"]);
    }

    /// A story sequence holds the statements and questions in file order, each answer right
    /// after its question, and its answer spans are the questions' answers.
    #[test]
    fn a_story_is_read_once_with_every_answer_in_place() {
        let text = "1 Mary moved to the bathroom.\n2 Where is Mary? \tbathroom\t1\n\
                    3 John went to the hallway.\n4 Sandra got the apple.\n\
                    5 What is Sandra carrying?\tapple,milk\t4\n6 Where is John?\thallway\t3\n\
                    7 Mary left.\n";
        let mut v = Vocab::new();
        let stories = parse(text, Path::new("t.txt"), &mut v).unwrap();
        let s = encode_story(7, &stories[0]);
        assert_eq!(s.task, 7);
        assert_eq!(
            v.decode(&s.tokens),
            "mary moved to the bathroom . where is mary ? bathroom \
             john went to the hallway . sandra got the apple . what is sandra carrying ? apple milk \
             where is john ? hallway"
        );
        assert_eq!(s.answer_mask.len(), s.tokens.len());
        let spans = answer_spans(&s.answer_mask);
        let answers: Vec<String> = spans
            .iter()
            .map(|r| v.decode(&s.tokens[r.clone()]))
            .collect();
        assert_eq!(answers, ["bathroom", "apple milk", "hallway"]);
        assert_eq!(spans[0], 10..11);
        // The last question's answer ends the sequence; the replayed questions hold the same answers.
        assert_eq!(spans[2].end, s.tokens.len());
        for (q, span) in stories[0].questions.iter().zip(&spans) {
            let one = encode(7, &stories[0], q);
            assert_eq!(
                one.tokens[one.tokens.len() - span.len()..],
                s.tokens[span.clone()]
            );
        }
        assert!(answer_spans(&[]).is_empty());
        assert_eq!(answer_spans(&[true, false, true, true]), [0..1, 2..4]);
    }

    #[test]
    fn malformed_lines_name_file_line_and_expectation() {
        let cases = [
            (
                "1 Mary moved.\nx John went.\n",
                2,
                "expected a positive line ID",
            ),
            ("1 Mary moved.\n3 John went.\n", 2, "expected 2 or 1"),
            ("2 Mary moved.\n", 1, "expected 1 (a file starts"),
            (
                "1 Mary moved.\n2 Where?\tbathroom\n",
                2,
                "expected 1 (statement) or 3",
            ),
            (
                "1 Mary moved.\n2 Where?\tbathroom\t5\n",
                2,
                "expected an earlier statement ID",
            ),
            (
                "1 Mary moved.\n2 Where?\tbathroom\t2\n",
                2,
                "expected an earlier statement ID",
            ),
            (
                "1 Mary moved.\n2 Where?\tbathroom\tx\n",
                2,
                "expected a line ID",
            ),
            ("1 Mary moved.\n2 Where?\t\t1\n", 2, "non-empty answer"),
            ("1Mary\n", 1, "expected `ID text`"),
            ("\n", 1, "expected `ID text`"),
        ];
        for (text, line, needle) in cases {
            let e = parse(text, Path::new("d/qa1.txt"), &mut Vocab::new())
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("d/qa1.txt:{line}: ")) && e.contains(needle),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn task_names() {
        assert_eq!(task_by_name("qa3").unwrap(), 3);
        assert_eq!(task_by_name("20").unwrap(), 20);
        assert_eq!(task_by_name("qa8_lists-sets").unwrap(), 8);
        for bad in ["qa0", "21", "qa21", "lists", ""] {
            let e = task_by_name(bad).unwrap_err().to_string();
            assert!(
                e.contains("unknown bAbI task") && e.contains("expected"),
                "{e}"
            );
        }
    }

    #[test]
    fn missing_dir_and_file() {
        let e = BabiCorpus::load(Path::new("/nonexistent/babi"), Variant::En)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/babi/en") && e.contains("expected"),
            "{e}"
        );
        let e = load_file(Path::new("/nonexistent/qa1.txt"), &mut Vocab::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/qa1.txt"), "{e}");
    }

    #[test]
    fn question_without_answer_is_an_error_naming_file_and_line() {
        for text in [
            "1 Mary moved.\n2 Where is Mary?\n",
            "1 Mary moved.\n2 Where is Mary? \n",
            "1 Mary moved.\n2 Where is Mary?\r\n",
        ] {
            let e = parse(text, Path::new("d/qa1_train.txt"), &mut Vocab::new())
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("d/qa1_train.txt:2: ") && e.contains("no tab-separated answer"),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn empty_file_is_an_error_naming_the_file() {
        let e = parse("", Path::new("d/qa2_test.txt"), &mut Vocab::new()).unwrap_err();
        assert!(matches!(e, DataError::EmptyFile { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "d/qa2_test.txt: empty bAbI task file (expected stories of `ID text` lines)"
        );
        let d = std::env::temp_dir().join(format!("mg-data-babi-empty-{}", std::process::id()));
        std::fs::write(&d, "").unwrap();
        let e = load_file(&d, &mut Vocab::new()).unwrap_err().to_string();
        assert!(
            e.contains(&d.display().to_string()) && e.contains("empty"),
            "{e}"
        );
        let _ = std::fs::remove_file(&d);
    }

    #[test]
    fn stories_without_questions_are_kept_and_counted() {
        let text =
            "1 Mary moved.\n2 John went.\n1 Sandra left.\n2 Where is Sandra?\tx\t1\n1 Bill ran.\n";
        let stories = parse(text, Path::new("t"), &mut Vocab::new()).unwrap();
        assert_eq!(stories.len(), 3);
        assert_eq!(question_count(&stories), 1);
        assert_eq!(stories_without_questions(&stories), 2);
        assert_eq!(stories_without_questions(&stories[1..2]), 0);
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let e = parse_bytes(
            b"1 Mary moved.\n2 J\xffhn.\n",
            Path::new("t"),
            &mut Vocab::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("t:2: ") && e.contains("UTF-8"), "{e}");
    }
}

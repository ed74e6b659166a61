//! Property tests of the IDX reader and the bAbI parser: arbitrary bytes, and the fixture files
//! truncated, with bytes flipped, inserted or removed, never panic; the result is an error that names
//! the file, or a value that holds the readers' invariants.

use std::path::Path;
use std::sync::OnceLock;

use mg_data::babi::{self, Story, Vocab};
use mg_data::mnist::{self, PIXELS};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// One edit of a byte string.
#[derive(Clone, Debug)]
enum Mutation {
    Truncate(Index),
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
}

fn mutation(
    insert: impl Strategy<Value = u8> + Clone + 'static,
) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<Index>(), vec(insert, 1..12)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), 1..64usize).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len) };
    match m {
        Mutation::Truncate(i) => bytes.truncate(at(i, bytes.len() + 1)),
        Mutation::Flip(i, x) if !bytes.is_empty() => {
            let k = at(i, bytes.len());
            bytes[k] ^= x;
        }
        Mutation::Flip(..) => {}
        Mutation::Insert(i, b) => {
            let k = at(i, bytes.len() + 1);
            bytes.splice(k..k, b.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let k = at(i, bytes.len() + 1);
            bytes.drain(k..(k + n).min(bytes.len()));
        }
    }
}

/// The four MNIST fixtures, gzip'd and raw.
fn mnist_fixtures() -> &'static [(&'static str, Vec<u8>)] {
    static FILES: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(read_mnist_fixtures)
}

fn read_mnist_fixtures() -> Vec<(&'static str, Vec<u8>)> {
    let dir = crate::fixtures().join("mnist");
    let mut out = Vec::new();
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        let gz = std::fs::read(dir.join(format!("{name}.gz"))).unwrap();
        let raw = mnist::decode_maybe_gzip(gz.clone(), Path::new(name)).unwrap();
        out.push((name, gz));
        out.push((name, raw));
    }
    out
}

/// Decodes and parses `bytes` as both kinds of IDX file: each result is valid or an error naming `path`.
fn check_idx(bytes: Vec<u8>, path: &Path) -> Result<(), TestCaseError> {
    let named = |e: mg_data::DataError| {
        let msg = e.to_string();
        prop_assert!(msg.contains(&path.display().to_string()), "{msg}");
        Ok(())
    };
    let bytes = match mnist::decode_maybe_gzip(bytes, path) {
        Ok(b) => b,
        Err(e) => return named(e),
    };
    match mnist::parse_images(&bytes, path) {
        Ok((n, pixels)) => {
            prop_assert_eq!(pixels.len(), n * PIXELS);
            prop_assert_eq!(bytes.len(), 16 + n * PIXELS);
        }
        Err(e) => named(e)?,
    }
    match mnist::parse_labels(&bytes, path) {
        Ok(labels) => {
            prop_assert_eq!(bytes.len(), 8 + labels.len());
            prop_assert!(labels.iter().all(|&l| l <= 9));
        }
        Err(e) => named(e)?,
    }
    Ok(())
}

/// Five bAbI fixture files of different tasks.
fn babi_fixtures() -> &'static [Vec<u8>] {
    static FILES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FILES.get_or_init(read_babi_fixtures)
}

fn read_babi_fixtures() -> Vec<Vec<u8>> {
    let dir = crate::fixtures().join("babi/tasks_1-20_v1-2/en");
    [
        "qa1_single-supporting-fact_train.txt",
        "qa3_three-supporting-facts_test.txt",
        "qa8_lists-sets_test.txt",
        "qa19_path-finding_train.txt",
        "qa20_agents-motivations_test.txt",
    ]
    .iter()
    .map(|name| std::fs::read(dir.join(name)).unwrap())
    .collect()
}

/// Parses `bytes`: the stories are consistent with the vocabulary and encode, or the error names the
/// file (and a line that exists).
fn check_babi(bytes: &[u8]) -> Result<(), TestCaseError> {
    let path = Path::new("dir/qa_fuzz.txt");
    let mut vocab = Vocab::new();
    match babi::parse_bytes(bytes, path, &mut vocab) {
        Ok(stories) => {
            prop_assert!(!stories.is_empty());
            let lines = bytes.split(|&b| b == b'\n').count();
            let mut last_line = 0;
            for s in &stories {
                check_story(s, &vocab, lines, &mut last_line)?;
            }
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(msg.starts_with("dir/qa_fuzz.txt"), "{msg}");
            if let mg_data::DataError::BabiLine { line, .. } = e {
                prop_assert!(
                    line >= 1 && line <= bytes.split(|&b| b == b'\n').count(),
                    "{msg}"
                );
            }
        }
    }
    Ok(())
}

fn check_story(
    s: &Story,
    vocab: &Vocab,
    lines: usize,
    last_line: &mut usize,
) -> Result<(), TestCaseError> {
    let n = vocab.len() as u32;
    for st in &s.statements {
        prop_assert!(!st.is_empty() && st.iter().all(|&t| t < n));
    }
    for q in &s.questions {
        prop_assert!(!q.question.is_empty() && !q.answer.is_empty());
        prop_assert!(q.question.iter().chain(&q.answer).all(|&t| t < n));
        prop_assert!(q.context_len <= s.statements.len());
        prop_assert!(q.line > *last_line && q.line <= lines);
        *last_line = q.line;
        let seq = babi::encode(1, s, q);
        let answers = seq.answer_mask.iter().filter(|&&m| m).count();
        prop_assert_eq!(answers, q.answer.len());
        let (inputs, targets, mask) = seq.shifted();
        prop_assert!(inputs.len() == targets.len() && targets.len() == mask.len());
    }
    Ok(())
}

/// The bytes of bAbI files: digits, spaces, tabs, newlines, punctuation and letters.
fn babi_byte() -> impl Strategy<Value = u8> + Clone {
    prop::sample::select(b"0123456789 \t\n\r.?,aZ".to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn idx_arbitrary_bytes(bytes in vec(any::<u8>(), 0..2048)) {
        check_idx(bytes, Path::new("fuzz/arbitrary-idx"))?;
    }

    /// A valid header (images or labels magic, any count and sizes) and arbitrary contents.
    #[test]
    fn idx_valid_header_arbitrary_body(
        images in any::<bool>(),
        count in 0..8u32,
        dims in (0..40u32, 0..40u32),
        body in vec(any::<u8>(), 0..6000),
    ) {
        let mut bytes = if images { mnist::IMAGES_MAGIC } else { mnist::LABELS_MAGIC }
            .to_be_bytes()
            .to_vec();
        bytes.extend(count.to_be_bytes());
        if images {
            bytes.extend(dims.0.to_be_bytes());
            bytes.extend(dims.1.to_be_bytes());
        }
        bytes.extend(body);
        check_idx(bytes, Path::new("fuzz/header-idx"))?;
    }

    #[test]
    fn babi_arbitrary_text(bytes in vec(babi_byte(), 0..300)) {
        check_babi(&bytes)?;
    }

    #[test]
    fn babi_arbitrary_bytes(bytes in vec(any::<u8>(), 0..300)) {
        check_babi(&bytes)?;
    }

    /// A word in an error message: no control character, at most 40 characters of it, and
    /// an ordinary short word as it is.
    #[test]
    fn words_in_messages_are_cut_and_escaped(word in ".{0,120}") {
        let shown = babi::quote_word(&word);
        prop_assert!(!shown.chars().any(char::is_control), "{shown:?}");
        let len = word.chars().count();
        if len > 40 {
            let suffix = format!("… ({len} characters)");
            prop_assert!(shown.ends_with(&suffix), "{shown:?}");
            prop_assert!(shown.chars().count() <= 40 * 10 + suffix.chars().count());
        } else if !word.chars().any(char::is_control) {
            prop_assert_eq!(&shown, &word);
        }
        // Every word outside the vocabulary is refused through the same quoting.
        let e = Vocab::v12().encode(&format!("zz{word}")).err().map(|e| e.to_string());
        if let Some(e) = e {
            prop_assert!(!e.chars().any(char::is_control), "{e:?}");
            prop_assert!(e.len() < 600, "{} bytes", e.len());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn idx_mutated_fixtures(
        file in any::<Index>(),
        mutations in vec(mutation(any::<u8>()), 1..5),
    ) {
        let files = mnist_fixtures();
        let (name, mut bytes) = files[file.index(files.len())].clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check_idx(bytes, Path::new(name))?;
    }

    #[test]
    fn babi_mutated_fixtures(
        file in any::<Index>(),
        mutations in vec(mutation(babi_byte()), 1..5),
    ) {
        let files = babi_fixtures();
        let mut bytes = files[file.index(files.len())].clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check_babi(&bytes)?;
    }
}

/// The unmutated fixtures parse (the mutation tests start from valid files).
#[test]
fn fixtures_are_valid() {
    for (name, bytes) in mnist_fixtures() {
        let raw = mnist::decode_maybe_gzip(bytes.clone(), Path::new(name)).unwrap();
        if name.contains("images") {
            assert!(mnist::parse_images(&raw, Path::new(name)).is_ok());
        } else {
            assert!(mnist::parse_labels(&raw, Path::new(name)).is_ok());
        }
    }
    for bytes in babi_fixtures() {
        assert!(babi::parse_bytes(bytes, Path::new("f"), &mut Vocab::new()).is_ok());
    }
}

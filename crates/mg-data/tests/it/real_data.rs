//! Tests on the full MNIST and bAbI files, found by [`mg_data::locate::real_data`]: run when present,
//! fail when asked for (`MG_DATA_DIR` set, `../shared/data` present, or `CI=true`) and missing, else skip.

use std::path::PathBuf;

use mg_data::babi::{self, BabiCorpus, Split, Variant};
use mg_data::locate::{self, BABI_DIR, MNIST_DIR};

#[track_caller]
fn real(dataset: &str, test: &str) -> Option<PathBuf> {
    locate::real_data(crate::workspace(), dataset).dir_or_skip(test)
}

#[test]
fn mnist_facts() {
    let Some(dir) = real(MNIST_DIR, "mnist_facts") else {
        return;
    };
    let m = mg_data::mnist::load_dir(&dir).expect("MNIST");
    assert_eq!(m.train.len(), 60_000);
    assert_eq!(m.test.len(), 10_000);
    assert_eq!(&m.train.labels()[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(&m.test.labels()[..10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    assert_eq!(
        m.train.class_counts(),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        m.test.class_counts(),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    let img = m.train.image(0);
    assert_eq!(img.len(), 784);
    assert_eq!(*img.iter().max().unwrap(), 255);
    assert_eq!(img[0], 0);
}

#[test]
fn babi_counts_and_vocabulary() {
    let Some(root) = real(BABI_DIR, "babi_counts_and_vocabulary") else {
        return;
    };
    let en = BabiCorpus::load(&root, Variant::En).expect("bAbI en");
    assert!(en.warnings.is_empty());
    for t in 1..=20 {
        for split in [Split::Train, Split::Test] {
            let stories = en.stories(t, split);
            assert_eq!(babi::question_count(stories), 1000, "en qa{t} {split:?}");
            assert_eq!(babi::stories_without_questions(stories), 0);
        }
    }
    assert_eq!(en.vocab.word_count(), 156);
    assert_eq!(en.vocab.len(), 159);
    let ten = BabiCorpus::load(&root, Variant::En10k).expect("bAbI en-10k");
    assert_eq!(ten.vocab, en.vocab);
    // A complete copy has the 10,000-question qa3; the copy with the gap falls back to en's, visibly.
    let qa3_complete = ten.warnings.is_empty();
    for t in 1..=20 {
        let expected = if t == 3 && !qa3_complete {
            1000
        } else {
            10_000
        };
        assert_eq!(
            babi::question_count(ten.stories(t, Split::Train)),
            expected,
            "en-10k qa{t} train"
        );
        assert_eq!(
            babi::question_count(ten.stories(t, Split::Test)),
            1000,
            "en-10k qa{t} test"
        );
    }
    if !qa3_complete {
        assert_eq!(ten.warnings.len(), 1);
        assert!(ten.warnings[0].contains("qa3_three-supporting-facts_train.txt"));
        assert!(
            ten.task(3)
                .train_path
                .ends_with("en/qa3_three-supporting-facts_train.txt")
        );
    }
    // The en-10k test sets equal the en ones.
    assert_eq!(ten.sequences(7, Split::Test), en.sequences(7, Split::Test));
    // qa8 and qa19 have list answers; qa7 answers are number words.
    let v = &en.vocab;
    let multi = |t: u8| {
        en.sequences(t, Split::Train)
            .iter()
            .filter(|s| s.answer_mask.iter().filter(|&&m| m).count() > 1)
            .count()
    };
    assert!(multi(8) > 0 && multi(19) == 1000 && multi(1) == 0);
    let first = &en.sequences(1, Split::Train)[0];
    assert_eq!(
        v.decode(&first.tokens),
        "mary moved to the bathroom . john went to the hallway . where is mary ? bathroom"
    );
    let joint = en.joint_sequences(Split::Train);
    assert_eq!(joint.len(), 20_000);
    // At most 228 statements before a question (qa3).
    let max_ctx = (1..=20)
        .flat_map(|t| {
            en.stories(t, Split::Train)
                .iter()
                .chain(en.stories(t, Split::Test))
        })
        .flat_map(|s| s.questions.iter().map(|q| q.context_len))
        .max();
    assert_eq!(max_ctx, Some(228));
}

//! The readers on the committed fixtures (`tests/fixtures`, built by `scripts/make-fixtures.py`):
//! counts, labels and the vocabulary against the values the script computed on its own
//! (`expected.json`), and the en-10k qa3 fallback.

use std::collections::BTreeSet;

use mg_data::babi::{self, BabiCorpus, Split, Variant};
use mg_data::locate::{BABI_DIR, MNIST_DIR};
use serde_json::Value;

fn expected() -> Value {
    let text = std::fs::read_to_string(crate::fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

#[test]
fn mnist_fixture_counts_labels_and_pixels() {
    let m = mg_data::mnist::load_dir(&crate::fixtures().join(MNIST_DIR)).unwrap();
    let e = &expected()["mnist"];
    for (split, name) in [(&m.train, "train"), (&m.test, "test")] {
        assert_eq!(split.len(), e[name]["count"].as_u64().unwrap() as usize);
        assert_eq!(
            split.class_counts().to_vec(),
            usizes(&e[name]["class_counts"])
        );
        let first: Vec<usize> = split.labels()[..10].iter().map(|&l| l as usize).collect();
        assert_eq!(first, usizes(&e[name]["first_labels"]));
    }
    // The first images of the real files (pixel sums computed from them).
    assert_eq!((m.train.len(), m.test.len()), (200, 100));
    assert_eq!(&m.train.labels()[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    let sum = |img: &[u8]| img.iter().map(|&p| p as u64).sum::<u64>();
    assert_eq!(sum(m.train.image(0)), 27_525);
    assert_eq!(m.train.image(0).iter().filter(|&&p| p > 0).count(), 166);
    assert_eq!(sum(m.test.image(0)), 18_454);
    assert_eq!(
        (0..200).map(|i| sum(m.train.image(i))).sum::<u64>(),
        5_070_120
    );
    assert_eq!(*m.train.image(0).iter().max().unwrap(), 255);
}

#[test]
fn babi_fixture_counts_and_vocabulary_match_the_script() {
    let root = crate::fixtures().join(BABI_DIR);
    let e = expected();
    for variant in [Variant::En, Variant::En10k] {
        let c = BabiCorpus::load(&root, variant).unwrap();
        let ev = &e["babi"][variant.dir_name()];
        for t in 1..=20u8 {
            for split in [Split::Train, Split::Test] {
                let path = babi::task_path(&root, variant, t, split);
                let name = path.file_name().unwrap().to_str().unwrap();
                // en-10k qa3 train is missing: its stories are en's.
                let file = if ev["files"][name].is_null() {
                    &e["babi"]["en"]["files"][name]
                } else {
                    &ev["files"][name]
                };
                let stories = c.stories(t, split);
                assert_eq!(
                    stories.len() as u64,
                    file["stories"].as_u64().unwrap(),
                    "{name}"
                );
                let questions = file["questions"].as_u64().unwrap();
                assert_eq!(babi::question_count(stories) as u64, questions, "{name}");
                assert_eq!(babi::stories_without_questions(stories), 0, "{name}");
                assert_eq!(c.sequences(t, split).len() as u64, questions, "{name}");
            }
        }
        let words: Vec<&str> = ev["vocabulary"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect();
        assert_eq!(&c.vocab.words()[..3], babi::SPECIALS);
        assert_eq!(&c.vocab.words()[3..], words, "{variant:?} vocabulary");
        assert_eq!(c.vocab.len(), words.len() + 3);
    }
}

#[test]
fn en10k_without_qa3_train_falls_back_to_en_with_a_warning() {
    let root = crate::fixtures().join(BABI_DIR);
    let en = BabiCorpus::load(&root, Variant::En).unwrap();
    assert!(en.warnings.is_empty(), "{:?}", en.warnings);
    let ten = BabiCorpus::load(&root, Variant::En10k).unwrap();
    assert_eq!(ten.warnings.len(), 1, "{:?}", ten.warnings);
    let w = &ten.warnings[0];
    assert!(
        w.contains("en-10k/qa3_three-supporting-facts_train.txt is missing")
            && w.contains("en/qa3_three-supporting-facts_train.txt instead"),
        "{w}"
    );
    assert!(
        ten.task(3)
            .train_path
            .ends_with("en/qa3_three-supporting-facts_train.txt")
    );
    let decode = |c: &BabiCorpus, t, s| -> Vec<String> {
        c.sequences(t, s)
            .iter()
            .map(|q| c.vocab.decode(&q.tokens))
            .collect()
    };
    assert_eq!(decode(&ten, 3, Split::Train), decode(&en, 3, Split::Train));
    for t in 1..=20 {
        // Test sets are the same; en's train stories are the first of en-10k's.
        assert_eq!(
            decode(&ten, t, Split::Test),
            decode(&en, t, Split::Test),
            "qa{t}"
        );
        let (a, b) = (decode(&en, t, Split::Train), decode(&ten, t, Split::Train));
        assert_eq!(a[..], b[..a.len()], "qa{t}");
        assert!(t == 3 || b.len() > a.len(), "qa{t}");
    }
}

#[test]
fn babi_fixture_sequences() {
    let root = crate::fixtures().join(BABI_DIR);
    let en = BabiCorpus::load(&root, Variant::En).unwrap();
    let v = &en.vocab;
    let first = &en.sequences(1, Split::Train)[0];
    assert_eq!(
        v.decode(&first.tokens),
        "mary moved to the bathroom . john went to the hallway . where is mary ? bathroom"
    );
    let answers = |t: u8, s: Split| -> BTreeSet<usize> {
        en.sequences(t, s)
            .iter()
            .map(|q| q.answer_mask.iter().filter(|&&m| m).count())
            .collect()
    };
    // qa19 answers are two directions; qa8 lists have one or more items; qa1 one word.
    assert_eq!(answers(19, Split::Train), BTreeSet::from([2]));
    assert!(answers(8, Split::Test).contains(&2));
    assert_eq!(answers(1, Split::Train), BTreeSet::from([1]));
    // qa7 answers are number words.
    for q in en.sequences(7, Split::Train) {
        let answer = v.decode(&q.tokens[q.tokens.len() - 1..]);
        assert!(
            ["none", "one", "two", "three"].contains(&answer.as_str()),
            "{answer}"
        );
    }
    // Every sequence ends with its answer after the question mark.
    let v = &en.vocab;
    for q in en.joint_sequences(Split::Test) {
        let n = q.answer_mask.iter().filter(|&&m| m).count();
        assert_eq!(Some(q.tokens[q.tokens.len() - n - 1]), v.id("?"));
        assert!(q.answer_mask[q.tokens.len() - n..].iter().all(|&m| m));
    }
}

//! Error rates of the tasks whose answers are bit vectors or classes (copy, sort, recall):
//! the count over a fixed test set and the `eval.json` it gives.

use std::ops::Range;
use std::time::Instant;

use serde::Serialize;

use crate::harness::progress::Progress;
use crate::harness::{EvalRequest, Report};

/// What an answer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answers {
    /// A vector of bits, wrong where the logit's sign disagrees with the 0/1 target.
    Bits,
    /// One of this many classes, wrong where the largest logit is not the target's.
    Classes(usize),
}

/// `eval.json` of a copy, sort or recall run.
#[derive(Serialize, Debug, Clone)]
pub struct ErrorReport {
    /// Time step of the evaluated checkpoint.
    pub time_step: u64,
    /// Test sequences.
    pub sequences: usize,
    /// Seed of the test set.
    pub seed: u64,
    /// The headline error: `bit_error` for bits, `class_error` for classes.
    pub error: f64,
    /// Bits: wrong output bits over all scored bits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bit_error: Option<f64>,
    /// Classes: wrong classes over all answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_error: Option<f64>,
    /// Sequences with at least one wrong bit or class.
    pub sequence_error: f64,
    /// Error of guessing uniformly at random: 0.5 per bit, 0.9 among 10 classes.
    pub chance_error: f64,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl Report for ErrorReport {
    fn lines(&self) -> Vec<String> {
        let what = if self.bit_error.is_some() {
            "bit error"
        } else {
            "classification error"
        };
        vec![
            format!(
                "checkpoint at time step {}, {} test sequences (seed {:#x}), {:.1} s",
                self.time_step, self.sequences, self.seed, self.seconds
            ),
            format!(
                "  {what} {:.4} (chance {:.2})  sequences with an error {:.4}",
                self.error, self.chance_error, self.sequence_error
            ),
        ]
    }
}

/// Wrong answers counted sequence by sequence.
#[derive(Debug)]
pub struct ErrorCount {
    answers: Answers,
    wrong: usize,
    total: usize,
    in_sequence: usize,
    wrong_sequences: usize,
}

impl ErrorCount {
    /// Counts one answer of the current sequence: bit logits against 0/1 targets
    /// ([`Answers::Bits`]), or class logits against the class `targets[0]`.
    pub fn answer(&mut self, logits: &[f32], targets: &[f32]) {
        let wrong = match self.answers {
            Answers::Bits => logits
                .iter()
                .zip(targets)
                .filter(|(l, y)| (**l > 0.0) != (**y > 0.5))
                .count(),
            Answers::Classes(_) => usize::from(argmax(logits) as f32 != targets[0]),
        };
        self.wrong += wrong;
        self.total += match self.answers {
            Answers::Bits => logits.len(),
            Answers::Classes(_) => 1,
        };
        self.in_sequence += wrong;
    }

    /// Ends the current sequence.
    pub fn end_sequence(&mut self) {
        self.wrong_sequences += usize::from(self.in_sequence > 0);
        self.in_sequence = 0;
    }

    /// Wrong bits or classes over all counted.
    pub fn error(&self) -> f64 {
        self.wrong as f64 / self.total.max(1) as f64
    }
}

/// Scores the test set of `request` in batches of at most `batch` sequences: `score` counts
/// the sequences of a range into the count; a progress bar shows the error so far.
pub fn score_test_set(
    request: &EvalRequest,
    seed: u64,
    answers: Answers,
    batch: usize,
    mut score: impl FnMut(Range<usize>, &mut ErrorCount) -> anyhow::Result<()>,
) -> anyhow::Result<ErrorReport> {
    let start = Instant::now();
    let n = request.sequences;
    let mut bar = Progress::new(n as u64, "sequences", request.show_progress);
    let mut count = ErrorCount {
        answers,
        wrong: 0,
        total: 0,
        in_sequence: 0,
        wrong_sequences: 0,
    };
    for first in (0..n).step_by(batch.max(1)) {
        let end = (first + batch.max(1)).min(n);
        score(first..end, &mut count)?;
        bar.set_position(end as u64);
        bar.report(format!("error {:.4}", count.error()));
    }
    bar.clear();
    let error = count.error();
    let bits = answers == Answers::Bits;
    Ok(ErrorReport {
        time_step: request.time_step,
        sequences: n,
        seed,
        error,
        bit_error: bits.then_some(error),
        class_error: (!bits).then_some(error),
        sequence_error: count.wrong_sequences as f64 / n.max(1) as f64,
        chance_error: match answers {
            Answers::Bits => 0.5,
            Answers::Classes(k) => (k.max(1) - 1) as f64 / k.max(1) as f64,
        },
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Index of the largest value (the first of equals; 0 for an empty or all-NaN row).
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(sequences: usize) -> EvalRequest {
        EvalRequest {
            sequences,
            time_step: 7,
            show_progress: false,
        }
    }

    /// Bits are wrong where the logit's sign disagrees with the target; a sequence is wrong
    /// when any of its answers is; batches cover the test set once, the last one short.
    #[test]
    fn bits_and_sequences_are_counted_over_the_test_set() {
        let mut ranges = Vec::new();
        let report = score_test_set(&request(5), 3, Answers::Bits, 2, |range, count| {
            for s in range.clone() {
                // Sequence 1 gets one wrong bit of four; the others none.
                let logits = if s == 1 { [1.0, -1.0] } else { [-1.0, 2.0] };
                count.answer(&logits, &[0.0, 1.0]);
                count.answer(&[-0.5, 0.5], &[0.0, 1.0]);
                count.end_sequence();
            }
            ranges.push(range);
            Ok(())
        })
        .unwrap();
        assert_eq!(ranges, [0..2, 2..4, 4..5]);
        assert_eq!(report.bit_error, Some(2.0 / 20.0));
        assert_eq!(report.error, 0.1);
        assert_eq!(report.class_error, None);
        assert_eq!(report.sequence_error, 0.2);
        assert_eq!(
            (report.chance_error, report.time_step, report.seed),
            (0.5, 7, 3)
        );
        assert!(report.lines()[1].contains("bit error 0.1000"));
    }

    #[test]
    fn classes_are_scored_by_the_largest_logit() {
        let report = score_test_set(&request(2), 0, Answers::Classes(10), 8, |range, count| {
            for s in range {
                count.answer(&[0.1, 0.7, 0.2], &[1.0]);
                count.answer(&[0.9, 0.0, 0.9], &[if s == 0 { 0.0 } else { 2.0 }]);
                count.end_sequence();
            }
            Ok(())
        })
        .unwrap();
        // The tie 0.9/0.9 goes to the first class, so sequence 1's second answer is wrong.
        assert_eq!(report.class_error, Some(0.25));
        assert_eq!(report.sequence_error, 0.5);
        assert_eq!(report.chance_error, 0.9);
        assert!(report.lines()[1].contains("classification error 0.2500"));
        assert_eq!(argmax(&[]), 0);
        assert_eq!(argmax(&[f32::NAN, 1.0, 3.0, 3.0]), 2);
    }

    #[test]
    fn a_failing_batch_stops_the_evaluation() {
        let err = score_test_set(&request(4), 0, Answers::Bits, 2, |_, _| {
            anyhow::bail!("truncated file")
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "truncated file");
    }
}

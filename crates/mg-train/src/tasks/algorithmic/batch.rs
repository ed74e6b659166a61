//! Host-side batches of the algorithmic tasks: the item sequence laid out for the model that
//! reads it (grids for a multigrid model, flat rows for a DNC) and the answers.

use mg_data::mnist::{self, MnistSplit, PixelScale};
use mg_data::recall::{RecallConfig, batch_query, mnist_recall_sample};
use mg_data::sort::{SortConfig, mnist_sort_sample};

use crate::tasks::rows::rows_of;

/// Which task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Priority sort: `len` items, then `len` answers in order.
    Sort,
    /// Associative recall: `len` items and a query, one answer.
    Recall,
}

/// How the model reads the sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Grids: one pyramid per item (`input_levels` levels of `3·2^l` squares).
    Grid,
    /// A DNC: one flat row per step, the items' features and a flag that is 1 on the query
    /// (recall) or answer (sort) steps.
    Flat,
}

/// The items of a sequence.
#[derive(Clone, Debug)]
pub enum Items {
    /// Binary vectors of `dim` bits (sort: with priorities).
    Vectors {
        /// Bits per vector.
        dim: usize,
    },
    /// MNIST digits, read as the pyramid `scales` by a multigrid model.
    Mnist {
        /// The split the sequences draw from.
        split: std::sync::Arc<MnistSplit>,
        /// The pyramid's sides (3, 6, 12, …).
        scales: Vec<usize>,
        /// Pixel scaling.
        pixels: PixelScale,
    },
}

/// One batch of sequences, time-major.
#[derive(Clone, Debug)]
pub struct AlgoBatch {
    /// Sequences.
    pub batch: usize,
    /// Items per sequence.
    pub len: usize,
    /// Answers per sequence (sort: `len`; recall: 1).
    pub answers: usize,
    /// Grid layout: per level, `[len·batch, d, s, s]` items.
    pub items: Vec<Vec<f32>>,
    /// Grid layout, recall: per level, `[batch, d, s, s]` queries.
    pub query: Vec<Vec<f32>>,
    /// Flat layout: `[steps·batch, width]`.
    pub flat: Vec<f32>,
    /// Flat layout: rows per sequence.
    pub flat_steps: usize,
    /// Vectors: `[answers·batch, dim]` target bits; MNIST: empty.
    pub bits: Vec<f32>,
    /// MNIST: `[answers·batch]` target classes; vectors: empty.
    pub labels: Vec<u8>,
    /// Per sequence (picture data): the query index (recall) or the sorted order of the
    /// items (sort, vectors), and the items' priorities (sort, vectors).
    pub meta: Vec<SequenceMeta>,
}

impl AlgoBatch {
    /// Sequences `start..start + count` of the batch, laid out as a batch of their own.
    pub fn shard(&self, start: usize, count: usize) -> AlgoBatch {
        let b = self.batch;
        AlgoBatch {
            batch: count,
            len: self.len,
            answers: self.answers,
            items: self
                .items
                .iter()
                .map(|v| rows_of(v, self.len, b, start, count))
                .collect(),
            query: self
                .query
                .iter()
                .map(|v| rows_of(v, 1, b, start, count))
                .collect(),
            flat: rows_of(&self.flat, self.flat_steps, b, start, count),
            flat_steps: self.flat_steps,
            bits: rows_of(&self.bits, self.answers, b, start, count),
            labels: rows_of(&self.labels, self.answers, b, start, count),
            meta: self.meta[start..start + count].to_vec(),
        }
    }
}

/// What a picture needs to know about one sequence.
#[derive(Clone, Debug, Default)]
pub struct SequenceMeta {
    /// Recall: the queried item.
    pub query_index: usize,
    /// Sort (vectors): the priorities.
    pub priorities: Vec<f32>,
    /// MNIST: the split indices of the items.
    pub images: Vec<usize>,
    /// MNIST: the items' classes.
    pub classes: Vec<u8>,
}

/// Everything that fixes how sequences are drawn and laid out.
#[derive(Clone, Debug)]
pub struct Builder {
    /// Sort or recall.
    pub problem: Problem,
    /// Items per sequence.
    pub len: usize,
    /// The items.
    pub items: Items,
    /// Grid or flat.
    pub layout: Layout,
    /// Recall: one query index per batch (the reference MNIST code) instead of per sequence.
    pub query_per_batch: bool,
}

/// Flat row of one step: the features and the flag.
fn flat_row(out: &mut Vec<f32>, features: &[f32], width: usize, flag: bool) {
    out.extend_from_slice(features);
    out.resize(out.len() + width - 1 - features.len(), 0.0);
    out.push(if flag { 1.0 } else { 0.0 });
}

impl Builder {
    /// Answers per sequence.
    pub fn answers(&self) -> usize {
        match self.problem {
            Problem::Sort => self.len,
            Problem::Recall => 1,
        }
    }

    /// Time steps of a sequence as the task counts them: the items and then the query step
    /// (recall) or the answer steps (sort).
    pub fn steps(&self) -> usize {
        self.len + self.answers()
    }

    /// Channels of each item grid: the bits (and the priority plane for sort), or 1 image.
    pub fn grid_channels(&self) -> usize {
        match (&self.items, self.problem) {
            (Items::Vectors { .. }, Problem::Sort) => 2,
            _ => 1,
        }
    }

    /// Levels of the item pyramid.
    pub fn input_levels(&self) -> usize {
        match &self.items {
            Items::Vectors { .. } => 1,
            Items::Mnist { scales, .. } => scales.len(),
        }
    }

    /// Features of a flat item: the bits (and the priority), or the 784 pixels.
    fn flat_features(&self) -> usize {
        match (&self.items, self.problem) {
            (Items::Vectors { dim }, Problem::Sort) => dim + 1,
            (Items::Vectors { dim }, Problem::Recall) => *dim,
            (Items::Mnist { .. }, _) => mnist::PIXELS,
        }
    }

    /// Width of a flat row (features and the flag).
    pub fn flat_width(&self) -> usize {
        self.flat_features() + 1
    }

    /// Width of an answer: the bits, or 10 classes.
    pub fn answer_width(&self) -> usize {
        match &self.items {
            Items::Vectors { dim } => *dim,
            Items::Mnist { .. } => 10,
        }
    }

    /// Sequences `first..first + size` of `seed`; `batch_index` picks the shared query.
    pub fn build(&self, seed: u64, first: u64, size: usize, batch_index: u64) -> AlgoBatch {
        let shared_query = self
            .query_per_batch
            .then(|| batch_query(seed, batch_index, self.len));
        let mut seqs: Vec<Sequence> = (0..size as u64)
            .map(|b| self.sequence(seed, first + b))
            .collect();
        if let Some(q) = shared_query {
            seqs.iter_mut().for_each(|s| s.meta.query_index = q);
        }
        self.collate(seqs)
    }

    /// One sequence: items as features (per level for grids), answers.
    fn sequence(&self, seed: u64, index: u64) -> Sequence {
        match (&self.items, self.problem) {
            (Items::Vectors { dim }, Problem::Sort) => {
                let s = SortConfig {
                    len: self.len,
                    dim: *dim,
                }
                .sample(seed, index);
                Sequence {
                    items: (0..self.len)
                        .map(|t| vec![s.vector(t).to_vec(), vec![s.priorities[t]]])
                        .collect(),
                    bits: s.target(),
                    labels: Vec::new(),
                    meta: SequenceMeta {
                        priorities: s.priorities.clone(),
                        ..SequenceMeta::default()
                    },
                }
            }
            (Items::Vectors { dim }, Problem::Recall) => {
                let s = RecallConfig {
                    len: self.len,
                    dim: *dim,
                }
                .sample(seed, index);
                Sequence {
                    items: (0..self.len).map(|t| vec![s.item(t).to_vec()]).collect(),
                    bits: s.items.clone(),
                    labels: Vec::new(),
                    meta: SequenceMeta {
                        query_index: s.query_index,
                        ..SequenceMeta::default()
                    },
                }
            }
            (Items::Mnist { split, .. }, problem) => {
                let (images, classes, labels, query_index) = match problem {
                    Problem::Sort => {
                        let s = mnist_sort_sample(split, self.len, seed, index);
                        (s.indices, s.labels, s.target, 0)
                    }
                    Problem::Recall => {
                        let s = mnist_recall_sample(split, self.len, seed, index);
                        let labels = s.labels.clone();
                        (s.indices, s.labels, labels, s.query_index)
                    }
                };
                Sequence {
                    items: Vec::new(),
                    bits: Vec::new(),
                    labels,
                    meta: SequenceMeta {
                        query_index,
                        images,
                        classes,
                        ..SequenceMeta::default()
                    },
                }
            }
        }
    }

    /// Features of item `t` of a sequence: per grid level (grid layout) or flat.
    fn item_features(&self, s: &Sequence, t: usize) -> Vec<Vec<f32>> {
        match &self.items {
            Items::Vectors { .. } => s.items[t].clone(),
            Items::Mnist {
                split,
                scales,
                pixels,
            } => {
                let image = split.image(s.meta.images[t]);
                match self.layout {
                    Layout::Grid => mnist::pyramid(image, scales, *pixels),
                    Layout::Flat => vec![image.iter().map(|&v| pixels.apply(v)).collect()],
                }
            }
        }
    }

    /// Grid planes of one item at level `l`: each feature part becomes a channel; a vector
    /// fills the 3×3 grid row-major (zeros after its bits), a priority fills its plane.
    fn grid_planes(&self, features: &[Vec<f32>], level: usize, out: &mut Vec<f32>) {
        let side = 3 << level;
        match &self.items {
            Items::Vectors { .. } => {
                let bits = &features[0];
                out.extend_from_slice(bits);
                out.resize(out.len() + 9 - bits.len(), 0.0);
                if let Some(p) = features.get(1) {
                    out.resize(out.len() + 9, p[0]);
                }
            }
            Items::Mnist { .. } => {
                debug_assert_eq!(features[level].len(), side * side);
                out.extend_from_slice(&features[level]);
            }
        }
    }

    fn collate(&self, seqs: Vec<Sequence>) -> AlgoBatch {
        let batch = seqs.len();
        let answers = self.answers();
        let features: Vec<Vec<Vec<Vec<f32>>>> = seqs
            .iter()
            .map(|s| (0..self.len).map(|t| self.item_features(s, t)).collect())
            .collect();
        let mut out = AlgoBatch {
            batch,
            len: self.len,
            answers,
            items: Vec::new(),
            query: Vec::new(),
            flat: Vec::new(),
            flat_steps: self.steps(),
            bits: Vec::new(),
            labels: Vec::new(),
            meta: seqs.iter().map(|s| s.meta.clone()).collect(),
        };
        match self.layout {
            Layout::Grid => {
                for level in 0..self.input_levels() {
                    let mut items = Vec::new();
                    for t in 0..self.len {
                        for f in &features {
                            self.grid_planes(&f[t], level, &mut items);
                        }
                    }
                    out.items.push(items);
                    if self.problem == Problem::Recall {
                        let mut query = Vec::new();
                        for (s, f) in seqs.iter().zip(&features) {
                            self.grid_planes(&f[s.meta.query_index], level, &mut query);
                        }
                        out.query.push(query);
                    }
                }
            }
            Layout::Flat => {
                let width = self.flat_width();
                let none = Vec::new();
                for t in 0..self.steps() {
                    for (s, f) in seqs.iter().zip(&features) {
                        let (row, flag) = if t < self.len {
                            (f[t].concat(), false)
                        } else if self.problem == Problem::Recall {
                            (f[s.meta.query_index].concat(), true)
                        } else {
                            (none.clone(), true)
                        };
                        flat_row(&mut out.flat, &row, width, flag);
                    }
                }
            }
        }
        // Answers, answer-major: row a·batch + b.
        for a in 0..answers {
            for s in &seqs {
                match &self.items {
                    Items::Vectors { dim } => {
                        let k = match self.problem {
                            Problem::Sort => a,
                            Problem::Recall => s.meta.query_index + 1,
                        };
                        out.bits.extend_from_slice(&s.bits[k * dim..(k + 1) * dim]);
                    }
                    Items::Mnist { .. } => {
                        let k = match self.problem {
                            Problem::Sort => a,
                            Problem::Recall => s.meta.query_index + 1,
                        };
                        out.labels.push(s.labels[k]);
                    }
                }
            }
        }
        out
    }
}

/// One drawn sequence before collation.
struct Sequence {
    /// Vectors: per item, its feature parts (bits, then the priority for sort).
    items: Vec<Vec<Vec<f32>>>,
    /// Vectors: sort, the target rows in order; recall, every item (the answer is picked
    /// by the query index, which a shared batch query may change).
    bits: Vec<f32>,
    /// MNIST: sort, the sorted classes; recall, every item's class.
    labels: Vec<u8>,
    meta: SequenceMeta,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(problem: Problem, layout: Layout) -> Builder {
        Builder {
            problem,
            len: 4,
            items: Items::Vectors { dim: 5 },
            layout,
            query_per_batch: false,
        }
    }

    #[test]
    fn recall_grids_hold_the_items_and_the_answer_follows_the_query() {
        let b = builder(Problem::Recall, Layout::Grid).build(7, 0, 3, 0);
        assert_eq!(b.items.len(), 1);
        assert_eq!(b.items[0].len(), 4 * 3 * 9);
        assert_eq!(b.query[0].len(), 3 * 9);
        for s in 0..3 {
            let q = b.meta[s].query_index;
            let item = |t: usize| &b.items[0][(t * 3 + s) * 9..(t * 3 + s) * 9 + 9];
            assert_eq!(&b.query[0][s * 9..s * 9 + 9], item(q));
            assert_eq!(&b.bits[s * 5..s * 5 + 5], &item(q + 1)[..5]);
            assert!(
                item(q)[5..].iter().all(|&v| v == 0.0),
                "padding after the bits"
            );
        }
    }

    #[test]
    fn sort_flat_rows_flag_the_answer_steps() {
        let builder = builder(Problem::Sort, Layout::Flat);
        let b = builder.build(7, 0, 2, 0);
        let width = builder.flat_width();
        assert_eq!(width, 7);
        assert_eq!(b.flat.len(), 8 * 2 * width);
        for t in 0..8 {
            for s in 0..2 {
                let row = &b.flat[(t * 2 + s) * width..(t * 2 + s + 1) * width];
                assert_eq!(row[width - 1], if t >= 4 { 1.0 } else { 0.0 });
                if t >= 4 {
                    assert!(row[..width - 1].iter().all(|&v| v == 0.0));
                } else {
                    assert_eq!(row[5], b.meta[s].priorities[t]);
                }
            }
        }
        // Answer rows are answer-major and sorted by decreasing priority.
        let s = 1;
        let mut order: Vec<usize> = (0..4).collect();
        let p = &b.meta[s].priorities;
        order.sort_by(|&x, &y| p[y].total_cmp(&p[x]));
        for (a, &i) in order.iter().enumerate() {
            let item = &b.flat[(i * 2 + s) * width..(i * 2 + s) * width + 5];
            assert_eq!(&b.bits[(a * 2 + s) * 5..(a * 2 + s) * 5 + 5], item);
        }
    }

    /// A shard of a batch is the batch its sequences would make on their own, in both layouts
    /// and for both problems.
    #[test]
    fn shards_are_the_batches_of_their_sequences() {
        for problem in [Problem::Sort, Problem::Recall] {
            for layout in [Layout::Grid, Layout::Flat] {
                let builder = builder(problem, layout);
                let whole = builder.build(5, 10, 5, 2);
                let shard = whole.shard(2, 2);
                let alone = builder.build(5, 12, 2, 2);
                assert_eq!(shard.batch, 2);
                assert_eq!(shard.items, alone.items, "{problem:?} {layout:?}");
                assert_eq!(shard.query, alone.query);
                assert_eq!(shard.flat, alone.flat);
                assert_eq!(shard.bits, alone.bits);
                assert_eq!(shard.labels, alone.labels);
                let queries =
                    |b: &AlgoBatch| b.meta.iter().map(|m| m.query_index).collect::<Vec<_>>();
                assert_eq!(queries(&shard), queries(&alone));
            }
        }
    }

    #[test]
    fn a_shared_query_is_the_same_across_the_batch() {
        let mut builder = builder(Problem::Recall, Layout::Grid);
        builder.query_per_batch = true;
        let b = builder.build(1, 0, 6, 3);
        assert!(
            b.meta
                .iter()
                .all(|m| m.query_index == b.meta[0].query_index)
        );
    }
}

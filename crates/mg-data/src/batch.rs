//! Batchers: all tensor construction, for any backend. Layouts are NCHW and time-major (row `t·B + b`).

use std::ops::Range;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::babi::Sequence;
use crate::mapping::{Episode, WALL};
use crate::mnist::{MnistSplit, PixelScale, SIDE, resize};
use crate::recall::{MnistRecallSample, RecallSample};
use crate::sort::{MnistSortSample, SortSample};

/// One window of mapping steps for a batch of B episodes over T steps.
#[derive(Debug, Clone)]
pub struct MappingTensors<B: Backend> {
    /// Writer input `[T·B, 4, m, m]`: channels (free one-hot, wall one-hot, location row, location col).
    pub input: Tensor<B, 4>,
    /// Reader query `[T·B, 4, k, k]`: the same encoding with the location channels zero.
    pub query: Tensor<B, 4>,
    /// Ground-truth masks `[T·B, mask_size²]`, row-major in the mask frame.
    pub target: Tensor<B, 2>,
}

fn encode_patch(patch: &[u8], loc: [f32; 2], out: &mut Vec<f32>) {
    out.extend(patch.iter().map(|&v| if v == WALL { 0.0 } else { 1.0 }));
    out.extend(patch.iter().map(|&v| if v == WALL { 1.0 } else { 0.0 }));
    out.extend(std::iter::repeat_n(loc[0], patch.len()));
    out.extend(std::iter::repeat_n(loc[1], patch.len()));
}

/// Tensors of steps `steps` of `episodes` (which must share one config and hold those steps).
///
/// Panics if `episodes` is empty, the configs differ, or a step is out of range.
pub fn mapping_window<B: Backend>(
    episodes: &[impl std::borrow::Borrow<Episode>],
    steps: Range<usize>,
    device: &B::Device,
) -> MappingTensors<B> {
    assert!(!episodes.is_empty(), "mapping_window: no episodes");
    let cfg = episodes[0].borrow().config();
    for e in episodes.iter().map(|e| e.borrow()) {
        assert!(
            e.config() == cfg,
            "mapping_window: episodes have different configs"
        );
        assert!(
            steps.end <= e.len(),
            "mapping_window: steps {steps:?} but an episode has {} steps",
            e.len()
        );
    }
    let (m, k, ms) = (cfg.obs_size, cfg.query_size, cfg.mask_size);
    let rows = steps.len() * episodes.len();
    let mut input = Vec::with_capacity(rows * 4 * m * m);
    let mut query = Vec::with_capacity(rows * 4 * k * k);
    let mut target = vec![0.0f32; rows * ms * ms];
    let mut row = 0;
    for t in steps {
        for e in episodes.iter().map(|e| e.borrow()) {
            encode_patch(&e.observation(t), e.location(t), &mut input);
            encode_patch(&e.query(t), [0.0, 0.0], &mut query);
            for i in e.target_indices(t) {
                target[row * ms * ms + i] = 1.0;
            }
            row += 1;
        }
    }
    MappingTensors {
        input: Tensor::from_data(TensorData::new(input, [rows, 4, m, m]), device),
        query: Tensor::from_data(TensorData::new(query, [rows, 4, k, k]), device),
        target: Tensor::from_data(TensorData::new(target, [rows, ms * ms]), device),
    }
}

/// `[N, 1, h, w]` float images from `N` row-major `h×w` images.
pub fn images_tensor<B: Backend>(
    images: &[Vec<f32>],
    h: usize,
    w: usize,
    device: &B::Device,
) -> Tensor<B, 4> {
    let mut data = Vec::with_capacity(images.len() * h * w);
    for im in images {
        assert_eq!(
            im.len(),
            h * w,
            "images_tensor: image of {} values, expected {h}×{w}",
            im.len()
        );
        data.extend_from_slice(im);
    }
    Tensor::from_data(TensorData::new(data, [images.len(), 1, h, w]), device)
}

/// `[rows, cols]` float tensor from row-major values.
pub fn matrix_tensor<B: Backend>(
    values: Vec<f32>,
    rows: usize,
    cols: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

/// `[N]` integer tensor (class labels, token ids).
pub fn int_tensor<B: Backend>(values: &[i64], device: &B::Device) -> Tensor<B, 1, Int> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
}

/// Priority-sort tensors for B sequences of T vectors.
#[derive(Debug, Clone)]
pub struct SortTensors<B: Backend> {
    /// `[T·B, dim + 1]`: vector then priority, time-major.
    pub input: Tensor<B, 2>,
    /// `[T·B, dim]`: the vectors by decreasing priority, time-major.
    pub target: Tensor<B, 2>,
}

/// Batches priority-sort samples (all of one length and dim).
pub fn sort_batch<B: Backend>(samples: &[SortSample], device: &B::Device) -> SortTensors<B> {
    assert!(!samples.is_empty(), "sort_batch: no samples");
    let (t_len, dim) = (
        samples[0].priorities.len(),
        samples[0].vectors.len() / samples[0].priorities.len(),
    );
    let targets: Vec<Vec<f32>> = samples.iter().map(|s| s.target()).collect();
    let (mut input, mut target) = (Vec::new(), Vec::new());
    for t in 0..t_len {
        for (s, tg) in samples.iter().zip(&targets) {
            assert_eq!(
                s.priorities.len(),
                t_len,
                "sort_batch: sequences of different lengths"
            );
            input.extend(s.input(t));
            target.extend_from_slice(&tg[t * dim..(t + 1) * dim]);
        }
    }
    let rows = t_len * samples.len();
    SortTensors {
        input: matrix_tensor(input, rows, dim + 1, device),
        target: matrix_tensor(target, rows, dim, device),
    }
}

/// Associative-recall tensors for B sequences of N items.
#[derive(Debug, Clone)]
pub struct RecallTensors<B: Backend> {
    /// `[(N + 1)·B, dim]`: the N items then the query, time-major.
    pub input: Tensor<B, 2>,
    /// `[B, dim]`: the item after the query.
    pub target: Tensor<B, 2>,
}

/// Batches recall samples (all of one length and dim).
pub fn recall_batch<B: Backend>(samples: &[RecallSample], device: &B::Device) -> RecallTensors<B> {
    assert!(!samples.is_empty(), "recall_batch: no samples");
    let (n, dim) = (samples[0].len(), samples[0].dim);
    let mut input = Vec::with_capacity((n + 1) * samples.len() * dim);
    for t in 0..=n {
        for s in samples {
            assert_eq!(
                (s.len(), s.dim),
                (n, dim),
                "recall_batch: samples of different shapes"
            );
            input.extend_from_slice(if t < n { s.item(t) } else { s.query() });
        }
    }
    let target = samples
        .iter()
        .flat_map(|s| s.target().iter().copied())
        .collect();
    RecallTensors {
        input: matrix_tensor(input, (n + 1) * samples.len(), dim, device),
        target: matrix_tensor(target, samples.len(), dim, device),
    }
}

/// MNIST recall tensors for B sequences of T images, one tensor per pyramid scale s.
#[derive(Debug, Clone)]
pub struct MnistRecallTensors<B: Backend> {
    /// Per scale, `[T·B, 1, s, s]` time-major.
    pub images: Vec<Tensor<B, 4>>,
    /// Per scale, `[B, 1, s, s]`: the query image.
    pub query: Vec<Tensor<B, 4>>,
    /// `[B]`: class of the image after the query.
    pub target: Tensor<B, 1, Int>,
}

/// Batches MNIST recall samples: images of `split` resized to `scales` (reference 3, 6, 12) and scaled.
pub fn mnist_recall_batch<B: Backend>(
    split: &MnistSplit,
    samples: &[MnistRecallSample],
    scales: &[usize],
    pixels: PixelScale,
    device: &B::Device,
) -> MnistRecallTensors<B> {
    assert!(!samples.is_empty(), "mnist_recall_batch: no samples");
    let t_len = samples[0].indices.len();
    let mut images = Vec::new();
    let mut query = Vec::new();
    for &s in scales {
        let mut seq = Vec::with_capacity(t_len * samples.len());
        for t in 0..t_len {
            for smp in samples {
                seq.push(resize(split.image(smp.indices[t]), s, pixels));
            }
        }
        images.push(images_tensor(&seq, s, s, device));
        let q: Vec<Vec<f32>> = samples
            .iter()
            .map(|smp| resize(split.image(smp.query_image()), s, pixels))
            .collect();
        query.push(images_tensor(&q, s, s, device));
    }
    let target: Vec<i64> = samples.iter().map(|s| s.target() as i64).collect();
    MnistRecallTensors {
        images,
        query,
        target: int_tensor(&target, device),
    }
}

/// MNIST sort tensors.
#[derive(Debug, Clone)]
pub struct MnistSortTensors<B: Backend> {
    /// `[T·B, 1, 28, 28]` time-major.
    pub images: Tensor<B, 4>,
    /// `[T·B]`: the sorted classes, time-major.
    pub target: Tensor<B, 1, Int>,
}

/// Batches MNIST sort samples.
pub fn mnist_sort_batch<B: Backend>(
    split: &MnistSplit,
    samples: &[MnistSortSample],
    pixels: PixelScale,
    device: &B::Device,
) -> MnistSortTensors<B> {
    assert!(!samples.is_empty(), "mnist_sort_batch: no samples");
    let t_len = samples[0].indices.len();
    let mut imgs = Vec::with_capacity(t_len * samples.len());
    let mut target = Vec::with_capacity(t_len * samples.len());
    for t in 0..t_len {
        for s in samples {
            imgs.push(
                split
                    .image(s.indices[t])
                    .iter()
                    .map(|&v| pixels.apply(v))
                    .collect(),
            );
            target.push(s.target[t] as i64);
        }
    }
    MnistSortTensors {
        images: images_tensor(&imgs, SIDE, SIDE, device),
        target: int_tensor(&target, device),
    }
}

/// One bAbI sequence as tensors (batch size 1, as in the paper).
#[derive(Debug, Clone)]
pub struct BabiTensors<B: Backend> {
    /// `[L − 1]` input token ids.
    pub input: Tensor<B, 1, Int>,
    /// `[L − 1]` next-token targets.
    pub target: Tensor<B, 1, Int>,
    /// `[L − 1]` 1.0 where the target is an answer word.
    pub loss_mask: Tensor<B, 1>,
}

/// Tensors of one bAbI sequence ([`Sequence::shifted`]).
pub fn babi_sequence<B: Backend>(seq: &Sequence, device: &B::Device) -> BabiTensors<B> {
    let (i, t, m) = seq.shifted();
    let ids = |v: &[u32]| v.iter().map(|&x| x as i64).collect::<Vec<_>>();
    let mask: Vec<f32> = m.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
    let n = mask.len();
    BabiTensors {
        input: int_tensor(&ids(i), device),
        target: int_tensor(&ids(t), device),
        loss_mask: Tensor::from_data(TensorData::new(mask, [n]), device),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recall::RecallConfig;
    use crate::sort::SortConfig;
    use burn::backend::Flex;

    #[test]
    fn sort_and_recall_layouts() {
        let dev = Default::default();
        let samples: Vec<_> = (0..3).map(|i| SortConfig::default().sample(0, i)).collect();
        let t = sort_batch::<Flex>(&samples, &dev);
        assert_eq!(t.input.dims(), [60, 10]);
        assert_eq!(t.target.dims(), [60, 9]);
        let tgt = t.target.to_data().to_vec::<f32>().unwrap();
        // Row 1·3 + 2 = (t = 1, b = 2).
        assert_eq!(&tgt[5 * 9..6 * 9], &samples[2].target()[9..18]);
        let r = RecallConfig::default().batch(0, 0, 4, crate::mapping::QueryPer::Sample);
        let rt = recall_batch::<Flex>(&r, &dev);
        assert_eq!(rt.input.dims(), [44, 9]);
        assert_eq!(rt.target.dims(), [4, 9]);
        let inp = rt.input.to_data().to_vec::<f32>().unwrap();
        assert_eq!(&inp[(40 + 1) * 9..(40 + 2) * 9], r[1].query());
        assert_eq!(
            &rt.target.to_data().to_vec::<f32>().unwrap()[9..18],
            r[1].target()
        );
    }

    #[test]
    fn mnist_batches() {
        let dev = Default::default();
        let labels: Vec<u8> = (0..30).map(|i| (i % 10) as u8).collect();
        let images: Vec<u8> = (0..30 * 784).map(|i| (i % 255) as u8).collect();
        let split = MnistSplit::from_parts(images, labels);
        let rs: Vec<_> = (0..2)
            .map(|i| crate::recall::mnist_recall_sample(&split, 10, 0, i))
            .collect();
        let t = mnist_recall_batch::<Flex>(&split, &rs, &[3, 6, 12], PixelScale::Raw, &dev);
        assert_eq!(t.images[2].dims(), [20, 1, 12, 12]);
        assert_eq!(t.query[0].dims(), [2, 1, 3, 3]);
        assert_eq!(
            t.target.to_data().convert::<i64>().to_vec::<i64>().unwrap(),
            [rs[0].target() as i64, rs[1].target() as i64]
        );
        let ss: Vec<_> = (0..2)
            .map(|i| crate::sort::mnist_sort_sample(&split, 20, 0, i))
            .collect();
        let st = mnist_sort_batch::<Flex>(&split, &ss, PixelScale::Unit, &dev);
        assert_eq!(st.images.dims(), [40, 1, 28, 28]);
        assert_eq!(st.target.dims(), [40]);
    }
}

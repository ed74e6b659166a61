//! The mapping world's batcher, for any backend: NCHW and time-major (row `t·B + b`). The
//! other tasks lay out their batches in `mg-train` (each model kind wants its own layout).

use std::ops::Range;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::mapping::{Episode, WALL};

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

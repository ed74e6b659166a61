//! Repeat-copy convergence of the DNC on the CPU (Flex, f32): the reference training
//! script's model (C = 64, N = 16, W = 16, R = 4, K = 1, clip 20) and task (4 bits, length
//! 1–2, repeats 1–2, batch 16), with Adam instead of the reference's RMSProp at 1e-4 so that it
//! converges in seconds, and the reference's global-norm-50 gradient clipping.

use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use mg_data::RepeatCopyConfig;
use mg_models::{Dnc, DncConfig};

type AB = Autodiff<Flex>;

const BATCH: usize = 16;
const SEED: u64 = 3;
const LEARNING_RATE: f64 = 3e-3;
const MAX_STEPS: u64 = 3000;
const EVAL_EVERY: u64 = 50;
/// Mean bit error over the last `EVAL_EVERY` training batches (each batch is new data) that
/// ends training once reached `TARGET_TIMES` times in a row.
const TARGET_BIT_ERROR: f64 = 0.01;
const TARGET_TIMES: usize = 3;
/// Bound on the bit error of held-out batches (another seed) after training.
const HELD_OUT_BIT_ERROR: f64 = 0.02;
const HELD_OUT_BATCHES: u64 = 32;

/// The reference's loss: sigmoid cross-entropy summed over bits, masked, summed over time
/// and batch, divided by the batch size.
fn masked_sigmoid_cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 2>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let [rows, _] = logits.dims();
    let per_bit =
        logits.clone().clamp_min(0.0) - logits.clone() * targets + logits.abs().neg().exp().log1p();
    (per_bit.sum_dim(1) * mask.reshape([rows, 1])).sum() / BATCH as f64
}

/// The fraction of wrong bits (logit sign against the target) on masked steps.
fn bit_error(logits: &[f32], targets: &[f32], mask: &[f32], width: usize) -> f64 {
    let (mut wrong, mut total) = (0usize, 0usize);
    for (row, &m) in mask.iter().enumerate() {
        if m == 0.0 {
            continue;
        }
        for c in 0..width {
            let i = row * width + c;
            wrong += usize::from((logits[i] > 0.0) != (targets[i] > 0.5));
            total += 1;
        }
    }
    wrong as f64 / total as f64
}

struct ParamIds(Vec<(ParamId, usize)>);

impl<B: Backend> ModuleVisitor<B> for ParamIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push((param.id, D));
    }
}

/// TensorFlow's `clip_by_global_norm` for modules with parameters of rank 1 and 2.
fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    clip: f64,
) -> f64 {
    let mut ids = ParamIds(Vec::new());
    module.visit(&mut ids);
    let total = ids
        .0
        .iter()
        .filter_map(|&(id, rank)| match rank {
            1 => grads
                .get::<B::InnerBackend, 1>(id)
                .map(|g| g.square().sum()),
            2 => grads
                .get::<B::InnerBackend, 2>(id)
                .map(|g| g.square().sum()),
            other => panic!("parameters of rank {other} are not expected"),
        })
        .reduce(|a, b| a + b)
        .expect("parameters");
    let norm: f64 = total.sqrt().into_scalar().elem();
    if norm > clip {
        let scale = clip / norm;
        for &(id, rank) in &ids.0 {
            if rank == 1 {
                if let Some(g) = grads.remove::<B::InnerBackend, 1>(id) {
                    grads.register(id, g.mul_scalar(scale));
                }
            } else if let Some(g) = grads.remove::<B::InnerBackend, 2>(id) {
                grads.register(id, g.mul_scalar(scale));
            }
        }
    }
    norm
}

#[test]
fn dnc_learns_repeat_copy() {
    let device = Default::default();
    AB::seed(&device, SEED);
    let task = RepeatCopyConfig::default();
    task.validate().unwrap();
    let config = DncConfig::new(task.observation_size(), task.target_size(), 64, 16, 16)
        .with_clip_value(20.0);
    config.validate().unwrap();
    let mut model = config.init::<AB>(&device);
    assert_eq!(model.num_params(), 43_980);
    let mut optim = AdamConfig::new().init();

    let width = task.target_size();
    let start = Instant::now();
    let mut recent = Vec::new();
    let mut below = 0;
    for step in 0..MAX_STEPS {
        let batch = task.batch(SEED, step, BATCH);
        let rows = batch.steps * BATCH;
        let tensor = |v: Vec<f32>, cols: usize| {
            Tensor::<AB, 2>::from_data(TensorData::new(v, [rows, cols]), &device)
        };
        let x = tensor(batch.observations, task.observation_size());
        let targets = tensor(batch.targets.clone(), width);
        let mask = tensor(batch.mask.clone(), 1);
        let (logits, _) = model.forward_window(x, batch.steps, None);
        let loss = masked_sigmoid_cross_entropy(logits.clone(), targets, mask);

        let logits: Vec<f32> = logits.into_data().to_vec().unwrap();
        recent.push(bit_error(&logits, &batch.targets, &batch.mask, width));
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        clip_global_norm(&model, &mut grads, 50.0);
        model = optim.step(LEARNING_RATE, model, grads);

        if (step + 1) % EVAL_EVERY == 0 {
            let error = recent.iter().sum::<f64>() / recent.len() as f64;
            recent.clear();
            println!(
                "step {:>5}: bit error {error:.4} over the last {EVAL_EVERY} batches, {:.1} s",
                step + 1,
                start.elapsed().as_secs_f64()
            );
            below = if error < TARGET_BIT_ERROR {
                below + 1
            } else {
                0
            };
            if below == TARGET_TIMES {
                let held_out = held_out_bit_error(&model.valid(), &task);
                println!("held-out bit error {held_out:.4} ({HELD_OUT_BATCHES} batches)");
                assert!(
                    held_out < HELD_OUT_BIT_ERROR,
                    "held-out bit error {held_out} is not below {HELD_OUT_BIT_ERROR}"
                );
                return;
            }
        }
    }
    panic!("bit error did not fall below {TARGET_BIT_ERROR} in {MAX_STEPS} steps");
}

/// The bit error over new batches of another seed, without autodiff.
fn held_out_bit_error(model: &Dnc<Flex>, task: &RepeatCopyConfig) -> f64 {
    let device = Default::default();
    let errors: Vec<f64> = (0..HELD_OUT_BATCHES)
        .map(|i| {
            let batch = task.batch(SEED + 1, i, BATCH);
            let x = Tensor::<Flex, 2>::from_data(
                TensorData::new(
                    batch.observations,
                    [batch.steps * BATCH, task.observation_size()],
                ),
                &device,
            );
            let (logits, _) = model.forward_window(x, batch.steps, None);
            let logits: Vec<f32> = logits.into_data().to_vec().unwrap();
            bit_error(&logits, &batch.targets, &batch.mask, task.target_size())
        })
        .collect();
    errors.iter().sum::<f64>() / errors.len() as f64
}

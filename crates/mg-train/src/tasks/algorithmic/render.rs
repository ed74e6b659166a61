//! Pictures of one test sequence: vectors with their priorities, targets and predictions;
//! MNIST digits with the query, the predicted and true classes and the memory over time
//! (paper Figure 7).

use mg_layers::MgBackend;
use std::path::Path;

use burn::tensor::Tensor;
use mg_data::mnist::{MnistSplit, SIDE};
use mg_models::AlgoModel;

use super::AlgoBatch;
use crate::tasks::rows::Host;
use crate::tasks::scoring::argmax;
use crate::viz::{BLACK, Canvas, Rgb, WHITE, grey};

const GREEN: Rgb = [20, 150, 40];
const RED: Rgb = [200, 30, 30];
const BLUE: Rgb = [40, 90, 200];

/// The mean over channels of the last writer layer's finest level, per item step, for
/// sequence `row` of the batch, each map scaled to [0, 1] over the whole sequence.
pub fn finest_memory<B: MgBackend>(
    model: &AlgoModel<B>,
    items: &[Tensor<B, 4>],
    steps: usize,
    batch: usize,
    row: usize,
) -> Vec<(usize, Vec<f32>)> {
    let (outputs, _) = model.encode(items, steps);
    let finest = outputs
        .last()
        .and_then(|layer| layer.last())
        .expect("a writer layer")
        .clone();
    let [_, _, h, w] = finest.dims();
    let means: Vec<f32> = finest.mean_dim(1).host();
    let maps: Vec<Vec<f32>> = (0..steps)
        .map(|t| {
            let r = t * batch + row;
            means[r * h * w..(r + 1) * h * w].to_vec()
        })
        .collect();
    let (lo, hi) = maps
        .iter()
        .flatten()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let span = (hi - lo).max(1e-6);
    maps.into_iter()
        .map(|m| (h, m.into_iter().map(|v| (v - lo) / span).collect()))
        .collect()
}

/// A grid of values with a one-pixel light line between cells, so that single bits read.
fn cells(
    canvas: &mut Canvas,
    x: i64,
    y: i64,
    side: (usize, usize),
    cell: usize,
    colour: impl Fn(usize, usize) -> Rgb,
) {
    canvas.rect(
        x - 1,
        y - 1,
        side.1 * cell + 1,
        side.0 * cell + 1,
        grey(0.8),
    );
    for r in 0..side.0 {
        for c in 0..side.1 {
            let (cx, cy) = (x + (c * cell) as i64, y + (r * cell) as i64);
            canvas.rect(cx, cy, cell - 1, cell - 1, colour(r, c));
        }
    }
}

/// One sequence of a test batch with the model's answer logits.
pub struct Picture<'a> {
    /// The batch.
    pub batch: &'a AlgoBatch,
    /// `[answers·batch, width]` logits.
    pub logits: &'a [f32],
    /// The sequence within the batch.
    pub row: usize,
    /// Width of an answer.
    pub width: usize,
}

impl Picture<'_> {
    /// Logits of answer `a`.
    fn answer(&self, a: usize) -> &[f32] {
        let r = a * self.batch.batch + self.row;
        &self.logits[r * self.width..(r + 1) * self.width]
    }

    /// Target bits of answer `a`.
    fn target_bits(&self, a: usize) -> &[f32] {
        let r = a * self.batch.batch + self.row;
        &self.batch.bits[r * self.width..(r + 1) * self.width]
    }

    /// Bits of item `t` (the first grid level holds them row-major).
    fn item_bits(&self, t: usize, sort: bool) -> Vec<f32> {
        let planes = if sort { 2 } else { 1 };
        let b = self.batch.batch;
        let start = (t * b + self.row) * planes * 9;
        self.batch.items.first().map_or_else(
            || {
                let width = self.batch.flat.len() / (self.batch.flat_steps * b);
                let start = (t * b + self.row) * width;
                self.batch.flat[start..start + self.width].to_vec()
            },
            |grid| grid[start..start + self.width].to_vec(),
        )
    }

    /// Vectors: the items (time across, bits down) with their priorities (sort) or the
    /// query (recall), the target and the predicted probabilities, wrong bits outlined.
    pub fn vectors(&self, sort: bool, path: &Path) -> anyhow::Result<()> {
        let (len, answers, dim) = (self.batch.len, self.batch.answers, self.width);
        let cell = 18usize;
        let meta = &self.batch.meta[self.row];
        let width = (len + 2).max(answers + 2) * cell + 160;
        let height = 3 * (dim * cell + 40) + 50;
        let mut canvas = Canvas::new(width, height, WHITE);
        let (left, mut top) = (110i64, 14i64);
        let label = |c: &mut Canvas, y: i64, s: &str| c.text(10, y, s, 2, BLACK);
        label(&mut canvas, top + 10, "Input");
        let items: Vec<Vec<f32>> = (0..len).map(|t| self.item_bits(t, sort)).collect();
        cells(&mut canvas, left, top, (dim, len), cell, |r, t| {
            grey(1.0 - items[t][r])
        });
        if sort {
            // Bars up from a baseline for positive priorities, down for negative ones.
            let base = top + (dim * cell) as i64 + 20;
            canvas.rect(left, base, len * cell, 1, grey(0.6));
            for (t, &p) in meta.priorities.iter().enumerate() {
                let h = (p.abs() * 16.0).round().max(1.0) as usize;
                let x = left + (t * cell) as i64 + 4;
                let y = if p >= 0.0 { base - h as i64 } else { base + 1 };
                canvas.rect(x, y, cell - 8, h, BLUE);
            }
            canvas.text(10, base - 3, "Priority", 1, BLUE);
        } else {
            let q = meta.query_index;
            let x = left + (len * cell) as i64 + cell as i64;
            cells(&mut canvas, x, top, (dim, 1), cell, |r, _| {
                grey(1.0 - items[q][r])
            });
            canvas.text(x - 4, top + (dim * cell) as i64 + 6, "Query", 1, BLUE);
            let mark = left + (q * cell) as i64;
            canvas.rect(mark, top + (dim * cell) as i64 + 2, cell, 3, BLUE);
        }
        top += (dim * cell + 40) as i64;
        label(&mut canvas, top + 10, "Target");
        cells(&mut canvas, left, top, (dim, answers), cell, |r, a| {
            grey(1.0 - self.target_bits(a)[r])
        });
        top += (dim * cell + 40) as i64;
        label(&mut canvas, top + 10, "Output");
        let prob = |a: usize, r: usize| 1.0 / (1.0 + (-self.answer(a)[r]).exp());
        cells(&mut canvas, left, top, (dim, answers), cell, |r, a| {
            let wrong = (prob(a, r) > 0.5) != (self.target_bits(a)[r] > 0.5);
            if wrong {
                [255, 170, 170]
            } else {
                grey(1.0 - prob(a, r))
            }
        });
        let errors: usize = (0..answers)
            .map(|a| {
                (0..dim)
                    .filter(|&r| (prob(a, r) > 0.5) != (self.target_bits(a)[r] > 0.5))
                    .count()
            })
            .sum();
        let verdict = format!("{errors} wrong bits");
        canvas.text(
            10,
            top + (dim * cell) as i64 + 10,
            &verdict,
            2,
            if errors == 0 { GREEN } else { RED },
        );
        canvas.save_png(path)
    }

    /// MNIST: the digits in order (recall: the query under its position), the predicted
    /// classes (green when right, red when wrong) with the truth, and, when given, the
    /// memory's finest level after each item.
    pub fn digits(
        &self,
        sort: bool,
        split: &MnistSplit,
        memory: Option<&Vec<(usize, Vec<f32>)>>,
        path: &Path,
    ) -> anyhow::Result<()> {
        let meta = &self.batch.meta[self.row];
        let len = self.batch.len;
        let tile = SIDE * 2 + 8;
        let width = len.max(self.batch.answers) * tile + 140;
        let memory_rows = memory.map_or(0, |_| tile + 30);
        let height = 2 * (tile + 30) + memory_rows + 30;
        let mut canvas = Canvas::new(width, height, WHITE);
        let left = 120i64;
        let digit = |c: &mut Canvas, x: i64, y: i64, image: usize, frame: Option<Rgb>| {
            let pixels = split.image(image);
            if let Some(colour) = frame {
                c.rect(x - 3, y - 3, SIDE * 2 + 6, SIDE * 2 + 6, colour);
            }
            c.grid(x, y, (SIDE, SIDE), 2, |r, col| {
                grey(1.0 - pixels[r * SIDE + col] as f32 / 255.0)
            });
        };
        let mut top = 16i64;
        canvas.text(10, top + 20, "Input", 2, BLACK);
        for (t, &image) in meta.images.iter().enumerate() {
            let x = left + (t * tile) as i64;
            let frame = (!sort && t == meta.query_index).then_some(GREEN);
            digit(&mut canvas, x, top, image, frame);
        }
        top += (tile + 30) as i64;
        if sort {
            canvas.text(10, top + 20, "Sorted", 2, BLACK);
        } else {
            canvas.text(10, top + 20, "Query", 2, BLACK);
            let x = left + (meta.query_index * tile) as i64;
            digit(
                &mut canvas,
                x,
                top,
                meta.images[meta.query_index],
                Some(GREEN),
            );
        }
        let answer_x = |a: usize| {
            if sort {
                left + (a * tile) as i64
            } else {
                left + ((meta.query_index + 1) * tile) as i64
            }
        };
        for a in 0..self.batch.answers {
            let predicted = argmax(self.answer(a));
            let truth = self.batch.labels[a * self.batch.batch + self.row] as usize;
            let colour = if predicted == truth { GREEN } else { RED };
            let x = answer_x(a);
            canvas.text(x + 14, top + 8, &predicted.to_string(), 5, colour);
            canvas.text(
                x + 14,
                top + SIDE as i64 * 2 + 4,
                &format!("true {truth}"),
                1,
                BLACK,
            );
        }
        top += (tile + 30) as i64;
        if let Some(maps) = memory {
            canvas.text(10, top + 10, "Memory", 2, BLACK);
            canvas.text(10, top + 30, "finest level,", 1, BLACK);
            canvas.text(10, top + 40, "deepest layer", 1, BLACK);
            for (t, (side, map)) in maps.iter().enumerate() {
                let cell = (SIDE * 2 / side).max(1);
                let x = left + (t * tile) as i64;
                canvas.grid(x, top, (*side, *side), cell, |r, c| grey(map[r * side + c]));
            }
        }
        canvas.save_png(path)
    }
}

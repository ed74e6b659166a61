//! Pictures of one test episode: its frames and GIF (paper Figure 4) and a DNC's memory over
//! the episode (paper Figure 12).

use mg_layers::MgBackend;
use std::path::Path;

use burn::tensor::Tensor;
use mg_data::mapping::Episode;
use mg_models::{Localizer, MemoryState};

use super::Mapping;
use super::eval::infer_step;
use crate::tasks::rows::Host;
use crate::viz::{Canvas, Rgb, WHITE, grey, save_gif};

const WALL: Rgb = [40, 40, 60];
const FREE: Rgb = [235, 235, 225];
const UNKNOWN: Rgb = [170, 170, 170];
const AGENT: Rgb = [220, 30, 30];
const PATH: Rgb = [140, 180, 235];

/// Renders every step of test episode `index` (paper Figure 4): the true map with the agent,
/// the explored map, the query, the predicted and true localization maps, and the channel
/// mean of the deepest layer's finest hidden state. Writes `frame-NNNN.png` and
/// `episode.gif` into `out`; returns the number of frames.
pub fn render_episode<B: MgBackend>(
    task: &Mapping,
    model: &Localizer<B>,
    index: usize,
    out: &Path,
    device: &B::Device,
) -> anyhow::Result<usize> {
    render_episodes(
        task,
        model,
        task.test_episodes(index..index + 1)?,
        out,
        device,
    )
}

/// The frames and GIF of a given episode (one list per query size, one episode each), as for
/// a test episode: true map and agent, explored map, query, predicted and true localization,
/// memory.
pub fn render_episodes<B: MgBackend>(
    task: &Mapping,
    model: &Localizer<B>,
    episodes: Vec<Vec<Episode>>,
    out: &Path,
    device: &B::Device,
) -> anyhow::Result<usize> {
    std::fs::create_dir_all(out).map_err(|e| anyhow::anyhow!("creating {}: {e}", out.display()))?;
    let episode = &episodes[0][0];
    let n = episode.map().size();
    let ms = task.config().task.mask_size;
    let k = task.config().task.query_sizes[0];
    let scale_map = (144 / n).max(2);
    let scale_mask = (144 / ms).max(2);
    let panel = 150usize;
    let (width, height) = (6 * (panel + 10) + 10, panel + 40);
    let mut state = None;
    let mut frames = Vec::new();
    let mut explored = vec![false; n * n];
    for t in 0..episode.len() {
        let (_, logits, next) = infer_step(model, &episodes, t, state, device)?;
        let next_kind = match &next {
            MemoryState::Multigrid(_) => Kind::Multigrid,
            MemoryState::Dnc(_) => Kind::Dnc,
        };
        let (mh, mw, memory) = memory_panel(&next);
        state = Some(next);
        let prob: Vec<f32> = burn::tensor::activation::sigmoid(logits[0].clone()).host();
        let truth = episode.target_mask(t);
        let obs = task.config().task.obs_size;
        let (ar, ac) = episode.positions()[t];
        for dr in 0..obs {
            for dc in 0..obs {
                let (r, c) = (
                    (ar + dr) as i64 - (obs / 2) as i64,
                    (ac + dc) as i64 - (obs / 2) as i64,
                );
                if (0..n as i64).contains(&r) && (0..n as i64).contains(&c) {
                    explored[r as usize * n + c as usize] = true;
                }
            }
        }
        let visited: std::collections::HashSet<(usize, usize)> =
            episode.positions()[..=t].iter().copied().collect();
        let mut canvas = Canvas::new(width, height, WHITE);
        let memory_title = match next_kind {
            Kind::Multigrid => "memory",
            Kind::Dnc => "dnc usage",
        };
        let titles = [
            "true map",
            "explored",
            "query",
            "predicted",
            "truth",
            memory_title,
        ];
        for (i, title) in titles.iter().enumerate() {
            canvas.text((10 + i * (panel + 10)) as i64, 8, title, 2, [0, 0, 0]);
        }
        let x = |i: usize| (10 + i * (panel + 10)) as i64;
        let map = episode.map();
        canvas.grid(x(0), 30, (n, n), scale_map, |r, c| {
            if (r, c) == (ar, ac) {
                AGENT
            } else if map.is_wall(r as i64, c as i64) {
                WALL
            } else if visited.contains(&(r, c)) {
                PATH
            } else {
                FREE
            }
        });
        canvas.grid(x(1), 30, (n, n), scale_map, |r, c| {
            if !explored[r * n + c] {
                UNKNOWN
            } else if map.is_wall(r as i64, c as i64) {
                WALL
            } else {
                FREE
            }
        });
        let query = episode.query(t);
        canvas.grid(x(2), 30, (k, k), (144 / k).max(2), |r, c| {
            if query[r * k + c] == mg_data::mapping::WALL {
                WALL
            } else {
                FREE
            }
        });
        canvas.grid(x(3), 30, (ms, ms), scale_mask, |r, c| {
            grey(prob.get(r * ms + c).copied().unwrap_or(0.0))
        });
        canvas.grid(x(4), 30, (ms, ms), scale_mask, |r, c| {
            grey(truth[r * ms + c])
        });
        canvas.grid(x(5), 30, (mh, mw), (144 / mh.max(mw)).max(1), |r, c| {
            grey(memory.get(r * mw + c).copied().unwrap_or(0.0))
        });
        canvas.text(
            x(0),
            (height - 10) as i64,
            &format!("step {t}"),
            1,
            [0, 0, 0],
        );
        canvas.save_png(&out.join(format!("frame-{t:04}.png")))?;
        frames.push(canvas);
    }
    save_gif(&frames, 15, &out.join("episode.gif"))?;
    Ok(frames.len())
}

enum Kind {
    Multigrid,
    Dnc,
}

/// The memory panel of batch element 0 as `(rows, columns, values in [0, 1])`: the channel
/// mean of the deepest layer's finest hidden state (paper Figure 4) mapped from [−1, 1], or a
/// DNC's usage laid out row-major on a near-square grid.
fn memory_panel<B: MgBackend>(state: &MemoryState<B>) -> (usize, usize, Vec<f32>) {
    let values = |t: Tensor<B, 2>| -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec().unwrap_or_default()
    };
    match state {
        MemoryState::Multigrid(s) => {
            let hidden = s
                .layers()
                .last()
                .and_then(|l| l.levels().last())
                .expect("a non-empty writer")
                .hidden
                .clone();
            let [_, _, h, w] = hidden.dims();
            let mean = hidden.narrow(0, 0, 1).mean_dim(1).reshape([h, w]);
            let v = values(mean).into_iter().map(|v| (v + 1.0) / 2.0).collect();
            (h, w, v)
        }
        MemoryState::Dnc(s) => {
            let [_, n] = s.usage.dims();
            let side = (n as f64).sqrt().ceil() as usize;
            let rows = n.div_ceil(side);
            (rows, side, values(s.usage.clone().narrow(0, 0, 1)))
        }
    }
}

/// Draws a DNC's memory over test episode `index` (paper Figure 12): per time step (rows),
/// the write weights, the read weights summed over heads and the usage of every slot
/// (columns), and the memory matrix after the last step (a row per word element). Writes
/// `dnc-memory.png` into `out` and returns its path.
pub fn render_dnc_memory<B: MgBackend>(
    task: &Mapping,
    model: &Localizer<B>,
    index: usize,
    out: &Path,
    device: &B::Device,
) -> anyhow::Result<std::path::PathBuf> {
    anyhow::ensure!(
        matches!(model, Localizer::Dnc(_)),
        "the memory picture is drawn for DNC models only"
    );
    std::fs::create_dir_all(out).map_err(|e| anyhow::anyhow!("creating {}: {e}", out.display()))?;
    let episodes = task.test_episodes(index..index + 1)?;
    let len = episodes[0][0].len();
    let row = |t: Tensor<B, 2>| -> Vec<f32> { t.narrow(0, 0, 1).host() };
    let (mut writes, mut reads, mut usage) = (Vec::new(), Vec::new(), Vec::new());
    let mut state = None;
    let mut last_memory = (0, 0, Vec::new());
    for t in 0..len {
        let (_, _, next) = infer_step(model, &episodes, t, state, device)?;
        if let MemoryState::Dnc(s) = &next {
            writes.push(row(s.write_weights.clone().sum_dim(1).squeeze_dim(1)));
            reads.push(row(s.read_weights.clone().sum_dim(1).squeeze_dim(1)));
            usage.push(row(s.usage.clone()));
            if t + 1 == len {
                let [_, n, w] = s.memory.dims();
                let m = s.memory.clone().narrow(0, 0, 1).reshape([n, w]).transpose();
                last_memory = (w, n, row(m.reshape([1, w * n])));
            }
        }
        state = Some(next);
    }
    let n = usage.first().map_or(0, Vec::len);
    let scale = if n >= 250 {
        1
    } else {
        (500 / n.max(1)).clamp(1, 8)
    };
    let step_h = if len >= 300 { 1 } else { 2 };
    let (w_words, _, memory) = last_memory;
    let mem_max = memory.iter().fold(1e-6f32, |a, v| a.max(v.abs()));
    let panel_h = len * step_h;
    let width = (n * scale + 40).max(640);
    let height = 3 * (panel_h + 30) + w_words * 4 + 60;
    let mut canvas = Canvas::new(width, height, WHITE);
    let mut y = 10i64;
    let peak_of = |rows: &[Vec<f32>]| rows.iter().flatten().fold(1e-6f32, |a, &v| a.max(v));
    for (title, rows) in [
        ("write weights (time down, slots across)", &writes),
        ("read weights, summed over heads", &reads),
        ("usage", &usage),
    ] {
        let peak = peak_of(rows);
        canvas.text(
            20,
            y,
            &format!("{title}, white 0 to blue {peak:.3}"),
            1,
            [0, 0, 0],
        );
        y += 12;
        for (t, values) in rows.iter().enumerate() {
            for (s, v) in values.iter().enumerate() {
                let g = 255.0 - (v / peak).clamp(0.0, 1.0) * 255.0;
                canvas.rect(
                    20 + (s * scale) as i64,
                    y + (t * step_h) as i64,
                    scale,
                    step_h,
                    [g as u8, g as u8, 255],
                );
            }
        }
        y += panel_h as i64 + 18;
    }
    canvas.text(
        20,
        y,
        &format!(
            "memory after the last step (word elements down), red +{mem_max:.2} to blue -{mem_max:.2}"
        ),
        1,
        [0, 0, 0],
    );
    y += 12;
    for e in 0..w_words {
        for s in 0..n {
            let v = memory.get(e * n + s).copied().unwrap_or(0.0) / mem_max;
            let c = ((1.0 - v.abs()) * 255.0) as u8;
            let colour = if v >= 0.0 { [255, c, c] } else { [c, c, 255] };
            canvas.rect(20 + (s * scale) as i64, y + 4 * e as i64, scale, 4, colour);
        }
    }
    let path = out.join("dnc-memory.png");
    canvas.save_png(&path)?;
    Ok(path)
}

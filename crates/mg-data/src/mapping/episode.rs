//! One episode of the mapping world: map, trajectory, observations, queries and ground-truth masks.

use std::collections::HashMap;

use crate::error::{Result, config_err};
use crate::rng::{Rng, stream};

use super::maze::{Grid, WALL};
use super::motion::{Action, Motion, random_free_action, spiral_action};
use super::{LocationEncoding, MappingConfig, QueryPer};

/// A recorded episode. Built whole by [`Episode::generate`] (spiral, random walk), or step by step through
/// [`Episode::act`] (policy). Step `t` has observation `t` at `positions()[t]`.
#[derive(Clone, Debug)]
pub struct Episode {
    config: MappingConfig,
    map: Grid,
    start: (usize, usize),
    positions: Vec<(usize, usize)>,
    /// Per step, the id of the k×k patch at that position.
    patch_ids: Vec<u32>,
    /// Per patch id, the steps where it occurs (ascending).
    occurrences: Vec<Vec<usize>>,
    ids: HashMap<Vec<u8>, u32>,
    query_key: u64,
}

impl Episode {
    /// Episode `index` of `seed`, with only the start recorded; drive it with [`Episode::act`].
    pub fn start(config: &MappingConfig, seed: u64, index: u64) -> Result<Self> {
        config.validate()?;
        let n = config.map_size;
        let map = if config.open_map {
            Grid::open(n)
        } else {
            Grid::maze(
                n,
                config.complexity,
                config.density,
                &mut Rng::keyed(&[seed, stream::MAZE, index]),
            )
        };
        let c = n / 2;
        let mut start = (c, c);
        if config.motion != Motion::Spiral && map.is_wall(c as i64, c as i64) {
            // Walls block this motion, so start on the first free cell around the centre (row-major). In a
            // maze the diagonal odd/odd neighbour is always free.
            'ring: for r in c - 1..=c + 1 {
                for cc in c - 1..=c + 1 {
                    if !map.is_wall(r as i64, cc as i64) {
                        start = (r, cc);
                        break 'ring;
                    }
                }
            }
        }
        let query_key = Rng::keyed(&[seed, stream::QUERY, index]).next_u64();
        let mut ep = Self {
            config: config.clone(),
            map,
            start,
            positions: Vec::new(),
            patch_ids: Vec::new(),
            occurrences: Vec::new(),
            ids: HashMap::new(),
            query_key,
        };
        ep.record(start);
        Ok(ep)
    }

    /// Episode `index` of `seed`, with its whole trajectory (a [`Motion::Policy`] episode holds only the start).
    pub fn generate(config: &MappingConfig, seed: u64, index: u64) -> Result<Self> {
        let mut ep = Self::start(config, seed, index)?;
        match config.motion {
            Motion::Spiral => {
                let centre = ep.start;
                while let Some(a) = spiral_action(ep.position(), centre, config.map_size) {
                    let (dr, dc) = a.delta();
                    let p = ep.position();
                    ep.record(((p.0 as i64 + dr) as usize, (p.1 as i64 + dc) as usize));
                }
            }
            Motion::RandomWalk { len } => {
                let mut rng = Rng::keyed(&[seed, stream::WALK, index]);
                while ep.len() < len {
                    match random_free_action(&ep.map, ep.position(), &mut rng) {
                        Some(a) => {
                            ep.act(a);
                        }
                        None => ep.record(ep.position()),
                    }
                }
            }
            Motion::Policy => {}
        }
        Ok(ep)
    }

    /// Moves the agent one step and records the new observation. Walls and the map border block: the agent
    /// then stays where it is, that position is recorded again, and `false` is returned.
    pub fn act(&mut self, action: Action) -> bool {
        let (dr, dc) = action.delta();
        let p = self.position();
        let (r, c) = (p.0 as i64 + dr, p.1 as i64 + dc);
        let n = self.config.map_size as i64;
        let moved = r >= 1 && c >= 1 && r <= n - 2 && c <= n - 2 && self.map.get(r, c) != WALL;
        self.record(if moved { (r as usize, c as usize) } else { p });
        moved
    }

    fn record(&mut self, pos: (usize, usize)) {
        let patch = self.map.patch(pos.0, pos.1, self.config.query_size);
        let next = self.ids.len() as u32;
        let id = *self.ids.entry(patch).or_insert(next);
        if id == next {
            self.occurrences.push(Vec::new());
        }
        self.occurrences[id as usize].push(self.positions.len());
        self.patch_ids.push(id);
        self.positions.push(pos);
    }

    /// The settings.
    pub fn config(&self) -> &MappingConfig {
        &self.config
    }

    /// The map.
    pub fn map(&self) -> &Grid {
        &self.map
    }

    /// The start position `(row, col)` in map coordinates.
    pub fn start_position(&self) -> (usize, usize) {
        self.start
    }

    /// The current (last recorded) position.
    pub fn position(&self) -> (usize, usize) {
        *self
            .positions
            .last()
            .expect("an episode always holds its start")
    }

    /// All recorded positions, in map coordinates.
    pub fn positions(&self) -> &[(usize, usize)] {
        &self.positions
    }

    /// Number of recorded steps (observations).
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Always false: an episode holds at least its start.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Sets the key from which query indices are drawn (used to share them across a batch).
    pub fn set_query_key(&mut self, key: u64) {
        self.query_key = key;
    }

    /// Position of step `t` in the mask frame: `mask_origin + (pos − start)`, as (row, col).
    pub fn frame_position(&self, t: usize) -> (usize, usize) {
        let o = self.config.mask_origin as i64;
        let (p, s) = (self.positions[t], self.start);
        (
            (o + p.0 as i64 - s.0 as i64) as usize,
            (o + p.1 as i64 - s.1 as i64) as usize,
        )
    }

    /// The m×m observation at step `t` (0 free, 1 wall; outside the map reads as wall), row-major.
    pub fn observation(&self, t: usize) -> Vec<u8> {
        let p = self.positions[t];
        self.map.patch(p.0, p.1, self.config.obs_size)
    }

    /// The location channels of step `t`, `[row, col]`, per [`LocationEncoding`].
    pub fn location(&self, t: usize) -> [f32; 2] {
        match self.config.location {
            LocationEncoding::Raw => {
                let (r, c) = self.frame_position(t);
                [r as f32, c as f32]
            }
            LocationEncoding::Normalized => {
                let scale = ((self.config.map_size - 1) / 2) as f32;
                let (p, s) = (self.positions[t], self.start);
                [
                    (p.0 as f32 - s.0 as f32) / scale,
                    (p.1 as f32 - s.1 as f32) / scale,
                ]
            }
        }
    }

    /// The step whose position the query of step `t` is centred on: uniform in `0..=t`.
    pub fn query_step(&self, t: usize) -> usize {
        Rng::keyed(&[self.query_key, t as u64]).index(t + 1)
    }

    /// The k×k query patch of step `t`, row-major.
    pub fn query(&self, t: usize) -> Vec<u8> {
        let p = self.positions[self.query_step(t)];
        self.map.patch(p.0, p.1, self.config.query_size)
    }

    /// The last step whose position the mask of step `t` includes: `t`, or `t + 1` with look-ahead when it has
    /// been recorded.
    pub fn mask_horizon(&self, t: usize) -> usize {
        if self.config.lookahead {
            (t + 1).min(self.len() - 1)
        } else {
            t
        }
    }

    /// Ground truth of step `t`: sorted, distinct flat indices `row * mask_size + col` (mask frame) of every
    /// visited position up to [`Episode::mask_horizon`] whose k×k patch equals the query.
    pub fn target_indices(&self, t: usize) -> Vec<usize> {
        let id = self.patch_ids[self.query_step(t)];
        let horizon = self.mask_horizon(t);
        let m = self.config.mask_size;
        let mut out: Vec<usize> = self.occurrences[id as usize]
            .iter()
            .take_while(|&&j| j <= horizon)
            .map(|&j| {
                let (r, c) = self.frame_position(j);
                r * m + c
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The ground-truth mask of step `t`, flattened row-major (`mask_size²` values of 0 or 1).
    pub fn target_mask(&self, t: usize) -> Vec<f32> {
        let m = self.config.mask_size;
        let mut mask = vec![0.0; m * m];
        for i in self.target_indices(t) {
            mask[i] = 1.0;
        }
        mask
    }
}

/// Batch `batch_index` of `seed`: episodes `batch_index·batch_size + b`. With [`QueryPer::Batch`] the query
/// indices are shared by the whole batch.
pub fn generate_batch(
    config: &MappingConfig,
    seed: u64,
    batch_index: u64,
    batch_size: usize,
) -> Result<Vec<Episode>> {
    if batch_size == 0 {
        return Err(config_err("batch_size", "0; expected at least 1"));
    }
    let key = Rng::keyed(&[seed, stream::BATCH_QUERY, batch_index]).next_u64();
    (0..batch_size as u64)
        .map(|b| {
            let mut ep = Episode::generate(config, seed, batch_index * batch_size as u64 + b)?;
            if config.query_per == QueryPer::Batch {
                ep.set_query_key(key);
            }
            Ok(ep)
        })
        .collect()
}

//! The mapping & localization world (paper 4.1-4.2, reference `map_env.py`).
//!
//! An [`Episode`] is a pure function of `(seed, index)` and a [`MappingConfig`]: a map (maze or open), a
//! trajectory (spiral, random walk, or policy-driven through [`Episode::act`]), and per step an m×m observation
//! with the agent's location relative to the start, a k×k query patch drawn from the positions visited so far,
//! and the ground-truth mask of every visited location whose k×k patch equals the query. Masks live in a
//! `mask_size`×`mask_size` frame re-centred on the start, which sits at (`mask_origin`, `mask_origin`).
//! [`crate::batch::mapping_window`] turns a window of steps of a batch of episodes into tensors.

mod episode;
mod maze;
mod motion;

pub use episode::{Episode, generate_batch};
pub use maze::{FREE, Grid, WALL};
pub use motion::{Action, Motion, random_free_action, spiral_action};

use crate::error::{Result, config_err};

/// How the location channels encode the agent's position relative to the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocationEncoding {
    /// The reference: raw "generic" coordinates, `mask_origin + (pos − start)` (25 at the start).
    Raw,
    /// `(pos − start) / ((map_size − 1) / 2)`, roughly in [−1, 1] (0 at the start).
    Normalized,
}

/// Whether the query index is shared by the batch (the reference) or drawn per sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryPer {
    /// One index per step, shared by every episode of a batch (reference).
    Batch,
    /// An independent index per episode.
    Sample,
}

/// Settings of the mapping world. [`Default`] is the reference: 25×25 maze, complexity 0.05, density 0.2,
/// spiral motion, 3×3 observations and queries, 48×48 masks with the start at (25, 25), raw locations, causal
/// masks (no look-ahead), one query index per batch.
#[derive(Clone, Debug, PartialEq)]
pub struct MappingConfig {
    /// Side of the map; odd (15 and 25 are used).
    pub map_size: usize,
    /// Maze complexity (reference 0.05).
    pub complexity: f64,
    /// Maze density (reference 0.2).
    pub density: f64,
    /// Border walls only, no maze.
    pub open_map: bool,
    /// How the agent moves.
    pub motion: Motion,
    /// Observation side m (odd: 3 or 9).
    pub obs_size: usize,
    /// Query side k (odd: 3 or 9).
    pub query_size: usize,
    /// Side of the ground-truth mask frame (48).
    pub mask_size: usize,
    /// Mask row/column of the start (25).
    pub mask_origin: usize,
    /// Location channel encoding.
    pub location: LocationEncoding,
    /// The reference's one-step look-ahead quirk: the mask at step t also includes position t+1.
    pub lookahead: bool,
    /// Query index per batch or per sample.
    pub query_per: QueryPer,
}

impl Default for MappingConfig {
    fn default() -> Self {
        Self {
            map_size: 25,
            complexity: 0.05,
            density: 0.2,
            open_map: false,
            motion: Motion::Spiral,
            obs_size: 3,
            query_size: 3,
            mask_size: 48,
            mask_origin: 25,
            location: LocationEncoding::Raw,
            lookahead: false,
            query_per: QueryPer::Batch,
        }
    }
}

/// Number of maps in a test set (the paper's).
pub const TEST_SET_SIZE: usize = 5000;

/// The default seed of the fixed test sets; training should use other seeds.
pub const TEST_SEED: u64 = 0x07e5_75e7;

impl MappingConfig {
    /// The reference 15×15 variant.
    pub fn small() -> Self {
        Self {
            map_size: 15,
            ..Self::default()
        }
    }

    /// Checks the settings; every inconsistency is an error, never a panic.
    pub fn validate(&self) -> Result<()> {
        let n = self.map_size;
        if n < 5 || n.is_multiple_of(2) {
            return Err(config_err(
                "map_size",
                format!("{n}; expected an odd size >= 5 (e.g. 15 or 25)"),
            ));
        }
        for (what, v) in [("obs_size", self.obs_size), ("query_size", self.query_size)] {
            if v == 0 || v.is_multiple_of(2) || v > n {
                return Err(config_err(
                    what,
                    format!("{v}; expected an odd size between 1 and map_size {n}"),
                ));
            }
        }
        for (what, v) in [("complexity", self.complexity), ("density", self.density)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(config_err(
                    what,
                    format!("{v}; expected a number in [0, 1]"),
                ));
            }
        }
        if let Motion::RandomWalk { len: 0 } = self.motion {
            return Err(config_err(
                "motion",
                "random walk of length 0; expected at least 1 step",
            ));
        }
        // Positions stay in [1, n-2] and the start is within one cell of the centre c, so offsets from the
        // start lie in [-c, n-1-c].
        let c = n / 2;
        let (o, m) = (self.mask_origin, self.mask_size);
        if o < c || o + (n - 1 - c) >= m {
            return Err(config_err(
                "mask_size",
                format!(
                    "{m}×{m} with the start at ({o}, {o}) cannot hold a {n}×{n} map; expected mask_origin >= {c} \
                     and mask_size > mask_origin + {}",
                    n - 1 - c
                ),
            ));
        }
        Ok(())
    }

    /// Number of steps of an episode, where fixed: (n−2)² for the spiral, `len` for a random walk.
    pub fn episode_len(&self) -> Option<usize> {
        match self.motion {
            Motion::Spiral => Some((self.map_size - 2) * (self.map_size - 2)),
            Motion::RandomWalk { len } => Some(len),
            Motion::Policy => None,
        }
    }
}

/// A fixed test set: episodes `0..len` of `seed` (default [`TEST_SEED`], [`TEST_SET_SIZE`] maps).
#[derive(Clone, Debug)]
pub struct MappingTestSet {
    /// The world settings.
    pub config: MappingConfig,
    /// The seed.
    pub seed: u64,
    /// Number of episodes.
    pub len: usize,
}

impl MappingTestSet {
    /// The paper-sized test set for `config`.
    pub fn new(config: MappingConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            seed: TEST_SEED,
            len: TEST_SET_SIZE,
        })
    }

    /// Test episode `index` (with per-sample query indices, whatever `query_per` says).
    pub fn get(&self, index: usize) -> Result<Episode> {
        if index >= self.len {
            return Err(config_err(
                "index",
                format!("{index}; expected < test set size {}", self.len),
            ));
        }
        Episode::generate(&self.config, self.seed, index as u64)
    }
}

#[cfg(test)]
mod tests;

//! A batch of mazes stepped in lockstep by the policy: each one a mapping [`Episode`] driven
//! through [`Episode::act`], with the cells it has visited, its rewards and wall hits.

use std::sync::Mutex;

use mg_data::mapping::{Action, Episode, MappingConfig, WALL};
use mg_data::rng::Rng;

/// Stream tag of the policy's action draws.
pub const ACTION_STREAM: u64 = 0x4143_5449;

/// The rewards of a move.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rewards {
    /// A step onto a cell not visited before.
    pub new_cell: f32,
    /// A move that a wall (or the border) blocks.
    pub wall: f32,
}

/// What one move did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    /// Its reward.
    pub reward: f32,
    /// A wall blocked it.
    pub hit_wall: bool,
    /// It reached a cell not visited before.
    pub new_cell: bool,
}

/// One maze and the agent in it.
#[derive(Clone, Debug)]
pub struct World {
    /// The episode (map, path, observations, queries, masks).
    pub episode: Episode,
    /// Per map cell (row-major), whether the agent has stood on it.
    pub visited: Vec<bool>,
    /// The actions taken so far (indices into [`Action::ALL`]).
    pub actions: Vec<u8>,
    /// Free interior cells of the map.
    pub free_cells: usize,
    /// Distinct free cells visited.
    pub covered: usize,
    /// Moves a wall blocked.
    pub wall_hits: usize,
    /// The seed and episode index the maze is drawn with.
    pub key: (u64, u64),
}

impl World {
    /// Episode `index` of `seed` at its start.
    pub fn start(config: &MappingConfig, seed: u64, index: u64) -> anyhow::Result<Self> {
        let episode = Episode::start(config, seed, index)?;
        Ok(Self::of(episode, (seed, index)))
    }

    /// A world around an episode at its start.
    fn of(episode: Episode, key: (u64, u64)) -> Self {
        let map = episode.map();
        let n = map.size();
        let free_cells = map
            .cells()
            .iter()
            .enumerate()
            .filter(|&(i, &c)| {
                let (r, col) = (i / n, i % n);
                c != WALL && r >= 1 && col >= 1 && r + 1 < n && col + 1 < n
            })
            .count();
        let mut world = Self {
            episode,
            visited: vec![false; n * n],
            actions: Vec::new(),
            free_cells,
            covered: 0,
            wall_hits: 0,
            key,
        };
        let start = world.episode.position();
        world.mark(start);
        world
    }

    /// Marks a position visited; whether it was new.
    fn mark(&mut self, (r, c): (usize, usize)) -> bool {
        let n = self.episode.map().size();
        let new = !self.visited[r * n + c];
        if new {
            self.visited[r * n + c] = true;
            if !self.episode.map().is_wall(r as i64, c as i64) {
                self.covered += 1;
            }
        }
        new
    }

    /// Takes action `a` (an index into [`Action::ALL`]).
    pub fn act(&mut self, a: u8, rewards: Rewards) -> Outcome {
        let action = Action::from_index(a as usize).expect("an action index below 4");
        self.actions.push(a);
        let moved = self.episode.act(action);
        if !moved {
            self.wall_hits += 1;
            return Outcome {
                reward: rewards.wall,
                hit_wall: true,
                new_cell: false,
            };
        }
        let new_cell = self.mark(self.episode.position());
        Outcome {
            reward: if new_cell { rewards.new_cell } else { 0.0 },
            hit_wall: false,
            new_cell,
        }
    }

    /// The fraction of free cells visited.
    pub fn coverage(&self) -> f64 {
        self.covered as f64 / self.free_cells.max(1) as f64
    }

    /// Back to the start, then `actions` replayed.
    pub fn replay(&mut self, actions: &[u8], rewards: Rewards) -> anyhow::Result<()> {
        let config = self.episode.config().clone();
        *self = Self::start(&config, self.key.0, self.key.1)?;
        for &a in actions {
            if a as usize >= Action::ALL.len() {
                anyhow::bail!("action {a} in a saved path; expected 0 to 3");
            }
            self.act(a, rewards);
        }
        Ok(())
    }
}

/// The mazes of one training batch or test batch, stepped in lockstep.
#[derive(Debug)]
pub struct Worlds {
    /// The world settings (motion driven by the policy).
    pub config: MappingConfig,
    /// The seed the mazes and action draws are keyed by.
    pub seed: u64,
    /// Episode index of the first maze.
    pub first: u64,
    /// The mazes (behind a lock: the rollout steps them through a shared reference).
    pub worlds: Mutex<Vec<World>>,
}

impl Worlds {
    /// Mazes `first..first + count` of `seed`.
    pub fn new(
        config: &MappingConfig,
        seed: u64,
        first: u64,
        count: usize,
    ) -> anyhow::Result<Self> {
        let worlds = (0..count as u64)
            .map(|b| World::start(config, seed, first + b))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            config: config.clone(),
            seed,
            first,
            worlds: Mutex::new(worlds),
        })
    }

    /// Puts every maze where `actions` (one list per maze) leave it: mazes that already are
    /// there stay, others restart and replay them (after a resume, or a rollout that was only
    /// a check).
    pub fn sync(&self, actions: &[Vec<u8>], rewards: Rewards) -> anyhow::Result<()> {
        let mut worlds = self.worlds.lock().unwrap_or_else(|e| e.into_inner());
        for (world, taken) in worlds.iter_mut().zip(actions) {
            if world.actions != *taken {
                world.replay(taken, rewards)?;
            }
        }
        Ok(())
    }
}

/// Draws an action from `probs` (one row of action probabilities) with the uniform number of
/// `(seed, ACTION_STREAM, episode, t)`.
pub fn sample_action(probs: &[f32], seed: u64, episode: u64, t: usize) -> u8 {
    let u = Rng::keyed(&[seed, ACTION_STREAM, episode, t as u64]).unit_f32();
    let total: f32 = probs.iter().sum();
    let mut acc = 0.0;
    for (i, &p) in probs.iter().enumerate() {
        acc += p / total;
        if u < acc {
            return i as u8;
        }
    }
    (probs.len() - 1) as u8
}

/// The most likely action of `probs` (the first of ties).
pub fn greedy_action(probs: &[f32]) -> u8 {
    let mut best = 0;
    for (i, &p) in probs.iter().enumerate() {
        if p > probs[best] {
            best = i;
        }
    }
    best as u8
}

/// Generalised advantage estimates and returns of one rollout, time-major rows `t·batch + b`:
/// `δ_t = r_t + γ·V_{t+1} − V_t`, `A_t = δ_t + γλ·A_{t+1}`, `R_t = A_t + V_t`, with
/// `V_steps = bootstrap[b]` (0 where the episode ends). λ = 1 gives n-step returns.
pub fn advantages(
    rewards: &[f32],
    values: &[f32],
    bootstrap: &[f32],
    gamma: f32,
    lambda: f32,
) -> (Vec<f32>, Vec<f32>) {
    let batch = bootstrap.len();
    let steps = rewards.len() / batch.max(1);
    let mut adv = vec![0.0; rewards.len()];
    for (b, &last) in bootstrap.iter().enumerate() {
        let (mut next_value, mut next_adv) = (last, 0.0);
        for t in (0..steps).rev() {
            let i = t * batch + b;
            let delta = rewards[i] + gamma * next_value - values[i];
            next_adv = delta + gamma * lambda * next_adv;
            adv[i] = next_adv;
            next_value = values[i];
        }
    }
    let returns = adv.iter().zip(values).map(|(a, v)| a + v).collect();
    (adv, returns)
}

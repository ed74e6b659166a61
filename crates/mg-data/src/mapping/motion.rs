//! Actions and the pre-defined motions: the reference spiral and the wall-blocked random walk.

use crate::rng::Rng;

use super::maze::Grid;

/// A one-step move in a cardinal direction (rows grow downward).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Row − 1.
    Up,
    /// Row + 1.
    Down,
    /// Column − 1.
    Left,
    /// Column + 1.
    Right,
}

impl Action {
    /// All four actions, in the order a policy's outputs index them.
    pub const ALL: [Action; 4] = [Action::Up, Action::Down, Action::Left, Action::Right];

    /// `(d_row, d_col)`.
    pub fn delta(self) -> (i64, i64) {
        match self {
            Action::Up => (-1, 0),
            Action::Down => (1, 0),
            Action::Left => (0, -1),
            Action::Right => (0, 1),
        }
    }

    /// The action for a policy output index (0 up, 1 down, 2 left, 3 right).
    pub fn from_index(i: usize) -> Option<Action> {
        Self::ALL.get(i).copied()
    }
}

/// How the agent moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Motion {
    /// The reference clockwise square spiral from the centre. It ignores walls and visits every interior cell
    /// once: (n−2)² steps (169 for 15×15, 529 for 25×25).
    Spiral,
    /// A random walk of `len` observations. Each move is uniform over the neighbours that are not walls (walls
    /// block); an agent with no free neighbour stays put.
    RandomWalk {
        /// Number of observations (time steps), start included.
        len: usize,
    },
    /// The agent is driven step by step by [`super::Episode::act`] (exploration policy).
    Policy,
}

/// The reference spiral's next move from `pos` around `centre`, or `None` when it would leave the interior
/// `[1, n−2]²` (the end of the episode).
pub fn spiral_action(pos: (usize, usize), centre: (usize, usize), n: usize) -> Option<Action> {
    let (r, c) = (pos.0 as i64, pos.1 as i64);
    let (r0, c0) = (centre.0 as i64, centre.1 as i64);
    let cd = c - c0;
    let a = if cd >= 0 {
        if r < r0 - cd + 1 {
            Action::Right
        } else if r < r0 + cd {
            Action::Down
        } else {
            Action::Left
        }
    } else if r < r0 + cd + 1 {
        Action::Right
    } else if r <= r0 - cd {
        Action::Up
    } else {
        Action::Left
    };
    let (dr, dc) = a.delta();
    let (nr, nc) = (r + dr, c + dc);
    let hi = n as i64 - 2;
    (nr >= 1 && nc >= 1 && nr <= hi && nc <= hi).then_some(a)
}

/// A uniformly random action among those that walls do not block, or `None` if all four are blocked.
pub fn random_free_action(map: &Grid, pos: (usize, usize), rng: &mut Rng) -> Option<Action> {
    let mut free = [Action::Up; 4];
    let mut k = 0;
    for a in Action::ALL {
        let (dr, dc) = a.delta();
        if !map.is_wall(pos.0 as i64 + dr, pos.1 as i64 + dc) {
            free[k] = a;
            k += 1;
        }
    }
    (k > 0).then(|| free[rng.index(k)])
}

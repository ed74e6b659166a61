//! Maps: the reference maze generator and open (border-only) maps.

use crate::rng::Rng;

/// Cell value of a free cell.
pub const FREE: u8 = 0;
/// Cell value of a wall.
pub const WALL: u8 = 1;

/// A square map of free (0) and wall (1) cells, row-major, rows growing downward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grid {
    size: usize,
    cells: Vec<u8>,
}

impl Grid {
    /// A `size`×`size` map with walls on the border only.
    pub fn open(size: usize) -> Self {
        let mut cells = vec![FREE; size * size];
        for i in 0..size {
            cells[i] = WALL;
            cells[(size - 1) * size + i] = WALL;
            cells[i * size] = WALL;
            cells[i * size + size - 1] = WALL;
        }
        Self { size, cells }
    }

    /// The reference ("Wikipedia") maze generator, `size`×`size` (rounded to odd as the reference does).
    ///
    /// With H = W = 2⌊size/2⌋+1: ⌊complexity·5·(H+W)⌋ wall-growing steps from each of ⌊density·⌊H/2⌋·⌊W/2⌋⌋
    /// random even/even seeds; x is drawn before y; neighbour candidates are left, right, up, down. Border
    /// walls always; a cell with both coordinates odd is always free.
    pub fn maze(size: usize, complexity: f64, density: f64, rng: &mut Rng) -> Self {
        let n = (size / 2) * 2 + 1;
        let mut g = Self::open(n);
        let n_complexity = (complexity * (5 * (n + n)) as f64) as usize;
        let n_density = (density * ((n / 2) * (n / 2)) as f64) as usize;
        let half = (n / 2) as i64;
        for _ in 0..n_density {
            let mut x = (rng.range_inclusive(0, half) * 2) as usize;
            let mut y = (rng.range_inclusive(0, half) * 2) as usize;
            g.cells[y * n + x] = WALL;
            for _ in 0..n_complexity {
                let mut nb = [(0usize, 0usize); 4];
                let mut k = 0;
                if x > 1 {
                    nb[k] = (y, x - 2);
                    k += 1;
                }
                if x < n - 2 {
                    nb[k] = (y, x + 2);
                    k += 1;
                }
                if y > 1 {
                    nb[k] = (y - 2, x);
                    k += 1;
                }
                if y < n - 2 {
                    nb[k] = (y + 2, x);
                    k += 1;
                }
                if k == 0 {
                    continue;
                }
                let (y2, x2) = nb[rng.range_inclusive(0, k as i64 - 1) as usize];
                if g.cells[y2 * n + x2] == FREE {
                    g.cells[y2 * n + x2] = WALL;
                    g.cells[((y + y2) / 2) * n + (x + x2) / 2] = WALL;
                    x = x2;
                    y = y2;
                }
            }
        }
        g
    }

    /// Side length.
    pub fn size(&self) -> usize {
        self.size
    }

    /// All cells, row-major.
    pub fn cells(&self) -> &[u8] {
        &self.cells
    }

    /// The cell at `(row, col)`; cells outside the map read as walls.
    pub fn get(&self, row: i64, col: i64) -> u8 {
        let n = self.size as i64;
        if row < 0 || col < 0 || row >= n || col >= n {
            WALL
        } else {
            self.cells[(row * n + col) as usize]
        }
    }

    /// Whether `(row, col)` is a wall (or outside the map).
    pub fn is_wall(&self, row: i64, col: i64) -> bool {
        self.get(row, col) == WALL
    }

    /// The `k`×`k` patch centred on `(row, col)` (`k` odd), row-major; cells outside the map read as walls.
    pub fn patch(&self, row: usize, col: usize, k: usize) -> Vec<u8> {
        let r = (k / 2) as i64;
        let mut out = Vec::with_capacity(k * k);
        for dr in -r..=r {
            for dc in -r..=r {
                out.push(self.get(row as i64 + dr, col as i64 + dc));
            }
        }
        out
    }

    /// Fraction of wall cells.
    pub fn wall_fraction(&self) -> f64 {
        self.cells.iter().filter(|&&c| c == WALL).count() as f64 / self.cells.len() as f64
    }

    /// One string per row: `#` wall, `.` free.
    pub fn to_ascii(&self) -> Vec<String> {
        self.cells
            .chunks(self.size)
            .map(|row| {
                row.iter()
                    .map(|&c| if c == WALL { '#' } else { '.' })
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maze_invariants() {
        for size in [15usize, 25, 9, 31] {
            for seed in 0..50 {
                let g = Grid::maze(size, 0.05, 0.2, &mut Rng::new(seed));
                assert_eq!(g.size(), size);
                for i in 0..size as i64 {
                    let e = size as i64 - 1;
                    assert!(
                        g.is_wall(0, i) && g.is_wall(e, i) && g.is_wall(i, 0) && g.is_wall(i, e)
                    );
                }
                for r in 0..size {
                    for c in 0..size {
                        let v = g.get(r as i64, c as i64);
                        assert!(v == FREE || v == WALL);
                        if r % 2 == 1 && c % 2 == 1 {
                            assert_eq!(v, FREE, "odd/odd cell ({r},{c}) must be free");
                        }
                        // A wall cell off the border with odd row and odd col never occurs; a wall with
                        // one odd coordinate connects two even/even pillars.
                        if v == WALL && r % 2 == 1 && c % 2 == 0 && r + 1 < size {
                            assert!(
                                g.is_wall(r as i64 - 1, c as i64)
                                    && g.is_wall(r as i64 + 1, c as i64)
                            );
                        }
                        if v == WALL && c % 2 == 1 && r % 2 == 0 && c + 1 < size {
                            assert!(
                                g.is_wall(r as i64, c as i64 - 1)
                                    && g.is_wall(r as i64, c as i64 + 1)
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn maze_is_deterministic_and_varies() {
        let a = Grid::maze(25, 0.05, 0.2, &mut Rng::new(3));
        let b = Grid::maze(25, 0.05, 0.2, &mut Rng::new(3));
        let c = Grid::maze(25, 0.05, 0.2, &mut Rng::new(4));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.wall_fraction() > Grid::open(25).wall_fraction());
    }

    #[test]
    fn open_map_and_patches() {
        let g = Grid::open(5);
        assert_eq!(g.to_ascii(), ["#####", "#...#", "#...#", "#...#", "#####"]);
        assert_eq!(g.patch(1, 1, 3), [1, 1, 1, 1, 0, 0, 1, 0, 0]);
        assert_eq!(g.patch(0, 0, 3), [1, 1, 1, 1, 1, 1, 1, 1, 0]);
    }
}

//! 3×3 stride-1 convolutions as Winograd's minimal filtering F(2×2, 3×3) (Lavin and Gray,
//! "Fast algorithms for convolutional neural networks", 2016): every 2×2 output tile comes from
//! the 4×4 input patch under it through 16 products per input and output channel instead of
//! the 36 of the direct form (2.25 times fewer multiply-adds), and the products of a block of
//! tiles are 16 gemms.
//!
//! With `d` a 4×4 patch, `g` a 3×3 kernel and `⊙` the elementwise product, the 2×2 tile of the
//! correlation is `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` for
//!
//! ```text
//!      ⎡1  0 -1  0⎤        ⎡ 1    0    0 ⎤
//! Bᵀ = ⎢0  1  1  0⎥    G = ⎢1/2  1/2  1/2⎥    Aᵀ = ⎡1  1  1  0⎤
//!      ⎢0 -1  1  0⎥        ⎢1/2 -1/2  1/2⎥         ⎣0  1 -1 -1⎦
//!      ⎣0  1  0 -1⎦        ⎣ 0    0    1 ⎦
//! ```
//!
//! Summed over input channels, entry `ξ = 4·r + c` of the transformed tiles is one gemm,
//! `M_ξ [c_out, tiles] = U_ξ [c_out, c_in] × V_ξ [c_in, tiles]`, with `U = G g Gᵀ` per kernel
//! and `V = Bᵀ d B` per patch. The transforms run over whole rows of tiles, so that their loops
//! vectorise. Rounding: the transforms add and subtract a few values of the same magnitude, so
//! in f32 the result differs from the direct form by a few units in the last place of the
//! largest term.

use super::kernels::{ConvShape, Real, simd, with_scratch};
use super::matmul::{self, View, ViewMut};

/// Tiles per block: the transformed input and products of a block (`16·(c_in + c_out)` values
/// per tile) stay in the caches between the transforms and the gemms.
const BLOCK_TILES: usize = 256;

/// Whether the Winograd form is used for a convolution of shape `s` with `c_out` output
/// channels: a 3×3 kernel, output rows of at least 24 tiles, or of 6 tiles with 32 output
/// channels or more. The transforms cost the same per tile whatever `c_out`, the products
/// they save grow with it, and short rows of tiles make short loops: measured on the mapping
/// models' shapes, the unfolding is as fast or faster below these sizes (docs/BENCHMARKS.md).
pub(crate) fn applies(s: &ConvShape, c_out: usize) -> bool {
    let tiles_x = s.wo.div_ceil(2);
    s.kh == 3 && s.kw == 3 && s.ho >= 2 && (tiles_x >= 24 || (c_out >= 32 && tiles_x >= 6))
}

/// The kernel transform `U = G g Gᵀ` of every kernel of `w` (`[c_out, c_in, 3, 3]`), laid out
/// `[16, c_out, c_in]`.
pub(crate) fn transform_kernel<T: Real>(w: &[T], c_out: usize, c_in: usize) -> Vec<T> {
    debug_assert_eq!(w.len(), c_out * c_in * 9);
    let mut u = vec![T::ZERO; 16 * c_out * c_in];
    let half = T::HALF;
    // `(G v)` for a 3-vector: its four entries.
    let g = |v: [T; 3]| {
        [
            v[0],
            half * (v[0] + v[1] + v[2]),
            half * (v[0] - v[1] + v[2]),
            v[2],
        ]
    };
    for (k, kernel) in w.chunks_exact(9).enumerate() {
        let col = |b: usize| g([kernel[b], kernel[3 + b], kernel[6 + b]]);
        // `G g` column by column, then `(G g) Gᵀ` row by row.
        let cols = [col(0), col(1), col(2)];
        for r in 0..4 {
            let row = g([cols[0][r], cols[1][r], cols[2][r]]);
            for (c, &value) in row.iter().enumerate() {
                u[(4 * r + c) * c_out * c_in + k] = value;
            }
        }
    }
    u
}

/// The convolution of `images` images of `x` (`[images, c_in, h, w]`) with the 3×3 kernels
/// whose transform is `u` ([`transform_kernel`]), stride 1, padding `[s.ph, s.pw]`, into `out`
/// (`[images, c_out, ho, wo]`, overwritten), `bias` (`[c_out]`) added.
pub(crate) fn conv<T: Real>(
    x: &[T],
    images: usize,
    s: ConvShape,
    c_out: usize,
    u: &[T],
    bias: Option<&[T]>,
    out: &mut [T],
) {
    let c_in = s.c_in;
    debug_assert!(s.kh == 3 && s.kw == 3);
    debug_assert_eq!(x.len(), images * c_in * s.h * s.w);
    debug_assert_eq!(out.len(), images * c_out * s.pixels());
    debug_assert_eq!(u.len(), 16 * c_out * c_in);
    let (tiles_y, tiles_x) = (s.ho.div_ceil(2), s.wo.div_ceil(2));
    let tile_rows = images * tiles_y;
    if tile_rows == 0 || tiles_x == 0 {
        return;
    }
    let rows_per_block = (BLOCK_TILES / tiles_x).clamp(1, tile_rows);
    let block = rows_per_block * tiles_x;
    let (v_len, m_len) = (16 * c_in * block, 16 * c_out * block);
    // Row buffers: the input's deinterleaved padded row and row transforms, or the output's
    // partial sums.
    let seg_rows = rows_per_block.min(tiles_y);
    let row_len = (4 * tiles_x + 4 + 8 * (seg_rows + 1) * tiles_x).max(10 * seg_rows * tiles_x);
    let (x_image, out_image) = (c_in * s.h * s.w, c_out * s.pixels());
    with_scratch(v_len + m_len + row_len, |buf: &mut [T]| {
        let (v, rest) = buf.split_at_mut(v_len);
        let (m, rows) = rest.split_at_mut(m_len);
        for first in (0..tile_rows).step_by(rows_per_block) {
            let last = (first + rows_per_block).min(tile_rows);
            // The block's matrices have one column per tile: `tiles` columns. Its tile rows
            // are cut into segments of one image each.
            let tiles = (last - first) * tiles_x;
            let segments = || {
                let mut g = first;
                core::iter::from_fn(move || {
                    (g < last).then(|| {
                        let image = g / tiles_y;
                        let end = last.min((image + 1) * tiles_y);
                        let seg = (image, g % tiles_y..end - image * tiles_y, g - first);
                        g = end;
                        seg
                    })
                })
            };
            simd(
                #[inline(always)]
                || {
                    for (image, ty, row) in segments() {
                        let x = &x[image * x_image..][..x_image];
                        let at = row * tiles_x;
                        transform_input(x, s, ty, tiles_x, v, tiles, at, rows);
                    }
                },
            );
            for xi in 0..16 {
                let dst = ViewMut {
                    data: &mut *m,
                    offset: xi * c_out * tiles,
                    rows: c_out,
                    cols: tiles,
                    row_stride: tiles,
                };
                let lhs = View {
                    offset: xi * c_out * c_in,
                    ..View::rows(u, c_out, c_in)
                };
                let rhs = View {
                    offset: xi * c_in * tiles,
                    ..View::rows(&*v, c_in, tiles)
                };
                matmul::gemm(dst, lhs, rhs);
            }
            simd(
                #[inline(always)]
                || {
                    for (image, ty, row) in segments() {
                        let out = &mut out[image * out_image..][..out_image];
                        let at = row * tiles_x;
                        transform_output(m, s, c_out, ty, tiles_x, tiles, at, bias, out, rows);
                    }
                },
            );
        }
    });
}

/// `V = Bᵀ d B` for the tiles of tile rows `ty` of one image `x` (`[c_in, h, w]`): entry `ξ`
/// of input channel `ci` and tile `tx` of tile row `ty.start + k` goes to
/// `v[(ξ·c_in + ci)·tiles + at + k·tiles_x + tx]`.
///
/// `d B` is computed once per padded input row (tile rows overlap by two rows), from the row's
/// even and odd columns apart, into the even and the odd padded rows' buffers; `Bᵀ (d B)` then
/// runs over all the segment's tiles of a channel in one loop per entry, so that every loop
/// runs over contiguous values, most of them long.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn transform_input<T: Real>(
    x: &[T],
    s: ConvShape,
    ty: core::ops::Range<usize>,
    tiles_x: usize,
    v: &mut [T],
    tiles: usize,
    at: usize,
    buf: &mut [T],
) {
    // A padded row has `2·tiles_x + 2 ≥ w + 2·pw` columns, `tiles_x + 1` even and odd ones.
    let (wp, half) = (2 * tiles_x + 2, tiles_x + 1);
    let (pad, rest) = buf.split_at_mut(wp);
    let (even, rest) = rest.split_at_mut(half);
    let (odd, rest) = rest.split_at_mut(half);
    let n = ty.len() * tiles_x;
    // Entry `c` of `d B` for padded row `2·ty.start + 2·j + parity` lies at
    // `rows[parity][c·span + j·tiles_x..][..tiles_x]`, for `j` in `0..=ty.len()`.
    let span = n + tiles_x;
    let (rows_even, rest) = rest.split_at_mut(4 * span);
    let rows_odd = &mut rest[..4 * span];
    let plane = s.h * s.w;
    pad.fill(T::ZERO);
    for ci in 0..s.c_in {
        let src = &x[ci * plane..][..plane];
        for p in 0..2 * ty.len() + 2 {
            let rows = match p % 2 {
                0 => &mut *rows_even,
                _ => &mut *rows_odd,
            };
            let (r0, rest) = rows.split_at_mut(span);
            let (r1, rest) = rest.split_at_mut(span);
            let (r2, r3) = rest.split_at_mut(span);
            let j = (p / 2) * tiles_x;
            let [r0, r1, r2, r3] = [r0, r1, r2, r3].map(|r| &mut r[j..][..tiles_x]);
            let Some(y) = (2 * ty.start + p).checked_sub(s.ph).filter(|&y| y < s.h) else {
                for r in [r0, r1, r2, r3] {
                    r.fill(T::ZERO);
                }
                continue;
            };
            // The edges of `pad` stay zero: every row writes the same columns.
            pad[s.pw..s.pw + s.w].copy_from_slice(&src[y * s.w..][..s.w]);
            // Even and odd columns apart (one loop, so that it vectorises), then tile `tx`
            // covers even[tx], odd[tx], even[tx + 1], odd[tx + 1].
            for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(pad.chunks_exact(2)) {
                *e = pair[0];
                *o = pair[1];
            }
            row_transform(r0, r1, r2, r3, even, odd);
        }
        // `Bᵀ (d B)`: tile row `k` combines padded rows `2k` to `2k + 3`, that is even and
        // odd rows `k` and `k + 1`: one loop over the segment's `n` tiles per entry.
        for c in 0..4 {
            let (e, o) = (
                &rows_even[c * span..][..span],
                &rows_odd[c * span..][..span],
            );
            let (d0, d2) = (&e[..n], &e[tiles_x..]);
            let (d1, d3) = (&o[..n], &o[tiles_x..]);
            let at = |xi: usize| (xi * s.c_in + ci) * tiles + at;
            let dst = &mut v[at(c)..][..n];
            for (d, (&a, &b)) in dst.iter_mut().zip(d0.iter().zip(d2)) {
                *d = a - b;
            }
            let dst = &mut v[at(4 + c)..][..n];
            for (d, (&a, &b)) in dst.iter_mut().zip(d1.iter().zip(d2)) {
                *d = a + b;
            }
            let dst = &mut v[at(8 + c)..][..n];
            for (d, (&a, &b)) in dst.iter_mut().zip(d2.iter().zip(d1)) {
                *d = a - b;
            }
            let dst = &mut v[at(12 + c)..][..n];
            for (d, (&a, &b)) in dst.iter_mut().zip(d1.iter().zip(d3)) {
                *d = a - b;
            }
        }
    }
}

/// `d B` of one padded row from its even and odd columns (`tiles_x + 1` each): entry `c` of
/// tile `tx` into `rc[tx]`. The rows are arguments of their own, so that the compiler knows
/// they do not overlap and vectorises the loop.
#[inline(always)]
fn row_transform<T: Real>(
    r0: &mut [T],
    r1: &mut [T],
    r2: &mut [T],
    r3: &mut [T],
    even: &[T],
    odd: &[T],
) {
    let n = r0.len();
    let (e, e1, o, o1) = (&even[..n], &even[1..][..n], &odd[..n], &odd[1..][..n]);
    let (r1, r2, r3) = (&mut r1[..n], &mut r2[..n], &mut r3[..n]);
    for tx in 0..n {
        r0[tx] = e[tx] - e1[tx];
        r1[tx] = o[tx] + e1[tx];
        r2[tx] = e1[tx] - o[tx];
        r3[tx] = o[tx] - o1[tx];
    }
}

/// `Y = Aᵀ M A` for the tiles of tile rows `ty` of one image, from the products `m`
/// (`m[(ξ·c_out + co)·tiles + at + k·tiles_x + tx]` for tile row `ty.start + k`), with the
/// bias, into output rows `2·ty.start` to `2·ty.end − 1` of `out` (`[c_out, ho, wo]`; the last
/// row and column of the last tiles are dropped where `ho` or `wo` is odd). The sums run over
/// all the segment's tiles of a channel in one loop each.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn transform_output<T: Real>(
    m: &[T],
    s: ConvShape,
    c_out: usize,
    ty: core::ops::Range<usize>,
    tiles_x: usize,
    tiles: usize,
    at: usize,
    bias: Option<&[T]>,
    out: &mut [T],
    buf: &mut [T],
) {
    let n = ty.len() * tiles_x;
    let (sums, rest) = buf.split_at_mut(8 * n);
    let (y0, rest) = rest.split_at_mut(n);
    let y1 = &mut rest[..n];
    for co in 0..c_out {
        let b = bias.map_or(T::ZERO, |b| b[co]);
        let e = |xi: usize| &m[(xi * c_out + co) * tiles + at..][..n];
        // `Aᵀ M`: row 0 is `m0 + m1 + m2`, row 1 `m1 − m2 − m3` (rows of M, 4 entries each).
        for c in 0..4 {
            let (m0, m1, m2, m3) = (e(c), e(4 + c), e(8 + c), e(12 + c));
            let (s0, s1) = sums[2 * c * n..][..2 * n].split_at_mut(n);
            for i in 0..n {
                s0[i] = m0[i] + m1[i] + m2[i];
                s1[i] = m1[i] - m2[i] - m3[i];
            }
        }
        // `(Aᵀ M) A`: column 0 is `s0 + s1 + s2`, column 1 `s1 − s2 − s3` (entries of a row
        // of `Aᵀ M`), computed apart for output row `r` of every tile, then interleaved into
        // the output rows.
        let plane = &mut out[co * s.pixels()..][..s.pixels()];
        for r in 0..2 {
            let part = |c: usize| &sums[(2 * c + r) * n..][..n];
            let (s0, s1, s2, s3) = (part(0), part(1), part(2), part(3));
            for i in 0..n {
                y0[i] = s0[i] + s1[i] + s2[i] + b;
                y1[i] = s1[i] - s2[i] - s3[i] + b;
            }
            for (k, ty) in ty.clone().enumerate() {
                let y = 2 * ty + r;
                if y < s.ho {
                    let (a, c) = (&y0[k * tiles_x..][..tiles_x], &y1[k * tiles_x..][..tiles_x]);
                    interleave(&mut plane[y * s.wo..][..s.wo], a, c);
                }
            }
        }
    }
}

/// `row[2i] = a[i]`, `row[2i + 1] = b[i]` for the `row.len()` entries of `row` (at most
/// `2·a.len()`), eight pairs at a time where it can (fixed-length inner loops; the compiler
/// still stores them one value at a time, docs/BENCHMARKS.md).
#[inline(always)]
fn interleave<T: Real>(row: &mut [T], a: &[T], b: &[T]) {
    let pairs = row.len() / 2;
    let (head, tail) = row.split_at_mut(pairs * 2);
    let mut chunks = head.chunks_exact_mut(16);
    let (mut ai, mut bi) = (a[..pairs].chunks_exact(8), b[..pairs].chunks_exact(8));
    for ((dst, a), b) in (&mut chunks).zip(&mut ai).zip(&mut bi) {
        for j in 0..8 {
            dst[2 * j] = a[j];
            dst[2 * j + 1] = b[j];
        }
    }
    let rest = chunks.into_remainder();
    for ((pair, &x), &z) in rest
        .chunks_exact_mut(2)
        .zip(ai.remainder())
        .zip(bi.remainder())
    {
        pair[0] = x;
        pair[1] = z;
    }
    if let Some(last) = tail.first_mut() {
        *last = a[pairs];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct correlation in f64: `out[n, co, y, x] = Σ w[co, ci, a, b]·x[n, ci, y + a − ph,
    /// x + b − pw]`, plus the bias.
    fn direct(
        x: &[f64],
        n: usize,
        s: ConvShape,
        c_out: usize,
        w: &[f64],
        bias: &[f64],
    ) -> Vec<f64> {
        let mut out = vec![0.0; n * c_out * s.pixels()];
        for image in 0..n {
            for co in 0..c_out {
                for y in 0..s.ho {
                    for xo in 0..s.wo {
                        let mut sum = bias[co];
                        for ci in 0..s.c_in {
                            for a in 0..3 {
                                for b in 0..3 {
                                    let (sy, sx) = (y + a, xo + b);
                                    if sy < s.ph || sx < s.pw {
                                        continue;
                                    }
                                    let (sy, sx) = (sy - s.ph, sx - s.pw);
                                    if sy >= s.h || sx >= s.w {
                                        continue;
                                    }
                                    sum += w[((co * s.c_in + ci) * 3 + a) * 3 + b]
                                        * x[((image * s.c_in + ci) * s.h + sy) * s.w + sx];
                                }
                            }
                        }
                        out[((image * c_out + co) * s.ho + y) * s.wo + xo] = sum;
                    }
                }
            }
        }
        out
    }

    fn shape(c_in: usize, [h, w]: [usize; 2], [ph, pw]: [usize; 2]) -> ConvShape {
        ConvShape {
            c_in,
            h,
            w,
            kh: 3,
            kw: 3,
            ph,
            pw,
            ho: h + 2 * ph - 2,
            wo: w + 2 * pw - 2,
        }
    }

    /// Against the direct form in f64 on odd and even grids, non-square ones, one channel, one
    /// image, every padding, and blocks that end inside an image and span several images.
    #[test]
    fn matches_the_direct_convolution() {
        let cases = [
            (1, 1, 1, [2, 2], [1, 1]),
            (2, 3, 2, [5, 7], [1, 1]),
            (3, 2, 5, [6, 6], [0, 0]),
            (1, 4, 3, [9, 4], [2, 1]),
            (2, 1, 1, [3, 3], [1, 0]),
            (3, 5, 4, [48, 48], [1, 1]),
            (40, 2, 3, [12, 12], [1, 1]),
        ];
        for (n, c_in, c_out, hw, pad) in cases {
            let s = shape(c_in, hw, pad);
            let x: Vec<f64> = (0..n * c_in * hw[0] * hw[1])
                .map(|v| (v as f64 * 0.731).sin())
                .collect();
            let w: Vec<f64> = (0..c_out * c_in * 9)
                .map(|v| (v as f64 * 1.37).cos())
                .collect();
            let bias: Vec<f64> = (0..c_out).map(|v| v as f64 * 0.25 - 0.5).collect();
            let expect = direct(&x, n, s, c_out, &w, &bias);
            let mut got = vec![f64::NAN; expect.len()];
            let u = transform_kernel(&w, c_out, c_in);
            conv(&x, n, s, c_out, &u, Some(&bias), &mut got);
            let worst = expect
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(
                worst < 1e-12,
                "{n}×{c_in}→{c_out} {hw:?} pad {pad:?}: {worst}"
            );
        }
    }

    /// In f32 the Winograd form stays within a few units in the last place of the direct one
    /// (computed in f64), and no bias means none added.
    #[test]
    fn f32_error_is_small() {
        let (n, c_in, c_out) = (2, 16, 8);
        let s = shape(c_in, [12, 12], [1, 1]);
        let x: Vec<f64> = (0..n * c_in * 144)
            .map(|v| (v as f64 * 0.37).sin())
            .collect();
        let w: Vec<f64> = (0..c_out * c_in * 9)
            .map(|v| (v as f64 * 0.91).cos() / 12.0)
            .collect();
        let expect = direct(&x, n, s, c_out, &w, &vec![0.0; c_out]);
        let (x32, w32): (Vec<f32>, Vec<f32>) = (
            x.iter().map(|&v| v as f32).collect(),
            w.iter().map(|&v| v as f32).collect(),
        );
        let mut got = vec![0.0f32; expect.len()];
        conv(
            &x32,
            n,
            s,
            c_out,
            &transform_kernel(&w32, c_out, c_in),
            None,
            &mut got,
        );
        let worst = expect
            .iter()
            .zip(&got)
            .map(|(a, &b)| (a - b as f64).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-5, "worst difference {worst}");
    }

    #[test]
    fn applies_to_3x3_kernels_on_large_enough_grids() {
        assert!(applies(&shape(4, [48, 48], [1, 1]), 16));
        assert!(applies(&shape(4, [12, 12], [1, 1]), 64));
        assert!(!applies(&shape(4, [24, 24], [1, 1]), 16));
        assert!(!applies(&shape(4, [6, 6], [1, 1]), 64));
        // A 1×3 kernel on rows (the 1D layers).
        let row = ConvShape {
            kh: 1,
            ph: 0,
            ho: 1,
            ..shape(4, [1, 48], [1, 1])
        };
        assert!(!applies(&row, 64));
    }
}

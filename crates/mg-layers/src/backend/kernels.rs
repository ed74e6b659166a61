//! The CPU kernels behind the Flex backend's [`super::MgBackend`] methods, on plain slices of
//! row-major (`[n, c, h, w]`) data. No tensor types here: what is tested is what runs.

use core::ops::{Add, Mul, Sub};

/// The float types the kernels run on (f32 and f64).
pub(crate) trait Real:
    Copy
    + PartialOrd
    + Send
    + Sync
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    fn sigmoid(self) -> Self;
    fn tanh(self) -> Self;
}

macro_rules! real {
    ($t:ty) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline]
            fn sigmoid(self) -> Self {
                1.0 / (1.0 + (-self).exp())
            }
            #[inline]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
        }
    };
}
real!(f32);
real!(f64);

/// Sizes of a stride-1 convolution `x [n, c_in, h, w] ⊛ w [c_out, c_in, kh, kw]` with
/// zero padding `[ph, pw]`, giving `[n, c_out, ho, wo]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvShape {
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub ph: usize,
    pub pw: usize,
    pub ho: usize,
    pub wo: usize,
}

impl ConvShape {
    /// Rows of the unfolded input: `c_in·kh·kw`.
    pub fn taps(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    /// Columns of the unfolded input per image: `ho·wo`.
    pub fn pixels(&self) -> usize {
        self.ho * self.wo
    }

    /// The output columns `[lo, hi)` whose source column `x + b − pw` (kernel column `b`)
    /// lies inside the image.
    fn inside(&self, b: usize) -> (usize, usize) {
        let lo = self.pw.saturating_sub(b).min(self.wo);
        let hi = (self.w + self.pw).saturating_sub(b).min(self.wo).max(lo);
        (lo, hi)
    }
}

/// Unfolds images of `x` (`[images, c_in, h, w]`) into `cols`, a `[c_in·kh·kw, images·ho·wo]`
/// row-major matrix: row `(ci, a, b)`, column `(image, y, x)` holds
/// `x[image, ci, y + a − ph, x + b − pw]`, zero outside the image.
pub(crate) fn unfold<T: Real>(x: &[T], images: usize, s: ConvShape, cols: &mut [T]) {
    let plane = s.c_in * s.h * s.w;
    let width = images * s.pixels();
    debug_assert_eq!(x.len(), images * plane);
    debug_assert_eq!(cols.len(), s.taps() * width);
    for image in 0..images {
        let x = &x[image * plane..][..plane];
        unfold_rows(x, s, 0..s.ho, cols, width, image * s.pixels());
    }
}

/// Unfolds output rows `rows` of one image `x` (`[c_in, h, w]`): row `(ci, a, b)` of `cols`
/// (`width` columns each) gets, from column `offset` on, `x[ci, y + a − ph, x + b − pw]` for
/// `y` in `rows` and every `x`, zero outside the image.
pub(crate) fn unfold_rows<T: Real>(
    x: &[T],
    s: ConvShape,
    rows: core::ops::Range<usize>,
    cols: &mut [T],
    width: usize,
    offset: usize,
) {
    let plane = s.h * s.w;
    debug_assert_eq!(x.len(), s.c_in * plane);
    debug_assert!(rows.end <= s.ho && offset + rows.len() * s.wo <= width);
    debug_assert_eq!(cols.len(), s.taps() * width);
    for ci in 0..s.c_in {
        let src = &x[ci * plane..][..plane];
        for a in 0..s.kh {
            for b in 0..s.kw {
                let row = (ci * s.kh + a) * s.kw + b;
                let out = &mut cols[row * width + offset..][..rows.len() * s.wo];
                let (x_lo, x_hi) = s.inside(b);
                for (y, dst) in rows.clone().zip(out.chunks_exact_mut(s.wo)) {
                    let sy = y + a;
                    if sy < s.ph || sy - s.ph >= s.h {
                        dst.fill(T::ZERO);
                        continue;
                    }
                    let src_row = &src[(sy - s.ph) * s.w..][..s.w];
                    dst[..x_lo].fill(T::ZERO);
                    dst[x_hi..].fill(T::ZERO);
                    if x_hi > x_lo {
                        let sx = x_lo + b - s.pw;
                        dst[x_lo..x_hi].copy_from_slice(&src_row[sx..sx + (x_hi - x_lo)]);
                    }
                }
            }
        }
    }
}

/// The adjoint of [`unfold`]: adds every entry of `cols` (`[c_in·kh·kw, images·ho·wo]`) into
/// the input position it was read from; `dx` (`[images, c_in, h, w]`) must start at zero.
pub(crate) fn fold<T: Real>(cols: &[T], images: usize, s: ConvShape, dx: &mut [T]) {
    let plane = s.h * s.w;
    let width = images * s.pixels();
    debug_assert_eq!(dx.len(), images * s.c_in * plane);
    debug_assert_eq!(cols.len(), s.taps() * width);
    for ci in 0..s.c_in {
        for a in 0..s.kh {
            for b in 0..s.kw {
                let row = (ci * s.kh + a) * s.kw + b;
                let src = &cols[row * width..(row + 1) * width];
                let (x_lo, x_hi) = s.inside(b);
                if x_hi == x_lo {
                    continue;
                }
                let sx = x_lo + b - s.pw;
                for image in 0..images {
                    let dst = &mut dx[(image * s.c_in + ci) * plane..][..plane];
                    for y in 0..s.ho {
                        let sy = y + a;
                        if sy < s.ph || sy - s.ph >= s.h {
                            continue;
                        }
                        let from = &src[(image * s.ho + y) * s.wo..][x_lo..x_hi];
                        let to = &mut dst[(sy - s.ph) * s.w + sx..][..x_hi - x_lo];
                        for (t, f) in to.iter_mut().zip(from) {
                            *t = *t + *f;
                        }
                    }
                }
            }
        }
    }
}

/// Nearest upsampling of planes `x` (`[planes, h, w]`) by `[fh, fw]` into `out`
/// (`[planes, fh·h, fw·w]`).
pub(crate) fn upsample<T: Real>(x: &[T], [h, w]: [usize; 2], [fh, fw]: [usize; 2], out: &mut [T]) {
    let (ho, wo) = (h * fh, w * fw);
    if x.is_empty() || out.is_empty() {
        return;
    }
    debug_assert_eq!(x.len() / (h * w) * ho * wo, out.len());
    for (src, dst) in x.chunks_exact(h * w).zip(out.chunks_exact_mut(ho * wo)) {
        for (row, block) in src.chunks_exact(w).zip(dst.chunks_exact_mut(fh * wo)) {
            let (first, rest) = block.split_at_mut(wo);
            for (d, v) in first.chunks_exact_mut(fw).zip(row) {
                d.fill(*v);
            }
            for copy in rest.chunks_exact_mut(wo) {
                copy.copy_from_slice(first);
            }
        }
    }
}

/// The adjoint of [`upsample`]: `dx` (`[planes, h, w]`, overwritten) gets the sum of each
/// `fh × fw` block of `grad` (`[planes, fh·h, fw·w]`).
pub(crate) fn upsample_backward<T: Real>(
    grad: &[T],
    [h, w]: [usize; 2],
    [fh, fw]: [usize; 2],
    dx: &mut [T],
) {
    let (ho, wo) = (h * fh, w * fw);
    if grad.is_empty() || dx.is_empty() {
        return;
    }
    debug_assert_eq!(dx.len() / (h * w) * ho * wo, grad.len());
    for (src, dst) in grad.chunks_exact(ho * wo).zip(dx.chunks_exact_mut(h * w)) {
        for (block, row) in src.chunks_exact(fh * wo).zip(dst.chunks_exact_mut(w)) {
            row.fill(T::ZERO);
            for line in block.chunks_exact(wo) {
                for (d, g) in row.iter_mut().zip(line.chunks_exact(fw)) {
                    *d = g.iter().fold(*d, |acc, &v| acc + v);
                }
            }
        }
    }
}

/// The row-major index in its plane of the first maximum of each `fh × fw` block of the
/// planes `x` (`[planes, h, w]`), with the maximum: `f(block, index, max)` for every block in
/// order. (A later entry replaces the maximum only when strictly greater, as burn's pooling.)
fn block_maxima<T: Real>(
    x: &[T],
    [h, w]: [usize; 2],
    [fh, fw]: [usize; 2],
    mut f: impl FnMut(usize, usize, T),
) {
    let (ho, wo) = (h / fh, w / fw);
    if x.is_empty() || ho * wo == 0 {
        return;
    }
    for (p, plane) in x.chunks_exact(h * w).enumerate() {
        for y in 0..ho {
            for x0 in 0..wo {
                let mut best = (y * fh * w + x0 * fw, plane[y * fh * w + x0 * fw]);
                for a in 0..fh {
                    for b in 0..fw {
                        let i = (y * fh + a) * w + x0 * fw + b;
                        if plane[i] > best.1 {
                            best = (i, plane[i]);
                        }
                    }
                }
                f((p * ho + y) * wo + x0, best.0, best.1);
            }
        }
    }
}

/// Max-pooling of planes `x` (`[planes, h, w]`) over `fh × fw` blocks into `out`
/// (`[planes, h/fh, w/fw]`).
pub(crate) fn maxpool<T: Real>(x: &[T], hw: [usize; 2], factors: [usize; 2], out: &mut [T]) {
    block_maxima(x, hw, factors, |k, _, max| out[k] = max);
}

/// The gradient of [`maxpool`]: `dx` (`[planes, h, w]`, overwritten) gets each entry of
/// `grad` (`[planes, h/fh, w/fw]`) at the first maximum of its block of `x`, zero elsewhere.
pub(crate) fn maxpool_backward<T: Real>(
    x: &[T],
    grad: &[T],
    [h, w]: [usize; 2],
    factors: [usize; 2],
    dx: &mut [T],
) {
    dx.fill(T::ZERO);
    let plane = h * w;
    let per_plane = (h / factors[0].max(1)) * (w / factors[1].max(1));
    block_maxima(x, [h, w], factors, |k, i, _| {
        dx[k / per_plane * plane + i] = grad[k];
    });
}

/// Copies `g` (`[images, c_out, pixels]`) into `out`, a `[c_out, images·pixels]` matrix.
pub(crate) fn channels_first<T: Real>(
    g: &[T],
    images: usize,
    c_out: usize,
    pixels: usize,
    out: &mut [T],
) {
    debug_assert_eq!(g.len(), images * c_out * pixels);
    let width = images * pixels;
    for image in 0..images {
        for co in 0..c_out {
            out[co * width + image * pixels..][..pixels]
                .copy_from_slice(&g[(image * c_out + co) * pixels..][..pixels]);
        }
    }
}

/// The gate slices `(i, g, f, o)` of one image: `gates` holds `[4·c, pixels]`.
fn split4<T>(gates: &[T], cs: usize) -> (&[T], &[T], &[T], &[T]) {
    let (i, rest) = gates.split_at(cs);
    let (g, rest) = rest.split_at(cs);
    let (f, o) = rest.split_at(cs);
    (i, g, f, o)
}

/// `out = σ(f)·cell + σ(i)·tanh(g)` for one image (`gates [4·cs]`, `cell`, `out [cs]`).
pub(crate) fn lstm_cell<T: Real>(gates: &[T], cell: &[T], out: &mut [T]) {
    let cs = cell.len();
    let (i, g, f, _) = split4(gates, cs);
    for k in 0..cs {
        out[k] = f[k].sigmoid() * cell[k] + i[k].sigmoid() * g[k].tanh();
    }
}

/// The gradients of [`lstm_cell`] for one image: `d_gates [4·cs]` (zero for `o`) and
/// `d_cell [cs]` from the output gradient `grad [cs]`.
pub(crate) fn lstm_cell_backward<T: Real>(
    gates: &[T],
    cell: &[T],
    grad: &[T],
    d_gates: &mut [T],
    d_cell: &mut [T],
) {
    let cs = cell.len();
    let (i, g, f, _) = split4(gates, cs);
    let (d_i, rest) = d_gates.split_at_mut(cs);
    let (d_g, rest) = rest.split_at_mut(cs);
    let (d_f, d_o) = rest.split_at_mut(cs);
    for k in 0..cs {
        let (si, tg, sf, dc) = (i[k].sigmoid(), g[k].tanh(), f[k].sigmoid(), grad[k]);
        d_i[k] = dc * tg * si * (T::ONE - si);
        d_g[k] = dc * si * (T::ONE - tg * tg);
        d_f[k] = dc * cell[k] * sf * (T::ONE - sf);
        d_cell[k] = dc * sf;
    }
    d_o.fill(T::ZERO);
}

/// `out = σ(o)·tanh(cell)` for one image.
pub(crate) fn lstm_hidden<T: Real>(gates: &[T], cell: &[T], out: &mut [T]) {
    let cs = cell.len();
    let (_, _, _, o) = split4(gates, cs);
    for k in 0..cs {
        out[k] = o[k].sigmoid() * cell[k].tanh();
    }
}

/// The gradients of [`lstm_hidden`] for one image: `d_gates [4·cs]` (zero but for `o`) and
/// `d_cell [cs]`.
pub(crate) fn lstm_hidden_backward<T: Real>(
    gates: &[T],
    cell: &[T],
    grad: &[T],
    d_gates: &mut [T],
    d_cell: &mut [T],
) {
    let cs = cell.len();
    let (_, _, _, o) = split4(gates, cs);
    let (zeros, d_o) = d_gates.split_at_mut(3 * cs);
    zeros.fill(T::ZERO);
    for k in 0..cs {
        let (so, tc, dh) = (o[k].sigmoid(), cell[k].tanh(), grad[k]);
        d_o[k] = dh * tc * so * (T::ONE - so);
        d_cell[k] = dh * so * (T::ONE - tc * tc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1-channel 2×3 image, 3×3 kernel, padding 1: row (0, a, b) of the unfolded matrix
    /// is the image shifted by (a − 1, b − 1) with zeros coming in.
    #[test]
    fn unfold_shifts_with_zero_edges() {
        let x = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
        let s = ConvShape {
            c_in: 1,
            h: 2,
            w: 3,
            kh: 3,
            kw: 3,
            ph: 1,
            pw: 1,
            ho: 2,
            wo: 3,
        };
        let mut cols = vec![f64::NAN; 9 * 6];
        unfold(&x, 1, s, &mut cols);
        let row = |a: usize, b: usize| &cols[(a * 3 + b) * 6..][..6];
        assert_eq!(row(1, 1), &x);
        assert_eq!(row(0, 0), &[0.0, 0.0, 0.0, 0.0, 1.0, 2.0]);
        assert_eq!(row(2, 2), &[5.0, 6.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(row(1, 2), &[2.0, 3.0, 0.0, 5.0, 6.0, 0.0]);
        assert_eq!(row(1, 0), &[0.0, 1.0, 2.0, 0.0, 4.0, 5.0]);
    }

    /// A range of output rows unfolds into the matching columns of the whole unfolding.
    #[test]
    fn unfold_rows_is_a_column_range_of_unfold() {
        let s = ConvShape {
            c_in: 2,
            h: 4,
            w: 3,
            kh: 3,
            kw: 2,
            ph: 1,
            pw: 1,
            ho: 4,
            wo: 4,
        };
        let x: Vec<f64> = (0..24).map(|v| v as f64 + 1.0).collect();
        let mut all = vec![f64::NAN; s.taps() * s.pixels()];
        unfold(&x, 1, s, &mut all);
        for rows in [0..1, 1..3, 3..4, 0..4] {
            let width = rows.len() * s.wo;
            let mut part = vec![f64::NAN; s.taps() * width];
            unfold_rows(&x, s, rows.clone(), &mut part, width, 0);
            for r in 0..s.taps() {
                assert_eq!(
                    &part[r * width..][..width],
                    &all[r * s.pixels() + rows.start * s.wo..][..width],
                    "tap {r}, rows {rows:?}"
                );
            }
        }
    }

    /// Upsampling repeats each value over its block; its backward sums each block, and the
    /// two are adjoint: ⟨up(x), g⟩ = ⟨x, up_backward(g)⟩.
    #[test]
    fn upsample_repeats_and_its_backward_sums_blocks() {
        let x = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut up = [f64::NAN; 24];
        upsample(&x, [1, 3], [2, 2], &mut up);
        assert_eq!(
            &up[..12],
            &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]
        );
        assert_eq!(&up[12..18], &[4.0, 4.0, 5.0, 5.0, 6.0, 6.0]);
        let mut wide = [f64::NAN; 6 * 3];
        upsample(&x, [2, 1], [1, 3], &mut wide);
        assert_eq!(&wide[..6], &[1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
        for (hw, f) in [
            ([1, 3], [2, 2]),
            ([2, 1], [1, 3]),
            ([3, 2], [3, 1]),
            ([1, 1], [1, 1]),
        ] {
            let planes = 6 / (hw[0] * hw[1]);
            let n_out = planes * hw[0] * f[0] * hw[1] * f[1];
            let g: Vec<f64> = (0..n_out).map(|v| ((v * 7) % 11) as f64 - 5.0).collect();
            let mut up = vec![0.0; n_out];
            upsample(&x, hw, f, &mut up);
            let mut dx = vec![f64::NAN; 6];
            upsample_backward(&g, hw, f, &mut dx);
            let lhs: f64 = up.iter().zip(&g).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
            assert_eq!(lhs, rhs, "{hw:?} by {f:?}");
        }
    }

    /// Max-pooling keeps each block's maximum; its backward puts the gradient at the first
    /// maximum of the block (ties go to the earlier entry) and zero elsewhere.
    #[test]
    fn maxpool_takes_block_maxima_and_routes_gradients_to_the_first() {
        // Two planes of 2×4; blocks of 2×2, then 1×2.
        let x = [
            1.0f64, 5.0, 2.0, 2.0, //
            3.0, 0.0, 2.0, 1.0, //
            -1.0, -2.0, 0.0, 0.0, //
            -3.0, -1.0, 0.0, 0.0,
        ];
        let mut out = [f64::NAN; 4];
        maxpool(&x, [2, 4], [2, 2], &mut out);
        assert_eq!(out, [5.0, 2.0, -1.0, 0.0]);
        let mut dx = [f64::NAN; 16];
        maxpool_backward(&x, &[10.0, 20.0, 30.0, 40.0], [2, 4], [2, 2], &mut dx);
        let mut want = [0.0; 16];
        (want[1], want[2], want[8], want[10]) = (10.0, 20.0, 30.0, 40.0);
        assert_eq!(dx, want);
        let mut out = [f64::NAN; 8];
        maxpool(&x, [2, 4], [1, 2], &mut out);
        assert_eq!(out, [5.0, 2.0, 3.0, 2.0, -1.0, 0.0, -1.0, 0.0]);
    }

    /// Padding 0 and a kernel as wide as the image: one output column per row.
    #[test]
    fn unfold_without_padding() {
        let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let s = ConvShape {
            c_in: 1,
            h: 2,
            w: 3,
            kh: 1,
            kw: 3,
            ph: 0,
            pw: 0,
            ho: 2,
            wo: 1,
        };
        let mut cols = vec![f32::NAN; 3 * 2];
        unfold(&x, 1, s, &mut cols);
        assert_eq!(cols, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    /// `fold` is the adjoint of `unfold`: ⟨unfold(x), c⟩ = ⟨x, fold(c)⟩ for any x and c.
    #[test]
    fn fold_is_the_adjoint_of_unfold() {
        for s in [
            ConvShape {
                c_in: 2,
                h: 3,
                w: 4,
                kh: 3,
                kw: 3,
                ph: 1,
                pw: 1,
                ho: 3,
                wo: 4,
            },
            ConvShape {
                c_in: 1,
                h: 2,
                w: 5,
                kh: 1,
                kw: 3,
                ph: 0,
                pw: 0,
                ho: 2,
                wo: 3,
            },
            ConvShape {
                c_in: 3,
                h: 1,
                w: 1,
                kh: 3,
                kw: 3,
                ph: 1,
                pw: 1,
                ho: 1,
                wo: 1,
            },
        ] {
            let images = 2;
            let n_x = images * s.c_in * s.h * s.w;
            let n_c = s.taps() * images * s.pixels();
            let x: Vec<f64> = (0..n_x).map(|i| ((i * 7919) % 13) as f64 - 6.0).collect();
            let c: Vec<f64> = (0..n_c).map(|i| ((i * 104729) % 11) as f64 - 5.0).collect();
            let mut ux = vec![0.0; n_c];
            unfold(&x, images, s, &mut ux);
            let mut fc = vec![0.0; n_x];
            fold(&c, images, s, &mut fc);
            let lhs: f64 = ux.iter().zip(&c).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(&fc).map(|(a, b)| a * b).sum();
            assert_eq!(lhs, rhs, "{s:?}");
        }
    }

    #[test]
    fn channels_first_transposes_images_and_channels() {
        // 2 images × 2 channels × 2 pixels.
        let g = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let mut out = [0.0; 8];
        channels_first(&g, 2, 2, 2, &mut out);
        assert_eq!(out, [1.0, 2.0, 5.0, 6.0, 3.0, 4.0, 7.0, 8.0]);
    }
}

//! The CPU kernels behind the Flex backend's [`super::MgBackend`] methods, on plain slices of
//! row-major (`[n, c, h, w]`) data. No tensor types here: what is tested is what runs.

use core::ops::{Add, Mul, Sub};

/// The float types the kernels run on (f32 and f64), plain old data for the scratch buffers and
/// Flex's storage.
pub(crate) trait Real:
    Copy
    + PartialOrd
    + Send
    + Sync
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + bytemuck::Pod
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    const HALF: Self;
    fn sigmoid(self) -> Self;
    fn tanh(self) -> Self;
    /// The nearest value of this type.
    fn from_f64(x: f64) -> Self;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const HALF: Self = 0.5;
    /// `σ(x) = (1 + tanh(x/2)) / 2` through [`tanh_f32`]: no libm call, so the LSTM loops
    /// vectorise. Absolute error below 3e-7.
    #[inline(always)]
    fn sigmoid(self) -> Self {
        0.5 + 0.5 * tanh_f32(0.5 * self)
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        tanh_f32(self)
    }
    fn from_f64(x: f64) -> Self {
        x as f32
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const HALF: Self = 0.5;
    #[inline(always)]
    fn sigmoid(self) -> Self {
        1.0 / (1.0 + (-self).exp())
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn from_f64(x: f64) -> Self {
        x
    }
}

/// `tanh` in f32 as a rational function (odd degree-13 numerator, even degree-6
/// denominator) on `[-7.9053, 7.9053]`, clamped outside (the fit of Eigen's `ptanh_float`):
/// within 5e-7 absolute, branch-free, so that loops over it vectorise. NaN stays NaN.
#[inline(always)]
pub(crate) fn tanh_f32(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const A: [f32; 7] = [
        4.893_524_6e-3,
        6.372_619_3e-4,
        1.485_722_4e-5,
        5.122_297e-8,
        -8.604_672e-11,
        2.000_188e-13,
        -2.760_768_5e-16,
    ];
    const B: [f32; 4] = [4.893_525e-3, 2.268_434_7e-3, 1.185_347_1e-4, 1.198_258_4e-6];
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    // Plain multiply-adds: `mul_add` is a libm call without a target-wide FMA.
    let p = A[6] * x2 + A[5];
    let p = p * x2 + A[4];
    let p = p * x2 + A[3];
    let p = p * x2 + A[2];
    let p = p * x2 + A[1];
    let p = x * (p * x2 + A[0]);
    let q = B[3] * x2 + B[2];
    let q = q * x2 + B[1];
    let q = q * x2 + B[0];
    p / q
}

/// Runs `f` compiled for the best instruction set the CPU has (AVX-512, else AVX2 and FMA on
/// x86-64 where present, detected at run time through `pulp`; the workspace builds for
/// baseline x86-64, whose vector loops are 4 floats wide). Only code inlined into `f` is
/// compiled so: mark the closure and what it calls `#[inline(always)]`. The arithmetic is the
/// same (no fused multiply-adds are formed), so results do not depend on the instruction set.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// The instruction set [`simd`] runs with on this CPU: `x86-64-v4` (AVX-512), `x86-64-v3`
/// (AVX2 and FMA) or `x86-64` (the baseline) on x86-64, the architecture's name elsewhere.
pub(crate) fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        match pulp::Arch::new() {
            pulp::Arch::V4(_) => "x86-64-v4",
            pulp::Arch::V3(_) => "x86-64-v3",
            _ => "x86-64",
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH
    }
}

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

/// Output rows at most this wide unfold through a zero-padded copy of the image:
/// every kernel tap is then one straight copy per row, without the per-row bounds and edge
/// fills that cost more than the copy itself on the small grids.
const PADDED_WIDTH: usize = 32;

/// Unfolds images of `x` (`[images, c_in, h, w]`) into `cols`, a `[c_in·kh·kw, images·ho·wo]`
/// row-major matrix: row `(ci, a, b)`, column `(image, y, x)` holds
/// `x[image, ci, y + a − ph, x + b − pw]`, zero outside the image.
pub(crate) fn unfold<T: Real>(x: &[T], images: usize, s: ConvShape, cols: &mut [T]) {
    let plane = s.c_in * s.h * s.w;
    let width = images * s.pixels();
    debug_assert_eq!(x.len(), images * plane);
    debug_assert_eq!(cols.len(), s.taps() * width);
    if s.h == 1 && s.kh == 1 && s.ho == 1 {
        return unfold_rows_1d(x, images, s, cols);
    }
    if s.wo <= PADDED_WIDTH && s.ho + s.kh == s.h + 2 * s.ph + 1 {
        return unfold_padded(x, images, s, cols);
    }
    for image in 0..images {
        let x = &x[image * plane..][..plane];
        unfold_rows(x, s, 0..s.ho, cols, width, image * s.pixels());
    }
}

/// [`unfold`] of one-row images under a one-row kernel (the 1D grids, a few values wide):
/// each tap's row of `cols` filled image after image, straight from `x`, with the columns
/// outside the image zero. A row with such columns is zeroed whole first: one fill per row,
/// not two `memset` calls of a value or none per image.
fn unfold_rows_1d<T: Real>(x: &[T], images: usize, s: ConvShape, cols: &mut [T]) {
    let (w, wo) = (s.w, s.wo);
    let width = images * wo;
    for ci in 0..s.c_in {
        for b in 0..s.kw {
            let row = &mut cols[(ci * s.kw + b) * width..][..width];
            let (lo, hi) = s.inside(b);
            if lo > 0 || hi < wo {
                row.fill(T::ZERO);
            }
            if lo == hi {
                continue;
            }
            // Output column `xo` in `lo..hi` reads source column `xo + b − pw`.
            let sx = lo + b - s.pw;
            for (image, dst) in row.chunks_exact_mut(wo).enumerate() {
                let src = &x[(image * s.c_in + ci) * w + sx..][..hi - lo];
                copy_short(&mut dst[lo..hi], src);
            }
        }
    }
}

/// [`unfold`] of narrow images through one zero-padded copy of all of them (made once, not
/// per image): every kernel tap is then one fixed-width copy per output row.
fn unfold_padded<T: Real>(x: &[T], images: usize, s: ConvShape, cols: &mut [T]) {
    let (hp, wp) = (s.h + 2 * s.ph, s.w + 2 * s.pw);
    let (plane, padded, pixels) = (s.h * s.w, hp * wp, s.pixels());
    let width = images * pixels;
    with_scratch(images * s.c_in * padded, |pad: &mut [T]| {
        pad.fill(T::ZERO);
        for (src, dst) in x.chunks_exact(plane).zip(pad.chunks_exact_mut(padded)) {
            for y in 0..s.h {
                let at = (y + s.ph) * wp + s.pw;
                copy_short(&mut dst[at..][..s.w], &src[y * s.w..][..s.w]);
            }
        }
        for ci in 0..s.c_in {
            for a in 0..s.kh {
                for b in 0..s.kw {
                    let row = &mut cols[((ci * s.kh + a) * s.kw + b) * width..][..width];
                    for (image, out) in row.chunks_exact_mut(pixels).enumerate() {
                        let src = &pad[(image * s.c_in + ci) * padded..][..padded];
                        copy_rows(&src[a * wp + b..], wp, out, s.wo);
                    }
                }
            }
        }
    });
}

/// `dst.copy_from_slice(src)`, without a call into `memcpy` for the lengths the small grids
/// copy: the widths of both geometries (1 to 16 on the 1D grids, 3 to 24 on the 2D ones),
/// and one less on the 1D grids (a tap off the centre).
#[inline(always)]
fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    #[inline(always)]
    fn fixed<T: Copy, const N: usize>(dst: &mut [T], src: &[T]) {
        let s: &[T; N] = src.try_into().expect("N values");
        let d: &mut [T; N] = dst.try_into().expect("N values");
        *d = *s;
    }
    match src.len() {
        1 => fixed::<T, 1>(dst, src),
        2 => fixed::<T, 2>(dst, src),
        3 => fixed::<T, 3>(dst, src),
        4 => fixed::<T, 4>(dst, src),
        6 => fixed::<T, 6>(dst, src),
        7 => fixed::<T, 7>(dst, src),
        8 => fixed::<T, 8>(dst, src),
        12 => fixed::<T, 12>(dst, src),
        15 => fixed::<T, 15>(dst, src),
        16 => fixed::<T, 16>(dst, src),
        24 => fixed::<T, 24>(dst, src),
        _ => dst.copy_from_slice(src),
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
    debug_assert_eq!(x.len(), s.c_in * s.h * s.w);
    debug_assert!(rows.end <= s.ho && offset + rows.len() * s.wo <= width);
    debug_assert_eq!(cols.len(), s.taps() * width);
    if s.wo <= PADDED_WIDTH {
        unfold_rows_padded(x, s, rows, cols, width, offset);
    } else {
        unfold_rows_clipped(x, s, rows, cols, width, offset);
    }
}

/// [`unfold_rows`] through a zero-padded copy of the rows it reads (narrow images).
fn unfold_rows_padded<T: Real>(
    x: &[T],
    s: ConvShape,
    rows: core::ops::Range<usize>,
    cols: &mut [T],
    width: usize,
    offset: usize,
) {
    if rows.is_empty() {
        return;
    }
    // Padded rows `rows.start .. rows.end + kh − 1` (padded row `r` is image row `r − ph`).
    let (wp, hp) = (s.w + 2 * s.pw, rows.len() + s.kh - 1);
    let plane = s.h * s.w;
    with_scratch(s.c_in * hp * wp, |pad: &mut [T]| {
        pad.fill(T::ZERO);
        for ci in 0..s.c_in {
            let src = &x[ci * plane..][..plane];
            let dst = &mut pad[ci * hp * wp..][..hp * wp];
            for r in 0..hp {
                let Some(sy) = (rows.start + r).checked_sub(s.ph).filter(|&y| y < s.h) else {
                    continue;
                };
                dst[r * wp + s.pw..][..s.w].copy_from_slice(&src[sy * s.w..][..s.w]);
            }
        }
        let n = rows.len() * s.wo;
        for ci in 0..s.c_in {
            let src = &pad[ci * hp * wp..][..hp * wp];
            for a in 0..s.kh {
                for b in 0..s.kw {
                    let row = (ci * s.kh + a) * s.kw + b;
                    let out = &mut cols[row * width + offset..][..n];
                    copy_rows(&src[a * wp + b..], wp, out, s.wo);
                }
            }
        }
    });
}

/// [`unfold_rows`] reading the image in place, edges clipped per row (wide images).
fn unfold_rows_clipped<T: Real>(
    x: &[T],
    s: ConvShape,
    rows: core::ops::Range<usize>,
    cols: &mut [T],
    width: usize,
    offset: usize,
) {
    let plane = s.h * s.w;
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

/// Copies `dst.len() / n` rows of `n` values, `stride` apart in `src`, into `dst`
/// (contiguous), the width dispatched once: the grid widths of the mapping models (3, 6, 12,
/// 24) copy without a call. ([`copy_short`] copies one row.)
#[inline(always)]
fn copy_rows<T: Copy>(src: &[T], stride: usize, dst: &mut [T], n: usize) {
    #[inline(always)]
    fn fixed<T: Copy, const N: usize>(src: &[T], stride: usize, dst: &mut [T]) {
        for (k, d) in dst.chunks_exact_mut(N).enumerate() {
            let s: &[T; N] = src[k * stride..][..N].try_into().expect("N values");
            d.copy_from_slice(s);
        }
    }
    match n {
        0 => {}
        1 => fixed::<T, 1>(src, stride, dst),
        3 => fixed::<T, 3>(src, stride, dst),
        6 => fixed::<T, 6>(src, stride, dst),
        12 => fixed::<T, 12>(src, stride, dst),
        24 => fixed::<T, 24>(src, stride, dst),
        _ => {
            for (k, d) in dst.chunks_exact_mut(n).enumerate() {
                d.copy_from_slice(&src[k * stride..][..n]);
            }
        }
    }
}

/// Runs `f` on a scratch buffer of `len` values whose contents are unspecified, reused
/// across calls on the same thread (a pool, so that nested calls get distinct buffers). The
/// kernels' temporaries (unfolded tiles, padded images, transposed gradients) live here
/// instead of being allocated and zero-filled per call.
pub(crate) fn with_scratch<T: Real, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    use std::cell::RefCell;
    thread_local! {
        static POOL: RefCell<Vec<Vec<u64>>> = const { RefCell::new(Vec::new()) };
    }
    // u64 words: aligned for f32 and f64 alike.
    let words = (len * size_of::<T>()).div_ceil(size_of::<u64>());
    let mut buf = POOL
        .with(|pool| pool.borrow_mut().pop())
        .unwrap_or_default();
    if buf.len() < words {
        buf.resize(words, 0);
    }
    let out = f(&mut bytemuck::cast_slice_mut::<u64, T>(&mut buf[..words])[..len]);
    POOL.with(|pool| pool.borrow_mut().push(buf));
    out
}

/// The flipped, transposed kernel of a convolution's input gradient: `out[ci, co, t] =
/// rows[co][ci, k − 1 − t]`, where `rows` yields each output channel's `[c_in, k]` values and
/// `out` is `[c_in, c_out, k]`. Built at every backward call (every time step of a recurrent
/// convolution), so the conv-LSTMs' 1×3 and 3×3 kernels move in fixed-size blocks.
pub(crate) fn flip_kernel<'a, T: Real>(
    rows: impl Iterator<Item = &'a [T]>,
    c_in: usize,
    c_out: usize,
    k: usize,
    out: &mut [T],
) {
    match k {
        3 => flip_blocks::<T, 3>(rows, c_in, c_out, out),
        9 => flip_blocks::<T, 9>(rows, c_in, c_out, out),
        _ => {
            for (co, row) in rows.enumerate() {
                for (ci, src) in row.chunks_exact(k).take(c_in).enumerate() {
                    let dst = &mut out[(ci * c_out + co) * k..][..k];
                    dst.iter_mut()
                        .zip(src.iter().rev())
                        .for_each(|(d, &v)| *d = v);
                }
            }
        }
    }
}

fn flip_blocks<'a, T: Real, const K: usize>(
    rows: impl Iterator<Item = &'a [T]>,
    c_in: usize,
    c_out: usize,
    out: &mut [T],
) {
    let (out, _) = out.as_chunks_mut::<K>();
    for (co, row) in rows.enumerate() {
        let (blocks, _) = row.as_chunks::<K>();
        for (dst, src) in out[co..].iter_mut().step_by(c_out).zip(&blocks[..c_in]) {
            for t in 0..K {
                dst[t] = src[K - 1 - t];
            }
        }
    }
}

/// The weight gradient `[c_out, c_in, k]` from the `[c_out, k, c_in]` product of a
/// convolution's backward: `out[co, ci, k − 1 − t] = m[co, t, ci]` (fixed-size blocks for
/// `k` = 3 and 9, as [`flip_kernel`]).
pub(crate) fn unflip_kernel<T: Real>(m: &[T], c_in: usize, k: usize, out: &mut [T]) {
    match k {
        3 => unflip_blocks::<T, 3>(m, c_in, out),
        9 => unflip_blocks::<T, 9>(m, c_in, out),
        _ => {
            for (m, out) in m.chunks_exact(k * c_in).zip(out.chunks_exact_mut(c_in * k)) {
                for (ci, dst) in out.chunks_exact_mut(k).enumerate() {
                    for t in 0..k {
                        dst[k - 1 - t] = m[t * c_in + ci];
                    }
                }
            }
        }
    }
}

fn unflip_blocks<T: Real, const K: usize>(m: &[T], c_in: usize, out: &mut [T]) {
    for (m, out) in m.chunks_exact(K * c_in).zip(out.chunks_exact_mut(c_in * K)) {
        let (out, _) = out.as_chunks_mut::<K>();
        for (ci, dst) in out.iter_mut().enumerate() {
            for t in 0..K {
                dst[K - 1 - t] = m[t * c_in + ci];
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
#[inline(always)]
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
///
/// Blocks two wide (the multigrid pyramids' factor) are reduced row by row, a pair of columns
/// per output in one loop that vectorises, in the same order as [`block_maxima`]: the same
/// result, NaN included (a NaN counts only where it comes first in its block).
pub(crate) fn maxpool<T: Real>(x: &[T], hw: [usize; 2], factors: [usize; 2], out: &mut [T]) {
    let ([h, w], [fh, fw]) = (hw, factors);
    let (ho, wo) = (h / fh.max(1), w / fw.max(1));
    if fw != 2 || fh == 0 || ho * wo == 0 || x.is_empty() {
        simd(
            #[inline(always)]
            || block_maxima(x, hw, factors, |k, _, max| out[k] = max),
        );
        return;
    }
    simd(
        #[inline(always)]
        || {
            for (plane, out) in x.chunks_exact(h * w).zip(out.chunks_exact_mut(ho * wo)) {
                for (y, out) in out.chunks_exact_mut(wo).enumerate() {
                    for a in 0..fh {
                        let row = &plane[(y * fh + a) * w..][..2 * wo];
                        pair_maxima(out, row, a == 0);
                    }
                }
            }
        },
    );
}

/// `out[i]` becomes the maximum of `row[2i]` and `row[2i + 1]` (`first`), or of `out[i]`,
/// `row[2i]` and `row[2i + 1]`, taken in that order: a later value replaces an earlier one only
/// when strictly greater.
#[inline(always)]
fn pair_maxima<T: Real>(out: &mut [T], row: &[T], first: bool) {
    let pick = |a: T, b: T| if b > a { b } else { a };
    let pairs = row.chunks_exact(2);
    match first {
        true => {
            for (o, p) in out.iter_mut().zip(pairs) {
                *o = pick(p[0], p[1]);
            }
        }
        false => {
            for (o, p) in out.iter_mut().zip(pairs) {
                *o = pick(pick(*o, p[0]), p[1]);
            }
        }
    }
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
    simd(
        #[inline(always)]
        || {
            block_maxima(x, [h, w], factors, |k, i, _| {
                dx[k / per_plane * plane + i] = grad[k];
            })
        },
    );
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
            copy_short(
                &mut out[co * width + image * pixels..][..pixels],
                &g[(image * c_out + co) * pixels..][..pixels],
            );
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

/// The gate gradients' slices `(d_i, d_g, d_f, d_o)` of one image (`[4·c, pixels]`).
fn split4_mut<T>(d_gates: &mut [T], cs: usize) -> (&mut [T], &mut [T], &mut [T], &mut [T]) {
    let (d_i, rest) = d_gates.split_at_mut(cs);
    let (d_g, rest) = rest.split_at_mut(cs);
    let (d_f, d_o) = rest.split_at_mut(cs);
    (d_i, d_g, d_f, d_o)
}

/// The whole update for one image in one pass: `cell' = σ(f + forget_bias)·cell +
/// σ(i)·tanh(g)` into `new_cell` and `hidden' = σ(o)·tanh(cell')` into `hidden`.
pub(crate) fn lstm_step<T: Real>(
    gates: &[T],
    cell: &[T],
    forget_bias: T,
    new_cell: &mut [T],
    hidden: &mut [T],
) {
    let cs = cell.len();
    let (i, g, f, o) = split4(gates, cs);
    let (new_cell, hidden) = (&mut new_cell[..cs], &mut hidden[..cs]);
    simd(
        #[inline(always)]
        || {
            for k in 0..cs {
                let c = (f[k] + forget_bias).sigmoid() * cell[k] + i[k].sigmoid() * g[k].tanh();
                new_cell[k] = c;
                hidden[k] = o[k].sigmoid() * c.tanh();
            }
        },
    );
}

/// The gradients of [`lstm_step`] for one image in one pass: `d_gates [4·cs]` and `d_cell
/// [cs]` from the gradients of the new cell state (`grad_cell`) and of the hidden state
/// (`grad_hidden`). The new cell state is recomputed, not stored.
pub(crate) fn lstm_step_backward<T: Real>(
    gates: &[T],
    cell: &[T],
    forget_bias: T,
    grad_cell: &[T],
    grad_hidden: &[T],
    d_gates: &mut [T],
    d_cell: &mut [T],
) {
    let cs = cell.len();
    let (i, g, f, o) = split4(gates, cs);
    let (d_i, d_g, d_f, d_o) = split4_mut(d_gates, cs);
    simd(
        #[inline(always)]
        || {
            for k in 0..cs {
                let (si, tg, sf, so) = (
                    i[k].sigmoid(),
                    g[k].tanh(),
                    (f[k] + forget_bias).sigmoid(),
                    o[k].sigmoid(),
                );
                let tc = (sf * cell[k] + si * tg).tanh();
                let dh = grad_hidden[k];
                let dc = grad_cell[k] + dh * so * (T::ONE - tc * tc);
                d_i[k] = dc * tg * si * (T::ONE - si);
                d_g[k] = dc * si * (T::ONE - tg * tg);
                d_f[k] = dc * cell[k] * sf * (T::ONE - sf);
                d_o[k] = dh * tc * so * (T::ONE - so);
                d_cell[k] = dc * sf;
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel flips against their element-by-element definitions, for the fixed-size
    /// tap counts (3, 9), a generic one (4) and channel counts that are not multiples of
    /// anything.
    #[test]
    fn kernel_flips_match_their_definitions() {
        for (k, c_in, c_out) in [(3, 5, 7), (3, 1, 1), (9, 3, 4), (4, 2, 3)] {
            let w: Vec<f64> = (0..c_out * c_in * k)
                .map(|i| i as f64 * 0.5 - 3.0)
                .collect();
            let mut flipped = vec![f64::NAN; c_in * c_out * k];
            flip_kernel(w.chunks_exact(c_in * k), c_in, c_out, k, &mut flipped);
            for (co, ci, t) in (0..c_out)
                .flat_map(|co| (0..c_in).flat_map(move |ci| (0..k).map(move |t| (co, ci, t))))
            {
                assert_eq!(
                    flipped[(ci * c_out + co) * k + t],
                    w[(co * c_in + ci) * k + k - 1 - t],
                    "flip, k = {k}, ({co}, {ci}, {t})"
                );
            }
            let m: Vec<f64> = (0..c_out * k * c_in)
                .map(|i| i as f64 * 0.25 + 1.0)
                .collect();
            let mut dw = vec![f64::NAN; c_out * c_in * k];
            unflip_kernel(&m, c_in, k, &mut dw);
            for (co, t, ci) in (0..c_out)
                .flat_map(|co| (0..k).flat_map(move |t| (0..c_in).map(move |ci| (co, t, ci))))
            {
                assert_eq!(
                    dw[(co * c_in + ci) * k + k - 1 - t],
                    m[(co * k + t) * c_in + ci],
                    "unflip, k = {k}, ({co}, {t}, {ci})"
                );
            }
        }
    }

    /// The f32 `tanh` and sigmoid against f64's on a dense grid and at the extremes: within
    /// 5e-7 and 3e-7 absolute (the clamp near ±1 costs about 6 units in the last place), odd,
    /// saturating, NaN kept.
    #[test]
    fn fast_tanh_and_sigmoid_match_libm() {
        let mut worst = (0.0f64, 0.0f64);
        for k in -200_000..=200_000 {
            let x = k as f32 * 1e-4;
            let t = tanh_f32(x) as f64;
            let s = x.sigmoid() as f64;
            let dt = (t - (x as f64).tanh()).abs();
            let ds = (s - 1.0 / (1.0 + (-(x as f64)).exp())).abs();
            worst = (worst.0.max(dt), worst.1.max(ds));
            assert_eq!(tanh_f32(-x), -tanh_f32(x), "odd at {x}");
        }
        assert!(worst.0 < 5e-7 && worst.1 < 3e-7, "worst errors {worst:?}");
        // Relative accuracy near 0, where tanh(x) ≈ x.
        for x in [1e-3f32, 1e-5, 1e-8, 1e-20] {
            assert!(
                ((tanh_f32(x) - x) / x).abs() < 1e-6,
                "tanh({x}) = {}",
                tanh_f32(x)
            );
        }
        assert_eq!(tanh_f32(0.0), 0.0);
        assert_eq!(tanh_f32(50.0), tanh_f32(7.905_311));
        assert!((tanh_f32(1e30) - 1.0).abs() < 1e-6 && (tanh_f32(-1e30) + 1.0).abs() < 1e-6);
        assert!(
            f32::NEG_INFINITY.sigmoid().abs() < 1e-6
                && (f32::INFINITY.sigmoid() - 1.0).abs() < 1e-6
        );
        assert!(tanh_f32(f32::NAN).is_nan());
    }

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

    /// A range of output rows unfolds into the matching columns of the whole unfolding, for
    /// a narrow image (padded copy) and a wide one (clipped in place), and both agree with
    /// the definition.
    #[test]
    fn unfold_rows_is_a_column_range_of_unfold() {
        for w in [3, PADDED_WIDTH + 5] {
            let s = ConvShape {
                c_in: 2,
                h: 4,
                w,
                kh: 3,
                kw: 2,
                ph: 1,
                pw: 1,
                ho: 4,
                wo: w + 1,
            };
            check_unfold_rows(s);
        }
    }

    /// Narrow images (the small grids of both geometries: one-row images unfolded straight
    /// from the input, the others through one padded copy of all images) unfold image after
    /// image as the single-image path (and the definition, through `check_unfold_rows`)
    /// says, for kernels wider and narrower than the image.
    #[test]
    fn narrow_images_unfold_as_each_image_alone() {
        // (h, w, kh, kw, ph, pw)
        for (h, w, kh, kw, ph, pw) in [
            (1, 1, 1, 3, 0, 1),
            (1, 2, 1, 3, 0, 1),
            (1, 4, 1, 3, 0, 1),
            (1, 16, 1, 3, 0, 1),
            (1, 5, 1, 2, 0, 1),
            (1, 3, 1, 5, 0, 2),
            (1, 1, 3, 3, 1, 1),
            (3, 3, 3, 3, 1, 1),
            (6, 6, 3, 3, 1, 1),
            (24, 24, 3, 3, 1, 1),
            (4, 5, 3, 2, 1, 1),
            (2, 3, 5, 5, 2, 2),
            (4, 7, 2, 3, 0, 1),
        ] {
            let (ho, wo) = (h + 2 * ph + 1 - kh, w + 2 * pw + 1 - kw);
            let s = ConvShape {
                c_in: 3,
                h,
                w,
                kh,
                kw,
                ph,
                pw,
                ho,
                wo,
            };
            check_unfold_rows(s);
            let images = 4;
            let plane = s.c_in * h * w;
            let x: Vec<f64> = (0..images * plane).map(|v| v as f64 + 1.0).collect();
            let (pixels, width) = (ho * wo, images * ho * wo);
            let mut all = vec![f64::NAN; s.taps() * width];
            unfold(&x, images, s, &mut all);
            for image in 0..images {
                let mut one = vec![f64::NAN; s.taps() * width];
                let x = &x[image * plane..][..plane];
                unfold_rows_padded(x, s, 0..ho, &mut one, width, image * pixels);
                for r in 0..s.taps() {
                    assert_eq!(
                        &all[r * width + image * pixels..][..pixels],
                        &one[r * width + image * pixels..][..pixels],
                        "{s:?}, image {image}, tap row {r}"
                    );
                }
            }
        }
    }

    fn check_unfold_rows(s: ConvShape) {
        let x: Vec<f64> = (0..s.c_in * s.h * s.w).map(|v| v as f64 + 1.0).collect();
        let mut all = vec![f64::NAN; s.taps() * s.pixels()];
        unfold(&x, 1, s, &mut all);
        for ci in 0..s.c_in {
            for (a, b) in (0..s.kh).flat_map(|a| (0..s.kw).map(move |b| (a, b))) {
                for (y, xo) in (0..s.ho).flat_map(|y| (0..s.wo).map(move |xo| (y, xo))) {
                    let (sy, sx) = (
                        (y + a) as isize - s.ph as isize,
                        (xo + b) as isize - s.pw as isize,
                    );
                    let inside = (0..s.h as isize).contains(&sy) && (0..s.w as isize).contains(&sx);
                    let want = if inside {
                        x[(ci * s.h + sy as usize) * s.w + sx as usize]
                    } else {
                        0.0
                    };
                    let row = (ci * s.kh + a) * s.kw + b;
                    assert_eq!(all[row * s.pixels() + y * s.wo + xo], want, "{s:?}");
                }
            }
        }
        for rows in [0..1, 1..3, 3..4, 0..4]
            .into_iter()
            .filter(|r| r.end <= s.ho)
        {
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

    /// The two-wide path equals the block-by-block one, with ties, NaNs (first in a block or
    /// later), odd sizes and one to three rows per block.
    #[test]
    fn two_wide_maxpool_equals_the_block_walk() {
        let mut nans = 0;
        for (planes, h, w, fh) in [(3, 4, 6, 2), (2, 5, 7, 2), (1, 6, 9, 3), (2, 3, 4, 1)] {
            let x: Vec<f32> = (0..planes * h * w)
                .map(|i| match i % 11 {
                    3 | 8 => f32::NAN,
                    k => ((i * 7) % 5) as f32 - k as f32 * 0.5,
                })
                .collect();
            let (ho, wo) = (h / fh, w / 2);
            let mut want = vec![0.0f32; planes * ho * wo];
            block_maxima(&x, [h, w], [fh, 2], |k, _, max| want[k] = max);
            let mut got = vec![0.0f32; want.len()];
            maxpool(&x, [h, w], [fh, 2], &mut got);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{planes}×{h}×{w}, {fh} rows");
            nans += want.iter().filter(|v| v.is_nan()).count();
        }
        assert!(nans > 0, "no block starts with a NaN");
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

    #[test]
    fn channels_first_transposes_images_and_channels() {
        // 2 images × 2 channels × 2 pixels.
        let g = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let mut out = [0.0; 8];
        channels_first(&g, 2, 2, 2, &mut out);
        assert_eq!(out, [1.0, 2.0, 5.0, 6.0, 3.0, 4.0, 7.0, 8.0]);
    }
}

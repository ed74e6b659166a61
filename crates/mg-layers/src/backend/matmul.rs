//! Matrix products on slices through the `gemm` crate, with `unsafe` code (as are `link_rows` in
//! `flex/memory.rs` and `fresh` in `flex.rs`).
//!
//! Flex's matmul allocates every product as a zeroed byte vector and then copies it into an
//! aligned allocation (`FlexTensor::empty`, as for every Flex op output); here the kernels
//! multiply into buffers they own, or straight into their output.
//!
//! Invariants that make the `gemm::gemm` call sound, checked before it on every call:
//! - every element a [`View`] or [`ViewMut`] addresses lies inside its slice (strides are
//!   unsigned and the last element's offset, computed without overflow, is below the slice's
//!   length);
//! - the destination's elements are distinct (unit column stride, row stride at least the
//!   column count) and it cannot alias the operands (it is borrowed mutably, they shared);
//! - the element type is `f32` or `f64` (the [`Real`] types), which `gemm` dispatches on.
#![allow(unsafe_code)]

use super::kernels::Real;

/// A read-only `rows × cols` matrix in `data`: element `(i, j)` at
/// `offset + i·row_stride + j·col_stride`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a, T> {
    pub data: &'a [T],
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a, T> View<'a, T> {
    /// A row-major `rows × cols` matrix at the start of `data`.
    pub fn rows(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self {
            data,
            offset: 0,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn fits(&self) -> bool {
        fits(
            self.data.len(),
            self.offset,
            [self.rows, self.cols],
            [self.row_stride, self.col_stride],
        )
    }
}

/// A row-major `rows × cols` destination in `data`: element `(i, j)` at
/// `offset + i·row_stride + j`, `row_stride ≥ cols`.
pub(crate) struct ViewMut<'a, T> {
    pub data: &'a mut [T],
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
}

impl<'a, T> ViewMut<'a, T> {
    /// A contiguous row-major `rows × cols` matrix at the start of `data`.
    pub fn rows(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        Self {
            data,
            offset: 0,
            rows,
            cols,
            row_stride: cols,
        }
    }

    fn fits(&self) -> bool {
        let shape = [self.rows, self.cols];
        self.row_stride >= self.cols
            && fits(self.data.len(), self.offset, shape, [self.row_stride, 1])
    }
}

/// Whether every element of a `[rows, cols]` matrix at `offset` with `strides` (rows, columns)
/// lies below `len`; an offset that overflows does not fit.
fn fits(len: usize, offset: usize, [rows, cols]: [usize; 2], [rs, cs]: [usize; 2]) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    let last = (rows - 1)
        .checked_mul(rs)
        .zip((cols - 1).checked_mul(cs))
        .and_then(|(r, c)| r.checked_add(c))
        .and_then(|rc| rc.checked_add(offset));
    last.is_some_and(|last| last < len)
}

/// `dst = lhs × rhs` on the calling thread.
///
/// # Panics
/// If the shapes do not chain (`lhs [m, k]`, `rhs [k, n]`, `dst [m, n]`) or a view reaches
/// outside its slice.
pub(crate) fn gemm<T: Real>(dst: ViewMut<'_, T>, lhs: View<'_, T>, rhs: View<'_, T>) {
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    assert!(
        lhs.rows == m && rhs.rows == k && rhs.cols == n,
        "gemm: [{}, {}] × [{}, {}] into [{m}, {n}]",
        lhs.rows,
        lhs.cols,
        rhs.rows,
        rhs.cols
    );
    assert!(
        dst.fits() && lhs.fits() && rhs.fits(),
        "gemm: a matrix reaches outside its slice"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            dst.data[dst.offset + i * dst.row_stride..][..n].fill(T::ZERO);
        }
        return;
    }
    let stride = |s: usize| isize::try_from(s).expect("a stride that fits isize");
    // SAFETY: the views were checked above: every addressed element is inside its slice,
    // the destination's elements are distinct and borrowed exclusively, and T is f32 or f64.
    // With `read_dst` false gemm only writes the destination (alpha is ignored).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr().add(dst.offset),
            1,
            stride(dst.row_stride),
            false,
            lhs.data.as_ptr().add(lhs.offset),
            stride(lhs.col_stride),
            stride(lhs.row_stride),
            rhs.data.as_ptr().add(rhs.offset),
            stride(rhs.col_stride),
            stride(rhs.row_stride),
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the triple loop, in f64: plain, both operands transposed, and into the middle
    /// of wider rows (the padding between them untouched).
    #[test]
    fn products_match_the_definition() {
        let (m, k, n) = (3, 5, 4);
        let a: Vec<f64> = (0..m * k).map(|v| (v as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|v| (v as f64 * 0.71).cos()).collect();
        let expect = |i: usize, j: usize| (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f64>();
        let mut c = vec![0.0; m * n];
        gemm(
            ViewMut::rows(&mut c, m, n),
            View::rows(&a, m, k),
            View::rows(&b, k, n),
        );
        let a_t: Vec<f64> = (0..k * m).map(|v| a[(v % m) * k + v / m]).collect();
        let b_t: Vec<f64> = (0..n * k).map(|v| b[(v % k) * n + v / k]).collect();
        let mut c_t = vec![0.0; m * n];
        let (lhs, rhs) = (View::rows(&a_t, k, m).t(), View::rows(&b_t, n, k).t());
        gemm(ViewMut::rows(&mut c_t, m, n), lhs, rhs);
        let mut wide = vec![1.0; 2 + m * 7];
        let dst = ViewMut {
            data: &mut wide,
            offset: 2,
            rows: m,
            cols: n,
            row_stride: 7,
        };
        gemm(dst, View::rows(&a, m, k), View::rows(&b, k, n));
        for i in 0..m {
            for j in 0..n {
                assert!((c[i * n + j] - expect(i, j)).abs() < 1e-12);
                assert!((c_t[i * n + j] - expect(i, j)).abs() < 1e-12);
                assert!((wide[2 + i * 7 + j] - expect(i, j)).abs() < 1e-12);
            }
            assert!(wide[2 + i * 7 + n..2 + i * 7 + 7].iter().all(|&v| v == 1.0));
        }
        // k = 0: the product is zero.
        let mut z = vec![5.0; 4];
        gemm(
            ViewMut::rows(&mut z, 2, 2),
            View::rows(&[], 2, 0),
            View::rows(&[], 0, 2),
        );
        assert_eq!(z, vec![0.0; 4]);
    }

    #[test]
    #[should_panic(expected = "outside its slice")]
    fn a_view_past_its_slice_panics() {
        let a = vec![0.0f32; 5];
        let mut c = vec![0.0f32; 4];
        gemm(
            ViewMut::rows(&mut c, 2, 2),
            View::rows(&a, 2, 3),
            View::rows(&a, 3, 2),
        );
    }

    /// An offset whose sum with the strides overflows is outside the slice, not wrapped
    /// around into it.
    #[test]
    #[should_panic(expected = "outside its slice")]
    fn an_overflowing_offset_panics() {
        let a = vec![0.0f32; 4];
        let mut c = vec![0.0f32; 4];
        let lhs = View {
            offset: usize::MAX,
            ..View::rows(&a, 2, 2)
        };
        gemm(ViewMut::rows(&mut c, 2, 2), lhs, View::rows(&a, 2, 2));
    }
}

//! [`MgBackend`] for burn's Flex CPU backend: convolutions split over a thread pool and the
//! LSTM update in one pass (kernels in `kernels.rs`). f32 and f64; other float types use the
//! defaults.
//!
//! Convolutions (stride 1, no dilation, one group) unfold and run one gemm per tile or chunk
//! of images (the `gemm` crate on the kernels' own buffers, `matmul.rs`), split over the
//! threads by images when the work is large:
//! - forward: `[c_out, c_in·kh·kw] × [c_in·kh·kw, pixels]` per tile of output rows (or of
//!   several small images);
//! - backward ([`conv_backward`]): one unfolding `G` of the output gradient per chunk; the
//!   input gradient `[c_in, c_out·kh·kw] × G` with the kernel flipped and transposed (burn's
//!   default is a transposed convolution with a sequential batch loop), the weight gradient
//!   `G × xᵀ` summed over chunks (burn's default convolves with the whole output gradient as
//!   the kernel).

use std::any::Any;
use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::sync::Arc;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::{ConvOptions, ModuleOps};
use burn::tensor::{DType, Element, Shape, TensorData, TensorMetadata};

use super::kernels::{self, ConvShape, Real, with_scratch};
use super::matmul::{self, View, ViewMut};
use super::winograd;

mod memory;
use super::{MgBackend, cpu_kernels_enabled, defaults, serial_kernels};

/// Images per chunk of the forward convolution: at most this many unfolded values (16 MiB of
/// f32; each chunk is then unfolded in tiles of at most [`TILE_ELEMS`]).
const CHUNK_ELEMS: usize = 1 << 22;

/// Work (multiply-adds) below which an op stays on the calling thread.
const PARALLEL_WORK: usize = 1 << 21;

/// The kernels' thread pool: one worker fewer than the machine has cores, because the calling
/// thread takes the first chunk of every parallel op itself. (Waiting idle while the pool works
/// and then sharing the cores with its spinning workers made small ops slower.)
fn pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(cores().saturating_sub(1).max(1))
            .thread_name(|i| format!("mg-kernels-{i}"))
            .build()
            .expect("a thread pool")
    })
}

/// The machine's cores, read once (`available_parallelism` reads cgroup files on Linux,
/// which cost more than a small op).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Threads an op can use: the pool's and the caller's.
fn threads() -> usize {
    if cores() > 1 {
        pool().current_num_threads() + 1
    } else {
        1
    }
}

/// Runs `f` on every item and returns the results in order: in contiguous groups, one per
/// thread (the first group on the calling thread, the others on the pool), or all on the
/// calling thread when `parallel` is false. (The caller does not steal from the pool, so
/// one group per thread keeps the threads evenly loaded.)
fn map_items<I: Send, T: Send>(items: Vec<I>, parallel: bool, f: impl Fn(I) -> T + Sync) -> Vec<T> {
    let len = items.len();
    let groups = if parallel && !serial_kernels() {
        threads().min(len)
    } else {
        1
    };
    if groups < 2 {
        return items.into_iter().map(f).collect();
    }
    let mut slots: Vec<Option<T>> = items.iter().map(|_| None).collect();
    let mut work: Vec<Vec<(I, &mut Option<T>)>> = (0..groups).map(|_| Vec::new()).collect();
    for (k, pair) in items.into_iter().zip(slots.iter_mut()).enumerate() {
        work[k * groups / len].push(pair);
    }
    let f = &f;
    let run = move |group: Vec<(I, &mut Option<T>)>| {
        for (item, slot) in group {
            *slot = Some(f(item));
        }
    };
    let mut work = work.into_iter();
    let first = work.next();
    pool().in_place_scope(|scope| {
        for group in work {
            scope.spawn(move |_| run(group));
        }
        if let Some(group) = first {
            run(group);
        }
    });
    slots
        .into_iter()
        .map(|s| s.expect("every item ran"))
        .collect()
}

/// `O` new vectors of `lens[j]` values, cut into `groups` runs of `runs[j]` values (the last
/// ones shorter or empty) and written by `fill(g, [run g of each])` on the threads
/// [`map_items`] gives the groups (`parallel`); `fill`'s results in group order. Each run is
/// zeroed on its thread just before `fill` writes it: a zeroed vector made before a parallel
/// op is a pass over the whole output on the calling thread while the other threads wait,
/// and a run zeroed just before it is written is in cache when it is.
///
/// # Panics
/// If the runs do not cover an output (`lens[j] > groups·runs[j]`).
#[allow(unsafe_code)]
fn fresh<E: Real, T: Send, const O: usize>(
    groups: usize,
    lens: [usize; O],
    runs: [usize; O],
    parallel: bool,
    fill: impl Fn(usize, [&mut [E]; O]) -> T + Sync,
) -> ([Vec<E>; O], Vec<T>) {
    for (len, run) in lens.into_iter().zip(runs) {
        assert!(
            len <= groups * run,
            "fresh: {groups} runs of {run} values leave some of {len} unwritten"
        );
    }
    let mut outs: [Vec<E>; O] = lens.map(Vec::with_capacity);
    let results = {
        let mut cuts: Vec<_> = outs
            .iter_mut()
            .zip(lens.iter().zip(runs))
            .map(|(out, (&len, run))| out.spare_capacity_mut()[..len].chunks_mut(run.max(1)))
            .collect();
        let items: Vec<(usize, [&mut [MaybeUninit<E>]; O])> = (0..groups)
            .map(|g| {
                (
                    g,
                    std::array::from_fn(|j| cuts[j].next().unwrap_or_default()),
                )
            })
            .collect();
        map_items(items, parallel, |(g, runs)| {
            let runs = runs.map(|run| {
                run.fill(MaybeUninit::new(E::ZERO));
                // SAFETY: every element of `run` has just been written, and `MaybeUninit<E>`
                // has the layout of `E`, so the initialised slice may be borrowed as `[E]`.
                unsafe { &mut *(run as *mut [MaybeUninit<E>] as *mut [E]) }
            });
            fill(g, runs)
        })
    };
    for (out, len) in outs.iter_mut().zip(lens) {
        // SAFETY: `with_capacity(len)` gave room for `len` values, and all of them have been
        // written: the `groups` runs of `out` cover `0..len` (asserted above), each run was
        // zeroed by the item it went to, and `map_items` returns only after every item has
        // run (a panic in one does not reach this line).
        unsafe { out.set_len(len) };
    }
    (outs, results)
}

/// Stride 1, no dilation, one group, padding no larger than the kernel allows and a kernel
/// that fits the padded input: the cases the kernels handle; anything else goes to Flex's own
/// ops.
fn fast_conv(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> Option<[usize; 4]> {
    let dims: [usize; 4] = weight.shape().dims();
    let [_, _, kh, kw] = dims;
    let [_, _, h, w] = x.shape().dims::<4>();
    let [ph, pw] = options.padding;
    let plain = options.stride == [1, 1] && options.dilation == [1, 1] && options.groups == 1;
    // The kernel fits the padded input (the output has a size); burn reports the rest.
    let padding_ok = ph < kh && pw < kw && h + 2 * ph + 1 >= kh && w + 2 * pw + 1 >= kw;
    let dtype_ok = matches!(weight.dtype(), DType::F32 | DType::F64);
    (cpu_kernels_enabled() && plain && padding_ok && dtype_ok).then_some(dims)
}

/// Multiply-adds of a convolution producing `out` with kernel `weight`.
fn conv_work(out: [usize; 4], weight: [usize; 4]) -> usize {
    let [n, _, ho, wo] = out;
    let [c_out, c_in, kh, kw] = weight;
    n * ho * wo * c_out * c_in * kh * kw
}

fn slice<E: Element + Real>(t: &FlexTensor) -> &[E] {
    t.as_slice::<E>().expect("a contiguous tensor")
}

/// A convolution kernel `[c_out, c_in, kh, kw]` as the `[c_out, c_in·kh·kw]` matrix it is
/// in memory, read in place where each output channel's values are contiguous (a whole
/// kernel, or one cut along the input channels: the conv-LSTM's recurrent half), else from a
/// contiguous copy made into `copy`.
fn kernel_rows<'a, E: Element + Real>(
    weight: &'a FlexTensor,
    copy: &'a mut Option<FlexTensor>,
) -> View<'a, E> {
    let layout = weight.layout();
    let [c_out, c_in, kh, kw] = layout.shape().dims::<4>();
    let (cols, strides) = (c_in * kh * kw, layout.strides());
    let inner = |d: usize, want: usize| strides[d] == want as isize || layout.shape()[d] == 1;
    let rows = usize::try_from(strides[0])
        .ok()
        .filter(|&r| inner(1, kh * kw) && inner(2, kw) && inner(3, 1) && r >= cols)
        .map(|row_stride| View {
            data: weight.storage::<E>(),
            offset: layout.start_offset(),
            rows: c_out,
            cols,
            row_stride,
            col_stride: 1,
        })
        .filter(|v| c_out == 0 || v.offset + (c_out - 1) * v.row_stride + cols <= v.data.len());
    match rows {
        Some(view) => view,
        None => View::rows(slice::<E>(copy.insert(weight.to_contiguous())), c_out, cols),
    }
}

/// Row `i` of a row-major view (`col_stride` 1).
fn view_row<'a, E>(v: &View<'a, E>, i: usize) -> &'a [E] {
    &v.data[v.offset + i * v.row_stride..][..v.cols]
}

fn tensor<E: Element>(values: Vec<E>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

/// A stride-1 convolution of `n` images, unfolded in chunks of `images` images.
struct Plan {
    s: ConvShape,
    n: usize,
    c_out: usize,
    /// Images per chunk: the unfolded chunk holds at most `chunk_elems` values, and large
    /// work is cut into at least one chunk per thread.
    images: usize,
    /// Whether the chunks run on the rayon pool.
    parallel: bool,
}

impl Plan {
    fn new(x: [usize; 4], weight: [usize; 4], padding: [usize; 2], chunk_elems: usize) -> Self {
        let [n, c_in, h, w] = x;
        let [c_out, _, kh, kw] = weight;
        let (ho, wo) = (h + 2 * padding[0] + 1 - kh, w + 2 * padding[1] + 1 - kw);
        let s = ConvShape {
            c_in,
            h,
            w,
            kh,
            kw,
            ph: padding[0],
            pw: padding[1],
            ho,
            wo,
        };
        let per_image = (s.taps() * s.pixels()).max(1);
        let mut images = (chunk_elems / per_image).clamp(1, n.max(1));
        let threads = threads();
        let parallel =
            threads > 1 && n > 1 && conv_work([n, c_out, ho, wo], weight) >= PARALLEL_WORK;
        if parallel {
            images = images.min(n.div_ceil(threads));
        }
        let parallel = parallel && n.div_ceil(images) > 1;
        Plan {
            s,
            n,
            c_out,
            images,
            parallel,
        }
    }

    /// Images in each thread's run: one run per thread, as even as the batch allows, each
    /// then cut into chunks of at most `images` (chunks handed out whole would leave one
    /// thread a chunk more than another).
    fn per_run(&self) -> usize {
        let runs = match self.parallel {
            true => threads().min(self.n).max(1),
            false => 1,
        };
        self.n.div_ceil(runs).max(1)
    }

    /// A new output of `per_image` values per image, written by `body(first_image, images,
    /// out_chunk)` chunk by chunk, one run of chunks per thread ([`Self::per_run`]; each run
    /// zeroed on its thread first, [`fresh`]).
    fn run<E: Real>(
        &self,
        per_image: usize,
        body: impl Fn(usize, usize, &mut [E]) + Sync,
    ) -> Vec<E> {
        let per_group = self.per_run();
        let size = (self.images * per_image).max(1);
        let ([out], _) = fresh(
            self.n.div_ceil(per_group),
            [self.n * per_image],
            [per_group * per_image],
            self.parallel,
            |g, [run]| {
                for (k, chunk) in run.chunks_mut(size).enumerate() {
                    let first = g * per_group + k * self.images;
                    body(first, chunk.len() / per_image.max(1), chunk)
                }
            },
        );
        out
    }
}

/// Unfolded values per tile of the forward convolution (256 KiB of f32: the tile stays in
/// the L2 cache between the unfolding and the gemm).
const TILE_ELEMS: usize = 1 << 18;

/// Fewest output pixels per tile of the forward convolution (short tiles make slow gemms).
const MIN_TILE: usize = 256;

/// The forward convolution: images split over the threads; each thread's images in tiles of
/// at most [`TILE_ELEMS`] unfolded values, unfolded and multiplied, `[c_out, taps] × [taps,
/// tile]`, with the bias added. A tile is a run of output rows of one image, or several whole
/// images when one image has fewer than [`MIN_TILE`] pixels.
fn conv_forward<E: Element + Real>(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
    plan: &Plan,
) -> FlexTensor {
    let s = plan.s;
    let xs = slice::<E>(x);
    let bias = bias.map(slice::<E>);
    let mut copy = None;
    let w = kernel_rows::<E>(weight, &mut copy);
    let (c_in_size, pixels, c_out) = (s.c_in * s.h * s.w, s.pixels(), plan.c_out);
    let per_tile = TILE_ELEMS / s.taps().max(1);
    let add_bias = |out: &mut [E]| {
        if let Some(bias) = bias {
            for (k, plane) in out.chunks_mut(pixels.max(1)).enumerate() {
                let b = bias[k % c_out];
                plane.iter_mut().for_each(|v| *v = *v + b);
            }
        }
    };
    if winograd::applies(&s, c_out) {
        let u = if w.row_stride == w.cols {
            winograd::transform_kernel(&w.data[w.offset..][..c_out * w.cols], c_out, s.c_in)
        } else {
            let dense: Vec<E> = (0..c_out)
                .flat_map(|co| view_row(&w, co))
                .copied()
                .collect();
            winograd::transform_kernel(&dense, c_out, s.c_in)
        };
        let out = plan.run(c_out * pixels, |first, images, out| {
            let x = &xs[first * c_in_size..][..images * c_in_size];
            winograd::conv(x, images, s, c_out, &u, bias, out);
        });
        return tensor(out, [plan.n, c_out, s.ho, s.wo]);
    }
    let out = plan.run(c_out * pixels, |first, images, out| {
        if pixels < MIN_TILE {
            let group = (per_tile / pixels.max(1)).clamp(1, images.max(1));
            let (cols_len, y_len) = (s.taps() * group * pixels, c_out * group * pixels);
            with_scratch(cols_len + y_len, |buf: &mut [E]| {
                let (cols, y) = buf.split_at_mut(cols_len);
                for (k, out) in out.chunks_mut(group * c_out * pixels).enumerate() {
                    let images = out.len() / (c_out * pixels).max(1);
                    let width = images * pixels;
                    let x = &xs[(first + k * group) * c_in_size..][..images * c_in_size];
                    let (cols, y) = (&mut cols[..s.taps() * width], &mut y[..c_out * width]);
                    kernels::unfold(x, images, s, cols);
                    let cols = View::rows(&*cols, s.taps(), width);
                    matmul::gemm(ViewMut::rows(y, c_out, width), w, cols);
                    // `[c_out, images, pixels]` to `[images, c_out, pixels]`: the transpose of
                    // the two outer dimensions that `channels_first` does the other way round.
                    kernels::channels_first(y, c_out, images, pixels, out);
                    add_bias(out);
                }
            });
            return;
        }
        let rows = (per_tile / s.wo).max(MIN_TILE.div_ceil(s.wo)).min(s.ho);
        with_scratch(s.taps() * rows * s.wo, |cols: &mut [E]| {
            for (image, out) in out.chunks_mut(c_out * pixels).enumerate().take(images) {
                let x = &xs[(first + image) * c_in_size..][..c_in_size];
                for y0 in (0..s.ho).step_by(rows) {
                    let tile = y0..(y0 + rows).min(s.ho);
                    let width = tile.len() * s.wo;
                    let cols = &mut cols[..s.taps() * width];
                    kernels::unfold_rows(x, s, tile, cols, width, 0);
                    // Straight into the output: row `co` of the tile is `out[co, y0.., ..]`.
                    let dst = ViewMut {
                        data: &mut *out,
                        offset: y0 * s.wo,
                        rows: c_out,
                        cols: width,
                        row_stride: pixels,
                    };
                    matmul::gemm(dst, w, View::rows(&*cols, s.taps(), width));
                }
                add_bias(out);
            }
        });
    });
    tensor(out, [plan.n, c_out, s.ho, s.wo])
}

/// Storages whose flips [`flipped_kernel`] keeps on each thread: a window's kernels are a
/// few dozen.
const FLIPPED_STORAGES: usize = 256;

/// Flips kept per storage (a storage holds one kernel, or the conv-LSTM's input and
/// recurrent cuts of one).
const FLIPS_PER_STORAGE: usize = 8;

/// The kept flips of the kernels in one storage: a tensor on it (holding it), its address
/// and length, and per kernel its place (offset, rows, row stride, columns, taps) and flip.
type KeptFlips = (
    FlexTensor,
    [usize; 2],
    Vec<([usize; 5], Arc<dyn Any + Send + Sync>)>,
);

thread_local! {
    /// The storages whose flips [`flipped_kernel`] keeps on this thread, oldest first.
    static KEPT_FLIPS: RefCell<Vec<KeptFlips>> = const { RefCell::new(Vec::new()) };
}

/// The kernel `w` (rows of `weight`, `[c_out, c_in·k]`) flipped in space and transposed in
/// channels for the input gradient ([`conv_backward`]): `[c_in, c_out·k]`.
///
/// A window's backward pass convolves with the same kernel at every time step (the recurrent
/// convolutions), so each thread keeps the flips it made, with a clone of each kernel's
/// tensor. While the clone lives, the storage can be neither freed (its address cannot come
/// to hold another kernel) nor written (Flex writes a tensor's storage in place only when no
/// clone shares it), so a flip found by the kernel's place in its storage is the flip of the
/// same values. Storages that only the cache still holds are let go when a new one is kept;
/// a kernel read from a contiguous copy is flipped and not kept.
fn flipped_kernel<E: Element + Real>(
    weight: &FlexTensor,
    w: &View<'_, E>,
    c_in: usize,
    k: usize,
) -> Arc<Vec<E>> {
    let flip = || {
        let mut flipped = vec![E::ZERO; w.rows * c_in * k];
        let rows = (0..w.rows).map(|co| view_row(w, co));
        kernels::flip_kernel(rows, c_in, w.rows, k, &mut flipped);
        Arc::new(flipped)
    };
    let storage = weight.storage::<E>();
    if !std::ptr::eq(w.data, storage) {
        return flip();
    }
    let at = [storage.as_ptr() as usize, storage.len()];
    let place = [w.offset, w.rows, w.row_stride, w.cols, k];
    KEPT_FLIPS.with(|kept| {
        let mut kept = kept.borrow_mut();
        let found = kept.iter().position(|(_, a, _)| *a == at);
        if let Some(i) = found
            && let Some((_, flip)) = kept[i].2.iter().find(|(p, _)| *p == place)
            && let Ok(flipped) = flip.clone().downcast::<Vec<E>>()
        {
            return flipped;
        }
        let flipped = flip();
        let any: Arc<dyn Any + Send + Sync> = flipped.clone();
        match found {
            Some(i) => {
                let flips = &mut kept[i].2;
                if flips.len() >= FLIPS_PER_STORAGE {
                    flips.remove(0);
                }
                flips.push((place, any));
            }
            None => {
                kept.retain(|(tensor, _, _)| !tensor.is_unique());
                if kept.len() >= FLIPPED_STORAGES {
                    kept.remove(0);
                }
                kept.push((weight.clone(), at, vec![(place, any)]));
            }
        }
        flipped
    })
}

/// Largest unfolded chunk of the output gradient in [`conv_backward`], in values (4 MiB of
/// f32).
const BACKWARD_CHUNK_ELEMS: usize = 1 << 20;

/// Both gradients of a stride-1 convolution from one unfolding of the output gradient,
/// `G = unfold(grad)` with the kernel's shape and padding `k − 1 − p` (`[c_out·kh·kw, pixels
/// of x]`), chunk by chunk of images:
/// - `∂x = W̃ × G`, where `W̃` (`[c_in, c_out·kh·kw]`) is the kernel flipped in space and
///   transposed in channels: the input gradient is the convolution of the output gradient
///   with it (no scatter-add; burn's default is a transposed convolution with a sequential
///   batch loop);
/// - `∂w` from `M = G × xᵀ` (`[c_out·kh·kw, c_in]`, summed over the chunks):
///   `∂w[co, ci, a, b] = M[(co, kh−1−a, kw−1−b), ci]`, so the input is not unfolded again.
///
/// Returns `(∂x, ∂w)`, each only where `need` asks for it.
fn conv_backward<E: Element + Real>(
    x: &FlexTensor,
    weight: &FlexTensor,
    grad: &FlexTensor,
    plan: &Plan,
    [need_x, need_w]: [bool; 2],
) -> (Option<FlexTensor>, Option<FlexTensor>) {
    let s = plan.s;
    let (n, c_out, c_in, kh, kw) = (plan.n, plan.c_out, s.c_in, s.kh, s.kw);
    let k = kh * kw;
    let (xs, gs) = (slice::<E>(x), slice::<E>(grad));
    let mut copy = None;
    let w = kernel_rows::<E>(weight, &mut copy);
    // `W̃[ci, (co, a', b')] = w[co, ci, kh−1−a', kw−1−b']`: reversing the `kh·kw` taps flips
    // the kernel in both directions.
    let flipped = match need_x {
        true => flipped_kernel(weight, &w, c_in, k),
        false => Arc::new(Vec::new()),
    };
    let back = Plan::new(
        [n, c_out, s.ho, s.wo],
        [c_in, c_out, kh, kw],
        [kh - 1 - s.ph, kw - 1 - s.pw],
        BACKWARD_CHUNK_ELEMS,
    );
    let (sb, pixels) = (back.s, s.h * s.w);
    let taps = sb.taps();
    let (x_size, g_size) = (c_in * pixels, c_out * s.pixels());
    // One run of images per thread (`Plan::per_run`), each in chunks of at most `back.images`.
    let per_group = back.per_run();
    // The input gradient of a 3×3 kernel on a large grid through the Winograd form, whose
    // kernel is the flipped one (`[c_in, c_out, 3, 3]`); the unfolding then serves the weight
    // gradient alone.
    let u_back = (need_x && winograd::applies(&sb, c_in))
        .then(|| winograd::transform_kernel(&flipped, c_in, c_out));
    let chunk = |first: usize, images: usize, mut dx: Option<&mut [E]>| -> Option<Vec<E>> {
        let width = images * pixels;
        let g = &gs[first * g_size..][..images * g_size];
        if let Some(u) = &u_back
            && let Some(dx) = dx.take()
        {
            winograd::conv(g, images, sb, c_in, u, None, dx);
        }
        if dx.is_none() && !need_w {
            return None;
        }
        let (g_len, t_len) = (taps * width, c_in * width);
        with_scratch(g_len + t_len, |buf: &mut [E]| {
            let (cols, t) = buf.split_at_mut(g_len);
            kernels::unfold(g, images, sb, cols);
            let cols = View::rows(&*cols, taps, width);
            if let Some(dx) = dx {
                // `[c_in, images·pixels]`, then to `[images, c_in, pixels]`.
                matmul::gemm(
                    ViewMut::rows(&mut *t, c_in, width),
                    View::rows(&flipped, c_in, taps),
                    cols,
                );
                kernels::channels_first(t, c_in, images, pixels, dx);
            }
            need_w.then(|| {
                kernels::channels_first(
                    &xs[first * x_size..][..images * x_size],
                    images,
                    c_in,
                    pixels,
                    t,
                );
                let mut m = vec![E::ZERO; taps * c_in];
                let xt = View::rows(&*t, c_in, width).t();
                matmul::gemm(ViewMut::rows(&mut m, taps, c_in), cols, xt);
                m
            })
        })
    };
    // The weight gradient's partial sums, added in the order of the images.
    let add = |sum: Option<Vec<E>>, m: Option<Vec<E>>| match (sum, m) {
        (Some(mut sum), Some(m)) => {
            sum.iter_mut().zip(m).for_each(|(s, v)| *s = *s + v);
            Some(sum)
        }
        (sum, m) => sum.or(m),
    };
    let run = |(g, mut dx): (usize, Option<&mut [E]>)| -> Option<Vec<E>> {
        let (start, end) = (g * per_group, ((g + 1) * per_group).min(n));
        let step = back.images.max(1);
        (start..end).step_by(step).fold(None, |sum, first| {
            let images = step.min(end - first);
            let dx = dx
                .as_deref_mut()
                .map(|dx| &mut dx[(first - start) * x_size..][..images * x_size]);
            add(sum, chunk(first, images, dx))
        })
    };
    let ([dx], sums) = fresh(
        n.div_ceil(per_group),
        [if need_x { n * x_size } else { 0 }],
        [per_group * x_size],
        back.parallel,
        |g, [dx]| run((g, need_x.then_some(dx))),
    );
    let dw = need_w.then(|| {
        let m = sums
            .into_iter()
            .fold(None, add)
            .unwrap_or_else(|| vec![E::ZERO; taps * c_in]);
        // Row `(co, a', b')` of `M` holds `∂w[co, ·, kh−1−a', kw−1−b']`.
        let mut dw = vec![E::ZERO; c_out * c_in * k];
        kernels::unflip_kernel(&m, c_in, k, &mut dw);
        tensor(dw, [c_out, c_in, kh, kw])
    });
    let dx = need_x.then(|| tensor(dx, [n, c_in, s.h, s.w]));
    (dx, dw)
}

/// `∂bias`: each plane of `grad` (`[n, c, h, w]`) summed into its channel, `[c]`.
fn bias_backward<E: Element + Real>(grad: &FlexTensor) -> FlexTensor {
    let [_, c, h, w] = grad.shape().dims::<4>();
    let mut sums = vec![E::ZERO; c];
    for (k, plane) in slice::<E>(grad).chunks_exact((h * w).max(1)).enumerate() {
        sums[k % c] = plane.iter().fold(sums[k % c], |acc, &v| acc + v);
    }
    tensor(sums, [c])
}

/// `x` (`[n, Σ c_i, h, w]`) split along channels into contiguous `[n, c_i, h, w]` tensors.
fn split_channels<E: Element + Real>(x: &FlexTensor, sizes: &[usize]) -> Vec<FlexTensor> {
    let [n, c, h, w] = x.shape().dims::<4>();
    let (xs, plane) = (slice::<E>(x), h * w);
    let mut start = 0;
    sizes
        .iter()
        .map(|&part| {
            let mut values = Vec::with_capacity(n * part * plane);
            for image in 0..n {
                values.extend_from_slice(&xs[(image * c + start) * plane..][..part * plane]);
            }
            start += part;
            tensor(values, [n, part, h, w])
        })
        .collect()
}

/// Images per group when an elementwise op of `n` images of `per_image` values is split over
/// the threads (all `n` in one group when it is small).
fn image_groups(n: usize, per_image: usize) -> usize {
    let parts = if n * per_image >= PARALLEL_WORK / 8 {
        threads().min(n)
    } else {
        1
    };
    n.div_ceil(parts.max(1)).max(1)
}

/// Applies a per-image LSTM kernel over the batch, in parallel when large enough: `gates`
/// (`[n, 4·c, h, w]`) and `inputs` (each `[n, c, h, w]`, `cs = c·h·w` values per image) in,
/// `O` outputs of `widths[j]·cs` values per image out.
fn per_image<E: Element + Real, const I: usize, const O: usize>(
    gates: &FlexTensor,
    inputs: [&FlexTensor; I],
    widths: [usize; O],
    kernel: impl Fn(&[E], [&[E]; I], [&mut [E]; O]) + Sync,
) -> [Vec<E>; O] {
    let [n, ..] = inputs[0].shape().dims::<4>();
    let cs = (inputs[0].shape().num_elements() / n.max(1)).max(1);
    let gs = slice::<E>(gates);
    let ins: [&[E]; I] = inputs.map(slice::<E>);
    let group = image_groups(n, cs);
    let body = |g: usize, outs: [&mut [E]; O]| {
        let mut w = widths.into_iter();
        let mut per_image = outs.map(|out| out.chunks_mut(w.next().expect("a width") * cs));
        for k in g * group..((g + 1) * group).min(n) {
            let outs = std::array::from_fn(|j| per_image[j].next().expect("a chunk per image"));
            kernel(
                &gs[k * 4 * cs..][..4 * cs],
                ins.map(|x| &x[k * cs..][..cs]),
                outs,
            );
        }
    };
    let (outs, _) = fresh(
        n.div_ceil(group),
        widths.map(|w| n * w * cs),
        widths.map(|w| group * w * cs),
        group < n,
        body,
    );
    outs
}

/// A new output of `planes` planes of `out_plane` values, written by `body(first_plane, out)`
/// over groups of whole planes, split over the threads when `work` values per plane make it
/// worth it (each group zeroed on its thread first, [`fresh`]).
fn over_planes<E: Real>(
    planes: usize,
    out_plane: usize,
    work: usize,
    body: impl Fn(usize, &mut [E]) + Sync,
) -> Vec<E> {
    let group = image_groups(planes, work);
    let ([out], _) = fresh(
        planes.div_ceil(group),
        [planes * out_plane],
        [group * out_plane],
        group < planes,
        |k, [out]| body(k * group, out),
    );
    out
}

/// [`kernels::upsample`] (or its backward, from `[n, c, fh·h, fw·w]`) over the planes of `x`.
fn upsample<E: Element + Real>(x: &FlexTensor, [fh, fw]: [usize; 2], backward: bool) -> FlexTensor {
    let [n, c, h, w] = x.shape().dims::<4>();
    let (small, large) = match backward {
        false => ([h, w], [h * fh, w * fw]),
        true => ([h / fh, w / fw], [h, w]),
    };
    let (small_plane, large_plane) = (small[0] * small[1], large[0] * large[1]);
    let (x_plane, out_plane, out) = match backward {
        false => (small_plane, large_plane, large),
        true => (large_plane, small_plane, small),
    };
    let xs = slice::<E>(x);
    let values = over_planes(n * c, out_plane, large_plane, |first, out| {
        let x = &xs[first * x_plane..][..out.len() / out_plane.max(1) * x_plane];
        match backward {
            false => kernels::upsample(x, small, [fh, fw], out),
            true => kernels::upsample_backward(x, small, [fh, fw], out),
        }
    });
    tensor(values, [n, c, out[0], out[1]])
}

/// [`kernels::maxpool`] over the planes of `x`, or with `grad` its backward.
fn maxpool<E: Element + Real>(
    x: &FlexTensor,
    grad: Option<&FlexTensor>,
    [fh, fw]: [usize; 2],
) -> FlexTensor {
    let [n, c, h, w] = x.shape().dims::<4>();
    let pooled = [h / fh, w / fw];
    let out = if grad.is_some() { [h, w] } else { pooled };
    let (x_plane, small, out_plane) = (h * w, pooled[0] * pooled[1], out[0] * out[1]);
    let (xs, gs) = (slice::<E>(x), grad.map(slice::<E>));
    let values = over_planes(n * c, out_plane, x_plane, |first, out| {
        let count = out.len() / out_plane.max(1);
        let x = &xs[first * x_plane..][..count * x_plane];
        match gs {
            None => kernels::maxpool(x, [h, w], [fh, fw], out),
            Some(g) => {
                let g = &g[first * small..][..count * small];
                kernels::maxpool_backward(x, g, [h, w], [fh, fw], out)
            }
        }
    });
    tensor(values, [n, c, out[0], out[1]])
}

/// [`MgBackend::mg_gather`]: each image's upsampled, same-level and pooled channels written
/// straight into its block of the output (no part is made and then copied), the images split
/// over the threads.
fn gather<E: Element + Real>(parts: &[Option<FlexTensor>; 3], [fh, fw]: [usize; 2]) -> FlexTensor {
    let dims = |t: &FlexTensor| t.shape().dims::<4>();
    let [n, h, w] = match parts {
        [_, Some(same), _] => {
            let [n, _, h, w] = dims(same);
            [n, h, w]
        }
        [Some(up), _, _] => {
            let [n, _, h, w] = dims(up);
            [n, h * fh, w * fw]
        }
        [_, _, Some(down)] => {
            let [n, _, h, w] = dims(down);
            [n, h / fh, w / fw]
        }
        [None, None, None] => panic!("gather: no parts"),
    };
    let [cu, cs, cd] = parts
        .each_ref()
        .map(|p| p.as_ref().map_or(0, |t| dims(t)[1]));
    let [xu, xs, xd] = parts.each_ref().map(|p| p.as_ref().map(slice::<E>));
    let plane = h * w;
    let image = (cu + cs + cd) * plane;
    let (coarse, fine) = ([h / fh, w / fw], [h * fh, w * fw]);
    let (up_len, same_len, down_len) = (
        cu * coarse[0] * coarse[1],
        cs * plane,
        cd * fine[0] * fine[1],
    );
    let values = over_planes(n, image, image, |first, out| {
        for (k, out) in out.chunks_mut(image.max(1)).enumerate() {
            let i = first + k;
            let (out_up, rest) = out.split_at_mut(cu * plane);
            let (out_same, out_down) = rest.split_at_mut(cs * plane);
            if let Some(x) = xu {
                kernels::upsample(&x[i * up_len..][..up_len], coarse, [fh, fw], out_up);
            }
            if let Some(x) = xs {
                out_same.copy_from_slice(&x[i * same_len..][..same_len]);
            }
            if let Some(x) = xd {
                kernels::maxpool(&x[i * down_len..][..down_len], fine, [fh, fw], out_down);
            }
        }
    });
    tensor(values, [n, cu + cs + cd, h, w])
}

/// Dispatches on the float type: `Some` for f32 and f64, `None` (use the defaults) otherwise
/// or with the kernels off.
macro_rules! by_dtype {
    ($dtype:expr, $e:ident => $body:expr) => {
        match $dtype {
            _ if !cpu_kernels_enabled() => None,
            DType::F32 => {
                type $e = f32;
                Some($body)
            }
            DType::F64 => {
                type $e = f64;
                Some($body)
            }
            _ => None,
        }
    };
}

impl MgBackend for Flex {
    /// Unfolding and one gemm per tile, on all threads when the work is large enough (Flex's
    /// own convolution runs on one thread and, on the quick model's small grids, took 1.3–1.8
    /// times as long as this one).
    fn mg_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: Option<FlexTensor>,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let plan = fast_conv(&x, &weight, &options)
            .map(|dims| Plan::new(x.shape().dims(), dims, options.padding, CHUNK_ELEMS));
        let Some(plan) = plan else {
            return Flex::conv2d(x, weight, bias, options);
        };
        // The kernel is read in place where it can be (`kernel_rows`).
        let x = x.to_contiguous();
        let bias = bias.map(|b| b.to_contiguous());
        by_dtype!(weight.dtype(), E => conv_forward::<E>(&x, &weight, bias.as_ref(), &plan))
            .unwrap_or_else(|| Flex::conv2d(x, weight, bias, options))
    }

    fn mg_conv2d_x_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let (dx, _) = Self::mg_conv2d_backward(x, weight, output_grad, options, [true, false]);
        dx.expect("the input gradient was asked for")
    }

    fn mg_conv2d_weight_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let (_, dw) = Self::mg_conv2d_backward(x, weight, output_grad, options, [false, true]);
        dw.expect("the weight gradient was asked for")
    }

    /// Both gradients from one unfolding of the output gradient: the input gradient as that
    /// unfolding times the flipped, transposed kernel, the weight gradient as that unfolding
    /// times the input.
    fn mg_conv2d_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        options: ConvOptions<2>,
        need: [bool; 2],
    ) -> (Option<FlexTensor>, Option<FlexTensor>) {
        let plan = fast_conv(&x, &weight, &options)
            .map(|dims| Plan::new(x.shape().dims(), dims, options.padding, CHUNK_ELEMS));
        let x = x.to_contiguous();
        let grad = output_grad.to_contiguous();
        plan.and_then(|plan| {
            by_dtype!(weight.dtype(), E => conv_backward::<E>(&x, &weight, &grad, &plan, need))
        })
        .unwrap_or_else(|| {
            let [need_x, need_w] = need;
            let dw = need_w.then(|| {
                Flex::conv2d_weight_backward(
                    x.clone(),
                    weight.clone(),
                    grad.clone(),
                    options.clone(),
                )
            });
            let dx = need_x.then(|| Flex::conv2d_x_backward(x, weight, grad, options));
            (dx, dw)
        })
    }

    fn mg_conv2d_bias_backward(output_grad: FlexTensor) -> FlexTensor {
        let grad = output_grad.to_contiguous();
        by_dtype!(grad.dtype(), E => bias_backward::<E>(&grad))
            .unwrap_or_else(|| defaults::bias_backward::<Flex>(grad))
    }

    fn mg_split_channels(grad: FlexTensor, sizes: &[usize]) -> Vec<FlexTensor> {
        let grad = grad.to_contiguous();
        by_dtype!(grad.dtype(), E => split_channels::<E>(&grad, sizes))
            .unwrap_or_else(|| defaults::split_channels::<Flex>(grad, sizes))
    }

    fn mg_upsample(x: FlexTensor, factors: [usize; 2]) -> FlexTensor {
        let x = x.to_contiguous();
        by_dtype!(x.dtype(), E => upsample::<E>(&x, factors, false))
            .unwrap_or_else(|| defaults::upsample::<Flex>(x, factors))
    }

    fn mg_upsample_backward(grad: FlexTensor, factors: [usize; 2]) -> FlexTensor {
        let grad = grad.to_contiguous();
        by_dtype!(grad.dtype(), E => upsample::<E>(&grad, factors, true))
            .unwrap_or_else(|| defaults::upsample_backward::<Flex>(grad, factors))
    }

    fn mg_maxpool(x: FlexTensor, factors: [usize; 2]) -> FlexTensor {
        let x = x.to_contiguous();
        by_dtype!(x.dtype(), E => maxpool::<E>(&x, None, factors))
            .unwrap_or_else(|| defaults::maxpool::<Flex>(x, factors))
    }

    fn mg_maxpool_backward(x: FlexTensor, grad: FlexTensor, factors: [usize; 2]) -> FlexTensor {
        let (x, grad) = (x.to_contiguous(), grad.to_contiguous());
        by_dtype!(x.dtype(), E => maxpool::<E>(&x, Some(&grad), factors))
            .unwrap_or_else(|| defaults::maxpool_backward::<Flex>(x, grad, factors))
    }

    fn mg_gather(
        up: Option<FlexTensor>,
        same: Option<FlexTensor>,
        down: Option<FlexTensor>,
        factors: [usize; 2],
    ) -> FlexTensor {
        let parts = [up, same, down].map(|p| p.map(|t| t.to_contiguous()));
        let mut dtypes = parts.iter().flatten().map(|t| t.dtype());
        let dtype = dtypes.next().expect("gather: no parts");
        let fast = match dtypes.all(|d| d == dtype) {
            true => by_dtype!(dtype, E => gather::<E>(&parts, factors)),
            false => None,
        };
        fast.unwrap_or_else(|| {
            let [up, same, down] = parts;
            defaults::gather::<Flex>(up, same, down, factors)
        })
    }

    fn mg_dnc_allocation(usage: FlexTensor, epsilon: f64) -> FlexTensor {
        memory::allocation(usage, epsilon)
    }

    fn mg_dnc_allocation_backward(usage: FlexTensor, grad: FlexTensor, epsilon: f64) -> FlexTensor {
        memory::allocation_backward(usage, grad, epsilon)
    }

    fn mg_dnc_link(
        prev_link: FlexTensor,
        prev_precedence: FlexTensor,
        write_weights: FlexTensor,
        prev_read_weights: FlexTensor,
    ) -> [FlexTensor; 3] {
        memory::link([prev_link, prev_precedence, write_weights, prev_read_weights])
    }

    fn mg_dnc_link_backward(
        inputs: [FlexTensor; 4],
        grads: [Option<FlexTensor>; 3],
        need: [bool; 4],
    ) -> [Option<FlexTensor>; 4] {
        memory::link_backward(inputs, grads, need)
    }

    fn lstm_step(
        gates: FlexTensor,
        cell: FlexTensor,
        forget_bias: f64,
    ) -> (FlexTensor, FlexTensor) {
        let (g, c) = (gates.to_contiguous(), cell.to_contiguous());
        match g.dtype() {
            _ if !cpu_kernels_enabled() => defaults::lstm_step::<Flex>(g, c, forget_bias),
            DType::F32 => step::<f32>(&g, &c, forget_bias),
            DType::F64 => step::<f64>(&g, &c, forget_bias),
            _ => defaults::lstm_step::<Flex>(g, c, forget_bias),
        }
    }

    fn lstm_step_backward(
        gates: FlexTensor,
        cell: FlexTensor,
        forget_bias: f64,
        grad_cell: Option<FlexTensor>,
        grad_hidden: Option<FlexTensor>,
    ) -> (FlexTensor, FlexTensor) {
        let (g, c) = (gates.to_contiguous(), cell.to_contiguous());
        let kernels_apply = cpu_kernels_enabled() && matches!(g.dtype(), DType::F32 | DType::F64);
        if !kernels_apply {
            return defaults::lstm_step_backward::<Flex>(g, c, forget_bias, grad_cell, grad_hidden);
        }
        // A missing gradient is zero (the last step's cell state, when only the hidden state
        // reaches the loss).
        let grad = |d: Option<FlexTensor>| {
            d.map(|d| d.to_contiguous()).unwrap_or_else(|| {
                <Flex as burn::tensor::ops::FloatTensorOps<Flex>>::float_zeros(
                    c.shape(),
                    &Default::default(),
                    g.dtype().into(),
                )
            })
        };
        let (dc, dh) = (grad(grad_cell), grad(grad_hidden));
        match g.dtype() {
            DType::F32 => step_backward::<f32>(&g, &c, forget_bias, [&dc, &dh]),
            _ => step_backward::<f64>(&g, &c, forget_bias, [&dc, &dh]),
        }
    }
}

/// [`kernels::lstm_step`] over the batch: `(cell', hidden')`.
fn step<E: Element + Real>(
    g: &FlexTensor,
    c: &FlexTensor,
    forget_bias: f64,
) -> (FlexTensor, FlexTensor) {
    let fb = E::from_f64(forget_bias);
    let [cell, hidden] = per_image(g, [c], [1, 1], |g, [c], [cell, hidden]| {
        kernels::lstm_step::<E>(g, c, fb, cell, hidden)
    });
    (tensor(cell, c.shape()), tensor(hidden, c.shape()))
}

/// [`kernels::lstm_step_backward`] over the batch: `(∂gates, ∂cell)`.
fn step_backward<E: Element + Real>(
    g: &FlexTensor,
    c: &FlexTensor,
    forget_bias: f64,
    [dc_next, dh]: [&FlexTensor; 2],
) -> (FlexTensor, FlexTensor) {
    let fb = E::from_f64(forget_bias);
    let [dg, dc] = per_image(
        g,
        [c, dc_next, dh],
        [4, 1],
        |g, [c, dc_next, dh], [dg, dc]| {
            kernels::lstm_step_backward::<E>(g, c, fb, dc_next, dh, dg, dc)
        },
    );
    (tensor(dg, g.shape()), tensor(dc, c.shape()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::ops::FloatTensorOps;
    use burn::tensor::{Tensor, TensorPrimitive};

    fn random(shape: [usize; 4], seed: u64) -> FlexTensor {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let values: Vec<f64> = (0..shape.iter().product::<usize>())
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect();
        tensor(values, shape)
    }

    fn max_diff(a: FlexTensor, b: FlexTensor) -> f64 {
        let v = |t: FlexTensor| {
            Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(t))
                .into_data()
                .to_vec::<f64>()
                .unwrap()
        };
        let (a, b) = (v(a), v(b));
        assert_eq!(a.len(), b.len());
        a.iter().zip(&b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
    }

    /// `fresh` hands each group its run of every output, zeroed, in order, on the pool and on
    /// one thread; a last run may be short, an output may end before the last group (its run
    /// there is empty), and the results come back in group order.
    #[test]
    fn fresh_outputs_are_their_runs_as_written() {
        for parallel in [false, true] {
            let calls = std::sync::Mutex::new(Vec::new());
            let ([a, b], results) =
                fresh::<f32, usize, 2>(4, [10, 6], [3, 2], parallel, |g, [a, b]| {
                    calls.lock().unwrap().push((g, a.len(), b.len()));
                    assert!(
                        a.iter().chain(b.iter()).all(|&v| v == 0.0),
                        "a run not zeroed"
                    );
                    a.iter_mut().for_each(|v| *v = g as f32);
                    b.iter_mut()
                        .enumerate()
                        .for_each(|(i, v)| *v = (10 * g + i) as f32);
                    g * 100
                });
            assert_eq!(a, [0., 0., 0., 1., 1., 1., 2., 2., 2., 3.]);
            assert_eq!(b, [0., 1., 10., 11., 20., 21.]);
            assert_eq!(results, [0, 100, 200, 300]);
            let mut calls = calls.into_inner().unwrap();
            calls.sort();
            assert_eq!(calls, [(0, 3, 2), (1, 3, 2), (2, 3, 2), (3, 1, 0)]);
        }
    }

    #[test]
    #[should_panic(expected = "unwritten")]
    fn fresh_refuses_runs_that_leave_values_unwritten() {
        let _ = fresh::<f32, (), 1>(2, [7], [3], false, |_, _| ());
    }

    /// Upsampling and max-pooling, forward and backward, give burn's results: on values with
    /// many ties (rounded to a few levels, as after a ReLU), on the pool and on one thread.
    #[test]
    fn resampling_matches_burn() {
        let tied = |shape: [usize; 4], seed| {
            let x = Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(random(shape, seed)));
            x.mul_scalar(2.0)
                .round()
                .clamp_min(0.0)
                .into_primitive()
                .tensor()
        };
        for (shape, factors) in [
            ([2, 3, 4, 6], [2, 2]),
            ([1, 2, 1, 8], [1, 2]),
            ([3, 1, 6, 3], [3, 1]),
            ([1, 1, 1, 1], [1, 1]),
            // Large enough to be split over the threads.
            ([8, 16, 64, 64], [2, 2]),
        ] {
            let x = tied(shape, 5);
            let up = Flex::mg_upsample(x.clone(), factors);
            let up_burn = defaults::upsample::<Flex>(x.clone(), factors);
            assert_eq!(max_diff(up.clone(), up_burn), 0.0, "upsample {shape:?}");
            let g = random(up.shape().dims(), 6);
            let d = Flex::mg_upsample_backward(g.clone(), factors);
            let d_burn = defaults::upsample_backward::<Flex>(g, factors);
            assert!(max_diff(d, d_burn) < 1e-12, "upsample backward {shape:?}");

            let pooled = Flex::mg_maxpool(x.clone(), factors);
            let pooled_burn = defaults::maxpool::<Flex>(x.clone(), factors);
            assert_eq!(
                max_diff(pooled.clone(), pooled_burn),
                0.0,
                "maxpool {shape:?}"
            );
            let g = random(pooled.shape().dims(), 7);
            let d = Flex::mg_maxpool_backward(x.clone(), g.clone(), factors);
            let d_burn = defaults::maxpool_backward::<Flex>(x, g, factors);
            assert_eq!(max_diff(d, d_burn), 0.0, "maxpool backward {shape:?}");
        }
    }

    /// The gather in one op equals its three ops (upsampling, the level itself, max-pooling,
    /// concatenated) for every combination of parts, in 2D and 1D, on the pool and alone.
    #[test]
    fn gather_equals_its_parts() {
        for (n, [h, w], factors) in [
            (2, [2, 4], [2, 2]),
            (2, [3, 3], [3, 1]),
            (3, [1, 4], [1, 2]),
            // Large enough to be split over the threads.
            (16, [16, 16], [2, 2]),
        ] {
            let up = (h % factors[0] == 0 && w % factors[1] == 0)
                .then(|| random([n, 3, h / factors[0], w / factors[1]], 1));
            let same = random([n, 2, h, w], 2);
            let down = random([n, 4, h * factors[0], w * factors[1]], 3);
            for mask in 1..8u32 {
                let pick = |bit: u32, t: Option<FlexTensor>| t.filter(|_| mask & bit != 0);
                let parts = [
                    pick(1, up.clone()),
                    pick(2, Some(same.clone())),
                    pick(4, Some(down.clone())),
                ];
                if parts.iter().flatten().count() < 2 {
                    continue;
                }
                let [u, s, d] = parts;
                let got = Flex::mg_gather(u.clone(), s.clone(), d.clone(), factors);
                let want = defaults::gather::<Flex>(u, s, d, factors);
                assert_eq!(got.shape(), want.shape(), "{n}×{h}×{w}, parts {mask:03b}");
                assert_eq!(max_diff(got, want), 0.0, "{n}×{h}×{w}, parts {mask:03b}");
            }
        }
    }

    /// The bias gradient sums each channel over the batch and the grid, as burn's ops do.
    #[test]
    fn bias_gradient_matches_burn() {
        for shape in [[3, 4, 5, 6], [1, 1, 1, 1], [2, 3, 1, 7]] {
            let g = random(shape, 11);
            let ours = Flex::mg_conv2d_bias_backward(g.clone());
            let theirs = defaults::bias_backward::<Flex>(g);
            assert_eq!(ours.shape().dims::<1>(), [shape[1]]);
            let v = |t: FlexTensor| {
                Tensor::<Flex, 1>::from_primitive(TensorPrimitive::Float(t))
                    .into_data()
                    .to_vec::<f64>()
                    .unwrap()
            };
            let (a, b) = (v(ours), v(theirs));
            assert!(
                a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-12),
                "{shape:?}: {a:?} against {b:?}"
            );
        }
    }

    /// Images narrow enough to unfold through a padded copy and wide ones unfolded in place,
    /// with padding 0, 1 and 2 and non-square kernels, and 3×3 kernels on grids large enough
    /// for the Winograd form: forward (one and several row tiles), input and weight gradients
    /// all give burn's results.
    #[test]
    fn narrow_and_wide_convolutions_match_burn() {
        for (x_shape, w_shape, padding) in [
            ([2, 3, 5, 12], [4, 3, 3, 3], [1, 1]),
            ([2, 2, 6, 40], [3, 2, 3, 3], [1, 1]),
            ([3, 2, 4, 7], [2, 2, 3, 5], [1, 2]),
            ([2, 2, 3, 45], [2, 2, 1, 3], [0, 0]),
            ([1, 1, 1, 1], [1, 1, 3, 3], [1, 1]),
            // Enough taps for the forward pass to cut the image into row tiles.
            ([1, 64, 40, 20], [2, 64, 3, 3], [1, 1]),
            ([1, 32, 25, 40], [2, 32, 3, 3], [1, 1]),
            // The Winograd form: forward and input gradient on a 48-wide grid, forward only
            // (32 output channels on a 12-wide grid), input gradient only (40 input channels).
            ([2, 4, 48, 47], [16, 4, 3, 3], [1, 1]),
            ([2, 8, 13, 12], [32, 8, 3, 3], [1, 1]),
            ([1, 40, 12, 12], [2, 40, 3, 3], [1, 1]),
            // Work enough for the backward pass to split five images over the threads (runs
            // of unequal length).
            ([5, 8, 24, 24], [16, 8, 3, 3], [1, 1]),
        ] {
            let (x, w) = (random(x_shape, 21), random(w_shape, 22));
            let options = ConvOptions::new([1, 1], padding, [1, 1], 1);
            let y_burn = Flex::conv2d(x.clone(), w.clone(), None, options.clone());
            let g = random(y_burn.shape().dims(), 23);
            for (chunk_elems, parallel) in [(1 << 20, false), (1 << 20, true), (64, true)] {
                let mut plan = Plan::new(x_shape, w_shape, padding, chunk_elems);
                plan.parallel = parallel && x_shape[0] > 1;
                let y = conv_forward::<f64>(&x, &w, None, &plan);
                let what = format!("{x_shape:?} ⊛ {w_shape:?}, padding {padding:?}");
                assert!(max_diff(y, y_burn.clone()) < 1e-12, "forward, {what}");
                let (dx, dw) = conv_backward::<f64>(&x, &w, &g, &plan, [true, true]);
                let (dx, dw) = (dx.unwrap(), dw.unwrap());
                // Each alone: the same values, and nothing for the other.
                let (none, dw_alone) = conv_backward::<f64>(&x, &w, &g, &plan, [false, true]);
                assert!(none.is_none() && max_diff(dw_alone.unwrap(), dw.clone()) == 0.0);
                let (dx_alone, none) = conv_backward::<f64>(&x, &w, &g, &plan, [true, false]);
                assert!(none.is_none() && max_diff(dx_alone.unwrap(), dx.clone()) == 0.0);
                let dx_burn =
                    Flex::conv2d_x_backward(x.clone(), w.clone(), g.clone(), options.clone());
                assert!(max_diff(dx, dx_burn) < 1e-12, "input gradient, {what}");
                let dw_burn =
                    Flex::conv2d_weight_backward(x.clone(), w.clone(), g.clone(), options.clone());
                assert!(max_diff(dw, dw_burn) < 1e-12, "weight gradient, {what}");
            }
        }
    }

    /// A kernel cut along its input channels (the conv-LSTM's recurrent half, read in place
    /// with a row stride), one with its channel axes swapped (copied), both on the Winograd grid
    /// and on a 1D one, give the results of the same kernel made contiguous.
    #[test]
    fn strided_kernels_match_contiguous_ones() {
        for (x_shape, whole, padding) in [
            ([2, 3, 1, 8], [8, 5, 1, 3], [0, 1]),
            ([2, 4, 24, 24], [16, 9, 3, 3], [1, 1]),
        ] {
            let [c_out, c_total, kh, kw] = whole;
            let c_in = x_shape[1];
            let t = |x: FlexTensor| Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(x));
            let cut = t(random(whole, 31))
                .narrow(1, c_total - c_in, c_in)
                .into_primitive()
                .tensor();
            let permuted = t(random([c_in, c_out, kh, kw], 32))
                .swap_dims(0, 1)
                .into_primitive()
                .tensor();
            for (w, in_place) in [(cut, true), (permuted, false)] {
                assert!(!w.layout().is_contiguous());
                let mut copy = None;
                kernel_rows::<f64>(&w, &mut copy);
                assert_eq!(copy.is_none(), in_place, "{x_shape:?}: read in place");
                let dense = w.to_contiguous();
                let x = random(x_shape, 33);
                let w_shape = [c_out, c_in, kh, kw];
                let plan = Plan::new(x_shape, w_shape, padding, 1 << 20);
                let y = conv_forward::<f64>(&x, &w, None, &plan);
                let y_dense = conv_forward::<f64>(&x, &dense, None, &plan);
                assert_eq!(max_diff(y.clone(), y_dense), 0.0, "forward {x_shape:?}");
                let g = random(y.shape().dims(), 34);
                let (dx, dw) = conv_backward::<f64>(&x, &w, &g, &plan, [true, true]);
                let (dx_d, dw_d) = conv_backward::<f64>(&x, &dense, &g, &plan, [true, true]);
                assert_eq!(max_diff(dx.unwrap(), dx_d.unwrap()), 0.0, "∂x {x_shape:?}");
                assert_eq!(max_diff(dw.unwrap(), dw_d.unwrap()), 0.0, "∂w {x_shape:?}");
            }
        }
    }

    /// Input gradients through kept flips equal burn's: the same kernel again (found), the
    /// two halves of one kernel's storage (the conv-LSTM's input and recurrent cuts: one
    /// storage, two places), and kernels of new values in storages of the same size, made
    /// after the previous ones were dropped (the cache holds those storages, so no address is
    /// reused while its flip is kept). Kernels only the cache still holds are let go.
    #[test]
    fn kept_flips_give_each_kernels_gradient() {
        let options = ConvOptions::new([1, 1], [0, 1], [1, 1], 1);
        let x = random([2, 3, 1, 8], 41);
        let g = random([2, 5, 1, 8], 42);
        let check = |w: &FlexTensor, case: &str| {
            let plan = Plan::new([2, 3, 1, 8], [5, 3, 1, 3], [0, 1], 1 << 20);
            let (dx, _) = conv_backward::<f64>(&x, w, &g, &plan, [true, false]);
            let want = <Flex as ModuleOps<Flex>>::conv2d_x_backward(
                x.clone(),
                w.clone(),
                g.clone(),
                options.clone(),
            );
            assert!(max_diff(dx.unwrap(), want) < 1e-12, "{case}");
        };
        let t = |x: FlexTensor| Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(x));
        let whole = t(random([5, 6, 1, 3], 43));
        let half = |start: usize| whole.clone().narrow(1, start, 3).into_primitive().tensor();
        let (first, second) = (half(0), half(3));
        let kept = || KEPT_FLIPS.with(|k| k.borrow().iter().map(|e| e.2.len()).collect::<Vec<_>>());
        for round in 0..2 {
            check(&first, &format!("first half, round {round}"));
            check(&second, &format!("second half, round {round}"));
            // One storage, two flips: the second round found both.
            assert_eq!(kept(), [2]);
        }
        drop((first, second, whole));
        for seed in 50..54 {
            let w = random([5, 3, 1, 3], seed);
            check(&w, &format!("kernel {seed}"));
            check(&w, &format!("kernel {seed} again"));
        }
        // The last kernel, dropped, is let go when the next one is kept.
        let last = random([5, 3, 1, 3], 60);
        check(&last, "last kernel");
        assert_eq!(kept(), [1]);
    }

    /// The forward convolution and its backward halves in chunks of one or two images (the
    /// last one shorter), on the pool and on the calling thread, give burn's results.
    #[test]
    fn chunked_convolutions_match_burn() {
        let (x, w) = (random([5, 3, 4, 6], 1), random([4, 3, 3, 3], 2));
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let g = random([5, 4, 4, 6], 4);
        for (chunk_elems, parallel) in [(200, true), (1300, true), (1300, false), (1 << 20, false)]
        {
            let mut plan = Plan::new([5, 3, 4, 6], [4, 3, 3, 3], [1, 1], chunk_elems);
            plan.parallel = parallel;
            assert_eq!(
                plan.images,
                (chunk_elems / 648).clamp(1, 5),
                "images per chunk"
            );
            let bias = random([1, 1, 1, 4], 3);
            let bias = Flex::float_reshape(bias, Shape::new([4]));
            let y = conv_forward::<f64>(&x, &w, Some(&bias), &plan);
            let y_burn = Flex::conv2d(x.clone(), w.clone(), Some(bias), options.clone());
            assert!(
                max_diff(y, y_burn) < 1e-12,
                "forward, {chunk_elems} per chunk"
            );
            let y = conv_forward::<f64>(&x, &w, None, &plan);
            let y_burn = Flex::conv2d(x.clone(), w.clone(), None, options.clone());
            assert!(max_diff(y, y_burn) < 1e-12, "forward without bias");
            let (dx, dw) = conv_backward::<f64>(&x, &w, &g, &plan, [true, true]);
            let (dx, dw) = (dx.unwrap(), dw.unwrap());
            let dx_burn = Flex::conv2d_x_backward(x.clone(), w.clone(), g.clone(), options.clone());
            assert!(
                max_diff(dx, dx_burn) < 1e-12,
                "input gradient, {chunk_elems} per chunk"
            );
            let dw_burn =
                Flex::conv2d_weight_backward(x.clone(), w.clone(), g.clone(), options.clone());
            assert!(
                max_diff(dw, dw_burn) < 1e-12,
                "weight gradient, {chunk_elems} per chunk"
            );
        }
    }
}

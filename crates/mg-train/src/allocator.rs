//! The process's allocator: mimalloc, told to keep the memory it frees. The one module of
//! `mg-train` with `unsafe` code: a call that sets one of mimalloc's options.
//!
//! A training window of the reference mapping model frees and allocates again gigabytes of
//! tensors. glibc's allocator unmaps large blocks, and mimalloc by default returns freed
//! memory to the system a second after its last use (`purge_delay`, 1000 ms); either way the next
//! allocation faults every page in again, and the reference model's window path spent about
//! half its wall time in the kernel doing so (docs/BENCHMARKS.md). With purging off, the
//! process keeps its peak memory until it exits.
#![allow(unsafe_code)]

use std::ffi::c_int;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (`include/mimalloc.h`), the version
/// `libmimalloc-sys` builds by default; its default there is 1000 (ms, `src/options.c`), which
/// the test checks, so that a renumbering in another version does not go unnoticed.
const PURGE_DELAY: c_int = 15;

/// Turns mimalloc's purging of freed memory off, unless the environment sets
/// `MIMALLOC_PURGE_DELAY` (mimalloc's own variable, which then stays in force).
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: `mi_option_set` takes two plain integers and may be called at any time from
        // any thread (options are atomics in mimalloc); `PURGE_DELAY` is a valid option index
        // (below `_mi_option_last`), and −1 is the value mimalloc documents for "never purge".
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option index is purge_delay's (default 1000 ms), and the call turns purging off.
    #[test]
    fn purging_is_turned_off() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: as in `keep_freed_memory`; `mi_option_get` only reads the option.
        let get = || unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert_eq!(
            get(),
            1000,
            "option {PURGE_DELAY} is not mimalloc's purge_delay"
        );
        keep_freed_memory();
        assert_eq!(get(), -1);
    }
}

//! Stopping training on Ctrl-C (SIGINT) or SIGTERM with a checkpoint: the first signal asks
//! the training loop to stop after its current window, which then writes its checkpoint
//! (atomically, as always); a second signal, or [`STOP_BOUND_S`] seconds without the process
//! having ended, exits at once (the previous checkpoint stays intact).

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;

/// Seconds between the first signal and an exit without the checkpoint.
pub const STOP_BOUND_S: u64 = 120;

/// Exit status after a signal that could not wait for the checkpoint (128 + SIGINT).
const INTERRUPTED: i32 = 130;

fn flag() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Whether a stop was asked for (by a signal, once [`on_signals`] is set up).
pub fn requested() -> bool {
    flag().load(Ordering::Relaxed)
}

/// Makes SIGINT and SIGTERM ask the training loop to stop with a checkpoint instead of ending
/// the process; called by the commands that train, once.
pub fn on_signals() -> anyhow::Result<()> {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.set(()).is_err() {
        return Ok(());
    }
    use signal_hook::consts::{SIGINT, SIGTERM};
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the earlier signal left it: a second
        // signal ends the process at once.
        signal_hook::flag::register_conditional_shutdown(signal, INTERRUPTED, flag().clone())
            .context("setting up the signal handlers")?;
        signal_hook::flag::register(signal, flag().clone())
            .context("setting up the signal handlers")?;
    }
    std::thread::Builder::new()
        .name("mg-stop".into())
        .spawn(|| {
            while !requested() {
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!(
                "\nstopping: the checkpoint is written after the current window (at most \
                 {STOP_BOUND_S} s); press Ctrl-C again to stop at once without it"
            );
            std::thread::sleep(Duration::from_secs(STOP_BOUND_S));
            eprintln!("no checkpoint after {STOP_BOUND_S} s; stopping without it");
            std::process::exit(INTERRUPTED);
        })
        .context("starting the stop watch")?;
    Ok(())
}

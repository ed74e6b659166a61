//! Progress of long work: a bar on a terminal, a plain line per report elsewhere (log files,
//! CI, `nohup`).

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress display over `len` units of `unit` (steps, sequences).
pub struct Progress {
    bar: Option<ProgressBar>,
    len: u64,
    unit: &'static str,
    start: Instant,
    position: u64,
    visible: bool,
}

impl Progress {
    /// A bar when stderr is a terminal and `visible`; plain lines when it is not and
    /// `visible`; nothing otherwise.
    pub fn new(len: u64, unit: &'static str, visible: bool) -> Self {
        let bar = (visible && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(len);
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} {{msg}}"
                ))
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar
        });
        Self {
            bar,
            len,
            unit,
            start: Instant::now(),
            position: 0,
            visible,
        }
    }

    fn plain(&self) -> bool {
        self.bar.is_none() && self.visible
    }

    /// Moves to `position`.
    pub fn set_position(&mut self, position: u64) {
        self.position = position;
        if let Some(bar) = &self.bar {
            bar.set_position(position);
        }
    }

    /// Sets the message; without a terminal, prints a line with the position.
    pub fn report(&mut self, message: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(message);
        } else if self.plain() {
            eprintln!(
                "[{:>7.1} s] {}/{} {} {message}",
                self.start.elapsed().as_secs_f64(),
                self.position,
                self.len,
                self.unit
            );
        }
    }

    /// Ends the display, leaving the bar (or a last line) in place.
    pub fn finish(&self, message: Option<String>) {
        match (&self.bar, message) {
            (Some(bar), Some(m)) => bar.abandon_with_message(m),
            (Some(bar), None) => bar.finish(),
            (None, Some(m)) if self.plain() => eprintln!("{m}"),
            _ => {}
        }
    }

    /// Removes the display.
    pub fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

//! Progress of a multi-step command on stderr: a spinner per step (only on a terminal), each
//! finished step kept as a `✓` line, and every step's duration logged at debug level and, with
//! `--timings`, printed as a table at the end.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The steps of one command.
pub(crate) struct Steps {
    bar: ProgressBar,
    started: Instant,
    current: Option<(String, Instant)>,
    timings: Vec<(String, Duration)>,
    show_timings: bool,
}

impl Steps {
    /// Progress on stderr; hidden when stderr is not a terminal.
    pub(crate) fn new(show_timings: bool) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(100));
            b
        } else {
            ProgressBar::hidden()
        };
        Self {
            bar,
            started: Instant::now(),
            current: None,
            timings: Vec::new(),
            show_timings,
        }
    }

    /// Ends the current step (if any) and starts `name`.
    pub(crate) fn step(&mut self, name: impl Into<String>) {
        self.end_step();
        let name = name.into();
        self.bar.set_message(format!("{name}…"));
        self.bar.reset_elapsed();
        self.current = Some((name, Instant::now()));
    }

    fn end_step(&mut self) {
        if let Some((name, t)) = self.current.take() {
            let took = t.elapsed();
            tracing::debug!(step = %name, ms = took.as_millis(), "step done");
            if !self.bar.is_hidden() {
                self.bar
                    .println(format!("✓ {name} ({} ms)", took.as_millis()));
            }
            self.timings.push((name, took));
        }
    }

    /// Shows what the current step is waiting on (`what`, e.g. image pull bytes): in the
    /// spinner's message on a terminal; elsewhere one line on stderr each time the part
    /// before the first `:` changes (`shown` remembers it), so logs get phases, not bytes.
    pub(crate) fn progress(&self, what: &str, shown: &mut String) {
        if !self.bar.is_hidden() {
            self.bar.set_message(format!("{what}…"));
            return;
        }
        crate::hostwait::line_per_phase(what, shown);
    }

    /// Runs `f` with the spinner out of the way (for prompts and messages).
    pub(crate) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// Ends the last step, clears the spinner and prints the timings if asked. Returns them.
    pub(crate) fn finish(mut self) -> Vec<(String, Duration)> {
        self.end_step();
        self.bar.finish_and_clear();
        if self.show_timings {
            for (name, d) in &self.timings {
                eprintln!("{:>7} ms  {name}", d.as_millis());
            }
            eprintln!("{:>7} ms  total", self.started.elapsed().as_millis());
        }
        std::mem::take(&mut self.timings)
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        // A failed command leaves no spinner behind on the terminal.
        self.bar.finish_and_clear();
    }
}

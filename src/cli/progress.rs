//! Progress of long operator commands (`ops warm`, `ops replay`, `ops reprocess`) on stderr: an indicatif bar
//! on a terminal, and a plain line at most once a second otherwise (logs, CI, `kubectl logs`), so stdout
//! keeps only the command's JSON or table.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// One long operation's progress.
pub struct Progress {
    what: &'static str,
    unit: &'static str,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Option<Instant>,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Progress of `what` over `total` items called `unit` (e.g. `warm`, `objects`).
    pub fn new(what: &'static str, unit: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            let template = format!(
                "{what} [{{bar:30}}] {{pos}}/{{len}} {{percent:>3}}% {{per_sec}} {unit} ETA {{eta}}"
            );
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("#>-"));
            }
            bar
        });
        Progress {
            what,
            unit,
            total,
            done: 0,
            started: Instant::now(),
            last_line: None,
            bar,
        }
    }

    /// `done` items are done (a running count, which may start above 0 when a run resumes).
    pub fn set(&mut self, done: u64) {
        self.done = done;
        match &self.bar {
            Some(bar) => bar.set_position(done),
            None => {
                if self
                    .last_line
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
                {
                    self.line();
                }
            }
        }
    }

    /// One more item is done.
    pub fn inc(&mut self) {
        self.set(self.done + 1);
    }

    /// The operation has ended: the bar stays on screen, or a last line is written.
    pub fn finish(mut self) {
        match self.bar.take() {
            Some(bar) => bar.finish(),
            None => self.line(),
        }
    }

    fn line(&mut self) {
        self.last_line = Some(Instant::now());
        let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-6);
        let pct = if self.total == 0 {
            100.0
        } else {
            100.0 * self.done as f64 / self.total as f64
        };
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "{} {}/{} {pct:5.1}% {rate:.0} {}/s",
            self.what, self.done, self.total, self.unit
        );
    }
}

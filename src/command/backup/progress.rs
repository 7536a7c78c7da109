//! How far the copy is: a progress bar on a terminal (indicatif), otherwise a log line every
//! ten seconds, so a long backup under systemd or cron still shows that it moves.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    bytes: u64,
    /// Bytes the server expects to send (BASE_BACKUP's estimate), once known.
    total: Option<u64>,
    began: Instant,
    logged: Instant,
}

const LOG_EVERY: Duration = Duration::from_secs(10);

impl Progress {
    pub fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} backup {bytes} of {total_bytes} [{wide_bar}] {binary_bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            bytes: 0,
            total: None,
            began: Instant::now(),
            logged: Instant::now(),
        }
    }

    /// The server's estimate of the bytes to come.
    pub fn set_total(&mut self, total: u64) {
        self.total = Some(total);
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    pub fn add(&mut self, n: u64) {
        self.bytes += n;
        match &self.bar {
            Some(bar) => bar.set_position(self.bytes),
            None if self.logged.elapsed() >= LOG_EVERY => {
                self.logged = Instant::now();
                let secs = self.began.elapsed().as_secs_f64().max(0.001);
                tracing::info!(
                    mib = self.bytes >> 20,
                    of_mib = self.total.map(|t| t >> 20),
                    mib_per_s = format!("{:.0}", self.bytes as f64 / 1048576.0 / secs),
                    "backup copying"
                );
            }
            None => {}
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

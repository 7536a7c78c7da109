//! The drill's timed phases: each records its start, end and error as it runs, into a list
//! shared with the drill's supervisor, so a phase cut off by the timeout or a signal is still
//! on the record (ended when it was cut off, with that as its error).

use std::future::Future;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use pgkeep::error::Result;
use pgkeep::manifest::drill::Phase;

#[derive(Debug, Clone, Default)]
pub struct Phases {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    done: Vec<Phase>,
    running: Option<(String, DateTime<Utc>)>,
}

impl Phases {
    /// Runs `f` as phase `name`. Boxed: a generic async fn would hide from the compiler that
    /// its future is `Send` for every borrow (callers in `#[async_trait]` impls need that).
    pub fn run<'a, T: Send + 'a>(
        &'a self,
        name: &'a str,
        f: impl Future<Output = Result<T>> + Send + 'a,
    ) -> futures::future::BoxFuture<'a, Result<T>> {
        Box::pin(self.timed(name, f))
    }

    async fn timed<T>(&self, name: &str, f: impl Future<Output = Result<T>>) -> Result<T> {
        self.with(|i| i.running = Some((name.to_string(), Utc::now())));
        let out = f.await;
        let error = out.as_ref().err().map(|e| e.one_line());
        self.with(|i| {
            if let Some((n, started)) = i.running.take() {
                i.done.push(phase(n, started, error));
            }
        });
        out
    }

    /// Ends the phase still running (cut off), with `why` as its error; returns its name.
    pub fn cut_off(&self, why: &str) -> Option<String> {
        self.with(|i| {
            let (n, started) = i.running.take()?;
            i.done
                .push(phase(n.clone(), started, Some(why.to_string())));
            Some(n)
        })
    }

    pub fn list(&self) -> Vec<Phase> {
        self.with(|i| i.done.clone())
    }

    /// Seconds spent in the phases named, summed.
    pub fn seconds(&self, names: &[&str]) -> f64 {
        self.with(|i| {
            i.done
                .iter()
                .filter(|p| names.contains(&p.name.as_str()))
                .map(|p| p.seconds)
                .sum()
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }
}

fn phase(name: String, started: DateTime<Utc>, error: Option<String>) -> Phase {
    let finished = Utc::now();
    Phase {
        name,
        started,
        finished,
        seconds: (finished - started).num_milliseconds() as f64 / 1000.0,
        error,
    }
}

//! `pgkeep check [--json] [--wal-timeout D] [--no-switch]`: the whole configuration end to
//! end, one line per check (`ok`, `FAIL` with a hint, or `skip` with why), so an operator knows
//! before the first failure whether a setup works: the repository (reachable, writable,
//! create-if-absent, identity, clock), PostgreSQL (the backup source, its privileges, the
//! archive settings, a `pg_switch_wal()` segment reaching the archive), Patroni, pgkeepd.
//! Every check has its own deadline; a failure never stops the others. Exit 3 on any failure.

mod postgres;
mod repository;
mod services;

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, Clone)]
pub struct CheckArgs {
    /// How long the switched segment may take to reach the archive.
    pub wal_timeout: Duration,
    /// Skip `pg_switch_wal()` (a busy primary, or a role without the grant on purpose).
    pub switch_wal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Fail,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub checks: Vec<Check>,
}

impl CheckReport {
    fn push(&mut self, name: &'static str, outcome: Outcome, detail: String, hint: Option<String>) {
        self.checks.push(Check {
            name,
            outcome,
            detail,
            hint,
        });
    }

    pub fn ok(&mut self, name: &'static str, detail: impl Into<String>) {
        self.push(name, Outcome::Ok, detail.into(), None);
    }

    pub fn fail(&mut self, name: &'static str, detail: impl Into<String>, hint: &str) {
        self.push(name, Outcome::Fail, detail.into(), Some(hint.to_string()));
    }

    /// A failure from a command's error: its message and its own hint.
    pub fn error(&mut self, name: &'static str, e: &Error) {
        let hint = e.hint_text().map(str::to_string);
        self.push(name, Outcome::Fail, e.message().to_string(), hint);
    }

    pub fn skip(&mut self, name: &'static str, why: impl Into<String>) {
        self.push(name, Outcome::Skip, why.into(), None);
    }

    /// Drops the line `name` (a caller that can check it better replaces it).
    pub fn remove(&mut self, name: &str) {
        self.checks.retain(|c| c.name != name);
    }

    pub fn failures(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.outcome == Outcome::Fail)
            .count()
    }

    /// Exit 3 (configuration) when any check failed.
    pub fn verdict(&self) -> Result<()> {
        match self.failures() {
            0 => Ok(()),
            n => Err(Error::new(
                ErrorKind::Config,
                format!("{n} check(s) failed: this setup does not work as configured"),
            )
            .hint("fix the FAIL lines above, each with its hint, and run 'pgkeep check' again")),
        }
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            let tag = match c.outcome {
                Outcome::Ok => "ok  ",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "skip",
            };
            writeln!(f, "{tag}  {:<18} {}", c.name, c.detail)?;
            if let Some(h) = &c.hint {
                writeln!(f, "      hint: {h}")?;
            }
        }
        Ok(())
    }
}

/// The checks, in the order a setup is built: repository, PostgreSQL, the WAL path, the
/// services around them.
pub async fn run(cfg: &Config, args: CheckArgs) -> CheckReport {
    let mut report = CheckReport::default();
    let repo = repository::check(cfg, &mut report).await;
    let server = postgres::check(cfg, repo.as_ref(), &mut report).await;
    postgres::wal_arrives(cfg, repo.as_ref(), server, &args, &mut report).await;
    services::patroni(cfg, &mut report).await;
    services::pgkeepd(cfg, &mut report).await;
    services::sandbox(cfg, &mut report);
    report
}

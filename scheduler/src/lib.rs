//! pgkeepd, the scheduled backup daemon: runs pgkeep's own commands (backup, expire, verify) on
//! cron schedules, one at a time per job across every daemon of a repository, and tells
//! Prometheus and humans how it went.
//!
//! # The map
//!
//! ```text
//! schedule   cron expressions (5 fields, 0 = Sunday; or 6 with seconds) -> next / previous fire
//! clock      wall-clock time that tokio's paused test clock can drive
//! jobs       the Job trait and the job kinds (backup full/incr, expire, verify): each calls the
//!            same pgkeep::command::*::run the CLI does; new kinds implement Job
//! drill_job  the restore-test job: one drill of pgkeep-restore-tests, its report on the status
//! state      what the daemon knows (per-job runs, newest backups, WAL age, last verify) and the
//!            per-job record kept in the repository (scheduler/<job>.json)
//! runner     one job's loop: wait for the fire, take the job's lease, skip an occurrence
//!            another daemon already ran, run, record
//! http       /healthz, /status (JSON), /metrics (Prometheus text), optional bearer token
//! auth       bearer tokens compared in constant time (sha256 both, then subtle)
//! check      `pgkeepd check`: pgkeep check's lines plus the drills' container sandbox
//! receiver   the WAL service ([service]): archive-push/archive-get of every cluster over
//!            HTTP(S), one token per cluster, bounded memory, store-and-forward spool
//! daemon     starts the runners and the HTTP server; SIGTERM: no new runs, running jobs get
//!            the grace period, then are cancelled (every pgkeep write path is crash-safe)
//! ```

pub mod auth;
pub mod check;
pub mod clock;
pub mod daemon;
pub mod drill_job;
pub mod http;
pub mod jobs;
pub mod receiver;
pub mod restore_test;
pub mod runner;
pub mod schedule;
pub mod state;

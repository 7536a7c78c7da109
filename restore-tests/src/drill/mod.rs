//! A restore drill, as a phase script: select → restore → start → recover → verify → report →
//! clean, each timed. The backup is held for the drill (a hold, like a restore's: expire keeps
//! it and its chain meanwhile). One overall timeout covers select to verify; a timeout or a
//! shutdown cuts the running phase off, and the report and clean-up still happen. The sandbox
//! is removed whatever happened (a failed one is kept for `keep_failed` when set).

mod canary;
mod checks;
mod phases;
mod recover;
pub mod select;
mod stage;

use std::time::Instant;

use chrono::Utc;

use pgkeep::command::drills;
use pgkeep::config::{Config, DrillTarget, RestoreTestConfig};
use pgkeep::error::{Error, ErrorKind, Result};
use pgkeep::manifest::Manifest;
use pgkeep::manifest::drill::{DrillReport, Verdict};
use pgkeep::repo::Repo;

use crate::sandbox::{self, Sandbox};
use canary::Canary;
use phases::Phases;
pub use select::Choice;

#[derive(Debug, Clone)]
pub struct DrillArgs {
    pub choice: Choice,
    pub config: RestoreTestConfig,
}

/// Runs one drill. `Err` only for what stops a drill before it has a backup and a sandbox (no
/// backup, an unreachable repository, a missing image or bin dir); every later failure is a
/// failed report, stored in the repository.
pub async fn run(
    cfg: &Config,
    args: DrillArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<DrillReport> {
    let rt = &args.config;
    let run_id = run_id();
    let started = Utc::now();
    let phases = Phases::default();
    let repo = Repo::open(&cfg.repository).await?;
    sweep(rt, false).await;

    let manifest = phases
        .run("select", select::select(&repo, &args.choice, rt.window))
        .await?;
    let hold = pgkeep::repo::hold::hold(
        &repo,
        manifest.id.as_str(),
        &format!("restore test {run_id}"),
    )
    .await?;
    let major = manifest.pg_version.major();
    let mut sb = sandbox::create(rt, &run_id, major).await?;
    tracing::info!(run = run_id, backup = %manifest.id, sandbox = sb.kind(), "restore test started");

    let deadline = Instant::now() + rt.timeout;
    let mut body = Body::default();
    let outcome = tokio::select! {
        r = tokio::time::timeout(rt.timeout, drill(cfg, rt, &repo, &manifest, sb.as_mut(), &phases, &run_id, deadline, &mut body)) => match r {
            Ok(r) => r,
            Err(_) => {
                let at = phases.cut_off("timed out").unwrap_or_default();
                Err(Error::new(ErrorKind::Corrupt, format!("the drill timed out after {} s in phase {at}", rt.timeout.as_secs())))
            }
        },
        _ = shutdown => {
            let at = phases.cut_off("interrupted by shutdown").unwrap_or_default();
            Err(Error::new(ErrorKind::Interrupted, format!("interrupted by shutdown in phase {at}")))
        }
    };

    // Report, then clean; the report is stored again with the clean phase on it.
    let mut report = build(
        &run_id,
        started,
        &manifest,
        rt,
        sb.as_ref(),
        &phases,
        &body,
        outcome,
    );
    // A report that cannot be stored still lets the sandbox be removed; the error comes after.
    let saved = phases.run("report", drills::save(&repo, &report)).await;
    let keep = (!report.passed() && !rt.keep_failed.is_zero()).then(|| Utc::now() + rt.keep_failed);
    let cleaned = phases.run("clean", sb.remove(keep)).await;
    let released = hold.release().await;
    report.phases = phases.list();
    report.finished = Utc::now();
    if let Err(e) = drills::save(&repo, &report).await {
        tracing::warn!(
            "cannot store the drill report with its clean-up: {}",
            e.one_line()
        );
    }
    saved?;
    cleaned?;
    released?;
    Ok(report)
}

/// What the drill learnt on its way.
#[derive(Debug, Default)]
struct Body {
    bytes: u64,
    segments_replayed: u64,
    replayed: Option<String>,
    checks: checks::Outcome,
    rto_seconds: Option<f64>,
}

#[allow(clippy::too_many_arguments)]
async fn drill(
    cfg: &Config,
    rt: &RestoreTestConfig,
    repo: &Repo,
    m: &Manifest,
    sb: &mut dyn Sandbox,
    phases: &Phases,
    run_id: &str,
    deadline: Instant,
    body: &mut Body,
) -> Result<()> {
    let (stop_lsn, start_lsn) = (m.stop_lsn, m.start_lsn);
    // The canary goes into the source's WAL before the WAL to replay is staged.
    let canary = match rt.target {
        DrillTarget::Latest if rt.canary => canary::leave(cfg, repo, run_id).await,
        DrillTarget::Latest => Canary::Skipped("restore_test.canary = false".into()),
        DrillTarget::Immediate => {
            Canary::Skipped("target immediate stops at the backup's end".into())
        }
    };
    let staged = phases
        .run("restore", stage::restore(cfg, &*sb, m, rt.target))
        .await?;
    body.bytes = staged.bytes;
    tracing::info!(
        run = run_id,
        "restored {} bytes, staged {} wal segments",
        staged.bytes,
        staged.segments
    );
    let settings = stage::settings(&*sb, &rt.settings, rt.target);
    phases.run("start", recover::start(sb, &settings)).await?;
    let recovered = phases
        .run("recover", recover::until_writable(&*sb, deadline))
        .await?;
    let rto = phases.seconds(&["restore", "start", "recover"]);
    body.rto_seconds = Some(rto);
    body.replayed = Some(recovered.replayed.to_string());
    let seg = u64::from(repo.info().seg_size.bytes());
    body.segments_replayed =
        (recovered.replayed.0.saturating_sub(1) / seg).saturating_sub(start_lsn.0 / seg) + 1;
    let facts = checks::Facts {
        target: rt.target,
        stop_lsn,
        newest_segment_start: staged.newest_segment_start,
        replayed: recovered.replayed,
        canary: &canary,
        rto_seconds: rto,
    };
    body.checks = phases
        .run("verify", async {
            Ok(checks::verify(&*sb, rt, &facts).await)
        })
        .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn build(
    run_id: &str,
    started: chrono::DateTime<Utc>,
    m: &Manifest,
    rt: &RestoreTestConfig,
    sb: &dyn Sandbox,
    phases: &Phases,
    body: &Body,
    outcome: Result<()>,
) -> DrillReport {
    let failed_check = body
        .checks
        .checks
        .iter()
        .find(|c| c.verdict == Verdict::Failed)
        .map(|c| format!("{}: {}", c.name, c.detail));
    let interrupted = outcome
        .as_ref()
        .is_err_and(|e| e.kind() == ErrorKind::Interrupted);
    // An error names the phase it stopped (a failed check names itself).
    let stopped = phases.list().into_iter().rev().find(|p| p.error.is_some());
    let cause = outcome
        .err()
        .map(|e| match stopped {
            Some(p) => format!("{}: {}", p.name, e.one_line()),
            None => e.one_line(),
        })
        .or(failed_check);
    DrillReport {
        run_id: run_id.to_string(),
        backup: m.id.to_string(),
        target: match rt.target {
            DrillTarget::Latest => "latest".into(),
            DrillTarget::Immediate => "immediate".into(),
        },
        sandbox: sb.kind().to_string(),
        runs: sb.runs(),
        started,
        finished: Utc::now(),
        phases: phases.list(),
        rto_seconds: body.rto_seconds,
        bytes_restored: body.bytes,
        wal_segments_replayed: body.segments_replayed,
        replayed_lsn: body.replayed.clone(),
        checks: body.checks.checks.clone(),
        tables: body.checks.tables.clone(),
        verdict: if cause.is_none() {
            Verdict::Passed
        } else {
            Verdict::Failed
        },
        cause,
        interrupted,
    }
}

/// Removes what crashed drills left — with `mine`, also this process's sandboxes (it is
/// shutting down) — best effort: a drill does not fail for it.
pub async fn sweep(rt: &RestoreTestConfig, mine: bool) {
    if let Err(e) = sandbox::sweep(rt, mine).await {
        tracing::warn!("restore test: cannot sweep leftovers: {}", e.one_line());
    }
}

/// `20261202T081500Z-1a2b`: sortable, and unique between drills started in one second.
fn run_id() -> String {
    let now = Utc::now();
    format!(
        "{}-{:04x}",
        now.format("%Y%m%dT%H%M%SZ"),
        ((now.timestamp_subsec_nanos() / 1000) ^ std::process::id()) & 0xffff
    )
}

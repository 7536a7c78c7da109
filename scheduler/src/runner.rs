//! One job's loop: wait for the next fire (or run at once the occurrence every daemon missed),
//! take the job's lease in the repository — held elsewhere means another daemon runs it, and
//! this occurrence is skipped — skip an occurrence the shared record says was already run, run
//! the job, and record how it went. The record is written when the run ends, so a daemon killed
//! mid-run leaves its occurrence unrecorded and the next start runs it again.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use pgkeep::config::Config;
use pgkeep::error::{Error, ErrorKind};
use pgkeep::repo::Repo;
use pgkeep::repo::lease::Lease;

use crate::clock::Clock;
use crate::jobs::Job;
use crate::schedule::Schedule;
use crate::state::{self, Outcome, Run, Shared};

/// What every runner shares.
pub struct Ctx {
    pub cfg: Config,
    pub status: Shared,
    pub clock: Clock,
    /// This daemon, as `host:pid`.
    pub me: String,
}

pub struct Spec {
    pub name: String,
    pub kind: String,
    pub schedule: Schedule,
}

/// Runs `job` on its schedule until `stop` turns true (a run in progress is finished first).
pub async fn run(ctx: Arc<Ctx>, spec: Spec, job: Box<dyn Job>, mut stop: watch::Receiver<bool>) {
    state::with(&ctx.status, |s| {
        let j = s.jobs.entry(spec.name.clone()).or_default();
        j.kind = spec.kind.clone();
        j.schedule = spec.schedule.as_str().to_string();
    });
    let mut pending = missed(&ctx, &spec).await;
    loop {
        let fire = match pending.take() {
            Some(f) => {
                tracing::info!(
                    job = spec.name,
                    "running the occurrence of {f} that was missed"
                );
                f
            }
            None => {
                let Some(next) = spec.schedule.next_after(ctx.clock.now()) else {
                    tracing::warn!(job = spec.name, "the schedule never fires again");
                    return;
                };
                set_next(&ctx, &spec, Some(next));
                tokio::select! {
                    _ = ctx.clock.sleep_until(next) => {}
                    _ = stop.changed() => return,
                }
                next
            }
        };
        if *stop.borrow() {
            return;
        }
        set_next(&ctx, &spec, None);
        occurrence(&ctx, &spec, job.as_ref(), fire).await;
    }
}

fn set_next(ctx: &Ctx, spec: &Spec, next: Option<DateTime<Utc>>) {
    state::with(&ctx.status, |s| {
        s.jobs.entry(spec.name.clone()).or_default().next_run = next;
    });
}

/// The last occurrence at or before now, if no daemon has run it.
async fn missed(ctx: &Ctx, spec: &Spec) -> Option<DateTime<Utc>> {
    let previous = spec.schedule.previous(ctx.clock.now())?;
    let repo = Repo::open(&ctx.cfg.repository).await.ok()?;
    let record = state::read_record(&repo, &spec.name).await.ok()?;
    match record.last_fire {
        Some(done) if done >= previous => None,
        _ => Some(previous),
    }
}

async fn occurrence(ctx: &Ctx, spec: &Spec, job: &dyn Job, fire: DateTime<Utc>) {
    let repo = match Repo::open(&ctx.cfg.repository).await {
        Ok(r) => r,
        Err(e) => return finished(ctx, spec, fire, ctx.clock.now(), Err(e)),
    };
    let lease_name = format!("job-{}", spec.name);
    let lease = match Lease::acquire(&repo, &lease_name, ctx.cfg.scheduler.lease_ttl).await {
        Ok(l) => l,
        Err(e) if e.kind() == ErrorKind::Conflict => {
            tracing::info!(job = spec.name, "another daemon runs it: {}", e.one_line());
            return skipped(ctx, spec);
        }
        Err(e) => return finished(ctx, spec, fire, ctx.clock.now(), Err(e)),
    };
    let mut record = state::read_record(&repo, &spec.name)
        .await
        .unwrap_or_default();
    if record.last_fire.is_some_and(|done| done >= fire) {
        tracing::info!(job = spec.name, "the occurrence of {fire} already ran");
        let _ = lease.release().await;
        return skipped(ctx, spec);
    }
    let started = ctx.clock.now();
    state::with(&ctx.status, |s| {
        s.jobs.entry(spec.name.clone()).or_default().running_since = Some(started);
    });
    tracing::info!(job = spec.name, "started (occurrence {fire})");
    let ran = job.run(&ctx.cfg, &ctx.status).await;
    if let Some(report) = ran.report {
        state::with(&ctx.status, |s| {
            s.jobs.entry(spec.name.clone()).or_default().last_report = Some(report);
        });
    }
    let result = ran.result;
    let outcome = if result.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Failed
    };
    record.last_fire = Some(fire);
    record.last_started = Some(started);
    record.last_finished = Some(ctx.clock.now());
    record.last_outcome = Some(outcome);
    let recorded = state::write_record(&repo, &spec.name, &record).await;
    let released = lease.release().await;
    let result = result.and_then(|detail| recorded.and(released).map(|()| detail));
    // The repository's figures first: whoever sees this run in the history sees them too.
    if let Err(e) = state::refresh_repository(&ctx.cfg, &ctx.status).await {
        tracing::warn!("cannot refresh the repository status: {}", e.one_line());
    }
    finished(ctx, spec, fire, started, result);
}

fn skipped(ctx: &Ctx, spec: &Spec) {
    state::with(&ctx.status, |s| {
        s.jobs.entry(spec.name.clone()).or_default().skipped_total += 1;
    });
}

fn finished(
    ctx: &Ctx,
    spec: &Spec,
    occurrence: DateTime<Utc>,
    started: DateTime<Utc>,
    result: Result<String, Error>,
) {
    let now = ctx.clock.now();
    let run = Run {
        occurrence,
        started,
        finished: now,
        outcome: if result.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Failed
        },
        duration_seconds: (now - started).num_milliseconds() as f64 / 1000.0,
        error: result.as_ref().err().map(|e| e.one_line()),
        detail: result.as_ref().ok().cloned(),
        by: ctx.me.clone(),
    };
    match &result {
        Ok(d) => tracing::info!(job = spec.name, "finished: {d}"),
        Err(e) => tracing::error!(job = spec.name, "failed: {}", e.one_line()),
    }
    state::with(&ctx.status, |s| {
        let j = s.jobs.entry(spec.name.clone()).or_default();
        j.running_since = None;
        j.runs_total += 1;
        if result.is_ok() {
            j.last_success = Some(now);
        } else {
            j.failures_total += 1;
        }
        j.history.push(run.clone());
        if j.history.len() > 50 {
            j.history.remove(0);
        }
        j.last_run = Some(run);
    });
}

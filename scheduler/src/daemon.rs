//! The daemon: parse every schedule (a bad one fails the start), start one runner per job and
//! the HTTP server, and on shutdown stop scheduling, give running jobs the grace period, then
//! cancel what still runs. Cancelling is safe: a backup commits its manifest last and an
//! expiry removes manifests first, so a cut-off job leaves nothing half-listed, and its
//! occurrence, unrecorded, runs again at the next start.

use std::future::Future;
use std::sync::{Arc, Mutex};

use pgkeep::config::Config;
use pgkeep::error::{Error, ErrorKind, Result};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::http::{self, Http};
use crate::jobs;
use crate::receiver;
use crate::runner::{self, Ctx, Spec};
use crate::schedule::Schedule;
use crate::state::{self, Status};

pub async fn run(cfg: Config, clock: Clock, shutdown: impl Future<Output = ()>) -> Result<()> {
    // Every schedule parses, or nothing starts.
    let mut specs = Vec::new();
    for j in &cfg.scheduler.jobs {
        let schedule = Schedule::parse(&j.schedule).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("scheduler job '{}': {e}", j.name),
            )
            .hint("use 5 crontab fields (minute hour day month weekday, 0 = Sunday)")
        })?;
        specs.push((
            Spec {
                name: j.name.clone(),
                kind: j.kind.as_str().to_string(),
                schedule,
            },
            jobs::for_job(j),
        ));
    }
    // The sandboxes of drills a crashed daemon left behind.
    let drills: Vec<_> = cfg
        .scheduler
        .jobs
        .iter()
        .filter_map(|j| j.restore_test.clone())
        .collect();
    for rt in &drills {
        pgkeep_restore_tests::drill::sweep(rt, false).await;
    }
    let status = Arc::new(Mutex::new(Status {
        started: Some(clock.now()),
        ..Status::default()
    }));
    if let Err(e) = state::refresh_repository(&cfg, &status).await {
        tracing::warn!("cannot read the repository yet: {}", e.one_line());
    }

    // HTTP.
    let listener = tokio::net::TcpListener::bind(&cfg.scheduler.listen)
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cannot listen on {}: {e}", cfg.scheduler.listen),
            )
            .hint("set scheduler.listen to a free address, e.g. 127.0.0.1:9187")
        })?;
    tracing::info!("listening on http://{}", cfg.scheduler.listen);
    let app = http::router(Http {
        status: Arc::clone(&status),
        token: cfg.scheduler.token.clone(),
        clock,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    // The WAL service, when configured: a bad token file, certificate or address fails the
    // start, like a bad schedule.
    let service_tasks = match &cfg.service {
        Some(svc) => {
            let r = receiver::build(&cfg, svc, Arc::clone(&status), clock)?;
            receiver::start(svc, r, stop_rx.clone()).await?
        }
        None => Vec::new(),
    };
    let mut http_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stop.changed().await;
            })
            .await;
    });

    // One runner per job.
    let grace = cfg.scheduler.grace;
    let ctx = Arc::new(Ctx {
        cfg,
        status: Arc::clone(&status),
        clock,
        me: format!("{}:{}", hostname(), std::process::id()),
    });
    let mut runners = tokio::task::JoinSet::new();
    for (spec, job) in specs {
        runners.spawn(runner::run(Arc::clone(&ctx), spec, job, stop_rx.clone()));
    }
    // Refresh the repository's figures (WAL age) between jobs too.
    let refresher = {
        let (ctx, mut stop) = (Arc::clone(&ctx), stop_rx.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
                    _ = stop.changed() => return,
                }
                let _ = state::refresh_repository(&ctx.cfg, &ctx.status).await;
            }
        })
    };

    shutdown.await;
    tracing::info!(
        "shutting down: no new runs; running jobs get {}",
        humantime_secs(grace)
    );
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(grace, async {
        while runners.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "grace period over: cancelling the jobs still running (nothing half-committed is left: the next start runs them again)"
        );
        runners.shutdown().await;
        // A cancelled drill could not clean up: its sandbox is this daemon's to remove.
        for rt in &drills {
            pgkeep_restore_tests::drill::sweep(rt, true).await;
        }
    }
    refresher.abort();
    let _ = server.await;
    for t in service_tasks {
        let _ = t.await;
    }
    Ok(())
}

fn humantime_secs(d: std::time::Duration) -> String {
    format!("{} s", d.as_secs())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

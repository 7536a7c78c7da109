//! The daemon's HTTP endpoints: `/healthz` (always open: the daemon runs), `/status` (JSON:
//! each job's last run, result, duration and next run; the newest backup of each type; the
//! newest archived WAL and its age; the last verify) and `/metrics` (Prometheus text format,
//! encoded by prometheus-client). With `scheduler.token` set, `/status` and `/metrics` want
//! `Authorization: Bearer <token>`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::clock::Clock;
use crate::state::{self, Shared, Status};

#[derive(Clone)]
pub struct Http {
    pub status: Shared,
    pub token: Option<String>,
    pub clock: Clock,
}

pub fn router(h: Http) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(h))
}

fn authorised(h: &Http, headers: &HeaderMap) -> bool {
    match &h.token {
        None => true,
        Some(token) => crate::auth::bearer_matches(headers.get(header::AUTHORIZATION), token),
    }
}

async fn status(State(h): State<Arc<Http>>, headers: HeaderMap) -> Response {
    if !authorised(&h, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let snapshot = state::with(&h.status, |s| s.clone());
    let mut v = serde_json::to_value(&snapshot).unwrap_or_default();
    v["repository"]["newest_wal_age_seconds"] = serde_json::json!(wal_age(&snapshot, &h.clock));
    axum::Json(v).into_response()
}

fn wal_age(s: &Status, clock: &Clock) -> Option<f64> {
    s.repository
        .newest_wal_stored_at
        .map(|t| (clock.now() - t).num_milliseconds() as f64 / 1000.0)
}

async fn metrics(State(h): State<Arc<Http>>, headers: HeaderMap) -> Response {
    if !authorised(&h, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let snapshot = state::with(&h.status, |s| s.clone());
    let mut text = String::new();
    match encode(&mut text, &registry(&snapshot, &h.clock)) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

fn label(k: &str, v: &str) -> Labels {
    vec![(k.to_string(), v.to_string())]
}

/// A registry filled from one status snapshot (built per scrape: the status is the truth).
fn registry(s: &Status, clock: &Clock) -> Registry {
    let mut r = Registry::with_prefix("pgkeep");
    let last_backup = Family::<Labels, FloatGauge>::default();
    let backup_duration = Family::<Labels, FloatGauge>::default();
    for (kind, b) in &s.repository.newest_backup {
        last_backup
            .get_or_create(&label("type", kind))
            .set(b.stop_time.timestamp_millis() as f64 / 1000.0);
        if let Some(d) = b.duration_seconds {
            backup_duration.get_or_create(&label("type", kind)).set(d);
        }
    }
    r.register(
        "last_successful_backup_timestamp_seconds",
        "When the newest committed backup of each type became consistent",
        last_backup,
    );
    r.register(
        "backup_duration_seconds",
        "How long the newest committed backup of each type took",
        backup_duration,
    );
    let wal_age_gauge = FloatGauge::default();
    if let Some(age) = wal_age(s, clock) {
        wal_age_gauge.set(age);
    }
    r.register(
        "archive_newest_segment_age_seconds",
        "Seconds since the newest WAL file reached the archive",
        wal_age_gauge,
    );
    let bytes = Gauge::<i64>::default();
    bytes.set(i64::try_from(s.repository.repository_bytes).unwrap_or(i64::MAX));
    r.register(
        "repository_bytes",
        "Bytes the repository holds: backup objects and WAL",
        bytes,
    );
    let runs = Family::<Labels, Counter>::default();
    let failures = Family::<Labels, Counter>::default();
    let skipped = Family::<Labels, Counter>::default();
    let last_success = Family::<Labels, FloatGauge>::default();
    let running = Family::<Labels, Gauge>::default();
    for (name, j) in &s.jobs {
        let l = label("job", name);
        runs.get_or_create(&l).inc_by(j.runs_total);
        failures.get_or_create(&l).inc_by(j.failures_total);
        skipped.get_or_create(&l).inc_by(j.skipped_total);
        running
            .get_or_create(&l)
            .set(i64::from(j.running_since.is_some()));
        if let Some(t) = j.last_success {
            last_success
                .get_or_create(&l)
                .set(t.timestamp_millis() as f64 / 1000.0);
        }
    }
    r.register("job_runs", "Runs of each job by this daemon", runs);
    r.register(
        "job_failures",
        "Failed runs of each job by this daemon",
        failures,
    );
    r.register(
        "job_skipped",
        "Occurrences of each job left to another daemon",
        skipped,
    );
    r.register(
        "job_last_success_timestamp_seconds",
        "When each job last succeeded on this daemon",
        last_success,
    );
    r.register(
        "job_running",
        "1 while the job runs on this daemon",
        running,
    );
    restore_tests(&mut r, s);
    service(&mut r, s, clock);
    if let Some(v) = &s.repository.last_verify {
        let problems = Gauge::<i64>::default();
        problems.set(i64::try_from(v.problems).unwrap_or(i64::MAX));
        r.register(
            "verify_problems",
            "Problems the last verify found (0: the repository is whole)",
            problems,
        );
    }
    r
}

/// The restore drills: when one last passed, the newest one's RTO and phases (from the
/// repository, so any daemon's or a manual drill counts), this daemon's runs by outcome, and
/// the committed backups no drill has proven.
fn restore_tests(r: &mut Registry, s: &Status) {
    if let Some(t) = s.repository.last_restore_test_success {
        let g = FloatGauge::default();
        g.set(t.timestamp_millis() as f64 / 1000.0);
        r.register(
            "restore_test_last_success_timestamp_seconds",
            "When a restore drill last passed",
            g,
        );
    }
    if let Some(last) = &s.repository.last_restore_test {
        if let Some(rto) = last.rto_seconds {
            let g = FloatGauge::default();
            g.set(rto);
            r.register(
                "restore_test_rto_seconds",
                "The newest drill's recovery time: restore and recovery until a write is accepted",
                g,
            );
        }
        let phases = Family::<Labels, FloatGauge>::default();
        for p in &last.phases {
            phases
                .get_or_create(&label("phase", &p.name))
                .set(p.seconds);
        }
        r.register(
            "restore_test_phase_seconds",
            "How long each phase of the newest drill took",
            phases,
        );
    }
    let runs = Family::<Labels, Counter>::default();
    for outcome in ["passed", "failed"] {
        let n = s.restore_test_runs.get(outcome).copied().unwrap_or(0);
        runs.get_or_create(&label("outcome", outcome)).inc_by(n);
    }
    r.register(
        "restore_test_runs",
        "Restore drills this daemon ran, by outcome",
        runs,
    );
    let untested = Gauge::<i64>::default();
    untested.set(i64::try_from(s.repository.backups_untested).unwrap_or(i64::MAX));
    r.register(
        "backups_untested",
        "Committed backups that no restore drill has proven",
        untested,
    );
}

/// The WAL service: per cluster, the age of the newest file received (an alert fires when a
/// node stops archiving) and pushes by outcome; the spool's backlog.
fn service(r: &mut Registry, s: &Status, clock: &Clock) {
    let Some(svc) = &s.service else { return };
    let age = Family::<Labels, FloatGauge>::default();
    let pushes = Family::<Labels, Counter>::default();
    for (name, i) in &svc.clusters {
        if let Some(at) = i.newest_received_at {
            age.get_or_create(&label("cluster", name))
                .set((clock.now() - at).num_milliseconds() as f64 / 1000.0);
        }
        for (outcome, n) in &i.pushes {
            pushes
                .get_or_create(&vec![
                    ("cluster".to_string(), name.clone()),
                    ("outcome".to_string(), outcome.clone()),
                ])
                .inc_by(*n);
        }
    }
    r.register(
        "wal_received_newest_age_seconds",
        "Seconds since pgkeepd last acknowledged a WAL file of each cluster",
        age,
    );
    r.register(
        "wal_pushes",
        "WAL pushes pgkeepd answered, by cluster and outcome",
        pushes,
    );
    if let Some(sp) = &svc.spool {
        let g = |v: u64| {
            let g = Gauge::<i64>::default();
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
            g
        };
        r.register(
            "wal_spool_bytes",
            "Bytes of WAL acknowledged and not yet in the store",
            g(sp.bytes),
        );
        r.register(
            "wal_spool_segments",
            "WAL files acknowledged and not yet in the store",
            g(sp.segments),
        );
        r.register(
            "wal_spool_rejected",
            "Spooled WAL files the store refused on upload (kept aside)",
            g(sp.rejected),
        );
        let oldest = FloatGauge::default();
        if let Some(t) = sp.oldest {
            oldest.set((clock.now() - t).num_milliseconds().max(0) as f64 / 1000.0);
        }
        r.register(
            "wal_spool_oldest_age_seconds",
            "Age of the oldest spooled WAL file (0 when the spool is empty)",
            oldest,
        );
    }
}

//! The services around the cluster: Patroni's REST API (and which member may serve a backup,
//! each with why or why not), pgkeepd's WAL service when `[server]` is set (reachable, the
//! token accepted), and what restore drills need.

use std::time::Duration;

use super::CheckReport;
use crate::config::{Config, JobKind, SandboxKind};
use crate::error::ErrorKind;
use crate::patroni;

const DEADLINE: Duration = Duration::from_secs(15);

pub(super) async fn patroni(cfg: &Config, r: &mut CheckReport) {
    let Some(p) = &cfg.patroni else { return };
    let client = match patroni::Client::new(p.client.clone()) {
        Ok(c) => c,
        Err(e) => {
            r.fail("patroni", e, "check the [patroni] settings");
            return;
        }
    };
    let cluster = match tokio::time::timeout(DEADLINE, client.cluster()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            r.fail(
                "patroni",
                format!("no member answered: {e}"),
                "check patroni.endpoints and that Patroni's REST API is reachable from here",
            );
            return;
        }
        Err(_) => {
            r.fail(
                "patroni",
                format!("no answer within {}s", DEADLINE.as_secs()),
                "check patroni.endpoints",
            );
            return;
        }
    };
    let leader = cluster
        .leader()
        .map_or("none".to_string(), |l| l.name.clone());
    r.ok(
        "patroni",
        format!(
            "{}{} member(s), leader {leader}",
            cluster
                .scope
                .as_deref()
                .map(|s| format!("cluster {s}: "))
                .unwrap_or_default(),
            cluster.members.len()
        ),
    );
    let ranking = patroni::rank(&cluster, &p.policy);
    let eligible: Vec<String> = (ranking.candidates.iter())
        .map(|c| format!("{}{}", c.name, if c.leader { " (leader)" } else { "" }))
        .collect();
    let why_not = if ranking.rejected.is_empty() {
        String::new()
    } else {
        format!("; not eligible: {}", ranking.rejected.join("; "))
    };
    if eligible.is_empty() {
        r.fail(
            "backup candidates",
            format!("no member may serve a backup{why_not}"),
            "wait for a replica to catch up, raise patroni.max_lag, or set patroni.fallback_to_primary = true",
        );
    } else {
        r.ok(
            "backup candidates",
            format!("in order: {}{why_not}", eligible.join(", ")),
        );
    }
}

/// pgkeepd answers with this node's token: a file that cannot exist is "not found", which
/// only an authenticated request gets.
pub(super) async fn pgkeepd(cfg: &Config, r: &mut CheckReport) {
    let Some(server) = &cfg.server else { return };
    let client = match crate::service::client::Client::new(server, DEADLINE) {
        Ok(c) => c,
        Err(e) => {
            r.error("pgkeepd", &e);
            return;
        }
    };
    match client.get("FFFFFFFF.history").await {
        Err(e) if e.kind() == ErrorKind::NotFound => r.ok(
            "pgkeepd",
            format!("{} accepted this node's token", client.url()),
        ),
        Ok(_) => r.ok(
            "pgkeepd",
            format!("{} accepted this node's token", client.url()),
        ),
        Err(e) => r.error("pgkeepd", &e),
    }
}

/// Restore drills: a local sandbox needs PostgreSQL's binaries of the repository's major;
/// a container sandbox is checked by `pgkeepd check`, which holds the container client.
pub(super) fn sandbox(cfg: &Config, r: &mut CheckReport) {
    let t = &cfg.restore_test;
    if !cfg
        .scheduler
        .jobs
        .iter()
        .any(|j| j.kind == JobKind::RestoreTest)
    {
        return;
    }
    match t.sandbox {
        SandboxKind::Container => r.skip(
            "sandbox",
            format!(
                "container sandboxes ({}) are checked by 'pgkeepd check', which runs the drills",
                t.image
            ),
        ),
        SandboxKind::Local => {
            let majors: Vec<u32> = (13..=19).collect();
            let found: Vec<u32> = majors
                .into_iter()
                .filter(|m| {
                    std::path::Path::new(&t.bin_dir.replace("{major}", &m.to_string()))
                        .join("pg_ctl")
                        .is_file()
                })
                .collect();
            if found.is_empty() {
                r.fail(
                    "sandbox",
                    format!("no pg_ctl under restore_test.bin_dir = {}", t.bin_dir),
                    "install PostgreSQL's server binaries or fix restore_test.bin_dir",
                );
            } else {
                r.ok(
                    "sandbox",
                    format!("local: postgresql {found:?} under {}", t.bin_dir),
                );
            }
        }
    }
}

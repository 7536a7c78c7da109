//! Which member a backup reads from, as a pure ranking of a `/cluster` snapshot: healthy
//! replicas first — plain replicas before synchronous ones (reading from a sync standby slows
//! the commits that wait for it), least lag first — never a member tagged `nobackup`, and the
//! leader last, only when the policy allows it. Each member left out is named with its reason,
//! so "no source" errors say why.

use super::cluster::{Cluster, Member, Role};

/// The tag that keeps a member out of backups.
pub const NOBACKUP_TAG: &str = "nobackup";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePolicy {
    /// Most replication lag (bytes) a replica may have to be read from.
    pub max_lag: u64,
    /// Read from the leader when no replica qualifies.
    pub fallback_to_primary: bool,
}

/// A member that may serve the backup, in order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub leader: bool,
    /// The member's REST API base, for the health check that confirms it.
    pub api: Option<String>,
}

/// The ranking and, for every member left out, why.
#[derive(Debug, Clone, Default)]
pub struct Ranking {
    pub candidates: Vec<Candidate>,
    pub rejected: Vec<String>,
}

pub fn rank(cluster: &Cluster, policy: &SourcePolicy) -> Ranking {
    let mut r = Ranking::default();
    let leader_tli = cluster.leader().and_then(|l| l.timeline);
    let mut replicas: Vec<(&Member, bool, u64)> = Vec::new();
    for m in &cluster.members {
        match refusal(m, policy, leader_tli) {
            Some(why) => r.rejected.push(format!("{}: {why}", m.name)),
            None if is_leader(m) => {}
            None => replicas.push((m, m.role != Role::Replica, m.lag.unwrap_or(0))),
        }
    }
    replicas.sort_by(|a, b| (a.1, a.2, &a.0.name).cmp(&(b.1, b.2, &b.0.name)));
    r.candidates = replicas
        .into_iter()
        .map(|(m, ..)| candidate(m, false))
        .collect();
    if let Some(l) = cluster.leader() {
        if policy.fallback_to_primary && !l.tagged(NOBACKUP_TAG) {
            r.candidates.push(candidate(l, true));
        } else if !l.tagged(NOBACKUP_TAG) {
            r.rejected.push(format!(
                "{}: the leader (set patroni.fallback_to_primary = true to allow it)",
                l.name
            ));
        }
    }
    r
}

fn is_leader(m: &Member) -> bool {
    matches!(m.role, Role::Leader | Role::StandbyLeader)
}

/// Why `m` may not serve a backup, if it may not.
fn refusal(m: &Member, policy: &SourcePolicy, leader_tli: Option<u32>) -> Option<String> {
    if m.tagged(NOBACKUP_TAG) {
        return Some(format!("tagged {NOBACKUP_TAG}"));
    }
    if m.host.is_empty() || m.port == 0 {
        return Some("no connection address published".into());
    }
    if is_leader(m) {
        return None;
    }
    if !matches!(
        m.role,
        Role::Replica | Role::SyncStandby | Role::QuorumStandby
    ) {
        return Some("not a replica".into());
    }
    if !matches!(m.state.as_str(), "streaming" | "running") {
        return Some(format!("state {}", m.state));
    }
    match m.lag {
        None => return Some("lag unknown".into()),
        Some(lag) if lag > policy.max_lag => {
            return Some(format!("lag {lag} bytes > {} allowed", policy.max_lag));
        }
        Some(_) => {}
    }
    match (m.timeline, leader_tli) {
        (Some(t), Some(l)) if t != l => Some(format!("on timeline {t}, the leader on {l}")),
        _ => None,
    }
}

fn candidate(m: &Member, leader: bool) -> Candidate {
    Candidate {
        name: m.name.clone(),
        host: m.host.clone(),
        port: m.port,
        leader,
        api: m.api_base(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, role: &str, state: &str, lag: serde_json::Value, tags: &str) -> String {
        format!(
            r#"{{"name": "{name}", "role": "{role}", "state": "{state}", "host": "127.0.0.1",
                "port": 5432, "timeline": 3, "lag": {lag}, "tags": {{{tags}}},
                "api_url": "http://127.0.0.1:8008/patroni"}}"#
        )
    }

    fn cluster(members: &[String]) -> Cluster {
        serde_json::from_str(&format!(r#"{{"members": [{}]}}"#, members.join(","))).unwrap()
    }

    fn names(c: &Cluster, policy: &SourcePolicy) -> Vec<String> {
        rank(c, policy)
            .candidates
            .into_iter()
            .map(|c| c.name)
            .collect()
    }

    const STRICT: SourcePolicy = SourcePolicy {
        max_lag: 1000,
        fallback_to_primary: false,
    };
    const FALLBACK: SourcePolicy = SourcePolicy {
        max_lag: 1000,
        fallback_to_primary: true,
    };

    #[test]
    fn least_lag_replica_first_sync_standbys_after_plain_replicas() {
        let c = cluster(&[
            member("a", "leader", "running", 0.into(), ""),
            member("b", "replica", "streaming", 500.into(), ""),
            member("c", "replica", "running", 20.into(), ""),
            member("d", "sync_standby", "streaming", 0.into(), ""),
            member("e", "quorum_standby", "streaming", 1.into(), ""),
        ]);
        assert_eq!(names(&c, &STRICT), ["c", "b", "d", "e"]);
        assert_eq!(names(&c, &FALLBACK), ["c", "b", "d", "e", "a"]);
        let r = rank(&c, &STRICT);
        assert!(
            r.rejected[0].contains("fallback_to_primary"),
            "{:?}",
            r.rejected
        );
    }

    #[test]
    fn unhealthy_lagging_and_tagged_members_are_left_out_with_reasons() {
        let c = cluster(&[
            member("a", "leader", "running", 0.into(), ""),
            member("b", "replica", "streaming", 5000.into(), ""),
            member("c", "replica", "streaming", 0.into(), r#""nobackup": true"#),
            member("d", "replica", "starting", 0.into(), ""),
            member(
                "e",
                "replica",
                "streaming",
                "\"unknown\"".parse().unwrap(),
                "",
            ),
        ]);
        assert_eq!(names(&c, &STRICT), Vec::<String>::new());
        let why = rank(&c, &STRICT).rejected.join("; ");
        for part in [
            "b: lag 5000 bytes > 1000",
            "c: tagged nobackup",
            "d: state starting",
            "e: lag unknown",
            "a: the leader",
        ] {
            assert!(why.contains(part), "{part} in {why}");
        }
        assert_eq!(names(&c, &FALLBACK), ["a"]);
    }

    #[test]
    fn a_nobackup_leader_is_never_used_and_stale_timelines_are_skipped() {
        let mut c = cluster(&[
            member("a", "leader", "running", 0.into(), r#""nobackup": true"#),
            member("b", "replica", "streaming", 0.into(), ""),
        ]);
        assert_eq!(names(&c, &FALLBACK), ["b"]);
        c.members[1].timeline = Some(2);
        assert_eq!(names(&c, &FALLBACK), Vec::<String>::new());
        assert!(
            rank(&c, &FALLBACK)
                .rejected
                .join(";")
                .contains("timeline 2")
        );
    }
}

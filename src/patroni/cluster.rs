//! A `GET /cluster` snapshot: the members with their role, state, lag, timeline and tags,
//! parsed leniently (Patroni reports lag as a number of bytes or as "unknown", and tags are
//! free-form YAML values). Pure.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Cluster {
    #[serde(default)]
    pub members: Vec<Member>,
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub state: String,
    /// `http://host:port/patroni`: the member's own REST API.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Empty (and port 0) while the member has not published its connection address.
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub timeline: Option<u32>,
    /// Replication lag in bytes; `None` when Patroni says "unknown" or omits it.
    #[serde(default, deserialize_with = "lag")]
    pub lag: Option<u64>,
    #[serde(default)]
    pub tags: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Leader,
    StandbyLeader,
    Replica,
    SyncStandby,
    QuorumStandby,
    #[serde(other)]
    Other,
}

impl Member {
    /// A tag set to true (`nobackup: true`, or the string "true").
    pub fn tagged(&self, tag: &str) -> bool {
        match self.tags.get(tag) {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        }
    }

    /// The base URL of the member's REST API (`api_url` without its `/patroni` path).
    pub fn api_base(&self) -> Option<String> {
        let url = self.api_url.as_deref()?;
        let base = url.strip_suffix("/patroni").unwrap_or(url);
        Some(base.trim_end_matches('/').to_string())
    }
}

impl Cluster {
    pub fn leader(&self) -> Option<&Member> {
        self.members
            .iter()
            .find(|m| matches!(m.role, Role::Leader | Role::StandbyLeader))
    }
}

fn lag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_patroni_3_cluster_output() {
        let json = r#"{"members": [
            {"name": "n1", "role": "leader", "state": "running",
             "api_url": "http://127.0.0.1:8011/patroni", "host": "127.0.0.1", "port": 5441,
             "timeline": 2},
            {"name": "n2", "role": "replica", "state": "streaming",
             "api_url": "http://127.0.0.1:8012/patroni", "host": "127.0.0.1", "port": 5442,
             "timeline": 2, "lag": 0, "tags": {"nobackup": true}},
            {"name": "n3", "role": "sync_standby", "state": "running", "host": "127.0.0.1",
             "port": 5443, "lag": "unknown", "tags": {"nobackup": "false"}},
            {"name": "n4", "role": "something_new"}
        ], "scope": "demo"}"#;
        let c: Cluster = serde_json::from_str(json).unwrap();
        assert_eq!(c.scope.as_deref(), Some("demo"));
        assert_eq!(c.leader().unwrap().name, "n1");
        let [_, n2, n3, n4] = &c.members[..] else {
            panic!("four members")
        };
        assert_eq!(n2.lag, Some(0));
        assert!(n2.tagged("nobackup"));
        assert_eq!(n2.api_base().as_deref(), Some("http://127.0.0.1:8012"));
        assert_eq!((n3.role, n3.lag), (Role::SyncStandby, None));
        assert!(!n3.tagged("nobackup"));
        assert_eq!((n4.role, n4.host.as_str(), n4.port), (Role::Other, "", 0));
    }
}

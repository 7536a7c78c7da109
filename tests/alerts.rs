//! The alerting rules in config/alerts: promtool's unit tests pass (each alert fires on
//! series shaped like pgkeepd's /metrics and stays quiet on healthy ones), and every pgkeep
//! metric the rules and the Grafana dashboard name is one pgkeepd registers — so a renamed
//! metric breaks this test, not an operator's alerting.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn alerts_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/alerts"))
}

#[test]
fn promtool_unit_tests_pass() {
    let out = Command::new("promtool")
        .current_dir(alerts_dir())
        .args(["test", "rules", "pgkeep.tests.yml", "pgkeep-days.tests.yml"])
        .output()
        .expect("promtool (Debian's prometheus package; scripts/install-deps.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("SUCCESS").count(), 2, "{text}");
}

#[test]
fn every_metric_the_rules_and_the_dashboard_name_is_one_pgkeepd_registers() {
    // The rules and the Grafana dashboard's queries.
    let rules = std::fs::read_to_string(alerts_dir().join("pgkeep.rules.yml")).unwrap()
        + &std::fs::read_to_string(alerts_dir().join("pgkeep-dashboard.json")).unwrap();
    let named: BTreeSet<String> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("pgkeep_"))
        .map(str::to_string)
        .collect();
    assert!(named.len() >= 10, "{named:?}");

    // The families pgkeepd registers (scheduler/src/http.rs): a family without samples yet
    // (no backup, no drill, no push) is not in a fresh daemon's /metrics, so the names come
    // from the registrations, each as a gauge or a counter's `_total`.
    let http = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scheduler/src/http.rs"
    ))
    .unwrap();
    let mut exposed = BTreeSet::new();
    let mut rest = http.as_str();
    while let Some(i) = rest.find("register(") {
        rest = &rest[i + "register(".len()..];
        let Some(open) = rest.find('"') else { break };
        let close = rest[open + 1..].find('"').unwrap() + open + 1;
        let name = &rest[open + 1..close];
        exposed.insert(format!("pgkeep_{name}"));
        exposed.insert(format!("pgkeep_{name}_total"));
    }
    assert!(exposed.len() >= 40, "{exposed:?}");
    let unknown: Vec<&String> = named.difference(&exposed).collect();
    assert!(
        unknown.is_empty(),
        "the rules name metrics pgkeepd does not register: {unknown:?}"
    );
}

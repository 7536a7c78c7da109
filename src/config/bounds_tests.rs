//! Every numeric setting has bounds: a value outside them is a config error (exit 3) in one
//! line that names the key, the value and the allowed range, with a hint.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Config, Raw};
use crate::error::{ErrorKind, Result};

fn resolve(section: &str, line: &str) -> Result<Config> {
    let text = match section {
        "repository" => format!("[repository]\npath = \"/r\"\n{line}\n"),
        _ => format!("[repository]\npath = \"/r\"\n[{section}]\n{line}\n"),
    };
    Raw::parse(&text, Path::new("t.toml"), &BTreeMap::new())?.resolve()
}

fn refused(section: &str, key: &str, value: &str, range: &str) {
    let err = resolve(section, &format!("{key} = {value}"))
        .err()
        .unwrap_or_else(|| panic!("{section}.{key} = {value} was accepted"));
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let line = err.one_line();
    assert!(!line.contains('\n'), "{line}");
    let name = format!("{section}.{key}");
    assert!(line.contains(&name), "{line}");
    assert!(line.contains(range), "{line} names the range {range}");
    assert!(err.hint_text().is_some_and(|h| h.contains(&name)), "{err}");
}

fn accepted(section: &str, key: &str, value: &str) -> Config {
    resolve(section, &format!("{key} = {value}"))
        .unwrap_or_else(|e| panic!("{section}.{key} = {value}: {e}"))
}

#[test]
fn backup_bounds() {
    refused("backup", "concurrency", "0", "1 to 64");
    refused("backup", "concurrency", "65", "1 to 64");
    refused("backup", "concurrency", "9223372036854775807", "1 to 64");
    assert_eq!(
        accepted("backup", "concurrency", "64").backup.concurrency,
        64
    );
    assert_eq!(accepted("backup", "concurrency", "1").backup.concurrency, 1);
    refused("backup", "memory_mib", "31", "32 to 65536");
    refused("backup", "memory_mib", "65537", "32 to 65536");
    // Times 2^20 this wrapped to 0 and the backup hung holding the lease.
    refused("backup", "memory_mib", "17592186044416", "32 to 65536");
    assert_eq!(accepted("backup", "memory_mib", "32").backup.memory_mib, 32);
    refused("backup", "max_chain", "1001", "0 to 1000");
    assert_eq!(accepted("backup", "max_chain", "0").backup.max_chain, 0);
    refused("backup", "wal_timeout", "\"0s\"", "1s to 7days");
    refused("backup", "wal_timeout", "\"8days\"", "1s to 7days");
}

#[test]
fn archive_bounds() {
    refused("archive", "get_prefetch", "65", "0 to 64");
    refused("archive", "get_prefetch", "100000000000", "0 to 64");
    assert_eq!(
        accepted("archive", "get_prefetch", "0")
            .archive
            .get_prefetch,
        0
    );
    refused("archive", "push_lookahead", "65", "0 to 64");
    assert_eq!(
        accepted("archive", "push_lookahead", "64")
            .archive
            .push_lookahead,
        64
    );
    refused("archive", "compress_threads", "65", "0 to 64");
    refused("archive", "timeout", "\"0s\"", "1s to 1h");
    refused("archive", "timeout", "\"2h\"", "1s to 1h");
}

#[test]
fn repository_retention_patroni_and_scheduler_bounds() {
    refused("repository", "max_retries", "101", "0 to 100");
    refused("repository", "request_timeout", "\"1ms\"", "100ms to 1h");
    refused("retention", "full", "0", "1 to 10000");
    refused("retention", "full", "10001", "1 to 10000");
    assert_eq!(accepted("retention", "full", "1").retention.full, 1);
    refused("retention", "max_age", "\"1000years\"", "0s to ");
    refused("create_replica", "max_wal_mib", "1048577", "0 to 1048576");
    refused(
        "create_replica",
        "max_wal_percent",
        "1000001",
        "0 to 1000000",
    );
    refused("scheduler", "grace", "\"2h\"", "0s to 1h");
    refused("scheduler", "lease_ttl", "\"1s\"", "10s to 1day");
    let patroni = |line: &str| {
        resolve(
            "patroni",
            &format!("endpoints = [\"http://127.0.0.1:8008\"]\n{line}"),
        )
    };
    let e = patroni("timeout = \"1h\"").unwrap_err();
    assert!(e.one_line().contains("patroni.timeout"), "{e}");
    let e = patroni("max_lag = 2251799813685249").unwrap_err();
    assert!(e.one_line().contains("patroni.max_lag"), "{e}");
    assert!(patroni("max_lag = 0").is_ok());
}

#[test]
fn ports_are_checked() {
    for bad in [
        "\"127.0.0.1:0\"",
        "\"127.0.0.1:65536\"",
        "\"localhost\"",
        "\":80\"",
    ] {
        let e = resolve("scheduler", &format!("listen = {bad}")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.one_line().contains("scheduler.listen"), "{e}");
        assert!(e.hint_text().is_some());
    }
    assert_eq!(
        accepted("scheduler", "listen", "\"[::1]:9187\"")
            .scheduler
            .listen,
        "[::1]:9187"
    );
}

#[test]
fn environment_values_are_bounded_too() {
    let env: BTreeMap<String, String> = [("PGKEEP_BACKUP_CONCURRENCY", "100000")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let e = Raw::parse("[repository]\npath = \"/r\"\n", Path::new("t"), &env)
        .and_then(Raw::resolve)
        .unwrap_err();
    assert!(e.one_line().contains("backup.concurrency = 100000"), "{e}");
}

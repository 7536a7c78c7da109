//! Restore drills run the way an operator runs them: the real `pgkeepd restore-test --json`,
//! with the drill's settings as `PGKEEP_RESTORE_TEST_*` variables; and what a drill may leave
//! behind (sandboxes, servers, repository objects) listed for the tests to compare.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::pgkeep::{Pgkeep, bin};

/// The pgkeepd binary built beside pgkeep.
pub fn pgkeepd() -> PathBuf {
    bin().with_file_name("pgkeepd")
}

/// One drill's result: exit code, the JSON report (when it printed one) and stderr.
pub struct Drill {
    pub code: i32,
    pub report: Option<serde_json::Value>,
    pub stderr: String,
}

impl Drill {
    /// The check named `name` of the report: its verdict and detail.
    pub fn check(&self, name: &str) -> (String, String) {
        let r = self.report.as_ref().expect("a report");
        let c = r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name} in {r:#}"));
        (
            c["verdict"].as_str().unwrap().to_string(),
            c["detail"].as_str().unwrap().to_string(),
        )
    }

    pub fn cause(&self) -> String {
        self.report.as_ref().expect("a report")["cause"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// The command of a drill: pgkeepd with `pk`'s configuration and environment plus `env`.
pub fn command(pk: &Pgkeep, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut c = Command::new(pgkeepd());
    c.arg("--config")
        .arg(&pk.config)
        .args(["restore-test", "--json"])
        .args(args)
        .env_remove("PGKEEP_LOG")
        .stdin(Stdio::null());
    for (k, v) in &pk.env {
        c.env(k, v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Runs a drill to its end.
pub fn run(pk: &Pgkeep, env: &[(&str, &str)], args: &[&str]) -> Drill {
    let out = command(pk, env, args).output().expect("run pgkeepd");
    let stdout = String::from_utf8_lossy(&out.stdout);
    Drill {
        code: out.status.code().unwrap_or(-1),
        report: serde_json::from_str(&stdout).ok(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The sandboxes in `work`: what a drill must never leave behind.
pub fn sandboxes(work: &Path) -> Vec<String> {
    std::fs::read_dir(work)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with("pgkeep-restore-test-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose command line names `needle` (a sandbox's postgres).
pub fn processes_naming(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

/// Every file under `root`, relative, sorted.
pub fn files(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

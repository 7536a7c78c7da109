//! `pgkeepd restore-test`: one drill now, with the `[restore_test]` section's settings and the
//! command line's overrides; prints a summary (or the JSON report) and fails with exit code 10
//! when the drill failed. SIGTERM or SIGINT cut the drill off: it still reports and cleans up.

use std::future::Future;

use pgkeep::config::{Config, DrillTarget, SandboxKind};
use pgkeep::error::{Error, ErrorKind, Result};
use pgkeep::manifest::drill::{DrillReport, Verdict};
use pgkeep_restore_tests::drill::{self, Choice, DrillArgs};

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub backup: Option<String>,
    pub sandbox: Option<String>,
    pub target: Option<String>,
    pub json: bool,
}

pub async fn once(
    cfg: Config,
    o: Options,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let mut rt = cfg.restore_test.clone();
    let bad = |what: &str, v: &str| {
        Error::new(ErrorKind::InvalidInput, format!("invalid --{what} '{v}'"))
            .hint("see 'pgkeepd restore-test --help'")
    };
    if let Some(s) = &o.sandbox {
        rt.sandbox = match s.as_str() {
            "local" => SandboxKind::Local,
            "container" => SandboxKind::Container,
            _ => return Err(bad("sandbox", s)),
        };
    }
    if let Some(t) = &o.target {
        rt.target = match t.as_str() {
            "latest" => DrillTarget::Latest,
            "immediate" => DrillTarget::Immediate,
            _ => return Err(bad("target", t)),
        };
    }
    let choice = match &o.backup {
        Some(b) => Choice::parse(b),
        None => Choice::Rule(rt.select),
    };
    let report = drill::run(&cfg, DrillArgs { choice, config: rt }, Box::pin(shutdown)).await?;
    if o.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", summary(&report));
    }
    if report.passed() {
        Ok(())
    } else {
        Err(Error::new(
            if report.interrupted {
                ErrorKind::Interrupted
            } else {
                ErrorKind::Corrupt
            },
            format!(
                "restore test {} of backup {} failed: {}",
                report.run_id,
                report.backup,
                report.cause.clone().unwrap_or_default()
            ),
        )
        .hint("the report is in the repository under restore-tests/; 'pgkeep info' shows when each backup was last proven"))
    }
}

/// The report for a terminal.
pub fn summary(r: &DrillReport) -> String {
    let mut s = format!(
        "restore test {}: backup {} -> {} ({} sandbox, {})\n",
        r.run_id,
        r.backup,
        match r.verdict {
            Verdict::Passed => "PASSED",
            _ => "FAILED",
        },
        r.sandbox,
        r.runs
    );
    if let Some(rto) = r.rto_seconds {
        s.push_str(&format!(
            "  rto {rto:.1} s (restore + recovery until a write is accepted); target {}; {} bytes restored; {} wal segments replayed to {}\n",
            r.target,
            r.bytes_restored,
            r.wal_segments_replayed,
            r.replayed_lsn.as_deref().unwrap_or("?")
        ));
    }
    let phases: Vec<String> = r
        .phases
        .iter()
        .map(|p| {
            format!(
                "{} {:.1}s{}",
                p.name,
                p.seconds,
                if p.error.is_some() { " (error)" } else { "" }
            )
        })
        .collect();
    s.push_str(&format!("  phases: {}\n", phases.join(", ")));
    for c in &r.checks {
        let v = match c.verdict {
            Verdict::Passed => "ok  ",
            Verdict::Failed => "FAIL",
            Verdict::Skipped => "skip",
        };
        s.push_str(&format!("  {v} {:<18} {}\n", c.name, c.detail));
    }
    if !r.tables.is_empty() {
        let rows: u64 = r.tables.iter().map(|t| t.rows).sum();
        s.push_str(&format!("  {} user tables, {rows} rows\n", r.tables.len()));
    }
    if let Some(c) = &r.cause {
        s.push_str(&format!("  cause: {c}\n"));
    }
    s
}

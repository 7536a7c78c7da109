//! The `[scheduler]` section, read by `pgkeepd`: where its HTTP endpoints listen, the bearer
//! token that guards them, how long running jobs get on SIGTERM, the job lease's time to live,
//! and the jobs (`[[scheduler.jobs]]`: name, kind, cron schedule). Schedules stay text here:
//! `pgkeepd` parses them (the `pgkeep` binary links no cron parser).

use std::time::Duration;

use serde::Deserialize;

use super::bounded_duration;
use super::restore_test::{RawRestoreTest, RestoreTestConfig};
use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScheduler {
    listen: Option<String>,
    token: Option<String>,
    grace: Option<String>,
    lease_ttl: Option<String>,
    #[serde(default)]
    jobs: Vec<RawJob>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: String,
    kind: String,
    schedule: String,
    /// `restore-test` jobs: keys overriding `[restore_test]` for this job.
    restore_test: Option<RawRestoreTest>,
}

/// What a job does. More kinds (restore tests) slot in beside these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    BackupFull,
    BackupIncr,
    Expire,
    Verify,
    RestoreTest,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::BackupFull => "backup-full",
            JobKind::BackupIncr => "backup-incr",
            JobKind::Expire => "expire",
            JobKind::Verify => "verify",
            JobKind::RestoreTest => "restore-test",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    pub name: String,
    pub kind: JobKind,
    /// Standard 5-field crontab (minute hour day-of-month month day-of-week, 0 = Sunday), or 6
    /// fields with a leading seconds field.
    pub schedule: String,
    /// `restore-test` jobs: `[restore_test]` with the job's own keys over it.
    pub restore_test: Option<RestoreTestConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    pub listen: String,
    pub token: Option<String>,
    pub grace: Duration,
    pub lease_ttl: Duration,
    pub jobs: Vec<JobConfig>,
}

impl RawScheduler {
    pub(super) fn resolve(self, section: &RawRestoreTest) -> Result<SchedulerConfig> {
        let mut jobs: Vec<JobConfig> = Vec::new();
        for j in self.jobs {
            let kind = match j.kind.as_str() {
                "backup-full" => JobKind::BackupFull,
                "backup-incr" => JobKind::BackupIncr,
                "expire" => JobKind::Expire,
                "verify" => JobKind::Verify,
                "restore-test" => JobKind::RestoreTest,
                other => {
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!("invalid kind '{other}' of scheduler job '{}'", j.name),
                    )
                    .hint(
                        "a job's kind is backup-full, backup-incr, expire, verify or restore-test",
                    ));
                }
            };
            let valid_name = !j.name.is_empty()
                && j.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
            if !valid_name || jobs.iter().any(|o| o.name == j.name) {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("invalid or repeated scheduler job name '{}'", j.name),
                )
                .hint("job names are unique and use letters, digits, '-' and '_'"));
            }
            let restore_test = match (kind, j.restore_test) {
                (JobKind::RestoreTest, own) => {
                    Some(section.overlaid(&own.unwrap_or_default()).resolve()?)
                }
                (_, None) => None,
                (_, Some(_)) => {
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!("scheduler job '{}' has a restore_test table but is not a restore-test", j.name),
                    )
                    .hint("only kind = \"restore-test\" jobs take a [scheduler.jobs.restore_test] table"));
                }
            };
            jobs.push(JobConfig {
                name: j.name,
                kind,
                schedule: j.schedule,
                restore_test,
            });
        }
        Ok(SchedulerConfig {
            listen: listen(self.listen.unwrap_or_else(|| "127.0.0.1:9187".into()))?,
            token: self.token.filter(|t| !t.is_empty()),
            grace: bounded_duration(
                "scheduler.grace",
                self.grace,
                Duration::from_secs(60),
                Duration::ZERO..=Duration::from_secs(3600),
            )?,
            lease_ttl: bounded_duration(
                "scheduler.lease_ttl",
                self.lease_ttl,
                Duration::from_secs(60),
                Duration::from_secs(10)..=Duration::from_secs(86400),
            )?,
            jobs,
        })
    }
}

/// `scheduler.listen`: `host:port` with a port from 1 to 65535.
fn listen(addr: String) -> Result<String> {
    let port = addr
        .rsplit_once(':')
        .and_then(|(host, p)| (!host.is_empty()).then_some(p))
        .and_then(|p| p.parse::<u32>().ok());
    match port {
        Some(1..=65535) => Ok(addr),
        _ => Err(Error::new(
            ErrorKind::Config,
            format!("scheduler.listen = {addr} is not host:port with a port from 1 to 65535"),
        )
        .hint("set scheduler.listen to an address such as 127.0.0.1:9187")),
    }
}

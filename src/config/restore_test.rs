//! The `[restore_test]` section, read by `pgkeepd` (drills): which sandbox, where its
//! PostgreSQL comes from (a bin dir or an image per major), what to select and how far to
//! recover, the checks' options and probes, the limits (overall timeout, restore-time target)
//! and what to keep after a failure. A `restore-test` job of `[[scheduler.jobs]]` may carry a
//! `[scheduler.jobs.restore_test]` table of its own: its keys override these for that job.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Lenient, bounded, bounded_duration};
use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRestoreTest {
    sandbox: Option<String>,
    select: Option<String>,
    window: Option<String>,
    target: Option<String>,
    timeout: Option<String>,
    max_rto: Option<String>,
    keep_failed: Option<String>,
    work_dir: Option<PathBuf>,
    bin_dir: Option<String>,
    os_user: Option<String>,
    superuser: Option<String>,
    image: Option<String>,
    docker_host: Option<String>,
    network: Option<String>,
    memory_mib: Option<Lenient<u64>>,
    cpus: Option<Lenient<f64>>,
    heapallindexed: Option<Lenient<bool>>,
    canary: Option<Lenient<bool>>,
    settings: Option<BTreeMap<String, String>>,
    probes: Option<Vec<RawProbe>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    name: String,
    database: Option<String>,
    sql: String,
}

/// Which sandbox a drill runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxKind {
    /// A temp directory and `pg_ctl` from `bin_dir`.
    Local,
    /// A container through the Docker Engine API.
    Container,
}

/// Which backup a drill restores when none is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    Latest,
    /// The oldest committed backup that no drill has proven.
    Untested,
    /// A random backup that ended within `window`.
    Random,
}

/// How far a drill recovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrillTarget {
    /// To the backup's end (consistency), then promote.
    Immediate,
    /// To the end of the archive: replays every archived segment after the backup.
    Latest,
}

/// A user check: one SQL statement returning one boolean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub name: String,
    pub database: String,
    pub sql: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RestoreTestConfig {
    pub sandbox: SandboxKind,
    pub select: Selection,
    pub window: Duration,
    pub target: DrillTarget,
    /// The whole drill, clean-up excluded.
    pub timeout: Duration,
    /// A drill whose RTO exceeds this fails (a restore-time target).
    pub max_rto: Option<Duration>,
    /// A failed sandbox is kept this long for inspection (zero: removed at once).
    pub keep_failed: Duration,
    /// Where sandboxes (local) and staging directories live.
    pub work_dir: PathBuf,
    /// Local: PostgreSQL's bin dir, `{major}` replaced by the backup's major.
    pub bin_dir: String,
    /// Local: the OS user the server runs as when pgkeepd runs as root.
    pub os_user: String,
    /// The role the drill's checks connect as (the restored cluster's superuser).
    pub superuser: String,
    /// Container: the image, `{major}` replaced.
    pub image: String,
    /// Container: the Docker Engine API endpoint (`unix:///...`); DOCKER_HOST's or Docker's
    /// default when unset.
    pub docker_host: Option<String>,
    /// Container: the network (`none`: no network at all; the sandbox needs none).
    pub network: String,
    pub memory_mib: u64,
    pub cpus: f64,
    pub heapallindexed: bool,
    /// Leave a restore point in the source's WAL and require recovery to pass it.
    pub canary: bool,
    /// Extra server settings (`-c name=value`), after pgkeep's defaults and before its forced ones.
    pub settings: BTreeMap<String, String>,
    pub probes: Vec<Probe>,
}

impl RawRestoreTest {
    /// `self` with every key `over` sets replaced (a job's own table over the section).
    pub(super) fn overlaid(&self, over: &RawRestoreTest) -> RawRestoreTest {
        let o = over.clone();
        let s = self.clone();
        RawRestoreTest {
            sandbox: o.sandbox.or(s.sandbox),
            select: o.select.or(s.select),
            window: o.window.or(s.window),
            target: o.target.or(s.target),
            timeout: o.timeout.or(s.timeout),
            max_rto: o.max_rto.or(s.max_rto),
            keep_failed: o.keep_failed.or(s.keep_failed),
            work_dir: o.work_dir.or(s.work_dir),
            bin_dir: o.bin_dir.or(s.bin_dir),
            os_user: o.os_user.or(s.os_user),
            superuser: o.superuser.or(s.superuser),
            image: o.image.or(s.image),
            docker_host: o.docker_host.or(s.docker_host),
            network: o.network.or(s.network),
            memory_mib: o.memory_mib.or(s.memory_mib),
            cpus: o.cpus.or(s.cpus),
            heapallindexed: o.heapallindexed.or(s.heapallindexed),
            canary: o.canary.or(s.canary),
            settings: o.settings.or(s.settings),
            probes: o.probes.or(s.probes),
        }
    }

    pub(super) fn resolve(self) -> Result<RestoreTestConfig> {
        let sandbox = choice(
            "restore_test.sandbox",
            self.sandbox,
            &[
                ("local", SandboxKind::Local),
                ("container", SandboxKind::Container),
            ],
        )?;
        let select = choice(
            "restore_test.select",
            self.select,
            &[
                ("latest", Selection::Latest),
                ("untested", Selection::Untested),
                ("random", Selection::Random),
            ],
        )?;
        let target = choice(
            "restore_test.target",
            self.target,
            &[
                ("latest", DrillTarget::Latest),
                ("immediate", DrillTarget::Immediate),
            ],
        )?;
        let day = Duration::from_secs(86400);
        let mut probes = Vec::new();
        for p in self.probes.unwrap_or_default() {
            if p.name.is_empty() || probes.iter().any(|q: &Probe| q.name == p.name) {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("restore_test probe name '{}' is empty or repeated", p.name),
                )
                .hint("give every [[restore_test.probes]] a unique name"));
            }
            probes.push(Probe {
                name: p.name,
                database: p.database.unwrap_or_else(|| "postgres".into()),
                sql: p.sql,
            });
        }
        let settings = self.settings.unwrap_or_default();
        if let Some(bad) = settings.keys().find(|k| {
            k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.".contains(&b))
        }) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("restore_test.settings has an invalid setting name '{bad}'"),
            )
            .hint("setting names are PostgreSQL's, e.g. shared_buffers"));
        }
        Ok(RestoreTestConfig {
            sandbox,
            select,
            window: bounded_duration(
                "restore_test.window",
                self.window,
                30 * day,
                Duration::from_secs(60)..=3660 * day,
            )?,
            target,
            timeout: bounded_duration(
                "restore_test.timeout",
                self.timeout,
                Duration::from_secs(3600),
                Duration::from_secs(10)..=7 * day,
            )?,
            max_rto: self
                .max_rto
                .map(|t| {
                    bounded_duration(
                        "restore_test.max_rto",
                        Some(t),
                        Duration::ZERO,
                        Duration::from_secs(1)..=7 * day,
                    )
                })
                .transpose()?,
            keep_failed: bounded_duration(
                "restore_test.keep_failed",
                self.keep_failed,
                Duration::ZERO,
                Duration::ZERO..=30 * day,
            )?,
            work_dir: self.work_dir.unwrap_or_else(std::env::temp_dir),
            bin_dir: self
                .bin_dir
                .unwrap_or_else(|| "/usr/lib/postgresql/{major}/bin".into()),
            os_user: self.os_user.unwrap_or_else(|| "postgres".into()),
            superuser: self.superuser.unwrap_or_else(|| "postgres".into()),
            image: self
                .image
                .unwrap_or_else(|| "localhost/pgkeep-pg:{major}".into()),
            docker_host: self.docker_host.filter(|h| !h.is_empty()),
            network: self.network.unwrap_or_else(|| "none".into()),
            memory_mib: bounded(
                "restore_test.memory_mib",
                self.memory_mib,
                2048,
                64..=4_194_304,
            )?,
            cpus: bounded("restore_test.cpus", self.cpus, 2.0, 0.01..=1024.0)?,
            heapallindexed: self
                .heapallindexed
                .map(|v| v.get("restore_test.heapallindexed"))
                .transpose()?
                .unwrap_or(false),
            canary: self
                .canary
                .map(|v| v.get("restore_test.canary"))
                .transpose()?
                .unwrap_or(true),
            settings,
            probes,
        })
    }
}

impl RestoreTestConfig {
    /// `template` with `{major}` replaced.
    pub fn for_major(template: &str, major: u32) -> String {
        template.replace("{major}", &major.to_string())
    }
}

fn choice<T: Copy>(key: &str, raw: Option<String>, options: &[(&str, T)]) -> Result<T> {
    let Some(text) = raw else {
        return Ok(options[0].1);
    };
    options
        .iter()
        .find(|(name, _)| *name == text.trim())
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            Error::new(ErrorKind::Config, format!("invalid {key} '{text}'"))
                .hint(format!("{key} is one of: {}", names.join(", ")))
        })
}

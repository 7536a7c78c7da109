//! Running the real `pgkeep` binary the way PostgreSQL does, and synthesized clusters for
//! the tests that need no server (a data directory holding only a pg_control, and segments).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pgkeep::pg::fixtures::{control_versions, synth_control, synth_segment};
use pgkeep::pg::{PgVersion, Timeline, WalSegSize, WalSegmentName};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pgkeep"))
}

/// The result of one pgkeep run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The error line pgkeep printed (asserting there is exactly one, plus a hint).
    pub fn error_line(&self) -> String {
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("pgkeep: error"))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "one error line expected in: {}",
            self.stderr
        );
        assert!(
            self.stderr.lines().any(|l| l.starts_with("hint: ")),
            "a hint expected in: {}",
            self.stderr
        );
        errors[0].to_string()
    }
}

/// `[repository]` lines that encrypt it (aes-256-gcm), with a passphrase file in `dir` that
/// the postgres user can read (archive_command and restore_command run as postgres).
pub fn cipher_lines(dir: &Path) -> String {
    let pass = dir.join("cipher-pass");
    std::fs::write(&pass, "a test passphrase, not a secret\n").expect("write pass file");
    super::postgres::chown_postgres(&pass);
    format!(
        "cipher = \"aes-256-gcm\"\ncipher_pass_file = \"{}\"\n",
        pass.display()
    )
}

/// pgkeep with a config file and extra environment.
pub struct Pgkeep {
    pub config: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Pgkeep {
    pub fn new(dir: &Path, toml: &str) -> Pgkeep {
        let config = dir.join("pgkeep.toml");
        std::fs::write(&config, toml).expect("write config");
        Pgkeep {
            config,
            env: Vec::new(),
        }
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(bin());
        c.env("PGKEEP_CONFIG", &self.config)
            .env_remove("PGKEEP_LOG");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command().args(args).output().expect("run pgkeep"))
    }

    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, 0, "pgkeep {args:?} failed: {}", r.stderr);
        r
    }

    /// A shell command line PostgreSQL can run: this configuration, then `args`.
    fn shell_command(&self, args: &str) -> String {
        let env: String = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}='{v}' "))
            .collect();
        format!(
            "{env}PGKEEP_CONFIG='{}' '{}' {args}",
            self.config.display(),
            bin().display()
        )
    }

    /// `archive_command` for a server using this configuration.
    pub fn archive_command(&self) -> String {
        self.shell_command("archive-push %p")
    }

    /// `restore_command` for a server using this configuration.
    pub fn restore_command(&self) -> String {
        self.shell_command("archive-get %f %p")
    }
}

pub const SEG: WalSegSize = WalSegSize::DEFAULT;

/// A cluster without a server: a data directory with a pg_control, and its WAL.
pub struct FakeCluster {
    pub data: PathBuf,
    pub sysid: u64,
    pub version: PgVersion,
}

impl FakeCluster {
    pub fn new(dir: &Path, sysid: u64, major: u32) -> FakeCluster {
        let data = dir.join(format!("data-{sysid}"));
        std::fs::create_dir_all(data.join("global")).expect("global");
        std::fs::create_dir_all(data.join("pg_wal/archive_status")).expect("pg_wal");
        let (ctl, cat) = control_versions(major);
        std::fs::write(
            data.join("global/pg_control"),
            synth_control(sysid, ctl, cat, SEG.bytes()),
        )
        .expect("pg_control");
        FakeCluster {
            data,
            sysid,
            version: PgVersion::new(major).expect("major"),
        }
    }

    pub fn segment_name(segno: u64) -> WalSegmentName {
        WalSegmentName {
            tli: Timeline(1),
            segno,
        }
    }

    /// Writes segment `segno` into pg_wal (marked `.ready` when asked) and returns its path.
    pub fn write_segment(&self, segno: u64, seed: u64, ready: bool) -> PathBuf {
        let name = Self::segment_name(segno);
        let bytes = synth_segment(
            self.version.wal_page_magic(),
            self.sysid,
            name,
            SEG,
            seed,
            4 << 20,
        );
        let file = name.file_name(SEG);
        let path = self.data.join("pg_wal").join(&file);
        std::fs::write(&path, bytes).expect("segment");
        if ready {
            std::fs::write(
                self.data
                    .join(format!("pg_wal/archive_status/{file}.ready")),
                b"",
            )
            .expect("ready");
        }
        path
    }
}

/// Every file below `dir`, relative, with its content (to show that nothing changed).
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("prefix").display().to_string();
                out.push((rel, std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

/// The report of `pgkeep check --json` (or `pgkeepd check --json`) from a run's exit code and
/// output: the code, the names of the checks that failed, and the whole report.
pub fn check_report(
    code: i32,
    stdout: &str,
    stderr: &str,
) -> (i32, std::collections::BTreeSet<String>, serde_json::Value) {
    let report: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("no json report ({e}): {stdout}\n{stderr}"));
    let failed = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["outcome"] == "fail")
        .map(|c| c["name"].as_str().expect("name").to_string())
        .collect();
    (code, failed, report)
}

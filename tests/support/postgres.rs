//! A real PostgreSQL server for tests: initdb and postgres run as the `postgres` user, on a
//! free loopback port with its socket in the test's directory.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::proc::{ChildGuard, free_port, postgres_user, run_ok, wait_for};

/// Where the PostgreSQL binaries are (`PGKEEP_TEST_PG_BIN`, default Debian's PostgreSQL 15).
pub fn pg_bin() -> PathBuf {
    std::env::var_os("PGKEEP_TEST_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// The server binaries of a major: `PGKEEP_TEST_PG<major>_BIN`, else Debian's 15.
pub fn major_bin(major: u32) -> PathBuf {
    if major == 15 {
        return pg_bin();
    }
    let var = format!("PGKEEP_TEST_PG{major}_BIN");
    std::env::var_os(&var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{var} is not set: run the suite through scripts/test.sh, which installs PostgreSQL {major}")
    })
}

/// Hands a directory tree to the postgres user (servers run as that user).
pub fn chown_postgres(path: &Path) {
    run_ok(
        "chown",
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path),
    );
}

/// A command that runs as the postgres user.
pub fn as_postgres(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let (uid, gid) = postgres_user();
    let mut c = Command::new(program);
    c.uid(uid)
        .gid(gid)
        .env("HOME", "/tmp")
        .env_remove("PGKEEP_CONFIG");
    c
}

pub struct Pg {
    pub bin: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    pub sock: PathBuf,
    server: Option<ChildGuard>,
}

impl Pg {
    /// A fresh cluster from initdb in `dir/<name>` (not started).
    pub fn initdb(bin: &Path, dir: &Path, name: &str) -> Pg {
        Pg::initdb_with(bin, dir, name, &[])
    }

    /// Like `initdb`, with extra initdb arguments (e.g. `-k` for data checksums).
    pub fn initdb_with(bin: &Path, dir: &Path, name: &str, args: &[&str]) -> Pg {
        let data = dir.join(name);
        run_ok(
            "initdb",
            as_postgres(bin.join("initdb"))
                .args(["-A", "trust", "-U", "postgres", "--no-sync"])
                .args(args)
                .arg("-D")
                .arg(&data),
        );
        Pg::at(bin, data)
    }

    /// A cluster whose data directory already exists (e.g. restored from a backup).
    pub fn at(bin: &Path, data: PathBuf) -> Pg {
        let sock = data.parent().expect("parent").join(format!(
            "sock-{}",
            data.file_name().expect("name").to_string_lossy()
        ));
        Pg {
            bin: bin.to_path_buf(),
            data,
            port: free_port(),
            sock,
            server: None,
        }
    }

    /// Appends settings to postgresql.auto.conf-like postgresql.conf.
    pub fn configure(&self, lines: &[String]) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .expect("postgresql.conf");
        for l in lines {
            writeln!(f, "{l}").expect("write conf");
        }
    }

    /// Puts authentication rules in front of initdb's (pg_hba.conf takes the first match).
    pub fn prepend_hba(&self, lines: &[&str]) {
        let path = self.data.join("pg_hba.conf");
        let old = std::fs::read_to_string(&path).expect("pg_hba.conf");
        std::fs::write(&path, format!("{}\n{old}", lines.join("\n"))).expect("write pg_hba.conf");
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&mut self) {
        self.spawn();
        let server = self.server.as_mut().expect("server");
        let (sock, port) = (self.sock.clone(), self.port);
        wait_for(
            "postgres to accept connections",
            Duration::from_secs(120),
            || {
                if let Ok(Some(status)) = server.child.try_wait() {
                    // The log goes with the test's temporary directory: show it.
                    let log = std::fs::read_to_string(self.data.with_extension("log"))
                        .unwrap_or_default();
                    panic!("postgres exited early ({status}); its log:\n{log}");
                }
                let ok = Command::new("pg_isready")
                    .arg("-h")
                    .arg(&sock)
                    .args(["-p", &port.to_string(), "-q"])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                ok.then_some(())
            },
        );
    }

    /// Starts the server and waits up to `limit` for it to exit by itself, as a server whose
    /// recovery was stopped does; returns its log. Panics if it is still running by then
    /// (e.g. it ended recovery and promoted).
    pub fn start_expecting_exit(&mut self, limit: Duration) -> String {
        self.spawn();
        let mut server = self.server.take().expect("server");
        let start = std::time::Instant::now();
        while server.child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > limit {
                panic!(
                    "postgres still runs after {limit:?}: recovery was not stopped; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.log()
    }

    /// Starts the server and waits up to `limit` until it either exits by itself (its
    /// recovery was stopped: returns its log) or has ended recovery and accepts writes
    /// (returns `None`, the server left running). Panics if neither happens in time.
    pub fn start_until_settled(&mut self, limit: Duration) -> Option<String> {
        self.spawn();
        let start = std::time::Instant::now();
        loop {
            let server = self.server.as_mut().expect("server");
            if server.child.try_wait().ok().flatten().is_some() {
                self.server = None;
                return Some(self.log());
            }
            let promoted = self
                .client(Command::new("psql"))
                .args(["-XAtq", "-c", "SELECT pg_is_in_recovery()"])
                .output()
                .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "f")
                .unwrap_or(false);
            if promoted {
                return None;
            }
            assert!(
                start.elapsed() < limit,
                "postgres neither stopped nor finished recovery in {limit:?}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.sock).expect("socket dir");
        let (uid, gid) = postgres_user();
        std::os::unix::fs::chown(&self.sock, Some(uid), Some(gid)).expect("chown sock");
        let log = std::fs::File::create(self.data.with_extension("log")).expect("log");
        let mut cmd = as_postgres(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(&self.data)
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.sock.display()))
            .stdout(Stdio::null())
            .stderr(log);
        // SIGQUIT: PostgreSQL's immediate shutdown, if the test process dies.
        self.server = Some(ChildGuard::spawn("postgres", cmd, libc::SIGQUIT));
    }

    /// Fast shutdown, waiting for the server to exit.
    pub fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop_with(libc::SIGINT);
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
    }

    /// A client program (`psql`, `pgbench`, `pg_basebackup`) pointed at this server's socket
    /// as the postgres user.
    fn client(&self, mut cmd: Command) -> Command {
        cmd.arg("-h")
            .arg(&self.sock)
            .args(["-p", &self.port.to_string(), "-U", "postgres"]);
        cmd
    }

    /// Runs SQL through psql and returns its unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        let out = self
            .client(Command::new("psql"))
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `pgbench` against this server.
    pub fn pgbench(&self, args: &[&str]) {
        run_ok(
            "pgbench",
            self.client(Command::new("pgbench"))
                .args(args)
                .arg("postgres"),
        );
    }

    /// A streaming standby of this server in `dir` (pg_basebackup -R, fast checkpoint), started.
    pub fn standby(&self, dir: &Path) -> Pg {
        run_ok(
            "pg_basebackup",
            self.client(as_postgres(self.bin.join("pg_basebackup")))
                .args(["-R", "-c", "fast", "-X", "stream", "-D"])
                .arg(dir),
        );
        let mut standby = Pg::at(&self.bin, dir.to_path_buf());
        standby.start();
        standby
    }

    /// Waits until a server recovering to a target has promoted.
    pub fn wait_promoted(&self) {
        wait_for("recovery to finish", Duration::from_secs(120), || {
            (self.psql("SELECT pg_is_in_recovery()") == "f").then_some(())
        });
    }

    /// Switches to a new WAL segment and waits until the archiver has archived the old one:
    /// its `.ready` status is gone and it is `.done` (or already recycled). `last_archived_wal`
    /// cannot tell: after a promotion the archiver may archive older segments last.
    pub fn switch_and_wait_archived(&self) -> String {
        let seg = self.psql("SELECT pg_walfile_name(pg_switch_wal())");
        let status = self.data.join("pg_wal/archive_status");
        let start = std::time::Instant::now();
        loop {
            let ready = status.join(format!("{seg}.ready")).exists();
            let done = status.join(format!("{seg}.done")).exists();
            let present = self.data.join("pg_wal").join(&seg).exists();
            if !ready && (done || !present) {
                return seg;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{seg} not archived after 120s (archiver: {}); server log:\n{}",
                self.psql(
                    "SELECT last_archived_wal, failed_count, last_failed_wal FROM pg_stat_archiver"
                ),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop();
    }
}

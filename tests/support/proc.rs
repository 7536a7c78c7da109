//! Child processes that cannot outlive the test, free loopback ports, and polling with a
//! deadline (readiness is polled on a condition, never assumed after a sleep).

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Kills (and reaps) the child on drop.
pub struct ChildGuard {
    pub child: Child,
    pub name: String,
}

impl ChildGuard {
    /// Spawns `cmd` so that the kernel sends `death_signal` to it if this thread dies.
    pub fn spawn(name: &str, mut cmd: Command, death_signal: i32) -> ChildGuard {
        unsafe {
            cmd.pre_exec(move || {
                // Runs after setuid/setgid (std applies those first), so the setting sticks.
                if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start {name}: {e} (run scripts/test.sh, which installs it)")
        });
        ChildGuard {
            child,
            name: name.to_string(),
        }
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Sends `sig` and waits for the process to exit — for `STOP_LIMIT` at most: a process
    /// that does not exit on its signal is killed (Patroni 3.0.2 once stayed up ten minutes
    /// after SIGTERM, its PostgreSQL long shut down, and a teardown waited for it unbounded).
    pub fn stop_with(&mut self, sig: i32) {
        const STOP_LIMIT: Duration = Duration::from_secs(30);
        if let Ok(None) = self.child.try_wait() {
            self.signal(sig);
            let deadline = Instant::now() + STOP_LIMIT;
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!(
                "{} did not exit within {}s of signal {sig}: killed",
                self.name,
                STOP_LIMIT.as_secs()
            );
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A loopback port nothing listens on, never the same twice in this process: the kernel
/// hands a just-released port out again, so two servers asked for in a row could get one.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free loopback port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Polls `ready` until it returns `Some`, or panics after `limit` naming `what`.
pub fn wait_for<T>(what: &str, limit: Duration, mut ready: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = ready() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a command to completion; panics with its output if it fails.
pub fn run_ok(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The uid/gid of the `postgres` OS user (created by Debian's postgresql package).
pub fn postgres_user() -> (u32, u32) {
    let out = run_ok("id postgres", Command::new("id").args(["-u", "postgres"]));
    let uid = out.trim().parse().expect("uid");
    let out = run_ok("id postgres", Command::new("id").args(["-g", "postgres"]));
    (uid, out.trim().parse().expect("gid"))
}

/// A temporary directory the postgres user owns (servers run as that user).
pub fn postgres_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pgkeep-test-")
        .tempdir()
        .expect("tempdir");
    let (uid, gid) = postgres_user();
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
    dir
}

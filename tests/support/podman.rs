//! A Podman service serving the Docker Engine API on a private unix socket, for the container
//! sandbox of restore drills (no Docker engine on these machines). Started per test with runc
//! (crun fails on this kernel's hybrid cgroups) and `CONTAINERS_CONF` (scripts/env.sh; written
//! by scripts/install-deps.sh), killed when the guard drops.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::proc::{ChildGuard, wait_for};

/// The containers.conf Podman needs here (`default_ulimits = []`, cgroupfs).
pub fn containers_conf() -> PathBuf {
    std::env::var_os("CONTAINERS_CONF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/pgkeep-tools/containers.conf"))
}

pub struct Podman {
    pub socket: PathBuf,
    dir: tempfile::TempDir,
    _service: ChildGuard,
}

impl Podman {
    /// Starts `podman system service` on `<tempdir>/podman.sock` and waits (30 s at most)
    /// until `GET /_ping` answers `OK`.
    pub fn start() -> Podman {
        let dir = tempfile::Builder::new()
            .prefix("pgkeep-podman-")
            .tempdir()
            .expect("tempdir");
        let socket = dir.path().join("podman.sock");
        let log = dir.path().join("podman.log");
        let mut cmd = Command::new("podman");
        cmd.args([
            "--runtime",
            "/usr/sbin/runc",
            "system",
            "service",
            "--time=0",
        ])
        .arg(format!("unix://{}", socket.display()))
        .env("CONTAINERS_CONF", containers_conf())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("podman.log"));
        let mut service = ChildGuard::spawn("podman", cmd, libc::SIGKILL);
        let mut last = String::from("no socket yet");
        let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for("podman's /_ping", Duration::from_secs(30), || {
                if let Ok(Some(st)) = service.child.try_wait() {
                    panic!(
                        "podman system service exited early ({st}): {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                match ping(&socket) {
                    Ok(resp) if resp.starts_with("HTTP/1.1 200") && resp.ends_with("OK") => {
                        Some(())
                    }
                    Ok(resp) => {
                        last = format!("answer {resp:?}");
                        None
                    }
                    Err(e) => {
                        last = e.to_string();
                        None
                    }
                }
            })
        }));
        if let Err(panic) = answered {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "{why}; last seen: {last}; podman log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Podman {
            socket,
            dir,
            _service: service,
        }
    }

    /// The endpoint for a Docker Engine API client: `unix:///.../podman.sock`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The service's own directory (socket and log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The names of the containers (any state) carrying a drill's label.
    pub fn labelled_containers(&self) -> Vec<String> {
        let out = std::process::Command::new("podman")
            .env("CONTAINERS_CONF", containers_conf())
            .args([
                "--runtime",
                "/usr/sbin/runc",
                "ps",
                "-a",
                "--filter",
                "label=pgkeep.restore-test",
                "--format",
                "{{.Names}}",
            ])
            .output()
            .expect("podman ps");
        assert!(
            out.status.success(),
            "podman ps: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// `GET /_ping` over the socket: the raw response (status line ... body).
fn ping(socket: &Path) -> std::io::Result<String> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp.trim_end().to_string())
}

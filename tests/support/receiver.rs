//! pgkeepd with a `[service]` receiver, started for a test: its address, log, status, and
//! raw requests to it; and token files the postgres user can read.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::postgres::chown_postgres;
use super::proc::{ChildGuard, free_port, wait_for};

const LONG: Duration = Duration::from_secs(120);

pub struct Daemon {
    pub port: u16,
    pub status_port: u16,
    pub log: PathBuf,
    pub child: ChildGuard,
}

/// A token file readable by the postgres user (archive_command runs as postgres).
pub fn token(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(format!("token-{name}"));
    std::fs::write(&p, format!("{text}\n")).unwrap();
    chown_postgres(&p);
    p
}

impl Daemon {
    /// pgkeepd with `repository` (a `[repository]` section) and `service` (the rest of the
    /// `[service]` section, without `listen`), waiting for its receiver to answer.
    pub fn start(dir: &Path, repository: &str, service: &str) -> Daemon {
        Daemon::start_with(dir, repository, service, &[])
    }

    pub fn start_with(
        dir: &Path,
        repository: &str,
        service: &str,
        env: &[(String, String)],
    ) -> Daemon {
        let (port, status_port) = (free_port(), free_port());
        let config = dir.join("pgkeepd.toml");
        std::fs::write(
            &config,
            format!(
                "{repository}\n[scheduler]\nlisten = \"127.0.0.1:{status_port}\"\n[service]\nlisten = \"127.0.0.1:{port}\"\n{service}\n"
            ),
        )
        .unwrap();
        let log = dir.join("pgkeepd.log");
        let mut cmd = Command::new(super::pgkeep::bin().with_file_name("pgkeepd"));
        cmd.arg("--config")
            .arg(&config)
            .env_remove("PGKEEP_CONFIG")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            );
        let child = ChildGuard::spawn("pgkeepd", cmd, libc::SIGKILL);
        let d = Daemon {
            port,
            status_port,
            log,
            child,
        };
        wait_for("pgkeepd's receiver to answer", LONG, || {
            (d.request("GET", "/healthz", &[], b"").0 == 200).then_some(())
        });
        d
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One request over a fresh connection: status and body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client = reqwest::Client::new();
            let mut req = client
                .request(method.parse().unwrap(), format!("{}{path}", self.url()))
                .timeout(Duration::from_secs(30))
                .body(body.to_vec());
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            match req.send().await {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(_) => (0, String::new()),
            }
        })
    }

    pub fn status(&self) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let text = rt.block_on(async {
            reqwest::get(format!("http://127.0.0.1:{}/status", self.status_port))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
        serde_json::from_str(&text).unwrap()
    }
}

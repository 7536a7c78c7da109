//! A real single-node Garage (S3-compatible, written in Rust) on loopback, with one key and
//! one bucket, for the S3 half of the suite. Garage ignores `If-None-Match` on PUT.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::proc::{ChildGuard, free_port, run_ok, wait_for};

pub fn garage_bin() -> PathBuf {
    std::env::var_os("PGKEEP_TEST_GARAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/pgkeep-tools/bin/garage"))
}

pub struct Garage {
    pub endpoint: String,
    pub port: u16,
    pub bucket: String,
    pub region: String,
    pub key_id: String,
    pub secret: String,
    conf: PathBuf,
    _server: ChildGuard,
}

impl Garage {
    pub fn start(dir: &Path) -> Garage {
        let dir = dir.join("garage");
        std::fs::create_dir_all(&dir).expect("garage dir");
        let (rpc, s3) = (free_port(), free_port());
        let conf = dir.join("garage.toml");
        let secret: String = (0..32)
            .map(|i| format!("{:02x}", (i * 37 + 11) % 256))
            .collect();
        std::fs::write(
            &conf,
            format!(
                r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"
"#,
                d = dir.display()
            ),
        )
        .expect("garage.toml");
        let mut cmd = Command::new(garage_bin());
        cmd.arg("-c")
            .arg(&conf)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("garage.log")).expect("log"));
        let server = ChildGuard::spawn("garage", cmd, libc::SIGKILL);
        let g = |args: &[&str]| -> Option<String> {
            let out = Command::new(garage_bin())
                .arg("-c")
                .arg(&conf)
                .args(args)
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        };
        // `node id` reads the local key file; `status` needs the server's RPC to answer.
        let mut server = server;
        wait_for("garage to answer", Duration::from_secs(60), || {
            if let Ok(Some(st)) = server.child.try_wait() {
                panic!(
                    "garage exited early ({st}); see {}",
                    dir.join("garage.log").display()
                );
            }
            g(&["status"])
        });
        let node = g(&["node", "id", "-q"])
            .map(|s| s.trim().split('@').next().unwrap_or("").to_string())
            .expect("garage node id");
        let cli = |args: &[&str]| {
            run_ok(
                &format!("garage {args:?}"),
                Command::new(garage_bin()).arg("-c").arg(&conf).args(args),
            )
        };
        cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        cli(&["layout", "apply", "--version", "1"]);
        let key = cli(&["key", "create", "pgkeep-test"]);
        let field = |label: &str| {
            key.lines()
                .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| panic!("no '{label}' in garage key output: {key}"))
        };
        let (key_id, secret_key) = (field("Key ID:"), field("Secret key:"));
        wait_for("garage bucket creation", Duration::from_secs(60), || {
            g(&["bucket", "create", "pgkeep"])
        });
        cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            "pgkeep",
            "--key",
            "pgkeep-test",
        ]);
        Garage {
            endpoint: format!("http://127.0.0.1:{s3}"),
            port: s3,
            bucket: "pgkeep".into(),
            region: "garage".into(),
            key_id,
            secret: secret_key,
            conf,
            _server: server,
        }
    }

    /// The `[repository]` section for this Garage (endpoint overridable, e.g. a proxy).
    pub fn repository_toml(&self, endpoint: &str, prefix: &str) -> String {
        format!(
            "[repository]\nkind = \"s3\"\nbucket = \"{}\"\nprefix = \"{prefix}\"\nregion = \"{}\"\nendpoint = \"{endpoint}\"\nallow_http = true\n",
            self.bucket, self.region
        )
    }

    /// Environment with this Garage's credentials (the standard AWS variables).
    pub fn credentials(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret.clone()),
        ]
    }
}

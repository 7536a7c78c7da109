//! A real Patroni cluster for tests: one etcd and Patroni nodes running PostgreSQL 15 on
//! loopback (Debian's `patroni` and `etcd-server`), every node archiving through pgkeep and
//! able to rebuild replicas with `pgkeep create-replica`. Nodes stop with the guard; should the
//! test process die, etcd and Patroni get a parent-death signal (Patroni stops its PostgreSQL).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::pgkeep::Pgkeep;
use super::postgres::{as_postgres, chown_postgres, pg_bin};
use super::proc::{ChildGuard, free_port, wait_for};

pub struct Etcd {
    pub client_port: u16,
    _server: ChildGuard,
}

impl Etcd {
    pub fn start(dir: &Path) -> Etcd {
        let (client, peer) = (free_port(), free_port());
        let c = format!("http://127.0.0.1:{client}");
        let p = format!("http://127.0.0.1:{peer}");
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", "e1", "--data-dir"])
            .arg(dir.join("etcd"))
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args([
                "--listen-peer-urls",
                &p,
                "--initial-advertise-peer-urls",
                &p,
            ])
            .args(["--initial-cluster", &format!("e1={p}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("etcd.log")).expect("etcd log"));
        let server = ChildGuard::spawn("etcd", cmd, libc::SIGKILL);
        wait_for("etcd to answer", Duration::from_secs(60), || {
            std::net::TcpStream::connect(("127.0.0.1", client))
                .ok()
                .map(|_| ())
        });
        Etcd {
            client_port: client,
            _server: server,
        }
    }
}

/// What every node of a cluster shares.
pub struct ClusterSpec {
    pub scope: String,
    pub etcd_port: u16,
    /// pgkeep as the nodes call it (archive_command, restore_command, create-replica).
    pub pgkeep: Pgkeep,
    /// `bootstrap:` method block for a clone, replacing initdb (YAML, indented by 2).
    pub bootstrap_method: Option<String>,
}

pub struct Node {
    pub name: String,
    pub api_port: u16,
    pub pg_port: u16,
    pub data: PathBuf,
    pub sock: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    tags: Vec<(String, String)>,
    yaml: String,
    server: Option<ChildGuard>,
}

impl Node {
    pub fn new(dir: &Path, name: &str, spec: &ClusterSpec) -> Node {
        let (api_port, pg_port) = (free_port(), free_port());
        let data = dir.join(name);
        let sock = dir.join(format!("sock-{name}"));
        std::fs::create_dir_all(&sock).expect("socket dir");
        chown_postgres(&sock);
        let pk = &spec.pgkeep;
        let quote = |s: String| s.replace('\'', "''");
        let bootstrap = spec.bootstrap_method.clone().unwrap_or_default();
        let yaml = format!(
            r#"scope: {scope}
name: {name}
log:
  level: INFO
restapi:
  listen: 127.0.0.1:{api_port}
  connect_address: 127.0.0.1:{api_port}
etcd3:
  hosts: 127.0.0.1:{etcd}
bootstrap:
{bootstrap}  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 3
    maximum_lag_on_failover: 104857600
    postgresql:
      use_pg_rewind: false
      parameters:
        wal_level: replica
        hot_standby: 'on'
        max_wal_senders: 10
        max_replication_slots: 10
        archive_mode: 'on'
        archive_command: '{archive}'
        archive_timeout: 10
  initdb:
    - encoding: UTF8
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:{pg_port}
  connect_address: 127.0.0.1:{pg_port}
  data_dir: {data}
  bin_dir: {bin}
  pgpass: {dir}/pgpass-{name}
  authentication:
    superuser:
      username: postgres
      password: postgres
    replication:
      username: postgres
      password: postgres
  parameters:
    unix_socket_directories: '{sock}'
  create_replica_methods:
    - pgkeep
    - basebackup
  pgkeep:
    command: '{pgkeep_bin} --config {pgkeep_config} create-replica'
    keep_data: false
  basebackup:
    checkpoint: fast
  recovery_conf:
    restore_command: '{restore}'
"#,
            scope = spec.scope,
            etcd = spec.etcd_port,
            archive = quote(pk.archive_command()),
            restore = quote(pk.restore_command()),
            data = data.display(),
            bin = pg_bin().display(),
            dir = dir.display(),
            sock = sock.display(),
            pgkeep_bin = super::pgkeep::bin().display(),
            pgkeep_config = pk.config.display(),
        );
        let config = dir.join(format!("{name}.yml"));
        let log = dir.join(format!("{name}.patroni.log"));
        let node = Node {
            name: name.to_string(),
            api_port,
            pg_port,
            data,
            sock,
            config,
            log,
            tags: Vec::new(),
            yaml,
            server: None,
        };
        node.write_config();
        node
    }

    fn write_config(&self) {
        let mut text = self.yaml.clone();
        if !self.tags.is_empty() {
            text.push_str("tags:\n");
            for (k, v) in &self.tags {
                text.push_str(&format!("  {k}: {v}\n"));
            }
        }
        std::fs::write(&self.config, text).expect("patroni config");
    }

    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("patroni log");
        let mut cmd = as_postgres("patroni");
        cmd.arg(&self.config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        // SIGTERM: Patroni stops its PostgreSQL before exiting.
        self.server = Some(ChildGuard::spawn("patroni", cmd, libc::SIGTERM));
    }

    /// Sets (or, with `None`, removes) a tag and makes Patroni reload its configuration.
    pub fn set_tag(&mut self, key: &str, value: Option<&str>) {
        self.tags.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.tags.push((key.to_string(), v.to_string()));
        }
        self.write_config();
        if let Some(s) = &self.server {
            s.signal(libc::SIGHUP);
        }
    }

    /// kill -9 of Patroni and of its PostgreSQL: the member vanishes as in a host crash.
    pub fn crash(&mut self) {
        let postmaster = self.postmaster_pid();
        if let Some(mut s) = self.server.take() {
            s.stop_with(libc::SIGKILL);
        }
        if let Some(pid) = postmaster {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            wait_for(
                "the crashed postmaster to go",
                Duration::from_secs(30),
                || {
                    let gone = unsafe { libc::kill(pid, 0) } != 0;
                    gone.then_some(())
                },
            );
        }
    }

    fn postmaster_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Graceful stop: Patroni shuts PostgreSQL down and exits; a PostgreSQL left running
    /// (Patroni died first) is stopped too.
    pub fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop_with(libc::SIGTERM);
        }
        if let Some(pid) = self.postmaster_pid() {
            unsafe {
                libc::kill(pid, libc::SIGQUIT);
            }
        }
    }

    pub fn patroni_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// psql against this node's PostgreSQL.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .arg("-h")
            .arg(&self.sock)
            .args(["-p", &self.pg_port.to_string(), "-U", "postgres", "-XAtq"])
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql on {} {sql}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn pgbench(&self, args: &[&str]) {
        super::proc::run_ok(
            "pgbench",
            Command::new("pgbench")
                .arg("-h")
                .arg(&self.sock)
                .args(["-p", &self.pg_port.to_string(), "-U", "postgres"])
                .args(args)
                .arg("postgres"),
        );
    }

    /// psql that may fail (the node may be down or starting).
    pub fn try_psql(&self, sql: &str) -> Option<String> {
        let out = Command::new("psql")
            .arg("-h")
            .arg(&self.sock)
            .args(["-p", &self.pg_port.to_string(), "-U", "postgres", "-XAtq"])
            .args(["-c", sql])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            // The temporary directory goes with the test: show what Patroni said first.
            let log = self.patroni_log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- last lines of {}'s Patroni log ---", self.name);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// `GET /cluster` through pgkeep's own client, from whichever of `apis` answers.
pub fn cluster(apis: &[String]) -> Option<pgkeep::patroni::Cluster> {
    let client = pgkeep::patroni::Client::new(pgkeep::patroni::client::ClientOptions {
        endpoints: apis.to_vec(),
        username: None,
        password: None,
        ca_file: None,
        timeout: Duration::from_secs(2),
    })
    .ok()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?
        .block_on(client.cluster())
        .ok()
}

/// Waits until the cluster has a leader and `replicas` replicas streaming from it (lag known),
/// all on the leader's timeline; returns the snapshot.
pub fn wait_healthy(apis: &[String], replicas: usize, limit: Duration) -> pgkeep::patroni::Cluster {
    use pgkeep::patroni::Role;
    wait_for("the patroni cluster to be healthy", limit, || {
        let c = cluster(apis)?;
        let leader = c.leader().filter(|l| l.state == "running")?;
        let streaming = c
            .members
            .iter()
            .filter(|m| {
                m.role == Role::Replica
                    && matches!(m.state.as_str(), "streaming" | "running")
                    && m.lag.is_some()
                    && (m.timeline.is_none() || m.timeline == leader.timeline)
            })
            .count();
        (streaming >= replicas).then_some(c)
    })
}

/// The name of the current leader, once one holds the leader key and runs.
pub fn leader_name(apis: &[String]) -> Option<String> {
    let c = cluster(apis)?;
    c.leader()
        .filter(|l| l.state == "running")
        .map(|l| l.name.clone())
}

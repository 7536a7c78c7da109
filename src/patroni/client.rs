//! The Patroni REST client: `GET /cluster` from each configured endpoint in turn (the first
//! that answers wins), and a member's own health check (`/replica?lag=N`, `/primary`) to
//! confirm a choice made from the snapshot. Basic auth, an extra CA file, one timeout per
//! request.

use std::path::PathBuf;
use std::time::Duration;

use super::cluster::Cluster;

/// How to reach Patroni.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// REST API base URLs (`http://host:8008`), tried in order.
    pub endpoints: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM CA certificates trusted for `https` endpoints.
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    opts: ClientOptions,
}

impl Client {
    pub fn new(opts: ClientOptions) -> Result<Client, String> {
        let mut b = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout)
            .no_proxy();
        if let Some(path) = &opts.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read patroni.ca_file {}: {e}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("patroni.ca_file {}: {e}", path.display()))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        let http = b
            .build()
            .map_err(|e| format!("cannot build the patroni client: {e}"))?;
        Ok(Client { http, opts })
    }

    /// The cluster as the first endpoint that answers sees it; every failure is named when
    /// none does.
    pub async fn cluster(&self) -> Result<Cluster, String> {
        let mut failures = Vec::new();
        for base in &self.opts.endpoints {
            let url = format!("{}/cluster", base.trim_end_matches('/'));
            match self.get(&url).await {
                Ok((200, body)) => match serde_json::from_slice::<Cluster>(&body) {
                    Ok(c) => return Ok(c),
                    Err(e) => failures.push(format!("{url}: not a patroni cluster answer: {e}")),
                },
                Ok((status, _)) => failures.push(format!("{url}: http {status}")),
                Err(e) => failures.push(format!("{url}: {e}")),
            }
        }
        if failures.is_empty() {
            return Err("no patroni endpoint is configured".into());
        }
        Err(failures.join("; "))
    }

    /// Whether the member's own API confirms it is a replica within `max_lag` bytes
    /// (`leader`: that it is the primary).
    pub async fn confirms(&self, api: &str, leader: bool, max_lag: u64) -> Result<bool, String> {
        let url = if leader {
            format!("{api}/primary")
        } else {
            format!("{api}/replica?lag={max_lag}")
        };
        self.get(&url).await.map(|(status, _)| status == 200)
    }

    async fn get(&self, url: &str) -> Result<(u16, bytes::Bytes), String> {
        let mut req = self.http.get(url);
        if let Some(user) = &self.opts.username {
            req = req.basic_auth(user, self.opts.password.as_deref());
        }
        let resp = req.send().await.map_err(describe)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(describe)?;
        Ok((status, body))
    }
}

/// reqwest's errors hide their cause behind "error sending request": name it.
fn describe(e: reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "no answer in time".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

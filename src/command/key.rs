//! `pgkeep key list|add|remove`: the passphrases of an encrypted repository. Each is a key slot
//! in `repo.json` wrapping the one data key, so adding or removing a passphrase rewrites
//! `repo.json` only — never an object. The configured passphrase must open the repository
//! first; the slot it opened cannot be removed with it (that would lock the operator out).

use std::path::PathBuf;

use serde::Serialize;

use crate::config::{CipherChoice, Config, Secret};
use crate::error::{Error, ErrorKind, Result};
use crate::repo::Repo;
use crate::repo::create::kdf_for;
use crate::repo::keyring::{Credential, KeySlot};

#[derive(Debug, Clone)]
pub enum KeyArgs {
    List,
    /// Wraps the data key under the passphrase (or, `key_file`, the key file) in `file`.
    Add {
        file: PathBuf,
        key_file: bool,
    },
    Remove {
        id: String,
    },
}

/// One key slot as shown.
#[derive(Debug, Clone, Serialize)]
pub struct KeyLine {
    pub id: String,
    pub created_at: String,
    pub kdf: String,
    /// The configured passphrase opens this one.
    pub current: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyReport {
    pub location: String,
    pub keys: Vec<KeyLine>,
    /// What changed: `added k2`, `removed k1`.
    pub changed: Option<String>,
}

impl std::fmt::Display for KeyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(c) = &self.changed {
            writeln!(f, "{c} in {}", self.location)?;
        }
        for k in &self.keys {
            let mark = if k.current { " (configured)" } else { "" };
            writeln!(f, "{}  created {}  {}{mark}", k.id, k.created_at, k.kdf)?;
        }
        Ok(())
    }
}

pub async fn run(cfg: &Config, args: KeyArgs) -> Result<KeyReport> {
    // Open: the configured passphrase must open the repository (an encrypted one only).
    let mut repo = Repo::open(&cfg.repository).await?;
    if repo.info().cipher == CipherChoice::None {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("repository {} is not encrypted: it has no keys", repo.location()),
        )
        .hint("a repository's cipher is fixed at init; initialise a new one with repository.cipher = \"aes-256-gcm\""));
    }

    // Change the slots, then rewrite repo.json (main file, then its copy).
    let changed = match args {
        KeyArgs::List => None,
        KeyArgs::Add { file, key_file } => Some(add(&mut repo, &file, key_file).await?),
        KeyArgs::Remove { id } => Some(remove(&mut repo, &id).await?),
    };
    Ok(report(&repo, changed))
}

async fn add(repo: &mut Repo, file: &std::path::Path, key_file: bool) -> Result<String> {
    let secret = Secret::from_file(file)?;
    let credential = if key_file {
        Credential::KeyFile(secret)
    } else {
        Credential::Passphrase(secret)
    };
    let data = *repo.data_key().ok_or_else(|| {
        Error::new(
            ErrorKind::Internal,
            "an encrypted repository without its key",
        )
    })?;
    let mut info = repo.info().clone();
    let id = next_id(&info.keys);
    let slot = {
        let id = id.clone();
        tokio::task::spawn_blocking(move || {
            KeySlot::new(&data, credential.secret(), &id, kdf_for(&credential))
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))??
    };
    info.keys.push(slot);
    repo.rewrite_info(info).await?;
    Ok(format!("added key {id}"))
}

async fn remove(repo: &mut Repo, id: &str) -> Result<String> {
    let mut info = repo.info().clone();
    if !info.keys.iter().any(|k| k.id == id) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("repository {} has no key {id}", repo.location()),
        )
        .hint("'pgkeep key list' shows the keys"));
    }
    if repo.key_slot() == Some(id) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("key {id} is the one the configured passphrase opens"),
        )
        .hint("configure another key's passphrase (repository.cipher_pass_file), then remove this one"));
    }
    info.keys.retain(|k| k.id != id);
    repo.rewrite_info(info).await?;
    Ok(format!("removed key {id}"))
}

/// `k<n>` one past the highest number in use: ids are never reused.
fn next_id(slots: &[KeySlot]) -> String {
    let high = slots
        .iter()
        .filter_map(|k| k.id.strip_prefix('k')?.parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    format!("k{}", high + 1)
}

fn report(repo: &Repo, changed: Option<String>) -> KeyReport {
    KeyReport {
        location: repo.location().to_string(),
        keys: repo
            .info()
            .keys
            .iter()
            .map(|k| KeyLine {
                id: k.id.clone(),
                created_at: k.created_at.clone(),
                kdf: match k.kdf.as_str() {
                    "argon2id" => format!(
                        "argon2id m={} KiB t={} p={}",
                        k.memory_kib, k.iterations, k.parallelism
                    ),
                    other => other.to_string(),
                },
                current: repo.key_slot() == Some(k.id.as_str()),
            })
            .collect(),
        changed,
    }
}

//! `[repository] cipher` and where its key comes from: a passphrase (`cipher_pass_file`, or
//! the `PGKEEP_REPOSITORY_CIPHER_PASS` variable), or a key file of random bytes
//! (`cipher_key_file`, no stretching needed, so no Argon2id cost per process). The passphrase is never a key of the config text
//! (a file that is shown, copied and versioned), never carried into `restore_command`, and
//! never printed: `Secret` has no `Display` and a redacted `Debug`.

use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};

/// The environment variable that may carry the passphrase.
pub const PASS_ENV: &str = "PGKEEP_REPOSITORY_CIPHER_PASS";

/// What the repository's objects are encrypted with; fixed when the repository is initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherChoice {
    None,
    Aes256Gcm,
}

impl CipherChoice {
    pub fn parse(s: &str) -> Result<CipherChoice> {
        match s {
            "none" => Ok(CipherChoice::None),
            "aes-256-gcm" => Ok(CipherChoice::Aes256Gcm),
            other => Err(Error::new(
                ErrorKind::Config,
                format!("invalid repository.cipher '{other}'"),
            )
            .hint("repository.cipher is \"none\" or \"aes-256-gcm\"")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CipherChoice::None => "none",
            CipherChoice::Aes256Gcm => "aes-256-gcm",
        }
    }
}

/// A passphrase in memory: zeroed when dropped, never printed.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(Zeroizing::new(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Reads a passphrase file: its content up to one trailing newline, not empty.
    pub fn from_file(path: &std::path::Path) -> Result<Secret> {
        let mut bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
            Error::new(
                ErrorKind::Key,
                format!("cannot read the passphrase file {}: {e}", path.display()),
            )
            .hint("repository.cipher_pass_file must name a file this user can read")
        })?);
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        if bytes.is_empty() {
            return Err(Error::new(
                ErrorKind::Key,
                format!("the passphrase file {} is empty", path.display()),
            )
            .hint("write the passphrase into it (e.g. openssl rand -base64 48)"));
        }
        Ok(Secret(Zeroizing::new(bytes.to_vec())))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What opens the repository's key.
#[derive(Debug, Clone)]
pub enum Credential {
    Passphrase(Secret),
    KeyFile(Secret),
}

impl Credential {
    pub fn secret(&self) -> &Secret {
        match self {
            Credential::Passphrase(s) | Credential::KeyFile(s) => s,
        }
    }

    /// For messages: what was wrong.
    pub fn what(&self) -> &'static str {
        match self {
            Credential::Passphrase(_) => "passphrase",
            Credential::KeyFile(_) => "key file",
        }
    }
}

/// The cipher settings of `[repository]`.
#[derive(Debug, Clone)]
pub struct CipherConfig {
    pub cipher: CipherChoice,
    pub pass_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// From `PGKEEP_REPOSITORY_CIPHER_PASS`, when set and not empty.
    pub pass_env: Option<Secret>,
}

impl Default for CipherConfig {
    fn default() -> Self {
        CipherConfig {
            cipher: CipherChoice::None,
            pass_file: None,
            key_file: None,
            pass_env: None,
        }
    }
}

impl CipherConfig {
    pub fn resolve(
        cipher: Option<String>,
        pass_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
        pass_env: Option<Secret>,
    ) -> Result<CipherConfig> {
        let cipher = match cipher.as_deref() {
            None => CipherChoice::None,
            Some(s) => CipherChoice::parse(s)?,
        };
        for (key, p) in [
            ("cipher_pass_file", &pass_file),
            ("cipher_key_file", &key_file),
        ] {
            if let Some(p) = p
                && !p.is_absolute()
            {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("repository.{key} '{}' is not absolute", p.display()),
                )
                .hint(
                    "PostgreSQL runs restore_command in its data directory: use an absolute path",
                ));
            }
        }
        if pass_file.is_some() && key_file.is_some() {
            return Err(Error::new(
                ErrorKind::Config,
                "repository.cipher_pass_file and cipher_key_file are both set",
            )
            .hint("set one: a passphrase file or a key file"));
        }
        Ok(CipherConfig {
            cipher,
            pass_file,
            key_file,
            pass_env,
        })
    }

    /// What opens the key: the environment variable wins over the files.
    pub fn credential(&self) -> Result<Credential> {
        if let Some(s) = &self.pass_env {
            return Ok(Credential::Passphrase(s.clone()));
        }
        match (&self.pass_file, &self.key_file) {
            (Some(p), _) => Secret::from_file(p).map(Credential::Passphrase),
            (None, Some(k)) => Secret::from_file(k).map(Credential::KeyFile),
            (None, None) => Err(Error::new(
                ErrorKind::Key,
                "the repository is encrypted and no passphrase or key file is configured",
            )
            .hint(format!(
                "set repository.cipher_pass_file or cipher_key_file, or {PASS_ENV} in the environment"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let s = Secret::new(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "Secret(..)");
        let c = CipherConfig {
            pass_env: Some(s),
            ..CipherConfig::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn pass_files_lose_one_trailing_newline_and_may_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pass");
        std::fs::write(&p, "secret words\n").unwrap();
        assert_eq!(Secret::from_file(&p).unwrap().expose(), b"secret words");
        std::fs::write(&p, "\n").unwrap();
        assert_eq!(Secret::from_file(&p).unwrap_err().kind(), ErrorKind::Key);
        let missing = Secret::from_file(&dir.path().join("nope")).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::Key);
    }

    #[test]
    fn cipher_names_and_relative_files_are_checked() {
        assert!(CipherConfig::resolve(Some("aes-256-cbc".into()), None, None, None).is_err());
        assert!(CipherConfig::resolve(None, Some("pass".into()), None, None).is_err());
        let both = CipherConfig::resolve(None, Some("/a".into()), Some("/b".into()), None);
        assert!(both.is_err());
        let c = CipherConfig::resolve(Some("aes-256-gcm".into()), None, None, None).unwrap();
        assert_eq!(c.cipher, CipherChoice::Aes256Gcm);
        assert_eq!(c.credential().unwrap_err().kind(), ErrorKind::Key);
    }
}

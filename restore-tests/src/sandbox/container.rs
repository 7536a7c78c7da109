//! The container sandbox (Docker Engine API through bollard). Being built; refuses for now.

use pgkeep::config::RestoreTestConfig;
use pgkeep::error::{Error, ErrorKind, Result};

#[derive(Debug)]
pub struct Container;

impl Container {
    pub async fn create(
        _cfg: &RestoreTestConfig,
        _run_id: &str,
        _major: u32,
    ) -> Result<Box<dyn super::Sandbox>> {
        Err(Error::new(
            ErrorKind::Config,
            "the container sandbox is not built yet",
        ))
    }
}

pub async fn sweep(_cfg: &RestoreTestConfig) -> Result<Vec<String>> {
    Ok(Vec::new())
}

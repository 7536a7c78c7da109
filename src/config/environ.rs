//! The process environment as text, for both binaries: what `Raw::load` reads its
//! `PGKEEP_*` overrides from.

use std::collections::BTreeMap;

use crate::error::{Error, ErrorKind, Result};

/// The environment as text. `std::env::vars` panics on a variable that is not UTF-8 (any
/// variable, ours or not); those pgkeep reads (`PGKEEP_*`, `PGPASSFILE`) are refused as a
/// config error, any other is not ours to judge and is left out.
pub fn environment() -> Result<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for (key, value) in std::env::vars_os() {
        match (key.into_string(), value.into_string()) {
            (Ok(k), Ok(v)) => {
                vars.insert(k, v);
            }
            (Ok(k), Err(_)) if k.starts_with("PGKEEP_") || k == "PGPASSFILE" => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("environment variable {k} is not valid utf-8"),
                )
                .hint("pgkeep settings are text: fix or unset the variable"));
            }
            (Err(k), _) if k.as_encoded_bytes().starts_with(b"PGKEEP_") => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "environment variable {} has a name that is not valid utf-8",
                        k.to_string_lossy()
                    ),
                )
                .hint("unset the variable"));
            }
            _ => {}
        }
    }
    Ok(vars)
}

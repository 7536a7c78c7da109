//! The recovery settings a restore appends to `postgresql.auto.conf`: a `restore_command` that
//! runs this pgkeep with the configuration the restore itself used, and the recovery target.
//! Pure text: every value is checked (no control characters) and quoted twice — for `/bin/sh`,
//! which PostgreSQL runs `restore_command` through (with `%` doubled, its placeholder sign),
//! and for PostgreSQL's configuration parser (quotes doubled, backslashes escaped). Nothing
//! here reads the environment or writes a file.

use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

/// The configuration sections `archive-get` reads: their `PGKEEP_*` overrides are carried
/// into `restore_command`, so replay reads the repository the restore read.
const REPLAY_SECTIONS: [&str; 3] = ["REPOSITORY", "ARCHIVE", "LOG"];

/// Key words that mark a secret: never written into `postgresql.auto.conf`.
const SECRET_WORDS: [&str; 5] = ["PASSWORD", "SECRET", "TOKEN", "KEY", "CREDENTIAL"];

/// What replay needs to call pgkeep the way the restore ran.
pub struct Replay<'a> {
    /// The pgkeep program to run.
    pub program: &'a Path,
    /// The configuration file, absolute.
    pub config: Option<&'a Path>,
    /// The `PGKEEP_<SECTION>_<KEY>` variables overlaid on the file.
    pub env: &'a [(String, String)],
}

/// `restore_command`: `PGKEEP_X='v' 'program' --config 'file' archive-get %f %p`, for sh.
/// Overrides of the sections replay reads are carried; a secret among them is refused (it
/// would be readable in the data directory and in every backup of it).
pub fn restore_command(r: &Replay<'_>) -> Result<String> {
    let mut cmd = String::new();
    for (name, value) in r.env {
        let Some(section) = REPLAY_SECTIONS.iter().find(|s| {
            name.strip_prefix("PGKEEP_")
                .is_some_and(|k| k.starts_with(*s))
        }) else {
            continue;
        };
        if SECRET_WORDS.iter().any(|w| name.contains(w)) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{name} is set: replay would need it in postgresql.auto.conf"),
            )
            .hint(format!(
                "put the [{}] setting in the config file and unset {name}",
                section.to_ascii_lowercase()
            )));
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        cmd.push_str(&format!("{name}={} ", sh_quote(checked(name, value)?)));
    }
    cmd.push_str(&sh_quote(&checked_path("pgkeep program", r.program)?));
    if let Some(c) = r.config {
        cmd.push_str(" --config ");
        cmd.push_str(&sh_quote(&checked_path("config path", c)?));
    }
    cmd.push_str(" archive-get %f %p");
    Ok(cmd)
}

/// One `key = 'value'` line of postgresql.auto.conf, escaped as PostgreSQL's parser reads it.
pub fn conf_line(key: &str, value: &str) -> Result<String> {
    let v = checked(key, value)?;
    Ok(format!(
        "{key} = '{}'\n",
        v.replace('\\', "\\\\").replace('\'', "''")
    ))
}

/// Refuses control characters: a newline would end the setting and start another.
fn checked<'v>(what: &str, value: &'v str) -> Result<&'v str> {
    if value.chars().any(char::is_control) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{what} '{}' holds a control character",
                value.escape_debug()
            ),
        )
        .hint(
            "recovery settings are one line each: remove newlines and other control characters",
        ));
    }
    Ok(value)
}

fn checked_path(what: &str, p: &Path) -> Result<String> {
    let s = p.to_str().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("{what} {} is not valid utf-8", p.display()),
        )
        .hint("use a path of utf-8 characters")
    })?;
    checked(what, s).map(str::to_string)
}

/// Single-quoted for sh (`'` as `'\''`), with `%` doubled: PostgreSQL expands `%f`, `%p`,
/// `%r` in restore_command and reads `%%` as one `%`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''").replace('%', "%%"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn restore_command_quotes_paths_and_carries_replay_overrides() {
        let vars = env(&[
            ("PGKEEP_REPOSITORY_PATH", "/srv/my repo"),
            ("PGKEEP_BACKUP_CONCURRENCY", "8"),
            (
                "PGKEEP_PATRONI_PASSWORD",
                "not carried: replay does not read it",
            ),
        ]);
        let r = Replay {
            program: Path::new("/opt/pg keep/pgkeep"),
            config: Some(Path::new("/etc/it's 100%/pgkeep.toml")),
            env: &vars,
        };
        assert_eq!(
            restore_command(&r).unwrap(),
            "PGKEEP_REPOSITORY_PATH='/srv/my repo' '/opt/pg keep/pgkeep' \
             --config '/etc/it'\\''s 100%%/pgkeep.toml' archive-get %f %p"
        );
    }

    #[test]
    fn secrets_and_control_characters_are_refused() {
        let vars = env(&[("PGKEEP_REPOSITORY_SECRET_KEY", "x")]);
        let r = Replay {
            program: Path::new("/usr/bin/pgkeep"),
            config: None,
            env: &vars,
        };
        let e = restore_command(&r).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let vars = env(&[("PGKEEP_REPOSITORY_PATH", "/a\nrestore_command='x'")]);
        let r = Replay { env: &vars, ..r };
        assert!(restore_command(&r).is_err());
        assert!(conf_line("recovery_target_name", "p1\nx = 'y'").is_err());
    }

    #[test]
    fn conf_values_are_escaped_for_postgresql() {
        assert_eq!(
            conf_line("recovery_target_name", r"it's a\b").unwrap(),
            "recovery_target_name = 'it''s a\\\\b'\n"
        );
    }
}

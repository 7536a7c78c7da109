//! libpq's password file (`.pgpass`, or the file `$PGPASSFILE` names — how Patroni hands a
//! replica method its password): `host:port:database:user:password` lines, `*` matching
//! anything, `\:` and `\\` escaped. Pure: the caller reads the file.

/// Removes libpq's `passfile=PATH` parameter from a connection string (keyword or URL form),
/// which tokio-postgres's parser does not know, and returns the path it named.
pub fn take_param(conninfo: &str) -> (String, Option<std::path::PathBuf>) {
    if !conninfo.contains("passfile") {
        // Untouched: the keyword form below re-joins words, which would change quoted values.
        return (conninfo.to_string(), None);
    }
    let mut path = None;
    if conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://") {
        let Some((base, query)) = conninfo.split_once('?') else {
            return (conninfo.to_string(), None);
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.strip_prefix("passfile=") {
                Some(v) => path = Some(v.into()),
                None => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (rest, path);
    }
    let mut kept = Vec::new();
    for token in conninfo.split_whitespace() {
        match token.strip_prefix("passfile=") {
            Some(v) => path = Some(v.trim_matches('\'').into()),
            None => kept.push(token),
        }
    }
    (kept.join(" "), path)
}

/// The password of the first line matching the connection, as libpq picks it. A socket
/// connection matches `localhost`.
pub fn lookup(text: &str, host: &str, port: u16, database: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    let wanted = [host, port.as_str(), database, user];
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .find_map(|line| {
            let fields = split(line);
            let [h, p, d, u, password] = <[String; 5]>::try_from(fields).ok()?;
            let matches = [h, p, d, u]
                .iter()
                .zip(wanted)
                .all(|(field, want)| field == "*" || field == want);
            matches.then_some(password)
        })
}

/// Splits on unescaped colons; the last field keeps any further colons' text as libpq does.
fn split(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(f)) = (chars.next(), fields.last_mut()) {
                    f.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passfile_parameter_is_taken_out_of_both_forms() {
        assert_eq!(
            take_param("host=pg1 passfile='/run/secrets/pgpass' user=replicator"),
            (
                "host=pg1 user=replicator".to_string(),
                Some("/run/secrets/pgpass".into())
            )
        );
        assert_eq!(
            take_param("postgresql://rep@pg1:5432/db?passfile=/p&sslmode=require"),
            (
                "postgresql://rep@pg1:5432/db?sslmode=require".to_string(),
                Some("/p".into())
            )
        );
        assert_eq!(take_param("host=pg1").1, None);
    }

    #[test]
    fn first_matching_line_wins_with_wildcards_and_escapes() {
        let text = "# comment\n\
                    10.0.0.1:5432:*:rep:other\n\
                    127.0.0.1:5441:*:replicator:s3cr\\:et\n\
                    *:*:*:replicator:fallback\n\
                    localhost:*:*:postgres:sock\n";
        assert_eq!(
            lookup(text, "127.0.0.1", 5441, "replication", "replicator").as_deref(),
            Some("s3cr:et")
        );
        assert_eq!(
            lookup(text, "127.0.0.1", 5442, "replication", "replicator").as_deref(),
            Some("fallback")
        );
        assert_eq!(
            lookup(text, "localhost", 5432, "postgres", "postgres").as_deref(),
            Some("sock")
        );
        assert_eq!(lookup(text, "10.0.0.2", 5432, "x", "rep"), None);
        assert_eq!(lookup("short:line", "h", 1, "d", "u"), None);
    }
}

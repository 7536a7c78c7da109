//! libpq's password file (`.pgpass`, or the file `$PGPASSFILE` names — how Patroni hands a
//! replica method its password): `host:port:database:user:password` lines, `*` matching
//! anything, `\:` and `\\` escaped. Pure: the caller reads the file.

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

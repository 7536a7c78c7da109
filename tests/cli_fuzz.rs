//! Never silently wrong, under fuzzing: hundreds of malformed configuration files, environment
//! overrides and command lines, drawn from a printed seed, run through the real `pgkeep`
//! binary. Every run ends by itself within a deadline, without a panic or a signal, with a
//! documented exit code; an error of pgkeep's own is one `pgkeep: error[...]` line and a
//! `hint:`; a malformed or out-of-range configuration is a config error (exit 3, or 203 from
//! archive-get, which must stop recovery rather than end it); and the repository is
//! byte-for-byte as it was. Replay a failure with `PGKEEP_TEST_SEED=<seed>`.

#![allow(clippy::unwrap_used)]

mod support;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::pgkeep::{FakeCluster, Pgkeep, Run, bin, snapshot};
use support::proc::free_port;
use support::seeded::{self, Rng};

const SYSID: u64 = 7_301_234_567_890_123_456;
const CONFIG_CASES: usize = 300;
const CLI_CASES: usize = 200;
/// One run's bound: every case fails before any network wait longer than a refused connect.
const DEADLINE: Duration = Duration::from_secs(10);

/// What a case must end in, besides the rules every run obeys.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// A config error: exit 3 (203 from archive-get).
    Config,
    /// Any documented outcome.
    Any,
}

struct Case {
    what: String,
    args: Vec<OsString>,
    /// The config file's bytes (None: the valid base config).
    config: Option<Vec<u8>>,
    env: Vec<(OsString, OsString)>,
    expect: Expect,
}

impl Case {
    fn describe(&self, seed: u64) -> String {
        let config = self.config.as_ref().map(|c| {
            let shown = String::from_utf8_lossy(&c[..c.len().min(400)]).into_owned();
            format!("{shown:?}{}", if c.len() > 400 { "..." } else { "" })
        });
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| {
                let s = a.to_string_lossy();
                if s.len() > 120 {
                    format!("{}...({} bytes)", &s[..boundary(&s, 120)], s.len())
                } else {
                    s.into_owned()
                }
            })
            .collect();
        format!(
            "case '{}' (replay: PGKEEP_TEST_SEED={seed}): args {args:?}, env {:?}, config {}",
            self.what,
            self.env,
            config.as_deref().unwrap_or("<base>")
        )
    }
}

/// The test's world: an initialised local repository, a valid full configuration, paths.
struct World {
    dir: PathBuf,
    repo: PathBuf,
    data: PathBuf,
    base: String,
    closed_port: u16,
}

/// A key of the base configuration and what it accepts.
#[derive(Clone, Copy)]
enum Ty {
    Int(i64, i64),
    /// A duration, with its least value in milliseconds.
    Dur(u64),
    Str,
    Path,
    Bool,
    Kind,
    Cluster,
    Endpoints,
    Listen,
}

/// Each section with its keys: name, the base value (TOML) and type.
type Sections = Vec<(&'static str, Vec<(&'static str, String, Ty)>)>;

fn keys(w: &World) -> Sections {
    let s = |v: &str| format!("{v:?}");
    let port = w.closed_port;
    vec![
        (
            "repository",
            vec![
                ("kind", s("local"), Ty::Kind),
                ("path", s(w.repo.to_str().unwrap()), Ty::Path),
                ("bucket", s("b"), Ty::Str),
                ("prefix", s("p"), Ty::Str),
                ("region", s("us-east-1"), Ty::Str),
                ("endpoint", s(&format!("http://127.0.0.1:{port}")), Ty::Str),
                ("allow_http", "false".into(), Ty::Bool),
                ("virtual_hosted_style", "false".into(), Ty::Bool),
                ("ca_file", s("/nonexistent/ca.pem"), Ty::Path),
                ("cluster", s("main"), Ty::Cluster),
                ("max_retries", "10".into(), Ty::Int(0, 100)),
                ("request_timeout", s("30s"), Ty::Dur(100)),
            ],
        ),
        (
            "postgres",
            vec![
                ("data_dir", s(w.data.to_str().unwrap()), Ty::Path),
                (
                    "conninfo",
                    s(&format!("host=127.0.0.1 port={port} user=postgres")),
                    Ty::Str,
                ),
            ],
        ),
        (
            "archive",
            vec![
                ("compress_level", "1".into(), Ty::Int(0, 19)),
                ("compress_threads", "0".into(), Ty::Int(0, 64)),
                ("push_lookahead", "8".into(), Ty::Int(0, 64)),
                ("get_prefetch", "4".into(), Ty::Int(0, 64)),
                (
                    "spool_path",
                    s(w.dir.join("spool").to_str().unwrap()),
                    Ty::Path,
                ),
                ("timeout", s("60s"), Ty::Dur(1000)),
            ],
        ),
        (
            "backup",
            vec![
                (
                    "source",
                    s(&format!("host=127.0.0.1 port={port} user=replicator")),
                    Ty::Str,
                ),
                ("concurrency", "4".into(), Ty::Int(1, 64)),
                ("wal_timeout", s("5m"), Ty::Dur(1000)),
                ("memory_mib", "128".into(), Ty::Int(32, 65536)),
                ("max_chain", "6".into(), Ty::Int(0, 1000)),
                ("max_rate", "0".into(), Ty::Int(0, 1_048_576)),
            ],
        ),
        (
            "patroni",
            vec![
                (
                    "endpoints",
                    format!("[\"http://127.0.0.1:{port}\"]"),
                    Ty::Endpoints,
                ),
                ("username", s("u"), Ty::Str),
                ("password", s("p"), Ty::Str),
                ("ca_file", s("/nonexistent/ca.pem"), Ty::Path),
                ("timeout", s("5s"), Ty::Dur(100)),
                ("max_lag", "16777216".into(), Ty::Int(0, 1 << 50)),
                ("fallback_to_primary", "false".into(), Ty::Bool),
                ("conninfo", s("user=replicator"), Ty::Str),
            ],
        ),
        (
            "create_replica",
            vec![
                ("max_wal_mib", "10240".into(), Ty::Int(0, 1 << 20)),
                ("max_wal_percent", "30".into(), Ty::Int(0, 1_000_000)),
            ],
        ),
        (
            "retention",
            vec![
                ("full", "2".into(), Ty::Int(1, 10_000)),
                ("max_age", s("14d"), Ty::Dur(0)),
            ],
        ),
        (
            "scheduler",
            vec![
                ("listen", s("127.0.0.1:9187"), Ty::Listen),
                ("token", s("t"), Ty::Str),
                ("grace", s("60s"), Ty::Dur(0)),
                ("lease_ttl", s("60s"), Ty::Dur(10_000)),
            ],
        ),
        ("log", vec![("level", s("info"), Ty::Str)]),
    ]
}

const JOBS: &str = "[[scheduler.jobs]]\nname = \"weekly-full\"\nkind = \"backup-full\"\nschedule = \"0 1 * * 0\"\n\n[[scheduler.jobs]]\nname = \"verify\"\nkind = \"verify\"\nschedule = \"0 12 * * *\"\n";

/// The configuration text, with `replace` (section, key, new value line or None to drop).
fn render(keys: &Sections, replace: Option<(&str, &str, &str)>, jobs: &str) -> String {
    let mut out = String::new();
    for (section, entries) in keys {
        out.push_str(&format!("[{section}]\n"));
        for (key, value, _) in entries {
            match replace {
                Some((s, k, v)) if s == *section && k == *key => {
                    out.push_str(&format!("{key} = {v}\n"))
                }
                _ => out.push_str(&format!("{key} = {value}\n")),
            }
        }
        out.push('\n');
    }
    out.push_str(jobs);
    out
}

fn long(n: usize, c: char) -> String {
    std::iter::repeat_n(c, n).collect()
}

/// A TOML value for a key of type `ty`, and whether it is certainly refused.
fn bad_value(rng: &mut Rng, ty: Ty) -> (String, bool) {
    // Wrong types for every key that is not a string.
    let wrong_shape = ["[1, 2]", "{ a = 1 }", "[]", "{}", "1e30", "-1.5", "nan"];
    match ty {
        Ty::Int(min, max) => match rng.below(9) {
            0 => (
                rng.pick(&["\"abc\"", "\"1e3\"", "\"\"", "\"0x10\"", "\"5 5\""])
                    .into(),
                true,
            ),
            1 => (rng.pick(&wrong_shape).into(), true),
            2 => ("true".into(), true),
            3 => ("18446744073709551615".into(), true),
            4 => ("-1".into(), true),
            5 => ((max + 1).to_string(), true),
            6 => ("0".into(), min > 0),
            7 => (format!("\"{}\"", long(100 * 1024, '9')), true),
            _ => ("9223372036854775807".into(), true),
        },
        Ty::Dur(min_ms) => match rng.below(7) {
            0 => (
                rng.pick(&[
                    "\"never\"",
                    "\"-1s\"",
                    "\"99999999999999y\"",
                    "\"\"",
                    "\"1\"",
                    "\"2000000h\"",
                    "\"s\"",
                    "\"1s 2\"",
                ])
                .into(),
                true,
            ),
            1 => (rng.pick(&wrong_shape).into(), true),
            2 => (rng.pick(&["5", "0", "-1", "true"]).into(), true),
            3 => ("\"0s\"".into(), min_ms > 0),
            4 => ("\"1ms\"".into(), min_ms > 1),
            5 => (format!("\"{}s\"", long(100 * 1024, '9')), true),
            _ => ("\"18446744073709551615s\"".into(), true),
        },
        // A cluster name that is valid would make `init` create a new cluster: only bad ones.
        Ty::Cluster if rng.chance(60) => (
            rng.pick(&["\"\"", "\"s3 \"", "\"a/b\"", "\".hidden\"", "\"a\\nb\""])
                .into(),
            true,
        ),
        Ty::Cluster => (rng.pick(&wrong_shape).into(), true),
        Ty::Str | Ty::Path | Ty::Kind => match rng.below(5) {
            0 => (rng.pick(&wrong_shape).into(), true),
            1 => (
                rng.pick(&["5", "true", "-1", "18446744073709551615"])
                    .into(),
                true,
            ),
            2 => (
                format!("\"{}\"", long(100 * 1024, 'a')),
                matches!(ty, Ty::Kind),
            ),
            3 => (
                rng.pick(&[
                    "\"a\\nb\"",
                    "\"\\u0001\\u001b[31m\"",
                    "\"\\t\"",
                    "\"./x/../y\"",
                    "\"\\u0000\"",
                ])
                .into(),
                matches!(ty, Ty::Kind),
            ),
            _ => (
                rng.pick(&["\"\"", "\"ftp\"", "\"LOCAL\"", "\"s3 \"", "\"a/b\""])
                    .into(),
                matches!(ty, Ty::Kind),
            ),
        },
        Ty::Bool => match rng.below(3) {
            0 => (
                rng.pick(&["\"maybe\"", "\"yes\"", "\"\"", "\"2\""]).into(),
                true,
            ),
            1 => (rng.pick(&["2", "0", "-1"]).into(), true),
            _ => (rng.pick(&wrong_shape).into(), true),
        },
        Ty::Endpoints => match rng.below(3) {
            0 => (
                rng.pick(&["\"ftp://x\"", "[\"gopher://a\"]", "\"10.0.0.1:8008\""])
                    .into(),
                true,
            ),
            1 => (rng.pick(&["5", "[1, 2]", "{ a = 1 }", "true"]).into(), true),
            _ => ("\"\"".into(), false),
        },
        Ty::Listen => (
            rng.pick(&[
                "\"nohost\"",
                "\":80\"",
                "\"h:0\"",
                "\"h:70000\"",
                "5",
                "\"h:-1\"",
            ])
            .into(),
            true,
        ),
    }
}

/// Text a variable `PGKEEP_<SECTION>_<KEY>` may hold, and whether it is certainly refused.
fn bad_env(rng: &mut Rng, ty: Ty) -> (OsString, bool) {
    let (text, bad): (String, bool) = match ty {
        Ty::Int(min, max) => match rng.below(5) {
            0 => (
                rng.pick(&["abc", "", "1e30", "0x10", "1.5", "true"]).into(),
                true,
            ),
            1 => ("-1".into(), true),
            2 => ((max + 1).to_string(), true),
            3 => ("0".into(), min > 0),
            _ => ("18446744073709551616".into(), true),
        },
        Ty::Dur(min_ms) => match rng.below(3) {
            0 => (
                rng.pick(&["never", "-1s", "99999999999999y", "", "1", "2000000h"])
                    .into(),
                true,
            ),
            1 => ("0s".into(), min_ms > 0),
            _ => (long(100 * 1024, '9'), true),
        },
        Ty::Bool => (rng.pick(&["maybe", "", "2", "yes"]).into(), true),
        Ty::Kind => (rng.pick(&["ftp", "", "S3", "local\n"]).into(), true),
        Ty::Cluster => (rng.pick(&["a/b", "", ".hidden", "x\ny"]).into(), true),
        Ty::Endpoints => (rng.pick(&["ftp://x", "10.0.0.1:8008"]).into(), true),
        Ty::Listen => (rng.pick(&["nohost", ":80", "h:0"]).into(), true),
        Ty::Str | Ty::Path => (rng.pick(&["", "a\nb", "\u{1}\u{1b}[31m"]).into(), false),
    };
    // A value that is not UTF-8 is refused whatever the key.
    if rng.chance(10) {
        let mut b = text.into_bytes();
        b.push(0xff);
        return (OsString::from_vec(b), true);
    }
    (text.into(), bad)
}

/// One malformed configuration (file or environment) and a command to run with it.
fn config_case(rng: &mut Rng, w: &World) -> Case {
    let keys = keys(w);
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let (what, text, bad): (String, Vec<u8>, bool) = match rng.below(14) {
        0..=4 => {
            let (section, entries) = &keys[rng.below(keys.len())];
            let (key, _, ty) = &entries[rng.below(entries.len())];
            let (v, bad) = bad_value(rng, *ty);
            let text = render(&keys, Some((section, key, &v)), JOBS);
            (
                format!("{section}.{key} = bad value"),
                text.into_bytes(),
                bad,
            )
        }
        5 => {
            let (section, entries) = &keys[rng.below(keys.len())];
            let (key, _, ty) = &entries[rng.below(entries.len())];
            let (v, bad) = bad_env(rng, *ty);
            let name = format!("PGKEEP_{}_{}", section, key).to_ascii_uppercase();
            env.push((name.into(), v));
            if rng.chance(30) {
                // Someone else's variable that is not UTF-8 is no reason to fail, or panic.
                env.push((
                    "FUZZ_NOT_OURS".into(),
                    OsString::from_vec(b"\xff\xfe".to_vec()),
                ));
            }
            (
                format!("env {section}.{key}"),
                render(&keys, None, JOBS).into_bytes(),
                bad,
            )
        }
        6 => {
            // Unknown keys and sections, in the file or the environment.
            let base = render(&keys, None, JOBS);
            let (section, _) = &keys[rng.below(keys.len())];
            let text = match rng.below(4) {
                0 => base.replacen(
                    &format!("[{section}]\n"),
                    &format!("[{section}]\ncolour = 1\n"),
                    1,
                ),
                1 => format!("{base}\n[colour]\nx = 1\n"),
                2 => format!("colour = \"red\"\n{base}"),
                _ => {
                    env.push((
                        format!("PGKEEP_{}_COLOUR", section.to_ascii_uppercase()).into(),
                        "1".into(),
                    ));
                    base
                }
            };
            ("unknown key or section".into(), text.into_bytes(), true)
        }
        7 => {
            // Truncated: cut anywhere, then an unterminated table header on its own line.
            let base = render(&keys, None, JOBS);
            let cut = rng.below(base.len());
            let mut text = base.as_bytes()[..cut].to_vec();
            let refused = rng.chance(70);
            if refused {
                text.extend_from_slice(b"\n[");
            }
            (format!("truncated at {cut}"), text, refused)
        }
        8 => {
            // Invalid UTF-8 somewhere, or random bytes.
            let mut text = render(&keys, None, JOBS).into_bytes();
            let bad: &[u8] = rng.pick(&[
                &b"\xff"[..],
                &b"\xc3\x28"[..],
                &b"\xed\xa0\x80"[..],
                &b"\xf8\x88"[..],
            ]);
            let at = rng.below(text.len());
            text.splice(at..at, bad.iter().copied());
            if rng.chance(30) {
                let n = 1 + rng.below(4096);
                text = rng.bytes(n);
                text.push(0xff);
            }
            ("invalid utf-8".into(), text, true)
        }
        9 => {
            // A key or a section twice.
            let (section, entries) = &keys[rng.below(keys.len())];
            let (key, value, _) = &entries[rng.below(entries.len())];
            let base = render(&keys, None, JOBS);
            let text = if rng.chance(50) {
                base.replacen(
                    &format!("[{section}]\n"),
                    &format!("[{section}]\n{key} = {value}\n"),
                    1,
                )
            } else {
                format!("{base}\n[{section}]\n")
            };
            (format!("{section}.{key} twice"), text.into_bytes(), true)
        }
        10 => {
            // A raw control character or newline inside a string, which TOML forbids.
            let (section, entries) = &keys[rng.below(keys.len())];
            let string_keys: Vec<_> = entries.iter().filter(|e| e.1.starts_with('"')).collect();
            let text = render(&keys, None, JOBS);
            if string_keys.is_empty() {
                return config_case(rng, w);
            }
            let (key, value, _) = string_keys[rng.below(string_keys.len())];
            let c = rng.pick(&["\n", "\u{1}", "\u{7}", "\u{1b}", "\u{7f}", "\r"]);
            let broken = format!("{}{c}{}", &value[..value.len() - 1], "\"");
            let text = text.replacen(
                &format!("{key} = {value}\n"),
                &format!("{key} = {broken}\n"),
                1,
            );
            (
                format!("{section}.{key} raw control"),
                text.into_bytes(),
                true,
            )
        }
        11 => {
            let text: &str = rng.pick(&["", "\n\n", "# nothing\n", "[repository]\n", "\u{feff}"]);
            ("empty".into(), text.as_bytes().to_vec(), true)
        }
        12 => {
            // Scheduler jobs: bad kind, bad or repeated name, a field missing or extra.
            let job: &str = rng.pick(&[
                "[[scheduler.jobs]]\nname = \"j\"\nkind = \"bogus\"\nschedule = \"* * * * *\"\n",
                "[[scheduler.jobs]]\nname = \"a b\"\nkind = \"verify\"\nschedule = \"* * * * *\"\n",
                "[[scheduler.jobs]]\nname = \"verify\"\nkind = \"verify\"\nschedule = \"* * * * *\"\n",
                "[[scheduler.jobs]]\nname = \"j\"\nkind = \"verify\"\n",
                "[[scheduler.jobs]]\nname = \"j\"\nkind = \"verify\"\nschedule = 5\n",
                "[[scheduler.jobs]]\nname = \"j\"\nkind = \"verify\"\nschedule = \"x\"\nextra = 1\n",
                "[scheduler.jobs]\nname = \"j\"\n",
            ]);
            let text = render(&keys, None, &format!("{JOBS}\n{job}"));
            ("scheduler job".into(), text.into_bytes(), true)
        }
        _ => {
            // A section that is not a table, alone or overlaid by the environment.
            let (section, entries) = &keys[rng.below(keys.len())];
            let base = render(&keys, None, JOBS);
            let text = format!("{section} = 5\n{base}");
            if rng.chance(50) {
                let (key, _, _) = &entries[0];
                env.push((
                    format!("PGKEEP_{}_{}", section, key)
                        .to_ascii_uppercase()
                        .into(),
                    "1".into(),
                ));
            }
            (format!("{section} not a table"), text.into_bytes(), true)
        }
    };
    let args = config_command(rng, w);
    Case {
        what,
        args,
        config: Some(text),
        env,
        expect: if bad { Expect::Config } else { Expect::Any },
    }
}

/// A command that reads the configuration and leaves the repository alone.
fn config_command(rng: &mut Rng, w: &World) -> Vec<OsString> {
    let d = |p: &str| w.dir.join(p).into_os_string();
    let args: Vec<OsString> = match rng.below(9) {
        0 => vec!["info".into()],
        1 => vec!["info".into(), "--json".into()],
        2 => vec!["verify".into()],
        3 => vec!["expire".into(), "--dry-run".into()],
        4 => vec![
            "archive-get".into(),
            "000000010000000000000001".into(),
            d("got"),
        ],
        5 => vec![
            "archive-push".into(),
            d("missing/pg_wal/000000010000000000000001"),
        ],
        6 => vec!["pin".into(), "20260101T000000Z-F".into()],
        7 => vec!["init".into(), "--data-dir".into(), w.data.clone().into()],
        _ => vec!["restore".into(), d(&format!("restore-{}", rng.next()))],
    };
    args
}

const WAL_NAME_LIKE: &[&str] = &[
    "00000001000000000000000a",
    "0000000100000000000000",
    "0000000100000000000000011",
    "../000000010000000000000001",
    "..",
    "",
    "-",
    "--",
    "00000001.history",
    "0000000G0000000000000001",
    "000000010000000000000001.partial.partial",
    "000000010000000000000001.00000028.backup",
    "00000000.history",
    "/etc/passwd",
    "000000010000000000000001\n",
];

fn weird_os(rng: &mut Rng) -> OsString {
    match rng.below(4) {
        0 => OsString::from_vec(vec![0xff, b'a', 0xfe]),
        1 => long(10 * 1024, 'A').into(),
        2 => rng.pick(WAL_NAME_LIKE).into(),
        _ => {
            let n = 1 + rng.below(40);
            let mut b = rng.bytes(n);
            b.retain(|&c| c != 0);
            OsString::from_vec(b)
        }
    }
}

fn target_flag(rng: &mut Rng) -> Vec<OsString> {
    let v: OsString = match rng.below(3) {
        0 => rng
            .pick(&[
                "2026-11-21 22:00:00",
                "2026-11-21\n22:00:00+00",
                "yesterday",
                "",
                "2026-13-45 25:61:61+00",
                "9999999-01-01 00:00:00+00",
                "2026-11-21 22:00:00+99",
                "-1",
                "zz/zz",
                "1/",
                "/1",
                "FFFFFFFFF/0",
                "0/0",
                "1e30",
                "18446744073709551616",
                "a\nb",
            ])
            .into(),
        1 => long(1000, 'n').into(),
        _ => weird_os(rng),
    };
    let flag = rng.pick(&[
        "--target-time",
        "--target-lsn",
        "--target-xid",
        "--target-name",
        "--target",
        "--target-timeline",
        "--target-action",
        "--tablespace-map",
    ]);
    let mut joined = OsString::from(format!("{flag}="));
    joined.push(&v);
    vec![joined]
}

/// A command line, malformed somewhere, against the valid base configuration.
fn cli_case(rng: &mut Rng, w: &World) -> Case {
    let d = |p: &str| w.dir.join(p).into_os_string();
    let closed = format!(
        "host=127.0.0.1 port={} user=postgres connect_timeout=2",
        w.closed_port
    );
    let id = |rng: &mut Rng| -> OsString {
        match rng.below(3) {
            0 => rng
                .pick(&[
                    "20260101T000000Z-F",
                    "20260101T000000Z-I",
                    "latest",
                    "../../repo",
                    "",
                    "20261301T256161Z-F",
                    "a/b",
                ])
                .into(),
            _ => weird_os(rng),
        }
    };
    let (what, mut args): (&str, Vec<OsString>) = match rng.below(12) {
        0 => {
            let path = match rng.below(4) {
                0 => {
                    // A file that exists under a bad name, holding garbage. (A backup
                    // history file's content is opaque, stored as it is: left out here.)
                    let name = weird_os(rng);
                    let dir = w.dir.join("push");
                    let p = dir.join(&name);
                    if !name.is_empty()
                        && !name.to_string_lossy().ends_with(".backup")
                        && p.parent() == Some(dir.as_path())
                        && std::fs::write(&p, rng.bytes(100)).is_ok()
                    {
                        p.into_os_string()
                    } else {
                        name
                    }
                }
                1 => w.data.join("pg_wal").join(weird_os(rng)).into_os_string(),
                2 => rng
                    .pick(&[
                        "",
                        "/",
                        "/dev/null",
                        ".",
                        "../",
                        "/nonexistent/000000010000000000000001",
                    ])
                    .into(),
                _ => w.data.join("pg_wal").into_os_string(),
            };
            ("archive-push", vec!["archive-push".into(), path])
        }
        1 | 2 => {
            let file = weird_os(rng);
            let dest = match rng.below(4) {
                0 => d("get/out"),
                1 => d("no/such/dir/out"),
                2 => w.dir.clone().into_os_string(),
                _ => weird_os(rng),
            };
            ("archive-get", vec!["archive-get".into(), file, dest])
        }
        3 | 4 => {
            let dir = match rng.below(3) {
                0 => w.dir.join("a-file").into_os_string(),
                1 => d(&format!("restore-{}", rng.next())),
                _ => weird_os(rng),
            };
            let mut a = vec!["restore".into(), dir];
            a.extend(target_flag(rng));
            if rng.chance(30) {
                a.push("--backup".into());
                a.push(id(rng));
            }
            if rng.chance(20) {
                a.extend(target_flag(rng));
            }
            if rng.chance(10) {
                a.extend(["--force".into(), "--delta".into()]);
            }
            ("restore", a)
        }
        5 => {
            let sub: &'static str = rng.pick(&["pin", "unpin"]);
            (sub, vec![sub.into(), id(rng)])
        }
        6 => {
            let mut a = vec!["verify".into(), "--backup".into(), id(rng)];
            if rng.chance(30) {
                a.push("--wal-names-only".into());
            }
            ("verify", a)
        }
        7 => {
            let a = match rng.below(4) {
                0 => vec!["init".into(), "--conninfo".into(), closed.clone().into()],
                1 => vec!["init".into(), "--data-dir".into(), weird_os(rng)],
                2 => vec!["init".into(), "--data-dir".into(), d("a-file")],
                _ => vec!["init".into(), "--data-dir".into(), d("push")],
            };
            ("init", a)
        }
        8 => {
            let source: OsString = match rng.below(3) {
                0 => closed.clone().into(),
                1 => rng
                    .pick(&[
                        "=:=",
                        "host=",
                        "port=99999999",
                        "postgresql://[::1",
                        "patroni",
                    ])
                    .into(),
                _ => weird_os(rng),
            };
            let kind = rng.pick(&["full", "incr", "bogus", ""]);
            (
                "backup",
                vec![
                    "backup".into(),
                    "--source".into(),
                    source,
                    format!("--type={kind}").into(),
                ],
            )
        }
        9 => {
            let mut a = vec![
                "create-replica".into(),
                "--datadir".into(),
                d(&format!("replica-{}", rng.next())),
                "--connstring".into(),
                closed.clone().into(),
            ];
            if rng.chance(50) {
                a.push(format!("--keep_data={}", rng.pick(&["maybe", "True", "", "1"])).into());
            }
            if rng.chance(30) {
                a.push("--no_leader=True".into());
            }
            ("create-replica", a)
        }
        10 => {
            let mut a = vec![
                "bootstrap".into(),
                "--datadir".into(),
                d(&format!("clone-{}", rng.next())),
                "--backup".into(),
                id(rng),
            ];
            if rng.chance(60) {
                a.extend(target_flag(rng));
            }
            ("bootstrap", a)
        }
        _ => {
            let a = match rng.below(6) {
                0 => vec![weird_os(rng)],
                1 => vec!["info".into(), weird_os(rng)],
                2 => vec!["--config".into(), d("no-such.toml"), "info".into()],
                3 => vec!["--config".into(), w.dir.clone().into(), "info".into()],
                4 => vec![
                    "--config".into(),
                    OsString::from_vec(b"/tmp/\xff.toml".to_vec()),
                    "info".into(),
                ],
                _ => vec![
                    "expire".into(),
                    "--dry-run".into(),
                    "--json".into(),
                    weird_os(rng),
                ],
            };
            let config = a.first().is_some_and(|f| f == "--config");
            (if config { "bad --config" } else { "top level" }, a)
        }
    };
    let expect = if what == "bad --config" {
        Expect::Config
    } else {
        if rng.chance(10) {
            args.push(weird_os(rng));
        }
        Expect::Any
    };
    Case {
        what: what.into(),
        args,
        config: None,
        env: Vec::new(),
        expect,
    }
}

/// Runs one case with a deadline; stdout and stderr go to files (a 100 KB value echoed in a
/// message would fill a pipe nobody reads while we poll).
fn run_case(w: &World, case: &Case, seed: u64) -> (i32, String) {
    let config = match &case.config {
        Some(bytes) => {
            let p = w.dir.join("fuzz.toml");
            std::fs::write(&p, bytes).unwrap();
            p
        }
        None => w.dir.join("pgkeep.toml"),
    };
    let out = std::fs::File::create(w.dir.join("stdout")).unwrap();
    let err = std::fs::File::create(w.dir.join("stderr")).unwrap();
    let mut cmd = Command::new(bin());
    cmd.env("PGKEEP_CONFIG", &config)
        .env_remove("PGKEEP_LOG")
        .current_dir(&w.dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .args(&case.args);
    for (k, v) in &case.env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {DEADLINE:?}: {}", case.describe(seed));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let stderr =
        String::from_utf8_lossy(&std::fs::read(w.dir.join("stderr")).unwrap()).into_owned();
    assert!(
        status.signal().is_none(),
        "killed by signal {:?}: {}\n{stderr}",
        status.signal(),
        case.describe(seed)
    );
    (status.code().unwrap(), stderr)
}

fn check(w: &World, case: &Case, seed: u64) {
    let before = snapshot(&w.repo);
    let (code, stderr) = run_case(w, case, seed);
    let show = || {
        format!(
            "{}\nexit {code}, stderr:\n{}",
            case.describe(seed),
            clip(&stderr)
        )
    };
    assert!(
        code != 101 && !stderr.contains("panicked"),
        "panic: {}",
        show()
    );
    let get = case.args.first().is_some_and(|a| a == "archive-get");
    let documented = if get {
        matches!(code, 0 | 1 | 201..=213)
    } else {
        matches!(code, 0..=13)
    };
    assert!(documented, "undocumented exit code: {}", show());
    // 2 and 202 are clap's usage errors, printed by clap.
    if !matches!(code, 0 | 2 | 202) {
        let run = Run {
            code,
            stdout: String::new(),
            stderr: stderr.clone(),
        };
        let line = std::panic::catch_unwind(|| run.error_line())
            .unwrap_or_else(|_| panic!("not one error line and a hint: {}", show()));
        assert!(line.starts_with("pgkeep: error["), "{}", show());
    }
    if case.expect == Expect::Config {
        let want = if get { 203 } else { 3 };
        assert_eq!(code, want, "a config error expected: {}", show());
        assert!(stderr.contains("error[config]"), "{}", show());
    }
    assert!(
        snapshot(&w.repo) == before,
        "the repository changed: {}",
        show()
    );
}

/// The largest char boundary of `s` at or below `at`.
fn boundary(s: &str, at: usize) -> usize {
    (0..=at.min(s.len()))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

fn clip(s: &str) -> &str {
    &s[..boundary(s, 2000)]
}

fn world(dir: &Path) -> World {
    let repo = dir.join("repo");
    let cluster = FakeCluster::new(dir, SYSID, 15);
    let mut w = World {
        dir: dir.to_path_buf(),
        repo,
        data: cluster.data.clone(),
        base: String::new(),
        closed_port: free_port(),
    };
    w.base = render(&keys(&w), None, JOBS);
    let pk = Pgkeep::new(dir, &w.base);
    pk.ok(&["init", "--data-dir", cluster.data.to_str().unwrap()]);
    std::fs::write(dir.join("a-file"), b"not a directory\n").unwrap();
    std::fs::create_dir_all(dir.join("push")).unwrap();
    std::fs::create_dir_all(dir.join("get")).unwrap();
    w
}

#[test]
fn malformed_configs_and_command_lines_get_one_error_line_a_hint_and_a_stable_code() {
    let seed = seeded::seed("cli_fuzz");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let w = world(dir.path());
    let start = Instant::now();
    for i in 0..CONFIG_CASES {
        let mut case = config_case(&mut rng, &w);
        case.what = format!("config #{i}: {}", case.what);
        check(&w, &case, seed);
    }
    let configs = start.elapsed();
    for i in 0..CLI_CASES {
        let mut case = cli_case(&mut rng, &w);
        case.what = format!("command line #{i}: {}", case.what);
        check(&w, &case, seed);
    }
    eprintln!(
        "cli_fuzz: {CONFIG_CASES} configs in {:.1} s, {CLI_CASES} command lines in {:.1} s",
        configs.as_secs_f64(),
        (start.elapsed() - configs).as_secs_f64()
    );
}

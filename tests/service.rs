//! The WAL service: archive-push and archive-get through the real pgkeepd.
//! - a real PostgreSQL 15 archives through pgkeepd into a local repository, and a restore
//!   whose restore_command reads through pgkeepd recovers exactly the committed rows;
//! - two clusters with their own tokens; the attacks — no token, a wrong token, another
//!   cluster's token, a token in the query string, an oversized body, a body cut short, a
//!   client that disconnects mid-upload, a slow client (slowloris), a digest that does not
//!   match, path traversal in the name — are each refused and nothing is stored; the CLI's
//!   exit codes through the service are the direct path's (0, 7 conflict, 1 not found);
//! - store-and-forward: with the store (Garage behind a switchable proxy) down, pushes are
//!   acknowledged from the durable spool, served to archive-get from it, survive a kill -9 of
//!   pgkeepd, and reach the store byte-identical once it returns; with the spool off a push
//!   fails (exit 8) and nothing is acknowledged.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use std::time::{Duration, Instant};

use support::cluster;
use support::pgkeep::{FakeCluster, Pgkeep, snapshot};
use support::postgres::pg_bin;
use support::proc::{postgres_tempdir, wait_for};
use support::receiver::{Daemon, token};

const LONG: Duration = Duration::from_secs(120);

fn sha256_hex(b: &[u8]) -> String {
    pgkeep::service::client::sha256_hex(b)
}

#[test]
fn postgres_archives_and_recovers_through_pgkeepd() {
    let dir = postgres_tempdir();
    let repo = dir.path().join("repo");
    let tok = token(dir.path(), "main", "main-cluster-token-0123456789");
    let repository = format!("[repository]\npath = \"{}\"\n", repo.display());
    let d = Daemon::start(
        dir.path(),
        &repository,
        &format!(
            "[[service.clusters]]\nname = \"main\"\ntoken_file = \"{}\"\n",
            tok.display()
        ),
    );
    // The database side: archive-push and archive-get go to pgkeepd; backup and restore read
    // the repository itself.
    let pk = Pgkeep::new(
        dir.path(),
        &format!(
            "{repository}[backup]\nwal_timeout = \"60s\"\n[server]\nurl = \"{}\"\ntoken_file = \"{}\"\n",
            d.url(),
            tok.display()
        ),
    );
    let (pk, primary, source) =
        cluster::archiving_primary_with(pk, &pg_bin(), dir.path(), &[], &[]);
    primary.psql("CREATE TABLE t (id int PRIMARY KEY, v int)");
    cluster::backup(&pk, &source, "full");
    for b in 0..3 {
        primary.psql(&format!(
            "INSERT INTO t SELECT g, g * {b} FROM generate_series({}, {}) g",
            b * 1000 + 1,
            b * 1000 + 1000
        ));
        primary.switch_and_wait_archived();
    }
    let committed = primary.psql("SELECT count(*), sum(v) FROM t");
    let status = d.status();
    let main = &status["service"]["clusters"]["main"];
    assert!(
        main["pushes"]["stored"].as_u64().unwrap_or(0) >= 3,
        "pushes went through pgkeepd: {main}"
    );
    assert!(main["newest_received"].is_string(), "{main}");

    let restored = cluster::restore_and_start(&pk, &pg_bin(), &dir.path().join("restored"), &[]);
    assert_eq!(restored.psql("SELECT count(*), sum(v) FROM t"), committed);
    let status = d.status();
    let gets = &status["service"]["clusters"]["main"]["gets"];
    assert!(
        gets["served"].as_u64().unwrap_or(0) >= 3,
        "recovery read its WAL through pgkeepd: {gets}\n{}",
        d.log()
    );
    assert!(
        !d.log().contains("main-cluster-token"),
        "the token never reaches the log"
    );
}

/// Raw HTTP over TCP, for requests no well-behaved client sends.
fn raw(port: u16, head: &str, body: &[u8], then_close: bool) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    if then_close {
        s.shutdown(std::net::Shutdown::Both).unwrap();
    }
    s
}

/// What an attack sends: its name, path, headers, body, and the status it must get.
type Case<'a> = (&'a str, String, Vec<(String, String)>, Vec<u8>, u16);

#[test]
fn attacks_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let (main_tok, other_tok) = (
        "main-token-aaaaaaaaaaaaaaaa",
        "other-token-bbbbbbbbbbbbbbbb",
    );
    let main_file = token(dir.path(), "main", main_tok);
    let other_file = token(dir.path(), "other", other_tok);
    // Two clusters, each initialised from its own (synthesised) data directory.
    let main = FakeCluster::new(dir.path(), 1001, 15);
    let other = FakeCluster::new(dir.path(), 2002, 15);
    for (name, fake) in [("main", &main), ("other", &other)] {
        let pk = Pgkeep::new(
            dir.path(),
            &format!(
                "[repository]\npath = \"{}\"\ncluster = \"{name}\"\n",
                repo.display()
            ),
        );
        pk.ok(&["init", "--data-dir", fake.data.to_str().unwrap()]);
    }
    let d = Daemon::start(
        dir.path(),
        &format!("[repository]\npath = \"{}\"\n", repo.display()),
        &format!(
            "read_timeout = \"2s\"\n[[service.clusters]]\nname = \"main\"\ntoken_file = \"{}\"\n[[service.clusters]]\nname = \"other\"\ntoken_file = \"{}\"\n",
            main_file.display(),
            other_file.display()
        ),
    );
    let seg_path = main.write_segment(1, 7, false);
    let seg = std::fs::read(&seg_path).unwrap();
    let file = seg_path.file_name().unwrap().to_str().unwrap().to_string();
    let digest = sha256_hex(&seg);
    let path = format!("/v1/wal/{file}");
    let bearer = |t: &str| format!("Bearer {t}");
    let before = snapshot(&repo);

    let cases: Vec<Case> = vec![
        (
            "no token",
            path.clone(),
            vec![("x-pgkeep-sha256".into(), digest.clone())],
            seg.clone(),
            401,
        ),
        (
            "wrong token",
            path.clone(),
            vec![
                (
                    "authorization".into(),
                    bearer("main-token-aaaaaaaaaaaaaaab"),
                ),
                ("x-pgkeep-sha256".into(), digest.clone()),
            ],
            seg.clone(),
            401,
        ),
        (
            "token in the query string",
            format!("{path}?token={main_tok}&access_token={main_tok}"),
            vec![("x-pgkeep-sha256".into(), digest.clone())],
            seg.clone(),
            401,
        ),
        (
            "another cluster's token (its repository serves another system id)",
            path.clone(),
            vec![
                ("authorization".into(), bearer(other_tok)),
                ("x-pgkeep-sha256".into(), digest.clone()),
            ],
            seg.clone(),
            422,
        ),
        (
            "a digest that does not match",
            path.clone(),
            vec![
                ("authorization".into(), bearer(main_tok)),
                ("x-pgkeep-sha256".into(), sha256_hex(b"something else")),
            ],
            seg.clone(),
            400,
        ),
        (
            "no digest",
            path.clone(),
            vec![("authorization".into(), bearer(main_tok))],
            seg.clone(),
            400,
        ),
        (
            "an oversized body",
            path.clone(),
            vec![
                ("authorization".into(), bearer(main_tok)),
                ("x-pgkeep-sha256".into(), digest.clone()),
            ],
            [seg.as_slice(), &[0u8; 8192]].concat(),
            413,
        ),
        (
            "a truncated segment",
            path.clone(),
            vec![
                ("authorization".into(), bearer(main_tok)),
                ("x-pgkeep-sha256".into(), sha256_hex(&seg[..seg.len() / 2])),
            ],
            seg[..seg.len() / 2].to_vec(),
            400,
        ),
        (
            "path traversal in the name",
            "/v1/wal/..%2F..%2Fmain%2Frepo.json".to_string(),
            vec![
                ("authorization".into(), bearer(main_tok)),
                ("x-pgkeep-sha256".into(), digest.clone()),
            ],
            seg.clone(),
            400,
        ),
    ];
    for (what, path, headers, body, want) in &cases {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (status, text) = d.request("PUT", path, &h, body);
        assert_eq!(status, *want, "{what}: {text}");
        assert_eq!(snapshot(&repo), before, "{what}: nothing stored");
    }
    // Reading: another cluster's token cannot read main's WAL, nor can no token.
    let (status, _) = d.request("GET", &path, &[("authorization", &bearer(other_tok))], b"");
    assert_eq!(
        status, 404,
        "other cluster's token sees only its own cluster"
    );
    assert_eq!(d.request("GET", &path, &[], b"").0, 401);

    // A body cut short: the length promised, half sent, then the client is gone.
    let head = format!(
        "PUT {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {main_tok}\r\nx-pgkeep-sha256: {digest}\r\ncontent-length: {}\r\n\r\n",
        seg.len()
    );
    drop(raw(d.port, &head, &seg[..seg.len() / 2], true));
    // A client that stalls mid-upload (slowloris on the body), and one that never finishes
    // its headers: both are cut off by the read timeout (2 s here).
    for (what, head, body) in [
        ("a stalled body", head.clone(), &seg[..4096]),
        (
            "unfinished headers",
            format!("PUT {path} HTTP/1.1\r\nhost: x\r\n"),
            &[][..],
        ),
    ] {
        let mut s = raw(d.port, &head, body, false);
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let began = Instant::now();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "{what}: the connection must be closed by the server's read timeout"
        );
        let answer = String::from_utf8_lossy(&buf);
        assert!(!answer.starts_with("HTTP/1.1 2"), "{what}: {answer}");
    }
    assert_eq!(snapshot(&repo), before, "nothing stored by any attack");

    // The CLI through the service exits as the direct path does.
    let client = Pgkeep::new(
        dir.path(),
        &format!(
            "[repository]\npath = \"/nonexistent\"\n[server]\nurl = \"{}\"\ntoken_file = \"{}\"\n",
            d.url(),
            main_file.display()
        ),
    );
    let seg_str = seg_path.to_str().unwrap();
    client.ok(&["archive-push", seg_str]);
    assert_ne!(
        snapshot(&repo),
        before,
        "stored once the real client pushes"
    );
    let stored_once = snapshot(&repo);
    client.ok(&["archive-push", seg_str]);
    assert_eq!(
        snapshot(&repo),
        stored_once,
        "an identical re-push changes nothing"
    );
    main.write_segment(1, 8, false);
    let conflict = client.run(&["archive-push", seg_str]);
    assert_eq!(conflict.code, 7, "{}", conflict.stderr);
    conflict.error_line();
    let out = dir.path().join("got");
    client.ok(&["archive-get", &file, out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        seg,
        "byte-identical through the service"
    );
    let missing = client.run(&[
        "archive-get",
        "000000010000000000000009",
        out.to_str().unwrap(),
    ]);
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    // The other cluster's token, configured on a client: it cannot read main's segment.
    std::fs::create_dir_all(dir.path().join("intruder")).unwrap();
    let intruder = Pgkeep::new(
        &dir.path().join("intruder"),
        &format!(
            "[repository]\npath = \"/nonexistent\"\n[server]\nurl = \"{}\"\ntoken_file = \"{}\"\n",
            d.url(),
            other_file.display()
        ),
    );
    let stolen = intruder.run(&["archive-get", &file, dir.path().join("x").to_str().unwrap()]);
    assert_eq!(stolen.code, 1, "{}", stolen.stderr);
    assert!(!d.log().contains(main_tok) && !d.log().contains(other_tok));
}

#[test]
fn store_outage_spools_survives_kill_9_and_uploads_when_the_store_returns() {
    let dir = tempfile::tempdir().unwrap();
    let garage = support::garage::Garage::start(dir.path());
    let switch = support::proxy::Switch::start(garage.port);
    let tok = token(dir.path(), "main", "spool-token-cccccccccccccccc");
    let direct = garage.repository_toml(&format!("http://127.0.0.1:{}", garage.port), "svc");
    let via = garage.repository_toml(&format!("http://127.0.0.1:{}", switch.port), "svc")
        + "max_retries = 0\nrequest_timeout = \"2s\"\n";
    let fake = FakeCluster::new(dir.path(), 3003, 15);
    let mut admin = Pgkeep::new(dir.path(), &direct);
    admin.env = garage.credentials();
    admin.ok(&["init", "--data-dir", fake.data.to_str().unwrap()]);
    let service = |spool: bool| {
        let spool = if spool {
            format!("spool_path = \"{}\"\n", dir.path().join("spool").display())
        } else {
            String::new()
        };
        format!(
            "store_timeout = \"3s\"\n{spool}[[service.clusters]]\nname = \"main\"\ntoken_file = \"{}\"\n",
            tok.display()
        )
    };
    let mut d = Daemon::start_with(dir.path(), &via, &service(true), &garage.credentials());
    std::fs::create_dir_all(dir.path().join("client")).unwrap();
    let client = Pgkeep::new(
        &dir.path().join("client"),
        &format!(
            "[repository]\npath = \"/nonexistent\"\n[server]\nurl = \"{}\"\ntoken_file = \"{}\"\n",
            d.url(),
            tok.display()
        ),
    );
    let push = |segno: u64, seed: u64| {
        let p = fake.write_segment(segno, seed, false);
        (
            client.run(&["archive-push", p.to_str().unwrap()]),
            std::fs::read(&p).unwrap(),
        )
    };
    let (r, _) = push(1, 1);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // The store goes away: pushes are acknowledged from the spool and served from it.
    switch.set(false);
    let mut spooled = Vec::new();
    for segno in 2..=3 {
        let (r, bytes) = push(segno, segno);
        assert_eq!(r.code, 0, "spooled: {}\n{}", r.stderr, d.log());
        spooled.push((
            FakeCluster::segment_name(segno).file_name(support::pgkeep::SEG),
            bytes,
        ));
    }
    let backlog = d.status()["service"]["spool"].clone();
    assert_eq!(backlog["segments"], 2, "{backlog}");
    let out = dir.path().join("got");
    client.ok(&["archive-get", &spooled[0].0, out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        spooled[0].1,
        "served from the spool"
    );

    // kill -9, restart (the store still down: the repository cannot even be opened), then the
    // store returns: what was acknowledged reaches it.
    d.child.stop_with(libc::SIGKILL);
    let d = Daemon::start_with(dir.path(), &via, &service(true), &garage.credentials());
    switch.set(true);
    wait_for("the spool to drain into the store", LONG, || {
        (d.status()["service"]["spool"]["segments"] == 0).then_some(())
    });
    for (file, bytes) in &spooled {
        let dest = dir.path().join(format!("direct-{file}"));
        admin.ok(&["archive-get", file, dest.to_str().unwrap()]);
        assert_eq!(
            &std::fs::read(&dest).unwrap(),
            bytes,
            "{file} byte-identical in the store"
        );
    }
    drop(d);

    // Spooling off: with the store down a push fails and nothing is acknowledged.
    let d = Daemon::start_with(dir.path(), &via, &service(false), &garage.credentials());
    let client = Pgkeep::new(
        &dir.path().join("client"),
        &format!(
            "[repository]\npath = \"/nonexistent\"\n[server]\nurl = \"{}\"\ntoken_file = \"{}\"\n",
            d.url(),
            tok.display()
        ),
    );
    client.ok(&[
        "archive-push",
        fake.write_segment(4, 4, false).to_str().unwrap(),
    ]);
    switch.set(false);
    let p = fake.write_segment(5, 5, false);
    let r = client.run(&["archive-push", p.to_str().unwrap()]);
    assert_eq!(r.code, 8, "unreachable without a spool: {}", r.stderr);
    switch.set(true);
    let r = client.run(&[
        "archive-get",
        "000000010000000000000005",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        r.code, 1,
        "nothing was acknowledged or stored: {}",
        r.stderr
    );
}

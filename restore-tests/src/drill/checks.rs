//! The verify phase: every check of the restored, promoted cluster, each recorded with its
//! verdict and detail — recovery reached its target (and the canary), every table of every
//! database read in full (rows counted, every value detoasted; page checksums are verified on
//! read when enabled), amcheck on every heap and btree index, the operator's probes, and the
//! restore-time target.

use pgkeep::config::{DrillTarget, RestoreTestConfig};
use pgkeep::manifest::drill::{Check, TableRows, Verdict};
use pgkeep::pg::lsn::Lsn;

use super::canary::Canary;
use crate::sandbox::Sandbox;

/// What the checks know of the drill.
pub struct Facts<'a> {
    pub target: DrillTarget,
    pub stop_lsn: Lsn,
    pub newest_segment_start: Option<Lsn>,
    pub replayed: Lsn,
    pub canary: &'a Canary,
    pub rto_seconds: f64,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub checks: Vec<Check>,
    pub tables: Vec<TableRows>,
}

impl Outcome {
    fn add(&mut self, name: &str, verdict: Verdict, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.to_string(),
            verdict,
            detail: detail.into(),
        });
    }
}

pub async fn verify(sb: &dyn Sandbox, cfg: &RestoreTestConfig, f: &Facts<'_>) -> Outcome {
    let mut out = Outcome::default();
    target(&mut out, f);
    canary(&mut out, f);
    match databases(sb).await {
        Ok(dbs) => {
            let version = server_version(sb).await;
            for db in &dbs {
                read_all(&mut out, sb, db).await;
                amcheck(&mut out, sb, db, version, cfg.heapallindexed).await;
            }
        }
        Err(e) => out.add("databases", Verdict::Failed, e),
    }
    for p in &cfg.probes {
        let (verdict, detail) = match sb.query(&p.database, &p.sql).await {
            Ok(rows) => match rows
                .first()
                .and_then(|r| r.first())
                .cloned()
                .flatten()
                .as_deref()
            {
                Some("t") => (Verdict::Passed, "true".to_string()),
                Some("f") => (Verdict::Failed, "returned false".to_string()),
                other => (
                    Verdict::Failed,
                    format!("returned {other:?}, not one boolean"),
                ),
            },
            Err(e) => (Verdict::Failed, e.one_line()),
        };
        out.add(&format!("probe:{}", p.name), verdict, detail);
    }
    if let Some(max) = cfg.max_rto {
        let verdict = if f.rto_seconds <= max.as_secs_f64() {
            Verdict::Passed
        } else {
            Verdict::Failed
        };
        out.add(
            "rto",
            verdict,
            format!(
                "{:.1} s against a target of {} s",
                f.rto_seconds,
                max.as_secs()
            ),
        );
    }
    out
}

fn target(out: &mut Outcome, f: &Facts<'_>) {
    let mut verdict = Verdict::Passed;
    let mut detail = format!(
        "replayed to {}, the backup ended at {}",
        f.replayed, f.stop_lsn
    );
    if f.replayed < f.stop_lsn {
        verdict = Verdict::Failed;
    }
    if f.target == DrillTarget::Latest {
        match f.newest_segment_start {
            Some(newest) if f.replayed < newest => {
                verdict = Verdict::Failed;
                detail.push_str(&format!(
                    "; the archive's newest segment starts at {newest}: replay stopped short of the archive's end"
                ));
            }
            Some(newest) => detail.push_str(&format!(
                "; the archive's newest segment starts at {newest}"
            )),
            None => {}
        }
    }
    out.add("target", verdict, detail);
}

fn canary(out: &mut Outcome, f: &Facts<'_>) {
    match f.canary {
        Canary::Left { name, lsn, segment } if f.replayed >= *lsn => out.add(
            "canary",
            Verdict::Passed,
            format!("restore point {name} at {lsn} (segment {segment}) replayed"),
        ),
        Canary::Left { name, lsn, segment } => out.add(
            "canary",
            Verdict::Failed,
            format!(
                "restore point {name} at {lsn} (segment {segment}) not reached: replay ended at {}",
                f.replayed
            ),
        ),
        Canary::NotArchived(why) => out.add("canary", Verdict::Failed, why.clone()),
        Canary::Skipped(why) => out.add("canary", Verdict::Skipped, why.clone()),
    }
}

async fn databases(sb: &dyn Sandbox) -> Result<Vec<String>, String> {
    let rows = sb
        .query(
            "postgres",
            "SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1",
        )
        .await
        .map_err(|e| e.one_line())?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect())
}

async fn server_version(sb: &dyn Sandbox) -> u32 {
    let rows = sb
        .query("postgres", "SELECT current_setting('server_version_num')")
        .await
        .unwrap_or_default();
    rows.first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Every table (catalogs included) read in full: rows counted and every value turned to text,
/// which reads each heap page and detoasts every value, as a dump would.
async fn read_all(out: &mut Outcome, sb: &dyn Sandbox, db: &str) {
    let tables = match sb
        .query(
            db,
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'm') AND c.relpersistence = 'p' \
             AND (c.relkind <> 'm' OR c.relispopulated) ORDER BY 1",
        )
        .await
    {
        Ok(rows) => rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect::<Vec<_>>(),
        Err(e) => return out.add(&format!("read:{db}"), Verdict::Failed, e.one_line()),
    };
    let mut bytes: u64 = 0;
    for t in &tables {
        let sql = format!("SELECT count(*), coalesce(sum(length(t::text)), 0) FROM ONLY {t} AS t");
        match sb.query(db, &sql).await {
            Ok(rows) => {
                let row = rows.into_iter().next().unwrap_or_default();
                let num = |i: usize| {
                    row.get(i)
                        .cloned()
                        .flatten()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                bytes += num(1);
                if !t.starts_with("pg_catalog.") && !t.starts_with("information_schema.") {
                    out.tables.push(TableRows {
                        database: db.to_string(),
                        table: t.clone(),
                        rows: num(0),
                    });
                }
            }
            Err(e) => {
                return out.add(
                    &format!("read:{db}"),
                    Verdict::Failed,
                    format!("reading {t}: {}", e.one_line()),
                );
            }
        }
    }
    out.add(
        &format!("read:{db}"),
        Verdict::Passed,
        format!(
            "{} tables read in full ({bytes} bytes of text)",
            tables.len()
        ),
    );
}

/// amcheck: `verify_heapam` on every table (PostgreSQL 14+) and `bt_index_check` on every
/// btree index. Skipped, saying why, when the sandbox's PostgreSQL lacks the extension.
async fn amcheck(
    out: &mut Outcome,
    sb: &dyn Sandbox,
    db: &str,
    version: u32,
    heapallindexed: bool,
) {
    let name = format!("amcheck:{db}");
    if let Err(e) = sb.query(db, "CREATE EXTENSION IF NOT EXISTS amcheck").await {
        return out.add(
            &name,
            Verdict::Skipped,
            format!("no amcheck: {}", e.one_line()),
        );
    }
    let mut heaps = 0;
    if version >= 140000 {
        let sql = "SELECT c.oid::regclass::text, v.blkno, v.msg FROM pg_class c \
                   CROSS JOIN LATERAL verify_heapam(c.oid, check_toast => true) v \
                   WHERE c.relkind IN ('r', 'm', 't') AND c.relpersistence = 'p' LIMIT 1";
        match sb.query(db, sql).await {
            Ok(rows) if rows.is_empty() => {}
            Ok(rows) => {
                let r = &rows[0];
                let get = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                return out.add(
                    &name,
                    Verdict::Failed,
                    format!("{} block {}: {}", get(0), get(1), get(2)),
                );
            }
            Err(e) => {
                return out.add(
                    &name,
                    Verdict::Failed,
                    format!("verify_heapam: {}", e.one_line()),
                );
            }
        }
        heaps = 1;
    }
    let indexes = match sb
        .query(
            db,
            "SELECT c.oid, c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'btree' AND i.indisvalid AND i.indisready \
             AND c.relpersistence = 'p' ORDER BY 2",
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => return out.add(&name, Verdict::Failed, e.one_line()),
    };
    for r in &indexes {
        let (oid, index) = (
            r.first().cloned().flatten().unwrap_or_default(),
            r.get(1).cloned().flatten().unwrap_or_default(),
        );
        let sql = format!("SELECT bt_index_check({oid}::regclass, {heapallindexed})");
        if let Err(e) = sb.query(db, &sql).await {
            return out.add(
                &name,
                Verdict::Failed,
                format!("index {index}: {}", e.one_line()),
            );
        }
    }
    out.add(
        &name,
        Verdict::Passed,
        format!(
            "{} btree indexes{}",
            indexes.len(),
            if heaps > 0 {
                " and every heap checked"
            } else {
                " checked (no verify_heapam before 14)"
            }
        ),
    );
}

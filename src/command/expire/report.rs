//! How an `ExpireReport` shows: the table `pgkeep expire` prints, and its `--json` form.

use serde::Serialize;

use super::ExpireReport;

/// What `pgkeep expire` prints: one line per backup kept or expired, then the WAL, then what
/// was done.
impl std::fmt::Display for ExpireReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.plan;
        for k in &p.keep {
            writeln!(f, "keep   {}  {}", k.id, k.why)?;
        }
        for id in &p.expire {
            writeln!(f, "expire {id}")?;
        }
        for d in &p.damaged {
            writeln!(
                f,
                "keep   {d}  DAMAGED manifest: its folder and all wal stay; 'pgkeep verify' reports it"
            )?;
        }
        match p.wal_kept_from {
            Some(from) => writeln!(
                f,
                "wal: {} file(s) before segment number {from:X} expire; history files stay",
                p.wal.len()
            )?,
            None if !p.damaged.is_empty() => {
                writeln!(f, "wal: nothing expires (a backup's manifest is damaged)")?
            }
            None => writeln!(f, "wal: nothing expires (no backup kept)")?,
        }
        if let Some(why) = &self.deferred {
            return writeln!(
                f,
                "deferred: {why} since the plan; the manifests above are removed, their objects and the wal stay until the next expire"
            );
        }
        f.write_str(if self.executed {
            "done: manifests first, then their objects, then the wal\n"
        } else {
            "dry run: nothing was changed\n"
        })
    }
}

/// What `pgkeep expire --json` prints (keys in the order it always had: sorted).
impl Serialize for ExpireReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_json::json!({
            "plan": self.plan,
            "executed": self.executed,
            "objects": self.objects,
            "deferred": self.deferred,
        })
        .serialize(s)
    }
}

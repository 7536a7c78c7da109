//! Making the target ready: refuse a directory a running postmaster uses (whatever
//! --force or --delta say: pgBackRest and pg_basebackup refuse too), refuse a non-empty target
//! or mapped tablespace directory unless --delta (swept in place) or --force (emptied), then
//! create the target with PostgreSQL's permissions.

use std::path::Path;

use super::place::Placement;
use super::{RestoreArgs, delta};
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::Manifest;

/// Returns how many entries --delta removed.
pub fn prepare(args: &RestoreArgs, place: &Placement, m: &Manifest) -> Result<usize> {
    let target = place.target();
    let mapped: Vec<(u32, &Path)> = place
        .tablespaces()
        .filter(|(_, _, mapped)| *mapped)
        .map(|(oid, dir, _)| (oid, dir))
        .collect();
    if occupied(target) && (args.force || args.delta) {
        refuse_live_postmaster(target)?;
    }
    // Every refusal before anything is removed.
    if !args.force && !args.delta {
        if occupied(target) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("target directory {} is not empty", target.display()),
            )
            .hint("restore into an empty directory, or pass --delta (keep matching files) or --force (replace everything)"));
        }
        if let Some((oid, dir)) = mapped.iter().find(|(_, d)| occupied(d)) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("tablespace directory {} (oid {oid}) is not empty", dir.display()),
            )
            .hint("map the tablespace to an empty directory, or pass --delta (keep matching files) or --force (replace everything)"));
        }
    }
    let removed = if args.delta {
        delta::clean(place, m)?.removed
    } else {
        if args.force {
            // pg_control first, durably, as --delta does: a crash while the rest is replaced
            // must never leave the old pg_control over the new files.
            let control = target.join("global/pg_control");
            if control.exists() {
                std::fs::remove_file(&control).map_err(|e| Error::io("remove", &control, e))?;
                crate::localfs::fsync_dir(&target.join("global"))
                    .map_err(|e| Error::io("fsync", &control, e))?;
            }
            empty(target)?;
            for (_, dir) in &mapped {
                empty(dir)?;
            }
        }
        0
    };
    std::fs::create_dir_all(target).map_err(|e| Error::io("create", target, e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("chmod", target, e))?;
    Ok(removed)
}

fn occupied(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// Removes everything inside `dir`, following no link.
fn empty(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries {
        let p = e.map_err(|e| Error::io("read", dir, e))?.path();
        let removed = if p.is_dir() && !p.is_symlink() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        removed.map_err(|e| Error::io("remove", &p, e))?;
    }
    Ok(())
}

/// Refuses while `postmaster.pid` names a live postgres process. A pid file whose process is
/// gone (a crashed or killed server) is stale and fine. Seen through `/proc`: a postmaster in
/// another pid namespace (another container) is invisible here.
fn refuse_live_postmaster(target: &Path) -> Result<()> {
    let pidfile = target.join("postmaster.pid");
    let Ok(text) = std::fs::read_to_string(&pidfile) else {
        return Ok(());
    };
    let pid = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i64>().ok());
    let running = match pid {
        // A standalone backend writes its pid negated.
        Some(pid) if pid != 0 => postgres_runs(pid.unsigned_abs()),
        // Being written, or damaged: assume a server is starting.
        _ => true,
    };
    if !running {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::InvalidInput,
        format!(
            "target directory {} belongs to a running server ({} names pid {})",
            target.display(),
            pidfile.display(),
            pid.map_or_else(|| "?".into(), |p| p.to_string())
        ),
    )
    .hint("stop that server first (pg_ctl stop -D <dir>); if none runs there, remove its postmaster.pid"))
}

/// Whether process `pid` exists and is a postgres; `true` when it cannot be told.
fn postgres_runs(pid: u64) -> bool {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    let dir = proc.join(pid.to_string());
    if !dir.exists() {
        return false;
    }
    match std::fs::read_to_string(dir.join("comm")) {
        Ok(comm) => comm.contains("postgres") || comm.contains("postmaster"),
        Err(_) => dir.exists(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_and_live_pid_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(refuse_live_postmaster(dir.path()).is_ok(), "no pid file");
        let pidfile = dir.path().join("postmaster.pid");
        // pid_max is at most 2^22: this pid is never in use.
        std::fs::write(&pidfile, "99999999\n/data\n").unwrap();
        assert!(refuse_live_postmaster(dir.path()).is_ok(), "stale");
        std::fs::write(&pidfile, "\n").unwrap();
        assert!(
            refuse_live_postmaster(dir.path()).is_err(),
            "unreadable pid"
        );
        // This test process is alive but no postgres.
        std::fs::write(&pidfile, format!("{}\n", std::process::id())).unwrap();
        assert!(refuse_live_postmaster(dir.path()).is_ok(), "not a postgres");
    }
}

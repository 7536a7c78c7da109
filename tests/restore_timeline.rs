//! Backup selection follows the timeline history, against a real PostgreSQL 15: after a
//! failover, a backup the old primary took on timeline 1 after the new timeline branched off
//! is no way to the new timeline; restore picks the older backup whose end lies on its history.

#![allow(clippy::unwrap_used)]

mod support;

use support::cluster;
use support::postgres::pg_bin;
use support::proc::{postgres_tempdir, wait_for};

#[test]
fn a_backup_of_the_old_timeline_after_the_branch_is_not_chosen_for_the_new_one() {
    let dir = postgres_tempdir();
    let (pk, primary, source) = cluster::archiving_primary(&pg_bin(), dir.path(), "", &[], &[]);
    primary.psql("CREATE TABLE marks (id int PRIMARY KEY)");
    let before = cluster::backup(&pk, &source, "full");

    // A standby, promoted to timeline 2 while the old primary keeps running on timeline 1.
    let standby = primary.standby(&dir.path().join("standby"));
    primary.psql("INSERT INTO marks SELECT generate_series(1, 100)");
    primary.switch_and_wait_archived();
    wait_for(
        "the standby to replay",
        std::time::Duration::from_secs(60),
        || (standby.psql("SELECT count(*) FROM marks") == "100").then_some(()),
    );
    standby.psql("SELECT pg_promote()");
    standby.wait_promoted();
    standby.psql("INSERT INTO marks SELECT generate_series(101, 200)");
    standby.switch_and_wait_archived();

    // The old primary writes on and is backed up: a newer backup, on the abandoned branch.
    primary.psql("INSERT INTO marks SELECT generate_series(1001, 1500)");
    let after = cluster::backup(&pk, &source, "full");
    let listed = cluster::backups(&pk);
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|b| b["timeline"] == 1), "{listed:?}");

    // Timeline 1 asked for: the newest backup, as before.
    let r = pk.ok(&[
        "restore",
        dir.path().join("on-1").to_str().unwrap(),
        "--target-timeline",
        "1",
    ]);
    assert!(
        r.stdout.contains(&format!("restored backup {after}")),
        "{}",
        r.stdout
    );

    // The latest timeline (2): only the backup that ended before the branch reaches it.
    let target = dir.path().join("latest");
    let r = pk.ok(&[
        "restore",
        target.to_str().unwrap(),
        "--target-action",
        "promote",
    ]);
    assert!(
        r.stdout.contains(&format!("restored backup {before}")),
        "{}",
        r.stdout
    );
    let restored = cluster::start_restored(&pg_bin(), &target);
    assert_eq!(restored.psql("SELECT count(*) FROM marks"), "200");
    let tli: u32 = restored
        .psql("SELECT timeline_id FROM pg_control_checkpoint()")
        .parse()
        .unwrap();
    assert!(tli >= 2, "recovery stayed on timeline {tli}");
}

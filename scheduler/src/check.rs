//! `pgkeepd check`: every line of `pgkeep check`, and the restore drills' container sandbox —
//! the engine answering and the sandbox image of the repository's major present — which only
//! pgkeepd, holding the container client, can check.

use std::time::Duration;

use pgkeep::command::check::{self, CheckArgs, CheckReport};
use pgkeep::command::with_deadline;
use pgkeep::config::{Config, SandboxKind};
use pgkeep::repo::Repo;

const DEADLINE: Duration = Duration::from_secs(60);

pub async fn run(cfg: &Config, args: CheckArgs) -> CheckReport {
    let mut report = check::run(cfg, args).await;
    if cfg.restore_test.sandbox == SandboxKind::Container {
        report.remove("sandbox");
        sandbox(cfg, &mut report).await;
    }
    report
}

async fn sandbox(cfg: &Config, r: &mut CheckReport) {
    // The drill restores the repository's major, into that major's image.
    let major = match with_deadline(
        "opening the repository",
        DEADLINE,
        Repo::open(&cfg.repository),
    )
    .await
    {
        Ok(repo) => repo.info().version.major(),
        _ => {
            r.skip(
                "sandbox",
                "the image to check depends on the repository's major, and the repository did not open",
            );
            return;
        }
    };
    let found = with_deadline(
        "asking the container engine",
        DEADLINE,
        pgkeep_restore_tests::sandbox::container::engine_with_image(&cfg.restore_test, major),
    )
    .await;
    match found {
        Ok((_, host, image)) => r.ok(
            "sandbox",
            format!("container engine at {host} holds {image} (PostgreSQL {major})"),
        ),
        Err(e) => r.error("sandbox", &e),
    }
}

//! Next-fire computation driven by tokio's paused clock: the scheduler's sleeps end exactly at
//! each fire, Sundays at 01:00 for `0 1 * * 0`, without waiting a week.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use pgkeep_scheduler::clock::Clock;
use pgkeep_scheduler::schedule::Schedule;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[tokio::test(start_paused = true)]
async fn sleeps_end_on_each_sunday_at_one() {
    let clock = Clock::tokio_at(at("2026-12-01T12:00:00Z"));
    let schedule = Schedule::parse("0 1 * * 0").unwrap();
    let mut fired = Vec::new();
    for _ in 0..3 {
        let next = schedule.next_after(clock.now()).unwrap();
        clock.sleep_until(next).await;
        assert_eq!(clock.now(), next, "woken exactly at the fire");
        fired.push(clock.now());
    }
    assert_eq!(
        fired,
        [
            at("2026-12-06T01:00:00Z"),
            at("2026-12-13T01:00:00Z"),
            at("2026-12-20T01:00:00Z"),
        ]
    );
    assert!(
        fired
            .iter()
            .all(|t| t.weekday() == Weekday::Sun && t.hour() == 1 && t.minute() == 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_fire_already_past_does_not_wait() {
    let clock = Clock::tokio_at(at("2026-12-01T12:00:00Z"));
    let before = tokio::time::Instant::now();
    clock.sleep_until(at("2026-12-01T11:00:00Z")).await;
    assert_eq!(tokio::time::Instant::now(), before);
}

//! Cron schedules: standard 5-field crontab expressions (minute, hour, day of month, month, day
//! of week with 0 = Sunday, as crontab(5)), or 6 fields with a leading seconds field; parsed by
//! croner. Pure: times in, times out.

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(text.trim())
            .map_err(|e| format!("invalid schedule '{text}': {e}"))?;
        Ok(Schedule {
            text: text.trim().to_string(),
            cron,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first fire strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }

    /// The last fire at or before `t` (what a daemon that was down may have missed).
    pub fn previous(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_previous_occurrence(&t, true).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Timelike, Weekday};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn zero_is_sunday_at_one_in_the_morning() {
        let s = Schedule::parse("0 1 * * 0").unwrap();
        // 2026-12-01 is a Tuesday.
        let next = s.next_after(at("2026-12-01T12:00:00Z")).unwrap();
        assert_eq!(next, at("2026-12-06T01:00:00Z"));
        assert_eq!(next.weekday(), Weekday::Sun);
        assert_eq!((next.hour(), next.minute(), next.second()), (1, 0, 0));
        // Exactly at a fire, the next one is a week later; the previous is that very fire.
        assert_eq!(s.next_after(next).unwrap(), at("2026-12-13T01:00:00Z"));
        assert_eq!(s.previous(next).unwrap(), next);
        assert_eq!(
            s.previous(at("2026-12-05T23:00:00Z")).unwrap(),
            at("2026-11-29T01:00:00Z")
        );
        // 7 is Sunday too, as in crontab(5).
        let seven = Schedule::parse("0 1 * * 7").unwrap();
        assert_eq!(seven.next_after(at("2026-12-01T12:00:00Z")), Some(next));
    }

    #[test]
    fn five_fields_are_minutes_and_six_start_with_seconds() {
        let m = Schedule::parse("*/15 * * * *").unwrap();
        assert_eq!(
            m.next_after(at("2026-12-01T10:07:30Z")).unwrap(),
            at("2026-12-01T10:15:00Z")
        );
        let s = Schedule::parse("*/2 * * * * *").unwrap();
        assert_eq!(
            s.next_after(at("2026-12-01T10:07:31Z")).unwrap(),
            at("2026-12-01T10:07:32Z")
        );
        for bad in ["", "61 * * * *", "* * * *", "0 1 * * 8", "every day"] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }
}

//! Wall-clock time for the scheduler. In production it is the system clock; in tests it is
//! derived from tokio's clock, so `tokio::time::pause` and `advance` drive the schedule.

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy)]
pub enum Clock {
    System,
    /// `base` at tokio's `start`, moving as tokio's clock moves.
    Tokio {
        base: DateTime<Utc>,
        start: tokio::time::Instant,
    },
}

impl Clock {
    pub fn tokio_at(base: DateTime<Utc>) -> Clock {
        Clock::Tokio {
            base,
            start: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio { base, start } => {
                let gone = tokio::time::Instant::now().duration_since(*start);
                *base + chrono::Duration::from_std(gone).unwrap_or_default()
            }
        }
    }

    /// Sleeps until `t` on this clock (at once if it has passed).
    pub async fn sleep_until(&self, t: DateTime<Utc>) {
        let left = (t - self.now()).to_std().unwrap_or_default();
        tokio::time::sleep(left).await;
    }
}

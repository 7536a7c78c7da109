//! pgkeep's own retry of transient store failures, on top of object_store's: some transport
//! failures (a pooled connection the peer reset, "connection was not ready") surface without
//! being retried there. Only errors classified `Unreachable` are retried, with exponential
//! backoff and full jitter; the command's overall deadline bounds the whole.

use std::future::Future;
use std::time::Duration;

use crate::error::{ErrorKind, Result};

const ATTEMPTS: u32 = 5;
const FIRST_PAUSE: Duration = Duration::from_millis(50);

pub async fn transient<T, F, Fut>(mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.kind() == ErrorKind::Unreachable && attempt < ATTEMPTS => {
                let cap = FIRST_PAUSE * 2u32.pow(attempt - 1);
                let pause = cap.mul_f64(jitter());
                tracing::debug!(attempt, error = %e.one_line(), "transient store error; retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A factor in [0, 1) that differs between processes and calls (no RNG crate needed for this).
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mixed =
        (u64::from(nanos) ^ u64::from(std::process::id())).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_only_and_gives_up() {
        let calls = AtomicU32::new(0);
        let r: Result<u32> = transient(|| async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n < 2 {
                Err(Error::new(ErrorKind::Unreachable, "reset"))
            } else {
                Ok(n)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 2);

        calls.store(0, Ordering::SeqCst);
        let r: Result<()> = transient(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::new(ErrorKind::Auth, "denied"))
        })
        .await;
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Auth);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "auth errors are not retried"
        );

        calls.store(0, Ordering::SeqCst);
        let r: Result<()> = transient(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::new(ErrorKind::Unreachable, "down"))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), ATTEMPTS);
    }

    #[test]
    fn jitter_is_a_fraction() {
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }
}

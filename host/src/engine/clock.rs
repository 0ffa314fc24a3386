//! The engine's clock: what time it is, and waiting for a time. Retry
//! backoff and the workflow deadline go through it, so tests can replace
//! real time with a [`ManualClock`] and check delays without sleeping.

use std::time::Duration;

use tokio::sync::watch;

use crate::model::Timestamp;

/// A source of time for the engine.
#[async_trait::async_trait]
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// Resolves once `now() >= at`.
    async fn sleep_until(&self, at: Timestamp);
}

/// Real time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[async_trait::async_trait]
impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    async fn sleep_until(&self, at: Timestamp) {
        let left = at.duration_since(Timestamp::now());
        if let Ok(left) = Duration::try_from(left) {
            tokio::time::sleep(left).await;
        }
    }
}

/// Time that moves only when told to. For tests.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<Timestamp>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: watch::Sender::new(start),
        }
    }

    /// Moves the clock forward by `by`, waking whoever waits for a time
    /// now reached.
    pub fn advance(&self, by: Duration) {
        let by = jiff::SignedDuration::try_from(by).unwrap_or(jiff::SignedDuration::MAX);
        self.now.send_modify(|t| {
            *t = t.checked_add(by).unwrap_or(Timestamp::MAX);
        });
    }
}

#[async_trait::async_trait]
impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    async fn sleep_until(&self, at: Timestamp) {
        let mut rx = self.now.subscribe();
        loop {
            if *rx.borrow_and_update() >= at {
                return;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_only_when_advanced() {
        let start = Timestamp::UNIX_EPOCH;
        let clock = std::sync::Arc::new(ManualClock::new(start));
        let at = start
            .checked_add(jiff::SignedDuration::from_secs(10))
            .unwrap();
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(at).await }
        });
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(9));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(clock.now(), at);
    }
}

//! The engine's clock: what time it is, and waiting for a time. Retry
//! backoff and the workflow deadline go through it, so tests can replace
//! real time with a [`ManualClock`] and check delays without sleeping.

use std::collections::BTreeMap;
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
///
/// It also knows who is asleep on it: a test can wait until the engine
/// sleeps until an expected instant ([`ManualClock::sleeping_until`]), or see
/// that nothing waits for any time ([`ManualClock::sleepers`]), instead of
/// asserting that nothing happened after a real-time sleep.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<Timestamp>,
    /// How many tasks sleep until each instant.
    sleepers: watch::Sender<BTreeMap<Timestamp, usize>>,
}

/// Takes a sleeper off the list when its sleep ends or is dropped.
struct Sleeping<'a> {
    sleepers: &'a watch::Sender<BTreeMap<Timestamp, usize>>,
    at: Timestamp,
}

impl Drop for Sleeping<'_> {
    fn drop(&mut self) {
        self.sleepers.send_modify(|m| {
            if let Some(n) = m.get_mut(&self.at) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.at);
                }
            }
        });
    }
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: watch::Sender::new(start),
            sleepers: watch::Sender::new(BTreeMap::new()),
        }
    }

    /// The instants tasks sleep until right now, earliest first.
    pub fn sleepers(&self) -> Vec<Timestamp> {
        self.sleepers.borrow().keys().copied().collect()
    }

    /// Waits, for at most `within` of real time, until no task sleeps on
    /// this clock; returns whether that happened (then nothing waits for
    /// any time to pass).
    pub async fn no_sleepers(&self, within: Duration) -> bool {
        let mut rx = self.sleepers.subscribe();
        tokio::time::timeout(within, rx.wait_for(BTreeMap::is_empty))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits, for at most `within` of real time, until some task sleeps
    /// until exactly `at`; returns whether one does.
    pub async fn sleeping_until(&self, at: Timestamp, within: Duration) -> bool {
        let mut rx = self.sleepers.subscribe();
        tokio::time::timeout(within, rx.wait_for(|m| m.contains_key(&at)))
            .await
            .is_ok_and(|r| r.is_ok())
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
        if *rx.borrow_and_update() >= at {
            return;
        }
        self.sleepers
            .send_modify(|m| *m.entry(at).or_default() += 1);
        let _sleeping = Sleeping {
            sleepers: &self.sleepers,
            at,
        };
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
        assert!(clock.sleeping_until(at, Duration::from_secs(5)).await);
        clock.advance(Duration::from_secs(9));
        // Still asleep, on the same instant.
        assert!(clock.sleeping_until(at, Duration::from_secs(5)).await);
        assert_eq!(clock.sleepers(), [at]);
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(clock.now(), at);
        assert!(clock.sleepers().is_empty());
        // A sleep for a time already reached returns at once, unlisted.
        clock.sleep_until(at).await;
        assert!(clock.sleepers().is_empty());
    }
}

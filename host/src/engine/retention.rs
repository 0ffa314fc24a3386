//! Retention: finished executions are deleted once they have been finished
//! for longer than the retention (`execution-retention`), so that the store
//! holds the recent history and whatever is unfinished, not everything that
//! ever ran.
//!
//! Every node sweeps (the store's deletion is safe to run from several at
//! once) every quarter of the retention, kept between [`MIN_EVERY`] and
//! [`MAX_EVERY`]. A sweep deletes in batches of [`BATCH`]
//! until a batch comes back short, or [`MAX_BATCHES`] went: a backlog (the
//! first sweep after turning retention on) is worked off over several
//! sweeps instead of in one long write. The sweep sleeps in real time and
//! takes its cutoff from the engine's clock, the clock `finished_at` was
//! stamped by.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Inner, dag};

/// Executions one deletion takes at most.
pub const BATCH: usize = 1000;
/// Deletions one sweep makes at most.
const MAX_BATCHES: usize = 50;
/// The shortest time between sweeps.
const MIN_EVERY: Duration = Duration::from_millis(100);
/// The longest time between sweeps.
const MAX_EVERY: Duration = Duration::from_secs(60);

/// Starts the sweep when the engine has a retention.
pub(super) fn start(inner: &Arc<Inner>) {
    if let Some(keep) = inner.retention {
        tokio::spawn(run(Arc::downgrade(inner), keep));
    }
}

async fn run(weak: Weak<Inner>, keep: Duration) {
    let every = (keep / 4).clamp(MIN_EVERY, MAX_EVERY);
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.stopped.is_cancelled() {
            return;
        }
        sweep(&inner, keep).await;
    }
}

/// One sweep: deletes what finished more than `keep` ago.
async fn sweep(inner: &Inner, keep: Duration) {
    let before = dag::sub(inner.clock.now(), keep);
    let mut deleted = 0;
    for _ in 0..MAX_BATCHES {
        match inner.store.purge_finished(before, BATCH).await {
            Ok(n) => {
                deleted += n;
                if n < BATCH as u64 {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "deleting executions past the retention failed; the next sweep tries again");
                break;
            }
        }
    }
    if deleted > 0 {
        tracing::debug!(
            count = deleted,
            "deleted executions finished longer ago than the retention"
        );
    }
}

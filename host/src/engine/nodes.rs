//! This process among the others sharing the store: its heartbeat, and
//! what it does with the hints they send.
//!
//! The node registers with its first heartbeat before the engine starts
//! (so it is listed at once) and beats every [`HEARTBEAT`]; each beat also
//! forgets the nodes silent for [`FORGET_AFTER`]. Hints (see
//! [`store::Hint`]) only make things sooner: due work wakes the claim loop,
//! an event wakes the driver of its execution here (or the claim loop), a
//! committed state wakes the waiters for that execution, a schedule change
//! wakes the schedule loop, and a resync wakes them all. Without hints, the
//! same things happen at the next poll.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use super::{Error, Inner, dag, work};
use crate::store::{self, Heartbeat, Hint};

/// How often a node records its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

/// How long a node that stopped beating stays listed.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Registers the node and starts its heartbeat and hint loops.
pub(super) async fn start(inner: &Arc<Inner>) -> Result<(), Error> {
    beat(inner).await?;
    tokio::spawn(heartbeat_loop(Arc::downgrade(inner)));
    if let Some(hints) = inner.store.hints() {
        tokio::spawn(hint_loop(Arc::downgrade(inner), hints));
    }
    Ok(())
}

async fn beat(inner: &Inner) -> Result<(), store::Error> {
    let now = inner.clock.now();
    inner
        .store
        .heartbeat(&Heartbeat {
            node: &inner.node,
            started_at: inner.started_at,
            claim_work: inner.claim_work,
            at: now,
        })
        .await?;
    let before = dag::sub(now, FORGET_AFTER);
    inner.store.forget_nodes(before).await?;
    Ok(())
}

async fn heartbeat_loop(weak: Weak<Inner>) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let Some(inner) = weak.upgrade() else { return };
        if let Err(e) = beat(&inner).await {
            tracing::warn!(error = %e, "recording this node's heartbeat failed; retrying");
        }
    }
}

async fn hint_loop(weak: Weak<Inner>, mut hints: tokio::sync::broadcast::Receiver<Hint>) {
    loop {
        let hint = match hints.recv().await {
            Ok(hint) => hint,
            // Fell behind: whatever was dropped, look at everything.
            Err(RecvError::Lagged(_)) => Hint::Resync,
            Err(RecvError::Closed) => return,
        };
        let Some(inner) = weak.upgrade() else { return };
        match hint {
            Hint::Work => inner.wake.notify_one(),
            Hint::Event(id) => work::nudge(&inner, &id),
            Hint::Committed(id, version) => inner.watchers.poke(&id, version),
            Hint::Schedules => inner.schedule_wake.notify_one(),
            Hint::Resync => {
                inner.wake.notify_one();
                inner.schedule_wake.notify_one();
                inner.watchers.poke_all();
                let held: Vec<_> = inner.lock_drivers().values().cloned().collect();
                for d in held {
                    d.events.notify_one();
                }
            }
        }
    }
}

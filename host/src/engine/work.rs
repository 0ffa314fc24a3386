//! How this process takes work from the store: the claim loop, lease
//! renewal, and handing events to the driver of an execution.
//!
//! The claim loop takes due executions as driver slots (`max_in_flight`
//! permits) free up, earliest first. It sleeps until the earliest `wake_at`
//! the store knows of (on the engine's clock, so a manual clock in tests
//! wakes timers when it moves), until it is woken in-process (a slot freed,
//! an execution parked, an event arrived), or for at most the poll interval:
//! the fallback that finds work other processes made due. The renewal loop
//! extends every lease this process holds in one batch, every fifth of the
//! lease time, and stops the driver of any lease it finds lost.
//!
//! Both loops hold the engine only weakly between rounds, so they end when
//! the engine is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::{Clock, Driven, Error, Inner, drive};
use crate::model::{Execution, ExecutionId, TenantId, Timestamp};
use crate::store::Lease;

/// The most executions one claim takes.
const CLAIM_BATCH: usize = 64;

/// Starts the claim and renewal loops.
pub(super) fn start(inner: &Arc<Inner>) {
    let weak = Arc::downgrade(inner);
    tokio::spawn(claim_loop(
        weak.clone(),
        inner.wake.clone(),
        inner.clock.clone(),
        inner.poll_interval,
    ));
    tokio::spawn(renew_loop(weak, inner.lease_ttl / 5));
}

/// Where [`Inner::unrouted`] stands, taken before a claim or a create so
/// that the driver it starts knows whether an event may have slipped past
/// it (see [`spawn_driver`]).
pub(super) fn unrouted_mark(inner: &Inner) -> u64 {
    inner.unrouted.load(Ordering::SeqCst)
}

/// Counts an event that found no driver here to tell; the caller holds the
/// `drivers` lock.
fn unrouted(inner: &Inner) {
    inner.unrouted.fetch_add(1, Ordering::SeqCst);
}

/// What a new driver knows of its inbox.
#[derive(Debug, Clone, Copy)]
pub(super) enum Inbox {
    /// It may hold events: read it first.
    Read,
    /// It was empty when the execution was claimed or created, and
    /// [`unrouted_mark`] stood here then.
    EmptyAt(u64),
}

/// Registers and starts the driver of a claimed execution. Without a permit
/// the driver only acts on a cancel or a pause (see [`deliver`]).
///
/// A driver reads the inbox when it starts unless the claim saw it empty
/// (a transaction saved on the hot path). An event stored after the claim
/// reaches the driver anyway: whoever stored it tells the registered
/// driver, or, finding none yet, counts it in [`Inner::unrouted`] under
/// the same lock this registration takes, and a moved count makes the
/// driver read its inbox after all. A hint from another node that is lost
/// is made up for by the lease renewal, as for any running driver.
pub(super) fn spawn_driver(
    inner: &Arc<Inner>,
    exec: Execution,
    permit: Option<OwnedSemaphorePermit>,
    inbox: Inbox,
) {
    let id = exec.execution_id.clone();
    let driven = Arc::new(Driven {
        events: Notify::new(),
        lost: CancellationToken::new(),
        finished: AtomicBool::new(false),
    });
    let read_inbox = {
        let mut drivers = inner.lock_drivers();
        drivers.insert(id.clone(), driven.clone());
        match inbox {
            Inbox::Read => true,
            Inbox::EmptyAt(mark) => unrouted_mark(inner) != mark,
        }
    };
    let task = {
        let inner = inner.clone();
        async move {
            let slot = permit.is_some();
            drive::drive(&inner, exec, &driven, slot, read_inbox).await;
            {
                let mut drivers = inner.lock_drivers();
                if drivers.get(&id).is_some_and(|d| Arc::ptr_eq(d, &driven)) {
                    drivers.remove(&id);
                }
            }
            drop(permit);
            // An execution that parked (or was handed back) has a due time
            // the claim loop must learn; a freed slot matters only when the
            // loop found none free. A finished execution on a node with
            // slots to spare costs no claim round. The permit is dropped
            // before `starved` is read, and the loop sets `starved` before
            // it looks for a permit, so a loop that found none is woken.
            // Due work the last round left (a tenant at its running
            // limit) may be claimable now that this one ended.
            let finished = driven.finished.load(Ordering::SeqCst);
            if !finished
                | inner.starved.swap(false, Ordering::SeqCst)
                | inner.due_left.load(Ordering::SeqCst)
            {
                inner.wake.notify_one();
            }
        }
    };
    match &inner.runtime {
        Some(rt) => drop(rt.spawn(task)),
        None => drop(tokio::spawn(task)),
    }
}

/// A driver slot for an execution about to be stored, with the lease to
/// store it under, so that this process starts it at once (the fast path);
/// `None` when every slot is taken.
pub(super) fn fast_slot(inner: &Inner) -> Option<(OwnedSemaphorePermit, Lease)> {
    if !inner.claim_work || inner.draining.is_cancelled() {
        return None;
    }
    let permit = inner.in_flight.clone().try_acquire_owned().ok()?;
    Some((permit, inner.lease()))
}

/// Starts a new execution just stored at version 1: its driver at once
/// when it was stored under a [`fast_slot`], else the claim loop takes it
/// from the store.
pub(super) fn launch(
    inner: &Arc<Inner>,
    mut exec: Execution,
    permit: Option<OwnedSemaphorePermit>,
    mark: u64,
) {
    exec.version = 1;
    match permit {
        // Nothing was in its inbox before it existed.
        Some(permit) => spawn_driver(inner, exec, Some(permit), Inbox::EmptyAt(mark)),
        None => inner.wake.notify_one(),
    }
}

/// Makes the driver of an execution read its inbox: the one in this
/// process if there is one, else a driver started here for the purpose
/// (claimed without a slot, since acting on a cancel or a pause runs
/// nothing). If another process holds the execution, the store's hint or
/// its renewal tells it; a process that claims no work leaves the event to
/// those that do.
pub(super) async fn deliver(
    inner: &Arc<Inner>,
    tenant: &TenantId,
    id: &ExecutionId,
) -> Result<(), Error> {
    if let Some(d) = inner.lock_drivers().get(id) {
        d.events.notify_one();
        return Ok(());
    }
    if !inner.claim_work || inner.draining.is_cancelled() {
        return Ok(());
    }
    let claimed = inner
        .store
        .claim_execution(&inner.lease(), inner.clock.now(), tenant, id)
        .await?;
    match claimed {
        Some(exec) => spawn_driver(inner, exec, None, Inbox::Read),
        None => {
            // Claimed by this process's claim loop meanwhile (its driver
            // is told now, or reads the inbox when it starts), or held
            // elsewhere.
            let drivers = inner.lock_drivers();
            match drivers.get(id) {
                Some(d) => d.events.notify_one(),
                None => unrouted(inner),
            }
        }
    }
    Ok(())
}

/// Tells whoever should act on a new event for an execution that it is
/// there: its driver in this process, else the claim loop (the event made
/// the execution due). Another process holding it finds the event at its
/// next renewal.
pub(super) fn nudge(inner: &Inner, id: &ExecutionId) {
    let drivers = inner.lock_drivers();
    match drivers.get(id) {
        Some(d) => d.events.notify_one(),
        None => {
            unrouted(inner);
            inner.wake.notify_one();
        }
    }
}

/// What one round of the claim loop found.
enum Round {
    /// The batch was full: claim again at once.
    Again,
    /// Sleep until this time (or a wake-up, or the poll interval).
    Until(Option<Timestamp>),
}

async fn claim_loop(
    weak: Weak<Inner>,
    wake: Arc<Notify>,
    clock: Arc<dyn Clock>,
    poll_interval: Duration,
) {
    loop {
        let (round, draining) = {
            let Some(inner) = weak.upgrade() else { return };
            if inner.draining.is_cancelled() {
                return;
            }
            let round = match claim_round(&inner).await {
                Ok(round) => round,
                Err(e) => {
                    tracing::error!(error = %e, "claiming due executions failed; retrying");
                    Round::Until(None)
                }
            };
            (round, inner.draining.clone())
        };
        match round {
            Round::Again => tokio::task::yield_now().await,
            Round::Until(at) => {
                let timer = async {
                    match at {
                        Some(at) => clock.sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = wake.notified() => {}
                    () = timer => {}
                    () = tokio::time::sleep(poll_interval) => {}
                    () = draining.cancelled() => return,
                }
            }
        }
    }
}

async fn claim_round(inner: &Arc<Inner>) -> Result<Round, Error> {
    // Set before looking for permits (see `spawn_driver`); cleared once
    // some are held, since this round then claims whatever is due.
    inner.starved.store(true, Ordering::SeqCst);
    let mut permits = Vec::new();
    while permits.len() < CLAIM_BATCH {
        match inner.in_flight.clone().try_acquire_owned() {
            Ok(p) => permits.push(p),
            Err(_) => break,
        }
    }
    if permits.is_empty() {
        // Every slot is taken; a driver that ends wakes the loop.
        return Ok(Round::Until(None));
    }
    inner.starved.store(false, Ordering::SeqCst);
    let wanted = permits.len();
    let now = inner.clock.now();
    let mark = unrouted_mark(inner);
    let round = inner
        .store
        .claim_round(&inner.lease(), now, wanted, &inner.fairness)
        .await?;
    let full = round.claimed.len() == wanted;
    for claimed in round.claimed {
        let permit = permits.pop();
        let inbox = if claimed.has_events {
            Inbox::Read
        } else {
            Inbox::EmptyAt(mark)
        };
        spawn_driver(inner, claimed.execution, permit, inbox);
    }
    drop(permits);
    if full {
        return Ok(Round::Again);
    }
    let next = round.next_wake_at;
    // A due time already past that the claim did not take (a tenant at its
    // running limit, or a lease held elsewhere that lapses at a time this
    // clock already shows) is retried when a driver here ends or at the
    // next poll, not in a busy loop.
    inner
        .due_left
        .store(next.is_some_and(|at| at <= now), Ordering::SeqCst);
    Ok(Round::Until(next.filter(|&at| at > now)))
}

async fn renew_loop(weak: Weak<Inner>, every: Duration) {
    let every = every.max(Duration::from_millis(20));
    let now = match weak.upgrade() {
        Some(inner) => inner.renew_now.clone(),
        None => return,
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = now.notified() => {}
        }
        let Some(inner) = weak.upgrade() else { return };
        let held: Vec<(ExecutionId, Arc<Driven>)> = inner
            .lock_drivers()
            .iter()
            .map(|(id, d)| (id.clone(), d.clone()))
            .collect();
        if held.is_empty() {
            continue;
        }
        let ids: Vec<ExecutionId> = held.iter().map(|(id, _)| id.clone()).collect();
        match inner.store.renew_leases(&inner.lease(), &ids).await {
            Ok(renewed) => {
                let renewed: std::collections::HashMap<ExecutionId, bool> =
                    renewed.into_iter().map(|h| (h.id, h.has_events)).collect();
                let lost = held.len() - renewed.len();
                if lost > 0 {
                    tracing::warn!(
                        count = lost,
                        "the lease of executions this node drove was lost (another node took them over, or they ended); their drivers stop"
                    );
                }
                for (id, driven) in held {
                    match renewed.get(&id) {
                        Some(true) => driven.events.notify_one(),
                        Some(false) => {}
                        // Not renewed: taken over, or released by a driver
                        // that ended since the list was made (its token is
                        // then no longer looked at).
                        None => driven.lost.cancel(),
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "renewing leases failed; retrying"),
        }
    }
}

//! Waiting for an execution to change: sync calls, long polls and
//! `wait_until_step`.
//!
//! A waiter subscribes to the execution's committed states before it reads
//! the store, so no commit falls between the read and the subscription.
//! Drivers in this process publish every state right after the store
//! committed it. For executions driven elsewhere, a hint from the other
//! process (see `nodes`) pokes the waiter to read the store at once, and
//! without one the waiter reads the store every poll interval. A state is
//! taken only if its version is newer than the one the waiter has.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::{Error, Inner, Until};
use crate::model::{Execution, ExecutionId, TenantId};

/// A committed state of an execution, with the version the commit gave it;
/// without the state when another process committed it (read the store).
#[derive(Debug, Clone)]
pub(super) struct Published {
    pub(super) version: u64,
    pub(super) execution: Option<Arc<Execution>>,
}

/// The subscriptions, by execution. An entry exists only while a waiter
/// holds a receiver.
#[derive(Default)]
pub(super) struct Watchers {
    senders: Mutex<HashMap<ExecutionId, watch::Sender<Option<Published>>>>,
}

impl Watchers {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ExecutionId, watch::Sender<Option<Published>>>> {
        self.senders.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many executions have waiters.
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Publishes a committed state to the execution's waiters, if any.
    pub(super) fn publish(&self, id: &ExecutionId, state: Published) {
        if let Some(tx) = self.lock().get(id) {
            tx.send_replace(Some(state));
        }
    }

    /// Tells the execution's waiters, if any, that another process
    /// committed `version`: they read the store if they have an older one.
    pub(super) fn poke(&self, id: &ExecutionId, version: u64) {
        self.publish(
            id,
            Published {
                version,
                execution: None,
            },
        );
    }

    /// Makes every waiter read the store (hints may have been missed).
    pub(super) fn poke_all(&self) {
        for tx in self.lock().values() {
            tx.send_replace(Some(Published {
                version: u64::MAX,
                execution: None,
            }));
        }
    }

    pub(super) fn subscribe<'a>(&'a self, id: &ExecutionId) -> Subscription<'a> {
        let rx = self
            .lock()
            .entry(id.clone())
            .or_insert_with(|| watch::Sender::new(None))
            .subscribe();
        Subscription {
            watchers: self,
            id: id.clone(),
            rx: Some(rx),
        }
    }
}

/// A waiter's receiver; dropping it removes the entry once nobody else
/// waits for the execution.
pub(super) struct Subscription<'a> {
    watchers: &'a Watchers,
    id: ExecutionId,
    rx: Option<watch::Receiver<Option<Published>>>,
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        let mut senders = self.watchers.lock();
        self.rx = None;
        if senders
            .get(&self.id)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            senders.remove(&self.id);
        }
    }
}

/// Waits up to `timeout` for `until`; returns the newest state seen.
pub(super) async fn wait(
    inner: &Inner,
    tenant: &TenantId,
    id: &ExecutionId,
    until: &Until,
    timeout: Duration,
) -> Result<Execution, Error> {
    let sub = inner.watchers.subscribe(id);
    let current = read(inner, tenant, id).await?;
    wait_from(inner, sub, tenant, current, until, timeout).await
}

async fn read(inner: &Inner, tenant: &TenantId, id: &ExecutionId) -> Result<Execution, Error> {
    inner
        .store
        .execution(tenant, id)
        .await?
        .ok_or_else(|| Error::ExecutionNotFound(id.to_string()))
}

/// Waits as [`wait`] does, from `current`, a state known to be committed
/// no earlier than `sub` was taken (so no commit falls between them): the
/// state a submission has just stored, which a sync call then need not read
/// back.
pub(super) async fn wait_from(
    inner: &Inner,
    mut sub: Subscription<'_>,
    tenant: &TenantId,
    mut current: Execution,
    until: &Until,
    timeout: Duration,
) -> Result<Execution, Error> {
    let id = current.execution_id.clone();
    let deadline = tokio::time::Instant::now() + timeout;
    let Some(rx) = sub.rx.as_mut() else {
        return Ok(current);
    };
    loop {
        if until.reached(&current) {
            return Ok(current);
        }
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return Ok(current);
                }
                let published = rx.borrow_and_update().clone();
                match published {
                    Some(p) if p.version > current.version => match p.execution {
                        Some(execution) => {
                            let mut newer = (*execution).clone();
                            newer.version = p.version;
                            current = newer;
                        }
                        None => {
                            let stored = read(inner, tenant, &id).await?;
                            if stored.version > current.version {
                                current = stored;
                            }
                        }
                    },
                    _ => {}
                }
            }
            () = tokio::time::sleep(inner.poll_interval) => {
                let stored = read(inner, tenant, &id).await?;
                if stored.version > current.version {
                    current = stored;
                }
            }
            () = tokio::time::sleep_until(deadline) => return Ok(current),
            // The engine shut down: nothing here will change it any more.
            () = inner.stopped.cancelled() => return Ok(current),
        }
    }
}

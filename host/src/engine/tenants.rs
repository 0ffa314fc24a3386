//! A tenant's suspension and deletion as the engine carries them out: the
//! store takes the tenant's work off the queue (or removes it), and this
//! process's loops and caches learn of it at once.
//!
//! It also keeps what the engine knows of tenants' fair shares: their
//! weights and running limits (read from the store, briefly remembered)
//! and which executions a sync call waits for here.

use hashlink::LruCache;

use super::{Engine, Error, Inner};
use crate::model::{Execution, ExecutionId, Quotas, Status, TenantId};
use crate::store;

impl Engine {
    /// Suspends a tenant (`suspend`) or makes it active again; see
    /// [`crate::store::Store::suspend_tenant`]. `None` when there is no such tenant. This
    /// process's drivers of the tenant's executions stop at once; other
    /// nodes' stop at their next renewal or commit.
    pub async fn suspend_tenant(
        &self,
        id: &TenantId,
        suspend: bool,
    ) -> Result<Option<store::Tenant>, Error> {
        let inner = &self.inner;
        let at = suspend.then(|| inner.clock.now());
        let tenant = inner.store.suspend_tenant(id, at).await?;
        if tenant.is_some() {
            if suspend {
                inner.renew_now.notify_one();
            } else {
                inner.wake.notify_one();
                inner.schedule_wake.notify_one();
            }
        }
        Ok(tenant)
    }

    /// Deletes a tenant with everything it owns; see
    /// [`crate::store::Store::delete_tenant`]. False when there is no such tenant.
    pub async fn delete_tenant(&self, id: &TenantId) -> Result<bool, Error> {
        let inner = &self.inner;
        let deleted = inner.store.delete_tenant(id).await?;
        if deleted {
            self.forget_steps(id);
            inner.definitions.forget_tenant(id);
            inner.renew_now.notify_one();
        }
        Ok(deleted)
    }
}

/// How long this process trusts what it read of a tenant's weight and
/// running limit. A change made through this process's API applies at
/// once ([`Engine::forget_share`]); one made through another node's within
/// this long.
const SHARE_TTL: std::time::Duration = std::time::Duration::from_secs(2);
/// The most tenants whose share this process remembers; past it the one
/// read longest ago is forgotten (and read again when next needed).
const MAX_SHARES: usize = 10_000;

/// What the engine needs of a tenant's quotas to share the work out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Share {
    /// Its weight (default 1).
    pub weight: u32,
    /// Its running limit: its own, else the server's.
    pub max_running: Option<u64>,
    /// Its step ceilings (its own, else the server's).
    pub ceiling: crate::model::Overrides,
    /// The hosts its steps may call (its egress allowlist).
    pub egress: std::sync::Arc<[crate::model::HostPattern]>,
}

/// Tenants' shares as this process last read them, each with when: at
/// most [`MAX_SHARES`], the one read longest ago dropped first (it would
/// be the first to be read again anyway).
#[derive(Debug)]
pub(super) struct Shares {
    map: std::sync::Mutex<LruCache<TenantId, (Share, std::time::Instant)>>,
}

impl Default for Shares {
    fn default() -> Self {
        Self::with_bound(MAX_SHARES)
    }
}

impl Shares {
    fn with_bound(max: usize) -> Self {
        Self {
            map: std::sync::Mutex::new(LruCache::new(max)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<TenantId, (Share, std::time::Instant)>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What was read of `tenant`'s share less than [`SHARE_TTL`] ago.
    fn fresh(&self, tenant: &TenantId) -> Option<Share> {
        self.lock()
            .peek(tenant)
            .filter(|(_, at)| at.elapsed() < SHARE_TTL)
            .map(|(share, _)| share.clone())
    }

    /// Remembers `share`, read of `tenant` just now.
    fn remember(&self, tenant: &TenantId, share: Share) {
        self.lock()
            .insert(tenant.clone(), (share, std::time::Instant::now()));
    }

    /// Forgets what was read of `tenant`.
    fn forget(&self, tenant: &TenantId) {
        self.lock().remove(tenant);
    }
}

/// A tenant's share, read from the store when what this process knows is
/// older than [`SHARE_TTL`]. A store that cannot answer gives the default
/// share (remembered as briefly as any).
pub(super) async fn share(inner: &Inner, tenant: &TenantId) -> Share {
    if let Some(share) = inner.shares.fresh(tenant) {
        return share;
    }
    let (quotas, egress) = match inner.store.tenant(tenant).await {
        Ok(Some(t)) => (t.quotas, t.egress),
        Ok(None) => (Quotas::default(), Vec::new()),
        Err(e) => {
            tracing::warn!(error = %e, tenant = %tenant, "reading a tenant's weight and running limit failed; using the defaults");
            (Quotas::default(), Vec::new())
        }
    };
    let quotas = quotas.or(&inner.default_quotas);
    let share = Share {
        weight: quotas.weight.unwrap_or(1),
        max_running: quotas.max_concurrent_executions,
        ceiling: quotas.step_ceiling(),
        egress: egress.into(),
    };
    inner.shares.remember(tenant, share.clone());
    share
}

/// Marks an execution as waited for by a sync call in this process while
/// it lives: its attempts go before its tenant's other waiting ones.
pub(super) struct SyncCall<'a> {
    inner: &'a Inner,
    id: ExecutionId,
}

impl<'a> SyncCall<'a> {
    pub(super) fn new(inner: &'a Inner, id: &ExecutionId) -> Self {
        *inner
            .sync_calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.clone())
            .or_insert(0) += 1;
        Self {
            inner,
            id: id.clone(),
        }
    }
}

impl Drop for SyncCall<'_> {
    fn drop(&mut self) {
        let mut calls = self
            .inner
            .sync_calls
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = calls.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                calls.remove(&self.id);
            }
        }
    }
}

/// Whether a sync call in this process waits for the execution.
pub(super) fn is_sync(inner: &Inner, id: &ExecutionId) -> bool {
    inner
        .sync_calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(id)
}

impl Engine {
    /// Forgets what this process knew of a tenant's weight and running
    /// limit (the admin changed its quotas).
    pub fn forget_share(&self, tenant: &TenantId) {
        self.inner.shares.forget(tenant);
    }

    /// About how long this process's workers take for `attempts` attempts
    /// of the tenant, from what its attempts took so far: what a client
    /// over the backlog limit is told to wait.
    pub async fn backlog_wait(&self, tenant: &TenantId, attempts: u64) -> std::time::Duration {
        let share = share(&self.inner, tenant).await;
        self.inner
            .attempts
            .estimate(tenant, attempts, share.max_running)
    }

    /// Why a queued execution does not start, when its tenant runs as many
    /// executions as its running limit allows; `None` otherwise.
    pub async fn blocked(&self, exec: &Execution) -> Result<Option<String>, Error> {
        if exec.status != Status::Queued {
            return Ok(None);
        }
        let share = share(&self.inner, &exec.tenant_id).await;
        let Some(limit) = share.max_running else {
            return Ok(None);
        };
        let running = self.inner.store.running_count(&exec.tenant_id).await?;
        Ok((running >= limit).then(|| {
            format!(
                "max_concurrent_executions: the tenant runs {running} executions, its limit \
                 is {limit}; this one starts when one of them finishes or waits"
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(weight: u32) -> Share {
        Share {
            weight,
            max_running: None,
            ceiling: crate::model::Overrides::default(),
            egress: Vec::new().into(),
        }
    }

    #[test]
    fn shares_keep_the_most_recently_read_tenants_within_the_bound() {
        let shares = Shares::with_bound(100);
        let tenant = |i: usize| TenantId::new_unchecked(format!("ten_{i}"));
        for i in 0..250 {
            shares.remember(&tenant(i), share(u32::try_from(i).unwrap() + 1));
        }
        assert_eq!(shares.lock().len(), 100, "the bound holds, full");
        assert_eq!(shares.fresh(&tenant(149)), None, "the oldest went first");
        assert_eq!(shares.fresh(&tenant(150)), Some(share(151)));
        assert_eq!(shares.fresh(&tenant(249)), Some(share(250)));
        shares.forget(&tenant(249));
        assert_eq!(shares.fresh(&tenant(249)), None);
        assert_eq!(Shares::default().lock().capacity(), MAX_SHARES);
    }

    #[test]
    fn a_share_read_longer_ago_than_its_ttl_is_not_fresh() {
        let shares = Shares::with_bound(10);
        let t = TenantId::new_unchecked("ten_a");
        shares.remember(&t, share(3));
        assert_eq!(shares.fresh(&t), Some(share(3)));
        shares.lock().peek_mut(&t).unwrap().1 -= SHARE_TTL;
        assert_eq!(shares.fresh(&t), None);
    }
}

//! A tenant's suspension and deletion as the engine carries them out: the
//! store takes the tenant's work off the queue (or removes it), and this
//! process's loops and caches learn of it at once.

use super::{Engine, Error};
use crate::model::TenantId;
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
            inner
                .definitions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(tenant, _, _), _| tenant != id);
            inner.renew_now.notify_one();
        }
        Ok(deleted)
    }
}

//! Where the engine gets tenant secrets and callback signing secrets: the
//! vault in the server, nothing in engines built without one.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::{TenantId, Timestamp};

/// Where the engine gets tenant secrets' plain values.
#[async_trait::async_trait]
pub trait SecretSource: Send + Sync + 'static {
    /// The values of the named secrets that exist.
    async fn open(
        &self,
        tenant: &TenantId,
        names: &[String],
    ) -> Result<BTreeMap<String, String>, String>;
    /// The tenant's callback signing secrets, made on first use.
    async fn webhook_keys(
        &self,
        tenant: &TenantId,
        now: Timestamp,
    ) -> Result<crate::model::WebhookKeys, String>;
    /// Replaces the tenant's signing secret; the old one keeps signing
    /// until `now + window`.
    async fn rotate_webhook_secret(
        &self,
        tenant: &TenantId,
        now: Timestamp,
        window: Duration,
    ) -> Result<crate::model::WebhookKeys, String>;
}

/// A tenant without secrets, for engines that have no vault.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSecrets;

#[async_trait::async_trait]
impl SecretSource for NoSecrets {
    async fn open(
        &self,
        _tenant: &TenantId,
        _names: &[String],
    ) -> Result<BTreeMap<String, String>, String> {
        Ok(BTreeMap::new())
    }

    async fn webhook_keys(
        &self,
        _tenant: &TenantId,
        _now: Timestamp,
    ) -> Result<crate::model::WebhookKeys, String> {
        Err("this engine has no vault to keep signing secrets in".into())
    }

    async fn rotate_webhook_secret(
        &self,
        _tenant: &TenantId,
        _now: Timestamp,
        _window: Duration,
    ) -> Result<crate::model::WebhookKeys, String> {
        Err("this engine has no vault to keep signing secrets in".into())
    }
}

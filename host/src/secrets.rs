//! Tenant secrets, encrypted at rest.
//!
//! Values are sealed with XChaCha20-Poly1305 under one server key before
//! they reach the store, with the tenant and the secret's name as
//! associated data so that a sealed value cannot be moved to another tenant
//! or name. The key comes from config (`secrets-key`, base64) or from
//! `<data-dir>/secrets.key`, generated on first start with mode 0600.
//!
//! This module knows the cipher and the key file; it must not know HTTP.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::model::{TenantId, Timestamp, WebhookKeys, WebhookSecret};
use crate::store::{self, Store};

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "secrets.key";
/// The longest secret value accepted, in bytes.
pub const MAX_SECRET_BYTES: usize = 64 << 10;
const NONCE_BYTES: usize = 24;

/// Errors of the vault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key could not be loaded or created.
    #[error("secrets key: {0}")]
    Key(String),
    /// A stored value could not be opened with this key.
    #[error("secret `{0}` cannot be decrypted with this server's key")]
    Decrypt(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Seals and opens tenant secrets.
#[derive(Clone)]
pub struct Vault {
    cipher: Arc<XChaCha20Poly1305>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault([REDACTED])")
    }
}

/// Loads the key from `configured` (base64) or from the key file in
/// `data_dir`, creating the file on first start.
pub fn load_key(configured: Option<&str>, data_dir: &Path) -> Result<[u8; 32], Error> {
    let decode = |text: &str, from: &str| -> Result<[u8; 32], Error> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| Error::Key(format!("{from} is not base64: {e}")))?;
        bytes
            .try_into()
            .map_err(|_| Error::Key(format!("{from} must decode to exactly 32 bytes")))
    };
    if let Some(text) = configured {
        return decode(text, "`secrets-key`");
    }
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => decode(&text, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| Error::Key(e.to_string()))?;
            write_private(&path, STANDARD.encode(key).as_bytes())
                .map_err(|e| Error::Key(format!("cannot create {}: {e}", path.display())))?;
            Ok(key)
        }
        Err(e) => Err(Error::Key(format!("cannot read {}: {e}", path.display()))),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn aad(tenant: &TenantId, name: &str) -> Vec<u8> {
    format!("stephost-secret\0{}\0{name}", tenant.as_str()).into_bytes()
}

impl Vault {
    /// A vault over `store` with this key.
    pub fn new(key: [u8; 32], store: Arc<dyn Store>) -> Self {
        Self {
            cipher: Arc::new(XChaCha20Poly1305::new(&key.into())),
            store,
        }
    }

    /// Seals `value` for the slot `aad` names: a random nonce, then the
    /// ciphertext.
    fn seal(&self, value: &[u8], aad: &[u8]) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| Error::Key(e.to_string()))?;
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: value, aad })
            .map_err(|_| Error::Key("encryption failed".into()))?;
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        Ok(stored)
    }

    /// Opens what [`Vault::seal`] sealed for the same slot, as text;
    /// `what` names it in the error.
    fn unseal(&self, stored: &[u8], aad: &[u8], what: &str) -> Result<String, Error> {
        if stored.len() < NONCE_BYTES {
            return Err(Error::Decrypt(what.to_owned()));
        }
        let (nonce, body) = stored.split_at(NONCE_BYTES);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad })
            .map_err(|_| Error::Decrypt(what.to_owned()))?;
        String::from_utf8(plain).map_err(|_| Error::Decrypt(what.to_owned()))
    }

    /// Seals and stores a secret, replacing any earlier value.
    pub async fn put(&self, tenant: &TenantId, name: &str, value: &str) -> Result<(), Error> {
        let stored = self.seal(value.as_bytes(), &aad(tenant, name))?;
        self.store.put_secret(tenant, name, &stored).await?;
        Ok(())
    }

    /// The names of a tenant's secrets.
    pub async fn names(&self, tenant: &TenantId) -> Result<Vec<String>, Error> {
        Ok(self.store.secret_names(tenant).await?)
    }

    /// Deletes a secret; `false` if there was none.
    pub async fn delete(&self, tenant: &TenantId, name: &str) -> Result<bool, Error> {
        Ok(self.store.delete_secret(tenant, name).await?)
    }

    /// The plain values of the named secrets that exist.
    pub async fn open(
        &self,
        tenant: &TenantId,
        names: &[String],
    ) -> Result<BTreeMap<String, String>, Error> {
        let sealed = self.store.secrets(tenant, names).await?;
        let mut out = BTreeMap::new();
        for (name, stored) in sealed {
            let text = self.unseal(&stored, &aad(tenant, &name), &name)?;
            out.insert(name, text);
        }
        Ok(out)
    }

    /// The tenant's callback signing secrets, made (and stored) on first
    /// use.
    pub async fn webhook_keys(
        &self,
        tenant: &TenantId,
        now: Timestamp,
    ) -> Result<WebhookKeys, Error> {
        let stored = match self.store.webhook_secret(tenant).await? {
            Some(stored) => stored,
            None => {
                let fresh = WebhookSecret {
                    sealed: self.seal(new_webhook_secret()?.as_bytes(), &webhook_aad(tenant))?,
                    created_at: now,
                    previous: None,
                };
                // A concurrent first use may win: what is stored is the
                // tenant's secret either way.
                self.store.put_webhook_secret(tenant, &fresh, None).await?
            }
        };
        self.open_webhook(tenant, &stored)
    }

    /// Replaces the tenant's signing secret with a new one; the old one
    /// stays valid (callbacks carry both signatures) until `now + window`.
    pub async fn rotate_webhook_secret(
        &self,
        tenant: &TenantId,
        now: Timestamp,
        window: std::time::Duration,
    ) -> Result<WebhookKeys, Error> {
        let until = now
            .checked_add(
                jiff::SignedDuration::try_from(window).unwrap_or(jiff::SignedDuration::MAX),
            )
            .unwrap_or(Timestamp::MAX);
        loop {
            let old = match self.store.webhook_secret(tenant).await? {
                Some(old) => old,
                None => {
                    self.webhook_keys(tenant, now).await?;
                    continue;
                }
            };
            // The new secret must be told apart from the old one by its
            // time, which the write compares.
            let created_at = if now > old.created_at {
                now
            } else {
                old.created_at + jiff::SignedDuration::from_nanos(1)
            };
            let new = WebhookSecret {
                sealed: self.seal(new_webhook_secret()?.as_bytes(), &webhook_aad(tenant))?,
                created_at,
                previous: Some((old.sealed.clone(), until)),
            };
            let stored = self
                .store
                .put_webhook_secret(tenant, &new, Some(old.created_at))
                .await?;
            if stored.sealed == new.sealed {
                return self.open_webhook(tenant, &stored);
            }
            // Another rotation won the race: rotate again from its secret.
        }
    }

    fn open_webhook(
        &self,
        tenant: &TenantId,
        stored: &WebhookSecret,
    ) -> Result<WebhookKeys, Error> {
        let aad = webhook_aad(tenant);
        Ok(WebhookKeys {
            current: self.unseal(&stored.sealed, &aad, "webhook secret")?,
            created_at: stored.created_at,
            previous: stored
                .previous
                .as_ref()
                .map(|(sealed, until)| {
                    self.unseal(sealed, &aad, "previous webhook secret")
                        .map(|s| (s, *until))
                })
                .transpose()?,
        })
    }
}

/// The associated data of a tenant's webhook signing secret: a slot no
/// secret name can take (names cannot hold `\0`).
fn webhook_aad(tenant: &TenantId) -> Vec<u8> {
    format!("stephost-webhook-secret\0{}", tenant.as_str()).into_bytes()
}

/// A new signing secret: `whsec_` and 32 random bytes in base64, as
/// Standard Webhooks writes them.
fn new_webhook_secret() -> Result<String, Error> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| Error::Key(e.to_string()))?;
    Ok(format!("whsec_{}", STANDARD.encode(key)))
}

#[async_trait::async_trait]
impl crate::engine::SecretSource for Vault {
    async fn open(
        &self,
        tenant: &TenantId,
        names: &[String],
    ) -> Result<BTreeMap<String, String>, String> {
        Vault::open(self, tenant, names)
            .await
            .map_err(|e| e.to_string())
    }

    async fn webhook_keys(&self, tenant: &TenantId, now: Timestamp) -> Result<WebhookKeys, String> {
        Vault::webhook_keys(self, tenant, now)
            .await
            .map_err(|e| e.to_string())
    }

    async fn rotate_webhook_secret(
        &self,
        tenant: &TenantId,
        now: Timestamp,
        window: std::time::Duration,
    ) -> Result<WebhookKeys, String> {
        Vault::rotate_webhook_secret(self, tenant, now, window)
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{Durability, SqliteStore};

    #[tokio::test]
    async fn values_are_sealed_bound_to_their_slot_and_the_key_persists() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("db"), Durability::Off).unwrap());
        let key = load_key(None, dir.path()).unwrap();
        assert_eq!(
            load_key(None, dir.path()).unwrap(),
            key,
            "the key file is reused"
        );
        let vault = Vault::new(key, store.clone());
        let tenant = TenantId::generate();
        vault
            .put(&tenant, "api_key", "hunter2-value")
            .await
            .unwrap();
        let sealed = store.secrets(&tenant, &["api_key".into()]).await.unwrap();
        let raw = &sealed[0].1;
        assert!(
            !raw.windows(7).any(|w| w == b"hunter2"),
            "the store holds ciphertext only"
        );
        let opened = vault.open(&tenant, &["api_key".into()]).await.unwrap();
        assert_eq!(opened["api_key"], "hunter2-value");
        // Moved to another name or tenant, the sealed value does not open.
        store.put_secret(&tenant, "other", raw).await.unwrap();
        assert!(vault.open(&tenant, &["other".into()]).await.is_err());
        // Another key does not open it either.
        let stranger = Vault::new([7u8; 32], store);
        assert!(stranger.open(&tenant, &["api_key".into()]).await.is_err());
        assert!(load_key(Some("not base64!"), dir.path()).is_err());
    }
}

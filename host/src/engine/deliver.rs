//! Delivering callbacks: the outbox's rows (stored by the commits they
//! report, see `callbacks`) claimed under a short lease and sent through
//! the outbound layer, signed as Standard Webhooks v1.
//!
//! Every node that claims work runs one delivery loop with its own bounded
//! pool of attempts (`callback-concurrency`), apart from the workers, so a
//! slow receiver never holds up an execution. A claim takes due rows that
//! no earlier pending delivery of the same execution is ahead of, so one
//! execution's events arrive in order. An attempt's lease lasts its timeout
//! plus the lease time; a node that dies mid-attempt leaves the row to be
//! claimed again once it lapses (at-least-once; receivers dedupe on
//! `webhook-id`, which is the same on every attempt).
//!
//! A 2xx delivers. 410 stops. A refused target (its name resolved to a
//! forbidden address) stops as `refused`. Anything else (a 3xx, which is
//! not followed, a 4xx or 5xx, a timeout, a connection that failed) is
//! retried after the next of `callback-retry-delays`, plus up to a tenth of
//! it as jitter, or after the receiver's `Retry-After` when that is later;
//! when the delays run out the delivery has `failed`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use sha2::Sha256;
use tokio::sync::Semaphore;

use super::{Inner, dag};
use crate::model::{DeliveryAttempt, DeliveryStatus, DueDelivery, NewDelivery, Timestamp};
use crate::outbound::{Failure, Request};
use crate::store::{DeliveryNext, Lease};

/// How callbacks are delivered (`callback-*` settings).
#[derive(Debug, Clone)]
pub struct Settings {
    /// When each attempt is made: the first entry after the event, each
    /// next one after the attempt before failed (`callback-retry-delays`).
    pub retry_delays: Vec<Duration>,
    /// How long a receiver has to answer (`callback-timeout`).
    pub timeout: Duration,
    /// How many attempts run at once on this node (`callback-concurrency`).
    pub concurrency: usize,
    /// The largest output carried in a callback body; larger ones are
    /// replaced by a link to the execution (`callback-max-output-bytes`).
    pub max_output_bytes: usize,
    /// How long a rotated-out signing secret keeps signing
    /// (`webhook-secret-rotation-window`).
    pub rotation_window: Duration,
}

impl Settings {
    /// The default schedule: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    pub fn default_delays() -> Vec<Duration> {
        [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
            .into_iter()
            .map(Duration::from_secs)
            .collect()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            retry_delays: Self::default_delays(),
            timeout: Duration::from_secs(15),
            concurrency: 32,
            max_output_bytes: super::callbacks::MAX_OUTPUT_BYTES,
            rotation_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// The most of a receiver's body kept with an attempt.
pub const RESPONSE_BODY_BYTES: usize = 1024;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Starts the delivery loop on a node that claims work.
pub(super) fn start(inner: &Arc<Inner>) {
    if inner.claim_work {
        tokio::spawn(run(Arc::downgrade(inner)));
    }
}

async fn run(weak: Weak<Inner>) {
    let slots = {
        let Some(inner) = weak.upgrade() else { return };
        Arc::new(Semaphore::new(inner.callbacks.concurrency.max(1)))
    };
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.stopped.is_cancelled() {
            return;
        }
        let free = slots.available_permits();
        let mut full = false;
        if free > 0 {
            let now = inner.clock.now();
            let lease = Lease {
                owner: inner.node.clone(),
                until: dag::add(now, inner.callbacks.timeout + inner.lease_ttl),
            };
            match inner.store.claim_deliveries(&lease, now, free).await {
                Ok(due) => {
                    full = due.len() == free;
                    for d in due {
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            break;
                        };
                        let inner = inner.clone();
                        tokio::spawn(async move {
                            attempt(&inner, d).await;
                            drop(permit);
                            inner.deliveries_due.notify_one();
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming callbacks failed; trying again");
                }
            }
        }
        if full {
            // More may be due: claim again once a slot frees.
            tokio::select! {
                () = inner.deliveries_due.notified() => {}
                () = inner.stopped.cancelled() => return,
                () = tokio::time::sleep(inner.poll_interval) => {}
            }
            continue;
        }
        let next = inner.store.next_delivery_at().await.ok().flatten();
        let clock = inner.clock.clone();
        let wake = inner.clone();
        drop(inner);
        tokio::select! {
            () = async { match next { Some(at) => clock.sleep_until(at).await, None => std::future::pending().await } } => {}
            () = wake.deliveries_due.notified() => {}
            () = wake.stopped.cancelled() => return,
            () = tokio::time::sleep(wake.poll_interval) => {}
        }
    }
}

impl super::Engine {
    /// An execution's callbacks so far, with their attempts.
    pub async fn deliveries(
        &self,
        exec: &crate::model::Execution,
    ) -> Result<Vec<crate::model::Delivery>, super::Error> {
        if exec.callback.is_none() {
            return Ok(Vec::new());
        }
        Ok(self.inner.store.deliveries(&exec.execution_id).await?)
    }

    /// Delivers a callback again, by hand: it is pending and due now (if
    /// it was pending already, nothing changes).
    pub async fn retry_delivery(
        &self,
        tenant: &crate::model::TenantId,
        id: &crate::model::ExecutionId,
        delivery_id: &str,
    ) -> Result<crate::model::Delivery, super::Error> {
        let now = self.inner.clock.now();
        let found = self
            .inner
            .store
            .retry_delivery(tenant, id, delivery_id, now)
            .await?;
        match found {
            Some(d) => {
                self.inner.deliveries_due.notify_one();
                Ok(d)
            }
            None if self.inner.store.execution(tenant, id).await?.is_none() => {
                Err(super::Error::ExecutionNotFound(id.to_string()))
            }
            None => Err(super::Error::DeliveryNotFound(
                id.to_string(),
                delivery_id.to_owned(),
            )),
        }
    }

    /// The tenant's signing secrets, made on first use.
    pub async fn webhook_keys(
        &self,
        tenant: &crate::model::TenantId,
    ) -> Result<crate::model::WebhookKeys, super::Error> {
        self.inner
            .secrets
            .webhook_keys(tenant, self.inner.clock.now())
            .await
            .map_err(|e| super::Error::Store(crate::store::Error::Backend(e)))
    }

    /// Replaces the tenant's signing secret; the old one keeps signing for
    /// the rotation window.
    pub async fn rotate_webhook_secret(
        &self,
        tenant: &crate::model::TenantId,
    ) -> Result<crate::model::WebhookKeys, super::Error> {
        self.inner
            .secrets
            .rotate_webhook_secret(
                tenant,
                self.inner.clock.now(),
                self.inner.callbacks.rotation_window,
            )
            .await
            .map_err(|e| super::Error::Store(crate::store::Error::Backend(e)))
    }
}

/// One attempt at a claimed delivery, recorded with what comes next.
async fn attempt(inner: &Inner, d: DueDelivery) {
    let at = inner.clock.now();
    let started = std::time::Instant::now();
    let webhook_id = NewDelivery::webhook_id(&d.delivery_id);
    let sent = match inner.secrets.webhook_keys(&d.tenant_id, at).await {
        Ok(keys) => {
            let timestamp = at.as_second();
            let signatures: Vec<String> = keys
                .signing_at(at)
                .into_iter()
                .filter_map(|key| sign(key, &webhook_id, timestamp, &d.body))
                .collect();
            send(inner, &d, &webhook_id, timestamp, &signatures.join(" ")).await
        }
        Err(e) => Err(Failure::Failed(format!(
            "the signing secret is unavailable: {e}"
        ))),
    };
    let number = d.attempts + 1;
    let (record, next) = classify(inner, at, started.elapsed(), number, sent);
    match inner
        .store
        .record_delivery(&inner.node, &d.delivery_id, &record, next)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(delivery = %d.delivery_id, "a callback's claim lapsed during its attempt; another node retries it")
        }
        Err(e) => {
            tracing::warn!(delivery = %d.delivery_id, error = %e, "recording a callback attempt failed; it is attempted again when its claim lapses")
        }
    }
}

/// Sends one attempt.
async fn send(
    inner: &Inner,
    d: &DueDelivery,
    webhook_id: &str,
    timestamp: i64,
    signature: &str,
) -> Result<crate::outbound::Response, Failure> {
    let url = inner.outbound.check(&d.url)?;
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in [
        ("webhook-id", webhook_id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature.to_owned()),
    ] {
        let value = HeaderValue::from_str(&value)
            .map_err(|e| Failure::Failed(format!("header {name}: {e}")))?;
        headers.insert(name, value);
    }
    inner
        .outbound
        .send(Request {
            method: reqwest::Method::POST,
            url,
            headers,
            body: d.body.clone().into(),
            timeout: inner.callbacks.timeout,
            max_response_bytes: RESPONSE_BODY_BYTES,
        })
        .await
}

/// The attempt's record and what follows it.
fn classify(
    inner: &Inner,
    at: Timestamp,
    took: Duration,
    number: u32,
    sent: Result<crate::outbound::Response, Failure>,
) -> (DeliveryAttempt, DeliveryNext) {
    let (record, verdict) = match sent {
        Ok(answer) => {
            let record = DeliveryAttempt {
                at,
                response_status: Some(answer.status.as_u16()),
                response_body: Some(String::from_utf8_lossy(&answer.body).into_owned())
                    .filter(|b| !b.is_empty()),
                error: None,
                duration_ms: answer.duration.as_secs_f64() * 1000.0,
            };
            let verdict = if answer.status.is_success() {
                Verdict::Done(DeliveryStatus::Delivered)
            } else if answer.status == reqwest::StatusCode::GONE {
                Verdict::Done(DeliveryStatus::Gone)
            } else {
                Verdict::Retry(retry_after(&answer.headers, at))
            };
            (record, verdict)
        }
        Err(failure) => {
            let verdict = match failure {
                Failure::Refused(_) => Verdict::Done(DeliveryStatus::Refused),
                _ => Verdict::Retry(None),
            };
            let record = DeliveryAttempt {
                at,
                response_status: None,
                response_body: None,
                error: Some(failure.to_string()),
                duration_ms: took.as_secs_f64() * 1000.0,
            };
            (record, verdict)
        }
    };
    let next = match verdict {
        Verdict::Done(status) => DeliveryNext::Done(status),
        Verdict::Retry(asked) => match inner.callbacks.retry_delays.get(number as usize) {
            Some(&delay) => {
                let scheduled = dag::add(at, delay + jitter(delay));
                DeliveryNext::Retry(asked.map_or(scheduled, |a| a.max(scheduled)))
            }
            None => DeliveryNext::Done(DeliveryStatus::Failed),
        },
    };
    (record, next)
}

enum Verdict {
    Done(DeliveryStatus),
    /// Retry, no earlier than the receiver's `Retry-After` if it gave one.
    Retry(Option<Timestamp>),
}

/// Up to a tenth of `delay`, at random, so that receivers recovering from
/// an outage are not hit by every retry at once.
fn jitter(delay: Duration) -> Duration {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return Duration::ZERO;
    }
    let unit = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
    delay.mul_f64(unit / 10.0)
}

/// When `Retry-After` asks the next attempt to be made: seconds, or an
/// HTTP date; at most a day away.
fn retry_after(headers: &HeaderMap, at: Timestamp) -> Option<Timestamp> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let when = jiff::fmt::rfc2822::parse(text).ok()?.timestamp();
            Duration::try_from(when.duration_since(at)).unwrap_or(Duration::ZERO)
        }
    };
    Some(dag::add(at, wait.min(MAX_RETRY_AFTER)))
}

/// The Standard Webhooks v1 signature of a message: `v1,` and the base64
/// HMAC-SHA256, keyed with the secret's bytes (base64 after `whsec_`), of
/// `id.timestamp.body`. `None` for a secret that is not base64.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_test_vector() {
        // The example in the Standard Webhooks specification's reference
        // libraries.
        let got = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(
            got.as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(sign("whsec_not base64!", "m", 1, "{}"), None);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_bounded() {
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, at), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(
            retry_after(&h, at),
            Some("2026-01-01T00:02:00Z".parse().unwrap())
        );
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Thu, 01 Jan 2026 00:10:00 GMT"),
        );
        assert_eq!(
            retry_after(&h, at),
            Some("2026-01-01T00:10:00Z".parse().unwrap())
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("99999999"));
        assert_eq!(
            retry_after(&h, at),
            Some("2026-01-02T00:00:00Z".parse().unwrap())
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, at), None);
    }

    #[test]
    fn jitter_is_at_most_a_tenth() {
        let d = Duration::from_secs(100);
        for _ in 0..1000 {
            assert!(jitter(d) <= Duration::from_secs(10));
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}

//! Callbacks as plain data: what a caller asks to be told (`callback`),
//! and what was delivered (`deliveries`).

use serde::{Deserialize, Serialize};

use super::{ExecutionId, TenantId, Timestamp};

/// What a callback reports.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum EventType {
    /// A worker started the execution.
    #[serde(rename = "execution.started")]
    ExecutionStarted,
    /// The execution waits (for a time or a signal, or paused).
    #[serde(rename = "execution.waiting")]
    ExecutionWaiting,
    /// A step settled: its output (or error) is available.
    #[serde(rename = "step.finished")]
    StepFinished,
    /// The execution reached a terminal status.
    #[serde(rename = "execution.finished")]
    ExecutionFinished,
}

impl EventType {
    /// Every event type, in the order a run reports them.
    pub const ALL: [Self; 4] = [
        Self::ExecutionStarted,
        Self::ExecutionWaiting,
        Self::StepFinished,
        Self::ExecutionFinished,
    ];

    /// The name on the wire (`execution.finished`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExecutionStarted => "execution.started",
            Self::ExecutionWaiting => "execution.waiting",
            Self::StepFinished => "step.finished",
            Self::ExecutionFinished => "execution.finished",
        }
    }

    /// The event type named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

fn default_events() -> Vec<EventType> {
    vec![EventType::ExecutionFinished]
}

/// Where and what to tell about an execution (`callback` at submission,
/// on a schedule, a batch or a definition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Callback {
    /// The receiver: an `http` or `https` URL on a public address (unless
    /// the operator opened its network with `outbound-allow-networks`).
    pub url: String,
    /// What to report: `execution.finished` (the default),
    /// `execution.started`, `execution.waiting`, `step.finished`.
    #[serde(default = "default_events")]
    #[schema(example = json!(["execution.finished"]))]
    pub events: Vec<EventType>,
}

impl Callback {
    /// Whether this callback reports `event`.
    pub fn wants(&self, event: EventType) -> bool {
        self.events.contains(&event)
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet: an attempt is due at `next_attempt_at`.
    Pending,
    /// A 2xx answered.
    Delivered,
    /// Every scheduled attempt failed.
    Failed,
    /// The receiver answered 410 Gone: no more attempts.
    Gone,
    /// The URL resolved to an address outbound requests may not reach.
    Refused,
}

impl DeliveryStatus {
    /// The name in the store and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Gone => "gone",
            Self::Refused => "refused",
        }
    }

    /// The status named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Delivered,
            Self::Failed,
            Self::Gone,
            Self::Refused,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

/// One attempt at delivering a callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryAttempt {
    /// When it was sent.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// The receiver's status code, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_status: Option<u16>,
    /// The start of the receiver's body (at most 1 KiB, as text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// Why it got no answer (a timeout, a refused connection, a refused
    /// address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// From sending to the end of the answer, in milliseconds.
    pub duration_ms: f64,
}

/// A callback of one event of an execution, with its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    /// Its id (`dlv_…`), for `POST /v1/executions/{id}/deliveries/{delivery_id}/retry`.
    pub delivery_id: String,
    /// The `webhook-id` header: the same on every attempt, so a receiver
    /// dedupes on it.
    pub webhook_id: String,
    /// The event reported.
    pub event: EventType,
    /// For `step.finished`: the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Where it goes.
    pub url: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// When the event happened.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When the next attempt is due, while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Timestamp>,
    /// Every attempt, oldest first.
    pub attempts: Vec<DeliveryAttempt>,
}

/// A delivery to store with the commit of the state it reports (the
/// transactional outbox).
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    /// Its id (`dlv_` and a UUIDv7).
    pub delivery_id: String,
    /// The execution it reports on.
    pub execution_id: ExecutionId,
    /// Its tenant (whose signing secret signs it).
    pub tenant_id: TenantId,
    /// The event.
    pub event: EventType,
    /// For `step.finished`: the step.
    pub step: Option<String>,
    /// Where it goes.
    pub url: String,
    /// The JSON body, as sent on every attempt.
    pub body: String,
    /// When the event happened.
    pub created_at: Timestamp,
    /// When the first attempt is due (the first of `callback-retry-delays`
    /// after the event; at once by default).
    pub due_at: Timestamp,
}

impl NewDelivery {
    /// A fresh delivery id.
    pub fn generate_id() -> String {
        format!("dlv_{}", uuid::Uuid::now_v7().simple())
    }

    /// The `webhook-id` of a delivery: derived from its id, so it is the
    /// same on every attempt and every node.
    pub fn webhook_id(delivery_id: &str) -> String {
        format!("msg_{}", delivery_id.trim_start_matches("dlv_"))
    }
}

/// A delivery claimed for an attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct DueDelivery {
    /// Its id.
    pub delivery_id: String,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its execution.
    pub execution_id: ExecutionId,
    /// Where it goes.
    pub url: String,
    /// The body to send.
    pub body: String,
    /// How many attempts were made before this one.
    pub attempts: u32,
}

/// A tenant's callback signing secret, sealed, and the one it replaced
/// while that stays valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    /// The current secret, sealed by the vault.
    pub sealed: Vec<u8>,
    /// When it was made.
    pub created_at: Timestamp,
    /// The secret before the last rotation, sealed, and until when
    /// callbacks are signed with it too.
    pub previous: Option<(Vec<u8>, Timestamp)>,
}

/// A tenant's callback signing secrets in the clear (`whsec_…`), as the
/// deliverer signs with them and `GET /v1/webhook-secret` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookKeys {
    /// The current secret.
    pub current: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// The secret it replaced, and until when callbacks are signed with it
    /// too.
    pub previous: Option<(String, Timestamp)>,
}

impl WebhookKeys {
    /// The secrets callbacks sent at `now` are signed with: the current
    /// one, and the previous one while its window lasts.
    pub fn signing_at(&self, now: Timestamp) -> Vec<&str> {
        let mut keys = vec![self.current.as_str()];
        if let Some((previous, until)) = &self.previous
            && now < *until
        {
            keys.push(previous.as_str());
        }
        keys
    }
}

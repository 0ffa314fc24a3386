//! Per-tenant quotas: how fast a tenant may submit and how much it may
//! keep. Each limit is the tenant's own when the admin set one, else the
//! server's default from configuration (`quota-*` keys), else none.

use serde::{Deserialize, Serialize};

/// The slowest submission rate a quota may set: one in about 11.6 days.
pub const MIN_RATE: f64 = 0.000_001;
/// The fastest.
pub const MAX_RATE: f64 = 1_000_000.0;

/// A tenant's limits; a `None` field has no limit of its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Submissions per second, sustained: runs (sync and async) and
    /// schedule triggers. Over it (with the burst spent) a submission gets
    /// 429 with `Retry-After`.
    #[serde(default)]
    pub submissions_per_second: Option<f64>,
    /// How many submissions may arrive at once before the rate applies
    /// (default: one second's worth, at least 1).
    #[serde(default)]
    pub submissions_burst: Option<u32>,
    /// How many steps the tenant may register.
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// How many workflows it may define (deleted ones do not count).
    #[serde(default)]
    pub max_workflows: Option<u64>,
    /// The total size of its step versions' components, in bytes.
    #[serde(default)]
    pub max_component_bytes: Option<u64>,
    /// How many secrets it may keep.
    #[serde(default)]
    pub max_secrets: Option<u64>,
}

impl Quotas {
    /// Each of `self`'s limits, or `defaults`' where `self` has none.
    pub fn or(&self, defaults: &Quotas) -> Quotas {
        Quotas {
            submissions_per_second: self
                .submissions_per_second
                .or(defaults.submissions_per_second),
            submissions_burst: self.submissions_burst.or(defaults.submissions_burst),
            max_steps: self.max_steps.or(defaults.max_steps),
            max_workflows: self.max_workflows.or(defaults.max_workflows),
            max_component_bytes: self.max_component_bytes.or(defaults.max_component_bytes),
            max_secrets: self.max_secrets.or(defaults.max_secrets),
        }
    }

    /// The problems with these limits, each with the field it is about.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(rate) = self.submissions_per_second
            && !(rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&rate))
        {
            out.push((
                "submissions_per_second".to_owned(),
                format!("{rate} is not a rate: give a number from {MIN_RATE} to {MAX_RATE}"),
            ));
        }
        if self.submissions_burst == Some(0) {
            out.push((
                "submissions_burst".to_owned(),
                "a burst is at least 1".to_owned(),
            ));
        }
        out
    }
}

/// What a tenant holds now, against its quotas.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// Registered steps.
    pub steps: u64,
    /// Defined workflows (not deleted).
    pub workflows: u64,
    /// Bytes of its step versions' components (each digest once).
    pub component_bytes: u64,
    /// Secrets.
    pub secrets: u64,
    /// Executions waiting to run (`queued`).
    pub queued_executions: u64,
    /// Executions running (`running`).
    pub running_executions: u64,
}

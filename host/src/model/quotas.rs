//! Per-tenant quotas: how fast a tenant may submit and how much it may
//! keep. Each limit is the tenant's own when the admin set one, else the
//! server's default from configuration (`quota-*` keys), else none.

use serde::{Deserialize, Serialize};

/// The slowest submission rate a quota may set: one in about 11.6 days.
pub const MIN_RATE: f64 = 0.000_001;
/// The fastest.
pub const MAX_RATE: f64 = 1_000_000.0;
/// The largest fair-share weight.
pub const MAX_WEIGHT: u32 = 1000;

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
    /// How many of its executions may run at once, on all nodes together.
    /// Waiting executions (timers, signals) do not count. Over it, a new
    /// execution is accepted and stays `queued`, with `blocked` saying
    /// why, until one of the running ones finishes or waits.
    #[serde(default)]
    pub max_concurrent_executions: Option<u64>,
    /// How many of its executions may be `queued` (the backlog). Over it a
    /// submission gets 429 with a `Retry-After` estimated from how fast
    /// its work runs.
    #[serde(default)]
    pub max_queued_executions: Option<u64>,
    /// The most fuel any of its steps' attempts may have: lowers the
    /// server's ceiling (a step asking for more is refused when its
    /// workflow is defined, and attempts never get more).
    #[serde(default)]
    pub max_step_fuel: Option<u64>,
    /// The most memory, in bytes, any of its steps' attempts may have.
    #[serde(default)]
    pub max_step_memory_bytes: Option<u64>,
    /// The longest wall-clock time, in milliseconds, any of its steps'
    /// attempts may have.
    #[serde(default)]
    pub max_step_timeout_ms: Option<u64>,
    /// Its share of the workers against other busy tenants (1 to 1000,
    /// default 1): a tenant of weight 3 gets three times the attempt time
    /// of a tenant of weight 1 while both have work waiting.
    #[serde(default)]
    pub weight: Option<u32>,
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
            max_concurrent_executions: self
                .max_concurrent_executions
                .or(defaults.max_concurrent_executions),
            max_queued_executions: self
                .max_queued_executions
                .or(defaults.max_queued_executions),
            max_step_fuel: self.max_step_fuel.or(defaults.max_step_fuel),
            max_step_memory_bytes: self
                .max_step_memory_bytes
                .or(defaults.max_step_memory_bytes),
            max_step_timeout_ms: self.max_step_timeout_ms.or(defaults.max_step_timeout_ms),
            weight: self.weight.or(defaults.weight),
        }
    }

    /// The step ceilings, as overrides no attempt of the tenant goes past.
    pub fn step_ceiling(&self) -> crate::model::Overrides {
        crate::model::Overrides {
            fuel: self.max_step_fuel,
            timeout: self
                .max_step_timeout_ms
                .map(std::time::Duration::from_millis),
            memory_bytes: self.max_step_memory_bytes,
        }
    }

    /// Why `requested` (one step's limits) is above these step ceilings,
    /// naming the first limit and the quota; `None` when it is not.
    pub fn above_step_ceiling(&self, requested: &crate::model::Overrides) -> Option<String> {
        let over =
            |what: &str, asked: Option<u64>, most: Option<u64>, quota: &str| match (asked, most) {
                (Some(a), Some(m)) if a > m => Some(format!(
                    "limit `{what}` of {a} is above this tenant's ceiling of {m} (quota `{quota}`)"
                )),
                _ => None,
            };
        over("fuel", requested.fuel, self.max_step_fuel, "max_step_fuel")
            .or_else(|| {
                over(
                    "memory",
                    requested.memory_bytes,
                    self.max_step_memory_bytes,
                    "max_step_memory_bytes",
                )
            })
            .or_else(|| {
                over(
                    "timeout (ms)",
                    requested
                        .timeout
                        .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
                    self.max_step_timeout_ms,
                    "max_step_timeout_ms",
                )
            })
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
        for (field, value, stop) in [
            (
                "max_concurrent_executions",
                self.max_concurrent_executions,
                "suspend the tenant to run nothing",
            ),
            (
                "max_queued_executions",
                self.max_queued_executions,
                "suspend the tenant to accept nothing",
            ),
            ("max_step_fuel", self.max_step_fuel, "no step could run"),
            (
                "max_step_memory_bytes",
                self.max_step_memory_bytes,
                "no step could run",
            ),
            (
                "max_step_timeout_ms",
                self.max_step_timeout_ms,
                "no step could run",
            ),
        ] {
            if value == Some(0) {
                out.push((field.to_owned(), format!("give at least 1 ({stop})")));
            }
        }
        if let Some(w) = self.weight
            && !(1..=MAX_WEIGHT).contains(&w)
        {
            out.push((
                "weight".to_owned(),
                format!("{w} is not a weight: give a whole number from 1 to {MAX_WEIGHT}"),
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

//! Cron schedules as plain data: what a schedule runs and when, and what it
//! has done so far. When the next tick is and what a tick does are decided
//! by the engine (`engine::schedule`); this is only the record.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::execution::no_tenant;
use super::{ExecutionId, ScheduleId, TenantId, Timestamp, WorkflowId};

/// What a tick does while an earlier execution of the schedule has not
/// finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// The tick is skipped and counted in `skipped`.
    #[default]
    Skip,
    /// One tick waits and starts when the running execution finishes; more
    /// ticks meanwhile are skipped.
    BufferOne,
    /// Every tick starts an execution.
    AllowAll,
    /// The running executions are cancelled and the tick starts a new one
    /// at once.
    CancelOther,
}

impl Overlap {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::BufferOne => "buffer_one",
            Self::AllowAll => "allow_all",
            Self::CancelOther => "cancel_other",
        }
    }
}

impl FromStr for Overlap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "skip" => Self::Skip,
            "buffer_one" => Self::BufferOne,
            "allow_all" => Self::AllowAll,
            "cancel_other" => Self::CancelOther,
            other => {
                return Err(format!(
                    "`{other}` is not an overlap policy; expected skip, buffer_one, allow_all \
                     or cancel_other"
                ));
            }
        })
    }
}

/// Where a schedule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleState {
    /// Ticks fire.
    Active,
    /// Paused by a client: ticks pass without firing and are not caught up.
    Paused,
    /// A fire failed (the workflow is gone, the input no longer validates):
    /// nothing fires until the schedule is updated. `invalid_reason` says
    /// why.
    Invalid,
    /// Past `end_at` (or the cron expression has no more ticks): nothing
    /// fires again.
    Completed,
}

impl ScheduleState {
    /// The snake_case name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Invalid => "invalid",
            Self::Completed => "completed",
        }
    }
}

impl FromStr for ScheduleState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "active" => Self::Active,
            "paused" => Self::Paused,
            "invalid" => Self::Invalid,
            "completed" => Self::Completed,
            other => {
                return Err(format!(
                    "`{other}` is not a schedule state; expected active, paused, invalid or \
                     completed"
                ));
            }
        })
    }
}

/// One execution a schedule started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScheduleRun {
    /// The execution.
    #[schema(value_type = String)]
    pub execution_id: ExecutionId,
    /// The tick it ran for (for a trigger, when it was triggered).
    #[schema(value_type = String, format = DateTime)]
    pub scheduled_at: Timestamp,
    /// Whether a client's trigger started it rather than a tick.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub triggered: bool,
}

/// A fire that could not start an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FireError {
    /// When the fire was tried.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// The tick.
    #[schema(value_type = String, format = DateTime)]
    pub scheduled_at: Timestamp,
    /// What went wrong.
    pub message: String,
}

/// A cron schedule and what it has done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Its id, unique within the tenant.
    pub schedule_id: ScheduleId,
    /// Its tenant; a column of the store, not part of the document.
    #[serde(skip_serializing, default = "no_tenant")]
    pub tenant_id: TenantId,
    /// The workflow each tick runs.
    pub workflow_id: WorkflowId,
    /// The workflow version; `None` runs the newest version at each tick.
    pub workflow_version: Option<u32>,
    /// The cron expression (5 fields, or 6 with leading seconds).
    pub cron: String,
    /// The IANA time zone the expression is read in.
    pub timezone: String,
    /// The input of every execution.
    pub input_data: serde_json::Value,
    /// Opaque client data copied to every execution.
    pub custom_data: Option<serde_json::Value>,
    /// Where callbacks about every execution go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<super::Callback>,
    /// What a tick does while an earlier execution runs.
    pub overlap: Overlap,
    /// How old a missed tick may be and still fire after downtime.
    #[serde(with = "friendly")]
    pub catchup_window: Duration,
    /// No tick fires before this.
    pub start_at: Option<Timestamp>,
    /// No tick fires after this; the schedule is then `completed`.
    pub end_at: Option<Timestamp>,
    /// Free text.
    pub description: Option<String>,
    /// Where it is.
    pub state: ScheduleState,
    /// Why it is `invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<String>,
    /// The last fire that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<FireError>,
    /// The next tick not yet handled (`None` once none is left).
    pub next_fire_at: Option<Timestamp>,
    /// With `buffer_one`: a tick that waits for the running execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffered_at: Option<Timestamp>,
    /// Executions started by ticks and triggers.
    pub fired: u64,
    /// Ticks skipped by the overlap policy.
    pub skipped: u64,
    /// Ticks older than the catch-up window when they were handled.
    pub missed: u64,
    /// The latest executions it started, newest first (at most
    /// [`Schedule::KEEP_RUNS`]).
    pub last_executions: Vec<ScheduleRun>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When a client last changed it.
    pub updated_at: Timestamp,
    /// The store's version of it, bumped by every write (compare-and-set).
    #[serde(skip)]
    pub version: u64,
}

impl Schedule {
    /// How many runs `last_executions` keeps.
    pub const KEEP_RUNS: usize = 10;
    /// The default catch-up window.
    pub const CATCHUP_WINDOW: Duration = Duration::from_secs(3600);

    /// Records an execution it started.
    pub fn started(&mut self, run: ScheduleRun) {
        self.fired += 1;
        self.last_executions.insert(0, run);
        self.last_executions.truncate(Self::KEEP_RUNS);
    }
}

/// Durations as friendly text (`1h`, `90s`), read back by jiff's parser.
mod friendly {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        let d = jiff::SignedDuration::try_from(*d).unwrap_or(jiff::SignedDuration::MAX);
        s.serialize_str(&format!("{d:#}"))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        let d: jiff::SignedDuration = text.parse().map_err(serde::de::Error::custom)?;
        Duration::try_from(d).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for o in [
            Overlap::Skip,
            Overlap::BufferOne,
            Overlap::AllowAll,
            Overlap::CancelOther,
        ] {
            assert_eq!(o.as_str().parse::<Overlap>().unwrap(), o);
        }
        for s in [
            ScheduleState::Active,
            ScheduleState::Paused,
            ScheduleState::Invalid,
            ScheduleState::Completed,
        ] {
            assert_eq!(s.as_str().parse::<ScheduleState>().unwrap(), s);
        }
        assert!("sometimes".parse::<Overlap>().unwrap_err().contains("skip"));
    }
}

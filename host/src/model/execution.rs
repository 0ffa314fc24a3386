//! Tenants, workflows and executions as plain data.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Digest, LogLine, Metering, Outcome};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an id that has already been checked.
            pub fn new_unchecked(s: impl Into<String>) -> Self {
                Self(s.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

id_type!(
    /// A tenant's id (`ten_` followed by a UUIDv7).
    TenantId
);
id_type!(
    /// An execution's id: a UUIDv7, so ids sort by creation time.
    ExecutionId
);
id_type!(
    /// An engine process's id, recorded in the leases it holds (config
    /// `node-id`).
    NodeId
);
id_type!(
    /// A registered step's name, unique within a tenant.
    StepName
);
id_type!(
    /// A cron schedule's id, unique within a tenant: given by the client
    /// (a name) or generated (`sch_` followed by a UUIDv7).
    ScheduleId
);
id_type!(
    /// A workflow's id, unique within a tenant.
    WorkflowId
);
id_type!(
    /// A batch run's id (`bat_` followed by a UUIDv7).
    BatchId
);

impl TenantId {
    /// A fresh, time-ordered tenant id.
    pub fn generate() -> Self {
        Self(format!("ten_{}", uuid::Uuid::now_v7().simple()))
    }
}

impl NodeId {
    /// A fresh, unique node id.
    pub fn generate() -> Self {
        Self(format!("node_{}", uuid::Uuid::now_v7().simple()))
    }
}

impl BatchId {
    /// A fresh, time-ordered batch id.
    pub fn generate() -> Self {
        Self(format!("bat_{}", uuid::Uuid::now_v7().simple()))
    }
}

impl FromStr for BatchId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        check_name("batch id", s).map(|()| Self(s.to_owned()))
    }
}

impl ScheduleId {
    /// A fresh, time-ordered schedule id.
    pub fn generate() -> Self {
        Self(format!("sch_{}", uuid::Uuid::now_v7().simple()))
    }
}

impl FromStr for ScheduleId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        check_name("schedule id", s).map(|()| Self(s.to_owned()))
    }
}

impl ExecutionId {
    /// A fresh, time-ordered execution id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }
}

/// A name is 1 to 64 characters of ASCII letters, digits, `-`, `_` and `.`,
/// starting with a letter or digit. Used for step names and workflow ids,
/// which appear in URL paths.
pub fn check_name(kind: &str, s: &str) -> Result<(), String> {
    let ok_first = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if s.is_empty() || s.len() > 64 || !ok_first || !ok_rest {
        return Err(format!(
            "`{s}` is not a valid {kind}: use 1 to 64 ASCII letters, digits, `-`, `_` or `.`, \
             starting with a letter or digit"
        ));
    }
    Ok(())
}

impl FromStr for StepName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        check_name("step name", s).map(|()| Self(s.to_owned()))
    }
}

impl FromStr for WorkflowId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        check_name("workflow id", s).map(|()| Self(s.to_owned()))
    }
}

/// A UTC timestamp, RFC 3339 on the wire.
pub type Timestamp = jiff::Timestamp;

/// The status of an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Postponed: accepted, and due at its `scheduled_for`.
    Scheduled,
    /// Accepted and waiting for a worker.
    Queued,
    /// A worker is running its steps.
    Running,
    /// Nothing runs: a step waits for a time or a signal, and the
    /// execution holds no worker until then.
    Waiting,
    /// Paused by a client: no new step starts (an attempt already running
    /// finishes) until it is resumed. The workflow's deadline keeps running.
    Paused,
    /// Every step succeeded or was skipped.
    Succeeded,
    /// The workflow finished, but steps marked `continue_on_error` failed.
    PartiallySucceeded,
    /// A step failed.
    Failed,
    /// Cancelled by a client.
    Cancelled,
    /// The workflow ran past its deadline.
    TimedOut,
}

impl Status {
    /// Whether the execution can no longer change.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            Self::Scheduled | Self::Queued | Self::Running | Self::Waiting | Self::Paused
        )
    }

    /// Whether a resume restarts an execution that ended this way, from its
    /// steps that did not succeed.
    pub fn is_restartable(self) -> bool {
        matches!(self, Self::Failed | Self::Cancelled | Self::TimedOut)
    }

    /// The snake_case name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::Paused => "paused",
            Self::Succeeded => "succeeded",
            Self::PartiallySucceeded => "partially_succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
        }
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "scheduled" => Self::Scheduled,
            "queued" => Self::Queued,
            "running" => Self::Running,
            "waiting" => Self::Waiting,
            "paused" => Self::Paused,
            "succeeded" => Self::Succeeded,
            "partially_succeeded" => Self::PartiallySucceeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "timed_out" => Self::TimedOut,
            other => {
                return Err(format!(
                    "`{other}` is not a status; expected one of scheduled, queued, running, waiting, \
                     paused, succeeded, partially_succeeded, failed, cancelled, timed_out"
                ));
            }
        })
    }
}

/// The status of one step within an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started yet.
    Pending,
    /// An attempt is running.
    Running,
    /// A wait step waits for its time or its signal (see `waiting`).
    Waiting,
    /// An attempt failed and the next one waits until `next_attempt_at`.
    Retrying,
    /// The step produced its output.
    Succeeded,
    /// The step failed.
    Failed,
    /// The step did not run: its condition was false, or a step it needs
    /// was skipped or failed (see `skipped_reason`).
    Skipped,
    /// The execution stopped (cancel, deadline, another step's failure)
    /// before or while this step ran.
    Cancelled,
}

impl StepStatus {
    /// Whether the step has settled: it will not run again in this
    /// execution unless a client resumes it after it ended. `wait_until_step`, the driver's `needs` and fail-fast all
    /// use this one rule; a step that waits for a retry has not settled.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Skipped | Self::Cancelled
        )
    }
}

/// One entry of an execution's status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// The status entered.
    pub status: Status,
    /// When it was entered.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// `resume` when a client's resume caused the transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Why an execution failed: the step, and the step's code and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecutionError {
    /// The workflow step id that failed (absent when no step was to blame).
    pub step_name: Option<String>,
    /// Human-readable explanation.
    pub message: String,
    /// Machine-readable code: the step's own `step-error` code, or the
    /// outcome (`fuel_exhausted`, `timed_out`, `trapped`, ...).
    pub code: String,
}

/// One attempt of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// `succeeded` or `failed` (any outcome other than success).
    pub status: StepStatus,
    /// The sandbox outcome: `succeeded`, `failed`, `fuel_exhausted`,
    /// `timed_out`, `memory_limit`, `stack_overflow`, `trapped`,
    /// `invalid_output` or `cancelled`.
    pub outcome: String,
    /// When the attempt started.
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    /// When it ended.
    #[schema(value_type = String, format = DateTime)]
    pub finished_at: Timestamp,
    /// Wall time in milliseconds (fractional).
    pub duration_ms: f64,
    /// Fuel consumed.
    pub fuel_consumed: u64,
    /// Peak linear memory in bytes.
    pub memory_peak_bytes: u64,
    /// The error, when the attempt did not succeed.
    pub error: Option<ExecutionError>,
    /// Log lines written by the attempt.
    #[schema(value_type = Vec<Object>)]
    pub logs: Vec<LogLine>,
    /// The HTTP requests the attempt made or tried to make, in order:
    /// method, host and port, status or error, response bytes read and
    /// duration (no path, headers or bodies, which may carry secrets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_requests: Vec<crate::model::HttpRequestRecord>,
    /// The resolved input the attempt received, with secrets redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input: Option<serde_json::Value>,
}

/// One step of an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepRun {
    /// The step's id within the workflow.
    pub id: String,
    /// The registered step it runs.
    pub step: String,
    /// The component version chosen at submission; absent for a wait step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub digest: Option<Digest>,
    /// The step ids it runs after.
    #[serde(default)]
    pub needs: Vec<String>,
    /// Where the step is.
    pub status: StepStatus,
    /// Why it was skipped, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_reason: Option<String>,
    /// When the next attempt starts, while a retry is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Timestamp>,
    /// The step's last error, when it failed or waits for a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ExecutionError>,
    /// Its output, once it succeeded.
    #[schema(value_type = Option<serde_json::Value>)]
    pub output: Option<serde_json::Value>,
    /// Every attempt, oldest first.
    pub attempts: Vec<Attempt>,
    /// How many of `attempts` were made before the execution was last
    /// resumed; the retry budget counts only the attempts after them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts_before_resume: u32,
    /// What a wait step waits for, once it started waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
}

/// What a wait step waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Waiting {
    /// When it started waiting.
    #[schema(value_type = String, format = DateTime)]
    pub since: Timestamp,
    /// The signal it waits for, if it waits for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// When the wait ends: the time waited for, or the signal's timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<Timestamp>,
}

/// A signal delivered to an execution that no wait step has taken yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PendingSignal {
    /// Its position among the execution's events.
    pub sequence: u64,
    /// Its name.
    pub name: String,
    /// Its payload.
    #[schema(value_type = serde_json::Value)]
    pub payload: serde_json::Value,
    /// When it was delivered.
    #[schema(value_type = String, format = DateTime)]
    pub received_at: Timestamp,
}

/// An execution of a workflow: the record the API returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Execution {
    /// The execution's id.
    #[schema(value_type = String)]
    pub execution_id: ExecutionId,
    /// The owning tenant; never shown in the API.
    #[serde(skip_serializing, default = "no_tenant")]
    #[schema(ignore)]
    pub tenant_id: TenantId,
    /// The workflow run.
    #[schema(value_type = String)]
    pub workflow_id: WorkflowId,
    /// The workflow version run.
    pub workflow_version: u32,
    /// Current status.
    pub status: Status,
    /// The input given at submission.
    #[schema(value_type = serde_json::Value)]
    pub input_data: serde_json::Value,
    /// The workflow's output (the last step's output), once succeeded.
    #[schema(value_type = Option<serde_json::Value>)]
    pub output: Option<serde_json::Value>,
    /// Why it failed, when it failed.
    pub error: Option<ExecutionError>,
    /// Opaque data from the client, returned as given.
    #[schema(value_type = Option<serde_json::Value>)]
    pub custom_data: Option<serde_json::Value>,
    /// When it was accepted.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// For a postponed run: when it starts (`scheduled_for` or `delay` at
    /// submission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub scheduled_for: Option<Timestamp>,
    /// The cron schedule that started it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub schedule_id: Option<ScheduleId>,
    /// For a run of a schedule: the tick it ran for (for a trigger, when
    /// it was triggered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub scheduled_at: Option<Timestamp>,
    /// The batch run it is one of (`POST /v1/executions/batch`), when it
    /// is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub batch_id: Option<BatchId>,
    /// When a worker started it.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    /// When it reached a terminal status.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<Timestamp>,
    /// When the workflow `timeout` ends it, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deadline_at: Option<Timestamp>,
    /// `finished_at - created_at` in milliseconds, once finished.
    pub duration_ms: Option<f64>,
    /// Every status it entered, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Its steps, in workflow order.
    pub steps: Vec<StepRun>,
    /// Signals delivered and not yet taken by a wait step, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_signals: Vec<PendingSignal>,
    /// Where callbacks about this execution go, and which events
    /// (given at submission, or the definition's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<super::Callback>,
    /// The callbacks made so far, oldest first, with their attempts
    /// (shown by `GET /v1/executions/{id}`; never stored in the record).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<super::Delivery>,
    /// Why a `queued` execution does not start yet, when its tenant runs
    /// as many executions as `max_concurrent_executions` allows (shown by
    /// `GET /v1/executions/{id}`; never stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// The store's version of this record: set by the store when it reads
    /// the record, bumped by every commit and claim, and checked by every
    /// commit (fencing). Never shown in the API.
    #[serde(skip)]
    #[schema(ignore)]
    pub version: u64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

pub(super) fn no_tenant() -> TenantId {
    TenantId::new_unchecked("")
}

impl Execution {
    /// Moves to `status`, recording it in the history and the timestamps.
    pub fn enter(&mut self, status: Status, at: Timestamp) {
        self.enter_because(status, at, None);
    }

    /// Like [`Execution::enter`], recording why (`resume`).
    pub fn enter_because(&mut self, status: Status, at: Timestamp, reason: Option<&str>) {
        self.status = status;
        self.history.push(HistoryEntry {
            status,
            at,
            reason: reason.map(str::to_owned),
        });
        match status {
            Status::Running if self.started_at.is_none() => self.started_at = Some(at),
            s if s.is_terminal() => {
                self.finished_at = Some(at);
                self.duration_ms =
                    Some((at.as_microsecond() - self.created_at.as_microsecond()) as f64 / 1000.0);
            }
            _ => {}
        }
    }

    /// The step with workflow id `id`.
    pub fn step(&self, id: &str) -> Option<&StepRun> {
        self.steps.iter().find(|s| s.id == id)
    }
}

/// Turns a sandbox outcome into an attempt's error, if it is one.
pub fn outcome_error(step_id: &str, outcome: &Outcome) -> Option<ExecutionError> {
    let (code, message) = match outcome {
        Outcome::Succeeded { .. } => return None,
        Outcome::Failed { error } => (error.code.clone(), error.message.clone()),
        other => (other.kind().to_owned(), other.describe()),
    };
    Some(ExecutionError {
        step_name: Some(step_id.to_owned()),
        message,
        code,
    })
}

/// Builds an [`Attempt`] from a sandbox report.
#[expect(
    clippy::too_many_arguments,
    reason = "the report's parts and the attempt's place; a struct would only name them again"
)]
pub fn attempt_from(
    number: u32,
    step_id: &str,
    started_at: Timestamp,
    finished_at: Timestamp,
    outcome: &Outcome,
    metering: &Metering,
    logs: Vec<LogLine>,
    http_requests: Vec<crate::model::HttpRequestRecord>,
) -> Attempt {
    Attempt {
        number,
        status: if outcome.is_success() {
            StepStatus::Succeeded
        } else {
            StepStatus::Failed
        },
        outcome: outcome.kind().to_owned(),
        started_at,
        finished_at,
        duration_ms: metering.wall_time_us as f64 / 1000.0,
        fuel_consumed: metering.fuel_consumed,
        memory_peak_bytes: metering.memory_peak_bytes,
        error: outcome_error(step_id, outcome),
        logs,
        http_requests,
        input: None,
    }
}

/// What an event asks of an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Stop the execution: running attempts are interrupted, nothing new
    /// starts, and it ends `cancelled`.
    Cancel,
    /// A named signal with a payload, for a wait step.
    Signal,
    /// Start no new step until resumed.
    Pause,
    /// Continue a paused execution, end a waiting execution's time waits
    /// early, or restart a failed, cancelled or timed-out one.
    Resume,
}

impl EventKind {
    /// The snake_case name used in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancel => "cancel",
            Self::Signal => "signal",
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }
}

impl FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cancel" => Ok(Self::Cancel),
            "signal" => Ok(Self::Signal),
            "pause" => Ok(Self::Pause),
            "resume" => Ok(Self::Resume),
            other => Err(format!("`{other}` is not an event kind")),
        }
    }
}

/// An event for an execution, as a client sends it. The store keeps it in
/// the execution's inbox until the execution's driver consumes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// What it asks.
    pub kind: EventKind,
    /// A name (a signal's), when the kind has one.
    pub name: Option<String>,
    /// A payload (a signal's), when the kind has one.
    pub payload: Option<serde_json::Value>,
    /// The client's key: an event with a key already in the inbox (or
    /// consumed from it) is stored once.
    pub idempotency_key: Option<String>,
    /// When it was sent.
    pub at: Timestamp,
}

/// An event in an execution's inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Its position: events are consumed in `seq` order.
    pub seq: u64,
    /// What it asks.
    pub kind: EventKind,
    /// Its name, when the kind has one.
    pub name: Option<String>,
    /// Its payload, when the kind has one.
    pub payload: Option<serde_json::Value>,
    /// When it was sent.
    pub at: Timestamp,
}

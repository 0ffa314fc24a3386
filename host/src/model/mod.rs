//! Plain domain types shared by every module: outcomes, metering, log lines
//! and content digests.
//!
//! This module depends on nothing else in the crate and on no runtime: no
//! wasmtime, no HTTP, no SQL. Everything here is data that can be stored,
//! serialised and compared.

mod batch;
mod callback;
pub mod egress;
mod execution;
mod limits;
pub mod quotas;
mod redact;
mod schedule;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use self::batch::{BatchMember, BatchSummary, StatusCounts};
pub use self::callback::*;
pub use self::egress::{HostPattern, HttpCaps, HttpGrant, HttpRequestRecord, StepHttpPolicy};
pub use self::execution::*;
pub use self::limits::{AboveCeiling, Limits, Overrides};
pub use self::quotas::{Quotas, Usage};
pub use self::redact::{REDACTED, Redactor};
pub use self::schedule::*;

/// The SHA-256 digest of a component's bytes, shown as `sha256:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Computes the digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The lowercase hex form without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The text was not a `sha256:<64 hex digits>` digest.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a digest; expected `sha256:` followed by 64 hex digits")]
pub struct InvalidDigest(String);

impl FromStr for Digest {
    type Err = InvalidDigest;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidDigest(s.to_owned());
        let hex = s.strip_prefix("sha256:").ok_or_else(bad)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).map_err(|_| bad())?;
        Ok(Self(out))
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The error a step returned through the `step-error` of its WIT world.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepError {
    /// Machine-readable code chosen by the step author.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Whether the step says a retry may help.
    pub retryable: bool,
}

/// How one step attempt ended. A guest misbehaving is an outcome, never a
/// host error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// The step returned JSON output within its limits.
    Succeeded {
        /// The output, exactly as the guest wrote it (validated JSON).
        output: String,
    },
    /// The step returned its own `step-error`.
    Failed {
        /// The error as the guest reported it.
        error: StepError,
    },
    /// The attempt used up its fuel budget.
    FuelExhausted,
    /// The attempt ran past its wall-clock limit.
    TimedOut,
    /// The attempt asked for more linear memory than its limit allows.
    MemoryLimit,
    /// The guest exhausted its wasm stack.
    StackOverflow,
    /// The guest trapped for another reason (a panic, `unreachable`, an
    /// out-of-bounds access, ...).
    Trapped {
        /// The trap message, including the guest's own text where available.
        message: String,
        /// The wasm backtrace, one frame per line, when one was captured.
        backtrace: Option<String>,
    },
    /// The guest returned output that is not JSON or that is too large.
    InvalidOutput {
        /// Why the output was rejected.
        reason: String,
    },
    /// The attempt was cancelled from outside before it finished.
    Cancelled,
}

impl Outcome {
    /// The stable snake_case name of the outcome, as used in the API.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Succeeded { .. } => "succeeded",
            Self::Failed { .. } => "failed",
            Self::FuelExhausted => "fuel_exhausted",
            Self::TimedOut => "timed_out",
            Self::MemoryLimit => "memory_limit",
            Self::StackOverflow => "stack_overflow",
            Self::Trapped { .. } => "trapped",
            Self::InvalidOutput { .. } => "invalid_output",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the attempt succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Succeeded { .. })
    }

    /// A one-line human description, used in CLI output and error fields.
    pub fn describe(&self) -> String {
        match self {
            Self::Succeeded { .. } => "succeeded".into(),
            Self::Failed { error } => format!(
                "failed: [{}] {}{}",
                error.code,
                error.message,
                if error.retryable { " (retryable)" } else { "" }
            ),
            Self::FuelExhausted => "fuel_exhausted: the attempt used up its fuel budget".into(),
            Self::TimedOut => "timed_out: the attempt ran past its time limit".into(),
            Self::MemoryLimit => "memory_limit: the attempt exceeded its memory limit".into(),
            Self::StackOverflow => "stack_overflow: the guest exhausted its wasm stack".into(),
            Self::Trapped { message, .. } => format!("trapped: {message}"),
            Self::InvalidOutput { reason } => format!("invalid_output: {reason}"),
            Self::Cancelled => "cancelled: the attempt was interrupted".into(),
        }
    }
}

/// The severity of a log line; mirrors the WIT `log.level` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal progress, and the guest's stdout.
    Info,
    /// Something unexpected, and the guest's stderr.
    Warn,
    /// A failure.
    Error,
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    /// The `stephost:step/log` import.
    Log,
    /// The guest's standard output.
    Stdout,
    /// The guest's standard error.
    Stderr,
    /// The host, for notes such as truncation.
    Host,
}

/// One line of an attempt's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Milliseconds since the attempt started.
    pub at_ms: u64,
    /// Severity.
    pub level: LogLevel,
    /// Origin of the line.
    pub source: LogSource,
    /// The text, with secrets redacted.
    pub message: String,
}

/// What one attempt cost. Reported for every attempt, whatever its outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metering {
    /// Wall-clock time from instantiation to teardown, in microseconds.
    pub wall_time_us: u64,
    /// Fuel consumed (roughly one unit per wasm instruction).
    pub fuel_consumed: u64,
    /// The largest total linear memory the attempt held, in bytes.
    pub memory_peak_bytes: u64,
}

impl Metering {
    /// The wall time as a [`Duration`].
    pub fn wall_time(&self) -> Duration {
        Duration::from_micros(self.wall_time_us)
    }
}

/// The full result of one attempt: outcome, metering and logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptReport {
    /// How the attempt ended.
    pub outcome: Outcome,
    /// What it cost.
    pub metering: Metering,
    /// What it logged, bounded in size and with secrets redacted.
    pub logs: Vec<LogLine>,
    /// The HTTP requests it made or tried to make, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRequestRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_through_text() {
        let d = Digest::of(b"hello");
        let text = d.to_string();
        assert_eq!(
            text,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(text.parse::<Digest>().unwrap(), d);
        assert!("sha256:zz".parse::<Digest>().is_err());
        assert!("md5:00".parse::<Digest>().is_err());
    }

    #[test]
    fn outcome_kinds_are_stable() {
        assert_eq!(Outcome::FuelExhausted.kind(), "fuel_exhausted");
        let json = serde_json::to_value(Outcome::MemoryLimit).unwrap();
        assert_eq!(json["kind"], "memory_limit");
    }
}

/// What a step gets besides its input: its configuration map, the secret
/// values to redact from everything it reports, and what it may reach over
/// HTTP.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    /// Values returned by the `config` import.
    pub config: BTreeMap<String, String>,
    /// Secret values; redacted from logs and error messages.
    pub secrets: Vec<String>,
    /// The hosts and caps of its HTTP requests; `None` denies them all.
    pub http: Option<HttpGrant>,
}

//! The workflow definition format and its validation.
//!
//! A definition is a DAG of steps. Each step runs a registered component
//! (`name`, or `name@digest` to pin a version) on an `input` built from
//! templates, after the steps it `needs`; without `needs` a step needs the
//! step before it, so plain lists stay sequential. `docs/workflows.md`
//! describes every field with examples.
//!
//! Shape problems (unknown fields, wrong types) and meaning problems (cycles,
//! unknown steps, references to non-ancestors, bad templates, limits above
//! the ceilings, a malformed `input_schema`) are all listed, each with its
//! JSON path, rather than stopping at the first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::template;
use crate::model::Overrides;

mod validate;

pub(crate) use self::validate::json_path;
pub use self::validate::{Context, ancestors};

/// How long an execution may take when the workflow does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// The most attempts a retry policy may ask for.
pub const MAX_ATTEMPTS: u32 = 100;
/// Root names templates may use (besides `secrets` in `config`).
const ROOTS: &[&str] = &["input", "steps", "execution", "workflow"];
/// Functions the template language provides.
const FUNCTIONS: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "loop",
    "true",
    "false",
    "none",
];

/// A workflow definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// The workflow's id; optional in the body, and must match the path when
    /// given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What the workflow is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema that `input_data` must satisfy at submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input_schema: Option<Value>,
    /// The steps.
    pub steps: Vec<StepDef>,
    /// A template (or JSON value with templates) that builds the output;
    /// by default the output of the last step in the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    /// Deadline for the whole execution, such as `30s`, `5m`, `1h` or
    /// `PT1H` (default `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// The retry policy of steps that have none of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Where callbacks about executions of this workflow go, and which
    /// events, when a submission gives no `callback` of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<crate::model::Callback>,
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    /// Unique within the workflow.
    pub id: String,
    /// The registered step to run: `name`, or `name@sha256:…` to pin one
    /// version. A step has either `step` or `wait`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// A built-in wait instead of a component: for a time, until a time, or
    /// for a signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitDef>,
    /// The input: a template, or a JSON value containing templates. Without
    /// it, a step with no `needs` gets `input_data`, a step with one gets
    /// that step's output, and a step with several gets an object of their
    /// outputs by step id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    /// The step ids this step runs after; default: the previous step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs: Option<Vec<String>>,
    /// A condition; when false the step is `skipped`.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Values for the guest's `config` import; may use templates and
    /// `{{ secrets.NAME }}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub config: BTreeMap<String, Value>,
    /// Per-step limits, at most the server's ceilings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<StepLimits>,
    /// The hosts the step may call over HTTP (`api.example.com`,
    /// `*.example.org:443`, `*`), and then only those the tenant's egress
    /// allowlist and the server's `step-http-allow` also allow. Without it
    /// the step has no network access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_http: Option<Vec<String>>,
    /// Retries of this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// When set, a failure of this step does not fail the workflow, which
    /// then ends `partially_succeeded`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continue_on_error: bool,
}

/// What a wait step waits for: exactly one of `for`, `until` and `signal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitDef {
    /// How long to wait, such as `10m` or `PT24H`.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// When to stop waiting: an RFC 3339 time, usually a template such as
    /// `{{ input.send_at }}`. A time already past ends the wait at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// The name of the signal to wait for. The step's output is the
    /// signal's payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// With `signal`: how long to wait for it; the step then fails with
    /// code `signal_timeout`. Without it, the workflow's deadline bounds the
    /// wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// With `signal`: a JSON Schema the payload must satisfy; a signal that
    /// does not is refused with 422 and not consumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
}

/// Limits of one step's attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepLimits {
    /// Wall-clock limit per attempt, such as `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Fuel budget per attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Linear memory cap: bytes, or a size such as `64MiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub memory: Option<Value>,
    /// The most HTTP requests per attempt, at most the server's
    /// `step-http-max-requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_requests: Option<u32>,
    /// The most HTTP response body bytes per attempt, all requests
    /// together: bytes, or a size such as `1MiB`; at most the server's
    /// `step-http-max-response-bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub http_response_bytes: Option<Value>,
    /// The most HTTP requests open at once per attempt, at most the
    /// server's `step-http-max-concurrent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_concurrent: Option<u32>,
}

/// How delays between attempts grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// `initial_delay × 2^(n-1)`, capped at `max_delay`.
    #[default]
    Exponential,
    /// Always `initial_delay`.
    Fixed,
}

/// Outcomes that are not retried unless the policy lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// The attempt ran out of time.
    TimedOut,
    /// The attempt ran out of fuel.
    FuelExhausted,
    /// The attempt hit its memory cap.
    MemoryLimit,
    /// The guest trapped (a panic, an uncaught exception).
    Trapped,
    /// The guest overflowed its stack.
    StackOverflow,
    /// The guest returned something that is not JSON or too large.
    InvalidOutput,
}

impl RetryOn {
    /// The outcome name this matches.
    pub fn outcome(self) -> &'static str {
        match self {
            Self::TimedOut => "timed_out",
            Self::FuelExhausted => "fuel_exhausted",
            Self::MemoryLimit => "memory_limit",
            Self::Trapped => "trapped",
            Self::StackOverflow => "stack_overflow",
            Self::InvalidOutput => "invalid_output",
        }
    }
}

/// When and how often a failed step runs again. A `step-error` with
/// `retryable: true` is retried; one with `retryable: false` never is;
/// other outcomes only when listed in `retry_on`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 1: no retry).
    pub max_attempts: u32,
    /// `exponential` (default) or `fixed`.
    pub backoff: Backoff,
    /// Delay before the second attempt (default `1s`).
    pub initial_delay: String,
    /// Longest delay (default `5m`).
    pub max_delay: String,
    /// Fraction of each delay taken off at random, from 0 (default) to 1.
    pub jitter: f64,
    /// Outcomes besides retryable errors that are retried.
    pub retry_on: Vec<RetryOn>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            backoff: Backoff::Exponential,
            initial_delay: "1s".into(),
            max_delay: "5m".into(),
            jitter: 0.0,
            retry_on: Vec::new(),
        }
    }
}

impl RetryPolicy {
    /// The delay after attempt `number` (from 1) failed, before jitter.
    pub fn delay_after(&self, number: u32) -> Duration {
        let initial = parse_duration(&self.initial_delay).unwrap_or(Duration::from_secs(1));
        let max = parse_duration(&self.max_delay).unwrap_or(Duration::from_secs(300));
        let delay = match self.backoff {
            Backoff::Fixed => initial,
            Backoff::Exponential => {
                initial.saturating_mul(2u32.saturating_pow(number.saturating_sub(1).min(31)))
            }
        };
        delay.min(max)
    }

    /// `delay` with up to `jitter` of it taken off, using `random` in [0, 1).
    pub fn jittered(&self, delay: Duration, random: f64) -> Duration {
        delay.mul_f64(1.0 - self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0))
    }
}

/// One problem in a definition, with the JSON path it is at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// JSON path such as `$.steps[1].id`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn problem(path: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        path: path.into(),
        message: message.into(),
    }
}

/// Parses `30s`, `5m`, `1h 30m`, `250ms`, `7d`, `2w` or ISO 8601 (`PT1H`,
/// `P1D`). Days are 24 hours and weeks 7 days; months and years are refused
/// (their length depends on the date).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let d = match trimmed.parse::<jiff::SignedDuration>() {
        Ok(d) => d,
        Err(e) => trimmed
            .parse::<jiff::Span>()
            .ok()
            .and_then(|span| {
                span.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                    .ok()
            })
            .ok_or_else(|| {
                format!("`{text}` is not a duration such as `30s`, `5m`, `7d` or `PT1H`: {e}")
            })?,
    };
    Duration::try_from(d).map_err(|_| format!("`{text}` is negative"))
}

/// Parses a byte size: an integer, or a number with `KiB`, `MiB`, `GiB`,
/// `KB`, `MB`, `GB` or `B`.
pub fn parse_bytes(value: &Value) -> Result<u64, String> {
    if let Some(n) = value.as_u64() {
        return Ok(n);
    }
    let text = value
        .as_str()
        .ok_or_else(|| format!("`{value}` is not a size such as `64MiB` or a byte count"))?;
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as `64MiB`"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown size unit `{other}` in `{text}`")),
    };
    Ok((num * scale as f64) as u64)
}

impl Definition {
    /// Parses JSON or YAML text, reporting a parse failure as one problem.
    pub fn parse(text: &str, yaml: bool) -> Result<Self, Vec<Problem>> {
        let parsed = if yaml {
            serde_yaml_ng::from_str::<Value>(text).map_err(|e| e.to_string())
        } else {
            serde_json::from_str::<Value>(text).map_err(|e| e.to_string())
        };
        let value = parsed.map_err(|message| {
            vec![problem(
                "$",
                format!(
                    "the body is not valid {}: {message}",
                    if yaml { "YAML" } else { "JSON" }
                ),
            )]
        })?;
        Self::from_value(value)
    }

    /// Reads a definition from a JSON value, listing every shape problem.
    pub fn from_value(value: Value) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let Some(obj) = value.as_object() else {
            return Err(vec![problem(
                "$",
                "a workflow definition must be an object",
            )]);
        };
        const TOP: &[&str] = &[
            "id",
            "description",
            "input_schema",
            "steps",
            "output",
            "timeout",
            "retry",
            "callback",
        ];
        unknown_keys(obj, TOP, "$", &mut problems);
        let _: Option<String> = field(obj, "id", "$", &mut problems);
        let _: Option<String> = field(obj, "description", "$", &mut problems);
        let _: Option<String> = field(obj, "timeout", "$", &mut problems);
        let _: Option<RetryPolicy> = field(obj, "retry", "$", &mut problems);
        let _: Option<crate::model::Callback> = field(obj, "callback", "$", &mut problems);
        if let Some(schema) = obj.get("input_schema")
            && !schema.is_object()
            && !schema.is_boolean()
        {
            problems.push(problem(
                "$.input_schema",
                "`input_schema` must be a JSON Schema (an object)",
            ));
        }
        match obj.get("steps") {
            None => problems.push(problem("$.steps", "missing field `steps`")),
            Some(Value::Array(steps)) => {
                for (i, step) in steps.iter().enumerate() {
                    check_step_shape(i, step, &mut problems);
                }
            }
            Some(_) => problems.push(problem("$.steps", "`steps` must be an array")),
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        typed(value, "$").map_err(|p| vec![p])
    }

    /// The step indexes each step needs (explicit `needs`, or the previous
    /// step). Unknown ids are left out; `validate` reports them.
    pub fn needs(&self) -> Vec<Vec<usize>> {
        let index: HashMap<&str, usize> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        self.steps
            .iter()
            .enumerate()
            .map(|(i, s)| match &s.needs {
                Some(ids) => ids
                    .iter()
                    .filter_map(|id| index.get(id.as_str()).copied())
                    .collect(),
                None if i == 0 => Vec::new(),
                None => vec![i - 1],
            })
            .collect()
    }

    /// The execution deadline after start.
    pub fn timeout(&self) -> Duration {
        self.timeout
            .as_deref()
            .and_then(|t| parse_duration(t).ok())
            .unwrap_or(DEFAULT_TIMEOUT)
    }

    /// The retry policy of step `i`.
    pub fn retry(&self, i: usize) -> RetryPolicy {
        self.steps[i]
            .retry
            .clone()
            .or_else(|| self.retry.clone())
            .unwrap_or_default()
    }

    /// The limits step `i` asks for.
    pub fn overrides(&self, i: usize) -> Overrides {
        let Some(l) = &self.steps[i].limits else {
            return Overrides::default();
        };
        Overrides {
            fuel: l.fuel,
            timeout: l.timeout.as_deref().and_then(|t| parse_duration(t).ok()),
            memory_bytes: l.memory.as_ref().and_then(|m| parse_bytes(m).ok()),
        }
    }

    /// What step `i` may reach over HTTP and its caps (the server's,
    /// lowered by the step's `limits`); `None` when it has no
    /// `allow_http`. Patterns that do not parse are left out (a valid
    /// definition has none).
    pub fn http(
        &self,
        i: usize,
        server: &crate::model::HttpCaps,
    ) -> Option<(
        Vec<crate::model::egress::HostPattern>,
        crate::model::HttpCaps,
    )> {
        let step = &self.steps[i];
        let allow = step.allow_http.as_ref()?;
        let patterns = allow.iter().filter_map(|p| p.parse().ok()).collect();
        let l = step.limits.as_ref();
        let caps = crate::model::HttpCaps {
            max_requests: l
                .and_then(|l| l.http_requests)
                .map_or(server.max_requests, |n| n.min(server.max_requests)),
            max_response_bytes: l
                .and_then(|l| l.http_response_bytes.as_ref())
                .and_then(|b| parse_bytes(b).ok())
                .map_or(server.max_response_bytes, |n| {
                    n.min(server.max_response_bytes)
                }),
            max_concurrent: l
                .and_then(|l| l.http_concurrent)
                .map_or(server.max_concurrent, |n| n.min(server.max_concurrent)),
        };
        Some((patterns, caps))
    }

    /// The secret names the steps' `config` refers to.
    pub fn secret_names(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for s in &self.steps {
            let mut found = Vec::new();
            for (k, v) in &s.config {
                template::strings_in(v, k, &mut found);
            }
            for (_, source) in found {
                if let Ok(refs) = template::references(source, false) {
                    for r in refs {
                        if let Some(name) = r.strip_prefix("secrets.") {
                            out.insert(name.split('.').next().unwrap_or(name).to_owned());
                        }
                    }
                }
            }
        }
        out
    }
}

fn unknown_keys(
    obj: &serde_json::Map<String, Value>,
    known: &[&str],
    at: &str,
    problems: &mut Vec<Problem>,
) {
    for key in obj.keys() {
        if !known.contains(&key.as_str()) {
            problems.push(problem(
                format!("{at}.{key}"),
                format!(
                    "unknown field `{key}`; expected one of {}",
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
}

/// Reads `obj[key]` as `T`, recording a problem at its path if it does not
/// fit.
fn field<T: DeserializeOwned>(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    at: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let v = obj.get(key)?;
    match typed(v.clone(), &format!("{at}.{key}")) {
        Ok(t) => Some(t),
        Err(p) => {
            problems.push(p);
            None
        }
    }
}

/// Deserializes `value`, found at `at`, into `T`; a failure names the
/// innermost field it happened in (`$.retry.max_attempts`, not `$.retry`).
fn typed<T: DeserializeOwned>(value: Value, at: &str) -> Result<T, Problem> {
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let inner = e.path().to_string();
        let path = match inner.as_str() {
            "." => at.to_owned(),
            p if p.starts_with('[') => format!("{at}{p}"),
            p => format!("{at}.{p}"),
        };
        let mut message = e.inner().to_string();
        if message == "invalid number" {
            // serde_json's whole message for a number out of the field's
            // range: say which.
            let mut found = Some(&value);
            for segment in e.path().iter() {
                found = match segment {
                    serde_path_to_error::Segment::Seq { index } => found.and_then(|v| v.get(index)),
                    serde_path_to_error::Segment::Map { key } => {
                        found.and_then(|v| v.get(key.as_str()))
                    }
                    _ => None,
                };
            }
            if let Some(n) = found.filter(|v| v.is_number()) {
                message = format!("`{n}` is out of range here (or not a whole number)");
            }
        }
        problem(path, message)
    })
}

fn check_step_shape(i: usize, step: &Value, problems: &mut Vec<Problem>) {
    let at = format!("$.steps[{i}]");
    let Some(obj) = step.as_object() else {
        problems.push(problem(at, "a step must be an object such as `{id, step}`"));
        return;
    };
    const STEP: &[&str] = &[
        "id",
        "step",
        "wait",
        "input",
        "needs",
        "if",
        "config",
        "limits",
        "retry",
        "continue_on_error",
        "allow_http",
    ];
    unknown_keys(obj, STEP, &at, problems);
    match obj.get("id") {
        None => problems.push(problem(format!("{at}.id"), "missing field `id`")),
        Some(v) if !v.is_string() => {
            problems.push(problem(format!("{at}.id"), "`id` must be a string"));
        }
        Some(_) => {}
    }
    match (obj.get("step"), obj.get("wait")) {
        (None, None) => problems.push(problem(
            format!("{at}.step"),
            "missing field `step` (or `wait` for a built-in wait)",
        )),
        (Some(_), Some(_)) => problems.push(problem(
            format!("{at}.wait"),
            "a step has either `step` or `wait`, not both",
        )),
        (Some(v), None) if !v.is_string() => {
            problems.push(problem(format!("{at}.step"), "`step` must be a string"));
        }
        (Some(_), None) => {}
        (None, Some(_)) => {
            let wait: Option<WaitDef> = field(obj, "wait", &at, problems);
            for key in ["input", "config", "limits", "retry", "allow_http"] {
                if obj.contains_key(key) {
                    problems.push(problem(
                        format!("{at}.{key}"),
                        format!("a wait step has no `{key}`"),
                    ));
                }
            }
            if let Some(w) = wait {
                check_wait_shape(&w, &format!("{at}.wait"), problems);
            }
        }
    }
    let _: Option<Vec<String>> = field(obj, "needs", &at, problems);
    let _: Option<String> = field(obj, "if", &at, problems);
    let _: Option<BTreeMap<String, Value>> = field(obj, "config", &at, problems);
    let _: Option<StepLimits> = field(obj, "limits", &at, problems);
    let _: Option<RetryPolicy> = field(obj, "retry", &at, problems);
    let _: Option<bool> = field(obj, "continue_on_error", &at, problems);
    let _: Option<Vec<String>> = field(obj, "allow_http", &at, problems);
}

/// Checks that a wait names exactly one thing to wait for, and that its
/// durations and schema are well formed.
fn check_wait_shape(w: &WaitDef, at: &str, problems: &mut Vec<Problem>) {
    let kinds = [w.duration.is_some(), w.until.is_some(), w.signal.is_some()];
    if kinds.iter().filter(|k| **k).count() != 1 {
        problems.push(problem(
            at,
            "a wait has exactly one of `for`, `until` and `signal`",
        ));
    }
    if let Some(d) = &w.duration
        && let Err(m) = parse_duration(d)
    {
        problems.push(problem(format!("{at}.for"), m));
    }
    if w.signal.is_none() {
        for key in ["timeout", "schema"] {
            let given = match key {
                "timeout" => w.timeout.is_some(),
                _ => w.schema.is_some(),
            };
            if given {
                problems.push(problem(
                    format!("{at}.{key}"),
                    format!("`{key}` applies only to a wait for a `signal`"),
                ));
            }
        }
    }
    if let Some(name) = &w.signal
        && let Err(m) = crate::model::check_name("signal name", name)
    {
        problems.push(problem(format!("{at}.signal"), m));
    }
    if let Some(t) = &w.timeout
        && let Err(m) = parse_duration(t)
    {
        problems.push(problem(format!("{at}.timeout"), m));
    }
    if let Some(schema) = &w.schema
        && let Err(e) = jsonschema::validator_for(schema)
    {
        problems.push(problem(
            format!("{at}.schema"),
            format!("not a valid JSON Schema: {e}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::Digest;

    fn cx_steps() -> HashMap<String, Vec<Digest>> {
        HashMap::from([("known".to_owned(), vec![Digest::of(b"v1")])])
    }

    fn check(def: Value) -> Vec<String> {
        let steps = cx_steps();
        let ceilings = |o: &Overrides| match o.fuel {
            Some(f) if f > 1000 => Err(format!(
                "limit `fuel` of {f} is above the server ceiling of 1000"
            )),
            _ => Ok(()),
        };
        let cx = Context {
            path_id: "wf",
            steps: &steps,
            ceilings: &ceilings,
            http_caps: crate::model::HttpCaps::DEFAULT,
        };
        match Definition::from_value(def) {
            Err(p) => p.into_iter().map(|p| p.path).collect(),
            Ok(d) => d.validate(&cx).into_iter().map(|p| p.path).collect(),
        }
    }

    #[test]
    fn every_shape_problem_is_listed_with_its_path() {
        assert_eq!(
            check(json!({
                "steps": [{"id": "a"}, {"id": 3, "step": "x", "extra": 1}, "nope"],
                "bogus": true
            })),
            [
                "$.bogus",
                "$.steps[0].step",
                "$.steps[1].extra",
                "$.steps[1].id",
                "$.steps[2]"
            ]
        );
    }

    /// A type error names the field it is in, not the object around it.
    #[test]
    fn type_errors_name_the_field() {
        let problems = Definition::from_value(json!({
            "retry": {"jitter": "half"},
            "steps": [
                {"id": "a", "step": "known", "retry": {"max_attempts": -1},
                 "limits": {"fuel": "lots"}},
                {"id": "b", "step": "known", "needs": ["a", 7],
                 "retry": {"retry_on": ["timed_out", "sometimes"]}},
                {"id": "c", "wait": {"for": 5}}
            ]
        }))
        .unwrap_err();
        let found: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.path.as_str(), p.message.as_str()))
            .collect();
        let paths: Vec<&str> = found.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            paths,
            [
                "$.retry.jitter",
                "$.steps[0].limits.fuel",
                "$.steps[0].retry.max_attempts",
                "$.steps[1].needs[1]",
                "$.steps[1].retry.retry_on[1]",
                "$.steps[2].wait.for"
            ],
            "{found:?}"
        );
        assert_eq!(
            found[2].1, "`-1` is out of range here (or not a whole number)",
            "{found:?}"
        );
    }

    #[test]
    fn cycles_and_non_ancestor_references_are_found() {
        assert_eq!(
            check(json!({"steps": [
                {"id": "a", "step": "known", "needs": ["b"]},
                {"id": "b", "step": "known", "needs": ["a"]},
                {"id": "c", "step": "known", "needs": [], "input": "{{ steps.d.output }}"},
                {"id": "d", "step": "known", "needs": []}]})),
            ["$.steps[0].needs", "$.steps[1].needs", "$.steps[2].input"]
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = RetryPolicy {
            max_attempts: 5,
            initial_delay: "2s".into(),
            max_delay: "5s".into(),
            ..RetryPolicy::default()
        };
        let d: Vec<_> = (1..=4).map(|n| r.delay_after(n).as_secs()).collect();
        assert_eq!(d, [2, 4, 5, 5]);
        let fixed = RetryPolicy {
            backoff: Backoff::Fixed,
            ..r.clone()
        };
        assert_eq!(fixed.delay_after(3).as_secs(), 2);
        let jittery = RetryPolicy { jitter: 0.5, ..r };
        assert_eq!(
            jittery.jittered(Duration::from_secs(4), 1.0),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_bytes(&json!("64MiB")).unwrap(), 64 << 20);
        assert_eq!(parse_bytes(&json!(1000)).unwrap(), 1000);
        assert!(parse_bytes(&json!("12 parsecs")).is_err());
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("PT2M").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
        let day = Duration::from_secs(86_400);
        assert_eq!(parse_duration("7d").unwrap(), 7 * day);
        assert_eq!(parse_duration("1d 12h").unwrap(), day + day / 2);
        assert_eq!(parse_duration("2w").unwrap(), 14 * day);
        assert_eq!(parse_duration("P1D").unwrap(), day);
        let month = parse_duration("1mo").unwrap_err();
        assert!(month.contains("`7d`"), "{month}");
        assert!(parse_duration("P1Y").is_err());
        assert!(parse_duration("-1d").is_err());
    }

    #[test]
    fn yaml_is_accepted() {
        let d = Definition::parse("steps:\n  - id: a\n    step: echo\n", true).unwrap();
        assert_eq!(d.steps[0].step.as_deref(), Some("echo"));
    }
}

//! The DAG's pure core: an execution's state in, the next action out.
//!
//! [`State`] holds the execution record and what the driver knows beside it
//! (why it stops, the secrets and their redactor). Every decision lives
//! here and takes the time as an argument: which steps start (with their
//! rendered input and config), how a finished attempt is recorded (retry,
//! fail, fail fast), what an event does (cancel, signal, pause, resume),
//! when waits end, and whether the execution runs on, parks until a time,
//! or finishes with a status. Nothing here awaits, reads a clock, spawns,
//! or touches the store: the driver (`drive`) is the shell that does the
//! I/O, and the unit tests below drive the core directly.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

mod waits;

#[cfg(test)]
mod tests;

use super::RunnerError;
use super::definition::Definition;
use super::template::Scope;
use crate::model::{
    AttemptReport, Digest, Event, EventKind, Execution, ExecutionError, Outcome, Overrides,
    PendingSignal, Redactor, Status, StepRun, StepStatus, Timestamp, attempt_from,
};

/// The history reason of a transition a client's resume caused.
pub(super) const RESUME: &str = "resume";

/// Why the execution stopped starting steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    Failed,
    Cancelled,
    TimedOut,
}

/// One attempt to start, fully resolved.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Start {
    /// The step's index in the workflow.
    pub(super) index: usize,
    /// The attempt's number (1 for the first).
    pub(super) number: u32,
    /// The component to run.
    pub(super) digest: Digest,
    /// The rendered input.
    pub(super) input: Value,
    /// The rendered config values (secrets included).
    pub(super) config: BTreeMap<String, String>,
    /// The step's own limits.
    pub(super) overrides: Overrides,
    /// Time left before the deadline.
    pub(super) remaining: Duration,
    /// When it starts.
    pub(super) started_at: Timestamp,
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Action {
    /// Start these attempts (maybe none), store the state if `changed`, then
    /// decide again when an attempt ends, an event arrives, or at `until`.
    Run {
        start: Vec<Start>,
        changed: bool,
        until: Option<Timestamp>,
    },
    /// Nothing runs and nothing can start before `wake_at`: store the state
    /// and let go of the execution until then (or an event).
    Park { wake_at: Timestamp },
    /// Nothing runs and nothing is left: [`State::conclude`] with this.
    Finish(Status),
}

/// One finished attempt, as the runner reported it.
#[derive(Debug)]
pub(super) struct Done {
    pub(super) index: usize,
    pub(super) number: u32,
    pub(super) started_at: Timestamp,
    pub(super) input: Value,
    pub(super) result: Result<AttemptReport, RunnerError>,
}

/// An execution as the driver holds it.
#[derive(Debug)]
pub(super) struct State {
    pub(super) exec: Execution,
    pub(super) stop: Option<Stop>,
    /// The values of the secrets the workflow uses, by name.
    pub(super) secrets: BTreeMap<String, String>,
    /// Takes those values out of everything recorded.
    pub(super) redactor: Redactor,
}

impl State {
    pub(super) fn new(exec: Execution) -> Self {
        Self {
            exec,
            stop: None,
            secrets: BTreeMap::new(),
            redactor: Redactor::default(),
        }
    }

    /// Sets the secrets' values, which are redacted from all recorded.
    pub(super) fn set_secrets(&mut self, secrets: BTreeMap<String, String>) {
        self.redactor = Redactor::new(secrets.values().cloned().collect::<Vec<_>>());
        self.secrets = secrets;
    }

    /// Prepares a claimed execution to run at `now`: its deadline is set on
    /// its first start; steps that were running when a process died start
    /// again; a queued execution enters `running`. Returns whether the
    /// state changed in a way worth storing.
    pub(super) fn begin(&mut self, def: &Definition, now: Timestamp) -> bool {
        if self.exec.deadline_at.is_none() {
            self.exec.deadline_at = Some(add(now, def.timeout()));
        }
        for s in &mut self.exec.steps {
            if s.status == StepStatus::Running {
                s.status = StepStatus::Pending;
            }
        }
        if matches!(self.exec.status, Status::Queued | Status::Scheduled) && self.stop.is_none() {
            self.exec.enter(Status::Running, now);
            return true;
        }
        false
    }

    /// Fails the execution before any step (its definition or secrets are
    /// unavailable).
    pub(super) fn fail_to_start(&mut self, code: &str, message: String) {
        self.exec.error = Some(ExecutionError {
            step_name: None,
            message,
            code: code.into(),
        });
        self.stop = Some(Stop::Failed);
    }

    /// Acts on an event from the inbox: a cancel stops the execution; a
    /// signal joins `pending_signals`, where a wait step takes it; a pause
    /// or a resume changes the status (see [`State::pause`],
    /// [`State::resume`]).
    pub(super) fn apply(&mut self, event: Event, now: Timestamp) {
        match event.kind {
            EventKind::Cancel => self.halt(Stop::Cancelled),
            EventKind::Signal => self.exec.pending_signals.push(PendingSignal {
                sequence: event.seq,
                name: event.name.unwrap_or_default(),
                payload: event.payload.unwrap_or(Value::Null),
                received_at: event.at,
            }),
            EventKind::Pause => self.pause(now),
            EventKind::Resume => self.resume(now),
        }
    }

    /// Enters `paused` unless the execution is stopping or paused already.
    fn pause(&mut self, now: Timestamp) {
        if self.stop.is_none()
            && !self.exec.status.is_terminal()
            && self.exec.status != Status::Paused
        {
            self.exec.enter(Status::Paused, now);
        }
    }

    /// Continues a paused execution; starts a postponed one now; ends a
    /// waiting execution's time waits
    /// now; restarts an execution that ended failed, cancelled or timed out
    /// from every step that did not succeed, with a fresh deadline and
    /// retry budget. Each is a history entry with reason `resume`, entering
    /// `running` (the driver moves on to `waiting` if a wait remains). Any
    /// other state has nothing to resume: the event changes nothing.
    fn resume(&mut self, now: Timestamp) {
        if self.stop.is_some() {
            return;
        }
        match self.exec.status {
            // A paused execution continues; a postponed one starts now.
            Status::Paused | Status::Scheduled => {}
            Status::Waiting => {
                let mut ended = false;
                for s in &mut self.exec.steps {
                    if s.status == StepStatus::Waiting
                        && let Some(w) = &mut s.waiting
                        && w.signal.is_none()
                    {
                        w.until = Some(now);
                        ended = true;
                    }
                }
                if !ended {
                    return;
                }
            }
            s if s.is_restartable() => {
                for step in &mut self.exec.steps {
                    if step.status != StepStatus::Succeeded {
                        step.status = StepStatus::Pending;
                        step.error = None;
                        step.output = None;
                        step.skipped_reason = None;
                        step.next_attempt_at = None;
                        step.waiting = None;
                        step.attempts_before_resume =
                            u32::try_from(step.attempts.len()).unwrap_or(u32::MAX);
                    }
                }
                let exec = &mut self.exec;
                exec.error = None;
                exec.output = None;
                exec.finished_at = None;
                exec.duration_ms = None;
                exec.deadline_at = None;
            }
            _ => return,
        }
        self.exec.enter_because(Status::Running, now, Some(RESUME));
    }

    /// Stops starting steps; the driver interrupts the running attempts
    /// once `stop` is set.
    pub(super) fn halt(&mut self, why: Stop) {
        if self.stop.is_none() {
            self.stop = Some(why);
            if why == Stop::TimedOut && self.exec.error.is_none() {
                self.exec.error = Some(ExecutionError {
                    step_name: None,
                    message: "the workflow ran past its `timeout`".into(),
                    code: "timed_out".into(),
                });
            }
        }
    }

    /// Decides what happens next at `now`, with `running` attempts in
    /// flight: starts every step that can start, ends the waits that are
    /// over, stops at the deadline, and says whether to run on, park or
    /// finish.
    pub(super) fn advance(
        &mut self,
        def: &Definition,
        needs: &[Vec<usize>],
        now: Timestamp,
        running: usize,
    ) -> Action {
        let deadline = self.exec.deadline_at.unwrap_or(now);
        let mut start = Vec::new();
        let mut changed = false;
        loop {
            let paused = self.exec.status == Status::Paused;
            let mut round = false;
            if self.stop.is_none() {
                if now >= deadline {
                    self.halt(Stop::TimedOut);
                    round = true;
                } else if !paused {
                    round = self.schedule(def, needs, now, deadline, &mut start);
                }
            }
            changed |= round;
            // The next time something can happen: a retry, or the end of a
            // wait or of a signal's timeout.
            let next_time = self
                .exec
                .steps
                .iter()
                .filter_map(|s| match s.status {
                    StepStatus::Retrying => s.next_attempt_at,
                    StepStatus::Waiting => s.waiting.as_ref().and_then(|w| w.until),
                    _ => None,
                })
                .min();
            let waiting = self
                .exec
                .steps
                .iter()
                .any(|s| s.status == StepStatus::Waiting);
            let pending = self.exec.steps.iter().any(|s| {
                matches!(
                    s.status,
                    StepStatus::Pending | StepStatus::Retrying | StepStatus::Waiting
                )
            });
            let idle = running == 0 && start.is_empty();
            if idle && (self.stop.is_some() || !pending) {
                return Action::Finish(self.final_status());
            }
            if self.stop.is_some() {
                // Interrupted attempts report back first.
                return Action::Run {
                    start,
                    changed,
                    until: None,
                };
            }
            if paused {
                if idle {
                    // Paused, and the attempts that were running have
                    // finished: park until the deadline or an event.
                    return Action::Park { wake_at: deadline };
                }
                return Action::Run {
                    start,
                    changed,
                    until: Some(deadline),
                };
            }
            let until = next_time.map_or(deadline, |t| t.min(deadline));
            if idle && (next_time.is_some() || waiting) {
                // Nothing runs and nothing can start before the next time
                // (or a signal): park until then (or the deadline).
                self.settle_status(now);
                return Action::Park { wake_at: until };
            }
            if idle {
                if round {
                    // A skip or a failure may have let another step start.
                    continue;
                }
                // Nothing runs and nothing can start: a step waits on a
                // dependency that will never settle. `validate` rules this
                // out; fail rather than hang if it ever happens.
                self.exec.error = Some(ExecutionError {
                    step_name: None,
                    message: "no step can start; the workflow's `needs` cannot be met".into(),
                    code: "stuck".into(),
                });
                self.halt(Stop::Failed);
                changed = true;
                continue;
            }
            changed |= self.settle_status(now);
            return Action::Run {
                start,
                changed,
                until: Some(until),
            };
        }
    }

    /// The status an execution that has nothing left ends with.
    fn final_status(&self) -> Status {
        match self.stop {
            Some(Stop::Cancelled) => Status::Cancelled,
            Some(Stop::TimedOut) => Status::TimedOut,
            Some(Stop::Failed) => Status::Failed,
            None if self
                .exec
                .steps
                .iter()
                .any(|s| s.status == StepStatus::Failed) =>
            {
                Status::PartiallySucceeded
            }
            None => Status::Succeeded,
        }
    }

    /// Starts every step that can start (into `start`); returns whether
    /// anything else changed that must be stored (skips, failures before
    /// any attempt, waits).
    fn schedule(
        &mut self,
        def: &Definition,
        needs: &[Vec<usize>],
        now: Timestamp,
        deadline: Timestamp,
        start: &mut Vec<Start>,
    ) -> bool {
        let mut changed = self.settle_waits(def, now);
        for i in 0..self.exec.steps.len() {
            if self.stop.is_some() {
                break;
            }
            match self.exec.steps[i].status {
                StepStatus::Retrying
                    if self.exec.steps[i]
                        .next_attempt_at
                        .is_some_and(|at| at <= now) =>
                {
                    changed |= self.start(def, needs, i, now, deadline, start);
                }
                StepStatus::Pending => {
                    let deps = &needs[i];
                    // A cancelled need cannot occur here: the execution is
                    // stopping then, and nothing new starts.
                    if !deps.iter().all(|&d| self.exec.steps[d].status.is_settled()) {
                        continue;
                    }
                    if let Some(cond) = &def.steps[i].condition {
                        let scope = self.scope(needs, i);
                        match scope.condition(cond, &format!("$.steps[{i}].if")) {
                            Ok(true) => {}
                            Ok(false) => {
                                self.skip(i, format!("its condition `{cond}` is false"));
                                changed = true;
                                continue;
                            }
                            Err(e) => {
                                self.fail_before_attempt(def, i, e.to_string());
                                changed = true;
                                continue;
                            }
                        }
                    } else if let Some(&d) = deps.iter().find(|&&d| {
                        matches!(
                            self.exec.steps[d].status,
                            StepStatus::Skipped | StepStatus::Failed
                        )
                    }) {
                        let what = if self.exec.steps[d].status == StepStatus::Skipped {
                            "was skipped"
                        } else {
                            "failed"
                        };
                        let reason = format!("it needs `{}`, which {what}", self.exec.steps[d].id);
                        self.skip(i, reason);
                        changed = true;
                        continue;
                    }
                    if def.steps[i].wait.is_some() {
                        self.begin_wait(def, needs, i, now);
                        // A wait already over, or a signal already here,
                        // ends at once.
                        self.settle_waits(def, now);
                        changed = true;
                    } else {
                        changed |= self.start(def, needs, i, now, deadline, start);
                    }
                }
                _ => {}
            }
        }
        changed
    }

    fn skip(&mut self, i: usize, reason: String) {
        let step = &mut self.exec.steps[i];
        step.status = StepStatus::Skipped;
        step.skipped_reason = Some(reason);
    }

    /// What templates of step `i` see: the input, the execution, the
    /// workflow, and its ancestors' results.
    fn scope(&self, needs: &[Vec<usize>], i: usize) -> Scope {
        Scope::new(&self.root(ancestor_views(&self.exec, needs, i)))
    }

    fn root(&self, steps: Value) -> Value {
        json!({
            "input": self.exec.input_data,
            "steps": steps,
            "execution": {"id": self.exec.execution_id.as_str(), "created_at": self.exec.created_at.to_string()},
            "workflow": {"id": self.exec.workflow_id.as_str(), "version": self.exec.workflow_version},
        })
    }

    /// A template or config problem fails the step without an attempt.
    fn fail_before_attempt(&mut self, def: &Definition, i: usize, message: String) {
        let error = ExecutionError {
            step_name: Some(self.exec.steps[i].id.clone()),
            message: self.redactor.redact(&message),
            code: "template_error".into(),
        };
        self.fail_step(def, i, error);
    }

    fn fail_step(&mut self, def: &Definition, i: usize, error: ExecutionError) {
        let step = &mut self.exec.steps[i];
        step.status = StepStatus::Failed;
        step.next_attempt_at = None;
        step.error = Some(error.clone());
        if !def.steps[i].continue_on_error {
            self.exec.error = Some(error);
            self.halt(Stop::Failed);
        }
    }

    /// Resolves the next attempt of step `i` into `start`; returns whether
    /// the step failed before it could start (which must be stored).
    fn start(
        &mut self,
        def: &Definition,
        needs: &[Vec<usize>],
        i: usize,
        now: Timestamp,
        deadline: Timestamp,
        start: &mut Vec<Start>,
    ) -> bool {
        let Some(digest) = self.exec.steps[i].digest else {
            self.fail_before_attempt(def, i, "the step has no component version".into());
            return true;
        };
        let input = match &def.steps[i].input {
            Some(t) => self
                .scope(needs, i)
                .render(t, &format!("$.steps[{i}].input")),
            None => Ok(match needs[i].as_slice() {
                [] => self.exec.input_data.clone(),
                [d] => self.exec.steps[*d].output.clone().unwrap_or(Value::Null),
                many => Value::Object(
                    many.iter()
                        .map(|&d| {
                            let s = &self.exec.steps[d];
                            (s.id.clone(), s.output.clone().unwrap_or(Value::Null))
                        })
                        .collect(),
                ),
            }),
        };
        let input = match input {
            Ok(v) => v,
            Err(e) => {
                self.fail_before_attempt(def, i, e.to_string());
                return true;
            }
        };
        let mut config = BTreeMap::new();
        if !def.steps[i].config.is_empty() {
            let mut root = self.root(ancestor_views(&self.exec, needs, i));
            root["secrets"] = json!(self.secrets);
            let with_secrets = Scope::new(&root);
            for (k, v) in &def.steps[i].config {
                match with_secrets.render(v, &format!("$.steps[{i}].config.{k}")) {
                    Ok(Value::String(s)) => {
                        config.insert(k.clone(), s);
                    }
                    Ok(other) => {
                        config.insert(k.clone(), other.to_string());
                    }
                    Err(e) => {
                        self.fail_before_attempt(def, i, e.to_string());
                        return true;
                    }
                }
            }
        }
        let remaining = deadline
            .duration_since(now)
            .try_into()
            .unwrap_or(Duration::ZERO);
        let step = &mut self.exec.steps[i];
        step.status = StepStatus::Running;
        step.next_attempt_at = None;
        let number = u32::try_from(step.attempts.len()).unwrap_or(u32::MAX) + 1;
        start.push(Start {
            index: i,
            number,
            digest,
            input,
            config,
            overrides: def.overrides(i),
            remaining,
            started_at: now,
        });
        false
    }

    /// Records a finished attempt at `now` and decides what the step does
    /// next; `random` in [0, 1) jitters a retry's delay.
    pub(super) fn record(&mut self, def: &Definition, done: Done, now: Timestamp, random: f64) {
        let i = done.index;
        let step_id = self.exec.steps[i].id.clone();
        let report = match done.result {
            Ok(r) => r,
            Err(e) => {
                let error = ExecutionError {
                    step_name: Some(step_id),
                    message: e.0,
                    code: "step_unavailable".into(),
                };
                self.fail_step(def, i, error);
                return;
            }
        };
        let mut attempt = attempt_from(
            done.number,
            &step_id,
            done.started_at,
            now,
            &report.outcome,
            &report.metering,
            report.logs,
            report.http,
        );
        attempt.input = Some(self.redactor.redact_json(&done.input));
        if let Some(e) = &mut attempt.error {
            e.message = self.redactor.redact(&e.message);
        }
        if self.stop == Some(Stop::TimedOut) && matches!(report.outcome, Outcome::Cancelled) {
            attempt.outcome = "timed_out".into();
            attempt.error = Some(ExecutionError {
                step_name: Some(step_id.clone()),
                message: "interrupted at the workflow's deadline".into(),
                code: "timed_out".into(),
            });
        }
        let error = attempt.error.clone();
        let outcome_kind = attempt.outcome.clone();
        self.exec.steps[i].attempts.push(attempt);
        match report.outcome {
            Outcome::Succeeded { output } => match serde_json::from_str::<Value>(&output) {
                Ok(value) => {
                    let step = &mut self.exec.steps[i];
                    step.status = StepStatus::Succeeded;
                    step.output = Some(self.redactor.redact_json(&value));
                }
                Err(e) => self.fail_step(
                    def,
                    i,
                    ExecutionError {
                        step_name: Some(step_id),
                        message: format!("the step's output could not be read: {e}"),
                        code: "invalid_output".into(),
                    },
                ),
            },
            Outcome::Cancelled if self.stop.is_some() => {
                let step = &mut self.exec.steps[i];
                step.status = StepStatus::Cancelled;
                if self.stop == Some(Stop::TimedOut) {
                    step.error = error;
                }
            }
            outcome => {
                let error = error.unwrap_or_else(|| ExecutionError {
                    step_name: Some(step_id.clone()),
                    message: outcome.describe(),
                    code: outcome_kind.clone(),
                });
                let policy = def.retry(i);
                let retryable = match &outcome {
                    Outcome::Failed { error } => error.retryable,
                    _ => policy.retry_on.iter().any(|r| r.outcome() == outcome_kind),
                };
                // Attempts before the last resume do not count.
                let made = done
                    .number
                    .saturating_sub(self.exec.steps[i].attempts_before_resume);
                if retryable && made < policy.max_attempts && self.stop.is_none() {
                    let delay = policy.jittered(policy.delay_after(made), random);
                    let step = &mut self.exec.steps[i];
                    step.status = StepStatus::Retrying;
                    step.next_attempt_at = Some(add(now, delay));
                    step.error = Some(error);
                } else {
                    self.fail_step(def, i, error);
                }
            }
        }
    }

    /// Ends the execution with `status` at `now`: the steps left over end
    /// `cancelled`, and a successful execution gets its output (the
    /// `output` template's, else the last step's; a template that fails
    /// fails the execution).
    pub(super) fn conclude(&mut self, def: Option<&Definition>, status: Status, now: Timestamp) {
        let mut status = status;
        for s in &mut self.exec.steps {
            if matches!(
                s.status,
                StepStatus::Pending
                    | StepStatus::Running
                    | StepStatus::Retrying
                    | StepStatus::Waiting
            ) {
                s.status = StepStatus::Cancelled;
                s.next_attempt_at = None;
            }
        }
        if matches!(status, Status::Succeeded | Status::PartiallySucceeded)
            && let Some(def) = def
        {
            match &def.output {
                None => {
                    self.exec.output = self.exec.steps.last().and_then(|s| s.output.clone());
                }
                Some(template) => {
                    let steps = Value::Object(
                        self.exec
                            .steps
                            .iter()
                            .map(|s| (s.id.clone(), step_view(s)))
                            .collect(),
                    );
                    match Scope::new(&self.root(steps)).render(template, "$.output") {
                        Ok(v) => self.exec.output = Some(self.redactor.redact_json(&v)),
                        Err(e) => {
                            self.exec.error = Some(ExecutionError {
                                step_name: None,
                                message: self.redactor.redact(&e.to_string()),
                                code: "template_error".into(),
                            });
                            status = Status::Failed;
                        }
                    }
                }
            }
        }
        self.exec.enter(status, now);
    }
}

fn step_view(s: &StepRun) -> Value {
    json!({
        "status": s.status,
        "output": s.output,
        "error": s.error,
        "skipped_reason": s.skipped_reason,
    })
}

/// The views of step `i`'s ancestors, by step id.
fn ancestor_views(exec: &Execution, needs: &[Vec<usize>], i: usize) -> Value {
    let mut steps = serde_json::Map::new();
    let mut stack = needs[i].clone();
    while let Some(j) = stack.pop() {
        let s = &exec.steps[j];
        if steps.contains_key(&s.id) {
            continue;
        }
        steps.insert(s.id.clone(), step_view(s));
        stack.extend(needs[j].iter().copied());
    }
    Value::Object(steps)
}

/// `at + d`, saturating at the end of time.
pub(super) fn add(at: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .unwrap_or(jiff::Timestamp::MAX)
}

/// `at - d`, saturating at the start of time.
pub(super) fn sub(at: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| at.checked_sub(d).ok())
        .unwrap_or(jiff::Timestamp::MIN)
}

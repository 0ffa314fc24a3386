//! Wait steps in the core: starting a wait, ending the waits that are over
//! (a signal arrived, a time passed, a signal's timeout ran out), and the
//! execution status that follows from what its steps do.

use serde_json::{Value, json};

use super::{State, add};
use crate::engine::definition::{Definition, parse_duration};
use crate::model::{ExecutionError, Status, StepStatus, Timestamp, Waiting};

impl State {
    /// Ends the waits that are over at `now`: a signal arrived (the oldest
    /// of that name is taken), a time was reached, or a signal's timeout
    /// passed. Returns whether anything changed.
    pub(super) fn settle_waits(&mut self, def: &Definition, now: Timestamp) -> bool {
        let mut changed = false;
        for i in 0..self.exec.steps.len() {
            if self.stop.is_some() {
                break;
            }
            let step = &self.exec.steps[i];
            let Some(waiting) = step
                .waiting
                .clone()
                .filter(|_| step.status == StepStatus::Waiting)
            else {
                continue;
            };
            if let Some(name) = &waiting.signal {
                if let Some(k) = self
                    .exec
                    .pending_signals
                    .iter()
                    .position(|p| &p.name == name)
                {
                    let signal = self.exec.pending_signals.remove(k);
                    let step = &mut self.exec.steps[i];
                    step.status = StepStatus::Succeeded;
                    step.output = Some(self.redactor.redact_json(&signal.payload));
                    changed = true;
                } else if waiting.until.is_some_and(|t| t <= now) {
                    let error = ExecutionError {
                        step_name: Some(self.exec.steps[i].id.clone()),
                        message: format!("no signal `{name}` arrived in time"),
                        code: "signal_timeout".into(),
                    };
                    self.fail_step(def, i, error);
                    changed = true;
                }
            } else if waiting.until.is_none_or(|t| t <= now) {
                let waited = now.duration_since(waiting.since).as_millis().max(0);
                let step = &mut self.exec.steps[i];
                step.status = StepStatus::Succeeded;
                step.output = Some(json!({ "waited_ms": waited }));
                changed = true;
            }
        }
        changed
    }

    /// Starts wait step `i` at `now`: works out until when it waits.
    pub(super) fn begin_wait(
        &mut self,
        def: &Definition,
        needs: &[Vec<usize>],
        i: usize,
        now: Timestamp,
    ) {
        let Some(wait) = &def.steps[i].wait else {
            return;
        };
        let until = if let Some(d) = &wait.duration {
            parse_duration(d).ok().map(|d| add(now, d))
        } else if let Some(t) = &wait.until {
            let at = format!("$.steps[{i}].wait.until");
            let rendered = match self.scope(needs, i).render(&Value::String(t.clone()), &at) {
                Ok(v) => v,
                Err(e) => {
                    self.fail_before_attempt(def, i, e.to_string());
                    return;
                }
            };
            match rendered.as_str().map(str::parse::<Timestamp>) {
                Some(Ok(ts)) => Some(ts),
                _ => {
                    let error = ExecutionError {
                        step_name: Some(self.exec.steps[i].id.clone()),
                        message: format!(
                            "`wait.until` must give an RFC 3339 time such as \
                             `2030-01-01T09:00:00Z`, not {rendered}"
                        ),
                        code: "invalid_wait".into(),
                    };
                    self.fail_step(def, i, error);
                    return;
                }
            }
        } else {
            wait.timeout
                .as_deref()
                .and_then(|t| parse_duration(t).ok())
                .map(|d| add(now, d))
        };
        let step = &mut self.exec.steps[i];
        step.status = StepStatus::Waiting;
        step.waiting = Some(Waiting {
            since: now,
            signal: wait.signal.clone(),
            until,
        });
    }

    /// `waiting` while every unfinished step waits (none runs or retries
    /// soon), `running` otherwise; each change is a history entry. Only a
    /// running or waiting execution that is not stopping changes. Returns
    /// whether it changed.
    pub(crate) fn settle_status(&mut self, now: Timestamp) -> bool {
        if self.stop.is_some() || !matches!(self.exec.status, Status::Running | Status::Waiting) {
            return false;
        }
        let waits = self
            .exec
            .steps
            .iter()
            .any(|s| s.status == StepStatus::Waiting);
        let works = self
            .exec
            .steps
            .iter()
            .any(|s| matches!(s.status, StepStatus::Running | StepStatus::Retrying));
        let want = if waits && !works {
            Status::Waiting
        } else {
            Status::Running
        };
        if self.exec.status == want {
            return false;
        }
        self.exec.enter(want, now);
        true
    }
}

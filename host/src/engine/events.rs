//! Requests that reach an execution through its inbox: cancel, pause,
//! resume and signals. Each is stored with the execution first (in the
//! transaction that makes it due), so it reaches the execution wherever it
//! is driven; then this process's driver, claim loop or a slotless claim
//! acts on it.

use std::time::Duration;

use super::definition::{self, Problem};
use super::{Engine, Error, SignalSent, Until, dag, work};
use crate::model::{EventKind, Execution, ExecutionId, NewEvent, Status, StepStatus, TenantId};
use crate::store::Sent;

/// How long a pause or a resume waits for the execution to act on it
/// before answering that it is stored and pending.
const CHANGE_WAIT: Duration = Duration::from_secs(10);

/// How long a cancel waits for the execution to stop.
const CANCEL_WAIT: Duration = Duration::from_secs(30);

impl Engine {
    /// Cancels an unfinished execution and returns its final record.
    /// Cancelling an already cancelled execution returns it unchanged.
    ///
    /// The cancel is stored in the execution's inbox first, so it reaches
    /// the execution wherever it is driven. An execution nobody drives is
    /// claimed here at once to act on it, without waiting for a free slot.
    pub async fn cancel(&self, tenant: &TenantId, id: &ExecutionId) -> Result<Execution, Error> {
        match self.send_change(tenant, id, EventKind::Cancel).await {
            Err(Error::AlreadyFinished(_, s)) if s == Status::Cancelled.as_str() => {
                return self.get(tenant, id).await;
            }
            other => other?,
        }
        work::deliver(&self.inner, tenant, id).await?;
        let exec = self.wait(tenant, id, &Until::Terminal, CANCEL_WAIT).await?;
        match exec.status {
            Status::Cancelled => Ok(exec),
            s if s.is_terminal() => Err(Error::AlreadyFinished(exec.execution_id, s.as_str())),
            _ => Err(Error::Busy(format!(
                "the cancel of execution {id} is stored and will take effect, but the execution \
                 did not stop within {} s; poll it",
                CANCEL_WAIT.as_secs()
            ))),
        }
    }

    /// Pauses an execution: no new step starts; attempts already running
    /// finish. Returns the record and whether the pause has taken effect
    /// (false: it is stored and will, but the execution did not act on it
    /// within a few seconds). Like a cancel, a pause reaches the execution
    /// wherever it is driven, and an execution nobody drives is claimed here
    /// to act on it, without a slot.
    pub async fn pause(
        &self,
        tenant: &TenantId,
        id: &ExecutionId,
    ) -> Result<(Execution, bool), Error> {
        let exec = self.get(tenant, id).await?;
        match exec.status {
            Status::Queued | Status::Running | Status::Waiting => {}
            Status::Scheduled => {
                return Err(Error::NotAllowed(format!(
                    "execution {id} is scheduled and has not started; cancel it, or start it \
                     now with POST /v1/executions/{id}/resume"
                )));
            }
            Status::Paused => {
                return Err(Error::NotAllowed(format!(
                    "execution {id} is already paused; resume it with \
                     POST /v1/executions/{id}/resume"
                )));
            }
            s => return Err(Error::AlreadyFinished(id.clone(), s.as_str())),
        }
        let paused = exec
            .history
            .iter()
            .filter(|h| h.status == Status::Paused)
            .count();
        self.send_change(tenant, id, EventKind::Pause).await?;
        work::deliver(&self.inner, tenant, id).await?;
        let exec = self
            .wait(tenant, id, &Until::Paused(paused), CHANGE_WAIT)
            .await?;
        let done = Until::Paused(paused).reached(&exec);
        Ok((exec, done))
    }

    /// Resumes an execution: continues a paused one, ends a waiting one's
    /// `wait: {for|until}` steps now, or restarts a failed, cancelled or
    /// timed-out one from its steps that did not succeed (succeeded steps
    /// keep their outputs). Returns the record and whether the resume has
    /// taken effect (false: it is stored and will). Any other state is
    /// refused: there is nothing to resume.
    pub async fn resume(
        &self,
        tenant: &TenantId,
        id: &ExecutionId,
    ) -> Result<(Execution, bool), Error> {
        let exec = self.get(tenant, id).await?;
        match exec.status {
            Status::Paused | Status::Scheduled => {}
            Status::Waiting => {
                let on_time = exec.steps.iter().any(|s| {
                    s.status == StepStatus::Waiting
                        && s.waiting.as_ref().is_some_and(|w| w.signal.is_none())
                });
                if !on_time {
                    let names: Vec<String> = exec
                        .steps
                        .iter()
                        .filter_map(|s| s.waiting.as_ref()?.signal.as_ref())
                        .map(|n| format!("`{n}`"))
                        .collect();
                    return Err(Error::NotAllowed(format!(
                        "execution {id} waits only for signals ({}), which a resume does not \
                         end; deliver one with POST /v1/executions/{id}/signals/{{name}}",
                        names.join(", ")
                    )));
                }
            }
            s if s.is_restartable() => {}
            Status::Queued | Status::Running => {
                return Err(Error::NotAllowed(format!(
                    "execution {id} is {}; only a paused, waiting, failed, cancelled or \
                     timed-out execution can be resumed",
                    exec.status.as_str()
                )));
            }
            s => return Err(Error::AlreadyFinished(id.clone(), s.as_str())),
        }
        let resumed = exec
            .history
            .iter()
            .filter(|h| h.reason.as_deref() == Some(dag::RESUME))
            .count();
        self.send_change(tenant, id, EventKind::Resume).await?;
        work::nudge(&self.inner, id);
        let exec = self
            .wait(tenant, id, &Until::Resumed(resumed), CHANGE_WAIT)
            .await?;
        let done = Until::Resumed(resumed).reached(&exec);
        Ok((exec, done))
    }

    async fn send_change(
        &self,
        tenant: &TenantId,
        id: &ExecutionId,
        kind: EventKind,
    ) -> Result<(), Error> {
        let event = NewEvent {
            kind,
            name: None,
            payload: None,
            idempotency_key: None,
            at: self.inner.clock.now(),
        };
        match self.inner.store.send_event(tenant, id, &event).await? {
            Sent::Stored(_) | Sent::Duplicate(_) => Ok(()),
            Sent::NotFound => Err(Error::ExecutionNotFound(id.to_string())),
            Sent::Finished(s) => Err(Error::AlreadyFinished(id.clone(), s.as_str())),
        }
    }

    /// Delivers a signal: stores it in the execution's inbox (once per
    /// idempotency key) and wakes the execution. A payload that does not fit
    /// the schema of the wait step it is for is refused and not stored. The
    /// wait step it is for is the first in the workflow that waits for this
    /// name and has not settled (else the first that waits for it); a
    /// signal no step waits for is kept in `pending_signals`.
    pub async fn signal(
        &self,
        tenant: &TenantId,
        id: &ExecutionId,
        name: &str,
        payload: serde_json::Value,
        idempotency_key: Option<String>,
    ) -> Result<SignalSent, Error> {
        let exec = self.get(tenant, id).await?;
        if exec.status.is_terminal() {
            // A keyed retry of a delivery that was stored before is answered
            // as the duplicate it is; anything else is too late.
            if idempotency_key.is_some() {
                return self
                    .send_signal(tenant, id, name, payload, idempotency_key)
                    .await;
            }
            return Err(Error::AlreadyFinished(id.clone(), exec.status.as_str()));
        }
        let def = self
            .inner
            .definition(&exec)
            .await
            .map_err(Error::Unprocessable)?;
        let waits_for = |i: &usize| {
            def.steps[*i]
                .wait
                .as_ref()
                .is_some_and(|w| w.signal.as_deref() == Some(name))
        };
        let target = (0..def.steps.len())
            .filter(waits_for)
            .find(|&i| !exec.steps[i].status.is_settled())
            .or_else(|| (0..def.steps.len()).find(waits_for));
        if let Some(i) = target
            && let Some(schema) = def.steps[i].wait.as_ref().and_then(|w| w.schema.as_ref())
        {
            let validator = jsonschema::validator_for(schema).map_err(|e| {
                Error::Unprocessable(format!(
                    "the schema of step `{}` is invalid: {e}",
                    def.steps[i].id
                ))
            })?;
            let problems: Vec<Problem> = validator
                .iter_errors(&payload)
                .map(|e| Problem {
                    path: format!("${}", definition::json_path(&e.instance_path().to_string())),
                    message: e.to_string(),
                })
                .collect();
            if !problems.is_empty() {
                return Err(Error::Invalid(
                    format!(
                        "the payload does not match the `schema` of step `{}`, which waits for \
                         signal `{name}`; it was not delivered",
                        def.steps[i].id
                    ),
                    problems,
                ));
            }
        }
        self.send_signal(tenant, id, name, payload, idempotency_key)
            .await
    }

    async fn send_signal(
        &self,
        tenant: &TenantId,
        id: &ExecutionId,
        name: &str,
        payload: serde_json::Value,
        idempotency_key: Option<String>,
    ) -> Result<SignalSent, Error> {
        let event = NewEvent {
            kind: EventKind::Signal,
            name: Some(name.to_owned()),
            payload: Some(payload),
            idempotency_key,
            at: self.inner.clock.now(),
        };
        let (sequence, duplicate) = match self.inner.store.send_event(tenant, id, &event).await? {
            Sent::Stored(seq) => (seq, false),
            Sent::Duplicate(seq) => (seq, true),
            Sent::NotFound => return Err(Error::ExecutionNotFound(id.to_string())),
            Sent::Finished(s) => return Err(Error::AlreadyFinished(id.clone(), s.as_str())),
        };
        if !duplicate {
            work::nudge(&self.inner, id);
        }
        Ok(SignalSent {
            sequence,
            duplicate,
        })
    }
}
